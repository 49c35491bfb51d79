//! The walks over a whole game tree: copying the current generation into
//! .next/ for the update user, listing a generation's files, and taking
//! .next/ over as root once the update user is done with it
//! (docs/updates.md).
//!
//! One walker serves them all. It goes through directory fds: entries are
//! looked at with `AT_SYMLINK_NOFOLLOW`, directories opened with
//! `O_NOFOLLOW`, so no path is resolved twice and no symlink is followed,
//! and a directory on another filesystem than the tree's top is refused.
//! It reads each directory as a stream, never listing it into memory, and
//! keeps one open directory per level: at most [`MAX_DEPTH`] levels,
//! [`MAX_ENTRIES`] entries per directory and [`MAX_TREE_ENTRIES`] in all,
//! far beyond a game tree (7 levels, a few thousand entries). What it
//! holds is one getdents buffer (at most about 25 KiB) per level, so about
//! 2 MiB at most, whatever the names: the update user chooses them, and
//! root's commit must not pay for them in memory.

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, Gid, Mode, OFlags, RenameFlags, Stat, Timespec, Timestamps, Uid};
use rustix::io::Errno;

use crate::error::{Failure, Kind, Result};
use crate::fsx::{self, libc_mode};

const MAX_DEPTH: usize = 64;
const MAX_ENTRIES: usize = 100_000;
/// Entries in a whole tree: every walk of a committed generation (the
/// health checks' sizes, prepare's copy, a same-build comparison) costs
/// time linear in them, so a tree of the update user's may not grow them
/// without bound (twenty-ninth review: 600,000 empty files took root's
/// commit 21.7 s and made every health check outgrow its memory cap).
const MAX_TREE_ENTRIES: usize = 200_000;
/// The apparent size a tree of the update user's may have, all its files
/// together (L4D2 is about 10 GB). A reflink copies nothing, so the copy
/// budget does not see a file the update user made large by cloning it
/// into itself; but a same-build comparison reads it all, under the update
/// lock (twenty-ninth review: a 1 TiB file of 64 MiB of blocks, about 22
/// minutes of reads as root).
pub(crate) const MAX_TREE_BYTES: u64 = 32 << 30;
/// The size all directories of a tree of the update user's may have
/// together (a game's few thousand directories take a few MiB). A
/// directory keeps its size when its entries are removed (ext4), and every
/// later walk of the generation reads it all: the health checks', prepare's
/// and a comparison's, under the update lock (thirty-first review: 151 MiB
/// of emptied directories, made in a minute, took prepare 1.95 s cold).
const MAX_TREE_DIR_BYTES: u64 = 64 << 20;
/// What a committed generation's directories are, and what its files may be
/// at most: no set-id bits, nothing writable by group or others.
const DIR_MODE: u32 = 0o755;
const FILE_MODE_MASK: u32 = 0o755;
/// Steam's own bookkeeping (the app manifest, depot manifests): small, and
/// rewritten by every update, possibly in place; always copied, never
/// hard-linked.
const STEAM_METADATA: &str = "steamapps";
/// A file of the update user whose allocated size is below its length by
/// more than this is sparse: the game ships none, and copying it would
/// write its holes out in full as root.
const SPARSE_SLACK: u64 = 1 << 20;

const FILE_OPEN: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::CLOEXEC);

fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_io_error(e).unwrap_or(Errno::IO)
}

/// One entry as the walker shows it to a visitor.
struct Visit<'a> {
    /// The directory holding it.
    dir: BorrowedFd<'a>,
    name: &'a CStr,
    st: &'a Stat,
    shown: &'a Path,
    /// 0 for the entries directly in the tree's top.
    depth: usize,
}

/// A directory being read, one level of the walk.
struct Level {
    entries: Dir,
    count: usize,
    shown: PathBuf,
}

impl Level {
    fn new(dir: OwnedFd, shown: PathBuf) -> Result<Level> {
        let entries = Dir::new(dir).map_err(|e| Failure::os(&shown, "read", e))?;
        Ok(Level {
            entries,
            count: 0,
            shown,
        })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        // rustix's Dir hands out the fd it was made from.
        self.entries.fd().expect("Dir::fd never fails on Linux")
    }

    /// The next name in the directory, `None` at its end.
    fn next_name(&mut self) -> Result<Option<std::ffi::CString>> {
        loop {
            let Some(entry) = self.entries.next() else {
                return Ok(None);
            };
            let entry = entry.map_err(|e| Failure::os(&self.shown, "read", e))?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            self.count += 1;
            if self.count > MAX_ENTRIES {
                return Err(Failure::new(
                    Kind::UnsafePath,
                    format!(
                        "{} holds more than {MAX_ENTRIES} entries; a game installation does not",
                        self.shown.display()
                    ),
                )
                .hint("look at what wrote this tree"));
            }
            return Ok(Some(name.to_owned()));
        }
    }
}

fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr, shown: &Path) -> Result<OwnedFd> {
    rustix::fs::openat(dir, name, fsx::DIR_FLAGS, Mode::empty())
        .map_err(|e| Failure::os(shown, "open", e))
}

/// Visits every entry below `top`, depth first, each directory before what
/// it holds. For a directory, `visit` returns its opened fd to descend into
/// it, or `None` to skip it; `leave` is called with each directory the walk
/// descended into (the top included, at depth 0) once all it holds has
/// been visited.
fn walk(
    top: BorrowedFd<'_>,
    shown_top: &Path,
    mut visit: impl FnMut(Visit<'_>) -> Result<Option<OwnedFd>>,
    mut leave: impl FnMut(BorrowedFd<'_>, usize, &Path) -> Result<()>,
) -> Result<()> {
    let dev = fsx::stat_fd(top, shown_top)?.st_dev;
    // Opened again, not dup'ed: a dup shares the directory's read offset,
    // which an earlier walk over the same fd left at its end.
    let dir = open_dir_at(top, c".", shown_top)?;
    let mut levels = vec![Level::new(dir, shown_top.to_path_buf())?];
    let mut entries = 0;
    while let Some(level) = levels.last_mut() {
        let Some(name) = level.next_name()? else {
            let depth = levels.len() - 1;
            let done = levels.pop().expect("a level");
            leave(done.fd(), depth, &done.shown)?;
            continue;
        };
        entries += 1;
        if entries > MAX_TREE_ENTRIES {
            return Err(Failure::new(
                Kind::UnsafePath,
                format!(
                    "{} holds more than {MAX_TREE_ENTRIES} entries; a game installation does not",
                    shown_top.display()
                ),
            )
            .hint("look at what wrote this tree"));
        }
        let shown = level.shown.join(name.to_string_lossy().as_ref());
        // A mount point is refused before anything of it is stat'ed: its
        // filesystem could be a FUSE server that never answers.
        let mount_point = fsx::entry(level.fd(), name.as_c_str())
            .map_err(|e| Failure::os(&shown, "stat", e))?
            .is_some_and(|e| e.mount_root);
        let st = if mount_point {
            None
        } else {
            Some(
                rustix::fs::statat(level.fd(), name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| Failure::os(&shown, "stat", e))?,
            )
        };
        let Some(st) = st.filter(|st| st.st_dev == dev) else {
            return Err(Failure::new(
                Kind::UnsafePath,
                format!(
                    "{} is on another filesystem, mounted inside the tree",
                    shown.display()
                ),
            )
            .hint("unmount it; a game installation is one tree on one filesystem"));
        };
        let depth = levels.len() - 1;
        let child = visit(Visit {
            dir: levels[depth].fd(),
            name: &name,
            st: &st,
            shown: &shown,
            depth,
        })?;
        if let Some(child) = child {
            if levels.len() == MAX_DEPTH {
                return Err(Failure::new(
                    Kind::UnsafePath,
                    format!(
                        "{} is more than {MAX_DEPTH} directories deep; a game installation is not",
                        shown.display()
                    ),
                )
                .hint("look at what wrote this tree"));
            }
            levels.push(Level::new(child, shown)?);
        }
    }
    Ok(())
}

/// For visitors with nothing to do when a directory is done.
fn nothing_to_leave(_: BorrowedFd<'_>, _: usize, _: &Path) -> Result<()> {
    Ok(())
}

/// How files reach .next/ when the filesystem cannot reflink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fallback {
    /// A hard link to the generation's file, where that is root's and within
    /// 0755 (what take-over accepts as shared); otherwise a copy.
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

/// Whether FICLONE works on this filesystem; asked once, by the first file.
#[derive(Default)]
struct Cloner {
    can_reflink: Option<bool>,
}

impl Cloner {
    /// Writes `src`'s content into the new, empty `dst`: a reflink where the
    /// filesystem can, else a copy. Returns the bytes copied (none for a
    /// reflink).
    fn fill(
        &mut self,
        src: &OwnedFd,
        st: &Stat,
        dst: &OwnedFd,
        shown: &Path,
    ) -> Result<Option<u64>> {
        if self.reflink(src, dst, shown)? {
            return Ok(None);
        }
        copy_content(src, st, dst, shown).map(Some)
    }

    /// Reflinks `src` into `dst`; false where the filesystem cannot.
    fn reflink(&mut self, src: &OwnedFd, dst: &OwnedFd, shown: &Path) -> Result<bool> {
        if self.can_reflink == Some(false) {
            return Ok(false);
        }
        match rustix::fs::ioctl_ficlone(dst, src) {
            Ok(()) => {
                self.can_reflink = Some(true);
                Ok(true)
            }
            Err(Errno::OPNOTSUPP | Errno::XDEV | Errno::INVAL | Errno::NOTTY | Errno::PERM)
                if self.can_reflink.is_none() =>
            {
                tracing::info!("this filesystem cannot reflink; copying or hard-linking instead");
                self.can_reflink = Some(false);
                Ok(false)
            }
            Err(e) => Err(Failure::os(shown, "reflink (FICLONE)", e)),
        }
    }

    fn reflinks(&self) -> bool {
        self.can_reflink != Some(false)
    }
}

/// Copies `src`'s content into `dst`, no more than the size `st` gave it
/// (what the budget and the reserve were checked for: another account with
/// a descriptor of the update user's file may grow it meanwhile, twenty-
/// ninth review); returns the bytes written. The check of the reserve
/// before it gives the clearer message; what keeps a copy for the update
/// user out of the reserve while others fill the disk is [`fsx::WritingAs`].
fn copy_content(src: &OwnedFd, st: &Stat, dst: &OwnedFd, shown: &Path) -> Result<u64> {
    require_unreserved_space(dst, st.st_size as u64, shown)?;
    let dup = |fd: &OwnedFd| {
        fd.try_clone()
            .map_err(|e| Failure::os(shown, "dup", errno_of(&e)))
    };
    let mut from = std::io::Read::take(std::fs::File::from(dup(src)?), st.st_size as u64);
    let mut to = std::fs::File::from(dup(dst)?);
    std::io::copy(&mut from, &mut to).map_err(|e| Failure::os(shown, "copy", errno_of(&e)))
}

fn create_in(dir: BorrowedFd<'_>, name: &CStr, shown: &Path) -> Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| Failure::os(shown, "create", e))
}

/// Owner, mode and times of a new copy, as `st` had them (times like cp -a:
/// some tools compare them before contents).
fn finish(fd: &OwnedFd, st: &Stat, owner: (u32, u32), shown: &Path) -> Result<()> {
    fsx::chown_fd(fd.as_fd(), owner.0, owner.1, shown)?;
    fsx::chmod_fd(fd.as_fd(), st.st_mode & FILE_MODE_MASK, shown)?;
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
}

/// Copies the tree under `src` into the empty directory `dst`: directories
/// and symlinks become `owner`'s; a file is reflinked where the filesystem
/// can (owner's, sharing its blocks until either side changes), else handled
/// by `fallback`. Modes are kept within [`FILE_MODE_MASK`].
pub(crate) fn copy(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    owner: (u32, u32),
    fallback: Fallback,
    shown_dst: &Path,
) -> Result<CopyStats> {
    // A copy for the update user (prepare's) allocates as that user would.
    let _as = (owner.0 != 0)
        .then(|| fsx::WritingAs::enter(owner, shown_dst))
        .transpose()?;
    let mut stats = CopyStats::default();
    let mut cloner = Cloner::default();
    // The destination directory and fallback per level of the walk.
    let mut targets: Vec<(OwnedFd, Fallback)> = vec![(
        dst.try_clone_to_owned()
            .map_err(|e| Failure::os(shown_dst, "dup", errno_of(&e)))?,
        fallback,
    )];
    walk(
        src,
        shown_dst,
        |v| {
            targets.truncate(v.depth + 1);
            let (to, fallback) = (targets[v.depth].0.as_fd(), targets[v.depth].1);
            match fsx::file_type(v.st) {
                libc_mode::S_IFDIR => {
                    require_unreserved_space(to, DIR_BLOCK, v.shown)?;
                    rustix::fs::mkdirat(to, v.name, Mode::from_raw_mode(0o700))
                        .map_err(|e| Failure::os(v.shown, "create directory", e))?;
                    let child_to = open_dir_at(to, v.name, v.shown)?;
                    fsx::chown_fd(child_to.as_fd(), owner.0, owner.1, v.shown)?;
                    // The owner must be able to write in it: steamcmd adds and replaces files.
                    fsx::chmod_fd(
                        child_to.as_fd(),
                        (v.st.st_mode & FILE_MODE_MASK) | 0o700,
                        v.shown,
                    )?;
                    stats.dirs += 1;
                    let below = if v.depth == 0 && v.name.to_bytes() == STEAM_METADATA.as_bytes() {
                        Fallback::Copy
                    } else {
                        fallback
                    };
                    targets.push((child_to, below));
                    open_dir_at(v.dir, v.name, v.shown).map(Some)
                }
                libc_mode::S_IFREG => {
                    stats.files += 1;
                    let shareable =
                        v.st.st_uid == 0 && v.st.st_mode & 0o7777 & !FILE_MODE_MASK == 0;
                    if fallback == Fallback::HardLink && shareable && !cloner.reflinks() {
                        rustix::fs::linkat(v.dir, v.name, to, v.name, AtFlags::empty())
                            .map_err(|e| Failure::os(v.shown, "hard-link", e))?;
                        stats.hard_linked += 1;
                        return Ok(None);
                    }
                    let from = rustix::fs::openat(v.dir, v.name, FILE_OPEN, Mode::empty())
                        .map_err(|e| Failure::os(v.shown, "open", e))?;
                    let new = create_in(to, v.name, v.shown)?;
                    match cloner.fill(&from, v.st, &new, v.shown)? {
                        None => stats.reflinked += 1,
                        Some(_) if fallback == Fallback::HardLink && shareable => {
                            // The first file found that this filesystem cannot reflink.
                            drop(new);
                            rustix::fs::unlinkat(to, v.name, AtFlags::empty())
                                .map_err(|e| Failure::os(v.shown, "remove", e))?;
                            rustix::fs::linkat(v.dir, v.name, to, v.name, AtFlags::empty())
                                .map_err(|e| Failure::os(v.shown, "hard-link", e))?;
                            stats.hard_linked += 1;
                            return Ok(None);
                        }
                        Some(n) => {
                            stats.copied += 1;
                            stats.bytes_copied += n;
                        }
                    }
                    finish(&new, v.st, owner, v.shown)?;
                    Ok(None)
                }
                libc_mode::S_IFLNK => {
                    let target = rustix::fs::readlinkat(v.dir, v.name, Vec::new())
                        .map_err(|e| Failure::os(v.shown, "readlink", e))?;
                    rustix::fs::symlinkat(target.as_c_str(), to, v.name)
                        .map_err(|e| Failure::os(v.shown, "create symlink", e))?;
                    rustix::fs::chownat(
                        to,
                        v.name,
                        Some(Uid::from_raw(owner.0)),
                        Some(Gid::from_raw(owner.1)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| Failure::os(v.shown, "chown", e))?;
                    stats.symlinks += 1;
                    Ok(None)
                }
                // A committed generation holds nothing else (take_over refuses
                // it); a tree given to import may: not a game file.
                _ => {
                    tracing::warn!(path = %v.shown.display(), "not a file, directory or symlink; left out");
                    Ok(None)
                }
            }
        },
        nothing_to_leave,
    )?;
    Ok(stats)
}

/// What take-over needs to know of the current generation.
#[derive(Debug, Default)]
pub(crate) struct Previous {
    /// The (dev, ino) of every regular file: what a root-owned file in
    /// .next/ must be to count as a hard link shared with it.
    pub(crate) inodes: HashSet<(u64, u64)>,
    /// The apparent size of all its files.
    pub(crate) bytes: u64,
}

/// The current generation's files, for [`take_over`].
pub(crate) fn previous(top: BorrowedFd<'_>, shown: &Path) -> Result<Previous> {
    let mut previous = Previous::default();
    walk(
        top,
        shown,
        |v| match fsx::file_type(v.st) {
            libc_mode::S_IFDIR => open_dir_at(v.dir, v.name, v.shown).map(Some),
            libc_mode::S_IFREG => {
                previous.inodes.insert((v.st.st_dev, v.st.st_ino));
                previous.bytes += v.st.st_size as u64;
                Ok(None)
            }
            _ => Ok(None),
        },
        nothing_to_leave,
    )?;
    Ok(previous)
}

/// Whether a regular file below `top` matches `pred`.
pub(crate) fn any_file(
    top: BorrowedFd<'_>,
    shown: &Path,
    pred: impl Fn(&Stat) -> bool,
) -> Result<bool> {
    let mut found = false;
    walk(
        top,
        shown,
        |v| match fsx::file_type(v.st) {
            libc_mode::S_IFDIR if !found => open_dir_at(v.dir, v.name, v.shown).map(Some),
            libc_mode::S_IFREG => {
                found |= pred(v.st);
                Ok(None)
            }
            _ => Ok(None),
        },
        nothing_to_leave,
    )?;
    Ok(found)
}

/// A file only the Windows server uses: its executables and libraries
/// (srcds.exe, bin/*.dll, left4dead2/bin/*.dll). The Linux depot ships
/// none (reasoned from the depots' platforms, docs/updates.md); the
/// platform workaround's Windows run leaves them behind.
fn windows_only(name: &CStr) -> bool {
    let name = name.to_bytes();
    [b".exe".as_slice(), b".dll".as_slice()].iter().any(|ext| {
        name.len() > ext.len() && name[name.len() - ext.len()..].eq_ignore_ascii_case(ext)
    })
}

/// Removes the Windows-only files from a tree root has taken over.
/// Returns how many, and the first few as shown paths.
/// How many paths a walk found, and the first [`Tally::FIRST`] of them for
/// a log line or a report.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) count: usize,
    pub(crate) first: Vec<PathBuf>,
}

impl Tally {
    const FIRST: usize = 10;

    fn add(&mut self, path: &Path) {
        self.count += 1;
        if self.first.len() < Self::FIRST {
            self.first.push(path.to_path_buf());
        }
    }

    /// The first paths, space-separated.
    pub(crate) fn first_words(&self) -> String {
        self.first
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

pub(crate) fn prune_windows(top: BorrowedFd<'_>, shown: &Path) -> Result<Tally> {
    let mut removed = Tally::default();
    walk(
        top,
        shown,
        |v| match fsx::file_type(v.st) {
            libc_mode::S_IFDIR => open_dir_at(v.dir, v.name, v.shown).map(Some),
            libc_mode::S_IFREG if windows_only(v.name) => {
                rustix::fs::unlinkat(v.dir, v.name, AtFlags::empty())
                    .map_err(|e| Failure::os(v.shown, "remove", e))?;
                removed.add(v.shown);
                Ok(None)
            }
            _ => Ok(None),
        },
        nothing_to_leave,
    )?;
    Ok(removed)
}

/// The regular files of `top` (steamapps/ aside: Steam rewrites its
/// bookkeeping every run) that are not the same file, or the same bytes,
/// at the same path below `other`: what a `validate` of the same build
/// repaired. Returns how many, and the first few relative to `top`.
pub(crate) fn differing(top: BorrowedFd<'_>, shown: &Path, other: BorrowedFd<'_>) -> Result<Tally> {
    let mut differ = Tally::default();
    walk(
        top,
        shown,
        |v| match fsx::file_type(v.st) {
            libc_mode::S_IFDIR
                if v.depth == 0 && v.name.to_bytes() == STEAM_METADATA.as_bytes() =>
            {
                Ok(None)
            }
            libc_mode::S_IFDIR => open_dir_at(v.dir, v.name, v.shown).map(Some),
            libc_mode::S_IFREG => {
                let rel = v.shown.strip_prefix(shown).unwrap_or(v.shown);
                if !same_content(&v, other, rel)? {
                    differ.add(rel);
                }
                Ok(None)
            }
            _ => Ok(None),
        },
        nothing_to_leave,
    )?;
    Ok(differ)
}

fn same_content(v: &Visit<'_>, other: BorrowedFd<'_>, rel: &Path) -> Result<bool> {
    let theirs = match rustix::fs::openat2(other, rel, FILE_OPEN, Mode::empty(), fsx::BENEATH) {
        Ok(fd) => fd,
        Err(Errno::NOENT) | Err(Errno::LOOP) | Err(Errno::XDEV) => return Ok(false),
        Err(e) => return Err(Failure::os(v.shown, "open its counterpart", e)),
    };
    let st = fsx::stat_fd(&theirs, v.shown)?;
    if fsx::file_type(&st) != libc_mode::S_IFREG || st.st_size != v.st.st_size {
        return Ok(false);
    }
    if (st.st_dev, st.st_ino) == (v.st.st_dev, v.st.st_ino) {
        return Ok(true);
    }
    let mine = rustix::fs::openat(v.dir, v.name, FILE_OPEN, Mode::empty())
        .map_err(|e| Failure::os(v.shown, "open", e))?;
    let (mut a, mut b) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = read_full(&mine, &mut a, v.shown)?;
        let m = read_full(&theirs, &mut b, v.shown)?;
        if n != m || a[..n] != b[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(fd: &OwnedFd, buf: &mut [u8], shown: &Path) -> Result<usize> {
    let mut len = 0;
    while len < buf.len() {
        match rustix::io::read(fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(Failure::os(shown, "read", e)),
        }
    }
    Ok(len)
}

/// What root may write, copying the update user's files, for one commit
/// after `previous`: twice that generation and 1 GiB more (an update
/// rewrites at most the whole game). The first install has no such budget;
/// there, as always, no copy may use the space the filesystem reserves for
/// root (checked before each copy).
pub(crate) fn copy_budget(previous: &Previous) -> u64 {
    previous.bytes.saturating_mul(2).saturating_add(1 << 30)
}

/// What a take-over found, for the verb's output.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub(crate) struct TakeOverStats {
    /// Entries that were the builder's and are root's now.
    pub(crate) taken: u64,
    /// The builder's files given a new root-owned inode (reflinked or copied).
    pub(crate) files_renewed: u64,
    /// Bytes those copies wrote (0 where the filesystem reflinks).
    pub(crate) bytes_copied: u64,
    /// Root's files already there: hard links shared with the previous generation.
    pub(crate) shared: u64,
    /// Apparent size of all regular files.
    pub(crate) bytes: u64,
}

/// One entry of a tree being taken over, as its stat says.
#[derive(Debug, Clone, Copy)]
struct Entry {
    uid: u32,
    /// The file type bits (`libc_mode::S_IF*`).
    kind: u32,
    size: u64,
    /// 512-byte blocks allocated.
    blocks: u64,
    nlink: u64,
    /// A regular file whose inode is one of the previous generation's (or
    /// root built the tree: no previous generation to compare with).
    shared: bool,
}

impl Entry {
    fn of(st: &Stat, previous: Option<&Previous>) -> Entry {
        Entry {
            uid: st.st_uid,
            kind: fsx::file_type(st),
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            nlink: st.st_nlink,
            shared: previous.is_none_or(|p| p.inodes.contains(&(st.st_dev, st.st_ino))),
        }
    }
}

/// What the take-over does with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// A directory: made root's 0755 and walked (it cannot be a hard link,
    /// so it is this tree's alone whoever made it).
    TakeDir,
    /// The builder's regular file: a new root-owned inode renamed over it.
    Renew,
    /// Root's regular file, a hard link prepare made: kept as it is.
    Shared,
    /// The builder's symlink: made root's, never followed.
    TakeLink,
    /// Root's symlink: kept.
    KeepLink,
    Refuse(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Neither root's nor the builder's.
    ThirdOwner,
    /// Root's, but no file of the previous generation.
    ForeignRootFile,
    /// A FIFO, socket or device.
    Special,
    /// The builder's file with more than [`SPARSE_SLACK`] of holes.
    Sparse,
    /// The builder's file with more than one name.
    ManyNames,
}

/// The verdict on one entry of a tree `builder` built (`None`: root did).
fn verdict(e: &Entry, builder: Option<u32>) -> Verdict {
    let builders = Some(e.uid) == builder;
    if e.uid != 0 && !builders {
        return Verdict::Refuse(Refusal::ThirdOwner);
    }
    match e.kind {
        libc_mode::S_IFDIR => Verdict::TakeDir,
        libc_mode::S_IFREG if builders => {
            if e.size.saturating_sub(e.blocks * 512) > SPARSE_SLACK {
                Verdict::Refuse(Refusal::Sparse)
            } else if e.nlink != 1 {
                // One copy per name would let a file of N names cost root N copies.
                Verdict::Refuse(Refusal::ManyNames)
            } else {
                Verdict::Renew
            }
        }
        libc_mode::S_IFREG if e.shared => Verdict::Shared,
        libc_mode::S_IFREG => Verdict::Refuse(Refusal::ForeignRootFile),
        libc_mode::S_IFLNK if builders => Verdict::TakeLink,
        libc_mode::S_IFLNK => Verdict::KeepLink,
        _ => Verdict::Refuse(Refusal::Special),
    }
}

/// The failure a refusal is, for the entry at `shown`.
fn refused(r: Refusal, e: &Entry, shown: &Path) -> Failure {
    let shown = shown.display();
    let (message, hint) = match r {
        Refusal::ThirdOwner => (
            format!(
                "{shown} belongs to uid {}, neither root nor the update user",
                e.uid
            ),
            "only the update user writes the new generation; look at what else did",
        ),
        Refusal::ForeignRootFile => (
            format!(
                "{shown} is root's but is not a file of the current generation: a hard link to some other root file"
            ),
            "look at what linked it there; only prepare puts root's files in .next",
        ),
        Refusal::Special => (
            format!(
                "{shown} is a FIFO, socket or device; a game installation holds only directories, files and symlinks"
            ),
            "look at what wrote this tree",
        ),
        Refusal::Sparse => (
            format!(
                "{shown} is sparse ({} bytes long, {} allocated); the game has no sparse files",
                e.size,
                e.blocks * 512
            ),
            "look at what wrote this tree",
        ),
        Refusal::ManyNames => (
            format!(
                "{shown} has {} names (hard links); steamcmd makes none, and root would copy it once per name",
                e.nlink
            ),
            "look at what wrote this tree",
        ),
    };
    Failure::new(Kind::UnsafePath, message).hint(hint)
}

/// Makes the tree under `top` a generation. Every entry of the builder (the
/// update user, uid and gid in `builder_ids`; `None` when root built it)
/// becomes root's, with set-id bits and group/other write bits cleared,
/// and each of its regular files gets a new root-owned inode (a reflink
/// where the filesystem can, else a copy) renamed over it: a descriptor or
/// mapping of the old inode, opened by anyone before the take-over, cannot
/// write into the committed generation.
/// A root-owned file must be one of `previous`'s (hard-linked by prepare)
/// and is never changed; `previous` is `None` when root built the tree
/// (import), whose root files are its own copies. Anything that is not a
/// directory, a regular file or a symlink, belongs to a third account, is
/// sparse, or is a file of the builder with more than one name, is
/// refused, and so is a tree whose copies would write more than `budget`,
/// or, when the update user built it, whose files are larger than
/// [`MAX_TREE_BYTES`] or whose directories than [`MAX_TREE_DIR_BYTES`]
/// together; a file whose size changes while it is renewed is refused too.
/// What root writes for the update user here, it writes as
/// [`fsx::WritingAs`] that user.
///
/// The new inodes are made in `staging` (an empty root-only directory on
/// the same filesystem), one subdirectory per depth, under the file's own
/// name, and renamed over the old ones once the walk has read their whole
/// directory: a directory is never changed while it is read (a rename into
/// it could show the walk a renewed file again, as root's), and no name
/// grows a prefix (a 255-byte name stays valid).
///
/// The caller has made `top` root's and 0700 and checked that no process of
/// the builder is left, so nothing can reach the tree by path while it is
/// walked.
pub(crate) fn take_over(
    top: BorrowedFd<'_>,
    builder_ids: Option<(u32, u32)>,
    previous: Option<&Previous>,
    budget: Option<u64>,
    staging: (BorrowedFd<'_>, &Path),
    shown_top: &Path,
) -> Result<TakeOverStats> {
    // What root writes taking over the update user's tree, it writes as
    // that user would allocate.
    let _as = builder_ids
        .map(|ids| fsx::WritingAs::enter(ids, shown_top))
        .transpose()?;
    let builder = builder_ids.map(|(uid, _)| uid);
    // The visitor stages, the walk's leave renames: both change it.
    let renewer = RefCell::new(Renewer {
        cloner: Cloner::default(),
        builder,
        stats: TakeOverStats::default(),
        dir_bytes: 0,
        budget,
        staging: staging.0,
        by_depth: Vec::new(),
        shown_staging: staging.1.to_path_buf(),
    });
    let top_size = fsx::stat_fd(top, shown_top)?.st_size as u64;
    renewer.borrow_mut().add_dir(top_size, shown_top)?;
    let mut taken = 0;
    walk(
        top,
        shown_top,
        |v| {
            let entry = Entry::of(v.st, previous);
            match verdict(&entry, builder) {
                Verdict::TakeDir => {
                    renewer.borrow_mut().add_dir(v.st.st_size as u64, v.shown)?;
                    // Permission to write in a directory is checked at each
                    // call, so a descriptor opened earlier gains nothing.
                    let child = open_dir_at(v.dir, v.name, v.shown)?;
                    same_inode(&child, v.st, v.shown)?;
                    fsx::chown_fd(child.as_fd(), 0, 0, v.shown)?;
                    fsx::chmod_fd(child.as_fd(), DIR_MODE, v.shown)?;
                    taken += 1;
                    Ok(Some(child))
                }
                Verdict::Renew => {
                    let mut renewer = renewer.borrow_mut();
                    renewer.add_bytes(entry.size, v.shown)?;
                    renewer.stage(&v)?;
                    Ok(None)
                }
                Verdict::Shared => {
                    let mut renewer = renewer.borrow_mut();
                    renewer.add_bytes(entry.size, v.shown)?;
                    renewer.stats.shared += 1;
                    Ok(None)
                }
                Verdict::TakeLink => {
                    rustix::fs::chownat(
                        v.dir,
                        v.name,
                        Some(Uid::ROOT),
                        Some(Gid::ROOT),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| Failure::os(v.shown, "chown", e))?;
                    taken += 1;
                    Ok(None)
                }
                Verdict::KeepLink => Ok(None),
                Verdict::Refuse(r) => Err(refused(r, &entry, v.shown)),
            }
        },
        |dir, depth, shown| renewer.borrow_mut().rename_staged(dir, depth, shown),
    )?;
    let mut stats = renewer.into_inner().stats;
    stats.taken += taken;
    Ok(stats)
}

/// Renews the builder's files of a take-over through `staging`.
struct Renewer<'a> {
    cloner: Cloner,
    /// The update user (none: root built the tree).
    builder: Option<u32>,
    stats: TakeOverStats,
    /// The size of the directories so far.
    dir_bytes: u64,
    budget: Option<u64>,
    staging: BorrowedFd<'a>,
    /// staging/<depth>/, made on first use.
    by_depth: Vec<OwnedFd>,
    shown_staging: PathBuf,
}

impl Renewer<'_> {
    /// Counts a directory's size; refuses a tree of the update user's past
    /// [`MAX_TREE_DIR_BYTES`] before the directory is read.
    fn add_dir(&mut self, size: u64, shown: &Path) -> Result<()> {
        self.dir_bytes = self.dir_bytes.saturating_add(size);
        if self.builder.is_some() && self.dir_bytes > MAX_TREE_DIR_BYTES {
            return Err(Failure::new(
                Kind::UnsafePath,
                format!(
                    "{}: the tree's directories take {} bytes with it, more than the {MAX_TREE_DIR_BYTES} a game installation's do (a directory emptied of many names keeps its size)",
                    shown.display(),
                    self.dir_bytes
                ),
            )
            .hint("look at what wrote this tree"));
        }
        Ok(())
    }

    /// Counts a file's apparent size; refuses a tree of the update user's
    /// past [`MAX_TREE_BYTES`] before its next file is staged.
    fn add_bytes(&mut self, size: u64, shown: &Path) -> Result<()> {
        self.stats.bytes = self.stats.bytes.saturating_add(size);
        if self.builder.is_some() && self.stats.bytes > MAX_TREE_BYTES {
            return Err(Failure::new(
                Kind::UnsafePath,
                format!(
                    "{}: the tree's files reach {} bytes with it, more than the {MAX_TREE_BYTES} a game installation may have",
                    shown.display(),
                    self.stats.bytes
                ),
            )
            .hint("look at what wrote this tree; Left 4 Dead 2 is about 10 GB"));
        }
        Ok(())
    }

    fn staging_for(&mut self, depth: usize) -> Result<BorrowedFd<'_>> {
        while self.by_depth.len() <= depth {
            let name = self.by_depth.len().to_string();
            let shown = self.shown_staging.join(&name);
            self.by_depth
                .push(fsx::ensure_dir(self.staging, &name, 0o700, &shown)?);
        }
        Ok(self.by_depth[depth].as_fd())
    }

    /// Puts a root-owned copy of the builder's file `v` in staging (its
    /// [`verdict`] was [`Verdict::Renew`]).
    fn stage(&mut self, v: &Visit<'_>) -> Result<()> {
        let old = rustix::fs::openat(v.dir, v.name, FILE_OPEN, Mode::empty())
            .map_err(|e| Failure::os(v.shown, "open", e))?;
        same_inode(&old, v.st, v.shown)?;
        let staging = self.staging_for(v.depth)?;
        let new = create_in(staging, v.name, v.shown)?;
        if !self.cloner.reflink(&old, &new, v.shown)? {
            // Only a copy writes: a reflink shares the blocks the update
            // user's file had, which go with it.
            let size = v.st.st_size as u64;
            // No let chains: rust-version is 1.85 (Debian trixie's rustc).
            let over = self
                .budget
                .filter(|&budget| self.stats.bytes_copied.saturating_add(size) > budget);
            if let Some(budget) = over {
                return Err(Failure::new(
                    Kind::UnsafePath,
                    format!(
                        "{}: copying it would make this commit write more than {budget} bytes as root, twice the current generation and 1 GiB",
                        v.shown.display()
                    ),
                )
                .hint("look at what wrote this tree; a game update is not larger than the game"));
            }
            self.stats.bytes_copied += copy_content(&old, v.st, &new, v.shown)?;
        }
        same_size(&old, &new, v.st, v.shown)?;
        // fchown of the new inode leaves no set-id bit or file capability behind.
        finish(&new, v.st, (0, 0), v.shown)
    }

    /// Renames what was staged for the directory `dir`, now read to its
    /// end, over the builder's files there. Reads staging/<depth>/ again
    /// until it is empty: renaming out of a directory while reading it may
    /// hide some entries from that read.
    fn rename_staged(&mut self, dir: BorrowedFd<'_>, depth: usize, shown: &Path) -> Result<()> {
        let Some(staged) = self.by_depth.get(depth) else {
            return Ok(());
        };
        loop {
            let mut moved = 0;
            let entries = Dir::read_from(staged).map_err(|e| Failure::os(shown, "read", e))?;
            for entry in entries {
                let entry = entry.map_err(|e| Failure::os(shown, "read", e))?;
                let name = entry.file_name();
                if name == c"." || name == c".." {
                    continue;
                }
                rustix::fs::renameat_with(staged, name, dir, name, RenameFlags::empty()).map_err(
                    |e| {
                        Failure::os(
                            &shown.join(name.to_string_lossy().as_ref()),
                            "rename the renewed copy over",
                            e,
                        )
                    },
                )?;
                moved += 1;
            }
            if moved == 0 {
                return Ok(());
            }
            self.stats.taken += moved;
            self.stats.files_renewed += moved;
        }
    }
}

/// What a new directory takes on disk, at least: one block.
const DIR_BLOCK: u64 = 4096;

/// Refuses a copy of `size` bytes that would dip into the blocks the
/// filesystem reserves for root: the update user could not have written
/// them, so root must not on its behalf, neither in commit's renewed
/// copies nor in prepare's copies for it (thirtieth review: prepare's full
/// copy of `steamapps/` wrote 700 MiB into the reserve, and the update
/// user kept the blocks by passing a descriptor of its copy to another
/// account before the run was discarded).
fn require_unreserved_space(fd: impl AsFd, size: u64, shown: &Path) -> Result<()> {
    let vfs = rustix::fs::fstatvfs(fd).map_err(|e| Failure::os(shown, "statvfs", e))?;
    let available = vfs.f_bavail.saturating_mul(vfs.f_frsize);
    if size > available {
        return Err(Failure::new(
            Kind::UnsafePath,
            format!(
                "{}: copying its {size} bytes would use space reserved for root ({available} bytes left for others)",
                shown.display()
            ),
        )
        .hint("free disk space, then update again"));
    }
    Ok(())
}

/// The builder's file `old` and its renewed copy `new` both have the size
/// `st` gave it: an account that kept a descriptor of the file (the update
/// user's processes are gone, another's may not be) did not grow or
/// shrink it while it was copied or reflinked, which would have put more
/// than was checked into the generation or half a file.
fn same_size(old: &OwnedFd, new: &OwnedFd, st: &Stat, shown: &Path) -> Result<()> {
    let sizes = [
        fsx::stat_fd(old, shown)?.st_size,
        fsx::stat_fd(new, shown)?.st_size,
    ];
    if sizes != [st.st_size; 2] {
        return Err(Failure::new(
            Kind::UnsafePath,
            format!(
                "{} changed size while it was being taken over ({} bytes, then {} and a copy of {})",
                shown.display(),
                st.st_size,
                sizes[0],
                sizes[1]
            ),
        )
        .hint("another account holds it open for writing (its mode let it); look at what did, then update again"));
    }
    Ok(())
}

/// The entry opened is the one stat'ed: nothing swapped it in between.
fn same_inode(fd: &OwnedFd, st: &Stat, shown: &Path) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const BUILDER: u32 = 500;
    const REG: u32 = libc_mode::S_IFREG;
    // The other file types (fsx::libc_mode names only the three a tree may hold).
    const FIFO: u32 = 0o010000;
    const SOCKET: u32 = 0o140000;
    const CHAR_DEVICE: u32 = 0o020000;

    fn entry(uid: u32, kind: u32) -> Entry {
        Entry {
            uid,
            kind,
            size: 4096,
            blocks: 8,
            nlink: 1,
            shared: false,
        }
    }

    /// Each kind of entry, by whom, against the verdict. `builder` None:
    /// root built the tree (import), whose root files count as shared.
    #[rstest]
    #[case::builders_dir(entry(BUILDER, libc_mode::S_IFDIR), Some(BUILDER), Verdict::TakeDir)]
    #[case::roots_dir(entry(0, libc_mode::S_IFDIR), Some(BUILDER), Verdict::TakeDir)]
    #[case::builders_file(entry(BUILDER, REG), Some(BUILDER), Verdict::Renew)]
    #[case::builders_file_even_if_shared(Entry { shared: true, ..entry(BUILDER, REG) }, Some(BUILDER), Verdict::Renew)]
    #[case::roots_hard_link_from_prepare(Entry { shared: true, ..entry(0, REG) }, Some(BUILDER), Verdict::Shared)]
    #[case::roots_file_from_elsewhere(
        entry(0, REG),
        Some(BUILDER),
        Verdict::Refuse(Refusal::ForeignRootFile)
    )]
    #[case::roots_file_of_an_import(Entry { shared: true, ..entry(0, REG) }, None, Verdict::Shared)]
    #[case::builders_link(entry(BUILDER, libc_mode::S_IFLNK), Some(BUILDER), Verdict::TakeLink)]
    #[case::roots_link(entry(0, libc_mode::S_IFLNK), Some(BUILDER), Verdict::KeepLink)]
    #[case::third_owners_file(entry(1, REG), Some(BUILDER), Verdict::Refuse(Refusal::ThirdOwner))]
    #[case::third_owners_dir(
        entry(1, libc_mode::S_IFDIR),
        Some(BUILDER),
        Verdict::Refuse(Refusal::ThirdOwner)
    )]
    #[case::the_builder_of_an_import_is_nobody(
        entry(BUILDER, REG),
        None,
        Verdict::Refuse(Refusal::ThirdOwner)
    )]
    #[case::fifo(entry(BUILDER, FIFO), Some(BUILDER), Verdict::Refuse(Refusal::Special))]
    #[case::roots_socket(entry(0, SOCKET), Some(BUILDER), Verdict::Refuse(Refusal::Special))]
    #[case::device(
        entry(BUILDER, CHAR_DEVICE),
        Some(BUILDER),
        Verdict::Refuse(Refusal::Special)
    )]
    #[case::sparse(Entry { size: (2 << 20) + 4096, ..entry(BUILDER, REG) }, Some(BUILDER), Verdict::Refuse(Refusal::Sparse))]
    #[case::holes_within_the_slack(Entry { size: (1 << 20) + 4096, ..entry(BUILDER, REG) }, Some(BUILDER), Verdict::Renew)]
    #[case::two_names(Entry { nlink: 2, ..entry(BUILDER, REG) }, Some(BUILDER), Verdict::Refuse(Refusal::ManyNames))]
    #[case::roots_shared_file_has_many_names(Entry { nlink: 3, shared: true, ..entry(0, REG) }, Some(BUILDER), Verdict::Shared)]
    #[test_log::test]
    fn the_verdict_on_one_entry(
        #[case] e: Entry,
        #[case] builder: Option<u32>,
        #[case] want: Verdict,
    ) {
        assert_eq!(verdict(&e, builder), want);
    }

    #[test_log::test]
    fn a_refusal_names_the_entry_and_what_is_wrong() {
        let e = Entry {
            nlink: 201,
            ..entry(BUILDER, REG)
        };
        let f = refused(
            Refusal::ManyNames,
            &e,
            Path::new("/s/installations/.next/x"),
        );
        assert_eq!(f.kind, Kind::UnsafePath);
        assert!(
            f.message
                .starts_with("/s/installations/.next/x has 201 names"),
            "{f:?}"
        );
        let f = refused(Refusal::ThirdOwner, &entry(7, REG), Path::new("x"));
        assert!(f.message.contains("uid 7"), "{f:?}");
    }

    fn renewer(staging: BorrowedFd<'_>, builder: Option<u32>) -> Renewer<'_> {
        Renewer {
            cloner: Cloner::default(),
            builder,
            stats: TakeOverStats::default(),
            dir_bytes: 0,
            budget: None,
            staging,
            by_depth: Vec::new(),
            shown_staging: PathBuf::from("staging"),
        }
    }

    /// Another account kept a descriptor of the update user's file and
    /// grew it once root had checked its size: root copied until the disk
    /// was full, its reserve included (twenty-ninth review). The copy stops
    /// at the size checked, and the file is refused. Where the filesystem
    /// reflinks, the clone (which writes nothing) is refused the same way.
    #[test_log::test]
    fn a_file_grown_after_its_stat_is_refused_and_copied_no_further() {
        let tree = tempfile::tempdir().unwrap();
        let staging = tempfile::tempdir().unwrap();
        std::fs::write(tree.path().join("f"), b"0123456789").unwrap();
        let dir = rustix::fs::open(tree.path(), fsx::DIR_FLAGS, Mode::empty()).unwrap();
        let st = rustix::fs::statat(&dir, c"f", AtFlags::SYMLINK_NOFOLLOW).unwrap();
        let held = std::fs::OpenOptions::new()
            .write(true)
            .open(tree.path().join("f"))
            .unwrap();
        held.set_len(1 << 30).unwrap();
        let staging_fd = rustix::fs::open(staging.path(), fsx::DIR_FLAGS, Mode::empty()).unwrap();
        let mut r = renewer(staging_fd.as_fd(), Some(fsx::test_writer().0));
        let shown = tree.path().join("f");
        let visit = Visit {
            dir: dir.as_fd(),
            name: c"f",
            st: &st,
            shown: &shown,
            depth: 0,
        };
        let f = r.stage(&visit).unwrap_err();
        assert_eq!(f.kind, Kind::UnsafePath);
        assert!(
            f.message
                .contains("changed size while it was being taken over (10 bytes, then 1073741824"),
            "{f:?}"
        );
        let copy = std::fs::metadata(staging.path().join("0/f")).unwrap();
        if r.cloner.can_reflink == Some(false) {
            assert_eq!(copy.len(), 10, "the copy went past the size checked");
            assert_eq!(r.stats.bytes_copied, 10);
        } else {
            // A reflink copies nothing; the clone has the grown size.
            assert_eq!(r.stats.bytes_copied, 0);
        }
    }

    /// Every copy root makes for the update user, prepare's full copy of
    /// `steamapps/` too (thirtieth review: 700 MiB into root's reserve),
    /// stays out of the reserved blocks: a file whose size is more than
    /// the space others may use is refused before a byte is written.
    #[test_log::test]
    fn a_copy_that_would_use_the_reserved_blocks_is_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("src"), b"data").unwrap();
        let src = rustix::fs::open(dir.path().join("src"), FILE_OPEN, Mode::empty()).unwrap();
        let dst = rustix::fs::open(
            dir.path().join("dst"),
            OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let vfs = rustix::fs::fstatvfs(&dst).unwrap();
        let mut st = fsx::stat_fd(&src, dir.path()).unwrap();
        st.st_size = (vfs.f_bavail * vfs.f_frsize + 1) as _;
        let f = copy_content(&src, &st, &dst, Path::new("x")).unwrap_err();
        assert!(
            f.message.contains("would use space reserved for root"),
            "{f:?}"
        );
        assert_eq!(std::fs::metadata(dir.path().join("dst")).unwrap().len(), 0);
        // Within the space left: copied.
        let st = fsx::stat_fd(&src, dir.path()).unwrap();
        assert_eq!(copy_content(&src, &st, &dst, Path::new("x")).unwrap(), 4);
    }

    #[test_log::test]
    fn a_tree_of_the_update_users_is_refused_past_its_apparent_size() {
        let staging = tempfile::tempdir().unwrap();
        let fd = rustix::fs::open(staging.path(), fsx::DIR_FLAGS, Mode::empty()).unwrap();
        let mut r = renewer(fd.as_fd(), Some(BUILDER));
        r.add_bytes(MAX_TREE_BYTES, Path::new("a")).unwrap();
        let f = r.add_bytes(1, Path::new("b")).unwrap_err();
        assert!(
            f.message.starts_with(
                "b: the tree's files reach 34359738369 bytes with it, more than the 34359738368"
            ),
            "{f:?}"
        );
        // Root's own tree (an import) is the admin's: no such bound.
        let mut r = renewer(fd.as_fd(), None);
        r.add_bytes(2 * MAX_TREE_BYTES, Path::new("c")).unwrap();
    }

    #[test_log::test]
    fn a_tree_of_the_update_users_is_refused_past_its_directories_size() {
        let staging = tempfile::tempdir().unwrap();
        let fd = rustix::fs::open(staging.path(), fsx::DIR_FLAGS, Mode::empty()).unwrap();
        let mut r = renewer(fd.as_fd(), Some(BUILDER));
        r.add_dir(MAX_TREE_DIR_BYTES, Path::new("a")).unwrap();
        let f = r.add_dir(4096, Path::new("b")).unwrap_err();
        assert!(
            f.message.starts_with(
                "b: the tree's directories take 67112960 bytes with it, more than the 67108864"
            ),
            "{f:?}"
        );
        let mut r = renewer(fd.as_fd(), None);
        r.add_dir(2 * MAX_TREE_DIR_BYTES, Path::new("c")).unwrap();
    }

    #[test_log::test]
    fn a_tally_counts_all_and_keeps_the_first_ten() {
        let mut t = Tally::default();
        for i in 0..12 {
            t.add(Path::new(&format!("f{i}")));
        }
        assert_eq!(t.count, 12);
        assert_eq!(t.first.len(), Tally::FIRST);
        assert_eq!(t.first_words().split(' ').next_back(), Some("f9"));
    }
}
