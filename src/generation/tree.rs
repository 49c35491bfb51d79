//! The two walks over a whole game tree: copying the current generation into
//! .next/ for the update user, and taking .next/ over as root once the
//! update user is done with it (docs/updates.md).
//!
//! Both walks go through directory fds: entries are looked at with
//! `AT_SYMLINK_NOFOLLOW`, directories opened with `O_NOFOLLOW`, so no path
//! is resolved twice and no symlink is followed. A game tree is a few levels
//! deep; the walks keep one open fd per level and refuse a tree deeper than
//! [`MAX_DEPTH`] rather than run out of fds.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Gid, Mode, OFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;

use crate::error::{Failure, Kind, Result};
use crate::fsx::{self, libc_mode};

/// L4D2's deepest path is 7 levels below the tree's top.
const MAX_DEPTH: usize = 64;
/// What a committed generation's directories are, and what its files may be
/// at most: no set-id bits, nothing writable by group or others.
const DIR_MODE: u32 = 0o755;
const FILE_MODE_MASK: u32 = 0o755;

/// Steam's own bookkeeping (the app manifest, depot manifests): small, and
/// rewritten by every update, possibly in place; always copied, never
/// hard-linked.
const STEAM_METADATA: &str = "steamapps";

const DIR_OPEN: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// How files reach .next/ when the filesystem cannot reflink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fallback {
    /// A hard link to the generation's root-owned, read-only file.
    HardLink,
    /// A full copy owned by the new owner.
    Copy,
}

/// What a copy did, for the verb's output and the bench.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub(crate) struct CopyStats {
    pub(crate) dirs: u64,
    pub(crate) files: u64,
    pub(crate) symlinks: u64,
    pub(crate) reflinked: u64,
    pub(crate) hard_linked: u64,
    pub(crate) copied: u64,
    /// Bytes written by full copies (reflinks and hard links cost none).
    pub(crate) bytes_copied: u64,
}

fn read_names(dir: BorrowedFd<'_>, shown: &Path) -> Result<Vec<std::ffi::CString>> {
    let listing = rustix::fs::Dir::read_from(dir).map_err(|e| Failure::os(shown, "read", e))?;
    let mut names = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| Failure::os(shown, "read", e))?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

fn too_deep(shown: &Path) -> Failure {
    Failure::new(
        Kind::UnsafePath,
        format!(
            "{} is more than {MAX_DEPTH} directories deep; a game installation is not",
            shown.display()
        ),
    )
    .hint("look at what wrote this tree")
}

fn open_child(dir: BorrowedFd<'_>, name: &std::ffi::CStr, shown: &Path) -> Result<OwnedFd> {
    rustix::fs::openat(dir, name, DIR_OPEN, Mode::empty())
        .map_err(|e| Failure::os(shown, "open", e))
}

/// Copies the tree under `src` into the empty directory `dst`: directories
/// and symlinks become `owner`'s; a file is reflinked where the filesystem
/// can (owner's, and sharing its blocks until either side changes), else
/// handled by `fallback`. Modes are kept within [`FILE_MODE_MASK`].
pub(crate) fn copy(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    owner: (u32, u32),
    fallback: Fallback,
    shown_dst: &Path,
) -> Result<CopyStats> {
    let mut stats = CopyStats::default();
    // Whether FICLONE works here; asked once, by the first file.
    let mut can_reflink: Option<bool> = None;
    let dup = |fd: BorrowedFd<'_>| {
        fd.try_clone_to_owned().map_err(|e| {
            Failure::os(
                shown_dst,
                "dup",
                Errno::from_io_error(&e).unwrap_or(Errno::IO),
            )
        })
    };
    let mut stack: Vec<(OwnedFd, OwnedFd, PathBuf, Fallback)> =
        vec![(dup(src)?, dup(dst)?, shown_dst.into(), fallback)];
    while let Some((from, to, shown, fallback)) = stack.pop() {
        let at_top = shown.as_path() == shown_dst;
        for name in read_names(from.as_fd(), &shown)? {
            let entry_shown = shown.join(name.to_string_lossy().as_ref());
            let st = rustix::fs::statat(&from, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| Failure::os(&entry_shown, "stat", e))?;
            let perm = st.st_mode & FILE_MODE_MASK;
            match fsx::file_type(&st) {
                libc_mode::S_IFDIR => {
                    if stack.len() + 1 >= MAX_DEPTH {
                        return Err(too_deep(&entry_shown));
                    }
                    rustix::fs::mkdirat(&to, name.as_c_str(), Mode::from_raw_mode(0o700))
                        .map_err(|e| Failure::os(&entry_shown, "create directory", e))?;
                    let child_to = open_child(to.as_fd(), &name, &entry_shown)?;
                    fsx::chown_fd(child_to.as_fd(), owner.0, owner.1, &entry_shown)?;
                    // The owner must be able to write in it: steamcmd adds and replaces files.
                    fsx::chmod_fd(child_to.as_fd(), perm | 0o700, &entry_shown)?;
                    let child_from = open_child(from.as_fd(), &name, &entry_shown)?;
                    stats.dirs += 1;
                    let below = if at_top && name.to_bytes() == STEAM_METADATA.as_bytes() {
                        Fallback::Copy
                    } else {
                        fallback
                    };
                    stack.push((child_from, child_to, entry_shown, below));
                }
                libc_mode::S_IFREG => {
                    stats.files += 1;
                    copy_file(
                        &from,
                        &to,
                        &name,
                        &st,
                        owner,
                        fallback,
                        &mut can_reflink,
                        &mut stats,
                        &entry_shown,
                    )?;
                }
                libc_mode::S_IFLNK => {
                    let target = rustix::fs::readlinkat(&from, name.as_c_str(), Vec::new())
                        .map_err(|e| Failure::os(&entry_shown, "readlink", e))?;
                    rustix::fs::symlinkat(target.as_c_str(), &to, name.as_c_str())
                        .map_err(|e| Failure::os(&entry_shown, "create symlink", e))?;
                    rustix::fs::chownat(
                        &to,
                        name.as_c_str(),
                        Some(Uid::from_raw(owner.0)),
                        Some(Gid::from_raw(owner.1)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| Failure::os(&entry_shown, "chown", e))?;
                    stats.symlinks += 1;
                }
                // A committed generation holds nothing else (take_over
                // refuses it); a tree given to import may: not a game file.
                _ => {
                    tracing::warn!(path = %entry_shown.display(), "not a file, directory or symlink; left out")
                }
            }
        }
    }
    Ok(stats)
}

#[allow(clippy::too_many_arguments)]
fn copy_file(
    from: &OwnedFd,
    to: &OwnedFd,
    name: &std::ffi::CStr,
    st: &rustix::fs::Stat,
    owner: (u32, u32),
    fallback: Fallback,
    can_reflink: &mut Option<bool>,
    stats: &mut CopyStats,
    shown: &Path,
) -> Result<()> {
    let perm = st.st_mode & FILE_MODE_MASK;
    let create = || {
        rustix::fs::openat(
            to,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| Failure::os(shown, "create", e))
    };
    let open_src = || {
        rustix::fs::openat(
            from,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Failure::os(shown, "open", e))
    };
    let finish = |fd: &OwnedFd| -> Result<()> {
        fsx::chown_fd(fd.as_fd(), owner.0, owner.1, shown)?;
        fsx::chmod_fd(fd.as_fd(), perm, shown)?;
        // Kept like cp -a: some tools compare times before contents.
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: st.st_atime as _,
                tv_nsec: st.st_atime_nsec as _,
            },
            last_modification: Timespec {
                tv_sec: st.st_mtime as _,
                tv_nsec: st.st_mtime_nsec as _,
            },
        };
        rustix::fs::futimens(fd, &times).map_err(|e| Failure::os(shown, "set times of", e))
    };
    if *can_reflink != Some(false) {
        let src = open_src()?;
        let dst = create()?;
        match rustix::fs::ioctl_ficlone(&dst, &src) {
            Ok(()) => {
                *can_reflink = Some(true);
                stats.reflinked += 1;
                return finish(&dst);
            }
            Err(Errno::OPNOTSUPP | Errno::XDEV | Errno::INVAL | Errno::NOTTY | Errno::PERM)
                if can_reflink.is_none() =>
            {
                tracing::info!("this filesystem cannot reflink; falling back to {fallback:?}");
                *can_reflink = Some(false);
                rustix::fs::unlinkat(to, name, AtFlags::empty())
                    .map_err(|e| Failure::os(shown, "remove", e))?;
            }
            Err(e) => return Err(Failure::os(shown, "reflink (FICLONE)", e)),
        }
    }
    match fallback {
        Fallback::HardLink => {
            rustix::fs::linkat(from, name, to, name, AtFlags::empty())
                .map_err(|e| Failure::os(shown, "hard-link", e))?;
            stats.hard_linked += 1;
            Ok(())
        }
        Fallback::Copy => {
            let mut src = std::fs::File::from(open_src()?);
            let dst = create()?;
            let mut dst_file = std::fs::File::from(dst.try_clone().map_err(|e| {
                Failure::os(shown, "dup", Errno::from_io_error(&e).unwrap_or(Errno::IO))
            })?);
            let n = std::io::copy(&mut src, &mut dst_file).map_err(|e| {
                Failure::os(shown, "copy", Errno::from_io_error(&e).unwrap_or(Errno::IO))
            })?;
            stats.copied += 1;
            stats.bytes_copied += n;
            finish(&dst)
        }
    }
}

/// What a take-over found, for the verb's output.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub(crate) struct TakeOverStats {
    /// Entries that were the builder's and are root's now.
    pub(crate) taken: u64,
    /// Root's files already there: hard links shared with the previous generation.
    pub(crate) shared: u64,
    /// Apparent size of all regular files.
    pub(crate) bytes: u64,
}

/// Makes the tree under `top` a generation: every entry of `builder` (the
/// update user; `None` when root built it) becomes root's, with set-id bits
/// and group/other write bits cleared. Root's own files are never changed
/// (they are hard links shared with a committed generation) and must
/// already be within those bits. Anything that is not a directory, a
/// regular file or a symlink, or belongs to a third account, is refused.
///
/// The caller has made `top` root's and 0700 and checked that no process of
/// `builder` is left, so nothing changes the tree while it is walked.
pub(crate) fn take_over(
    top: BorrowedFd<'_>,
    builder: Option<u32>,
    shown_top: &Path,
) -> Result<TakeOverStats> {
    let mut stats = TakeOverStats::default();
    let dup = top.try_clone_to_owned().map_err(|e| {
        Failure::os(
            shown_top,
            "dup",
            Errno::from_io_error(&e).unwrap_or(Errno::IO),
        )
    })?;
    let mut stack: Vec<(OwnedFd, PathBuf)> = vec![(dup, shown_top.into())];
    while let Some((dir, shown)) = stack.pop() {
        for name in read_names(dir.as_fd(), &shown)? {
            let entry_shown = shown.join(name.to_string_lossy().as_ref());
            let st = rustix::fs::statat(&dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| Failure::os(&entry_shown, "stat", e))?;
            let uid = st.st_uid;
            let builders = Some(uid) == builder;
            if uid != 0 && !builders {
                return Err(Failure::new(
                    Kind::UnsafePath,
                    format!(
                        "{} belongs to uid {uid}, neither root nor the update user",
                        entry_shown.display()
                    ),
                )
                .hint("only the update user writes the new generation; look at what else did"));
            }
            match fsx::file_type(&st) {
                libc_mode::S_IFDIR => {
                    if stack.len() + 1 >= MAX_DEPTH {
                        return Err(too_deep(&entry_shown));
                    }
                    // Directories cannot be hard links: whoever made it, it
                    // is this tree's alone and can be made root's 0755.
                    let child = open_child(dir.as_fd(), &name, &entry_shown)?;
                    same_inode(&child, &st, &entry_shown)?;
                    fsx::chown_fd(child.as_fd(), 0, 0, &entry_shown)?;
                    fsx::chmod_fd(child.as_fd(), DIR_MODE, &entry_shown)?;
                    stats.taken += 1;
                    stack.push((child, entry_shown));
                }
                libc_mode::S_IFREG => {
                    stats.bytes += st.st_size as u64;
                    if builders {
                        let fd = rustix::fs::openat(
                            &dir,
                            name.as_c_str(),
                            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                            Mode::empty(),
                        )
                        .map_err(|e| Failure::os(&entry_shown, "open", e))?;
                        same_inode(&fd, &st, &entry_shown)?;
                        // chown(2) also drops set-id bits and file capabilities.
                        fsx::chown_fd(fd.as_fd(), 0, 0, &entry_shown)?;
                        fsx::chmod_fd(fd.as_fd(), st.st_mode & FILE_MODE_MASK, &entry_shown)?;
                        stats.taken += 1;
                    } else if st.st_mode & 0o7777 & !FILE_MODE_MASK != 0 {
                        return Err(Failure::new(
                            Kind::UnsafePath,
                            format!(
                                "{} is root's with mode {:04o}; a generation's root-owned files are hard links to the previous one, which has no set-id or group/other write bits",
                                entry_shown.display(),
                                st.st_mode & 0o7777
                            ),
                        )
                        .hint("this file did not come from a generation; look at what linked it there"));
                    } else {
                        stats.shared += 1;
                    }
                }
                libc_mode::S_IFLNK => {
                    if builders {
                        rustix::fs::chownat(
                            &dir,
                            name.as_c_str(),
                            Some(Uid::ROOT),
                            Some(Gid::ROOT),
                            AtFlags::SYMLINK_NOFOLLOW,
                        )
                        .map_err(|e| Failure::os(&entry_shown, "chown", e))?;
                        stats.taken += 1;
                    }
                }
                _ => {
                    return Err(Failure::new(
                        Kind::UnsafePath,
                        format!(
                            "{} is a FIFO, socket or device; a game installation holds only directories, files and symlinks",
                            entry_shown.display()
                        ),
                    )
                    .hint("look at what wrote this tree"));
                }
            }
        }
    }
    Ok(stats)
}

/// The entry opened is the one stat'ed: nothing swapped it in between.
fn same_inode(fd: &OwnedFd, st: &rustix::fs::Stat, shown: &Path) -> Result<()> {
    let now = fsx::stat_fd(fd, shown)?;
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
        return Err(Failure::new(
            Kind::UnsafePath,
            format!("{} changed while it was being taken over", shown.display()),
        )
        .hint("something still writes into the new generation; stop it and update again"));
    }
    Ok(())
}

/// The processes with `uid` among their user ids (real, effective, saved or
/// filesystem), as "PID (comm)".
pub(crate) fn processes_of(uid: u32) -> Vec<String> {
    let Ok(proc) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in proc.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        // Gone meanwhile: not running.
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or("")
                .to_owned()
        };
        let uids = field("Uid:");
        if uids.split_whitespace().any(|u| u.parse() == Ok(uid)) {
            found.push(format!("{pid} ({})", field("Name:").trim()));
        }
    }
    found
}
