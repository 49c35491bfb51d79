//! The contract: every rule this crate enforces on what others write for it
//! (instance and overlay names, instance.env, srcds arguments, the health
//! check's settings, the state dir's default), gathered from the modules
//! that enforce them into one value. `--generate contract` prints it as
//! JSON; dist/contract.json is that output, checked in (a test keeps it
//! current), and what the NixOS module builds its types and assertions from,
//! so a rule is changed in one place and regenerated, never retyped.

use serde::Serialize;

use crate::cpus;
use crate::envfile;
use crate::health::settings::{self, KnobKind};
use crate::name;
use crate::ports;

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
    /// What the pattern must accept and refuse: this crate's parser is
    /// tested against them, and so is every consumer's use of the pattern.
    examples: Examples,
}

#[derive(Debug, Serialize)]
struct Examples {
    accepted: Vec<String>,
    refused: Vec<String>,
}

fn examples(accepted: &[&str], refused: &[&str]) -> Examples {
    let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
    Examples {
        accepted: own(accepted),
        refused: own(refused),
    }
}

#[derive(Debug, Serialize)]
struct EnvRule {
    max_bytes: usize,
    key_prefix: &'static str,
    key_pattern: &'static str,
    key_examples: Examples,
    max_overlays: usize,
    port: Range,
    ports: PortRule,
    cpus: CpusRule,
}

/// L4D2_CPUS (src/cpus.rs). The pattern is the list's syntax; a range that
/// runs backwards or a CPU above the bound passes it and is refused by the
/// helper, as is a CPU the host lacks (at mount).
#[derive(Debug, Serialize)]
struct CpusRule {
    key: &'static str,
    pattern: &'static str,
    examples: Examples,
}

/// The ports an instance binds besides L4D2_PORT (src/ports.rs): each key
/// sets one explicitly, otherwise it is L4D2_PORT plus its offset. The
/// SourceTV port is bound unless L4D2_ARGS has `no_tv_flag` (any case).
/// Two instances may share none of their ports.
#[derive(Debug, Serialize)]
struct PortRule {
    client_key: &'static str,
    client_offset: u16,
    tv_key: &'static str,
    tv_offset: u16,
    no_tv_flag: &'static str,
}

#[derive(Debug, Serialize)]
struct Range {
    min: u32,
    max: u32,
}

#[derive(Debug, Serialize)]
struct ArgsRule {
    /// Characters refused anywhere in L4D2_ARGS, each with why.
    refused_characters: Vec<RefusedCharacter>,
    /// Matched as whole words, regardless of case.
    refused_flags: Vec<RefusedFlag>,
    examples: Examples,
}

#[derive(Debug, Serialize)]
struct RefusedCharacter {
    character: char,
    why: &'static str,
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
    let name_rule = |max: usize| NameRule {
        max_length: max,
        pattern: name::pattern(max),
        examples: examples(
            &["a", "vs1", "Coop-2_x", "0", &"x".repeat(max)],
            &[
                "",
                "-a",
                "_a",
                "a.b",
                "a b",
                "a/b",
                "..",
                &"x".repeat(max + 1),
            ],
        ),
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
            key_examples: examples(
                &["L4D2_PORT", "L4D2_ARGS", "L4D2_HEALTH_FAILURES", "L4D2_X9_"],
                &[
                    "L4D2_",
                    "L4D2_port",
                    "l4d2_PORT",
                    "LD_PRELOAD",
                    "PATH",
                    "LEFT4ME_USER",
                    "L4D2-X",
                ],
            ),
            max_overlays: envfile::MAX_OVERLAYS,
            port: Range {
                min: 1,
                max: u32::from(u16::MAX),
            },
            ports: PortRule {
                client_key: ports::CLIENT_KEY,
                client_offset: ports::CLIENT_OFFSET,
                tv_key: ports::TV_KEY,
                tv_offset: ports::TV_OFFSET,
                no_tv_flag: ports::NO_TV_FLAG,
            },
            cpus: CpusRule {
                key: cpus::KEY,
                pattern: cpus::PATTERN,
                examples: examples(
                    &["1", "0-3", "0,2,4-5", "7,1"],
                    &["", "1,", " 1", "-1", "a", "1 2", "0x1"],
                ),
            },
        },
        srcds_args: ArgsRule {
            refused_characters: envfile::QUOTING
                .iter()
                .map(|&character| RefusedCharacter {
                    character,
                    why: envfile::QUOTING_WHY,
                })
                .chain(envfile::GLOBBING.iter().map(|&character| RefusedCharacter {
                    character,
                    why: envfile::GLOBBING_WHY,
                }))
                .collect(),
            refused_flags: envfile::REFUSED_FLAGS
                .iter()
                .map(|&(flag, why)| RefusedFlag { flag, why })
                .collect(),
            examples: examples(
                &[
                    "",
                    "-nohltv +map c1m1_hotel",
                    "+sv_tags $x,a=b",
                    "-debuglog x -forked",
                    "+hostname `x`",
                ],
                &[
                    "+map c1 -AutoUpdate",
                    "-nohltv\t-fork 4",
                    "+hostname \"a b\"",
                    "+exec *.cfg",
                    "x?",
                    "[a]",
                    "a\\b",
                    "'q'",
                ],
            ),
        },
        health: settings::KNOBS
            .iter()
            .map(|k| match k.kind {
                KnobKind::Seconds { at_least } => Setting {
                    key: k.key,
                    default: k.default,
                    unit: "seconds",
                    min: at_least.unwrap_or(0.0),
                    min_exclusive: at_least.is_none(),
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

    /// The parsers agree with the examples the contract hands to every
    /// other user of its patterns (tests/nixos-eval checks the NixOS
    /// module's against the same examples).
    #[test_log::test]
    fn the_parsers_agree_with_the_examples() {
        let c = contract();
        assert_eq!(c.instance_name.pattern, "^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$");
        for ok in &c.instance_name.examples.accepted {
            assert!(name::InstanceName::parse(ok).is_ok(), "{ok:?}");
        }
        for bad in &c.instance_name.examples.refused {
            assert!(name::InstanceName::parse(bad).is_err(), "{bad:?}");
        }
        for ok in &c.overlay_name.examples.accepted {
            assert!(name::OverlayName::parse(ok).is_ok(), "{ok:?}");
        }
        for bad in &c.overlay_name.examples.refused {
            assert!(name::OverlayName::parse(bad).is_err(), "{bad:?}");
        }
        for ok in &c.srcds_args.examples.accepted {
            assert!(envfile::check_args(ok).is_ok(), "{ok:?}");
        }
        for bad in &c.srcds_args.examples.refused {
            assert!(envfile::check_args(bad).is_err(), "{bad:?}");
        }
        for ok in &c.instance_env.cpus.examples.accepted {
            assert!(crate::cpus::CpuList::parse(ok).is_ok(), "{ok:?}");
        }
        for bad in &c.instance_env.cpus.examples.refused {
            assert!(crate::cpus::CpuList::parse(bad).is_err(), "{bad:?}");
        }
        for ok in &c.instance_env.key_examples.accepted {
            assert!(envfile::is_allowed_key(ok), "{ok:?}");
        }
        for bad in &c.instance_env.key_examples.refused {
            assert!(!envfile::is_allowed_key(bad), "{bad:?}");
        }
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
