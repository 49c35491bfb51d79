//! The one definition of the command line: `--help`, the man page and the
//! shell completions are all generated from it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const LONG_ABOUT: &str = "\
Assemble, tear down, reset and inspect one left4me instance's overlay.

Runs as root (systemd's ExecStartPre=/ExecStopPost= of left4me-server@.service).
Everything below the state directory that the service user can write is treated
as hostile: names are validated, no symlink is followed, and the mount lands
only on STATE_DIR/runtime/INSTANCE/merged.";

const AFTER_HELP: &str = "\
Environment:
  LEFT4ME_STATE_DIR   state directory (as --state-dir)
  LEFT4ME_USER        service user that owns the writable layer (default left4me)
  LEFT4ME_GROUP       its group (default left4me)
  LEFT4ME_LOG         log level on stderr: error, warn (default), info, debug, trace

Exit codes:
  0   done (already mounted / not mounted are done too)
  2   bad command line
  10  invalid instance or overlay name
  11  invalid instance.env (the message names file:line)
  12  missing state dir, instance, overlay or installation
  13  unsafe path: a symlink, FIFO, file or hard link where the layout needs
      something else, or a state dir/runtime/ writable by others than root
  14  busy: umount got EBUSY; the message names the holders
  15  conflicting state: reset while mounted, mounted with another stack,
      a foreign mount on merged/
  16  another left4me-overlay held the instance's lock for 30 s
  17  the kernel cannot do it (overlay, idmapped mounts, layer count)
  18  not root
  19  unknown service user or group
  1   anything else (unexpected)";

#[derive(Debug, Parser)]
#[command(
    name = "left4me-overlay",
    version,
    about = "Assemble, tear down, reset and inspect one left4me instance's overlay",
    long_about = LONG_ABOUT,
    max_term_width = 100,
    after_long_help = AFTER_HELP
)]
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
