//! Discarding a writable layer. reset renames upper/ and work/ aside inside
//! runtime/<i>/ (one rename each, so the instance can be mounted again at
//! once, whatever the layer holds) and a detached child deletes the renamed
//! trees; umount and the next reset sweep whatever a killed child left.
//!
//! The deletion must stay safe and small against a tree the service user
//! built, and may still be changing: a process of the user can hold a
//! directory of the discarded tree open (its cwd, an fd) and create, rename
//! or move entries in it while root deletes.
//!
//! - **Bounded memory and fds, any shape.** One directory is open at a time.
//!   A directory is read in a stream and its entries unlinked as they come,
//!   never listed into memory (a directory of a million entries costs
//!   nothing extra). On the first subdirectory that is not empty, the walk
//!   descends into it, keeping the parent's (dev, ino) and the position of
//!   the child's entry in it; when a directory is empty it goes back up
//!   through `..`, seeks the parent to that position and goes on reading
//!   there, where the now empty child is removed. What the walk keeps per
//!   level is those 24 bytes: 2.4 MB for a tree 100,000 levels deep.
//! - **Linear in a directory's width.** A position is only trusted if the
//!   entry found there is the child the walk came up from (same inode).
//!   Filesystems whose positions are cookies (ext4's hashes, xfs, btrfs,
//!   tmpfs since Linux 6.6) keep them across a reopen and deletions, so an
//!   undisturbed walk never reads a directory's entries twice. Where a
//!   position is an ordinal (tmpfs before 6.6 counts the live entries
//!   before it), deletions shift the child's entry below it; where the
//!   user renamed the child, it is elsewhere. Either way the walk reads on
//!   from the position and, at the directory's end, reads it once more
//!   from the start, at most [`MAX_REREADS_PER_VISIT`] times a visit. The
//!   nineteenth review measured the walk that always read from the start
//!   at 18.3 s of root's CPU for 40,000 subdirectories on ext4, whose
//!   directories keep their emptied blocks; the twentieth, renaming each
//!   child the walk opened, forced a read from the start per child.
//! - **No symlink is followed, no other filesystem entered.** Entries are
//!   unlinked with `unlinkat` (a symlink goes, its target stays);
//!   directories are opened with openat2(`RESOLVE_NO_SYMLINKS |
//!   RESOLVE_NO_XDEV`), relative to the fd of their parent, and `..` with
//!   `RESOLVE_NO_XDEV`, so the walk never leaves the filesystem and never
//!   crosses a mount point.
//! - **`..` is verified.** The user can move the directory the walk is in
//!   elsewhere (into the new upper/, say) while root is inside it. Going
//!   up, the walk compares the (dev, ino) of what `..` opened with the
//!   ancestor it came from; if they differ, it has been moved, and the walk
//!   starts again from the top of the discarded tree (the name root set
//!   aside in runtime/<i>, a directory root writes; the service user's
//!   group may pass it and reach the tree by path, but not rename the top).
//!   It never reads, let alone deletes in, the directory the moved one now
//!   sits in. What it deleted after the move was inside directories of the
//!   discarded tree, the user's own, in which the user could have deleted
//!   the same. (dev, ino) without the inode's generation: a recycled inode
//!   number could pass the check, but only into a directory made since,
//!   which is the user's or made by root for the same account (twenty-first
//!   review, reasoned).
//! - **Work within a constant of the user's.** A user who keeps refilling
//!   the tree could keep the walk busy forever. The walk gives up, leaving
//!   the rest to the next sweep, after [`MAX_RESTARTS`] times it found the
//!   directory it had just emptied refilled or had to start again, or past
//!   the rereads a visit may take. That count is not a bound on refills:
//!   a user who moves the emptied directory behind a new one and refills
//!   it is not counted (twenty-first review: 1,001 visits of one
//!   directory, at a few times the user's own cost). What bounds the time
//!   is the caller: the units' timeouts for the sweeps systemd runs, and
//!   [`delete`]'s time bound, checked between steps (a step waiting in the
//!   kernel on a lock the user holds is not cut; docs/unit.md).

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{Failure, Kind};
use crate::lock;
use crate::sys;

const PREFIX: &str = ".discard-";
/// How often the walk may find an emptied directory refilled, or be sent
/// back to the top, before it leaves the rest for later.
const MAX_RESTARTS: usize = 64;

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
pub(crate) fn set_aside(dir: BorrowedFd<'_>, name: &str, shown: &Path) -> Result<bool, Failure> {
    match rustix::fs::renameat_with(dir, name, dir, unique_name(), RenameFlags::NOREPLACE) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(Failure::os(shown, "rename aside", e)),
    }
}

/// Names of discard entries in `dir` (root's runtime/<i>: a handful).
pub(crate) fn pending(dir: BorrowedFd<'_>) -> Vec<CString> {
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

/// How long one walk may spend on one tree where no unit's timeout bounds
/// it: a background sweeper, detached from the verb that forked it (a
/// reset's unit is inactive once the verb exits), and root's `left4me
/// delete` from a shell. Minutes for what a game writes (its logs and
/// demos); a process that keeps refilling the tree costs the walk about
/// what it costs itself, and here stops costing it (the twentieth and
/// twenty-fourth reviews). What is left waits for the next sweep.
pub(crate) const WALK_WITHIN: std::time::Duration = std::time::Duration::from_secs(300);

/// Deletes every discard entry in `dir` (runtime/<i>/), including ones left
/// by an earlier run that was killed, each within `within` (see
/// [`delete`]). An entry that cannot be deleted is left, and the first such
/// failure returned, once every other entry was tried: one tree the user
/// keeps moving must not keep the rest (root's own `work/` among them)
/// from being deleted (twenty-fifth review).
pub(crate) fn sweep(
    dir: BorrowedFd<'_>,
    shown: &Path,
    within: Option<std::time::Duration>,
) -> Result<usize, Failure> {
    each_pending(dir, |name| {
        delete(
            dir,
            name,
            &shown.join(name.to_string_lossy().as_ref()),
            "stop whatever still writes into the instance's old layer; the next umount or reset continues",
            within,
        )
    })
}

/// `delete_one` for every discard entry in `dir`, the first failure
/// returned once all were tried; otherwise how many there were.
fn each_pending(
    dir: BorrowedFd<'_>,
    mut delete_one: impl FnMut(&CStr) -> Result<(), Failure>,
) -> Result<usize, Failure> {
    let names = pending(dir);
    let mut first_failure = None;
    for name in &names {
        if let Err(f) = delete_one(name) {
            first_failure.get_or_insert(f);
        }
    }
    first_failure.map_or(Ok(names.len()), Err)
}

/// Deletes `name` in `parent` and everything below it with the walk of this
/// module (see the module doc): what `left4me delete` removes goes the same
/// way as a discarded layer. `refilled_hint` says what to do if the tree
/// keeps being refilled or moved. `within` bounds the time a command run
/// from a shell spends: a process that keeps adding entries ahead of the
/// walk costs the walk about what it costs itself, but could do so for as
/// long as it likes (the twentieth review); the sweeps systemd runs are
/// bounded by their units.
pub(crate) fn delete(
    parent: BorrowedFd<'_>,
    name: &CStr,
    shown: &Path,
    refilled_hint: &str,
    within: Option<std::time::Duration>,
) -> Result<(), Failure> {
    let dev = rustix::fs::fstat(parent)
        .map_err(|e| Failure::os(shown, "stat the parent of", e))?
        .st_dev;
    let mut tree = Tree::new(parent, name, dev);
    let bound = within.map(|w| (w, std::time::Instant::now() + w));
    let left = |why: String| {
        Failure::new(
            Kind::Busy,
            format!("{}: {why}; the rest is left", shown.display()),
        )
        .hint(refilled_hint)
    };
    loop {
        if let Some((w, at)) = bound {
            if std::time::Instant::now() > at {
                return Err(left(format!(
                    "not deleted within {} s (a very large tree, or something keeps filling it)",
                    w.as_secs()
                )));
            }
        }
        match tree.step() {
            Ok(Step::More) => {}
            Ok(Step::Done) => {
                tracing::debug!(
                    tree = %shown.display(),
                    rereads = tree.rereads,
                    restarts = tree.restarts,
                    "deleted"
                );
                return Ok(());
            }
            Err(Errno::AGAIN) => {
                return Err(left(
                    "keeps being refilled or moved while it is deleted".into(),
                ));
            }
            Err(Errno::XDEV) => {
                return Err(Failure::new(
                    Kind::UnsafePath,
                    format!(
                        "{}: a directory in it is the mount point of another filesystem; nothing below that is deleted",
                        shown.display()
                    ),
                )
                .hint(format!(
                    "unmount what `findmnt -R {}` lists, then run the command again",
                    shown.display()
                )));
            }
            Err(e) => return Err(Failure::os(shown, "delete", e)),
        }
    }
}

/// What a background sweep of one directory's discard entries needs.
pub(crate) struct Background {
    /// runtime/<i> (a reset's) or installations/ (the generation verbs'),
    /// and how it is shown.
    pub(crate) dir: OwnedFd,
    pub(crate) shown: PathBuf,
    /// Its sweeper lock (runtime/.left4me/<i>.sweep, or the generations'
    /// lock::GENERATION_SWEEPER), opened.
    pub(crate) sweeper_lock: OwnedFd,
}

/// Deletes what was set aside in a detached child, so a large tree does
/// not delay the caller, and a tree whose directory another process holds
/// locked in the kernel (docs/unit.md "The boundary") stalls the child,
/// not the caller. The child keeps nothing of the caller's: its stdio is
/// /dev/null (so `out=$(left4me-overlay reset x)` returns at once), it
/// leaves the session, and it holds no lock but its sweeper lock (the
/// caller calls this once its own are let go). If it dies, the next
/// umount, reset or generation verb sweeps.
///
/// At most one such child runs per directory, however often the user
/// resets: it holds the sweeper lock, and a caller that finds the lock
/// held starts none. The running one looks for new discard entries after
/// it lets the lock go, and takes the lock again for them, so an entry set
/// aside while it ran (before the caller tried the lock) is never left
/// behind.
///
/// The caller waits for the child up to `wait`, so a sweep that ends in
/// time ends before the caller does (a generation verb in the update
/// unit, whose stop ends whatever is left in its cgroup); past that the
/// child goes on alone.
pub(crate) fn in_background(job: Background, wait: std::time::Duration) {
    if pending(job.dir.as_fd()).is_empty() {
        return;
    }
    if !lock::try_exclusive(job.sweeper_lock.as_fd()) {
        tracing::debug!("this instance's sweeper runs; it deletes this layer too");
        return;
    }
    match sys::fork() {
        Ok(sys::Forked::Child) => {
            let _ = rustix::process::setsid();
            if let Err(e) = sys::detach_stdio() {
                tracing::warn!(error = %e, "cannot point stdio at /dev/null");
                sys::exit_child(1);
            }
            let code = loop {
                if let Err(f) = sweep(job.dir.as_fd(), &job.shown, Some(WALK_WITHIN)) {
                    tracing::warn!(error = %f, "discarded tree not fully deleted; the next sweep continues");
                    break 1;
                }
                let _ = rustix::fs::flock(&job.sweeper_lock, rustix::fs::FlockOperation::Unlock);
                if pending(job.dir.as_fd()).is_empty()
                    || !lock::try_exclusive(job.sweeper_lock.as_fd())
                {
                    break 0;
                }
            };
            sys::exit_child(code)
        }
        // The child's copy of the lock's file description keeps it held.
        Ok(sys::Forked::Parent(child)) => {
            let deadline = std::time::Instant::now() + wait;
            while std::time::Instant::now() < deadline {
                use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
                match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::EINTR) => {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    _ => return,
                }
            }
            tracing::info!("the sweep goes on in the background (pid {child})");
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot fork to delete the discarded tree; the next sweep does")
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    More,
    Done,
}

/// How often one directory may be read again from its start in one visit
/// (from the walk's entering it until it leaves it emptied). Each such read
/// costs the whole directory, emptied blocks included. An undisturbed walk
/// needs none where positions are cookies and one where they are ordinals;
/// a user who renames every child the walk opens costs it one per pass,
/// and without this bound one per child (the twentieth review: 40,000
/// children, 41 s of root's CPU).
const MAX_REREADS_PER_VISIT: u8 = 4;

/// A directory of the tree, open for reading, and what it is: (dev, ino),
/// to check that `..` leads back where the walk came from.
struct Opened {
    dir: rustix::fs::Dir,
    id: (u64, u64),
    /// Where the next entry read starts: the position to come back to.
    pos: i64,
    /// After a seek back up: the inode of the entry that must be found
    /// there (the child the walk came from).
    expect: Option<u64>,
    /// What this visit of the directory has seen so far.
    visit: Visit,
}

/// Carried from a directory to the reopened `..` that continues it.
#[derive(Clone, Copy, Default)]
struct Visit {
    /// A position since the last read from the start did not hold its
    /// child: entries before it may be unread, so the directory is read
    /// again from the start when the walk reaches its end.
    stale: bool,
    /// Reads from the start so far (see [`MAX_REREADS_PER_VISIT`]).
    rereads: u8,
}

/// An ancestor of the directory being emptied: its (dev, ino), the
/// position of the entry of the child the walk descended into, and its
/// visit.
#[derive(Clone, Copy)]
struct Ancestor {
    id: (u64, u64),
    child_at: i64,
    visit: Visit,
}

impl Opened {
    fn new(fd: OwnedFd) -> Result<Opened, Errno> {
        let st = rustix::fs::fstat(&fd)?;
        Ok(Opened {
            dir: rustix::fs::Dir::new(fd)?,
            id: (st.st_dev, st.st_ino),
            pos: 0,
            expect: None,
            visit: Visit::default(),
        })
    }

    /// Continues the visit of the ancestor `left` at the position of its
    /// child's entry, where the entry of inode `child` must be.
    fn resume(&mut self, left: &Ancestor, child: u64) -> Result<(), Errno> {
        self.dir.seek(left.child_at)?;
        self.pos = left.child_at;
        self.expect = Some(child);
        self.visit = left.visit;
        Ok(())
    }

    /// The next entry, from where the directory stands, and the position
    /// it starts at. A resumed position that does not hold the expected
    /// child (another entry, or the end) is stale: the walk goes on from
    /// there, and at the end reads the directory again from the start.
    fn next_entry(&mut self) -> Option<Result<(i64, rustix::fs::DirEntry), Errno>> {
        loop {
            let at = self.pos;
            let entry = self.dir.read();
            if let Some(child) = self.expect.take() {
                if !matches!(&entry, Some(Ok(e)) if e.ino() == child) {
                    self.visit.stale = true;
                }
            }
            match entry {
                None if self.visit.stale => {
                    if let Err(e) = self.read_from_start() {
                        return Some(Err(e));
                    }
                }
                None => return None,
                Some(entry) => {
                    return Some(entry.map(|e| {
                        self.pos = e.offset();
                        (at, e)
                    }));
                }
            }
        }
    }

    /// Reads the directory again from the start, through a new open file
    /// description: seeking the old one to 0 is not enough on ext4, whose
    /// htree readdir, once a fresh description's first read started at the
    /// end-of-directory cookie, goes on from there (measured on Linux 6.18:
    /// no entry at all after the seek). `AGAIN` past the visit's bound.
    fn read_from_start(&mut self) -> Result<(), Errno> {
        if self.visit.rereads >= MAX_REREADS_PER_VISIT {
            return Err(Errno::AGAIN);
        }
        let again = rustix::fs::openat(
            self.fd()?,
            c".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        self.dir = rustix::fs::Dir::new(again)?;
        self.pos = 0;
        self.visit = Visit {
            stale: false,
            rereads: self.visit.rereads + 1,
        };
        Ok(())
    }

    fn fd(&self) -> Result<BorrowedFd<'_>, Errno> {
        self.dir.fd()
    }
}

/// The walk over one discarded tree `name` in `top` (see the module doc).
struct Tree<'a> {
    top: BorrowedFd<'a>,
    name: &'a CStr,
    dev: u64,
    /// The directory being emptied; `None` before the walk starts (again).
    cur: Option<Opened>,
    /// `cur`'s ancestors below `top`, the tree's root first.
    ancestors: Vec<Ancestor>,
    /// The directory the walk last came up from, emptied.
    left: Option<(u64, u64)>,
    restarts: usize,
    /// Reads of a directory from its start again (stale positions; logged).
    rereads: u64,
}

/// What one read of a directory found.
enum Scan {
    /// It is empty: everything in it was unlinked.
    Empty,
    /// A subdirectory that is not empty, opened, and the position of its
    /// entry in the directory read.
    Descend(Opened, i64),
}

impl<'a> Tree<'a> {
    fn new(top: BorrowedFd<'a>, name: &'a CStr, dev: u64) -> Self {
        Tree {
            top,
            name,
            dev,
            cur: None,
            ancestors: Vec::new(),
            left: None,
            restarts: 0,
            rereads: 0,
        }
    }

    fn count_restart(&mut self) -> Result<(), Errno> {
        self.restarts += 1;
        if self.restarts > MAX_RESTARTS {
            return Err(Errno::AGAIN);
        }
        Ok(())
    }

    fn restart(&mut self) -> Result<Step, Errno> {
        self.count_restart()?;
        self.cur = None;
        self.ancestors.clear();
        self.left = None;
        Ok(Step::More)
    }

    /// One directory read: down into a subdirectory, or up out of an
    /// emptied one. `Done` once the tree is gone.
    fn step(&mut self) -> Result<Step, Errno> {
        let Some(mut cur) = self.cur.take() else {
            return match remove_or_open(self.top, self.name, self.dev, false)? {
                None => Ok(Step::Done),
                Some(dir) => {
                    self.cur = Some(dir);
                    Ok(Step::More)
                }
            };
        };
        let rereads_before = cur.visit.rereads;
        let scanned = scan(&mut cur, self.dev);
        self.rereads += u64::from(cur.visit.rereads - rereads_before);
        match scanned? {
            Scan::Descend(child, child_at) => {
                if self.left.take() == Some(child.id) {
                    // Emptied a moment ago, and filled again since.
                    self.count_restart()?;
                }
                self.ancestors.push(Ancestor {
                    id: cur.id,
                    child_at,
                    visit: cur.visit,
                });
                self.cur = Some(child);
                Ok(Step::More)
            }
            Scan::Empty => {
                let Some(expected) = self.ancestors.pop() else {
                    // The tree's root: its parent is `top`, which we hold.
                    drop(cur);
                    return match rustix::fs::unlinkat(self.top, self.name, AtFlags::REMOVEDIR) {
                        Ok(()) | Err(Errno::NOENT) => Ok(Step::Done),
                        Err(Errno::NOTEMPTY | Errno::EXIST) => self.restart(),
                        Err(e) => Err(e),
                    };
                };
                let mut parent = match open_dir(cur.fd()?, c"..", ResolveFlags::NO_XDEV) {
                    Ok(p) => Opened::new(p)?,
                    // Deleted or moved off the filesystem meanwhile.
                    Err(Errno::NOENT | Errno::XDEV) => return self.restart(),
                    Err(e) => return Err(e),
                };
                if parent.id != expected.id {
                    tracing::warn!(
                        "a directory of the discarded layer was moved while being deleted; starting over"
                    );
                    return self.restart();
                }
                parent.resume(&expected, cur.id.1)?;
                self.left = Some(cur.id);
                self.cur = Some(parent);
                Ok(Step::More)
            }
        }
    }
}

fn open_dir(parent: BorrowedFd<'_>, name: &CStr, resolve: ResolveFlags) -> Result<OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat2(
        parent,
        name,
        flags,
        Mode::empty(),
        resolve | ResolveFlags::NO_MAGICLINKS,
    )
}

/// Removes `name` from `parent` if it is a file, a link or an empty
/// directory (`None`); opens it if it is a directory with content.
/// `dir_likely` (from the directory entry's type) only saves a syscall.
fn remove_or_open(
    parent: BorrowedFd<'_>,
    name: &CStr,
    dev: u64,
    dir_likely: bool,
) -> Result<Option<Opened>, Errno> {
    // A few rounds: the user may swap the entry between a file and a
    // directory while this looks at it.
    for round in 0..8 {
        if round > 0 || !dir_likely {
            match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => return Ok(None),
                Err(Errno::ISDIR | Errno::PERM) => {}
                Err(e) => return Err(e),
            }
        }
        match rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => return Ok(None),
            // BUSY: a mount point, which the open below refuses to enter.
            Err(Errno::NOTEMPTY | Errno::EXIST | Errno::BUSY) => {}
            Err(Errno::NOTDIR) => continue,
            Err(e) => return Err(e),
        }
        let dir = match open_dir(
            parent,
            name,
            ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_XDEV,
        ) {
            Ok(fd) => Opened::new(fd)?,
            Err(Errno::NOENT) => return Ok(None),
            // Swapped for a symlink or file since: unlink that instead.
            Err(Errno::LOOP | Errno::NOTDIR) => continue,
            Err(e) => return Err(e),
        };
        if dir.id.0 != dev {
            // Only root can mount, and never inside a writable layer; leave it.
            tracing::warn!(name = %name.to_string_lossy(), "not descending into another filesystem");
            return Err(Errno::XDEV);
        }
        return Ok(Some(dir));
    }
    Err(Errno::AGAIN)
}

/// Reads `dir` from where it stands (a fresh one: from the start) in a
/// stream, unlinking every entry it can; stops at the first subdirectory
/// that is not empty.
fn scan(dir: &mut Opened, dev: u64) -> Result<Scan, Errno> {
    while let Some(entry) = dir.next_entry() {
        let (at, entry) = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let dir_likely = entry.file_type() == rustix::fs::FileType::Directory;
        if let Some(child) = remove_or_open(dir.fd()?, name, dev, dir_likely)? {
            return Ok(Scan::Descend(child, at));
        }
    }
    Ok(Scan::Empty)
}

#[cfg(test)]
mod tests {
    //! Unprivileged: the walk works the same on a tree the test user owns.
    use std::os::unix::fs::symlink;

    use super::*;

    fn top(dir: &Path) -> OwnedFd {
        rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
    }

    /// What `dir` reads from where it stands: (position, inode) of each
    /// entry but `.` and `..`.
    fn entries(dir: &mut Opened) -> Result<Vec<(i64, u64)>, Errno> {
        let mut found = Vec::new();
        while let Some(e) = dir.next_entry() {
            let (at, e) = e?;
            if e.file_name() != c"." && e.file_name() != c".." {
                found.push((at, e.ino()));
            }
        }
        Ok(found)
    }

    fn sweep_all(dir: &Path) -> usize {
        let fd = top(dir);
        sweep(fd.as_fd(), dir, None).unwrap()
    }

    #[test_log::test]
    fn deletes_files_links_and_nested_dirs_but_no_link_target() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "x").unwrap();
        let d = t.path().join(".discard-1");
        std::fs::create_dir_all(d.join("a/b/c")).unwrap();
        std::fs::write(d.join("a/b/c/f"), "x").unwrap();
        std::fs::write(d.join("a/f"), "x").unwrap();
        symlink(outside.path(), d.join("a/b/dirlink")).unwrap();
        symlink(outside.path().join("keep"), d.join("filelink")).unwrap();
        std::fs::create_dir(d.join("empty")).unwrap();
        std::fs::write(t.path().join(".discard-file"), "x").unwrap();
        std::fs::write(t.path().join("upper"), "not discarded").unwrap();
        assert_eq!(sweep_all(t.path()), 2);
        let left: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["upper"]);
        assert!(outside.path().join("keep").exists());
    }

    #[test_log::test]
    fn deep_and_wide_trees_go_in_one_sweep() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join(".discard-deep");
        std::fs::create_dir(&d).unwrap();
        // Deeper than PATH_MAX allows by name: built through fds.
        let mut cur = top(&d);
        for _ in 0..2_000 {
            rustix::fs::mkdirat(&cur, "d", Mode::from_raw_mode(0o755)).unwrap();
            rustix::fs::openat(
                &cur,
                "f",
                OFlags::CREATE | OFlags::WRONLY,
                Mode::from_raw_mode(0o644),
            )
            .unwrap();
            cur = rustix::fs::openat(&cur, "d", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
                .unwrap();
        }
        let w = t.path().join(".discard-wide");
        std::fs::create_dir(&w).unwrap();
        for i in 0..5_000 {
            std::fs::write(w.join(format!("f{i}")), "").unwrap();
        }
        for i in 0..20 {
            std::fs::create_dir_all(w.join(format!("d{i}/x"))).unwrap();
        }
        assert_eq!(sweep_all(t.path()), 2);
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
    }

    /// The user moves the directory the walk is in out of the discarded
    /// tree: going up, `..` is not where the walk came from, so it starts
    /// over from the top instead of deleting in the user's new place.
    #[test_log::test]
    fn a_directory_moved_away_mid_walk_sends_the_walk_back_to_the_top() {
        let t = tempfile::tempdir().unwrap();
        let elsewhere = t.path().join("new-upper");
        std::fs::create_dir_all(elsewhere.join("mine")).unwrap();
        std::fs::write(elsewhere.join("mine/keep"), "x").unwrap();
        let d = t.path().join(".discard-x");
        std::fs::create_dir_all(d.join("a/b/c")).unwrap();
        std::fs::write(d.join("a/b/c/f"), "x").unwrap();
        std::fs::create_dir_all(d.join("z/y")).unwrap();
        let fd = top(t.path());
        let name = CString::new(".discard-x").unwrap();
        let dev = rustix::fs::fstat(&fd).unwrap().st_dev;
        let mut tree = Tree::new(fd.as_fd(), &name, dev);
        // Open the tree, then walk until it is inside a/b.
        while tree.ancestors.len() < 2 {
            assert_eq!(tree.step().unwrap(), Step::More);
        }
        let inside = tree.cur.as_ref().unwrap().id;
        let b = std::fs::metadata(d.join("a/b")).unwrap();
        assert_eq!(
            inside,
            (
                std::os::unix::fs::MetadataExt::dev(&b),
                std::os::unix::fs::MetadataExt::ino(&b)
            )
        );
        std::fs::rename(d.join("a"), elsewhere.join("a")).unwrap();
        while tree.step().unwrap() == Step::More {}
        assert_eq!(tree.restarts, 1);
        assert!(!d.exists(), "the rest of the discarded tree is gone");
        // Going up from a/, `..` was new-upper/: the walk stopped there.
        assert!(elsewhere.join("a").is_dir());
        assert!(elsewhere.join("mine/keep").exists());
    }

    /// The nineteenth review's shape: many subdirectories that are not
    /// empty, with long names. Coming up from each, the walk goes on where
    /// it was: it never reads the parent from the start again, which on
    /// ext4 walks every block emptied so far (the kernel's work, which the
    /// entries returned do not show; `cargo bench -- sweep` measures it).
    /// This holds where positions are cookies: ext4, xfs, btrfs, and tmpfs
    /// since Linux 6.6, which is where the tests run.
    #[test_log::test]
    fn a_wide_directory_of_subdirectories_is_never_read_again_from_the_start() {
        let t = tempfile::tempdir().unwrap();
        let w = t.path().join(".discard-wide");
        std::fs::create_dir(&w).unwrap();
        let n = 3_000;
        for i in 0..n {
            let sub = w.join(format!("{i:0>200}"));
            std::fs::create_dir(&sub).unwrap();
            std::fs::write(sub.join("f"), "").unwrap();
        }
        let fd = top(t.path());
        let name = CString::new(".discard-wide").unwrap();
        let dev = rustix::fs::fstat(&fd).unwrap().st_dev;
        let mut tree = Tree::new(fd.as_fd(), &name, dev);
        while tree.step().unwrap() == Step::More {}
        assert!(!w.exists());
        assert_eq!((tree.restarts, tree.rereads), (0, 0));
    }

    /// A position is trusted only where it holds the child the walk came up
    /// from. Anything else (another entry, the end) is read on from there,
    /// and the directory once more from the start at its end.
    #[rstest::rstest]
    #[case::the_child_is_there(Some(1), 1, &[1, 2], 0)]
    #[case::another_entry_is_there(Some(1), 2, &[1, 2, 0, 1, 2], 1)]
    #[case::the_end(None, 2, &[0, 1, 2], 1)]
    fn a_resumed_position_is_checked_against_the_child(
        #[case] resume_at_entry: Option<usize>,
        #[case] child_entry: usize,
        #[case] read: &[usize],
        #[case] rereads: u8,
    ) {
        let t = tempfile::tempdir().unwrap();
        for n in ["a", "b", "c"] {
            std::fs::create_dir(t.path().join(n)).unwrap();
        }
        let mut first = Opened::new(top(t.path())).unwrap();
        let listed = entries(&mut first).unwrap();
        assert_eq!(listed.len(), 3);
        let child_at = resume_at_entry.map_or(first.pos, |i| listed[i].0);
        let mut again = Opened::new(top(t.path())).unwrap();
        let left = Ancestor {
            id: again.id,
            child_at,
            visit: Visit::default(),
        };
        again.resume(&left, listed[child_entry].1).unwrap();
        let wanted: Vec<_> = read.iter().map(|&i| listed[i]).collect();
        assert_eq!(entries(&mut again).unwrap(), wanted);
        assert_eq!(again.visit.rereads, rereads);
    }

    /// Past [`MAX_REREADS_PER_VISIT`], a stale position ends the walk with
    /// `AGAIN` (the sweep's "keeps being refilled or moved").
    #[test_log::test]
    fn rereads_of_one_visit_are_bounded() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("a")).unwrap();
        let mut dir = Opened::new(top(t.path())).unwrap();
        let listed = entries(&mut dir).unwrap();
        let end = Ancestor {
            id: dir.id,
            child_at: dir.pos,
            visit: Visit::default(),
        };
        let mut visit = end;
        for _ in 0..MAX_REREADS_PER_VISIT {
            let mut again = Opened::new(top(t.path())).unwrap();
            again.resume(&visit, listed[0].1).unwrap();
            assert_eq!(entries(&mut again).unwrap(), listed);
            visit.visit = again.visit;
        }
        let mut last = Opened::new(top(t.path())).unwrap();
        last.resume(&visit, listed[0].1).unwrap();
        assert_eq!(entries(&mut last), Err(Errno::AGAIN));
    }

    /// The twentieth review's race: the user renames each child the walk
    /// opens, so no position holds its child when the walk comes up. The
    /// walk reads on and rereads the directory once at its end, instead of
    /// once per child (which made it quadratic again).
    #[test_log::test]
    fn renaming_each_child_the_walk_opens_costs_one_reread_not_one_per_child() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join(".discard-r");
        std::fs::create_dir(&d).unwrap();
        for i in 0..30 {
            std::fs::create_dir(d.join(format!("c{i}"))).unwrap();
            std::fs::write(d.join(format!("c{i}/f")), "").unwrap();
        }
        let fd = top(t.path());
        let name = CString::new(".discard-r").unwrap();
        let dev = rustix::fs::fstat(&fd).unwrap().st_dev;
        let mut tree = Tree::new(fd.as_fd(), &name, dev);
        let mut renamed = 0;
        let mut last = None;
        while tree.step().unwrap() == Step::More {
            let Some(cur) = tree.cur.as_ref() else {
                continue;
            };
            if tree.ancestors.len() != 1 || last == Some(cur.id) {
                continue;
            }
            last = Some(cur.id);
            let entry = std::fs::read_dir(&d)
                .unwrap()
                .map(Result::unwrap)
                .find(|e| std::os::unix::fs::DirEntryExt::ino(e) == cur.id.1)
                .unwrap();
            std::fs::rename(entry.path(), d.join(format!("renamed{renamed}"))).unwrap();
            renamed += 1;
        }
        assert!(!d.exists());
        assert_eq!(renamed, 30);
        assert_eq!((tree.restarts, tree.rereads), (0, 1));
    }

    /// A tree that takes longer than `within` is left, with the caller's
    /// hint, not walked for as long as something refills it.
    #[test_log::test]
    fn a_delete_past_its_time_bound_stops_and_says_so() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("x/a/b/c/d/e/f/g/h")).unwrap();
        let fd = top(t.path());
        let shown = t.path().join("x");
        let f = delete(
            fd.as_fd(),
            c"x",
            &shown,
            "do this",
            Some(std::time::Duration::ZERO),
        )
        .unwrap_err();
        assert_eq!(f.kind, Kind::Busy);
        assert!(f.message.contains("not deleted within 0 s"), "{f}");
        assert_eq!(f.hint.as_deref(), Some("do this"));
        assert!(shown.exists(), "the tree is left");
        delete(fd.as_fd(), c"x", &shown, "do this", None).unwrap();
        assert!(!shown.exists());
    }

    /// The background sweeper's walks are bounded ([`WALK_WITHIN`]): no
    /// unit's timeout reaches it once the verb that forked it has exited
    /// (twenty-fourth review).
    #[test_log::test]
    fn a_sweep_past_its_time_bound_leaves_the_rest_for_the_next() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join(".discard-1/a/b/c")).unwrap();
        let fd = top(t.path());
        let f = sweep(fd.as_fd(), t.path(), Some(std::time::Duration::ZERO)).unwrap_err();
        assert_eq!(f.kind, Kind::Busy);
        assert!(f.message.contains("not deleted within 0 s"), "{f}");
        assert!(t.path().join(".discard-1").exists(), "the tree is left");
        assert_eq!(sweep_all(t.path()), 1);
        assert!(!t.path().join(".discard-1").exists());
    }

    /// One tree the user keeps moving (its walk gives up) once kept every
    /// entry after it, root's `work/` among them, from being deleted by
    /// that sweep (twenty-fifth review).
    #[test_log::test]
    fn a_sweep_tries_every_entry_past_one_that_fails() {
        let t = tempfile::tempdir().unwrap();
        for n in [".discard-a", ".discard-b", ".discard-c", "upper"] {
            std::fs::create_dir(t.path().join(n)).unwrap();
        }
        let fd = top(t.path());
        let mut tried = Vec::new();
        let f = each_pending(fd.as_fd(), |name| {
            tried.push(name.to_owned());
            if name == c".discard-b" {
                return Err(Failure::new(Kind::Busy, "moved away"));
            }
            Ok(())
        })
        .unwrap_err();
        assert_eq!(f.message, "moved away");
        let mut tried: Vec<&str> = tried.iter().map(|n| n.to_str().unwrap()).collect();
        tried.sort();
        assert_eq!(tried, [".discard-a", ".discard-b", ".discard-c"]);
    }

    #[test_log::test]
    fn set_aside_renames_and_reports_absence() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("upper")).unwrap();
        let fd = top(t.path());
        assert!(set_aside(fd.as_fd(), "upper", Path::new("upper")).unwrap());
        assert!(!set_aside(fd.as_fd(), "upper", Path::new("upper")).unwrap());
        assert_eq!(pending(fd.as_fd()).len(), 1);
    }
}
