//! One lock per instance, in root-only runtime/.left4me/, so concurrent verbs
//! on an instance serialize while different instances never wait on each
//! other, and the service user can neither take nor replace the lock.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Failure, Kind};
use crate::name::InstanceName;
use crate::state::{InstancePaths, Own};

/// Below systemd's default start timeout (90 s), so a stuck lock holder shows
/// up as this helper's clear error rather than a unit timeout.
const WAIT: Duration = Duration::from_secs(30);

pub(crate) struct InstanceLock {
    _fd: OwnedFd,
}

pub(crate) fn lock(
    helper_dir: BorrowedFd<'_>,
    name: &InstanceName,
    shown: &Path,
) -> Result<InstanceLock, Failure> {
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(
        helper_dir,
        InstancePaths::new(name).own(Own::Lock),
        flags,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| Failure::os(shown, "open lock", e))?;
    let deadline = Instant::now() + WAIT;
    let mut pause = Duration::from_millis(1);
    loop {
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(InstanceLock { _fd: fd }),
            Err(Errno::WOULDBLOCK | Errno::INTR) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(Errno::WOULDBLOCK) => {
                return Err(Failure::new(
                    Kind::LockTimeout,
                    format!(
                        "instance {name} stayed locked by another left4me-overlay for {} s",
                        WAIT.as_secs()
                    ),
                )
                .hint(format!("find it with: fuser -v {}", shown.display())));
            }
            Err(e) => return Err(Failure::os(shown, "lock", e)),
        }
    }
}
