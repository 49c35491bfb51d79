//! `status`: read-only (it opens what exists and creates nothing); takes no
//! lock, so it answers even while a long verb runs, and walks the writable
//! layer with fds only.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;

use rustix::fs::{AtFlags, Mode, StatxAttributes, StatxFlags};
use serde::Serialize;

use crate::discard;
use crate::error::{Failure, Kind};
use crate::fsx::{self, libc_mode};
use crate::generation;
use crate::instance::{self, Layer, Role};
use crate::name::InstanceName;
use crate::state::{self, InstancePaths, MERGED, State, UPPER};

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) state_dir: PathBuf,
    /// What installations/current names (none before the first update or
    /// import, while installation/ is still used).
    pub(crate) current_generation: Option<String>,
    pub(crate) instances: Vec<InstanceStatus>,
    /// Instances with no runtime dir past the first 1,024 by name, left
    /// out of a listing of all; none: instances/ was too large to read
    /// (`state::listed_names`).
    pub(crate) not_shown: Option<u64>,
}

/// Where `layers` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LayersFrom {
    /// The stack the live mount was made with.
    Mount,
    /// The stack instance.env asks for (not mounted).
    Config,
    /// No valid config, or a mount whose stack is not known.
    None,
}

#[derive(Debug, Serialize)]
pub(crate) struct InstanceStatus {
    pub(crate) name: String,
    pub(crate) mounted: bool,
    pub(crate) mount_point: PathBuf,
    /// Highest priority first; the writable layer is always first.
    pub(crate) layers: Vec<ShownLayer>,
    pub(crate) layers_from: LayersFrom,
    /// Mounted and instance.env or installations/current now ask for another
    /// stack: a restart applies it.
    pub(crate) stale: bool,
    /// The installation generation of `layers` (none: installation/).
    pub(crate) generation: Option<String>,
    /// Mounted: whether that is the current generation. Not mounted: none.
    pub(crate) generation_current: Option<bool>,
    pub(crate) upper: Option<Usage>,
    /// Discarded writable layers not deleted yet.
    pub(crate) discard_pending: usize,
    /// The ports instance.env gives srcds (src/ports.rs), for firewall
    /// rules; none without a valid instance.env.
    pub(crate) ports: Option<PortsShown>,
    pub(crate) error: Option<ErrorReport>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PortsShown {
    /// UDP game and queries; TCP rcon.
    pub(crate) game: u16,
    /// UDP, outgoing only.
    pub(crate) client: u16,
    /// UDP; none with -nohltv.
    pub(crate) sourcetv: Option<u16>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ShownLayer {
    pub(crate) role: Role,
    pub(crate) path: PathBuf,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Usage {
    /// Allocated bytes (what du counts).
    pub(crate) bytes: u64,
    pub(crate) files: u64,
    pub(crate) dirs: u64,
    /// Directories nested deeper than this walk descends were not counted.
    pub(crate) truncated: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct ErrorReport {
    pub(crate) kind: &'static str,
    pub(crate) exit_code: u8,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

impl From<&Failure> for ErrorReport {
    fn from(f: &Failure) -> Self {
        ErrorReport {
            kind: f.kind.label(),
            exit_code: f.kind.exit_code(),
            message: f.message.clone(),
            hint: f.hint.clone(),
        }
    }
}

pub(crate) fn report(state: &State, only: Option<&InstanceName>) -> Result<Report, Failure> {
    let (names, not_shown) = match only {
        Some(name) => {
            let paths = InstancePaths::new(name);
            let exists = |rel: &str| fsx::entry(state.fd(), rel).ok().flatten().is_some();
            if !exists(&paths.dir()) && !exists(&paths.runtime()) {
                return Err(Failure::new(
                    Kind::Missing,
                    format!("no instance {name} in {}", state.root.display()),
                )
                .hint(format!(
                    "left4me-overlay status lists the instances; create {} to add this one",
                    state.shown(&paths.env()).display()
                )));
            }
            (vec![name.clone()], Some(0))
        }
        None => {
            let listed = state::listed_names(state.fd(), &state.root)?;
            (listed.names, listed.not_shown)
        }
    };
    let helper_dir = match state.open_runtime()? {
        Some(runtime) => state.open_helper_dir(runtime.as_fd())?,
        None => None,
    };
    // Unreadable: each instance's own error says why (its layer stack).
    let current = generation::current(state).ok().flatten();
    let mut left = LISTING_ENTRIES;
    let instances = names
        .iter()
        .map(|n| {
            let mut status = instance(state, helper_dir.as_ref().map(AsFd::as_fd), n, &mut left);
            if status.mounted {
                status.generation_current = Some(
                    status.generation.is_some()
                        && status.generation.as_deref() == current.as_ref().map(|c| c.as_str()),
                );
            }
            status
        })
        .collect();
    Ok(Report {
        state_dir: state.root.clone(),
        current_generation: current.map(|c| c.to_string()),
        instances,
        not_shown,
    })
}

fn instance(
    state: &State,
    helper_dir: Option<BorrowedFd<'_>>,
    name: &InstanceName,
    left: &mut u64,
) -> InstanceStatus {
    let paths = InstancePaths::new(name);
    let mut status = InstanceStatus {
        name: name.to_string(),
        mounted: false,
        mount_point: state.shown(&paths.part(MERGED)),
        layers: vec![ShownLayer {
            role: Role::Upper,
            path: state.shown(&paths.part(UPPER)),
        }],
        layers_from: LayersFrom::None,
        stale: false,
        generation: None,
        generation_current: None,
        upper: None,
        discard_pending: 0,
        ports: None,
        error: None,
    };
    let config = instance::read_config(state, &paths);
    if let Ok(c) = &config {
        status.ports = Some(PortsShown {
            game: c.ports.game,
            client: c.ports.client,
            sourcetv: c.ports.tv_enabled.then_some(c.ports.tv),
        });
    }
    let configured = config
        .and_then(|cfg| {
            let game = generation::layer_rel_if_installed(state)?;
            instance::layer_stack(state, &paths, &cfg, game.as_deref())
        })
        .map(|layers| {
            layers
                .into_iter()
                .map(|(layer, _)| layer)
                .collect::<Vec<Layer>>()
        });
    let rt_rel = paths.runtime();
    let runtime_i = fsx::open_dir_if_exists(state.fd(), &rt_rel, &state.shown(&rt_rel));
    let mounted = match &runtime_i {
        Ok(Some(fd)) => {
            instance::mounted_here(fd.as_fd(), name, &status.mount_point).map(|m| m.is_some())
        }
        Ok(None) => Ok(false),
        Err(f) => Err(f.clone()),
    };
    let stack = match (&mounted, &configured) {
        (Ok(true), _) => {
            status.mounted = true;
            let recorded = helper_dir.and_then(|dir| instance::read_record(dir, &paths));
            status.layers_from = if recorded.is_some() {
                LayersFrom::Mount
            } else {
                LayersFrom::None
            };
            status.stale = match (&configured, &recorded) {
                (Ok(c), Some(r)) => c != r,
                (Ok(_), None) => true,
                (Err(_), _) => false,
            };
            recorded.unwrap_or_default()
        }
        (_, Ok(configured)) => {
            status.layers_from = LayersFrom::Config;
            configured.clone()
        }
        (_, Err(_)) => Vec::new(),
    };
    status.generation = generation::of_stack(&stack).map(|id| id.to_string());
    status.layers.extend(stack.iter().map(|l| ShownLayer {
        role: l.role,
        path: state.shown(&l.rel),
    }));
    if let Ok(Some(fd)) = &runtime_i {
        status.discard_pending = discard::pending(fd.as_fd()).len();
        status.upper = fsx::open_dir_if_exists(fd.as_fd(), UPPER, &state.shown(&paths.part(UPPER)))
            .ok()
            .flatten()
            .map(|upper| usage(upper.as_fd(), left));
    }
    status.error = match (mounted, configured, runtime_i) {
        (Err(f), _, _) | (_, _, Err(f)) => Some((&f).into()),
        (_, Err(f), _) => Some((&f).into()),
        _ => None,
    };
    status
}

const MAX_DEPTH: usize = 64;
/// Entries counted at most in one layer: a layer the game filled with
/// millions of files must not make `status` (or `left4me list`) slow.
const MAX_ENTRIES: u64 = 100_000;
/// Entries counted at most in one listing of the instances (`status`,
/// `left4me list`), across every layer: 1,024 names of 100,000 entries
/// each would take minutes (twenty-fifth review: 30 such names, 9 s).
/// Past it a layer's size is shown as truncated.
pub(crate) const LISTING_ENTRIES: u64 = 1_000_000;

/// The size of the tree at `dir`, counting at most [`MAX_ENTRIES`] entries
/// and no more than are `left` of the listing's budget, which it takes
/// them from; each directory's size is charged before it is read.
pub(crate) fn usage(dir: BorrowedFd<'_>, left: &mut u64) -> Usage {
    let mut total = Usage::default();
    let granted = MAX_ENTRIES.min(*left);
    let mut budget = granted;
    if let Ok(st) = rustix::fs::fstat(dir) {
        if charge_read(st.st_size as u64, &mut budget, &mut total) {
            add_usage(dir, 0, &mut budget, &mut total);
        }
    }
    *left -= granted - budget;
    total
}

/// Takes a directory's read from `budget`; false (and the total marked
/// truncated) when the budget cannot pay for it.
fn charge_read(size: u64, budget: &mut u64, total: &mut Usage) -> bool {
    let paid = fsx::pay_dir_read(size, budget);
    total.truncated |= !paid;
    paid
}

fn add_usage(dir: BorrowedFd<'_>, depth: usize, budget: &mut u64, total: &mut Usage) {
    let Ok(mut listing) = rustix::fs::Dir::read_from(dir) else {
        return;
    };
    while let Some(Ok(entry)) = listing.next() {
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        if *budget == 0 {
            total.truncated = true;
            return;
        }
        // The user's tree: one statx that asks no filesystem server
        // (AT_STATX_DONT_SYNC: a FUSE server of the user's may never
        // answer), and a mount point is neither counted nor entered.
        let flags = AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_DONT_SYNC;
        let wanted = StatxFlags::TYPE | StatxFlags::BLOCKS | StatxFlags::SIZE;
        let Ok(st) = rustix::fs::statx(dir, name, flags, wanted) else {
            continue;
        };
        if st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT) {
            continue;
        }
        *budget -= 1;
        total.bytes += st.stx_blocks * 512;
        if u32::from(st.stx_mode) & libc_mode::S_IFMT != libc_mode::S_IFDIR {
            total.files += 1;
            continue;
        }
        total.dirs += 1;
        if depth >= MAX_DEPTH {
            total.truncated = true;
            continue;
        }
        if !charge_read(st.stx_size, budget, total) {
            continue;
        }
        if let Ok(child) =
            rustix::fs::openat2(dir, name, fsx::DIR_FLAGS, Mode::empty(), fsx::BENEATH)
        {
            add_usage(child.as_fd(), depth + 1, budget, total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test_log::test]
    fn a_directory_is_charged_for_its_size_past_the_first_block_before_it_is_read() {
        let mut total = Usage::default();
        let mut budget = 100;
        // One 4 KiB block: free.
        assert!(charge_read(4096, &mut budget, &mut total));
        assert_eq!(budget, 100);
        // 20 KiB: 16 KiB past the first block, 64 entries.
        assert!(charge_read(20 << 10, &mut budget, &mut total));
        assert_eq!(budget, 36);
        assert!(!total.truncated);
        // 372 MiB of an emptied directory: refused, nothing taken.
        assert!(!charge_read(372 << 20, &mut budget, &mut total));
        assert_eq!(budget, 36);
        assert!(total.truncated);
    }

    #[test_log::test]
    fn an_emptied_directory_costs_the_walk_its_size() {
        let upper = tempfile::tempdir().unwrap();
        let emptied = upper.path().join("emptied");
        std::fs::create_dir(&emptied).unwrap();
        let long = "x".repeat(200);
        for i in 0..2000 {
            std::fs::write(emptied.join(format!("{long}{i}")), b"").unwrap();
        }
        for i in 0..2000 {
            std::fs::remove_file(emptied.join(format!("{long}{i}"))).unwrap();
        }
        let size = rustix::fs::stat(&emptied).unwrap().st_size as u64;
        let cost = fsx::dir_read_cost(size);
        let fd = rustix::fs::open(upper.path(), fsx::DIR_FLAGS, Mode::empty()).unwrap();
        let mut left = LISTING_ENTRIES;
        let counted = usage(fd.as_fd(), &mut left);
        assert_eq!(
            (counted.files, counted.dirs, counted.truncated),
            (0, 1, false)
        );
        assert_eq!(LISTING_ENTRIES - left, 1 + cost, "size {size}");
        // A budget short of the directory's cost: not read, truncated.
        let mut left = cost;
        assert!(usage(fd.as_fd(), &mut left).truncated);
        // ext4 (a state dir's usual home) keeps an emptied directory's
        // size: 2,000 names of 200 bytes took about 500 KiB. tmpfs (the
        // package build's /tmp) shows 20 bytes an entry and keeps nothing
        // of the removed ones: nothing past a first block to read.
        assert!(cost > 1000 || size < 4096, "size {size}");
    }
}
