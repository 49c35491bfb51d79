//! Idmapped lower layers. installation/ and overlays/ usually belong to root
//! (or the admin who ran steamcmd), yet the game must be able to write through
//! merged/ into directories that come from them (logs/, cfg/, downloads).
//! Each lower layer is mounted through a detached, read-only, idmapped clone
//! that shows the layer owner's files as the service user's (the service
//! user's own layer through an identity map of its ids alone); overlayfs
//! then copies them up into the upper layer owned by the service user, and
//! refuses to copy up what belongs to anyone unmapped. The layers on disk
//! never change.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::pipe;
use rustix::mount::{MountAttrFlags, OpenTreeFlags};

use crate::error::{Failure, Kind};
use crate::sys;

/// A user namespace whose only mapping is `owner -> service` for uid and gid.
pub(crate) fn user_namespace(owner: (u32, u32), service: (u32, u32)) -> Result<OwnedFd, Failure> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Failure::new(Kind::KernelLimit, format!("cannot create the user namespace for an idmapped layer: {what}: {e}"))
            .hint("the kernel needs user namespaces (CONFIG_USER_NS); or make the service user own installation/ and overlays/")
    };
    let (ready_r, ready_w) = pipe().map_err(|e| fail("pipe", &e))?;
    let (done_r, done_w) = pipe().map_err(|e| fail("pipe", &e))?;
    // The child enters a new user namespace and waits until the parent has
    // written its maps and opened it; then the namespace lives on in that fd.
    let child = match sys::fork().map_err(|e| fail("fork", &e))? {
        sys::Forked::Child => {
            drop(ready_r);
            drop(done_w);
            let ok = nix::sched::unshare(CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = nix::unistd::write(&ready_w, &[u8::from(ok)]);
            let mut byte = [0u8; 1];
            let _ = nix::unistd::read(&done_r, &mut byte);
            sys::exit_child(0)
        }
        sys::Forked::Parent(child) => child,
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
pub(crate) fn idmapped_clone(
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
        .hint("idmapped mounts need Linux >= 5.19; or chown -R the layer to the service user")
    })?;
    let set = MountAttrFlags::MOUNT_ATTR_IDMAP
        | MountAttrFlags::MOUNT_ATTR_RDONLY
        | MountAttrFlags::MOUNT_ATTR_NOSUID
        | MountAttrFlags::MOUNT_ATTR_NODEV;
    sys::mount_setattr(tree.as_fd(), set, userns).map_err(|e| {
        Failure::new(
            Kind::KernelLimit,
            format!("cannot idmap {} (mount_setattr: {e})", shown.display()),
        )
        .hint(
            "its filesystem does not support idmapped mounts (ext4, xfs, btrfs and tmpfs on Linux >= 6.3 do); or chown -R the layer to the service user",
        )
    })?;
    Ok(tree)
}
