//! Installation generations on real files and real overlayfs mounts
//! (docs/updates.md): migration, prepare's copies and what the update user
//! can do with them, commit's take-over and its refusals, collection, and
//! that a mounted instance keeps its generation.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use common::Fixture;

/// The update user in these tests: every Debian system has `bin` (uid 2),
/// which is neither root nor the service user (`daemon`).
const BUILDER: &str = "bin";
const BUILDER_UID: u32 = 2;

/// commit refuses while any process of the update user runs, anywhere: the
/// tests that run processes as `bin` take turns (each test body runs in a
/// process of its own, so the lock is a file lock).
fn one_at_a_time() -> fs::File {
    let file = fs::File::create("/tmp/left4me-test-generations.lock").unwrap();
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).unwrap();
    file
}

fn as_builder(script: &str) -> std::process::Output {
    common::run_as(BUILDER, script)
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn current(f: &Fixture) -> String {
    f.read("installations/current").trim_end().to_owned()
}

/// What an update with steamcmd leaves in .next/: one file replaced the way
/// Steam does (a new file renamed over the old) and a complete manifest.
fn build_as_builder(f: &Fixture, build_id: &str, gameinfo: &str) {
    let next = f.path("installations/.next");
    let out = as_builder(&format!(
        "set -e; cd {next}; printf '%s\\n' '{gameinfo}' > left4dead2/g.tmp; mv left4dead2/g.tmp left4dead2/gameinfo.txt; \
         mkdir -p steamapps; printf '\"AppState\"\\n{{\\n\\t\"StateFlags\"\\t\\t\"4\"\\n\\t\"buildid\"\\t\\t\"{build_id}\"\\n}}\\n' > steamapps/appmanifest_222860.acf",
        next = next.display()
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// On `f`: a fresh .next/ (prepare, hard links where it can) that the
/// builder has built as `build_id`.
fn next_built(f: &Fixture, build_id: &str, gameinfo: &str) {
    prepare(f, &[]);
    build_as_builder(f, build_id, gameinfo);
}

/// The fixture most tests start from: a host with one generation (the
/// stand-in installation, migrated) and a .next/ the builder has built as
/// `build_id`.
fn host_with_next(build_id: &str, gameinfo: &str) -> Fixture {
    let f = Fixture::new();
    f.ok(&["generation", "list"]);
    next_built(&f, build_id, gameinfo);
    f
}

/// A host whose current generation is `build_id`, committed from the
/// builder's tree; returns it and that generation's id.
fn host_at_build(build_id: &str, gameinfo: &str) -> (Fixture, String) {
    let f = host_with_next(build_id, gameinfo);
    f.ok(&["generation", "commit"]);
    let id = current(&f);
    (f, id)
}

/// A host with one generation and a .next/ the builder has built (build 2),
/// in which `script` then runs as the builder (its cwd).
fn next_built_then(script: &str) -> Fixture {
    let f = host_with_next("2", "x");
    let next = f.path("installations/.next");
    let out = as_builder(&format!("set -e; cd {}; {script}", next.display()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    f
}

fn prepare(f: &Fixture, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["generation", "prepare", "--owner", BUILDER, "--json"];
    args.extend_from_slice(extra);
    json(&f.ok(&args))
}

root_test! {
    fn a_legacy_installation_is_used_until_a_generation_verb_migrates_it() {
        let _turn = one_at_a_time();
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.ok(&["mount", "vs1"]);
        let s = f.status("vs1");
        assert_eq!(s["generation"], serde_json::Value::Null);
        assert_eq!(s["layers"][1]["path"], f.path("installation").display().to_string());
        let l = json(&f.ok(&["generation", "list", "--json"]));
        let id = l["current"].as_str().unwrap().to_owned();
        assert!(!f.path("installation").exists(), "installation/ moved");
        assert_eq!(f.read(&format!("installations/{id}/left4dead2/gameinfo.txt")), "installation\n");
        assert_eq!(l["unknown_in_use"], serde_json::json!(["vs1"]));
        // The instance mounted from installation/ runs on, on the same tree.
        assert_eq!(fs::read_to_string(f.merged("vs1").join("left4dead2/gameinfo.txt")).unwrap(), "installation\n");
        // Nothing is collected while it runs: its record names no generation.
        let g = json(&f.ok(&["generation", "gc", "--keep", "1", "--json"]));
        assert_eq!(g["removed"], serde_json::json!([]));
        f.ok(&["umount", "vs1"]);
        f.ok(&["mount", "vs1"]);
        assert_eq!(f.status("vs1")["generation"], id);
        assert!(f.read("runtime/.left4me/vs1.env").contains(&format!("LEFT4ME_GENERATION=\"{id}\"\n")));
    }
}

root_test! {
    fn an_update_reaches_new_starts_while_a_running_instance_keeps_its_generation() {
        let _turn = one_at_a_time();
        let f = Fixture::new();
        f.instance("old", &[]);
        f.instance("new", &[]);
        f.ok(&["generation", "list"]);
        let first = current(&f);
        f.ok(&["mount", "old"]);
        let p = prepare(&f, &[]);
        assert_eq!(p["from"], first);
        build_as_builder(&f, "2", "update");
        let c = json(&f.ok(&["generation", "commit", "--json", "--restart", "never"]));
        assert_eq!(c["result"], "committed");
        assert_eq!(c["build_id"], "2");
        let second = current(&f);
        assert_ne!(second, first);
        assert_eq!(c["generation"], second.as_str());
        assert!(!f.path("installations/.next").exists());
        // The running instance still sees the old tree, and says so.
        assert_eq!(fs::read_to_string(f.merged("old").join("left4dead2/gameinfo.txt")).unwrap(), "installation\n");
        let s = f.status("old");
        assert_eq!(s["generation"], first.as_str());
        assert_eq!(s["generation_current"], false);
        assert_eq!(s["stale"], true);
        // A new start gets the new one.
        f.ok(&["mount", "new"]);
        assert_eq!(fs::read_to_string(f.merged("new").join("left4dead2/gameinfo.txt")).unwrap(), "update\n");
        assert_eq!(f.status("new")["generation_current"], true);
        let l = json(&f.ok(&["generation", "list", "--json"]));
        let used: Vec<_> = l["generations"].as_array().unwrap().iter().map(|g| (g["id"].as_str().unwrap().to_owned(), g["used_by"].clone())).collect();
        assert_eq!(used, [(first.clone(), serde_json::json!(["old"])), (second.clone(), serde_json::json!(["new"]))]);
        // Every entry of the new generation is root's, within 0755.
        let out = Command::new("find").arg(f.path(&format!("installations/{second}"))).args(["-not", "-user", "root", "-o", "-perm", "/7022"]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "entries not root's or with set-id/write bits");
    }
}

root_test! {
    fn a_prepared_file_written_in_place_never_changes_the_current_generation() {
        let _turn = one_at_a_time();
        let f = Fixture::new();
        f.ok(&["generation", "list"]);
        let first = current(&f);
        let p = prepare(&f, &[]);
        let stats = &p["copy"];
        let files = stats["files"].as_u64().unwrap();
        assert_eq!(stats["reflinked"].as_u64().unwrap() + stats["hard_linked"].as_u64().unwrap(), files, "{p}");
        // tests/reflink/run runs this on xfs: every file must be a reflink there.
        if std::env::var_os("LEFT4ME_TEST_EXPECT_REFLINK").is_some() {
            assert_eq!(stats["reflinked"].as_u64().unwrap(), files, "{p}");
        }
        let next = f.path("installations/.next");
        assert_eq!(fs::metadata(&next).unwrap().uid(), BUILDER_UID);
        assert_eq!(fs::metadata(next.join("left4dead2")).unwrap().uid(), BUILDER_UID);
        let gameinfo = next.join("left4dead2/gameinfo.txt");
        let in_place = as_builder(&format!("echo patched >> {}", gameinfo.display()));
        if stats["reflinked"].as_u64().unwrap() == files {
            // xfs, btrfs: the builder owns its reflinked copy; writing it in
            // place is allowed and leaves the shared extents' other owner,
            // the current generation, as it was.
            assert_eq!(fs::metadata(&gameinfo).unwrap().uid(), BUILDER_UID);
            assert!(in_place.status.success(), "{in_place:?}");
            assert_eq!(fs::read_to_string(&gameinfo).unwrap(), "installation\npatched\n");
        } else {
            // ext4: every file is a hard link to root's read-only inode; an
            // in-place write fails.
            assert_eq!(stats["hard_linked"].as_u64().unwrap(), files, "{p}");
            assert_eq!(fs::metadata(&gameinfo).unwrap().uid(), 0);
            assert!(!in_place.status.success(), "an in-place write into a shared file succeeded");
        }
        assert_eq!(f.read(&format!("installations/{first}/left4dead2/gameinfo.txt")), "installation\n");
        // --copy copy: full copies the builder owns; writing them changes
        // nothing in the current generation.
        let p = prepare(&f, &["--copy", "copy"]);
        assert_eq!(p["copy"]["hard_linked"], 0, "{p}");
        let gameinfo = next.join("left4dead2/gameinfo.txt");
        assert_eq!(fs::metadata(&gameinfo).unwrap().uid(), BUILDER_UID);
        let out = as_builder(&format!("echo patched >> {}", gameinfo.display()));
        assert!(out.status.success());
        assert_eq!(f.read(&format!("installations/{first}/left4dead2/gameinfo.txt")), "installation\n");
    }
}

root_test! {
    fn commit_strips_set_id_and_write_bits_and_keeps_symlinks_unfollowed() {
        let _turn = one_at_a_time();
        let f = Fixture::new();
        f.ok(&["generation", "list"]);
        prepare(&f, &[]);
        let next = f.path("installations/.next");
        let out = as_builder(&format!(
            "set -e; cd {}; echo x > suid; chmod 6777 suid; mkdir -m 2777 open; ln -s /etc/shadow shadow-link",
            next.display()
        ));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        build_as_builder(&f, "3", "x");
        f.ok(&["generation", "commit"]);
        let g = f.path(&format!("installations/{}", current(&f)));
        let mode = |p: &str| fs::symlink_metadata(g.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("suid"), 0o755);
        assert_eq!(mode("open"), 0o755);
        let link = fs::symlink_metadata(g.join("shadow-link")).unwrap();
        assert!(link.file_type().is_symlink());
        assert_eq!(link.uid(), 0);
        assert_ne!(fs::metadata("/etc/shadow").unwrap().uid(), BUILDER_UID, "the link's target was not touched");
    }
}

/// A commit refused for `why`: exit `code`, `needle` in the message,
/// current and the generation untouched, .next/ gone.
fn refused_commit(f: &Fixture, code: i32, needle: &str) {
    let before = current(f);
    let tree = f.path(&format!("installations/{before}"));
    let listing = |p: &std::path::Path| {
        String::from_utf8(
            Command::new("find")
                .arg(p)
                .args(["-printf", "%p %u %m %s\\n"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
    };
    let snapshot = listing(&tree);
    let err = f.fails(&["generation", "commit"], code);
    assert!(err.contains(needle), "wanted {needle:?} in:\n{err}");
    assert_eq!(current(f), before);
    assert_eq!(listing(&tree), snapshot);
    assert!(
        !f.path("installations/.next").exists(),
        "a refused .next/ was left"
    );
}

root_test! {
    fn commit_refuses_what_is_not_a_game_tree_and_switches_nothing() {
        let _turn = one_at_a_time();
        // A FIFO.
        let f = host_with_next("5", "x");
        assert!(as_builder(&format!("mkfifo {}/pipe", f.path("installations/.next").display())).status.success());
        refused_commit(&f, 13, "FIFO");
        // Another account's file (made by root here; the builder cannot).
        next_built(&f, "5", "x");
        let other = f.path("installations/.next/other");
        fs::write(&other, "x").unwrap();
        std::os::unix::fs::chown(&other, Some(3), Some(3)).unwrap();
        refused_commit(&f, 13, "belongs to uid 3");
        // A root-owned set-id file that no generation has.
        next_built(&f, "5", "x");
        let suid = f.path("installations/.next/rootsuid");
        fs::write(&suid, "x").unwrap();
        fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755)).unwrap();
        refused_commit(&f, 13, "is root's but is not a file of the current generation");
        // No srcds_run.
        next_built(&f, "5", "x");
        assert!(as_builder(&format!("rm {}/srcds_run", f.path("installations/.next").display())).status.success());
        refused_commit(&f, 20, "has no srcds_run");
        // A download that stopped half-way.
        next_built(&f, "5", "x");
        let manifest = f.path("installations/.next/steamapps/appmanifest_222860.acf");
        let text = fs::read_to_string(&manifest).unwrap().replace("\"4\"", "\"1026\"");
        assert!(as_builder(&format!("printf '%s' '{text}' > {}", manifest.display())).status.success());
        refused_commit(&f, 20, "not fully installed");
        // No manifest at all: steamcmd never got to the app.
        next_built(&f, "5", "x");
        assert!(as_builder(&format!("rm {}/steamapps/appmanifest_222860.acf", f.path("installations/.next").display())).status.success());
        refused_commit(&f, 20, "no app manifest with a build id");
        // A process of the builder still running.
        next_built(&f, "5", "x");
        let mut sleeper = Command::new("setpriv")
            .args(["--reuid", BUILDER, "--regid", BUILDER, "--clear-groups", "sleep", "60"])
            .spawn()
            .unwrap();
        refused_commit(&f, 15, "still run");
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        // Nothing to commit.
        let err = f.fails(&["generation", "commit"], 12);
        assert!(err.contains("nothing to commit"), "{err}");
    }
}

root_test! {
    fn the_same_build_switches_nothing() {
        let _turn = one_at_a_time();
        let (f, seven) = host_at_build("7", "seven");
        prepare(&f, &[]);
        let c = json(&f.ok(&["generation", "commit", "--json"]));
        assert_eq!(c["result"], "unchanged");
        assert_eq!(current(&f), seven);
        assert!(!f.path("installations/.next").exists());
    }
}

root_test! {
    fn collection_keeps_current_the_newest_and_what_mounted_instances_use() {
        let _turn = one_at_a_time();
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.ok(&["generation", "list"]);
        let g1 = current(&f);
        f.ok(&["mount", "vs1"]);
        let mut ids = vec![g1.clone()];
        for build in ["11", "12", "13"] {
            next_built(&f, build, build);
            let c = json(&f.ok(&["generation", "commit", "--keep", "2", "--json"]));
            ids.push(current(&f));
            // g1 is in use by vs1 throughout.
            assert!(!c["removed"].as_array().unwrap().iter().any(|r| r == g1.as_str()), "{c}");
        }
        // After the third commit: g1 (used), 12 (newest but one) and 13 (current) remain; 11 went.
        let l = json(&f.ok(&["generation", "list", "--json"]));
        let left: Vec<&str> = l["generations"].as_array().unwrap().iter().map(|g| g["id"].as_str().unwrap()).collect();
        assert_eq!(left, [ids[0].as_str(), ids[2].as_str(), ids[3].as_str()]);
        f.ok(&["umount", "vs1"]);
        let g = json(&f.ok(&["generation", "gc", "--keep", "1", "--json"]));
        assert_eq!(g["removed"], serde_json::json!([ids[0], ids[2]]));
        assert!(!f.path(&format!("installations/{}", ids[0])).exists());
        assert_eq!(g["kept"], serde_json::json!([ids[3]]));
        f.fails(&["generation", "gc", "--keep", "0"], 2);
    }
}

root_test! {
    /// A mount names its generation in its stack record and then lets the
    /// installations lock go before it builds the overlay (which can wait
    /// on the user's upper/, docs/unit.md "The boundary"). Until it is
    /// attached it holds its instance's lock: a collection meanwhile keeps
    /// what such a record names, and only that.
    fn collection_keeps_the_generation_of_an_instance_being_mounted() {
        let _turn = one_at_a_time();
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.ok(&["generation", "list"]);
        f.ok(&["mount", "vs1"]);
        f.ok(&["umount", "vs1"]);
        let g1 = current(&f);
        next_built(&f, "11", "11");
        f.ok(&["generation", "commit", "--keep", "5"]);
        // vs1 being mounted: its record naming g1 (as the mount writes it
        // before it lets the installations lock go), its lock held.
        f.write("runtime/.left4me/vs1.stack", &format!("installation installations/{g1}\n"));
        let lock = fs::OpenOptions::new().create(true).truncate(false).write(true).open(f.path("runtime/.left4me/vs1.lock")).unwrap();
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
        let g = json(&f.ok(&["generation", "gc", "--keep", "1", "--json"]));
        assert_eq!(g["removed"], serde_json::json!([]), "{g}");
        assert!(f.path(&format!("installations/{g1}")).is_dir());
        drop(lock);
        let g = json(&f.ok(&["generation", "gc", "--keep", "1", "--json"]));
        assert_eq!(g["removed"], serde_json::json!([g1]), "{g}");
    }
}

root_test! {
    fn restart_now_asks_systemctl_for_each_instance_on_an_older_generation() {
        let _turn = one_at_a_time();
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.instance("vs2", &[]);
        f.ok(&["generation", "list"]);
        f.ok(&["mount", "vs1"]);
        let (fake, calls) = common::fake_systemctl(&f.outside);
        next_built(&f, "21", "x");
        let c = json(&f.ok(&["generation", "commit", "--restart", "now", "--systemctl", fake.to_str().unwrap(), "--json"]));
        assert_eq!(c["restarted"], serde_json::json!(["vs1"]));
        assert_eq!(fs::read_to_string(&calls).unwrap(), "try-restart --no-block left4me-server@vs1.service\n");
    }
}

root_test! {
    fn import_copies_a_tree_installed_by_hand_and_the_update_user_is_checked() {
        let _turn = one_at_a_time();
        let f = Fixture::new();
        fs::remove_dir_all(f.path("installation")).unwrap();
        f.instance("vs1", &[]);
        let err = f.fails(&["mount", "vs1"], 12);
        assert!(err.contains("no game installation"), "{err}");
        // status (which left4me-enable@ runs first) is no error: the game
        // can be installed after the instance is set up.
        let s = f.status("vs1");
        assert_eq!(s["error"], serde_json::Value::Null, "{s}");
        assert_eq!(s["layers"].as_array().unwrap().len(), 1, "only the writable layer: {s}");
        let by_hand = f.outside.join("game");
        fs::create_dir_all(by_hand.join("left4dead2")).unwrap();
        fs::write(by_hand.join("srcds_run"), "#!/bin/sh\n").unwrap();
        fs::write(by_hand.join("left4dead2/gameinfo.txt"), "by hand\n").unwrap();
        fs::set_permissions(by_hand.join("srcds_run"), fs::Permissions::from_mode(0o775)).unwrap();
        let c = json(&f.ok(&["generation", "import", by_hand.to_str().unwrap(), "--json"]));
        assert_eq!(c["result"], "committed");
        let g = f.path(&format!("installations/{}", current(&f)));
        let srcds = fs::metadata(g.join("srcds_run")).unwrap();
        assert_eq!((srcds.uid(), srcds.permissions().mode() & 0o7777, srcds.nlink()), (0, 0o755, 1));
        f.ok(&["mount", "vs1"]);
        assert_eq!(fs::read_to_string(f.merged("vs1").join("left4dead2/gameinfo.txt")).unwrap(), "by hand\n");
        // The update user may be neither root nor the service user.
        for owner in ["root", common::SERVICE_USER, "no-such-user"] {
            let err = f.fails(&["generation", "prepare", "--owner", owner], 19);
            assert!(err.contains("update user"), "{err}");
        }
        // A current that names nothing valid is a clear error.
        fs::write(f.path("installations/current"), "../etc\n").unwrap();
        let err = f.fails(&["generation", "prepare", "--owner", BUILDER], 11);
        assert!(err.contains("does not name a generation"), "{err}");
    }
}

// What the red-team review of the generation code found (each failed before
// its fix), kept as regressions.

fn wait_for(path: &std::path::Path) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < end,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

root_test! {
    /// A descriptor of one of the update user's files, opened during the
    /// build and handed to another account (modelled by inheriting it, as
    /// passing it over a unix socket would), cannot write into the committed
    /// generation: commit gives every file of the update user a new inode.
    /// By path, no other account can open anything in .next/ at all.
    fn a_descriptor_opened_before_commit_cannot_write_into_the_generation() {
        let _turn = one_at_a_time();
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.ok(&["generation", "list"]);
        prepare(&f, &[]);
        let next = f.path("installations/.next");
        let file = next.join("left4dead2/maps.txt");
        let out = as_builder(&format!("set -e; echo original > {0}; chmod 0666 {0}", file.display()));
        assert!(out.status.success());
        let by_path = Command::new("setpriv")
            .args(["--reuid", common::SERVICE_USER, "--regid", common::SERVICE_USER, "--clear-groups", "cat"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(!by_path.status.success(), "another account opened a file in .next/ by path");
        fs::set_permissions(&f.outside, fs::Permissions::from_mode(0o777)).unwrap();
        let (ready, go) = (f.outside.join("ready"), f.outside.join("go"));
        let mut holder = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "exec 3<>{file}; exec setpriv --reuid {user} --regid {user} --clear-groups sh -c \
                 ': > {ready}; while [ ! -e {go} ]; do sleep 0.05; done; printf \"written after commit\\n\" >&3'",
                file = file.display(),
                user = common::SERVICE_USER,
                ready = ready.display(),
                go = go.display()
            ))
            .spawn()
            .unwrap();
        wait_for(&ready);
        build_as_builder(&f, "2", "x");
        let c = json(&f.ok(&["generation", "commit", "--restart", "never", "--json"]));
        assert!(c["taken_over"]["files_renewed"].as_u64().unwrap() >= 1, "{c}");
        fs::write(&go, "").unwrap();
        assert!(holder.wait().unwrap().success());
        f.ok(&["mount", "vs1"]);
        let seen = fs::read_to_string(f.merged("vs1").join("left4dead2/maps.txt")).unwrap();
        assert_eq!(seen, "original\n");
    }
}

root_test! {
    /// With fs.protected_hardlinks=0 the update user could hard-link any
    /// root file into .next/ (made here by root, as the kernel would let
    /// it); commit accepts root's files only as the current generation's.
    fn a_root_file_linked_into_next_from_elsewhere_is_refused() {
        let _turn = one_at_a_time();
        let f = host_with_next("2", "x");
        let secret = f.outside.join("root-only-secret");
        fs::write(&secret, "root's secret\n").unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
        fs::hard_link(&secret, f.path("installations/.next/left4dead2/secret.txt")).unwrap();
        refused_commit(&f, 13, "is root's but is not a file of the current generation");
        assert_eq!(fs::read_to_string(&secret).unwrap(), "root's secret\n");
    }
}

root_test! {
    /// Sparse files of the update user are refused: copying one (prepare
    /// copies steamapps/, commit renews the user's files) would write its
    /// holes out in full, as root.
    fn a_sparse_file_is_refused() {
        let _turn = one_at_a_time();
        let f = next_built_then("truncate -s 256M steamapps/bomb");
        refused_commit(&f, 13, "is sparse");
    }
}

root_test! {
    /// The walks hold one directory per level: many sibling directories are
    /// not depth.
    fn a_wide_tree_is_not_too_deep() {
        let _turn = one_at_a_time();
        let f = Fixture::new();
        let tree = f.outside.join("wide");
        for i in 0..70 {
            fs::create_dir_all(tree.join(format!("left4dead2/materials/d{i}"))).unwrap();
        }
        fs::write(tree.join("srcds_run"), "#!/bin/sh\n").unwrap();
        fs::create_dir_all(tree.join("steamapps")).unwrap();
        fs::write(tree.join("steamapps/appmanifest_222860.acf"), "\"StateFlags\" \"4\"\n\"buildid\" \"3\"\n").unwrap();
        f.ok(&["generation", "import", tree.to_str().unwrap(), "--restart", "never"]);
        prepare(&f, &[]);
        f.ok(&["generation", "commit", "--restart", "never"]);
    }
}

root_test! {
    /// Killed between moving installation/ (or a commit's rename) and
    /// writing `current`: the next generation verb adopts the newest
    /// complete generation.
    fn a_run_killed_before_current_was_written_converges() {
        let _turn = one_at_a_time();
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.ok(&["generation", "list"]);
        let id = current(&f);
        fs::remove_file(f.path("installations/current")).unwrap();
        assert!(f.fails(&["mount", "vs1"], 12).contains("no game installation"));
        f.ok(&["generation", "list"]);
        assert_eq!(current(&f), id);
        f.ok(&["mount", "vs1"]);
    }
}

root_test! {
    /// A legacy installation/ that is not root's, or is a mount point, is
    /// not migrated: mounts keep using it, list and gc work, and the verbs
    /// that need a generation say what to do.
    fn a_legacy_installation_that_cannot_be_migrated_says_why() {
        let _turn = one_at_a_time();
        let f = Fixture::new();
        f.instance("vs1", &[]);
        let chown = Command::new("chown").args(["-R", &format!("{0}:{0}", common::SERVICE_USER)]).arg(f.path("installation")).status().unwrap();
        assert!(chown.success());
        f.ok(&["generation", "list"]);
        f.ok(&["generation", "gc"]);
        assert!(f.path("installation/srcds_run").exists());
        let err = f.fails(&["generation", "prepare", "--owner", BUILDER], 13);
        assert!(err.contains("belongs to uid") && err.contains("chown -R root:root"), "{err}");
        f.ok(&["mount", "vs1"]);
        f.ok(&["umount", "vs1"]);
        let chown = Command::new("chown").args(["-R", "root:root"]).arg(f.path("installation")).status().unwrap();
        assert!(chown.success());
        // A filesystem of its own at installation/.
        let inst = f.path("installation");
        let saved = f.outside.join("saved");
        assert!(Command::new("cp").arg("-a").arg(&inst).arg(&saved).status().unwrap().success());
        assert!(Command::new("mount").args(["-t", "tmpfs", "game"]).arg(&inst).status().unwrap().success());
        assert!(Command::new("cp").arg("-a").arg(format!("{}/.", saved.display())).arg(&inst).status().unwrap().success());
        f.ok(&["generation", "list"]);
        let err = f.fails(&["generation", "prepare", "--owner", BUILDER], 13);
        assert!(err.contains("is a mount point") && err.contains("generation import"), "{err}");
        // The way out the hint names.
        f.ok(&["generation", "import", inst.to_str().unwrap(), "--restart", "never"]);
        f.ok(&["mount", "vs1"]);
        assert_eq!(f.status("vs1")["generation"], current(&f).as_str());
    }
}

root_test! {
    /// A file of the update user with many names once cost root one full
    /// copy per name (11 MiB under 200 names: 2 GiB written as root).
    fn a_file_with_many_names_is_refused_not_copied_per_name() {
        let _turn = one_at_a_time();
        let f = next_built_then(
            "cd left4dead2; head -c 1048576 /dev/urandom > big; for i in $(seq 200); do ln big big.$i; done",
        );
        refused_commit(&f, 13, "has 201 names (hard links)");
    }
}

root_test! {
    /// Names of up to 255 bytes (the filesystem's limit) once failed every
    /// commit with ENAMETOOLONG: the renewed copy's temporary name had a
    /// prefix. The copies are now made in a staging directory under the
    /// file's own name.
    fn a_name_of_255_bytes_is_committed() {
        let _turn = one_at_a_time();
        let long = "n".repeat(255);
        let f = next_built_then(&format!("echo long > left4dead2/{long}"));
        f.ok(&["generation", "commit", "--restart", "never"]);
        let file = f.path(&format!("installations/{}/left4dead2/{long}", current(&f)));
        assert_eq!(fs::read_to_string(&file).unwrap(), "long\n");
        assert_eq!(fs::metadata(&file).unwrap().uid(), 0);
        assert!(!f.path("installations/.renew").exists(), "the staging directory was left");
    }
}

root_test! {
    /// What a commit may write as root is bounded by the current
    /// generation: twice its size and 1 GiB more (here about 1 GiB). A
    /// reflink writes nothing (xfs, tests/reflink/run): no budget is spent.
    fn a_commit_that_would_copy_more_than_its_budget_is_refused() {
        let _turn = one_at_a_time();
        // Allocated, not sparse: 1.1 GiB that root would copy.
        let f = next_built_then("fallocate -l 1100M left4dead2/huge.vpk");
        if std::env::var_os("LEFT4ME_TEST_EXPECT_REFLINK").is_some() {
            let done = json(&f.ok(&["generation", "commit", "--restart", "never", "--json"]));
            assert_eq!(done["taken_over"]["bytes_copied"], 0, "{done}");
        } else {
            refused_commit(&f, 13, "twice the current generation and 1 GiB");
        }
    }
}

root_test! {
    /// Every walk of a committed generation (each health check's sizes,
    /// prepare, a same-build comparison) is linear in its entries: 600,000
    /// empty files once took root's commit 21.7 s and made every health
    /// check outgrow its memory cap. A tree holds at most 200,000. The
    /// entries here are symlinks, the cheapest to take over, so that the
    /// walk reaches its cap within the test's time for one helper run.
    fn a_tree_of_more_entries_than_a_game_has_is_refused() {
        let _turn = one_at_a_time();
        let f = next_built_then(
            "python3 -c 'import os\nfor d in \"abc\":\n os.mkdir(\"left4dead2/\" + d)\n for i in range(70000): os.symlink(\"x\", \"left4dead2/%s/%d\" % (d, i))'",
        );
        refused_commit(&f, 13, "holds more than 200000 entries");
    }
}

root_test! {
    /// A reflink writes nothing, so the copy budget does not see a file the
    /// update user made huge by cloning its blocks into itself (1 TiB of
    /// 64 MiB once cost root 22 minutes of reads in a same-build
    /// comparison, under the update lock). A tree's files may have 32 GiB
    /// in all, whatever they share. Where the filesystem cannot reflink
    /// (ext4), such a file cannot be made: the clone is refused.
    fn a_tree_past_its_apparent_size_is_refused_when_reflinks_make_it_free() {
        let _turn = one_at_a_time();
        // 64 MiB of blocks, cloned 528 times into the same file: 33 GiB long.
        let inflate = "python3 -c '
import fcntl, os, struct, sys
fd = os.open(\"left4dead2/huge.vpk\", os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, os.urandom(1 << 20) * 64)
try:
    for i in range(1, 529):
        fcntl.ioctl(fd, 0x4020940d, struct.pack(\"qQQQ\", fd, 0, 64 << 20, i * (64 << 20)))
except OSError as e:
    sys.exit(\"clone: %s\" % os.strerror(e.errno))
'";
        if std::env::var_os("LEFT4ME_TEST_EXPECT_REFLINK").is_some() {
            let f = next_built_then(inflate);
            refused_commit(&f, 13, "more than the 34359738368 a game installation may have");
        } else {
            let f = host_with_next("2", "x");
            let next = f.path("installations/.next");
            let out = as_builder(&format!("set -e; cd {}; {inflate}", next.display()));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success() && err.contains("clone: Operation not supported"), "{err}");
        }
    }
}

/// A steamcmd for `generation fetch`: prints its script (as the real one
/// may echo it, password included), then does what `mode` in its directory
/// says. Exit status deliberately unrelated to the outcome where the real
/// one's is (LinuxGSM#719, steam-for-linux#4341).
const FAKE_STEAMCMD: &str = r#"#!/bin/sh
[ "$1" = +runscript ] || exit 2
cat "$2"
dir=$(sed -n 's/^force_install_dir "\(.*\)"$/\1/p' "$2")
manifest() { mkdir -p "$dir/steamapps"; printf '"AppState"\n{\n\t"StateFlags"\t\t"4"\n\t"buildid"\t\t"9"\n}\n' > "$dir/steamapps/appmanifest_222860.acf.tmp"; mv "$dir/steamapps/appmanifest_222860.acf.tmp" "$dir/steamapps/appmanifest_222860.acf"; }
case $(cat "${0%/*}/mode") in
    ok) manifest; echo x > "$dir/srcds.exe"; mkdir -p "$dir/bin"; echo x > "$dir/bin/Engine.DLL"
        echo "Success! App '222860' fully installed."; exit 0 ;;
    exit8) manifest; echo "Success! App '222860' fully installed."; exit 8 ;;
    linger) manifest; sleep 60 > /dev/null 2>&1 & echo $! > "${0%/*}/linger.pid"
        echo "Success! App '222860' fully installed."; exit 0 ;;
    nosuccess) manifest; echo "Error! App '222860' state is 0x402 after update job."; exit 0 ;;
    platform) echo "ERROR! Failed to install app '222860' (Invalid platform)"; exit 0 ;;
    expired) echo "Logging in user 'op' [U:1:1] to Steam Public...FAILED (Expired)"; exit 0 ;;
esac
exit 3
"#;

root_test! {
    /// `generation fetch` as the update user: the login from the
    /// credential, masked wherever steamcmd's output goes; validate only on
    /// an unshared tree; success from the output, never the exit status;
    /// then commit needs the success line in the kept log and prunes the
    /// Windows-only files.
    fn fetch_and_commit_judge_steamcmd_by_its_output() {
        let _turn = one_at_a_time();
        let f = Fixture::new();
        f.ok(&["generation", "list"]);
        let before = current(&f);
        let p = prepare(&f, &[]);
        let shared = p["copy"]["hard_linked"].as_u64().unwrap() > 0;
        let bin = f.outside.join("steamcmd-bin");
        let creds = f.outside.join("creds");
        let run = f.outside.join("run");
        for d in [&bin, &creds, &run] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(bin.join("steamcmd"), FAKE_STEAMCMD).unwrap();
        fs::set_permissions(bin.join("steamcmd"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(creds.join("steam-login"), "op\nhunter2 secret\n").unwrap();
        for d in [&f.outside, &bin, &creds, &run] {
            std::os::unix::fs::chown(d, Some(BUILDER_UID), Some(BUILDER_UID)).unwrap();
        }
        std::os::unix::fs::chown(creds.join("steam-login"), Some(BUILDER_UID), Some(BUILDER_UID)).unwrap();
        // steamcmd's home, with the client library steamcmd.sh links there.
        let home = f.outside.join("home");
        fs::create_dir_all(home.join(".steam/sdk32")).unwrap();
        fs::write(home.join(".steam/sdk32/steamclient.so"), "client of this steamcmd\n").unwrap();
        let log = run.join("steamcmd.log");
        let fetch = |mode: &str, login: &str| {
            fs::write(bin.join("mode"), mode).unwrap();
            let _ = fs::remove_file(&log);
            as_builder(&format!(
                "HOME={home} CREDENTIALS_DIRECTORY={creds} LEFT4ME_STEAM_LOGIN={login} LEFT4ME_STEAMCMD={bin}/steamcmd {helper} generation fetch --install-dir {next} --runtime-dir {run}",
                home = home.display(),
                creds = creds.display(),
                bin = bin.display(),
                helper = common::HELPER,
                next = f.path("installations/.next").display(),
                run = run.display()
            ))
        };
        let text = |o: &std::process::Output| {
            format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
        };

        // Refusals with exit 0 from steamcmd are failures, each its own message.
        for (mode, login, needle) in [
            ("platform", "account", "LEFT4ME_STEAM_LOGIN=anonymous-platform-workaround"),
            ("expired", "account", "systemd-run --pty"),
            ("nosuccess", "account", "did not print 'Success! App '222860' fully installed.'"),
            ("ok", "anonymous-platform-workaround", ""),
        ] {
            let out = fetch(mode, login);
            let all = text(&out);
            if needle.is_empty() {
                // The workaround: two app_updates, one success line is not enough.
                assert!(all.contains("@sSteamCmdForcePlatformType windows\napp_update 222860"), "{all}");
                assert_eq!(out.status.code(), Some(25), "{all}");
            } else {
                assert_eq!(out.status.code(), Some(25), "{mode}: {all}");
                assert!(all.contains(needle), "{mode}: wanted {needle:?} in {all}");
            }
            assert!(!all.contains("hunter2"), "{mode}: the password reached the output: {all}");
            assert!(!run.join("steamcmd.script").exists(), "{mode}: the script with the login was left");
        }
        // The kept log of the last failure has no success line: commit refuses.
        fs::write(bin.join("mode"), "nosuccess").unwrap();
        let out = fetch("nosuccess", "account");
        assert_eq!(out.status.code(), Some(25));
        let logged = fs::read_to_string(&log).unwrap();
        assert!(logged.contains("login op \"********\""), "{logged}");
        assert!(!logged.contains("hunter2"), "{logged}");
        let err = f.fails(&["generation", "commit", "--steamcmd-log", log.to_str().unwrap()], 20);
        assert!(err.contains("has no line 'Success!"), "{err}");
        assert_eq!(current(&f), before);

        // A process steamcmd leaves behind, its output elsewhere, does not
        // hold fetch (steamcmd has the pipe as stdout and stderr only).
        prepare(&f, &[]);
        let t0 = std::time::Instant::now();
        let out = fetch("linger", "account");
        let lingering = fs::read_to_string(bin.join("linger.pid")).unwrap();
        assert!(Command::new("kill").arg(lingering.trim()).status().unwrap().success());
        let gone = std::path::Path::new("/proc").join(lingering.trim());
        for _ in 0..500 {
            if !gone.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(out.status.success(), "{}", text(&out));
        assert!(t0.elapsed() < std::time::Duration::from_secs(30), "fetch waited for the leftover process");
        // Non-zero exit with the success line: accepted, and judged by the manifest.
        let out = fetch("exit8", "account");
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("ended with exit status: 8"), "{}", text(&out));
        // validate only where no file is shared with a committed generation.
        assert_eq!(!text(&out).contains("app_update 222860 validate"), shared, "{}", text(&out));
        // A log that is a symlink is not followed.
        let real = f.outside.join("elsewhere.log");
        fs::rename(&log, &real).unwrap();
        std::os::unix::fs::symlink(&real, &log).unwrap();
        f.fails(&["generation", "commit", "--steamcmd-log", log.to_str().unwrap()], 13);
        assert_eq!(current(&f), before);

        prepare(&f, &[]);
        let out = fetch("ok", "account");
        assert!(out.status.success(), "{}", text(&out));
        f.ok(&["generation", "commit", "--steamcmd-log", log.to_str().unwrap()]);
        let new = current(&f);
        assert_ne!(new, before);
        assert!(!f.path(&format!("installations/{new}/srcds.exe")).exists());
        assert!(!f.path(&format!("installations/{new}/bin/Engine.DLL")).exists());
        assert!(f.path(&format!("installations/{new}/srcds_run")).exists());
        // The generation carries the client library of the steamcmd that built it.
        assert_eq!(f.read(&format!("installations/{new}/.left4me-steamclient.so")), "client of this steamcmd\n");
    }
}

root_test! {
    /// A run of the same build on an unshared copy (copy mode) is a
    /// verification: what validate repaired is reported, file by file, and
    /// the repaired tree becomes a generation of its own; the damaged one is
    /// never written.
    fn a_validate_of_the_same_build_reports_and_commits_the_repair() {
        let _turn = one_at_a_time();
        let (f, seven) = host_at_build("7", "seven");
        let damaged = f.path(&format!("installations/{seven}/left4dead2/gameinfo.txt"));
        fs::write(&damaged, "damaged\n").unwrap();
        prepare(&f, &["--copy", "copy"]);
        // What validate does to the copy: the file back as the depot has it, in place.
        let next = f.path("installations/.next/left4dead2/gameinfo.txt");
        assert!(as_builder(&format!("printf 'seven\\n' > {}", next.display())).status.success());
        let out = f.helper_with(&["generation", "commit", "--json"], &[("LEFT4ME_LOG", "info")]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("validate repaired 1 files"), "{err}");
        assert!(err.contains("left4dead2/gameinfo.txt"), "{err}");
        let repaired = current(&f);
        assert_ne!(repaired, seven);
        assert_eq!(f.read(&format!("installations/{repaired}/left4dead2/gameinfo.txt")), "seven\n");
        assert_eq!(fs::read_to_string(&damaged).unwrap(), "damaged\n");
    }
}

root_test! {
    /// `--verify` (left4me-verify.service): prepare copies in full whatever
    /// LEFT4ME_UPDATE_COPY says and only an existing current generation;
    /// fetch refuses a shared tree; commit reports what differs and commits
    /// the repair, says so when nothing differs, and refuses another build.
    fn a_verification_reports_commits_the_repair_and_never_updates() {
        let _turn = one_at_a_time();
        let f = Fixture::new();
        fs::remove_dir_all(f.path("installation")).unwrap();
        let err = f.fails(&["generation", "prepare", "--verify", "--owner", BUILDER], 12);
        assert!(err.contains("nothing to verify"), "{err}");
        assert!(!f.path("installations/.next").exists());

        let (f, seven) = host_at_build("7", "seven");

        // A hard-linked .next/ is no place for validate.
        let p = prepare(&f, &[]);
        if p["copy"]["hard_linked"].as_u64().unwrap() > 0 {
            let out = as_builder(&format!(
                "{} generation fetch --verify --install-dir {} --runtime-dir /nonexistent",
                common::HELPER,
                f.path("installations/.next").display()
            ));
            assert_eq!(out.status.code(), Some(15), "{}", String::from_utf8_lossy(&out.stderr));
            assert!(String::from_utf8_lossy(&out.stderr).contains("must validate an unshared copy"));
        }
        f.ok(&["generation", "abort"]);

        // Nothing differs: said so, nothing switched, the tree discarded.
        let verify_prepare = |f: &Fixture| {
            let out = f.helper_with(
                &["generation", "prepare", "--verify", "--owner", BUILDER, "--json"],
                &[("LEFT4ME_UPDATE_COPY", "auto")],
            );
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let p = json(&String::from_utf8_lossy(&out.stdout));
            assert_eq!(p["copy"]["hard_linked"], 0, "{p}");
            assert_eq!(p["copy"]["reflinked"].as_u64().unwrap() + p["copy"]["copied"].as_u64().unwrap(), p["copy"]["files"].as_u64().unwrap(), "{p}");
        };
        verify_prepare(&f);
        let out = f.ok(&["generation", "commit", "--verify"]);
        assert_eq!(out, format!("verified: no file differs from generation {seven} (build 7); nothing switched\n"));
        assert_eq!(current(&f), seven);
        assert!(!f.path("installations/.next").exists());

        // A damaged file: validate repairs the copy, commit names it and
        // commits the repaired tree; the damaged generation is not written.
        let damaged = f.path(&format!("installations/{seven}/left4dead2/gameinfo.txt"));
        fs::write(&damaged, "damaged\n").unwrap();
        verify_prepare(&f);
        let next = f.path("installations/.next/left4dead2/gameinfo.txt");
        assert!(as_builder(&format!("printf 'seven\\n' > {}", next.display())).status.success());
        let out = f.ok(&["generation", "commit", "--verify", "--json"]);
        let c = json(&out);
        assert_eq!(c["result"], "repaired", "{c}");
        assert_eq!(c["differing"]["count"], 1, "{c}");
        assert_eq!(c["differing"]["first"], serde_json::json!(["left4dead2/gameinfo.txt"]), "{c}");
        let repaired = current(&f);
        assert_ne!(repaired, seven);
        assert_eq!(f.read(&format!("installations/{repaired}/left4dead2/gameinfo.txt")), "seven\n");
        assert_eq!(fs::read_to_string(&damaged).unwrap(), "damaged\n");
        // The summary line for a person.
        fs::write(f.path(&format!("installations/{repaired}/left4dead2/gameinfo.txt")), "damaged\n").unwrap();
        verify_prepare(&f);
        assert!(as_builder(&format!("printf 'seven\\n' > {}", next.display())).status.success());
        let out = f.ok(&["generation", "commit", "--verify"]);
        assert!(out.starts_with(&format!("verified: 1 files differed from generation {repaired} (build 7), first: left4dead2/gameinfo.txt; committed the repaired tree as generation ")), "{out}");
        let repaired = current(&f);

        // Steam has moved on: refused with exit 15, nothing committed.
        verify_prepare(&f);
        build_as_builder(&f, "8", "eight");
        let err = f.fails(&["generation", "commit", "--verify"], 15);
        assert!(err.contains(&format!("not verified: Steam has build 8, generation {repaired} is build 7")), "{err}");
        assert_eq!(current(&f), repaired);
        assert!(!f.path("installations/.next").exists());

        // The other unit's run while this one's steamcmd runs: its prepare
        // is refused and its abort leaves the tree alone.
        verify_prepare(&f);
        let mut steamcmd = Command::new("setpriv")
            .args(["--reuid", BUILDER, "--regid", BUILDER, "--clear-groups", "sleep", "60"])
            .spawn()
            .unwrap();
        let err = f.fails(&["generation", "prepare", "--owner", BUILDER], 15);
        assert!(err.contains("an update or verification is building"), "{err}");
        assert_eq!(f.ok(&["generation", "abort"]), "still-building\n");
        assert!(f.path("installations/.next").exists());
        steamcmd.kill().unwrap();
        steamcmd.wait().unwrap();
        assert_eq!(f.ok(&["generation", "abort"]), "discarded\n");
        assert!(!f.path("installations/.next").exists());
    }
}

root_test! {
    /// Between the verification's root prepare and its steamcmd no process
    /// of the update user exists; an update's prepare or abort in that
    /// instant took the verification's .next/ for a stale one (fifth
    /// review). The update unit names the verification (--sibling), and
    /// while systemd says it runs, its tree is kept.
    fn the_other_units_tree_is_kept_while_systemd_runs_it_with_no_process_of_its_builder() {
        let _turn = one_at_a_time();
        let (f, _) = host_at_build("7", "seven");
        let (fake, calls) = common::fake_systemctl(&f.outside);
        // What systemd answers `show`, and systemctl's exit status.
        let says = |state: &str, exit: &str| {
            fs::write(f.outside.join("systemctl.out"), state).unwrap();
            fs::write(f.outside.join("systemctl.exit"), exit).unwrap();
        };
        let update = |verb: &str| -> Vec<String> {
            let mut a = vec!["generation".to_owned(), verb.to_owned()];
            if verb == "prepare" {
                a.extend(["--owner".to_owned(), BUILDER.to_owned()]);
            }
            a.extend(["--sibling".to_owned(), "left4me-verify.service".to_owned()]);
            a.extend(["--systemctl".to_owned(), fake.display().to_string()]);
            a
        };
        fn args(v: &[String]) -> Vec<&str> {
            v.iter().map(String::as_str).collect()
        }

        f.ok(&["generation", "prepare", "--verify", "--owner", BUILDER]);
        let marker = f.path("installations/.next/left4dead2/verify-was-here");
        assert!(as_builder(&format!("touch {}", marker.display())).status.success());
        says("activating\n", "0");
        let err = f.fails(&args(&update("prepare")), 15);
        assert!(err.contains("left4me-verify.service is activating"), "{err}");
        assert!(err.contains("systemctl status left4me-verify.service"), "{err}");
        assert_eq!(f.ok(&args(&update("abort"))), "still-building\n");
        assert!(marker.exists(), "the verification's tree was discarded");
        assert_eq!(
            fs::read_to_string(&calls).unwrap(),
            "show --property ActiveState --value -- left4me-verify.service\n".repeat(2)
        );

        // systemd cannot say: neither guessed.
        says("", "1");
        let err = f.fails(&args(&update("prepare")), 1);
        assert!(err.contains("cannot tell whether left4me-verify.service runs"), "{err}");
        assert!(marker.exists());
        says("sleeping\n", "0");
        let err = f.fails(&args(&update("abort")), 1);
        assert!(err.contains("systemd says ActiveState=\"sleeping\""), "{err}");
        assert!(marker.exists());

        // The verification has ended (failed, say, with its abort lost):
        // what it left is stale now.
        says("failed\n", "0");
        f.ok(&args(&update("prepare")));
        assert!(!marker.exists(), "the stale tree was kept");
        assert_eq!(f.ok(&args(&update("abort"))), "discarded\n");
    }
}
