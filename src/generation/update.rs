//! The `generation` verbs: prepare, commit, abort, import, gc and list. Each
//! holds the installations lock exclusively (list shared), and on a host
//! from before generations first migrates installation/.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use rustix::fs::{Mode, OFlags, RenameFlags};
use serde::{Deserialize, Serialize};

use super::current::{
    CURRENT, NEXT, RENEW, committed, is_dir, is_regular, lock_installations, lock_updates, migrate,
    now_secs, read_current, shown_id, write_current,
};
use super::id::{GenerationId, INSTALLATIONS};
use super::in_use::{InUse, in_use};
use super::manifest::{MANIFEST, Manifest, read_manifest};
use super::tree::{self, CopyStats, Fallback, TakeOverStats};
use crate::discard;
use crate::error::{Failure, Kind, Result};
use crate::fsx;
use crate::lock::{self, LockMode};
use crate::procs;
use crate::state::{self, InstancePaths, ServiceUser, State};

/// How `prepare` fills .next/ where the filesystem cannot reflink
/// (`LEFT4ME_UPDATE_COPY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum CopyMode {
    /// Hard links to the current generation's root-owned, read-only files.
    Auto,
    /// Full copies the update user owns.
    Copy,
}

/// What happens to running instances after a switch
/// (`LEFT4ME_UPDATE_RESTART`): the commit carries out `now`, each instance's
/// health check `when-empty` (health::rollover); one type for both readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RestartPolicy {
    /// They move at their next start.
    Never,
    /// Each health check restarts its server once no player is on it.
    #[default]
    WhenEmpty,
    /// `systemctl try-restart` at once.
    Now,
}

impl RestartPolicy {
    /// The setting's value, as clap and serde spell it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            RestartPolicy::Never => "never",
            RestartPolicy::WhenEmpty => "when-empty",
            RestartPolicy::Now => "now",
        }
    }
}

/// The update user: neither root nor the service user, so neither the game
/// nor the web app can write into a generation being built, and the update
/// cannot write into anything the game owns.
struct UpdateUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl UpdateUser {
    fn resolve(name: &str, service: &ServiceUser) -> Result<UpdateUser> {
        let user =
            nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| {
                    Failure::new(Kind::UnknownUser, format!("update user {name:?} does not exist"))
                .hint("create it (the package's sysusers.d makes left4me-update), or pass --owner")
                })?;
        let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
        if uid == 0 || gid == 0 || uid == service.uid || gid == service.gid {
            return Err(Failure::new(
                Kind::UnknownUser,
                format!(
                    "update user {name:?} (uid {uid} gid {gid}) must be neither root nor the service user ({}:{})",
                    service.uid, service.gid
                ),
            )
            .hint("use a dedicated system account with its own group (left4me-update)"));
        }
        Ok(UpdateUser {
            name: name.to_owned(),
            uid,
            gid,
        })
    }
}

/// The generation verbs' lock, held, and installations/ opened (created on
/// a host where tmpfiles has not run yet), migrated if needed.
struct Held<'s> {
    state: &'s State,
    dir: OwnedFd,
    helper_dir: OwnedFd,
    _lock: lock::Lock,
}

impl<'s> Held<'s> {
    /// `need_current`: the verb cannot work without a current generation,
    /// so a migration that fails fails it; list and gc work on without one.
    fn take(state: &'s State, need_current: bool) -> Result<Held<'s>> {
        let runtime = state.ensure_runtime()?;
        let helper_dir = state.ensure_helper_dir(runtime.as_fd())?;
        let lock = lock_updates(state, helper_dir.as_fd())?;
        let shown = state.shown(INSTALLATIONS);
        // Made root-only-to-list if missing; tmpfiles gives it the health
        // checks' group (dist/left4me.tmpfiles.in says why no one else).
        let dir = fsx::ensure_admin_dir(state.fd(), INSTALLATIONS, 0o711, &shown)?;
        state::require_root_only(dir.as_fd(), &shown)?;
        let held = Held {
            state,
            dir,
            helper_dir,
            _lock: lock,
        };
        if held.current()?.is_none() {
            let _switching = held.switching()?;
            match migrate(state, held.fd()) {
                Ok(_) => {}
                Err(f) if !need_current => tracing::warn!(error = %f, "installation/ not migrated"),
                Err(f) => return Err(f),
            }
        }
        Ok(held)
    }

    /// The installations lock, exclusively: mounts wait while it is held,
    /// so only renames happen under it.
    fn switching(&self) -> Result<lock::Lock> {
        lock_installations(self.state, self.helper_dir.as_fd(), LockMode::Exclusive)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    fn shown(&self, name: &str) -> PathBuf {
        self.state.shown(&format!("{INSTALLATIONS}/{name}"))
    }

    fn current(&self) -> Result<Option<GenerationId>> {
        read_current(self.state, self.fd())
    }

    fn open(&self, name: &str) -> Result<OwnedFd> {
        fsx::open_dir(self.fd(), name, &self.shown(name))
    }

    /// Sets `name` aside, for [`sweep_in_background`].
    fn discard(&self, name: &str) -> Result<bool> {
        discard::set_aside(self.fd(), name, &self.shown(name))
    }

    /// Discards a .next/ left by an earlier update, unless that update still
    /// runs (its unit, or processes of its builder): an import must not pull
    /// the tree from under a running steamcmd.
    fn discard_stale_next(&self, sibling: Option<&Sibling>) -> Result<()> {
        self.refuse_while_building(sibling)?;
        if self.discard(NEXT)? {
            tracing::info!("discarded the .next/ an earlier update left");
        }
        Ok(())
    }

    /// Refuses while the other unit that builds .next/ runs (`sibling`), or
    /// while the builder of .next/ has processes: an update or a
    /// verification (two units, one update user) is building it.
    fn refuse_while_building(&self, sibling: Option<&Sibling>) -> Result<()> {
        if let Some(sibling) = sibling {
            if let Some(active) = sibling.running()? {
                let unit = sibling.unit;
                return Err(Failure::new(
                    Kind::Conflict,
                    format!(
                        "{unit} is {active}: {} is its tree",
                        self.shown(NEXT).display()
                    ),
                )
                .hint(format!("wait for it to finish (systemctl status {unit})")));
            }
        }
        if let Ok(Some(next)) = fsx::open_dir_if_exists(self.fd(), NEXT, &self.shown(NEXT)) {
            let uid = fsx::stat_fd(&next, &self.shown(NEXT))?.st_uid;
            let running = if uid == 0 {
                Vec::new()
            } else {
                procs::processes_of(uid)
            };
            if !running.is_empty() {
                return Err(Failure::new(
                    Kind::Conflict,
                    format!(
                        "an update or verification is building {} (processes of uid {uid}: {})",
                        self.shown(NEXT).display(),
                        running.join(", ")
                    ),
                )
                .hint("wait for it to finish (systemctl status left4me-update left4me-verify)"));
            }
        }
        Ok(())
    }

    fn manifest_of(&self, id: &GenerationId) -> Option<Manifest> {
        manifest_of(self.state, self.fd(), id)
    }
}

/// The other unit that builds .next/ as the same update user (`--sibling`:
/// left4me-update.service names left4me-verify.service), and the systemctl
/// that says whether it runs. Processes of the update user
/// are not enough to tell: between the other unit's root prepare and its
/// steamcmd there are none, and a prepare or abort in that instant took
/// its tree for a stale one (the service user could time `update` requests
/// starts to defeat root's verification that way).
pub(crate) struct Sibling<'a> {
    pub(crate) unit: &'a str,
    pub(crate) systemctl: &'a Path,
}

impl Sibling<'_> {
    /// The unit's state while systemd runs it; None when it does not. What
    /// systemctl cannot tell is an error: either guess would discard the
    /// other unit's tree or hold this one up.
    fn running(&self) -> Result<Option<String>> {
        let unit = self.unit;
        let cannot_tell = |why: String| {
            Failure::new(
                Kind::Unexpected,
                format!("cannot tell whether {unit} runs: {why}"),
            )
            .hint("check that systemd runs and --systemctl names its systemctl")
        };
        let out = std::process::Command::new(self.systemctl)
            .args(["show", "--property", "ActiveState", "--value", "--", unit])
            .output()
            .map_err(|e| cannot_tell(format!("run {}: {e}", self.systemctl.display())))?;
        let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() {
            return Err(cannot_tell(format!(
                "{} show {unit}: {}: {}",
                self.systemctl.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        match sibling_state(&said) {
            Some(true) => Ok(Some(said)),
            Some(false) => Ok(None),
            None => Err(cannot_tell(format!("systemd says ActiveState={said:?}"))),
        }
    }
}

/// Whether a unit in this ActiveState (systemd.unit(5)'s list) runs; None
/// for a state systemd does not document.
fn sibling_state(active: &str) -> Option<bool> {
    match active {
        "inactive" | "failed" => Some(false),
        "active" | "activating" | "deactivating" | "reloading" | "refreshing" | "maintenance" => {
            Some(true)
        }
        _ => None,
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct PrepareOutcome {
    pub(crate) result: &'static str,
    pub(crate) path: PathBuf,
    pub(crate) owner: String,
    /// The generation copied; none on a fresh host (steamcmd downloads all).
    pub(crate) from: Option<String>,
    pub(crate) copy: CopyStats,
}

/// (Re)creates .next/ for `owner` as a copy of the current generation.
/// `verify`: a verification's copy, in full whatever `mode` says, and only
/// of an existing current generation.
pub(crate) fn prepare(
    state: &State,
    owner: &str,
    mode: CopyMode,
    verify: bool,
    service: &ServiceUser,
    sibling: Option<&Sibling>,
) -> Result<PrepareOutcome> {
    let user = UpdateUser::resolve(owner, service)?;
    let held = Held::take(state, true)?;
    held.discard_stale_next(sibling)?;
    let from = held.current()?;
    if verify && from.is_none() {
        return Err(Failure::new(
            Kind::Missing,
            format!(
                "nothing to verify: {} names no generation",
                held.shown(CURRENT).display()
            ),
        )
        .hint("install the game first (systemctl start left4me-update.service)"));
    }
    let mode = if verify { CopyMode::Copy } else { mode };
    rustix::fs::mkdirat(held.fd(), NEXT, Mode::from_raw_mode(0o700))
        .map_err(|e| Failure::os(&held.shown(NEXT), "create directory", e))?;
    let next = held.open(NEXT)?;
    let fallback = match mode {
        CopyMode::Auto => Fallback::HardLink,
        CopyMode::Copy => Fallback::Copy,
    };
    let copy = match &from {
        Some(id) => {
            let src = held.open(id.as_str()).map_err(|f| {
                f.hint(format!(
                    "{} names {id}, which is gone; write an existing generation's name to it",
                    held.shown(CURRENT).display()
                ))
            })?;
            tree::copy(
                src.as_fd(),
                next.as_fd(),
                (user.uid, user.gid),
                fallback,
                &held.shown(NEXT),
            )?
        }
        None => CopyStats::default(),
    };
    fsx::chown_fd(next.as_fd(), user.uid, user.gid, &held.shown(NEXT))?;
    // The update user's alone while it builds: no other account can open a
    // file in it (commit renews the user's files anyway).
    fsx::chmod_fd(next.as_fd(), 0o700, &held.shown(NEXT))?;
    tracing::info!(
        from = from.as_ref().map(GenerationId::as_str),
        reflinked = copy.reflinked,
        hard_linked = copy.hard_linked,
        copied = copy.copied,
        "prepared .next/ for {}",
        user.name
    );
    Ok(PrepareOutcome {
        result: "prepared",
        path: held.shown(NEXT),
        owner: user.name,
        from: from.map(|id| id.to_string()),
        copy,
    })
}

#[derive(Debug, Serialize)]
pub(crate) struct CommitOutcome {
    /// "committed", or "unchanged" when the build equals the current one;
    /// a verification: "verified" (nothing differs) or "repaired" (the
    /// repaired tree committed).
    pub(crate) result: &'static str,
    pub(crate) generation: String,
    pub(crate) previous: Option<String>,
    pub(crate) build_id: Option<String>,
    pub(crate) previous_build_id: Option<String>,
    pub(crate) taken_over: TakeOverStats,
    pub(crate) removed: Vec<String>,
    /// Instances asked to restart onto it (policy `now`).
    pub(crate) restarted: Vec<String>,
    /// The same build as `previous`: the files of the tree that differ from
    /// it (what validate repaired).
    pub(crate) differing: Option<Differing>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Differing {
    pub(crate) count: usize,
    /// The first ten, relative to the tree.
    pub(crate) first: Vec<String>,
}

/// What happens after the switch.
pub(crate) struct After {
    pub(crate) keep: usize,
    pub(crate) restart: RestartPolicy,
    pub(crate) systemctl: PathBuf,
}

/// Takes .next/ over and makes it current (docs/updates.md, the six steps).
/// On any refusal .next/ is discarded and `current` is not touched.
/// `steamcmd_log`: the output `generation fetch` kept, which must hold
/// steamcmd's success line.
/// `verify`: a verification's tree, which commits only at the current
/// generation's build (docs/updates.md, "Verification").
pub(crate) fn commit(
    state: &State,
    after: &After,
    steamcmd_log: Option<&Path>,
    verify: bool,
) -> Result<CommitOutcome> {
    commit_held(&Held::take(state, true)?, after, steamcmd_log, verify)
}

fn commit_held(
    held: &Held<'_>,
    after: &After,
    steamcmd_log: Option<&Path>,
    verify: bool,
) -> Result<CommitOutcome> {
    let next_shown = held.shown(NEXT);
    let next = match fsx::open_dir_if_exists(held.fd(), NEXT, &next_shown)? {
        Some(fd) => fd,
        None => {
            return Err(Failure::new(
                Kind::Missing,
                format!("nothing to commit: {} does not exist", next_shown.display()),
            )
            .hint(
                "left4me-overlay generation prepare makes it; left4me-update.service runs both",
            ));
        }
    };
    match take_next(held, next.as_fd(), after, steamcmd_log, verify) {
        Ok(outcome) => Ok(outcome),
        Err(f) => {
            if let Err(e) = held.discard(NEXT) {
                tracing::warn!(error = %e, "could not discard the refused .next/");
            }
            Err(f)
        }
    }
}

fn take_next(
    held: &Held<'_>,
    next: BorrowedFd<'_>,
    after: &After,
    steamcmd_log: Option<&Path>,
    verify: bool,
) -> Result<CommitOutcome> {
    let next_shown = held.shown(NEXT);
    let top = fsx::stat_fd(next, &next_shown)?;
    let builder = (top.st_uid != 0).then_some(top.st_uid);
    // From here on the update user cannot reach the tree by path.
    fsx::chown_fd(next, 0, 0, &next_shown)?;
    fsx::chmod_fd(next, 0o700, &next_shown)?;
    if let Some(uid) = builder {
        let left = procs::processes_of(uid);
        if !left.is_empty() {
            return Err(Failure::new(
                Kind::Conflict,
                format!(
                    "processes of the update user (uid {uid}) still run: {}; they could still write into the new generation",
                    left.join(", ")
                ),
            )
            .hint("stop them (they belong to left4me-update.service's run); nothing was switched"));
        }
    }
    // The update user's processes are gone: its log no longer changes.
    if let Some(log) = steamcmd_log {
        require_success_line(log)?;
    }
    // Root's files in .next/ are hard links prepare made to the current
    // generation's; any other root file was linked in by someone else.
    let (previous, budget) = match (builder, held.current()?) {
        (None, _) => (None, None),
        (Some(_), None) => (Some(Default::default()), None),
        (Some(_), Some(id)) => {
            let previous =
                tree::previous(held.open(id.as_str())?.as_fd(), &shown_id(held.state, &id))?;
            let budget = tree::copy_budget(&previous);
            (Some(previous), Some(budget))
        }
    };
    // A staging dir an earlier, killed commit left is discarded first.
    held.discard(RENEW)?;
    rustix::fs::mkdirat(held.fd(), RENEW, Mode::from_raw_mode(0o700))
        .map_err(|e| Failure::os(&held.shown(RENEW), "create directory", e))?;
    let staging = held.open(RENEW)?;
    let taken_over = tree::take_over(
        next,
        builder.map(|uid| (uid, top.st_gid)),
        previous.as_ref(),
        budget,
        (staging.as_fd(), &held.shown(RENEW)),
        &next_shown,
    );
    held.discard(RENEW)?;
    let taken_over = taken_over?;
    if builder.is_some() {
        // The platform workaround's Windows run (docs/updates.md).
        let removed = tree::prune_windows(next, &next_shown)?;
        if removed.count > 0 {
            tracing::info!(
                first = %removed.first_words(),
                "removed {} Windows-only files (*.exe, *.dll)",
                removed.count
            );
        }
    }
    if !is_regular(next, "srcds_run") {
        return Err(Failure::new(
            Kind::Incomplete,
            format!(
                "{} has no srcds_run: not a Left 4 Dead 2 dedicated server",
                next_shown.display()
            ),
        )
        .hint("look at steamcmd's output in the journal (journalctl -u left4me-update)"));
    }
    let manifest = read_manifest(next, &next_shown)?;
    if manifest.as_ref().is_some_and(|m| !m.fully_installed) {
        return Err(Failure::new(
            Kind::Incomplete,
            format!(
                "{}: the app is not fully installed (StateFlags is not 4): the download stopped half-way",
                next_shown.join(MANIFEST).display()
            ),
        )
        .hint("run the update again; steamcmd continues where it stopped"));
    }
    if builder.is_some() && manifest.as_ref().is_none_or(|m| m.build_id.is_none()) {
        return Err(Failure::new(
            Kind::Incomplete,
            format!(
                "{}: no app manifest with a build id: steamcmd did not install the app",
                next_shown.join(MANIFEST).display()
            ),
        )
        .hint("look at steamcmd's output in the journal (journalctl -u left4me-update)"));
    }
    let build_id = manifest.and_then(|m| m.build_id);
    let previous = held.current()?;
    let previous_build_id = previous
        .as_ref()
        .and_then(|id| held.manifest_of(id))
        .and_then(|m| m.build_id);
    if verify {
        refuse_another_build(
            previous.as_ref(),
            previous_build_id.as_deref(),
            build_id.as_deref(),
        )?;
    }
    let mut differing = None;
    if let (Some(prev), Some(new), Some(prev_id)) = (&previous_build_id, &build_id, &previous) {
        // The same build: what steamcmd changed is what validate repaired
        // (docs/updates.md, "Verification"). Nothing: switch nothing;
        // something: the repaired tree becomes a generation of its own, the
        // current one is never written.
        if (builder.is_some() || verify) && prev == new {
            let differ = tree::differing(next, &next_shown, held.open(prev_id.as_str())?.as_fd())?;
            if differ.count > 0 {
                tracing::warn!(
                    build = %new,
                    generation = %prev_id,
                    first = %differ.first_words(),
                    "validate repaired {} files that differ from generation {prev_id} of the same build; committing the repaired tree",
                    differ.count
                );
            }
            differing = Some(Differing {
                count: differ.count,
                first: differ
                    .first
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            });
        }
        if prev == new && differing.as_ref().is_none_or(|d| d.count == 0) {
            held.discard(NEXT)?;
            tracing::info!(build = %new, generation = %prev_id, "already at this build; nothing switched");
            return Ok(CommitOutcome {
                result: if verify { "verified" } else { "unchanged" },
                generation: prev_id.to_string(),
                previous: Some(prev_id.to_string()),
                build_id,
                previous_build_id,
                taken_over,
                removed: Vec::new(),
                restarted: Vec::new(),
                differing,
            });
        }
    }
    // Everything steamcmd wrote reaches the disk before `current` names it:
    // after a crash, current names a complete generation.
    rustix::fs::syncfs(next).map_err(|e| Failure::os(&next_shown, "syncfs", e))?;
    let id = GenerationId::new_at(now_secs(), &committed(held.fd(), &held.shown(""))?);
    fsx::chmod_fd(next, 0o755, &next_shown)?;
    {
        let _switching = held.switching()?;
        rustix::fs::renameat_with(
            held.fd(),
            NEXT,
            held.fd(),
            id.as_str(),
            RenameFlags::NOREPLACE,
        )
        .map_err(|e| Failure::os(&next_shown, "rename to the new generation", e))?;
        write_current(held.fd(), &id, &held.shown(CURRENT))?;
    }
    tracing::info!(
        generation = %id,
        previous = previous.as_ref().map(GenerationId::as_str),
        build = build_id.as_deref(),
        previous_build = previous_build_id.as_deref(),
        "switched the current generation"
    );
    // The switch is done; what follows only tidies up and is reported, not failed.
    let removed = match collect(held, after.keep) {
        Ok(r) => r.removed,
        Err(f) => {
            tracing::warn!(error = %f, "old generations not collected");
            Vec::new()
        }
    };
    let restarted = match after.restart {
        RestartPolicy::Now => restart_onto(held.state, &id, &after.systemctl),
        RestartPolicy::Never | RestartPolicy::WhenEmpty => Vec::new(),
    };
    Ok(CommitOutcome {
        result: if verify { "repaired" } else { "committed" },
        generation: id.to_string(),
        previous: previous.map(|p| p.to_string()),
        build_id,
        previous_build_id,
        taken_over,
        removed,
        restarted,
        differing,
    })
}

/// A verification commits only a tree of the build `current` has: a newer
/// build from Steam would make it an update nobody asked for, and without
/// a build id on either side nothing can be compared.
fn refuse_another_build(
    current: Option<&GenerationId>,
    current_build: Option<&str>,
    fetched: Option<&str>,
) -> Result<()> {
    let Some(current) = current else {
        return Err(
            Failure::new(Kind::Missing, "nothing to verify: no current generation")
                .hint("install the game first (systemctl start left4me-update.service)"),
        );
    };
    match (current_build, fetched) {
        (Some(c), Some(f)) if c == f => Ok(()),
        (c, f) => Err(Failure::new(
            Kind::Conflict,
            format!(
                "not verified: Steam has build {}, generation {current} is build {}; a verification does not update, so nothing was committed or switched",
                f.unwrap_or("unknown"),
                c.unwrap_or("unknown")
            ),
        )
        .hint("update first (left4me update, or systemctl start left4me-update.service), then verify the new generation")),
    }
}

/// `systemctl try-restart --no-block` for every mounted instance on another
/// generation than `id`. Failures are logged: the switch stands.
fn restart_onto(state: &State, id: &GenerationId, systemctl: &Path) -> Vec<String> {
    let used = match in_use(state) {
        Ok(u) => u,
        Err(f) => {
            tracing::warn!(error = %f, "cannot tell which instances to restart");
            return Vec::new();
        }
    };
    let stale = used
        .by
        .iter()
        .filter(|(gen_id, _)| *gen_id != id)
        .flat_map(|(_, names)| names.iter())
        .chain(used.unknown.iter());
    let mut restarted = Vec::new();
    for name in stale {
        let unit = format!("left4me-server@{name}.service");
        match std::process::Command::new(systemctl)
            .args(["try-restart", "--no-block", &unit])
            .status()
        {
            Ok(s) if s.success() => {
                tracing::info!(instance = %name, generation = %id, "restarting onto the new generation");
                restarted.push(name.clone());
            }
            Ok(s) => {
                tracing::warn!(instance = %name, "{} try-restart {unit}: {s}", systemctl.display())
            }
            Err(e) => tracing::warn!(instance = %name, "run {}: {e}", systemctl.display()),
        }
    }
    restarted
}

#[derive(Debug, Serialize)]
pub(crate) struct AbortOutcome {
    /// "discarded", "nothing-to-discard" or "still-building".
    pub(crate) result: &'static str,
}

/// Discards .next/: the cleanup after a failed build. Not while the other
/// unit runs or its builder has processes: then the failed run is not the
/// one building it (an update refused while a verification builds, or the
/// other way round). When systemd cannot say, the tree is left and that is
/// the error.
pub(crate) fn abort(state: &State, sibling: Option<&Sibling>) -> Result<AbortOutcome> {
    let held = Held::take(state, false)?;
    match held.refuse_while_building(sibling) {
        Ok(()) => {}
        Err(f) if f.kind == Kind::Conflict => {
            tracing::warn!(error = %f, "left .next/ alone");
            return Ok(AbortOutcome {
                result: "still-building",
            });
        }
        Err(f) => return Err(f),
    }
    let found = held.discard(NEXT)?;
    if found {
        tracing::info!("discarded .next/");
    }
    Ok(AbortOutcome {
        result: if found {
            "discarded"
        } else {
            "nothing-to-discard"
        },
    })
}

pub(crate) struct ImportArgs<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) after: After,
}

/// Copies `dir` (root's argument, so trusted and opened as given) into
/// .next/ as root's, and commits it. Never hard links: the admin's tree
/// would stay writable under the generation.
pub(crate) fn import(state: &State, args: &ImportArgs<'_>) -> Result<CommitOutcome> {
    let held = Held::take(state, false)?;
    // Root's own import names no unit: processes of an update user are
    // what holds it off.
    held.discard_stale_next(None)?;
    let src = rustix::fs::open(
        args.dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Failure::os(args.dir, "open directory", e))?;
    rustix::fs::mkdirat(held.fd(), NEXT, Mode::from_raw_mode(0o700))
        .map_err(|e| Failure::os(&held.shown(NEXT), "create directory", e))?;
    let next = held.open(NEXT)?;
    let copied = tree::copy(
        src.as_fd(),
        next.as_fd(),
        (0, 0),
        Fallback::Copy,
        &held.shown(NEXT),
    );
    if let Err(f) = copied {
        held.discard(NEXT)?;
        return Err(f);
    }
    commit_held(&held, &args.after, None, false)
}

/// steamcmd's output as `generation fetch` kept it, in the unit's
/// RuntimeDirectory (the update user's, made fresh for every run, so only
/// this run's output is there). Untrusted: opened without following a
/// symlink, refused if it is not a regular file or has other hard links,
/// read to a bound; only compared against the success line.
fn require_success_line(log: &Path) -> Result<()> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name().and_then(|n| n.to_str())) else {
        return Err(Failure::new(
            Kind::InvalidConfig,
            format!("--steamcmd-log {} names no file", log.display()),
        )
        .hint("pass the log generation fetch wrote (left4me-update.service does)"));
    };
    let dir = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Failure::os(dir, "open directory", e))?;
    let text = fsx::read_small_file(dir.as_fd(), name, log, super::steam::LOG_MAX + (64 << 10))?;
    let success = String::from_utf8_lossy(&text)
        .lines()
        .any(|l| l.trim() == super::steam::SUCCESS_LINE);
    if !success {
        return Err(Failure::new(
            Kind::Incomplete,
            format!(
                "{}: steamcmd's output of this run has no line '{}'",
                log.display(),
                super::steam::SUCCESS_LINE
            ),
        )
        .hint("look at steamcmd's output in the journal (journalctl -u left4me-update)"));
    }
    Ok(())
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Collected {
    pub(crate) removed: Vec<String>,
    pub(crate) kept: Vec<String>,
    /// Mounted instances whose generation is unknown; nothing is removed
    /// while there are any.
    pub(crate) unknown_in_use: Vec<String>,
}

/// Removes what neither is current, nor is among the newest `keep`, nor is
/// used by a mounted instance.
pub(crate) fn gc(state: &State, keep: usize) -> Result<Collected> {
    let held = Held::take(state, false)?;
    collect(&held, keep)
}

/// The choice and the renames aside happen under the installations lock (a
/// mount that picked a generation has recorded it); the deletion after it.
fn collect(held: &Held<'_>, keep: usize) -> Result<Collected> {
    let switching = held.switching()?;
    let used: InUse = in_use(held.state)?;
    let all = committed(held.fd(), &held.state.shown(INSTALLATIONS))?;
    let current = held.current()?;
    let mut out = Collected {
        unknown_in_use: used.unknown.clone(),
        ..Collected::default()
    };
    if !used.unknown.is_empty() {
        tracing::info!(
            instances = used.unknown.join(" "),
            "mounted without a recorded generation (by an older helper, or from installation/); removing nothing until they restart"
        );
    }
    for (id, remove) in all
        .iter()
        .zip(to_remove(&all, current.as_ref(), &used, keep))
    {
        if !remove {
            out.kept.push(id.to_string());
            continue;
        }
        discard::set_aside(held.fd(), id.as_str(), &shown_id(held.state, id))?;
        tracing::info!(generation = %id, "removed an old generation");
        out.removed.push(id.to_string());
    }
    drop(switching);
    Ok(out)
}

/// A generation's deletion takes seconds (tens of thousands of files); a
/// longer one goes on alone (a slow disk, or a stalled sweep).
const SWEEP_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Deletes what the generation verbs set aside in installations/, in a
/// detached child that holds no generation lock (discard::in_background):
/// called once the verb has let its locks go. The trees are read-only
/// layers the games may still have open, and through an overlay a game's
/// getdents of a directory only the generation has runs inside that
/// directory's own read, its kernel lock held (a FUSE fault on its buffer
/// holds it for as long as the user likes): a sweep waiting there under
/// the update lock failed every later update and gc with exit 16
/// (twenty-first review, reasoned from the kernel's overlayfs readdir).
///
/// The verb waits for the sweep up to [`SWEEP_WAIT`]: in the update and
/// verification units, whose stop ends what is left in their cgroup (so
/// no process of the update user's outlives a run), a sweep cut short is
/// finished by the next generation verb's.
pub(crate) fn sweep_in_background(state: &State) {
    let job = (|| -> Result<Option<discard::Background>> {
        let Some(runtime) = state.open_runtime()? else {
            return Ok(None);
        };
        let Some(helper_dir) = state.open_helper_dir(runtime.as_fd())? else {
            return Ok(None);
        };
        let shown = state.shown(INSTALLATIONS);
        let Some(dir) = fsx::open_admin_dir_if_exists(state.fd(), INSTALLATIONS, &shown)? else {
            return Ok(None);
        };
        let sweeper_lock = lock::open(
            helper_dir.as_fd(),
            lock::GENERATION_SWEEPER,
            &state.shown(&InstancePaths::in_helper_dir(lock::GENERATION_SWEEPER)),
        )?;
        Ok(Some(discard::Background {
            dir,
            shown,
            sweeper_lock,
        }))
    })();
    match job {
        Ok(Some(job)) => discard::in_background(job, SWEEP_WAIT),
        Ok(None) => {}
        Err(f) => {
            tracing::warn!(error = %f, "discarded generations not deleted; the next generation verb tries again")
        }
    }
}

/// For each of `all` (oldest first), whether gc removes it: not the current
/// one, not among the newest `keep`, not used by a mounted instance, and
/// nothing at all while any mounted instance's generation is unknown (it
/// might be any of them).
fn to_remove(
    all: &[GenerationId],
    current: Option<&GenerationId>,
    used: &InUse,
    keep: usize,
) -> Vec<bool> {
    let newest = all.len().saturating_sub(keep);
    all.iter()
        .enumerate()
        .map(|(i, id)| {
            used.unknown.is_empty()
                && i < newest
                && Some(id) != current
                && !used.by.contains_key(id)
        })
        .collect()
}

#[derive(Debug, Serialize)]
pub(crate) struct Listed {
    pub(crate) id: String,
    pub(crate) current: bool,
    pub(crate) build_id: Option<String>,
    pub(crate) used_by: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Listing {
    pub(crate) current: Option<String>,
    pub(crate) generations: Vec<Listed>,
    /// A .next/ exists: an update runs, or one failed and left it.
    pub(crate) next_pending: bool,
    /// Mounted instances whose generation is unknown (see `gc`).
    pub(crate) unknown_in_use: Vec<String>,
}

/// Every generation, oldest first. Migrates a legacy installation/ first,
/// so an admin who looks sees the new layout.
pub(crate) fn list(state: &State) -> Result<Listing> {
    if super::current::current(state)?.is_none() {
        drop(Held::take(state, false)?);
    }
    let used = in_use(state)?;
    let Some(dir) = super::current::open_dir(state)? else {
        return Ok(Listing {
            current: None,
            generations: Vec::new(),
            next_pending: false,
            unknown_in_use: used.unknown,
        });
    };
    let current = read_current(state, dir.as_fd())?;
    let generations = committed(dir.as_fd(), &state.shown(INSTALLATIONS))?
        .into_iter()
        .map(|id| Listed {
            current: Some(&id) == current.as_ref(),
            build_id: manifest_of(state, dir.as_fd(), &id).and_then(|m| m.build_id),
            used_by: used.by.get(&id).cloned().unwrap_or_default(),
            id: id.to_string(),
        })
        .collect();
    Ok(Listing {
        current: current.map(|c| c.to_string()),
        generations,
        next_pending: is_dir(dir.as_fd(), NEXT),
        unknown_in_use: used.unknown,
    })
}

fn manifest_of(state: &State, dir: BorrowedFd<'_>, id: &GenerationId) -> Option<Manifest> {
    let shown = shown_id(state, id);
    let fd = fsx::open_dir(dir, id.as_str(), &shown).ok()?;
    read_manifest(fd.as_fd(), &shown).ok().flatten()
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    /// systemd.unit(5)'s ActiveState values: the sibling's tree is kept
    /// from activating (its prepare) to deactivating (its abort); an
    /// unknown word is not read as either.
    #[rstest]
    #[case("inactive", Some(false))]
    #[case("failed", Some(false))]
    #[case("activating", Some(true))]
    #[case("active", Some(true))]
    #[case("deactivating", Some(true))]
    #[case("reloading", Some(true))]
    #[case("refreshing", Some(true))]
    #[case("maintenance", Some(true))]
    #[case("", None)]
    #[case("Activating", None)]
    fn a_sibling_runs_in_every_state_but_inactive_and_failed(
        #[case] state: &str,
        #[case] runs: Option<bool>,
    ) {
        assert_eq!(sibling_state(state), runs);
    }

    #[test_log::test]
    fn restart_policy_labels_are_clap_and_serde_names() {
        for p in RestartPolicy::value_variants() {
            assert_eq!(p.to_possible_value().unwrap().get_name(), p.label());
            assert_eq!(serde_json::to_value(p).unwrap(), p.label());
        }
    }

    /// A verification commits only at the current generation's build.
    #[rstest]
    #[case::same_build(Some("7"), Some("7"), None)]
    #[case::steam_moved_on(Some("7"), Some("8"), Some(Kind::Conflict))]
    #[case::current_without_a_build(None, Some("8"), Some(Kind::Conflict))]
    #[case::tree_without_a_build(Some("7"), None, Some(Kind::Conflict))]
    #[test_log::test]
    fn a_verification_takes_only_the_current_build(
        #[case] current_build: Option<&str>,
        #[case] fetched: Option<&str>,
        #[case] refused: Option<Kind>,
    ) {
        let id = GenerationId::parse("20261201T000000Z").unwrap();
        let got = refuse_another_build(Some(&id), current_build, fetched).err();
        assert_eq!(got.as_ref().map(|f| f.kind), refused, "{got:?}");
        if let Some(f) = got {
            assert!(
                f.message.starts_with("not verified: Steam has build"),
                "{f:?}"
            );
        }
        let none = refuse_another_build(None, Some("7"), Some("7")).unwrap_err();
        assert_eq!(none.kind, Kind::Missing);
    }

    /// Generations g1 (oldest) .. g5; `current`, the ids mounted instances
    /// use, and whether some mounted instance's generation is unknown.
    /// `removed` lists what gc may remove, as a string of indexes.
    #[rstest]
    #[case::keeps_the_newest_two(2, Some(5), &[], false, "123")]
    #[case::keeps_the_current_one_even_when_old(2, Some(1), &[], false, "23")]
    #[case::keeps_what_a_mounted_instance_uses(2, Some(5), &[2], false, "13")]
    #[case::keep_zero_still_keeps_current_and_used(0, Some(5), &[3], false, "124")]
    #[case::keep_more_than_exist(9, Some(5), &[], false, "")]
    #[case::no_current_yet(1, None, &[], false, "1234")]
    #[case::an_unknown_generation_in_use_keeps_everything(0, Some(5), &[], true, "")]
    #[test_log::test]
    fn gc_removes_only_what_nothing_needs(
        #[case] keep: usize,
        #[case] current: Option<usize>,
        #[case] used: &[usize],
        #[case] unknown: bool,
        #[case] removed: &str,
    ) {
        let id = |i: usize| GenerationId::parse(&format!("2026120{i}T000000Z")).unwrap();
        let all: Vec<GenerationId> = (1..=5).map(id).collect();
        let mut in_use = InUse::default();
        for &i in used {
            in_use.by.insert(id(i), vec![format!("inst{i}")]);
        }
        if unknown {
            in_use.unknown.push("old".into());
        }
        let verdict = to_remove(&all, current.map(id).as_ref(), &in_use, keep);
        let got: String = (1..=5)
            .zip(verdict)
            .filter(|(_, r)| *r)
            .map(|(i, _)| i.to_string())
            .collect();
        assert_eq!(got, removed);
    }
}
