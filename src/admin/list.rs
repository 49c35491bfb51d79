//! `left4me list`: every instance with what systemd, the health check's
//! record and the disk say about it. One `systemctl list-units` for all
//! units (one D-Bus call); everything else is read from files, so 32
//! instances cost one fork.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::systemd;
use crate::envfile::InstanceConfig;
use crate::error::Result;
use crate::fsx;
use crate::health::RUN_DIR;
use crate::health::record::Record;
use crate::state::{self, INSTANCES, ListedNames, RUNTIME, UPPER};
use crate::status;

#[derive(Debug, Serialize)]
pub(crate) struct Listing {
    pub(crate) instances: Vec<Line>,
    /// Instances never started (no runtime/NAME) past the first 1,024 by
    /// name, left out; none: instances/ was too large to read
    /// (`state::listed_names`).
    pub(crate) not_shown: Option<u64>,
    #[serde(skip)]
    instances_dir: PathBuf,
}

#[derive(Debug, Serialize)]
pub(crate) struct Line {
    pub(crate) name: String,
    /// running (answered the health check since it started), starting,
    /// stopping, failed or stopped.
    pub(crate) state: &'static str,
    /// systemd's ActiveState and SubState of left4me-server@NAME.
    pub(crate) active_state: String,
    pub(crate) sub_state: String,
    /// L4D2_PORT of instance.env; none when it is missing, unreadable to
    /// the caller or invalid (`config_error` says which).
    pub(crate) port: Option<u16>,
    /// The client port and, unless SourceTV is off, the SourceTV port, by
    /// the helper's rule (src/ports.rs).
    pub(crate) client_port: Option<u16>,
    pub(crate) tv_port: Option<u16>,
    pub(crate) config_error: Option<String>,
    /// The installation generation the health check reports.
    pub(crate) generation: Option<String>,
    pub(crate) players: Option<u8>,
    pub(crate) max_players: Option<u8>,
    pub(crate) map: Option<String>,
    /// Restarts the health check caused within its budget window.
    pub(crate) restarts_by_check: Option<usize>,
    /// Allocated bytes of runtime/NAME/upper (none: not readable).
    pub(crate) upper_bytes: Option<u64>,
    /// The walk stopped at its limit: upper_bytes is a lower bound.
    pub(crate) upper_truncated: bool,
    /// Seconds since this start of the server, as its health check
    /// recorded it (the check starts and restarts with the server); none
    /// without a health check.
    pub(crate) uptime_s: Option<u64>,
}

pub(crate) fn listing(state_dir: &Path) -> Result<Listing> {
    let state = super::open_state_dir(state_dir)?;
    let ListedNames { names, not_shown } = state::listed_names(state.as_fd(), state_dir)?;
    let units = if names.is_empty() {
        Default::default()
    } else {
        systemd::list_units(&systemd::server("*"))?
    };
    let now_ms = crate::health::now_ms();
    let mut left = status::LISTING_ENTRIES;
    let instances = names
        .iter()
        .map(|name| {
            let (active, sub) = units
                .get(&systemd::server(name.as_str()))
                .map_or(("inactive", "dead"), |(a, s)| (a.as_str(), s.as_str()));
            line(state_dir, name.as_str(), active, sub, now_ms, &mut left)
        })
        .collect();
    Ok(Listing {
        instances,
        not_shown,
        instances_dir: state_dir.join(INSTANCES),
    })
}

fn line(
    state_dir: &Path,
    name: &str,
    active: &str,
    sub: &str,
    now_ms: u64,
    left: &mut u64,
) -> Line {
    let (ports, config_error) = match read_config(state_dir, name) {
        Ok(c) => (Some(c.ports), None),
        Err(e) => (None, Some(e)),
    };
    let record = Record::load(Path::new(RUN_DIR), name).ok().flatten();
    let up = matches!(active, "active" | "reloading");
    // An answer of this start, not of an earlier one kept in the record.
    let answered = match &record {
        Some(r) => r
            .last_answer
            .as_ref()
            .is_some_and(|a| a.time_ms >= r.started_ms),
        // No record: no health check runs for it; systemd's word is all.
        None => true,
    };
    let uptime_s = record
        .as_ref()
        .filter(|_| up)
        .map(|r| now_ms.saturating_sub(r.started_ms) / 1000);
    let state = match active {
        "active" | "reloading" if answered => "running",
        "active" | "reloading" | "activating" => "starting",
        "deactivating" => "stopping",
        "failed" => "failed",
        _ => "stopped",
    };
    let running = state == "running" || state == "starting";
    let answer = record
        .as_ref()
        .and_then(|r| r.last_answer.as_ref())
        .filter(|_| running);
    let (upper_bytes, upper_truncated) = upper_usage(state_dir, name, left);
    Line {
        name: name.to_owned(),
        state,
        active_state: active.to_owned(),
        sub_state: sub.to_owned(),
        port: ports.map(|p| p.game),
        client_port: ports.map(|p| p.client),
        tv_port: ports.filter(|p| p.tv_enabled).map(|p| p.tv),
        config_error,
        generation: record.as_ref().and_then(|r| r.generation.clone()),
        players: answer.map(|a| a.players),
        max_players: answer.map(|a| a.max_players),
        map: answer.map(|a| a.map.clone()),
        restarts_by_check: record.as_ref().map(|r| r.restarts_ms.len()),
        upper_bytes,
        upper_truncated,
        uptime_s,
    }
}

/// instance.env through the helper's own reader and parser (the caller may
/// not be allowed to read it: then only the ports are unknown).
fn read_config(state_dir: &Path, name: &str) -> std::result::Result<InstanceConfig, String> {
    super::read_instance_env(state_dir, name).map_err(|f| f.message)
}

/// runtime/NAME/upper's size, walked as the helper's `status` walks it
/// (an admin may run this as root over a tree the game writes): opened
/// beneath the state dir without following a symlink or entering a mount,
/// one statx per entry that asks no filesystem server, no mount point
/// entered, at most 64 levels deep and 100,000 entries, and no more than
/// are `left` of the listing's budget.
fn upper_usage(state_dir: &Path, name: &str, left: &mut u64) -> (Option<u64>, bool) {
    let rel = format!("{RUNTIME}/{name}/{UPPER}");
    let shown = state_dir.join(&rel);
    let upper = super::open_state_dir(state_dir).ok().and_then(|state| {
        fsx::open_dir_if_exists(state.as_fd(), &rel, &shown)
            .ok()
            .flatten()
    });
    match upper {
        Some(fd) => {
            let usage = status::usage(fd.as_fd(), left);
            (Some(usage.bytes), usage.truncated)
        }
        None => (None, false),
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_duration(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

/// `text` for a terminal: the map and the generation come from the health
/// record, which the service user can write, and a map name from A2S may
/// hold any byte; an admin may read this as root, so control characters
/// (C0, DEL, C1: escape sequences, cursor moves) are shown escaped.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

pub(crate) fn table(listing: &Listing) -> String {
    let dash = || "-".to_owned();
    let mut rows = vec![
        [
            "NAME",
            "STATE",
            "PORTS",
            "GENERATION",
            "PLAYERS",
            "MAP",
            "RESTARTS",
            "UPPER",
            "UPTIME",
        ]
        .map(str::to_owned),
    ];
    for l in &listing.instances {
        rows.push([
            l.name.clone(),
            l.state.to_owned(),
            match (l.port, l.client_port) {
                // game/client/SourceTV, as srcds is told to bind them.
                (Some(g), Some(c)) => {
                    format!("{g}/{c}/{}", l.tv_port.map_or_else(dash, |t| t.to_string()))
                }
                _ => dash(),
            },
            l.generation.as_deref().map_or_else(dash, printable),
            match (l.players, l.max_players) {
                (Some(p), Some(m)) => format!("{p}/{m}"),
                _ => dash(),
            },
            l.map.as_deref().map_or_else(dash, printable),
            l.restarts_by_check.map_or_else(dash, |r| r.to_string()),
            l.upper_bytes.map_or_else(dash, |b| {
                human_bytes(b) + if l.upper_truncated { "+" } else { "" }
            }),
            l.uptime_s.map_or_else(dash, human_duration),
        ]);
    }
    let widths: Vec<usize> = (0..9)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out += cells.join("  ").trim_end();
        out.push('\n');
    }
    out += &state::not_shown_line(listing.not_shown, &listing.instances_dir);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test_log::test]
    fn sizes_and_durations_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(61), "1m01s");
        assert_eq!(human_duration(3 * 3600 + 120), "3h02m");
        assert_eq!(human_duration(2 * 86400 + 3600), "2d01h");
    }

    #[test_log::test]
    fn control_characters_from_the_record_are_shown_escaped() {
        assert_eq!(printable("c1m1_hotel"), "c1m1_hotel");
        assert_eq!(
            printable("x\u{1b}]52;c;AAAA\u{7}y"),
            "x\\u{1b}]52;c;AAAA\\u{7}y"
        );
        assert_eq!(printable("a\u{9b}2Jb"), "a\\u{9b}2Jb");
        assert_eq!(printable("ä\tb"), "ä\\tb");
    }

    #[test_log::test]
    fn the_walk_counts_a_tree_and_follows_no_link() {
        let state = tempfile::tempdir().unwrap();
        let upper = state.path().join("runtime/i/upper");
        std::fs::create_dir_all(upper.join("d")).unwrap();
        std::fs::write(upper.join("d/f"), vec![1u8; 10000]).unwrap();
        std::os::unix::fs::symlink("/", upper.join("d/up")).unwrap();
        let mut left = 10;
        let (bytes, truncated) = upper_usage(state.path(), "i", &mut left);
        let bytes = bytes.unwrap();
        assert!((10000..1_000_000).contains(&bytes), "{bytes}");
        assert!(!truncated);
        assert_eq!(left, 7, "d, d/f and d/up taken from the listing's budget");
        assert_eq!(
            upper_usage(state.path(), "missing", &mut left),
            (None, false)
        );
        // The listing's budget spent: counted no further, shown as truncated.
        let (_, truncated) = upper_usage(state.path(), "i", &mut 2);
        assert!(truncated);
        // upper/ itself a symlink: not followed, no size.
        std::fs::rename(&upper, state.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(state.path().join("elsewhere"), &upper).unwrap();
        assert_eq!(upper_usage(state.path(), "i", &mut left), (None, false));
    }
}
