//! Failures: each has a kind with its own exit code, a message saying what is
//! wrong and where, and a hint saying what to do. The exit-code table below is
//! the one definition of the contract: `--help`, the man page and the
//! table in docs/helper.md are all checked against or generated from it.

use std::fmt;
use std::path::Path;

use rustix::io::Errno;

/// Why a program of the crate failed. Exit codes are part of the contract
/// (docs/helper.md and docs/health.md, "Exit codes"): scripts and systemd's `status=` in
/// the journal rely on them. One enum for every binary, so no two programs
/// give one code two meanings; each program's table lists the kinds it
/// ends with.
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
    /// left4me-health run: systemctl refused the restart or stop.
    ActionRefused,
    /// left4me-health query: no usable answer.
    NoAnswer,
    PortConflict,
    UnknownCpu,
    /// generation fetch: steamcmd did not install the app.
    Steam,
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

/// The row of a failure kind: its code and label from [`Kind`], the meaning
/// in the words of the program whose table it is.
pub(crate) const fn kind_row(kind: Kind, meaning: &'static str) -> ExitRow {
    row(kind.exit_code(), kind.label(), meaning)
}

/// Every exit code the helper can end with, in docs/helper.md's order.
pub(crate) const EXIT_CODES: [ExitRow; 17] = [
    row(0, "", "done (including the no-op cases)"),
    kind_row(
        Kind::Unexpected,
        "an OS error nobody anticipated, e.g. a read-only or full filesystem (the message names the call and path)",
    ),
    row(2, "usage", "bad command line (clap)"),
    kind_row(
        Kind::InvalidName,
        "instance or overlay name outside the charset/length",
    ),
    kind_row(
        Kind::InvalidConfig,
        "instance.env malformed, too large, or with a key outside L4D2_* (the message has file:line)",
    ),
    kind_row(
        Kind::Missing,
        "state dir, instance, overlay or installation does not exist",
    ),
    kind_row(
        Kind::UnsafePath,
        "a symlink, FIFO, file, hard link or wrongly owned dir or layer where the layout needs something else; a mount point inside a tree being deleted",
    ),
    kind_row(
        Kind::Busy,
        "umount got EBUSY (the message names the holders: cwd, open or mapped files, other mount namespaces still containing it); a discarded layer kept being refilled or moved while it was deleted (left for the next sweep)",
    ),
    kind_row(
        Kind::Conflict,
        "reset while mounted; mounted with another stack; a foreign mount on merged/; a mount past the host's caps (256 instance overlays mounted, 1,024 instance names in runtime/); a commit while processes of the update user still run; a prepare or import while an update or verification builds .next/; a verification that finds Steam at another build than the current generation, or a shared tree to validate",
    ),
    kind_row(
        Kind::LockTimeout,
        "another left4me-overlay held a lock for 30 s: the instance's, or a host-wide one (the installations, the generation verbs, the instances' ports)",
    ),
    kind_row(
        Kind::KernelLimit,
        "the kernel cannot do it: no overlay, no idmapped mounts, too many layers for this kernel",
    ),
    kind_row(
        Kind::NotPermitted,
        "not root, or the kernel refused root (EPERM/EACCES: a missing capability, an LSM, an immutable file)",
    ),
    kind_row(
        Kind::UnknownUser,
        "LEFT4ME_USER/LEFT4ME_GROUP do not exist, or are root (uid 0 or gid 0); the update user does not exist, or is root or the service user",
    ),
    kind_row(
        Kind::Incomplete,
        "a new generation is not a complete game: no srcds_run, Steam's app manifest says the download stopped half-way, or steamcmd's output lacks its success line",
    ),
    kind_row(
        Kind::PortConflict,
        "a mounted instance already uses one of the instance's ports (game, client or SourceTV; the message names the instance and the port)",
    ),
    kind_row(
        Kind::UnknownCpu,
        "L4D2_CPUS names a CPU this host does not have online",
    ),
    kind_row(
        Kind::Steam,
        "steamcmd did not install the app (generation fetch): Steam refused the platform ('Invalid platform') or the login (an expired session), or no success line",
    ),
];

impl Kind {
    pub(crate) const fn exit_code(self) -> u8 {
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
            Kind::ActionRefused => 21,
            Kind::NoAnswer => 22,
            Kind::PortConflict => 23,
            Kind::UnknownCpu => 24,
            Kind::Steam => 25,
        }
    }

    /// The kind a helper run ended with, from its exit status (the admin
    /// command reports a failed unit's helper run this way).
    pub(crate) fn from_exit_code(code: u8) -> Option<Kind> {
        ALL_KINDS.into_iter().find(|k| k.exit_code() == code)
    }

    pub(crate) const fn label(self) -> &'static str {
        match self {
            Kind::Unexpected => "unexpected",
            Kind::InvalidName => "invalid-name",
            Kind::InvalidConfig => "invalid-config",
            Kind::Missing => "missing",
            Kind::UnsafePath => "unsafe-path",
            Kind::Busy => "busy",
            Kind::Conflict => "conflict",
            Kind::LockTimeout => "lock-timeout",
            Kind::KernelLimit => "kernel-limit",
            Kind::NotPermitted => "not-permitted",
            Kind::UnknownUser => "unknown-user",
            Kind::Incomplete => "incomplete",
            Kind::ActionRefused => "action-refused",
            Kind::NoAnswer => "no-answer",
            Kind::PortConflict => "port-conflict",
            Kind::UnknownCpu => "unknown-cpu",
            Kind::Steam => "steam",
        }
    }
}

/// Every kind. A new kind must be added here too; the tests' exhaustive
/// match (`health_only`) stops compiling until someone looks.
const ALL_KINDS: [Kind; 17] = [
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
    Kind::ActionRefused,
    Kind::NoAnswer,
    Kind::PortConflict,
    Kind::UnknownCpu,
    Kind::Steam,
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
        let mut line = if r.label.is_empty() {
            format!("  {:<3}", r.code)
        } else {
            format!("  {:<3} {}:", r.code, r.label)
        };
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
pub(crate) mod tests {
    use super::*;
    use rstest::rstest;

    /// The kinds only left4me-health ends with (its own table, health::EXIT_CODES).
    fn health_only(kind: Kind) -> bool {
        match kind {
            Kind::ActionRefused | Kind::NoAnswer => true,
            Kind::Unexpected
            | Kind::InvalidName
            | Kind::InvalidConfig
            | Kind::Missing
            | Kind::UnsafePath
            | Kind::Busy
            | Kind::Conflict
            | Kind::LockTimeout
            | Kind::KernelLimit
            | Kind::NotPermitted
            | Kind::UnknownUser
            | Kind::Incomplete
            | Kind::PortConflict
            | Kind::UnknownCpu
            | Kind::Steam => false,
        }
    }

    #[test_log::test]
    fn no_two_kinds_share_a_code_or_label() {
        for (i, a) in ALL_KINDS.iter().enumerate() {
            for b in &ALL_KINDS[i + 1..] {
                assert_ne!(a.exit_code(), b.exit_code(), "{a:?} {b:?}");
                assert_ne!(a.label(), b.label(), "{a:?} {b:?}");
            }
        }
    }

    #[test_log::test]
    fn every_kind_of_the_helper_has_its_own_row() {
        let helpers: Vec<Kind> = ALL_KINDS.into_iter().filter(|k| !health_only(*k)).collect();
        for kind in &helpers {
            let rows: Vec<_> = EXIT_CODES
                .iter()
                .filter(|r| r.code == kind.exit_code())
                .collect();
            assert_eq!(rows.len(), 1, "{kind:?}");
            assert_eq!(rows[0].label, kind.label());
            assert_eq!(Kind::from_exit_code(kind.exit_code()), Some(*kind));
        }
        // Kinds plus the two codes that are not failures (0 done, 2 usage).
        assert_eq!(EXIT_CODES.len(), helpers.len() + 2);
    }

    /// docs/helper.md's table is the contract users read; it must say exactly
    /// what the helper does.
    #[test_log::test]
    fn readme_table_matches_the_definition() {
        let readme = include_str!("../docs/helper.md");
        let section = readme
            .split("## Exit codes\n")
            .nth(1)
            .expect("docs/helper.md has an Exit codes section");
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

    /// How a row reads in `--help` once its line breaks are undone.
    pub(crate) fn shown_row(r: &ExitRow) -> String {
        if r.label.is_empty() {
            format!(" {} {} ", r.code, r.meaning)
        } else {
            format!(" {} {}: {} ", r.code, r.label, r.meaning)
        }
    }

    #[test_log::test]
    fn help_lists_every_code() {
        let help = exit_codes_help();
        let flat = format!(
            " {} ",
            help.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        for r in &EXIT_CODES {
            assert!(flat.contains(&shown_row(r)), "{help}");
        }
        assert!(help.lines().all(|l| l.len() <= 80), "{help}");
    }

    /// Each errno maps to its exit code and to the hint for that cause (what
    /// the user should do), not to any hint.
    #[rstest]
    #[case(Errno::NOENT, 12, "check --state-dir")]
    #[case(Errno::LOOP, 13, "remove the symlink")]
    #[case(Errno::NOTDIR, 13, "remove whatever is there")]
    #[case(Errno::PERM, 18, "run it as root")]
    #[case(Errno::ACCESS, 18, "run it as root")]
    #[case(Errno::ROFS, 1, "remount it read-write")]
    #[case(Errno::NOSPC, 1, "the filesystem is full")]
    #[case(Errno::DQUOT, 1, "the filesystem is full")]
    #[case(Errno::IO, 1, "please report it")]
    #[case(Errno::INVAL, 1, "please report it")]
    #[test_log::test]
    fn errno_kinds(#[case] e: Errno, #[case] code: u8, #[case] hint: &str) {
        let f = Failure::os(Path::new("/s/runtime"), "mkdir", e);
        assert_eq!(f.kind.exit_code(), code, "{e:?}");
        assert!(f.message.starts_with("mkdir /s/runtime: "), "{}", f.message);
        let got = f.hint.unwrap_or_default();
        assert!(got.contains(hint), "{e:?}: {got}");
    }

    #[test_log::test]
    fn syscall_failures_name_the_call_only() {
        let f = Failure::syscall("unshare(CLONE_NEWNS)", Errno::INVAL);
        assert_eq!(f.message, format!("unshare(CLONE_NEWNS): {}", Errno::INVAL));
        assert_eq!(f.kind, Kind::Unexpected);
    }
}
