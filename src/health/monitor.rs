//! The check's main loop, its two actions on the server (through systemctl,
//! as the service user, so polkit decides exactly as for the web app), and
//! the `verdict` the server's ExecStopPost= runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::Instant;

use super::record::{Action, Record};
use super::settings::Settings;
use super::{Problem, exit, now_ms, secs, server_unit};
use crate::a2s;
use crate::error::{Failure, Kind};
use crate::name::InstanceName;

type Result<T> = std::result::Result<T, Problem>;

pub struct Monitor {
    pub instance: InstanceName,
    pub run_dir: PathBuf,
    pub systemctl: PathBuf,
}

impl Monitor {
    /// Checks until the server needs restarting or stopping, asks systemd
    /// for that, and returns: the request restarts or stops this check too
    /// (it is part of the server unit), so there is nothing left to do. The
    /// returned code is the process's exit code.
    pub fn run(&self, settings: Settings) -> Result<u8> {
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
        let mut record = Record::start(name, std::process::id(), settings, previous, now_ms());
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
                Action::GiveUp { reason } => {
                    let invocation = self.server_invocation().unwrap_or_else(|e| {
                        tracing::warn!("{e}; the server will end inactive, not failed");
                        String::new()
                    });
                    record.give_up(invocation, reason.clone(), now_ms());
                    self.save(&record)?;
                    tracing::error!(
                        health_action = "stop",
                        health_reason = reason.as_str(),
                        "stopping {} as failed: {reason}",
                        server_unit(name)
                    );
                    return self.ask_systemd("stop");
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
            Problem::unexpected(format!(
                "cannot write the health record {}: {e}",
                Record::path(&self.run_dir, record.instance.as_str()).display()
            ))
        })
    }

    fn systemctl(&self, args: &[&str]) -> Result<std::process::Output> {
        Command::new(&self.systemctl)
            .args(args)
            .output()
            .map_err(|e| {
                Problem::unexpected(format!("cannot run {}: {e}", self.systemctl.display()))
            })
    }

    /// `--no-block`: the job also restarts or stops this check, which must
    /// not sit waiting for a job that kills it. The record and the journal
    /// entry are written before, so being killed at any point loses nothing.
    fn ask_systemd(&self, verb: &str) -> Result<u8> {
        let unit = server_unit(self.instance.as_str());
        let out = self.systemctl(&["--no-ask-password", "--no-block", verb, &unit])?;
        if out.status.success() {
            tracing::info!("{verb} of {unit} queued; this check ends with it");
            return Ok(0);
        }
        tracing::error!(
            health_action = "refused",
            "systemctl {verb} {unit} failed ({}): {}; check the polkit rule \
             (left4me.rules) grants the service user {verb} on {unit}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(exit::ACTION_REFUSED)
    }

    fn server_invocation(&self) -> Result<String> {
        let unit = server_unit(self.instance.as_str());
        let out = self.systemctl(&["show", "--property=InvocationID", "--value", &unit])?;
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() || id.is_empty() {
            return Err(Problem::unexpected(format!(
                "cannot read the InvocationID of {unit} ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(id)
    }
}

/// Run by the server's ExecStopPost=, inside the server run it judges: fails
/// (exit 20, after saying why) when the health check stopped exactly this run
/// (INVOCATION_ID, set by systemd), so systemd records the stop as a failure
/// and the unit ends `failed`. Anything else, including no or an unreadable
/// record, passes: a stop must never fail because of the health check's files.
pub fn verdict(run_dir: &Path, instance: &InstanceName, invocation: Option<&str>) -> u8 {
    let Some(invocation) = invocation.filter(|i| !i.is_empty()) else {
        return 0;
    };
    match Record::load(run_dir, instance.as_str()) {
        Ok(Some(Record {
            gave_up: Some(g), ..
        })) if g.server_invocation == invocation => {
            tracing::error!(
                health_action = "failed",
                health_reason = g.reason.as_str(),
                "{} stopped by its health check: {}",
                server_unit(instance.as_str()),
                g.reason
            );
            exit::STOPPED_BY_HEALTH
        }
        Ok(_) => 0,
        Err(e) => {
            tracing::warn!("{e}; not judging this stop");
            0
        }
    }
}

/// The record of one instance for `status`, or a Failure naming what to do.
pub fn load_for_status(run_dir: &Path, instance: &InstanceName) -> Result<Record> {
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
        ))
        .into()),
        Err(e) => Err(Failure::new(Kind::InvalidConfig, e.to_string()).into()),
    }
}

/// Whether the process that wrote the record still runs as a health check.
pub fn running(record: &Record) -> bool {
    std::fs::read_to_string(format!("/proc/{}/comm", record.pid))
        .is_ok_and(|comm| comm.trim_end() == "left4me-health")
}
