//! The per-instance health check (`left4me-health`, run by
//! left4me-health@.service as the service user, never by root): after a
//! grace period it asks the instance's own port for A2S_INFO every interval
//! and restarts the server through root's request server (left4me-requests)
//! after N consecutive failures, within
//! a restart budget; past the budget it sends the server's main process
//! SIGSYS, which the server unit does not restart, so it ends `failed`.
//! With the update restart policy `when-empty` it also restarts an empty
//! server that runs an older installation generation (`rollover`).
//! docs/health.md has the design and the reasons for it.

mod cli;
pub(crate) mod launch;
pub(crate) mod metrics;
pub(crate) mod monitor;
pub(crate) mod output;
pub(crate) mod record;
pub(crate) mod report;
pub(crate) mod retention;
pub(crate) mod rollover;
pub(crate) mod settings;

pub use cli::main;

use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{ExitRow, Kind, kind_row, row};

/// Where each instance's record lives: DIR/INSTANCE/status.json. The unit's
/// RuntimeDirectory=left4me-health/%i creates it.
pub(crate) const RUN_DIR: &str = "/run/left4me-health";

/// Every exit code of left4me-health: `--help`, the man page and
/// docs/health.md are generated from or checked against this table. Codes
/// and labels are [`Kind`]'s, shared with the helper; the meanings are this
/// program's.
pub(crate) const EXIT_CODES: [ExitRow; 8] = [
    row(0, "", "done; status: every record read; query: answered"),
    row(2, "usage", "bad command line"),
    kind_row(Kind::InvalidName, "invalid instance name"),
    kind_row(
        Kind::InvalidConfig,
        "invalid setting (the message names the variable), or an unreadable record",
    ),
    kind_row(
        Kind::Missing,
        "status: no record for the instance (the check has not run since boot)",
    ),
    kind_row(
        Kind::ActionRefused,
        "run: the restart or stop was refused (is left4me-requests.socket running?)",
    ),
    kind_row(Kind::NoAnswer, "query: no usable answer"),
    kind_row(Kind::Unexpected, "anything else (unexpected)"),
];

/// A duration as people write it in settings: "2 s", "0.5 s".
pub(crate) fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The bytes of a small file below `dir` (`rel`, which may have several
/// components) that someone other than the reader may write: the game's
/// events (the service user's), a record (the health user's),
/// `installations/current` through the check's bind. Root reads the
/// records too (`left4me-health status`, `left4me list`), so nothing below
/// `dir` is followed: no symlink, no mount point (`openat2` with
/// `RESOLVE_BENEATH|RESOLVE_NO_XDEV|RESOLVE_NO_SYMLINKS`, which refuses a
/// user's FUSE mount on `NAME/` before the filesystem is asked: a server that
/// never answers would hold the reader in the kernel, unkillable), a FIFO
/// cannot block (O_NONBLOCK), a regular file only, at most `max` bytes, from
/// one open. None when it does not exist. The health unit's system call
/// filter refuses openat2 (ENOSYS seen in the trixie VM, EPERM by the
/// filter's errno): there the check, never root, falls back to `openat`
/// with O_NOFOLLOW (a mount the service user made below the home can hang
/// only its own instance's check); root never does.
pub(crate) fn read_small_file(dir: &Path, rel: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let shown = dir.join(rel);
    let with = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", shown.display()));
    // O_PATH: the check reaches the events file through the game's home,
    // 0710, which it may search but not list.
    let base = match rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(with(e.into())),
    };
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_XDEV | ResolveFlags::NO_SYMLINKS;
    // Root never falls back: a root reader under some filter gets the error.
    let opened = match rustix::fs::openat2(&base, rel, flags, Mode::empty(), resolve) {
        Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM)
            if !rustix::process::geteuid().is_root() =>
        {
            rustix::fs::openat(&base, rel, flags, Mode::empty())
        }
        other => other,
    };
    let file = match opened {
        Ok(fd) => fs::File::from(fd),
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::XDEV) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: on another mount (something is mounted below {}): not read",
                    shown.display(),
                    dir.display()
                ),
            ));
        }
        Err(e) => return Err(with(e.into())),
    };
    let refused = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {why}", shown.display()),
        )
    };
    if !file.metadata()?.is_file() {
        return Err(refused("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(refused(&format!("larger than {max} bytes")));
    }
    Ok(Some(bytes))
}

/// Replaces `dir/name` with `bytes` through a temporary file and rename(2),
/// so a reader sees the old file or the new one, never a part. The file is
/// 0644 (nothing in it is secret, and its readers, node exporter or
/// `left4me list`, are other users; the unit's UMask=0077 would hide it).
/// The temporary name carries the writer's PID (checks write the host
/// metrics file at once) and is made afresh (O_EXCL after removing what a
/// killed run left): an open file description someone kept of an earlier
/// one is never written into (ninth review: the service user held the
/// record's temporary file open across an upgrade's chown).
pub(crate) fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)?;
    f.set_permissions(fs::Permissions::from_mode(0o644))?;
    f.write_all(bytes)?;
    drop(f);
    fs::rename(&tmp, dir.join(name))
}

pub(crate) fn server_unit(instance: &str) -> String {
    format!("left4me-server@{instance}.service")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// A description someone kept open of an earlier temporary file (a
    /// killed run's, or one it made itself where it could) never becomes
    /// the file's content.
    #[test_log::test]
    fn a_replaced_file_is_never_one_someone_holds_open() {
        use std::io::{Read as _, Seek as _};
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join(format!(".x.{}.tmp", std::process::id()));
        fs::write(&tmp, b"").unwrap();
        let mut held = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&tmp)
            .unwrap();
        replace_file(dir.path(), "x", b"new").unwrap();
        assert_eq!(fs::read(dir.path().join("x")).unwrap(), b"new");
        let mut seen = Vec::new();
        held.rewind().unwrap();
        held.read_to_end(&mut seen).unwrap();
        assert!(seen.is_empty(), "the held file got the content");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(dir.path().join("x"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    #[test_log::test]
    fn no_code_repeats() {
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
            let line = crate::error::tests::shown_row(r);
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
