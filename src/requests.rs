//! The service group's requests to systemd. Nobody but root queues a job of
//! a left4me unit: the service user (the web app), the health checks (their
//! own user, in the group) and the admins in the group connect to
//! `left4me-requests.socket` (root:GROUP 0660) and name a verb and an
//! instance; root's `left4me-overlay serve-requests` builds the unit name
//! and the whole systemctl command line itself, in job mode `fail`: a
//! request never reverses a job someone else queued (root's start of
//! `poweroff.target`, say, which every service's `Conflicts=shutdown.target`
//! would otherwise let a request's start cancel); it fails instead.
//!
//! Why not polkit: polkit sees a request's unit and verb, never its job
//! mode, and `--job-mode=flush` on any granted unit cancels every job
//! installed on the host that is not part of the caller's transaction,
//! root's included (systemd's `transaction_apply()`); the irreversible
//! modes made root's stop, isolate and reboot fail as "destructive" while
//! the caller's job lasted. A grant of `manage-units` to an account is all
//! of that; here the account gets none, and a request carries no mode.
//!
//! What a request can cost root, and why it is bounded:
//! - One line of at most [`MAX_LINE`] bytes, all of it within
//!   [`READ_TIMEOUT`]; anything else is answered with an error and the
//!   connection closed.
//! - At most [`JOBS_PER_SECOND`] jobs a second on average (bursts of
//!   [`BURST`]); an `update` at most once per [`UPDATE_SPACING`]; no new
//!   server name past [`MAX_LOADED_SERVERS`] loaded.
//! - At most [`MAX_RUNNING`] requests are served at once (a thread each,
//!   running one systemctl); the next connection is answered `busy` at
//!   once. A request waits as systemctl does (a stop takes the game's
//!   15 s and the unmount), so the cap is what the service user's own
//!   requests share; root never goes through here.
//! - The socket is PID 1's (`ListenStream=`, `Accept=no`): PID 1 holds the
//!   listening socket and hands it over once; it reads no byte of a
//!   request, and only a stop of the socket itself (shutdown, an upgrade)
//!   makes it flush pending connections.
//!
//! The protocol (docs/admin.md, "Requests"): the client writes
//! `VERB [INSTANCE] [no-block]\n` and reads one line back, `ok` or
//! `error CODE MESSAGE`, CODE being the exit-code table's.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Failure, Kind, Result};
use crate::name::InstanceName;

/// Where left4me-requests.socket listens (dist/left4me-requests.socket.in).
pub(crate) const SOCKET: &str = "/run/left4me-requests/requests.sock";
/// A request line, newline included: `disable` plus a 32-byte name and
/// ` no-block` is 50.
pub(crate) const MAX_LINE: usize = 128;
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const MAX_RUNNING: usize = 16;
/// Server units loaded at once, past which a request may start no new name
/// (root may). A server that fails stays loaded as `failed` (what the
/// operator and `left4me list` see of a crash loop), so without a cap a
/// user renaming its instance dir between starts of a game that fails at
/// once would load names until systemd's limit on units, which would then
/// refuse every new unit on the host (fourth review). 256 is the enable
/// cap (left4me-enable@): a host runs fewer instances.
pub(crate) const MAX_LOADED_SERVERS: usize = 256;
/// Jobs a second, on average, that requests may have PID 1 queue, with
/// bursts of [`BURST`]: a job costs PID 1 about 30 times a D-Bus read
/// (a review measured 0.18 s of its CPU per request under emulation), so
/// unlimited requests let the service user slow PID 1 about twice as much
/// as any local account's reads can. A web app restarting ten servers
/// stays within the burst.
pub(crate) const JOBS_PER_SECOND: f64 = 4.0;
pub(crate) const BURST: f64 = 16.0;
/// An `update` request within this long of the update's last start is
/// refused: each run re-links `.next/`, downloads, and keeps root's
/// `generation import` waiting while the update user's processes run.
pub(crate) const UPDATE_SPACING: Duration = Duration::from_secs(15 * 60);
/// An answer line: systemctl's message is cut to this many bytes.
const MAX_MESSAGE: usize = 1000;
/// How long a request in mode `fail` asks again while PID 1 refuses its
/// transaction as destructive. The job in the way is, in practice, one of
/// the instance's own: a blocking start waits for the server's job, not for
/// the health check's start queued behind it, so a stop sent at once was
/// refused (VM s13, after the sixteenth review's sandbox made the check's
/// start longer). `fail` still never reverses it, and each retry takes a
/// token of the requests' bucket like a request (a refused transaction is
/// PID 1's work too). A job of root's that lasts longer is answered with
/// PID 1's refusal, as before; a start queued behind root's stop runs once
/// that stop has ended, as a start sent then would.
const DESTRUCTIVE_RETRY_FOR: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Start,
    Stop,
    Restart,
    Reset,
    Enable,
    Disable,
    Update,
    /// Ends the server as `failed`: SIGSYS to its main process, which the
    /// server unit's RestartPreventExitStatus= does not restart. The health
    /// check's give-up; it runs as a user of its own and cannot signal the
    /// game itself. Not a job: systemd signals at once.
    Fail,
}

impl Verb {
    pub(crate) const ALL: [Verb; 8] = [
        Verb::Start,
        Verb::Stop,
        Verb::Restart,
        Verb::Reset,
        Verb::Enable,
        Verb::Disable,
        Verb::Update,
        Verb::Fail,
    ];

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
            Verb::Reset => "reset",
            Verb::Enable => "enable",
            Verb::Disable => "disable",
            Verb::Update => "update",
            Verb::Fail => "fail",
        }
    }

    fn parse(word: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.as_str() == word)
    }
}

/// The job mode of a request's systemctl line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobMode {
    /// A request never reverses a job someone else queued: it fails.
    Fail,
    /// Root's own command (`left4me` as root): it wins, as root's
    /// systemctl does.
    Replace,
}

impl JobMode {
    const fn arg(self) -> &'static str {
        match self {
            JobMode::Fail => "--job-mode=fail",
            JobMode::Replace => "--job-mode=replace",
        }
    }
}

/// One request: what the caller may choose, and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    verb: Verb,
    instance: Option<InstanceName>,
    /// Answer once the job is queued instead of once it is done (systemctl's
    /// `--no-block`): the health check asks for its own server's restart,
    /// which also stops the check.
    block: bool,
}

impl Request {
    /// A request for an instance; `update` takes none.
    pub(crate) fn new(verb: Verb, instance: Option<&InstanceName>, block: bool) -> Request {
        Request {
            verb,
            instance: instance.cloned(),
            block,
        }
    }

    #[cfg(test)]
    pub(crate) fn verb(&self) -> Verb {
        self.verb
    }

    /// What the client writes, newline included.
    pub(crate) fn line(&self) -> String {
        let mut line = self.verb.as_str().to_owned();
        if let Some(i) = &self.instance {
            line += " ";
            line += i.as_str();
        }
        if !self.block {
            line += " no-block";
        }
        line + "\n"
    }

    /// A line as the server read it (without its newline).
    pub(crate) fn parse(line: &str) -> Result<Request> {
        let bad = |why: String| {
            Failure::new(Kind::Unexpected, format!("not a request: {why}")).hint(format!(
                "write one line: VERB [INSTANCE] [no-block], VERB one of {}",
                Verb::ALL.map(Verb::as_str).join(" ")
            ))
        };
        let mut words = line.split(' ');
        let word = words.next().unwrap_or_default();
        let verb = Verb::parse(word).ok_or_else(|| bad(format!("unknown verb {word:?}")))?;
        let instance = match verb {
            Verb::Update => None,
            _ => {
                let name = words
                    .next()
                    .ok_or_else(|| bad(format!("{} needs an instance name", verb.as_str())))?;
                Some(InstanceName::parse(name)?)
            }
        };
        let block = match words.next() {
            None => true,
            Some("no-block") => false,
            Some(w) => return Err(bad(format!("unexpected {w:?}"))),
        };
        if let Some(w) = words.next() {
            return Err(bad(format!("unexpected {w:?}")));
        }
        Ok(Request {
            verb,
            instance,
            block,
        })
    }

    /// The unit the job is for, built here from the verb and the checked
    /// name.
    pub(crate) fn unit(&self) -> String {
        let name = self.instance.as_ref().map_or("", InstanceName::as_str);
        match self.verb {
            Verb::Start | Verb::Stop | Verb::Restart | Verb::Fail => {
                format!("left4me-server@{name}.service")
            }
            Verb::Reset | Verb::Enable | Verb::Disable => {
                format!("left4me-{}@{name}.service", self.verb.as_str())
            }
            Verb::Update => "left4me-update.service".to_owned(),
        }
    }

    /// systemctl's whole command line: the one definition of what a request
    /// makes root do, for the server here (`JobMode::Fail`) and for
    /// `left4me` run as root (`JobMode::Replace`: root's own command takes
    /// precedence over a job a request queued, as root's systemctl does).
    /// - server verbs: the verb itself;
    /// - reset, enable, disable: a start of their unit (`Type=exec`) with
    ///   `--wait`, so the answer is their outcome;
    /// - update: always `--no-block`: its start job lasts the whole
    ///   download; the caller follows the unit (`systemctl show`, the
    ///   journal);
    /// - fail: `kill` of the main process alone with SIGSYS; in mode `fail`
    ///   systemctl fails when there is no main process to signal.
    pub(crate) fn systemctl_args(&self, mode: JobMode) -> Vec<String> {
        let block = self.block && !matches!(self.verb, Verb::Update | Verb::Fail);
        let mut args = vec!["--no-ask-password".to_owned()];
        if !block {
            args.push("--no-block".into());
        }
        args.push(mode.arg().into());
        match self.verb {
            Verb::Start | Verb::Stop | Verb::Restart => args.push(self.verb.as_str().into()),
            Verb::Fail => {
                args.extend(["kill", "--kill-whom=main", "--signal=SIGSYS"].map(String::from))
            }
            Verb::Reset | Verb::Enable | Verb::Disable | Verb::Update => {
                args.push("start".into());
                if block {
                    args.push("--wait".into());
                }
            }
        }
        args.push("--".into());
        args.push(self.unit());
        args
    }

    /// A start or restart of a server unit that is not loaded, refused
    /// (exit 15) while [`MAX_LOADED_SERVERS`] are: one `list-units` call,
    /// which counts failed units too.
    fn within_loaded_cap(&self, systemctl: &Path) -> Result<()> {
        if !matches!(self.verb, Verb::Start | Verb::Restart) {
            return Ok(());
        }
        let mut args = LIST_UNITS.to_vec();
        args.push("left4me-server@*.service");
        let out = output(systemctl, &args)?;
        if !out.status.success() {
            return Err(Failure::new(
                Kind::Unexpected,
                format!(
                    "cannot count the loaded server units (systemctl list-units: {}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let loaded: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let unit = self.unit();
        if loaded.len() < MAX_LOADED_SERVERS || loaded.contains(&unit.as_str()) {
            return Ok(());
        }
        Err(Failure::new(
            Kind::Conflict,
            format!(
                "{} server units are loaded, the most a request may have; {unit} is not one of them",
                loaded.len()
            ),
        )
        .hint("failed ones stay loaded: as root, `systemctl reset-failed 'left4me-server@*'` unloads them"))
    }

    /// An `update` refused (exit 15) within [`UPDATE_SPACING`] of the last
    /// update request this server ran. Its own memory, not systemd's
    /// `InactiveExitTimestamp`: PID 1 unloads the inactive unit after a run
    /// that ended well, and its timestamp with it, and what the spacing
    /// bounds is the service user's requests; root's and the timer's runs
    /// are not theirs to count. A restart of the server forgets it: one
    /// more update at most.
    fn update_spacing(&self, last: &Mutex<Option<Instant>>) -> Result<()> {
        if self.verb != Verb::Update {
            return Ok(());
        }
        let mut last = last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(ago) = last
            .map(|t| t.elapsed())
            .filter(|ago| *ago < UPDATE_SPACING)
        {
            return Err(Failure::new(
                Kind::Conflict,
                format!(
                    "an update request started left4me-update.service {} s ago; requests may start it once per {} min",
                    ago.as_secs(),
                    UPDATE_SPACING.as_secs() / 60
                ),
            )
            .hint("wait, or as root: systemctl start left4me-update.service"));
        }
        *last = Some(Instant::now());
        Ok(())
    }

    /// Runs the request's systemctl, waiting for it.
    pub(crate) fn run(&self, systemctl: &Path, mode: JobMode) -> Result<()> {
        self.run_paced(systemctl, mode, None)
    }

    /// [`Request::run`] as the request server runs it: in mode `fail`,
    /// again while PID 1 refuses the transaction as destructive, for up to
    /// [`DESTRUCTIVE_RETRY_FOR`], each time with a token of `bucket` (a
    /// refused transaction is work for PID 1 too: unpaced, one request's
    /// token bought eight of them, eighteenth review).
    fn run_paced(
        &self,
        systemctl: &Path,
        mode: JobMode,
        bucket: Option<&Mutex<Bucket>>,
    ) -> Result<()> {
        let args = self.systemctl_args(mode);
        let deadline = Instant::now() + DESTRUCTIVE_RETRY_FOR;
        let mut pause = Duration::from_millis(100);
        let out = loop {
            let out = output(systemctl, &args)?;
            if out.status.success() {
                return Ok(());
            }
            let destructive = String::from_utf8_lossy(&out.stderr).contains(" is destructive");
            let Some(bucket) = bucket.filter(|_| mode == JobMode::Fail && destructive) else {
                break out;
            };
            if Instant::now() + pause > deadline {
                break out;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(1));
            Bucket::wait_for_token(bucket);
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        // `start --wait` of a unit that failed prints nothing: its own
        // message (an enable past the cap, say) is in its journal.
        Err(Failure::new(
            Kind::Unexpected,
            format!(
                "systemctl {} failed ({}): {}",
                args.join(" "),
                out.status,
                stderr.trim()
            ),
        )
        .hint(format!("journalctl -u {} shows why", self.unit())))
    }
}

/// `systemctl list-units` as a script reads it, all states, for a pattern
/// that follows: `UNIT LOAD ACTIVE SUB DESCRIPTION` lines.
pub(crate) const LIST_UNITS: [&str; 7] = [
    "list-units",
    "--all",
    "--plain",
    "--no-legend",
    "--full",
    "--no-pager",
    "--",
];

/// systemctl with `args`, waited for; only failing to run it is an error.
fn output<S: AsRef<std::ffi::OsStr>>(systemctl: &Path, args: &[S]) -> Result<std::process::Output> {
    Command::new(systemctl)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Failure::new(
                Kind::Unexpected,
                format!("cannot run {}: {e}", systemctl.display()),
            )
        })
}

/// What the server keeps across requests.
struct Limits {
    bucket: Mutex<Bucket>,
    /// When this server last ran an `update` request.
    last_update: Mutex<Option<Instant>>,
}

/// A token bucket: [`BURST`] tokens, refilled at [`JOBS_PER_SECOND`]. A
/// request waits for its token (holding its slot) rather than being
/// refused: the rate bounds PID 1's work, the slots bound the waiting.
#[derive(Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub(crate) fn full() -> Bucket {
        Bucket {
            tokens: BURST,
            at: Instant::now(),
        }
    }

    /// Takes a token if there is one, else says how long until there is.
    fn take(&mut self, now: Instant) -> Option<Duration> {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * JOBS_PER_SECOND;
        self.tokens = (self.tokens + refill).min(BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return None;
        }
        Some(Duration::from_secs_f64(
            (1.0 - self.tokens) / JOBS_PER_SECOND,
        ))
    }

    fn wait_for_token(bucket: &Mutex<Bucket>) {
        loop {
            let wait = bucket
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(Instant::now());
            match wait {
                None => return,
                Some(d) => std::thread::sleep(d),
            }
        }
    }
}

/// Serves requests on `listener` until it fails; each accepted connection
/// gets a thread of its own, at most [`MAX_RUNNING`] at a time.
pub(crate) fn serve(listener: &UnixListener, systemctl: &Path) -> Result<()> {
    let running = Arc::new(AtomicUsize::new(0));
    let limits = Arc::new(Limits {
        bucket: Mutex::new(Bucket::full()),
        last_update: Mutex::new(None),
    });
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            // A connection that went away before it was accepted, or the
            // process's fd limit: the listener itself is still good.
            Err(e) => {
                tracing::warn!("accept on the request socket: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if running.fetch_add(1, Ordering::SeqCst) >= MAX_RUNNING {
            running.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
            let busy = Failure::new(
                Kind::Busy,
                format!("{MAX_RUNNING} requests are being served"),
            )
            .hint("try again once one is done");
            let _ = answer(&stream, Err(&busy));
            continue;
        }
        let (slot, limits) = (Arc::clone(&running), Arc::clone(&limits));
        let systemctl = systemctl.to_owned();
        let spawned = std::thread::Builder::new()
            .name("request".into())
            .spawn(move || {
                serve_one(&stream, &systemctl, &limits);
                slot.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            running.fetch_sub(1, Ordering::SeqCst);
            tracing::error!("cannot start a thread for a request: {e}");
        }
    }
}

/// Reads, runs and answers one request, logging who asked for what.
fn serve_one(stream: &UnixStream, systemctl: &Path, limits: &Limits) {
    let peer = rustix::net::sockopt::socket_peercred(stream)
        .map(|c| format!("uid {} pid {}", c.uid.as_raw(), c.pid.as_raw_nonzero()))
        .unwrap_or_else(|e| format!("unknown peer ({e})"));
    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
    let done = read_request(stream).and_then(|r| {
        let line = r.line();
        let line = line.trim_end();
        let instance = r.instance.as_ref().map_or("", InstanceName::as_str);
        tracing::info!(left4me_instance = instance, "request from {peer}: {line}");
        Bucket::wait_for_token(&limits.bucket);
        r.within_loaded_cap(systemctl)?;
        r.update_spacing(&limits.last_update)?;
        r.run_paced(systemctl, JobMode::Fail, Some(&limits.bucket))?;
        tracing::info!(left4me_instance = instance, "done for {peer}: {line}");
        Ok(())
    });
    if let Err(f) = &done {
        tracing::warn!(exit_code = f.kind.exit_code(), "refused for {peer}: {f}");
    }
    let _ = answer(stream, done.as_ref().map(|_| ()));
}

/// One line, all of it within [`READ_TIMEOUT`] of the first read: the
/// timeout is set to what is left before every read, so a client that
/// sends a byte at a time holds its slot no longer than a silent one.
fn read_request(stream: &UnixStream) -> Result<Request> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let late = |e: String| {
        Failure::new(
            Kind::Unexpected,
            format!("no request line within {} s: {e}", READ_TIMEOUT.as_secs()),
        )
    };
    let mut line = Vec::with_capacity(MAX_LINE);
    let mut chunk = [0u8; MAX_LINE];
    while !line.ends_with(b"\n") && line.len() < MAX_LINE {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(late("timed out".into()));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| late(e.to_string()))?;
        let n = (&*stream)
            .read(&mut chunk[..MAX_LINE - line.len()])
            .map_err(|e| late(e.to_string()))?;
        if n == 0 {
            break;
        }
        line.extend_from_slice(&chunk[..n]);
    }
    let Some(end) = line.iter().position(|&b| b == b'\n') else {
        return Err(Failure::new(
            Kind::Unexpected,
            format!("not a request: no line of at most {MAX_LINE} bytes"),
        ));
    };
    if end + 1 != line.len() {
        return Err(Failure::new(
            Kind::Unexpected,
            "not a request: more than one line (one request per connection)",
        ));
    }
    line.truncate(end);
    let line = std::str::from_utf8(&line)
        .map_err(|_| Failure::new(Kind::Unexpected, "not a request: not UTF-8"))?;
    Request::parse(line)
}

fn answer(stream: &UnixStream, done: std::result::Result<(), &Failure>) -> std::io::Result<()> {
    let line = match done {
        Ok(()) => "ok\n".to_owned(),
        Err(f) => format!(
            "error {} {}\n",
            f.kind.exit_code(),
            one_line(&f.to_string())
        ),
    };
    send_all(stream, line.as_bytes())
}

/// write_all with send(MSG_NOSIGNAL): both programs restore SIGPIPE's
/// default (sys::default_sigpipe), and a peer that has closed must cost an
/// EPIPE, not the process: the server's, or a client's whose request was
/// answered `busy` before it was sent. std's `UnixStream` sends that way
/// today, but does not promise to; with write(2) the root test
/// `the_request_server_outlives_clients_that_hang_up` fails (the server
/// dies).
fn send_all(stream: &UnixStream, mut bytes: &[u8]) -> std::io::Result<()> {
    use rustix::net::{SendFlags, send};
    while !bytes.is_empty() {
        match send(stream, bytes, SendFlags::NOSIGNAL) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A message as one printable line of at most [`MAX_MESSAGE`] bytes.
fn one_line(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > MAX_MESSAGE {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out
}

/// Sends `request` to the server at `socket` and waits for its answer: the
/// client half, for `left4me` run by a member of the group and for the
/// health check.
pub(crate) fn ask(socket: &Path, request: &Request) -> Result<()> {
    let what = request.line();
    let what = what.trim_end();
    let stream = UnixStream::connect(socket).map_err(|e| connect_failure(socket, &e))?;
    // A server that is busy answers before it reads: the answer is read
    // even when sending failed, and only its absence is the error.
    let sent = send_all(&stream, request.line().as_bytes());
    let mut reply = String::new();
    let read = BufReader::new(stream.take(4 * MAX_MESSAGE as u64)).read_line(&mut reply);
    if reply.is_empty() {
        let why = match (sent, read) {
            (Err(e), _) => format!("cannot send: {e}"),
            (_, Err(e)) => format!("no answer: {e}"),
            _ => "the server closed the connection without an answer".to_owned(),
        };
        return Err(Failure::new(Kind::Unexpected, format!("{what}: {why}"))
            .hint("journalctl -u left4me-requests.service"));
    }
    parse_answer(reply.trim_end_matches('\n')).map_err(|f| f.prefixed(&format!("{what}: ")))
}

fn parse_answer(reply: &str) -> Result<()> {
    if reply == "ok" {
        return Ok(());
    }
    let unexpected = || {
        Failure::new(
            Kind::Unexpected,
            format!("unexpected answer {reply:?} from left4me-requests"),
        )
        .hint("journalctl -u left4me-requests.service")
    };
    let rest = reply.strip_prefix("error ").ok_or_else(unexpected)?;
    let (code, message) = rest.split_once(' ').ok_or_else(unexpected)?;
    let code: u8 = code.parse().map_err(|_| unexpected())?;
    Err(Failure::new(
        Kind::from_exit_code(code).unwrap_or(Kind::Unexpected),
        message.to_owned(),
    ))
}

fn connect_failure(socket: &Path, e: &std::io::Error) -> Failure {
    let group = std::env::var("LEFT4ME_GROUP").unwrap_or_else(|_| "left4me".into());
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => Failure::new(
            Kind::NotPermitted,
            format!("cannot connect to {}: {e}", socket.display()),
        )
        .hint(format!(
            "run as root, or as a member of the group {group} (the socket is root:{group} 0660)"
        )),
        _ => Failure::new(
            Kind::Unexpected,
            format!("cannot connect to {}: {e}", socket.display()),
        )
        .hint("systemctl status left4me-requests.socket"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn name() -> InstanceName {
        InstanceName::parse("vs1").unwrap()
    }

    #[rstest::rstest]
    #[case::start(
        "start vs1",
        "--no-ask-password --job-mode=fail start -- left4me-server@vs1.service"
    )]
    #[case::stop(
        "stop vs1",
        "--no-ask-password --job-mode=fail stop -- left4me-server@vs1.service"
    )]
    #[case::restart_queued(
        "restart vs1 no-block",
        "--no-ask-password --no-block --job-mode=fail restart -- left4me-server@vs1.service"
    )]
    #[case::reset(
        "reset vs1",
        "--no-ask-password --job-mode=fail start --wait -- left4me-reset@vs1.service"
    )]
    #[case::enable(
        "enable vs1",
        "--no-ask-password --job-mode=fail start --wait -- left4me-enable@vs1.service"
    )]
    #[case::disable_queued(
        "disable vs1 no-block",
        "--no-ask-password --no-block --job-mode=fail start -- left4me-disable@vs1.service"
    )]
    #[case::update(
        "update",
        "--no-ask-password --no-block --job-mode=fail start -- left4me-update.service"
    )]
    #[case::fail(
        "fail vs1 no-block",
        "--no-ask-password --no-block --job-mode=fail kill --kill-whom=main --signal=SIGSYS -- left4me-server@vs1.service"
    )]
    #[test_log::test]
    fn a_request_fixes_the_whole_systemctl_line(#[case] line: &str, #[case] want: &str) {
        let r = Request::parse(line).unwrap();
        assert_eq!(r.systemctl_args(JobMode::Fail).join(" "), want);
        assert_eq!(
            r.systemctl_args(JobMode::Replace).join(" "),
            want.replace("--job-mode=fail", "--job-mode=replace"),
            "root's own line differs only in the mode"
        );
        assert_eq!(
            r.line(),
            format!("{line}\n"),
            "the client writes what the server reads"
        );
    }

    #[rstest::rstest]
    #[case::job_mode("start vs1 --job-mode=flush", Kind::Unexpected)]
    #[case::option_as_name("start --job-mode=flush", Kind::InvalidName)]
    #[case::unit_as_name("start sshd.service", Kind::InvalidName)]
    #[case::path("stop ../x", Kind::InvalidName)]
    #[case::no_name("restart", Kind::Unexpected)]
    #[case::unknown_verb("isolate vs1", Kind::Unexpected)]
    #[case::verify("verify", Kind::Unexpected)]
    #[case::two_spaces("start  vs1", Kind::InvalidName)]
    #[case::trailing("start vs1 no-block x", Kind::Unexpected)]
    #[case::update_with_name("update vs1", Kind::Unexpected)]
    #[case::empty("", Kind::Unexpected)]
    #[test_log::test]
    fn what_is_not_a_request_is_refused(#[case] line: &str, #[case] kind: Kind) {
        assert_eq!(Request::parse(line).unwrap_err().kind, kind, "{line:?}");
    }

    #[test_log::test]
    fn answers_carry_the_exit_code_table() {
        parse_answer("ok").unwrap();
        let f = parse_answer("error 10 invalid instance name \"x y\"").unwrap_err();
        assert_eq!(
            (f.kind, f.message.as_str()),
            (Kind::InvalidName, "invalid instance name \"x y\"")
        );
        assert_eq!(parse_answer("okay").unwrap_err().kind, Kind::Unexpected);
        assert_eq!(
            parse_answer("error x y").unwrap_err().kind,
            Kind::Unexpected
        );
    }

    #[test_log::test]
    fn an_answer_is_one_bounded_line() {
        let long = format!("a\nb\x1b[31m{}", "é".repeat(2000));
        let line = one_line(&long);
        assert!(!line.contains(['\n', '\x1b']));
        assert!(line.len() <= MAX_MESSAGE + '…'.len_utf8());
    }

    /// A stand-in systemctl: `list-units` prints the file `loaded` (lines
    /// as systemctl prints them: UNIT LOAD ACTIVE SUB DESCRIPTION) and
    /// exits with `loaded.exit`; any other call logs its arguments, sleeps
    /// `sleep` seconds, and fails with a message for the unit
    /// left4me-server@bad; for left4me-server@queued PID 1's refusal of a
    /// destructive transaction twice (systemctl's exit 4 and message, as
    /// VM s13 saw them), then success; for left4me-server@root-job that
    /// refusal every time.
    fn fake_systemctl(dir: &Path, sleep: &str) -> PathBuf {
        let path = dir.join("systemctl");
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nif [ \"$1\" = list-units ]; then cat {loaded} 2>/dev/null; exit $(cat {loaded}.exit 2>/dev/null || echo 0); fi\necho \"$*\" >> {log}\nsleep {sleep}\ncase \"$*\" in *server@bad*) echo 'Job failed. See \"journalctl -xe\"' >&2; exit 1;;\n*server@queued*) [ $(grep -c queued {log}) -ge 3 ] && exit 0;;\n*server@root-job*) ;;\n*) exit 0;; esac\necho \"Failed to stop $5: Transaction for $5/stop is destructive (left4me-health@x.service has 'start' job queued, but 'stop' is included in transaction).\" >&2; exit 4\n",
                log = dir.join("log").display(),
                loaded = dir.join("loaded").display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn server(dir: &Path, sleep: &str) -> PathBuf {
        let socket = dir.join("requests.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let systemctl = fake_systemctl(dir, sleep);
        std::thread::spawn(move || serve(&listener, &systemctl));
        socket
    }

    /// One answer line, read as a client must: the server closes without
    /// reading what is left of a refused request, so the kernel reports
    /// ECONNRESET after the line.
    fn raw(socket: &Path, bytes: &[u8]) -> String {
        let s = UnixStream::connect(socket).unwrap();
        // EPIPE when the server answered first (busy, a line too long).
        let _ = send_all(&s, bytes);
        let mut reply = String::new();
        BufReader::new(s).read_line(&mut reply).unwrap();
        reply
    }

    #[test_log::test]
    fn the_server_runs_the_fixed_line_and_answers() {
        let dir = tempfile::tempdir().unwrap();
        let socket = server(dir.path(), "0");
        ask(&socket, &Request::new(Verb::Restart, Some(&name()), false)).unwrap();
        let bad = InstanceName::parse("bad").unwrap();
        let f = ask(&socket, &Request::new(Verb::Start, Some(&bad), true)).unwrap_err();
        assert_eq!(f.kind, Kind::Unexpected);
        assert!(f.message.contains("Job failed"), "{f}");
        // Refused before systemctl runs: nothing of it reaches the log.
        let reply = raw(&socket, b"start vs1 --job-mode=flush\n");
        assert!(reply.starts_with("error 1 not a request"), "{reply}");
        let reply = raw(&socket, b"start sshd.service\n");
        assert!(reply.starts_with("error 10 "), "{reply}");
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert_eq!(
            log,
            "--no-ask-password --no-block --job-mode=fail restart -- left4me-server@vs1.service\n\
             --no-ask-password --job-mode=fail start -- left4me-server@bad.service\n"
        );
    }

    #[test_log::test]
    fn a_transaction_refused_as_destructive_is_asked_again_for_a_while() {
        let dir = tempfile::tempdir().unwrap();
        let socket = server(dir.path(), "0");
        let queued = InstanceName::parse("queued").unwrap();
        ask(&socket, &Request::new(Verb::Stop, Some(&queued), true)).unwrap();
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert_eq!(
            log.matches("stop -- left4me-server@queued.service").count(),
            3,
            "{log}"
        );
        // A job that stays in the way: PID 1's refusal, after the retries.
        let stuck = InstanceName::parse("root-job").unwrap();
        let t0 = Instant::now();
        let f = ask(&socket, &Request::new(Verb::Stop, Some(&stuck), true)).unwrap_err();
        assert!(f.message.contains("is destructive"), "{f}");
        assert!(t0.elapsed() >= Duration::from_secs(3), "{:?}", t0.elapsed());
        assert!(
            t0.elapsed() < DESTRUCTIVE_RETRY_FOR + Duration::from_secs(2),
            "{:?}",
            t0.elapsed()
        );
        // Each retry takes a token: with the bucket in debt for 5.25 s,
        // one retry in the 5 s instead of six.
        let debt = Mutex::new(Bucket {
            tokens: -20.0,
            at: Instant::now(),
        });
        let before = std::fs::read_to_string(dir.path().join("log"))
            .unwrap()
            .lines()
            .count();
        Request::new(Verb::Stop, Some(&stuck), true)
            .run_paced(&dir.path().join("systemctl"), JobMode::Fail, Some(&debt))
            .unwrap_err();
        let after = std::fs::read_to_string(dir.path().join("log"))
            .unwrap()
            .lines()
            .count();
        assert_eq!(after, before + 2);
        // Root's own mode is never refused so, and never asked again.
        let before = std::fs::read_to_string(dir.path().join("log"))
            .unwrap()
            .lines()
            .count();
        let f = Request::new(Verb::Stop, Some(&stuck), true)
            .run(&dir.path().join("systemctl"), JobMode::Replace)
            .unwrap_err();
        assert!(f.message.contains("is destructive"), "{f}");
        let after = std::fs::read_to_string(dir.path().join("log"))
            .unwrap()
            .lines()
            .count();
        assert_eq!(after, before + 1);
    }

    #[test_log::test]
    fn a_line_too_long_or_never_ended_is_refused_without_running_anything() {
        let dir = tempfile::tempdir().unwrap();
        let socket = server(dir.path(), "0");
        let reply = raw(&socket, &[b'a'; 4096]);
        assert!(
            reply.starts_with("error 1 not a request: no line"),
            "{reply}"
        );
        // A client that writes half a line and waits is cut off after the
        // read timeout, and answered.
        let s = UnixStream::connect(&socket).unwrap();
        send_all(&s, b"start vs").unwrap();
        let t0 = Instant::now();
        let mut reply = String::new();
        BufReader::new(s).read_line(&mut reply).unwrap();
        assert!(reply.starts_with("error 1 no request line"), "{reply}");
        assert!(t0.elapsed() < READ_TIMEOUT + Duration::from_secs(3));
        assert!(!dir.path().join("log").exists());
    }

    #[test_log::test]
    fn requests_past_the_cap_are_answered_busy_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let socket = server(dir.path(), "3");
        let held: Vec<_> = (0..MAX_RUNNING)
            .map(|_| {
                let s = UnixStream::connect(&socket).unwrap();
                send_all(&s, b"stop vs1\n").unwrap();
                s
            })
            .collect();
        // Let the server take them all before the next one.
        std::thread::sleep(Duration::from_millis(500));
        let t0 = Instant::now();
        let reply = raw(&socket, b"stop vs1\n");
        assert!(reply.starts_with("error 14 "), "{reply}");
        assert!(t0.elapsed() < Duration::from_secs(2), "busy must not wait");
        for s in held {
            let mut reply = String::new();
            BufReader::new(s).read_line(&mut reply).unwrap();
            assert_eq!(reply, "ok\n");
        }
        // Slots are given back: the next request is served.
        assert_eq!(raw(&socket, b"stop vs1\n"), "ok\n");
    }

    #[test_log::test]
    fn no_new_server_name_past_the_loaded_cap() {
        let dir = tempfile::tempdir().unwrap();
        let socket = server(dir.path(), "0");
        let lines: String = (0..MAX_LOADED_SERVERS)
            .map(|i| format!("left4me-server@n{i}.service loaded failed failed left4me server instance n{i}\n"))
            .collect();
        std::fs::write(dir.path().join("loaded"), lines).unwrap();
        let f = ask(&socket, &Request::new(Verb::Start, Some(&name()), true)).unwrap_err();
        assert_eq!(f.kind, Kind::Conflict, "{f}");
        assert!(f.message.contains("256 server units are loaded"), "{f}");
        let f = ask(&socket, &Request::new(Verb::Restart, Some(&name()), false)).unwrap_err();
        assert_eq!(f.kind, Kind::Conflict, "{f}");
        // A loaded one may still be started, and anything may be stopped.
        let n7 = InstanceName::parse("n7").unwrap();
        ask(&socket, &Request::new(Verb::Restart, Some(&n7), true)).unwrap();
        ask(&socket, &Request::new(Verb::Stop, Some(&name()), true)).unwrap();
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert_eq!(
            log,
            "--no-ask-password --job-mode=fail restart -- left4me-server@n7.service\n\
             --no-ask-password --job-mode=fail stop -- left4me-server@vs1.service\n"
        );
        // One below the cap: a new name starts.
        let lines: String = (0..MAX_LOADED_SERVERS - 1)
            .map(|i| format!("left4me-server@n{i}.service loaded failed failed x\n"))
            .collect();
        std::fs::write(dir.path().join("loaded"), lines).unwrap();
        ask(&socket, &Request::new(Verb::Start, Some(&name()), true)).unwrap();
    }

    #[test_log::test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let mut b = Bucket::full();
        let t0 = b.at;
        for _ in 0..BURST as usize {
            assert_eq!(b.take(t0), None);
        }
        let wait = b.take(t0).expect("empty after the burst");
        assert!(
            (wait.as_secs_f64() - 1.0 / JOBS_PER_SECOND).abs() < 1e-9,
            "{wait:?}"
        );
        // One token per 1/JOBS_PER_SECOND s, never more than the burst.
        assert_eq!(
            b.take(t0 + Duration::from_secs_f64(1.0 / JOBS_PER_SECOND)),
            None
        );
        assert!(
            b.take(t0 + Duration::from_secs_f64(1.0 / JOBS_PER_SECOND))
                .is_some()
        );
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..BURST as usize {
            assert_eq!(b.take(later), None);
        }
        assert!(b.take(later).is_some());
    }

    #[test_log::test]
    fn a_client_sending_a_byte_at_a_time_is_cut_off_at_the_line_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let socket = server(dir.path(), "0");
        let s = UnixStream::connect(&socket).unwrap();
        let t0 = Instant::now();
        let mut reply = String::new();
        let reader = std::thread::spawn({
            let s = s.try_clone().unwrap();
            move || {
                BufReader::new(s).read_line(&mut reply).unwrap();
                reply
            }
        });
        for b in b"stop vs1" {
            if send_all(&s, &[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(900));
        }
        let reply = reader.join().unwrap();
        assert!(
            reply.starts_with("error 1 no request line within 5 s"),
            "{reply}"
        );
        let took = t0.elapsed();
        assert!(
            took >= READ_TIMEOUT && took < READ_TIMEOUT + Duration::from_secs(3),
            "{took:?}"
        );
        assert!(!dir.path().join("log").exists());
        // Two lines in one connection are not two requests.
        let reply = raw(&socket, b"stop vs1\nstop vs2\n");
        assert!(
            reply.starts_with("error 1 not a request: more than one line"),
            "{reply}"
        );
    }

    #[test_log::test]
    fn an_update_is_refused_soon_after_the_last_one_a_request_started() {
        let dir = tempfile::tempdir().unwrap();
        let socket = server(dir.path(), "0");
        let update = Request::new(Verb::Update, None, false);
        ask(&socket, &update).unwrap();
        let f = ask(&socket, &update).unwrap_err();
        assert_eq!(f.kind, Kind::Conflict, "{f}");
        assert!(f.message.contains("once per 15 min"), "{f}");
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        assert_eq!(log.lines().count(), 1, "one run: {log}");
        // Other verbs are not spaced.
        ask(&socket, &Request::new(Verb::Stop, Some(&name()), true)).unwrap();
    }

    #[test_log::test]
    fn a_start_is_refused_when_the_loaded_units_cannot_be_counted() {
        let dir = tempfile::tempdir().unwrap();
        let socket = server(dir.path(), "0");
        std::fs::write(dir.path().join("loaded.exit"), "1").unwrap();
        let f = ask(&socket, &Request::new(Verb::Start, Some(&name()), true)).unwrap_err();
        assert!(
            f.message.contains("cannot count the loaded server units"),
            "{f}"
        );
        ask(&socket, &Request::new(Verb::Stop, Some(&name()), true)).unwrap();
    }
}
