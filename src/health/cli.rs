//! left4me-health's command line: the per-instance health check and its
//! status. Runs as the service user (left4me-health@.service), never as root;
//! the root helper left4me-overlay has no network code and never calls it.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use super::launch::Launch;
use super::monitor::{self, Monitor, Systemctl};
use super::rollover::Watcher;
use super::settings::Settings;
use super::{RUN_DIR, now_ms, record, report};
use crate::cli::{Generate, GenerateArg};
use crate::error::{Failure, Kind, Result};
use crate::name::InstanceName;
use crate::{a2s, logging};

const LONG_ABOUT: &str = "\
Health check of left4me instances over A2S_INFO, and its status.

`run` is what left4me-health@INSTANCE.service starts with the server, as the
service user: after a grace period it queries 127.0.0.1:$L4D2_PORT every
interval; after N failures in a row it restarts the server through root's
request server (left4me-requests.socket), and
once its restart budget is spent it sends the server's main process SIGSYS,
which the server unit does not restart: it ends `failed`.
With LEFT4ME_UPDATE_RESTART=when-empty (the default) it also restarts the
server, outside that budget, once STATE_DIR/installations/current names
another generation than LEFT4ME_GENERATION (the one the instance was mounted
with) and an answer reports no human players.
With --events, silence after the game logged a map change is a map load for
L4D2_HEALTH_MAP_LOAD_SEC, not a failure, and Steam's \"needs to be restarted\"
notice queues left4me-update.service the same way, at most once per
L4D2_HEALTH_STEAM_UPDATE_SEC. `launch` is the game's start (the server
unit's ExecStart): it makes the console FIFO the game's stdin and relays the
game's output to the journal, writing those events for the check.
`status` shows the last answer (time, latency, map, players) and the last such
rollover. Settings come from the environment (host.env, then the instance's
instance.env): L4D2_HEALTH_GRACE_SEC (120), L4D2_HEALTH_INTERVAL_SEC (10),
L4D2_HEALTH_TIMEOUT_SEC (2), L4D2_HEALTH_FAILURES (4),
L4D2_HEALTH_RESTARTS_MAX (3), L4D2_HEALTH_RESTARTS_WINDOW_SEC (3600),
L4D2_HEALTH_MAP_LOAD_SEC (120), L4D2_HEALTH_STEAM_UPDATE_SEC (3600); from
host.env only: LEFT4ME_UPDATE_RESTART (never, when-empty, now) and
LEFT4ME_STATE_DIR (/var/lib/left4me). LEFT4ME_GENERATION comes from the
environment copy left4me-overlay mount writes.";

#[derive(Debug, Parser)]
#[command(
    name = "left4me-health",
    version,
    about = "Health check of left4me instances over A2S_INFO, and its status",
    long_about = LONG_ABOUT,
    max_term_width = 100,
    after_long_help = crate::error::exit_table_help(&super::EXIT_CODES)
)]
pub(crate) struct Cli {
    /// Directory of the records, one INSTANCE/status.json each.
    #[arg(long, global = true, env = "LEFT4ME_HEALTH_RUN_DIR", default_value = RUN_DIR, value_name = "DIR")]
    run_dir: PathBuf,

    #[command(flatten)]
    generate: GenerateArg,

    #[command(subcommand)]
    command: Option<Command>,
}

impl crate::cli::Program for Cli {
    type Verb = Command;
    fn parts(&self) -> (Option<Generate>, Option<&Command>) {
        (self.generate.generate, self.command.as_ref())
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check INSTANCE until it needs a restart (left4me-health@.service's ExecStart).
    Run(RunArgs),
    /// Start INSTANCE's game with its console and output relay
    /// (left4me-server@.service's ExecStart).
    Launch(LaunchArgs),
    /// Show the last answer and the check's state of one or all instances.
    Status(StatusArgs),
    /// Send one A2S_INFO query and print the answer.
    Query(QueryArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Instance name: 1-32 of [A-Za-z0-9_-], starting with a letter or digit.
    instance: String,
    /// systemctl: reads the server's main PID and the metrics' figures.
    #[arg(long, default_value = "systemctl", value_name = "PATH")]
    systemctl: PathBuf,
    /// The request socket (left4me-requests.socket): restarts or stops the
    /// server and queues updates through root's request server.
    #[arg(long, default_value = crate::requests::SOCKET, value_name = "PATH")]
    requests: PathBuf,
    /// Node exporter's textfile directory: INSTANCE's metrics go to
    /// DIR/left4me_INSTANCE.prom, the host's to DIR/left4me_host.prom
    /// (docs/metrics.md). Nothing is written when DIR does not exist.
    #[arg(long, default_value = super::metrics::DIR, value_name = "DIR")]
    metrics_dir: PathBuf,
    /// The game's events file, written by `launch --events`: map changes
    /// and Steam's update notices. Without it neither is seen.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct LaunchArgs {
    /// Instance name: 1-32 of [A-Za-z0-9_-], starting with a letter or digit.
    instance: String,
    /// The instance's merged/ directory: srcds_run is run from there.
    #[arg(long, value_name = "DIR")]
    merged: PathBuf,
    /// The console FIFO the overlay unit made: the game's stdin.
    #[arg(long, value_name = "FIFO")]
    console: PathBuf,
    /// Where the output relay records map changes and update notices.
    #[arg(long, value_name = "FILE")]
    events: PathBuf,
    /// srcds_run's arguments.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Instance name; every instance with a record when omitted.
    instance: Option<String>,
    /// Print the records as JSON on stdout (schema in docs/health.md).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// UDP port of the server.
    port: u16,
    /// Address of the server.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 2.0)]
    timeout: f64,
    /// Print the answer as JSON.
    #[arg(long)]
    json: bool,
}

/// The whole program; src/bin/left4me-health.rs only calls this.
pub fn main() -> ExitCode {
    crate::cli::start(|cli: &Cli, command| {
        let (verb, instance) = match command {
            Command::Run(a) => ("run", Some(a.instance.as_str())),
            Command::Launch(a) => ("launch", Some(a.instance.as_str())),
            Command::Status(a) => ("status", a.instance.as_deref()),
            Command::Query(_) => ("query", None),
        };
        let to_journal = logging::init_as("left4me-health", verb, instance);
        match dispatch(&cli.run_dir, command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(failure) => {
                let code = failure.kind.exit_code();
                if to_journal {
                    tracing::error!(exit_code = code, kind = failure.kind.label(), "{failure}");
                } else {
                    eprintln!("left4me-health {verb}: error: {failure}");
                }
                ExitCode::from(code)
            }
        }
    })
}

fn dispatch(run_dir: &Path, command: &Command) -> Result<()> {
    match command {
        Command::Run(a) => {
            let instance = InstanceName::parse(&a.instance)?;
            let env = |k: &str| std::env::var(k).ok();
            let settings = Settings::from_lookup(env)?;
            let watcher = Watcher::from_lookup(settings.update_restart, &env)?;
            Monitor {
                instance,
                run_dir: run_dir.to_owned(),
                systemd: Systemctl {
                    path: a.systemctl.clone(),
                    requests: a.requests.clone(),
                },
                metrics_dir: a.metrics_dir.clone(),
                events: a.events.clone(),
            }
            .run(settings, watcher)
        }
        Command::Launch(a) => {
            InstanceName::parse(&a.instance)?;
            let home = std::env::var_os("HOME").map(PathBuf::from).ok_or_else(|| {
                Failure::new(Kind::InvalidConfig, "HOME is not set: the game has no home")
                    .hint("left4me-server@.service sets HOME=STATE_DIR/runtime/INSTANCE/home")
            })?;
            Launch {
                merged: a.merged.clone(),
                console: a.console.clone(),
                events: a.events.clone(),
                home,
                args: a.args.clone(),
            }
            .exec()
            .map(|never| match never {})
        }
        Command::Status(a) => status(run_dir, a),
        Command::Query(a) => query(a),
    }
}

fn status(run_dir: &Path, a: &StatusArgs) -> Result<()> {
    let names = match &a.instance {
        Some(raw) => vec![InstanceName::parse(raw)?],
        None => record_names(run_dir)?,
    };
    let mut records = Vec::new();
    for name in &names {
        let record = monitor::load_for_status(run_dir, name)?;
        let running = monitor::running(&record);
        records.push((record, running));
    }
    let text = if a.json {
        format!(
            "{:#}\n",
            report::json(&run_dir.display().to_string(), &records)
        )
    } else if records.is_empty() {
        format!(
            "no health records in {} (no check has run since boot)\n",
            run_dir.display()
        )
    } else {
        let now = now_ms();
        records
            .iter()
            .map(|(record, running)| report::human(record, *running, now))
            .collect()
    };
    crate::run::write_stdout(&text)
}

/// Instances with a record, sorted; a missing run dir means none yet.
fn record_names(run_dir: &Path) -> Result<Vec<InstanceName>> {
    let entries = match std::fs::read_dir(run_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            let f = Failure::new(
                Kind::Missing,
                format!("cannot list {}: {e}", run_dir.display()),
            );
            return Err(if e.kind() == std::io::ErrorKind::PermissionDenied {
                f.hint(format!(
                    "name the instance (left4me-health status NAME), or run as root: only root lists {} (docs/health.md, \"Status\")",
                    run_dir.display()
                ))
            } else {
                f
            });
        }
    };
    // The directory entry's own type (readdir's d_type), never a stat below
    // it: a directory may be a mount point of the service user's (a FUSE
    // server that never answers); Record::load refuses those.
    let mut names: Vec<InstanceName> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| InstanceName::parse(&e.file_name().to_string_lossy()).ok())
        .filter(|n| matches!(record::Record::load(run_dir, n.as_str()), Ok(Some(_))))
        .collect();
    names.sort();
    Ok(names)
}

fn query(a: &QueryArgs) -> Result<()> {
    if !(a.timeout.is_finite() && a.timeout > 0.0 && a.timeout <= 60.0) {
        return Err(Failure::new(
            Kind::InvalidConfig,
            format!(
                "--timeout {}: must be more than 0 and at most 60 seconds",
                a.timeout
            ),
        ));
    }
    let server = SocketAddr::new(a.host, a.port);
    match a2s::query(server, Duration::from_secs_f64(a.timeout)) {
        Ok(answer) => {
            let i = &answer.info;
            let ms = answer.latency.as_secs_f64() * 1000.0;
            let text = if a.json {
                format!(
                    "{}\n",
                    serde_json::json!({
                        "server": server.to_string(), "latency_ms": ms, "name": i.name, "map": i.map,
                        "folder": i.folder, "game": i.game, "app_id": i.app_id, "players": i.players,
                        "max_players": i.max_players, "bots": i.bots, "version": i.version, "port": i.port,
                        "protocol": i.protocol, "server_type": i.server_type.to_string(),
                        "environment": i.environment.to_string(), "password": i.password, "vac": i.vac,
                    })
                )
            } else {
                format!(
                    "{server}: {:?} on {}, {}/{} players ({} bots), {ms:.1} ms\n",
                    i.name, i.map, i.players, i.max_players, i.bots
                )
            };
            crate::run::write_stdout(&text)
        }
        Err(e) => Err(Failure::new(Kind::NoAnswer, format!("{server}: {e}"))
            .hint("is a server running there, and is the port its game port (+hostport)?")),
    }
}
