//! Prometheus metrics from the health check, for node exporter's textfile
//! collector (docs/metrics.md): no port of our own, no root. Each check
//! writes DIR/left4me_INSTANCE.prom after every query (and once at its
//! start), atomically, and the host-wide DIR/left4me_host.prom when that is
//! older than one query interval. A missing DIR means metrics are off:
//! nothing is written and nothing fails; any other write error is logged
//! once per run and the check goes on, since metrics must never stop the
//! health check itself.
//!
//! Names follow armsnyder/a2s-exporter (`a2s_server_up`,
//! `a2s_server_players`, `a2s_server_info`, ...), so its dashboards keep
//! working with `left4me_instance` in place of its `server_name`; what only
//! left4me knows is `left4me_*`.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::monitor::{Systemd, UPDATE_UNIT};
use super::record::{Phase, Record};
use super::server_unit;
use crate::a2s::{Answer, Info, QueryError};
use crate::generation::GenerationId;

/// Where the checks write (left4me-health@.service's ReadWritePaths=; the
/// package's tmpfiles line makes it, the service user's).
pub(crate) const DIR: &str = "/run/left4me-metrics";
pub(crate) const HOST_FILE: &str = "left4me_host.prom";

/// Upper bounds of the query latency histogram, seconds: a local answer
/// takes about a millisecond, the check's timeout is seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The per-instance file's name in DIR.
pub(crate) fn instance_file(instance: &str) -> String {
    format!("left4me_{instance}.prom")
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub(crate) fn observe(&mut self, seconds: f64) {
        for (c, le) in self.counts.iter_mut().zip(BUCKETS) {
            if seconds <= le {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// What the instance's server unit looks like to systemd; None where
/// systemd has no figure (accounting off, a systemd without MemoryPeak=).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Unit {
    pub cpu_seconds: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub memory_peak_bytes: Option<u64>,
    pub tasks: Option<u64>,
    pub restarts: Option<u64>,
}

/// systemd's properties over D-Bus (readable without privileges), through
/// the check's `systemctl show` that also reads MainPID: one source for the
/// cgroup's figures and NRestarts=, which the cgroup files do not have,
/// and no dependence on where systemd puts the unit's cgroup. A show that
/// fails leaves every figure unknown: metrics never stop the check.
pub(crate) fn read_unit(systemd: &impl Systemd, unit: &str) -> Unit {
    let props = systemd
        .show(
            unit,
            &[
                "CPUUsageNSec",
                "MemoryCurrent",
                "MemoryPeak",
                "TasksCurrent",
                "NRestarts",
            ],
        )
        .unwrap_or_default();
    // u64::MAX is how systemd says "unknown".
    let num = |k: &str| {
        props
            .get(k)
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&v| v != u64::MAX)
    };
    Unit {
        cpu_seconds: num("CPUUsageNSec").map(|ns| ns as f64 / 1e9),
        memory_bytes: num("MemoryCurrent"),
        memory_peak_bytes: num("MemoryPeak"),
        tasks: num("TasksCurrent"),
        restarts: num("NRestarts"),
    }
}

/// The state shown as `left4me_health_state{state=...}`: one is 1.
/// "silent" is a server that stopped answering but has not reached
/// L4D2_HEALTH_FAILURES yet; "changing-map" one that stopped answering after
/// it logged a map change, within L4D2_HEALTH_MAP_LOAD_SEC.
pub(crate) const STATES: [&str; 7] = [
    "grace",
    "answering",
    "silent",
    "changing-map",
    "restarting",
    "gave-up",
    "rolling-over",
];

fn state(record: &Record) -> &'static str {
    match record.phase {
        Phase::Grace => "grace",
        Phase::Checking if record.consecutive_failures > 0 => "silent",
        Phase::Checking => "answering",
        Phase::Restarting => "restarting",
        Phase::GaveUp => "gave-up",
        Phase::RollingOver => "rolling-over",
        Phase::ChangingMap => "changing-map",
    }
}

/// Label values are the game's and the service user's strings: escaped
/// as the text format requires, so none can add a line or a label.
fn esc(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The text of one instance's file.
pub(crate) fn render_instance(
    record: &Record,
    info: Option<&Info>,
    latency: &Histogram,
    unit: &Unit,
) -> String {
    let l = format!("left4me_instance=\"{}\"", esc(&record.instance));
    let mut o = String::new();
    let up = record.last_check.as_ref().is_some_and(|c| c.ok)
        && matches!(record.phase, Phase::Checking | Phase::RollingOver);
    head(
        &mut o,
        "a2s_server_up",
        "gauge",
        "Whether the last A2S_INFO query was answered.",
    );
    let _ = writeln!(o, "a2s_server_up{{{l}}} {}", u8::from(up));
    if let (true, Some(i)) = (up, info) {
        for (name, help, v) in [
            (
                "a2s_server_players",
                "Players on the server, bots included.",
                i.players,
            ),
            (
                "a2s_server_max_players",
                "Players the server says it can hold.",
                i.max_players,
            ),
            ("a2s_server_bots", "Bots on the server.", i.bots),
        ] {
            head(&mut o, name, "gauge", help);
            let _ = writeln!(o, "{name}{{{l}}} {v}");
        }
    }
    if let Some(i) = info {
        head(
            &mut o,
            "a2s_server_info",
            "gauge",
            "The last answer's text fields and the installation generation; always 1.",
        );
        let _ = writeln!(
            o,
            "a2s_server_info{{{l},server_name=\"{}\",map=\"{}\",folder=\"{}\",game=\"{}\",version=\"{}\",generation=\"{}\"}} 1",
            esc(&i.name),
            esc(&i.map),
            esc(&i.folder),
            esc(&i.game),
            esc(&i.version),
            esc(record.generation.as_deref().unwrap_or(""))
        );
    }
    head(
        &mut o,
        "left4me_health_state",
        "gauge",
        "The health check's state; the one that holds is 1 (silent: not answering, below the restart threshold).",
    );
    let now = state(record);
    for s in STATES {
        let _ = writeln!(
            o,
            "left4me_health_state{{{l},state=\"{s}\"}} {}",
            u8::from(s == now)
        );
    }
    head(
        &mut o,
        "left4me_health_query_duration_seconds",
        "histogram",
        "Time to an A2S_INFO answer, answered queries since the check started.",
    );
    for (c, le) in latency.counts.iter().zip(BUCKETS) {
        let _ = writeln!(
            o,
            "left4me_health_query_duration_seconds_bucket{{{l},le=\"{le}\"}} {c}"
        );
    }
    let _ = writeln!(
        o,
        "left4me_health_query_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}\n\
         left4me_health_query_duration_seconds_sum{{{l}}} {}\n\
         left4me_health_query_duration_seconds_count{{{l}}} {}",
        latency.count, latency.sum, latency.count
    );
    let s = &record.settings;
    let budget_left = (s.restarts_max as usize).saturating_sub(record.restarts_ms.len());
    for (name, kind, help, v) in [
        (
            "left4me_health_queries_total",
            "counter",
            "A2S_INFO queries since the check started.",
            record.checks,
        ),
        (
            "left4me_health_query_failures_total",
            "counter",
            "Unanswered A2S_INFO queries since the check started.",
            record.failed_checks,
        ),
        (
            "left4me_health_consecutive_failures",
            "gauge",
            "Unanswered queries in a row now.",
            u64::from(record.consecutive_failures),
        ),
        (
            "left4me_health_failures_threshold",
            "gauge",
            "Unanswered queries in a row that restart the server (L4D2_HEALTH_FAILURES).",
            u64::from(s.failures),
        ),
        (
            "left4me_health_restarts_total",
            "counter",
            "Restarts the health check asked for after failures, since boot.",
            record.restarts_total,
        ),
        (
            "left4me_health_budget_exhausted_total",
            "counter",
            "Times the restart budget was spent and the server ended failed, since boot.",
            record.gave_up_total,
        ),
        (
            "left4me_health_updates_queued_total",
            "counter",
            "Updates the health check queued because the game logged Steam's \"needs to be restarted\" notice, since boot.",
            record.updates_queued_total,
        ),
        (
            "left4me_health_restart_budget_remaining",
            "gauge",
            "Restarts left within the budget window.",
            budget_left as u64,
        ),
    ] {
        head(&mut o, name, kind, help);
        let _ = writeln!(o, "{name}{{{l}}} {v}");
    }
    let rows: [(&str, &str, &str, Option<f64>); 5] = [
        (
            "left4me_server_cpu_seconds_total",
            "counter",
            "CPU time of the server unit's cgroup (systemd CPUUsageNSec).",
            unit.cpu_seconds,
        ),
        (
            "left4me_server_memory_bytes",
            "gauge",
            "Memory of the server unit's cgroup (systemd MemoryCurrent).",
            unit.memory_bytes.map(|v| v as f64),
        ),
        (
            "left4me_server_memory_peak_bytes",
            "gauge",
            "Peak memory of the server unit's cgroup (systemd MemoryPeak, systemd 256 and later).",
            unit.memory_peak_bytes.map(|v| v as f64),
        ),
        (
            "left4me_server_tasks",
            "gauge",
            "Tasks in the server unit's cgroup (systemd TasksCurrent).",
            unit.tasks.map(|v| v as f64),
        ),
        (
            "left4me_server_restarts_total",
            "counter",
            "Restarts of the server unit by its Restart= (systemd NRestarts; crashes, not health restarts).",
            unit.restarts.map(|v| v as f64),
        ),
    ];
    for (name, kind, help, v) in rows {
        if let Some(v) = v {
            head(&mut o, name, kind, help);
            let _ = writeln!(o, "{name}{{{l}}} {}", num(v));
        }
    }
    o
}

/// One generation on disk.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Generation {
    pub id: String,
    pub build_id: Option<String>,
    /// Allocated bytes of the generation's files, each name counted; none
    /// when the check's walks had spent their budget ([`HOST_WALK_ENTRIES`]).
    pub bytes: Option<u64>,
}

/// The host-wide figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Host {
    pub current: Option<String>,
    pub generations: Vec<Generation>,
    /// Allocated bytes of all generations, a file hard-linked into several
    /// counted once: what they take on disk (reflinked extents aside); none
    /// when a generation's bytes are not known.
    pub total_bytes: Option<u64>,
    /// The update unit's last run: whether it succeeded, when it ended.
    pub update: Option<(bool, u64)>,
    pub update_running: bool,
}

pub(crate) fn render_host(h: &Host) -> String {
    let mut o = String::new();
    if let Some(cur) = &h.current {
        let build = h
            .generations
            .iter()
            .find(|g| &g.id == cur)
            .and_then(|g| g.build_id.as_deref())
            .unwrap_or("");
        head(
            &mut o,
            "left4me_generation_current_info",
            "gauge",
            "The installation generation new mounts use, and its Steam build id; always 1.",
        );
        let _ = writeln!(
            o,
            "left4me_generation_current_info{{generation=\"{}\",build_id=\"{}\"}} 1",
            esc(cur),
            esc(build)
        );
    }
    head(
        &mut o,
        "left4me_generations",
        "gauge",
        "Installation generations on disk.",
    );
    let _ = writeln!(o, "left4me_generations {}", h.generations.len());
    head(
        &mut o,
        "left4me_generation_bytes",
        "gauge",
        "Allocated bytes of one generation's files (files shared with another generation count in both).",
    );
    for g in &h.generations {
        let Some(bytes) = g.bytes else { continue };
        let _ = writeln!(
            o,
            "left4me_generation_bytes{{generation=\"{}\",build_id=\"{}\"}} {bytes}",
            esc(&g.id),
            esc(g.build_id.as_deref().unwrap_or("")),
        );
    }
    if let Some(total) = h.total_bytes {
        head(
            &mut o,
            "left4me_generations_bytes",
            "gauge",
            "Allocated bytes of all generations, shared files counted once.",
        );
        let _ = writeln!(o, "left4me_generations_bytes {total}");
    }
    head(
        &mut o,
        "left4me_update_running",
        "gauge",
        "Whether left4me-update.service runs now.",
    );
    let _ = writeln!(o, "left4me_update_running {}", u8::from(h.update_running));
    if let Some((ok, at)) = h.update {
        head(
            &mut o,
            "left4me_update_last_success",
            "gauge",
            "Whether the last finished run of left4me-update.service succeeded.",
        );
        let _ = writeln!(o, "left4me_update_last_success {}", u8::from(ok));
        head(
            &mut o,
            "left4me_update_last_run_timestamp_seconds",
            "gauge",
            "When the last run of left4me-update.service ended (Unix time).",
        );
        let _ = writeln!(o, "left4me_update_last_run_timestamp_seconds {at}");
    }
    o
}

/// Entries the host figures walk at most in one check's life. Each check
/// walks every generation once (then keeps its figures), and the update
/// user can make up to 200,000 entries a generation, kept on disk while a
/// mount of the service user's holds it: 256 such generations took a
/// check's start minutes of reads, the check blind meanwhile (thirtieth
/// review, reasoned from 1.3 s cold for 131,000 entries). Two million is
/// hundreds of genuine generations (a few thousand entries each), and at
/// most about 20 s of cold reads, within a check's grace period.
const HOST_WALK_ENTRIES: u64 = 2_000_000;

/// Allocated bytes of the tree at `root` without following links: every
/// name in full, and its share of the host-wide sum (a file of N names
/// counts 1/N at each, so a file hard-linked into several generations
/// counts once in all); none once `left` entries have been walked, taken
/// from it, each directory's size paid for before it is read
/// ([`crate::fsx::pay_dir_read`]). Depth first, one open directory per
/// level, and no set of inodes: a check's memory must not grow with a
/// tree's entries (twenty-ninth review: a set of 600,000 inodes made every
/// check outgrow its 32 MiB cap; a list of the directories still to walk
/// would grow the same way with directories).
fn tree_bytes(root: &Path, left: &mut u64) -> io::Result<Option<(u64, u64)>> {
    let (mut bytes, mut share) = (0u64, 0u64);
    if !crate::fsx::pay_dir_read(fs::symlink_metadata(root)?.len(), left) {
        return Ok(None);
    }
    let mut levels = vec![fs::read_dir(root)?];
    while let Some(level) = levels.last_mut() {
        let Some(entry) = level.next() else {
            levels.pop();
            continue;
        };
        if *left == 0 {
            return Ok(None);
        }
        *left -= 1;
        let path = entry?.path();
        let m = fs::symlink_metadata(&path)?;
        let allocated = m.blocks() * 512;
        bytes += allocated;
        if m.is_dir() {
            share += allocated;
            if !crate::fsx::pay_dir_read(m.len(), left) {
                return Ok(None);
            }
            levels.push(fs::read_dir(&path)?);
        } else {
            share += allocated / m.nlink().max(1);
        }
    }
    Ok(Some((bytes, share)))
}

/// Reads the host-wide figures. A committed generation never changes, so
/// its walk is cached for the life of the check.
pub(crate) struct HostReader {
    installations: PathBuf,
    /// Each generation's figures and its share of the host-wide sum.
    walked: HashMap<String, (Generation, u64)>,
    /// What is left of [`HOST_WALK_ENTRIES`].
    left: u64,
}

impl HostReader {
    pub(crate) fn new(installations: PathBuf) -> HostReader {
        HostReader {
            installations,
            walked: HashMap::new(),
            left: HOST_WALK_ENTRIES,
        }
    }

    /// The generations on disk, and the update unit's state from `systemd`
    /// (none known when its show fails).
    pub(crate) fn read(&mut self, systemd: &impl Systemd) -> Host {
        let current = super::rollover::read_current(&self.installations)
            .ok()
            .map(|id| id.as_str().to_owned());
        let mut ids: Vec<String> = fs::read_dir(&self.installations)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    // .next/ (an update at work) and anything not a
                    // generation are not generations.
                    .filter(|n| GenerationId::parse(n).is_some())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        self.walked.retain(|id, _| ids.contains(id));
        let mut generations = Vec::new();
        let mut total_bytes = Some(0);
        for id in &ids {
            if let Some((g, share)) = self.walked.get(id) {
                generations.push(g.clone());
                total_bytes = total_bytes.map(|t| t + share);
                continue;
            }
            let dir = self.installations.join(id);
            // A generation being removed (gc) is skipped until it is gone.
            let Ok(walked) = tree_bytes(&dir, &mut self.left) else {
                continue;
            };
            let build_id = fs::read(dir.join("steamapps/appmanifest_222860.acf"))
                .ok()
                .and_then(|b| {
                    crate::generation::parse_manifest(&String::from_utf8_lossy(&b)).build_id
                });
            let mut g = Generation {
                id: id.clone(),
                build_id,
                bytes: None,
            };
            match walked {
                Some((bytes, share)) => {
                    g.bytes = Some(bytes);
                    total_bytes = total_bytes.map(|t| t + share);
                    self.walked.insert(id.clone(), (g.clone(), share));
                }
                None => total_bytes = None,
            }
            generations.push(g);
        }
        let p = systemd
            .show(
                UPDATE_UNIT,
                &["ActiveState", "Result", "StateChangeTimestamp"],
            )
            .unwrap_or_default();
        let state = p.get("ActiveState").map(String::as_str).unwrap_or("");
        let at = p
            .get("StateChangeTimestamp")
            .and_then(|t| t.strip_prefix('@'))
            .and_then(|t| t.parse::<u64>().ok());
        let update = match (state, at) {
            ("inactive" | "failed", Some(at)) => {
                Some((p.get("Result").is_some_and(|r| r == "success"), at))
            }
            _ => None,
        };
        Host {
            current,
            generations,
            total_bytes,
            update,
            update_running: matches!(state, "activating" | "active" | "deactivating"),
        }
    }
}

/// How long a temporary file may sit before a prune takes it for a killed
/// writer's: a write takes milliseconds.
const STALE_TMP: Duration = Duration::from_secs(60);

/// Whether a prune keeps the entry `name` of DIR, which this check's user
/// made (`ours`) `age` ago, given the files of the loaded server units
/// (running, starting, stopping or `failed`: a failed server's last
/// figures, its give-up counter among them, stay to be scraped). Kept: the
/// host file and those files, if ours, and our temporary files while
/// young. Everything else goes: the files of names no longer loaded, which
/// would otherwise fill the capped directory a name at a time until no
/// check could write the host file (ninth review), and files of another
/// owner (an earlier package's checks ran as the service user, who could
/// rewrite theirs).
fn keep(name: &str, ours: bool, age: Duration, loaded_files: &HashSet<String>) -> bool {
    if name.ends_with(".tmp") {
        return ours && age < STALE_TMP;
    }
    ours && (name == HOST_FILE || loaded_files.contains(name))
}

/// Removes from `dir` what [`keep`] does not keep. Nothing is removed when
/// the loaded units cannot be listed (systemd out of reach, as the
/// figures' show then is; said at debug level only).
fn prune(dir: &Path, systemd: &impl Systemd) -> io::Result<()> {
    let servers = match systemd.loaded(&server_unit("*")) {
        Ok(s) => s,
        Err(why) => {
            tracing::debug!("metrics not pruned: {why}");
            return Ok(());
        }
    };
    let loaded_files: HashSet<String> = servers
        .iter()
        .filter_map(|u| u.strip_prefix("left4me-server@")?.strip_suffix(".service"))
        .map(instance_file)
        .collect();
    let me = rustix::process::geteuid().as_raw();
    let now = SystemTime::now();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(m) = entry.metadata() else { continue };
        let age = m
            .modified()
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default();
        if !keep(&name, m.uid() == me, age, &loaded_files) {
            match fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!(
                    "removed {}: not a file a check of a loaded server keeps",
                    entry.path().display()
                ),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// [`super::replace_file`]: node exporter reads the old file or the new
/// one, never a part; the temporary name does not end in `.prom`, which is
/// all the textfile collector reads.
pub(crate) fn write_atomically(dir: &Path, name: &str, text: &str) -> io::Result<()> {
    super::replace_file(dir, name, text.as_bytes())
}

/// The check's side: the figures of its own run, and where they go.
pub(crate) struct Exporter<'s, S: Systemd> {
    dir: PathBuf,
    systemd: &'s S,
    interval: Duration,
    latency: Histogram,
    info: Option<Info>,
    host: HostReader,
    warned: bool,
}

impl<'s, S: Systemd> Exporter<'s, S> {
    pub(crate) fn new(
        dir: PathBuf,
        installations: PathBuf,
        systemd: &'s S,
        interval: Duration,
    ) -> Exporter<'s, S> {
        Exporter {
            host: HostReader::new(installations),
            dir,
            systemd,
            interval,
            latency: Histogram::default(),
            info: None,
            warned: false,
        }
    }

    pub(crate) fn observe(&mut self, outcome: &Result<Answer, QueryError>) {
        if let Ok(a) = outcome {
            self.latency.observe(a.latency.as_secs_f64());
            self.info = Some(a.info.clone());
        }
    }

    /// Writes the instance's file, and the host's when it is due.
    pub(crate) fn write(&mut self, record: &Record) {
        if !self.dir.is_dir() {
            return;
        }
        let unit = read_unit(self.systemd, &server_unit(&record.instance));
        let text = render_instance(record, self.info.as_ref(), &self.latency, &unit);
        let mut result = write_atomically(&self.dir, &instance_file(&record.instance), &text);
        // The prune first, and whatever the instance's write did: a
        // directory full of stale names is what it frees.
        if self.host_due() {
            let pruned = prune(&self.dir, self.systemd);
            let host = self.host.read(self.systemd);
            let wrote = write_atomically(&self.dir, HOST_FILE, &render_host(&host));
            result = result.and(pruned).and(wrote);
        }
        if let Err(e) = result {
            if !self.warned {
                self.warned = true;
                tracing::warn!(
                    "cannot write metrics into {}: {e}; the health check goes on without them \
                     (said once per run)",
                    self.dir.display()
                );
            }
        }
    }

    /// Every check may write the host file; whichever finds it older than
    /// one interval does, so 32 checks write it about once per interval.
    fn host_due(&self) -> bool {
        match fs::metadata(self.dir.join(HOST_FILE)).and_then(|m| m.modified()) {
            Ok(t) => SystemTime::now()
                .duration_since(t)
                .map_or(true, |age| age >= self.interval),
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::monitor::fake::FakeSystemd;
    use crate::health::settings::Settings;
    use rstest::rstest;

    const SERVER: &str = "left4me-server@vs1.service";

    fn answered(players: u8, bots: u8) -> (Record, Info, Histogram) {
        let info = Info::for_test(players, bots);
        let mut r = Record::start(
            "vs1",
            1,
            Settings::default(),
            Some("20261201T000000Z".into()),
            None,
            0,
        );
        let a = Answer {
            info: info.clone(),
            latency: Duration::from_micros(1500),
        };
        r.observe(&Ok(a), 10, None);
        let mut h = Histogram::default();
        h.observe(0.0015);
        (r, info, h)
    }

    #[test]
    fn an_answer_is_up_with_its_players_and_info() {
        let (r, info, h) = answered(4, 1);
        let unit = Unit {
            cpu_seconds: Some(1.5),
            memory_bytes: Some(1024),
            ..Unit::default()
        };
        let t = render_instance(&r, Some(&info), &h, &unit);
        for line in [
            "a2s_server_up{left4me_instance=\"vs1\"} 1",
            "a2s_server_players{left4me_instance=\"vs1\"} 4",
            "a2s_server_bots{left4me_instance=\"vs1\"} 1",
            "left4me_health_state{left4me_instance=\"vs1\",state=\"answering\"} 1",
            "left4me_health_state{left4me_instance=\"vs1\",state=\"silent\"} 0",
            "left4me_health_query_duration_seconds_bucket{left4me_instance=\"vs1\",le=\"0.001\"} 0",
            "left4me_health_query_duration_seconds_bucket{left4me_instance=\"vs1\",le=\"0.0025\"} 1",
            "left4me_health_query_duration_seconds_count{left4me_instance=\"vs1\"} 1",
            "left4me_server_cpu_seconds_total{left4me_instance=\"vs1\"} 1.5",
            "left4me_server_memory_bytes{left4me_instance=\"vs1\"} 1024",
        ] {
            assert!(t.lines().any(|l| l == line), "{line} missing from\n{t}");
        }
        assert!(t.contains("generation=\"20261201T000000Z\"} 1"), "{t}");
        // systemd without a figure: no sample rather than a made-up 0.
        assert!(!t.contains("left4me_server_tasks"), "{t}");
    }

    #[test]
    fn silence_is_down_but_not_yet_a_restart() {
        let (mut r, info, h) = answered(0, 0);
        r.observe(&Err(QueryError::Timeout(Duration::from_secs(2))), 20, None);
        let t = render_instance(&r, Some(&info), &h, &Unit::default());
        assert!(
            t.contains("a2s_server_up{left4me_instance=\"vs1\"} 0\n"),
            "{t}"
        );
        assert!(!t.contains("a2s_server_players"), "{t}");
        assert!(t.contains("state=\"silent\"} 1"), "{t}");
        assert!(t.contains("left4me_health_consecutive_failures{left4me_instance=\"vs1\"} 1"));
    }

    #[test]
    fn the_games_strings_cannot_break_out_of_a_label() {
        let (r, mut info, h) = answered(0, 0);
        info.name = "evil\"} 1\nfake_metric{a=\"\\".into();
        let t = render_instance(&r, Some(&info), &h, &Unit::default());
        assert!(!t.lines().any(|l| l.starts_with("fake_metric")), "{t}");
        assert!(
            t.contains(r#"server_name="evil\"} 1\nfake_metric{a=\"\\""#),
            "{t}"
        );
    }

    #[test]
    fn restarts_count_across_the_checks_own_restarts() {
        let s = Settings {
            failures: 1,
            restarts_max: 1,
            ..Settings::default()
        };
        let timeout = Err(QueryError::Timeout(Duration::from_secs(2)));
        let mut r = Record::start("vs1", 1, s.clone(), None, None, 0);
        r.observe(&timeout, 1, None);
        let mut r = Record::start("vs1", 2, s.clone(), None, Some(r), 2);
        r.observe(&timeout, 3, None);
        r.give_up(9, "spent".into(), 3);
        let r = Record::start("vs1", 3, s, None, Some(r), 4);
        let t = render_instance(&r, None, &Histogram::default(), &Unit::default());
        assert!(
            t.contains("left4me_health_restarts_total{left4me_instance=\"vs1\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("left4me_health_budget_exhausted_total{left4me_instance=\"vs1\"} 1\n"),
            "{t}"
        );
        assert!(t.contains("state=\"grace\"} 1"), "{t}");
    }

    #[test]
    fn host_figures_count_shared_files_once() {
        let dir = tempfile::tempdir().unwrap();
        let inst = dir.path().join("installations");
        let (a, b) = ("20261130T030000Z", "20261201T000000Z");
        for g in [a, b] {
            fs::create_dir_all(inst.join(g).join("steamapps")).unwrap();
        }
        fs::write(inst.join(a).join("big"), vec![1u8; 64 * 1024]).unwrap();
        fs::hard_link(inst.join(a).join("big"), inst.join(b).join("big")).unwrap();
        fs::write(
            inst.join(b).join("steamapps/appmanifest_222860.acf"),
            "\"AppState\"\n{\n\t\"buildid\"\t\t\"16212116\"\n}\n",
        )
        .unwrap();
        fs::create_dir(inst.join(".next")).unwrap();
        fs::write(inst.join("current"), format!("{b}\n")).unwrap();
        let mut reader = HostReader::new(inst.clone());
        let h = reader.read(&FakeSystemd::default());
        assert_eq!(h.current.as_deref(), Some(b));
        assert_eq!(h.generations.len(), 2);
        assert!(h.generations.iter().all(|g| g.bytes >= Some(64 * 1024)));
        let sum: u64 = h.generations.iter().filter_map(|g| g.bytes).sum();
        let big = fs::metadata(inst.join(a).join("big")).unwrap().blocks() * 512;
        assert_eq!(h.total_bytes, Some(sum - big), "{h:?}");
        assert_eq!(h.update, None);
        let t = render_host(&h);
        assert!(
            t.contains(&format!(
                "left4me_generation_current_info{{generation=\"{b}\",build_id=\"16212116\"}} 1"
            )),
            "{t}"
        );
        assert!(t.contains("left4me_generations 2\n"), "{t}");
    }

    /// A check walks at most [`HOST_WALK_ENTRIES`] in its life (thirtieth
    /// review: 256 kept generations of 200,000 entries each took a check's
    /// start minutes); past them a generation's bytes and the total are
    /// left out, not guessed, and the walks done are kept.
    #[test]
    fn the_host_walk_stops_at_its_budget_and_says_nothing_it_does_not_know() {
        let dir = tempfile::tempdir().unwrap();
        let inst = dir.path().join("installations");
        let (a, b) = ("20261130T030000Z", "20261201T000000Z");
        for (g, files) in [(a, 3), (b, 5)] {
            fs::create_dir_all(inst.join(g)).unwrap();
            for i in 0..files {
                fs::write(inst.join(g).join(i.to_string()), b"x").unwrap();
            }
        }
        let mut reader = HostReader::new(inst.clone());
        reader.left = 6;
        let h = reader.read(&FakeSystemd::default());
        let known: Vec<bool> = h.generations.iter().map(|g| g.bytes.is_some()).collect();
        assert_eq!(known, [true, false], "{h:?}");
        assert_eq!((h.total_bytes, reader.left), (None, 0));
        let t = render_host(&h);
        assert!(
            t.contains(&format!("left4me_generation_bytes{{generation=\"{a}\"")),
            "{t}"
        );
        assert!(
            !t.contains(&format!("left4me_generation_bytes{{generation=\"{b}\"")),
            "{t}"
        );
        assert!(!t.contains("left4me_generations_bytes"), "{t}");
        assert!(t.contains("left4me_generations 2\n"), "{t}");
        // The first stays known; the second is not walked again.
        let again = reader.read(&FakeSystemd::default());
        assert_eq!(again.generations, h.generations);
    }

    /// An emptied directory keeps its size (ext4), and reading it is
    /// charged before it is read: a generation of such directories cannot
    /// cost a check more than its budget (thirty-first review).
    #[test]
    fn the_host_walk_charges_a_directory_its_size_before_reading_it() {
        let root = tempfile::tempdir().unwrap();
        let emptied = root.path().join("emptied");
        fs::create_dir(&emptied).unwrap();
        let long = "x".repeat(200);
        for i in 0..2000 {
            fs::write(emptied.join(format!("{long}{i}")), b"").unwrap();
        }
        for i in 0..2000 {
            fs::remove_file(emptied.join(format!("{long}{i}"))).unwrap();
        }
        let cost = crate::fsx::dir_read_cost(fs::metadata(&emptied).unwrap().len());
        let mut left = 1 + cost;
        assert!(tree_bytes(root.path(), &mut left).unwrap().is_some());
        assert_eq!(left, 0);
        let mut left = cost;
        assert_eq!(tree_bytes(root.path(), &mut left).unwrap(), None);
        // ext4 kept about 500 KiB; tmpfs (the package build's /tmp) keeps
        // nothing of the removed names, and has nothing past a block to read.
        assert!(cost > 1000 || fs::metadata(&emptied).unwrap().len() < 4096);
    }

    const UPDATE_FAILED: &[(&str, &str)] = &[
        ("ActiveState", "failed"),
        ("Result", "exit-code"),
        ("StateChangeTimestamp", "@1733368317"),
    ];

    #[rstest]
    #[case::failed(true, UPDATE_FAILED, Some((false, 1733368317)), false)]
    #[case::succeeded(
        true,
        &[("ActiveState", "inactive"), ("Result", "success"), ("StateChangeTimestamp", "@1733368317")],
        Some((true, 1733368317)),
        false
    )]
    #[case::running(
        true,
        &[("ActiveState", "activating"), ("Result", "success"), ("StateChangeTimestamp", "@1733368317")],
        None,
        true
    )]
    #[case::never_ran(true, &[("ActiveState", "inactive"), ("Result", "success")], None, false)]
    #[case::show_fails(false, &[], None, false)]
    fn the_last_update_from_systemd(
        #[case] known: bool,
        #[case] props: &[(&str, &str)],
        #[case] update: Option<(bool, u64)>,
        #[case] running: bool,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut systemd = FakeSystemd::default();
        if known {
            systemd = systemd.unit(UPDATE_UNIT, props);
        }
        let h = HostReader::new(dir.path().join("none")).read(&systemd);
        assert_eq!((h.update, h.update_running), (update, running));
        let t = render_host(&h);
        assert!(
            t.contains(&format!("left4me_update_running {}\n", u8::from(running))),
            "{t}"
        );
        match update {
            Some((ok, at)) => {
                assert!(
                    t.contains(&format!("left4me_update_last_success {}\n", u8::from(ok))),
                    "{t}"
                );
                assert!(
                    t.contains(&format!("left4me_update_last_run_timestamp_seconds {at}\n")),
                    "{t}"
                );
            }
            None => assert!(!t.contains("left4me_update_last"), "{t}"),
        }
    }

    const SERVER_FIGURES: &[(&str, &str)] = &[
        ("CPUUsageNSec", "2500000000"),
        // u64::MAX: systemd's "unknown" on the bus.
        ("MemoryCurrent", "18446744073709551615"),
        ("TasksCurrent", "3"),
        ("NRestarts", "2"),
    ];

    #[rstest]
    #[case::figures(
        true,
        SERVER_FIGURES,
        Unit {
            cpu_seconds: Some(2.5),
            memory_bytes: None,
            memory_peak_bytes: None,
            tasks: Some(3),
            restarts: Some(2),
        }
    )]
    // A value that is no number (systemctl prints `[not set]` for some
    // figures it has none of): no sample rather than a made-up one.
    #[case::not_set(
        true,
        &[("MemoryCurrent", "[not set]"), ("MemoryPeak", "4096")],
        Unit { memory_peak_bytes: Some(4096), ..Unit::default() }
    )]
    #[case::show_fails(false, &[], Unit::default())]
    fn the_servers_figures_from_systemd(
        #[case] known: bool,
        #[case] props: &[(&str, &str)],
        #[case] expected: Unit,
    ) {
        let mut systemd = FakeSystemd::default();
        if known {
            systemd = systemd.unit(SERVER, props);
        }
        assert_eq!(read_unit(&systemd, SERVER), expected);
    }

    /// The exporter reads both files' figures through the check's systemd;
    /// one that cannot show a unit costs those figures, not the files.
    #[rstest]
    #[case::answered(true)]
    #[case::show_fails(false)]
    fn the_exporter_writes_systemds_figures(#[case] shows: bool) {
        let dir = tempfile::tempdir().unwrap();
        let mut systemd = FakeSystemd::default();
        if shows {
            systemd = systemd
                .unit(SERVER, SERVER_FIGURES)
                .unit(UPDATE_UNIT, UPDATE_FAILED);
        }
        write_answered(dir.path(), &systemd);
        let instance = fs::read_to_string(dir.path().join(instance_file("vs1"))).unwrap();
        let host = fs::read_to_string(dir.path().join(HOST_FILE)).unwrap();
        assert_eq!(
            instance.contains("left4me_server_tasks{left4me_instance=\"vs1\"} 3\n"),
            shows,
            "{instance}"
        );
        assert!(instance.contains("a2s_server_up{left4me_instance=\"vs1\"} 1\n"));
        assert_eq!(
            host.contains("left4me_update_last_success 0\n"),
            shows,
            "{host}"
        );
        assert!(host.contains("left4me_generations 0\n"), "{host}");
    }

    /// One answered query's write into `dir`, which must warn of nothing.
    fn write_answered(dir: &Path, systemd: &FakeSystemd) {
        let mut e = Exporter::new(
            dir.to_owned(),
            dir.join("installations"),
            systemd,
            Duration::from_secs(10),
        );
        let (r, _, _) = answered(1, 0);
        e.write(&r);
        assert!(!e.warned);
    }

    #[rstest]
    #[case::host("left4me_host.prom", true, 0, true)]
    #[case::loaded("left4me_vs1.prom", true, 0, true)]
    #[case::loaded_old("left4me_vs1.prom", true, 3600, true)]
    #[case::not_loaded("left4me_gone.prom", true, 0, false)]
    #[case::foreign_loaded("left4me_vs1.prom", false, 0, false)]
    #[case::foreign_host("left4me_host.prom", false, 0, false)]
    #[case::young_tmp(".left4me_vs1.prom.42.tmp", true, 5, true)]
    #[case::old_tmp(".left4me_vs1.prom.42.tmp", true, 61, false)]
    #[case::foreign_tmp(".left4me_vs1.prom.42.tmp", false, 0, false)]
    #[case::other("x.prom", true, 0, false)]
    fn a_prune_keeps_only_the_files_of_loaded_servers_this_user_made(
        #[case] name: &str,
        #[case] ours: bool,
        #[case] age_s: u64,
        #[case] kept: bool,
    ) {
        let loaded = HashSet::from([instance_file("vs1")]);
        assert_eq!(keep(name, ours, Duration::from_secs(age_s), &loaded), kept);
    }

    /// A directory the service user filled with the files of names it no
    /// longer runs (ninth review: 1,024 of them filled the 8 MiB tmpfs and
    /// the host file went stale) is emptied of them at the next host write.
    #[test]
    fn the_host_write_prunes_the_files_of_servers_no_longer_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let systemd = FakeSystemd::default().unit(SERVER, SERVER_FIGURES);
        for n in [
            "left4me_gone.prom",
            ".left4me_host.prom.7.tmp",
            ".left4me_vs1.prom.8.tmp",
        ] {
            fs::write(dir.path().join(n), "x").unwrap();
        }
        let old = SystemTime::now() - Duration::from_secs(120);
        fs::File::options()
            .write(true)
            .open(dir.path().join(".left4me_host.prom.7.tmp"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        write_answered(dir.path(), &systemd);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".left4me_vs1.prom.8.tmp",
                "left4me_host.prom",
                "left4me_vs1.prom"
            ]
        );
    }

    #[test]
    fn no_directory_means_nothing_written_and_no_failure() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("absent");
        let systemd = FakeSystemd::default();
        let mut e = Exporter::new(
            gone.clone(),
            dir.path().join("installations"),
            &systemd,
            Duration::from_secs(10),
        );
        let (r, _, _) = answered(1, 0);
        e.write(&r);
        assert!(!gone.exists());
        assert!(!e.warned);
    }

    /// A reader that opens the file over and over while the writer replaces
    /// it 1,000 times sees only whole files: each one parses to the same
    /// number of samples and ends in a newline.
    #[test]
    fn a_reader_never_sees_a_half_written_file() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(instance_file("vs1"));
        let (mut r, info, mut h) = answered(3, 1);
        let first = render_instance(&r, Some(&info), &h, &Unit::default());
        write_atomically(dir.path(), &instance_file("vs1"), &first).unwrap();
        let whole = |t: &str| {
            t.ends_with('\n')
                && t.lines()
                    .last()
                    .is_some_and(|l| l.starts_with("left4me_health_restart_budget_remaining{"))
        };
        assert!(whole(&first), "{first}");
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (done, path) = (done.clone(), path.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let t = fs::read_to_string(&path).expect("the file is always there");
                    assert!(whole(&t), "a partial file after {reads} reads:\n{t}");
                    reads += 1;
                }
                reads
            })
        };
        for i in 0..1000u64 {
            r.observe(
                &Ok(Answer {
                    info: info.clone(),
                    latency: Duration::from_micros(i),
                }),
                i,
                None,
            );
            h.observe(i as f64 / 1e6);
            let t = render_instance(&r, Some(&info), &h, &Unit::default());
            write_atomically(dir.path(), &instance_file("vs1"), &t).unwrap();
        }
        done.store(true, Ordering::Relaxed);
        let reads = reader.join().expect("the reader saw only whole files");
        assert!(reads > 0);
        let last = fs::read_to_string(&path).unwrap();
        assert!(
            last.contains("left4me_health_queries_total{left4me_instance=\"vs1\"} 1001"),
            "{last}"
        );
    }
}
