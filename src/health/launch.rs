//! The start of one game: left4me-server@.service's ExecStart, as the
//! service user inside the game's sandbox. It links Steam's client library,
//! makes the console FIFO the game's stdin, starts the relay of the game's
//! output (super::output) as a child, and execs srcds_run, so the game is
//! still the unit's main process: its exit status is what Restart= judges
//! and its PID is what the health check signals (docs/unit.md, "The game's
//! start").

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Failure, Kind, Result};
use crate::sys;

/// What one start needs, from the unit's command line.
pub(crate) struct Launch {
    /// runtime/NAME/merged: srcds_run is run from here, since it resolves
    /// the engine's files against its own directory (the seed's lesson).
    pub merged: PathBuf,
    /// /run/left4me/NAME.stdin, made by the root overlay unit.
    pub console: PathBuf,
    /// The relay's events file, read by the health check.
    pub events: PathBuf,
    /// The instance's own writable home (the unit's HOME).
    pub home: PathBuf,
    pub args: Vec<OsString>,
}

impl Launch {
    /// Returns only on failure: on success the process is srcds_run.
    pub(crate) fn exec(&self) -> Result<std::convert::Infallible> {
        link_steamclient(&self.home, &self.merged).map_err(|e| {
            unexpected(
                format!(
                    "cannot link {}/.steam/sdk32/steamclient.so",
                    self.home.display()
                ),
                e,
            )
        })?;
        let console = open_console(&self.console)?;
        let (from_game, to_relay) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| unexpected("cannot make the pipe for the game's output".into(), e))?;
        match sys::fork().map_err(|e| unexpected("cannot start the output relay".into(), e))? {
            sys::Forked::Child => {
                drop(console);
                drop(to_relay);
                sys::ignore_stop_signals();
                let code = match super::output::relay(
                    fs::File::from(from_game),
                    io::stdout().lock(),
                    &self.events,
                    super::now_ms,
                ) {
                    Ok(()) => 0,
                    Err(e) => {
                        tracing::error!("the output relay stopped: {e}");
                        1
                    }
                };
                sys::exit_child(code)
            }
            sys::Forked::Parent(_) => {
                drop(from_game);
                let to_relay_too = to_relay
                    .try_clone()
                    .map_err(|e| unexpected("cannot duplicate the output pipe".into(), e))?;
                let srcds_run = self.merged.join("srcds_run");
                let err = Command::new(&srcds_run)
                    .args(&self.args)
                    .stdin(console)
                    .stdout(to_relay)
                    .stderr(to_relay_too)
                    .exec();
                Err(unexpected(
                    format!("cannot run {}", srcds_run.display()),
                    err,
                ))
            }
        }
    }
}

/// Opens the console FIFO read-write: the open never blocks and the game
/// never sees end-of-file when a writer goes (what `0<>` did in the shell
/// this replaced). A missing FIFO fails the start: the sandbox's /run is
/// read-only, so nothing here could have made it.
fn open_console(path: &Path) -> Result<fs::File> {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Failure::new(
                Kind::Missing,
                format!("the console {} does not exist", path.display()),
            )
            .hint(
                "left4me-overlay@INSTANCE.service makes it when it mounts; \
                 start left4me-server@INSTANCE.service, not the game by hand",
            ),
            _ => unexpected(format!("cannot open the console {}", path.display()), e),
        })?;
    let kind = file
        .metadata()
        .map_err(|e| unexpected(format!("cannot stat {}", path.display()), e))?
        .file_type();
    if !kind.is_fifo() {
        return Err(Failure::new(
            Kind::Unexpected,
            format!("the console {} is not a FIFO", path.display()),
        ));
    }
    Ok(file)
}

fn unexpected(what: String, e: impl std::fmt::Display) -> Failure {
    Failure::new(Kind::Unexpected, format!("{what}: {e}"))
}

/// Points ~/.steam/sdk32/steamclient.so, where Steam's API looks for its
/// client library (as LinuxGSM links it for every Steam game), at the
/// mounted generation's: the app's own bin/steamclient.so, else the copy of
/// the steamcmd that built the generation (.left4me-steamclient.so, captured
/// by generation fetch: a stale one from another build breaks servers,
/// docs/updates.md). Removed when the installation has neither. Through
/// merged/, the only view of the installation inside the sandbox; replaced
/// by rename, so the game never sees the link missing.
fn link_steamclient(home: &Path, merged: &Path) -> io::Result<()> {
    let dir = home.join(".steam/sdk32");
    fs::create_dir_all(&dir)?;
    let link = dir.join("steamclient.so");
    let target = ["bin/steamclient.so", ".left4me-steamclient.so"]
        .iter()
        .map(|p| merged.join(p))
        .find(|p| p.is_file());
    match target {
        Some(target) => {
            let tmp = dir.join(".steamclient.so.tmp");
            match fs::remove_file(&tmp) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            std::os::unix::fs::symlink(target, &tmp)?;
            fs::rename(&tmp, &link)
        }
        None => match fs::remove_file(&link) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_library_is_the_apps_own_else_the_captured_one_else_none() {
        let d = tempfile::tempdir().unwrap();
        let (home, merged) = (d.path().join("home"), d.path().join("merged"));
        fs::create_dir_all(merged.join("bin")).unwrap();
        let link = home.join(".steam/sdk32/steamclient.so");

        link_steamclient(&home, &merged).unwrap();
        assert!(fs::symlink_metadata(&link).is_err(), "no library: no link");

        fs::write(merged.join(".left4me-steamclient.so"), b"captured").unwrap();
        link_steamclient(&home, &merged).unwrap();
        assert_eq!(
            fs::read_link(&link).unwrap(),
            merged.join(".left4me-steamclient.so")
        );

        fs::write(merged.join("bin/steamclient.so"), b"app").unwrap();
        link_steamclient(&home, &merged).unwrap();
        assert_eq!(
            fs::read_link(&link).unwrap(),
            merged.join("bin/steamclient.so")
        );

        fs::remove_file(merged.join("bin/steamclient.so")).unwrap();
        fs::remove_file(merged.join(".left4me-steamclient.so")).unwrap();
        link_steamclient(&home, &merged).unwrap();
        assert!(fs::symlink_metadata(&link).is_err(), "stale link left");
    }

    #[test]
    fn the_console_must_be_a_fifo() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("NAME.stdin");
        fs::write(&file, b"").unwrap();
        assert_eq!(open_console(&file).unwrap_err().kind, Kind::Unexpected);
        assert_eq!(
            open_console(&d.path().join("absent")).unwrap_err().kind,
            Kind::Missing
        );
        std::os::unix::fs::symlink(&file, d.path().join("link")).unwrap();
        assert!(open_console(&d.path().join("link")).is_err());
        nix::unistd::mkfifo(
            &d.path().join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        open_console(&d.path().join("fifo")).unwrap();
    }
}
