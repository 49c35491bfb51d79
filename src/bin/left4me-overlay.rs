use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use left4me::cli::{Cli, Command, Generate};
use left4me::error;

fn main() -> ExitCode {
    // Like other Unix tools: a closed pipe (`| head`) ends the process quietly.
    // SAFETY: resetting a signal disposition before any thread exists.
    unsafe { nix::libc::signal(nix::libc::SIGPIPE, nix::libc::SIG_DFL) };
    let cli = Cli::parse();
    if let Some(kind) = cli.generate {
        return generate(kind);
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
    let to_journal = left4me::logging::init(verb, instance);
    match left4me::run::run(&cli, command) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let code = error::exit_code(&err);
            let failure = error::failure_of(&err);
            // One report per error: a structured journal entry under systemd,
            // a plain line on a terminal.
            if to_journal {
                tracing::error!(
                    exit_code = code,
                    kind = failure.map_or("unexpected", |f| f.kind.label()),
                    "{err:#}"
                );
            } else {
                eprintln!("left4me-overlay {verb}: error: {err:#}");
            }
            if json {
                let report = serde_json::json!({
                    "error": {
                        "kind": failure.map_or("unexpected", |f| f.kind.label()),
                        "exit_code": code,
                        "message": failure.map_or_else(|| format!("{err:#}"), |f| f.message.clone()),
                        "hint": failure.and_then(|f| f.hint.clone()),
                    }
                });
                println!("{report}");
            }
            ExitCode::from(code)
        }
    }
}

fn generate(kind: Generate) -> ExitCode {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout();
    let shell = match kind {
        Generate::Man => {
            return match clap_mangen::Man::new(cmd).section("8").render(&mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            };
        }
        Generate::CompleteBash => clap_complete::Shell::Bash,
        Generate::CompleteZsh => clap_complete::Shell::Zsh,
        Generate::CompleteFish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "left4me-overlay", &mut out);
    ExitCode::SUCCESS
}
