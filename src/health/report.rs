//! `left4me-health status`: the records as text for people and as JSON for
//! the web app (schema in docs/health.md).

use std::fmt::Write;

use serde_json::{Value, json};

use super::record::Record;

pub(crate) fn json(run_dir: &str, records: &[(Record, bool)]) -> Value {
    let instances: Vec<Value> = records
        .iter()
        .map(|(record, running)| {
            let mut v = serde_json::to_value(record).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut v {
                map.insert("running".into(), Value::Bool(*running));
            }
            v
        })
        .collect();
    json!({ "run_dir": run_dir, "instances": instances })
}

pub(crate) fn human(record: &Record, running: bool, now_ms: u64) -> String {
    let s = &record.settings;
    // The record is the service user's file and the game's answers are the
    // game's: strings are escaped so none can drive the admin's terminal.
    let mut out = String::new();
    let process = if running {
        format!("health check running, pid {}", record.pid)
    } else {
        "health check not running".to_owned()
    };
    let _ = writeln!(
        out,
        "{}: {} ({process}), port {}",
        record.instance.escape_debug(),
        record.phase.label(),
        s.port
    );
    match &record.last_answer {
        Some(a) => {
            let _ = writeln!(
                out,
                "  last answer  {}, {:.1} ms: {:?} on {}, {}/{} players ({} bots)",
                ago(now_ms, a.time_ms),
                a.latency_ms,
                a.name,
                a.map.escape_debug(),
                a.players,
                a.max_players,
                a.bots
            );
        }
        None => {
            let _ = writeln!(out, "  last answer  none since boot");
        }
    }
    match &record.last_check {
        Some(c) if c.ok => {
            let _ = writeln!(out, "  last query   {}, answered", ago(now_ms, c.time_ms));
        }
        Some(c) => {
            let _ = writeln!(
                out,
                "  last query   {}, FAILED ({} in a row, restart at {}): {}",
                ago(now_ms, c.time_ms),
                record.consecutive_failures,
                s.failures,
                c.error.as_deref().unwrap_or("").escape_debug()
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  last query   none yet (grace {} s from start, {})",
                s.grace_sec,
                ago(now_ms, record.started_ms)
            );
        }
    }
    let _ = writeln!(
        out,
        "  queries      {} since start, {} failed; one every {} s, timeout {} s",
        record.checks, record.failed_checks, s.interval_sec, s.timeout_sec
    );
    let _ = writeln!(
        out,
        "  restarts     {} by the health check within {} s (at most {})",
        record.restarts_ms.len(),
        s.restarts_window_sec,
        s.restarts_max
    );
    let _ = writeln!(
        out,
        "  generation   {} (update restart policy {})",
        record
            .generation
            .as_deref()
            .unwrap_or("none recorded")
            .escape_debug(),
        s.update_restart.label()
    );
    if let Some(r) = &record.last_rollover {
        let _ = writeln!(
            out,
            "  rollover     {}: restarted from {} onto {}, no human player on ({} players, {} bots){}",
            ago(now_ms, r.time_ms),
            r.from.escape_debug(),
            r.to.escape_debug(),
            r.players,
            r.bots,
            if r.confirmed {
                ""
            } else {
                "; not yet seen on the new generation"
            }
        );
    }
    if let Some(g) = &record.gave_up {
        let _ = writeln!(
            out,
            "  gave up      {}: {}",
            ago(now_ms, g.time_ms),
            g.reason.escape_debug()
        );
    }
    out
}

fn ago(now_ms: u64, then_ms: u64) -> String {
    let s = now_ms.saturating_sub(then_ms) / 1000;
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2s::{Answer, Info, QueryError};
    use crate::health::rollover::Rollover;
    use crate::health::settings::Settings;
    use std::time::Duration;

    fn record() -> Record {
        let mut r = Record::start(
            "vs1",
            42,
            Settings::default(),
            Some("20261130T030000Z".into()),
            None,
            1_000_000,
        );
        let info = Info {
            name: "left4me vs1".into(),
            ..Info::for_test(3, 1)
        };
        r.observe(
            &Ok(Answer {
                info,
                latency: Duration::from_micros(2345),
            }),
            1_121_000,
            None,
        );
        r
    }

    #[test]
    fn human_shows_the_last_answer() {
        let text = human(&record(), true, 1_124_000);
        assert!(text.starts_with("vs1: checking (health check running, pid 42), port 27015\n"));
        assert!(
            text.contains(
                "last answer  3 s ago, 2.3 ms: \"left4me vs1\" on c1m1_hotel, 3/8 players (1 bots)"
            ),
            "{text}"
        );
        assert!(text.contains("last query   3 s ago, answered"), "{text}");
    }

    #[test]
    fn human_shows_failures_and_the_give_up() {
        let mut r = record();
        r.observe(&Err(QueryError::Refused), 1_131_000, None);
        r.give_up(4321, "because".into(), 1_132_000);
        let text = human(&r, false, 1_252_000);
        assert!(text.contains("health check not running"), "{text}");
        assert!(
            text.contains("last query   2 min ago, FAILED (1 in a row, restart at 4): port closed"),
            "{text}"
        );
        assert!(text.contains("last answer  2 min ago"), "{text}");
        assert!(text.contains("gave up      2 min ago: because"), "{text}");
    }

    #[test]
    fn human_shows_the_generation_and_the_last_rollover() {
        let mut r = record();
        let text = human(&r, true, 1_124_000);
        assert!(
            text.contains("  generation   20261130T030000Z (update restart policy when-empty)\n"),
            "{text}"
        );
        assert!(!text.contains("rollover"), "{text}");
        r.roll_over(Rollover {
            time_ms: 1_122_000,
            from: "20261130T030000Z".into(),
            to: "20261201T000000Z".into(),
            players: 2,
            bots: 2,
            confirmed: false,
        });
        let text = human(&r, true, 1_124_000);
        assert!(text.starts_with("vs1: rolling-over "), "{text}");
        assert!(
            text.contains(
                "  rollover     2 s ago: restarted from 20261130T030000Z onto 20261201T000000Z, \
                 no human player on (2 players, 2 bots); not yet seen on the new generation\n"
            ),
            "{text}"
        );
        let next = Record::start(
            "vs1",
            43,
            Settings::default(),
            Some("20261201T000000Z".into()),
            Some(r),
            1_130_000,
        );
        let text = human(&next, true, 1_130_000);
        assert!(
            text.contains("no human player on (2 players, 2 bots)\n"),
            "{text}"
        );
        let v = json("/run/left4me-health", &[(next, true)]);
        let i = &v["instances"][0];
        assert_eq!(i["generation"], "20261201T000000Z");
        assert_eq!(i["settings"]["update_restart"], "when-empty");
        assert_eq!(i["last_rollover"]["from"], "20261130T030000Z");
        assert_eq!(i["last_rollover"]["to"], "20261201T000000Z");
        assert_eq!(i["last_rollover"]["time_ms"], 1_122_000);
        assert_eq!(i["last_rollover"]["confirmed"], true);
    }

    #[test]
    fn json_has_the_record_and_whether_it_runs() {
        let v = json("/run/left4me-health", &[(record(), true)]);
        let i = &v["instances"][0];
        assert_eq!(i["instance"], "vs1");
        assert_eq!(i["running"], true);
        assert_eq!(i["phase"], "checking");
        assert_eq!(i["last_answer"]["map"], "c1m1_hotel");
        assert_eq!(i["last_answer"]["players"], 3);
        assert_eq!(i["last_answer"]["time_ms"], 1_121_000);
        assert_eq!(i["settings"]["interval_sec"], 10.0);
        assert_eq!(v["run_dir"], "/run/left4me-health");
    }
}
