//! Why an instance's last mount or reset failed, kept where the service
//! group can read it: runtime/NAME/last-failure.json (root:GROUP 0640).
//!
//! The overlay and reset units are collected by PID 1 as soon as they fail
//! (`CollectMode=inactive-or-failed`): otherwise a failed unit of every name
//! the service user invents stays loaded, until systemd's limit on loaded
//! units stops the host from starting anything (docs/unit.md, "The
//! boundary"). Their exit status goes with them, so the web app and `left4me
//! start|reset` read the helper's own account here instead. Written only for
//! an instance that exists (instances/NAME is a directory, opened as every
//! user path is), so an invented name leaves nothing behind, and for a name
//! runtime/ does not hold yet only within the mount's cap on names;
//! removed by the next mount or reset that succeeds.

use std::os::fd::AsFd;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Failure, Result};
use crate::fsx;
use crate::name::InstanceName;
use crate::state::{InstancePaths, ServiceUser, State};

pub(crate) const FILE: &str = "last-failure.json";
/// A record is a few hundred bytes; the message is the helper's own.
const MAX_BYTES: u64 = 64 * 1024;
/// A message or hint kept in a record, at most (bytes).
const MAX_TEXT: usize = 2048;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LastFailure {
    /// `mount` or `reset`.
    pub verb: String,
    pub exit_code: u8,
    pub kind: String,
    pub message: String,
    pub hint: Option<String>,
    /// Unix seconds.
    pub time: u64,
}

/// Keeps `result`'s failure as the instance's last one, or removes the
/// record when it succeeded, and returns `result` unchanged. Keeping it is
/// best effort: a record that cannot be written is logged, never a second
/// failure.
pub(crate) fn kept<T>(
    state: &State,
    name: &InstanceName,
    user: &ServiceUser,
    verb: &str,
    result: Result<T>,
) -> Result<T> {
    if let Err(e) = keep(state, name, user, verb, result.as_ref().err()) {
        tracing::warn!("cannot keep why {verb} failed in runtime/{name}/{FILE}: {e}");
    }
    result
}

fn keep(
    state: &State,
    name: &InstanceName,
    user: &ServiceUser,
    verb: &str,
    failure: Option<&Failure>,
) -> Result<()> {
    let paths = InstancePaths::new(name);
    let dir = paths.dir();
    if !matches!(
        fsx::open_dir_if_exists(state.fd(), &dir, &state.shown(&dir)),
        Ok(Some(_))
    ) {
        return Ok(());
    }
    let rt_shown = state.shown(&paths.runtime());
    let Some(failure) = failure else {
        let Some(runtime) = state.open_runtime()? else {
            return Ok(());
        };
        return match fsx::open_dir_if_exists(runtime.as_fd(), name.as_str(), &rt_shown)? {
            Some(runtime_i) => fsx::remove_file(runtime_i.as_fd(), FILE, &rt_shown.join(FILE)),
            None => Ok(()),
        };
    };
    // A name runtime/ does not hold yet gets its dir only within the cap,
    // as from a mount: a start refused at the cap leaves nothing.
    crate::verbs::within_name_cap(state, &paths)?;
    let runtime_i =
        state.ensure_instance_runtime(state.ensure_runtime()?.as_fd(), &paths, user.gid)?;
    let record = LastFailure {
        verb: verb.to_owned(),
        exit_code: failure.kind.exit_code(),
        kind: failure.kind.label().to_owned(),
        message: clipped(&failure.message),
        hint: failure.hint.as_deref().map(clipped),
        time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let bytes = serde_json::to_vec(&record).unwrap_or_default();
    fsx::write_replace_shared(
        runtime_i.as_fd(),
        FILE,
        &bytes,
        user.gid,
        &rt_shown.join(FILE),
    )
}

/// A message or hint as kept: at most [`MAX_TEXT`] bytes. Messages quote
/// what the user wrote (a key of instance.env, up to 64 KiB long), and a
/// record past [`MAX_BYTES`] would be unreadable to its reader (twenty-fifth
/// review).
fn clipped(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

/// The record of `name`, if there is one written at or after `since`
/// (Unix seconds): for root or a member of the service group, in a
/// directory only root writes. Unreadable or malformed reads as none.
pub(crate) fn read(state_dir: &Path, name: &str, since: u64) -> Option<LastFailure> {
    let bytes = crate::health::read_small_file(
        &state_dir.join("runtime"),
        &format!("{name}/{FILE}"),
        MAX_BYTES,
    )
    .ok()
    .flatten()?;
    serde_json::from_slice::<LastFailure>(&bytes)
        .ok()
        .filter(|r| r.time >= since)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test_log::test]
    fn a_long_text_is_kept_clipped_on_a_character_boundary() {
        let long = "ä".repeat(5000);
        let kept = clipped(&long);
        assert!(kept.starts_with(&"ä".repeat(MAX_TEXT / 2)), "{kept}");
        assert!(kept.ends_with("… (10000 bytes in all)"), "{kept}");
        assert!(kept.len() < MAX_TEXT + 64);
        assert_eq!(clipped("short"), "short");
    }
}
