//! Every `unsafe` of the crate: the process-level calls no safe wrapper
//! covers. The rest of the crate is `#![deny(unsafe_code)]`.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::mount::MountAttrFlags;

/// Restores the default SIGPIPE disposition, so a closed pipe (`| head`)
/// ends the process quietly as it does other Unix tools.
///
/// # Safety
/// Sound because it is called first thing in `main`, before any thread
/// exists and before anything could depend on the disposition Rust's
/// runtime installed (SIG_IGN).
pub(crate) fn default_sigpipe() {
    // SAFETY: see the function's contract; signal() with SIG_DFL installs no
    // handler code.
    unsafe { nix::libc::signal(nix::libc::SIGPIPE, nix::libc::SIG_DFL) };
}

/// Ignores SIGINT, SIGTERM and SIGHUP (systemd's stop signals) and
/// SIGPIPE: for the game's output relay, which must outlive the game's own
/// shutdown messages and end at end of input, not at the stop signal that
/// reaches every process of the unit.
pub(crate) fn ignore_stop_signals() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGPIPE,
    ] {
        // SAFETY: SIG_IGN installs no handler code, so nothing can run in a
        // signal context; the call cannot fail for these signals.
        let _ = unsafe { signal(s, SigHandler::SigIgn) };
    }
}

/// Which side of a [`fork`] this is.
pub(crate) enum Forked {
    /// The child: it must leave through [`exit_child`], never by returning
    /// into the parent's code path.
    Child,
    Parent(nix::unistd::Pid),
}

/// fork(2), refused with `EDEADLK` unless the process is single-threaded.
///
/// # Safety
/// fork is only sound in a single-threaded process: a child of a threaded
/// one may inherit a lock (the allocator's) that no thread will release.
/// The helper never starts threads and this checks it, so the child may use
/// the allocator and std freely.
pub(crate) fn fork() -> Result<Forked, Errno> {
    if threads()? != 1 {
        return Err(Errno::DEADLK);
    }
    // SAFETY: single-threaded, checked just above (see the contract).
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => Ok(Forked::Child),
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Forked::Parent(child)),
        Err(e) => Err(Errno::from_raw_os_error(e as i32)),
    }
}

/// Ends a forked child with `code`, running no destructor and no atexit
/// handler that belongs to the parent's state.
pub(crate) fn exit_child(code: i32) -> ! {
    // SAFETY: _exit(2) only ends the process; it touches no memory of ours.
    unsafe { nix::libc::_exit(code) }
}

/// The number of threads of this process: the entries of /proc/self/task.
fn threads() -> Result<usize, Errno> {
    let task = rustix::fs::open(
        "/proc/self/task",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let mut count = 0;
    for entry in rustix::fs::Dir::new(task)? {
        if !entry?.file_name().to_bytes().starts_with(b".") {
            count += 1;
        }
    }
    Ok(count)
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(2) on a detached mount (`AT_EMPTY_PATH`): sets `set` and,
/// with `MOUNT_ATTR_IDMAP`, the mapping of user namespace `userns`. Neither
/// nix nor rustix wraps this syscall yet.
///
/// # Safety
/// Sound for any arguments: the kernel reads `attr` (its size is passed
/// along) and an empty C string, and writes nothing into our memory.
pub(crate) fn mount_setattr(
    tree: BorrowedFd<'_>,
    set: MountAttrFlags,
    userns: BorrowedFd<'_>,
) -> Result<(), Errno> {
    let attr = MountAttr {
        attr_set: u64::from(set.bits()),
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: see the function's contract.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            nix::libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::INVAL))
    }
}

/// Points stdin, stdout and stderr at /dev/null, so a process that outlives
/// its caller keeps no pipe of the caller's open (`out=$(cmd)` waits for
/// every writer of the pipe to go).
pub(crate) fn detach_stdio() -> Result<(), Errno> {
    let null: OwnedFd = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    rustix::stdio::dup2_stdin(&null)?;
    rustix::stdio::dup2_stdout(&null)?;
    rustix::stdio::dup2_stderr(&null)
}

/// The one listening socket systemd passed to this process (sd_listen_fds(3):
/// `LISTEN_PID` is this process and `LISTEN_FDS=1`, so fd 3 is it), taken
/// once: the variables are removed, so no second call and no child sees them.
pub(crate) fn listen_socket() -> Option<std::os::unix::net::UnixListener> {
    use std::os::fd::FromRawFd;
    let pid = std::env::var("LISTEN_PID").ok()?;
    let fds = std::env::var("LISTEN_FDS").ok()?;
    // SAFETY (for remove_var): called before the process starts a thread.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    if pid != std::process::id().to_string() || fds != "1" {
        return None;
    }
    let fd = 3;
    let stat = rustix::fs::fstat(unsafe { BorrowedFd::borrow_raw(fd) }).ok()?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Socket {
        return None;
    }
    // SAFETY: systemd passed fd 3 to this process (checked above: it is a
    // socket, and the variables named this process), and nothing else in
    // the process owns it; it is taken once, the variables are gone.
    let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    // systemd passes it without FD_CLOEXEC; the systemctl children must
    // not inherit root's listening socket.
    rustix::io::fcntl_setfd(&listener, rustix::io::FdFlags::CLOEXEC).ok()?;
    Some(listener)
}
