//! The four verbs on real overlayfs mounts: layer priority, writes, reset,
//! idempotency, status, ownership through idmapped layers, large stacks.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::{Fixture, SERVICE_UID};

fn as_service_user(script: &str) -> std::process::Output {
    common::run_as(common::SERVICE_USER, script)
}

root_test! {
    fn mount_reads_layers_in_priority_order() {
        let f = Fixture::new();
        f.overlay("sourcemod", &[("left4dead2/cfg/server.cfg", "sourcemod\n"), ("left4dead2/addons/sm.txt", "sm\n"), ("shared.txt", "sourcemod\n")]);
        f.overlay("confogl", &[("left4dead2/cfg/server.cfg", "confogl\n"), ("shared.txt", "confogl\n"), ("only-confogl.txt", "c\n")]);
        f.instance("vs1", &["confogl", "sourcemod"]);
        f.write("instances/vs1/layer/left4dead2/cfg/server.cfg", "hostname \"instance layer\"\n");
        let out = f.ok(&["mount", "vs1"]);
        assert!(out.contains("vs1: mounted"), "{out}");
        assert!(f.is_mounted("vs1"));
        let m = f.merged("vs1");
        let read = |rel: &str| fs::read_to_string(m.join(rel)).unwrap();
        assert_eq!(read("left4dead2/cfg/server.cfg"), "hostname \"instance layer\"\n");
        assert_eq!(read("shared.txt"), "confogl\n", "first overlay in L4D2_OVERLAYS wins");
        assert_eq!(read("left4dead2/addons/sm.txt"), "sm\n");
        assert_eq!(read("only-confogl.txt"), "c\n");
        assert_eq!(read("left4dead2/gameinfo.txt"), "installation\n");
        assert_eq!(read("srcds_run"), "#!/bin/sh\n");
    }
}

root_test! {
    fn game_writes_land_in_upper_owned_by_the_service_user() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.ok(&["mount", "vs1"]);
        let m = f.merged("vs1");
        let out = as_service_user(&format!(
            "echo hello > {0}/left4dead2/logs/L001.log && echo appended >> {0}/left4dead2/cfg/server.cfg && mkdir -p {0}/left4dead2/downloads/maps && touch {0}/left4dead2/downloads/maps/x.bsp",
            m.display()
        ));
        assert!(out.status.success(), "game could not write: {}", String::from_utf8_lossy(&out.stderr));
        // The lower layer is untouched and still root-owned.
        assert_eq!(f.read("installation/left4dead2/cfg/server.cfg"), "hostname \"installation\"\n");
        assert_eq!(fs::metadata(f.path("installation/left4dead2/cfg")).unwrap().uid(), 0);
        assert!(!f.path("installation/left4dead2/logs/L001.log").exists());
        // Everything the game wrote, including copied-up directories, is the service user's.
        for rel in ["left4dead2", "left4dead2/logs", "left4dead2/logs/L001.log", "left4dead2/cfg/server.cfg", "left4dead2/downloads/maps/x.bsp"] {
            let meta = fs::metadata(f.path(&format!("runtime/vs1/upper/{rel}"))).unwrap();
            assert_eq!(meta.uid(), SERVICE_UID, "{rel} in upper is uid {}", meta.uid());
        }
        assert_eq!(f.read("runtime/vs1/upper/left4dead2/cfg/server.cfg"), "hostname \"installation\"\nappended\n");
    }
}

root_test! {
    fn every_verb_is_idempotent() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        // Each verb run again says it had nothing to do and leaves the
        // state dir exactly as its first run did (times aside; once reset's
        // background deletion is done).
        let twice = |verb: &str, first: &str, again: &str| {
            assert!(f.ok(&[verb, "vs1"]).contains(first), "{verb}");
            f.wait_discarded("vs1");
            let after_first = f.layout();
            assert!(f.ok(&[verb, "vs1"]).contains(again), "{verb} again");
            f.wait_discarded("vs1");
            let after_again = f.layout();
            let changed: Vec<_> = after_first
                .iter()
                .filter(|(k, v)| after_again.get(*k) != Some(*v))
                .map(|(k, _)| k)
                .chain(after_again.keys().filter(|k| !after_first.contains_key(*k)))
                .collect();
            assert!(changed.is_empty(), "{verb} run again changed {changed:?}");
        };
        assert!(f.ok(&["umount", "vs1"]).contains("not-mounted"));
        twice("mount", "vs1: mounted", "already-mounted");
        let mounts = common::mount_points().iter().filter(|m| m.ends_with("/runtime/vs1/merged")).count();
        assert_eq!(mounts, 1, "a second mount must not stack another overlay");
        twice("umount", "vs1: unmounted", "not-mounted");
        assert!(!f.is_mounted("vs1"));
        twice("reset", "reset", "reset");
        f.ok(&["mount", "vs1"]);
    }
}

root_test! {
    fn reset_discards_writes_and_keeps_instance_config() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.write("instances/vs1/layer/left4dead2/cfg/server.cfg", "hostname \"mine\"\n");
        f.ok(&["mount", "vs1"]);
        let m = f.merged("vs1");
        fs::write(m.join("left4dead2/logs/game.log"), "played").unwrap();
        fs::create_dir_all(m.join("deep/a/b/c")).unwrap();
        fs::write(m.join("deep/a/b/c/f"), "x").unwrap();
        let err = f.fails(&["reset", "vs1"], 15);
        assert!(err.contains("is mounted") && err.contains("systemctl stop left4me-server@vs1"), "{err}");
        assert!(m.join("left4dead2/logs/game.log").exists(), "a refused reset must not touch the live layer");
        f.ok(&["umount", "vs1"]);
        f.ok(&["reset", "vs1"]);
        f.wait_discarded("vs1");
        assert_eq!(fs::read_dir(f.path("runtime/vs1/upper")).unwrap().count(), 0);
        assert_eq!(fs::metadata(f.path("runtime/vs1/upper")).unwrap().uid(), SERVICE_UID);
        f.ok(&["mount", "vs1"]);
        assert!(!m.join("left4dead2/logs/game.log").exists());
        assert!(!m.join("deep").exists());
        assert_eq!(fs::read_to_string(m.join("left4dead2/cfg/server.cfg")).unwrap(), "hostname \"mine\"\n");
        assert!(f.path("instances/vs1/instance.env").exists());
    }
}

root_test! {
    /// The web app's one-request reset: a marker in the instance dir, then
    /// one `systemctl restart` (umount, mount). Only the marker's existence
    /// counts, whatever it is; a symlink is not followed (its target stays).
    fn a_marker_makes_the_next_mount_start_from_an_empty_layer() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.ok(&["mount", "vs1"]);
        let m = f.merged("vs1");
        fs::write(m.join("left4dead2/logs/game.log"), "played").unwrap();
        fs::write(f.path("instances/vs1/reset-at-start"), "").unwrap();
        assert!(f.ok(&["mount", "vs1"]).contains("already-mounted"));
        assert!(m.join("left4dead2/logs/game.log").exists(), "a live layer is never reset");
        assert!(f.path("instances/vs1/reset-at-start").exists(), "the request waits for the next mount");
        f.ok(&["umount", "vs1"]);
        f.ok(&["mount", "vs1"]);
        assert!(!m.join("left4dead2/logs/game.log").exists(), "the marked start begins empty");
        assert!(!f.path("instances/vs1/reset-at-start").exists(), "the request is consumed");
        fs::write(m.join("left4dead2/logs/game.log"), "played again").unwrap();
        f.ok(&["umount", "vs1"]);
        f.ok(&["mount", "vs1"]);
        assert!(m.join("left4dead2/logs/game.log").exists(), "an unmarked start keeps the layer");
        f.ok(&["umount", "vs1"]);
        let target = f.path("outside");
        fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, f.path("instances/vs1/reset-at-start")).unwrap();
        f.ok(&["mount", "vs1"]);
        assert!(!m.join("left4dead2/logs/game.log").exists(), "a symlink counts as the marker");
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep", "and is never followed");
        assert!(fs::symlink_metadata(f.path("instances/vs1/reset-at-start")).is_err());
        f.ok(&["umount", "vs1"]);
        fs::create_dir_all(f.path("instances/vs1/reset-at-start/full")).unwrap();
        let err = f.fails(&["mount", "vs1"], 1);
        assert!(err.contains("reset-at-start") && err.contains("touch"), "{err}");
        assert!(!f.is_mounted("vs1"));
    }
}

root_test! {
    fn mount_makes_the_games_home_and_reset_empties_it() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.ok(&["mount", "vs1"]);
        let home = f.path("runtime/vs1/home");
        let meta = fs::metadata(&home).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (SERVICE_UID, 0o710));
        fs::create_dir_all(home.join(".steam/sdk32")).unwrap();
        fs::write(home.join(".steam/registry.vdf"), "state").unwrap();
        // A mode the game changed converges back at the next mount.
        fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
        f.ok(&["umount", "vs1"]);
        f.ok(&["mount", "vs1"]);
        assert_eq!(fs::metadata(&home).unwrap().mode() & 0o7777, 0o710);
        assert!(home.join(".steam/registry.vdf").exists(), "a remount keeps the home");
        f.ok(&["umount", "vs1"]);
        f.ok(&["reset", "vs1"]);
        f.wait_discarded("vs1");
        assert_eq!(fs::read_dir(&home).unwrap().count(), 0, "reset leaves an empty home");
        let meta = fs::metadata(&home).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (SERVICE_UID, 0o710));
    }
}

root_test! {
    fn reset_removes_deeply_nested_trees() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.ok(&["mount", "vs1"]);
        f.ok(&["umount", "vs1"]);
        let mut p = f.path("runtime/vs1/upper");
        for i in 0..300 {
            p.push(format!("d{i}"));
        }
        fs::create_dir_all(&p).unwrap();
        fs::write(p.join("leaf"), "x").unwrap();
        f.ok(&["reset", "vs1"]);
        f.wait_discarded("vs1");
        let left: Vec<_> = fs::read_dir(f.path("runtime/vs1")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 4, "only upper, work, home and merged remain: {left:?}");
    }
}

root_test! {
    fn status_reports_mount_stack_and_upper_size() {
        let f = Fixture::new();
        f.overlay("sourcemod", &[("a", "1")]);
        f.instance("vs1", &["sourcemod"]);
        f.instance("coop", &[]);
        let s = f.status("vs1");
        assert_eq!(s["mounted"], false);
        assert_eq!(s["layers_from"], "config");
        f.ok(&["mount", "vs1"]);
        fs::write(f.merged("vs1").join("big"), vec![7u8; 100_000]).unwrap();
        let s = f.status("vs1");
        assert_eq!(s["mounted"], true);
        assert_eq!(s["layers_from"], "mount");
        assert_eq!(s["stale"], false);
        let roles: Vec<_> = s["layers"].as_array().unwrap().iter().map(|l| l["role"].as_str().unwrap().to_owned()).collect();
        assert_eq!(roles, ["upper", "overlay", "installation"]);
        assert_eq!(s["layers"][1]["path"], f.path("overlays/sourcemod").to_str().unwrap());
        assert_eq!(s["upper"]["files"], 1);
        assert!(s["upper"]["bytes"].as_u64().unwrap() >= 100_000);
        assert!(s["error"].is_null());
        // Config changed while mounted: reported stale, and mount refuses to pretend.
        f.instance("vs1", &[]);
        assert_eq!(f.status("vs1")["stale"], true);
        let err = f.fails(&["mount", "vs1"], 15);
        assert!(err.contains("another layer stack"), "{err}");
        // All instances, sorted.
        let all: serde_json::Value = serde_json::from_str(&f.ok(&["status", "--json"])).unwrap();
        let names: Vec<_> = all["instances"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_owned()).collect();
        assert_eq!(names, ["coop", "vs1"]);
        let human = f.ok(&["status"]);
        assert!(human.contains("vs1: mounted") && human.contains("coop: not mounted"), "{human}");
        f.fails(&["status", "nosuch"], 12);
    }
}

root_test! {
    fn status_exits_with_the_error_of_a_broken_instance() {
        let f = Fixture::new();
        f.instance("good", &[]);
        f.write("instances/bad/instance.env", "L4D2_PORT=27015\nL4D2_OVERLAYS=\"missing\"\n");
        let out = f.helper(&["status", "--json"]);
        assert_eq!(out.status.code(), Some(12));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["instances"][0]["name"], "bad");
        assert_eq!(v["instances"][0]["error"]["kind"], "missing");
        assert!(v["instances"][0]["error"]["message"].as_str().unwrap().contains("overlays/missing"));
        assert!(v["instances"][1]["error"].is_null());
    }
}

root_test! {
    fn json_outcomes_and_errors() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        let v: serde_json::Value = serde_json::from_str(&f.ok(&["mount", "vs1", "--json"])).unwrap();
        assert_eq!(v["result"], "mounted");
        assert_eq!(v["layers"], serde_json::json!(["installation"]));
        let out = f.helper(&["reset", "vs1", "--json"]);
        assert_eq!(out.status.code(), Some(15));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["error"]["kind"], "conflict");
        assert_eq!(v["error"]["exit_code"], 15);
    }
}

root_test! {
    fn a_hundred_overlays_with_long_names_mount() {
        let f = Fixture::new();
        let names: Vec<String> = (0..120).map(|i| format!("{i:03}-{}", "long-overlay-name-".repeat(3)).chars().take(64).collect()).collect();
        for (i, name) in names.iter().enumerate() {
            f.overlay(name, &[(&format!("layer{i}.txt"), name), ("winner.txt", name)]);
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        // Their plain paths alone would not fit in one page of mount options.
        assert!(refs.iter().map(|n| f.path(&format!("overlays/{n}")).to_str().unwrap().len() + 1).sum::<usize>() > 4096);
        f.instance("big", &refs);
        f.ok(&["mount", "big"]);
        let m = f.merged("big");
        assert_eq!(fs::read_to_string(m.join("winner.txt")).unwrap(), names[0]);
        assert_eq!(fs::read_to_string(m.join("layer119.txt")).unwrap(), names[119]);
        assert_eq!(f.status("big")["layers"].as_array().unwrap().len(), 122);
        f.ok(&["umount", "big"]);
    }
}

root_test! {
    fn the_largest_stack_overlayfs_allows_mounts_or_fails_clearly() {
        let f = Fixture::new();
        let names: Vec<String> = (0..498).map(|i| format!("o{i}")).collect();
        for name in &names {
            f.overlay(name, &[]);
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        f.instance("huge", &refs);
        let out = f.helper(&["mount", "huge"]);
        let release = rustix::system::uname().release().to_string_lossy().into_owned();
        let mut version = release.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse::<u32>().unwrap_or(0));
        let has_lowerdir_plus = (version.next().unwrap(), version.next().unwrap()) >= (6, 8);
        match out.status.code() {
            Some(17) if has_lowerdir_plus => panic!("Linux {release} adds layers one at a time; the mount must succeed"),
            Some(0) => assert!(f.is_mounted("huge")),
            Some(17) => assert!(String::from_utf8_lossy(&out.stderr).contains("lower layers need"), "{}", String::from_utf8_lossy(&out.stderr)),
            other => panic!("unexpected {other:?}: {}", String::from_utf8_lossy(&out.stderr)),
        }
    }
}

root_test! {
    fn umount_names_the_processes_that_keep_it_busy() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.ok(&["mount", "vs1"]);
        let m = f.merged("vs1");
        let mut holder = std::process::Command::new("sleep").arg("60").current_dir(m.join("left4dead2")).spawn().unwrap();
        let err = f.fails(&["umount", "vs1"], 14);
        assert!(err.contains(&format!("pid {} (sleep): working directory", holder.id())), "{err}");
        assert!(f.is_mounted("vs1"));
        holder.kill().unwrap();
        holder.wait().unwrap();
        // The reference unit's failure: a process in another mount namespace
        // (a service's private one) keeps a propagated copy busy. Make the
        // state dir a shared mount, as / is under systemd, so the copy is a
        // slave of ours (the state dir itself: root follows no mount point
        // below it).
        f.ok(&["umount", "vs1"]);
        let rt = f.root.clone();
        for args in [vec!["--bind", rt.to_str().unwrap(), rt.to_str().unwrap()], vec!["--make-shared", rt.to_str().unwrap()]] {
            assert!(std::process::Command::new("mount").args(&args).status().unwrap().success());
        }
        f.ok(&["mount", "vs1"]);
        let script = format!("cd {}/left4dead2 && exec sleep 60", m.display());
        let mut ns_holder = std::process::Command::new("unshare").args(["--mount", "--propagation", "slave", "sh", "-c", &script]).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let err = f.fails(&["umount", "vs1"], 14);
        assert!(err.contains("mount namespace mnt:[") && err.contains(&format!("pid {} (sleep)", ns_holder.id())), "{err}");
        ns_holder.kill().unwrap();
        ns_holder.wait().unwrap();
        f.ok(&["umount", "vs1"]);
        assert!(!f.is_mounted("vs1"));
    }
}

root_test! {
    fn a_fresh_host_needs_only_the_state_dir() {
        let f = Fixture::new();
        fs::remove_dir(f.path("runtime")).unwrap();
        f.instance("vs1", &[]);
        // systemd units may set UMask=0077, which also applies to the + helper.
        let status = std::process::Command::new("sh")
            .args(["-c", "umask 077 && exec \"$0\" --state-dir \"$1\" mount vs1", common::HELPER])
            .arg(&f.root)
            .env("LEFT4ME_USER", common::SERVICE_USER)
            .env("LEFT4ME_GROUP", common::SERVICE_USER)
            .env("LEFT4ME_CONSOLE_DIR", &f.console)
        .env("LEFT4ME_HEALTH_RUN_DIR", &f.health_run)
            .status()
            .unwrap();
        assert!(status.success());
        let rt_i = fs::metadata(f.path("runtime/vs1")).unwrap();
        // The game reaches merged/ through its group; nobody else can.
        assert_eq!((rt_i.uid(), rt_i.gid(), rt_i.mode() & 0o7777), (0, SERVICE_UID, 0o750));
        assert_eq!(fs::metadata(f.path("runtime/vs1/upper")).unwrap().mode() & 0o7777, 0o755);
        let rt = fs::metadata(f.path("runtime")).unwrap();
        assert_eq!((rt.uid(), rt.mode() & 0o7777), (0, 0o711));
        let work = fs::metadata(f.path("runtime/vs1/work")).unwrap();
        assert_eq!((work.uid(), work.mode() & 0o7777), (0, 0o700));
        let helper = fs::metadata(f.path("runtime/.left4me")).unwrap();
        assert_eq!((helper.uid(), helper.mode() & 0o7777), (0, 0o700));
    }
}

root_test! {
    fn mount_writes_the_games_environment_and_umount_removes_it() {
        let f = Fixture::new();
        f.write(
            "instances/vs1/instance.env",
            // L4D2_ARGS may not carry quotes (srcds_run re-splits them); another
            // L4D2_* key carries every character the copy has to escape.
            "# the web app's\nL4D2_PORT=27016\nL4D2_MOTD='+map \"c1m1\" $x `y` \\z'\nL4D2_HEALTH_TIMEOUT=5\n",
        );
        f.ok(&["mount", "vs1"]);
        let copy = f.path("runtime/.left4me/vs1.env");
        let meta = fs::metadata(&copy).unwrap();
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (0, 0, 0o600));
        let text = fs::read_to_string(&copy).unwrap();
        let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(body, ["L4D2_PORT=\"27016\"", r#"L4D2_MOTD="+map \"c1m1\" \$x \`y\` \\z""#, "L4D2_HEALTH_TIMEOUT=\"5\"", "L4D2_CLIENT_PORT=\"27116\"", "L4D2_TV_PORT=\"27216\""]);
        // Config changed, same stack: "already mounted", and the copy follows.
        f.write("instances/vs1/instance.env", "L4D2_PORT=27017\n");
        assert!(f.ok(&["mount", "vs1"]).contains("already-mounted"));
        let text = fs::read_to_string(&copy).unwrap();
        assert!(text.ends_with("\nL4D2_PORT=\"27017\"\nL4D2_CLIENT_PORT=\"27117\"\nL4D2_TV_PORT=\"27217\"\n"), "{text}");
        // An invalid config leaves the last good copy and the mount alone.
        f.write("instances/vs1/instance.env", "L4D2_PORT=27017\nLD_PRELOAD=/x.so\n");
        f.fails(&["mount", "vs1"], 11);
        assert!(fs::read_to_string(&copy).unwrap().contains("\nL4D2_PORT=\"27017\"\n"));
        f.ok(&["umount", "vs1"]);
        assert!(!copy.exists(), "a stale copy would feed the next start");
        f.ok(&["umount", "vs1"]);
        assert!(!copy.exists());
    }
}

root_test! {
    fn reset_returns_at_once_however_large_the_layer() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.ok(&["mount", "vs1"]);
        f.ok(&["umount", "vs1"]);
        let upper = f.path("runtime/vs1/upper");
        for d in 0..200 {
            let dir = upper.join(format!("d{d}"));
            fs::create_dir(&dir).unwrap();
            let dir = fs::File::open(&dir).unwrap();
            for i in 0..1000 {
                let mode = rustix::fs::Mode::from_raw_mode(0o644);
                rustix::fs::mknodat(&dir, format!("f{i}"), rustix::fs::FileType::RegularFile, mode, 0).unwrap();
            }
        }
        // As a caller does: out=$(left4me-overlay reset vs1 2>&1) waits until
        // every holder of the pipe has closed it.
        let t = std::time::Instant::now();
        let out = f.helper(&["reset", "vs1"]);
        let took = t.elapsed();
        eprintln!("reset of 200,000 files returned in {took:?}");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("vs1: reset"));
        assert!(took < std::time::Duration::from_secs(1), "reset kept the caller's pipes for {took:?}");
        // upper/ and work/ were set aside; the big one is still being deleted.
        assert!(f.status("vs1")["discard_pending"].as_u64().unwrap() >= 1, "the deletion should still be running");
        for _ in 0..6000 {
            if f.status("vs1")["discard_pending"] == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(f.status("vs1")["discard_pending"], 0, "the detached deletion did not finish in 60 s");
        assert_eq!(fs::read_dir(&upper).unwrap().count(), 0);
    }
}

root_test! {
    fn status_creates_nothing() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        fs::remove_dir(f.path("runtime")).unwrap();
        let before = f.snapshot_except("none");
        let s = f.status("vs1");
        assert_eq!(s["mounted"], false);
        assert!(s["error"].is_null(), "{s}");
        f.ok(&["status"]);
        assert!(!f.path("runtime").exists(), "status created runtime/");
        assert_eq!(f.snapshot_except("none"), before);
    }
}

root_test! {
    fn a_read_only_state_dir_is_an_os_error_not_a_missing_one() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        let root = f.root.to_str().unwrap();
        for args in [vec!["--bind", root, root], vec!["-o", "remount,bind,ro", root]] {
            assert!(std::process::Command::new("mount").args(&args).status().unwrap().success());
        }
        let err = f.fails(&["mount", "vs1"], 1);
        assert!(err.contains("Read-only file system") && err.contains("runtime/vs1"), "{err}");
        assert!(err.contains("hint: the filesystem holding the state directory is read-only"), "{err}");
        // status only reads: it still answers.
        assert_eq!(f.status("vs1")["mounted"], false);
    }
}

root_test! {
    fn unknown_instances_get_a_hint() {
        let f = Fixture::new();
        let err = f.fails(&["status", "nosuch"], 12);
        assert!(err.contains("no instance nosuch") && err.contains("hint: left4me-overlay status lists the instances"), "{err}");
        let err = f.fails(&["reset", "nosuch"], 12);
        assert!(err.contains("hint: "), "{err}");
        let err = f.fails(&["mount", "nosuch"], 12);
        assert!(err.contains("hint: create"), "{err}");
    }
}

root_test! {
    /// Issue 22: a mount is refused while a mounted instance uses one of its
    /// ports, judged by the copies root wrote at those mounts, not by what
    /// their instance.env says now; explicit ports reach the copy.
    fn a_mount_is_refused_while_a_running_instance_uses_one_of_its_ports() {
        let f = Fixture::new();
        f.write("instances/vs1/instance.env", "L4D2_PORT=27015\n");
        // vs2's game port is vs1's client port (27015 + 100).
        f.write("instances/vs2/instance.env", "L4D2_PORT=27115\n");
        f.ok(&["mount", "vs1"]);
        let err = f.fails(&["mount", "vs2"], 23);
        assert!(
            err.contains("port 27115 (the game port of instance vs2) is the client port of instance vs1, which is running"),
            "{err}"
        );
        assert!(err.contains("or stop left4me-server@vs1 first"), "{err}");
        assert!(!f.is_mounted("vs2"));
        assert!(!f.path("runtime/.left4me/vs2.env").exists());
        // Nor a console: it lives as long as the mount.
        assert!(fs::symlink_metadata(f.console.join("vs2.stdin")).is_err());
        assert!(f.console.join("vs1.stdin").exists());
        // What vs1's instance.env says now does not count: its copy does.
        f.write("instances/vs1/instance.env", "L4D2_PORT=40000\n");
        f.fails(&["mount", "vs2"], 23);
        // Remounting vs1 itself is no conflict with itself.
        f.write("instances/vs1/instance.env", "L4D2_PORT=27015\n");
        assert!(f.ok(&["mount", "vs1"]).contains("already-mounted"));
        // SourceTV off frees its port; explicit ports are what is checked.
        f.write("instances/vs2/instance.env", "L4D2_PORT=27215\nL4D2_CLIENT_PORT=27016\n");
        let err = f.fails(&["mount", "vs2"], 23);
        assert!(err.contains("is the SourceTV port of instance vs1"), "{err}");
        f.write("instances/vs1/instance.env", "L4D2_PORT=27015\nL4D2_ARGS=-nohltv\n");
        f.ok(&["umount", "vs1"]);
        f.ok(&["mount", "vs1"]);
        f.write("instances/vs2/instance.env", "L4D2_PORT=27215\nL4D2_CLIENT_PORT=27016\nL4D2_TV_PORT=27017\n");
        f.ok(&["mount", "vs2"]);
        let copy = f.read("runtime/.left4me/vs2.env");
        assert!(copy.contains("L4D2_CLIENT_PORT=\"27016\"\nL4D2_TV_PORT=\"27017\"\n"), "{copy}");
        assert_eq!(f.status("vs2")["ports"], serde_json::json!({"game": 27215, "client": 27016, "sourcetv": 27017}));
        assert_eq!(f.status("vs1")["ports"], serde_json::json!({"game": 27015, "client": 27115, "sourcetv": null}));
        // A copy left by an instance that is not mounted does not count.
        f.ok(&["umount", "vs2"]);
        fs::write(f.path("runtime/.left4me/vs3.env"), "L4D2_PORT=\"27215\"\n").unwrap();
        f.ok(&["mount", "vs2"]);
        // A running instance's copy this helper would not write (an older
        // helper's, with +tv_port in L4D2_ARGS): its ports are unknown, and
        // it stops no other instance from starting.
        f.ok(&["umount", "vs2"]);
        fs::write(f.path("runtime/.left4me/vs1.env"), "L4D2_PORT=\"27015\"\nL4D2_ARGS=\"+tv_port 27215\"\n").unwrap();
        f.ok(&["mount", "vs2"]);
        // A mounted instance without a copy (an umount removed it, then
        // found the mount busy): its ports are unknown, and it stops no
        // other instance from starting either.
        f.ok(&["umount", "vs2"]);
        fs::remove_file(f.path("runtime/.left4me/vs1.env")).unwrap();
        f.ok(&["mount", "vs2"]);
        f.ok(&["umount", "vs1"]);
        f.ok(&["umount", "vs2"]);
    }
}

/// The shared stand-in systemctl, beside the fixture's console directory.
fn fake_systemctl(f: &Fixture) -> (std::path::PathBuf, std::path::PathBuf) {
    common::fake_systemctl(f.console.parent().unwrap())
}

root_test! {
    /// L4D2_CPUS: validated, checked against the host's CPUs at mount
    /// (exit 24), handed to systemctl as the server's AllowedCPUs=, and
    /// given back (every CPU) at the next mount without it; systemctl runs
    /// only then, never for an instance that was not pinned this boot.
    fn cpus_are_checked_against_the_host_and_set_on_the_server_unit() {
        let f = Fixture::new();
        let (systemctl, log) = fake_systemctl(&f);
        let systemctl = systemctl.to_str().unwrap();
        let calls = || fs::read_to_string(&log).unwrap_or_default();
        let record = f.path("runtime/.left4me/vs1.cpus");
        let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        let boot = boot.trim();
        f.write("instances/vs1/instance.env", "L4D2_PORT=27015\nL4D2_CPUS=0,0-0\n");
        f.ok(&["mount", "--systemctl", systemctl, "vs1"]);
        assert_eq!(calls(), "set-property --runtime left4me-server@vs1.service AllowedCPUs=0\n");
        assert_eq!(fs::read_to_string(&record).unwrap(), format!("{boot} 0\n"));
        let meta = fs::metadata(&record).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o600));
        // systemd keeps the property across the umount; so does the record.
        f.ok(&["umount", "vs1"]);
        assert!(record.exists());
        f.write("instances/vs1/instance.env", "L4D2_PORT=27015\n");
        f.ok(&["mount", "--systemctl", systemctl, "vs1"]);
        assert_eq!(calls().lines().last(), Some("set-property --runtime left4me-server@vs1.service AllowedCPUs="), "no L4D2_CPUS: every CPU again");
        assert!(!record.exists());
        // Nothing pinned: no systemctl at all, nor for a pin of an earlier boot.
        f.ok(&["umount", "vs1"]);
        f.ok(&["mount", "--systemctl", systemctl, "vs1"]);
        f.ok(&["umount", "vs1"]);
        fs::write(&record, "00000000-0000-0000-0000-000000000000 1\n").unwrap();
        f.ok(&["mount", "--systemctl", systemctl, "vs1"]);
        f.ok(&["umount", "vs1"]);
        assert_eq!(calls().lines().count(), 2, "{}", calls());
        // A refused call fails the mount before anything is mounted.
        fs::write(f.console.parent().unwrap().join("systemctl.exit"), "1\n").unwrap();
        f.write("instances/vs1/instance.env", "L4D2_PORT=27015\nL4D2_CPUS=0\n");
        let err = f.fails(&["mount", "--systemctl", systemctl, "vs1"], 1);
        assert!(err.contains("set-property --runtime left4me-server@vs1.service AllowedCPUs=0: exit status: 1"), "{err}");
        assert!(!f.is_mounted("vs1"));
        assert!(!f.console.join("vs1.stdin").exists());
        // Refusals come before any call.
        let before = calls().lines().count();
        f.write("instances/vs1/instance.env", "L4D2_PORT=27015\nL4D2_CPUS=0,8000\n");
        let err = f.fails(&["mount", "--systemctl", systemctl, "vs1"], 24);
        assert!(err.contains("instance.env:2: L4D2_CPUS=0,8000 names CPU 8000 that this host does not have (online: "), "{err}");
        assert!(!f.is_mounted("vs1"));
        f.write("instances/vs1/instance.env", "L4D2_PORT=27015\nL4D2_CPUS=\"1 2\"\n");
        let err = f.fails(&["mount", "--systemctl", systemctl, "vs1"], 11);
        assert!(err.contains("instance.env:2: L4D2_CPUS: item 1 (\"1 2\") is not a CPU number"), "{err}");
        assert_eq!(calls().lines().count(), before);
    }
}

root_test! {
    /// The console (docs/unit.md, "The console"): mount makes a fresh FIFO
    /// root:<service group> 0660 in a root-only directory, replacing what
    /// is there without following it; a mount of a mounted instance keeps
    /// the game's FIFO; umount removes it without opening it.
    fn mount_makes_the_console_and_umount_removes_it() {
        use std::os::unix::fs::FileTypeExt;
        let f = Fixture::new();
        f.instance("vs1", &[]);
        let fifo = f.console.join("vs1.stdin");
        // Whatever an earlier run left, a link to a file of someone else's
        // included, is replaced, never followed.
        fs::create_dir(&f.console).unwrap();
        std::os::unix::fs::symlink(f.outside.join("secret"), &fifo).unwrap();
        let before = f.snapshot_except("vs1");
        f.ok(&["mount", "vs1"]);
        assert_eq!(f.snapshot_except("vs1"), before);
        let meta = fs::symlink_metadata(&fifo).unwrap();
        assert!(meta.file_type().is_fifo());
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (0, SERVICE_UID, 0o660));
        let dir = fs::metadata(&f.console).unwrap();
        assert_eq!((dir.uid(), dir.mode() & 0o7777), (0, 0o755));
        let ino = meta.ino();
        assert!(f.ok(&["mount", "vs1"]).contains("already-mounted"));
        assert_eq!(fs::metadata(&fifo).unwrap().ino(), ino, "the running game's FIFO is kept");
        // A writer blocked because nobody reads: umount removes the FIFO
        // without opening it (a writer can hold the pipe's mutex), so the
        // writer stays blocked on the unlinked FIFO, and a kill ends it.
        let mut writer = std::process::Command::new("sh")
            .args(["-c", "echo status > \"$0\""])
            .arg(&fifo)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(writer.try_wait().unwrap().is_none(), "the writer should block in open(2)");
        f.ok(&["umount", "vs1"]);
        assert!(fs::symlink_metadata(&fifo).is_err(), "the console outlived the mount");
        assert!(writer.try_wait().unwrap().is_none(), "nothing opened the removed FIFO");
        writer.kill().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while writer.try_wait().unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "the blocked writer did not die of SIGKILL");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // A fresh FIFO at every mount; a plain file there is replaced too.
        fs::write(&fifo, "old\n").unwrap();
        f.ok(&["mount", "vs1"]);
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        f.ok(&["umount", "vs1"]);
        // A directory anyone but root may write to is refused (exit 13).
        fs::set_permissions(&f.console, fs::Permissions::from_mode(0o777)).unwrap();
        let err = f.fails(&["mount", "vs1"], 13);
        assert!(err.contains("must be owned by root and writable by nobody else"), "{err}");
        assert!(!f.is_mounted("vs1"));
    }
}

root_test! {
    fn a_failed_mount_of_an_instance_is_kept_for_the_group_and_cleared_by_the_next_success() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        let record = "runtime/vs1/last-failure.json";
        // A refused flag: exit 11, the helper's message, kept root:group 0640.
        f.write("instances/vs1/instance.env", "L4D2_PORT=27015\nL4D2_ARGS=\"-debug\"\n");
        f.fails(&["mount", "vs1"], 11);
        let kept: serde_json::Value = serde_json::from_str(&f.read(record)).unwrap();
        assert_eq!((kept["verb"].as_str(), kept["exit_code"].as_u64(), kept["kind"].as_str()), (Some("mount"), Some(11), Some("invalid-config")));
        assert!(kept["message"].as_str().unwrap().contains("-debug"), "{kept}");
        let meta = fs::metadata(f.path(record)).unwrap();
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (0, common::SERVICE_GID, 0o640));
        // The group reads it, nobody else does.
        assert!(as_service_user(&format!("cat {}", f.path(record).display())).status.success());
        assert!(!common::run_as("nobody", &format!("cat {}", f.path(record).display())).status.success());
        // Fixed: the next mount removes it.
        f.write("instances/vs1/instance.env", "L4D2_PORT=27015\n");
        f.ok(&["mount", "vs1"]);
        assert!(!f.path(record).exists(), "the record outlived a successful mount");
        f.ok(&["umount", "vs1"]);
        // An invented name leaves nothing behind, not even runtime/NAME.
        f.fails(&["mount", "Zq9xk2"], 12);
        f.fails(&["reset", "Zq9xk2"], 12);
        assert!(!f.path("runtime/Zq9xk2").exists(), "an invented name left runtime/Zq9xk2");
    }
}

root_test! {
    fn a_mount_keeps_the_health_records_of_instances_not_mounted_bounded() {
        // Sixteenth review: every instance name that ever ran left a record
        // dir in /run/left4me-health (RuntimeDirectoryPreserve=yes), and
        // about 2,000 renamed instances filled its tmpfs's inodes, after
        // which no check on the host could start or save. 520 dirs of
        // stopped names, each older than the next; vs2 is mounted and has
        // the oldest record of all.
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.instance("vs2", &[]);
        f.ok(&["mount", "vs2"]);
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(100_000);
        let mut names: Vec<String> = (0..520).map(|i| format!("gone{i:03}")).collect();
        names.insert(0, "vs2".to_owned());
        for (i, name) in names.iter().enumerate() {
            let d = f.health_run.join(name);
            fs::create_dir_all(&d).unwrap();
            // 0711, as the health unit makes them (a dir others may list is
            // left: retention.rs).
            fs::set_permissions(&d, fs::Permissions::from_mode(0o711)).unwrap();
            fs::write(d.join("status.json"), "{}").unwrap();
            fs::File::open(&d).unwrap().set_modified(old + std::time::Duration::from_secs(i as u64)).unwrap();
        }
        f.ok(&["mount", "vs1"]);
        let left: Vec<String> = fs::read_dir(&f.health_run).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        // 521 dirs: down to 511, leaving room for vs1's; the ten oldest
        // stopped ones went, the mounted vs2 stayed.
        assert_eq!(left.len(), 511, "{} record dirs left", left.len());
        assert!(left.iter().any(|n| n == "vs2"), "the mounted instance's record was removed");
        for gone in (0..10).map(|i| format!("gone{i:03}")) {
            assert!(!left.contains(&gone), "{gone}, among the oldest, was kept");
        }
        assert!(left.iter().any(|n| n == "gone010"));
        f.ok(&["umount", "vs1"]);
        f.ok(&["umount", "vs2"]);
    }
}
