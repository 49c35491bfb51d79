//! Building the overlay: the lower layers opened in a throwaway private mount
//! namespace, each idmapped so only its owner's ids are mapped, the
//! overlay created as a detached mount (fsconfig with one `lowerdir+` per
//! layer, or one option string through mount(2) on older kernels), ready for
//! the caller to move onto merged/.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::io::Errno;
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags};

use crate::envfile::InstanceConfig;
use crate::error::{Failure, Kind, Result};
use crate::fsx;
use crate::idmap;
use crate::instance::{self, Layer};
use crate::name::InstanceName;
use crate::namespace;
use crate::state::{HELPER_DIR, InstancePaths, Own, ServiceUser, State, UPPER, WORK};

/// The overlay `config` asks for over the installation layer `game`, as a
/// detached mount, and the stack it was made with. The layers are opened in the private namespace (overlayfs
/// before Linux 6.15 only takes layers attached in the caller's namespace).
pub(crate) fn assemble(
    root: &Path,
    name: &InstanceName,
    config: &InstanceConfig,
    game: &str,
    user: &ServiceUser,
) -> Result<(OwnedFd, Vec<Layer>)> {
    namespace::in_private_namespace(|| {
        let state = State::open(root)?;
        let paths = InstancePaths::new(name);
        let layers = instance::layer_stack(&state, &paths, config, Some(game))?;
        raise_fd_limit(layers.len());
        let (stack, fds): (Vec<Layer>, Vec<OwnedFd>) = layers.into_iter().unzip();
        let open = |rel: String| fsx::open_dir(state.fd(), &rel, &state.shown(&rel));
        let stage_shown = state.shown(&InstancePaths::in_helper_dir(&paths.own(Own::Stage)));
        let staging = staging(open(HELPER_DIR.to_owned())?.as_fd(), &paths, &stage_shown)?;
        let lower_fds = map_layers(&state, &stack, fds, user, staging.as_fd(), &stage_shown)?;
        let upper = open(paths.part(UPPER))?;
        let work = open(paths.part(WORK))?;
        let parts = Parts {
            name,
            lowers: &lower_fds,
            upper: &upper,
            work: &work,
            staging: staging.as_fd(),
            stage_shown,
        };
        // overlayfs writes through merged/ and copies up with its creator's
        // credentials: made as the service user's, the game's writes stay
        // out of the blocks the filesystem reserves for root.
        let upper_shown = state.shown(&paths.part(UPPER));
        let mounted = {
            let _as = fsx::WritingAs::enter((user.uid, user.gid), &upper_shown)?;
            parts.build()?
        };
        require_writable(&mounted, name, &upper_shown)?;
        Ok((mounted, stack))
    })
}

/// overlayfs mounts read-only, and says so only in the kernel log, when it
/// cannot make its work directory: made as the service user, it gets no
/// block of root's reserve on a full disk (thirty-fourth review), and a
/// game on a read-only overlay would fail every write until the next mount.
fn require_writable(mounted: &OwnedFd, name: &InstanceName, upper: &Path) -> Result<()> {
    let vfs = rustix::fs::fstatvfs(mounted).map_err(|e| Failure::os(upper, "statvfs", e))?;
    if vfs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
        return Err(Failure::new(
            Kind::Unexpected,
            format!(
                "instance {name}: overlayfs could only mount read-only: no space for its work directory beside {}",
                upper.display()
            ),
        )
        .hint("the filesystem is full for the service user; free space (a reset discards an instance's writes), then start it again"));
    }
    Ok(())
}

/// Where the mounts that only the private namespace needs are attached: a
/// tmpfs of their own, attached on the instance's root-only
/// runtime/.left4me/NAME.stage, returned as its root. Attaching a mount
/// takes the kernel lock of the directory it goes on, and a process of any
/// account that can read a directory can hold that lock for as long as it
/// likes (a getdents whose buffer faults on a FUSE file that is never
/// served, docs/unit.md "The boundary"); the layers themselves
/// (`installations/<gen>`, `overlays/*`, the user's `instances/NAME/layer`)
/// are such directories, so nothing is attached on them. The directory
/// stays (empty outside the namespace) for the next mount; `left4me
/// delete` removes it.
fn staging(helper_dir: BorrowedFd<'_>, paths: &InstancePaths, shown: &Path) -> Result<OwnedFd> {
    let point = paths.own(Own::Stage);
    match rustix::fs::mkdirat(
        helper_dir,
        point.as_str(),
        rustix::fs::Mode::from_raw_mode(0o700),
    ) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(Failure::os(shown, "mkdir", e)),
    }
    let onto = fsx::open_dir(helper_dir, &point, shown)?;
    let refused = |step: &str, e: Errno| {
        Failure::new(
            Kind::KernelLimit,
            format!(
                "cannot make the staging tmpfs on {} ({step}: {e})",
                shown.display()
            ),
        )
        .hint(format!(
            "kernel {}; see dmesg for details",
            kernel_release()
        ))
    };
    let fs = rustix::mount::fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| refused("fsopen", e))?;
    rustix::mount::fsconfig_set_string(fs.as_fd(), "mode", "0700")
        .map_err(|e| refused("mode=0700", e))?;
    rustix::mount::fsconfig_create(fs.as_fd()).map_err(|e| refused("create", e))?;
    let root = rustix::mount::fsmount(
        fs.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .map_err(|e| refused("fsmount", e))?;
    attach(root.as_fd(), onto.as_fd())
        .map_err(|e| Failure::os(shown, "attach the staging tmpfs on", e))?;
    Ok(root)
}

/// A fresh directory `name` in the staging tmpfs, opened.
fn staging_dir(staging: BorrowedFd<'_>, name: &str, shown: &Path) -> Result<OwnedFd> {
    rustix::fs::mkdirat(staging, name, rustix::fs::Mode::from_raw_mode(0o700))
        .map_err(|e| Failure::os(&shown.join(name), "mkdir", e))?;
    fsx::open_dir(staging, name, &shown.join(name))
}

/// Attaches detached mount `mnt` onto the directory behind `onto`: both by fd,
/// no path is resolved.
pub(crate) fn attach(mnt: BorrowedFd<'_>, onto: BorrowedFd<'_>) -> Result<(), Errno> {
    rustix::mount::move_mount(
        mnt,
        "",
        onto,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
}

/// One lower layer fd per layer, each an idmapped clone whose only mapping
/// is the layer owner's ids to the service user's: root's layers show
/// root's files as the game's (so it can write through merged/ into
/// directories that come from them), the service user's own layer maps its
/// ids to themselves. Every other owner stays unmapped, and overlayfs
/// refuses to copy up a file whose owner is unmapped (EOVERFLOW), so no
/// file of a third account, and no root file hard-linked into the user's
/// layer, can be copied up, as root, into upper/ under its real owner. A
/// layer of any other account is refused outright: it would show that
/// account's files to the game as its own. One user namespace serves all
/// layers with the same owner.
fn map_layers(
    state: &State,
    stack: &[Layer],
    fds: Vec<OwnedFd>,
    user: &ServiceUser,
    staging: BorrowedFd<'_>,
    staging_shown: &Path,
) -> Result<Vec<OwnedFd>> {
    let mut namespaces: HashMap<(u32, u32), OwnedFd> = HashMap::new();
    let mut out = Vec::with_capacity(fds.len());
    for (i, (layer, fd)) in stack.iter().zip(fds).enumerate() {
        let shown = state.shown(&layer.rel);
        let st = fsx::stat_fd(&fd, &shown)?;
        let owner = (st.st_uid, st.st_gid);
        require_trusted_owner(owner, &shown, user)?;
        let userns = match namespaces.get(&owner) {
            Some(ns) => ns,
            None => {
                let ns = idmap::user_namespace(owner, (user.uid, user.gid))?;
                namespaces.entry(owner).or_insert(ns)
            }
        };
        let clone = idmap::idmapped_clone(fd.as_fd(), userns.as_fd(), &shown)?;
        // Linux < 6.15 accepts only layers attached in the caller's mount
        // namespace; attach the clone in the private one, in the staging
        // tmpfs (see there why not over the layer).
        let onto = staging_dir(staging, &format!("layer{i}"), staging_shown)?;
        attach(clone.as_fd(), onto.as_fd())
            .map_err(|e| Failure::os(&shown, "attach idmapped clone of", e))?;
        out.push(clone);
    }
    Ok(out)
}

fn require_trusted_owner((uid, gid): (u32, u32), shown: &Path, user: &ServiceUser) -> Result<()> {
    if (uid == 0 || uid == user.uid) && (gid == 0 || gid == user.gid) {
        return Ok(());
    }
    Err(Failure::new(
        Kind::UnsafePath,
        format!(
            "{} belongs to uid {uid} gid {gid}, neither root nor the service user ({}:{}); \
             refusing to show another account's files to the game as its own",
            shown.display(),
            user.uid,
            user.gid
        ),
    )
    .hint(format!(
        "chown -R root:root {0} (or to the service user)",
        shown.display()
    )))
}

/// Everything an overlay is made of, opened and checked in the private
/// namespace. Layers reach the kernel as /proc/self/fd/N, so nothing is
/// resolved by path and no name reaches the option string.
struct Parts<'a> {
    name: &'a InstanceName,
    lowers: &'a [OwnedFd],
    upper: &'a OwnedFd,
    work: &'a OwnedFd,
    /// The staging tmpfs ([`staging`]), where the legacy path mounts first.
    staging: BorrowedFd<'a>,
    stage_shown: std::path::PathBuf,
}

impl Parts<'_> {
    /// The overlay as a detached mount, for the caller to move onto merged/.
    fn build(&self) -> Result<OwnedFd> {
        match self.appended() {
            Ok(mnt) => Ok(mnt),
            Err(Refusal::NoAppend(f)) => {
                tracing::debug!(error = %f, "no lowerdir+ on this kernel; mounting with one lowerdir string");
                self.joined()
            }
            Err(Refusal::Other(f)) => Err(f),
        }
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

/// mount(2) takes the options as one page.
const OPTIONS_MAX: usize = 4096;

/// The option string of the legacy path.
fn joined_options(lowers: &[String], upper: &str, work: &str) -> String {
    let mut options = format!(
        "lowerdir={},upperdir={upper},workdir={work}",
        lowers.join(":")
    );
    for (key, value) in SAFE_OPTIONS {
        options += &format!(",{key}={value}");
    }
    options
}

impl Parts<'_> {
    /// fsopen/fsconfig/fsmount with one "lowerdir+" per layer (Linux >= 6.8):
    /// no limit on the number of layers (fsconfig takes values of at most 256
    /// bytes, so a joined lowerdir would fit only a dozen layers here).
    fn appended(&self) -> Result<OwnedFd, Refusal> {
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
        set("source", &instance::mount_source(self.name)).map_err(Refusal::Other)?;
        for lower in self.lowers {
            set("lowerdir+", &fsx::fd_path(lower.as_fd())).map_err(Refusal::NoAppend)?;
        }
        set("upperdir", &fsx::fd_path(self.upper.as_fd())).map_err(Refusal::Other)?;
        set("workdir", &fsx::fd_path(self.work.as_fd())).map_err(Refusal::Other)?;
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

    /// Older kernels: mount(2) with one option string (up to a page: about
    /// 200 layers as /proc/self/fd/N) on a directory of the staging tmpfs,
    /// then a detached clone of it, which outlives the private namespace
    /// (the mount in the tmpfs dies with it).
    fn joined(&self) -> Result<OwnedFd> {
        let (name, lowers, shown) = (self.name, self.lowers, &self.stage_shown);
        let lowerdir: Vec<String> = lowers.iter().map(|fd| fsx::fd_path(fd.as_fd())).collect();
        let options = joined_options(
            &lowerdir,
            &fsx::fd_path(self.upper.as_fd()),
            &fsx::fd_path(self.work.as_fd()),
        );
        if options.len() >= OPTIONS_MAX {
            return Err(Failure::new(
            Kind::KernelLimit,
            format!(
                "instance {name}: {} lower layers need {} bytes of mount options; this kernel ({}) accepts one page ({OPTIONS_MAX})",
                lowers.len(),
                options.len(),
                kernel_release()
            ),
        )
        .hint("use fewer overlays (about 200 fit), or Linux >= 6.8, which adds layers one at a time"));
        }
        const POINT: &str = "overlay";
        staging_dir(self.staging, POINT, shown)?;
        let target = format!("{}/{POINT}", fsx::fd_path(self.staging));
        nix::mount::mount(
            Some(instance::mount_source(name).as_str()),
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
        rustix::mount::open_tree(
            self.staging,
            POINT,
            OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
        )
        .map_err(|e| Failure::os(shown, "clone the overlay mounted on", e))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test_log::test]
    fn legacy_options_keep_the_unsafe_features_off() {
        let o = joined_options(
            &["/proc/self/fd/5".into(), "/proc/self/fd/6".into()],
            "/proc/self/fd/7",
            "/proc/self/fd/8",
        );
        assert_eq!(
            o,
            "lowerdir=/proc/self/fd/5:/proc/self/fd/6,upperdir=/proc/self/fd/7,workdir=/proc/self/fd/8,metacopy=off,redirect_dir=nofollow,index=off"
        );
    }

    #[test_log::test]
    fn about_two_hundred_layers_fit_one_page() {
        let fit = |n: usize| {
            let lowers: Vec<String> = (0..n)
                .map(|i| format!("/proc/self/fd/{}", 10 + i))
                .collect();
            joined_options(&lowers, "/proc/self/fd/9", "/proc/self/fd/8").len() < OPTIONS_MAX
        };
        assert!(fit(200));
        assert!(!fit(240));
    }

    #[test_log::test]
    fn only_root_or_the_service_user_may_own_a_layer() {
        let user = ServiceUser {
            uid: 1000,
            gid: 1000,
        };
        for ok in [(0, 0), (1000, 1000), (0, 1000), (1000, 0)] {
            assert!(
                require_trusted_owner(ok, Path::new("x"), &user).is_ok(),
                "{ok:?}"
            );
        }
        for bad in [(33, 33), (0, 33), (33, 0), (1000, 33)] {
            let f = require_trusted_owner(bad, Path::new("/s/overlays/x"), &user).unwrap_err();
            assert_eq!(f.kind, Kind::UnsafePath);
            assert!(
                f.message.starts_with(&format!(
                    "/s/overlays/x belongs to uid {} gid {}",
                    bad.0, bad.1
                )),
                "{}",
                f.message
            );
        }
    }
}
