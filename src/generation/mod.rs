//! Installation generations (docs/updates.md). The game lives in root-owned
//! installations/<id>/, never changed once committed, and
//! installations/current, a root-owned regular file, names the one the next
//! mount uses. An update builds the next generation beside the ones running
//! instances use as their lowest layer, and switches `current` in one rename.
//!
//! This module is the layout and what mount, status and the update verbs
//! read; `tree` copies and takes over trees; `update` holds the verbs;
//! `steam` runs steamcmd as the update user.

mod steam;
mod tree;
mod update;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};

use crate::error::{Failure, Kind, Result};
use crate::fsx::{self, libc_mode};
use crate::instance::{self, Layer, Role};
use crate::lock::{self, LockMode};
use crate::name::InstanceName;
use crate::state::{self, InstancePaths, State};

pub(crate) use steam::{FetchArgs, LoginMode, fetch};
pub(crate) use update::{
    After, CommitOutcome, CopyMode, ImportArgs, RestartPolicy, abort, commit, gc, import, list,
    prepare,
};

pub(crate) const INSTALLATIONS: &str = "installations";
const CURRENT: &str = "current";
/// The generation being built, the update user's until commit.
pub(crate) const NEXT: &str = ".next";
/// Root-only, during a commit: the new inodes of the update user's files
/// before they replace the old ones (tree::take_over).
pub(crate) const RENEW: &str = ".renew";
/// Where the game lived before generations.
pub(crate) const LEGACY: &str = "installation";
const MANIFEST: &str = "steamapps/appmanifest_222860.acf";
/// Steam's "fully installed" state flag.
const FULLY_INSTALLED: u32 = 4;

/// A generation's name, validated whenever one is read back: 1-64 of
/// [A-Za-z0-9._-], first alphanumeric (so never `.next` or `..`). New
/// ones are the UTC commit time, `YYYYMMDDTHHMMSSZ`, which sorts by age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GenerationId(String);

/// Oldest first: by the stamp, then by the `-N` suffix as a number (so
/// `-10` comes after `-2`).
impl Ord for GenerationId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

impl PartialOrd for GenerationId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl GenerationId {
    pub(crate) fn parse(s: &str) -> Option<GenerationId> {
        let ok = (1..=64).contains(&s.len())
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        ok.then(|| GenerationId(s.to_owned()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The layer's path relative to the state dir.
    pub(crate) fn rel(&self) -> String {
        format!("{INSTALLATIONS}/{}", self.0)
    }

    /// (stamp, suffix): a plain stamp counts as suffix 1, `-2` follows it.
    fn sort_key(&self) -> (&str, u64) {
        match self.0.rsplit_once('-') {
            Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                (base, n.parse().unwrap_or(u64::MAX))
            }
            _ => (&self.0, 1),
        }
    }

    /// A new id for a generation committed at `unix_secs`, not among
    /// `taken`, and newer than all of them even if the clock went back.
    fn new_at(unix_secs: u64, taken: &[GenerationId]) -> GenerationId {
        let stamp = utc_stamp(unix_secs);
        let newest = taken.iter().map(|t| t.sort_key().0).max().unwrap_or("");
        let base = if newest > stamp.as_str() && newest.len() == stamp.len() {
            newest.to_owned()
        } else {
            stamp
        };
        let last = taken
            .iter()
            .map(GenerationId::sort_key)
            .filter(|(b, _)| *b == base)
            .map(|(_, n)| n)
            .max();
        GenerationId(match last {
            None => base,
            Some(n) => format!("{base}-{}", n.saturating_add(1)),
        })
    }
}

impl std::fmt::Display for GenerationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `YYYYMMDDTHHMMSSZ` (days to civil date after Howard Hinnant's algorithm).
fn utc_stamp(unix_secs: u64) -> String {
    let days = (unix_secs / 86400) as i64;
    let secs = unix_secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The generation a layer stack (a mount's record) uses; `None` for the
/// legacy installation/ or no installation layer.
pub(crate) fn of_stack(layers: &[Layer]) -> Option<GenerationId> {
    layers
        .iter()
        .find(|l| l.role == Role::Installation)
        .and_then(|l| l.rel.strip_prefix(&format!("{INSTALLATIONS}/")))
        .and_then(GenerationId::parse)
}

/// installations/, if it exists, checked like the state dir: root's and
/// writable by nobody else, so only root can create or replace `current`.
fn open_dir(state: &State) -> Result<Option<OwnedFd>> {
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

fn read_current(state: &State, dir: BorrowedFd<'_>) -> Result<Option<GenerationId>> {
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
pub(crate) fn read_current_in(
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

fn lock_installations(
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

fn lock_updates(state: &State, helper_dir: BorrowedFd<'_>) -> Result<lock::Lock> {
    lock::lock(
        helper_dir,
        lock::UPDATE,
        LockMode::Exclusive,
        "the generation verbs (another prepare, commit, import, abort or gc runs)",
        &state.shown(&InstancePaths::in_helper_dir(lock::UPDATE)),
    )
}

/// The Steam build id and whether the app is fully installed, from the
/// generation's app manifest (`None` when it has none: a tree imported by
/// hand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub(crate) build_id: Option<String>,
    pub(crate) fully_installed: bool,
}

/// Reads `MANIFEST` below `dir` (a generation, or .next/).
fn read_manifest(dir: BorrowedFd<'_>, shown_dir: &std::path::Path) -> Result<Option<Manifest>> {
    let shown = shown_dir.join(MANIFEST);
    match fsx::read_small_root_file(dir, MANIFEST, &shown, 64 * 1024) {
        Ok(bytes) => Ok(Some(parse_manifest(&String::from_utf8_lossy(&bytes)))),
        Err(f) if f.kind == Kind::Missing => Ok(None),
        Err(f) => Err(f),
    }
}

/// Steam's KeyValues text: `"key"  "value"` pairs, one per line. Only the
/// two top-level keys that matter are looked for.
pub(crate) fn parse_manifest(text: &str) -> Manifest {
    let value = |key: &str| {
        text.lines().find_map(|line| {
            let mut quoted = line.split('"').skip(1).step_by(2);
            let k = quoted.next()?;
            let v = quoted.next()?;
            k.eq_ignore_ascii_case(key).then(|| v.to_owned())
        })
    };
    let flags: Option<u32> = value("StateFlags").and_then(|v| v.parse().ok());
    Manifest {
        build_id: value("buildid")
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())),
        fully_installed: flags
            .is_some_and(|f| f & FULLY_INSTALLED != 0 && f & !FULLY_INSTALLED == 0),
    }
}

/// Which generations mounted instances use, from their stack records.
#[derive(Debug, Default)]
pub(crate) struct InUse {
    pub(crate) by: BTreeMap<GenerationId, Vec<String>>,
    /// Mounted instances whose record names no generation: mounted by an
    /// older helper, from installation/, or with an unreadable record.
    pub(crate) unknown: Vec<String>,
}

pub(crate) fn in_use(state: &State) -> Result<InUse> {
    let mut used = InUse::default();
    let Some(runtime) = state.open_runtime()? else {
        return Ok(used);
    };
    let helper_dir = state.open_helper_dir(runtime.as_fd())?;
    let mut names: Vec<InstanceName> = state
        .names_in(state::RUNTIME)?
        .iter()
        .filter_map(|n| InstanceName::parse(n).ok())
        .collect();
    names.sort();
    for name in names {
        let paths = InstancePaths::new(&name);
        let shown = state.shown(&paths.runtime());
        let Some(runtime_i) = fsx::open_dir_if_exists(state.fd(), &paths.runtime(), &shown)? else {
            continue;
        };
        let merged_shown = state.shown(&paths.part(state::MERGED));
        match instance::mounted_here(runtime_i.as_fd(), &name, &merged_shown) {
            Ok(None) => continue,
            Ok(Some(_)) => {}
            // Something odd is mounted there: count it as unknown, so
            // nothing is removed on a guess.
            Err(_) => {
                used.unknown.push(name.to_string());
                continue;
            }
        }
        let record = helper_dir
            .as_ref()
            .and_then(|dir| instance::read_record(dir.as_fd(), &paths));
        match record.as_deref().and_then(of_stack) {
            Some(id) => used.by.entry(id).or_default().push(name.to_string()),
            None => used.unknown.push(name.to_string()),
        }
    }
    Ok(used)
}

/// The committed generations, oldest first.
fn committed(dir: BorrowedFd<'_>, shown: &std::path::Path) -> Result<Vec<GenerationId>> {
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
fn write_current(dir: BorrowedFd<'_>, id: &GenerationId, shown: &std::path::Path) -> Result<()> {
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
fn migrate(state: &State, dir: BorrowedFd<'_>) -> Result<Option<GenerationId>> {
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

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether `name` in `dir` is a regular file (no symlink followed).
fn is_regular(dir: BorrowedFd<'_>, name: &str) -> bool {
    fsx::entry(dir, name).is_ok_and(|e| e.is_some_and(|e| e.kind == libc_mode::S_IFREG))
}

/// Whether `name` in `dir` is a directory (no symlink followed).
fn is_dir(dir: BorrowedFd<'_>, name: &str) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| fsx::file_type(&st) == libc_mode::S_IFDIR)
}

/// How a generation is named in messages.
fn shown_id(state: &State, id: &GenerationId) -> PathBuf {
    state.shown(&id.rel())
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[test_log::test]
    fn ids_are_utc_stamps_that_sort_by_age_and_never_collide() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_700_000_000), "20231114T221320Z");
        let a = GenerationId::new_at(1_796_000_000, &[]);
        let b = GenerationId::new_at(1_796_000_000, std::slice::from_ref(&a));
        let c = GenerationId::new_at(1_796_000_000, &[a.clone(), b.clone()]);
        assert_eq!(b.as_str(), format!("{a}-2"));
        assert_eq!(c.as_str(), format!("{a}-3"));
        assert!(GenerationId::new_at(1_796_000_001, &[]) > a);
        // -10 sorts after -2, and a new id follows the highest suffix even
        // when lower ones were collected.
        let ten = GenerationId(format!("{a}-10"));
        assert!(ten > b);
        assert_eq!(
            GenerationId::new_at(1_796_000_000, std::slice::from_ref(&ten)).as_str(),
            format!("{a}-11")
        );
        // A clock that went back still gives a newer id.
        let back = GenerationId::new_at(1_795_000_000, std::slice::from_ref(&c));
        assert!(back > c, "{back} after {c}");
    }

    #[rstest]
    #[case("20261130T031500Z", true)]
    #[case("migrated", true)]
    #[case(".next", false)]
    #[case("..", false)]
    #[case("a/b", false)]
    #[case("", false)]
    #[case("-x", false)]
    fn generation_names(#[case] name: &str, #[case] ok: bool) {
        assert_eq!(GenerationId::parse(name).is_some(), ok, "{name}");
    }

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

    #[test_log::test]
    fn manifests_give_the_build_and_whether_it_is_complete() {
        let complete = "\"AppState\"\n{\n\t\"appid\"\t\t\"222860\"\n\t\"StateFlags\"\t\t\"4\"\n\t\"buildid\"\t\t\"16212116\"\n}\n";
        assert_eq!(
            parse_manifest(complete),
            Manifest {
                build_id: Some("16212116".into()),
                fully_installed: true
            }
        );
        // 1026 = update required | update running: a download cut short.
        let partial = complete.replace("\"4\"", "\"1026\"");
        assert!(!parse_manifest(&partial).fully_installed);
        assert_eq!(parse_manifest("garbage").build_id, None);
        assert!(!parse_manifest("garbage").fully_installed);
        assert_eq!(parse_manifest("\"buildid\" \"12; rm\"").build_id, None);
    }

    #[test_log::test]
    fn a_stack_names_its_generation_only_under_installations() {
        let stack = |rel: &str| {
            vec![Layer {
                role: Role::Installation,
                rel: rel.into(),
            }]
        };
        assert_eq!(
            of_stack(&stack("installations/20261130T031500Z")).map(|i| i.to_string()),
            Some("20261130T031500Z".into())
        );
        assert_eq!(of_stack(&stack("installation")), None);
        assert_eq!(of_stack(&stack("installations/.next")), None);
        assert_eq!(of_stack(&[]), None);
    }
}
