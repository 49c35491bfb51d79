//! The state directory: its layout (the paths of instances/ and runtime/;
//! generation/ builds those of installations/) and who owns what in it. The
//! admin's parts (the state dir itself and runtime/) must not be writable by
//! the service user: if they were, the user could swap the directories the
//! helper's guarantees are anchored on.
//!
//! `open_*` only opens what exists, for read paths (status); `ensure_*`
//! creates what is missing, for the verbs that change state.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Failure, Kind};
use crate::fsx;
use crate::name::{InstanceName, OverlayName};

pub(crate) const INSTANCES: &str = "instances";
pub(crate) const RUNTIME: &str = "runtime";
/// Root-only: locks, stack records, staging mounts, the game's env copies.
pub(crate) const HELPER_DIR: &str = "runtime/.left4me";
const HELPER_DIR_NAME: &str = ".left4me";
/// The parts of runtime/<i>/, by their name in it.
pub(crate) const UPPER: &str = "upper";
pub(crate) const WORK: &str = "work";
/// The game's $HOME: the service user's, 0710 (the health check, another
/// user in its group, reads the events file in it); a reset empties it too.
pub(crate) const HOME: &str = "home";
pub(crate) const MERGED: &str = "merged";

pub(crate) fn overlay_rel(name: &OverlayName) -> String {
    format!("overlays/{name}")
}

pub(crate) struct State {
    pub(crate) root: PathBuf,
    fd: OwnedFd,
}

impl State {
    /// The state dir path comes from root (command line, or a root-owned unit
    /// file), so it is trusted and may itself be reached through symlinks;
    /// nothing below it is.
    pub(crate) fn open(root: &Path) -> Result<State, Failure> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::open(root, flags, Mode::empty()).map_err(|e| match e {
            Errno::NOENT => Failure::new(
                Kind::Missing,
                format!("state directory {} does not exist", root.display()),
            )
            .hint("install the package (systemd-tmpfiles creates it) or pass --state-dir"),
            Errno::NOTDIR => Failure::new(
                Kind::UnsafePath,
                format!("state directory {} is not a directory", root.display()),
            )
            .hint("pass the directory holding installation/, overlays/, instances/ and runtime/"),
            e => Failure::os(root, "open state directory", e),
        })?;
        require_root_only(fd.as_fd(), root)?;
        Ok(State {
            root: root.to_path_buf(),
            fd,
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn shown(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// runtime/, if it exists (checked root-only like the state dir).
    pub(crate) fn open_runtime(&self) -> Result<Option<OwnedFd>, Failure> {
        let shown = self.shown(RUNTIME);
        let fd = fsx::open_dir_if_exists(self.fd(), RUNTIME, &shown)?;
        if let Some(fd) = &fd {
            require_root_only(fd.as_fd(), &shown)?;
        }
        Ok(fd)
    }

    /// runtime/, created root-owned if missing (a fresh host, or a test).
    pub(crate) fn ensure_runtime(&self) -> Result<OwnedFd, Failure> {
        let shown = self.shown(RUNTIME);
        let fd = fsx::ensure_dir(self.fd(), RUNTIME, 0o711, &shown)?;
        require_root_only(fd.as_fd(), &shown)?;
        Ok(fd)
    }

    /// runtime/NAME/, created if missing and made root:<service group> 0750
    /// every time: the game reaches merged/ through its group; other local
    /// users cannot read staged config (rcon passwords) through it.
    pub(crate) fn ensure_instance_runtime(
        &self,
        runtime: BorrowedFd<'_>,
        paths: &InstancePaths,
        gid: u32,
    ) -> Result<OwnedFd, Failure> {
        let shown = self.shown(&paths.runtime());
        let fd = fsx::ensure_dir(runtime, paths.name().as_str(), 0o750, &shown)?;
        fsx::chown_fd(fd.as_fd(), 0, gid, &shown)?;
        fsx::chmod_fd(fd.as_fd(), 0o750, &shown)?;
        Ok(fd)
    }

    /// runtime/.left4me/, if it exists.
    pub(crate) fn open_helper_dir(
        &self,
        runtime: BorrowedFd<'_>,
    ) -> Result<Option<OwnedFd>, Failure> {
        let shown = self.shown(HELPER_DIR);
        let fd = fsx::open_dir_if_exists(runtime, HELPER_DIR_NAME, &shown)?;
        if let Some(fd) = &fd {
            require_private(fd.as_fd(), &shown)?;
        }
        Ok(fd)
    }

    /// runtime/.left4me/, created root-only if missing.
    pub(crate) fn ensure_helper_dir(&self, runtime: BorrowedFd<'_>) -> Result<OwnedFd, Failure> {
        let shown = self.shown(HELPER_DIR);
        let fd = fsx::ensure_dir(runtime, HELPER_DIR_NAME, 0o700, &shown)?;
        require_private(fd.as_fd(), &shown)?;
        Ok(fd)
    }

    /// The names in instances/ or runtime/ (nothing if it does not exist).
    pub(crate) fn names_in(&self, rel: &str) -> Result<Vec<String>, Failure> {
        let mut names = Vec::new();
        each_name_in(self.fd(), rel, &self.shown(rel), u64::MAX, |name| {
            names.push(name.to_owned())
        })?;
        Ok(names)
    }
}

/// Each name in `rel` (nothing if it does not exist), in directory order,
/// without holding them all; false, having read nothing, when the
/// directory's size is past `most_bytes`.
fn each_name_in(
    state: BorrowedFd<'_>,
    rel: &str,
    shown: &Path,
    most_bytes: u64,
    mut each: impl FnMut(&str),
) -> Result<bool, Failure> {
    let Some(fd) = fsx::open_dir_if_exists(state, rel, shown)? else {
        return Ok(true);
    };
    if fsx::stat_fd(&fd, shown)?.st_size as u64 > most_bytes {
        return Ok(false);
    }
    let dir = rustix::fs::Dir::new(fd).map_err(|e| Failure::os(shown, "read", e))?;
    for entry in dir {
        let entry = entry.map_err(|e| Failure::os(shown, "read", e))?;
        if let Ok(name) = entry.file_name().to_str() {
            each(name);
        }
    }
    Ok(true)
}

/// The instances one listing of them all shows (`status`, `left4me list`):
/// every name in runtime/ (root makes those, at most 1,024: verbs.rs;
/// skipped when the caller may not list it, as only root may), and of the
/// names only in instances/, where the service user makes any number of
/// directories, the first [`LISTED_CONFIG_ONLY`] by name. Each shown name
/// costs a parse of its instance.env, so without this bound root's listing
/// grew with every directory the user made (twenty-seventh review: 0.1-0.2
/// ms a directory) and held all their names. Those left out are the user's
/// own instances that never started; they are counted, and `status NAME`
/// shows any one. instances/ itself is read only while its size is at most
/// [`INSTANCES_READ_MAX`]: a directory keeps the size of the entries
/// removed from it (ext4), and reading that is not counted in names
/// (twenty-eighth review).
pub(crate) fn listed_names(state: BorrowedFd<'_>, root: &Path) -> Result<ListedNames, Failure> {
    listed_names_within(state, root, INSTANCES_READ_MAX)
}

fn listed_names_within(
    state: BorrowedFd<'_>,
    root: &Path,
    instances_read_max: u64,
) -> Result<ListedNames, Failure> {
    let mut started = BTreeSet::new();
    let runtime = each_name_in(state, RUNTIME, &root.join(RUNTIME), u64::MAX, |n| {
        if let Ok(name) = InstanceName::parse(n) {
            started.insert(name);
        }
    });
    match runtime {
        Err(f) if f.kind == Kind::NotPermitted => {}
        other => _ = other?,
    }
    let mut config_only = BTreeSet::new();
    let mut not_shown = 0;
    let read = each_name_in(
        state,
        INSTANCES,
        &root.join(INSTANCES),
        instances_read_max,
        |n| {
            let Ok(name) = InstanceName::parse(n) else {
                return;
            };
            if started.contains(&name) {
                return;
            }
            config_only.insert(name);
            if config_only.len() > LISTED_CONFIG_ONLY {
                config_only.pop_last();
                not_shown += 1;
            }
        },
    )?;
    started.append(&mut config_only);
    Ok(ListedNames {
        names: started.into_iter().collect(),
        not_shown: read.then_some(not_shown),
    })
}

/// Instances that have no runtime/NAME shown at most in one listing.
pub(crate) const LISTED_CONFIG_ONLY: usize = 1024;
/// The largest instances/ a listing reads (its size, in bytes): about
/// 250,000 names of the longest kind, half a second from a cold disk.
pub(crate) const INSTANCES_READ_MAX: u64 = 64 << 20;

/// The line a listing ends with when it left names out (`None`: instances/
/// was too large to read).
pub(crate) fn not_shown_line(not_shown: Option<u64>, instances_dir: &Path) -> String {
    let dir = instances_dir.display();
    match not_shown {
        Some(0) => String::new(),
        Some(n) => format!(
            "{n} more instances that never started are not shown: a listing shows the first \
             {LISTED_CONFIG_ONLY} of them by name (ls {dir} lists all)\n"
        ),
        None => format!(
            "instances that never started are not shown: {dir} is larger than the {} MiB a \
             listing reads (ls {dir} lists them)\n",
            INSTANCES_READ_MAX >> 20
        ),
    }
}

#[derive(Debug)]
pub(crate) struct ListedNames {
    /// Sorted.
    pub(crate) names: Vec<InstanceName>,
    /// Names only in instances/ past [`LISTED_CONFIG_ONLY`]; none when
    /// instances/ was past [`INSTANCES_READ_MAX`] and not read.
    pub(crate) not_shown: Option<u64>,
}

/// An instance's own entries in runtime/.left4me/.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Own {
    Lock,
    /// The layer stack the live mount was made with.
    Record,
    /// A directory: where a mount's private namespace attaches its staging
    /// tmpfs (overlay::staging).
    Stage,
    /// The game's environment: instance.env's validated lines, re-serialised.
    EnvCopy,
    /// Held by the one background sweeper of the instance's discarded layers.
    Sweeper,
    /// That the server's AllowedCPUs= was set at runtime, in which boot and
    /// to what (cpus::apply): kept across umounts, as systemd keeps it.
    Cpus,
}

impl Own {
    /// Every entry, for whoever removes an instance's (`left4me delete`).
    pub(crate) const ALL: [Own; 6] = [
        Own::Lock,
        Own::Record,
        Own::Stage,
        Own::EnvCopy,
        Own::Sweeper,
        Own::Cpus,
    ];

    fn suffix(self) -> &'static str {
        match self {
            Own::Lock => "lock",
            Own::Record => "stack",
            Own::Stage => "stage",
            Own::EnvCopy => "env",
            Own::Sweeper => "sweep",
            Own::Cpus => "cpus",
        }
    }
}

/// Where one instance's parts are: relative to the state dir (`*_rel`, to
/// open beneath it and to name in messages), or by name inside
/// runtime/.left4me/ (`*_name`, to open relative to that dir's fd).
pub(crate) struct InstancePaths {
    name: InstanceName,
}

impl InstancePaths {
    pub(crate) fn new(name: &InstanceName) -> Self {
        InstancePaths { name: name.clone() }
    }

    pub(crate) fn name(&self) -> &InstanceName {
        &self.name
    }

    pub(crate) fn dir(&self) -> String {
        format!("{INSTANCES}/{}", self.name)
    }

    /// The user-writable config (instances/<i>/instance.env).
    pub(crate) fn env(&self) -> String {
        format!("{INSTANCES}/{}/instance.env", self.name)
    }

    /// The one-request reset (docs/unit.md, "Reset at the next start"):
    /// while this name exists, the next mount starts from an empty writable
    /// layer. Only its existence is looked at, never its content or type.
    pub(crate) const RESET_MARKER: &'static str = "reset-at-start";

    /// The optional per-instance layer.
    pub(crate) fn layer(&self) -> String {
        format!("{INSTANCES}/{}/layer", self.name)
    }

    /// runtime/<i>: upper/, work/, merged/ and discarded layers.
    pub(crate) fn runtime(&self) -> String {
        format!("{RUNTIME}/{}", self.name)
    }

    /// A part of runtime/<i> ([`UPPER`], [`WORK`], [`HOME`], [`MERGED`]).
    pub(crate) fn part(&self, part: &str) -> String {
        format!("{RUNTIME}/{}/{part}", self.name)
    }

    /// This instance's file `<i>.<kind>` in runtime/.left4me/.
    pub(crate) fn own(&self, kind: Own) -> String {
        format!("{}.{}", self.name, kind.suffix())
    }

    /// A `*_name` inside runtime/.left4me/, relative to the state dir.
    pub(crate) fn in_helper_dir(name: &str) -> String {
        format!("{HELPER_DIR}/{name}")
    }
}

pub(crate) fn require_root_only(fd: BorrowedFd<'_>, shown: &Path) -> Result<(), Failure> {
    let st = fsx::stat_fd(fd, shown)?;
    if st.st_uid != 0 || st.st_mode & 0o022 != 0 {
        return Err(Failure::new(
            Kind::UnsafePath,
            format!(
                "{} must be owned by root and writable by nobody else (it is uid {}, mode {:04o})",
                shown.display(),
                st.st_uid,
                st.st_mode & 0o7777
            ),
        )
        .hint(format!(
            "chown root: {0} && chmod go-w {0} (systemd-tmpfiles --create does this)",
            shown.display()
        )));
    }
    Ok(())
}

fn require_private(fd: BorrowedFd<'_>, shown: &Path) -> Result<(), Failure> {
    let st = fsx::stat_fd(fd, shown)?;
    if st.st_uid != 0 || st.st_mode & 0o077 != 0 {
        return Err(Failure::new(
            Kind::UnsafePath,
            format!("{} must be owned by root with mode 0700", shown.display()),
        )
        .hint(format!(
            "chown root:root {0} && chmod 0700 {0}",
            shown.display()
        )));
    }
    Ok(())
}

/// The unprivileged account the game runs as (LEFT4ME_USER / LEFT4ME_GROUP).
/// Only root-owned unit files set these for the helper; root itself is
/// refused, as user and as group, because the writable layer and idmapped
/// layers would then hand root's files to the game.
#[derive(Debug, Clone)]
pub(crate) struct ServiceUser {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl ServiceUser {
    pub(crate) fn from_env() -> Result<Self, Failure> {
        let user = std::env::var("LEFT4ME_USER").unwrap_or_else(|_| "left4me".into());
        let group = std::env::var("LEFT4ME_GROUP").unwrap_or_else(|_| "left4me".into());
        let unknown = |what: &str, name: &str| {
            Failure::new(Kind::UnknownUser, format!("service {what} {name:?} does not exist"))
                .hint("create it (the package's sysusers.d does), or set LEFT4ME_USER/LEFT4ME_GROUP in the left4me-overlay@/left4me-reset@ units")
        };
        let uid = nix::unistd::User::from_name(&user)
            .ok()
            .flatten()
            .ok_or_else(|| unknown("user", &user))?
            .uid
            .as_raw();
        let gid = nix::unistd::Group::from_name(&group)
            .ok()
            .flatten()
            .ok_or_else(|| unknown("group", &group))?
            .gid
            .as_raw();
        Self::check(uid, gid, &user, &group)
    }

    fn check(uid: u32, gid: u32, user: &str, group: &str) -> Result<Self, Failure> {
        let root = |what: &str, name: &str, id: &str| {
            Failure::new(
                Kind::UnknownUser,
                format!("the service {what} must not be root: {name:?} is {id} 0"),
            )
            .hint("set LEFT4ME_USER and LEFT4ME_GROUP to an unprivileged account and its own group")
        };
        if uid == 0 {
            return Err(root("user", user, "uid"));
        }
        if gid == 0 {
            return Err(root("group", group, "gid"));
        }
        Ok(ServiceUser { uid, gid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test_log::test]
    fn root_is_refused_as_user_and_as_group() {
        let e = ServiceUser::check(0, 5, "toor", "g").unwrap_err();
        assert_eq!(e.kind, Kind::UnknownUser);
        assert!(e.message.contains("\"toor\" is uid 0"), "{}", e.message);
        let e = ServiceUser::check(5, 0, "u", "wheel").unwrap_err();
        assert!(
            e.message
                .contains("group must not be root: \"wheel\" is gid 0"),
            "{}",
            e.message
        );
        assert!(ServiceUser::check(5, 5, "u", "g").is_ok());
    }

    #[test_log::test]
    fn the_layout() {
        let p = InstancePaths::new(&InstanceName::parse("vs1").unwrap());
        assert_eq!(p.env(), "instances/vs1/instance.env");
        assert_eq!(p.layer(), "instances/vs1/layer");
        assert_eq!(p.part(MERGED), "runtime/vs1/merged");
        assert_eq!(
            InstancePaths::in_helper_dir(&p.own(Own::EnvCopy)),
            "runtime/.left4me/vs1.env"
        );
    }

    #[test_log::test]
    fn a_listing_shows_every_started_name_and_the_first_never_started_ones() {
        let root = tempfile::tempdir().unwrap();
        let mkdir = |rel: &str| std::fs::create_dir_all(root.path().join(rel)).unwrap();
        // 1,030 never-started names of the user's, numbered to sort.
        for i in 0..LISTED_CONFIG_ONLY + 6 {
            mkdir(&format!("{INSTANCES}/c{i:05}"));
        }
        // Started names sort after them (and one has no config left), and
        // names that are no instance's are skipped in both.
        for rel in ["instances/zz-both", "runtime/zz-both", "runtime/zz-gone"] {
            mkdir(rel);
        }
        for rel in [
            "instances/.hidden",
            "instances/bad name",
            "runtime/.left4me",
        ] {
            mkdir(rel);
        }
        let state = rustix::fs::open(root.path(), OFlags::PATH, Mode::empty()).unwrap();
        let listed = listed_names(state.as_fd(), root.path()).unwrap();
        let names: Vec<&str> = listed.names.iter().map(InstanceName::as_str).collect();
        assert_eq!(names.len(), LISTED_CONFIG_ONLY + 2);
        assert_eq!(names[0], "c00000");
        assert_eq!(names[LISTED_CONFIG_ONLY - 1], "c01023");
        assert_eq!(names[LISTED_CONFIG_ONLY..], ["zz-both", "zz-gone"]);
        assert_eq!(listed.not_shown, Some(6));
        assert_eq!(
            not_shown_line(listed.not_shown, &root.path().join(INSTANCES)),
            format!(
                "6 more instances that never started are not shown: a listing shows the first \
                 1024 of them by name (ls {}/instances lists all)\n",
                root.path().display()
            )
        );
        // instances/ past the size a listing reads: only started names.
        let size = std::fs::metadata(root.path().join(INSTANCES))
            .unwrap()
            .len();
        let listed = listed_names_within(state.as_fd(), root.path(), size - 1).unwrap();
        let names: Vec<&str> = listed.names.iter().map(InstanceName::as_str).collect();
        assert_eq!(
            (names, listed.not_shown),
            (vec!["zz-both", "zz-gone"], None)
        );
        assert_eq!(
            not_shown_line(None, &root.path().join(INSTANCES)),
            format!(
                "instances that never started are not shown: {}/instances is larger than the 64 \
                 MiB a listing reads (ls {0}/instances lists them)\n",
                root.path().display()
            )
        );
        assert_eq!(not_shown_line(Some(0), Path::new("/x")), "");
    }
}
