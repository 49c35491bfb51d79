//! How many record dirs RUN_DIR keeps. Each check's record dir
//! (RuntimeDirectory=left4me-health/%i, RuntimeDirectoryPreserve=yes) stays
//! after its server stops, so `left4me-health status` shows the last answer
//! and a give-up. One dir and its record per instance name that ever ran:
//! the service user can start ever new names (rename its instance dir
//! between starts), and about 2,000 of them filled the tmpfs's 4096 inodes,
//! after which every check on the host failed to start or to save
//! (sixteenth review). The overlay unit's mount (root, PID 1's namespace)
//! therefore removes the dirs of instances not mounted, oldest first, while
//! [`KEPT`] or more are there. It runs under the helper's ports lock, which
//! every mount holds until it is attached: no instance can become mounted
//! meanwhile, so no check can be starting in a dir being removed (a check
//! starts after its server, its server after its mount). Only dirs no
//! other account may list are removed (0711, the health unit's
//! `RuntimeDirectoryMode=`), so nobody can hold the kernel lock of one
//! while the prune waits on it (docs/unit.md, "The boundary").

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};

use crate::name::InstanceName;

/// Record dirs kept: the 256 instances that can be loaded at once
/// (requests::MAX_LOADED_SERVERS), and as many stopped ones. A record is a
/// few KiB, so 512 dirs with a record and a temporary file each are 1,536 of
/// the tmpfs's 4096 inodes and a few MiB of its 16.
pub(crate) const KEPT: usize = 512;
/// Removed by one mount at most, so one mount's work stays bounded; each
/// mount adds at most one dir, so a few a mount keep the count at KEPT.
const REMOVED_PER_MOUNT: usize = 16;

/// Removes the record dirs in `run_dir` of instances for which `mounted`
/// is false, oldest (by the dir's mtime: a record is saved by rename into
/// it) first, until fewer than [`KEPT`] remain or [`REMOVED_PER_MOUNT`] are
/// gone. Returns the names removed. Never fails: the mount does not depend
/// on it; what it cannot do is logged.
pub(crate) fn prune(
    run_dir: &Path,
    mut mounted: impl FnMut(&InstanceName) -> bool,
) -> Vec<InstanceName> {
    let dir = match rustix::fs::open(
        run_dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(dir) => dir,
        Err(rustix::io::Errno::NOENT) => return Vec::new(),
        Err(e) => {
            tracing::warn!("cannot open the health records {}: {e}", run_dir.display());
            return Vec::new();
        }
    };
    let names = record_dirs(dir.as_fd(), run_dir);
    if names.len() < KEPT {
        return Vec::new();
    }
    let excess = names.len() + 1 - KEPT;
    let mut stopped: Vec<(i64, InstanceName)> = names
        .into_iter()
        .filter(|n| !mounted(n))
        .filter_map(|n| {
            let st = rustix::fs::statat(&dir, n.as_str(), AtFlags::SYMLINK_NOFOLLOW).ok()?;
            // A dir others may list is one whose kernel lock they can hold
            // while this waits to unlink in it, under the ports lock: one
            // made before the record dirs became 0711 (the health unit's
            // RuntimeDirectoryMode=), left until a reboot empties /run.
            (st.st_mode & 0o004 == 0).then_some((st.st_mtime, n))
        })
        .collect();
    stopped.sort();
    let mut removed = Vec::new();
    for (_, name) in stopped.into_iter().take(excess.min(REMOVED_PER_MOUNT)) {
        match remove_record_dir(dir.as_fd(), &name) {
            Ok(()) => removed.push(name),
            Err(e) => tracing::warn!(
                "cannot remove the health record dir {}: {e}",
                run_dir.join(name.as_str()).display()
            ),
        }
    }
    if !removed.is_empty() {
        tracing::info!(
            removed = removed.len(),
            "removed the health records of {} instances not mounted (at most {KEPT} are kept)",
            removed.len()
        );
    }
    removed
}

/// The entries of `dir` that are directories named as instances (PID 1
/// makes them; anything else is left alone and not counted).
fn record_dirs(dir: BorrowedFd<'_>, shown: &Path) -> Vec<InstanceName> {
    let mut entries = match Dir::read_from(dir) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::warn!("cannot list the health records {}: {e}", shown.display());
            return Vec::new();
        }
    };
    let mut names = Vec::new();
    while let Some(Ok(entry)) = entries.read() {
        if entry.file_type() != FileType::Directory {
            continue;
        }
        if let Some(name) = entry
            .file_name()
            .to_str()
            .ok()
            .and_then(|n| InstanceName::parse(n).ok())
        {
            names.push(name);
        }
    }
    names
}

/// Removes `name` beneath `dir`: its files (the check's record and
/// temporary files, the health user's), then the directory. Nothing is
/// followed: the dir is opened without symlinks or crossing a mount, each
/// file is unlinked by name relative to it, a directory in it is left (the
/// dir then stays, not empty).
fn remove_record_dir(dir: BorrowedFd<'_>, name: &InstanceName) -> rustix::io::Result<()> {
    let record: OwnedFd = rustix::fs::openat2(
        dir,
        name.as_str(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        rustix::fs::ResolveFlags::BENEATH
            | rustix::fs::ResolveFlags::NO_SYMLINKS
            | rustix::fs::ResolveFlags::NO_MAGICLINKS
            | rustix::fs::ResolveFlags::NO_XDEV,
    )?;
    let mut files = Vec::new();
    let mut entries = Dir::read_from(&record)?;
    while let Some(entry) = entries.read() {
        let entry = entry?;
        let file = entry.file_name().to_owned();
        if file.as_bytes() == b"." || file.as_bytes() == b".." {
            continue;
        }
        if entry.file_type() != FileType::Directory {
            files.push(file);
        }
    }
    for file in files {
        match rustix::fs::unlinkat(&record, file.as_c_str(), AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
    }
    rustix::fs::unlinkat(dir, name.as_str(), AtFlags::REMOVEDIR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::time::{Duration, SystemTime};

    /// `n` record dirs r0..r{n-1}, each with a record, 0711 as the
    /// health unit makes them; r0 the oldest.
    fn records(n: usize) -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt;
        let run = tempfile::tempdir().unwrap();
        let start = SystemTime::now() - Duration::from_secs(100_000);
        for i in 0..n {
            let d = run.path().join(format!("r{i}"));
            fs::create_dir(&d).unwrap();
            fs::set_permissions(&d, fs::Permissions::from_mode(0o711)).unwrap();
            fs::write(d.join("status.json"), "{}").unwrap();
            fs::File::open(&d)
                .unwrap()
                .set_modified(start + Duration::from_secs(i as u64 * 10))
                .unwrap();
        }
        run
    }

    fn left(run: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(run)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn below_the_cap_nothing_is_removed() {
        let run = records(KEPT - 1);
        assert!(prune(run.path(), |_| false).is_empty());
        assert_eq!(left(run.path()).len(), KEPT - 1);
    }

    #[test]
    fn at_the_cap_the_oldest_not_mounted_go_and_mounted_ones_stay() {
        let run = records(KEPT + 5);
        // r0..r3, the oldest, are mounted: kept whatever their age.
        let mounted = |n: &InstanceName| ["r0", "r1", "r2", "r3"].contains(&n.as_str());
        let removed: Vec<String> = prune(run.path(), mounted)
            .iter()
            .map(|n| n.as_str().to_owned())
            .collect();
        assert_eq!(removed, ["r4", "r5", "r6", "r7", "r8", "r9"]);
        let left = left(run.path());
        assert_eq!(left.len(), KEPT - 1);
        for kept in ["r0", "r1", "r2", "r3", "r10"] {
            assert!(left.iter().any(|l| l == kept), "{kept} was removed");
        }
    }

    #[test]
    fn a_dir_others_may_list_is_left() {
        use std::os::unix::fs::PermissionsExt;
        let run = records(KEPT + 1);
        let r0 = run.path().join("r0");
        fs::set_permissions(&r0, fs::Permissions::from_mode(0o755)).unwrap();
        fs::File::open(&r0)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(200_000))
            .unwrap();
        let removed: Vec<String> = prune(run.path(), |_| false)
            .iter()
            .map(|n| n.as_str().to_owned())
            .collect();
        assert_eq!(removed, ["r1", "r2"]);
        assert!(r0.join("status.json").exists());
    }

    #[test]
    fn one_mount_removes_a_bounded_number() {
        let run = records(KEPT + 100);
        assert_eq!(prune(run.path(), |_| false).len(), REMOVED_PER_MOUNT);
        assert_eq!(left(run.path()).len(), KEPT + 100 - REMOVED_PER_MOUNT);
    }

    #[test]
    fn what_is_not_a_record_dir_is_neither_counted_nor_removed() {
        let run = records(KEPT - 1);
        fs::write(run.path().join("stray-file"), "x").unwrap();
        fs::create_dir(run.path().join("not a name")).unwrap();
        std::os::unix::fs::symlink("/etc", run.path().join("link")).unwrap();
        assert!(prune(run.path(), |_| false).is_empty());
        assert_eq!(left(run.path()).len(), KEPT + 2);
    }

    #[test]
    fn a_link_in_a_record_dir_is_removed_not_followed_and_a_subdir_keeps_its_dir() {
        let run = records(KEPT + 1);
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("kept"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), run.path().join("r0/link")).unwrap();
        fs::create_dir(run.path().join("r1/sub")).unwrap();
        // Adding to them made them the newest; the oldest again.
        for (d, age) in [("r0", 200_000), ("r1", 199_000)] {
            fs::File::open(run.path().join(d))
                .unwrap()
                .set_modified(SystemTime::now() - Duration::from_secs(age))
                .unwrap();
        }
        let removed: Vec<String> = prune(run.path(), |_| false)
            .iter()
            .map(|n| n.as_str().to_owned())
            .collect();
        // r0 goes (its link unlinked); r1 cannot (a directory in it).
        assert_eq!(removed, ["r0"]);
        assert!(outside.path().join("kept").exists());
        assert!(run.path().join("r1/sub").exists());
        assert!(!run.path().join("r1/status.json").exists());
    }

    #[test]
    fn a_missing_run_dir_is_nothing_to_do() {
        let run = tempfile::tempdir().unwrap();
        assert!(prune(&run.path().join("absent"), |_| false).is_empty());
    }
}
