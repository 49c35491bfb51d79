//! Locks in root-only runtime/.left4me/, so the service user can neither
//! take nor replace them. One per instance (`<name>.lock`): concurrent verbs
//! on an instance serialize, and an instance's verb waits on another
//! instance's only through the host-wide locks below. Those are named with a
//! leading dot, which no instance name can have (name.rs), so no instance
//! can share a file with them. One for
//! the installations: switching `current` and choosing what to collect hold
//! it exclusively (a few renames), a mount holds it shared from reading
//! `installations/current` until its stack record names the generation, so
//! no generation is removed between being picked and being recorded as in
//! use (a collection counts the record of an instance whose lock is held
//! as in use). One for the generation verbs among themselves.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Failure, Kind};

/// Below systemd's default start timeout (90 s), so a stuck lock holder shows
/// up as this helper's clear error rather than a unit timeout.
const WAIT: Duration = Duration::from_secs(30);

/// The installations lock's file in runtime/.left4me/.
pub(crate) const INSTALLATIONS: &str = ".installations.lock";
/// One generation verb at a time (prepare, commit, import, abort, gc). Held
/// through their long parts (copying or taking over a whole tree), which
/// need no installations lock, so mounts never wait for them.
pub(crate) const UPDATE: &str = ".update.lock";
/// Held by a mount from comparing its ports with the mounted instances'
/// until its own overlay is attached, so two mounts cannot both find the
/// other not yet running. Taken last (after the instance's own lock; the
/// installations lock is let go before), so it cannot deadlock with them.
pub(crate) const PORTS: &str = ".ports.lock";

/// Held by the one background sweeper of installations/ (what gc, commit
/// and abort set aside), which holds no other lock.
pub(crate) const GENERATION_SWEEPER: &str = ".generations.sweep";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockMode {
    Exclusive,
    Shared,
}

/// Held until dropped.
pub(crate) struct Lock {
    _fd: OwnedFd,
}

/// Opens (creating) the lock file `file` in `helper_dir`, without locking it.
pub(crate) fn open(
    helper_dir: BorrowedFd<'_>,
    file: &str,
    shown: &Path,
) -> Result<OwnedFd, Failure> {
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(helper_dir, file, flags, Mode::from_raw_mode(0o600))
        .map_err(|e| Failure::os(shown, "open lock", e))
}

/// Takes the exclusive lock on `fd` if nobody holds it; false if somebody does.
pub(crate) fn try_exclusive(fd: BorrowedFd<'_>) -> bool {
    loop {
        match rustix::fs::flock(fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return true,
            Err(Errno::INTR) => {}
            Err(_) => return false,
        }
    }
}

/// Whether someone holds the lock `file` in `helper_dir` (exclusively: a
/// shared probe fails only then), looked at without creating the file and
/// without waiting.
pub(crate) fn held(helper_dir: BorrowedFd<'_>, file: &str) -> bool {
    let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Ok(fd) = rustix::fs::openat(helper_dir, file, flags, Mode::empty()) else {
        return false;
    };
    loop {
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockShared) {
            Ok(()) => return false,
            Err(Errno::INTR) => {}
            Err(_) => return true,
        }
    }
}

/// Takes the lock `file` in `helper_dir`, waiting up to [`WAIT`]. `what`
/// names what is locked in the timeout message ("instance vs1").
pub(crate) fn lock(
    helper_dir: BorrowedFd<'_>,
    file: &str,
    mode: LockMode,
    what: &str,
    shown: &Path,
) -> Result<Lock, Failure> {
    let fd = open(helper_dir, file, shown)?;
    let op = match mode {
        LockMode::Exclusive => FlockOperation::NonBlockingLockExclusive,
        LockMode::Shared => FlockOperation::NonBlockingLockShared,
    };
    let deadline = Instant::now() + WAIT;
    let mut pause = Duration::from_millis(1);
    loop {
        match rustix::fs::flock(&fd, op) {
            Ok(()) => return Ok(Lock { _fd: fd }),
            Err(Errno::WOULDBLOCK | Errno::INTR) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(Errno::WOULDBLOCK) => {
                return Err(Failure::new(
                    Kind::LockTimeout,
                    format!(
                        "{what} stayed locked by another left4me-overlay for {} s",
                        WAIT.as_secs()
                    ),
                )
                .hint(format!("find it with: fuser -v {}", shown.display())));
            }
            Err(e) => return Err(Failure::os(shown, "lock", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::InstanceName;
    use crate::state::{InstancePaths, Own};

    const HOST_WIDE: [&str; 4] = [INSTALLATIONS, UPDATE, PORTS, GENERATION_SWEEPER];

    /// An instance named like a host-wide lock (`installations`, `update`)
    /// once shared its file: its mount deadlocked on itself and every other
    /// mount, gc and import waited behind it.
    #[test_log::test]
    fn no_instance_lock_is_a_host_wide_lock() {
        for file in HOST_WIDE {
            let stem = file.trim_end_matches(".lock");
            for candidate in [stem, stem.trim_start_matches('.')] {
                if let Ok(name) = InstanceName::parse(candidate) {
                    let own = InstancePaths::new(&name).own(Own::Lock);
                    assert!(
                        !HOST_WIDE.contains(&own.as_str()),
                        "{candidate} locks {own}"
                    );
                }
            }
            assert!(
                InstanceName::parse(stem).is_err(),
                "{stem} is an instance name"
            );
        }
    }
}
