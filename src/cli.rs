//! The one definition of the command line: `--help`, the man page and the
//! shell completions are all generated from it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::generation::{CopyMode, LoginMode, RestartPolicy};

const LONG_ABOUT: &str = "\
Assemble, tear down, reset and inspect one left4me instance's overlay.

Runs as root, from the root units left4me-overlay@.service (mount, umount) and
left4me-reset@.service (reset); mount also writes the game's environment to
STATE_DIR/runtime/.left4me/INSTANCE.env, which left4me-server@.service reads.
Everything below the state directory that the service user can write is treated
as hostile: names are validated, no symlink is followed, and the mount lands
only on STATE_DIR/runtime/INSTANCE/merged.";

const ENVIRONMENT: &str = "\
Environment:
  LEFT4ME_STATE_DIR   state directory (as --state-dir)
  LEFT4ME_USER        service user that owns the writable layer (default left4me);
                      never root. Set by the root-owned units that run the helper
  LEFT4ME_GROUP       its group (default left4me); never root
  LEFT4ME_LOG         log level on stderr: error, warn (default), info, debug, trace
  LEFT4ME_UPDATE_USER, LEFT4ME_UPDATE_COPY, LEFT4ME_UPDATE_KEEP,
  LEFT4ME_UPDATE_RESTART, LEFT4ME_SYSTEMCTL
                      defaults of the generation verbs' options (host.env)
";

/// `--help`'s and the man page's tail of both of the crate's root-side
/// programs: their environment, and the exit codes from their one
/// definition in `error.rs`.
pub(crate) fn after_help(environment: &str) -> String {
    format!("{environment}\n{}", crate::error::exit_codes_help())
}

#[derive(Debug, Parser)]
#[command(
    name = "left4me-overlay",
    version,
    about = "Assemble, tear down, reset and inspect one left4me instance's overlay",
    long_about = LONG_ABOUT,
    max_term_width = 100,
    after_long_help = after_help(ENVIRONMENT)
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

impl Program for Cli {
    type Verb = Command;
    fn parts(&self) -> (Option<Generate>, Option<&Command>) {
        (self.global.generate.generate, self.command.as_ref())
    }
}

/// `--state-dir` and `--generate`, as the helper and the admin command
/// take them.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// State directory holding installations/, overlays/, instances/ and runtime/.
    #[arg(
        long,
        global = true,
        env = "LEFT4ME_STATE_DIR",
        default_value = STATE_DIR_DEFAULT,
        value_name = "DIR"
    )]
    pub(crate) state_dir: PathBuf,
    #[command(flatten)]
    pub(crate) generate: GenerateArg,
}

/// `--generate`, hidden: how the packages make the man page and completions.
#[derive(Debug, Args)]
pub(crate) struct GenerateArg {
    /// Print a generated artifact (man page or shell completion) and exit.
    #[arg(long, value_name = "KIND", hide = true, exclusive = true)]
    pub(crate) generate: Option<Generate>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Assemble and mount the instance's overlay on runtime/INSTANCE/merged,
    /// write the game's environment (instance.env's validated L4D2_*
    /// variables) to runtime/.left4me/INSTANCE.env, make the console FIFO
    /// CONSOLE_DIR/INSTANCE.stdin, and set left4me-server@INSTANCE's
    /// AllowedCPUs= from L4D2_CPUS (only when it has it, or had it earlier
    /// in this boot). Already mounted with the same layer stack: only the
    /// environment is rewritten (and a missing console made), exit 0.
    Mount(MountArgs),
    /// Remove the console FIFO and runtime/.left4me/INSTANCE.env and
    /// unmount the instance's overlay. Not mounted: nothing else to do,
    /// exit 0.
    Umount(UmountArgs),
    /// Discard the instance's writable layer (refused while mounted).
    /// Instance configuration in instances/INSTANCE/ is kept.
    Reset(InstanceArgs),
    /// Show whether instances are mounted, their layer stack, generation
    /// and upper size.
    Status(StatusArgs),
    /// The game's installation generations (installations/ID, the one in
    /// installations/current is used by the next mount): list them, build
    /// the next one, collect old ones. left4me-update.service runs prepare,
    /// steamcmd and commit.
    #[command(subcommand)]
    Generation(GenerationCommand),
    /// Serve the service group's requests on the socket systemd passes
    /// (left4me-requests.socket, root:GROUP 0660): start, stop or restart
    /// an instance's server, reset, enable or disable it, or queue the
    /// game update, each one systemctl call whose unit and job mode (fail:
    /// a request never reverses another's job) this builds itself. One line
    /// in (`VERB [INSTANCE] [no-block]`), one line out (`ok`, or `error CODE
    /// MESSAGE`). The service user and the group's admins get no polkit
    /// grant: this is how they reach systemd.
    ServeRequests(ServeRequestsArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServeRequestsArgs {
    #[command(flatten)]
    pub(crate) systemctl: SystemctlArg,
}

#[derive(Debug, Subcommand)]
pub(crate) enum GenerationCommand {
    /// List the generations, their Steam build, which is current and which
    /// mounted instances use which. Migrates a legacy installation/ first.
    List(JsonArg),
    /// (Re)create installations/.next as a copy of the current generation
    /// for the update user to build in: directories are the user's, files
    /// reflinks where the filesystem can, else (auto) hard links to the
    /// current generation's root-owned, read-only files, or (copy) full
    /// copies the user owns.
    Prepare(PrepareArgs),
    /// Take installations/.next over as root (refused while any process of
    /// its owner runs, or if it holds a FIFO, device or another account's
    /// file), check that it is a complete game, and make it current: one
    /// atomic rename of installations/current. Old generations are then
    /// collected and the restart policy applied. An unchanged build id
    /// switches nothing. On any refusal .next is discarded and current is
    /// untouched.
    Commit(CommitArgs),
    /// Discard installations/.next (after a failed update); left alone
    /// while processes of its builder run or the --sibling unit runs
    /// (another update or verification).
    Abort(AbortArgs),
    /// Run steamcmd into DIR (.next as the update unit shows it) as the
    /// update user, not root: log in as LEFT4ME_STEAM_LOGIN says, app_update
    /// 222860 (with validate only where DIR shares no file with a committed
    /// generation), keep its output in RUNTIME/steamcmd.log, and succeed only
    /// if it printed its success line. left4me-update.service runs it.
    Fetch(FetchArgs),
    /// Copy a game tree installed by hand (steamcmd +force_install_dir DIR)
    /// into a new generation, as root's, and commit it.
    Import(ImportArgs),
    /// Remove generations that are not current, not among the newest KEEP,
    /// and not used by a mounted instance.
    Gc(GcArgs),
}

impl GenerationCommand {
    /// The verb for the journal's LEFT4ME_VERB field.
    pub(crate) fn verb(&self) -> &'static str {
        match self {
            GenerationCommand::List(_) => "generation-list",
            GenerationCommand::Prepare(_) => "generation-prepare",
            GenerationCommand::Commit(_) => "generation-commit",
            GenerationCommand::Abort(_) => "generation-abort",
            GenerationCommand::Fetch(_) => "generation-fetch",
            GenerationCommand::Import(_) => "generation-import",
            GenerationCommand::Gc(_) => "generation-gc",
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct JsonArg {
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PrepareArgs {
    /// The update user who builds the generation: neither root nor the service user.
    #[arg(
        long,
        env = "LEFT4ME_UPDATE_USER",
        default_value = "left4me-update",
        value_name = "USER"
    )]
    pub(crate) owner: String,
    /// Where the filesystem cannot reflink: hard links (auto) or full copies (copy).
    #[arg(long, env = "LEFT4ME_UPDATE_COPY", value_enum, default_value_t = CopyMode::Auto)]
    pub(crate) copy: CopyMode,
    #[command(flatten)]
    pub(crate) verify: VerifyArg,
    #[command(flatten)]
    pub(crate) sibling: SiblingArg,
    #[command(flatten)]
    pub(crate) json: JsonArg,
}

#[derive(Debug, Args)]
pub(crate) struct AbortArgs {
    #[command(flatten)]
    pub(crate) sibling: SiblingArg,
    #[command(flatten)]
    pub(crate) json: JsonArg,
}

/// The other unit that builds installations/.next as the same update user.
#[derive(Debug, Args)]
pub(crate) struct SiblingArg {
    /// The other unit that builds installations/.next as the same update
    /// user (left4me-update.service names left4me-verify.service): while
    /// systemd says it runs, .next is its tree, even in the instants no
    /// process of the update user exists (between its root prepare and its
    /// steamcmd), so prepare is refused (exit 15) and abort leaves .next
    /// alone.
    #[arg(long, value_name = "UNIT")]
    pub(crate) sibling: Option<String>,
    #[command(flatten)]
    pub(crate) systemctl: SystemctlArg,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArg {
    /// A verification (left4me-verify.service): prepare copies the current
    /// generation in full whatever --copy says, fetch validates, and commit
    /// takes only the same build: it reports what differed and commits the
    /// repaired tree, and refuses (exit 15) when Steam has another build.
    /// Refused without a current generation.
    #[arg(long)]
    pub(crate) verify: bool,
}

#[derive(Debug, Args)]
pub(crate) struct KeepArg {
    /// Keep at least the newest N generations (the current one counts).
    #[arg(long, env = "LEFT4ME_UPDATE_KEEP", default_value_t = 2, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) keep: u16,
}

#[derive(Debug, Args)]
pub(crate) struct AfterArgs {
    #[command(flatten)]
    pub(crate) keep: KeepArg,
    /// What running instances do after a switch: move at their next start
    /// (never), once no player is on them (when-empty, done by their health
    /// check), or restart at once (now).
    #[arg(long, env = "LEFT4ME_UPDATE_RESTART", value_enum, default_value_t = RestartPolicy::WhenEmpty)]
    pub(crate) restart: RestartPolicy,
    #[command(flatten)]
    pub(crate) systemctl: SystemctlArg,
}

/// The systemctl of every root verb that calls it: one flag, so its help
/// names each use.
#[derive(Debug, Args)]
pub(crate) struct SystemctlArg {
    /// systemctl, for mount's AllowedCPUs= on the server unit (L4D2_CPUS),
    /// the restart policy `now` of generation commit and import, the
    /// --sibling unit's state for generation prepare and abort, and the
    /// jobs serve-requests queues.
    #[arg(
        long,
        env = "LEFT4ME_SYSTEMCTL",
        default_value = "systemctl",
        value_name = "PATH"
    )]
    pub(crate) systemctl: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct CommitArgs {
    #[command(flatten)]
    pub(crate) after: AfterArgs,
    /// steamcmd's output as generation fetch kept it: commit only if it
    /// holds steamcmd's success line.
    #[arg(long, value_name = "FILE")]
    pub(crate) steamcmd_log: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) verify: VerifyArg,
    #[command(flatten)]
    pub(crate) json: JsonArg,
}

#[derive(Debug, Args)]
pub(crate) struct FetchArgs {
    /// The tree to install into (absolute: steamcmd's force_install_dir).
    #[arg(long, value_name = "DIR")]
    pub(crate) install_dir: PathBuf,
    /// The unit's private RuntimeDirectory: steamcmd's script and log.
    #[arg(long, value_name = "RUNTIME")]
    pub(crate) runtime_dir: PathBuf,
    /// How steamcmd logs in: an owning account (the steam-login credential)
    /// or anonymous with the Windows-then-Linux platform workaround.
    #[arg(long, env = "LEFT4ME_STEAM_LOGIN", value_enum, default_value_t = LoginMode::Account)]
    pub(crate) login: LoginMode,
    /// steamcmd.
    #[arg(
        long,
        env = "LEFT4ME_STEAMCMD",
        default_value = "steamcmd",
        value_name = "PATH"
    )]
    pub(crate) steamcmd: PathBuf,
    #[command(flatten)]
    pub(crate) verify: VerifyArg,
    #[command(flatten)]
    pub(crate) json: JsonArg,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The installed game (the directory holding srcds_run).
    #[arg(value_name = "DIR")]
    pub(crate) dir: PathBuf,
    #[command(flatten)]
    pub(crate) after: AfterArgs,
    #[command(flatten)]
    pub(crate) json: JsonArg,
}

#[derive(Debug, Args)]
pub(crate) struct GcArgs {
    #[command(flatten)]
    pub(crate) keep: KeepArg,
    #[command(flatten)]
    pub(crate) json: JsonArg,
}

#[derive(Debug, Args)]
pub(crate) struct InstanceArgs {
    /// Instance name: 1-32 of [A-Za-z0-9_-], starting with a letter or digit.
    pub(crate) instance: String,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ConsoleArg {
    /// Where the consoles are (root's; the server unit opens
    /// /run/left4me/INSTANCE.stdin, so only tests change it).
    #[arg(
        long,
        env = "LEFT4ME_CONSOLE_DIR",
        default_value = crate::console::DIR,
        value_name = "DIR"
    )]
    pub(crate) console_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct MountArgs {
    #[command(flatten)]
    pub(crate) target: InstanceArgs,
    #[command(flatten)]
    pub(crate) console: ConsoleArg,
    #[command(flatten)]
    pub(crate) systemctl: SystemctlArg,
    /// Where the health checks' records are (root's tmpfs; only tests
    /// change it). While 512 or more record dirs are there, a mount removes
    /// those of instances not mounted, oldest first.
    #[arg(
        long,
        env = "LEFT4ME_HEALTH_RUN_DIR",
        default_value = crate::health::RUN_DIR,
        value_name = "DIR"
    )]
    pub(crate) health_run_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct UmountArgs {
    #[command(flatten)]
    pub(crate) target: InstanceArgs,
    #[command(flatten)]
    pub(crate) console: ConsoleArg,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Instance name; all instances when omitted.
    pub(crate) instance: Option<String>,
    /// Print the result as JSON on stdout (schema in docs/helper.md).
    #[arg(long)]
    pub(crate) json: bool,
}

/// Where the state dir is unless --state-dir or LEFT4ME_STATE_DIR says.
pub(crate) const STATE_DIR_DEFAULT: &str = "/var/lib/left4me";

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Generate {
    Man,
    CompleteBash,
    CompleteZsh,
    CompleteFish,
    /// The rules of names, instance.env and settings as JSON
    /// (dist/contract.json, src/contract.rs).
    Contract,
}

/// What each program of the crate has on its command line besides its own
/// arguments: `--generate`, and a verb that may be missing.
pub(crate) trait Program: Parser {
    type Verb;
    /// The parsed `--generate` and verb.
    fn parts(&self) -> (Option<Generate>, Option<&Self::Verb>);
}

/// How every program starts, before `main` sees its verb: a closed pipe
/// ends it quietly (SIGPIPE's default), `--generate` prints its man page or
/// a completion, and no verb prints the help and exits 2.
pub(crate) fn start<P: Program>(main: impl FnOnce(&P, &P::Verb) -> ExitCode) -> ExitCode {
    crate::sys::default_sigpipe();
    let cli = P::parse();
    let (kind, verb) = cli.parts();
    if let Some(kind) = kind {
        return generate(P::command(), kind);
    }
    let Some(verb) = verb else {
        let _ = P::command().print_help();
        return ExitCode::from(2);
    };
    main(&cli, verb)
}

/// Prints the man page or a shell completion of `cmd` (either binary's one
/// clap definition) on stdout.
pub(crate) fn generate(mut cmd: clap::Command, kind: Generate) -> std::process::ExitCode {
    let name = cmd.get_name().to_owned();
    let mut out = std::io::stdout();
    let shell = match kind {
        Generate::Man => {
            return match clap_mangen::Man::new(cmd).section("8").render(&mut out) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(_) => std::process::ExitCode::FAILURE,
            };
        }
        Generate::Contract => {
            return match std::io::Write::write_all(&mut out, crate::contract::json().as_bytes()) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(_) => std::process::ExitCode::FAILURE,
            };
        }
        Generate::CompleteBash => clap_complete::Shell::Bash,
        Generate::CompleteZsh => clap_complete::Shell::Zsh,
        Generate::CompleteFish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test_log::test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test_log::test]
    fn long_help_shows_the_exit_code_table() {
        let help = Cli::command().render_long_help().to_string();
        let flat = format!(
            " {} ",
            help.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        for row in &crate::error::EXIT_CODES {
            let line = crate::error::tests::shown_row(row);
            assert!(flat.contains(&line), "{line} missing from:\n{help}");
        }
    }
}
