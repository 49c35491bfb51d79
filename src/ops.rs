//! The verbs that change state: mount, umount, reset. Each runs under the
//! instance's lock and converges from whatever an earlier, killed run left:
//! directories are created when missing and re-owned every time, a mount is
//! recognised by its source, and discarded layers are swept later.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags,
};
use serde::Serialize;

use crate::discard;
use crate::envfile::{self, InstanceConfig};
use crate::error::{Failure, Kind, Result};
use crate::fsx::{self, libc_mode};
use crate::idmap;
use crate::lock;
use crate::mounts;
use crate::name::InstanceName;
use crate::namespace;
use crate::state::{InstancePaths, ServiceUser, State};

/// What a verb did, for humans and for `--json`.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub instance: String,
    /// mounted, already-mounted, unmounted, not-mounted, reset
    pub result: &'static str,
    pub mount_point: PathBuf,
    /// Lower layers, highest priority first, relative to the state dir.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
}

/// overlayfs shows this as the mount's source; it is how the helper knows a
/// mount on merged/ is its own.
pub fn mount_source(name: &InstanceName) -> String {
    format!("left4me:{name}")
}

fn record_name(name: &InstanceName) -> String {
    format!("{name}.stack")
}

/// The layer stack a mount was made with, kept in root-only runtime/.left4me/.
pub fn read_record(helper_dir: BorrowedFd<'_>, name: &InstanceName) -> Option<Vec<String>> {
    let fd = rustix::fs::openat(
        helper_dir,
        record_name(name),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()?;
    let text = std::io::read_to_string(std::fs::File::from(fd)).ok()?;
    Some(text.lines().map(str::to_owned).collect())
}

fn write_record(
    helper_dir: BorrowedFd<'_>,
    name: &InstanceName,
    layers: &[String],
    shown: &Path,
) -> Result<(), Failure> {
    use std::io::Write;
    let tmp = format!("{}.tmp", record_name(name));
    let flags = rustix::fs::OFlags::WRONLY
        | rustix::fs::OFlags::CREATE
        | rustix::fs::OFlags::TRUNC
        | rustix::fs::OFlags::NOFOLLOW
        | rustix::fs::OFlags::CLOEXEC;
    let fd = rustix::fs::openat(
        helper_dir,
        tmp.as_str(),
        flags,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .map_err(|e| fsx::os(shown, "write", e))?;
    std::fs::File::from(fd)
        .write_all((layers.join("\n") + "\n").as_bytes())
        .map_err(|e| Failure::new(Kind::Missing, format!("write {}: {e}", shown.display())))?;
    rustix::fs::renameat(helper_dir, tmp.as_str(), helper_dir, record_name(name))
        .map_err(|e| fsx::os(shown, "rename", e))
}

fn remove_record(helper_dir: BorrowedFd<'_>, name: &InstanceName) {
    let _ = rustix::fs::unlinkat(helper_dir, record_name(name), rustix::fs::AtFlags::empty());
}

/// Reads and validates instances/<i>/instance.env.
pub fn read_config(state: &State, name: &InstanceName) -> Result<InstanceConfig, Failure> {
    let rel = InstancePaths::new(name).env;
    let shown = state.shown(&rel);
    let bytes =
        fsx::read_small_file(state.fd(), &rel, &shown, envfile::MAX_BYTES).map_err(|f| {
            if f.kind == Kind::Missing {
                Failure::new(Kind::Missing, format!("no instance {name}: {}", f.message)).hint(
                    format!("create {} with at least L4D2_PORT=<port>", shown.display()),
                )
            } else {
                f
            }
        })?;
    InstanceConfig::parse(&bytes, &shown.display().to_string())
}

/// Lower layer paths relative to the state dir, highest priority first.
pub fn layer_stack(
    state: &State,
    name: &InstanceName,
    config: &InstanceConfig,
) -> Result<Vec<(String, Option<OwnedFd>)>, Failure> {
    let paths = InstancePaths::new(name);
    let mut layers = Vec::new();
    if let Some(fd) = fsx::open_dir_if_exists(state.fd(), &paths.layer, &state.shown(&paths.layer))?
    {
        layers.push((paths.layer, Some(fd)));
    }
    for overlay in &config.overlays {
        let rel = format!("overlays/{overlay}");
        let fd = fsx::open_dir(state.fd(), &rel, &state.shown(&rel)).map_err(|f| {
            if f.kind == Kind::Missing {
                f.hint(format!(
                    "create it, or remove {overlay} from L4D2_OVERLAYS in {}",
                    state.shown(&paths.env).display()
                ))
            } else {
                f
            }
        })?;
        layers.push((rel, Some(fd)));
    }
    let fd =
        fsx::open_dir(state.fd(), "installation", &state.shown("installation")).map_err(|f| {
            if f.kind == Kind::Missing {
                f.hint(
                    "install the game there (steamcmd +force_install_dir ... +app_update 222860)",
                )
            } else {
                f
            }
        })?;
    layers.push(("installation".into(), Some(fd)));
    Ok(layers)
}

/// Whether runtime/<i>/merged carries this instance's overlay right now.
pub fn mounted_here(
    runtime_i: BorrowedFd<'_>,
    name: &InstanceName,
    shown_merged: &Path,
) -> Result<Option<mounts::MountEntry>, Failure> {
    // status takes no lock: a mount seen by statx can be gone from
    // mountinfo a moment later. Look again before calling it foreign.
    for _ in 0..3 {
        let entry =
            fsx::entry(runtime_i, "merged").map_err(|e| fsx::os(shown_merged, "stat", e))?;
        let Some(entry) = entry else { return Ok(None) };
        if entry.kind == libc_mode::S_IFLNK {
            return Err(Failure::new(
                Kind::UnsafePath,
                format!(
                    "{} is a symlink; refusing to follow it as root",
                    shown_merged.display()
                ),
            )
            .hint("remove the symlink; left4me-overlay creates merged/ itself"));
        }
        if !entry.mount_root {
            return Ok(None);
        }
        match mounts::find_by_id(entry.mnt_id) {
            Some(m) if m.fstype == "overlay" && m.source == mount_source(name) => {
                return Ok(Some(m));
            }
            Some(m) => {
                return Err(Failure::new(
                    Kind::Conflict,
                    format!(
                        "{} has a mount that is not this instance's overlay ({} from {}); refusing to touch it",
                        shown_merged.display(),
                        m.fstype,
                        m.source
                    ),
                )
                .hint("unmount it yourself if it should not be there"));
            }
            None => continue,
        }
    }
    Err(Failure::new(
        Kind::Conflict,
        format!(
            "{} is a mount point that is not in this namespace's mountinfo",
            shown_merged.display()
        ),
    )
    .hint("look at findmnt and unmount it if it should not be there"))
}

/// What every state-changing verb starts with: runtime/ and the root-only
/// runtime/.left4me/ opened, and the instance's lock held until dropped.
struct Locked {
    runtime: OwnedFd,
    helper_dir: OwnedFd,
    _lock: lock::InstanceLock,
    /// runtime/<i>, relative to the state dir, and how errors show it.
    rt_rel: String,
    rt_shown: PathBuf,
    merged_shown: PathBuf,
}

impl Locked {
    fn take(state: &State, name: &InstanceName) -> Result<Locked, Failure> {
        let runtime = state.runtime()?;
        let helper_dir = state.helper_dir(runtime.as_fd())?;
        let lock = lock::lock(
            helper_dir.as_fd(),
            name,
            &state.shown(&format!("runtime/.left4me/{name}.lock")),
        )?;
        let rt_rel = InstancePaths::new(name).runtime;
        let rt_shown = state.shown(&rt_rel);
        Ok(Locked {
            runtime,
            helper_dir,
            _lock: lock,
            merged_shown: rt_shown.join("merged"),
            rt_rel,
            rt_shown,
        })
    }
}

pub fn mount(state: &State, name: &InstanceName, user: &ServiceUser) -> Result<Outcome> {
    let config = read_config(state, name)?;
    let Locked {
        runtime,
        helper_dir,
        _lock,
        rt_rel,
        rt_shown,
        merged_shown,
    } = Locked::take(state, name)?;
    // root:<service group> 0750: the game reaches merged/ through its group;
    // other local users cannot read staged config (rcon passwords) through it.
    let runtime_i = fsx::ensure_dir(runtime.as_fd(), name.as_str(), 0o750, &rt_shown)?;
    fsx::chown_fd(runtime_i.as_fd(), 0, user.gid, &rt_shown)?;
    fsx::chmod_fd(runtime_i.as_fd(), 0o750, &rt_shown)?;
    let outcome = |result, layers: Vec<String>| Outcome {
        instance: name.to_string(),
        result,
        mount_point: merged_shown.clone(),
        layers,
    };

    if mounted_here(runtime_i.as_fd(), name, &merged_shown)?.is_some() {
        let rels: Vec<String> = layer_stack(state, name, &config)?
            .into_iter()
            .map(|(rel, _)| rel)
            .collect();
        let recorded = read_record(helper_dir.as_fd(), name);
        if recorded.as_ref() == Some(&rels) {
            tracing::info!("already mounted with the same layer stack");
            return Ok(outcome("already-mounted", rels));
        }
        return Err(Failure::new(
            Kind::Conflict,
            format!(
                "{} is mounted with another layer stack ({}); instance.env now asks for {}",
                merged_shown.display(),
                recorded.map_or_else(|| "unknown".into(), |r| r.join(", ")),
                rels.join(", ")
            ),
        )
        .hint(format!(
            "restart left4me-server@{name} (or run left4me-overlay umount {name}) to apply it"
        ))
        .into());
    }

    prepare_writable_layer(runtime_i.as_fd(), &rt_shown, user)?;
    let (upper_shown, work_shown) = (rt_shown.join("upper"), rt_shown.join("work"));
    let merged = fsx::ensure_dir(runtime_i.as_fd(), "merged", 0o755, &merged_shown)?;

    let (mnt, rels) = namespace::in_private_namespace(|| {
        let state = State::open(&state.root)?;
        let layers = layer_stack(&state, name, &config)?;
        let rels: Vec<String> = layers.iter().map(|(rel, _)| rel.clone()).collect();
        raise_fd_limit(layers.len());
        let lower_fds = map_layers(&state, layers, user)?;
        let upper = fsx::open_dir(state.fd(), &format!("{rt_rel}/upper"), &upper_shown)?;
        let work = fsx::open_dir(state.fd(), &format!("{rt_rel}/work"), &work_shown)?;
        let stage = fsx::open_dir(
            state.fd(),
            "runtime/.left4me",
            &state.shown("runtime/.left4me"),
        )?;
        let mnt = build_overlay(name, &lower_fds, &upper, &work, stage.as_fd())?;
        Ok((mnt, rels))
    })?;
    write_record(
        helper_dir.as_fd(),
        name,
        &rels,
        &state.shown(&format!("runtime/.left4me/{name}.stack")),
    )?;
    attach(mnt.as_fd(), merged.as_fd())
        .map_err(|e| fsx::os(&merged_shown, "move_mount onto", e))?;
    tracing::info!(layers = rels.len(), "mounted");
    Ok(outcome("mounted", rels))
}

/// upper/ (the service user's; its owner and mode become merged/'s),
/// work/ (root-only) and home/ (the game's $HOME, the service user's, 0700),
/// created when missing and re-owned every time, so whatever an earlier,
/// killed run left converges.
fn prepare_writable_layer(
    runtime_i: BorrowedFd<'_>,
    rt_shown: &Path,
    user: &ServiceUser,
) -> Result<(), Failure> {
    let upper_shown = rt_shown.join("upper");
    let upper = fsx::ensure_dir(runtime_i, "upper", 0o755, &upper_shown)?;
    fsx::chown_fd(upper.as_fd(), user.uid, user.gid, &upper_shown)?;
    let home_shown = rt_shown.join("home");
    let home = fsx::ensure_dir(runtime_i, "home", 0o700, &home_shown)?;
    fsx::chown_fd(home.as_fd(), user.uid, user.gid, &home_shown)?;
    fsx::chmod_fd(home.as_fd(), 0o700, &home_shown)?;
    let work_shown = rt_shown.join("work");
    let work = fsx::ensure_dir(runtime_i, "work", 0o700, &work_shown)?;
    fsx::chown_fd(work.as_fd(), 0, 0, &work_shown)?;
    fsx::chmod_fd(work.as_fd(), 0o700, &work_shown)
}

/// Attaches detached mount `mnt` onto the directory behind `onto`: both by fd,
/// no path is resolved.
fn attach(mnt: BorrowedFd<'_>, onto: BorrowedFd<'_>) -> Result<(), Errno> {
    rustix::mount::move_mount(
        mnt,
        "",
        onto,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
}

/// One lower layer fd per layer, idmapped where its owner is not the service
/// user. One user namespace serves all layers with the same owner. Runs in
/// the private namespace of [`namespace::in_private_namespace`].
fn map_layers(
    state: &State,
    layers: Vec<(String, Option<OwnedFd>)>,
    user: &ServiceUser,
) -> Result<Vec<OwnedFd>, Failure> {
    let mut namespaces: HashMap<(u32, u32), OwnedFd> = HashMap::new();
    let mut out = Vec::with_capacity(layers.len());
    for (rel, fd) in layers {
        let fd = fd.expect("layer_stack opens every layer");
        let shown = state.shown(&rel);
        let st = fsx::stat_fd(&fd, &shown)?;
        let owner = (st.st_uid, st.st_gid);
        if owner == (user.uid, user.gid) {
            out.push(fd);
            continue;
        }
        let userns = match namespaces.get(&owner) {
            Some(ns) => ns,
            None => {
                let ns = idmap::user_namespace(owner, (user.uid, user.gid))?;
                namespaces.entry(owner).or_insert(ns)
            }
        };
        let clone = idmap::idmapped_clone(fd.as_fd(), userns.as_fd(), &shown)?;
        // Linux < 6.15 accepts only layers attached in the caller's mount
        // namespace; attach the clone over the layer in the private one.
        attach(clone.as_fd(), fd.as_fd())
            .map_err(|e| fsx::os(&shown, "attach idmapped clone of", e))?;
        out.push(clone);
    }
    Ok(out)
}

/// Creates the overlay as a detached mount, for the caller to move onto
/// merged/. Layers are passed as /proc/self/fd/N, the directories already
/// opened and checked, so nothing is resolved by path and no name reaches
/// the option string. Runs in the private namespace; `stage` is a root-only
/// directory there.
fn build_overlay(
    name: &InstanceName,
    lowers: &[OwnedFd],
    upper: &OwnedFd,
    work: &OwnedFd,
    stage: BorrowedFd<'_>,
) -> Result<OwnedFd, Failure> {
    match build_appended(name, lowers, upper, work) {
        Ok(mnt) => Ok(mnt),
        Err(Refusal::NoAppend(f)) => {
            tracing::debug!(error = %f, "no lowerdir+ on this kernel; mounting with one lowerdir string");
            mount_joined(name, lowers, upper, work, stage)
        }
        Err(Refusal::Other(f)) => Err(f),
    }
}

/// Why the new mount API could not make the overlay.
enum Refusal {
    /// The kernel does not know "lowerdir+": it refuses the key when it is set
    /// (Linux 6.5-6.7), or, through the legacy interface that takes any key
    /// and reports only to dmesg, with a bare EINVAL at create (< 6.5).
    NoAppend(Failure),
    Other(Failure),
}

/// The overlay options every mount gets. The writable layer is
/// user-controlled: keep the features overlayfs documents as unsafe with
/// untrusted layers off, whatever the kernel's defaults are.
const SAFE_OPTIONS: [(&str, &str); 3] = [
    ("metacopy", "off"),
    ("redirect_dir", "nofollow"),
    ("index", "off"),
];

/// fsopen/fsconfig/fsmount with one "lowerdir+" per layer (Linux >= 6.8):
/// no limit on the number of layers (fsconfig takes values of at most 256
/// bytes, so a joined lowerdir would fit only a dozen layers here).
fn build_appended(
    name: &InstanceName,
    lowers: &[OwnedFd],
    upper: &OwnedFd,
    work: &OwnedFd,
) -> Result<OwnedFd, Refusal> {
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| {
        Refusal::Other(
            Failure::new(
                Kind::KernelLimit,
                format!("the kernel cannot create overlay mounts (fsopen: {e})"),
            )
            .hint("load the overlay module: modprobe overlay"),
        )
    })?;
    let set = |key: &str, value: &str| {
        rustix::mount::fsconfig_set_string(fs.as_fd(), key, value)
            .map_err(|e| kernel_refused(&fs, &format!("{key}={value}"), e))
    };
    set("source", &mount_source(name)).map_err(Refusal::Other)?;
    for lower in lowers {
        set("lowerdir+", &fsx::fd_path(lower.as_fd())).map_err(Refusal::NoAppend)?;
    }
    set("upperdir", &fsx::fd_path(upper.as_fd())).map_err(Refusal::Other)?;
    set("workdir", &fsx::fd_path(work.as_fd())).map_err(Refusal::Other)?;
    for (key, value) in SAFE_OPTIONS {
        set(key, value).map_err(Refusal::Other)?;
    }
    rustix::mount::fsconfig_create(fs.as_fd()).map_err(|e| {
        let log = fs_log(&fs);
        let failure = kernel_refused_with(&log, "create", e);
        // The new mount API explains its refusals in the log; a bare EINVAL
        // is the legacy interface rejecting "lowerdir+".
        if e == Errno::INVAL && log.is_empty() {
            Refusal::NoAppend(failure)
        } else {
            Refusal::Other(failure)
        }
    })?;
    rustix::mount::fsmount(
        fs.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
    )
    .map_err(|e| Refusal::Other(kernel_refused(&fs, "fsmount", e)))
}

/// Older kernels: mount(2) with one option string (up to a page: about 200
/// layers as /proc/self/fd/N) on a staging directory in the private
/// namespace, then a detached clone of it, which outlives that namespace.
fn mount_joined(
    name: &InstanceName,
    lowers: &[OwnedFd],
    upper: &OwnedFd,
    work: &OwnedFd,
    stage: BorrowedFd<'_>,
) -> Result<OwnedFd, Failure> {
    let lowerdir: Vec<String> = lowers.iter().map(|fd| fsx::fd_path(fd.as_fd())).collect();
    let mut options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir.join(":"),
        fsx::fd_path(upper.as_fd()),
        fsx::fd_path(work.as_fd())
    );
    for (key, value) in SAFE_OPTIONS {
        options += &format!(",{key}={value}");
    }
    if options.len() >= 4096 {
        return Err(Failure::new(
            Kind::KernelLimit,
            format!(
                "instance {name}: {} lower layers need {} bytes of mount options; this kernel ({}) accepts one page (4096)",
                lowers.len(),
                options.len(),
                kernel_release()
            ),
        )
        .hint("use fewer overlays (about 200 fit), or Linux >= 6.8, which adds layers one at a time"));
    }
    let point = format!("{name}.stage");
    let shown = PathBuf::from(format!("runtime/.left4me/{point}"));
    match rustix::fs::mkdirat(
        stage,
        point.as_str(),
        rustix::fs::Mode::from_raw_mode(0o700),
    ) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(fsx::os(&shown, "mkdir", e)),
    }
    let target = format!("{}/{point}", fsx::fd_path(stage));
    nix::mount::mount(
        Some(mount_source(name).as_str()),
        target.as_str(),
        Some("overlay"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(|e| {
        Failure::new(
            Kind::KernelLimit,
            format!("overlayfs refused the mount: {e}"),
        )
        .hint(format!(
            "kernel {}; see dmesg for details",
            kernel_release()
        ))
    })?;
    let tree = rustix::mount::open_tree(
        stage,
        point.as_str(),
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(|e| fsx::os(&shown, "clone the overlay mounted on", e));
    // The staging mount only lives in the private namespace; take it down
    // now so the directory can go.
    let _ = nix::mount::umount2(target.as_str(), nix::mount::MntFlags::MNT_DETACH);
    let _ = rustix::fs::unlinkat(stage, point.as_str(), rustix::fs::AtFlags::REMOVEDIR);
    tree
}

fn kernel_release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// The kernel's own explanation, read from the fs context's message log.
fn fs_log(fs: &OwnedFd) -> String {
    let mut lines = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = rustix::io::read(fs, &mut buf) {
        if n == 0 {
            break;
        }
        lines.push(String::from_utf8_lossy(&buf[..n]).trim().to_owned());
    }
    lines.join("; ")
}

fn kernel_refused(fs: &OwnedFd, step: &str, e: Errno) -> Failure {
    kernel_refused_with(&fs_log(fs), step, e)
}

fn kernel_refused_with(log: &str, step: &str, e: Errno) -> Failure {
    Failure::new(
        Kind::KernelLimit,
        format!(
            "overlayfs refused {step}: {e}{}",
            if log.is_empty() {
                String::new()
            } else {
                format!(" ({log})")
            }
        ),
    )
    .hint(format!(
        "kernel {}; see dmesg for details",
        kernel_release()
    ))
}

/// Each layer costs up to two fds (the directory, its idmapped clone).
fn raise_fd_limit(layers: usize) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    let want = (layers as u64) * 2 + 64;
    if limit.current.is_some_and(|cur| cur < want) {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

pub fn umount(state: &State, name: &InstanceName) -> Result<Outcome> {
    let Locked {
        helper_dir,
        _lock,
        rt_rel,
        rt_shown,
        merged_shown,
        ..
    } = Locked::take(state, name)?;
    let outcome = |result| Outcome {
        instance: name.to_string(),
        result,
        mount_point: merged_shown.clone(),
        layers: Vec::new(),
    };
    let Some(runtime_i) = fsx::open_dir_if_exists(state.fd(), &rt_rel, &rt_shown)? else {
        return Ok(outcome("not-mounted"));
    };
    let mut unmounted = false;
    // More than one overlay can be stacked on merged/ by hand or by an old
    // bug; take them all down.
    for _ in 0..8 {
        let Some(entry) = mounted_here(runtime_i.as_fd(), name, &merged_shown)? else {
            break;
        };
        let target = format!("{}/merged", fsx::fd_path(runtime_i.as_fd()));
        match rustix::mount::unmount(target.as_str(), UnmountFlags::NOFOLLOW) {
            Ok(()) => unmounted = true,
            Err(Errno::BUSY) => {
                let holders = mounts::holders(&entry.mount_point);
                let listing = if holders.is_empty() {
                    "no holder found in /proc (a kernel-internal reference, or a process that exited meanwhile)".to_owned()
                } else {
                    holders.join("\n    ")
                };
                return Err(Failure::new(Kind::Busy, format!("{} is busy:\n    {listing}", merged_shown.display()))
                    .hint(format!("stop those processes (systemctl stop left4me-server@{name}), then run umount again"))
                    .into());
            }
            Err(e) => return Err(fsx::os(&merged_shown, "umount", e).into()),
        }
    }
    remove_record(helper_dir.as_fd(), name);
    drop(_lock);
    if let Err(f) = discard::sweep(runtime_i.as_fd(), &rt_shown) {
        tracing::warn!(error = %f, "leftover discarded layers not deleted yet");
    }
    if unmounted {
        tracing::info!("unmounted");
    }
    Ok(outcome(if unmounted {
        "unmounted"
    } else {
        "not-mounted"
    }))
}

/// Swaps in an empty writable layer. Returns the runtime dir so the caller
/// can delete what was set aside once the lock is released.
pub fn reset(
    state: &State,
    name: &InstanceName,
    user: &ServiceUser,
) -> Result<(Outcome, Option<OwnedFd>, PathBuf)> {
    // Bound, not `..`: the lock must live until the new layer is in place.
    let Locked {
        _lock,
        rt_rel,
        rt_shown,
        merged_shown,
        ..
    } = Locked::take(state, name)?;
    let outcome = Outcome {
        instance: name.to_string(),
        result: "reset",
        mount_point: merged_shown.clone(),
        layers: Vec::new(),
    };
    let Some(runtime_i) = fsx::open_dir_if_exists(state.fd(), &rt_rel, &rt_shown)? else {
        if fsx::open_dir_if_exists(
            state.fd(),
            &format!("instances/{name}"),
            &state.shown(&format!("instances/{name}")),
        )?
        .is_none()
        {
            return Err(Failure::new(
                Kind::Missing,
                format!(
                    "no instance {name}: neither {} nor {} exists",
                    rt_shown.display(),
                    state.shown(&format!("instances/{name}")).display()
                ),
            )
            .into());
        }
        return Ok((outcome, None, rt_shown));
    };
    if mounted_here(runtime_i.as_fd(), name, &merged_shown)?.is_some() {
        return Err(Failure::new(
            Kind::Conflict,
            format!(
                "instance {name} is mounted at {}; refusing to reset a live layer",
                merged_shown.display()
            ),
        )
        .hint(format!("systemctl stop left4me-server@{name} first"))
        .into());
    }
    // home/ too: what Steam and the game wrote to $HOME is part of the
    // instance's state, and a reset means a clean one.
    for part in ["upper", "work", "home"] {
        refuse_symlink_swap(runtime_i.as_fd(), part, &rt_shown.join(part))?;
        discard::set_aside(runtime_i.as_fd(), part, &rt_shown.join(part))?;
    }
    prepare_writable_layer(runtime_i.as_fd(), &rt_shown, user)?;
    tracing::info!("writable layer replaced by an empty one");
    Ok((outcome, Some(runtime_i), rt_shown))
}

/// Renaming a symlink aside is harmless, but a symlink where upper/ or work/
/// belongs means someone is tampering: say so instead of papering over it.
fn refuse_symlink_swap(runtime_i: BorrowedFd<'_>, part: &str, shown: &Path) -> Result<(), Failure> {
    match fsx::entry(runtime_i, part) {
        Ok(Some(e)) if e.kind == libc_mode::S_IFLNK => Err(Failure::new(
            Kind::UnsafePath,
            format!("{} is a symlink; refusing", shown.display()),
        )
        .hint("remove it; reset creates a fresh layer")),
        _ => Ok(()),
    }
}
