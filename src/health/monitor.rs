//! The check's main loop and its two actions on the server: a restart
//! through root's request server (src/requests.rs), as the web app asks for
//! one; and, once the restart budget is spent, SIGSYS to the server's
//! main process, which the server unit's RestartPreventExitStatus= turns into
//! `failed` without a restart. The same restart also moves an empty server
//! onto a newer installation generation (the `when-empty` policy). When the
//! game logs Steam's "needs to be restarted" notice (super::output), the
//! check queues an update through the same server, at most once per
//! L4D2_HEALTH_STEAM_UPDATE_SEC. systemd is behind [`Systemd`], so the loop
//! runs against a fake in the unit tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::Instant;

use super::metrics::Exporter;
use super::output::Events;
use super::record::{Action, Record};
use super::rollover::Watcher;
use super::settings::Settings;
use super::{now_ms, secs, server_unit};
use crate::a2s;
use crate::error::{Failure, Kind, Result};
use crate::name::InstanceName;
use crate::requests::{self, Request, Verb};

pub(crate) const UPDATE_UNIT: &str = "left4me-update.service";
/// How long after its start the check first writes its metrics.
const FIRST_METRICS_DELAY: std::time::Duration = std::time::Duration::from_secs(5);
/// How often a `busy` request server is asked again, a second apart.
const BUSY_RETRIES: u32 = 30;

/// What the check asks of systemd: jobs, and properties (the main PID, the
/// update's last start, the metrics' cgroup figures), all through the two
/// required methods, so one runner spawns systemctl and a fake stands in
/// for it in the unit tests.
pub(crate) trait Systemd {
    /// Asks for `request`'s job (a `no-block` one: the answer comes once it
    /// is queued); the error is why it was refused.
    fn queue(&self, request: &Request) -> std::result::Result<(), String>;
    /// `props` of `unit` as `systemctl show --timestamp=unix` gives them
    /// (timestamps `@SECONDS`); one systemd has no value for is absent. The
    /// error is why none could be read.
    fn show(
        &self,
        unit: &str,
        props: &[&str],
    ) -> std::result::Result<HashMap<String, String>, String>;
    /// The names of the loaded units matching `pattern` (a glob), in every
    /// state, failed ones included.
    fn loaded(&self, pattern: &str) -> std::result::Result<Vec<String>, String>;

    /// The unit's main PID.
    fn main_pid(&self, unit: &str) -> std::result::Result<u32, String> {
        let props = self
            .show(unit, &["MainPID"])
            .map_err(|why| format!("cannot read the main PID of {unit}: {why}"))?;
        let pid = props.get("MainPID").map_or("", String::as_str);
        match pid.parse::<u32>() {
            Ok(pid) if pid > 0 => Ok(pid),
            _ => Err(format!(
                "cannot read the main PID of {unit}: systemd says MainPID={pid:?}"
            )),
        }
    }

    /// When the unit last left the inactive state (Unix seconds); None when
    /// it has not since boot.
    fn last_start_s(&self, unit: &str) -> Option<u64> {
        self.show(unit, &["InactiveExitTimestamp"])
            .ok()?
            .get("InactiveExitTimestamp")?
            .strip_prefix('@')?
            .parse()
            .ok()
            .filter(|&s| s > 0)
    }
}

/// Monitor owns its systemd, the exporter borrows it.
impl<T: Systemd + ?Sized> Systemd for &T {
    fn queue(&self, request: &Request) -> std::result::Result<(), String> {
        (**self).queue(request)
    }
    fn show(
        &self,
        unit: &str,
        props: &[&str],
    ) -> std::result::Result<HashMap<String, String>, String> {
        (**self).show(unit, props)
    }
    fn loaded(&self, pattern: &str) -> std::result::Result<Vec<String>, String> {
        (**self).loaded(pattern)
    }
}

/// systemd as the service user sees it: properties through systemctl
/// (reading needs no grant), jobs through root's request server
/// (src/requests.rs): the service user has no polkit grant.
pub(crate) struct Systemctl {
    pub(crate) path: PathBuf,
    /// left4me-requests.socket's socket.
    pub(crate) requests: PathBuf,
}

impl Systemctl {
    /// `systemctl ARGS`'s standard output; `what` names the call in the
    /// error when systemctl cannot run or fails.
    fn run(&self, what: &str, args: &[&str]) -> std::result::Result<String, String> {
        let out = Command::new(&self.path)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.path.display()))?;
        if !out.status.success() {
            return Err(format!(
                "systemctl {what} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Systemd for Systemctl {
    /// A `busy` answer (16 requests in flight, the web app's among them) is
    /// asked again, once a second for [`BUSY_RETRIES`] seconds: a watchdog
    /// must not give up on a moment's load.
    fn queue(&self, request: &Request) -> std::result::Result<(), String> {
        let mut tries = 0;
        loop {
            match requests::ask(&self.requests, request) {
                Err(f) if f.kind == Kind::Busy && tries < BUSY_RETRIES => {
                    tries += 1;
                    sleep(std::time::Duration::from_secs(1));
                }
                done => return done.map_err(|f| f.to_string()),
            }
        }
    }

    fn show(
        &self,
        unit: &str,
        props: &[&str],
    ) -> std::result::Result<HashMap<String, String>, String> {
        let props = props.join(",");
        let text = self.run(
            &format!("show {unit}"),
            &["show", "--timestamp=unix", "--property", &props, "--", unit],
        )?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect())
    }

    fn loaded(&self, pattern: &str) -> std::result::Result<Vec<String>, String> {
        let mut args = requests::LIST_UNITS.to_vec();
        args.push(pattern);
        let text = self.run(&format!("list-units {pattern}"), &args)?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect())
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
            &self.systemd,
            s.interval(),
        );
        self.save(&record)?;
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
        // The first metrics write (a systemctl call for the unit's figures)
        // waits a moment: the check starts beside the game, and on a busy
        // host the game's start is what players wait for; node exporter
        // reads the file every 15-60 s anyway.
        let first_write = s.grace().min(FIRST_METRICS_DELAY);
        let grace_ends = Instant::now() + s.grace();
        sleep(first_write);
        // Its walk of the generations (at most HOST_WALK_ENTRIES) runs in
        // the grace period, which it does not lengthen.
        metrics.write(&record);
        sleep(grace_ends.saturating_duration_since(Instant::now()));
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
                    return self.ask_systemd(Verb::Restart);
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
                    return self.ask_systemd(Verb::Restart);
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
                match self.systemd.queue(&Request::new(Verb::Update, None, false)) {
                    Ok(()) => {
                        record.updates_queued_total += 1;
                        *too_soon_logged = false;
                        tracing::warn!(
                            health_action = "update-queued",
                            "{name} says Steam has a newer build (\"Your server needs to be restarted \
                             in order to receive the latest update.\"): queued {UPDATE_UNIT}"
                        );
                    }
                    Err(why) => tracing::error!(
                        health_action = "refused",
                        "{name} says Steam has a newer build, and the update cannot be queued: {why}; \
                         check that left4me-requests.socket runs"
                    ),
                }
            }
        }
    }

    /// `--no-block`: the job also restarts or stops this check, which must
    /// not sit waiting for a job that kills it. The record and the journal
    /// entry are written before, so being killed at any point loses nothing.
    fn ask_systemd(&self, verb: Verb) -> Result<()> {
        let unit = server_unit(self.instance.as_str());
        let request = Request::new(verb, Some(&self.instance), false);
        let Err(why) = self.systemd.queue(&request) else {
            tracing::info!(
                "{} of {unit} queued; this check ends with it",
                verb.as_str()
            );
            return Ok(());
        };
        tracing::error!(health_action = "refused", "{why}");
        Err(Failure::new(Kind::ActionRefused, why).hint(
            "check that left4me-requests.socket runs: systemctl status left4me-requests.socket",
        ))
    }

    /// Ends the server as `failed`: SIGSYS to its main process, sent by
    /// root on a `fail` request (the check runs as a user of its own and
    /// cannot signal the game). The server unit has
    /// RestartPreventExitStatus=SIGSYS, so systemd records the signal as
    /// the result and does not restart it, while a crash or an
    /// out-of-memory kill (SIGKILL) still restarts. The reason is logged
    /// before the request, since the server's end stops this check too. If
    /// the request is refused, a plain stop is the fallback: the server
    /// ends inactive rather than failed, and the journal says so.
    fn give_up(&self, record: &mut Record, reason: String) -> Result<()> {
        let unit = server_unit(self.instance.as_str());
        let pid = self.systemd.main_pid(&unit).unwrap_or(0);
        record.give_up(pid, reason.clone(), now_ms());
        self.save(record)?;
        tracing::error!(
            health_action = "failed",
            health_reason = reason.as_str(),
            "ending {unit} as failed (SIGSYS to its main process): {reason}"
        );
        let request = Request::new(Verb::Fail, Some(&self.instance), false);
        match self.systemd.queue(&request) {
            Ok(()) => Ok(()),
            Err(why) => {
                tracing::error!(
                    health_action = "refused",
                    health_reason = why.as_str(),
                    "cannot end {unit} as failed: {why}; stopping it instead, it will end inactive, not failed"
                );
                self.ask_systemd(Verb::Stop)
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

/// systemd as the check and its metrics see it, for their unit tests.
#[cfg(test)]
pub(crate) mod fake {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::Systemd;
    use crate::requests::Request;

    /// Jobs are recorded, never run. `show` answers from the units the test
    /// gives, with only the properties asked for: `systemctl show
    /// --property` prints those and, without --all, none that has no value
    /// (systemctl(1), --all). A unit the test does not give is a show that
    /// fails, with what systemctl 252 says where it cannot reach systemd
    /// (seen in a container without it); systemd itself shows a unit it
    /// does not know with default values, which a test gives when it needs
    /// them.
    /// `queued` holds every request asked for, refused ones too.
    #[derive(Default)]
    pub(crate) struct FakeSystemd {
        pub(crate) queued: RefCell<Vec<(String, String)>>,
        units: HashMap<String, HashMap<String, String>>,
        refused: Vec<&'static str>,
    }

    impl FakeSystemd {
        pub(crate) fn unit(mut self, unit: &str, props: &[(&str, &str)]) -> FakeSystemd {
            let props = props.iter().map(|(k, v)| ((*k).into(), (*v).into()));
            self.units.insert(unit.into(), props.collect());
            self
        }

        /// Requests with `verb` are answered as the request server answers
        /// a refusal.
        pub(crate) fn refusing(mut self, verb: &'static str) -> FakeSystemd {
            self.refused.push(verb);
            self
        }
    }

    impl Systemd for FakeSystemd {
        fn queue(&self, request: &Request) -> Result<(), String> {
            let verb = request.verb().as_str();
            self.queued.borrow_mut().push((verb.into(), request.unit()));
            if self.refused.contains(&verb) {
                return Err(format!("refused (exit 15): no {verb} for you"));
            }
            Ok(())
        }

        fn show(&self, unit: &str, props: &[&str]) -> Result<HashMap<String, String>, String> {
            let known = self.units.get(unit).ok_or_else(|| {
                format!(
                    "systemctl show {unit} failed (exit status: 1): System has not been booted \
                     with systemd as init system (PID 1). Can't operate.\n\
                     Failed to connect to bus: Host is down"
                )
            })?;
            Ok(known
                .iter()
                .filter(|(k, _)| props.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }

        /// The units the test gave, matched against a pattern of the one
        /// form the code uses, `PREFIX*SUFFIX`. With none given, systemd is
        /// out of reach, as for `show` (a real one always has units).
        fn loaded(&self, pattern: &str) -> Result<Vec<String>, String> {
            if self.units.is_empty() {
                return Err(format!(
                    "systemctl list-units {pattern} failed (exit status: 1): Failed to connect to bus: Host is down"
                ));
            }
            let (prefix, suffix) = pattern.split_once('*').expect("a PREFIX*SUFFIX pattern");
            let mut names: Vec<String> = self
                .units
                .keys()
                .filter(|u| u.starts_with(prefix) && u.ends_with(suffix))
                .cloned()
                .collect();
            names.sort();
            Ok(names)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeSystemd;
    use super::*;
    use crate::generation::RestartPolicy;
    use rstest::rstest;
    use std::os::unix::fs::PermissionsExt;

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

    const SERVER: &str = "left4me-server@vs1.service";

    #[rstest]
    #[case::running(Some("1234"), Ok(1234))]
    #[case::stopped(
        Some("0"),
        Err("cannot read the main PID of left4me-server@vs1.service: systemd says MainPID=\"0\"")
    )]
    #[case::no_number(
        Some("x"),
        Err("cannot read the main PID of left4me-server@vs1.service: systemd says MainPID=\"x\"")
    )]
    #[case::no_value(
        Some(""),
        Err("cannot read the main PID of left4me-server@vs1.service: systemd says MainPID=\"\"")
    )]
    #[case::show_fails(
        None,
        Err(
            "cannot read the main PID of left4me-server@vs1.service: systemctl show left4me-server@vs1.service failed (exit status: 1): System has not been booted"
        )
    )]
    fn the_main_pid_from_systemd(
        #[case] main_pid: Option<&str>,
        #[case] expected: std::result::Result<u32, &str>,
    ) {
        let mut fake = FakeSystemd::default();
        if let Some(pid) = main_pid {
            fake = fake.unit(SERVER, &[("MainPID", pid)]);
        }
        match (fake.main_pid(SERVER), expected) {
            (Ok(pid), Ok(want)) => assert_eq!(pid, want),
            (Err(why), Err(want)) => assert!(why.starts_with(want), "{why}"),
            (got, want) => panic!("{got:?}, expected {want:?}"),
        }
    }

    #[rstest]
    #[case::started(true, &[("InactiveExitTimestamp", "@1733368317")], Some(1733368317))]
    #[case::epoch(true, &[("InactiveExitTimestamp", "@0")], None)]
    #[case::not_unix_time(true, &[("InactiveExitTimestamp", "Thu 2024-12-05 03:11:57 UTC")], None)]
    #[case::never_since_boot(true, &[], None)]
    #[case::show_fails(false, &[], None)]
    fn the_last_start_from_systemd(
        #[case] known: bool,
        #[case] props: &[(&str, &str)],
        #[case] expected: Option<u64>,
    ) {
        let mut fake = FakeSystemd::default();
        if known {
            fake = fake.unit(UPDATE_UNIT, props);
        }
        assert_eq!(fake.last_start_s(UPDATE_UNIT), expected);
    }

    /// A stand-in for systemctl that logs its arguments and answers as
    /// systemctl(1) does: `show` prints KEY=VALUE lines on stdout, a
    /// failure is its message on stderr and a non-zero exit. In a temporary
    /// directory, where `args` reads what it was called with.
    fn stand_in(stdout: &str, stderr: &str, exit: u8) -> (tempfile::TempDir, Systemctl) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("systemctl");
        let args = dir.path().join("args");
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"$*\" > '{}'\nprintf '{stdout}'\nprintf '{stderr}' >&2\nexit {exit}\n",
                args.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let requests = dir.path().join("requests.sock");
        (dir, Systemctl { path, requests })
    }

    fn args(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("args")).unwrap()
    }

    #[test]
    fn systemctl_show_reads_key_value_lines() {
        let (dir, s) = stand_in(
            "MainPID=1234\\nInactiveExitTimestamp=@1733368317\\nStatusText=a=b \\n",
            "",
            0,
        );
        let props = s
            .show(SERVER, &["MainPID", "InactiveExitTimestamp", "StatusText"])
            .unwrap();
        assert_eq!(
            args(dir.path()),
            format!(
                "show --timestamp=unix --property MainPID,InactiveExitTimestamp,StatusText -- {SERVER}\n"
            )
        );
        let want: HashMap<String, String> = [
            ("MainPID", "1234"),
            ("InactiveExitTimestamp", "@1733368317"),
            ("StatusText", "a=b"),
        ]
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
        assert_eq!(props, want);
        assert_eq!(s.main_pid(SERVER), Ok(1234));
        assert_eq!(s.last_start_s(SERVER), Some(1733368317));
    }

    /// A request server that answers `busy` is asked again, a second apart;
    /// any other refusal is final at once.
    #[test_log::test]
    fn a_busy_request_server_is_asked_again() {
        use std::io::{BufRead, BufReader, Write};
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("requests.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let answers = [
            "error 14 16 requests are being served",
            "error 14 16 requests are being served",
            "ok",
            "error 10 bad",
        ];
        let server = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for answer in answers {
                let (s, _) = listener.accept().unwrap();
                let mut line = String::new();
                BufReader::new(&s).read_line(&mut line).unwrap();
                lines.push(line);
                (&s).write_all(format!("{answer}\n").as_bytes()).unwrap();
            }
            lines
        });
        let s = Systemctl {
            path: dir.path().join("systemctl"),
            requests: socket,
        };
        let vs1 = InstanceName::parse("vs1").unwrap();
        let t0 = Instant::now();
        s.queue(&Request::new(Verb::Restart, Some(&vs1), false))
            .unwrap();
        assert!(
            t0.elapsed() >= std::time::Duration::from_secs(2),
            "asked again a second apart"
        );
        let why = s
            .queue(&Request::new(Verb::Stop, Some(&vs1), false))
            .unwrap_err();
        assert!(why.contains("bad"), "{why}");
        assert_eq!(
            server.join().unwrap(),
            [
                "restart vs1 no-block\n",
                "restart vs1 no-block\n",
                "restart vs1 no-block\n",
                "stop vs1 no-block\n"
            ]
        );
    }

    #[test]
    fn systemctl_failures_say_what_failed_and_why() {
        let (dir, s) = stand_in("", "Failed to connect to bus: Permission denied", 1);
        let show = s.show(SERVER, &["MainPID"]).unwrap_err();
        assert!(
            show.starts_with(&format!(
                "systemctl show {SERVER} failed (exit status: 1): "
            )),
            "{show}"
        );
        // No request server: the restart's refusal names the socket.
        let restart = Request::new(
            Verb::Restart,
            Some(&InstanceName::parse("vs1").unwrap()),
            false,
        );
        let why = s.queue(&restart).unwrap_err();
        assert!(
            why.contains("cannot connect to ") && why.contains("requests.sock"),
            "{why}"
        );
        let gone = Systemctl {
            path: dir.path().join("absent"),
            requests: dir.path().join("requests.sock"),
        };
        let why = gone.show(SERVER, &["MainPID"]).unwrap_err();
        assert!(why.starts_with("cannot run "), "{why}");
        assert_eq!(gone.last_start_s(UPDATE_UNIT), None);
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
        run_with(
            events,
            fake,
            Settings {
                map_load_sec,
                ..Settings::default()
            },
        )
    }

    /// [`run`] with `settings`, but always a port nobody answers on and
    /// short intervals.
    fn run_with(
        events: Option<super::super::output::Events>,
        fake: &FakeSystemd,
        settings: Settings,
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
            ..settings
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
            metrics_dir: dir.path().join("no-metrics"),
            events: Some(events_path),
        };
        monitor.run(settings, watcher).unwrap();
        let record = Record::load(&dir.path().join("run"), "vs1")
            .unwrap()
            .unwrap();
        (fake.queued.borrow().clone(), record)
    }

    /// systemd with the update unit last started at `update_started_s`.
    fn fake(update_started_s: Option<u64>) -> FakeSystemd {
        let started = update_started_s.map(|s| format!("@{s}"));
        let props: Vec<(&str, &str)> = started
            .as_deref()
            .map(|s| ("InactiveExitTimestamp", s))
            .into_iter()
            .collect();
        FakeSystemd::default().unit(UPDATE_UNIT, &props)
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

    /// With the budget spent, root is asked to end the server as failed;
    /// a refusal of that ends it with a stop instead.
    #[rstest]
    #[case::fail_request(FakeSystemd::default(), &["fail"])]
    #[case::refused_then_stop(FakeSystemd::default().refusing("fail"), &["fail", "stop"])]
    #[test_log::test]
    fn a_spent_budget_asks_root_to_end_the_server_as_failed(
        #[case] fake: FakeSystemd,
        #[case] asked: &[&str],
    ) {
        let fake = fake.unit(SERVER, &[("MainPID", "4321")]);
        let (queued, record) = run_with(
            None,
            &fake,
            Settings {
                restarts_max: 0,
                map_load_sec: 120.0,
                ..Settings::default()
            },
        );
        let want: Vec<(String, String)> =
            asked.iter().map(|v| ((*v).into(), SERVER.into())).collect();
        assert_eq!(queued, want);
        let gave_up = record.gave_up.expect("a give-up in the record");
        assert_eq!(gave_up.server_pid, 4321);
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
        assert_eq!(queued, [("update".into(), UPDATE_UNIT.into()), restart()]);
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
