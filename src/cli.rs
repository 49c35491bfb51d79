//! The one definition of the command line: `--help`, the man page and the
//! shell completions are all generated from it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Assemble, tear down, reset and inspect one left4me instance's overlay.
///
/// Runs as root (systemd's ExecStartPre=/ExecStopPost= of left4me-server@.service).
/// Everything below the state directory that the service user can write is
/// treated as hostile: names are validated, no symlink is followed, and the
/// mount lands only on STATE_DIR/runtime/INSTANCE/merged.
#[derive(Debug, Parser)]
#[command(name = "left4me-overlay", version, max_term_width = 100)]
pub struct Cli {
    /// State directory holding installation/, overlays/, instances/ and runtime/.
    #[arg(
        long,
        global = true,
        env = "LEFT4ME_STATE_DIR",
        default_value = "/var/lib/left4me",
        value_name = "DIR"
    )]
    pub state_dir: PathBuf,

    /// Print a generated artifact (man page or shell completion) and exit.
    #[arg(long, value_name = "KIND", hide = true, exclusive = true)]
    pub generate: Option<Generate>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Assemble and mount the instance's overlay on runtime/INSTANCE/merged.
    /// Already mounted with the same layer stack: nothing to do, exit 0.
    Mount(InstanceArgs),
    /// Unmount the instance's overlay. Not mounted: nothing to do, exit 0.
    Umount(InstanceArgs),
    /// Discard the instance's writable layer (refused while mounted).
    /// Instance configuration in instances/INSTANCE/ is kept.
    Reset(InstanceArgs),
    /// Show whether instances are mounted, their layer stack and upper size.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct InstanceArgs {
    /// Instance name: 1-32 of [A-Za-z0-9_-], starting with a letter or digit.
    pub instance: String,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Instance name; all instances when omitted.
    pub instance: Option<String>,
    /// Print the result as JSON on stdout (schema in the README).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Generate {
    Man,
    CompleteBash,
    CompleteZsh,
    CompleteFish,
}
