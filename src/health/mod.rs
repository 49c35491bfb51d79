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
pub(crate) mod metrics;
pub(crate) mod monitor;
pub(crate) mod record;
pub(crate) mod report;
pub(crate) mod rollover;
pub(crate) mod settings;

pub use cli::main;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{ExitRow, Failure, row};

/// Where each instance's record lives: DIR/INSTANCE/status.json. The unit's
/// RuntimeDirectory=left4me-health/%i creates it.
pub(crate) const RUN_DIR: &str = "/run/left4me-health";

/// Exit codes of left4me-health beyond the shared ones in [`crate::error::Kind`]
/// (10 invalid name, 11 invalid setting, 12 no record).
pub(crate) mod exit {
    /// `run`: systemctl refused the restart or stop (polkit rule missing?).
    pub(crate) const ACTION_REFUSED: u8 = 21;
    /// `query`: no usable answer.
    pub(crate) const NO_ANSWER: u8 = 22;
}

/// Every exit code of left4me-health: `--help`, the man page and
/// docs/health.md are generated from or checked against this table.
pub(crate) const EXIT_CODES: [ExitRow; 8] = [
    row(0, "", "done; status: every record read; query: answered"),
    row(2, "usage", "bad command line"),
    row(10, "invalid-name", "invalid instance name"),
    row(
        11,
        "invalid-setting",
        "invalid setting (the message names the variable), or an unreadable record",
    ),
    row(
        12,
        "missing",
        "status: no record for the instance (the check has not run since boot)",
    ),
    row(
        exit::ACTION_REFUSED,
        "action-refused",
        "run: systemctl refused the restart or stop (check the polkit rule)",
    ),
    row(exit::NO_ANSWER, "no-answer", "query: no usable answer"),
    row(1, "unexpected", "anything else (unexpected)"),
];

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
pub(crate) fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn server_unit(instance: &str) -> String {
    format!("left4me-server@{instance}.service")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::error::Kind;

    #[test_log::test]
    fn the_shared_codes_are_the_helpers_and_none_repeats() {
        let code = |label: &str| EXIT_CODES.iter().find(|r| r.label == label).map(|r| r.code);
        assert_eq!(code("invalid-name"), Some(Kind::InvalidName.exit_code()));
        assert_eq!(
            code("invalid-setting"),
            Some(Kind::InvalidConfig.exit_code())
        );
        assert_eq!(code("missing"), Some(Kind::Missing.exit_code()));
        let mut codes: Vec<u8> = EXIT_CODES.iter().map(|r| r.code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), EXIT_CODES.len());
    }

    #[test_log::test]
    fn long_help_and_docs_show_the_table() {
        let help = cli::Cli::command().render_long_help().to_string();
        let flat = format!(
            " {} ",
            help.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        for r in &EXIT_CODES {
            let line = format!(" {} {} ", r.code, r.meaning);
            assert!(flat.contains(&line), "{line} missing from:\n{help}");
        }
        let doc = include_str!("../../docs/health.md");
        let rows: Vec<String> = doc
            .split("### Exit codes\n")
            .nth(1)
            .expect("docs/health.md has an Exit codes section")
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>().join("|"))
            .collect();
        let expected: Vec<String> = EXIT_CODES
            .iter()
            .map(|r| format!("|{}|{}|{}|", r.code, r.label, r.meaning))
            .collect();
        assert_eq!(rows, expected);
    }
}
