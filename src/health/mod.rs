//! The per-instance health check (`left4me-health`, run by
//! left4me-health@.service as the service user, never by root): after a
//! grace period it asks the instance's own port for A2S_INFO every interval
//! and restarts the server through polkit after N consecutive failures, within
//! a restart budget; past the budget it sends the server's main process
//! SIGSYS, which the server unit does not restart, so it ends `failed`.
//! With the update restart policy `when-empty` it also restarts an empty
//! server that runs an older installation generation (`rollover`).
//! docs/health.md has the design and the reasons for it.

mod cli;
pub(crate) mod monitor;
pub(crate) mod record;
pub(crate) mod report;
pub(crate) mod rollover;
pub(crate) mod settings;

pub use cli::main;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::Failure;

/// Where each instance's record lives: DIR/INSTANCE/status.json. The unit's
/// RuntimeDirectory=left4me-health/%i creates it.
pub const RUN_DIR: &str = "/run/left4me-health";

/// Exit codes of left4me-health beyond the shared ones in [`crate::error::Kind`]
/// (10 invalid name, 11 invalid setting, 12 no record).
pub mod exit {
    /// `run`: systemctl refused the restart or stop (polkit rule missing?).
    pub const ACTION_REFUSED: u8 = 21;
    /// `query`: no usable answer.
    pub const NO_ANSWER: u8 = 22;
}

/// Why left4me-health stops, with its exit code: the crate's Failures keep
/// theirs (10 invalid name, 11 invalid setting, 12 missing), anything else
/// (the record cannot be written, systemctl cannot be run) is 1.
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) code: u8,
    pub(crate) text: String,
}

impl Problem {
    pub(crate) fn unexpected(text: String) -> Problem {
        Problem { code: 1, text }
    }
}

impl From<Failure> for Problem {
    fn from(f: Failure) -> Problem {
        Problem {
            code: f.kind.exit_code(),
            text: f.to_string(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A duration as people write it in settings: "2 s", "0.5 s".
pub fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub fn server_unit(instance: &str) -> String {
    format!("left4me-server@{instance}.service")
}
