//! Discarding a writable layer. reset renames upper/ and work/ aside inside
//! runtime/<i>/ (one rename each, so the instance can be mounted again at
//! once, whatever the layer holds) and deletes the renamed trees afterwards.
//! Deletion walks with fds only: O_NOFOLLOW|O_DIRECTORY opens relative to
//! the parent fd, unlinkat, no crossing into other filesystems, and a bounded
//! number of open fds however deep the user nested directories.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use crate::error::{Failure, Kind};
use crate::fsx;

pub const PREFIX: &str = ".discard-";
/// Deeper directories are moved up to the top of runtime/<i>/ and deleted
/// from there, so at most this many directory fds are open at once.
const MAX_DEPTH: usize = 48;
/// A hostile user can keep refilling a directory we are emptying; give up
/// on it after this many passes and leave it for the next sweep.
const MAX_PASSES: usize = 64;

fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{PREFIX}{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Renames `name` in `dir` to a fresh discard name. `Ok(false)` if absent.
pub fn set_aside(dir: BorrowedFd<'_>, name: &str, shown: &Path) -> Result<bool, Failure> {
    match rustix::fs::renameat_with(dir, name, dir, unique_name(), RenameFlags::NOREPLACE) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(fsx::os(shown, "rename aside", e)),
    }
}

/// Names of discard entries in `dir`.
pub fn pending(dir: BorrowedFd<'_>) -> Vec<CString> {
    let Ok(mut listing) = rustix::fs::Dir::read_from(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    while let Some(Ok(entry)) = listing.next() {
        if entry.file_name().to_bytes().starts_with(PREFIX.as_bytes()) {
            found.push(entry.file_name().to_owned());
        }
    }
    found
}

/// Deletes every discard entry in `dir` (runtime/<i>/), including ones left
/// by an earlier run that was killed, and ones deeper levels were moved to.
pub fn sweep(dir: BorrowedFd<'_>, shown: &Path) -> Result<usize, Failure> {
    let dev = fsx::stat_fd(dir, shown)?.st_dev;
    let mut removed = 0;
    for _ in 0..MAX_PASSES {
        let names = pending(dir);
        if names.is_empty() {
            return Ok(removed);
        }
        for name in names {
            remove_entry(dir, &name, dev, dir, 0)
                .map_err(|e| fsx::os(&shown.join(name.to_string_lossy().as_ref()), "delete", e))?;
            removed += 1;
        }
    }
    Err(Failure::new(
        Kind::Busy,
        format!(
            "{}: discarded layers keep reappearing; left for the next sweep",
            shown.display()
        ),
    ))
}

fn remove_entry(
    parent: BorrowedFd<'_>,
    name: &CStr,
    dev: u64,
    top: BorrowedFd<'_>,
    depth: usize,
) -> Result<(), Errno> {
    match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR | Errno::PERM) => {}
        Err(e) => return Err(e),
    }
    if depth >= MAX_DEPTH {
        return match rustix::fs::renameat_with(
            parent,
            name,
            top,
            unique_name(),
            RenameFlags::NOREPLACE,
        ) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e),
        };
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let dir: OwnedFd = match rustix::fs::openat(parent, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        // Swapped for a symlink or file since the unlink: unlink that instead.
        Err(Errno::LOOP | Errno::NOTDIR) => {
            return match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(e),
            };
        }
        Err(e) => return Err(e),
    };
    if rustix::fs::fstat(&dir)?.st_dev != dev {
        // Only root can mount, and never inside a writable layer; leave it.
        tracing::warn!(name = %name.to_string_lossy(), "not descending into another filesystem");
        return Err(Errno::XDEV);
    }
    for _ in 0..MAX_PASSES {
        let listing = rustix::fs::Dir::read_from(dir.as_fd())?;
        let mut children = Vec::new();
        for entry in listing {
            let entry = entry?;
            let child = entry.file_name();
            if child != c"." && child != c".." {
                children.push(child.to_owned());
            }
        }
        for child in &children {
            remove_entry(dir.as_fd(), child, dev, top, depth + 1)?;
        }
        match rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => return Ok(()),
            Err(Errno::NOTEMPTY) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Errno::NOTEMPTY)
}
