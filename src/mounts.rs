//! What the kernel says is mounted (/proc/self/mountinfo).

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
        .map(|text| parse_mountinfo(&text))
        .unwrap_or_default()
}

/// The entries of mountinfo text; a line cut short is skipped.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
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
