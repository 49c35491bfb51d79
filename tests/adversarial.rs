//! The threat model, case by case: the service user controls runtime/<i>/**
//! and instances/<i>/**; root runs the helper. Every case asserts the
//! refusal (exit code and message) and that nothing outside runtime/<i> was
//! mounted, changed or deleted.

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::Fixture;

/// Runs `args`, expects exit `code` with `needle` in stderr, and checks that
/// only runtime/<instance> may have changed.
fn refused(f: &Fixture, instance: &str, args: &[&str], code: i32, needle: &str) {
    let err = f.assert_contained(instance, || f.fails(args, code));
    assert!(
        err.contains(needle),
        "{args:?}: wanted {needle:?} in:\n{err}"
    );
    assert!(
        !f.is_mounted(instance) || args[0] != "mount",
        "a refused mount left a mount behind"
    );
    assert!(f.outside.join("secret").exists() && f.outside.join("sub/file").exists());
}

fn mkfifo(path: &std::path::Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
}

root_test! {
    fn instance_name_traversal() {
        let f = Fixture::new();
        for name in ["..", "../outside", "a/../../b", "/etc", ".left4me"] {
            refused(&f, "x", &["mount", name], 10, "invalid instance name");
            refused(&f, "x", &["reset", name], 10, "invalid instance name");
        }
    }
}

root_test! {
    fn instance_name_option_injection() {
        let f = Fixture::new();
        // A NUL cannot reach the helper: execve ends the argument there
        // (name.rs's unit tests cover "vs1\0" at the parser).
        for name in ["a,upperdir=/tmp", "a:b", "a=b", "a b", "a\nb", "vs1\t"] {
            refused(&f, "x", &["mount", name], 10, "invalid instance name");
        }
    }
}

root_test! {
    fn overlay_name_option_injection() {
        let f = Fixture::new();
        f.write("instances/vs1/instance.env", "L4D2_PORT=27015\nL4D2_OVERLAYS=\"ok x,lowerdir=/\"\n");
        refused(&f, "vs1", &["mount", "vs1"], 11, "instance.env:2: L4D2_OVERLAYS: word 2 is not a valid overlay name: character 2 is not allowed there");
        f.write("instances/vs1/instance.env", "L4D2_PORT=27015\nL4D2_OVERLAYS=\"a:/etc\"\n");
        refused(&f, "vs1", &["mount", "vs1"], 11, "word 1 is not a valid overlay name: character 2");
    }
}

root_test! {
    fn overlay_name_traversal() {
        let f = Fixture::new();
        f.write("instances/vs1/instance.env", "L4D2_PORT=27015\nL4D2_OVERLAYS=\"../../outside\"\n");
        let err = f.assert_contained("vs1", || f.fails(&["mount", "vs1"], 11));
        assert!(err.contains("instance.env:2: L4D2_OVERLAYS: word 1 is not a valid overlay name: character 1"), "{err}");
        assert!(!err.contains("outside"), "the error echoed the value: {err}");
    }
}

root_test! {
    fn symlink_at_merged() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        fs::create_dir_all(f.path("runtime/vs1")).unwrap();
        symlink(&f.outside, f.path("runtime/vs1/merged")).unwrap();
        refused(&f, "vs1", &["mount", "vs1"], 13, "runtime/vs1/merged is a symlink");
        refused(&f, "vs1", &["umount", "vs1"], 13, "runtime/vs1/merged is a symlink");
        assert!(!common::mount_points().iter().any(|m| m.contains("outside")));
    }
}

root_test! {
    fn symlink_at_upper() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        fs::create_dir_all(f.path("runtime/vs1")).unwrap();
        symlink(&f.outside, f.path("runtime/vs1/upper")).unwrap();
        refused(&f, "vs1", &["mount", "vs1"], 13, "runtime/vs1/upper is a symlink");
        refused(&f, "vs1", &["reset", "vs1"], 13, "upper is a symlink");
    }
}

root_test! {
    fn symlink_at_work() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        fs::create_dir_all(f.path("runtime/vs1")).unwrap();
        symlink(&f.outside, f.path("runtime/vs1/work")).unwrap();
        refused(&f, "vs1", &["mount", "vs1"], 13, "runtime/vs1/work is a symlink");
    }
}

root_test! {
    fn symlink_at_runtime_instance_dir() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        symlink(&f.outside, f.path("runtime/vs1")).unwrap();
        refused(&f, "vs1", &["mount", "vs1"], 13, "runtime/vs1 is a symlink");
        refused(&f, "vs1", &["umount", "vs1"], 13, "runtime/vs1 is a symlink");
        refused(&f, "vs1", &["reset", "vs1"], 13, "runtime/vs1 is a symlink");
    }
}

root_test! {
    fn symlink_at_instance_dir() {
        let f = Fixture::new();
        f.write("../outside/evil/instance.env", "L4D2_PORT=1\n");
        symlink(f.outside.join("evil"), f.path("instances/vs1")).unwrap();
        refused(&f, "vs1", &["mount", "vs1"], 13, "instances/vs1 is a symlink");
    }
}

root_test! {
    fn symlink_at_instance_layer() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        symlink(&f.outside, f.path("instances/vs1/layer")).unwrap();
        refused(&f, "vs1", &["mount", "vs1"], 13, "instances/vs1/layer is a symlink");
    }
}

root_test! {
    fn symlink_at_instance_env() {
        let f = Fixture::new();
        fs::create_dir_all(f.path("instances/vs1")).unwrap();
        symlink("/etc/shadow", f.path("instances/vs1/instance.env")).unwrap();
        refused(&f, "vs1", &["mount", "vs1"], 13, "instance.env is a symlink");
    }
}

root_test! {
    fn symlinked_overlay() {
        let f = Fixture::new();
        f.instance("vs1", &["evil"]);
        symlink(&f.outside, f.path("overlays/evil")).unwrap();
        refused(&f, "vs1", &["mount", "vs1"], 13, "overlays/evil is a symlink");
    }
}

root_test! {
    fn fifo_as_instance_env_does_not_hang() {
        let f = Fixture::new();
        fs::create_dir_all(f.path("instances/vs1")).unwrap();
        mkfifo(&f.path("instances/vs1/instance.env"));
        refused(&f, "vs1", &["mount", "vs1"], 13, "instance.env is not a regular file");
    }
}

root_test! {
    fn fifo_or_file_where_directories_belong() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        fs::create_dir_all(f.path("runtime/vs1")).unwrap();
        mkfifo(&f.path("runtime/vs1/merged"));
        refused(&f, "vs1", &["mount", "vs1"], 13, "runtime/vs1/merged is not a directory");
        fs::remove_file(f.path("runtime/vs1/merged")).unwrap();
        // The refused mount may have created upper/ already; replace it by a file.
        let _ = fs::remove_dir(f.path("runtime/vs1/upper"));
        fs::write(f.path("runtime/vs1/upper"), "file").unwrap();
        refused(&f, "vs1", &["mount", "vs1"], 13, "runtime/vs1/upper is not a directory");
        fs::remove_file(f.path("runtime/vs1/upper")).unwrap();
        fs::write(f.path("instances/vs1/layer"), "file").unwrap();
        refused(&f, "vs1", &["mount", "vs1"], 13, "instances/vs1/layer is not a directory");
    }
}

root_test! {
    fn device_node_as_instance_env() {
        let f = Fixture::new();
        fs::create_dir_all(f.path("instances/vs1")).unwrap();
        rustix::fs::mknodat(rustix::fs::CWD, f.path("instances/vs1/instance.env"), rustix::fs::FileType::CharacterDevice, rustix::fs::Mode::from_raw_mode(0o644), rustix::fs::makedev(1, 5)).unwrap();
        refused(&f, "vs1", &["mount", "vs1"], 13, "not a regular file");
    }
}

root_test! {
    fn hardlinked_instance_env() {
        let f = Fixture::new();
        fs::create_dir_all(f.path("instances/vs1")).unwrap();
        fs::write(f.outside.join("root-only"), "L4D2_PORT=1\nSECRET=hunter2\n").unwrap();
        fs::hard_link(f.outside.join("root-only"), f.path("instances/vs1/instance.env")).unwrap();
        refused(&f, "vs1", &["mount", "vs1"], 13, "has 2 hard links");
    }
}

root_test! {
    fn huge_instance_env() {
        let f = Fixture::new();
        f.write("instances/vs1/instance.env", &"L4D2_PORT=27015\n".repeat(70_000));
        refused(&f, "vs1", &["mount", "vs1"], 11, "more than the 65536");
    }
}

root_test! {
    fn malformed_instance_env_names_file_and_line() {
        let f = Fixture::new();
        f.write("instances/vs1/instance.env", "# ok\nL4D2_PORT=27015\nL4D2_OVERLAYS=\"a\" b\n");
        refused(&f, "vs1", &["mount", "vs1"], 11, "instances/vs1/instance.env:3: text after the closing quote");
        f.write("instances/vs1/instance.env", "L4D2_OVERLAYS=a\n");
        refused(&f, "vs1", &["mount", "vs1"], 11, "L4D2_PORT is not set");
    }
}

root_test! {
    fn non_utf8_instance_env_is_not_echoed() {
        let f = Fixture::new();
        fs::create_dir_all(f.path("instances/vs1")).unwrap();
        fs::write(f.path("instances/vs1/instance.env"), b"L4D2_PORT=1\nPASSWORD=s3cr\xffet\n").unwrap();
        let err = f.assert_contained("vs1", || f.fails(&["mount", "vs1"], 11));
        assert!(err.contains("instance.env:2: not valid UTF-8"), "{err}");
        assert!(!err.contains("s3cr"), "the error leaked file content: {err}");
    }
}

root_test! {
    fn user_writable_runtime_or_state_dir_is_refused() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        fs::set_permissions(f.path("runtime"), fs::Permissions::from_mode(0o777)).unwrap();
        refused(&f, "vs1", &["mount", "vs1"], 13, "must be owned by root and writable by nobody else");
        fs::set_permissions(f.path("runtime"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&f.root, Some(common::SERVICE_UID), None).unwrap();
        refused(&f, "vs1", &["mount", "vs1"], 13, "must be owned by root");
    }
}

root_test! {
    fn reset_deletes_links_not_their_targets() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.ok(&["mount", "vs1"]);
        f.ok(&["umount", "vs1"]);
        let upper = f.path("runtime/vs1/upper");
        symlink(&f.outside, upper.join("dir-link")).unwrap();
        symlink(f.outside.join("secret"), upper.join("file-link")).unwrap();
        fs::hard_link(f.outside.join("sub/file"), upper.join("hard")).unwrap();
        fs::create_dir(upper.join("d")).unwrap();
        symlink("/", upper.join("d/root")).unwrap();
        f.assert_contained("vs1", || {
            f.ok(&["reset", "vs1"]);
            f.wait_discarded("vs1");
        });
        assert_eq!(fs::read_to_string(f.outside.join("sub/file")).unwrap(), "nor this\n");
    }
}

root_test! {
    fn status_does_not_walk_a_symlinked_upper() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        fs::create_dir_all(f.path("runtime/vs1")).unwrap();
        symlink("/", f.path("runtime/vs1/upper")).unwrap();
        let s = f.assert_contained("vs1", || f.status("vs1"));
        assert!(s["upper"].is_null(), "status followed the symlink: {s}");
    }
}

root_test! {
    fn foreign_mount_on_merged_is_left_alone() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        fs::create_dir_all(f.path("runtime/vs1/merged")).unwrap();
        assert!(std::process::Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(f.merged("vs1")).status().unwrap().success());
        refused(&f, "vs1", &["umount", "vs1"], 15, "not this instance's overlay (tmpfs from tmpfs)");
        let err = f.assert_contained("vs1", || f.fails(&["mount", "vs1"], 15));
        assert!(err.contains("not this instance's overlay"), "{err}");
        let on_merged = common::mount_points().iter().filter(|m| std::path::Path::new(m) == f.merged("vs1")).count();
        assert_eq!(on_merged, 1, "the foreign tmpfs must stay, with nothing stacked on it");
        // Its source is whatever its maker chose (a FUSE fsname): a terminal
        // escape in it reaches no terminal or journal.
        assert!(std::process::Command::new("umount").arg(f.merged("vs1")).status().unwrap().success());
        assert!(std::process::Command::new("mount").args(["-t", "tmpfs", "evil\x1b]0;owned\x07\x1b[2J"]).arg(f.merged("vs1")).status().unwrap().success());
        let err = f.fails(&["umount", "vs1"], 15);
        assert!(!err.contains('\x1b') && !err.contains('\x07'), "control characters printed: {err:?}");
        assert!(err.contains("tmpfs from evil\\u{1b}]0;owned"), "{err}");
    }
}

/// Swaps `path` between a real directory and a symlink to `target` until stopped.
fn swapper(
    path: std::path::PathBuf,
    target: std::path::PathBuf,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let aside = path.with_extension("aside");
        let link = path.with_extension("link");
        let _ = fs::remove_file(&link);
        symlink(&target, &link).unwrap();
        let mut swaps = 0;
        while !stop.load(Ordering::Relaxed) {
            // Two renames: the path is a directory, then a symlink, then a directory again.
            if fs::rename(&path, &aside).is_ok() && fs::rename(&link, &path).is_ok() {
                let _ = fs::rename(&path, &link);
                let _ = fs::rename(&aside, &path);
                swaps += 1;
            }
        }
        swaps
    })
}

fn race(f: &Fixture, instance: &str, rel: &str, verbs: &[&[&str]], rounds: usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let before = f.snapshot_except(instance);
    let handle = swapper(f.path(rel), f.outside.clone(), stop.clone());
    let mut outcomes = std::collections::BTreeMap::new();
    for _ in 0..rounds {
        for args in verbs {
            let out = f.helper(args);
            let code = out.status.code().unwrap();
            assert!(
                matches!(code, 0 | 12 | 13 | 15),
                "{args:?} exited {code}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            *outcomes.entry((args[0].to_owned(), code)).or_insert(0) += 1;
            assert!(
                !common::mount_points()
                    .iter()
                    .any(|m| m.contains("/outside")),
                "mounted outside the instance"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = handle.join().unwrap();
    assert!(swaps > 0, "the swapper never ran");
    // Put things back as they were before comparing.
    let _ = fs::remove_file(f.path(rel).with_extension("link"));
    assert_eq!(
        f.snapshot_except(instance),
        before,
        "changed outside runtime/{instance} while racing"
    );
    eprintln!("{rel}: {swaps} swaps, outcomes {outcomes:?}");
}

root_test! {
    fn racing_symlink_at_merged() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.ok(&["mount", "vs1"]);
        f.ok(&["umount", "vs1"]);
        race(&f, "vs1", "runtime/vs1/merged", &[&["mount", "vs1"], &["umount", "vs1"]], 150);
    }
}

root_test! {
    fn racing_symlink_at_upper_during_reset_and_mount() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.ok(&["mount", "vs1"]);
        f.ok(&["umount", "vs1"]);
        race(&f, "vs1", "runtime/vs1/upper", &[&["mount", "vs1"], &["umount", "vs1"], &["reset", "vs1"]], 100);
    }
}

root_test! {
    fn racing_symlink_at_instance_layer() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        fs::create_dir_all(f.path("instances/vs1/layer")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let before = f.snapshot_except("vs1");
        let handle = swapper(f.path("instances/vs1/layer"), f.outside.clone(), stop.clone());
        for _ in 0..150 {
            let out = f.helper(&["mount", "vs1"]);
            let code = out.status.code().unwrap();
            assert!(matches!(code, 0 | 12 | 13), "mount exited {code}: {}", String::from_utf8_lossy(&out.stderr));
            if code == 0 {
                // Whatever was mounted, the outside dir's files are not visible through it.
                assert!(!f.merged("vs1").join("secret").exists(), "outside content reached the stack");
                f.ok(&["umount", "vs1"]);
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert!(handle.join().unwrap() > 0);
        let _ = fs::remove_file(f.path("instances/vs1/layer.link"));
        // Every key, both ways: a file appearing outside runtime/vs1 fails too.
        assert_eq!(f.snapshot_except("vs1"), before, "changed outside runtime/vs1 while racing");
    }
}

root_test! {
    fn instance_env_sets_only_l4d2_keys() {
        let f = Fixture::new();
        for (line, key) in [
            ("LD_PRELOAD=/var/lib/left4me/runtime/vs1/upper/evil.so", "LD_PRELOAD"),
            ("LEFT4ME_USER=www-data", "LEFT4ME_USER"),
            ("GLIBC_TUNABLES=glibc.malloc.check=3", "GLIBC_TUNABLES"),
            ("PATH=/opt/evil/bin", "PATH"),
        ] {
            f.write("instances/vs1/instance.env", &format!("L4D2_PORT=27015\n{line}\n"));
            let err = f.assert_contained("vs1", || f.fails(&["mount", "vs1"], 11));
            assert!(err.contains(&format!("instance.env:2: {key} may not be set here")), "{err}");
            assert!(err.contains("hint: host-wide environment belongs in /etc/left4me/host.env"), "{err}");
            let value = line.split_once('=').unwrap().1;
            assert!(!err.contains(value), "the error echoed the value: {err}");
            assert!(!f.is_mounted("vs1"));
            assert!(!f.path("runtime/.left4me/vs1.env").exists(), "a refused config reached the game's environment");
        }
    }
}

root_test! {
    fn errors_never_echo_a_value() {
        let f = Fixture::new();
        f.write("instances/vs1/instance.env", "L4D2_PORT=hunter2-secret\n");
        let err = f.assert_contained("vs1", || f.fails(&["mount", "vs1"], 11));
        assert!(err.contains("instance.env:1: L4D2_PORT must be a number from 1 to 65535"), "{err}");
        assert!(err.contains("hint: "), "{err}");
        assert!(!err.contains("hunter2"), "the error leaked the value: {err}");
        f.write("instances/vs1/instance.env", "L4D2_PORT=1\nL4D2_OVERLAYS=\"ok hunter2,secret\"\n");
        let err = f.fails(&["mount", "vs1"], 11);
        assert!(!err.contains("hunter2"), "the error leaked the value: {err}");
    }
}

root_test! {
    fn root_is_refused_as_service_user_or_group() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        for (var, name, what) in [("LEFT4ME_USER", "root", "user"), ("LEFT4ME_GROUP", "root", "group")] {
            for verb in ["mount", "reset"] {
                let out = f.assert_contained("vs1", || f.helper_with(&[verb, "vs1"], &[(var, name)]));
                let err = String::from_utf8_lossy(&out.stderr);
                assert_eq!(out.status.code(), Some(19), "{verb} with {var}={name}: {err}");
                assert!(err.contains(&format!("the service {what} must not be root")), "{err}");
            }
        }
        assert!(!f.is_mounted("vs1"));
    }
}

root_test! {
    fn a_layer_of_a_third_account_is_not_idmapped() {
        let f = Fixture::new();
        // uid 2 (bin) is neither root nor the service user (daemon, uid 1).
        f.overlay("theirs", &[("mine.txt", "not yours\n")]);
        std::os::unix::fs::chown(f.path("overlays/theirs"), Some(2), Some(2)).unwrap();
        f.instance("vs1", &["theirs"]);
        refused(&f, "vs1", &["mount", "vs1"], 13, "overlays/theirs belongs to uid 2 gid 2, neither root nor the service user (1:1)");
        // The same for the game installation and the instance layer.
        std::os::unix::fs::chown(f.path("overlays/theirs"), Some(0), Some(0)).unwrap();
        fs::create_dir_all(f.path("instances/vs1/layer")).unwrap();
        std::os::unix::fs::chown(f.path("instances/vs1/layer"), Some(1), Some(2)).unwrap();
        refused(&f, "vs1", &["mount", "vs1"], 13, "instances/vs1/layer belongs to uid 1 gid 2");
        fs::remove_dir(f.path("instances/vs1/layer")).unwrap();
        std::os::unix::fs::chown(f.path("installation"), Some(2), Some(0)).unwrap();
        refused(&f, "vs1", &["mount", "vs1"], 13, "installation belongs to uid 2 gid 0");
        std::os::unix::fs::chown(f.path("installation"), Some(0), Some(0)).unwrap();
        f.ok(&["mount", "vs1"]);
    }
}

root_test! {
    /// Instances named like the host-wide locks (`installations`, `update`)
    /// once shared their files: a mount of `installations` deadlocked on
    /// itself (exit 16 after 30 s), and while any verb of such an instance
    /// ran, every other mount, `generation gc` and `import` waited for it.
    fn instances_named_like_host_locks_share_no_lock_with_the_host() {
        let f = Fixture::new();
        f.ok(&["generation", "list"]);
        for name in ["installations", "update"] {
            f.instance(name, &[]);
            let t0 = std::time::Instant::now();
            f.ok(&["mount", name]);
            assert!(f.is_mounted(name));
            assert!(t0.elapsed().as_secs() < 10, "mount {name} waited {:?}", t0.elapsed());
            f.ok(&["umount", name]);
        }
        f.instance("vs1", &[]);
        // A verb of instance `installations` or `update` holds its lock
        // (as a slow mount of it would): the host's verbs do not wait.
        for name in ["installations", "update"] {
            let held = fs::File::create(f.path(&format!("runtime/.left4me/{name}.lock"))).unwrap();
            rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
            let t0 = std::time::Instant::now();
            f.ok(&["generation", "gc"]);
            f.ok(&["mount", "vs1"]);
            f.ok(&["umount", "vs1"]);
            assert!(t0.elapsed().as_secs() < 10, "host verbs waited {:?} behind instance {name}", t0.elapsed());
        }
    }
}

/// A squashfs image of the service user's whose only file, `evil`, claims
/// root:root 4755: what the user can build without privilege (`mksquashfs
/// -p`, squashfs-tools).
fn setuid_root_image(f: &Fixture) -> std::path::PathBuf {
    let src = f.outside.join("image-src");
    fs::create_dir_all(&src).unwrap();
    fs::copy("/bin/true", src.join("evil")).unwrap();
    // The image's top is the user's, as the user's own mksquashfs makes it.
    std::os::unix::fs::chown(&src, Some(common::SERVICE_UID), Some(common::SERVICE_UID)).unwrap();
    let img = f.outside.join("evil.sqfs");
    let out = std::process::Command::new("mksquashfs")
        .arg(&src)
        .arg(&img)
        .args(["-quiet", "-noappend", "-p", "evil m 4755 0 0"])
        .output()
        .expect("mksquashfs (squashfs-tools; scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    img
}

/// Mounts `img` on `on` with squashfuse and allow_other, as a user with
/// `user_allow_other` in /etc/fuse.conf could. Root mounts it here (the
/// kernel sees the same: another filesystem, serving whatever owner and mode
/// the image claims), so the test does not change the host's fuse.conf.
fn squashfuse(img: &std::path::Path, on: &std::path::Path) {
    fs::create_dir_all(on).unwrap();
    let out = std::process::Command::new("squashfuse")
        .args(["-o", "allow_other"])
        .arg(img)
        .arg(on)
        .output()
        .expect("squashfuse (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let owner = fs::metadata(on.join("evil")).unwrap();
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::uid(&owner),
            std::os::unix::fs::MetadataExt::mode(&owner) & 0o7777
        ),
        (0, 0o4755)
    );
}

fn fusermount_u(on: &std::path::Path) {
    let _ = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(on)
        .status();
}

/// No file or directory below upper/ is root's or has a set-id bit
/// (overlayfs's whiteouts, root's 0:0 character devices, are expected).
fn assert_upper_has_no_root_or_setid_file(f: &Fixture, instance: &str) {
    let upper = f.path(&format!("runtime/{instance}/upper"));
    let out = std::process::Command::new("find")
        .arg(&upper)
        .args([
            "-mindepth",
            "1",
            "-not",
            "-type",
            "c",
            "(",
            "-uid",
            "0",
            "-o",
            "-perm",
            "/6000",
            ")",
            "-printf",
            "%p %u %m\\n",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "root's or set-id files in upper/"
    );
}

root_test! {
    /// The service user's FUSE mount (squashfuse, a file that claims
    /// root:root 4755) on its layer, on upper/ or on home/: root's copy-up
    /// would write a real set-uid root file into upper/, which the user can
    /// run from there. Every such mount is refused before anything is
    /// mounted.
    fn a_user_mount_on_a_layer_upper_or_home_is_refused() {
        let f = Fixture::new();
        let img = setuid_root_image(&f);
        f.instance("vs1", &[]);
        let layer = f.path("instances/vs1/layer");
        squashfuse(&img, &layer);
        refused(&f, "vs1", &["mount", "vs1"], 13, "instances/vs1/layer is a mount point");
        fusermount_u(&layer);
        fs::remove_dir(&layer).unwrap();
        // upper/ and home/ are the service user's, so it can mount on them
        // between two runs (mount creates them, umount keeps them).
        f.ok(&["mount", "vs1"]);
        f.ok(&["umount", "vs1"]);
        for part in ["upper", "home"] {
            let on = f.path(&format!("runtime/vs1/{part}"));
            squashfuse(&img, &on);
            refused(&f, "vs1", &["mount", "vs1"], 13, &format!("runtime/vs1/{part} is a mount point"));
            fusermount_u(&on);
        }
        f.ok(&["mount", "vs1"]);
        assert_upper_has_no_root_or_setid_file(&f, "vs1");
    }
}

root_test! {
    /// A root file in the service user's own layer, on the state dir's
    /// filesystem (a hard link, where fs.protected_hardlinks=0 lets the user
    /// make one; made by root here): the layer is idmapped with the service
    /// user's ids alone, so the file's owner is unmapped and overlayfs
    /// refuses to copy it up. Reading it works; renaming or writing it
    /// through merged/ fails, and upper/ gets no root or set-id file.
    fn a_root_file_in_the_users_layer_is_never_copied_up_as_roots() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        let layer = f.path("instances/vs1/layer");
        fs::create_dir_all(layer.join("left4dead2")).unwrap();
        std::os::unix::fs::chown(&layer, Some(common::SERVICE_UID), Some(common::SERVICE_UID)).unwrap();
        std::os::unix::fs::chown(layer.join("left4dead2"), Some(common::SERVICE_UID), Some(common::SERVICE_UID)).unwrap();
        let evil = layer.join("evil");
        fs::copy("/bin/true", &evil).unwrap();
        fs::set_permissions(&evil, fs::Permissions::from_mode(0o4755)).unwrap();
        fs::write(layer.join("mine.cfg"), "sv_cheats 0\n").unwrap();
        std::os::unix::fs::chown(layer.join("mine.cfg"), Some(common::SERVICE_UID), Some(common::SERVICE_UID)).unwrap();
        f.ok(&["mount", "vs1"]);
        let m = f.merged("vs1");
        let user = common::SERVICE_USER;
        let out = common::run_as(user, &format!("mv {0}/evil {0}/evil2", m.display()));
        assert!(!out.status.success(), "copy-up of a root file succeeded");
        let out = common::run_as(user, &format!("echo x >> {0}/evil", m.display()));
        assert!(!out.status.success(), "write to a root file succeeded");
        // The user's own files copy up as usual.
        let out = common::run_as(user, &format!("mv {0}/mine.cfg {0}/mine2.cfg && cat {0}/evil > /dev/null", m.display()));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_upper_has_no_root_or_setid_file(&f, "vs1");
        f.ok(&["umount", "vs1"]);
    }
}

/// The helper's processes alive now for the state dir of `f` (the
/// background sweepers, once the verb that forked them has returned; other
/// tests run theirs beside it).
fn helper_processes(f: &Fixture) -> usize {
    let me = fs::canonicalize(common::HELPER).unwrap();
    let state_dir = f.root.as_os_str().as_encoded_bytes().to_vec();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|e| fs::read_link(e.path().join("exe")).is_ok_and(|exe| exe == me))
        .filter(|e| {
            fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == state_dir.as_slice()))
        })
        .count()
}

root_test! {
    /// Each reset once forked its own detached root sweeper: 40 resets in a
    /// row left 40 root processes walking the same tree. One runs per
    /// instance now, and it deletes what later resets set aside.
    fn resets_in_a_row_leave_one_sweeper_per_instance() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.ok(&["mount", "vs1"]);
        f.ok(&["umount", "vs1"]);
        // A layer that takes a while to delete, then 39 quick resets while
        // it is deleted, each with something to delete.
        let upper = f.path("runtime/vs1/upper");
        for d in 0..100 {
            let dir = upper.join(format!("big{d}"));
            fs::create_dir(&dir).unwrap();
            for i in 0..1000 {
                fs::write(dir.join(format!("f{i}")), "").unwrap();
            }
        }
        f.ok(&["reset", "vs1"]);
        let mut most = helper_processes(&f);
        for round in 0..39 {
            fs::write(f.path(&format!("runtime/vs1/upper/r{round}")), "").unwrap();
            f.ok(&["reset", "vs1"]);
            most = most.max(helper_processes(&f));
        }
        assert!(most <= 1, "{most} sweepers of one instance ran at once");
        f.wait_discarded("vs1");
        assert_eq!(helper_processes(&f), 0);
    }
}

/// Runs `args`, which must end (any exit code) within 20 s: a root helper
/// waiting on the user's FUSE server would not end at all.
fn ends_promptly(f: &Fixture, args: &[&str]) -> Option<i32> {
    let t0 = std::time::Instant::now();
    let code = f.helper(args).status.code();
    assert!(
        t0.elapsed().as_secs() < 20,
        "{args:?} took {:?}",
        t0.elapsed()
    );
    code
}

root_test! {
    /// A FUSE server of the service user that never answers, mounted where
    /// root's helper looks: on merged/ over the running overlay, on
    /// upper/, on instances/NAME, inside upper/. Root once waited on it in
    /// the kernel, unkillable, holding its locks: `generation gc` held the
    /// installations lock and every other instance's mount timed out. No
    /// verb may send such a filesystem a request.
    fn a_users_fuse_server_that_never_answers_holds_no_root_verb() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.instance("vs2", &[]);
        f.ok(&["generation", "list"]);
        f.ok(&["mount", "vs1"]);
        {
            let _fuse = common::StallingFuse::mount(&f.merged("vs1"));
            // status reports the foreign mount on merged/ (exit 15).
            assert_eq!(ends_promptly(&f, &["status", "vs1"]), Some(15));
            assert!(ends_promptly(&f, &["status"]).is_some());
            assert_eq!(ends_promptly(&f, &["umount", "vs1"]), Some(15));
            assert_eq!(ends_promptly(&f, &["reset", "vs1"]), Some(15));
            assert_eq!(ends_promptly(&f, &["generation", "gc"]), Some(0));
            assert_eq!(ends_promptly(&f, &["mount", "vs2"]), Some(0));
            assert_eq!(ends_promptly(&f, &["umount", "vs2"]), Some(0));
        }
        f.ok(&["umount", "vs1"]);
        for on in ["runtime/vs1/upper", "instances/vs1"] {
            let _fuse = common::StallingFuse::mount(&f.path(on));
            assert_eq!(ends_promptly(&f, &["mount", "vs1"]), Some(13), "{on}");
            assert!(ends_promptly(&f, &["status", "vs1"]).is_some(), "{on}");
            assert!(ends_promptly(&f, &["status"]).is_some(), "{on}");
            assert_eq!(ends_promptly(&f, &["generation", "gc"]), Some(0), "{on}");
        }
        // Inside upper/: status counts the layer's size without entering
        // it, and a reset sets the layer aside whatever it holds.
        let _fuse = common::StallingFuse::mount(&f.path("runtime/vs1/upper/sub"));
        assert_eq!(ends_promptly(&f, &["status", "vs1"]), Some(0));
        assert_eq!(ends_promptly(&f, &["reset", "vs1"]), Some(0));
        assert_eq!(ends_promptly(&f, &["mount", "vs1"]), Some(0));
        assert_eq!(ends_promptly(&f, &["umount", "vs1"]), Some(0));
    }
}

/// Holds a kernel lock the way the service user can: a system call that
/// copies to or from a buffer whose page fault is never served sleeps
/// inside the call, lock held, and whatever root does that needs the lock
/// waits, unkillably. A getdents64 holds the directory's inode lock
/// (every chown, chmod, create, unlink or mount there waits); a write to a
/// FIFO holds the pipe's mutex (every open and close of it waits). The
/// user does it with a buffer mapped from a file of its own FUSE server
/// that never answers READ (the twentieth and twenty-first reviews
/// measured that on runtime/NAME/merged/, a root-owned 0755 directory and
/// the console FIFO). Root's stand-in here is a userfaultfd fault, which
/// the kernel takes at the same place (the copy to or from the caller's
/// buffer), without a FUSE server to write. Dropping it closes the
/// userfaultfd: the fault is retried without it, served with a zero page,
/// and the call returns, the lock with it.
struct HeldInKernel {
    uffd: Option<std::os::fd::OwnedFd>,
    caller: Option<std::thread::JoinHandle<i64>>,
    region: usize,
}

const PAGE: usize = 4096;

impl HeldInKernel {
    /// A getdents64 of `dir`: its inode lock.
    fn on(dir: &std::path::Path) -> HeldInKernel {
        let dir = fs::File::open(dir).unwrap();
        HeldInKernel::faulting(move |at| {
            use std::os::fd::AsRawFd;
            // SAFETY: getdents64 into the region `faulting` mapped, which
            // stays mapped until this call has returned (Drop).
            unsafe {
                nix::libc::syscall(
                    nix::libc::SYS_getdents64,
                    dir.as_raw_fd(),
                    at as *mut nix::libc::c_void,
                    PAGE,
                )
            }
        })
    }

    /// A write to FIFO `fifo` (opened read-write, so it needs no reader):
    /// its pipe's mutex.
    fn writing(fifo: &std::path::Path) -> HeldInKernel {
        let pipe = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(fifo)
            .unwrap();
        HeldInKernel::faulting(move |at| {
            use std::os::fd::AsRawFd;
            // SAFETY: as above, a write from the region.
            unsafe {
                nix::libc::write(pipe.as_raw_fd(), at as *const nix::libc::c_void, PAGE) as i64
            }
        })
    }

    /// Runs `call(region)` on a thread, with `region` a page registered
    /// with a userfaultfd that serves nothing, and returns once the call
    /// faults on it.
    fn faulting(call: impl FnOnce(usize) -> i64 + Send + 'static) -> HeldInKernel {
        use nix::libc;
        use std::os::fd::FromRawFd;
        // SAFETY: plain system calls on memory and descriptors this
        // function owns; the region stays mapped until Drop, after the
        // thread that uses it has ended.
        unsafe {
            let fd = libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) as i32;
            assert!(fd >= 0, "userfaultfd: {}", std::io::Error::last_os_error());
            let uffd = std::os::fd::OwnedFd::from_raw_fd(fd);
            // struct uffdio_api { api = UFFD_API, features, ioctls }: UFFDIO_API.
            let mut api = [0xAAu64, 0, 0];
            assert_eq!(
                libc::ioctl(fd, 0xc018_aa3f, api.as_mut_ptr()),
                0,
                "UFFDIO_API"
            );
            let region = libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(region, libc::MAP_FAILED);
            // struct uffdio_register { start, len, mode = MISSING, ioctls }.
            let mut register = [region as u64, PAGE as u64, 1, 0];
            assert_eq!(
                libc::ioctl(fd, 0xc020_aa00, register.as_mut_ptr()),
                0,
                "UFFDIO_REGISTER: {}",
                std::io::Error::last_os_error()
            );
            let at = region as usize;
            let caller = std::thread::spawn(move || call(at));
            // The fault is pending once the userfaultfd has an event.
            let mut poll = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            assert_eq!(
                libc::poll(&mut poll, 1, 10_000),
                1,
                "the call did not fault"
            );
            HeldInKernel {
                uffd: Some(uffd),
                caller: Some(caller),
                region: at,
            }
        }
    }
}

impl Drop for HeldInKernel {
    fn drop(&mut self) {
        drop(self.uffd.take());
        let done = self.caller.take().unwrap().join().unwrap();
        assert!(done > 0, "the call moved nothing once let go: {done}");
        // SAFETY: the region mapped in `on`; nothing reads into it any more.
        unsafe { nix::libc::munmap(self.region as *mut nix::libc::c_void, PAGE) };
    }
}

/// Whether process `pid` sleeps uninterruptibly (`D` in /proc/PID/stat).
fn in_uninterruptible_sleep(pid: u32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('D'))
}

root_test! {
    /// The twentieth review: a process of the service user holding the
    /// kernel lock of its own upper/ (a FUSE fault inside getdents) made
    /// root's mount wait in chown, unkillably, while it held the
    /// installations lock, so `generation gc` (and every update) failed
    /// after 30 s. What a mount does to the instance's own inodes now comes
    /// before any host-wide lock: the stalled mount is the instance's own.
    /// merged/ is root's 0700 below the mount, so the user cannot hold the
    /// lock the attach takes under the ports lock.
    fn a_user_holding_its_layers_kernel_lock_stalls_only_its_own_mount() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.instance("vs2", &[]);
        f.ok(&["generation", "list"]);
        f.ok(&["mount", "vs1"]);
        f.ok(&["umount", "vs1"]);
        let merged = fs::metadata(f.merged("vs1")).unwrap();
        assert_eq!(merged.permissions().mode() & 0o7777, 0o700);
        assert!(
            !common::run_as(common::SERVICE_USER, &format!("ls {}", f.merged("vs1").display()))
                .status
                .success(),
            "the service user lists merged/"
        );
        let held = HeldInKernel::on(&f.path("runtime/vs1/upper"));
        let mut stalled = f.command(&["mount", "vs1"]).spawn().unwrap();
        let t0 = std::time::Instant::now();
        while !in_uninterruptible_sleep(stalled.id()) {
            assert!(t0.elapsed().as_secs() < 20, "mount vs1 did not reach upper/'s lock");
            assert!(stalled.try_wait().unwrap().is_none(), "mount vs1 ended");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(ends_promptly(&f, &["generation", "gc"]), Some(0));
        assert_eq!(ends_promptly(&f, &["mount", "vs2"]), Some(0));
        assert_eq!(ends_promptly(&f, &["umount", "vs2"]), Some(0));
        drop(held);
        let out = stalled.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(f.is_mounted("vs1"));
        f.ok(&["umount", "vs1"]);
    }
}

root_test! {
    /// The twenty-first review: a mount attached each layer's idmapped
    /// clone over the layer itself (in its private namespace), which takes
    /// the layer directory's kernel lock. The layers are the user's
    /// `instances/NAME/layer` and `overlays/*` and `installations/<gen>`,
    /// which any local user can read: with its own layer held, the user's
    /// mount sat in `D` holding the installations lock (`generation gc`
    /// exit 16 after 30 s); with the current generation held, every
    /// instance's mount hung. The clones now go on a tmpfs of the mount's
    /// own, so holding a layer stalls nothing.
    fn holding_the_layers_kernel_locks_stalls_no_mount() {
        let f = Fixture::new();
        f.overlay("shared", &[("left4dead2/cfg/shared.cfg", "x\n")]);
        f.instance("vs1", &["shared"]);
        f.instance("vs2", &["shared"]);
        let own = f.path("instances/vs1/layer");
        fs::create_dir_all(own.join("left4dead2")).unwrap();
        std::os::unix::fs::chown(&own, Some(common::SERVICE_UID), Some(common::SERVICE_GID)).unwrap();
        f.ok(&["generation", "list"]);
        let generation = fs::read_dir(f.path("installations"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .expect("a generation");
        let held = [
            HeldInKernel::on(&own),
            HeldInKernel::on(&f.path("overlays/shared")),
            HeldInKernel::on(&generation),
        ];
        for args in [
            &["mount", "vs1"][..],
            &["mount", "vs2"],
            &["generation", "gc"],
            &["umount", "vs1"],
            &["umount", "vs2"],
        ] {
            assert_eq!(ends_promptly(&f, args), Some(0), "{args:?}");
        }
        drop(held);
        // The staging tmpfs lived only in the mount's namespace.
        assert_eq!(fs::read_dir(f.path("runtime/.left4me/vs1.stage")).unwrap().count(), 0);
    }
}

root_test! {
    /// The twenty-first review: the service user opens its console FIFO
    /// (root:GROUP 0660) and writes to it from a buffer whose page fault
    /// its FUSE server never serves, holding the pipe's mutex; root's open
    /// and close of the FIFO take that mutex. umount's release opened it
    /// and waited in `D` through SIGKILL; a mount made it by opening it,
    /// under the installations lock. Root now never opens the FIFO: made
    /// by name, removed by name.
    fn a_writer_holding_the_consoles_pipe_stalls_no_root_verb() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.instance("vs2", &[]);
        f.ok(&["mount", "vs1"]);
        let fifo = f.console.join("vs1.stdin");
        let held = HeldInKernel::writing(&fifo);
        for args in [
            &["mount", "vs1"][..],
            &["umount", "vs1"],
            &["mount", "vs1"],
            &["mount", "vs2"],
            &["generation", "gc"],
            &["umount", "vs1"],
            &["umount", "vs2"],
        ] {
            assert_eq!(ends_promptly(&f, args), Some(0), "{args:?}");
        }
        assert!(fs::symlink_metadata(&fifo).is_err(), "the console outlived the mount");
        drop(held);
    }
}

root_test! {
    /// The twenty-first review (reasoned): gc deleted an old generation
    /// under the update lock, and through an overlay a game's getdents of
    /// a directory only the generation has holds that directory's kernel
    /// lock (a FUSE fault on the buffer holds it as long as the user
    /// likes), so every later update and gc failed with exit 16. The
    /// deletion is now a detached child's that holds no generation lock.
    fn a_held_directory_of_an_old_generation_stalls_no_generation_verb() {
        let f = Fixture::new();
        f.ok(&["generation", "list"]);
        let g1 = f.read("installations/current").trim_end().to_owned();
        let by_hand = f.outside.join("game");
        fs::create_dir_all(by_hand.join("left4dead2")).unwrap();
        fs::write(by_hand.join("srcds_run"), "#!/bin/sh\n").unwrap();
        fs::write(by_hand.join("left4dead2/gameinfo.txt"), "by hand\n").unwrap();
        f.ok(&["generation", "import", by_hand.to_str().unwrap()]);
        let held = HeldInKernel::on(&f.path(&format!("installations/{g1}/left4dead2/cfg")));
        // The first waits for its sweep up to 20 s (SWEEP_WAIT), then
        // leaves it; the next find its sweeper lock held and wait for none.
        let t0 = std::time::Instant::now();
        assert_eq!(f.helper(&["generation", "gc", "--keep", "1"]).status.code(), Some(0));
        assert!(t0.elapsed().as_secs() < 40, "gc took {:?}", t0.elapsed());
        for args in [&["generation", "gc", "--keep", "1"][..], &["generation", "list"]] {
            assert_eq!(ends_promptly(&f, args), Some(0), "{args:?}");
        }
        assert!(!f.path(&format!("installations/{g1}")).exists(), "{g1} is still a generation");
        let pending = || {
            fs::read_dir(f.path("installations"))
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".discard-"))
                .count()
        };
        assert_eq!(pending(), 1, "the sweeper finished inside a held directory");
        drop(held);
        let t0 = std::time::Instant::now();
        while pending() > 0 {
            assert!(t0.elapsed().as_secs() < 10, "the sweeper did not finish once let go");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

root_test! {
    /// The twenty-first review: `left4me delete` checked its 300 s bound
    /// between the walk's steps, so a step waiting in the kernel on a
    /// directory the service user holds locked (its getdents, the buffer
    /// faulting on its FUSE file) held root's command in `D`, through
    /// SIGKILL. The walk now runs in a child; the command waits for it in
    /// an ordinary sleep, so it can be interrupted (and gives up by itself
    /// 30 s past the bound), and the child finishes once let go.
    fn a_delete_waiting_in_the_kernel_leaves_the_command_killable() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.ok(&["mount", "vs1"]);
        f.ok(&["umount", "vs1"]);
        f.write("instances/vs1/sub/file", "x\n");
        // systemctl as `delete` asks it: the server unit unknown (stopped),
        // the disable job done.
        let bin = tempfile::tempdir().unwrap();
        fs::write(bin.path().join("systemctl"), "#!/bin/sh\nexit 0\n").unwrap();
        fs::set_permissions(bin.path().join("systemctl"), fs::Permissions::from_mode(0o755)).unwrap();
        let held = HeldInKernel::on(&f.path("instances/vs1/sub"));
        let mut delete = std::process::Command::new(env!("CARGO_BIN_EXE_left4me"))
            .args(["delete", "vs1", "--yes"])
            .env("LEFT4ME_STATE_DIR", &f.root)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.path().display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The walk reaches sub/'s lock and waits there, in a child.
        let walker = || {
            fs::read_to_string(format!("/proc/{0}/task/{0}/children", delete.id()))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .find(|p| in_uninterruptible_sleep(*p))
        };
        let t0 = std::time::Instant::now();
        let child = loop {
            if let Some(p) = walker() {
                break p;
            }
            assert!(t0.elapsed().as_secs() < 20, "no child of delete waits on sub/'s lock");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(!in_uninterruptible_sleep(delete.id()), "delete itself waits in the kernel");
        delete.kill().unwrap();
        let t0 = std::time::Instant::now();
        while delete.try_wait().unwrap().is_none() {
            assert!(t0.elapsed().as_secs() < 5, "delete outlived SIGKILL");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        drop(held);
        let t0 = std::time::Instant::now();
        while std::path::Path::new(&format!("/proc/{child}")).exists() && f.path("runtime/vs1").exists() {
            assert!(t0.elapsed().as_secs() < 10, "the walk did not finish once let go");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

root_test! {
    /// The twenty-second review: the user holds its own instances/NAME
    /// (a getdents faulting on its FUSE file), queues a writer of its own
    /// on it (mkdir), and renames its layer away so that no dentry named
    /// `layer` is cached. Root's mount looked `layer` up the slow way under
    /// the installations lock, behind the queued writer: every gc, commit
    /// and import then failed with exit 16 for as long as the user liked.
    /// The instance's own layers are now looked up before that lock.
    fn a_lookup_behind_the_users_queued_writer_holds_no_host_wide_lock() {
        // The writer queued behind the held lock. Now and then (about 1 in
        // 30 runs here) a hold on the fixture's instances/vs1 did not stop
        // the writer's mkdir at all (it ended in 2 ms, for every hold
        // taken on that directory); the set-up is then made again on a
        // fresh fixture.
        let (f, held, mut writer) = (0..5)
            .find_map(|_| {
                let f = Fixture::new();
                f.instance("vs1", &[]);
                f.instance("vs2", &[]);
                let own = f.path("instances/vs1/layer");
                fs::create_dir_all(own.join("left4dead2")).unwrap();
                std::os::unix::fs::chown(&own, Some(common::SERVICE_UID), Some(common::SERVICE_GID)).unwrap();
                f.ok(&["generation", "list"]);
                f.ok(&["mount", "vs1"]);
                f.ok(&["umount", "vs1"]);
                fs::rename(&own, f.path("instances/vs1/layer.x")).unwrap();
                // The reset marker's lookup (before any lock) finds a cached
                // negative dentry, as it would after any earlier mount.
                let _ = fs::symlink_metadata(f.path("instances/vs1/reset-at-start"));
                let held = HeldInKernel::on(&f.path("instances/vs1"));
                let mut writer = std::process::Command::new("mkdir").arg(f.path("instances/vs1/q")).spawn().unwrap();
                let t0 = std::time::Instant::now();
                while !in_uninterruptible_sleep(writer.id()) {
                    if writer.try_wait().unwrap().is_some() {
                        return None;
                    }
                    assert!(t0.elapsed().as_secs() < 10, "the writer neither queued nor ended");
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Some((f, held, writer))
            })
            .expect("the writer never queued behind the held lock, on 5 fixtures");
        let mut stalled = f.command(&["mount", "vs1"]).spawn().unwrap();
        let t0 = std::time::Instant::now();
        while !in_uninterruptible_sleep(stalled.id()) {
            assert!(t0.elapsed().as_secs() < 20, "mount vs1 did not reach the lookup");
            assert!(stalled.try_wait().unwrap().is_none(), "mount vs1 ended");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for args in [&["generation", "gc"][..], &["mount", "vs2"], &["umount", "vs2"]] {
            assert_eq!(ends_promptly(&f, args), Some(0), "{args:?}");
        }
        drop(held);
        assert!(writer.wait().unwrap().success());
        let out = stalled.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        f.ok(&["umount", "vs1"]);
    }
}

root_test! {
    /// reset and umount of a name that is no instance once left a lock
    /// file per name in runtime/.left4me/: the service user may start
    /// left4me-reset@ (and, through a server start, left4me-overlay@) with
    /// any valid name, so it could make root create files without end.
    fn a_name_that_is_no_instance_leaves_no_lock_file() {
        let f = Fixture::new();
        f.instance("vs1", &[]);
        f.ok(&["mount", "vs1"]);
        f.ok(&["umount", "vs1"]);
        let helper_dir = f.path("runtime/.left4me");
        let before: Vec<_> = fs::read_dir(&helper_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        for name in ["Zq9xk2", "Otherumount", "r4nd0m"] {
            assert!(f.fails(&["reset", name], 12).contains(&format!("no instance {name}")));
            assert!(f.ok(&["umount", name]).contains("not-mounted"));
            f.fails(&["mount", name], 12);
        }
        let after: Vec<_> = fs::read_dir(&helper_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(before, after, "files appeared in runtime/.left4me");
    }
}

root_test! {
    /// Each instance name keeps root's runtime/NAME/ and its files in
    /// runtime/.left4me/ until root's `left4me delete`; with its instance
    /// dir renamed between starts that fail, the user made root keep one
    /// more set per request, spending the blocks reserved for root and
    /// slowing `generation gc` (which looks at every name under the
    /// exclusive installations lock) without end (twenty-fourth review).
    /// Past 1,024 names a new name's mount is refused and creates nothing;
    /// a name runtime/ holds still mounts; reset and umount of a name that
    /// has an instance dir but nothing in runtime/ create nothing either.
    fn names_past_the_cap_are_refused_and_verbs_without_a_runtime_dir_create_nothing() {
        let f = Fixture::new();
        f.instance("kept", &[]);
        f.ok(&["mount", "kept"]);
        f.ok(&["umount", "kept"]);
        for i in 0..1023 {
            fs::create_dir(f.path(&format!("runtime/left{i}"))).unwrap();
        }
        let helper_dir = f.path("runtime/.left4me");
        let files = || -> Vec<_> {
            let mut v: Vec<_> = fs::read_dir(&helper_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
            v.sort();
            v
        };
        let before = files();
        f.instance("fresh", &[]);
        for _ in 0..2 {
            f.ok(&["reset", "fresh"]);
            assert!(f.ok(&["umount", "fresh"]).contains("not-mounted"));
        }
        let err = f.fails(&["mount", "fresh"], 15);
        assert!(
            err.contains("holds 1024 instance names, the most this host allows; fresh would be one more"),
            "{err}"
        );
        assert!(err.contains("left4me delete NAME"), "{err}");
        assert!(!f.path("runtime/fresh").exists(), "runtime/fresh created");
        assert_eq!(before, files(), "files appeared in runtime/.left4me");
        f.ok(&["mount", "kept"]);
        f.ok(&["umount", "kept"]);
        fs::remove_dir(f.path("runtime/left0")).unwrap();
        f.ok(&["mount", "fresh"]);
        f.ok(&["umount", "fresh"]);
    }
}

root_test! {
    /// A failure's message quotes what the user wrote: a key of instance.env
    /// 65,400 bytes long made a record of 65,743 bytes, past what its reader
    /// accepts, so the web app saw no reason, and as much into the journal
    /// at every start (twenty-fifth review). A message quotes 64 characters
    /// of a key, and a record keeps at most 2 KiB of a message.
    fn a_failure_record_quoting_a_huge_key_stays_readable() {
        let f = Fixture::new();
        f.instance("big", &[]);
        fs::write(f.path("instances/big/instance.env"), format!("{}=1\n", "X".repeat(65_400))).unwrap();
        f.fails(&["mount", "big"], 11);
        let record = fs::read_to_string(f.path("runtime/big/last-failure.json")).unwrap();
        assert!(record.len() < 4096, "a record of {} bytes", record.len());
        assert!(record.contains("XXX… (65400 characters) may not be set here"), "{record}");
        assert!(record.contains("\"exit_code\":11"), "{record}");
    }
}

root_test! {
    /// The health records' directories are the service user's
    /// (RuntimeDirectory=left4me-health/NAME), and root reads them:
    /// `left4me-health status`, `left4me list`. A FUSE server of the user's
    /// that never answers, mounted on one, once held root's `status` in the
    /// kernel, unkillable (red-team review). The record is opened beneath
    /// the run dir without crossing a mount, so the filesystem is never
    /// asked.
    fn a_users_fuse_server_on_a_health_record_dir_holds_no_root_reader() {
        let run = tempfile::tempdir().unwrap();
        let health = |args: &[&str]| {
            let t0 = std::time::Instant::now();
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_left4me-health"))
                .arg("--run-dir")
                .arg(run.path())
                .args(args)
                .env_remove("JOURNAL_STREAM")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            while child.try_wait().unwrap().is_none() {
                assert!(t0.elapsed().as_secs() < 10, "left4me-health {args:?} still waits after 10 s");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let out = child.wait_with_output().unwrap();
            (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
        };
        let _fuse = common::StallingFuse::mount(&run.path().join("vs1"));
        let (code, _) = health(&["status"]);
        assert_eq!(code, Some(0), "status of all skips the mounted one");
        let (code, err) = health(&["status", "vs1"]);
        assert_eq!(code, Some(11), "{err}");
        assert!(err.contains("another mount"), "{err}");
    }
}

root_test! {
    /// Root's request server, started as left4me-requests.socket starts it
    /// (the listening socket as fd 3, LISTEN_FDS=1, LISTEN_PID its own),
    /// against clients of the service user's that hang up before their
    /// answer, send a line too long, or never finish one. The helper
    /// restores SIGPIPE's default, so an answer written to a closed
    /// connection with plain write(2) would kill root's server; it must
    /// keep serving, and run nothing for what was not a request.
    fn the_request_server_outlives_clients_that_hang_up() {
        use std::io::{BufRead, BufReader, Write};
        use std::os::fd::AsRawFd;
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::os::unix::process::CommandExt;
        use std::time::{Duration, Instant};
        let dir = tempfile::tempdir().unwrap();
        let (systemctl, log) = common::fake_systemctl(dir.path());
        let socket = dir.path().join("requests.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let fd = listener.as_raw_fd();
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\""])
            .arg(env!("CARGO_BIN_EXE_left4me-overlay"))
            .args(["serve-requests", "--systemctl"])
            .arg(&systemctl);
        // SAFETY: dup2 is async-signal-safe; nothing else runs between fork
        // and exec.
        unsafe {
            cmd.pre_exec(move || {
                // dup2 onto itself keeps FD_CLOEXEC: clear it then.
                let rc = if fd == 3 {
                    nix::libc::fcntl(3, nix::libc::F_SETFD, 0)
                } else {
                    nix::libc::dup2(fd, 3)
                };
                if rc < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut server = cmd.spawn().unwrap();
        drop(listener);
        let ask = |line: &[u8]| {
            let mut s = UnixStream::connect(&socket).unwrap();
            let _ = s.write_all(line);
            let mut answer = String::new();
            BufReader::new(s).read_line(&mut answer).unwrap();
            answer
        };
        let ran = || {
            fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("--no-ask-password"))
                .count()
        };
        let wait_ran = |n: usize| {
            let t0 = Instant::now();
            while ran() < n && t0.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(ran(), n, "systemctl runs, one per request");
        };
        assert_eq!(ask(b"stop vs1\n"), "ok\n");
        // Hung up before the answer, in batches under the 16-request cap.
        for batch in 1..=4 {
            for _ in 0..5 {
                let mut s = UnixStream::connect(&socket).unwrap();
                s.write_all(b"stop vs1\n").unwrap();
            }
            wait_ran(1 + 5 * batch);
        }
        for _ in 0..5 {
            let mut s = UnixStream::connect(&socket).unwrap();
            let _ = s.write_all(&[b'x'; 4096]);
        }
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(ask(b"restart vs1 no-block\n"), "ok\n");
        assert!(
            server.try_wait().unwrap().is_none(),
            "root's request server died: {:?}",
            server.try_wait()
        );
        wait_ran(22);
        let text = fs::read_to_string(&log).unwrap();
        assert!(
            text.ends_with(
                "--no-ask-password --no-block --job-mode=fail restart -- left4me-server@vs1.service\n"
            ),
            "{text}"
        );
        let _ = server.kill();
        let _ = server.wait();
    }
}
