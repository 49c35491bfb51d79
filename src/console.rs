//! An instance's console: the FIFO `/run/left4me/NAME.stdin`, srcds's
//! standard input, which the game opens itself (docs/unit.md, "The
//! console"). `mount` makes it and `umount` removes it, so it lives exactly
//! as long as the mount; PID 1 never opens it. Root's directory: nothing on
//! the path is the service user's, and entries in it are never followed.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::Mode;
use rustix::io::Errno;

use crate::error::{Failure, Result};
use crate::fsx;
use crate::name::InstanceName;

/// Where the consoles are: the server unit opens `DIR/NAME.stdin`, and
/// tmpfiles makes `DIR` root:root 0711 at boot.
pub(crate) const DIR: &str = "/run/left4me";

/// The console of `name` in `dir`.
pub(crate) fn path(dir: &Path, name: &InstanceName) -> PathBuf {
    dir.join(file_name(name.as_str()))
}

fn file_name(name: &str) -> String {
    format!("{name}.stdin")
}

/// Makes `name`'s console, root:`gid` 0660. `fresh`: replaces whatever is
/// there (what was written to an earlier FIFO never reaches a later game);
/// otherwise an existing FIFO is kept (a mount of an instance already
/// mounted, whose game may be reading it).
pub(crate) fn make(dir: &Path, name: &InstanceName, gid: u32, fresh: bool) -> Result<()> {
    let fd = ensure_dir(dir)?;
    let file = file_name(name.as_str());
    let shown = dir.join(&file);
    if !fresh {
        if let Ok(Some(e)) = fsx::entry(fd.as_fd(), file.as_str()) {
            if e.kind == fsx::libc_mode::S_IFIFO {
                return Ok(());
            }
        }
    }
    fsx::remove_file(fd.as_fd(), &file, &shown)?;
    fsx::make_fifo(fd.as_fd(), &file, gid, &shown)
}

/// Removes `name`'s console (unlinked, never opened: [`fsx::make_fifo`]
/// says why); nothing to do if there is none. A writer blocked in open(2)
/// on it stays blocked on the unlinked FIFO until it is interrupted: such
/// a writer is the group's own process (root's `left4me console` opens
/// without blocking), and the wait is a killable one.
pub(crate) fn remove(dir: &Path, name: &InstanceName) -> Result<()> {
    let Some(fd) = open_dir(dir)? else {
        return Ok(());
    };
    let file = file_name(name.as_str());
    fsx::remove_file(fd.as_fd(), &file, &dir.join(&file))
}

/// The console directory's mode: the FIFOs are opened by name, and nobody
/// but root may list it (dist/left4me.tmpfiles.in says why).
const DIR_MODE: u32 = 0o711;

/// The console directory, created root:root 0711 when missing (tmpfiles
/// makes it at boot; this covers a host that has not run tmpfiles since).
fn ensure_dir(dir: &Path) -> Result<OwnedFd> {
    if let Some(fd) = open_dir(dir)? {
        return Ok(fd);
    }
    match rustix::fs::mkdir(dir, Mode::from_raw_mode(DIR_MODE)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(Failure::os(dir, "create directory", e)),
    }
    let fd = open_dir(dir)?.ok_or_else(|| Failure::os(dir, "open directory", Errno::NOENT))?;
    // Whatever the umask (the unit's is 0077): the group reaches the FIFOs.
    fsx::chmod_fd(fd.as_fd(), DIR_MODE, dir)?;
    Ok(fd)
}

/// Opens the console directory (root's path, from the command line), if it
/// exists. Refused if anyone but root owns it or may write to it: entries
/// there are made and removed as root.
fn open_dir(dir: &Path) -> Result<Option<OwnedFd>> {
    let fd = match rustix::fs::open(dir, fsx::DIR_FLAGS, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(Failure::os(dir, "open directory", e)),
    };
    crate::state::require_root_only(fd.as_fd(), dir)?;
    Ok(Some(fd))
}
