//! The check's main loop and its two actions on the server: a restart
//! through systemctl, as the service user, so polkit decides exactly as for
//! the web app; and, once the restart budget is spent, SIGSYS to the server's
//! main process, which the server unit's RestartPreventExitStatus= turns into
//! `failed` without a restart. The same restart also moves an empty server
//! onto a newer installation generation (the `when-empty` policy). When the
//! game logs Steam's "needs to be restarted" notice (super::output), the
//! check queues an update through the same polkit rule, at most once per
//! L4D2_HEALTH_STEAM_UPDATE_SEC. systemd is behind [`Systemd`], so the loop
//! runs against a fake in the unit tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::Instant;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::metrics::Exporter;
use super::output::Events;
use super::record::{Action, Record};
use super::rollover::Watcher;
use super::settings::Settings;
use super::{now_ms, secs, server_unit};
use crate::a2s;
use crate::error::{Failure, Kind, Result};
use crate::name::InstanceName;

/// The unit the service user may start to queue an update
/// (left4me-update-now.service queues left4me-update.service and ends).
pub(crate) const UPDATE_NOW_UNIT: &str = "left4me-update-now.service";
pub(crate) const UPDATE_UNIT: &str = "left4me-update.service";

/// What the check asks of systemd.
pub(crate) trait Systemd {
    /// Queues `verb` on `unit` without waiting for the job (`--no-block`);
    /// the error is why it was refused.
    fn queue(&self, verb: &str, unit: &str) -> std::result::Result<(), String>;
    /// The unit's main PID.
    fn main_pid(&self, unit: &str) -> std::result::Result<u32, String>;
    /// When the unit last left the inactive state (Unix seconds); None when
    /// it has not since boot.
    fn last_start_s(&self, unit: &str) -> Option<u64>;
}

/// systemd through systemctl, as the service user: reading needs no grant,
/// every job is polkit's decision.
pub(crate) struct Systemctl(pub PathBuf);

impl Systemctl {
    fn run(&self, args: &[&str]) -> std::result::Result<std::process::Output, String> {
        Command::new(&self.0)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.0.display()))
    }
}

impl Systemd for Systemctl {
    fn queue(&self, verb: &str, unit: &str) -> std::result::Result<(), String> {
        let out = self.run(&["--no-ask-password", "--no-block", verb, unit])?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "systemctl {verb} {unit} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }

    fn main_pid(&self, unit: &str) -> std::result::Result<u32, String> {
        let out = self.run(&["show", "--property=MainPID", "--value", unit])?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.trim().parse::<u32>() {
            Ok(pid) if out.status.success() && pid > 0 => Ok(pid),
            _ => Err(format!(
                "cannot read the main PID of {unit} ({}, stdout {:?}): {}",
                out.status,
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    }

    fn last_start_s(&self, unit: &str) -> Option<u64> {
        let out = self
            .run(&[
                "show",
                "--timestamp=unix",
                "--property=InactiveExitTimestamp",
                "--value",
                unit,
            ])
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .strip_prefix('@')?
            .parse()
            .ok()
            .filter(|&s| s > 0)
    }
}

/// What a "needs to be restarted" notice leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notice {
    /// None, or one already handled.
    Nothing,
    /// L4D2_HEALTH_STEAM_UPDATE_SEC=0: handled by doing nothing.
    Off,
    /// An update started `ago_s` ago, less than the setting: asked again
    /// later, while the notice stands.
    TooSoon {
        ago_s: u64,
    },
    Queue,
}

/// The decision on the newest notice (`notice_ms`), given the newest one
/// already handled, the setting, when the update unit last started and now.
pub(crate) fn on_notice(
    notice_ms: Option<u64>,
    handled_ms: Option<u64>,
    every_sec: f64,
    update_started_s: Option<u64>,
    now_ms: u64,
) -> Notice {
    let Some(notice) = notice_ms else {
        return Notice::Nothing;
    };
    if handled_ms.is_some_and(|h| notice <= h) {
        return Notice::Nothing;
    }
    if every_sec == 0.0 {
        return Notice::Off;
    }
    match update_started_s {
        Some(started) => {
            let ago_s = (now_ms / 1000).saturating_sub(started);
            if (ago_s as f64) < every_sec {
                Notice::TooSoon { ago_s }
            } else {
                Notice::Queue
            }
        }
        None => Notice::Queue,
    }
}

pub(crate) struct Monitor<S: Systemd> {
    pub instance: InstanceName,
    pub run_dir: PathBuf,
    pub systemd: S,
    /// systemctl for the metrics' reads of the server's cgroup figures.
    pub systemctl: PathBuf,
    /// Node exporter's textfile directory for this check's metrics.
    pub metrics_dir: PathBuf,
    /// The game's events file (super::output); None: no map change or
    /// notice is ever seen.
    pub events: Option<PathBuf>,
}

impl<S: Systemd> Monitor<S> {
    /// Checks until the server needs restarting or stopping, asks systemd
    /// for that, and returns: the request restarts or stops this check too
    /// (it is part of the server unit), so there is nothing left to do. A
    /// refused request is the failure the check ends with.
    pub(crate) fn run(&self, settings: Settings, mut watcher: Watcher) -> Result<()> {
        let name = self.instance.as_str();
        let previous = match Record::load(&self.run_dir, name) {
            Ok(p) => p,
            Err(e) => {
                // A record this check cannot read is replaced, not fatal:
                // losing the budget once is better than no health check.
                tracing::warn!("{e}; starting a new record");
                None
            }
        };
        let generation = watcher.running().map(str::to_owned);
        let mut record = Record::start(
            name,
            std::process::id(),
            settings,
            generation,
            previous,
            now_ms(),
        );
        let s = record.settings.clone();
        let mut metrics = Exporter::new(
            self.metrics_dir.clone(),
            watcher.installations(),
            self.systemctl.clone(),
            s.interval(),
        );
        self.save(&record)?;
        metrics.write(&record);
        tracing::info!(
            "health check of {name} started: after a grace of {}, A2S_INFO to 127.0.0.1:{} every {}, \
             timeout {}, restart after {} failures in a row (at most {} restarts within {})",
            secs(s.grace()),
            s.port,
            secs(s.interval()),
            secs(s.timeout()),
            s.failures,
            s.restarts_max,
            secs(std::time::Duration::from_secs_f64(s.restarts_window_sec)),
        );
        watcher.announce(name);
        sleep(s.grace());
        let mut next = Instant::now();
        let mut events_warned = false;
        let mut too_soon_logged = false;
        loop {
            let events = self.read_events(&mut events_warned);
            let outcome = a2s::query_local(s.port, s.timeout());
            let action = record.observe(&outcome, now_ms(), events.map_change_ms);
            metrics.observe(&outcome);
            match action {
                Action::Nothing => {}
                Action::LoadingMap { since_ms, first } => {
                    if first {
                        tracing::info!(
                            health_action = "changing-map",
                            "{name} logged a map change {} s ago and does not answer: loading, \
                             not counted as a failure for up to {} s after the change",
                            now_ms().saturating_sub(since_ms) / 1000,
                            s.map_load_sec
                        );
                    }
                }
                Action::Recovered { after } => {
                    tracing::info!(
                        health_action = "recovered",
                        "{name} answers again after {after} failed queries"
                    );
                }
                Action::Failing => {
                    let err = outcome.as_ref().err().map(ToString::to_string);
                    tracing::warn!(
                        health_action = "failed-query",
                        health_reason = err.as_deref().unwrap_or(""),
                        "{name}: A2S_INFO query {} of {} before a restart failed: {}",
                        record.consecutive_failures,
                        s.failures,
                        err.as_deref().unwrap_or("")
                    );
                }
                Action::Restart { reason } => {
                    self.save(&record)?;
                    metrics.write(&record);
                    tracing::error!(
                        health_action = "restart",
                        health_reason = reason.as_str(),
                        "restarting {}: {reason}",
                        server_unit(name)
                    );
                    return self.ask_systemd("restart");
                }
                Action::GiveUp { reason } => {
                    metrics.write(&record);
                    return self.give_up(&mut record, reason);
                }
            }
            if let Ok(answer) = &outcome {
                let last = record.last_rollover.as_ref();
                if let Some(r) = watcher.after_answer(name, &answer.info, last, now_ms()) {
                    let reason = r.reason(name);
                    let (from, to) = (r.from.clone(), r.to.clone());
                    record.roll_over(r);
                    self.save(&record)?;
                    metrics.write(&record);
                    tracing::warn!(
                        health_action = "rollover",
                        health_reason = reason.as_str(),
                        health_generation_from = from.as_str(),
                        health_generation_to = to.as_str(),
                        "restarting {} onto generation {to} (from {from}): {reason}; \
                         not a failure, the restart budget is untouched",
                        server_unit(name)
                    );
                    return self.ask_systemd("restart");
                }
            }
            self.on_update_notice(&mut record, &events, &mut too_soon_logged);
            self.save(&record)?;
            metrics.write(&record);
            next += s.interval();
            let now = Instant::now();
            if next > now {
                sleep(next - now);
            } else {
                // A query that took longer than the interval: no burst of
                // catch-up queries, just the next one now.
                next = now;
            }
        }
    }

    fn save(&self, record: &Record) -> Result<()> {
        record.save(&self.run_dir).map_err(|e| {
            Failure::new(
                Kind::Unexpected,
                format!(
                    "cannot write the health record {}: {e}",
                    Record::path(&self.run_dir, record.instance.as_str()).display()
                ),
            )
        })
    }

    /// The game's events; nothing seen when there is no file or it cannot
    /// be read (said once per run: the game's home is the service user's).
    fn read_events(&self, warned: &mut bool) -> Events {
        let Some(path) = &self.events else {
            return Events::default();
        };
        Events::read(path).unwrap_or_else(|e| {
            if !std::mem::replace(warned, true) {
                tracing::warn!(
                    "{e}; map changes and update notices are not seen while it stays so (said once per run)"
                );
            }
            Events::default()
        })
    }

    /// Steam's "needs to be restarted" notice in the game's output: queue
    /// an update (the `when-empty` policy then moves the instances over),
    /// at most once per L4D2_HEALTH_STEAM_UPDATE_SEC across the host,
    /// measured from the update unit's own last start, whoever started it.
    fn on_update_notice(&self, record: &mut Record, events: &Events, too_soon_logged: &mut bool) {
        let name = self.instance.as_str();
        let every = record.settings.steam_update_sec;
        let (notice, handled) = (events.update_notice_ms, record.update_notice_handled_ms);
        // No question to PID 1 while no notice waits.
        if on_notice(notice, handled, every, None, now_ms()) == Notice::Nothing {
            return;
        }
        let decision = on_notice(
            notice,
            handled,
            every,
            self.systemd.last_start_s(UPDATE_UNIT),
            now_ms(),
        );
        match decision {
            Notice::Nothing => {}
            Notice::Off => {
                record.update_notice_handled_ms = events.update_notice_ms;
                tracing::info!(
                    "{name} says Steam has a newer build; L4D2_HEALTH_STEAM_UPDATE_SEC=0, so no update is queued"
                );
            }
            Notice::TooSoon { ago_s } => {
                if !std::mem::replace(too_soon_logged, true) {
                    tracing::info!(
                        "{name} says Steam has a newer build; {UPDATE_UNIT} started {ago_s} s ago, \
                         so the next update is queued once {every} s have passed, if the notice stands"
                    );
                }
            }
            Notice::Queue => {
                record.update_notice_handled_ms = events.update_notice_ms;
                match self.systemd.queue("start", UPDATE_NOW_UNIT) {
                    Ok(()) => {
                        record.updates_queued_total += 1;
                        *too_soon_logged = false;
                        tracing::warn!(
                            health_action = "update-queued",
                            "{name} says Steam has a newer build (\"Your server needs to be restarted \
                             in order to receive the latest update.\"): queued {UPDATE_UNIT} through {UPDATE_NOW_UNIT}"
                        );
                    }
                    Err(why) => tracing::error!(
                        health_action = "refused",
                        "{name} says Steam has a newer build, and the update cannot be queued: {why}; \
                         check that the polkit rule (left4me.rules) grants the service user start on {UPDATE_NOW_UNIT}"
                    ),
                }
            }
        }
    }

    /// `--no-block`: the job also restarts or stops this check, which must
    /// not sit waiting for a job that kills it. The record and the journal
    /// entry are written before, so being killed at any point loses nothing.
    fn ask_systemd(&self, verb: &str) -> Result<()> {
        let unit = server_unit(self.instance.as_str());
        let Err(why) = self.systemd.queue(verb, &unit) else {
            tracing::info!("{verb} of {unit} queued; this check ends with it");
            return Ok(());
        };
        tracing::error!(health_action = "refused", "{why}");
        Err(Failure::new(Kind::ActionRefused, why).hint(format!(
            "check that the polkit rule (left4me.rules) grants the service user {verb} on {unit}"
        )))
    }

    /// Ends the server as `failed`: SIGSYS to its main process. The server
    /// unit has RestartPreventExitStatus=SIGSYS, so systemd records the
    /// signal as the result and does not restart it, while a crash or an
    /// out-of-memory kill (SIGKILL) still restarts. No polkit verb is needed:
    /// the game runs as the same service user, and kill(2) compares the
    /// kernel's uids, which PrivateUsers= maps to the same uid in both units;
    /// neither unit has a PID namespace. The reason is logged before the
    /// signal, since the server's end stops this check too. If the PID
    /// cannot be read or signalled, a plain stop is the fallback: the server
    /// ends inactive rather than failed, and the journal says so.
    fn give_up(&self, record: &mut Record, reason: String) -> Result<()> {
        let unit = server_unit(self.instance.as_str());
        let pid = self.systemd.main_pid(&unit);
        record.give_up(pid.as_ref().map_or(0, |p| *p), reason.clone(), now_ms());
        self.save(record)?;
        tracing::error!(
            health_action = "failed",
            health_reason = reason.as_str(),
            "ending {unit} as failed (SIGSYS to its main process): {reason}"
        );
        let sent = pid.and_then(|pid| {
            let target = i32::try_from(pid).map_err(|_| format!("main PID {pid} out of range"))?;
            kill(Pid::from_raw(target), Signal::SIGSYS)
                .map_err(|e| format!("cannot send SIGSYS to {unit}'s main process {pid}: {e}"))
        });
        match sent {
            Ok(()) => Ok(()),
            Err(why) => {
                tracing::error!(
                    health_action = "refused",
                    health_reason = why.as_str(),
                    "{why}; stopping {unit} instead, it will end inactive, not failed"
                );
                self.ask_systemd("stop")
            }
        }
    }
}

/// The record of one instance for `status`, or a Failure naming what to do.
pub(crate) fn load_for_status(run_dir: &Path, instance: &InstanceName) -> Result<Record> {
    match Record::load(run_dir, instance.as_str()) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(Failure::new(
            Kind::Missing,
            format!(
                "no health record for {instance} in {}",
                run_dir.join(instance.as_str()).display()
            ),
        )
        .hint(format!(
            "the health check has not run since boot; it starts with {}",
            server_unit(instance.as_str())
        ))),
        Err(e) => Err(Failure::new(Kind::InvalidConfig, e.to_string())),
    }
}

/// Whether the process that wrote the record still runs as a health check.
pub(crate) fn running(record: &Record) -> bool {
    std::fs::read_to_string(format!("/proc/{}/comm", record.pid))
        .is_ok_and(|comm| comm.trim_end() == "left4me-health")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::RestartPolicy;
    use rstest::rstest;
    use std::cell::RefCell;

    #[rstest]
    #[case::none(None, None, 3600.0, None, Notice::Nothing)]
    #[case::handled(Some(5_000), Some(5_000), 3600.0, None, Notice::Nothing)]
    #[case::newer_than_handled(Some(6_000), Some(5_000), 3600.0, None, Notice::Queue)]
    #[case::off(Some(5_000), None, 0.0, None, Notice::Off)]
    #[case::never_updated(Some(5_000), None, 3600.0, None, Notice::Queue)]
    #[case::updated_an_hour_ago(Some(5_000), None, 3600.0, Some(10_000 - 3600), Notice::Queue)]
    #[case::updated_just_now(Some(5_000), None, 3600.0, Some(10_000 - 10), Notice::TooSoon { ago_s: 10 })]
    #[case::updated_just_under_an_hour(Some(5_000), None, 3600.0, Some(10_000 - 3599), Notice::TooSoon { ago_s: 3599 })]
    fn a_notice_queues_an_update_at_most_once_per_setting(
        #[case] notice_ms: Option<u64>,
        #[case] handled_ms: Option<u64>,
        #[case] every: f64,
        #[case] started_s: Option<u64>,
        #[case] expected: Notice,
    ) {
        assert_eq!(
            on_notice(notice_ms, handled_ms, every, started_s, 10_000_000),
            expected
        );
    }

    /// systemd as the check sees it: jobs are recorded, never run.
    struct FakeSystemd {
        queued: RefCell<Vec<(String, String)>>,
        update_started_s: Option<u64>,
    }

    impl Systemd for &FakeSystemd {
        fn queue(&self, verb: &str, unit: &str) -> std::result::Result<(), String> {
            self.queued.borrow_mut().push((verb.into(), unit.into()));
            Ok(())
        }
        fn main_pid(&self, unit: &str) -> std::result::Result<u32, String> {
            Err(format!("{unit} has no main PID in this test"))
        }
        fn last_start_s(&self, unit: &str) -> Option<u64> {
            assert_eq!(unit, UPDATE_UNIT);
            self.update_started_s
        }
    }

    /// A UDP port nobody answers on: queries fail at once (port unreachable).
    fn silent_port() -> u16 {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Runs the check against nobody until it asks for something that
    /// ends it; returns what it queued and its record.
    fn run(
        events: Option<super::super::output::Events>,
        fake: &FakeSystemd,
        map_load_sec: f64,
    ) -> (Vec<(String, String)>, Record) {
        let dir = tempfile::tempdir().unwrap();
        let events_path = dir.path().join("events.json");
        if let Some(e) = events {
            std::fs::write(&events_path, serde_json::to_vec(&e).unwrap()).unwrap();
        }
        let settings = Settings {
            port: silent_port(),
            grace_sec: 0.0,
            interval_sec: 0.05,
            timeout_sec: 0.05,
            failures: 3,
            map_load_sec,
            ..Settings::default()
        };
        let state_dir = dir.path().to_string_lossy().into_owned();
        let watcher = Watcher::from_lookup(RestartPolicy::Never, &|k: &str| {
            (k == "LEFT4ME_STATE_DIR").then(|| state_dir.clone())
        })
        .unwrap();
        let monitor = Monitor {
            instance: InstanceName::parse("vs1").unwrap(),
            run_dir: dir.path().join("run"),
            systemd: fake,
            systemctl: dir.path().join("no-systemctl"),
            metrics_dir: dir.path().join("no-metrics"),
            events: Some(events_path),
        };
        monitor.run(settings, watcher).unwrap();
        let record = Record::load(&dir.path().join("run"), "vs1")
            .unwrap()
            .unwrap();
        (fake.queued.borrow().clone(), record)
    }

    fn fake(update_started_s: Option<u64>) -> FakeSystemd {
        FakeSystemd {
            queued: RefCell::new(Vec::new()),
            update_started_s,
        }
    }

    fn restart() -> (String, String) {
        ("restart".into(), "left4me-server@vs1.service".into())
    }

    #[test_log::test]
    fn a_silent_server_is_restarted_after_n_failures() {
        let (queued, record) = run(None, &fake(None), 120.0);
        assert_eq!(queued, [restart()]);
        assert_eq!((record.failed_checks, record.restarts_total), (3, 1));
    }

    #[test_log::test]
    fn a_logged_map_change_holds_the_restart_off_until_its_window_has_passed() {
        let events = super::super::output::Events {
            map_change_ms: Some(now_ms()),
            update_notice_ms: None,
        };
        let (queued, record) = run(Some(events), &fake(None), 0.5);
        assert_eq!(queued, [restart()]);
        // 0.5 s of loads at one query per 0.05 s, then the three failures.
        assert!(record.failed_checks >= 3 + 5, "{}", record.failed_checks);
    }

    #[test_log::test]
    fn an_update_notice_queues_one_update() {
        let events = super::super::output::Events {
            map_change_ms: None,
            update_notice_ms: Some(now_ms()),
        };
        let (queued, record) = run(Some(events), &fake(None), 120.0);
        assert_eq!(
            queued,
            [("start".into(), UPDATE_NOW_UNIT.into()), restart()]
        );
        assert_eq!(record.updates_queued_total, 1);
        assert!(record.update_notice_handled_ms.is_some());
    }

    #[test_log::test]
    fn an_update_notice_soon_after_an_update_queues_none() {
        let events = super::super::output::Events {
            map_change_ms: None,
            update_notice_ms: Some(now_ms()),
        };
        let (queued, record) = run(Some(events), &fake(Some(now_ms() / 1000 - 60)), 120.0);
        assert_eq!(queued, [restart()]);
        assert_eq!(record.updates_queued_total, 0);
        assert_eq!(
            record.update_notice_handled_ms, None,
            "asked again once the hour is up"
        );
    }
}
