//! The process: parse the command line, dispatch to the verbs, print their
//! outcome, and report a failure once with its exit code.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::{AfterArgs, Cli, Command, GenerationCommand, SiblingArg};
use crate::discard;
use crate::error::{Failure, Kind, Result};
use crate::generation;
use crate::last_failure;
use crate::logging;
use crate::name::InstanceName;
use crate::state::{self, ServiceUser, State};
use crate::status;
use crate::verbs::{self, Outcome};

/// The whole of `left4me-overlay`.
pub fn main() -> ExitCode {
    crate::cli::start(|cli: &Cli, command| {
        let (verb, instance, json) = match command {
            Command::Mount(a) => ("mount", Some(a.target.instance.as_str()), a.target.json),
            Command::Umount(a) => ("umount", Some(a.target.instance.as_str()), a.target.json),
            Command::Reset(a) => ("reset", Some(a.instance.as_str()), a.json),
            Command::Status(a) => ("status", a.instance.as_deref(), a.json),
            Command::Generation(g) => {
                let (verb, json) = match g {
                    GenerationCommand::List(a) => (g.verb(), a.json),
                    GenerationCommand::Abort(a) => (g.verb(), a.json.json),
                    GenerationCommand::Prepare(a) => (g.verb(), a.json.json),
                    GenerationCommand::Commit(a) => (g.verb(), a.json.json),
                    GenerationCommand::Import(a) => (g.verb(), a.json.json),
                    GenerationCommand::Gc(a) => (g.verb(), a.json.json),
                    GenerationCommand::Fetch(a) => (g.verb(), a.json.json),
                };
                (verb, None, json)
            }
            Command::ServeRequests(_) => ("serve-requests", None, false),
        };
        let to_journal = logging::init(verb, instance);
        match run(cli, command) {
            Ok(code) => ExitCode::from(code),
            Err(failure) => {
                let code = failure.kind.exit_code();
                // One report per error: a structured journal entry under systemd,
                // a plain line on a terminal.
                if to_journal {
                    tracing::error!(exit_code = code, kind = failure.kind.label(), "{failure}");
                } else {
                    eprintln!("left4me-overlay {verb}: error: {failure}");
                }
                if json {
                    let report = serde_json::json!({
                        "error": {
                            "kind": failure.kind.label(),
                            "exit_code": code,
                            "message": failure.message,
                            "hint": failure.hint,
                        }
                    });
                    println!("{report}");
                }
                ExitCode::from(code)
            }
        }
    })
}

/// Returns the exit code for outcomes already reported on stdout (status
/// with broken instances); failures are left to the caller to report.
fn run(cli: &Cli, command: &Command) -> Result<u8> {
    // The one verb for the update user: it opens nothing of the state dir.
    if let Command::Generation(GenerationCommand::Fetch(a)) = command {
        let f = generation::fetch(&generation::FetchArgs {
            install_dir: &a.install_dir,
            runtime_dir: &a.runtime_dir,
            steamcmd: &a.steamcmd,
            login: a.login,
            credentials_dir: std::env::var_os("CREDENTIALS_DIRECTORY").map(Into::into),
            verify: a.verify.verify,
        })?;
        print_result(&f, a.json.json, || {
            format!(
                "installed ({}, {})\n",
                if f.validated {
                    "validated"
                } else {
                    "not validated"
                },
                f.exit_status
                    .map_or("killed".to_owned(), |c| format!("steamcmd exit {c}"))
            )
        })?;
        return Ok(0);
    }
    if !rustix::process::geteuid().is_root() {
        return Err(
            Failure::new(Kind::NotPermitted, "left4me-overlay must run as root")
                .hint("systemd runs it from its root units; by hand use sudo"),
        );
    }
    if let Command::ServeRequests(a) = command {
        let listener = crate::sys::listen_socket().ok_or_else(|| {
            Failure::new(
                Kind::Missing,
                "serve-requests: systemd passed no listening socket",
            )
            .hint("left4me-requests.socket starts it: systemctl start left4me-requests.socket")
        })?;
        tracing::info!("serving requests on {}", crate::requests::SOCKET);
        crate::requests::serve(&listener, &a.systemctl.systemctl)?;
        return Ok(0);
    }
    let state = State::open(&cli.global.state_dir)?;
    match command {
        Command::Mount(args) => {
            let name = InstanceName::parse(&args.target.instance)?;
            let user = ServiceUser::from_env()?;
            let server = verbs::ForServer {
                console_dir: &args.console.console_dir,
                systemctl: &args.systemctl.systemctl,
                health_run_dir: &args.health_run_dir,
            };
            let done = verbs::mount(&state, &name, &user, &server);
            let done = last_failure::kept(&state, &name, &user, "mount", done)?;
            finish(&done.outcome, done.discard, args.target.json)?;
        }
        Command::Umount(args) => {
            let name = InstanceName::parse(&args.target.instance)?;
            print_outcome(
                &verbs::umount(&state, &name, &args.console.console_dir)?,
                args.target.json,
            )?;
        }
        Command::Reset(args) => {
            let name = InstanceName::parse(&args.instance)?;
            let user = ServiceUser::from_env()?;
            let done = verbs::reset(&state, &name, &user);
            let done = last_failure::kept(&state, &name, &user, "reset", done)?;
            finish(&done.outcome, done.discard, args.json)?;
        }
        Command::Status(args) => {
            let name = args
                .instance
                .as_deref()
                .map(InstanceName::parse)
                .transpose()?;
            let report = status::report(&state, name.as_ref())?;
            let text = if args.json {
                serde_json::to_string_pretty(&report).map_err(|e| {
                    Failure::new(Kind::Unexpected, format!("serialise the status: {e}"))
                        .hint("please report this")
                })? + "\n"
            } else {
                status_text(&report)
            };
            write_stdout(&text)?;
            return Ok(report
                .instances
                .iter()
                .find_map(|i| i.error.as_ref())
                .map_or(0, |e| e.exit_code));
        }
        Command::Generation(g) => {
            let done = run_generation(&state, g);
            // Whatever the verb did or failed at, with its locks let go.
            generation::sweep_in_background(&state);
            done?
        }
        Command::ServeRequests(_) => unreachable!("served above"),
    }
    Ok(0)
}

/// What a mount or reset did, on stdout; then the sweep of what it set
/// aside, in the background.
fn finish(outcome: &Outcome, discard: Option<discard::Background>, json: bool) -> Result<()> {
    print_outcome(outcome, json)?;
    if let Some(background) = discard {
        discard::in_background(background, std::time::Duration::ZERO);
    }
    Ok(())
}

fn run_generation(state: &State, command: &GenerationCommand) -> Result<()> {
    let after = |a: &'_ AfterArgs| generation::After {
        keep: usize::from(a.keep.keep),
        restart: a.restart,
        systemctl: a.systemctl.systemctl.clone(),
    };
    match command {
        GenerationCommand::List(a) => {
            let l = generation::list(state)?;
            print_result(&l, a.json, || {
                let mut text = format!("current: {}\n", l.current.as_deref().unwrap_or("none"));
                for g in &l.generations {
                    text += &format!(
                        "{}{}  build {}{}\n",
                        g.id,
                        if g.current { " (current)" } else { "" },
                        g.build_id.as_deref().unwrap_or("unknown"),
                        if g.used_by.is_empty() {
                            String::new()
                        } else {
                            format!("  used by: {}", g.used_by.join(" "))
                        }
                    );
                }
                if l.next_pending {
                    text +=
                        ".next: an update is running, or a failed one left it (abort removes it)\n";
                }
                if !l.unknown_in_use.is_empty() {
                    text += &format!(
                        "mounted from installation/ or by an older helper: {} (nothing is collected until they restart)\n",
                        l.unknown_in_use.join(" ")
                    );
                }
                text
            })
        }
        GenerationCommand::Prepare(a) => {
            let service = ServiceUser::from_env()?;
            let p = generation::prepare(
                state,
                &a.owner,
                a.copy,
                a.verify.verify,
                &service,
                sibling(&a.sibling).as_ref(),
            )?;
            print_result(&p, a.json.json, || {
                format!(
                    "{} prepared for {} from {}: {} files ({} reflinked, {} hard-linked, {} copied), {} directories, {} symlinks\n",
                    p.path.display(),
                    p.owner,
                    p.from.as_deref().unwrap_or("nothing (a fresh host)"),
                    p.copy.files,
                    p.copy.reflinked,
                    p.copy.hard_linked,
                    p.copy.copied,
                    p.copy.dirs,
                    p.copy.symlinks
                )
            })
        }
        GenerationCommand::Commit(a) => {
            let c = generation::commit(
                state,
                &after(&a.after),
                a.steamcmd_log.as_deref(),
                a.verify.verify,
            )?;
            print_result(&c, a.json.json, || commit_text(&c))
        }
        GenerationCommand::Import(a) => {
            let args = generation::ImportArgs {
                dir: &a.dir,
                after: after(&a.after),
            };
            let c = generation::import(state, &args)?;
            print_result(&c, a.json.json, || commit_text(&c))
        }
        GenerationCommand::Fetch(_) => unreachable!("run() handles fetch before the state dir"),
        GenerationCommand::Abort(a) => {
            let r = generation::abort(state, sibling(&a.sibling).as_ref())?;
            print_result(&r, a.json.json, || format!("{}\n", r.result))
        }
        GenerationCommand::Gc(a) => {
            let r = generation::gc(state, usize::from(a.keep.keep))?;
            print_result(&r, a.json.json, || {
                let mut text =
                    format!("removed: {}; kept: {}\n", words(&r.removed), words(&r.kept));
                if !r.unknown_in_use.is_empty() {
                    text += &format!(
                        "removed nothing: mounted from installation/ or by an older helper: {}\n",
                        r.unknown_in_use.join(" ")
                    );
                }
                text
            })
        }
    }
}

fn sibling(a: &SiblingArg) -> Option<generation::Sibling<'_>> {
    a.sibling.as_deref().map(|unit| generation::Sibling {
        unit,
        systemctl: &a.systemctl.systemctl,
    })
}

fn words(list: &[String]) -> String {
    if list.is_empty() {
        "none".into()
    } else {
        list.join(" ")
    }
}

fn commit_text(c: &generation::CommitOutcome) -> String {
    let build = |b: &Option<String>| b.clone().unwrap_or_else(|| "unknown".into());
    let (differed, first) = c
        .differing
        .as_ref()
        .map_or((0, String::new()), |d| (d.count, d.first.join(" ")));
    if c.result == "verified" {
        return format!(
            "verified: no file differs from generation {} (build {}); nothing switched\n",
            c.generation,
            build(&c.build_id)
        );
    }
    if c.result == "repaired" {
        return format!(
            "verified: {differed} files differed from generation {} (build {}), first: {first}; committed the repaired tree as generation {}; removed: {}; restarting now: {}\n",
            c.previous.as_deref().unwrap_or("none"),
            build(&c.build_id),
            c.generation,
            words(&c.removed),
            words(&c.restarted)
        );
    }
    if c.result == "unchanged" {
        return format!(
            "unchanged: already at build {} (generation {}); nothing switched\n",
            build(&c.build_id),
            c.generation
        );
    }
    format!(
        "committed {} (build {}), previously {} (build {}); removed: {}; restarting now: {}\n",
        c.generation,
        build(&c.build_id),
        c.previous.as_deref().unwrap_or("none"),
        build(&c.previous_build_id),
        words(&c.removed),
        words(&c.restarted)
    )
}

/// Prints `value` as one JSON object, or `text()` for a human.
fn print_result<T: serde::Serialize>(
    value: &T,
    json: bool,
    text: impl FnOnce() -> String,
) -> Result<()> {
    if json {
        let line = serde_json::to_string(value).map_err(|e| {
            Failure::new(Kind::Unexpected, format!("serialise the result: {e}"))
                .hint("please report this")
        })?;
        write_stdout(&(line + "\n"))
    } else {
        write_stdout(&text())
    }
}

/// Writes `text` to stdout. Both programs restore SIGPIPE's default first
/// thing, so a closed pipe (`| head`) ends them quietly, like other Unix
/// tools; any other write error (a full disk behind a redirect) is one.
pub(crate) fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            Failure::new(Kind::Unexpected, format!("write to stdout: {e}"))
                .hint("stdout was closed or is full; the verb itself has completed")
        })
}

fn print_outcome(outcome: &Outcome, json: bool) -> Result<()> {
    let text = if json {
        serde_json::json!(outcome).to_string()
    } else {
        format!(
            "{}: {} ({})",
            outcome.instance,
            outcome.result.as_str(),
            outcome.mount_point.display()
        )
    };
    write_stdout(&(text + "\n"))
}

fn status_text(report: &status::Report) -> String {
    let mut text = String::new();
    for i in &report.instances {
        let state = if i.mounted { "mounted" } else { "not mounted" };
        let upper = i.upper.as_ref().map_or_else(String::new, |u| {
            format!(
                ", upper {:.1} MiB in {} files",
                u.bytes as f64 / 1048576.0,
                u.files
            )
        });
        let stale = if i.stale {
            " (instance.env or the current generation changed since mount: restart to apply)"
        } else {
            ""
        };
        text += &format!("{}: {state}{upper}{stale}\n", i.name);
        let stack: Vec<String> = i
            .layers
            .iter()
            .map(|l| format!("{} {}", l.role.as_str(), l.path.display()))
            .collect();
        text += &format!("  layers, top first: {}\n", stack.join(" > "));
        if let Some(p) = &i.ports {
            let tv = p
                .sourcetv
                .map_or_else(|| "off".to_owned(), |t| t.to_string());
            text += &format!(
                "  ports: game {}, client {}, SourceTV {tv}\n",
                p.game, p.client
            );
        }
        if let Some(g) = &i.generation {
            let note = match i.generation_current {
                Some(true) => " (current)",
                Some(false) => " (not current: moves to the current one at its next start)",
                None => "",
            };
            text += &format!("  generation: {g}{note}\n");
        }
        if i.discard_pending > 0 {
            text += &format!(
                "  {} discarded layer(s) still being deleted\n",
                i.discard_pending
            );
        }
        if let Some(err) = &i.error {
            text += &format!("  error ({}): {}\n", err.kind, err.message);
            if let Some(hint) = &err.hint {
                text += &format!("  hint: {hint}\n");
            }
        }
    }
    text += &state::not_shown_line(report.not_shown, &report.state_dir.join(state::INSTANCES));
    text
}
