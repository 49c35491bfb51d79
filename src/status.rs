//! `status`: read-only; takes no lock, so it answers even while a long verb
//! runs, and walks the writable layer with fds only.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;

use rustix::fs::{Mode, OFlags};
use serde::Serialize;

use crate::discard;
use crate::error::{Failure, Kind};
use crate::fsx::{self, libc_mode};
use crate::name::InstanceName;
use crate::ops;
use crate::state::{InstancePaths, State};

#[derive(Debug, Serialize)]
pub struct Report {
    pub state_dir: PathBuf,
    pub instances: Vec<InstanceStatus>,
}

#[derive(Debug, Serialize)]
pub struct InstanceStatus {
    pub name: String,
    pub mounted: bool,
    pub mount_point: PathBuf,
    /// Highest priority first; the writable layer is always first.
    pub layers: Vec<Layer>,
    /// "mount": the stack the live mount was made with; "config": the stack
    /// instance.env asks for (not mounted); "none": no valid config.
    pub layers_from: &'static str,
    /// Mounted and instance.env now asks for another stack: a restart applies it.
    pub stale: bool,
    pub upper: Option<Usage>,
    /// Discarded writable layers not deleted yet.
    pub discard_pending: usize,
    pub error: Option<ErrorReport>,
}

#[derive(Debug, Serialize)]
pub struct Layer {
    /// upper, instance, overlay, installation
    pub role: &'static str,
    pub path: PathBuf,
}

#[derive(Debug, Default, Serialize)]
pub struct Usage {
    /// Allocated bytes (what du counts).
    pub bytes: u64,
    pub files: u64,
    pub dirs: u64,
    /// Directories nested deeper than this walk descends were not counted.
    pub truncated: bool,
}

#[derive(Debug, Serialize)]
pub struct ErrorReport {
    pub kind: &'static str,
    pub exit_code: u8,
    pub message: String,
}

impl From<&Failure> for ErrorReport {
    fn from(f: &Failure) -> Self {
        ErrorReport {
            kind: f.kind.label(),
            exit_code: f.kind.exit_code(),
            message: f.message.clone(),
        }
    }
}

pub fn report(state: &State, only: Option<&InstanceName>) -> Result<Report, Failure> {
    let names = match only {
        Some(name) => {
            let paths = InstancePaths::new(name);
            let exists = |rel: &str| fsx::entry(state.fd(), rel).ok().flatten().is_some();
            if !exists(&format!("instances/{name}")) && !exists(&paths.runtime) {
                return Err(Failure::new(
                    Kind::Missing,
                    format!("no instance {name} in {}", state.root.display()),
                ));
            }
            vec![name.clone()]
        }
        None => {
            let mut names: Vec<InstanceName> = state
                .names_in("instances")?
                .into_iter()
                .chain(state.names_in("runtime")?)
                .filter_map(|n| InstanceName::parse(&n).ok())
                .collect();
            names.sort();
            names.dedup();
            names
        }
    };
    let runtime = state.runtime()?;
    let helper_dir = state.helper_dir(runtime.as_fd())?;
    let instances = names
        .iter()
        .map(|n| instance(state, helper_dir.as_fd(), n))
        .collect();
    Ok(Report {
        state_dir: state.root.clone(),
        instances,
    })
}

fn instance(state: &State, helper_dir: BorrowedFd<'_>, name: &InstanceName) -> InstanceStatus {
    let paths = InstancePaths::new(name);
    let rt_shown = state.shown(&paths.runtime);
    let mut status = InstanceStatus {
        name: name.to_string(),
        mounted: false,
        mount_point: rt_shown.join("merged"),
        layers: vec![Layer {
            role: "upper",
            path: rt_shown.join("upper"),
        }],
        layers_from: "none",
        stale: false,
        upper: None,
        discard_pending: 0,
        error: None,
    };
    let configured = ops::read_config(state, name)
        .and_then(|cfg| ops::layer_stack(state, name, &cfg))
        .map(|layers| layers.into_iter().map(|(rel, _)| rel).collect::<Vec<_>>());
    let runtime_i = fsx::open_dir_if_exists(state.fd(), &paths.runtime, &rt_shown);
    let mounted = match &runtime_i {
        Ok(Some(fd)) => {
            ops::mounted_here(fd.as_fd(), name, &status.mount_point).map(|m| m.is_some())
        }
        Ok(None) => Ok(false),
        Err(f) => Err(Failure::new(f.kind, f.message.clone())),
    };
    let stack = match (&mounted, &configured) {
        (Ok(true), _) => {
            status.mounted = true;
            status.layers_from = "mount";
            let recorded = ops::read_record(helper_dir, name).unwrap_or_default();
            status.stale = configured.as_ref().is_ok_and(|c| *c != recorded);
            recorded
        }
        (_, Ok(configured)) => {
            status.layers_from = "config";
            configured.clone()
        }
        (_, Err(_)) => Vec::new(),
    };
    status.layers.extend(stack.iter().map(|rel| Layer {
        role: role_of(rel),
        path: state.shown(rel),
    }));
    if let Ok(Some(fd)) = &runtime_i {
        status.discard_pending = discard::pending(fd.as_fd()).len();
        status.upper = fsx::open_dir_if_exists(fd.as_fd(), "upper", &rt_shown.join("upper"))
            .ok()
            .flatten()
            .map(|upper| usage(upper.as_fd()));
    }
    status.error = match (mounted, configured, runtime_i) {
        (Err(f), _, _) | (_, _, Err(f)) => Some((&f).into()),
        (_, Err(f), _) => Some((&f).into()),
        _ => None,
    };
    status
}

fn role_of(rel: &str) -> &'static str {
    if rel == "installation" {
        "installation"
    } else if rel.starts_with("overlays/") {
        "overlay"
    } else {
        "instance"
    }
}

const MAX_DEPTH: usize = 64;

fn usage(dir: BorrowedFd<'_>) -> Usage {
    let mut total = Usage::default();
    add_usage(dir, 0, &mut total);
    total
}

fn add_usage(dir: BorrowedFd<'_>, depth: usize, total: &mut Usage) {
    let Ok(mut listing) = rustix::fs::Dir::read_from(dir) else {
        return;
    };
    while let Some(Ok(entry)) = listing.next() {
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let Ok(st) = rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        total.bytes += st.st_blocks as u64 * 512;
        if fsx::file_type(&st) != libc_mode::S_IFDIR {
            total.files += 1;
            continue;
        }
        total.dirs += 1;
        if depth >= MAX_DEPTH {
            total.truncated = true;
            continue;
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        if let Ok(child) = rustix::fs::openat(dir, name, flags, Mode::empty()) {
            add_usage(child.as_fd(), depth + 1, total);
        }
    }
}
