//! The state directory layout and who owns what in it. The admin's parts
//! (the state dir itself and runtime/) must not be writable by the service
//! user: if they were, the user could swap the directories the helper's
//! guarantees are anchored on.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Failure, Kind};
use crate::fsx;
use crate::name::InstanceName;

pub struct State {
    pub root: PathBuf,
    fd: OwnedFd,
}

impl State {
    /// The state dir path comes from root (command line, or host.env through
    /// systemd), so it is trusted and may itself be reached through symlinks;
    /// nothing below it is.
    pub fn open(root: &Path) -> Result<State, Failure> {
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
            ),
            e => fsx::os(root, "open state directory", e),
        })?;
        require_root_only(fd.as_fd(), root)?;
        Ok(State {
            root: root.to_path_buf(),
            fd,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn shown(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// runtime/, created root-owned if missing (a fresh host, or a test).
    pub fn runtime(&self) -> Result<OwnedFd, Failure> {
        let shown = self.shown("runtime");
        let fd = fsx::ensure_dir(self.fd(), "runtime", 0o755, &shown)?;
        require_root_only(fd.as_fd(), &shown)?;
        Ok(fd)
    }

    /// runtime/.left4me/: root-only; holds the locks and mount records.
    pub fn helper_dir(&self, runtime: BorrowedFd<'_>) -> Result<OwnedFd, Failure> {
        let shown = self.shown("runtime/.left4me");
        let fd = fsx::ensure_dir(runtime, ".left4me", 0o700, &shown)?;
        let st = fsx::stat_fd(&fd, &shown)?;
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
        Ok(fd)
    }

    pub fn names_in(&self, rel: &str) -> Result<Vec<String>, Failure> {
        let Some(fd) = fsx::open_dir_if_exists(self.fd(), rel, &self.shown(rel))? else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        let dir =
            rustix::fs::Dir::read_from(&fd).map_err(|e| fsx::os(&self.shown(rel), "read", e))?;
        for entry in dir {
            let entry = entry.map_err(|e| fsx::os(&self.shown(rel), "read", e))?;
            if let Ok(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }
}

/// Relative paths of one instance's parts.
pub struct InstancePaths {
    pub env: String,
    pub layer: String,
    pub runtime: String,
}

impl InstancePaths {
    pub fn new(name: &InstanceName) -> Self {
        InstancePaths {
            env: format!("instances/{name}/instance.env"),
            layer: format!("instances/{name}/layer"),
            runtime: format!("runtime/{name}"),
        }
    }
}

fn require_root_only(fd: BorrowedFd<'_>, shown: &Path) -> Result<(), Failure> {
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

/// The unprivileged account the game runs as (LEFT4ME_USER / LEFT4ME_GROUP).
#[derive(Debug, Clone)]
pub struct ServiceUser {
    pub uid: u32,
    pub gid: u32,
}

impl ServiceUser {
    pub fn from_env() -> Result<Self, Failure> {
        let user = std::env::var("LEFT4ME_USER").unwrap_or_else(|_| "left4me".into());
        let group = std::env::var("LEFT4ME_GROUP").unwrap_or_else(|_| "left4me".into());
        let unknown = |what: &str, name: &str| {
            Failure::new(Kind::UnknownUser, format!("service {what} {name:?} does not exist"))
                .hint("create it (the package's sysusers.d does) or set LEFT4ME_USER/LEFT4ME_GROUP in /etc/left4me/host.env")
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
        if uid == 0 {
            return Err(
                Failure::new(Kind::UnknownUser, "the service user must not be root")
                    .hint("set LEFT4ME_USER to an unprivileged account"),
            );
        }
        Ok(ServiceUser { uid, gid })
    }
}
