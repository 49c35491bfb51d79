//! `L4D2_CPUS`: the CPUs an instance's game may run on, as a cpu list
//! (`1`, `0-3`, `0,2,4-5`: cpuset(7)'s "List format"). The helper validates
//! it, checks it against the CPUs the host has at mount, and writes it in
//! canonical form to runtime/.left4me/NAME.cpus; the overlay unit hands that
//! to systemd as the server unit's AllowedCPUs= (a cgroup cpuset), which no
//! thread of the game can leave: sched_setaffinity(2) only narrows within it.

use std::collections::BTreeSet;

use crate::error::{Failure, Kind};

pub(crate) const KEY: &str = "L4D2_CPUS";
/// [`CpuList::parse`]'s syntax as a regular expression, for the contract.
pub(crate) const PATTERN: &str = "^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$";
/// Where the kernel lists the CPUs it runs on now, in the same format.
const HOST_ONLINE: &str = "/sys/devices/system/cpu/online";
/// Far above any host; keeps a typo like `0-4000000000` from building a set
/// of billions.
const MAX_CPU: u32 = 8191;

/// A non-empty set of CPU numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CpuList(BTreeSet<u32>);

impl CpuList {
    pub(crate) fn parse(text: &str) -> Result<CpuList, String> {
        let mut set = BTreeSet::new();
        for (i, part) in text.split(',').enumerate() {
            let at = |why: &str| format!("item {} ({part:?}) {why}", i + 1);
            let number = |s: &str| -> Result<u32, String> {
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(at("is not a CPU number or a range like 2-5"));
                }
                s.parse::<u32>()
                    .ok()
                    .filter(|&n| n <= MAX_CPU)
                    .ok_or_else(|| at(&format!("names a CPU above {MAX_CPU}")))
            };
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => {
                    let n = number(part)?;
                    (n, n)
                }
            };
            if lo > hi {
                return Err(at("is a range that runs backwards"));
            }
            set.extend(lo..=hi);
        }
        Ok(CpuList(set))
    }

    /// Canonical list format: ascending, ranges collapsed (`0-2,5`).
    pub(crate) fn render(&self) -> String {
        let mut out: Vec<String> = Vec::new();
        let mut iter = self.0.iter().copied().peekable();
        while let Some(start) = iter.next() {
            let mut end = start;
            while iter.peek() == Some(&(end + 1)) {
                end += 1;
                iter.next();
            }
            out.push(if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            });
        }
        out.join(",")
    }

    /// Refused when it names a CPU `host` does not have.
    pub(crate) fn check_against(&self, host: &CpuList, origin: &str) -> Result<(), Failure> {
        let missing = CpuList(self.0.difference(&host.0).copied().collect());
        if missing.0.is_empty() {
            return Ok(());
        }
        Err(Failure::new(
            Kind::UnknownCpu,
            format!(
                "{origin}: {KEY}={} names CPU {} that this host does not have (online: {})",
                self.render(),
                missing.render(),
                host.render()
            ),
        )
        .hint(format!(
            "set {KEY} to CPUs of {} (or remove it to use every CPU)",
            host.render()
        )))
    }

    /// The CPUs the kernel runs on now.
    pub(crate) fn host() -> Result<CpuList, Failure> {
        let text = std::fs::read_to_string(HOST_ONLINE).map_err(|e| {
            Failure::new(Kind::Unexpected, format!("read {HOST_ONLINE}: {e}"))
                .hint("is /sys mounted?")
        })?;
        CpuList::parse(text.trim()).map_err(|why| {
            Failure::new(
                Kind::Unexpected,
                format!("{HOST_ONLINE} is not a cpu list: {why}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("1", "1")]
    #[case("0-3", "0-3")]
    #[case("5,0,2,4-5,1", "0-2,4-5")]
    #[case("3-3", "3")]
    #[case("8191", "8191")]
    #[test_log::test]
    fn canonical(#[case] text: &str, #[case] canon: &str) {
        assert_eq!(CpuList::parse(text).unwrap().render(), canon);
    }

    #[rstest]
    #[case("", "item 1 (\"\") is not a CPU number")]
    #[case("1,", "item 2 (\"\") is not a CPU number")]
    #[case(" 1", "is not a CPU number")]
    #[case("-1", "is not a CPU number")]
    #[case("1-", "is not a CPU number")]
    #[case("+1", "is not a CPU number")]
    #[case("3-1", "runs backwards")]
    #[case("0-4000000000", "above 8191")]
    #[case("8192", "above 8191")]
    #[case("a", "is not a CPU number")]
    #[test_log::test]
    fn refused(#[case] text: &str, #[case] why: &str) {
        let e = CpuList::parse(text).unwrap_err();
        assert!(e.contains(why), "{e}");
    }

    #[test_log::test]
    fn host_check_names_the_missing_cpus() {
        let host = CpuList::parse("0-1").unwrap();
        assert!(
            CpuList::parse("1")
                .unwrap()
                .check_against(&host, "f")
                .is_ok()
        );
        let e = CpuList::parse("1-3,7")
            .unwrap()
            .check_against(&host, "f")
            .unwrap_err();
        assert_eq!(e.kind, Kind::UnknownCpu);
        assert_eq!(
            e.message,
            "f: L4D2_CPUS=1-3,7 names CPU 2-3,7 that this host does not have (online: 0-1)"
        );
    }
}
