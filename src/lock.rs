//! Locks in root-only runtime/.left4me/, so the service user can neither
//! take nor replace them. One per instance: concurrent verbs on an instance
//! serialize while different instances never wait on each other. One for
//! the installations: switching `current` and choosing what to collect hold
//! it exclusively (a few renames), a mount holds it shared from reading
//! `installations/current` until its stack record names the generation, so
//! no generation is removed between being picked and being recorded as in
//! use. One for the generation verbs among themselves.

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
pub(crate) const INSTALLATIONS: &str = "installations.lock";
/// One generation verb at a time (prepare, commit, import, abort, gc). Held
/// through their long parts (copying or taking over a whole tree), which
/// need no installations lock, so mounts never wait for them.
pub(crate) const UPDATE: &str = "update.lock";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockMode {
    Exclusive,
    Shared,
}

/// Held until dropped.
pub(crate) struct Lock {
    _fd: OwnedFd,
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
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(helper_dir, file, flags, Mode::from_raw_mode(0o600))
        .map_err(|e| Failure::os(shown, "open lock", e))?;
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
