//! Robustness: SIGKILL at random points of every verb, then convergence; and
//! concurrent verbs on one instance and on many.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Fixture, SERVICE_UID};

/// A small deterministic generator: reproducible failures, no extra crate.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn spawn(f: &Fixture, args: &[&str]) -> std::process::Child {
    f.command(args).stdout(Stdio::null()).spawn().unwrap()
}

/// The state every interrupted run must converge to with ordinary verbs:
/// mount works, shows the stack, is writable by the service user; umount
/// and reset work; nothing is left over.
fn assert_converges(f: &Fixture) {
    f.ok(&["mount", "vs1"]);
    assert!(f.is_mounted("vs1"));
    assert_eq!(
        fs::read_to_string(f.merged("vs1").join("top.txt")).unwrap(),
        "overlay\n"
    );
    assert_eq!(
        fs::metadata(f.path("runtime/vs1/upper")).unwrap().uid(),
        SERVICE_UID
    );
    f.ok(&["umount", "vs1"]);
    assert!(!f.is_mounted("vs1"));
    f.ok(&["reset", "vs1"]);
    f.wait_discarded("vs1");
    let mounts = common::mount_points()
        .iter()
        .filter(|m| m.contains("/runtime/"))
        .count();
    assert_eq!(mounts, 0, "stray mounts: {:?}", common::mount_points());
}

root_test! {
    fn sigkill_at_random_points_then_converge() {
        let f = Fixture::new();
        f.overlay("sm", &[("top.txt", "overlay\n")]);
        f.instance("vs1", &["sm"]);
        // Enough upper content that reset and its deletion take a while to kill.
        f.ok(&["mount", "vs1"]);
        let mut rng = Lcg(0x001e_f74e);
        let verbs: [&[&str]; 3] = [&["mount", "vs1"], &["umount", "vs1"], &["reset", "vs1"]];
        let mut killed = 0;
        let iterations = 120;
        for i in 0..iterations {
            if i % 10 == 0 && f.is_mounted("vs1") {
                for n in 0..200 {
                    let _ = fs::write(f.merged("vs1").join(format!("f{n}")), "x");
                }
            }
            let args = verbs[rng.below(3) as usize];
            let mut child = spawn(&f, args);
            std::thread::sleep(Duration::from_micros(rng.below(4000)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                killed += 1;
            }
            child.wait().unwrap();
        }
        eprintln!("{killed} of {iterations} runs killed mid-flight");
        assert!(killed >= iterations / 4, "only {killed} runs were actually interrupted; the test lost its teeth");
        // Whatever state the kills left, ordinary verbs converge from it.
        if f.is_mounted("vs1") {
            f.ok(&["umount", "vs1"]);
        }
        assert_converges(&f);
    }
}

root_test! {
    fn eight_parallel_mixed_verbs_on_one_instance() {
        let f = Fixture::new();
        f.overlay("sm", &[("top.txt", "overlay\n")]);
        f.instance("vs1", &["sm"]);
        let verbs: [&[&str]; 4] = [&["mount", "vs1"], &["umount", "vs1"], &["reset", "vs1"], &["status", "vs1"]];
        for round in 0..10 {
            let children: Vec<_> = (0..8).map(|i| (verbs[(i + round) % 4], spawn(&f, verbs[(i + round) % 4]))).collect();
            for (args, child) in children {
                let out = child.wait_with_output().unwrap();
                let code = out.status.code().unwrap();
                // Serialized verbs: each either succeeds or meets a state
                // another one made (reset of a mounted instance: conflict).
                let allowed: &[i32] = if args[0] == "reset" { &[0, 15] } else { &[0] };
                assert!(
                    allowed.contains(&code),
                    "{args:?} exited {code} in round {round}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let stacked = common::mount_points().iter().filter(|m| m.ends_with("/runtime/vs1/merged")).count();
            assert!(stacked <= 1, "{stacked} overlays stacked on merged/");
        }
        if f.is_mounted("vs1") {
            f.ok(&["umount", "vs1"]);
        }
        assert_converges(&f);
    }
}

root_test! {
    fn eight_instances_in_parallel_do_not_block_each_other() {
        let f = Fixture::new();
        f.overlay("sm", &[("top.txt", "overlay\n")]);
        let names: Vec<String> = (1..=8).map(|i| format!("vs{i}")).collect();
        for name in &names {
            f.instance(name, &["sm"]);
        }
        let started = Instant::now();
        for verb in ["mount", "umount", "reset", "mount"] {
            let children: Vec<_> = names.iter().map(|n| spawn(&f, &[verb, n])).collect();
            for mut child in children {
                assert!(child.wait().unwrap().success(), "{verb} failed");
            }
        }
        for name in &names {
            assert!(f.is_mounted(name), "{name} not mounted");
            assert_eq!(fs::read_to_string(f.merged(name).join("top.txt")).unwrap(), "overlay\n");
        }
        // A held lock on one instance must not delay the others.
        let lock = fs::File::open(f.path("runtime/.left4me/vs1.lock")).unwrap();
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
        let t = Instant::now();
        f.ok(&["umount", "vs2"]);
        assert!(t.elapsed() < Duration::from_secs(5), "vs2 waited on vs1's lock");
        let mut blocked = spawn(&f, &["umount", "vs1"]);
        std::thread::sleep(Duration::from_millis(300));
        assert!(blocked.try_wait().unwrap().is_none(), "umount vs1 ran while its lock was held");
        drop(lock);
        assert!(blocked.wait().unwrap().success());
        eprintln!("8 instances x 4 verbs in {:?}", started.elapsed());
    }
}

root_test! {
    /// The generation verbs killed at random points (a commit halfway
    /// through its take-over, an import halfway through its copy, a gc
    /// halfway through deleting): the next runs converge, `current` always
    /// names a complete generation, and what was set aside is swept.
    fn sigkill_generation_verbs_at_random_points_then_converge() {
        let f = Fixture::new();
        f.overlay("sm", &[("top.txt", "overlay\n")]);
        f.instance("vs1", &["sm"]);
        let tree = f.outside.join("game");
        for d in 0..20 {
            let dir = tree.join(format!("left4dead2/d{d}"));
            fs::create_dir_all(&dir).unwrap();
            for i in 0..50 {
                fs::write(dir.join(format!("f{i}")), vec![b'x'; 4096]).unwrap();
            }
        }
        fs::write(tree.join("srcds_run"), "#!/bin/sh\n").unwrap();
        let tree = tree.to_str().unwrap().to_owned();
        f.ok(&["generation", "import", &tree, "--restart", "never"]);
        let verbs: [Vec<&str>; 4] = [
            vec!["generation", "import", &tree, "--restart", "never"],
            vec!["generation", "prepare", "--owner", "bin"],
            vec!["generation", "commit", "--restart", "never"],
            vec!["generation", "gc", "--keep", "2"],
        ];
        let mut rng = Lcg(0x0005_eed5);
        let mut killed = 0;
        let iterations = 60;
        for _ in 0..iterations {
            let mut child = spawn(&f, &verbs[rng.below(4) as usize]);
            std::thread::sleep(Duration::from_micros(rng.below(20_000)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                killed += 1;
            }
            child.wait().unwrap();
            // After every run, killed or not, `current` names a complete
            // generation.
            let current = f.read("installations/current");
            assert!(
                f.path(&format!("installations/{}/srcds_run", current.trim_end())).is_file(),
                "current names {current:?}, which is not a complete generation"
            );
        }
        eprintln!("{killed} of {iterations} generation verbs killed mid-flight");
        assert!(killed >= iterations / 4, "only {killed} runs were actually interrupted; the test lost its teeth");
        // Ordinary verbs converge from whatever the kills left.
        f.ok(&["generation", "list"]);
        f.ok(&["generation", "import", &tree, "--restart", "never"]);
        f.ok(&["generation", "gc", "--keep", "1"]);
        // What was set aside is deleted by the detached sweeper the verbs
        // leave behind (generation::sweep_in_background).
        let started = std::time::Instant::now();
        let left = loop {
            let left: Vec<String> = fs::read_dir(f.path("installations"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            if left.len() == 2 || started.elapsed() > Duration::from_secs(30) {
                break left;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(left.len(), 2, "expected current and one generation, found {left:?}");
        assert_converges(&f);
    }
}
