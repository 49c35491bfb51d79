//! instance.env, read the way systemd's EnvironmentFile= reads it, for the
//! forms accepted here: `KEY=value`, `KEY="value"` (backslash escapes `\" \\ \$ \``),
//! `KEY='value'`, blank lines and whole-line `#`/`;` comments. Anything whose
//! meaning could differ between systemd and this parser is rejected with
//! file:line, so the helper never mounts a stack systemd would not also see.
//! Errors never echo a line's content: the file is user-writable and could be
//! a link to something root can read and the user cannot.

use crate::error::{Failure, Kind};
use crate::name::OverlayName;

/// instance.env is a few lines; anything this large is not one.
pub const MAX_BYTES: usize = 64 * 1024;
/// overlayfs stacks at most 500 lower layers; two are the installation and
/// the per-instance layer.
pub const MAX_OVERLAYS: usize = 498;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    pub port: u16,
    pub args: String,
    /// Highest priority first.
    pub overlays: Vec<OverlayName>,
}

/// Parses `KEY=VALUE` assignments; later assignments win, as in systemd.
pub fn parse_assignments(bytes: &[u8], origin: &str) -> Result<Vec<(String, String)>, Failure> {
    if bytes.len() > MAX_BYTES {
        return Err(Failure::new(
            Kind::InvalidConfig,
            format!(
                "{origin}: {} bytes, more than the {MAX_BYTES} an instance.env may have",
                bytes.len()
            ),
        )
        .hint("an instance.env holds a few KEY=value lines; rewrite it"));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = index + 1;
        let at = |why: &str| {
            Failure::new(Kind::InvalidConfig, format!("{origin}:{line_no}: {why}"))
                .hint("lines are KEY=value, KEY=\"value\" or KEY='value'; # starts a comment line")
        };
        let line = std::str::from_utf8(raw).map_err(|_| at("not valid UTF-8"))?;
        if line.contains('\0') {
            return Err(at("contains a NUL byte"));
        }
        if line.contains('\r') {
            return Err(at(
                "contains a carriage return (DOS line ending); save the file with Unix line endings",
            ));
        }
        let trimmed = line.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let Some((key, rest)) = trimmed.split_once('=') else {
            return Err(at("no '=' in this line"));
        };
        let key = key.trim_end_matches([' ', '\t']);
        if !is_valid_key(key) {
            return Err(at(
                "the name before '=' is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)",
            ));
        }
        let value = parse_value(rest.trim_start_matches([' ', '\t'])).map_err(|why| at(&why))?;
        out.retain(|(k, _)| k != key);
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(raw: &str) -> Result<String, String> {
    let after_closing = |rest: &str, value: String| {
        if rest.trim_matches([' ', '\t']).is_empty() {
            Ok(value)
        } else {
            Err("text after the closing quote; quote the whole value".to_owned())
        }
    };
    if let Some(body) = raw.strip_prefix('\'') {
        let Some(end) = body.find('\'') else {
            return Err("single quote not closed on this line".into());
        };
        return after_closing(&body[end + 1..], body[..end].to_owned());
    }
    if let Some(body) = raw.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return after_closing(&body[i + 1..], value),
                '\\' => match chars.next() {
                    Some((_, e @ ('"' | '\\' | '$' | '`'))) => value.push(e),
                    Some((_, e)) => {
                        // systemd keeps the backslash before other characters.
                        value.push('\\');
                        value.push(e);
                    }
                    None => {
                        return Err(
                            "line continuation (backslash at end of line) is not supported".into(),
                        );
                    }
                },
                _ => value.push(c),
            }
        }
        return Err("double quote not closed on this line".into());
    }
    if raw.contains(['"', '\'', '\\']) {
        return Err(
            "quote or backslash inside an unquoted value; put the whole value in quotes".into(),
        );
    }
    Ok(raw.trim_end_matches([' ', '\t']).to_owned())
}

impl InstanceConfig {
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self, Failure> {
        let vars = parse_assignments(bytes, origin)?;
        let get = |key: &str| vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let invalid = |why: String| Failure::new(Kind::InvalidConfig, format!("{origin}: {why}"));
        let port = match get("L4D2_PORT") {
            None => {
                return Err(invalid("L4D2_PORT is not set".into())
                    .hint("add a line like L4D2_PORT=27015 (the UDP port srcds listens on)"));
            }
            Some(raw) => raw.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| {
                invalid(format!(
                    "L4D2_PORT must be a number from 1 to 65535, not {raw:?}"
                ))
            })?,
        };
        let mut overlays: Vec<OverlayName> = Vec::new();
        for word in get("L4D2_OVERLAYS").unwrap_or("").split_ascii_whitespace() {
            let name = OverlayName::parse(word).map_err(|f| {
                Failure::new(
                    Kind::InvalidConfig,
                    format!("{origin}: L4D2_OVERLAYS: {}", f.message),
                )
                .hint(f.hint.unwrap_or_default())
            })?;
            if overlays.contains(&name) {
                return Err(
                    invalid(format!("L4D2_OVERLAYS names overlay {name:?} twice"))
                        .hint("list each overlay once, highest priority first"),
                );
            }
            overlays.push(name);
        }
        if overlays.len() > MAX_OVERLAYS {
            return Err(invalid(format!(
                "L4D2_OVERLAYS lists {} overlays; overlayfs stacks at most {MAX_OVERLAYS} besides the installation and instance layer",
                overlays.len()
            )));
        }
        let args = get("L4D2_ARGS").unwrap_or("");
        check_args(args).map_err(|f| {
            Failure::new(
                Kind::InvalidConfig,
                format!("{origin}: L4D2_ARGS: {}", f.message),
            )
            .hint(f.hint.unwrap_or_default())
        })?;
        Ok(InstanceConfig {
            port,
            args: args.to_owned(),
            overlays,
        })
    }
}

/// srcds_run flags that cannot work in the game unit's sandbox, and why.
/// Matched without regard to case, as the engine reads its own flags.
const REFUSED_FLAGS: [(&str, &str); 3] = [
    (
        "-debug",
        "srcds_run would run the server under gdb and write core files; gdb cannot attach (ptrace is not in the unit's syscall filter) and the game's directories are not the place for cores",
    ),
    (
        "-autoupdate",
        "srcds_run would run steamcmd to update the installation, which is shared and read-only to the game, and would restart the server itself, hiding crashes from systemd (it overrides -norestart)",
    ),
    (
        "-fork",
        "srcds would start several server processes in one unit, sharing its port, limits and restarts; run one instance per server instead",
    ),
];

/// L4D2_ARGS reaches srcds through two splitters: systemd splits `$L4D2_ARGS`
/// at whitespace (honouring quotes), then Valve's srcds_run joins its
/// arguments and lets the shell split them again unquoted, which also
/// expands glob patterns against the game directory. So a quoted argument
/// with a space would silently turn into several, and `*`, `?` or `[` could
/// turn into a list of file names: both are refused, as are the srcds_run
/// flags that cannot work in the sandbox.
pub fn check_args(args: &str) -> Result<(), Failure> {
    if let Some(c) = args.chars().find(|c| matches!(c, '"' | '\'' | '\\')) {
        return Err(Failure::new(
            Kind::InvalidConfig,
            format!("contains {c:?}; srcds_run splits its arguments again at every space, so quoting cannot keep an argument with spaces together"),
        )
        .hint("pass only words without spaces; put values with spaces (hostname \"My Server\") into a cfg file of the instance layer and +exec it"));
    }
    if let Some(c) = args.chars().find(|c| matches!(c, '*' | '?' | '[')) {
        return Err(Failure::new(
            Kind::InvalidConfig,
            format!(
                "contains {c:?}; srcds_run expands it as a file name pattern in the game directory"
            ),
        )
        .hint("remove it; no srcds argument needs a pattern"));
    }
    for word in args.split_ascii_whitespace() {
        if let Some((flag, why)) = REFUSED_FLAGS
            .iter()
            .find(|(flag, _)| word.eq_ignore_ascii_case(flag))
        {
            return Err(Failure::new(
                Kind::InvalidConfig,
                format!("{flag} cannot work in left4me's sandbox: {why}"),
            )
            .hint(format!(
                "remove {flag} from L4D2_ARGS (docs/unit.md, \"srcds_run's arguments\")"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn one(text: &str) -> Result<String, Failure> {
        parse_assignments(text.as_bytes(), "instance.env").map(|v| v.last().unwrap().1.clone())
    }

    #[rstest]
    #[case("A=b", "b")]
    #[case("A=b  ", "b")]
    #[case("  A = b", "b")]
    #[case("A=", "")]
    #[case("A=\"x y\"", "x y")]
    #[case("A=\"x \\\"q\\\" \\\\ \\$HOME\"", "x \"q\" \\ $HOME")]
    #[case("A=\"keep \\n\"", "keep \\n")]
    #[case("A='lit $x \\ \"'", "lit $x \\ \"")]
    #[case("A=\"x\"  ", "x")]
    #[case("A=b # not a comment", "b # not a comment")]
    #[case("A=+map c1m1_hotel +sv_lan 0", "+map c1m1_hotel +sv_lan 0")]
    #[case("# c\n; c\n\n  \nA=1\nA=2", "2")]
    #[test_log::test]
    fn accepts(#[case] text: &str, #[case] value: &str) {
        assert_eq!(one(text).unwrap(), value);
    }

    #[rstest]
    #[case("A", ":1: no '='")]
    #[case("export A=1", ":1: the name before")]
    #[case("1A=1", ":1: the name before")]
    #[case("A-B=1", ":1: the name before")]
    #[case("=1", ":1: the name before")]
    #[case("A=\"open", ":1: double quote not closed")]
    #[case("A='open", ":1: single quote not closed")]
    #[case("A=\"x\"y", ":1: text after the closing quote")]
    #[case("A=x\"y\"", ":1: quote or backslash inside")]
    #[case("A=x\\", ":1: quote or backslash inside")]
    #[case("A=\"x\\", ":1: line continuation")]
    #[case("# ok\nA=1\r", ":2: contains a carriage return")]
    #[case("A=\0", ":1: contains a NUL byte")]
    #[test_log::test]
    fn rejects_with_line(#[case] text: &str, #[case] why: &str) {
        let err = one(text).unwrap_err();
        assert_eq!(err.kind, Kind::InvalidConfig);
        assert!(err.message.starts_with("instance.env:"), "{}", err.message);
        assert!(err.message.contains(why), "{} (wanted {why})", err.message);
    }

    #[test_log::test]
    fn rejects_non_utf8_with_line_and_without_echoing_it() {
        let err = parse_assignments(b"A=1\nB=\xff\xfesecret", "f").unwrap_err();
        assert_eq!(err.message, "f:2: not valid UTF-8");
    }

    #[test_log::test]
    fn rejects_huge_files() {
        let big = "A=1\n".repeat(MAX_BYTES / 4 + 1);
        let err = parse_assignments(big.as_bytes(), "f").unwrap_err();
        assert!(
            err.message.contains("more than the 65536"),
            "{}",
            err.message
        );
    }

    #[rstest]
    #[case("L4D2_PORT=27015", 27015, &[])]
    #[case("L4D2_PORT=1\nL4D2_OVERLAYS=\"sourcemod  confogl\"", 1, &["sourcemod", "confogl"])]
    #[case("L4D2_PORT='65535'\nL4D2_OVERLAYS=", 65535, &[])]
    #[test_log::test]
    fn instance_config(#[case] text: &str, #[case] port: u16, #[case] overlays: &[&str]) {
        let cfg = InstanceConfig::parse(text.as_bytes(), "f").unwrap();
        assert_eq!(cfg.port, port);
        let names: Vec<&str> = cfg.overlays.iter().map(OverlayName::as_str).collect();
        assert_eq!(names, overlays);
    }

    #[rstest]
    #[case("L4D2_OVERLAYS=a", "L4D2_PORT is not set")]
    #[case("L4D2_PORT=0", "from 1 to 65535")]
    #[case("L4D2_PORT=65536", "from 1 to 65535")]
    #[case("L4D2_PORT=27015x", "from 1 to 65535")]
    #[case(
        "L4D2_PORT=1\nL4D2_OVERLAYS=\"a ../etc\"",
        "L4D2_OVERLAYS: invalid overlay name \"../etc\""
    )]
    #[case(
        "L4D2_PORT=1\nL4D2_OVERLAYS=\"a,workdir=/tmp\"",
        "invalid overlay name"
    )]
    #[case("L4D2_PORT=1\nL4D2_OVERLAYS=\"a:b\"", "invalid overlay name")]
    #[case("L4D2_PORT=1\nL4D2_OVERLAYS=\"a b a\"", "twice")]
    #[test_log::test]
    fn instance_config_rejects(#[case] text: &str, #[case] why: &str) {
        let err = InstanceConfig::parse(text.as_bytes(), "f").unwrap_err();
        assert_eq!(err.kind, Kind::InvalidConfig);
        assert!(err.message.contains(why), "{}", err.message);
    }

    #[rstest]
    #[case(
        "-debug",
        "-debug cannot work in left4me's sandbox: srcds_run would run the server under gdb"
    )]
    #[case(
        "+map c1m1_hotel -AutoUpdate",
        "-autoupdate cannot work in left4me's sandbox: srcds_run would run steamcmd"
    )]
    #[case(
        "-nohltv\t-fork 4",
        "-fork cannot work in left4me's sandbox: srcds would start several server processes"
    )]
    #[case(
        "+hostname \"My Server\"",
        "contains '\"'; srcds_run splits its arguments again"
    )]
    #[case("+hostname 'x y'", "contains '\\''")]
    #[case("+hostname a\\ b", "contains '\\\\'")]
    #[case(
        "+map c1m*",
        "contains '*'; srcds_run expands it as a file name pattern"
    )]
    #[case("+map c?m1", "contains '?'")]
    #[case("+map [ab]", "contains '['")]
    #[test_log::test]
    fn args_refused(#[case] args: &str, #[case] why: &str) {
        let err = check_args(args).unwrap_err();
        assert_eq!(err.kind, Kind::InvalidConfig);
        assert!(
            err.message.starts_with(why),
            "{} (wanted {why})",
            err.message
        );
        assert!(err.hint.is_some());
    }

    #[rstest]
    #[case("")]
    #[case("-nohltv +sv_lan 0 +map c1m1_hotel -console")]
    #[case("-debuglog x -forked +sv_tags $x,a=b")]
    #[case("+exec server-123.cfg -tickrate 100")]
    #[test_log::test]
    fn args_accepted(#[case] args: &str) {
        check_args(args).unwrap();
    }

    #[test_log::test]
    fn instance_config_names_file_and_key_for_refused_args() {
        let text = "L4D2_PORT=1\nL4D2_ARGS=\"+map c1m1_hotel -autoupdate\"";
        let err = InstanceConfig::parse(text.as_bytes(), "instances/x/instance.env").unwrap_err();
        assert_eq!(err.kind.exit_code(), 11);
        assert!(
            err.message
                .starts_with("instances/x/instance.env: L4D2_ARGS: -autoupdate cannot work"),
            "{}",
            err.message
        );
        assert!(
            err.hint
                .unwrap()
                .contains("remove -autoupdate from L4D2_ARGS")
        );
    }

    #[test_log::test]
    fn too_many_overlays() {
        let names: Vec<String> = (0..=MAX_OVERLAYS).map(|i| format!("o{i}")).collect();
        let text = format!("L4D2_PORT=1\nL4D2_OVERLAYS=\"{}\"", names.join(" "));
        let err = InstanceConfig::parse(text.as_bytes(), "f").unwrap_err();
        assert!(err.message.contains("at most 498"), "{}", err.message);
    }
}
