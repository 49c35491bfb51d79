//! Harness for the tests that make real overlayfs mounts. They need root and
//! run each in a private mount namespace of their own (the test binary
//! re-executes itself under `unshare --mount --propagation private`), so a
//! failing test cannot leave mounts behind on the host. Without root they are
//! ignored by libtest (counted as ignored, with the reason shown), never passed.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const HELPER: &str = env!("CARGO_BIN_EXE_left4me-overlay");
/// An unprivileged account every Debian system has, standing in for left4me.
pub const SERVICE_USER: &str = "daemon";
pub const SERVICE_UID: u32 = 1;
/// Its group (daemon), which stands in for the service group.
pub const SERVICE_GID: u32 = 1;
const ISOLATED: &str = "LEFT4ME_TEST_ISOLATED";

/// A stand-in for systemctl in `dir`, as a verb's `--systemctl` names it: it
/// records each call's arguments, one line per call, in `systemctl.log`,
/// prints `systemctl.out` (what `show` answers), and exits with the code in
/// `systemctl.exit` (0 when absent), as systemctl(1) exits non-zero when the
/// manager refuses or cannot answer a call. Returns its path and its log.
pub fn fake_systemctl(dir: &Path) -> (PathBuf, PathBuf) {
    let (bin, log) = (dir.join("systemctl"), dir.join("systemctl.log"));
    fs::write(
        &bin,
        format!(
            "#!/bin/sh\necho \"$*\" >> {log}\ncat {dir}/systemctl.out 2>/dev/null\nexit $(cat {dir}/systemctl.exit 2>/dev/null || echo 0)\n",
            log = log.display(),
            dir = dir.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    (bin, log)
}

/// Declares a root test: ignored unless run with `--include-ignored`, and then
/// run in its own private mount namespace.
#[macro_export]
macro_rules! root_test {
    ($(#[$meta:meta])* fn $name:ident() $body:block) => {
        $(#[$meta])*
        #[test_log::test]
        #[ignore = "needs root: run scripts/test (cargo test -- --include-ignored as root)"]
        fn $name() {
            $crate::common::isolated(stringify!($name), || $body);
        }
    };
}

pub fn isolated(name: &str, body: impl FnOnce()) {
    if std::env::var_os(ISOLATED).is_some() {
        return body();
    }
    assert!(
        rustix::process::geteuid().is_root(),
        "{name} needs root (it mounts overlayfs); run it as root, or without --include-ignored to skip it"
    );
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(exe)
        .args([
            name,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ISOLATED, "1")
        .output()
        .expect("run unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} failed in its private mount namespace:\n{stdout}\n{stderr}"
    );
}

/// Runs `sh -c script` as `user` (and its group, no other groups).
pub fn run_as(user: &str, script: &str) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid",
            user,
            "--regid",
            user,
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .output()
        .unwrap()
}

/// Longer than any verb takes here (the lock wait is 30 s), far shorter
/// than a hung suite.
pub const HELPER_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

pub struct Fixture {
    _dir: tempfile::TempDir,
    /// The state dir (DIR in the contract).
    pub root: PathBuf,
    /// A directory outside the state dir that no verb may ever touch.
    pub outside: PathBuf,
    /// Where mount makes the consoles (--console-dir), instead of the
    /// host's /run/left4me; root's like that one.
    pub console: PathBuf,
    /// The health checks' record dirs mount keeps bounded
    /// (LEFT4ME_HEALTH_RUN_DIR), instead of the host's /run/left4me-health.
    pub health_run: PathBuf,
    /// The game port [`Fixture::instance`] gives next: each instance its
    /// own, so instances mounted together never share one (exit 21).
    next_port: std::cell::Cell<u16>,
}

impl Fixture {
    /// A state dir with a root-owned installation holding the stand-in layout.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("left4me-test.")
            .tempdir()
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let root = dir.path().join("state");
        let outside = dir.path().join("outside");
        let console = dir.path().join("console");
        let health_run = dir.path().join("health-run");
        for d in [
            "installation/left4dead2/cfg",
            "installation/left4dead2/logs",
            "overlays",
            "instances",
            "runtime",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::create_dir_all(outside.join("sub")).unwrap();
        fs::write(outside.join("secret"), "do not touch\n").unwrap();
        fs::write(outside.join("sub/file"), "nor this\n").unwrap();
        let f = Fixture {
            _dir: dir,
            root,
            outside,
            console,
            health_run,
            next_port: std::cell::Cell::new(27015),
        };
        f.write("installation/srcds_run", "#!/bin/sh\n");
        f.write("installation/left4dead2/gameinfo.txt", "installation\n");
        f.write(
            "installation/left4dead2/cfg/server.cfg",
            "hostname \"installation\"\n",
        );
        f
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub fn overlay(&self, name: &str, files: &[(&str, &str)]) {
        fs::create_dir_all(self.path(&format!("overlays/{name}"))).unwrap();
        for (rel, content) in files {
            self.write(&format!("overlays/{name}/{rel}"), content);
        }
    }

    pub fn instance(&self, name: &str, overlays: &[&str]) {
        let port = self.next_port.get();
        self.next_port.set(port + 1);
        self.write(
            &format!("instances/{name}/instance.env"),
            &format!(
                "L4D2_PORT={port}\nL4D2_ARGS=\"+map c1m1_hotel\"\nL4D2_OVERLAYS=\"{}\"\n",
                overlays.join(" ")
            ),
        );
    }

    pub fn helper(&self, args: &[&str]) -> Output {
        self.helper_with(args, &[])
    }

    /// Like [`Fixture::helper`], with `env` set on top of the defaults. A
    /// run that takes more than [`HELPER_LIMIT`] (a FIFO that blocked an
    /// open, a lock never given back) is killed and fails the test, instead
    /// of hanging the suite.
    pub fn helper_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut child = self
            .command(args)
            .envs(env.iter().copied())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + HELPER_LIMIT;
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                // Not waited for: a process stuck in the kernel (a FUSE
                // request nobody answers) outlives even SIGKILL.
                let _ = child.kill();
                panic!("{args:?} still ran after {HELPER_LIMIT:?}; killed");
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        child.wait_with_output().unwrap()
    }

    /// The helper with this fixture's state, user and directories, its
    /// output piped, not started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(HELPER);
        c.arg("--state-dir")
            .arg(&self.root)
            .args(args)
            .env("LEFT4ME_USER", SERVICE_USER)
            .env("LEFT4ME_GROUP", SERVICE_USER)
            .env("LEFT4ME_CONSOLE_DIR", &self.console)
            .env("LEFT4ME_HEALTH_RUN_DIR", &self.health_run)
            .env_remove("LEFT4ME_SYSTEMCTL")
            .env_remove("JOURNAL_STREAM")
            .env_remove("LEFT4ME_STATE_DIR")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    }

    /// Runs a verb that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.helper(args);
        assert!(
            out.status.success(),
            "{args:?} failed ({:?}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a verb that must fail with `code`; returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.helper(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: expected exit {code}, got {:?}\nstderr: {stderr}",
            out.status
        );
        stderr
    }

    pub fn merged(&self, instance: &str) -> PathBuf {
        self.path(&format!("runtime/{instance}/merged"))
    }

    pub fn is_mounted(&self, instance: &str) -> bool {
        let merged = self.merged(instance);
        mount_points().iter().any(|m| Path::new(m) == merged)
    }

    pub fn status(&self, instance: &str) -> serde_json::Value {
        let out = self.ok(&["status", instance, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["instances"][0].clone()
    }

    /// Waits for reset's background deletion to finish.
    pub fn wait_discarded(&self, instance: &str) {
        for _ in 0..500 {
            if self.status(instance)["discard_pending"] == 0 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("discarded layers of {instance} still pending after 5 s");
    }

    /// Everything about the tree except `runtime/<instance>`, plus the outside dir.
    pub fn snapshot_except(&self, instance: &str) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        let skip = [
            self.path(&format!("runtime/{instance}")),
            self.path("runtime/.left4me"),
        ];
        walk(&self.root, &skip, true, &mut out);
        walk(&self.outside, &skip, true, &mut out);
        out
    }

    /// Runs `action` and asserts that nothing outside runtime/<instance> was
    /// changed and no mount appeared anywhere but runtime/<instance>/merged.
    pub fn assert_contained<T>(&self, instance: &str, action: impl FnOnce() -> T) -> T {
        let before = self.snapshot_except(instance);
        let mounts_before = mount_points();
        let result = action();
        let after = self.snapshot_except(instance);
        let changed: Vec<_> = before
            .iter()
            .filter(|(k, v)| after.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .chain(after.keys().filter(|k| !before.contains_key(*k)).cloned())
            .collect();
        assert!(
            changed.is_empty(),
            "changed outside runtime/{instance}: {changed:?}"
        );
        let merged = self.merged(instance);
        let new_mounts: Vec<_> = mount_points()
            .into_iter()
            .filter(|m| !mounts_before.contains(m) && Path::new(m) != merged)
            .collect();
        assert!(new_mounts.is_empty(), "mounted elsewhere: {new_mounts:?}");
        result
    }

    /// Every entry below the state dir (through merged/ too) with its type,
    /// mode, owner, size and content, but not its times: what a verb run
    /// twice must leave the same.
    pub fn layout(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        walk(&self.root, &[], false, &mut out);
        out
    }
}

pub fn mount_points() -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(|l| l.split(' ').nth(4).unwrap().replace("\\040", " "))
        .collect()
}

/// Directory mtimes are left out: creating runtime/<i> or the helper's own
/// runtime/.left4me changes runtime/'s mtime; the entries themselves count.
/// Without `times`, no mtime at all.
fn walk(dir: &Path, skip: &[PathBuf], times: bool, out: &mut BTreeMap<PathBuf, String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if skip.contains(&path) {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let mtime = if meta.is_dir() || !times {
            0
        } else {
            meta.mtime() * 1_000_000_000 + meta.mtime_nsec()
        };
        let mut desc = format!(
            "{:o} {}:{} {} {mtime}",
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.len()
        );
        if meta.file_type().is_symlink() {
            desc += &format!(" -> {}", fs::read_link(&path).unwrap().display());
        } else if meta.is_file() && meta.len() < 1 << 20 {
            desc += &format!(" {:?}", fs::read(&path).unwrap());
        }
        out.insert(path.clone(), desc);
        if meta.is_dir() {
            walk(&path, skip, times, out);
        }
    }
}

/// A FUSE filesystem whose server answers INIT and then nothing, as a
/// hostile service user's own FUSE server can (with `user_allow_other`):
/// any request root sends it (a lookup, a getattr, an open) waits forever,
/// uninterruptibly. Mounted by root here (the kernel sees the same: a FUSE
/// mount owned by the service user, allow_other), served by a forked child
/// until dropped, which kills the server and so fails every waiting request.
pub struct StallingFuse {
    on: PathBuf,
    server: nix::unistd::Pid,
}

impl StallingFuse {
    pub fn mount(on: &Path) -> StallingFuse {
        use nix::fcntl::{OFlag, open};
        use nix::sys::stat::Mode;
        fs::create_dir_all(on).unwrap();
        let dev = open("/dev/fuse", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
            .expect("/dev/fuse (the fuse module)");
        use std::os::fd::AsRawFd;
        let options = format!(
            "fd={},rootmode=40000,user_id={SERVICE_UID},group_id={SERVICE_UID},allow_other",
            dev.as_raw_fd()
        );
        nix::mount::mount(
            Some("stallfs"),
            on,
            Some("fuse.stallfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .expect("mount a FUSE filesystem");
        let (ready_r, ready_w) = nix::unistd::pipe().unwrap();
        // Allocated before the fork: the child only makes system calls.
        let mut buf = vec![0u8; 1 << 20];
        // SAFETY: the child runs only read/write on memory allocated before
        // the fork and never returns.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => loop {
                let Ok(n) = nix::unistd::read(&dev, &mut buf) else {
                    continue;
                };
                // fuse_in_header: len u32, opcode u32, unique u64, ...
                if n < 40 || u32::from_le_bytes(buf[4..8].try_into().unwrap()) != FUSE_INIT {
                    continue; // never answered
                }
                let mut reply = [0u8; 16 + 64];
                reply[0..4].copy_from_slice(&80u32.to_le_bytes());
                reply[8..16].copy_from_slice(&buf[8..16]);
                // fuse_init_out: major 7, minor 31, max_write 4096.
                reply[16..20].copy_from_slice(&7u32.to_le_bytes());
                reply[20..24].copy_from_slice(&31u32.to_le_bytes());
                reply[32..36].copy_from_slice(&4096u32.to_le_bytes());
                let _ = nix::unistd::write(&dev, &reply);
                let _ = nix::unistd::write(&ready_w, b"!");
            },
            nix::unistd::ForkResult::Parent { child } => {
                // The connection must end with the server: no other copy of
                // its fd may stay open.
                drop(dev);
                drop(ready_w);
                let mut byte = [0u8; 1];
                nix::unistd::read(&ready_r, &mut byte).unwrap();
                StallingFuse {
                    on: on.to_path_buf(),
                    server: child,
                }
            }
        }
    }
}

const FUSE_INIT: u32 = 26;

impl Drop for StallingFuse {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.server, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.server, None);
        let _ = nix::mount::umount2(&self.on, nix::mount::MntFlags::MNT_DETACH);
    }
}
