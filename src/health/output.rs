//! The game's output on its way to the journal, and the two things in it
//! the health check acts on. The server unit's output goes to the system
//! journal, which the service user cannot read (only members of
//! `systemd-journal` can, and they read every unit's log). So the game's
//! stdout and stderr are a pipe to a relay of its own unit, running as the
//! service user inside the game's sandbox (`left4me-health launch`): it
//! passes every byte on to the journal unchanged and notes two kinds of
//! line in the instance's events file, which the check reads:
//!
//! - the start of a map load, when srcds answers no query until the map is
//!   loaded (tens of seconds on slow disks): the check waits for it instead
//!   of counting its silence as a hang (docs/health.md, "A map change is
//!   not a hang");
//! - Steam's "needs to be restarted" notice, when Steam has a newer build
//!   than the server runs: the check queues an update (docs/updates.md,
//!   "When Steam asks").
//!
//! The lines are the engine's own (Source SDK 2013, engine/host.cpp:
//! `Host_Changelevel` prints `---- Host_Changelevel ----` with Warning(),
//! `Host_NewGame` prints `---- Host_NewGame ----`; engine/baseserver.cpp
//! prints the notice with Msg() and Log(), so it also comes with the log's
//! `L MM/DD/YYYY - HH:MM:SS: ` prefix when sv_logecho is on; `Loading map
//! "NAME"` is the log line of a new map). Only whole lines match: a chat
//! line or a player's name is printed after a prefix of its own, so players
//! cannot forge one. The service user, who owns the game, can: the worst it
//! gets is a hang restarted later, or an update it may queue anyway.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::read_small_file;

/// The events file is a few hundred bytes; anything larger was not written
/// by the relay.
const MAX_EVENTS_BYTES: u64 = 4096;

/// Readable by the health check, which runs as a user of its own in the
/// service group and reads it through the group.
const EVENTS_MODE: u32 = 0o640;

/// The longest line that can match, with the log prefix, is about 110
/// bytes: longer lines are passed on, never kept.
const MAX_LINE: usize = 256;

const MAP_CHANGE_LINES: [&str; 2] = ["---- Host_Changelevel ----", "---- Host_NewGame ----"];
const UPDATE_NOTICE: &str =
    "Your server needs to be restarted in order to receive the latest update.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    MapChange,
    UpdateNotice,
}

/// What the relay last saw, as the check reads it. Times are Unix epoch
/// milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Events {
    /// The newest line that started a map load.
    pub map_change_ms: Option<u64>,
    /// The newest "needs to be restarted" notice.
    pub update_notice_ms: Option<u64>,
}

impl Events {
    fn note(&mut self, event: Event, now_ms: u64) {
        match event {
            Event::MapChange => self.map_change_ms = Some(now_ms),
            Event::UpdateNotice => self.update_notice_ms = Some(now_ms),
        }
    }

    /// The events the relay wrote at `path`. The file is the service user's
    /// like the check itself, but read as the check reads every such file:
    /// no symlink, no FIFO, a bounded size. Missing is "nothing seen yet";
    /// anything unreadable is said once per check in the journal by the
    /// caller and read as nothing seen.
    pub(crate) fn read(path: &Path) -> io::Result<Events> {
        let (dir, name) = match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
            (Some(dir), Some(name)) => (dir, name),
            _ => return Ok(Events::default()),
        };
        match read_small_file(dir, name, MAX_EVENTS_BYTES)? {
            None => Ok(Events::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not an events file: {e}", path.display()),
                )
            }),
        }
    }

    /// Through a temporary file and rename(2): the check never reads half
    /// a file. 0640 whatever the game unit's UMask=0077: the check runs as
    /// a user of its own, in the service group.
    fn write(&self, path: &Path) -> io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let mut file = fs::File::create(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(EVENTS_MODE))?;
        file.write_all(serde_json::to_string(self)?.as_bytes())?;
        drop(file);
        fs::rename(&tmp, path)
    }
}

/// The line without the server log's `L 12/05/2026 - 07:00:00: ` prefix,
/// if it has exactly that prefix.
fn without_log_prefix(line: &str) -> &str {
    let b = line.as_bytes();
    let shape = b"L 00/00/0000 - 00:00:00: ";
    let fits = b.len() >= shape.len()
        && shape.iter().zip(b).all(|(s, c)| match s {
            b'0' => c.is_ascii_digit(),
            _ => s == c,
        });
    if fits { &line[shape.len()..] } else { line }
}

/// Which event one whole line of the game's output is, if any.
pub(crate) fn classify(line: &[u8]) -> Option<Event> {
    let line = std::str::from_utf8(line).ok()?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let text = without_log_prefix(line);
    if MAP_CHANGE_LINES.contains(&text)
        || (text != line
            && text
                .strip_prefix("Loading map \"")
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('"')))
    {
        return Some(Event::MapChange);
    }
    (text == UPDATE_NOTICE).then_some(Event::UpdateNotice)
}

/// Copies `input` to `output` until end of input, byte for byte, and
/// records each event in the file at `events` (at most once per second of
/// each kind: a flood of such lines costs one write a second). The game
/// must never block on the relay more than it would on the journal, and
/// never lose its output to it: a failed write to `output` stops the
/// copying but not the draining, and a failed events write is logged once
/// and the copying goes on.
pub(crate) fn relay(
    mut input: impl Read,
    mut output: impl Write,
    events: &Path,
    mut now_ms: impl FnMut() -> u64,
) -> io::Result<()> {
    let mut seen = Events::default();
    let mut written: Option<Events> = None;
    let mut line: Vec<u8> = Vec::with_capacity(MAX_LINE);
    let mut overlong = false;
    let mut copying = true;
    let mut events_failed = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if copying {
            if let Err(e) = output.write_all(&buf[..n]).and_then(|()| output.flush()) {
                tracing::warn!(
                    "the game's output cannot be passed on ({e}); it is dropped from now on"
                );
                copying = false;
            }
        }
        let mut found = None;
        for &b in &buf[..n] {
            if b == b'\n' {
                if let Some(event) = classify(&line).filter(|_| !overlong) {
                    seen.note(event, now_ms());
                    found = Some(event);
                }
                line.clear();
                overlong = false;
            } else if line.len() < MAX_LINE {
                line.push(b);
            } else {
                overlong = true;
            }
        }
        if found.is_none() {
            continue;
        }
        let due = written.as_ref().is_none_or(|w| {
            let changed = |old: Option<u64>, new: Option<u64>| match (old, new) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(o), Some(n)) => n >= o + 1000,
            };
            changed(w.map_change_ms, seen.map_change_ms)
                || changed(w.update_notice_ms, seen.update_notice_ms)
        });
        if due {
            match seen.write(events) {
                Ok(()) => written = Some(seen.clone()),
                Err(e) if !events_failed => {
                    events_failed = true;
                    tracing::warn!(
                        "cannot write {}: {e}; the health check will not see map changes or update notices",
                        events.display()
                    );
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::changelevel("---- Host_Changelevel ----", Some(Event::MapChange))]
    #[case::newgame("---- Host_NewGame ----", Some(Event::MapChange))]
    #[case::crlf("---- Host_Changelevel ----\r", Some(Event::MapChange))]
    #[case::logged_load(
        "L 12/05/2026 - 07:00:00: Loading map \"c2m1_highway\"",
        Some(Event::MapChange)
    )]
    #[case::notice(UPDATE_NOTICE, Some(Event::UpdateNotice))]
    #[case::logged_notice(
        "L 11/28/2021 - 21:31:49: Your server needs to be restarted in order to receive the latest update.",
        Some(Event::UpdateNotice)
    )]
    #[case::chat("Console: ---- Host_Changelevel ----", None)]
    #[case::say(
        "\"alice<2><STEAM_1:0:1><Survivor>\" say \"---- Host_NewGame ----\"",
        None
    )]
    #[case::trailing("---- Host_Changelevel ---- ", None)]
    #[case::unlogged_load("Loading map \"c2m1_highway\"", None)]
    #[case::empty_load("L 12/05/2026 - 07:00:00: Loading map \"\"", None)]
    #[case::bad_prefix("L 12/5/2026 - 07:00:00: Loading map \"c2m1\"", None)]
    #[case::notice_prefixed(
        "x Your server needs to be restarted in order to receive the latest update.",
        None
    )]
    #[case::not_utf8(b"---- Host_Changelevel ----\xff".as_slice(), None)]
    fn whole_engine_lines_are_events_and_nothing_else(
        #[case] line: impl AsRef<[u8]>,
        #[case] expected: Option<Event>,
    ) {
        assert_eq!(classify(line.as_ref()), expected);
    }

    fn relayed(input: &[u8], times: &[u64]) -> (Vec<u8>, Option<Events>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("events.json");
        let mut out = Vec::new();
        let mut clock = times.iter().copied();
        relay(input, &mut out, &events, || clock.next().unwrap()).unwrap();
        let read = events.exists().then(|| Events::read(&events).unwrap());
        (out, read, dir)
    }

    #[test]
    fn output_passes_unchanged_and_events_are_recorded() {
        let input = b"standin: up\n---- Host_Changelevel ----\npartial line without newline";
        let (out, events, _d) = relayed(input, &[5000]);
        assert_eq!(out, input);
        assert_eq!(
            events,
            Some(Events {
                map_change_ms: Some(5000),
                update_notice_ms: None
            })
        );
    }

    #[test]
    fn the_events_file_is_readable_by_the_group_even_over_a_killed_runs_temporary_file() {
        // The game unit's UMask=0077 made a killed relay's temporary file
        // 0600, and File::create keeps an existing file's mode.
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("events.json");
        let tmp = dir.path().join("events.json.tmp");
        fs::write(&tmp, b"").unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).unwrap();
        relay(
            b"---- Host_NewGame ----\n".as_slice(),
            Vec::new(),
            &events,
            || 7,
        )
        .unwrap();
        assert_eq!(
            fs::metadata(&events).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }

    /// The check reaches the file through a home it may search but not
    /// list (0710, its group's x); as nobody (tests/unprivileged/run) a
    /// directory open for reading there fails with EACCES.
    #[test]
    fn the_events_file_is_read_through_a_home_that_cannot_be_listed() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        fs::create_dir(&home).unwrap();
        let events = home.join("events.json");
        relay(
            b"---- Host_NewGame ----\n".as_slice(),
            Vec::new(),
            &events,
            || 9,
        )
        .unwrap();
        fs::set_permissions(&home, fs::Permissions::from_mode(0o100)).unwrap();
        let read = Events::read(&events);
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(read.unwrap().map_change_ms, Some(9));
    }

    #[test]
    fn no_event_no_file() {
        let (out, events, _d) = relayed(b"hello\nworld\n", &[]);
        assert_eq!(out, b"hello\nworld\n");
        assert_eq!(events, None);
    }

    #[test]
    fn an_overlong_line_is_passed_on_and_never_matches() {
        let mut input = vec![b'x'; 10_000];
        input.extend_from_slice(b"---- Host_Changelevel ----\n");
        let (out, events, _d) = relayed(&input, &[]);
        assert_eq!(out, input);
        assert_eq!(events, None);
    }

    #[test]
    fn a_flood_writes_the_file_at_most_once_a_second_per_kind() {
        // Reads come in 64 KiB chunks: one chunk of many notices is one
        // write, with the newest time the chunk noted.
        let line = format!("{UPDATE_NOTICE}\n");
        let input = line.repeat(3);
        let (_, events, _d) = relayed(input.as_bytes(), &[1000, 1500, 1700]);
        assert_eq!(events.unwrap().update_notice_ms, Some(1700));
    }

    #[test]
    fn an_unreadable_events_file_is_an_error_not_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.json");
        fs::write(&path, b"{not json").unwrap();
        assert!(Events::read(&path).is_err());
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        assert!(Events::read(&dir.path().join("link")).is_err());
        assert_eq!(
            Events::read(&dir.path().join("absent")).unwrap(),
            Events::default()
        );
    }

    #[test]
    fn a_broken_output_stops_copying_but_keeps_draining() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("events.json");
        relay(
            b"---- Host_NewGame ----\n".as_slice(),
            Broken,
            &events,
            || 42,
        )
        .unwrap();
        assert_eq!(Events::read(&events).unwrap().map_change_ms, Some(42));
    }
}
