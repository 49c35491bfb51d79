//! The health check's settings, from its environment: host.env gives the
//! host's defaults and the instance's validated instance.env copy overrides
//! them (both are EnvironmentFile= of left4me-health@.service, like the
//! server's). Unset means the built-in default. LEFT4ME_UPDATE_RESTART, the
//! update restart policy, is host-wide: the helper passes only L4D2_* keys
//! from instance.env.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::rollover::policy_from_lookup;
use crate::error::{Failure, Kind};
use crate::generation::RestartPolicy;

pub(crate) const PORT: &str = "L4D2_PORT";
pub(crate) const GRACE: &str = "L4D2_HEALTH_GRACE_SEC";
pub(crate) const INTERVAL: &str = "L4D2_HEALTH_INTERVAL_SEC";
pub(crate) const TIMEOUT: &str = "L4D2_HEALTH_TIMEOUT_SEC";
pub(crate) const FAILURES: &str = "L4D2_HEALTH_FAILURES";
pub(crate) const RESTARTS_MAX: &str = "L4D2_HEALTH_RESTARTS_MAX";
pub(crate) const RESTARTS_WINDOW: &str = "L4D2_HEALTH_RESTARTS_WINDOW_SEC";
pub(crate) const MAP_LOAD: &str = "L4D2_HEALTH_MAP_LOAD_SEC";
pub(crate) const STEAM_UPDATE: &str = "L4D2_HEALTH_STEAM_UPDATE_SEC";

/// Longest accepted duration: 30 days. Larger values are typos, and keep
/// the arithmetic far from overflow.
pub(crate) const MAX_SECONDS: f64 = 30.0 * 86400.0;
/// The shortest `L4D2_HEALTH_INTERVAL_SEC`.
pub(crate) const MIN_INTERVAL: f64 = 0.5;
/// Largest accepted count.
pub(crate) const MAX_COUNT: u32 = 1000;

/// One numeric setting of the health check: its key, its built-in default
/// and what it accepts. The one definition of these (the contract,
/// src/contract.rs, hands it to host.env's comments, the docs and the
/// NixOS module).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Knob {
    pub(crate) key: &'static str,
    pub(crate) default: f64,
    pub(crate) kind: KnobKind,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum KnobKind {
    /// Seconds, decimals allowed, at most [`MAX_SECONDS`] and at least
    /// `at_least`, or more than 0 where that is None.
    Seconds { at_least: Option<f64> },
    /// A whole number from `min` to [`MAX_COUNT`].
    Count { min: u32 },
}

pub(crate) const KNOBS: [Knob; 8] = [
    Knob {
        key: GRACE,
        default: 120.0,
        kind: KnobKind::Seconds {
            at_least: Some(0.0),
        },
    },
    Knob {
        key: INTERVAL,
        default: 10.0,
        // Each round is a query and up to three systemctl calls (the
        // server's figures, the update unit, the metrics prune): with no
        // floor a check spun at 190 of them a second (tenth review).
        kind: KnobKind::Seconds {
            at_least: Some(MIN_INTERVAL),
        },
    },
    Knob {
        key: TIMEOUT,
        default: 2.0,
        kind: KnobKind::Seconds { at_least: None },
    },
    Knob {
        key: FAILURES,
        // 4 × 10 s: a hang is restarted 32-42 s after the server falls
        // silent. A map load is recognised in the game's output and gets
        // MAP_LOAD instead (docs/health.md, "A map change is not a hang").
        default: 4.0,
        kind: KnobKind::Count { min: 1 },
    },
    Knob {
        key: RESTARTS_MAX,
        default: 3.0,
        kind: KnobKind::Count { min: 0 },
    },
    Knob {
        key: RESTARTS_WINDOW,
        default: 3600.0,
        kind: KnobKind::Seconds { at_least: None },
    },
    Knob {
        key: MAP_LOAD,
        // As long as the start-up grace, the first map's load: LinuxGSM's
        // monitor needed about 60 s (#61, #3208, #4343); twice that.
        default: 120.0,
        kind: KnobKind::Seconds {
            at_least: Some(0.0),
        },
    },
    Knob {
        key: STEAM_UPDATE,
        // The "at most once per hour"; 0 turns it off.
        default: 3600.0,
        kind: KnobKind::Seconds {
            at_least: Some(0.0),
        },
    },
];

fn knob(key: &str) -> Knob {
    *KNOBS
        .iter()
        .find(|k| k.key == key)
        .expect("a knob of KNOBS")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Settings {
    pub port: u16,
    /// No query before this long after the start: the real game loads a map first.
    pub grace_sec: f64,
    /// One query every this long (measured start to start).
    pub interval_sec: f64,
    /// A query without an answer this long after it was sent has failed.
    pub timeout_sec: f64,
    /// This many failed queries in a row mean the server hangs.
    pub failures: u32,
    /// At most this many restarts by the health check within the window;
    /// when another one is due, the server is stopped as failed instead.
    pub restarts_max: u32,
    pub restarts_window_sec: f64,
    /// LEFT4ME_UPDATE_RESTART (host.env only). Records written before it
    /// existed read as the default.
    #[serde(default)]
    pub update_restart: RestartPolicy,
    /// After the game logs a map change, silence is a map load for this
    /// long, not a failure (0: map changes are not told apart).
    #[serde(default = "default_map_load")]
    pub map_load_sec: f64,
    /// When the game logs Steam's "needs to be restarted" notice, queue an
    /// update unless left4me-update.service started less than this long
    /// ago (0: never).
    #[serde(default = "default_steam_update")]
    pub steam_update_sec: f64,
}

fn default_map_load() -> f64 {
    knob(MAP_LOAD).default
}

fn default_steam_update() -> f64 {
    knob(STEAM_UPDATE).default
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            port: 27015,
            grace_sec: knob(GRACE).default,
            interval_sec: knob(INTERVAL).default,
            timeout_sec: knob(TIMEOUT).default,
            failures: knob(FAILURES).default as u32,
            restarts_max: knob(RESTARTS_MAX).default as u32,
            restarts_window_sec: knob(RESTARTS_WINDOW).default,
            update_restart: RestartPolicy::WhenEmpty,
            map_load_sec: default_map_load(),
            steam_update_sec: default_steam_update(),
        }
    }
}

impl Settings {
    /// Reads the settings through `lookup` (the process environment in
    /// production). The port has no default: without it there is nothing to ask.
    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Failure> {
        let port = match lookup(PORT) {
            Some(raw) => raw
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| invalid(PORT, &raw, "not a port number (1-65535)", "27015"))?,
            None => {
                return Err(Failure::new(
                    Kind::InvalidConfig,
                    format!("{PORT} is not set: the health check does not know which port to ask"),
                )
                .hint(
                    "set L4D2_PORT in /etc/left4me/host.env or the instance's instance.env, \
                     as for the server",
                ));
            }
        };
        Ok(Settings {
            port,
            grace_sec: seconds(&lookup, knob(GRACE))?,
            interval_sec: seconds(&lookup, knob(INTERVAL))?,
            timeout_sec: seconds(&lookup, knob(TIMEOUT))?,
            failures: count(&lookup, knob(FAILURES))?,
            restarts_max: count(&lookup, knob(RESTARTS_MAX))?,
            restarts_window_sec: seconds(&lookup, knob(RESTARTS_WINDOW))?,
            update_restart: policy_from_lookup(&lookup)?,
            map_load_sec: seconds(&lookup, knob(MAP_LOAD))?,
            steam_update_sec: seconds(&lookup, knob(STEAM_UPDATE))?,
        })
    }

    pub(crate) fn grace(&self) -> Duration {
        Duration::from_secs_f64(self.grace_sec)
    }
    pub(crate) fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.interval_sec)
    }
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_sec)
    }
    pub(crate) fn restarts_window_ms(&self) -> u64 {
        (self.restarts_window_sec * 1000.0) as u64
    }
    pub(crate) fn map_load_ms(&self) -> u64 {
        (self.map_load_sec * 1000.0) as u64
    }
}

fn invalid(key: &str, raw: &str, why: &str, example: &str) -> Failure {
    Failure::new(Kind::InvalidConfig, format!("{key}={raw:?}: {why}")).hint(format!(
        "fix it in /etc/left4me/host.env or the instance's instance.env, e.g. {key}={example}"
    ))
}

fn seconds(lookup: &impl Fn(&str) -> Option<String>, knob: Knob) -> Result<f64, Failure> {
    let (key, default) = (knob.key, knob.default);
    let at_least = match knob.kind {
        KnobKind::Seconds { at_least } => at_least,
        KnobKind::Count { .. } => None,
    };
    let Some(raw) = lookup(key) else {
        return Ok(default);
    };
    let example = default.to_string();
    // Digits with an optional fraction only: no signs, exponents, "inf" or "nan".
    let t = raw.trim();
    let well_formed = !t.is_empty()
        && t.chars().all(|c| c.is_ascii_digit() || c == '.')
        && t.matches('.').count() <= 1
        && t.chars().any(|c| c.is_ascii_digit());
    let value: f64 = well_formed
        .then(|| t.parse().ok())
        .flatten()
        .ok_or_else(|| invalid(key, &raw, "not a number of seconds", &example))?;
    match at_least {
        None if value == 0.0 => return Err(invalid(key, &raw, "must be more than 0", &example)),
        Some(min) if value < min => {
            return Err(invalid(
                key,
                &raw,
                &format!("must be at least {min}"),
                &example,
            ));
        }
        _ => {}
    }
    if value > MAX_SECONDS {
        return Err(invalid(
            key,
            &raw,
            "more than 30 days; is the unit wrong? (the value is in seconds)",
            &example,
        ));
    }
    Ok(value)
}

fn count(lookup: &impl Fn(&str) -> Option<String>, knob: Knob) -> Result<u32, Failure> {
    let (key, default) = (knob.key, knob.default as u32);
    let min = match knob.kind {
        KnobKind::Count { min } => min,
        KnobKind::Seconds { .. } => 0,
    };
    let Some(raw) = lookup(key) else {
        return Ok(default);
    };
    let t = raw.trim();
    let value = t
        .chars()
        .all(|c| c.is_ascii_digit())
        .then(|| t.parse::<u32>().ok())
        .flatten()
        .filter(|&v| v <= MAX_COUNT)
        .ok_or_else(|| {
            invalid(
                key,
                &raw,
                "not a whole number up to 1000",
                &default.to_string(),
            )
        })?;
    if value < min {
        return Err(invalid(
            key,
            &raw,
            &format!("must be at least {min}"),
            &default.to_string(),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings, Failure> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_apply_when_unset() {
        let s = from(&[(PORT, "27016")]).unwrap();
        assert_eq!(
            s,
            Settings {
                port: 27016,
                ..Settings::default()
            }
        );
        assert_eq!(s.grace(), Duration::from_secs(120));
        assert_eq!(s.restarts_window_ms(), 3_600_000);
    }

    #[test]
    fn every_setting_can_be_overridden() {
        let s = from(&[
            (PORT, "27020"),
            (GRACE, "0"),
            (INTERVAL, "0.5"),
            (TIMEOUT, " 1.25 "),
            (FAILURES, "5"),
            (RESTARTS_MAX, "0"),
            (RESTARTS_WINDOW, "600"),
            (crate::health::rollover::POLICY, "never"),
        ])
        .unwrap();
        assert_eq!(s.update_restart, RestartPolicy::Never);
        assert_eq!(s.grace(), Duration::ZERO);
        assert_eq!(s.interval(), Duration::from_millis(500));
        assert_eq!(s.timeout(), Duration::from_millis(1250));
        assert_eq!((s.failures, s.restarts_max), (5, 0));
        assert_eq!(s.restarts_window_ms(), 600_000);
    }

    #[test]
    fn the_port_is_required() {
        let err = from(&[]).unwrap_err();
        assert_eq!(err.kind, Kind::InvalidConfig);
        assert!(
            err.message.contains("L4D2_PORT is not set"),
            "{}",
            err.message
        );
        for bad in ["0", "65536", "port", "-1", ""] {
            let err = from(&[(PORT, bad)]).unwrap_err();
            assert!(err.message.starts_with("L4D2_PORT="), "{}", err.message);
        }
    }

    #[test]
    fn bad_values_name_the_variable_and_the_value() {
        let cases: &[(&str, &str, &str)] = &[
            (INTERVAL, "10s", "not a number of seconds"),
            (INTERVAL, "0", "at least 0.5"),
            (INTERVAL, "0.0001", "at least 0.5"),
            (TIMEOUT, "0", "more than 0"),
            (TIMEOUT, "-1", "not a number"),
            (TIMEOUT, "1e3", "not a number"),
            (TIMEOUT, "nan", "not a number"),
            (TIMEOUT, "inf", "not a number"),
            (TIMEOUT, ".", "not a number"),
            (TIMEOUT, "1.2.3", "not a number"),
            (GRACE, "9999999", "30 days"),
            (FAILURES, "0", "at least 1"),
            (FAILURES, "2.5", "whole number"),
            (FAILURES, "-3", "whole number"),
            (FAILURES, "1001", "whole number"),
            (RESTARTS_MAX, "many", "whole number"),
            (RESTARTS_WINDOW, "0", "more than 0"),
        ];
        for (key, raw, why) in cases {
            let err = from(&[(PORT, "27015"), (key, raw)]).unwrap_err();
            assert_eq!(err.kind, Kind::InvalidConfig);
            assert!(
                err.message.starts_with(&format!("{key}=\"{raw}\": ")),
                "{}",
                err.message
            );
            assert!(err.message.contains(why), "{key}={raw}: {}", err.message);
            assert!(err.hint.unwrap().contains(&format!("e.g. {key}=")));
        }
    }
}
