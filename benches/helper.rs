//! `cargo bench` (as root): the helper's figures, each against a baseline run
//! side by side in the same process. Prints figures; asserts nothing about
//! time (machines differ), but says whether each target is met.
//!   1. mount+umount cycle: left4me-overlay vs util-linux mount -t overlay + umount
//!   2. reset with 100,000 files vs 10 files in upper: time until mounted again
//!   3. peak RSS of one helper run
//!   4. deleting a discarded layer 100,000 levels deep, and one directory of
//!      1,000,000 entries, each in one sweep: time and peak RSS
//!   5. a new installation generation of a 1 GiB tree with one file changed:
//!      its disk cost (du) and the time of prepare + commit, beside `cp -a`
//!   6. peak RSS of a commit whose tree the update user made wide and deep
//!      (levels of 100,000 and of 10,000 entries), beside the helper given in
//!      LEFT4ME_BENCH_BASELINE_HELPER (an older build), if set
//!   7. 40 resets in a row while a 100,000-file layer is deleted: root
//!      sweepers alive at once, and the time until all is deleted, beside
//!      that baseline
//!   8. deleting a discarded directory of 10,000 to 40,000 subdirectories
//!      with 250-byte names: CPU time beside `rm -rf` of the same tree, and
//!      beside that baseline

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HELPER: &str = env!("CARGO_BIN_EXE_left4me-overlay");
const USER: &str = "daemon";

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    assert!(
        rustix::process::geteuid().is_root(),
        "the benchmark mounts overlayfs: run it as root"
    );
    if std::env::var_os("LEFT4ME_BENCH_ISOLATED").is_none() {
        // A private mount namespace, so nothing is left mounted on the host.
        let status = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--"])
            .arg(std::env::current_exe().unwrap())
            .args(std::env::args().skip(1))
            .env("LEFT4ME_BENCH_ISOLATED", "1")
            .status()
            .unwrap();
        std::process::exit(status.code().unwrap_or(1));
    }
    let dir = tempfile::Builder::new()
        .prefix("left4me-bench.")
        .tempdir()
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    println!(
        "left4me-overlay benchmark on Linux {}",
        rustix::system::uname().release().to_string_lossy()
    );
    // `cargo bench -- sweep` runs only the parts named (cycle, reset, rss, sweep,
    // generation, walk, sweepers, wide).
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |part: &str| only.is_empty() || only.iter().any(|o| o == part);
    if wanted("cycle") {
        mount_cycle(dir.path(), "root-owned layers (helper idmaps them)", false);
        mount_cycle(dir.path(), "service-user-owned layers (no idmap)", true);
    }
    if wanted("reset") {
        reset_until_mountable(dir.path());
    }
    if wanted("rss") {
        peak_rss(dir.path());
    }
    if wanted("sweep") {
        sweep_extremes(dir.path());
    }
    if wanted("generation") {
        generation_cost(dir.path());
    }
    if wanted("walk") {
        commit_memory(dir.path());
    }
    if wanted("sweepers") {
        sweepers(dir.path());
    }
    if wanted("wide") {
        sweep_wide(dir.path());
    }
}

struct Bench {
    root: PathBuf,
}

impl Bench {
    fn new(base: &Path, tag: &str, overlays: usize, user_owned: bool) -> Bench {
        let root = base.join(tag);
        for i in 0..overlays {
            let o = root.join(format!("overlays/o{i}/left4dead2/cfg"));
            fs::create_dir_all(&o).unwrap();
            fs::write(o.join(format!("o{i}.cfg")), "x").unwrap();
        }
        fs::create_dir_all(root.join("installation/left4dead2/cfg")).unwrap();
        fs::write(root.join("installation/left4dead2/gameinfo.txt"), "x").unwrap();
        let names: Vec<String> = (0..overlays).map(|i| format!("o{i}")).collect();
        fs::create_dir_all(root.join("instances/b")).unwrap();
        fs::write(
            root.join("instances/b/instance.env"),
            format!("L4D2_PORT=27015\nL4D2_OVERLAYS=\"{}\"\n", names.join(" ")),
        )
        .unwrap();
        if user_owned {
            let uid = nix::unistd::User::from_name(USER)
                .unwrap()
                .unwrap()
                .uid
                .as_raw();
            for sub in ["installation", "overlays"] {
                Command::new("chown")
                    .args(["-R", &format!("{uid}:{uid}")])
                    .arg(root.join(sub))
                    .status()
                    .unwrap();
            }
        }
        Bench { root }
    }

    fn helper(&self, args: &[&str]) -> Command {
        self.helper_of(HELPER, args)
    }

    fn helper_of(&self, binary: &str, args: &[&str]) -> Command {
        let mut c = Command::new(binary);
        c.arg("--state-dir")
            .arg(&self.root)
            .args(args)
            .env("LEFT4ME_USER", USER)
            .env("LEFT4ME_GROUP", USER)
            .stdout(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) {
        let status = self.helper(args).status().unwrap();
        assert!(status.success(), "{args:?}: {status}");
    }
}

fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn mount_cycle(base: &Path, label: &str, user_owned: bool) {
    let tag = if user_owned {
        "cycle-user"
    } else {
        "cycle-root"
    };
    let b = Bench::new(base, tag, 3, user_owned);
    b.run(&["mount", "b"]);
    b.run(&["umount", "b"]);
    let rt = b.root.join("runtime/b");
    let lowers: Vec<String> = ["o0", "o1", "o2"]
        .iter()
        .map(|o| b.root.join("overlays").join(o).display().to_string())
        .chain([b.root.join("installation").display().to_string()])
        .collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        rt.join("upper").display(),
        rt.join("work").display()
    );
    let merged = rt.join("merged");
    let (mut helper, mut baseline) = (Vec::new(), Vec::new());
    for _ in 0..60 {
        helper.push(time(|| {
            b.run(&["mount", "b"]);
            b.run(&["umount", "b"]);
        }));
        baseline.push(time(|| {
            assert!(
                Command::new("mount")
                    .args(["-t", "overlay", "overlay", "-o", &options])
                    .arg(&merged)
                    .status()
                    .unwrap()
                    .success()
            );
            assert!(
                Command::new("umount")
                    .arg(&merged)
                    .status()
                    .unwrap()
                    .success()
            );
        }));
    }
    let (h, u) = (median(helper), median(baseline));
    let ratio = h.as_secs_f64() / u.as_secs_f64();
    println!(
        "mount+umount cycle, {label}, 3 overlays, 60 runs: helper median {}, util-linux median {}, ratio {ratio:.2} (target <= 1.5: {})",
        ms(h),
        ms(u),
        if ratio <= 1.5 { "met" } else { "NOT met" }
    );
}

fn fill(dir: &Path, files: usize) {
    for d in 0..files.div_ceil(1000) {
        let sub = dir.join(format!("left4dead2/downloads/d{d}"));
        fs::create_dir_all(&sub).unwrap();
        for f in 0..(files - d * 1000).min(1000) {
            fs::write(sub.join(format!("f{f}")), "x").unwrap();
        }
    }
}

fn reset_until_mountable(base: &Path) {
    let b = Bench::new(base, "reset", 2, false);
    let mut results = Vec::new();
    for files in [10, 100_000] {
        let mut runs = Vec::new();
        for _ in 0..5 {
            b.run(&["mount", "b"]);
            fill(&b.root.join("runtime/b/merged"), files);
            b.run(&["umount", "b"]);
            runs.push(time(|| {
                b.run(&["reset", "b"]);
                b.run(&["mount", "b"]);
            }));
            b.run(&["umount", "b"]);
            // Let the background deletion finish before the next run.
            while fs::read_dir(b.root.join("runtime/b"))
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".discard-"))
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let m = median(runs);
        println!(
            "reset then mount with {files} files in upper, 5 runs: median {}",
            ms(m)
        );
        results.push(m);
    }
    let ratio = results[1].as_secs_f64() / results[0].as_secs_f64();
    println!(
        "reset growth 100,000 vs 10 files: {ratio:.2}x (target <= 2x: {})",
        if ratio <= 2.0 { "met" } else { "NOT met" }
    );
}

/// Runs the helper to the end; returns its wall time and peak RSS in KiB.
// The child is reaped by wait4, which also returns its rusage.
#[allow(clippy::zombie_processes)]
fn run_measured(b: &Bench, args: &[&str]) -> (Duration, i64) {
    run_measured_of(b, HELPER, args)
}

fn run_measured_of(b: &Bench, binary: &str, args: &[&str]) -> (Duration, i64) {
    let m = measure(b.helper_of(binary, args), args);
    (m.wall, m.max_rss_kib)
}

/// What one process run cost: wall time, CPU (user + system) and peak RSS.
struct Measured {
    wall: Duration,
    cpu: Duration,
    max_rss_kib: i64,
}

#[allow(clippy::zombie_processes)]
fn measure(mut command: Command, what: &[&str]) -> Measured {
    let t = Instant::now();
    let child = command.spawn().unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter for wait4.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child and fills `usage`.
    let pid = unsafe { nix::libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    assert_eq!(status, 0, "{what:?} failed");
    let time = |t: nix::libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Measured {
        wall: t.elapsed(),
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss,
    }
}

fn peak_rss(base: &Path) {
    let b = Bench::new(base, "rss", 3, false);
    for args in [
        &["mount", "b"][..],
        &["status", "b", "--json"],
        &["umount", "b"],
        &["reset", "b"],
    ] {
        let (_, kib) = run_measured(&b, args);
        println!(
            "peak RSS of `left4me-overlay {}`: {:.2} MiB (target <= 4 MiB: {})",
            args.join(" "),
            kib as f64 / 1024.0,
            if kib <= 4096 { "met" } else { "NOT met" }
        );
    }
}

/// A discarded layer as a killed reset leaves it, swept by the next umount
/// in the helper's own process, so its time and RSS are measurable.
fn sweep_extremes(base: &Path) {
    let b = Bench::new(base, "sweep", 0, false);
    b.run(&["mount", "b"]);
    b.run(&["umount", "b"]);
    let rt = b.root.join("runtime/b");
    for (label, deep) in [
        ("100,000 levels deep", true),
        ("1,000,000 entries in one directory", false),
    ] {
        let top = rt.join(".discard-bench");
        fs::create_dir(&top).unwrap();
        let t = Instant::now();
        if deep {
            build_deep(&top, 100_000);
        } else {
            build_wide(&top, 1_000_000);
        }
        let built = t.elapsed();
        let (took, kib) = run_measured(&b, &["umount", "b"]);
        assert!(!top.exists(), "{label}: not deleted in one sweep");
        println!(
            "sweep of a discarded layer {label} (built in {:.1} s): {:.2} s, peak RSS {:.2} MiB (target <= 8 MiB: {})",
            built.as_secs_f64(),
            took.as_secs_f64(),
            kib as f64 / 1024.0,
            if kib <= 8192 { "met" } else { "NOT met" }
        );
    }
}

/// The nineteenth review's shape: one directory of `n` subdirectories, each
/// with a file, under 250-byte names. ext4 keeps a directory's emptied
/// blocks, so a walk that reads the parent from the start after each child
/// grows with n²; GNU `rm -rf` (fts: reads each directory once) on an
/// identical tree is the baseline, and LEFT4ME_BENCH_BASELINE_HELPER (an
/// older build), if set, shows the walk before.
fn sweep_wide(base: &Path) {
    let baseline = std::env::var("LEFT4ME_BENCH_BASELINE_HELPER").ok();
    println!(
        "\n8. sweep of a discarded directory of n non-empty subdirectories with 250-byte names"
    );
    let b = Bench::new(base, "wide", 0, false);
    b.run(&["mount", "b"]);
    b.run(&["umount", "b"]);
    let top = b.root.join("runtime/b/.discard-bench");
    let mut cpu_by_n = Vec::new();
    for n in [10_000, 20_000, 40_000] {
        let mut row = Vec::new();
        for (label, binary) in [
            ("rm -rf", None),
            ("helper", Some(HELPER)),
            ("baseline helper", baseline.as_deref()),
        ] {
            if label == "baseline helper" && binary.is_none() {
                continue;
            }
            build_wide_dirs(&top, n);
            let m = match binary {
                None => {
                    let mut rm = Command::new("rm");
                    rm.arg("-rf").arg(&top);
                    measure(rm, &["rm -rf"])
                }
                Some(binary) => measure(b.helper_of(binary, &["umount", "b"]), &["umount", "b"]),
            };
            assert!(!top.exists(), "{label}: not deleted");
            row.push((label, m));
        }
        let rm_cpu = row[0].1.cpu.as_secs_f64();
        let figures: Vec<String> = row
            .iter()
            .map(|(label, m)| {
                format!(
                    "{label} {:.2} s CPU ({:.2}x rm), {:.2} s wall",
                    m.cpu.as_secs_f64(),
                    m.cpu.as_secs_f64() / rm_cpu,
                    m.wall.as_secs_f64()
                )
            })
            .collect();
        println!("  n = {n}: {}", figures.join("; "));
        cpu_by_n.push(row[1].1.cpu.as_secs_f64());
    }
    println!(
        "  helper CPU growth 20,000 -> 40,000: {:.2}x (linear: about 2; the walk before: about 4)",
        cpu_by_n[2] / cpu_by_n[1]
    );
}

fn build_wide_dirs(top: &Path, n: usize) {
    use rustix::fs::{FileType, Mode};
    fs::create_dir(top).unwrap();
    let dir = open_dir(top);
    for i in 0..n {
        let name = format!("{i:0>250}");
        rustix::fs::mkdirat(&dir, &name, Mode::from_raw_mode(0o755)).unwrap();
        let sub = rustix::fs::openat(
            &dir,
            &name,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        rustix::fs::mknodat(
            &sub,
            "f",
            FileType::RegularFile,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
    }
}

fn open_dir(p: &Path) -> std::os::fd::OwnedFd {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
}

/// Built through fds: far deeper than a path can name.
fn build_deep(top: &Path, levels: usize) {
    use rustix::fs::{Mode, OFlags};
    let mut cur = open_dir(top);
    for _ in 0..levels {
        rustix::fs::mkdirat(&cur, "d", Mode::from_raw_mode(0o755)).unwrap();
        cur = rustix::fs::openat(&cur, "d", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
            .unwrap();
    }
}

fn build_wide(top: &Path, entries: usize) {
    use rustix::fs::{FileType, Mode};
    let dir = open_dir(top);
    for i in 0..entries {
        let mode = Mode::from_raw_mode(0o644);
        rustix::fs::mknodat(&dir, format!("f{i}"), FileType::RegularFile, mode, 0).unwrap();
    }
}

/// Kilobytes `du` counts for `dir` beyond what it counts for `before`: a
/// hard link to a file already counted costs nothing, as on disk.
fn du_beyond(before: &Path, dir: &Path) -> u64 {
    let out = Command::new("du")
        .arg("-sk")
        .arg(before)
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let last = text.lines().last().unwrap();
    last.split_whitespace().next().unwrap().parse().unwrap()
}

/// The shape of the game's bulk: 1,024 files of 1 MiB (its .vpk archives
/// are of that order), plus srcds_run. An update that changes one of them
/// (as steamcmd does: a new file renamed over the old) must cost that file,
/// not the tree, and take less time than copying the tree.
fn generation_cost(base: &Path) {
    let b = Bench::new(base, "generation", 0, false);
    let game = b.root.join("installation");
    fs::write(game.join("srcds_run"), "#!/bin/sh\n").unwrap();
    let chunk = vec![7u8; 1 << 20];
    fs::create_dir_all(game.join("left4dead2/vpk")).unwrap();
    for i in 0..1024 {
        fs::write(
            game.join(format!("left4dead2/vpk/pak01_{i:03}.vpk")),
            &chunk,
        )
        .unwrap();
    }
    b.run(&["generation", "list"]);
    let first = fs::read_to_string(b.root.join("installations/current")).unwrap();
    let first = b.root.join("installations").join(first.trim_end());
    Command::new("sync").status().unwrap();
    let (mut prepare, mut commit, mut cp) = (Vec::new(), Vec::new(), Vec::new());
    let mut costs = Vec::new();
    let mut df_costs = Vec::new();
    // Free space by statvfs: the only measure that sees reflinks (du counts
    // a reflinked file in full); exact on a filesystem nothing else writes.
    let free_kb = || {
        Command::new("sync").status().unwrap();
        let st = rustix::fs::statvfs(base).unwrap();
        st.f_bfree * st.f_frsize / 1024
    };
    for round in 0..5 {
        let before = free_kb();
        prepare.push(time(|| b.run(&["generation", "prepare", "--owner", "bin"])));
        let next = b.root.join("installations/.next/left4dead2/vpk");
        fs::write(next.join("new.tmp"), vec![round as u8; 1 << 20]).unwrap();
        // Written as steamcmd would: a file of the update user (bin).
        std::os::unix::fs::chown(next.join("new.tmp"), Some(2), Some(2)).unwrap();
        fs::rename(next.join("new.tmp"), next.join("pak01_000.vpk")).unwrap();
        commit.push(time(|| {
            b.run(&["generation", "commit", "--restart", "never", "--keep", "10"])
        }));
        df_costs.push(before.saturating_sub(free_kb()));
        let now = fs::read_to_string(b.root.join("installations/current")).unwrap();
        costs.push(du_beyond(
            &first,
            &b.root.join("installations").join(now.trim_end()),
        ));
        let copy = base.join("generation-cp");
        cp.push(time(|| {
            assert!(
                Command::new("cp")
                    .arg("-a")
                    .arg(&first)
                    .arg(&copy)
                    .status()
                    .unwrap()
                    .success()
            );
            Command::new("sync").status().unwrap();
        }));
        fs::remove_dir_all(&copy).unwrap();
    }
    let tree_kb = du_beyond(Path::new("/nonexistent-left4me"), &first);
    let p = median(prepare);
    let c = median(commit);
    let copy = median(cp);
    println!(
        "\n5. new generation of a {} MiB tree (1,024 files) with one 1 MiB file replaced; fs of {}",
        tree_kb / 1024,
        base.display()
    );
    println!(
        "   disk cost of the new generation (du beyond the first): {:?} KiB, vs {} KiB for the tree",
        costs, tree_kb
    );
    println!(
        "   free space it took (statvfs, prepare to commit; sees reflinks, which du counts in full): {:?} KiB",
        df_costs
    );
    println!(
        "   prepare {} + commit {} (median of 5) = {} vs cp -a + sync {}: ratio {:.3}",
        ms(p),
        ms(c),
        ms(p + c),
        ms(copy),
        (p + c).as_secs_f64() / copy.as_secs_f64()
    );
}

/// The update user's tree at its widest and deepest: `levels` directories
/// deep, each level with `names` symlinks of 40-byte names beside the
/// directory the next level is in (symlinks: the cheapest entries to make
/// and to take over). Commit walks it all; its peak RSS shows what the walk
/// keeps per level.
fn commit_memory(base: &Path) {
    let baseline = std::env::var("LEFT4ME_BENCH_BASELINE_HELPER").ok();
    println!("\n6. peak RSS of `generation commit` of a wide and deep tree of the update user's");
    for (levels, names) in [(4usize, 99_999usize), (60, 9_999)] {
        let mut row = Vec::new();
        for (label, binary) in [
            ("this helper", Some(HELPER)),
            ("baseline", baseline.as_deref()),
        ] {
            let Some(binary) = binary else { continue };
            let b = Bench::new(
                base,
                &format!("walk-{levels}-{names}-{}", row.len()),
                0,
                false,
            );
            fs::write(b.root.join("installation/srcds_run"), "#!/bin/sh\n").unwrap();
            b.run(&["generation", "list"]);
            b.run(&["generation", "prepare", "--owner", "bin"]);
            let next = b.root.join("installations/.next");
            let built = time(|| build_wide_and_deep(&next.join("left4dead2/deep"), levels, names));
            assert!(
                Command::new("chown")
                    .args(["-hR", "bin:bin"])
                    .arg(next.join("left4dead2/deep"))
                    .status()
                    .unwrap()
                    .success()
            );
            let (took, kib) =
                run_measured_of(&b, binary, &["generation", "commit", "--restart", "never"]);
            println!(
                "   {levels} levels x {names} names ({} entries, built in {:.1} s), {label}: {:.2} MiB peak RSS, {:.1} s",
                levels * (names + 1),
                built.as_secs_f64(),
                kib as f64 / 1024.0,
                took.as_secs_f64()
            );
            row.push(kib);
            fs::remove_dir_all(b.root.join("installations")).ok();
        }
        if let [ours, theirs] = row[..] {
            println!(
                "   ratio this/baseline: {:.3} (target <= 16 MiB: {})",
                ours as f64 / theirs as f64,
                if ours <= 16 * 1024 { "met" } else { "NOT met" }
            );
        } else if let [ours] = row[..] {
            println!(
                "   target <= 16 MiB: {}",
                if ours <= 16 * 1024 { "met" } else { "NOT met" }
            );
        }
    }
}

fn build_wide_and_deep(top: &Path, levels: usize, names: usize) {
    use rustix::fs::{Mode, OFlags};
    fs::create_dir_all(top).unwrap();
    let mut cur = open_dir(top);
    for _ in 0..levels {
        for i in 0..names {
            rustix::fs::symlinkat("x", &cur, format!("{i:040}")).unwrap();
        }
        rustix::fs::mkdirat(&cur, "d", Mode::from_raw_mode(0o755)).unwrap();
        cur = rustix::fs::openat(&cur, "d", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
            .unwrap();
    }
}

/// How many processes run `binary` now.
fn processes_of(binary: &str) -> usize {
    let exe = fs::canonicalize(binary).unwrap();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| fs::read_link(e.path().join("exe")).is_ok_and(|p| p == exe))
        .count()
}

fn sweepers(base: &Path) {
    let baseline = std::env::var("LEFT4ME_BENCH_BASELINE_HELPER").ok();
    println!("\n7. 40 resets in a row, the first of a 100,000-file layer");
    for (label, binary) in [
        ("this helper", Some(HELPER)),
        ("baseline", baseline.as_deref()),
    ] {
        let Some(binary) = binary else { continue };
        let b = Bench::new(base, &format!("sweepers-{}", label.len()), 0, false);
        let run = |args: &[&str]| assert!(b.helper_of(binary, args).status().unwrap().success());
        run(&["mount", "b"]);
        run(&["umount", "b"]);
        let upper = b.root.join("runtime/b/upper");
        build_wide(&upper, 100_000);
        let t = Instant::now();
        let mut most = 0;
        for round in 0..40 {
            fs::write(upper.join(format!("r{round}")), "").unwrap();
            run(&["reset", "b"]);
            most = most.max(processes_of(binary));
        }
        while processes_of(binary) > 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        println!(
            "   {label}: at most {most} sweepers at once; all deleted after {:.2} s (target: 1 sweeper per instance: {})",
            t.elapsed().as_secs_f64(),
            if most <= 1 { "met" } else { "NOT met" }
        );
    }
}
