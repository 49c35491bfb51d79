//! instance.env, read the way systemd's EnvironmentFile= reads it, for the
//! forms accepted here: `KEY=value`, `KEY="value"` (backslash escapes `\" \\ \$ \``),
//! `KEY='value'`, blank lines and whole-line `#`/`;` comments. Anything whose
//! meaning could differ between systemd and this parser is rejected with
//! file:line. Only `L4D2_*` keys are accepted (an allow-list: nothing the
//! loader, libc or the helper reads can get through), and the game gets them
//! through a copy the helper re-serialises ([`render`]), never the file itself.
//! Errors name the file, the line and the key, never a value.

use std::collections::HashMap;

use crate::cpus::{self, CpuList};
use crate::error::{Failure, Kind};
use crate::name::OverlayName;
use crate::ports::{self, Ports};

/// instance.env is a few lines; anything this large is not one.
pub(crate) const MAX_BYTES: usize = 64 * 1024;
/// What the game's copy adds to the values of instance.env: its header, the
/// resolved ports and the generation, well under this.
const RENDER_SLACK: usize = 1024;
/// overlayfs stacks at most 500 lower layers; two are the installation and
/// the per-instance layer.
pub(crate) const MAX_OVERLAYS: usize = 498;
/// The only keys instance.env may set start with this.
pub(crate) const KEY_PREFIX: &str = "L4D2_";
/// [`is_allowed_key`] as a regular expression, for the contract
/// (src/contract.rs, whose examples both are tested against).
pub(crate) const KEY_PATTERN: &str = "^L4D2_[A-Z0-9_]+$";

const SYNTAX_HINT: &str =
    "lines are KEY=value, KEY=\"value\" or KEY='value'; # starts a comment line";

/// One variable as the file sets it last, with the line that did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assignment {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstanceConfig {
    pub(crate) ports: Ports,
    /// From L4D2_CPUS, with its line; `None`: every CPU.
    pub(crate) cpus: Option<(CpuList, usize)>,
    /// Highest priority first.
    pub(crate) overlays: Vec<OverlayName>,
    /// Every variable, validated, in the order of their last assignment.
    pub(crate) vars: Vec<Assignment>,
}

/// Parses `KEY=VALUE` assignments; later assignments win, as in systemd.
pub(crate) fn parse_assignments(bytes: &[u8], origin: &str) -> Result<Vec<Assignment>, Failure> {
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
    let mut out: Vec<Assignment> = Vec::new();
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = index + 1;
        let at = |why: &str| {
            Failure::new(Kind::InvalidConfig, format!("{origin}:{line_no}: {why}"))
                .hint(SYNTAX_HINT)
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
        if !is_allowed_key(key) {
            return Err(Failure::new(
                Kind::InvalidConfig,
                format!(
                    "{origin}:{line_no}: {} may not be set here: instance.env sets only {KEY_PREFIX}* variables ({KEY_PREFIX} then A-Z 0-9 _)",
                    shown_key(key)
                ),
            )
            .hint("host-wide environment belongs in /etc/left4me/host.env (root-owned); the game gets nothing else from instance.env"));
        }
        let value = parse_value(rest.trim_start_matches([' ', '\t'])).map_err(|why| at(&why))?;
        if let Some(c) = value.chars().find(|c| c.is_control()) {
            return Err(Failure::new(
                Kind::InvalidConfig,
                format!(
                    "{origin}:{line_no}: the value of {} contains a control character (U+{:04X})",
                    shown_key(key),
                    u32::from(c)
                ),
            )
            .hint("values are printable text; remove tabs and other control characters"));
        }
        out.push(Assignment {
            key: key.to_owned(),
            value,
            line: line_no,
        });
    }
    // The last assignment of a key wins, in the order of the last ones; in
    // one pass, since a 64 KiB file of the service user's may hold 6,500
    // keys and root parses it (fifteenth review: a `retain` per line).
    let last: std::collections::HashMap<String, usize> = out
        .iter()
        .enumerate()
        .map(|(i, a)| (a.key.clone(), i))
        .collect();
    let mut i = 0;
    out.retain(|a| {
        i += 1;
        last[&a.key] == i - 1
    });
    Ok(out)
}

/// What instance.env may set: `L4D2_` and at least one of `A-Z 0-9 _`.
pub(crate) fn is_allowed_key(key: &str) -> bool {
    key.strip_prefix(KEY_PREFIX).is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    })
}

/// `vars` as a systemd EnvironmentFile= that yields exactly these values:
/// every value double-quoted, with the four characters systemd unescapes
/// inside double quotes (`" \ $ ``) escaped. Validated values hold no
/// newline or other control character.
pub(crate) fn render(vars: &[Assignment]) -> String {
    let mut out = String::from(
        "# Written by left4me-overlay at each mount from the instance's instance.env;\n# edit that file, not this one.\n",
    );
    out += &render_assignments(vars);
    out
}

/// `vars` as KEY="value" lines, quoted so that [`parse_assignments`] and
/// systemd both read back exactly `value`.
pub(crate) fn render_assignments(vars: &[Assignment]) -> String {
    let mut out = String::new();
    for a in vars {
        out.push_str(&a.key);
        out.push_str("=\"");
        for c in a.value.chars() {
            if matches!(c, '"' | '\\' | '$' | '`') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push_str("\"\n");
    }
    out
}

/// A key as a message quotes it: its first 64 characters. A key may be as
/// long as the file (64 KiB), and the message goes to the journal and into
/// the failure record (twenty-fifth review). Keys are ASCII.
fn shown_key(key: &str) -> String {
    const SHOWN: usize = 64;
    if key.len() <= SHOWN {
        return key.to_owned();
    }
    format!("{}… ({} characters)", &key[..SHOWN], key.len())
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
    pub(crate) fn parse(bytes: &[u8], origin: &str) -> Result<Self, Failure> {
        let vars = parse_assignments(bytes, origin)?;
        // Root writes the game's copy of these values at each mount, where
        // each of `" \ $ `` takes two bytes: a file of dollar signs made a
        // 128 KiB copy, past what the other instances' port check reads
        // and written as root (thirty-fifth review).
        let rendered = render_assignments(&vars).len();
        if rendered > MAX_BYTES - RENDER_SLACK {
            return Err(Failure::new(
                Kind::InvalidConfig,
                format!(
                    "{origin}: its values take {rendered} bytes once quoted for the game's environment, more than the {} they may (each \\, \", $ or ` takes two)",
                    MAX_BYTES - RENDER_SLACK
                ),
            )
            .hint("shorten the longest value (L4D2_ARGS, most likely)"));
        }
        let get = |key: &str| vars.iter().find(|a| a.key == key);
        let port_of = |a: &Assignment| {
            a.value
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| {
                    Failure::new(
                        Kind::InvalidConfig,
                        format!(
                            "{origin}:{}: {} must be a number from 1 to 65535",
                            a.line, a.key
                        ),
                    )
                    .hint(format!(
                        "set it to a UDP port, e.g. {}=27015 (docs/unit.md, \"Ports\")",
                        a.key
                    ))
                })
        };
        let port = match get("L4D2_PORT") {
            None => {
                return Err(Failure::new(
                    Kind::InvalidConfig,
                    format!("{origin}: L4D2_PORT is not set"),
                )
                .hint("add a line like L4D2_PORT=27015 (the UDP port srcds listens on)"));
            }
            Some(a) => port_of(a)?,
        };
        let optional_port = |key: &str| -> Result<Option<(u16, usize)>, Failure> {
            get(key)
                .map(|a| port_of(a).map(|p| (p, a.line)))
                .transpose()
        };
        let client = optional_port(ports::CLIENT_KEY)?;
        let tv = optional_port(ports::TV_KEY)?;
        let cpus = get(cpus::KEY)
            .map(|a| {
                CpuList::parse(&a.value).map(|c| (c, a.line)).map_err(|why| {
                    Failure::new(
                        Kind::InvalidConfig,
                        format!("{origin}:{}: {}: {why}", a.line, cpus::KEY),
                    )
                    .hint("a cpu list: 1, 0-3 or 0,2,4-5 (CPU numbers as in /sys/devices/system/cpu/online)")
                })
            })
            .transpose()?;
        let mut overlays: Vec<OverlayName> = Vec::new();
        if let Some(a) = get("L4D2_OVERLAYS") {
            let at = |why: String| {
                Failure::new(
                    Kind::InvalidConfig,
                    format!("{origin}:{}: L4D2_OVERLAYS: {why}", a.line),
                )
            };
            // Where each name was first listed: a repeat is looked up, not
            // searched for (a search over the list so far cost every full
            // listing of the instances 0.5 ms for each instance dir of 498
            // names, twenty-seventh review).
            let mut first_at: HashMap<&str, usize> = HashMap::new();
            for (i, word) in a.value.split_ascii_whitespace().enumerate() {
                // Before anything else: 16,000 short names in 64 KiB cost
                // root 0.27 s a parse (fifteenth review).
                if overlays.len() == MAX_OVERLAYS {
                    return Err(at(format!(
                        "more than {MAX_OVERLAYS} overlays; overlayfs stacks at most {MAX_OVERLAYS} besides the installation and instance layer"
                    ))
                    .hint("merge overlays into fewer directories"));
                }
                let name = OverlayName::parse(word).map_err(|f| {
                    at(format!("word {} {}", i + 1, f.message)).hint(f.hint.unwrap_or_default())
                })?;
                if let Some(first) = first_at.insert(word, i) {
                    return Err(at(format!(
                        "words {} and {} name the same overlay",
                        first + 1,
                        i + 1
                    ))
                    .hint("list each overlay once, highest priority first"));
                }
                overlays.push(name);
            }
        }
        if let Some(a) = get("L4D2_ARGS") {
            check_args(&a.value).map_err(|f| {
                Failure::new(
                    Kind::InvalidConfig,
                    format!("{origin}:{}: L4D2_ARGS: {}", a.line, f.message),
                )
                .hint(f.hint.unwrap_or_default())
            })?;
        }
        let args = get("L4D2_ARGS").map_or("", |a| a.value.as_str());
        Ok(InstanceConfig {
            ports: Ports::resolve(origin, port, client, tv, args)?,
            cpus,
            overlays,
            vars,
        })
    }
}

/// Characters of L4D2_ARGS that srcds_run's second split would undo
/// (check_args), and why.
pub(crate) const QUOTING: [char; 3] = ['"', '\'', '\\'];
pub(crate) const QUOTING_WHY: &str = "srcds_run splits its arguments again at every space, so quoting cannot keep an argument with spaces together";
/// Characters of L4D2_ARGS that srcds_run would expand as file names, and why.
pub(crate) const GLOBBING: [char; 3] = ['*', '?', '['];
pub(crate) const GLOBBING_WHY: &str =
    "srcds_run expands it as a file name pattern in the game directory";

/// srcds_run flags that cannot work in the game unit's sandbox, and why.
/// Matched without regard to case, as the engine reads its own flags.
pub(crate) const REFUSED_FLAGS: [(&str, &str); 7] = [
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
    ("-port", PORT_FLAG_WHY),
    ("+hostport", PORT_FLAG_WHY),
    ("+clientport", PORT_FLAG_WHY),
    ("+tv_port", PORT_FLAG_WHY),
];
const PORT_FLAG_WHY: &str = "the server unit passes the ports the helper checked (L4D2_PORT, L4D2_CLIENT_PORT, L4D2_TV_PORT); a second one here would bind a port nothing checked";

/// L4D2_ARGS reaches srcds through two splitters: systemd splits `$L4D2_ARGS`
/// at whitespace (honouring quotes), then Valve's srcds_run joins its
/// arguments and lets the shell split them again unquoted, which also
/// expands glob patterns against the game directory. So a quoted argument
/// with a space would silently turn into several, and `*`, `?` or `[` could
/// turn into a list of file names: both are refused, as are the srcds_run
/// flags that cannot work in the sandbox.
pub(crate) fn check_args(args: &str) -> Result<(), Failure> {
    if let Some(c) = args.chars().find(|c| QUOTING.contains(c)) {
        return Err(Failure::new(
            Kind::InvalidConfig,
            format!("contains {c:?}; {QUOTING_WHY}"),
        )
        .hint("pass only words without spaces; put values with spaces (hostname \"My Server\") into a cfg file of the instance layer and +exec it"));
    }
    if let Some(c) = args.chars().find(|c| GLOBBING.contains(c)) {
        return Err(Failure::new(
            Kind::InvalidConfig,
            format!("contains {c:?}; {GLOBBING_WHY}"),
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
        parse_assignments(text.replace("A=", "L4D2_A=").as_bytes(), "instance.env")
            .map(|v| v.last().unwrap().value.clone())
    }

    #[rstest]
    #[case("A=b", "b")]
    #[case("A=b  ", "b")]
    #[case("  L4D2_A = b", "b")]
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
        let err = parse_assignments(b"L4D2_A=1\nL4D2_B=\xff\xfesecret", "f").unwrap_err();
        assert_eq!(err.message, "f:2: not valid UTF-8");
    }

    #[rstest]
    #[case("LD_PRELOAD=/x.so")]
    #[case("LEFT4ME_USER=www-data")]
    #[case("PATH=/tmp/secret-path")]
    #[case("GLIBC_TUNABLES=secret-tunable")]
    #[case("l4d2_port=secret-port")]
    #[case("L4D2_=secret-empty-suffix")]
    #[case("L4D2_port=secret-lowercase")]
    #[test_log::test]
    fn only_l4d2_keys_are_allowed_and_the_value_is_never_echoed(#[case] line: &str) {
        let text = format!("# c\nL4D2_PORT=1\n{line}\n");
        let err = parse_assignments(text.as_bytes(), "f").unwrap_err();
        let (key, value) = line.split_once('=').unwrap();
        assert_eq!(err.kind, Kind::InvalidConfig);
        assert!(
            err.message
                .starts_with(&format!("f:3: {key} may not be set here")),
            "{}",
            err.message
        );
        // Every value is distinctive, so this check runs in every case.
        assert!(!err.message.contains(value), "{}", err.message);
        assert!(
            !err.hint.as_deref().unwrap_or_default().contains(value),
            "{:?}",
            err.hint
        );
        assert!(err.hint.unwrap().contains("/etc/left4me/host.env"));
    }

    #[rstest]
    #[case("L4D2_X=\"a\tb\"", "U+0009")]
    #[case("L4D2_X='\u{1b}[31m'", "U+001B")]
    #[case("L4D2_X=a\u{7f}", "U+007F")]
    #[case("L4D2_X=a\u{85}", "U+0085")]
    #[test_log::test]
    fn control_characters_are_refused_by_position_not_shown(
        #[case] line: &str,
        #[case] code: &str,
    ) {
        let err = parse_assignments(line.as_bytes(), "f").unwrap_err();
        assert_eq!(
            err.message,
            format!("f:1: the value of L4D2_X contains a control character ({code})")
        );
    }

    /// What [`render`] writes, systemd (and this parser, which reads what
    /// systemd reads) reads back as exactly the validated value.
    #[rstest]
    #[case("plain")]
    #[case("")]
    #[case(" spaces  around ")]
    #[case("+map c1m1_hotel +sv_lan 0")]
    #[case("q\"uote \\ back $HOME ${X} `cmd` 'single'")]
    #[case("\\n \\t \\\\ trailing\\")]
    #[case("# not a comment ; nor this")]
    #[case("caf\u{e9} \u{1f600}")]
    #[test_log::test]
    fn render_round_trips(#[case] value: &str) {
        let vars = vec![
            Assignment {
                key: "L4D2_PORT".into(),
                value: "27015".into(),
                line: 1,
            },
            Assignment {
                key: "L4D2_X".into(),
                value: value.into(),
                line: 2,
            },
        ];
        let text = render(&vars);
        let back = parse_assignments(text.as_bytes(), "copy").unwrap();
        let pairs: Vec<(&str, &str)> = back
            .iter()
            .map(|a| (a.key.as_str(), a.value.as_str()))
            .collect();
        assert_eq!(pairs, [("L4D2_PORT", "27015"), ("L4D2_X", value)], "{text}");
        assert!(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .all(|l| l.ends_with('"'))
        );
    }

    #[test_log::test]
    fn the_copy_holds_the_last_assignment_of_each_key() {
        let cfg = InstanceConfig::parse(
            b"L4D2_PORT=1\nL4D2_ARGS=a\nL4D2_PORT=2\nL4D2_HEALTH_X=y\n",
            "f",
        )
        .unwrap();
        let text = render(&cfg.vars);
        let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            body,
            ["L4D2_ARGS=\"a\"", "L4D2_PORT=\"2\"", "L4D2_HEALTH_X=\"y\""]
        );
        assert_eq!(cfg.ports.game, 2);
    }

    /// 65,505 bytes of `$` in L4D2_ARGS made root's copy for the game
    /// 131,138 bytes (thirty-fifth review); the file is refused instead,
    /// and what fits keeps its copy within the 64 KiB its readers take.
    #[test_log::test]
    fn values_that_quote_past_the_copys_size_are_refused() {
        let dollars = |n: usize| format!("L4D2_PORT=27015\nL4D2_ARGS='{}'\n", "$".repeat(n));
        let err = InstanceConfig::parse(dollars(40_000).as_bytes(), "i.env").unwrap_err();
        assert_eq!(err.kind, Kind::InvalidConfig);
        assert!(
            err.message
                .starts_with("i.env: its values take 80031 bytes once quoted"),
            "{}",
            err.message
        );
        let fits = InstanceConfig::parse(dollars(30_000).as_bytes(), "i.env").unwrap();
        assert!(render(&fits.vars).len() + RENDER_SLACK <= MAX_BYTES);
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
    #[case("L4D2_PORT='65535'\nL4D2_OVERLAYS=\nL4D2_CLIENT_PORT=1\nL4D2_TV_PORT=2", 65535, &[])]
    #[test_log::test]
    fn instance_config(#[case] text: &str, #[case] port: u16, #[case] overlays: &[&str]) {
        let cfg = InstanceConfig::parse(text.as_bytes(), "f").unwrap();
        assert_eq!(cfg.ports.game, port);
        let names: Vec<String> = cfg.overlays.iter().map(OverlayName::to_string).collect();
        assert_eq!(names, overlays);
    }

    #[rstest]
    #[case("L4D2_OVERLAYS=a", "f: L4D2_PORT is not set")]
    #[case("L4D2_PORT=0", "f:1: L4D2_PORT must be a number from 1 to 65535")]
    #[case("L4D2_PORT=65536", "f:1: L4D2_PORT must be a number from 1 to 65535")]
    #[case(
        "\nL4D2_PORT=hunter2-secret",
        "f:2: L4D2_PORT must be a number from 1 to 65535"
    )]
    #[case(
        "L4D2_PORT=1\nL4D2_OVERLAYS=\"a ../etc\"",
        "f:2: L4D2_OVERLAYS: word 2 is not a valid overlay name: character 1 is not allowed there"
    )]
    #[case(
        "L4D2_PORT=1\nL4D2_OVERLAYS=\"a,workdir=/tmp\"",
        "f:2: L4D2_OVERLAYS: word 1 is not a valid overlay name: character 2 is not allowed there"
    )]
    #[case(
        "L4D2_PORT=1\nL4D2_OVERLAYS=\"a:b\"",
        "f:2: L4D2_OVERLAYS: word 1 is not a valid overlay name: character 2 is not allowed there"
    )]
    #[case(
        "L4D2_PORT=1\nL4D2_OVERLAYS=\"a b a\"",
        "f:2: L4D2_OVERLAYS: words 1 and 3 name the same overlay"
    )]
    #[test_log::test]
    fn instance_config_rejects_with_a_hint_and_no_value(#[case] text: &str, #[case] message: &str) {
        let err = InstanceConfig::parse(text.as_bytes(), "f").unwrap_err();
        assert_eq!(err.kind, Kind::InvalidConfig);
        assert_eq!(err.message, message);
        assert!(err.hint.is_some(), "{message}");
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
                .starts_with("instances/x/instance.env:2: L4D2_ARGS: -autoupdate cannot work"),
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
    fn the_last_assignment_of_a_key_wins_in_the_order_of_the_last_ones() {
        let got =
            parse_assignments(b"L4D2_A=1\nL4D2_B=2\nL4D2_A=3\nL4D2_C=4\nL4D2_B=5", "f").unwrap();
        let seen: Vec<(&str, &str, usize)> = got
            .iter()
            .map(|a| (a.key.as_str(), a.value.as_str(), a.line))
            .collect();
        assert_eq!(
            seen,
            [("L4D2_A", "3", 3), ("L4D2_C", "4", 4), ("L4D2_B", "5", 5)]
        );
    }

    #[test]
    fn too_many_overlays() {
        let names: Vec<String> = (0..=MAX_OVERLAYS).map(|i| format!("o{i}")).collect();
        let text = format!("L4D2_PORT=1\nL4D2_OVERLAYS=\"{}\"", names.join(" "));
        let err = InstanceConfig::parse(text.as_bytes(), "f").unwrap_err();
        assert!(err.message.contains("at most 498"), "{}", err.message);
        assert!(err.hint.is_some());
    }
}
