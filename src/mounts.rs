//! What the kernel says is mounted (/proc/self/mountinfo), and who keeps a
//! mount busy when umount fails with EBUSY.

use std::collections::BTreeMap;
use std::fs;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    pub(crate) id: u64,
    pub(crate) mount_point: String,
    pub(crate) fstype: String,
    pub(crate) source: String,
}

pub(crate) fn read_mountinfo(path: &str) -> Vec<MountEntry> {
    fs::read_to_string(path)
        .map(|text| text.lines().filter_map(parse_line).collect())
        .unwrap_or_default()
}

pub(crate) fn find_by_id(id: u64) -> Option<MountEntry> {
    read_mountinfo("/proc/self/mountinfo")
        .into_iter()
        .find(|m| m.id == id)
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
fn parse_line(line: &str) -> Option<MountEntry> {
    let (left, right) = line.split_once(" - ")?;
    let mut left = left.split(' ');
    let id = left.next()?.parse().ok()?;
    let mount_point = unescape(left.nth(3)?);
    let mut right = right.split(' ');
    let fstype = right.next()?.to_owned();
    let source = unescape(right.next()?);
    Some(MountEntry {
        id,
        mount_point,
        fstype,
        source,
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal `\NNN`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Everyone who keeps `mount_point` busy: processes with their cwd, root, an
/// open file or a mapping inside it, and mount namespaces other than ours
/// that still contain it (the failure the reference unit's commit describes:
/// a process left in a service's private namespace pins the slave copy).
pub(crate) fn holders(mount_point: &str) -> Vec<String> {
    let inside = |p: &str| {
        p == mount_point
            || p.strip_prefix(mount_point)
                .is_some_and(|r| r.starts_with('/'))
    };
    let own_ns = fs::read_link("/proc/self/ns/mnt").ok();
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    let mut namespaces: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return found;
    };
    for proc_entry in procs.flatten() {
        let pid = proc_entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let base = format!("/proc/{pid}");
        let comm = fs::read_to_string(format!("{base}/comm"))
            .unwrap_or_default()
            .trim()
            .to_owned();
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
                found.push(format!("{who}: {what} {}", target.display()));
            }
        }
        let fds = fs::read_dir(format!("{base}/fd"))
            .into_iter()
            .flatten()
            .flatten();
        for target in fds.filter_map(|fd| fs::read_link(fd.path()).ok()) {
            if inside(&target.to_string_lossy()) {
                found.push(format!("{who}: open file {}", target.display()));
            }
        }
        let maps = fs::read_to_string(format!("{base}/maps")).unwrap_or_default();
        let mapped = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .find(|p| inside(p));
        if let Some(path) = mapped {
            found.push(format!("{who}: mapped file {path}"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test_log::test]
    fn parses_mountinfo_lines() {
        let line = r"65 43 0:39 / /var/lib/left4me/runtime/a\040b/merged rw,relatime shared:1 - overlay left4me:vs1 rw,lowerdir=/x";
        let m = parse_line(line).unwrap();
        assert_eq!(m.id, 65);
        assert_eq!(m.mount_point, "/var/lib/left4me/runtime/a b/merged");
        assert_eq!(m.fstype, "overlay");
        assert_eq!(m.source, "left4me:vs1");
    }
}
