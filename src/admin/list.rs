//! `left4me list`: every instance with what systemd, the health check's
//! record and the disk say about it. One `systemctl list-units` for all
//! units (one D-Bus call); everything else is read from files, so 32
//! instances cost one fork.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::systemd;
use crate::envfile::InstanceConfig;
use crate::error::Result;
use crate::health::RUN_DIR;
use crate::health::record::Record;
use crate::name::InstanceName;
use crate::state::{INSTANCES, RUNTIME, UPPER};

/// Entries the size walk of one writable layer counts at most: a layer the
/// game filled with millions of files must not make `list` slow.
const WALK_LIMIT: u64 = 100_000;

#[derive(Debug, Serialize)]
pub(crate) struct Listing {
    pub(crate) instances: Vec<Line>,
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

/// Instance names: instances/ and runtime/ (an instance whose config was
/// removed still has its layer), valid names only, sorted.
fn names(state_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = [INSTANCES, RUNTIME]
        .iter()
        .filter_map(|d| fs::read_dir(state_dir.join(d)).ok())
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| InstanceName::parse(n).is_ok())
        .collect();
    names.sort();
    names.dedup();
    names
}

pub(crate) fn listing(state_dir: &Path) -> Result<Listing> {
    let names = names(state_dir);
    let units = if names.is_empty() {
        Default::default()
    } else {
        systemd::list_units(&systemd::server("*"))?
    };
    let now_ms = crate::health::now_ms();
    let instances = names
        .iter()
        .map(|name| {
            let (active, sub) = units
                .get(&systemd::server(name))
                .map_or(("inactive", "dead"), |(a, s)| (a.as_str(), s.as_str()));
            line(state_dir, name, active, sub, now_ms)
        })
        .collect();
    Ok(Listing { instances })
}

fn line(state_dir: &Path, name: &str, active: &str, sub: &str, now_ms: u64) -> Line {
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
    let (upper_bytes, upper_truncated) =
        upper_usage(&state_dir.join(RUNTIME).join(name).join(UPPER));
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

/// instance.env through the helper's own parser (the caller may not be
/// allowed to read it: then only the port is unknown).
fn read_config(state_dir: &Path, name: &str) -> std::result::Result<InstanceConfig, String> {
    let path = state_dir.join(INSTANCES).join(name).join("instance.env");
    let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    InstanceConfig::parse(&bytes, &path.display().to_string()).map_err(|f| f.message)
}

/// Allocated bytes below `dir` (as du counts them), without following a
/// symlink or crossing into another file system, at most WALK_LIMIT entries.
fn upper_usage(dir: &Path) -> (Option<u64>, bool) {
    let Ok(top) = fs::symlink_metadata(dir) else {
        return (None, false);
    };
    if !top.is_dir() {
        return (None, false);
    }
    let dev = top.dev();
    let mut bytes = top.blocks() * 512;
    let mut seen = 0u64;
    let mut stack: Vec<PathBuf> = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > WALK_LIMIT {
                return (Some(bytes), true);
            }
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != dev {
                continue;
            }
            bytes += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (Some(bytes), false)
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
            l.generation.clone().unwrap_or_else(dash),
            match (l.players, l.max_players) {
                (Some(p), Some(m)) => format!("{p}/{m}"),
                _ => dash(),
            },
            l.map.clone().unwrap_or_else(dash),
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
    fn the_walk_counts_a_tree_and_stops_at_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), vec![1u8; 10000]).unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("d/up")).unwrap();
        let (bytes, truncated) = upper_usage(dir.path());
        assert!(bytes.unwrap() >= 10000, "{bytes:?}");
        assert!(!truncated);
        assert_eq!(upper_usage(&dir.path().join("missing")), (None, false));
    }
}
