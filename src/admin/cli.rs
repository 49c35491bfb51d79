//! The one definition of `left4me`'s command line: `--help`, the man page and
//! the shell completions are generated from it.

use clap::{Args, Parser, Subcommand};

use crate::cli::GlobalArgs;

const LONG_ABOUT: &str = "\
Run the left4me instances of this host from a shell: list them with what they
are doing, create and delete them, start, stop, restart and reset them, send a
command to a game's console, read their logs, and update or verify the game.

For a host without the web app. Run it as root, or as a member of the service
group: a member's starts, stops, resets, enables and updates are requests to
root's request server (left4me-requests.socket, root:GROUP 0660), as the web
app's are, and root's are the same systemctl lines. Nothing here runs as root
that the units do not already run; `create` writes instance.env as the service
user (or, for a member of the group, as itself with the group's access), and the
root helper checks it again at every mount.";

const ENVIRONMENT: &str = "\
Environment:
  LEFT4ME_STATE_DIR   state directory (as --state-dir)
  LEFT4ME_USER        service user (default left4me); create writes as it when run as root
  LEFT4ME_GROUP       its group (default left4me)
";

#[derive(Debug, Parser)]
#[command(
    name = "left4me",
    version,
    about = "List, create, start, stop, reset and update the left4me game servers of this host",
    long_about = LONG_ABOUT,
    max_term_width = 100,
    after_long_help = crate::cli::after_help(ENVIRONMENT)
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

impl crate::cli::Program for Cli {
    type Verb = Command;
    fn parts(&self) -> (Option<crate::cli::Generate>, Option<&Command>) {
        (self.global.generate.generate, self.command.as_ref())
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// One line per instance: state (running: answering the health check;
    /// starting; failed; stopped), port, installation generation, players and
    /// map (the health check's last answer), restarts by the health check,
    /// size of the writable layer, uptime. One systemctl call for all.
    List(ListArgs),
    /// Write instances/NAME/instance.env, refused for what the helper would
    /// refuse at mount (the same rules).
    Create(CreateArgs),
    /// Delete a stopped instance: its boot start, instances/NAME/ and (as
    /// root) runtime/NAME/ with what the game wrote.
    Delete(DeleteArgs),
    /// Start the server and wait for its first answer on its port.
    Start(NameArg),
    /// Stop the server (its overlay is unmounted with it).
    Stop(NameArg),
    /// Restart the server (remounts the overlay) and wait for its answer.
    Restart(NameArg),
    /// Stop, discard what the game wrote (left4me-reset@NAME), start, and
    /// wait for the first answer; prints how long each step took.
    Reset(NameArg),
    /// Send one line to the game's console (/run/left4me/NAME.stdin).
    Console(ConsoleArgs),
    /// Show the journal of the instance's units (server, overlay, health
    /// check, reset).
    Logs(LogsArgs),
    /// Start a game update (left4me-update.service) and follow its journal
    /// until it ends.
    Update(UpdateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// Verify instead (left4me-verify.service, root only): validate a full
    /// copy of the current generation against Steam, report the files that
    /// differ and commit the repaired tree; refused (exit 15) when Steam has
    /// another build than the current generation.
    #[arg(long)]
    pub(crate) verify: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print one JSON object ({"instances": [...], "not_shown": N}) instead
    /// of the table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct NameArg {
    /// Instance name: 1-32 of [A-Za-z0-9_-], starting with a letter or digit.
    pub(crate) name: String,
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Instance name: 1-32 of [A-Za-z0-9_-], starting with a letter or digit.
    pub(crate) name: String,
    /// The game's UDP port (L4D2_PORT).
    #[arg(long, value_name = "PORT")]
    pub(crate) port: String,
    /// Overlays from overlays/, highest priority first (L4D2_OVERLAYS).
    #[arg(long, value_name = "\"A B\"")]
    pub(crate) overlays: Option<String>,
    /// Extra arguments of srcds (L4D2_ARGS), e.g. "+map c1m1_hotel".
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub(crate) args: Option<String>,
    /// Any other L4D2_* variable, e.g. L4D2_HEALTH_GRACE_SEC=30 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub(crate) set: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// Instance name.
    pub(crate) name: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ConsoleArgs {
    /// Instance name.
    pub(crate) name: String,
    /// The console command, e.g. 'changelevel c2m1_highway'.
    pub(crate) command: String,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// Instance name.
    pub(crate) name: String,
    /// Keep following the journal.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test_log::test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
