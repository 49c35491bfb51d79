//! installations/ and its `current`: which generation the next mount uses,
//! read by mount, status and the update verbs, written only here (a commit,
//! a migration); the locks around them; and the migration of a host from
//! before generations.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};

use super::id::{GenerationId, INSTALLATIONS};
use crate::error::{Failure, Kind, Result};
use crate::fsx::{self, libc_mode};
use crate::lock::{self, LockMode};
use crate::state::{self, InstancePaths, State};

pub(super) const CURRENT: &str = "current";
/// The generation being built, the update user's until commit.
pub(super) const NEXT: &str = ".next";
/// Root-only, during a commit: the new inodes of the update user's files
/// before they replace the old ones (tree::take_over).
pub(super) const RENEW: &str = ".renew";
/// Where the game lived before generations.
pub(super) const LEGACY: &str = "installation";

/// installations/, if it exists, checked like the state dir: root's and
/// writable by nobody else, so only root can create or replace `current`.
pub(super) fn open_dir(state: &State) -> Result<Option<OwnedFd>> {
    let shown = state.shown(INSTALLATIONS);
    let fd = fsx::open_admin_dir_if_exists(state.fd(), INSTALLATIONS, &shown)?;
    if let Some(fd) = &fd {
        state::require_root_only(fd.as_fd(), &shown)?;
    }
    Ok(fd)
}

/// The generation `current` names, if there is a `current`.
pub(crate) fn current(state: &State) -> Result<Option<GenerationId>> {
    let Some(dir) = open_dir(state)? else {
        return Ok(None);
    };
    read_current(state, dir.as_fd())
}

pub(super) fn read_current(state: &State, dir: BorrowedFd<'_>) -> Result<Option<GenerationId>> {
    read_current_in(dir, &state.shown(INSTALLATIONS))
}

/// `current` holds one id and a newline; anything much larger was not
/// written by the helper.
pub(crate) const MAX_CURRENT_BYTES: usize = 256;

/// The generation `current` in `dir` names; `None` when there is no
/// `current`. Root's reader (mount, status, the update verbs): no symlink
/// is followed, a FIFO cannot block, and the file is read whole from one
/// open: it is replaced by rename(2), never rewritten, so no half-written
/// id is seen. The health check opens the file its own way (its sandbox
/// refuses openat2) and shares [`parse_current`].
fn read_current_in(
    dir: BorrowedFd<'_>,
    shown_dir: &std::path::Path,
) -> Result<Option<GenerationId>> {
    let shown = shown_dir.join(CURRENT);
    let bytes = match fsx::read_small_file(dir, CURRENT, &shown, MAX_CURRENT_BYTES) {
        Ok(b) => b,
        Err(f) if f.kind == Kind::Missing => return Ok(None),
        Err(f) => return Err(f),
    };
    parse_current(&bytes, &shown, shown_dir).map(Some)
}

/// The one rule for what `current` may hold: a generation id, then
/// newlines. `shown` is the file, `shown_dir` installations/, for the
/// message.
pub(crate) fn parse_current(
    bytes: &[u8],
    shown: &std::path::Path,
    shown_dir: &std::path::Path,
) -> Result<GenerationId> {
    let text = String::from_utf8_lossy(bytes);
    GenerationId::parse(text.trim_end_matches('\n')).ok_or_else(|| {
        Failure::new(
            Kind::InvalidConfig,
            format!(
                "{} does not name a generation: {:?}",
                shown.display(),
                text.escape_debug().to_string()
            ),
        )
        .hint(format!(
            "write the name of a directory in {} to it, e.g. the newest (left4me-overlay generation list)",
            shown_dir.display()
        ))
    })
}

/// The installation layer the next mount uses, relative to the state dir:
/// the current generation, or on a host not yet migrated the legacy
/// installation/.
pub(crate) fn layer_rel(state: &State) -> Result<String> {
    layer_rel_if_installed(state)?.ok_or_else(|| {
        Failure::new(
            Kind::Missing,
            format!(
                "no game installation: {} does not exist",
                state.shown(&format!("{INSTALLATIONS}/{CURRENT}")).display()
            ),
        )
        .hint("install the game: systemctl start left4me-update (steamcmd), or left4me-overlay generation import DIR")
    })
}

/// As [`layer_rel`], `None` on a host with no game installed yet.
pub(crate) fn layer_rel_if_installed(state: &State) -> Result<Option<String>> {
    if let Some(id) = current(state)? {
        return Ok(Some(id.rel()));
    }
    Ok(match fsx::entry(state.fd(), LEGACY) {
        Ok(Some(e)) if e.kind == libc_mode::S_IFDIR => Some(LEGACY.to_owned()),
        _ => None,
    })
}

/// Held by a mount from picking the generation until its stack record
/// names it, so a collection cannot remove it in between.
pub(crate) fn hold_for_mount(state: &State, helper_dir: BorrowedFd<'_>) -> Result<lock::Lock> {
    lock_installations(state, helper_dir, LockMode::Shared)
}

pub(super) fn lock_installations(
    state: &State,
    helper_dir: BorrowedFd<'_>,
    mode: LockMode,
) -> Result<lock::Lock> {
    lock::lock(
        helper_dir,
        lock::INSTALLATIONS,
        mode,
        "the installations",
        &state.shown(&InstancePaths::in_helper_dir(lock::INSTALLATIONS)),
    )
}

pub(super) fn lock_updates(state: &State, helper_dir: BorrowedFd<'_>) -> Result<lock::Lock> {
    lock::lock(
        helper_dir,
        lock::UPDATE,
        LockMode::Exclusive,
        "the generation verbs (another prepare, commit, import, abort or gc runs)",
        &state.shown(&InstancePaths::in_helper_dir(lock::UPDATE)),
    )
}

/// The committed generations, oldest first.
pub(super) fn committed(dir: BorrowedFd<'_>, shown: &std::path::Path) -> Result<Vec<GenerationId>> {
    let mut ids = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir).map_err(|e| Failure::os(shown, "read", e))? {
        let entry = entry.map_err(|e| Failure::os(shown, "read", e))?;
        let Some(id) = entry
            .file_name()
            .to_str()
            .ok()
            .and_then(GenerationId::parse)
        else {
            continue;
        };
        if id.as_str() == CURRENT {
            continue;
        }
        if let Ok(Some(e)) = fsx::entry(dir, id.as_str()) {
            if e.kind == libc_mode::S_IFDIR {
                ids.push(id);
            }
        }
    }
    ids.sort();
    Ok(ids)
}

/// Makes `id` current: written to a temporary name, flushed, renamed over
/// `current`, and the directory flushed, so after a crash `current` names
/// either the old generation or the new one, and the new one is complete.
pub(super) fn write_current(
    dir: BorrowedFd<'_>,
    id: &GenerationId,
    shown: &std::path::Path,
) -> Result<()> {
    let tmp = ".current.tmp";
    let fd = rustix::fs::openat(
        dir,
        tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|e| Failure::os(shown, "create", e))?;
    fsx::chmod_fd(fd.as_fd(), 0o644, shown)?;
    fsx::write_all(&fd, format!("{id}\n").as_bytes(), shown)?;
    rustix::fs::fsync(&fd).map_err(|e| Failure::os(shown, "fsync", e))?;
    rustix::fs::renameat(dir, tmp, dir, CURRENT).map_err(|e| Failure::os(shown, "rename", e))?;
    rustix::fs::fsync(dir).map_err(|e| Failure::os(shown, "fsync directory of", e))
}

/// Gives a host without `current` one, under the installations lock held
/// exclusively. From before generations: installation/ becomes the first
/// generation; only the tree's parent changes, so instances mounted from it
/// keep running on it. After a migration or commit killed between its
/// rename and writing `current`: the newest complete generation is adopted.
/// An empty or missing installation/ and no generation: nothing to do.
pub(super) fn migrate(state: &State, dir: BorrowedFd<'_>) -> Result<Option<GenerationId>> {
    if read_current(state, dir)?.is_some() {
        return Ok(None);
    }
    let shown = state.shown(INSTALLATIONS);
    let current_shown = state.shown(&format!("{INSTALLATIONS}/{CURRENT}"));
    let legacy_shown = state.shown(LEGACY);
    let legacy = fsx::open_admin_dir_if_exists(state.fd(), LEGACY, &legacy_shown)?;
    let empty = match &legacy {
        None => true,
        Some(fd) => rustix::fs::Dir::read_from(fd)
            .map_err(|e| Failure::os(&legacy_shown, "read", e))?
            .filter_map(|e| e.ok())
            .all(|e| e.file_name() == c"." || e.file_name() == c".."),
    };
    if empty {
        let adopt = committed(dir, &shown)?.into_iter().rev().find(|id| {
            fsx::open_dir(dir, id.as_str(), &shown_id(state, id))
                .is_ok_and(|g| is_regular(g.as_fd(), "srcds_run"))
        });
        if let Some(id) = &adopt {
            write_current(dir, id, &current_shown)?;
            tracing::warn!(generation = %id, "no current generation (an earlier run was killed half-way); adopted the newest complete one");
        }
        return Ok(adopt);
    }
    let top = fsx::entry(state.fd(), LEGACY).map_err(|e| Failure::os(&legacy_shown, "stat", e))?;
    if top.as_ref().is_some_and(|e| e.mount_root) {
        return Err(Failure::new(
            Kind::UnsafePath,
            format!("{} is a mount point; it cannot be moved into {}", legacy_shown.display(), shown.display()),
        )
        .hint(format!(
            "left4me-overlay generation import {} copies it into a generation (then unmount it), or mount that filesystem on {} instead",
            legacy_shown.display(),
            shown.display()
        )));
    }
    let owner = legacy
        .as_ref()
        .map(|fd| fsx::stat_fd(fd, &legacy_shown))
        .transpose()?
        .map_or(0, |st| st.st_uid);
    if owner != 0 {
        return Err(Failure::new(
            Kind::UnsafePath,
            format!(
                "{} belongs to uid {owner}; a generation is root's, written by nobody else",
                legacy_shown.display()
            ),
        )
        .hint(format!(
            "stop the instances, chown -R root:root {0} and run this again; or left4me-overlay generation import {0}",
            legacy_shown.display()
        )));
    }
    let id = GenerationId::new_at(now_secs(), &committed(dir, &shown)?);
    rustix::fs::renameat_with(state.fd(), LEGACY, dir, id.as_str(), RenameFlags::NOREPLACE)
        .map_err(|e| Failure::os(&legacy_shown, "move into installations/", e))?;
    write_current(dir, &id, &current_shown)?;
    tracing::info!(generation = %id, "migrated {} to {}", legacy_shown.display(), state.shown(&id.rel()).display());
    Ok(Some(id))
}

pub(super) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether `name` in `dir` is a regular file (no symlink followed).
pub(super) fn is_regular(dir: BorrowedFd<'_>, name: &str) -> bool {
    fsx::entry(dir, name).is_ok_and(|e| e.is_some_and(|e| e.kind == libc_mode::S_IFREG))
}

/// Whether `name` in `dir` is a directory (no symlink followed).
pub(super) fn is_dir(dir: BorrowedFd<'_>, name: &str) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| fsx::file_type(&st) == libc_mode::S_IFDIR)
}

/// How a generation is named in messages.
pub(super) fn shown_id(state: &State, id: &GenerationId) -> PathBuf {
    state.shown(&id.rel())
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn installations(content: Option<&[u8]>) -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        if let Some(c) = content {
            std::fs::write(dir.path().join(CURRENT), c).unwrap();
        }
        let fd =
            rustix::fs::open(dir.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        (dir, fd)
    }

    #[rstest]
    #[case::with_newline(b"20261130T030000Z\n", "20261130T030000Z")]
    #[case::without_newline(b"20261130T030000Z", "20261130T030000Z")]
    #[case::two_newlines(b"20261130T030000Z\n\n", "20261130T030000Z")]
    #[case::suffixed(b"20261201T040000Z-2\n", "20261201T040000Z-2")]
    #[test_log::test]
    fn reads_current(#[case] content: &[u8], #[case] expected: &str) {
        let (dir, fd) = installations(Some(content));
        let id = read_current_in(fd.as_fd(), dir.path()).unwrap().unwrap();
        assert_eq!(id.as_str(), expected);
    }

    /// Each way `current` can be wrong, with the words that say so: none of
    /// them is a generation, and none hangs or follows a link.
    #[rstest]
    #[case::empty(b"", "does not name a generation")]
    #[case::newline_only(b"\n", "does not name a generation")]
    #[case::two_lines(b"20261130T030000Z\n20261201T040000Z\n", "does not name a generation")]
    #[case::spaces(b" 20261130T030000Z\n", "does not name a generation")]
    #[case::path(b"../installation\n", "does not name a generation")]
    #[case::binary(b"\xff\xfe\n", "does not name a generation")]
    #[case::longest_allowed_but_no_id(&[b'a'; 256], "does not name a generation")]
    #[case::too_large(&[b'a'; 257], "more than the 256")]
    #[test_log::test]
    fn malformed_current_is_no_generation(#[case] content: &[u8], #[case] why: &str) {
        let (dir, fd) = installations(Some(content));
        let err = read_current_in(fd.as_fd(), dir.path()).unwrap_err();
        assert!(err.message.contains(why), "{err:?}");
        assert!(
            err.message
                .contains(&dir.path().join(CURRENT).display().to_string()),
            "{err:?}"
        );
    }

    #[test_log::test]
    fn missing_linked_and_odd_current_is_no_generation() {
        let (dir, fd) = installations(None);
        let path = dir.path().join(CURRENT);
        assert_eq!(read_current_in(fd.as_fd(), dir.path()).unwrap(), None);
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "20261130T030000Z\n").unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let err = read_current_in(fd.as_fd(), dir.path()).unwrap_err();
        assert_eq!(err.kind, Kind::UnsafePath, "{err:?}");
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let err = read_current_in(fd.as_fd(), dir.path()).unwrap_err();
        assert!(err.message.contains("not a regular file"), "{err:?}");
        std::fs::remove_dir(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = read_current_in(fd.as_fd(), dir.path()).unwrap_err();
        assert!(err.message.contains("not a regular file"), "{err:?}");
    }
}
