//! What /proc says about other processes: who keeps a mount busy (umount's
//! EBUSY) and who still runs as the update user (commit's refusal). Both
//! are reports for a message, read as root from the kernel's own files; a
//! process that exits meanwhile is simply not listed.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::time::{Duration, Instant};

use crate::mounts::parse_mountinfo;

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

/// At most this many holders are named; the rest are counted.
const MAX_NAMED: usize = 20;
/// Of a process's maps and of another namespace's mountinfo, at most this
/// much is read: the service user decides how long its own are.
const MAX_READ: u64 = 1 << 20;
/// The whole scan stops after this long; what it found so far is reported.
/// A host's few hundred processes take tens of milliseconds; a busy mount
/// the service user holds on purpose costs root no more than this per
/// umount (thirteenth review: at 5 s, repeated stops of held instances kept
/// root's scans on both cores).
const SCAN_TIME: Duration = Duration::from_secs(1);

/// Who keeps `mount_point` busy: processes with their cwd, root, an open
/// file or a mapping inside it (one line per process, the first found), and
/// mount namespaces other than ours that still contain it (the failure the
/// reference unit's commit describes: a process left in a service's private
/// namespace pins the slave copy). Bounded, since a process of the service
/// user's can hold the mount with as many fds and mappings as it likes
/// (twelfth review: 20,000 fds made a 243 MB report): [`MAX_NAMED`] lines
/// and a count of the rest, [`MAX_READ`] bytes of each maps and mountinfo
/// file, [`SCAN_TIME`] in all. Names and paths are the service user's to
/// choose: escaped (`escape_debug`), so none can drive root's terminal
/// (eleventh review).
pub(crate) fn holders(mount_point: &str) -> Vec<String> {
    let inside = |p: &str| {
        p == mount_point
            || p.strip_prefix(mount_point)
                .is_some_and(|r| r.starts_with('/'))
    };
    let deadline = Instant::now() + SCAN_TIME;
    let own_ns = fs::read_link("/proc/self/ns/mnt").ok();
    let mut found = Vec::new();
    let mut more = 0usize;
    // Per namespace: the first few processes in it, and how many in all.
    let mut namespaces: BTreeMap<String, (Vec<String>, usize)> = BTreeMap::new();
    let mut cut_short = false;
    for pid in pids() {
        if Instant::now() > deadline {
            cut_short = true;
            break;
        }
        let base = format!("/proc/{pid}");
        let ns = fs::read_link(format!("{base}/ns/mnt")).ok();
        if let Some(ns) = ns.filter(|ns| Some(ns) != own_ns.as_ref()) {
            let ns = ns.to_string_lossy().into_owned();
            // One mountinfo read per namespace, not per process in it.
            let holds_it = namespaces.contains_key(&ns)
                || parse_mountinfo(&read_at_most(&format!("{base}/mountinfo")))
                    .iter()
                    .any(|m| inside(&m.mount_point));
            if holds_it {
                let (named, n) = namespaces.entry(ns).or_default();
                if named.len() < 5 {
                    named.push(who(&pid, &base));
                }
                *n += 1;
            }
            continue;
        }
        let Some(what) = holds(&base, &inside, deadline) else {
            continue;
        };
        if found.len() == MAX_NAMED {
            more += 1;
            continue;
        }
        found.push(format!("{}: {what}", who(&pid, &base)));
    }
    if more > 0 {
        found.push(format!("and {more} more processes"));
    }
    let listed = namespaces.len().min(MAX_NAMED);
    for (ns, (named, n)) in namespaces.iter().take(listed) {
        let rest = match n - named.len() {
            0 => String::new(),
            rest => format!(" and {rest} more"),
        };
        found.push(format!(
            "mount namespace {ns} still contains it, held by {}{rest}",
            named.join(", ")
        ));
    }
    if namespaces.len() > listed {
        found.push(format!(
            "and {} more mount namespaces",
            namespaces.len() - listed
        ));
    }
    if cut_short {
        found.push(format!(
            "(the search stopped after {} s; there may be more)",
            SCAN_TIME.as_secs()
        ));
    }
    found
}

/// "pid PID (COMM)", the name escaped.
fn who(pid: &str, base: &str) -> String {
    let comm = fs::read_to_string(format!("{base}/comm")).unwrap_or_default();
    format!("pid {pid} ({})", comm.trim().escape_debug())
}

/// How the process at `base` (/proc/PID) holds what `inside` matches, if
/// it does: the first of its cwd, root, open files and mappings that is.
/// Its open files are looked at until `deadline` only (a process may have
/// half a million).
fn holds(base: &str, inside: &impl Fn(&str) -> bool, deadline: Instant) -> Option<String> {
    for (link, what) in [("cwd", "working directory"), ("root", "root directory")] {
        if let Ok(target) = fs::read_link(format!("{base}/{link}")) {
            if inside(&target.to_string_lossy()) {
                return Some(format!("{what} {}", shown(&target)));
            }
        }
    }
    let fds = fs::read_dir(format!("{base}/fd"))
        .into_iter()
        .flatten()
        .flatten();
    for fd in fds {
        if Instant::now() > deadline {
            return None;
        }
        let Ok(target) = fs::read_link(fd.path()) else {
            continue;
        };
        if inside(&target.to_string_lossy()) {
            return Some(format!("open file {}", shown(&target)));
        }
    }
    let maps = read_at_most(&format!("{base}/maps"));
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| inside(p))
        .map(|path| format!("mapped file {}", path.escape_debug()))
}

/// The first [`MAX_READ`] bytes of a /proc file, lossily as text.
fn read_at_most(path: &str) -> String {
    let mut bytes = Vec::new();
    if let Ok(f) = fs::File::open(path) {
        let _ = f.take(MAX_READ).read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
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

    /// However many processes hold it, the report names [`MAX_NAMED`], one
    /// line each whatever they hold inside, and counts the rest.
    #[test_log::test]
    fn the_holders_report_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..3 {
            fs::write(dir.path().join(format!("f{i}")), "").unwrap();
        }
        // Each holds it three ways: its cwd and two open files.
        let mut children: Vec<std::process::Child> = (0..MAX_NAMED + 5)
            .map(|_| {
                std::process::Command::new("sh")
                    .args(["-c", "exec 3<f0 4<f1; exec sleep 30"])
                    .current_dir(dir.path())
                    .spawn()
                    .unwrap()
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let found = holders(&dir.path().to_string_lossy());
        for c in &mut children {
            c.kill().unwrap();
            c.wait().unwrap();
        }
        let named: Vec<&str> = found
            .iter()
            .filter_map(|l| l.strip_prefix("pid ")?.split(' ').next())
            .collect();
        assert_eq!(named.len(), MAX_NAMED, "{found:#?}");
        let mut unique = named.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            named.len(),
            "a process listed twice: {found:#?}"
        );
        let more = found
            .iter()
            .find_map(|l| l.strip_prefix("and ")?.strip_suffix(" more processes"))
            .unwrap_or_else(|| panic!("no count of the rest: {found:#?}"));
        assert!(more.parse::<usize>().unwrap() >= 5, "{found:#?}");
    }
}
