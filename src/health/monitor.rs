//! The check's main loop and its two actions on the server: a restart
//! through systemctl, as the service user, so polkit decides exactly as for
//! the web app; and, once the restart budget is spent, SIGSYS to the server's
//! main process, which the server unit's RestartPreventExitStatus= turns into
//! `failed` without a restart. The same restart also moves an empty server
//! onto a newer installation generation (the `when-empty` policy).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::Instant;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::record::{Action, Record};
use super::rollover::Watcher;
use super::settings::Settings;
use super::{now_ms, secs, server_unit};
use crate::a2s;
use crate::error::{Failure, Kind, Result};
use crate::name::InstanceName;

pub(crate) struct Monitor {
    pub instance: InstanceName,
    pub run_dir: PathBuf,
    pub systemctl: PathBuf,
}

impl Monitor {
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
        sleep(s.grace());
        let mut next = Instant::now();
        loop {
            let outcome = a2s::query_local(s.port, s.timeout());
            let action = record.observe(&outcome, now_ms());
            match action {
                Action::Nothing => {}
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
                    tracing::error!(
                        health_action = "restart",
                        health_reason = reason.as_str(),
                        "restarting {}: {reason}",
                        server_unit(name)
                    );
                    return self.ask_systemd("restart");
                }
                Action::GiveUp { reason } => return self.give_up(&mut record, reason),
            }
            if let Ok(answer) = &outcome {
                let last = record.last_rollover.as_ref();
                if let Some(r) = watcher.after_answer(name, &answer.info, last, now_ms()) {
                    let reason = r.reason(name);
                    let (from, to) = (r.from.clone(), r.to.clone());
                    record.roll_over(r);
                    self.save(&record)?;
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
            self.save(&record)?;
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

    fn systemctl(&self, args: &[&str]) -> Result<std::process::Output> {
        Command::new(&self.systemctl)
            .args(args)
            .output()
            .map_err(|e| {
                Failure::new(
                    Kind::Unexpected,
                    format!("cannot run {}: {e}", self.systemctl.display()),
                )
            })
    }

    /// `--no-block`: the job also restarts or stops this check, which must
    /// not sit waiting for a job that kills it. The record and the journal
    /// entry are written before, so being killed at any point loses nothing.
    fn ask_systemd(&self, verb: &str) -> Result<()> {
        let unit = server_unit(self.instance.as_str());
        let out = self.systemctl(&["--no-ask-password", "--no-block", verb, &unit])?;
        if out.status.success() {
            tracing::info!("{verb} of {unit} queued; this check ends with it");
            return Ok(());
        }
        let why = format!(
            "systemctl {verb} {unit} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
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
        let pid = self.server_main_pid();
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

    /// The server's MainPID, read over D-Bus (reading needs no polkit grant).
    fn server_main_pid(&self) -> std::result::Result<u32, String> {
        let unit = server_unit(self.instance.as_str());
        let out = self
            .systemctl(&["show", "--property=MainPID", "--value", &unit])
            .map_err(|p| p.to_string())?;
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
