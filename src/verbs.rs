//! The verbs that change state: mount, umount, reset. Each runs under the
//! instance's lock and converges from whatever an earlier, killed run left:
//! directories are created when missing and re-owned every time, a mount is
//! recognised by its source, and discarded layers are swept later.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::mount::UnmountFlags;
use serde::Serialize;

use crate::console;
use crate::cpus::CpuList;
use crate::discard;
use crate::envfile::{self, Assignment, InstanceConfig};
use crate::error::{Failure, Kind, Result};
use crate::fsx::{self, libc_mode};
use crate::generation;
use crate::instance::{self, Layer};
use crate::lock;
use crate::mounts;
use crate::name::InstanceName;
use crate::overlay;
use crate::ports::Ports;
use crate::procs;
use crate::state::{self, HOME, InstancePaths, MERGED, Own, ServiceUser, State, UPPER, WORK};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Done {
    Mounted,
    AlreadyMounted,
    Unmounted,
    NotMounted,
    Reset,
}

impl Done {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Done::Mounted => "mounted",
            Done::AlreadyMounted => "already-mounted",
            Done::Unmounted => "unmounted",
            Done::NotMounted => "not-mounted",
            Done::Reset => "reset",
        }
    }
}

/// What a verb did, for humans and for `--json`.
#[derive(Debug, Serialize)]
pub(crate) struct Outcome {
    pub(crate) instance: String,
    pub(crate) result: Done,
    pub(crate) mount_point: PathBuf,
    /// Lower layers, highest priority first, relative to the state dir.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) layers: Vec<String>,
}

/// What every state-changing verb starts with: runtime/ and the root-only
/// runtime/.left4me/ opened, and the instance's lock held until dropped.
struct Locked<'s> {
    state: &'s State,
    name: InstanceName,
    paths: InstancePaths,
    runtime: OwnedFd,
    helper_dir: OwnedFd,
    _lock: lock::Lock,
}

impl<'s> Locked<'s> {
    fn take(state: &'s State, name: &InstanceName) -> Result<Locked<'s>> {
        let paths = InstancePaths::new(name);
        let runtime = state.ensure_runtime()?;
        let helper_dir = state.ensure_helper_dir(runtime.as_fd())?;
        let lock = lock::lock(
            helper_dir.as_fd(),
            &paths.own(Own::Lock),
            lock::LockMode::Exclusive,
            &format!("instance {name}"),
            &state.shown(&InstancePaths::in_helper_dir(&paths.own(Own::Lock))),
        )?;
        Ok(Locked {
            state,
            name: name.clone(),
            paths,
            runtime,
            helper_dir,
            _lock: lock,
        })
    }

    fn shown(&self, rel: &str) -> PathBuf {
        self.state.shown(rel)
    }

    fn in_helper_dir(&self, name: &str) -> PathBuf {
        self.shown(&InstancePaths::in_helper_dir(name))
    }

    fn outcome(&self, result: Done, layers: &[Layer]) -> Outcome {
        Outcome {
            instance: self.name.to_string(),
            result,
            mount_point: self.shown(&self.paths.part(MERGED)),
            layers: layers.iter().map(|l| l.rel.clone()).collect(),
        }
    }

    /// runtime/<i>, if it exists.
    fn open_runtime_i(&self) -> Result<Option<OwnedFd>> {
        let rel = self.paths.runtime();
        fsx::open_dir_if_exists(self.state.fd(), &rel, &self.shown(&rel))
    }

    /// The stack record ([`Own::Record`]): what the mount is made of.
    fn write_record(&self, stack: &[Layer]) -> Result<()> {
        let record = self.paths.own(Own::Record);
        fsx::write_replace(
            self.helper_dir.as_fd(),
            &record,
            instance::render_record(stack).as_bytes(),
            &self.in_helper_dir(&record),
        )
    }

    /// The game's environment from the config just validated, on every
    /// mount that succeeds: instance.env may have changed since the last.
    /// The client and SourceTV ports as resolved (ports.rs), so srcds gets
    /// exactly the ports checked. `LEFT4ME_GENERATION` tells the health
    /// check which generation the instance runs (the `when-empty` restart
    /// policy, docs/updates.md).
    fn write_env_copy(&self, config: &InstanceConfig, stack: &[Layer]) -> Result<()> {
        let resolved = config.ports.resolved_vars();
        let mut vars: Vec<Assignment> = config
            .vars
            .iter()
            .filter(|a| !resolved.iter().any(|(k, _)| *k == a.key))
            .cloned()
            .collect();
        vars.extend(resolved.into_iter().map(|(key, value)| Assignment {
            key: key.to_owned(),
            value,
            line: 0,
        }));
        let env_copy = self.paths.own(Own::EnvCopy);
        let mut text = envfile::render(&vars);
        if let Some(id) = generation::of_stack(stack) {
            text += &format!("LEFT4ME_GENERATION=\"{id}\"\n");
        }
        fsx::write_replace(
            self.helper_dir.as_fd(),
            &env_copy,
            text.as_bytes(),
            &self.in_helper_dir(&env_copy),
        )
    }

    /// Refuses when a mounted instance uses one of `config`'s ports; the
    /// returned lock is to be held until this mount is attached. What the
    /// other instances use is read from the copies this helper wrote at
    /// their mounts (root-only, validated then), never from their
    /// instance.env, which may have changed since; a copy counts only while
    /// its instance is mounted (a failed mount can leave one behind).
    fn claim_ports(&self, config: &InstanceConfig) -> Result<lock::Lock> {
        let lock = lock::lock(
            self.helper_dir.as_fd(),
            lock::PORTS,
            lock::LockMode::Exclusive,
            "the ports of the instances",
            &self.in_helper_dir(lock::PORTS),
        )?;
        let mut others = self.state.names_in(state::HELPER_DIR)?;
        others.sort();
        // Read once for all of them: every instance starting at the same
        // time waits for this lock, so what it covers must not grow with
        // the square of their number.
        let table = mounts::read_mountinfo("/proc/self/mountinfo");
        within_mount_cap(&table, &self.name)?;
        for file in others {
            let Some(other) = file
                .strip_suffix(".env")
                .and_then(|stem| InstanceName::parse(stem).ok())
                .filter(|o| *o != self.name)
            else {
                continue;
            };
            let Some(theirs) = self.running_ports(&other, &table)? else {
                continue;
            };
            if let Some((mine, used)) = config.ports.shared_with(&theirs) {
                return Err(Failure::new(
                    Kind::PortConflict,
                    format!(
                        "port {} (the {} of instance {}) is the {} of instance {other}, which is running",
                        mine.port, mine.what, self.name, used.what
                    ),
                )
                .hint(format!(
                    "give {} ports of its own (L4D2_PORT, L4D2_CLIENT_PORT, L4D2_TV_PORT; docs/unit.md, \"Ports\"), or stop left4me-server@{other} first",
                    self.shown(&self.paths.env()).display()
                )));
            }
        }
        Ok(lock)
    }

    /// The ports of `other` as its copy records them, if it is mounted.
    fn running_ports(
        &self,
        other: &InstanceName,
        table: &[mounts::MountEntry],
    ) -> Result<Option<Ports>> {
        let paths = InstancePaths::new(other);
        let rel = paths.runtime();
        let Some(runtime_o) = fsx::open_dir_if_exists(self.state.fd(), &rel, &self.shown(&rel))?
        else {
            return Ok(None);
        };
        if !instance::mounted_per(table, runtime_o.as_fd(), other) {
            return Ok(None);
        }
        let copy = InstancePaths::in_helper_dir(&paths.own(Own::EnvCopy));
        let shown = self.shown(&copy);
        // No copy while still mounted: an umount removed it and then found
        // the mount busy (a process of the user's kept its cwd there). The
        // game is gone, so are its ports; and nothing the user can arrange
        // for one instance may stop every other instance from starting.
        let bytes = match fsx::read_small_file(self.state.fd(), &copy, &shown, envfile::MAX_BYTES) {
            Ok(bytes) => bytes,
            Err(f) => {
                tracing::warn!(instance = %other, "ports of mounted instance {other} unknown: {}", f.message);
                return Ok(None);
            }
        };
        // Only the L4D2_* lines: the copy also carries LEFT4ME_GENERATION,
        // which instance.env may not set.
        let lines: Vec<&[u8]> = bytes
            .split(|&b| b == b'\n')
            .filter(|l| l.starts_with(envfile::KEY_PREFIX.as_bytes()))
            .collect();
        // A copy an older helper wrote may hold what this one refuses
        // (+tv_port in L4D2_ARGS): that instance's ports are then unknown,
        // which must not stop every other instance from starting.
        match InstanceConfig::parse(&lines.join(&b'\n'), &shown.display().to_string()) {
            Ok(config) => Ok(Some(config.ports)),
            Err(f) => {
                tracing::warn!(instance = %other, "ports of running instance {other} unknown: {}", f.message);
                Ok(None)
            }
        }
    }

    /// Whether this instance's overlay is on merged/.
    fn mounted(&self, runtime_i: BorrowedFd<'_>) -> Result<Option<mounts::MountEntry>> {
        instance::mounted_here(runtime_i, &self.name, &self.shown(&self.paths.part(MERGED)))
    }
}

/// Runs `remove` (`left4me delete`, as root) under the instance's lock once
/// the instance is not mounted, so no start can mount it in between and
/// have root's removal walk into a live merged/.
pub(crate) fn while_unmounted<T>(
    state: &State,
    name: &InstanceName,
    remove: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let l = Locked::take(state, name)?;
    let rel = l.paths.runtime();
    if let Some(runtime_i) = fsx::open_dir_if_exists(state.fd(), &rel, &l.shown(&rel))? {
        if l.mounted(runtime_i.as_fd())?.is_some() {
            return Err(Failure::new(
                Kind::Busy,
                format!(
                    "{} is still mounted",
                    l.shown(&l.paths.part(MERGED)).display()
                ),
            )
            .hint(format!(
                "wait for left4me-overlay@{name} to stop, then delete again"
            )));
        }
    }
    remove()
}

/// A finished mount, and what a reset the user asked for at this start set
/// aside, to delete once the lock is released.
pub(crate) struct MountDone {
    pub(crate) outcome: Outcome,
    pub(crate) discard: Option<discard::Background>,
}

/// What the mount does besides the overlay, for the server unit: both
/// paths come from root (the overlay unit's command line).
pub(crate) struct ForServer<'a> {
    /// Where the console FIFO goes (console::DIR in the units).
    pub(crate) console_dir: &'a Path,
    /// For the server unit's AllowedCPUs= (cpus::apply).
    pub(crate) systemctl: &'a Path,
    /// The health checks' record dirs, kept to a bound at each mount
    /// (health::retention).
    pub(crate) health_run_dir: &'a Path,
}

pub(crate) fn mount(
    state: &State,
    name: &InstanceName,
    user: &ServiceUser,
    server: &ForServer<'_>,
) -> Result<MountDone> {
    let paths = InstancePaths::new(name);
    let config = instance::read_config(state, &paths)?;
    if let Some((cpus, line)) = &config.cpus {
        let origin = format!("{}:{line}", state.shown(&paths.env()).display());
        cpus.check_against(&CpuList::host()?, &origin)?;
    }
    within_name_cap(state, &paths)?;
    // Before the lock file and the CPU record in runtime/.left4me/: the cap
    // counts names by their runtime/NAME, so nothing of a name may exist
    // without it (twenty-fifth review).
    state.ensure_instance_runtime(state.ensure_runtime()?.as_fd(), &paths, user.gid)?;
    let l = Locked::take(state, name)?;
    let cpus_record = paths.own(Own::Cpus);
    let unit = format!("left4me-server@{name}.service");
    crate::cpus::apply(
        l.helper_dir.as_fd(),
        &cpus_record,
        &l.in_helper_dir(&cpus_record),
        &unit,
        config.cpus.as_ref().map(|(c, _)| c),
        server.systemctl,
    )?;
    let done = mount_locked(state, &l, &config, user, server);
    if done.is_err() {
        crate::cpus::forget(Path::new(crate::cpus::RUNTIME_CONTROL), &unit);
    }
    done
}

/// [`mount`] once the instance is locked and its CPUs are set.
fn mount_locked(
    state: &State,
    l: &Locked<'_>,
    config: &InstanceConfig,
    user: &ServiceUser,
    server: &ForServer<'_>,
) -> Result<MountDone> {
    let (name, paths) = (&l.name, &l.paths);
    // Made before the lock too ([`mount`]); opened again under it, since
    // root's `left4me delete` may have removed it in between.
    let runtime_i = state.ensure_instance_runtime(l.runtime.as_fd(), paths, user.gid)?;

    // What is this instance's own and the service user can reach (the reset
    // marker in its config dir, its writable layer and $HOME, merged/) is
    // done before any host-wide lock: a process of the user can hold such
    // an inode's kernel lock for as long as it likes (a page fault on a FUSE
    // file of its own inside getdents or write, the twentieth review), and a
    // root operation waiting on it must hold nothing other instances or the
    // updates wait for. merged/ is root's 0700 below the mount, so that no
    // user can hold the lock the attach onto it takes (under the ports lock).
    let unmounted = if l.mounted(runtime_i.as_fd())?.is_some() {
        None
    } else {
        let discard = if reset_asked(state, paths)? {
            Some(discard_writable_layer(&runtime_i, l, user)?)
        } else {
            prepare_writable_layer(runtime_i.as_fd(), l, user)?;
            None
        };
        let merged_shown = l.shown(&paths.part(MERGED));
        let merged = fsx::ensure_dir(runtime_i.as_fd(), MERGED, MERGED_MODE, &merged_shown)?;
        fsx::chmod_fd(merged.as_fd(), MERGED_MODE, &merged_shown)?;
        Some((discard, merged, merged_shown))
    };

    // The instance's own layers are looked up first: a lookup in a
    // directory the user can write waits behind a writer of its own queued
    // on that directory's lock while it holds it (twenty-second review),
    // and under the installations lock that would deny every update.
    let mut asked: Vec<Layer> = instance::layer_stack(state, paths, config, None)?
        .into_iter()
        .map(|(layer, _)| layer)
        .collect();
    // The generation this mount uses, picked once under the installations
    // lock, and named in the stack record before the lock is let go: a
    // collection keeps what the record of an instance being mounted names
    // (generation::in_use). Nothing else is done under that lock, which
    // every collection and update takes exclusively: building the overlay
    // locks the user's upper/ and work/ in the kernel (a process of the
    // user's can hold upper/'s, above), and the layers are attached in the
    // private namespace (overlay.rs).
    let game = {
        let _installations = generation::hold_for_mount(state, l.helper_dir.as_fd())?;
        let game = generation::layer_rel(state)?;
        asked.push(instance::game_layer(state, &game)?.0);
        if unmounted.is_some() {
            l.write_record(&asked)?;
        }
        game
    };
    let Some((discard, merged, merged_shown)) = unmounted else {
        let recorded = instance::read_record(l.helper_dir.as_fd(), paths);
        if recorded.as_ref() == Some(&asked) {
            {
                let _ports = l.claim_ports(config)?;
                keep_health_records_bounded(server.health_run_dir);
                l.write_env_copy(config, &asked)?;
            }
            console::make(server.console_dir, name, user.gid, false)?;
            tracing::info!("already mounted with the same layer stack");
            return Ok(MountDone {
                outcome: l.outcome(Done::AlreadyMounted, &asked),
                discard: None,
            });
        }
        let rels = |layers: &[Layer]| {
            layers
                .iter()
                .map(|l| l.rel.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(Failure::new(
            Kind::Conflict,
            format!(
                "{} is mounted with another layer stack ({}); instance.env and installations/current now ask for {}",
                l.shown(&paths.part(MERGED)).display(),
                recorded.map_or_else(|| "unknown".into(), |r| rels(&r)),
                rels(&asked)
            ),
        )
        .hint(format!(
            "restart left4me-server@{name} (or run left4me-overlay umount {name}) to apply it"
        )));
    };
    let (mnt, stack) = overlay::assemble(&state.root, name, config, &game, user)?;
    // Before the attach, the last step that can fail (a failed start's unit
    // runs no ExecStop= to undo a mount), and outside the ports lock, for
    // which every instance starting at the same time queues.
    console::make(server.console_dir, name, user.gid, true)?;
    let attached = (|| {
        // Until attached: from here on this instance counts as running.
        let _ports = l.claim_ports(config)?;
        keep_health_records_bounded(server.health_run_dir);
        // The stack as built (an overlay of overlays/ may have changed
        // since the record above; the generation has not).
        l.write_record(&stack)?;
        l.write_env_copy(config, &stack)?;
        overlay::attach(mnt.as_fd(), merged.as_fd())
            .map_err(|e| Failure::os(&merged_shown, "move_mount onto", e))
    })();
    if let Err(f) = attached {
        if let Err(e) = console::remove(server.console_dir, name) {
            tracing::warn!(error = %e, "console left behind");
        }
        return Err(f);
    }
    tracing::info!(layers = stack.len(), "mounted");
    Ok(MountDone {
        outcome: l.outcome(Done::Mounted, &stack),
        discard,
    })
}

/// Whether the user asked for this start to begin with an empty writable
/// layer (instances/NAME/reset-at-start), consuming the request: the marker
/// is removed before anything is discarded, so a marker root cannot remove
/// (a non-empty directory) fails the mount instead of resetting every start.
/// It is user-written data: the instance dir is opened beneath the state
/// dir without following a symlink, and of the marker only its existence
/// counts (statx without following; never opened or read).
fn reset_asked(state: &State, paths: &InstancePaths) -> Result<bool> {
    let rel = paths.dir();
    let shown = state.shown(&rel);
    let Some(dir) = fsx::open_dir_if_exists(state.fd(), &rel, &shown)? else {
        return Ok(false);
    };
    let marker = InstancePaths::RESET_MARKER;
    let marker_shown = shown.join(marker);
    match fsx::entry(dir.as_fd(), marker) {
        Ok(None) => return Ok(false),
        Ok(Some(_)) => {}
        Err(e) => return Err(Failure::os(&marker_shown, "stat", e)),
    }
    match rustix::fs::unlinkat(dir.as_fd(), marker, rustix::fs::AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(Errno::ISDIR) | Err(Errno::PERM) => {
            match rustix::fs::unlinkat(dir.as_fd(), marker, rustix::fs::AtFlags::REMOVEDIR) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => {
                    return Err(Failure::os(&marker_shown, "remove", e).hint(
                        "make it an empty file (touch); it asks for a reset at the next start",
                    ));
                }
            }
        }
        Err(e) => return Err(Failure::os(&marker_shown, "remove", e)),
    }
    tracing::info!("reset at start asked for by {}", marker_shown.display());
    Ok(true)
}

/// health::retention::prune with the mounts as they are now. Called with
/// the ports lock held (see there why): the record dirs and their parent
/// are 0711, so no other account can hold their kernel locks while it
/// waits (dist/left4me.tmpfiles.in).
fn keep_health_records_bounded(run_dir: &Path) {
    let mut table = None;
    crate::health::retention::prune(run_dir, |name| {
        let table = table.get_or_insert_with(|| mounts::read_mountinfo("/proc/self/mountinfo"));
        table.iter().any(|m| instance::is_overlay_of(m, name))
    });
}

/// Refused (exit 15) while [`MAX_MOUNTED`] overlays of other instances are
/// mounted: an umount refused as busy (a process of the service user's kept
/// its cwd in merged/) leaves its overlay in PID 1's namespace, and renamed
/// instance dirs would leave one more each, until every mount on the host
/// failed at the kernel's mount-max and PID 1 re-read an ever longer mount
/// table (eleventh review). Counted by the source overlayfs shows for the
/// helper's own mounts.
fn within_mount_cap(table: &[mounts::MountEntry], name: &InstanceName) -> Result<()> {
    let own = instance::mount_source(name);
    let mounted = table
        .iter()
        .filter(|m| {
            m.fstype == "overlay"
                && m.source.starts_with(instance::MOUNT_SOURCE_PREFIX)
                && m.source != own
        })
        .count();
    if mounted < MAX_MOUNTED {
        return Ok(());
    }
    Err(Failure::new(
        Kind::Conflict,
        format!("{mounted} instance overlays are mounted, the most this host allows"),
    )
    .hint("find the ones left mounted: findmnt -t overlay -o TARGET,SOURCE; stop what holds them, then left4me-overlay umount NAME"))
}

/// Sets upper/, work/ and home/ aside and puts empty ones in their place;
/// what was set aside is for [`discard::in_background`] once the lock is
/// released. The instance must not be mounted.
fn discard_writable_layer(
    runtime_i: &OwnedFd,
    l: &Locked<'_>,
    user: &ServiceUser,
) -> Result<discard::Background> {
    // home/ too: what Steam and the game wrote to $HOME is part of the
    // instance's state, and a reset means a clean one.
    for part in [UPPER, WORK, HOME] {
        let shown = l.shown(&l.paths.part(part));
        refuse_symlink_swap(runtime_i.as_fd(), part, &shown)?;
        discard::set_aside(runtime_i.as_fd(), part, &shown)?;
    }
    prepare_writable_layer(runtime_i.as_fd(), l, user)?;
    tracing::info!("writable layer replaced by an empty one");
    let sweeper = l.paths.own(Own::Sweeper);
    let sweeper_lock = lock::open(l.helper_dir.as_fd(), &sweeper, &l.in_helper_dir(&sweeper))?;
    let shown = l.shown(&l.paths.runtime());
    Ok(discard::Background {
        dir: runtime_i.try_clone().map_err(|e| {
            Failure::os(&shown, "dup", Errno::from_io_error(&e).unwrap_or(Errno::IO))
        })?,
        shown,
        sweeper_lock,
    })
}

/// home/'s mode: the health check runs as a user of its own, in the service
/// group, and opens the events file the game's relay writes there (0640) by
/// name; it lists nothing, and what the game itself writes is 0600 or 0700
/// (its unit's UMask=0077). Nobody outside the group passes runtime/<i>.
const HOME_MODE: u32 = 0o710;
/// The mount point: root's, unreadable to everyone else while nothing is
/// mounted on it (see [`mount_locked`] why); the game sees the overlay's
/// root there, whose mode is upper/'s.
const MERGED_MODE: u32 = 0o700;

/// Instance overlays mounted at once, at most: the same bound as the server
/// units a request may have loaded (one overlay per server).
const MAX_MOUNTED: usize = crate::requests::MAX_LOADED_SERVERS;

/// upper/ (the service user's; its owner and mode become merged/'s),
/// work/ (root-only) and home/ (the game's $HOME, the service user's,
/// [`HOME_MODE`]), created when missing and re-owned every time, so whatever
/// an earlier, killed run left converges.
fn prepare_writable_layer(
    runtime_i: BorrowedFd<'_>,
    l: &Locked<'_>,
    user: &ServiceUser,
) -> Result<()> {
    let upper_shown = l.shown(&l.paths.part(UPPER));
    let upper = fsx::ensure_dir(runtime_i, UPPER, 0o755, &upper_shown)?;
    fsx::chown_fd(upper.as_fd(), user.uid, user.gid, &upper_shown)?;
    let home_shown = l.shown(&l.paths.part(HOME));
    let home = fsx::ensure_dir(runtime_i, HOME, HOME_MODE, &home_shown)?;
    fsx::chown_fd(home.as_fd(), user.uid, user.gid, &home_shown)?;
    fsx::chmod_fd(home.as_fd(), HOME_MODE, &home_shown)?;
    let work_shown = l.shown(&l.paths.part(WORK));
    let work = fsx::ensure_dir(runtime_i, WORK, 0o700, &work_shown)?;
    fsx::chown_fd(work.as_fd(), 0, 0, &work_shown)?;
    fsx::chmod_fd(work.as_fd(), 0o700, &work_shown)
}

/// Whether instance `name` has anything on disk: its directory in
/// instances/ or in runtime/. Looked at before any lock file is made, so
/// the service user, who may start left4me-reset@ and left4me-overlay@ with
/// any valid name, cannot make root create a lock file per name it invents.
/// Without following or entering a mount (fsx::entry).
fn exists(state: &State, paths: &InstancePaths) -> Result<bool> {
    Ok(has_runtime(state, paths)? || has_entry(state, &paths.dir())?)
}

/// Whether runtime/NAME exists: root's side of the instance, made by its
/// first mount.
fn has_runtime(state: &State, paths: &InstancePaths) -> Result<bool> {
    has_entry(state, &paths.runtime())
}

fn has_entry(state: &State, rel: &str) -> Result<bool> {
    fsx::entry(state.fd(), rel)
        .map(|e| e.is_some())
        .map_err(|e| Failure::os(&state.shown(rel), "stat", e))
}

/// Instance names runtime/ may hold, past which the mount of a name it does
/// not hold yet is refused (exit 15). Each name keeps root's runtime/NAME/
/// (upper/, work/, home/, merged/) and its files in runtime/.left4me/ until
/// root's `left4me delete NAME`: an instance dir renamed between starts
/// that fail left one more each, about 24 KiB of root's, so without a cap
/// the user spent the filesystem's blocks reserved for root, and made
/// `generation::in_use`, which looks at every name under the exclusive
/// installations lock, slower without end (twenty-fourth review: 450,000
/// names held it 37 s and failed another instance's mount). Four times the
/// servers a request may have loaded: a stopped instance keeps its name.
const MAX_INSTANCE_NAMES: usize = 4 * crate::requests::MAX_LOADED_SERVERS;

pub(crate) fn within_name_cap(state: &State, paths: &InstancePaths) -> Result<()> {
    if has_runtime(state, paths)? {
        return Ok(());
    }
    let held = state
        .names_in(state::RUNTIME)?
        .iter()
        .filter(|n| InstanceName::parse(n).is_ok())
        .count();
    if held < MAX_INSTANCE_NAMES {
        return Ok(());
    }
    Err(Failure::new(
        Kind::Conflict,
        format!(
            "{} holds {held} instance names, the most this host allows; {} would be one more",
            state.shown(state::RUNTIME).display(),
            paths.name()
        ),
    )
    .hint("left4me list shows them; as root, remove those no longer used with left4me delete NAME"))
}

/// Unmounts, and whatever that does, removes the server unit's runtime CPU
/// drop-in ([`crate::cpus::forget`]): umount runs once the server has
/// stopped, and a mount refused as busy must not keep one either (eleventh
/// review); the next mount sets the CPUs again.
pub(crate) fn umount(state: &State, name: &InstanceName, console_dir: &Path) -> Result<Outcome> {
    let outcome = unmount(state, name, console_dir);
    crate::cpus::forget(
        Path::new(crate::cpus::RUNTIME_CONTROL),
        &format!("left4me-server@{name}.service"),
    );
    outcome
}

fn unmount(state: &State, name: &InstanceName, console_dir: &Path) -> Result<Outcome> {
    // First, whatever happens below: no command reaches a stopped game, and
    // no writer waits for one (console::remove). Not a reason to keep the
    // overlay mounted if it fails.
    if let Err(f) = console::remove(console_dir, name) {
        tracing::warn!(error = %f, "console not removed");
    }
    let paths = InstancePaths::new(name);
    // Nothing can be mounted without runtime/NAME, and no lock is taken
    // (a file created) for it: the user can have this verb run for every
    // name it gives an instance dir (ExecStopPost= of a start refused).
    if !has_runtime(state, &paths)? {
        return Ok(Outcome {
            instance: name.to_string(),
            result: Done::NotMounted,
            mount_point: state.shown(&paths.part(MERGED)),
            layers: Vec::new(),
        });
    }
    let l = Locked::take(state, name)?;
    // Whatever happens below, no later start may read a stale environment.
    let env_copy = l.paths.own(Own::EnvCopy);
    fsx::remove_file(l.helper_dir.as_fd(), &env_copy, &l.in_helper_dir(&env_copy))?;
    let Some(runtime_i) = l.open_runtime_i()? else {
        return Ok(l.outcome(Done::NotMounted, &[]));
    };
    let merged_shown = l.shown(&l.paths.part(MERGED));
    let mut unmounted = false;
    // More than one overlay can be stacked on merged/ by hand or by an old
    // bug; take them all down.
    for _ in 0..8 {
        let Some(entry) = l.mounted(runtime_i.as_fd())? else {
            break;
        };
        let target = format!("{}/{MERGED}", fsx::fd_path(runtime_i.as_fd()));
        match rustix::mount::unmount(target.as_str(), UnmountFlags::NOFOLLOW) {
            Ok(()) => unmounted = true,
            Err(Errno::BUSY) => {
                let holders = procs::holders(&entry.mount_point);
                let listing = if holders.is_empty() {
                    "no holder found in /proc (a kernel-internal reference, or a process that exited meanwhile)".to_owned()
                } else {
                    holders.join("\n    ")
                };
                return Err(Failure::new(Kind::Busy, format!("{} is busy:\n    {listing}", merged_shown.display()))
                    .hint(format!("stop those processes (systemctl stop left4me-server@{name}), then run umount again")));
            }
            Err(e) => return Err(Failure::os(&merged_shown, "umount", e)),
        }
    }
    let record = l.paths.own(Own::Record);
    fsx::remove_file(l.helper_dir.as_fd(), &record, &l.in_helper_dir(&record))?;
    let outcome = l.outcome(
        if unmounted {
            Done::Unmounted
        } else {
            Done::NotMounted
        },
        &[],
    );
    let rt_shown = l.shown(&l.paths.runtime());
    drop(l);
    // Bounded by the unit's stop timeout (umount is the overlay unit's stop).
    if let Err(f) = discard::sweep(runtime_i.as_fd(), &rt_shown, None) {
        tracing::warn!(error = %f, "leftover discarded layers not deleted yet");
    }
    if unmounted {
        tracing::info!("unmounted");
    }
    Ok(outcome)
}

/// A finished reset: the empty layer is in place; what was set aside is
/// still to be deleted, once the lock is released.
pub(crate) struct ResetDone {
    pub(crate) outcome: Outcome,
    /// What the background sweeper needs, when there is anything to delete.
    pub(crate) discard: Option<discard::Background>,
}

/// Swaps in an empty writable layer.
pub(crate) fn reset(state: &State, name: &InstanceName, user: &ServiceUser) -> Result<ResetDone> {
    let paths = InstancePaths::new(name);
    // Without runtime/NAME there is no layer to reset, and no lock is taken
    // (a file created): the user may start left4me-reset@ for every name it
    // gives an instance dir (twenty-fourth review).
    if !has_runtime(state, &paths)? {
        if !exists(state, &paths)? {
            return Err(Failure::new(
                Kind::Missing,
                format!(
                    "no instance {name}: neither {} nor {} exists",
                    state.shown(&paths.runtime()).display(),
                    state.shown(&paths.dir()).display()
                ),
            )
            .hint("check the instance name; left4me-overlay status lists the instances"));
        }
        return Ok(ResetDone {
            outcome: Outcome {
                instance: name.to_string(),
                result: Done::Reset,
                mount_point: state.shown(&paths.part(MERGED)),
                layers: Vec::new(),
            },
            discard: None,
        });
    }
    let l = Locked::take(state, name)?;
    let outcome = l.outcome(Done::Reset, &[]);
    // Removed since the look above (root's `left4me delete`): nothing to reset.
    let Some(runtime_i) = l.open_runtime_i()? else {
        return Ok(ResetDone {
            outcome,
            discard: None,
        });
    };
    if l.mounted(runtime_i.as_fd())?.is_some() {
        return Err(Failure::new(
            Kind::Conflict,
            format!(
                "instance {name} is mounted at {}; refusing to reset a live layer",
                outcome.mount_point.display()
            ),
        )
        .hint(format!("systemctl stop left4me-server@{name} first")));
    }
    Ok(ResetDone {
        outcome,
        discard: Some(discard_writable_layer(&runtime_i, &l, user)?),
    })
}

/// Renaming a symlink aside is harmless, but a symlink where upper/ or work/
/// belongs means someone is tampering: say so instead of papering over it.
fn refuse_symlink_swap(runtime_i: BorrowedFd<'_>, part: &str, shown: &Path) -> Result<()> {
    match fsx::entry(runtime_i, part) {
        Ok(Some(e)) if e.kind == libc_mode::S_IFLNK => Err(Failure::new(
            Kind::UnsafePath,
            format!("{} is a symlink; refusing", shown.display()),
        )
        .hint("remove it; reset creates a fresh layer")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use crate::mounts::MountEntry;

    #[rstest::rstest]
    #[case::below(MAX_MOUNTED - 1, "other", true)]
    #[case::at_the_cap(MAX_MOUNTED, "other", false)]
    #[case::its_own_mount_not_counted(MAX_MOUNTED, "own", true)]
    #[test_log::test]
    fn no_mount_past_the_cap_of_mounted_overlays(
        #[case] mounted: usize,
        #[case] which: &str,
        #[case] ok: bool,
    ) {
        let own = InstanceName::parse("own").unwrap();
        let mut table: Vec<MountEntry> = (0..mounted)
            .map(|i| MountEntry {
                id: i as u64,
                mount_point: format!("/var/lib/left4me/runtime/n{i}/merged"),
                fstype: "overlay".into(),
                source: format!("left4me:n{i}"),
            })
            .collect();
        if which == "own" {
            table[0].source = instance::mount_source(&own);
        }
        // Not the helper's: another overlay, a FUSE mount named alike.
        for (fstype, source) in [("overlay", "overlay"), ("fuse.x", "left4me:fake")] {
            table.push(MountEntry {
                id: 9999,
                mount_point: "/x".into(),
                fstype: fstype.into(),
                source: source.into(),
            });
        }
        let r = within_mount_cap(&table, &own);
        assert_eq!(r.is_ok(), ok, "{r:?}");
        if let Err(f) = r {
            assert_eq!(f.kind, Kind::Conflict);
        }
    }

    use super::*;

    #[test_log::test]
    fn outcomes_serialise_to_the_documented_strings() {
        for done in [
            Done::Mounted,
            Done::AlreadyMounted,
            Done::Unmounted,
            Done::NotMounted,
            Done::Reset,
        ] {
            assert_eq!(
                serde_json::to_value(done).unwrap(),
                serde_json::json!(done.as_str())
            );
        }
        let o = Outcome {
            instance: "vs1".into(),
            result: Done::AlreadyMounted,
            mount_point: "/s/runtime/vs1/merged".into(),
            layers: vec!["installation".into()],
        };
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            r#"{"instance":"vs1","result":"already-mounted","mount_point":"/s/runtime/vs1/merged","layers":["installation"]}"#
        );
    }
}
