//! Instance and overlay names. They become path components, systemd instance
//! names and parts of overlayfs option strings, so only a conservative charset
//! is accepted: nothing that can be a path, `..`, or an option separator.

use std::fmt;

use crate::error::{Failure, Kind};

pub(crate) const INSTANCE_MAX: usize = 32;
pub(crate) const OVERLAY_MAX: usize = 64;

/// The name rule as a regular expression (ECMAScript and POSIX ERE alike),
/// for what checks names outside this crate: the NixOS module (through the
/// contract, src/contract.rs).
pub(crate) fn pattern(max: usize) -> String {
    format!("^[A-Za-z0-9][A-Za-z0-9_-]{{0,{}}}$", max - 1)
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct InstanceName(String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OverlayName(String);

impl InstanceName {
    /// From the command line: the message shows the name as given.
    pub(crate) fn parse(raw: &str) -> Result<Self, Failure> {
        validate("instance", raw, INSTANCE_MAX)
            .map_err(|f| f.prefixed(&format!("invalid instance name {raw:?}: ")))?;
        Ok(InstanceName(raw.to_owned()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl OverlayName {
    /// From instance.env: the message does not echo the name (a value of
    /// a user-written file), only what is wrong with it.
    pub(crate) fn parse(raw: &str) -> Result<Self, Failure> {
        validate("overlay", raw, OVERLAY_MAX)
            .map_err(|f| f.prefixed("is not a valid overlay name: "))?;
        Ok(OverlayName(raw.to_owned()))
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for OverlayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks `raw` against the charset; the failure says why, for the caller
/// to prefix with what it may show of the name.
fn validate(what: &str, raw: &str, max: usize) -> Result<(), Failure> {
    let invalid = |why: String| {
        Failure::new(Kind::InvalidName, why).hint(format!(
            "{what} names are 1-{max} characters of A-Z a-z 0-9 _ -, starting with a letter or digit"
        ))
    };
    if raw.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    let len = raw.chars().count();
    if len > max {
        return Err(invalid(format!("it is {len} characters long")));
    }
    for (pos, c) in raw.chars().enumerate() {
        let allowed = c.is_ascii_alphanumeric() || (pos > 0 && (c == '_' || c == '-'));
        if !allowed {
            return Err(invalid(format!(
                "character {} is not allowed there",
                pos + 1
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("vs1")]
    #[case("a")]
    #[case("Coop-2_x")]
    #[case("0")]
    #[case(&"x".repeat(32))]
    #[test_log::test]
    fn accepts_instance_names(#[case] name: &str) {
        assert_eq!(InstanceName::parse(name).unwrap().as_str(), name);
    }

    #[rstest]
    #[case("", "empty")]
    #[case(&"x".repeat(33), "33 characters")]
    #[case("..", "character 1")]
    #[case(".hidden", "character 1")]
    #[case("a/b", "character 2")]
    #[case("../etc", "character 1")]
    #[case("-rf", "character 1")]
    #[case("_x", "character 1")]
    #[case("a,upperdir=x", "character 2")]
    #[case("a:b", "character 2")]
    #[case("a=b", "character 2")]
    #[case("a b", "character 2")]
    #[case("a\tb", "character 2")]
    #[case("a\nb", "character 2")]
    #[case("a\0b", "character 2")]
    // execve cannot carry a NUL in an argument, so only this level sees one.
    #[case("vs1\0", "character 4")]
    #[case("vs1.service", "character 4")]
    #[case("caf\u{e9}", "character 4")]
    #[case("a\\x2d", "character 2")]
    #[case("a@b", "character 2")]
    #[test_log::test]
    fn rejects_instance_names(#[case] name: &str, #[case] why: &str) {
        let err = InstanceName::parse(name).unwrap_err();
        assert_eq!(err.kind, Kind::InvalidName);
        assert!(err.message.contains(why), "{}", err.message);
        assert!(err.hint.unwrap().contains("1-32 characters"));
    }

    #[rstest]
    #[case(&"o".repeat(64), true)]
    #[case(&"o".repeat(65), false)]
    #[case("sourcemod", true)]
    #[case("confogl,lowerdir=/", false)]
    #[test_log::test]
    fn overlay_names(#[case] name: &str, #[case] ok: bool) {
        assert_eq!(OverlayName::parse(name).is_ok(), ok, "{name}");
    }

    #[test_log::test]
    fn overlay_name_errors_do_not_echo_the_name() {
        let err = OverlayName::parse("secret,lowerdir=/").unwrap_err();
        assert_eq!(
            err.message,
            "is not a valid overlay name: character 7 is not allowed there"
        );
        let err = InstanceName::parse("a/b").unwrap_err();
        assert_eq!(
            err.message,
            "invalid instance name \"a/b\": character 2 is not allowed there"
        );
    }
}
