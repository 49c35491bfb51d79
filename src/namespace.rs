//! A throwaway private mount namespace for building the overlay. overlayfs
//! (before Linux 6.15) accepts only layers whose mounts are attached in the
//! caller's namespace, and idmapped clones must be attached somewhere to be
//! used; attaching them in PID 1's namespace would show them to everyone.
//! So the helper unshares a private namespace, attaches and opens everything
//! there, creates the overlay as a detached mount, and returns to the
//! original namespace to move it onto merged/. The private namespace dies
//! with nothing left behind when the helper leaves it.

use std::os::fd::OwnedFd;

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use rustix::io::Errno;

use crate::error::{Failure, Result};

fn errno(e: nix::errno::Errno) -> Errno {
    Errno::from_raw_os_error(e as i32)
}

pub(crate) fn in_private_namespace<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    let original: OwnedFd = rustix::fs::open(
        "/proc/self/ns/mnt",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Failure::syscall("open /proc/self/ns/mnt", e))?;
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(|e| {
        Failure::syscall(
            "create a private mount namespace (unshare(CLONE_NEWNS))",
            errno(e),
        )
    })?;
    // Copies of shared mounts stay in their peer groups: make everything
    // private first so nothing attached here propagates back.
    let result = nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Failure::syscall("make the private mount namespace private", errno(e)))
    .and_then(|()| work());
    nix::sched::setns(&original, CloneFlags::CLONE_NEWNS).map_err(|e| {
        Failure::syscall("return to the original mount namespace (setns)", errno(e))
    })?;
    result
}
