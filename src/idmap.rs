//! Idmapped lower layers. installation/ and overlays/ usually belong to root
//! (or the admin who ran steamcmd), yet the game must be able to write through
//! merged/ into directories that come from them (logs/, cfg/, downloads).
//! Each lower layer whose owner is not the service user is mounted through a
//! detached, read-only, idmapped clone that shows the layer owner's files as
//! the service user's; overlayfs then copies them up into the upper layer
//! owned by the service user. The layers on disk never change.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, fork, pipe};
use rustix::mount::OpenTreeFlags;

use crate::error::{Failure, Kind};

const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A user namespace whose only mapping is `owner -> service` for uid and gid.
pub fn user_namespace(owner: (u32, u32), service: (u32, u32)) -> Result<OwnedFd, Failure> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Failure::new(Kind::KernelLimit, format!("cannot create the user namespace for an idmapped layer: {what}: {e}"))
            .hint("the kernel needs user namespaces (CONFIG_USER_NS); or make the service user own installation/ and overlays/")
    };
    let (ready_r, ready_w) = pipe().map_err(|e| fail("pipe", &e))?;
    let (done_r, done_w) = pipe().map_err(|e| fail("pipe", &e))?;
    // SAFETY: the helper is single-threaded; the child only makes raw
    // syscalls (unshare, read, write, _exit) before exiting.
    let child = match unsafe { fork() }.map_err(|e| fail("fork", &e))? {
        ForkResult::Child => {
            drop(ready_r);
            drop(done_w);
            let ok = nix::sched::unshare(CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = nix::unistd::write(&ready_w, &[u8::from(ok)]);
            let mut byte = [0u8; 1];
            let _ = nix::unistd::read(&done_r, &mut byte);
            // SAFETY: _exit is async-signal-safe and skips Rust destructors
            // that belong to the parent.
            unsafe { nix::libc::_exit(0) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(ready_w);
    drop(done_r);
    let result = (|| {
        let mut ready = [0u8; 1];
        let mut reader = fs::File::from(ready_r);
        reader
            .read_exact(&mut ready)
            .map_err(|e| fail("child", &e))?;
        if ready[0] != 1 {
            return Err(fail("unshare(CLONE_NEWUSER)", &"refused"));
        }
        let pid = child.as_raw();
        for (file, (from, to)) in [
            ("uid_map", (owner.0, service.0)),
            ("gid_map", (owner.1, service.1)),
        ] {
            fs::OpenOptions::new()
                .write(true)
                .open(format!("/proc/{pid}/{file}"))
                .and_then(|mut f| f.write_all(format!("{from} {to} 1\n").as_bytes()))
                .map_err(|e| fail(file, &e))?;
        }
        fs::File::open(format!("/proc/{pid}/ns/user"))
            .map(OwnedFd::from)
            .map_err(|e| fail("open ns/user", &e))
    })();
    drop(done_w);
    let _ = waitpid(child, None);
    result
}

/// A detached, read-only clone of `layer` seen through `userns`'s mapping.
pub fn idmapped_clone(
    layer: BorrowedFd<'_>,
    userns: BorrowedFd<'_>,
    shown: &Path,
) -> Result<OwnedFd, Failure> {
    let tree = rustix::mount::open_tree(
        layer,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_EMPTY_PATH,
    )
    .map_err(|e| {
        Failure::new(
            Kind::KernelLimit,
            format!(
                "cannot clone {} for an idmapped mount: {e}",
                shown.display()
            ),
        )
    })?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr reads `attr` (size given) and an empty C string.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_mount_setattr,
            tree.as_fd().as_raw_fd(),
            c"".as_ptr(),
            nix::libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Failure::new(
            Kind::KernelLimit,
            format!("cannot idmap {} (mount_setattr: {e})", shown.display()),
        )
        .hint(
            "its filesystem does not support idmapped mounts (ext4, xfs, btrfs and tmpfs on Linux >= 6.3 do); or chown -R the layer to the service user",
        ));
    }
    Ok(tree)
}
