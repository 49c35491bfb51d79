//! Failures: each has a kind with its own exit code, a message saying what is
//! wrong and where, and a hint saying what to do. The exit-code table below is
//! the one definition of the contract: `--help`, the man page and the
//! README's table are all checked against or generated from it.

use std::fmt;
use std::path::Path;

use rustix::io::Errno;

/// Why the helper failed. Exit codes are part of the contract (README, "Exit
/// codes"): scripts and systemd's `status=` in the journal rely on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Unexpected,
    InvalidName,
    InvalidConfig,
    Missing,
    UnsafePath,
    Busy,
    Conflict,
    LockTimeout,
    KernelLimit,
    NotPermitted,
    UnknownUser,
    Incomplete,
}

/// One row of the exit-code table.
pub(crate) struct ExitRow {
    pub(crate) code: u8,
    pub(crate) label: &'static str,
    pub(crate) meaning: &'static str,
}

pub(crate) const fn row(code: u8, label: &'static str, meaning: &'static str) -> ExitRow {
    ExitRow {
        code,
        label,
        meaning,
    }
}

/// Every exit code the helper can end with, in the README's order.
pub(crate) const EXIT_CODES: [ExitRow; 14] = [
    row(0, "", "done (including the no-op cases)"),
    row(
        1,
        "unexpected",
        "an OS error nobody anticipated, e.g. a read-only or full filesystem (the message names the call and path)",
    ),
    row(2, "usage", "bad command line (clap)"),
    row(
        10,
        "invalid-name",
        "instance or overlay name outside the charset/length",
    ),
    row(
        11,
        "invalid-config",
        "instance.env malformed, too large, or with a key outside L4D2_* (the message has file:line)",
    ),
    row(
        12,
        "missing",
        "state dir, instance, overlay or installation does not exist",
    ),
    row(
        13,
        "unsafe-path",
        "a symlink, FIFO, file, hard link or wrongly owned dir or layer where the layout needs something else",
    ),
    row(
        14,
        "busy",
        "umount got EBUSY (the message names the holders: cwd, open or mapped files, other mount namespaces still containing it); a discarded layer kept being refilled or moved while it was deleted (left for the next sweep)",
    ),
    row(
        15,
        "conflict",
        "reset while mounted; mounted with another stack; a foreign mount on merged/; a commit while processes of the update user still run; an import while an update builds .next/",
    ),
    row(
        16,
        "lock-timeout",
        "another left4me-overlay held a lock for 30 s: the instance's, or a host-wide one (the installations, the generation verbs)",
    ),
    row(
        17,
        "kernel-limit",
        "the kernel cannot do it: no overlay, no idmapped mounts, too many layers for this kernel",
    ),
    row(
        18,
        "not-permitted",
        "not root, or the kernel refused root (EPERM/EACCES: a missing capability, an LSM, an immutable file)",
    ),
    row(
        19,
        "unknown-user",
        "LEFT4ME_USER/LEFT4ME_GROUP do not exist, or are root (uid 0 or gid 0); the update user does not exist, or is root or the service user",
    ),
    row(
        20,
        "incomplete",
        "a new generation is not a complete game: no srcds_run, or Steam's app manifest says the download stopped half-way",
    ),
];

impl Kind {
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Kind::Unexpected => 1,
            Kind::InvalidName => 10,
            Kind::InvalidConfig => 11,
            Kind::Missing => 12,
            Kind::UnsafePath => 13,
            Kind::Busy => 14,
            Kind::Conflict => 15,
            Kind::LockTimeout => 16,
            Kind::KernelLimit => 17,
            Kind::NotPermitted => 18,
            Kind::UnknownUser => 19,
            Kind::Incomplete => 20,
        }
    }

    /// The kind a helper run ended with, from its exit status (the admin
    /// command reports a failed unit's helper run this way).
    pub(crate) fn from_exit_code(code: u8) -> Option<Kind> {
        ALL_KINDS.into_iter().find(|k| k.exit_code() == code)
    }

    pub(crate) fn label(self) -> &'static str {
        let code = self.exit_code();
        EXIT_CODES
            .iter()
            .find(|r| r.code == code)
            .map_or("unexpected", |r| r.label)
    }
}

const ALL_KINDS: [Kind; 12] = [
    Kind::Unexpected,
    Kind::InvalidName,
    Kind::InvalidConfig,
    Kind::Missing,
    Kind::UnsafePath,
    Kind::Busy,
    Kind::Conflict,
    Kind::LockTimeout,
    Kind::KernelLimit,
    Kind::NotPermitted,
    Kind::UnknownUser,
    Kind::Incomplete,
];

/// The exit-code section of `--help` and the man page.
/// Each meaning is wrapped at 80 columns under its code.
pub(crate) fn exit_codes_help() -> String {
    exit_table_help(&EXIT_CODES)
}

/// `rows` as the exit-code section of a program's `--help` and man page
/// (left4me-health has a table of its own).
pub(crate) fn exit_table_help(rows: &[ExitRow]) -> String {
    let mut text = String::from("Exit codes:\n");
    for r in rows {
        let mut line = format!("  {:<3}", r.code);
        for word in r.meaning.split(' ') {
            if line.len() + 1 + word.len() > 80 {
                text += &line;
                text += "\n";
                line = " ".repeat(5);
            }
            line += " ";
            line += word;
        }
        text += &line;
        text += "\n";
    }
    text
}

#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) kind: Kind,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

pub(crate) type Result<T, E = Failure> = std::result::Result<T, E>;

impl Failure {
    pub(crate) fn new(kind: Kind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The same failure with `prefix` in front of its message.
    pub(crate) fn prefixed(mut self, prefix: &str) -> Self {
        self.message = format!("{prefix}{}", self.message);
        self
    }

    /// An OS error as a failure, where the caller knows nothing more specific
    /// (fsx, idmap, overlay and discard explain the errors they expect
    /// themselves): `what` failed on `shown`. Only the causes the contract
    /// names get their own kind; anything else is unexpected (exit 1).
    pub(crate) fn os(shown: &Path, what: &str, e: Errno) -> Failure {
        let (kind, hint) = match e {
            Errno::NOENT => (
                Kind::Missing,
                "create it, or check --state-dir / LEFT4ME_STATE_DIR",
            ),
            Errno::LOOP => (
                Kind::UnsafePath,
                "remove the symlink; left4me-overlay creates the directories it needs",
            ),
            Errno::NOTDIR => (
                Kind::UnsafePath,
                "remove whatever is there; left4me-overlay creates the directories it needs",
            ),
            Errno::PERM | Errno::ACCESS => (
                Kind::NotPermitted,
                "run it as root with the usual capabilities (systemd's root units have them); \
                 an LSM, an immutable attribute (lsattr) or a container can also refuse root",
            ),
            Errno::ROFS => (
                Kind::Unexpected,
                "the filesystem holding the state directory is read-only; remount it read-write",
            ),
            Errno::NOSPC | Errno::DQUOT => (
                Kind::Unexpected,
                "the filesystem is full; free space (reset discards an instance's writes)",
            ),
            _ => (
                Kind::Unexpected,
                "an error left4me-overlay does not anticipate; please report it with this message",
            ),
        };
        Failure::new(kind, format!("{what} {}: {e}", shown.display())).hint(hint)
    }

    /// A failure of a step that has no path of its own (a namespace, a pipe).
    pub(crate) fn syscall(what: &str, e: Errno) -> Failure {
        let mut f = Failure::os(Path::new(""), what, e);
        f.message = format!("{what}: {e}");
        f
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const KINDS: [Kind; 12] = ALL_KINDS;

    #[test_log::test]
    fn every_kind_has_its_own_row() {
        for kind in KINDS {
            let rows: Vec<_> = EXIT_CODES
                .iter()
                .filter(|r| r.code == kind.exit_code())
                .collect();
            assert_eq!(rows.len(), 1, "{kind:?}");
            assert_eq!(rows[0].label, kind.label());
            assert_eq!(Kind::from_exit_code(kind.exit_code()), Some(kind));
        }
        // Kinds plus the two codes that are not failures (0 done, 2 usage).
        assert_eq!(EXIT_CODES.len(), KINDS.len() + 2);
    }

    /// The README's table is the contract users read; it must say exactly
    /// what the helper does.
    #[test_log::test]
    fn readme_table_matches_the_definition() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("### Exit codes\n")
            .nth(1)
            .expect("README has an Exit codes section");
        let rows: Vec<(String, String, String)> = section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(|l| {
                let cells: Vec<String> = l
                    .trim()
                    .trim_matches('|')
                    .split('|')
                    .map(|c| c.trim().to_owned())
                    .collect();
                assert_eq!(cells.len(), 3, "{l}");
                (cells[0].clone(), cells[1].clone(), cells[2].clone())
            })
            .collect();
        let expected: Vec<(String, String, String)> = EXIT_CODES
            .iter()
            .map(|r| (r.code.to_string(), r.label.to_owned(), r.meaning.to_owned()))
            .collect();
        assert_eq!(rows, expected);
    }

    #[test_log::test]
    fn help_lists_every_code() {
        let help = exit_codes_help();
        let flat = format!(
            " {} ",
            help.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        for r in &EXIT_CODES {
            assert!(
                flat.contains(&format!(" {} {} ", r.code, r.meaning)),
                "{help}"
            );
        }
        assert!(help.lines().all(|l| l.len() <= 80), "{help}");
    }

    #[rstest]
    #[case(Errno::NOENT, 12)]
    #[case(Errno::LOOP, 13)]
    #[case(Errno::NOTDIR, 13)]
    #[case(Errno::PERM, 18)]
    #[case(Errno::ACCESS, 18)]
    #[case(Errno::ROFS, 1)]
    #[case(Errno::NOSPC, 1)]
    #[case(Errno::IO, 1)]
    #[case(Errno::INVAL, 1)]
    #[test_log::test]
    fn errno_kinds(#[case] e: Errno, #[case] code: u8) {
        let f = Failure::os(Path::new("/s/runtime"), "mkdir", e);
        assert_eq!(f.kind.exit_code(), code, "{e:?}");
        assert!(f.message.starts_with("mkdir /s/runtime: "), "{}", f.message);
        assert!(f.hint.is_some());
    }

    #[test_log::test]
    fn syscall_failures_name_the_call_only() {
        let f = Failure::syscall("unshare(CLONE_NEWNS)", Errno::INVAL);
        assert_eq!(f.message, format!("unshare(CLONE_NEWNS): {}", Errno::INVAL));
        assert_eq!(f.kind, Kind::Unexpected);
    }
}
