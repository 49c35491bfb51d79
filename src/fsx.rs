//! Path-safe filesystem primitives. Every path below the state directory is
//! resolved with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) relative to a
//! directory fd, and all later work (chown, mount, rename, unlink) goes through
//! the fds obtained, so nothing is re-resolved after it was checked.
//!
//! Nor does a path cross a mount point (RESOLVE_NO_XDEV): the service user
//! may mount what it likes (FUSE, with `user_allow_other`) on the
//! directories it owns, and a filesystem it serves can claim any owner and
//! mode for its files, so a layer, upper or work directory on such a mount
//! would let overlayfs copy up, as root, a set-uid root file the user never
//! had. Only the admin's trees, installations/ and overlays/<name>, which
//! nobody but root can write, may be mounts of their own (a game kept on a
//! disk of its own): [`open_admin_dir`] and [`ensure_admin_dir`].

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Stat, StatxFlags};
use rustix::io::Errno;

use crate::error::{Failure, Kind};

pub(crate) const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// [`BENEATH`], but mount points below the state dir may be crossed: only
/// for the root-only trees.
const BENEATH_ACROSS_MOUNTS: ResolveFlags = BENEATH.difference(ResolveFlags::NO_XDEV);

/// How every directory below the state dir is opened: read-only, no
/// symlink followed.
pub(crate) const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens directory `rel` beneath `base` without following any symlink or
/// crossing a mount point. `shown` is how the path is named in errors.
pub(crate) fn open_dir(base: BorrowedFd<'_>, rel: &str, shown: &Path) -> Result<OwnedFd, Failure> {
    open_dir_with(base, rel, shown, BENEATH)
}

/// Like [`open_dir`], but mount points may be crossed: for installations/
/// and overlays/<name> (see the module's comment).
pub(crate) fn open_admin_dir(
    base: BorrowedFd<'_>,
    rel: &str,
    shown: &Path,
) -> Result<OwnedFd, Failure> {
    open_dir_with(base, rel, shown, BENEATH_ACROSS_MOUNTS)
}

fn open_dir_with(
    base: BorrowedFd<'_>,
    rel: &str,
    shown: &Path,
    resolve: ResolveFlags,
) -> Result<OwnedFd, Failure> {
    open_dir_if_exists_with(base, rel, shown, resolve)?
        .ok_or_else(|| explain(base, rel, shown, Errno::NOENT, "directory", resolve))
}

/// Like [`open_dir`], but `Ok(None)` when it does not exist.
pub(crate) fn open_dir_if_exists(
    base: BorrowedFd<'_>,
    rel: &str,
    shown: &Path,
) -> Result<Option<OwnedFd>, Failure> {
    open_dir_if_exists_with(base, rel, shown, BENEATH)
}

/// Like [`open_admin_dir`], but `Ok(None)` when it does not exist.
pub(crate) fn open_admin_dir_if_exists(
    base: BorrowedFd<'_>,
    rel: &str,
    shown: &Path,
) -> Result<Option<OwnedFd>, Failure> {
    open_dir_if_exists_with(base, rel, shown, BENEATH_ACROSS_MOUNTS)
}

fn open_dir_if_exists_with(
    base: BorrowedFd<'_>,
    rel: &str,
    shown: &Path,
    resolve: ResolveFlags,
) -> Result<Option<OwnedFd>, Failure> {
    match rustix::fs::openat2(base, rel, DIR_FLAGS, Mode::empty(), resolve) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(explain(base, rel, shown, e, "directory", resolve)),
    }
}

/// Opens or creates directory `name` directly in `parent`. A new directory
/// gets exactly `mode`, whatever the umask (systemd units may set UMask=0077);
/// what is there already is used as it is if it is a directory and not a
/// mount point.
pub(crate) fn ensure_dir(
    parent: BorrowedFd<'_>,
    name: &str,
    mode: u32,
    shown: &Path,
) -> Result<OwnedFd, Failure> {
    ensure_dir_with(parent, name, mode, shown, BENEATH)
}

/// Like [`ensure_dir`], but it may be a mount point: for installations/.
pub(crate) fn ensure_admin_dir(
    parent: BorrowedFd<'_>,
    name: &str,
    mode: u32,
    shown: &Path,
) -> Result<OwnedFd, Failure> {
    ensure_dir_with(parent, name, mode, shown, BENEATH_ACROSS_MOUNTS)
}

fn ensure_dir_with(
    parent: BorrowedFd<'_>,
    name: &str,
    mode: u32,
    shown: &Path,
    resolve: ResolveFlags,
) -> Result<OwnedFd, Failure> {
    let created = match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(mode)) {
        Ok(()) => true,
        Err(Errno::EXIST) => false,
        Err(e @ (Errno::LOOP | Errno::NOTDIR | Errno::NOENT | Errno::XDEV)) => {
            return Err(explain(parent, name, shown, e, "directory", resolve));
        }
        Err(e) => return Err(Failure::os(shown, "create directory", e)),
    };
    let fd = open_dir_with(parent, name, shown, resolve)?;
    if created {
        chmod_fd(fd.as_fd(), mode, shown)?;
    }
    Ok(fd)
}

/// Reads a small regular file beneath `base`: no symlinks, no FIFOs or
/// devices (O_NONBLOCK keeps a FIFO from hanging the open), no hard links to
/// elsewhere, at most `max` bytes.
pub(crate) fn read_small_file(
    base: BorrowedFd<'_>,
    rel: &str,
    shown: &Path,
    max: usize,
) -> Result<Vec<u8>, Failure> {
    read_small(base, rel, shown, max, true)
}

/// As [`read_small_file`], for files in root's installation generations,
/// where a hard link to the same file in an older generation is expected
/// (docs/updates.md) and aliases nothing anyone else can write.
pub(crate) fn read_small_root_file(
    base: BorrowedFd<'_>,
    rel: &str,
    shown: &Path,
    max: usize,
) -> Result<Vec<u8>, Failure> {
    read_small(base, rel, shown, max, false)
}

fn read_small(
    base: BorrowedFd<'_>,
    rel: &str,
    shown: &Path,
    max: usize,
    refuse_links: bool,
) -> Result<Vec<u8>, Failure> {
    let too_large_hint = "it holds a few KEY=value lines; rewrite it";
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = rustix::fs::openat2(base, rel, flags, Mode::empty(), BENEATH)
        .map_err(|e| explain(base, rel, shown, e, "file", BENEATH))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| Failure::os(shown, "fstat", e))?;
    if file_type(&st) != libc_mode::S_IFREG {
        return Err(Failure::new(
            Kind::UnsafePath,
            format!("{} is not a regular file", shown.display()),
        )
        .hint("replace it with a plain file"));
    }
    if refuse_links && st.st_nlink != 1 {
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
        )
        .hint(too_large_hint));
    }
    let mut buf = vec![0u8; max + 1];
    let mut len = 0;
    loop {
        match rustix::io::read(&fd, &mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(Failure::os(shown, "read", e)),
        }
        if len > max {
            return Err(Failure::new(
                Kind::InvalidConfig,
                format!("{}: more than the {max} bytes it may have", shown.display()),
            )
            .hint(too_large_hint));
        }
    }
    buf.truncate(len);
    Ok(buf)
}

pub(crate) mod libc_mode {
    pub(crate) const S_IFMT: u32 = 0o170000;
    pub(crate) const S_IFREG: u32 = 0o100000;
    pub(crate) const S_IFDIR: u32 = 0o040000;
    pub(crate) const S_IFLNK: u32 = 0o120000;
    pub(crate) const S_IFIFO: u32 = 0o010000;
}

pub(crate) fn file_type(st: &Stat) -> u32 {
    st.st_mode & libc_mode::S_IFMT
}

/// What sits at `name` in `parent`, without following it and without
/// crossing into a filesystem mounted there.
pub(crate) struct Entry {
    pub(crate) kind: u32,
    pub(crate) mount_root: bool,
    pub(crate) mnt_id: u64,
}

/// `AT_STATX_DONT_SYNC`: a mount point's attributes come from the kernel's
/// cache. Without it, statx of a FUSE mount's root asks its server, and a
/// server the service user runs may never answer, leaving root in an
/// uninterruptible wait (not even SIGKILL ends it) with its locks held.
pub(crate) fn entry<P: rustix::path::Arg>(
    parent: BorrowedFd<'_>,
    name: P,
) -> Result<Option<Entry>, Errno> {
    let mask = StatxFlags::TYPE | StatxFlags::MNT_ID;
    let flags = AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_DONT_SYNC;
    match rustix::fs::statx(parent, name, flags, mask) {
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
pub(crate) fn fd_path(fd: BorrowedFd<'_>) -> String {
    use std::os::fd::AsRawFd;
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Turns an openat2 error into a message that names the offending
/// component; `resolve` is what the failed open allowed.
fn explain(
    base: BorrowedFd<'_>,
    rel: &str,
    shown: &Path,
    e: Errno,
    want: &str,
    resolve: ResolveFlags,
) -> Failure {
    let culprit = find_culprit(base, rel, resolve.contains(ResolveFlags::NO_XDEV));
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
        (Errno::LOOP, _) | (_, Some(Culprit::Symlink)) => Failure::new(
            Kind::UnsafePath,
            format!(
                "{} is a symlink; refusing to follow it as root",
                culprit_shown.display()
            ),
        )
        .hint("remove the symlink; left4me-overlay creates the directories it needs"),
        (Errno::XDEV, _) | (_, Some(Culprit::MountPoint)) => Failure::new(
            Kind::UnsafePath,
            format!(
                "{} is a mount point; root does not follow paths into another filesystem below the state directory",
                culprit_shown.display()
            ),
        )
        .hint(format!(
            "unmount it (fusermount -u {0}, or umount {0}) and use a plain directory",
            culprit_shown.display()
        )),
        (Errno::NOTDIR, _) => Failure::new(
            Kind::UnsafePath,
            format!("{} is not a directory", culprit_shown.display()),
        )
        .hint("remove whatever is there; left4me-overlay creates the directories it needs"),
        (Errno::NOENT, _) => Failure::new(
            Kind::Missing,
            format!("{} does not exist", culprit_shown.display()),
        )
        .hint("create it, or check --state-dir / LEFT4ME_STATE_DIR"),
        (Errno::ISDIR, _) => Failure::new(
            Kind::UnsafePath,
            format!("{} is a directory, expected a {want}", shown.display()),
        )
        .hint(format!("replace it with a {want}")),
        (e, _) => Failure::os(shown, &format!("open {want}"), e),
    }
}

/// What is wrong with the first offending prefix of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Culprit {
    Missing,
    Symlink,
    NotADirectory,
    MountPoint,
}

/// Walks `rel` component by component, for the error message only, and
/// returns the first prefix that is missing, a symlink, not a directory or
/// a mount point. Like [`entry`], with `AT_STATX_DONT_SYNC`, and it stops
/// at a mount point: nothing below one is ever looked up (a lookup in a
/// FUSE filesystem goes to its server, which may never answer).
/// Where the open was allowed to cross mount points (`!same_mount`: the
/// admin's trees), a mount point is no culprit and the walk goes on into it.
fn find_culprit(base: BorrowedFd<'_>, rel: &str, same_mount: bool) -> Option<(String, Culprit)> {
    let here = rustix::fs::statx(base, "", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID)
        .ok()
        .map(|st| st.stx_mnt_id);
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    for i in 0..parts.len() {
        let prefix = parts[..=i].join("/");
        let found = match entry(base, &prefix) {
            Ok(Some(found)) => found,
            _ => return Some((prefix, Culprit::Missing)),
        };
        if same_mount && (found.mount_root || here.is_some_and(|id| id != found.mnt_id)) {
            return Some((prefix, Culprit::MountPoint));
        }
        if found.kind == libc_mode::S_IFLNK {
            return Some((prefix, Culprit::Symlink));
        }
        if i + 1 < parts.len() && found.kind != libc_mode::S_IFDIR {
            return Some((prefix, Culprit::NotADirectory));
        }
    }
    None
}

/// Changes owner through the fd (O_RDONLY directory fds from [`open_dir`]).
pub(crate) fn chown_fd(
    fd: BorrowedFd<'_>,
    uid: u32,
    gid: u32,
    shown: &Path,
) -> Result<(), Failure> {
    use rustix::fs::{Gid, Uid};
    rustix::fs::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
        .map_err(|e| Failure::os(shown, "chown", e))
}

pub(crate) fn chmod_fd(fd: BorrowedFd<'_>, mode: u32, shown: &Path) -> Result<(), Failure> {
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)).map_err(|e| Failure::os(shown, "chmod", e))
}

pub(crate) fn stat_fd(fd: impl AsFd, shown: &Path) -> Result<Stat, Failure> {
    rustix::fs::fstat(fd).map_err(|e| Failure::os(shown, "stat", e))
}

/// Replaces `name` in `dir` with a root-only (0600) file holding `bytes`:
/// written to a temporary name and renamed over `name`, all through `dir`'s
/// fd, so a reader sees the old content or the new, never a part. Nothing is
/// fsynced: the files written here (the stack record, the game's
/// environment) describe a mount, a crash takes the mount with it, and the
/// next mount writes both again before the game unit can start.
pub(crate) fn write_replace(
    dir: BorrowedFd<'_>,
    name: &str,
    bytes: &[u8],
    shown: &Path,
) -> Result<(), Failure> {
    write_replace_as(dir, name, bytes, 0o600, None, shown)
}

/// As [`write_replace`], readable by group `gid` too (root:gid 0640).
pub(crate) fn write_replace_shared(
    dir: BorrowedFd<'_>,
    name: &str,
    bytes: &[u8],
    gid: u32,
    shown: &Path,
) -> Result<(), Failure> {
    write_replace_as(dir, name, bytes, 0o640, Some(gid), shown)
}

fn write_replace_as(
    dir: BorrowedFd<'_>,
    name: &str,
    bytes: &[u8],
    mode: u32,
    gid: Option<u32>,
    shown: &Path,
) -> Result<(), Failure> {
    let tmp = format!("{name}.tmp");
    let flags =
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, tmp.as_str(), flags, Mode::from_raw_mode(0o600))
        .map_err(|e| Failure::os(shown, "create", e))?;
    if let Some(gid) = gid {
        chown_fd(fd.as_fd(), 0, gid, shown)?;
    }
    // An earlier file of that name may have been created with another mode.
    chmod_fd(fd.as_fd(), mode, shown)?;
    write_all(&fd, bytes, shown)?;
    rustix::fs::renameat(dir, tmp.as_str(), dir, name).map_err(|e| Failure::os(shown, "rename", e))
}

/// Writes all of `bytes` to `fd`, retrying short and interrupted writes.
pub(crate) fn write_all(fd: &OwnedFd, bytes: &[u8], shown: &Path) -> Result<(), Failure> {
    let mut written = 0;
    while written < bytes.len() {
        match rustix::io::write(fd, &bytes[written..]) {
            Ok(n) => written += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(Failure::os(shown, "write", e)),
        }
    }
    Ok(())
}

/// Removes file `name` from `dir`; nothing to do if it is not there.
pub(crate) fn remove_file(dir: BorrowedFd<'_>, name: &str, shown: &Path) -> Result<(), Failure> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(Failure::os(shown, "remove", e)),
    }
}

/// Makes a fresh FIFO `name` in `dir` (a directory only root writes), owned
/// root:`gid`, mode 0660: made 0600, then given its group and mode by name,
/// without following a link. Nothing opens it: the open and the close of a
/// FIFO take its pipe's mutex, which a writer of the group holds for as long
/// as it likes (a write from a buffer whose page fault its own FUSE server
/// never serves, the twenty-first review), so root's open would wait in the
/// kernel, unkillable. Setting owner and mode by name takes only the inode's
/// lock, which a write to a pipe does not hold. Only root creates entries in
/// `dir`, so the name is the FIFO made here until root removes it. An entry
/// of that name must be gone first ([`remove_file`]); one that reappeared is
/// an error.
pub(crate) fn make_fifo(
    dir: BorrowedFd<'_>,
    name: &str,
    gid: u32,
    shown: &Path,
) -> Result<(), Failure> {
    use rustix::fs::{Gid, Uid};
    rustix::fs::mknodat(
        dir,
        name,
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .map_err(|e| Failure::os(shown, "mkfifo", e))?;
    rustix::fs::chownat(
        dir,
        name,
        Some(Uid::from_raw(0)),
        Some(Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| Failure::os(shown, "chown", e))?;
    // fchmodat follows a link (AT_SYMLINK_NOFOLLOW needs fchmodat2, Linux
    // 6.6); none can be here: root made this entry and nobody else writes
    // the directory.
    rustix::fs::chmodat(dir, name, Mode::from_raw_mode(0o660), AtFlags::empty())
        .map_err(|e| Failure::os(shown, "chmod", e))
}

/// What reading a directory of `size` bytes costs a bounded walk, in
/// entries: one per 256 bytes past its first 4 KiB (one block, read with
/// its entry's statx). A directory keeps its size when its entries are
/// removed (ext4), so a tree of emptied directories cost a walk that
/// counted entries alone seconds of reads and nothing of its budget
/// (twenty-eighth review: 372 MiB of them, 2.5 s cold; thirty-first: the
/// same in a generation, for every health check). 256 bytes from a cold
/// disk (about 150 MB/s) take about what one entry's statx does.
pub(crate) fn dir_read_cost(size: u64) -> u64 {
    const DIR_BYTES_PER_ENTRY: u64 = 256;
    const DIR_BYTES_FREE: u64 = 4096;
    size.saturating_sub(DIR_BYTES_FREE) / DIR_BYTES_PER_ENTRY
}

/// Takes the [`dir_read_cost`] of a directory of `size` bytes from `left`;
/// false, taking nothing, when `left` cannot pay it: the directory is then
/// not to be read.
pub(crate) fn pay_dir_read(size: u64, left: &mut u64) -> bool {
    let cost = dir_read_cost(size);
    let paid = cost <= *left;
    if paid {
        *left -= cost;
    }
    paid
}

/// While alive, this thread allocates blocks as the user of `ids` (uid,
/// gid) would. It wraps what root writes on another account's behalf:
/// prepare's copy for the update user and commit's take-over of its tree
/// (file data, directories, their entries, symlinks), and the creation of
/// an instance's overlay, whose creator's credentials overlayfs keeps for
/// every write through `merged/` and every copy-up.
///
/// The thread's filesystem uid and gid become the user's, and its
/// effective capabilities stay what they were but `CAP_SYS_RESOURCE`
/// (raised again after `setfsuid`, which drops the file capabilities:
/// root still opens, links and chowns what it must; overlayfs drops that
/// one capability from its creator's by itself). ext4 lets a writer use
/// the blocks it reserves only with filesystem uid 0 (its default
/// `resuid`), a filesystem or supplementary gid equal to a non-root
/// `resgid`, or that capability (`ext4_has_free_clusters`), and checks at
/// each allocation, where no check made before a write can race with other
/// accounts filling the disk (thirty-first review: 145 MiB of the reserve
/// in one copy; thirty-second: 157 MiB in symlinks; thirty-third: the game
/// took all 120 MiB of a test reserve through `merged/` in 0.34 s).
/// Measured on ext4 loop devices: such a writer gets ENOSPC once the space
/// others may use is spent (docs/unit.md).
pub(crate) struct WritingAs {
    before: rustix::thread::CapabilitySets,
}

impl WritingAs {
    pub(crate) fn enter(ids: (u32, u32), shown: &Path) -> Result<WritingAs, Failure> {
        use nix::unistd::{Gid, Uid, setfsgid, setfsuid};
        use rustix::thread::{CapabilitySet, capabilities, set_capabilities};
        let (uid, gid) = ids;
        let before = capabilities(None).map_err(|e| Failure::os(shown, "capget", e))?;
        let guard = WritingAs { before };
        setfsgid(Gid::from_raw(gid));
        setfsuid(Uid::from_raw(uid));
        // setfsuid and setfsgid say nothing of a failure; asked again, they tell.
        let now = (
            setfsuid(Uid::from_raw(uid)).as_raw(),
            setfsgid(Gid::from_raw(gid)).as_raw(),
        );
        if now != ids {
            return Err(Failure::new(
                Kind::NotPermitted,
                format!(
                    "{}: cannot write as uid {uid}, gid {gid} (setfsuid, setfsgid)",
                    shown.display()
                ),
            ));
        }
        let mut without = before;
        without.effective.remove(CapabilitySet::SYS_RESOURCE);
        set_capabilities(None, without).map_err(|e| Failure::os(shown, "capset", e))?;
        Ok(guard)
    }
}

impl Drop for WritingAs {
    fn drop(&mut self) {
        use nix::unistd::{Gid, Uid, setfsgid, setfsuid};
        setfsuid(Uid::from_raw(rustix::process::geteuid().as_raw()));
        setfsgid(Gid::from_raw(rustix::process::getegid().as_raw()));
        // Back to the sets read at the start: within the permitted set,
        // which nothing here lowered, so it cannot fail.
        let _ = rustix::thread::set_capabilities(None, self.before);
    }
}

/// A uid and gid that are not root's and that a test may write as:
/// nobody's when run as root, else its own (the unprivileged runs: nobody,
/// or the package build's user).
#[cfg(test)]
pub(crate) fn test_writer() -> (u32, u32) {
    match rustix::process::geteuid().as_raw() {
        0 => (65534, 65534),
        own => (own, rustix::process::getegid().as_raw()),
    }
}

#[cfg(test)]
mod tests {
    //! Unprivileged: everything here works on a temporary directory the test
    //! user owns.
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    use super::*;

    fn tmp() -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        let fd = rustix::fs::open(dir.path(), DIR_FLAGS, Mode::empty()).unwrap();
        (dir, fd)
    }

    #[test_log::test]
    fn open_dir_refuses_symlinks_at_any_component_and_names_it() {
        let (dir, fd) = tmp();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        symlink(dir.path().join("a"), dir.path().join("link")).unwrap();
        let shown = Path::new("/s/link/b");
        let f = open_dir(fd.as_fd(), "link/b", shown).unwrap_err();
        assert_eq!(f.kind, Kind::UnsafePath);
        assert_eq!(
            f.message,
            "/s/link is a symlink; refusing to follow it as root"
        );
        assert!(open_dir(fd.as_fd(), "a/b", shown).is_ok());
        let f = open_dir(fd.as_fd(), "../x", Path::new("/x")).unwrap_err();
        assert_eq!(f.kind, Kind::UnsafePath, "{}", f.message);
    }

    #[test_log::test]
    fn missing_and_not_a_directory() {
        let (dir, fd) = tmp();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let f = open_dir(fd.as_fd(), "nope/deeper", Path::new("/s/nope/deeper")).unwrap_err();
        assert_eq!(
            (f.kind, f.message.as_str()),
            (Kind::Missing, "/s/nope does not exist")
        );
        assert!(
            open_dir_if_exists(fd.as_fd(), "nope", Path::new("/s/nope"))
                .unwrap()
                .is_none()
        );
        let f = open_dir(fd.as_fd(), "file/x", Path::new("/s/file/x")).unwrap_err();
        assert_eq!(
            (f.kind, f.message.as_str()),
            (Kind::UnsafePath, "/s/file is not a directory")
        );
        assert!(f.hint.is_some());
    }

    #[test_log::test]
    fn ensure_dir_sets_the_mode_whatever_the_umask() {
        let (dir, fd) = tmp();
        let old = rustix::process::umask(Mode::from_raw_mode(0o077));
        let made = ensure_dir(fd.as_fd(), "d", 0o755, Path::new("d"));
        rustix::process::umask(old);
        made.unwrap();
        let meta = std::fs::metadata(dir.path().join("d")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o755);
        // An existing directory is used as it is.
        std::fs::set_permissions(dir.path().join("d"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        ensure_dir(fd.as_fd(), "d", 0o755, Path::new("d")).unwrap();
        assert_eq!(
            std::fs::metadata(dir.path().join("d")).unwrap().mode() & 0o7777,
            0o700
        );
    }

    #[test_log::test]
    fn read_small_file_refuses_what_is_not_one_plain_file() {
        let (dir, fd) = tmp();
        let p = dir.path();
        std::fs::write(p.join("ok"), "A=1\n").unwrap();
        assert_eq!(
            read_small_file(fd.as_fd(), "ok", Path::new("ok"), 10).unwrap(),
            b"A=1\n"
        );
        let f = read_small_file(fd.as_fd(), "ok", Path::new("ok"), 3).unwrap_err();
        assert_eq!(f.kind, Kind::InvalidConfig);
        std::fs::hard_link(p.join("ok"), p.join("alias")).unwrap();
        let f = read_small_file(fd.as_fd(), "ok", Path::new("ok"), 10).unwrap_err();
        assert!(f.message.contains("has 2 hard links"), "{}", f.message);
        symlink(p.join("alias"), p.join("link")).unwrap();
        let f = read_small_file(fd.as_fd(), "link", Path::new("link"), 10).unwrap_err();
        assert!(f.message.contains("is a symlink"), "{}", f.message);
        rustix::fs::mknodat(
            &fd,
            "fifo",
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let f = read_small_file(fd.as_fd(), "fifo", Path::new("fifo"), 10).unwrap_err();
        assert_eq!(f.message, "fifo is not a regular file");
        std::fs::create_dir(p.join("dir")).unwrap();
        let f = read_small_file(fd.as_fd(), "dir", Path::new("dir"), 10).unwrap_err();
        assert_eq!(f.kind, Kind::UnsafePath, "{}", f.message);
    }

    #[test_log::test]
    fn write_replace_swaps_content_and_keeps_it_private() {
        let (dir, fd) = tmp();
        std::fs::write(dir.path().join("f"), "old").unwrap();
        std::fs::set_permissions(dir.path().join("f"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        write_replace(fd.as_fd(), "f", b"new", Path::new("f")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("f")).unwrap(),
            "new"
        );
        assert_eq!(
            std::fs::metadata(dir.path().join("f")).unwrap().mode() & 0o7777,
            0o600
        );
        assert!(!dir.path().join("f.tmp").exists());
        remove_file(fd.as_fd(), "f", Path::new("f")).unwrap();
        remove_file(fd.as_fd(), "f", Path::new("f")).unwrap();
        assert!(!dir.path().join("f").exists());
    }

    /// The thread's filesystem uid and effective capabilities, as the
    /// kernel shows them.
    fn fsuid_and_effective() -> (u32, u64) {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let field = |key: &str| -> Vec<String> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap()
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        let fsuid = field("Uid:")[3].parse().unwrap();
        let eff = u64::from_str_radix(&field("CapEff:")[0], 16).unwrap();
        (fsuid, eff)
    }

    /// What root writes for the update user allocates as it would: ext4
    /// keeps its reserved blocks from a writer whose filesystem uid is not
    /// root's and who lacks CAP_SYS_RESOURCE, at each allocation (measured
    /// by hand on a loop device, docs/unit.md). Here: the thread writes so,
    /// keeps every other capability it had (setfsuid drops the file ones),
    /// and is itself again afterwards.
    #[test_log::test]
    fn what_root_writes_for_the_update_user_is_written_with_its_filesystem_uid() {
        let sys_resource = rustix::thread::CapabilitySet::SYS_RESOURCE.bits();
        let before = fsuid_and_effective();
        let guard = WritingAs::enter(test_writer(), Path::new("x")).unwrap();
        assert_eq!(
            fsuid_and_effective(),
            (test_writer().0, before.1 & !sys_resource)
        );
        drop(guard);
        assert_eq!(fsuid_and_effective(), before);
        assert_eq!(before.0, rustix::process::geteuid().as_raw());
    }
}
