//! What `left4me` asks of systemd: jobs as requests (root runs their
//! systemctl line itself, a member of the group sends them to root's request
//! server, as the web app does), and one `systemctl show` for any number of
//! units.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{Failure, Kind, Result};
use crate::requests::{self, Request};

pub(crate) fn server(name: &str) -> String {
    format!("left4me-server@{name}.service")
}

pub(crate) fn overlay(name: &str) -> String {
    format!("left4me-overlay@{name}.service")
}

pub(crate) fn reset(name: &str) -> String {
    format!("left4me-reset@{name}.service")
}

/// One unit as `systemctl show` reports it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Unit {
    pub(crate) props: HashMap<String, String>,
}

impl Unit {
    pub(crate) fn get(&self, key: &str) -> &str {
        self.props.get(key).map_or("", String::as_str)
    }
}

pub(crate) const SHOW_PROPERTIES: &str =
    "Id,ActiveState,SubState,Result,ExecMainStatus,InvocationID";

/// The properties of `units`, by unit name, from one `systemctl show` call:
/// however many units, one fork (a unit that is not loaded is reported as
/// inactive by systemd itself).
pub(crate) fn show(units: &[String]) -> Result<HashMap<String, Unit>> {
    if units.is_empty() {
        return Ok(HashMap::new());
    }
    let mut args = vec!["show", "--no-pager", "--property", SHOW_PROPERTIES, "--"];
    args.extend(units.iter().map(String::as_str));
    Ok(parse_show(&output(&args)?))
}

/// `systemctl show`'s output: blocks of KEY=VALUE separated by empty lines.
pub(crate) fn parse_show(text: &str) -> HashMap<String, Unit> {
    let mut units = HashMap::new();
    let mut unit = Unit::default();
    for line in text.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            let done = std::mem::take(&mut unit);
            if let Some(id) = done.props.get("Id").cloned() {
                units.insert(id, done);
            }
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            unit.props.insert(k.to_owned(), v.to_owned());
        }
    }
    units
}

/// ActiveState and SubState of every loaded unit matching `pattern`, from
/// one `systemctl list-units` (one ListUnitsByPatterns call to PID 1). Not
/// `systemctl show`: that fetches every property of each unit, one D-Bus
/// call per unit, which cost about 30 ms per instance under emulation in the
/// VM bench. A unit that is not loaded is inactive.
pub(crate) fn list_units(pattern: &str) -> Result<HashMap<String, (String, String)>> {
    let mut args = requests::LIST_UNITS.to_vec();
    args.push(pattern);
    Ok(parse_list_units(&output(&args)?))
}

/// `UNIT LOAD ACTIVE SUB DESCRIPTION...` lines.
pub(crate) fn parse_list_units(text: &str) -> HashMap<String, (String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (unit, _load, active, sub) = (w.next()?, w.next()?, w.next()?, w.next()?);
            Some((unit.to_owned(), (active.to_owned(), sub.to_owned())))
        })
        .collect()
}

pub(crate) fn show_one(unit: &str) -> Result<Unit> {
    Ok(show(&[unit.to_owned()])?.remove(unit).unwrap_or_default())
}

/// The exit status a failed run of a oneshot `unit` ended with: its
/// ExecMainStatus is only ExecStart='s, so the first non-zero one of
/// ExecStartPre=, ExecStart= and ExecStartPost= (an update's prepare and
/// commit run there).
pub(crate) fn failed_status(unit: &str) -> Result<Option<u8>> {
    Ok(parse_failed_status(&output(&[
        "show",
        "--no-pager",
        "--property",
        "ExecStartPre,ExecMainStatus,ExecStartPost",
        "--",
        unit,
    ])?))
}

/// `ExecStartPre={ path=... ; code=exited ; status=12 }` lines (one per
/// command) and `ExecMainStatus=N`, in the order the commands ran.
pub(crate) fn parse_failed_status(text: &str) -> Option<u8> {
    let status = |line: &str| -> Option<u8> {
        let (key, value) = line.split_once('=')?;
        match key {
            "ExecMainStatus" => value.trim().parse().ok(),
            "ExecStartPre" | "ExecStartPost" => value
                .split(" ; ")
                .find_map(|f| {
                    f.trim()
                        .trim_end_matches('}')
                        .trim()
                        .strip_prefix("status=")
                })
                .and_then(|v| v.split('/').next()?.parse().ok()),
            _ => None,
        }
    };
    let order = ["ExecStartPre", "ExecMainStatus", "ExecStartPost"];
    order
        .iter()
        .flat_map(|key| {
            text.lines()
                .filter(move |l| l.split_once('=').is_some_and(|(k, _)| k == *key))
        })
        .filter_map(status)
        .find(|&s| s != 0)
}

fn spawn_failure(what: &str, e: &std::io::Error) -> Failure {
    Failure::new(Kind::Unexpected, format!("cannot run {what}: {e}"))
        .hint("left4me needs systemd's systemctl and journalctl on PATH")
}

/// A job of a left4me unit, waiting for it as the request says: root runs
/// the request's own systemctl line, anyone else asks the request server.
pub(crate) fn job(request: &Request) -> Result<()> {
    if rustix::process::geteuid().is_root() {
        request.run(Path::new("systemctl"), requests::JobMode::Replace)
    } else {
        requests::ask(Path::new(requests::SOCKET), request)
    }
}

/// `systemctl ARGS`, waiting for it; a failure as a Failure (root's own
/// units: the verification).
pub(crate) fn systemctl(args: &[&str]) -> Result<()> {
    output(args).map(drop)
}

/// `systemctl ARGS`'s standard output; a refusal or failure as a Failure
/// naming the command.
fn output(args: &[&str]) -> Result<String> {
    let out = Command::new("systemctl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_failure("systemctl", &e))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(Failure::new(
        Kind::Unexpected,
        format!(
            "systemctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    ))
}

/// Runs `work`, and once it takes longer than a second shows that it is
/// still at it (a counter on a terminal, one line otherwise). Returns its
/// result and how long it took.
pub(crate) fn with_progress<T>(label: &str, work: impl FnOnce() -> T) -> (T, Duration) {
    use std::io::IsTerminal;
    let t0 = Instant::now();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let label_owned = label.to_owned();
    let tty = std::io::stderr().is_terminal();
    let ticker = std::thread::spawn(move || {
        let mut shown = false;
        let mut wait = Duration::from_secs(1);
        while let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(wait) {
            if tty {
                eprint!("\r{label_owned}... {:.0} s", t0.elapsed().as_secs_f64());
            } else if !shown {
                eprintln!("{label_owned}...");
            }
            shown = true;
            wait = Duration::from_millis(500);
        }
        if shown && tty {
            eprint!("\r\x1b[K");
        }
    });
    let result = work();
    let took = t0.elapsed();
    let _ = done_tx.send(());
    let _ = ticker.join();
    (result, took)
}

/// Why a start or reset of `name` that systemctl reported failed did: the
/// helper's own record of its last mount or reset (crate::last_failure:
/// the failed unit itself is collected by PID 1, its exit status with it),
/// when written since `since` (Unix seconds); else systemctl's refusal.
pub(crate) fn start_failure(state_dir: &Path, name: &str, since: u64, refusal: Failure) -> Failure {
    if refusal.kind == Kind::NotPermitted {
        return refusal;
    }
    match crate::last_failure::read(state_dir, name, since) {
        Some(r) => {
            let kind = Kind::from_exit_code(r.exit_code).unwrap_or(Kind::Unexpected);
            // The helper's own words, but read from a file: shown as the
            // table shows the health record's strings.
            let f = Failure::new(
                kind,
                format!(
                    "left4me-overlay {} {name} failed: {}",
                    super::list::printable(&r.verb),
                    super::list::printable(&r.message)
                ),
            );
            match r.hint {
                Some(h) => f.hint(super::list::printable(&h)),
                None => f.hint(format!("left4me logs {name} shows the helper's message")),
            }
        }
        None => refusal.hint(format!("left4me logs {name} shows why")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rstest::rstest]
    #[case::prepare_refused(
        "ExecStartPre={ path=/h ; argv[]=/h generation prepare ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=9 ; code=exited ; status=12 }\nExecMainStatus=0\nExecStartPost={ path=/h ; argv[]=/h ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }\n",
        Some(12)
    )]
    #[case::fetch_failed(
        "ExecStartPre={ path=/h ; pid=9 ; code=exited ; status=0/SUCCESS }\nExecMainStatus=25\nExecStartPost={ path=/h ; pid=0 ; code=(null) ; status=0/0 }\n",
        Some(25)
    )]
    #[case::commit_refused(
        "ExecStartPost={ path=/h ; pid=11 ; code=exited ; status=15/n/a }\nExecMainStatus=0\nExecStartPre={ path=/h ; pid=9 ; code=exited ; status=0/SUCCESS }\n",
        Some(15)
    )]
    #[case::nothing_failed(
        "ExecStartPre={ path=/h ; code=exited ; status=0/SUCCESS }\nExecMainStatus=0\n",
        None
    )]
    #[test_log::test]
    fn the_failed_step_of_a_oneshot_gives_the_status(#[case] text: &str, #[case] want: Option<u8>) {
        assert_eq!(parse_failed_status(text), want);
    }

    #[test_log::test]
    fn list_units_lines_give_active_and_sub_state() {
        let text = "left4me-server@a.service loaded active running left4me server instance a\n\
                    left4me-server@b-1.service loaded failed failed left4me server instance b-1\n";
        let units = parse_list_units(text);
        assert_eq!(
            units["left4me-server@a.service"],
            ("active".into(), "running".into())
        );
        assert_eq!(
            units["left4me-server@b-1.service"],
            ("failed".into(), "failed".into())
        );
    }

    #[test_log::test]
    fn show_blocks_are_split_by_empty_lines_and_keyed_by_id() {
        let text = "Id=left4me-server@a.service\nActiveState=active\nMainPID=12\n\n\
                    Id=left4me-server@b.service\nActiveState=inactive\nMainPID=0\n";
        let units = parse_show(text);
        assert_eq!(units.len(), 2);
        assert_eq!(
            units["left4me-server@a.service"].get("ActiveState"),
            "active"
        );
        assert_eq!(units["left4me-server@a.service"].get("MainPID"), "12");
        assert_eq!(units["left4me-server@b.service"].get("Result"), "");
    }
}
