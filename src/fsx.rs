//! Path-safe filesystem primitives. Every path below the state directory is
//! resolved with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) relative to a
//! directory fd, and all later work (chown, mount, rename, unlink) goes through
//! the fds obtained, so nothing is re-resolved after it was checked.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Stat, StatxFlags};
use rustix::io::Errno;

use crate::error::{Failure, Kind};

pub const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens directory `rel` beneath `base` without following any symlink.
/// `shown` is how the path is named in errors.
pub fn open_dir(base: BorrowedFd<'_>, rel: &str, shown: &Path) -> Result<OwnedFd, Failure> {
    rustix::fs::openat2(base, rel, DIR_FLAGS, Mode::empty(), BENEATH)
        .map_err(|e| explain(base, rel, shown, e, "directory"))
}

/// Like [`open_dir`], but `Ok(None)` when it does not exist.
pub fn open_dir_if_exists(
    base: BorrowedFd<'_>,
    rel: &str,
    shown: &Path,
) -> Result<Option<OwnedFd>, Failure> {
    match rustix::fs::openat2(base, rel, DIR_FLAGS, Mode::empty(), BENEATH) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(explain(base, rel, shown, e, "directory")),
    }
}

/// Opens or creates directory `name` directly in `parent`. A new directory
/// gets exactly `mode`, whatever the umask (systemd units may set UMask=0077);
/// what is there already is used as it is if it is a directory.
pub fn ensure_dir(
    parent: BorrowedFd<'_>,
    name: &str,
    mode: u32,
    shown: &Path,
) -> Result<OwnedFd, Failure> {
    let created = match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(mode)) {
        Ok(()) => true,
        Err(Errno::EXIST) => false,
        Err(e) => return Err(explain(parent, name, shown, e, "directory")),
    };
    let fd = open_dir(parent, name, shown)?;
    if created {
        chmod_fd(fd.as_fd(), mode, shown)?;
    }
    Ok(fd)
}

/// Reads a small regular file beneath `base`: no symlinks, no FIFOs or
/// devices (O_NONBLOCK keeps a FIFO from hanging the open), no hard links to
/// elsewhere, at most `max` bytes.
pub fn read_small_file(
    base: BorrowedFd<'_>,
    rel: &str,
    shown: &Path,
    max: usize,
) -> Result<Vec<u8>, Failure> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = rustix::fs::openat2(base, rel, flags, Mode::empty(), BENEATH)
        .map_err(|e| explain(base, rel, shown, e, "file"))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| os(shown, "fstat", e))?;
    if file_type(&st) != libc_mode::S_IFREG {
        return Err(Failure::new(
            Kind::UnsafePath,
            format!("{} is not a regular file", shown.display()),
        )
        .hint("replace it with a plain file"));
    }
    if st.st_nlink != 1 {
        return Err(Failure::new(
            Kind::UnsafePath,
            format!(
                "{} has {} hard links; it may alias a file elsewhere",
                shown.display(),
                st.st_nlink
            ),
        )
        .hint("replace it with a fresh copy (cp, not ln)"));
    }
    if st.st_size as u64 > max as u64 {
        return Err(Failure::new(
            Kind::InvalidConfig,
            format!(
                "{}: {} bytes, more than the {max} it may have",
                shown.display(),
                st.st_size
            ),
        ));
    }
    let mut buf = vec![0u8; max + 1];
    let mut len = 0;
    loop {
        match rustix::io::read(&fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(os(shown, "read", e)),
        }
        if len > max {
            return Err(Failure::new(
                Kind::InvalidConfig,
                format!("{}: more than the {max} bytes it may have", shown.display()),
            ));
        }
    }
    buf.truncate(len);
    Ok(buf)
}

pub mod libc_mode {
    pub const S_IFMT: u32 = 0o170000;
    pub const S_IFREG: u32 = 0o100000;
    pub const S_IFDIR: u32 = 0o040000;
    pub const S_IFLNK: u32 = 0o120000;
}

pub fn file_type(st: &Stat) -> u32 {
    st.st_mode & libc_mode::S_IFMT
}

/// What sits at `name` in `parent`, without following it and without
/// crossing into a filesystem mounted there.
pub struct Entry {
    pub kind: u32,
    pub mount_root: bool,
    pub mnt_id: u64,
}

pub fn entry(parent: BorrowedFd<'_>, name: &str) -> Result<Option<Entry>, Errno> {
    let mask = StatxFlags::TYPE | StatxFlags::MNT_ID;
    match rustix::fs::statx(parent, name, AtFlags::SYMLINK_NOFOLLOW, mask) {
        Ok(st) => Ok(Some(Entry {
            kind: u32::from(st.stx_mode) & libc_mode::S_IFMT,
            mount_root: st
                .stx_attributes_mask
                .contains(rustix::fs::StatxAttributes::MOUNT_ROOT)
                && st
                    .stx_attributes
                    .contains(rustix::fs::StatxAttributes::MOUNT_ROOT),
            mnt_id: st.stx_mnt_id,
        })),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `/proc/self/fd/N`: names exactly the object behind `fd` for syscalls that
/// only take paths, without resolving any user-controlled path again.
pub fn fd_path(fd: BorrowedFd<'_>) -> String {
    use std::os::fd::AsRawFd;
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

pub fn os(shown: &Path, what: &str, e: Errno) -> Failure {
    let kind = if matches!(e, Errno::PERM | Errno::ACCESS) {
        Kind::NotPermitted
    } else {
        Kind::Missing
    };
    let failure = Failure::new(kind, format!("{what} {}: {e}", shown.display()));
    if kind == Kind::NotPermitted {
        failure.hint("left4me-overlay must run as root (systemd runs it with the + prefix)")
    } else {
        failure
    }
}

/// Turns an openat2 error into a message that names the offending component.
fn explain(base: BorrowedFd<'_>, rel: &str, shown: &Path, e: Errno, want: &str) -> Failure {
    let culprit = find_culprit(base, rel);
    let culprit_shown = match &culprit {
        Some((prefix, _)) => {
            let extra =
                Path::new(rel).components().count() - Path::new(prefix).components().count();
            let mut p = shown.to_path_buf();
            for _ in 0..extra {
                p.pop();
            }
            p
        }
        None => shown.to_path_buf(),
    };
    match (e, culprit.map(|(_, k)| k)) {
        (Errno::LOOP, _) | (_, Some(libc_mode::S_IFLNK)) => Failure::new(
            Kind::UnsafePath,
            format!(
                "{} is a symlink; refusing to follow it as root",
                culprit_shown.display()
            ),
        )
        .hint("remove the symlink; left4me-overlay creates the directories it needs"),
        (Errno::XDEV, _) => Failure::new(
            Kind::UnsafePath,
            format!("{} resolves outside the state directory", shown.display()),
        ),
        (Errno::NOTDIR, _) => Failure::new(
            Kind::UnsafePath,
            format!("{} is not a directory", culprit_shown.display()),
        )
        .hint("remove whatever is there; left4me-overlay creates the directories it needs"),
        (Errno::NOENT, _) => Failure::new(
            Kind::Missing,
            format!("{} does not exist", culprit_shown.display()),
        ),
        (Errno::ISDIR, _) => Failure::new(
            Kind::UnsafePath,
            format!("{} is a directory, expected a {want}", shown.display()),
        ),
        (e, _) => os(shown, &format!("open {want}"), e),
    }
}

/// Walks `rel` component by component (for the error message only) and
/// returns the first prefix that is missing, a symlink or not a directory.
fn find_culprit(base: BorrowedFd<'_>, rel: &str) -> Option<(String, u32)> {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    for i in 0..parts.len() {
        let prefix = parts[..=i].join("/");
        let st = match rustix::fs::statat(base, prefix.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(_) => return Some((prefix, 0)),
        };
        let kind = file_type(&st);
        if kind == libc_mode::S_IFLNK || (i + 1 < parts.len() && kind != libc_mode::S_IFDIR) {
            return Some((prefix, kind));
        }
    }
    None
}

/// Changes owner through the fd (O_RDONLY directory fds from [`open_dir`]).
pub fn chown_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32, shown: &Path) -> Result<(), Failure> {
    use rustix::fs::{Gid, Uid};
    rustix::fs::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
        .map_err(|e| os(shown, "chown", e))
}

pub fn chmod_fd(fd: BorrowedFd<'_>, mode: u32, shown: &Path) -> Result<(), Failure> {
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)).map_err(|e| os(shown, "chmod", e))
}

pub fn stat_fd(fd: impl AsFd, shown: &Path) -> Result<Stat, Failure> {
    rustix::fs::fstat(fd).map_err(|e| os(shown, "stat", e))
}
