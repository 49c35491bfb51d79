//! `L4D2_CPUS`: the CPUs an instance's game may run on, as a cpu list
//! (`1`, `0-3`, `0,2,4-5`: cpuset(7)'s "List format"). The helper validates
//! it, checks it against the CPUs the host has at mount, and writes it in
//! canonical form, as the server unit's AllowedCPUs= (a cgroup cpuset), which
//! no thread of the game can leave: sched_setaffinity(2) only narrows within
//! it. The mount sets it through `systemctl set-property --runtime` (path
//! from the unit's command line) only when there is something to set: the
//! instance has `L4D2_CPUS`, or had it earlier in this boot and must get
//! every CPU back ([`apply`]).

use std::os::fd::BorrowedFd;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Failure, Kind};
use crate::fsx;

pub(crate) const KEY: &str = "L4D2_CPUS";
/// [`CpuList::parse`]'s syntax as a regular expression, for the contract.
pub(crate) const PATTERN: &str = "^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$";
/// Where the kernel lists the CPUs it runs on now, in the same format.
const HOST_ONLINE: &str = "/sys/devices/system/cpu/online";
/// Far above any host; keeps a typo like `0-4000000000` from building a set
/// of billions.
const MAX_CPU: u32 = 8191;

/// A non-empty set of CPU numbers, 0 to [`MAX_CPU`], one bit each: parsing
/// `0-8191` sets 128 words, not 8,192 entries of a tree, since every
/// listing of all instances parses the instance.env of each (twenty-sixth
/// review: 0.63 ms a name, 70 s for `left4me list` over 100,000 instance
/// dirs of the user's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CpuList([u64; WORDS]);

const WORDS: usize = (MAX_CPU as usize + 1) / 64;

impl CpuList {
    fn empty() -> CpuList {
        CpuList([0; WORDS])
    }

    /// Sets CPUs `lo` to `hi` (both at most [`MAX_CPU`]), a word at a time.
    fn insert_range(&mut self, lo: u32, hi: u32) {
        let mut cpu = lo as usize;
        let end = hi as usize + 1;
        while cpu < end {
            let (word, bit) = (cpu / 64, cpu % 64);
            let count = (64 - bit).min(end - cpu);
            let bits = if count == 64 {
                u64::MAX
            } else {
                ((1u64 << count) - 1) << bit
            };
            self.0[word] |= bits;
            cpu += count;
        }
    }

    fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// The CPUs set, in order, skipping empty words.
    fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &word)| {
            (0..64u32)
                .filter(move |b| word & (1 << b) != 0)
                .map(move |b| i as u32 * 64 + b)
        })
    }

    /// Ranges may overlap, but together they list at most `MAX_CPU + 1`
    /// CPUs: the file is the service user's, and 9,000 copies of
    /// `0-8191` in one 64 KiB line cost root 2.6 s of inserts at every
    /// parse (fourteenth review).
    pub(crate) fn parse(text: &str) -> Result<CpuList, String> {
        let mut set = CpuList::empty();
        let mut listed: u64 = 0;
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
            listed += u64::from(hi - lo) + 1;
            if listed > u64::from(MAX_CPU) + 1 {
                return Err(at(&format!(
                    "brings the CPUs listed to more than {}; list each once",
                    MAX_CPU + 1
                )));
            }
            set.insert_range(lo, hi);
        }
        Ok(set)
    }

    /// Canonical list format: ascending, ranges collapsed (`0-2,5`).
    pub(crate) fn render(&self) -> String {
        let mut out: Vec<String> = Vec::new();
        let mut iter = self.iter().peekable();
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
        let mut missing = self.clone();
        for (m, h) in missing.0.iter_mut().zip(host.0) {
            *m &= !h;
        }
        if missing.is_empty() {
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

/// Identifies the boot: a runtime property (`--runtime`, kept in
/// /run/systemd/system.control) lives exactly as long.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// Gives `left4me-server@NAME` the CPUs `want` (None: every CPU) before it
/// starts, forking `systemctl` only when that changes anything: with
/// `want`, always (a runtime setting may have been reverted meanwhile);
/// without, only if this helper pinned the instance earlier in this boot.
/// `record` (root-only, in runtime/.left4me/) says so: the boot id and the
/// list, written before the call (so a call that set it and then failed is
/// still undone later), removed once every CPU is given back. A pin of an
/// earlier boot went with it, as did its record's meaning.
pub(crate) fn apply(
    helper_dir: BorrowedFd<'_>,
    record: &str,
    record_shown: &Path,
    unit: &str,
    want: Option<&CpuList>,
    systemctl: &Path,
) -> Result<(), Failure> {
    let boot = std::fs::read_to_string(BOOT_ID)
        .map_err(|e| {
            Failure::new(Kind::Unexpected, format!("read {BOOT_ID}: {e}")).hint("is /proc mounted?")
        })?
        .trim()
        .to_owned();
    match want {
        Some(cpus) => {
            let list = cpus.render();
            fsx::write_replace(
                helper_dir,
                record,
                format!("{boot} {list}\n").as_bytes(),
                record_shown,
            )?;
            set_allowed(systemctl, unit, &list)
        }
        None => {
            let pinned = match fsx::read_small_file(helper_dir, record, record_shown, 256) {
                Ok(bytes) => bytes.split(|&b| b == b' ').next() == Some(boot.as_bytes()),
                Err(f) if f.kind == Kind::Missing => false,
                // Unreadable: it may say this boot; giving every CPU back is harmless.
                Err(_) => true,
            };
            if !pinned {
                return Ok(());
            }
            set_allowed(systemctl, unit, "")?;
            fsx::remove_file(helper_dir, record, record_shown)
        }
    }
}

/// Where `systemctl set-property --runtime` leaves its drop-ins, and the
/// one [`set_allowed`] makes (systemd's `50-PROPERTY.conf`).
pub(crate) const RUNTIME_CONTROL: &str = "/run/systemd/system.control";
const DROP_IN: &str = "50-AllowedCPUs.conf";

/// Removes the runtime drop-in [`set_allowed`] made for `unit` below
/// `control` ([`RUNTIME_CONTROL`]), once the instance is unmounted or its
/// mount failed: systemd keeps such a file until reboot, one per unit name,
/// so names started one after another (a failed mount is enough) filled
/// the host's /run, 4 KiB and two inodes a name (tenth review). While the
/// instance runs the file stays: a daemon-reload re-reads it. The setting
/// itself stays on the loaded unit until systemd unloads or reloads it, and
/// the next mount sets it again ([`apply`]). The directory goes too when
/// nothing else is in it.
pub(crate) fn forget(control: &Path, unit: &str) {
    let dir = control.join(format!("{unit}.d"));
    let file = dir.join(DROP_IN);
    match std::fs::remove_file(&file) {
        Ok(()) => tracing::info!("{unit}: removed {}", file.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!("{unit}: cannot remove {}: {e}", file.display());
            return;
        }
    }
    let _ = std::fs::remove_dir(&dir);
}

/// `systemctl set-property --runtime UNIT AllowedCPUs=LIST` (empty: every
/// CPU). A property change, not a job: it cannot wait on the server's
/// pending start job, and applied before the server starts (it is ordered
/// after the overlay unit), its cgroup is created with the cpuset.
fn set_allowed(systemctl: &Path, unit: &str, list: &str) -> Result<(), Failure> {
    let property = format!("AllowedCPUs={list}");
    let shown = format!(
        "{} set-property --runtime {unit} {property}",
        systemctl.display()
    );
    let status = Command::new(systemctl)
        .args(["set-property", "--runtime", unit, &property])
        .stdin(Stdio::null())
        .status()
        .map_err(|e| {
            Failure::new(Kind::Unexpected, format!("run {shown}: {e}"))
                .hint("check the --systemctl path in the overlay unit")
        })?;
    if !status.success() {
        return Err(Failure::new(Kind::Unexpected, format!("{shown}: {status}"))
            .hint("systemctl's own message is just above in the journal"));
    }
    tracing::info!("{unit}: {property}");
    Ok(())
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
    #[case("0-8191", "0-8191")]
    #[case("62-65,127-128,8127-8128,8190", "62-65,127-128,8127-8128,8190")]
    #[case("0-63,64-127", "0-127")]
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
    #[case("0-8191,0", "item 2 (\"0\") brings the CPUs listed to more than 8192")]
    #[test_log::test]
    fn refused(#[case] text: &str, #[case] why: &str) {
        let e = CpuList::parse(text).unwrap_err();
        assert!(e.contains(why), "{e}");
    }

    #[test_log::test]
    fn forget_removes_the_drop_in_and_only_an_empty_directory() {
        let control = tempfile::tempdir().unwrap();
        let unit = "left4me-server@vs1.service";
        let dir = control.path().join(format!("{unit}.d"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(DROP_IN), "[Service]\nAllowedCPUs=1\n").unwrap();
        forget(control.path(), unit);
        assert!(!dir.exists());
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(DROP_IN), "").unwrap();
        std::fs::write(dir.join("50-MemoryMax.conf"), "").unwrap();
        forget(control.path(), unit);
        assert!(!dir.join(DROP_IN).exists());
        assert!(
            dir.join("50-MemoryMax.conf").exists(),
            "another setting's drop-in stays"
        );
        forget(control.path(), "left4me-server@never.service");
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
