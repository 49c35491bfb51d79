//! `generation fetch`: steamcmd into .next/, as the update user, inside
//! left4me-update.service's sandbox (docs/updates.md, "Installing the
//! game"). Not root: it decides nothing for root. Root's commit reads the
//! output it keeps (`steamcmd.log`) as untrusted data.
//!
//! What it works around, from the threads of issue 20:
//! - since November 2024 Valve refuses an anonymous app 222860 on Linux with
//!   `ERROR! Failed to install app '222860' (Invalid platform)`, exit 0
//!   (ValveSoftware/steam-for-linux#11522, GameServerManagers/LinuxGSM#4706,
//!   #4754): so an owning account, or the platform workaround;
//! - steamcmd's exit status is unreliable both ways (LinuxGSM#719,
//!   steam-for-linux#4341): success is read from its output and the
//!   manifest, never from the status;
//! - `validate` repairs a differing file in place (1zc/CS2-Pterodactyl#49):
//!   never through a hard link to a committed generation.
//!
//! The account's name and password come from the systemd credential
//! `steam-login` and reach steamcmd in a `+runscript` file in the unit's
//! private RuntimeDirectory (0700, tmpfs, removed when steamcmd ends), never
//! on a command line (/proc/PID/cmdline is readable by every process of the
//! update user and, without ProtectProc=, by everyone) and never in the
//! journal: every line of steamcmd's output passes through here and has the
//! password masked before it is printed or kept.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::ValueEnum;
use serde::Serialize;

use super::tree;
use crate::error::{Failure, Kind, Result};

/// The app: Left 4 Dead 2 Dedicated Server.
pub(crate) const APP: &str = "222860";
/// What steamcmd prints once an `app_update` has installed the app fully:
/// the line operators learned to trust instead of the exit status.
pub(crate) const SUCCESS_LINE: &str = "Success! App '222860' fully installed.";
/// The credential (LoadCredential=steam-login:FILE): the account name on
/// the first line, its password on the second (none: use the cached session).
pub(crate) const CREDENTIAL: &str = "steam-login";
/// steamcmd's own steamclient.so, in the generation it built.
pub(crate) const CLIENT_COPY: &str = ".left4me-steamclient.so";
/// Names in the unit's RuntimeDirectory.
pub(crate) const LOG: &str = "steamcmd.log";
const SCRIPT: &str = "steamcmd.script";
/// steamcmd's output kept for the commit: a full download logs a progress
/// line a second or so (about 600 KB in two hours); beyond this only the
/// lines that decide are kept, so the log stays bounded whatever it prints.
pub(crate) const LOG_MAX: usize = 8 << 20;
const LOG_DECIDING_MAX: usize = 64 << 10;

/// How steamcmd logs in (`LEFT4ME_STEAM_LOGIN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum LoginMode {
    /// A Steam account that owns Left 4 Dead 2, from the `steam-login`
    /// credential; Steam Guard needs one interactive login first.
    Account,
    /// Anonymous, app_update with the Windows platform forced, then with
    /// Linux (what Valve left working for anonymous downloads).
    AnonymousPlatformWorkaround,
}

pub(crate) struct FetchArgs<'a> {
    pub(crate) install_dir: &'a Path,
    pub(crate) runtime_dir: &'a Path,
    pub(crate) steamcmd: &'a Path,
    pub(crate) login: LoginMode,
    pub(crate) credentials_dir: Option<PathBuf>,
    /// A verification: validate, or fail.
    pub(crate) verify: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct FetchOutcome {
    pub(crate) result: &'static str,
    pub(crate) login: LoginMode,
    /// False where .next/ shares files with a committed generation.
    pub(crate) validated: bool,
    pub(crate) exit_status: Option<i32>,
}

struct Account {
    name: String,
    password: Option<String>,
}

fn read_account(dir: Option<&Path>) -> Result<Account> {
    let hint = "create it as root, 0600 (docs/updates.md, \"An owning account\"): `systemd-creds encrypt --name=steam-login - /etc/credstore.encrypted/left4me-steam-login` and LoadCredentialEncrypted=steam-login:... in a drop-in for left4me-update.service; or set LEFT4ME_STEAM_LOGIN=anonymous-platform-workaround";
    let Some(dir) = dir else {
        return Err(Failure::new(
            Kind::Missing,
            "LEFT4ME_STEAM_LOGIN=account, but the unit has no credentials ($CREDENTIALS_DIRECTORY is not set)",
        )
        .hint(hint));
    };
    let path = dir.join(CREDENTIAL);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Failure::new(
            Kind::Missing,
            format!("cannot read the credential {}: {e}", path.display()),
        )
        .hint(hint)
    })?;
    let mut lines = text.lines();
    let name = lines.next().unwrap_or("").trim().to_owned();
    let password = lines.next().filter(|p| !p.is_empty()).map(str::to_owned);
    // steamcmd's script is split at white space; a quote cannot be escaped in it.
    let bad = |s: &str| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == '"');
    if bad(&name)
        || password
            .as_deref()
            .is_some_and(|p| p.chars().any(|c| c.is_control() || c == '"'))
    {
        return Err(Failure::new(
            Kind::InvalidConfig,
            format!(
                "the credential {CREDENTIAL}: the first line must be the account name (no spaces or quotes), the second its password (no quotes or control characters) or nothing"
            ),
        )
        .hint(hint));
    }
    Ok(Account { name, password })
}

/// The steamcmd script: settings first, `force_install_dir` (absolute)
/// before `login`, as steamcmd requires.
fn script(dir: &Path, login: &str, platforms: &[&str], validate: bool) -> String {
    let mut s = String::from("@ShutdownOnFailedCommand 1\n@NoPromptForPassword 1\n");
    s += &format!("force_install_dir \"{}\"\n{login}\n", dir.display());
    let v = if validate { " validate" } else { "" };
    for p in platforms {
        s += &format!("@sSteamCmdForcePlatformType {p}\napp_update {APP}{v}\n");
    }
    s + "quit\n"
}

/// Whether .next/ holds a file this user does not own: a hard link to a
/// committed generation's root-owned file, which `validate` would try to
/// repair in place.
fn shares_files(dir: &Path) -> Result<bool> {
    let top = rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Failure::os(dir, "open directory", e))?;
    let me = rustix::process::geteuid().as_raw();
    tree::any_file(top.as_fd(), dir, |st| st.st_uid != me || st.st_nlink > 1)
}

/// What the output says; `runs` app_update commands were given.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Installed,
    InvalidPlatform,
    LoginRefused,
    NotInstalled,
}

pub(crate) fn judge(output: &str, runs: usize) -> Verdict {
    let has = |needle: &str| output.lines().any(|l| l.contains(needle));
    if output.lines().filter(|l| l.trim() == SUCCESS_LINE).count() >= runs {
        Verdict::Installed
    } else if has("(Invalid platform)") {
        Verdict::InvalidPlatform
    } else if [
        "Account Logon Denied",
        "Invalid Password",
        "Two-factor code mismatch",
        "Steam Guard code",
        "Expired",
        "Cached credentials not found",
        "Login Failure",
    ]
    .iter()
    .any(|n| has(n))
    {
        Verdict::LoginRefused
    } else {
        Verdict::NotInstalled
    }
}

/// The line as printed and kept: the password masked.
fn masked(line: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() => line.replace(s, "********"),
        _ => line.to_owned(),
    }
}

pub(crate) fn fetch(args: &FetchArgs<'_>) -> Result<FetchOutcome> {
    if !args.install_dir.is_absolute() {
        return Err(Failure::new(
            Kind::InvalidConfig,
            format!(
                "--install-dir {} is not absolute",
                args.install_dir.display()
            ),
        )
        .hint("steamcmd's force_install_dir needs an absolute path"));
    }
    let validate = !shares_files(args.install_dir)?;
    if args.verify && !validate {
        return Err(Failure::new(
            Kind::Conflict,
            format!(
                "{} shares files with a committed generation: a verification must validate an unshared copy, and validate would write through them",
                args.install_dir.display()
            ),
        )
        .hint("prepare it with generation prepare --verify (left4me-verify.service does)"));
    }
    let (login, platforms, account) = match args.login {
        LoginMode::Account => {
            let a = read_account(args.credentials_dir.as_deref())?;
            let line = match &a.password {
                Some(p) => format!("login {} \"{p}\"", a.name),
                None => format!("login {}", a.name),
            };
            (line, vec!["linux"], Some(a))
        }
        LoginMode::AnonymousPlatformWorkaround => {
            ("login anonymous".to_owned(), vec!["windows", "linux"], None)
        }
    };
    tracing::info!(
        login = ?args.login,
        validate,
        "steamcmd app_update {APP}{}",
        if validate {
            " validate"
        } else {
            " without validate: .next/ shares files with a committed generation"
        }
    );
    let secret = account.as_ref().and_then(|a| a.password.clone());
    let script_path = args.runtime_dir.join(SCRIPT);
    let log_path = args.runtime_dir.join(LOG);
    let _ = std::fs::remove_file(&script_path);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&script_path)
            .map_err(|e| io_failure(&script_path, "create", e))?;
        f.write_all(script(args.install_dir, &login, &platforms, validate).as_bytes())
            .map_err(|e| io_failure(&script_path, "write", e))?;
    }
    let ran = run_steamcmd(args.steamcmd, &script_path, &log_path, secret.as_deref());
    let removed = std::fs::remove_file(&script_path);
    let (status, output) = ran?;
    removed.map_err(|e| io_failure(&script_path, "remove", e))?;
    let code = status.code();
    let name = account.as_ref().map_or("anonymous", |a| a.name.as_str());
    match judge(&output, platforms.len()) {
        Verdict::Installed => {
            capture_client(args.install_dir);
            if !status.success() {
                tracing::warn!(
                    "steamcmd ended with {status} but printed '{SUCCESS_LINE}'; the commit judges the app manifest"
                );
            }
            Ok(FetchOutcome {
                result: "installed",
                login: args.login,
                validated: validate,
                exit_status: code,
            })
        }
        Verdict::InvalidPlatform => Err(Failure::new(
            Kind::Steam,
            format!("Steam refused app {APP} for this platform ('Invalid platform', steamcmd {status}): since November 2024 an anonymous login cannot install it on Linux"),
        )
        .hint("log in with an account that owns Left 4 Dead 2 (LEFT4ME_STEAM_LOGIN=account, docs/updates.md) or set LEFT4ME_STEAM_LOGIN=anonymous-platform-workaround in /etc/left4me/host.env")),
        Verdict::LoginRefused => Err(Failure::new(
            Kind::Steam,
            format!("Steam refused the login of {name}: the cached session expired or there is none, or the password is wrong (steamcmd {status})"),
        )
        .hint(format!("log in once interactively as the update user (Steam Guard asks for a code), then start the update again: systemd-run --pty --wait --collect -p User=left4me-update -p StateDirectory=left4me-update -E HOME=/var/lib/left4me-update {} +login {name} +quit", args.steamcmd.display()))),
        Verdict::NotInstalled => Err(Failure::new(
            Kind::Steam,
            format!("steamcmd ({status}) did not print '{SUCCESS_LINE}': the app is not installed"),
        )
        .hint("steamcmd's output is above in the journal (journalctl -u left4me-update); run the update again")),
    }
}

/// The generation carries the Steam client library of the steamcmd that
/// built it (a stale one from another build breaks servers after updates:
/// 1zc/CS2-Pterodactyl#44): steamcmd.sh links ~/.steam/sdk32 to its own
/// linux32/. The server unit links ~/.steam/sdk32/steamclient.so to the
/// app's bin/steamclient.so, else to this copy. Written beside and renamed
/// over, as Steam replaces files: the old one may be a hard link to a
/// committed generation's.
fn capture_client(dir: &Path) {
    let Some(home) = std::env::var_os("HOME") else {
        return;
    };
    let from = Path::new(&home).join(".steam/sdk32/steamclient.so");
    let to = dir.join(CLIENT_COPY);
    let tmp = dir.join(format!("{CLIENT_COPY}.tmp"));
    let done = std::fs::copy(&from, &tmp).and_then(|_| std::fs::rename(&tmp, &to));
    match done {
        Ok(()) => tracing::info!("captured {} as {CLIENT_COPY}", from.display()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(
                "steamcmd's client library {} not captured: {e}",
                from.display()
            );
        }
    }
}

fn io_failure(path: &Path, what: &str, e: std::io::Error) -> Failure {
    Failure::new(Kind::Unexpected, format!("{what} {}: {e}", path.display())).hint(
        "the update unit's RuntimeDirectory= is the update user's; look at what else is in it",
    )
}

/// Runs steamcmd with stdout and stderr on one pipe; every line goes to our
/// stdout (the journal) and, bounded, to the log, masked. Returns the status
/// and the log's text.
fn run_steamcmd(
    steamcmd: &Path,
    script: &Path,
    log_path: &Path,
    secret: Option<&str>,
) -> Result<(std::process::ExitStatus, String)> {
    // One pipe for both: their lines stay in the order steamcmd wrote them.
    // Close-on-exec: steamcmd gets it as stdout and stderr only, so the
    // pipe ends when steamcmd and whatever still has those open are gone.
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| io_failure(log_path, "pipe for", std::io::Error::from(e)))?;
    let writer2 = writer
        .try_clone()
        .map_err(|e| io_failure(log_path, "pipe for", e))?;
    let reader = std::fs::File::from(reader);
    let mut child = Command::new(steamcmd)
        .arg("+runscript")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .spawn()
        .map_err(|e| {
            Failure::new(
                Kind::Missing,
                format!("cannot run {}: {e}", steamcmd.display()),
            )
            .hint(
                "install steamcmd (Debian: the non-free steamcmd package) or set LEFT4ME_STEAMCMD",
            )
        })?;
    let mut log = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(log_path)
        .map_err(|e| io_failure(log_path, "create", e))?;
    let mut kept = String::new();
    let mut deciding = 0;
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(reader).split(b'\n') {
        let line = line.map_err(|e| io_failure(log_path, "read steamcmd's output for", e))?;
        let line = masked(
            String::from_utf8_lossy(&line).trim_end_matches('\r'),
            secret,
        );
        let _ = writeln!(out, "{line}");
        let keep = if kept.len() + line.len() < LOG_MAX {
            true
        } else {
            // Past the bound: only what judge() and the commit read.
            let decides =
                line.contains("Success!") || line.contains("ERROR") || line.contains("Error");
            decides && deciding + line.len() < LOG_DECIDING_MAX && {
                deciding += line.len() + 1;
                true
            }
        };
        if keep {
            kept.push_str(&line);
            kept.push('\n');
            log.write_all(line.as_bytes())
                .and_then(|()| log.write_all(b"\n"))
                .map_err(|e| io_failure(log_path, "write", e))?;
        }
    }
    let status = child
        .wait()
        .map_err(|e| io_failure(steamcmd, "wait for", e))?;
    Ok((status, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_is_the_line_as_often_as_app_update_ran() {
        let ok = format!("Loading Steam API...OK\n{SUCCESS_LINE}\n");
        assert_eq!(judge(&ok, 1), Verdict::Installed);
        // The workaround's Windows run succeeded, its Linux run did not.
        assert_eq!(judge(&ok, 2), Verdict::NotInstalled);
        assert_eq!(
            judge(&format!("{ok}{SUCCESS_LINE}\n"), 2),
            Verdict::Installed
        );
        // A line that merely mentions it does not count.
        assert_eq!(
            judge(&format!("echo {SUCCESS_LINE}\n"), 1),
            Verdict::NotInstalled
        );
    }

    #[test]
    fn the_refusals_are_told_apart() {
        let platform = "Waiting for user info...OK\nERROR! Failed to install app '222860' (Invalid platform)\n";
        assert_eq!(judge(platform, 1), Verdict::InvalidPlatform);
        let login = "Logging in user 'op' to Steam Public...FAILED (Account Logon Denied)\n";
        assert_eq!(judge(login, 1), Verdict::LoginRefused);
        assert_eq!(
            judge("Error! App '222860' state is 0x202 after update job.\n", 1),
            Verdict::NotInstalled
        );
    }

    #[test]
    fn the_script_logs_in_after_the_install_dir_and_quotes_the_password() {
        let s = script(Path::new("/run/x"), "login op \"pw\"", &["linux"], false);
        assert_eq!(
            s,
            "@ShutdownOnFailedCommand 1\n@NoPromptForPassword 1\nforce_install_dir \"/run/x\"\nlogin op \"pw\"\n@sSteamCmdForcePlatformType linux\napp_update 222860\nquit\n"
        );
        let w = script(
            Path::new("/run/x"),
            "login anonymous",
            &["windows", "linux"],
            true,
        );
        assert!(w.contains("windows\napp_update 222860 validate\n@sSteamCmdForcePlatformType linux\napp_update 222860 validate\nquit"));
    }

    #[test]
    fn the_password_is_masked() {
        assert_eq!(
            masked("login op hunter2", Some("hunter2")),
            "login op ********"
        );
        assert_eq!(masked("plain", None), "plain");
    }
}
