//! The process: parse the command line, dispatch to the verbs, print their
//! outcome, and report a failure once with its exit code.

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command};
use crate::discard;
use crate::error::{Failure, Kind, Result};
use crate::logging;
use crate::name::InstanceName;
use crate::state::{ServiceUser, State};
use crate::status;
use crate::sys;
use crate::verbs::{self, Outcome};

/// The whole of `left4me-overlay`.
pub fn main() -> ExitCode {
    sys::default_sigpipe();
    let cli = Cli::parse();
    if let Some(kind) = cli.generate {
        return crate::cli::generate(Cli::command(), kind);
    }
    let Some(command) = &cli.command else {
        let _ = Cli::command().print_help();
        return ExitCode::from(2);
    };
    let (verb, instance, json) = match command {
        Command::Mount(a) => ("mount", Some(a.instance.as_str()), a.json),
        Command::Umount(a) => ("umount", Some(a.instance.as_str()), a.json),
        Command::Reset(a) => ("reset", Some(a.instance.as_str()), a.json),
        Command::Status(a) => ("status", a.instance.as_deref(), a.json),
    };
    let to_journal = logging::init(verb, instance);
    match run(&cli, command) {
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
}

/// Returns the exit code for outcomes already reported on stdout (status
/// with broken instances); failures are left to the caller to report.
fn run(cli: &Cli, command: &Command) -> Result<u8> {
    if !rustix::process::geteuid().is_root() {
        return Err(
            Failure::new(Kind::NotPermitted, "left4me-overlay must run as root")
                .hint("systemd runs it from its root units; by hand use sudo"),
        );
    }
    let state = State::open(&cli.state_dir)?;
    match command {
        Command::Mount(args) => {
            let name = InstanceName::parse(&args.instance)?;
            let user = ServiceUser::from_env()?;
            print_outcome(&verbs::mount(&state, &name, &user)?, args.json)?;
        }
        Command::Umount(args) => {
            let name = InstanceName::parse(&args.instance)?;
            print_outcome(&verbs::umount(&state, &name)?, args.json)?;
        }
        Command::Reset(args) => {
            let name = InstanceName::parse(&args.instance)?;
            let user = ServiceUser::from_env()?;
            let done = verbs::reset(&state, &name, &user)?;
            print_outcome(&done.outcome, args.json)?;
            if let Some((runtime_i, shown)) = done.discard {
                discard::in_background(runtime_i, &shown);
            }
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
    }
    Ok(0)
}

fn write_stdout(text: &str) -> Result<()> {
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
            " (instance.env changed since mount: restart to apply)"
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
    text
}
