//! The instance model, shared by the verbs and by `status`: its config, the
//! layer stack it asks for, the stack record of a live mount, and whether its
//! overlay is mounted on runtime/<i>/merged right now. Nothing here creates
//! or changes anything but the records in root-only runtime/.left4me/.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use serde::Serialize;

use crate::envfile::{self, InstanceConfig};
use crate::error::{Failure, Kind};
use crate::fsx::{self, libc_mode};
use crate::mounts;
use crate::name::InstanceName;
use crate::state::{self, InstancePaths, MERGED, Own, State};

/// What a layer is in the stack, top first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    Upper,
    Instance,
    Overlay,
    Installation,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Upper => "upper",
            Role::Instance => "instance",
            Role::Overlay => "overlay",
            Role::Installation => "installation",
        }
    }

    fn parse(word: &str) -> Option<Role> {
        [
            Role::Upper,
            Role::Instance,
            Role::Overlay,
            Role::Installation,
        ]
        .into_iter()
        .find(|r| r.as_str() == word)
    }
}

/// A lower layer: its role and its path relative to the state dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layer {
    pub(crate) role: Role,
    pub(crate) rel: String,
}

/// overlayfs shows this as the mount's source; it is how the helper knows a
/// mount on merged/ is its own.
pub(crate) fn mount_source(name: &InstanceName) -> String {
    format!("{MOUNT_SOURCE_PREFIX}{name}")
}

/// Whether `m` is `name`'s overlay: the source only its mounts carry.
pub(crate) fn is_overlay_of(m: &mounts::MountEntry, name: &InstanceName) -> bool {
    m.fstype == "overlay" && m.source == mount_source(name)
}

/// What every [`mount_source`] starts with.
pub(crate) const MOUNT_SOURCE_PREFIX: &str = "left4me:";

/// Reads and validates instances/<i>/instance.env.
pub(crate) fn read_config(state: &State, paths: &InstancePaths) -> Result<InstanceConfig, Failure> {
    let rel = paths.env();
    let shown = state.shown(&rel);
    let bytes =
        fsx::read_small_file(state.fd(), &rel, &shown, envfile::MAX_BYTES).map_err(|f| {
            if f.kind == Kind::Missing {
                Failure::new(
                    Kind::Missing,
                    format!("no instance {}: {}", paths.name(), f.message),
                )
                .hint(format!(
                    "create {} with at least L4D2_PORT=<port>",
                    shown.display()
                ))
            } else {
                f
            }
        })?;
    InstanceConfig::parse(&bytes, &shown.display().to_string())
}

/// The lower layers `config` asks for, highest priority first, each opened
/// without following a symlink, ending in `game`, the installation's layer
/// as the caller resolved it (generation::layer_rel); `None` on a host with
/// no game installed yet, where `status` still shows the instance's own
/// layers.
pub(crate) fn layer_stack(
    state: &State,
    paths: &InstancePaths,
    config: &InstanceConfig,
    game: Option<&str>,
) -> Result<Vec<(Layer, OwnedFd)>, Failure> {
    let mut layers = Vec::new();
    let rel = paths.layer();
    if let Some(fd) = fsx::open_dir_if_exists(state.fd(), &rel, &state.shown(&rel))? {
        layers.push((
            Layer {
                role: Role::Instance,
                rel,
            },
            fd,
        ));
    }
    for overlay in &config.overlays {
        let rel = state::overlay_rel(overlay);
        let fd = fsx::open_admin_dir(state.fd(), &rel, &state.shown(&rel)).map_err(|f| {
            if f.kind == Kind::Missing {
                f.hint(format!(
                    "create it, or remove {overlay} from L4D2_OVERLAYS in {}",
                    state.shown(&paths.env()).display()
                ))
            } else {
                f
            }
        })?;
        layers.push((
            Layer {
                role: Role::Overlay,
                rel,
            },
            fd,
        ));
    }
    if let Some(rel) = game {
        layers.push(game_layer(state, rel)?);
    }
    Ok(layers)
}

/// The installation's layer `rel` (generation::layer_rel), opened.
pub(crate) fn game_layer(state: &State, rel: &str) -> Result<(Layer, OwnedFd), Failure> {
    let fd = fsx::open_admin_dir(state.fd(), rel, &state.shown(rel)).map_err(|f| {
        if f.kind == Kind::Missing {
            f.hint("installations/current names a generation that is gone: write an existing one's name to it (left4me-overlay generation list)")
        } else {
            f
        }
    })?;
    Ok((
        Layer {
            role: Role::Installation,
            rel: rel.to_owned(),
        },
        fd,
    ))
}

/// The layer stack a mount was made with, one `role rel` line per layer,
/// top first, in root-only runtime/.left4me/.
pub(crate) fn render_record(layers: &[Layer]) -> String {
    layers
        .iter()
        .map(|l| format!("{} {}\n", l.role.as_str(), l.rel))
        .collect()
}

/// `None` for a record in another format (an older helper's): the stack is
/// then unknown rather than guessed.
pub(crate) fn parse_record(text: &str) -> Option<Vec<Layer>> {
    text.lines()
        .map(|line| {
            let (role, rel) = line.split_once(' ')?;
            Some(Layer {
                role: Role::parse(role)?,
                rel: rel.to_owned(),
            })
        })
        .collect()
}

pub(crate) fn read_record(helper_dir: BorrowedFd<'_>, paths: &InstancePaths) -> Option<Vec<Layer>> {
    let fd = rustix::fs::openat(
        helper_dir,
        paths.own(Own::Record),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()?;
    let text = std::io::read_to_string(std::fs::File::from(fd)).ok()?;
    parse_record(&text)
}

/// Whether runtime/<i>/merged carries this instance's overlay right now.
/// Whether `name`'s overlay is on runtime/<name>/merged according to
/// `table` (mountinfo read once for many instances); anything unclear
/// (a symlink, a foreign mount, a failed stat) counts as not mounted.
pub(crate) fn mounted_per(
    table: &[mounts::MountEntry],
    runtime_i: BorrowedFd<'_>,
    name: &InstanceName,
) -> bool {
    let Ok(Some(entry)) = fsx::entry(runtime_i, MERGED) else {
        return false;
    };
    entry.kind == libc_mode::S_IFDIR
        && entry.mount_root
        && table
            .iter()
            .any(|m| m.id == entry.mnt_id && is_overlay_of(m, name))
}

pub(crate) fn mounted_here(
    runtime_i: BorrowedFd<'_>,
    name: &InstanceName,
    shown_merged: &Path,
) -> Result<Option<mounts::MountEntry>, Failure> {
    // status takes no lock: a mount seen by statx can be gone from
    // mountinfo a moment later. Look again before calling it foreign.
    for _ in 0..3 {
        let entry =
            fsx::entry(runtime_i, MERGED).map_err(|e| Failure::os(shown_merged, "stat", e))?;
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
            Some(m) if is_overlay_of(&m, name) => {
                return Ok(Some(m));
            }
            Some(m) => {
                return Err(Failure::new(
                    Kind::Conflict,
                    format!(
                        "{} has a mount that is not this instance's overlay ({} from {}); refusing to touch it",
                        shown_merged.display(),
                        // Whoever mounted it chose these (a FUSE fsname):
                        // control characters reach no terminal or journal.
                        m.fstype.escape_debug(),
                        m.source.escape_debug()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test_log::test]
    fn roles_serialise_to_the_documented_strings() {
        for role in [
            Role::Upper,
            Role::Instance,
            Role::Overlay,
            Role::Installation,
        ] {
            assert_eq!(
                serde_json::to_value(role).unwrap(),
                serde_json::json!(role.as_str())
            );
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
    }

    #[test_log::test]
    fn records_round_trip_and_old_ones_are_unknown() {
        let layers = vec![
            Layer {
                role: Role::Instance,
                rel: "instances/vs1/layer".into(),
            },
            Layer {
                role: Role::Overlay,
                rel: "overlays/sm".into(),
            },
            Layer {
                role: Role::Installation,
                rel: "installation".into(),
            },
        ];
        let text = render_record(&layers);
        assert_eq!(
            text,
            "instance instances/vs1/layer\noverlay overlays/sm\ninstallation installation\n"
        );
        assert_eq!(parse_record(&text), Some(layers));
        // 0.1.0 wrote bare paths.
        assert_eq!(parse_record("overlays/sm\ninstallation\n"), None);
        assert_eq!(parse_record("bogus installation\n"), None);
    }
}
