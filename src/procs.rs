//! What /proc says about other processes: who keeps a mount busy (umount's
//! EBUSY) and who still runs as the update user (commit's refusal). Both
//! are reports for a message, read as root from the kernel's own files; a
//! process that exits meanwhile is simply not listed.

use std::collections::BTreeMap;
use std::fs;

use crate::mounts::read_mountinfo;

/// Every process's id as /proc lists it, but this one's.
fn pids() -> impl Iterator<Item = String> {
    let me = std::process::id().to_string();
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(move |pid| pid.bytes().all(|b| b.is_ascii_digit()) && *pid != me)
}

/// Everyone who keeps `mount_point` busy: processes with their cwd, root, an
/// open file or a mapping inside it, and mount namespaces other than ours
/// that still contain it (the failure the reference unit's commit describes:
/// a process left in a service's private namespace pins the slave copy).
/// Names and paths are the service user's to choose: escaped
/// (`escape_debug`), so none can drive root's terminal (eleventh review).
pub(crate) fn holders(mount_point: &str) -> Vec<String> {
    let inside = |p: &str| {
        p == mount_point
            || p.strip_prefix(mount_point)
                .is_some_and(|r| r.starts_with('/'))
    };
    let own_ns = fs::read_link("/proc/self/ns/mnt").ok();
    let mut found = Vec::new();
    let mut namespaces: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pid in pids() {
        let base = format!("/proc/{pid}");
        let comm = fs::read_to_string(format!("{base}/comm"))
            .unwrap_or_default()
            .trim()
            .escape_debug()
            .to_string();
        let who = format!("pid {pid} ({comm})");
        let ns = fs::read_link(format!("{base}/ns/mnt")).ok();
        if let Some(ns) = ns.filter(|ns| Some(ns) != own_ns.as_ref()) {
            let ns_name = ns.to_string_lossy().into_owned();
            if read_mountinfo(&format!("{base}/mountinfo"))
                .iter()
                .any(|m| inside(&m.mount_point))
            {
                namespaces.entry(ns_name).or_default().push(who.clone());
            }
            continue;
        }
        for (link, what) in [("cwd", "working directory"), ("root", "root directory")] {
            let target = fs::read_link(format!("{base}/{link}"));
            if let Some(target) = target.ok().filter(|t| inside(&t.to_string_lossy())) {
                found.push(format!("{who}: {what} {}", shown(&target)));
            }
        }
        let fds = fs::read_dir(format!("{base}/fd"))
            .into_iter()
            .flatten()
            .flatten();
        for target in fds.filter_map(|fd| fs::read_link(fd.path()).ok()) {
            if inside(&target.to_string_lossy()) {
                found.push(format!("{who}: open file {}", shown(&target)));
            }
        }
        let maps = fs::read_to_string(format!("{base}/maps")).unwrap_or_default();
        let mapped = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| inside(p));
        if let Some(path) = mapped {
            found.push(format!("{who}: mapped file {}", path.escape_debug()));
        }
    }
    for (ns, pids) in namespaces {
        let shown: Vec<&str> = pids.iter().take(5).map(String::as_str).collect();
        let more = if pids.len() > 5 {
            format!(" and {} more", pids.len() - 5)
        } else {
            String::new()
        };
        found.push(format!(
            "mount namespace {ns} still contains it, held by {}{more}",
            shown.join(", ")
        ));
    }
    found
}

fn shown(path: &std::path::Path) -> String {
    path.to_string_lossy().escape_debug().to_string()
}

/// The processes with `uid` among their user ids (real, effective, saved or
/// filesystem), as "PID (comm)".
pub(crate) fn processes_of(uid: u32) -> Vec<String> {
    let mut found = Vec::new();
    for pid in pids() {
        // Gone meanwhile: not running.
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or("")
                .to_owned()
        };
        let uids = field("Uid:");
        if uids.split_whitespace().any(|u| u.parse() == Ok(uid)) {
            found.push(format!("{pid} ({})", field("Name:").trim().escape_debug()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A holder whose working directory has a terminal escape in its name
    /// is listed with the escape shown, not sent.
    #[test_log::test]
    fn holders_are_listed_without_terminal_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let evil = dir.path().join("x\u{1b}]2;PWNED\u{7}\u{1b}[2J");
        fs::create_dir(&evil).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(&evil)
            .spawn()
            .unwrap();
        let found = holders(&dir.path().to_string_lossy());
        child.kill().unwrap();
        child.wait().unwrap();
        let line = found
            .iter()
            .find(|l| l.contains(&format!("pid {} ", child.id())))
            .unwrap_or_else(|| panic!("the sleep is not listed: {found:?}"));
        assert!(
            !line.contains('\u{1b}') && !line.contains('\u{7}'),
            "{line:?}"
        );
        assert!(line.contains("\\u{1b}]2;PWNED"), "{line:?}");
    }
}
