//! `left4me`, the admin command (docs/admin.md): for a host without the web
//! app. It runs as root or as a member of the service group and acts through
//! systemd as the web app does; it adds nothing to the root helper.

mod cli;
mod list;
mod systemd;

use std::ffi::CString;
use std::io::{BufRead, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command as Process, ExitCode, Stdio};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::envfile::{self, Assignment, InstanceConfig, render_assignments};
use crate::error::{Failure, Kind, Result};
use crate::fsx;
use crate::name::InstanceName;
use crate::requests::{Request, Verb};
use crate::state::{INSTANCES, InstancePaths, Own, RUNTIME, ServiceUser, State};
use cli::{Cli, Command};

/// How long start, restart and reset wait for the first A2S answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// The whole of `left4me`.
pub fn main() -> ExitCode {
    crate::cli::start(
        |cli: &Cli, command| match run(&cli.global.state_dir, command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(f) => {
                eprintln!("left4me: error: {f}");
                ExitCode::from(f.kind.exit_code())
            }
        },
    )
}

fn run(state_dir: &Path, command: &Command) -> Result<()> {
    match command {
        Command::List(a) => {
            let listing = list::listing(state_dir)?;
            let text = if a.json {
                serde_json::to_string_pretty(&listing).map_err(|e| {
                    Failure::new(Kind::Unexpected, format!("serialise the list: {e}"))
                })? + "\n"
            } else {
                list::table(&listing)
            };
            out(&text)
        }
        Command::Create(a) => create(state_dir, a),
        Command::Delete(a) => delete(state_dir, &a.name, a.yes),
        Command::Start(a) => {
            let name = InstanceName::parse(&a.name)?;
            start(state_dir, &name, Verb::Start)
        }
        Command::Restart(a) => {
            let name = InstanceName::parse(&a.name)?;
            start(state_dir, &name, Verb::Restart)
        }
        Command::Stop(a) => {
            let name = InstanceName::parse(&a.name)?;
            stop(&name)
        }
        Command::Reset(a) => reset(state_dir, &InstanceName::parse(&a.name)?),
        Command::Console(a) => console(&InstanceName::parse(&a.name)?, &a.command),
        Command::Logs(a) => logs(&InstanceName::parse(&a.name)?, a.follow),
        Command::Update(a) => update(a.verify),
    }
}

fn out(text: &str) -> Result<()> {
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| Failure::new(Kind::Unexpected, format!("write to stdout: {e}")))
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// The instance's game port, for waiting on its answer; None when the
/// caller cannot read instance.env (the wait is then skipped).
fn port_of(state_dir: &Path, name: &str) -> Option<u16> {
    read_instance_env(state_dir, name)
        .ok()
        .map(|c| c.ports.game)
}

/// The state dir, to open what is below it without following a symlink.
fn open_state_dir(state_dir: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        state_dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Failure::os(state_dir, "open", e))
}

/// instances/NAME/instance.env, read as the helper reads it, since an
/// admin may run this as root over a file the service user writes: beneath
/// the state dir without following a symlink or entering a mount, a
/// regular file of one link (never a FIFO that would block, never a device),
/// at most 64 KiB, then the helper's parser.
fn read_instance_env(state_dir: &Path, name: &str) -> Result<InstanceConfig> {
    let name = InstanceName::parse(name)?;
    let rel = InstancePaths::new(&name).env();
    let shown = state_dir.join(&rel);
    let state = open_state_dir(state_dir)?;
    let bytes = fsx::read_small_file(state.as_fd(), &rel, &shown, envfile::MAX_BYTES)?;
    InstanceConfig::parse(&bytes, &shown.display().to_string())
}

/// Waits for the first A2S answer on `port`; prints how long it took.
fn wait_answer(name: &str, port: u16) -> Result<Duration> {
    let (answered, took) = systemd::with_progress(
        &format!("waiting for {name} to answer on port {port}"),
        || {
            let t0 = Instant::now();
            while t0.elapsed() < ANSWER_TIMEOUT {
                if crate::a2s::query_local(port, Duration::from_millis(500)).is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        },
    );
    if !answered {
        return Err(Failure::new(
            Kind::Unexpected,
            format!(
                "{name} started but gave no A2S answer on port {port} within {} s",
                ANSWER_TIMEOUT.as_secs()
            ),
        )
        .hint(format!("left4me logs {name} shows what the game did")));
    }
    Ok(took)
}

/// Now in Unix seconds, less one: a record written in the same second as
/// the request counts as the request's.
fn since_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().saturating_sub(1))
}

fn start(state_dir: &Path, name: &InstanceName, verb: Verb) -> Result<()> {
    let request = Request::new(verb, Some(name), true);
    let (verb_s, unit) = (verb.as_str(), request.unit());
    let since = since_now();
    let (r, took) = systemd::with_progress(&format!("{verb_s} {unit}"), || systemd::job(&request));
    r.map_err(|f| systemd::start_failure(state_dir, name.as_str(), since, f))?;
    println!("{verb_s} {unit}: {}", secs(took));
    if let Some(port) = port_of(state_dir, name.as_str()) {
        let took = wait_answer(name.as_str(), port)?;
        println!("{name} answers on port {port}: {} later", secs(took));
    }
    Ok(())
}

fn stop(name: &InstanceName) -> Result<()> {
    let request = Request::new(Verb::Stop, Some(name), true);
    let unit = request.unit();
    let (r, took) = systemd::with_progress(&format!("stop {unit}"), || systemd::job(&request));
    r?;
    println!("stop {unit}: {}", secs(took));
    Ok(())
}

/// stop, reset, start, first answer: each step waited for and timed.
fn reset(state_dir: &Path, name: &InstanceName) -> Result<()> {
    let t0 = Instant::now();
    stop(name)?;
    let request = Request::new(Verb::Reset, Some(name), true);
    let unit = request.unit();
    let since = since_now();
    let (r, took) = systemd::with_progress(&format!("reset {name}"), || systemd::job(&request));
    r.map_err(|f| systemd::start_failure(state_dir, name.as_str(), since, f))?;
    println!("reset {unit}: {}", secs(took));
    start(state_dir, name, Verb::Start)?;
    println!("reset cycle of {name}: {}", secs(t0.elapsed()));
    Ok(())
}

/// The console FIFO of a running instance, written without blocking: a game
/// that does not read it (stopped: no reader) is an error, not a hang.
fn console(name: &InstanceName, command: &str) -> Result<()> {
    use rustix::fs::{Mode, OFlags};
    use rustix::io::Errno;
    if command.contains(['\n', '\r', '\0']) {
        return Err(Failure::new(
            Kind::InvalidConfig,
            "the console command has a line break or NUL",
        )
        .hint("send one command per call, or separate commands with ';'"));
    }
    let line = format!("{command}\n");
    // One write of at most PIPE_BUF bytes is atomic: no other writer's
    // command can land in the middle of it.
    if line.len() > 4096 {
        return Err(Failure::new(
            Kind::InvalidConfig,
            "the console command is longer than 4095 bytes",
        ));
    }
    let path = crate::console::path(Path::new(crate::console::DIR), name)
        .display()
        .to_string();
    let shown = Path::new(&path);
    let fd = rustix::fs::open(
        shown,
        OFlags::WRONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::NXIO | Errno::NOENT => Failure::new(
            Kind::Missing,
            format!("{name} has no console: it is not running ({path}: {e})"),
        )
        .hint(format!("left4me start {name}")),
        Errno::ACCESS | Errno::PERM => Failure::os(shown, "open", e).hint(format!(
            "the console is for root and the group {}: add yourself to it",
            std::env::var("LEFT4ME_GROUP").unwrap_or_else(|_| "left4me".into())
        )),
        _ => Failure::os(shown, "open", e),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(|e| Failure::os(shown, "stat", e))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Fifo {
        return Err(
            Failure::new(Kind::UnsafePath, format!("{path} is not a FIFO")).hint(format!(
                "restart {} to recreate it",
                systemd::server(name.as_str())
            )),
        );
    }
    match rustix::io::write(&fd, line.as_bytes()) {
        Ok(n) if n == line.len() => {
            println!("sent to {name}: {command}");
            Ok(())
        }
        Ok(_) | Err(Errno::AGAIN) => Err(Failure::new(
            Kind::Busy,
            format!("{path} is full: the game is not reading its console"),
        )
        .hint(format!(
            "left4me logs {name}; a hung game is restarted by its health check"
        ))),
        Err(e) => Err(Failure::os(shown, "write", e)),
    }
}

fn journalctl_units(name: &InstanceName) -> Vec<String> {
    let n = name.as_str();
    [
        systemd::server(n),
        systemd::overlay(n),
        format!("left4me-health@{n}.service"),
        systemd::reset(n),
    ]
    .into_iter()
    .flat_map(|u| ["-u".to_owned(), u])
    .collect()
}

fn logs(name: &InstanceName, follow: bool) -> Result<()> {
    let mut cmd = Process::new("journalctl");
    cmd.args(["--no-hostname", "--no-pager"])
        .args(journalctl_units(name));
    if follow {
        cmd.arg("-f");
    } else {
        cmd.arg("-e").arg("-n").arg("200");
    }
    let e = cmd.exec();
    Err(Failure::new(
        Kind::Unexpected,
        format!("cannot run journalctl: {e}"),
    ))
}

/// Queues the update (the request the web app also makes) or the
/// verification (root's own: no request reaches that unit), follows the
/// unit's journal and waits until that run ends.
fn update(verify: bool) -> Result<()> {
    let unit = if verify {
        "left4me-verify.service"
    } else {
        "left4me-update.service"
    };
    let before = systemd::show_one(unit)?.get("InvocationID").to_owned();
    let mut journal = Process::new("journalctl")
        .args(["--no-hostname", "-f", "-n", "0", "-u", unit])
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| Failure::new(Kind::Unexpected, format!("cannot run journalctl: {e}")))?;
    let t0 = Instant::now();
    // Queued, not waited for: either start job lasts the whole run.
    let queued = if verify {
        systemd::systemctl(&["start", "--no-block", unit])
    } else {
        systemd::job(&Request::new(Verb::Update, None, false))
    };
    let result = queued.and_then(|()| {
        // Once this run was seen, its end is the unit's next inactive or
        // failed state: systemd clears the InvocationID of a oneshot that
        // ended successfully.
        let mut seen = false;
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let u = systemd::show_one(unit)?;
            seen |= u.get("InvocationID") != before && !u.get("InvocationID").is_empty();
            if seen && matches!(u.get("ActiveState"), "inactive" | "failed") {
                break Ok(u);
            }
            if !seen && t0.elapsed() > Duration::from_secs(30) {
                break Err(Failure::new(
                    Kind::Unexpected,
                    format!("{unit} did not start within 30 s"),
                )
                .hint(format!("systemctl status {unit}")));
            }
        }
    });
    // Our own child: the journal follower.
    let _ = journal.kill();
    let _ = journal.wait();
    let u = result?;
    if u.get("Result") == "success" {
        println!("{unit} done in {}", secs(t0.elapsed()));
        return Ok(());
    }
    let code = systemd::failed_status(unit)?.unwrap_or(1);
    Err(Failure::new(
        Kind::from_exit_code(code).unwrap_or(Kind::Unexpected),
        format!(
            "{unit} failed ({}, exit status {code}) after {}",
            u.get("Result"),
            secs(t0.elapsed())
        ),
    )
    .hint(format!("journalctl -u {unit} has the whole run")))
}

/// The instance.env `create` writes, checked by the helper's own parser.
fn instance_env(
    name: &InstanceName,
    port: &str,
    overlays: Option<&str>,
    args: Option<&str>,
    set: &[String],
) -> Result<String> {
    let mut vars = vec![("L4D2_PORT", port)];
    if let Some(o) = overlays {
        vars.push(("L4D2_OVERLAYS", o));
    }
    if let Some(a) = args {
        vars.push(("L4D2_ARGS", a));
    }
    for kv in set {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(
                Failure::new(Kind::InvalidConfig, format!("--set {kv}: no '='"))
                    .hint("write --set L4D2_KEY=value"),
            );
        };
        vars.push((k, v));
    }
    let vars: Vec<Assignment> = vars
        .into_iter()
        .enumerate()
        .map(|(i, (k, v))| Assignment {
            key: k.into(),
            value: v.into(),
            line: i + 2,
        })
        .collect();
    let text = format!(
        "# instance {name}, written by `left4me create`\n{}",
        render_assignments(&vars)
    );
    let origin = format!("instance.env of {name}");
    InstanceConfig::parse(text.as_bytes(), &origin)?;
    Ok(text)
}

fn create(state_dir: &Path, a: &cli::CreateArgs) -> Result<()> {
    let name = InstanceName::parse(&a.name)?;
    let text = instance_env(
        &name,
        &a.port,
        a.overlays.as_deref(),
        a.args.as_deref(),
        &a.set,
    )?;
    let config = InstanceConfig::parse(text.as_bytes(), "instance.env")?;
    for o in &config.overlays {
        let dir = state_dir.join("overlays").join(o.to_string());
        if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            return Err(Failure::new(Kind::Missing, format!("no overlay {o}: {} is not a directory", dir.display()))
                .hint("put the layer's files in that directory first (as root), or leave it out of --overlays"));
        }
    }
    let user = ServiceUser::from_env()?;
    if rustix::process::geteuid().is_root() {
        // From here on this process is the service user: the files are its
        // own, as if the web app had written them.
        become_user(&user)?;
    }
    let dir = state_dir.join(INSTANCES).join(name.as_str());
    match std::fs::symlink_metadata(&dir) {
        Ok(_) => {
            return Err(Failure::new(
                Kind::Conflict,
                format!("instance {name} exists: {}", dir.display()),
            )
            .hint(format!("pick another name, or left4me delete {name} first")));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_failure(&dir, "stat", &e)),
    }
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .mode(0o770)
        .create(&dir)
        .map_err(|e| io_failure(&dir, "mkdir", &e))?;
    let dir_fd = std::fs::File::open(&dir).map_err(|e| io_failure(&dir, "open", &e))?;
    // The service group's: the web app (the service user) and the group's
    // admins both edit what either of them created.
    rustix::fs::fchown(&dir_fd, None, Some(rustix::fs::Gid::from_raw(user.gid)))
        .map_err(|e| Failure::os(&dir, "chown", e))?;
    dir_fd
        .set_permissions(std::fs::Permissions::from_mode(0o2770))
        .map_err(|e| io_failure(&dir, "chmod", &e))?;
    let env = dir.join("instance.env");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o660)
        .custom_flags(libc_nofollow())
        .open(&env)
        .map_err(|e| io_failure(&env, "create", &e))?;
    // Not left to the umask: the group edits it too.
    f.set_permissions(std::fs::Permissions::from_mode(0o660))
        .and_then(|()| f.write_all(text.as_bytes()))
        .and_then(|()| f.sync_all())
        .map_err(|e| io_failure(&env, "write", &e))?;
    println!("created {}", env.display());
    print!("{text}");
    println!("start it with: left4me start {name}");
    Ok(())
}

fn libc_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

fn io_failure(path: &Path, what: &str, e: &std::io::Error) -> Failure {
    let errno = e
        .raw_os_error()
        .map_or(rustix::io::Errno::IO, rustix::io::Errno::from_raw_os_error);
    Failure::os(path, what, errno)
}

fn become_user(user: &ServiceUser) -> Result<()> {
    use rustix::process::{Gid, Uid};
    let gid = Gid::from_raw(user.gid);
    let uid = Uid::from_raw(user.uid);
    nix::unistd::setgroups(&[nix::unistd::Gid::from_raw(user.gid)]).map_err(|e| {
        Failure::syscall("setgroups", rustix::io::Errno::from_raw_os_error(e as i32))
    })?;
    rustix::thread::set_thread_res_gid(gid, gid, gid)
        .map_err(|e| Failure::syscall("setresgid", e))?;
    rustix::thread::set_thread_res_uid(uid, uid, uid)
        .map_err(|e| Failure::syscall("setresuid", e))?;
    Ok(())
}

fn delete(state_dir: &Path, raw: &str, yes: bool) -> Result<()> {
    let name = InstanceName::parse(raw)?;
    let unit = systemd::server(name.as_str());
    let u = systemd::show_one(&unit)?;
    if !matches!(u.get("ActiveState"), "inactive" | "failed" | "") {
        return Err(Failure::new(
            Kind::Conflict,
            format!(
                "{name} is {} ({unit}); delete takes stopped instances only",
                u.get("ActiveState")
            ),
        )
        .hint(format!("left4me stop {name} first")));
    }
    let paths = InstancePaths::new(&name);
    let dir = state_dir.join(paths.dir());
    let runtime = state_dir.join(paths.runtime());
    let root = rustix::process::geteuid().is_root();
    if std::fs::symlink_metadata(&dir).is_err() && std::fs::symlink_metadata(&runtime).is_err() {
        return Err(Failure::new(
            Kind::Missing,
            format!("no instance {name} in {}", state_dir.display()),
        )
        .hint("left4me list shows the instances"));
    }
    if !yes {
        eprint!(
            "Delete instance {name}: {} and {} (what the game wrote)? [y/N] ",
            dir.display(),
            runtime.display()
        );
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(Failure::new(Kind::Conflict, format!("{name} not deleted"))
                .hint("answer y, or pass --yes"));
        }
    }
    // Boot start off first. On NixOS the proxy fails (boot starts are
    // declared there, /etc/systemd/system is read-only): say so, go on.
    if let Err(f) = systemd::job(&Request::new(Verb::Disable, Some(&name), true)) {
        if f.kind == Kind::NotPermitted {
            return Err(f);
        }
        eprintln!(
            "left4me: warning: boot start of {name} not disabled: {}",
            f.message
        );
    }
    if root {
        let state = State::open(state_dir)?;
        let paths = InstancePaths::new(&name);
        let helper_dir = state_dir.join(RUNTIME).join(".left4me");
        crate::verbs::while_unmounted(&state, &name, || {
            remove_tree(&state_dir.join(RUNTIME), &name)?;
            for own in Own::ALL {
                let path = helper_dir.join(paths.own(own));
                // NAME.stage is a directory, the rest files.
                let _ = std::fs::remove_file(&path).or_else(|_| std::fs::remove_dir(&path));
            }
            Ok(())
        })?;
    } else {
        // runtime/NAME is root's: discard what the game wrote through the
        // reset unit, and leave the empty layer for root to remove.
        let (r, _) = systemd::with_progress(&format!("reset {name}"), || {
            systemd::job(&Request::new(Verb::Reset, Some(&name), true))
        });
        r?;
    }
    remove_tree(&state_dir.join(INSTANCES), &name)?;
    println!("deleted {name}");
    if !root && std::fs::symlink_metadata(&runtime).is_ok() {
        println!(
            "{} (empty, root's) is left: `sudo left4me delete {name} --yes` removes it",
            runtime.display()
        );
    }
    Ok(())
}

/// How much longer the command waits for the walk's child than the walk's
/// own bound, which is checked between its steps: a step that waits in the
/// kernel on a lock another process holds (a getdents of the service
/// user's, its buffer faulting on a FUSE file that is never served, keeps
/// a directory's lock for as long as the user likes) is not cut by it.
const DELETE_GRACE: Duration = Duration::from_secs(30);

/// Deletes `parent/name` with the walk that deletes discarded layers: one
/// directory open at a time whatever the depth, no symlink followed, no
/// mount point entered (what the game or the service user left in it is
/// theirs to shape; docs/unit.md, the nineteenth review). The walk runs in
/// a child: if it has not ended [`DELETE_GRACE`] after its bound, the
/// command says so and ends, and the child goes on alone (a process in the
/// kernel's uninterruptible wait outlives even SIGKILL; the command would
/// not).
fn remove_tree(parent: &Path, name: &InstanceName) -> Result<()> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(parent, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(Failure::os(parent, "open", e)),
    };
    let name_c = CString::new(name.as_str()).expect("an instance name holds no NUL");
    let shown = parent.join(name.as_str());
    let hint = format!("stop whatever still writes into it, then run left4me delete {name} again");
    let walk = || {
        crate::discard::delete(
            fd.as_fd(),
            &name_c,
            &shown,
            &hint,
            Some(crate::discard::WALK_WITHIN),
        )
    };
    let (report, report_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| Failure::syscall("pipe", e))?;
    match crate::sys::fork() {
        Ok(crate::sys::Forked::Child) => {
            drop(report);
            let _ = rustix::process::setsid();
            let _ = crate::sys::detach_stdio();
            let line = match walk() {
                Ok(()) => String::new(),
                Err(f) => format!(
                    "{}\n{}\n{}",
                    f.kind.exit_code(),
                    f.message,
                    f.hint.unwrap_or_default()
                ),
            };
            let _ = rustix::io::write(&report_w, line.as_bytes());
            crate::sys::exit_child(0)
        }
        Ok(crate::sys::Forked::Parent(child)) => {
            drop(report_w);
            await_walk(&report, child, &shown, name)
        }
        // A thread of this process (a progress line) still runs: the walk
        // runs here, bounded between its steps only.
        Err(_) => walk(),
    }
}

/// The walk's outcome from its child's report: nothing (deleted) or its
/// failure's exit code, message and hint, one per line.
fn await_walk(
    report: &OwnedFd,
    child: nix::unistd::Pid,
    shown: &Path,
    name: &InstanceName,
) -> Result<()> {
    let deadline = std::time::Instant::now() + crate::discard::WALK_WITHIN + DELETE_GRACE;
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(Failure::new(
                Kind::Busy,
                format!(
                    "{}: not deleted within {} s: the deletion waits in the kernel, most likely on a directory of the tree that another process holds locked; it goes on alone (pid {child}) and ends once that lets go",
                    shown.display(),
                    (crate::discard::WALK_WITHIN + DELETE_GRACE).as_secs()
                ),
            )
            .hint(format!(
                "cat /proc/{child}/stack shows where it waits; stop the service user's processes (and any FUSE server of theirs), then run left4me delete {name} again"
            )));
        }
        let mut poll = [rustix::event::PollFd::new(
            report,
            rustix::event::PollFlags::IN,
        )];
        let timeout = rustix::event::Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        match rustix::event::poll(&mut poll, Some(&timeout)) {
            Ok(0) | Err(Errno::INTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(Failure::syscall("poll", e)),
        }
        let mut buf = [0u8; 4096];
        match rustix::io::read(report, &mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(Errno::INTR) => {}
            Err(e) => return Err(Failure::syscall("read the deletion's report", e)),
        }
    }
    let _ = nix::sys::wait::waitpid(child, None);
    let text = String::from_utf8_lossy(&got);
    if text.is_empty() {
        return Ok(());
    }
    let mut lines = text.splitn(3, '\n');
    let kind = lines
        .next()
        .and_then(|c| c.parse().ok())
        .and_then(Kind::from_exit_code)
        .unwrap_or(Kind::Unexpected);
    let mut f = Failure::new(kind, lines.next().unwrap_or_default());
    if let Some(hint) = lines.next().filter(|h| !h.is_empty()) {
        f = f.hint(hint);
    }
    Err(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> InstanceName {
        InstanceName::parse("vs1").unwrap()
    }

    #[test_log::test]
    fn create_writes_what_the_helper_reads_back() {
        let text = instance_env(
            &name(),
            "27015",
            Some("base sm"),
            Some("+map c1m1_hotel \"x\""),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            text.kind,
            Kind::InvalidConfig,
            "quotes in L4D2_ARGS are refused: {text}"
        );
        let text = instance_env(
            &name(),
            "27015",
            Some("base sm"),
            Some("+map c1m1_hotel $x"),
            &["L4D2_HEALTH_GRACE_SEC=3".into()],
        )
        .unwrap();
        let c = InstanceConfig::parse(text.as_bytes(), "t").unwrap();
        assert_eq!(c.ports.game, 27015);
        assert_eq!(c.overlays.len(), 2);
        let args = c.vars.iter().find(|a| a.key == "L4D2_ARGS").unwrap();
        assert_eq!(args.value, "+map c1m1_hotel $x");
        assert!(
            c.vars
                .iter()
                .any(|a| a.key == "L4D2_HEALTH_GRACE_SEC" && a.value == "3")
        );
    }

    #[test_log::test]
    fn create_refuses_what_the_helper_refuses() {
        for (port, overlays) in [
            ("0", None),
            ("http", None),
            ("27015", Some("../etc")),
            ("27015", Some("a a")),
        ] {
            let f = instance_env(&name(), port, overlays, None, &[]).unwrap_err();
            assert_eq!(f.kind, Kind::InvalidConfig, "{port} {overlays:?}: {f}");
        }
        for set in ["PATH=/tmp", "L4D2_X", "LD_PRELOAD=/x.so"] {
            let f = instance_env(&name(), "27015", None, None, &[set.into()]).unwrap_err();
            assert_eq!(f.kind, Kind::InvalidConfig, "{set}: {f}");
        }
    }

    /// An admin may run the command as root over instance.env, which the
    /// service user writes: a FIFO there must not block it, a link must not
    /// be followed (to /dev/zero, or a watchdog device), and only a plain
    /// file is parsed.
    #[test_log::test]
    fn instance_env_is_read_as_the_helper_reads_it() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("instances/vs1");
        std::fs::create_dir_all(&dir).unwrap();
        let env = dir.join("instance.env");
        std::fs::write(&env, "L4D2_PORT=27015\n").unwrap();
        assert_eq!(
            read_instance_env(state.path(), "vs1").unwrap().ports.game,
            27015
        );
        std::fs::remove_file(&env).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &env).unwrap();
        let f = read_instance_env(state.path(), "vs1").unwrap_err();
        assert_eq!(f.kind, Kind::UnsafePath, "{f:?}");
        std::fs::remove_file(&env).unwrap();
        nix::unistd::mkfifo(&env, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let f = read_instance_env(state.path(), "vs1").unwrap_err();
        assert!(f.message.contains("not a regular file"), "{f:?}");
        assert_eq!(
            read_instance_env(state.path(), "../x").unwrap_err().kind,
            Kind::InvalidName
        );
    }
}
