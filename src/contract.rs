//! The contract: every rule this crate enforces on what others write for it
//! (instance and overlay names, instance.env, srcds arguments, the health
//! check's settings, the state dir's default), gathered from the modules
//! that enforce them into one value. `--generate contract` prints it as
//! JSON; dist/contract.json is that output, checked in (a test keeps it
//! current), and what the NixOS module builds its types and assertions from,
//! so a rule is changed in one place and regenerated, never retyped.

use serde::Serialize;

use crate::envfile;
use crate::health::settings::{self, KnobKind};
use crate::name;

/// Bumped when a consumer must change with the file, not when a value does.
const FORMAT: u32 = 1;

#[derive(Debug, Serialize)]
pub(crate) struct Contract {
    format: u32,
    state_dir_default: &'static str,
    instance_name: NameRule,
    overlay_name: NameRule,
    instance_env: EnvRule,
    srcds_args: ArgsRule,
    health: Vec<Setting>,
}

#[derive(Debug, Serialize)]
struct NameRule {
    max_length: usize,
    /// Anchored; first character a letter or digit, then also `_` and `-`.
    pattern: String,
}

#[derive(Debug, Serialize)]
struct EnvRule {
    max_bytes: usize,
    key_prefix: &'static str,
    key_pattern: &'static str,
    max_overlays: usize,
    port: Range,
}

#[derive(Debug, Serialize)]
struct Range {
    min: u32,
    max: u32,
}

#[derive(Debug, Serialize)]
struct ArgsRule {
    /// srcds_run splits its arguments again: quoting cannot work.
    refused_quoting: Vec<char>,
    /// srcds_run would expand them as file names.
    refused_globbing: Vec<char>,
    /// Matched as whole words, regardless of case.
    refused_flags: Vec<RefusedFlag>,
}

#[derive(Debug, Serialize)]
struct RefusedFlag {
    flag: &'static str,
    why: &'static str,
}

#[derive(Debug, Serialize)]
struct Setting {
    key: &'static str,
    default: f64,
    /// "seconds" (decimals allowed) or "count" (whole numbers).
    unit: &'static str,
    min: f64,
    /// Whether `min` itself is refused (durations that must be more than 0).
    min_exclusive: bool,
    max: f64,
}

pub(crate) fn contract() -> Contract {
    let name_rule = |max| NameRule {
        max_length: max,
        pattern: name::pattern(max),
    };
    Contract {
        format: FORMAT,
        state_dir_default: crate::cli::STATE_DIR_DEFAULT,
        instance_name: name_rule(name::INSTANCE_MAX),
        overlay_name: name_rule(name::OVERLAY_MAX),
        instance_env: EnvRule {
            max_bytes: envfile::MAX_BYTES,
            key_prefix: envfile::KEY_PREFIX,
            key_pattern: envfile::KEY_PATTERN,
            max_overlays: envfile::MAX_OVERLAYS,
            port: Range {
                min: 1,
                max: u32::from(u16::MAX),
            },
        },
        srcds_args: ArgsRule {
            refused_quoting: envfile::QUOTING.to_vec(),
            refused_globbing: envfile::GLOBBING.to_vec(),
            refused_flags: envfile::REFUSED_FLAGS
                .iter()
                .map(|&(flag, why)| RefusedFlag { flag, why })
                .collect(),
        },
        health: settings::KNOBS
            .iter()
            .map(|k| match k.kind {
                KnobKind::Seconds { zero_ok } => Setting {
                    key: k.key,
                    default: k.default,
                    unit: "seconds",
                    min: 0.0,
                    min_exclusive: !zero_ok,
                    max: settings::MAX_SECONDS,
                },
                KnobKind::Count { min } => Setting {
                    key: k.key,
                    default: k.default,
                    unit: "count",
                    min: f64::from(min),
                    min_exclusive: false,
                    max: f64::from(settings::MAX_COUNT),
                },
            })
            .collect(),
    }
}

/// The contract as dist/contract.json holds it.
pub(crate) fn json() -> String {
    let mut text = serde_json::to_string_pretty(&contract()).expect("the contract serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dist/contract.json is what the NixOS module reads: it must be this
    /// crate's rules, regenerated with
    /// `cargo run --bin left4me-overlay -- --generate contract > dist/contract.json`.
    #[test_log::test]
    fn the_checked_in_contract_is_current() {
        let checked_in = include_str!("../dist/contract.json");
        assert!(
            checked_in == json(),
            "dist/contract.json is stale: regenerate it with `cargo run --bin left4me-overlay -- --generate contract > dist/contract.json`"
        );
    }

    #[test_log::test]
    fn the_name_pattern_says_what_the_parser_does() {
        let rule = name::pattern(name::INSTANCE_MAX);
        assert_eq!(rule, "^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$");
        for ok in ["a", "vs1", "Coop-2_x", &"x".repeat(32)] {
            assert!(name::InstanceName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "_a", "a.b", "a b", &"x".repeat(33)] {
            assert!(name::InstanceName::parse(bad).is_err(), "{bad}");
        }
    }

    /// The polkit rule matches instance units by the same name rule (it
    /// cannot read the contract: polkit's JavaScript has no file access).
    #[test_log::test]
    fn the_polkit_rule_uses_the_name_rule() {
        let rule = include_str!("../dist/left4me.rules.in");
        let body = name::pattern(name::INSTANCE_MAX);
        let body = body.trim_start_matches('^').trim_end_matches('$');
        assert!(
            rule.contains(&format!("\"@{body}\\\\.service$\"")),
            "dist/left4me.rules.in does not match instance names by {body}"
        );
    }

    /// host.env's commented defaults are the health check's.
    #[test_log::test]
    fn host_env_shows_the_built_in_defaults() {
        let host_env = include_str!("../dist/host.env.in");
        for k in settings::KNOBS {
            let line = format!("#{}={}\n", k.key, k.default);
            assert!(host_env.contains(&line), "dist/host.env.in lacks {line:?}");
        }
    }
}
