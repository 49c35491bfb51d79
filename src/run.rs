//! Dispatch from the parsed command line to the verbs, and their output.

use std::io::Write;
use std::os::fd::AsFd;

use crate::cli::{Cli, Command};
use crate::discard;
use crate::error::{Failure, Kind, Result};
use crate::name::InstanceName;
use crate::ops::{self, Outcome};
use crate::state::{ServiceUser, State};
use crate::status;

/// Returns the exit code for outcomes already reported on stdout (status
/// with broken instances); errors are left to the caller to report.
pub fn run(cli: &Cli, command: &Command) -> Result<u8> {
    if !rustix::process::geteuid().is_root() {
        return Err(
            Failure::new(Kind::NotPermitted, "left4me-overlay must run as root")
                .hint("systemd runs it as root through the + prefix; by hand use sudo")
                .into(),
        );
    }
    let state = State::open(&cli.state_dir)?;
    match command {
        Command::Mount(args) => {
            let name = InstanceName::parse(&args.instance)?;
            let user = ServiceUser::from_env()?;
            print_outcome(&ops::mount(&state, &name, &user)?, args.json)?;
        }
        Command::Umount(args) => {
            let name = InstanceName::parse(&args.instance)?;
            print_outcome(&ops::umount(&state, &name)?, args.json)?;
        }
        Command::Reset(args) => {
            let name = InstanceName::parse(&args.instance)?;
            let user = ServiceUser::from_env()?;
            let (outcome, runtime_i, shown) = ops::reset(&state, &name, &user)?;
            print_outcome(&outcome, args.json)?;
            if let Some(runtime_i) = runtime_i {
                delete_in_background(runtime_i.as_fd(), &shown);
            }
        }
        Command::Status(args) => {
            let name = args
                .instance
                .as_deref()
                .map(InstanceName::parse)
                .transpose()?;
            let report = status::report(&state, name.as_ref())?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_status(&report);
            }
            return Ok(report
                .instances
                .iter()
                .find_map(|i| i.error.as_ref())
                .map_or(0, |e| e.exit_code));
        }
    }
    Ok(0)
}

fn print_outcome(outcome: &Outcome, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(outcome)?)?;
    } else {
        writeln!(
            out,
            "{}: {} ({})",
            outcome.instance,
            outcome.result,
            outcome.mount_point.display()
        )?;
    }
    out.flush()?;
    Ok(())
}

fn print_status(report: &status::Report) {
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
        println!("{}: {state}{upper}{stale}", i.name);
        let stack: Vec<String> = i
            .layers
            .iter()
            .map(|l| format!("{} {}", l.role, l.path.display()))
            .collect();
        println!("  layers, top first: {}", stack.join(" > "));
        if i.discard_pending > 0 {
            println!(
                "  {} discarded layer(s) still being deleted",
                i.discard_pending
            );
        }
        if let Some(err) = &i.error {
            println!("  error ({}): {}", err.kind, err.message);
        }
    }
}

/// The reset is complete for callers once the empty layer is in place; the
/// old one is deleted by a detached child so a large upper layer does not
/// delay the next start. If that child dies, umount and reset sweep later.
fn delete_in_background(runtime_i: std::os::fd::BorrowedFd<'_>, shown: &std::path::Path) {
    if discard::pending(runtime_i).is_empty() {
        return;
    }
    // SAFETY: single-threaded; the child only does file deletions and exits.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let _ = nix::unistd::setsid();
            if let Ok(null) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                for target in [0, 1] {
                    // SAFETY: dup2 onto stdin/stdout; stderr stays for logging.
                    unsafe { nix::libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), target) };
                }
            }
            let code = match discard::sweep(runtime_i, shown) {
                Ok(_) => 0,
                Err(f) => {
                    tracing::warn!(error = %f, "discarded layer not fully deleted; the next umount or reset continues");
                    1
                }
            };
            // SAFETY: exit without running the parent's atexit handlers.
            unsafe { nix::libc::_exit(code) }
        }
        Ok(nix::unistd::ForkResult::Parent { .. }) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot fork to delete the discarded layer; the next umount or reset does")
        }
    }
}
