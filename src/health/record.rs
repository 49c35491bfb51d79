//! The health check's record of one instance, RUN_DIR/INSTANCE/status.json:
//! written by the check after every query (atomically: a reader never sees
//! half a file), read by `left4me-health status`. It also carries the restart budget across the check's own
//! restarts (the unit preserves its runtime directory), so it is the only
//! state there is. Times are Unix epoch milliseconds.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::read_small_file;
use super::rollover::Rollover;
use super::settings::Settings;
use crate::a2s::{Answer, QueryError};

pub(crate) const FILE: &str = "status.json";
/// A record is a few hundred bytes; anything far larger was not written by
/// the check.
const MAX_RECORD_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Phase {
    /// Waiting out the start-up grace period; no query yet.
    Grace,
    Checking,
    /// Asked systemd to restart the server (the check is restarted with it).
    Restarting,
    /// Restart budget spent: asked systemd to stop the server as failed.
    GaveUp,
    /// Asked systemd to restart the empty server onto the current generation.
    RollingOver,
    /// Not answering since the game logged a map change, within
    /// L4D2_HEALTH_MAP_LOAD_SEC of it: loading, not hung.
    ChangingMap,
}

impl Phase {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Phase::Grace => "grace",
            Phase::Checking => "checking",
            Phase::Restarting => "restarting",
            Phase::GaveUp => "gave-up",
            Phase::RollingOver => "rolling-over",
            Phase::ChangingMap => "changing-map",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Check {
    pub time_ms: u64,
    pub ok: bool,
    /// Milliseconds from the first datagram to the info, when answered.
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LastAnswer {
    pub time_ms: u64,
    pub latency_ms: f64,
    pub name: String,
    pub map: String,
    pub players: u8,
    pub max_players: u8,
    pub bots: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct GaveUp {
    pub time_ms: u64,
    /// The server's main process the check sent SIGSYS to (0: it could
    /// not, and stopped the server instead).
    pub server_pid: u32,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub instance: String,
    pub pid: u32,
    pub settings: Settings,
    pub phase: Phase,
    pub started_ms: u64,
    pub updated_ms: u64,
    /// Queries since this check started, and how many failed.
    pub checks: u64,
    pub failed_checks: u64,
    pub consecutive_failures: u32,
    pub last_check: Option<Check>,
    /// Kept across restarts: the newest answer the server ever gave this boot.
    pub last_answer: Option<LastAnswer>,
    /// Restarts this check caused within the budget window.
    pub restarts_ms: Vec<u64>,
    pub gave_up: Option<GaveUp>,
    /// The installation generation the instance was mounted with
    /// (LEFT4ME_GENERATION), None without generations. The two fields
    /// below are absent from records of older versions.
    #[serde(default)]
    pub generation: Option<String>,
    /// Kept across restarts: the newest update restart (rollover) the check
    /// asked for. It is not a failure and not in `restarts_ms`.
    #[serde(default)]
    pub last_rollover: Option<Rollover>,
    /// Kept across restarts and give-ups until boot (Prometheus counters,
    /// docs/metrics.md): restarts the check asked for after failures, and
    /// times it found the budget spent. Absent from older records: 0.
    #[serde(default)]
    pub restarts_total: u64,
    #[serde(default)]
    pub gave_up_total: u64,
    /// While changing map: when the game logged the change.
    #[serde(default)]
    pub map_change_ms: Option<u64>,
    /// Kept across restarts: the newest "needs to be restarted" notice the
    /// check has handled (queued an update for, or found too soon after
    /// the last one), and how many updates it queued until boot.
    #[serde(default)]
    pub update_notice_handled_ms: Option<u64>,
    #[serde(default)]
    pub updates_queued_total: u64,
}

/// What the check does after a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Nothing,
    /// Answered again after `after` failures.
    Recovered {
        after: u32,
    },
    /// A failure that does not yet reach the threshold.
    Failing,
    /// No answer while the game loads the map it logged a change to at
    /// `since_ms`: not counted; `first` for the first such query.
    LoadingMap {
        since_ms: u64,
        first: bool,
    },
    /// Threshold reached, budget left: restart (already counted in the budget).
    Restart {
        reason: String,
    },
    /// Threshold reached, budget spent: stop the server as failed.
    GiveUp {
        reason: String,
    },
}

impl Record {
    /// A new record for a check starting now, keeping from the previous
    /// record (if any) what outlives one run of the check: the newest answer
    /// and the restarts still inside the budget window. A give-up is not
    /// kept: after one, only a deliberate start can bring the server back,
    /// and that start gets a fresh budget. The last rollover is kept too,
    /// marked confirmed once the instance runs another generation than the
    /// one it was restarted away from.
    pub(crate) fn start(
        instance: &str,
        pid: u32,
        settings: Settings,
        generation: Option<String>,
        previous: Option<Record>,
        now_ms: u64,
    ) -> Record {
        let last_rollover = previous
            .as_ref()
            .and_then(|p| p.last_rollover.clone())
            .map(|r| r.seen_by(generation.as_deref()));
        let totals = previous
            .as_ref()
            .map_or((0, 0), |p| (p.restarts_total, p.gave_up_total));
        let (update_notice_handled_ms, updates_queued_total) =
            previous.as_ref().map_or((None, 0), |p| {
                (p.update_notice_handled_ms, p.updates_queued_total)
            });
        let (last_answer, mut restarts_ms) = match previous {
            Some(p) if p.gave_up.is_none() => (p.last_answer, p.restarts_ms),
            Some(p) => (p.last_answer, Vec::new()),
            None => (None, Vec::new()),
        };
        let window = settings.restarts_window_ms();
        restarts_ms.retain(|&t| t <= now_ms && now_ms - t < window);
        Record {
            instance: instance.to_owned(),
            pid,
            settings,
            phase: Phase::Grace,
            started_ms: now_ms,
            updated_ms: now_ms,
            checks: 0,
            failed_checks: 0,
            consecutive_failures: 0,
            last_check: None,
            last_answer,
            restarts_ms,
            gave_up: None,
            generation,
            last_rollover,
            restarts_total: totals.0,
            gave_up_total: totals.1,
            map_change_ms: None,
            update_notice_handled_ms,
            updates_queued_total,
        }
    }

    /// Takes one query's outcome and decides what follows. `map_change_ms`
    /// is when the game last logged a map change (the relay's events file).
    /// A failed query is a map load, not counted, when that change came
    /// after the newest answer and less than L4D2_HEALTH_MAP_LOAD_SEC ago;
    /// once that has passed, failures count from zero, so a server that
    /// hangs in a load is restarted that much later than one that hangs
    /// while playing.
    pub(crate) fn observe(
        &mut self,
        outcome: &Result<Answer, QueryError>,
        now_ms: u64,
        map_change_ms: Option<u64>,
    ) -> Action {
        let was_loading = self.phase == Phase::ChangingMap;
        self.phase = Phase::Checking;
        self.updated_ms = now_ms;
        self.checks += 1;
        self.map_change_ms = None;
        match outcome {
            Ok(answer) => {
                let latency_ms = answer.latency.as_secs_f64() * 1000.0;
                self.last_check = Some(Check {
                    time_ms: now_ms,
                    ok: true,
                    latency_ms: Some(latency_ms),
                    error: None,
                });
                self.last_answer = Some(LastAnswer {
                    time_ms: now_ms,
                    latency_ms,
                    name: answer.info.name.clone(),
                    map: answer.info.map.clone(),
                    players: answer.info.players,
                    max_players: answer.info.max_players,
                    bots: answer.info.bots,
                });
                let after = std::mem::take(&mut self.consecutive_failures);
                if after > 0 {
                    Action::Recovered { after }
                } else {
                    Action::Nothing
                }
            }
            Err(err) => {
                self.failed_checks += 1;
                self.last_check = Some(Check {
                    time_ms: now_ms,
                    ok: false,
                    latency_ms: None,
                    error: Some(err.to_string()),
                });
                let answered_ms = self.last_answer.as_ref().map_or(0, |a| a.time_ms);
                if let Some(since_ms) = map_change_ms.filter(|&m| {
                    m >= answered_ms && m <= now_ms && now_ms - m < self.settings.map_load_ms()
                }) {
                    self.phase = Phase::ChangingMap;
                    self.map_change_ms = Some(since_ms);
                    self.consecutive_failures = 0;
                    return Action::LoadingMap {
                        since_ms,
                        first: !was_loading,
                    };
                }
                self.consecutive_failures += 1;
                if self.consecutive_failures < self.settings.failures {
                    return Action::Failing;
                }
                self.decide(err, now_ms)
            }
        }
    }

    fn decide(&mut self, err: &QueryError, now_ms: u64) -> Action {
        let s = &self.settings;
        let window = s.restarts_window_ms();
        self.restarts_ms
            .retain(|&t| t <= now_ms && now_ms - t < window);
        let mut reason = format!(
            "no A2S_INFO answer from 127.0.0.1:{} in {} consecutive queries (one every {} s, timeout {} s); last: {err}",
            s.port, self.consecutive_failures, s.interval_sec, s.timeout_sec
        );
        if self.restarts_ms.len() < s.restarts_max as usize {
            self.restarts_ms.push(now_ms);
            self.restarts_total += 1;
            self.phase = Phase::Restarting;
            reason.push_str(&format!(
                "; restart {} of at most {} within {} s",
                self.restarts_ms.len(),
                s.restarts_max,
                s.restarts_window_sec
            ));
            Action::Restart { reason }
        } else {
            self.gave_up_total += 1;
            self.phase = Phase::GaveUp;
            reason.push_str(&format!(
                "; the health check already restarted it {} times within {} s (L4D2_HEALTH_RESTARTS_MAX={}), so it ends the server as failed",
                self.restarts_ms.len(),
                s.restarts_window_sec,
                s.restarts_max
            ));
            Action::GiveUp { reason }
        }
    }

    /// Records an update restart; the restart budget is not touched.
    pub(crate) fn roll_over(&mut self, rollover: Rollover) {
        self.phase = Phase::RollingOver;
        self.last_rollover = Some(rollover);
    }

    /// Marks the budget as spent; the next deliberate start gets a fresh one.
    pub(crate) fn give_up(&mut self, server_pid: u32, reason: String, now_ms: u64) {
        self.restarts_ms.clear();
        self.gave_up = Some(GaveUp {
            time_ms: now_ms,
            server_pid,
            reason,
        });
    }

    pub(crate) fn path(run_dir: &Path, instance: &str) -> PathBuf {
        run_dir.join(instance).join(FILE)
    }

    /// None when there is no record (the check never ran since boot).
    /// The record's directory belongs to the service user and an admin runs
    /// `status` as root: read as [`read_small_file`] reads.
    pub(crate) fn load(run_dir: &Path, instance: &str) -> io::Result<Option<Record>> {
        let path = Record::path(run_dir, instance);
        let rel = format!("{instance}/{FILE}");
        let Some(bytes) = read_small_file(run_dir, &rel, MAX_RECORD_BYTES)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a health record: {e}", path.display()),
            )
        })
    }

    /// Writes the record with [`super::replace_file`]: readers see the old
    /// record or the new one, never a part.
    pub(crate) fn save(&self, run_dir: &Path) -> io::Result<()> {
        let dir = run_dir.join(&self.instance);
        fs::create_dir_all(&dir)?;
        let mut text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        text.push(b'\n');
        super::replace_file(&dir, FILE, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2s::Info;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn settings() -> Settings {
        Settings {
            port: 27015,
            failures: 3,
            restarts_max: 2,
            restarts_window_sec: 100.0,
            ..Settings::default()
        }
    }

    fn answer(map: &str) -> Result<Answer, QueryError> {
        Ok(Answer {
            info: Info {
                map: map.into(),
                ..Info::for_test(2, 0)
            },
            latency: Duration::from_micros(1500),
        })
    }

    fn timeout() -> Result<Answer, QueryError> {
        Err(QueryError::Timeout(Duration::from_secs(2)))
    }

    #[test]
    fn one_lost_answer_is_not_a_restart() {
        let mut r = Record::start("vs1", 1, settings(), None, None, 0);
        assert_eq!(r.observe(&answer("m1"), 10, None), Action::Nothing);
        assert_eq!(r.observe(&timeout(), 20, None), Action::Failing);
        assert_eq!(
            r.observe(&answer("m1"), 30, None),
            Action::Recovered { after: 1 }
        );
        assert_eq!(r.observe(&timeout(), 40, None), Action::Failing);
        assert_eq!(r.observe(&timeout(), 50, None), Action::Failing);
        assert_eq!(
            r.observe(&answer("m2"), 60, None),
            Action::Recovered { after: 2 }
        );
        assert_eq!((r.checks, r.failed_checks), (6, 3));
        let last = r.last_answer.as_ref().unwrap();
        assert_eq!((last.map.as_str(), last.time_ms), ("m2", 60));
        assert!((last.latency_ms - 1.5).abs() < 1e-9);
        assert!(r.restarts_ms.is_empty());
    }

    /// Silence after a logged map change: (query time, map change time) in
    /// seconds, answered at 10 s, failures 3, map load 60 s.
    #[rstest::rstest]
    #[case::loading(20, Some(15), "loading")]
    #[case::change_before_the_answer_is_old_news(20, Some(5), "failing")]
    #[case::change_at_the_answer(20, Some(10), "loading")]
    #[case::window_passed(80, Some(15), "failing")]
    #[case::just_inside(74, Some(15), "loading")]
    #[case::from_the_future(20, Some(30), "failing")]
    #[case::none(20, None, "failing")]
    fn silence_after_a_map_change_is_a_load_within_the_window(
        #[case] at_s: u64,
        #[case] change_s: Option<u64>,
        #[case] expected: &str,
    ) {
        let mut r = Record::start(
            "vs1",
            1,
            Settings {
                map_load_sec: 60.0,
                ..settings()
            },
            None,
            None,
            0,
        );
        r.observe(&answer("m1"), 10_000, None);
        let action = r.observe(&timeout(), at_s * 1000, change_s.map(|c| c * 1000));
        let got = match action {
            Action::LoadingMap { since_ms, first } => {
                assert_eq!(Some(since_ms), change_s.map(|c| c * 1000));
                assert!(first);
                assert_eq!((r.phase, r.consecutive_failures), (Phase::ChangingMap, 0));
                "loading"
            }
            Action::Failing => {
                assert_eq!(r.consecutive_failures, 1);
                "failing"
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(got, expected);
        assert_eq!(
            r.failed_checks, 1,
            "a load's queries still count as failed queries"
        );
    }

    #[test]
    fn a_hang_in_a_map_load_is_restarted_once_the_window_has_passed() {
        let s = Settings {
            map_load_sec: 60.0,
            ..settings()
        };
        let mut r = Record::start("vs1", 1, s, None, None, 0);
        r.observe(&answer("m1"), 0, None);
        let change = Some(5_000);
        let mut actions = Vec::new();
        for t in (10..=90).step_by(10) {
            actions.push(r.observe(&timeout(), t * 1000, change));
        }
        let firsts: Vec<bool> = actions
            .iter()
            .filter_map(|a| match a {
                Action::LoadingMap { first, .. } => Some(*first),
                _ => None,
            })
            .collect();
        // 10..60 s are within 60 s of the change at 5 s: six loads, one first.
        assert_eq!(firsts, [true, false, false, false, false, false]);
        assert_eq!(actions[6], Action::Failing);
        assert_eq!(actions[7], Action::Failing);
        assert!(
            matches!(actions[8], Action::Restart { .. }),
            "{:?}",
            actions[8]
        );
    }

    #[test]
    fn map_load_zero_tells_no_change_apart() {
        let s = Settings {
            map_load_sec: 0.0,
            ..settings()
        };
        let mut r = Record::start("vs1", 1, s, None, None, 0);
        assert_eq!(r.observe(&timeout(), 1000, Some(1000)), Action::Failing);
    }

    #[test]
    fn n_failures_in_a_row_restart_until_the_budget_is_spent() {
        let mut r = Record::start("vs1", 1, settings(), None, None, 0);
        let mut actions = Vec::new();
        for t in 1..=9 {
            actions.push(r.observe(&timeout(), t * 1000, None));
        }
        let kinds: Vec<&str> = actions
            .iter()
            .map(|a| match a {
                Action::Failing => "failing",
                Action::Restart { .. } => "restart",
                Action::GiveUp { .. } => "give-up",
                _ => "other",
            })
            .collect();
        // The counter keeps counting after a restart only in this test: the
        // real check restarts with the server and starts a new record.
        assert_eq!(
            kinds,
            [
                "failing", "failing", "restart", "restart", "give-up", "give-up", "give-up",
                "give-up", "give-up"
            ]
        );
        let Action::Restart { reason } = &actions[2] else {
            unreachable!()
        };
        assert!(
            reason.contains("127.0.0.1:27015 in 3 consecutive queries"),
            "{reason}"
        );
        assert!(reason.contains("last: no answer within 2 s"), "{reason}");
        assert!(
            reason.contains("restart 1 of at most 2 within 100 s"),
            "{reason}"
        );
        let Action::GiveUp { reason } = &actions[4] else {
            unreachable!()
        };
        assert!(
            reason.contains("already restarted it 2 times within 100 s"),
            "{reason}"
        );
        assert_eq!(r.phase, Phase::GaveUp);
    }

    #[test]
    fn the_budget_survives_the_checks_restart_and_expires() {
        let s = settings();
        let mut r = Record::start("vs1", 1, s.clone(), None, None, 0);
        for t in 1..=3 {
            r.observe(&timeout(), t * 1000, None);
        }
        assert_eq!(r.restarts_ms, [3000]);
        // The restarted check (new pid) inherits the restart...
        let mut r = Record::start("vs1", 2, s.clone(), None, Some(r), 50_000);
        assert_eq!(r.restarts_ms, [3000]);
        for t in 1..=3 {
            r.observe(&timeout(), 50_000 + t * 1000, None);
        }
        assert_eq!(r.restarts_ms, [3000, 53_000]);
        assert_eq!(r.restarts_total, 2);
        // ... and a third hang within 100 s of the first gives up.
        let mut r = Record::start("vs1", 3, s.clone(), None, Some(r), 60_000);
        for t in 1..=2 {
            r.observe(&timeout(), 60_000 + t * 1000, None);
        }
        assert!(matches!(
            r.observe(&timeout(), 63_000, None),
            Action::GiveUp { .. }
        ));
        // Later than the window after the first restart, one is allowed again.
        let mut r = Record::start("vs1", 4, s, None, Some(r), 103_001);
        assert_eq!(r.restarts_ms, [53_000]);
        for t in 1..=2 {
            r.observe(&timeout(), 103_001 + t, None);
        }
        assert!(matches!(
            r.observe(&timeout(), 103_004, None),
            Action::Restart { .. }
        ));
    }

    #[test]
    fn a_give_up_resets_the_budget_for_the_next_deliberate_start() {
        let s = Settings {
            restarts_max: 0,
            ..settings()
        };
        let mut r = Record::start("vs1", 1, s.clone(), None, None, 0);
        r.observe(&answer("m"), 1, None);
        r.observe(&timeout(), 2, None);
        r.observe(&timeout(), 3, None);
        let Action::GiveUp { reason } = r.observe(&timeout(), 4, None) else {
            panic!("no give-up with restarts_max 0")
        };
        r.give_up(4321, reason, 5);
        let next = Record::start("vs1", 2, s, None, Some(r), 10);
        assert_eq!((next.restarts_total, next.gave_up_total), (0, 1));
        assert_eq!(next.gave_up, None);
        assert!(next.restarts_ms.is_empty());
        assert_eq!(next.last_answer.unwrap().map, "m");
        assert_eq!(next.phase, Phase::Grace);
    }

    #[test]
    fn a_rollover_is_kept_outside_the_budget_and_confirmed_by_the_next_run() {
        let s = settings();
        let old = Some("20261130T030000Z".to_owned());
        let mut r = Record::start("vs1", 1, s.clone(), old.clone(), None, 0);
        for t in 1..=3 {
            r.observe(&timeout(), t, None);
        }
        assert_eq!(r.restarts_ms, [3]);
        let rollover = Rollover {
            time_ms: 10,
            from: "20261130T030000Z".into(),
            to: "20261201T000000Z".into(),
            players: 0,
            bots: 0,
            confirmed: false,
        };
        r.roll_over(rollover.clone());
        assert_eq!(
            (r.phase, r.restarts_ms.as_slice()),
            (Phase::RollingOver, &[3][..])
        );
        // The restarted server still runs the old generation: not confirmed.
        let same = Record::start("vs1", 2, s.clone(), old, Some(r.clone()), 20);
        assert_eq!(same.last_rollover.as_ref(), Some(&rollover));
        assert_eq!(same.restarts_ms, [3]);
        let moved = Record::start("vs1", 2, s, Some("20261201T000000Z".into()), Some(r), 20);
        assert!(moved.last_rollover.unwrap().confirmed);
        assert_eq!(moved.generation.as_deref(), Some("20261201T000000Z"));
    }

    #[test]
    fn a_record_of_the_version_before_generations_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Record::start("vs1", 7, settings(), None, None, 0);
        r.observe(&answer("m"), 5, None);
        let mut v = serde_json::to_value(&r).unwrap();
        let map = v.as_object_mut().unwrap();
        map.remove("generation");
        map.remove("last_rollover");
        map.remove("restarts_total");
        map.remove("gave_up_total");
        map["settings"]
            .as_object_mut()
            .unwrap()
            .remove("update_restart");
        fs::create_dir(dir.path().join("vs1")).unwrap();
        fs::write(Record::path(dir.path(), "vs1"), v.to_string()).unwrap();
        assert_eq!(Record::load(dir.path(), "vs1").unwrap().unwrap(), r);
    }

    #[test]
    fn saves_and_loads_atomically_readable() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Record::load(dir.path(), "vs1").unwrap().is_none());
        let mut r = Record::start("vs1", 7, settings(), None, None, 0);
        r.observe(&answer("c1m1_hotel"), 5, None);
        r.save(dir.path()).unwrap();
        let path = Record::path(dir.path(), "vs1");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(Record::load(dir.path(), "vs1").unwrap().unwrap(), r);
        assert!(!dir.path().join("vs1/.status.json.tmp").exists());
        fs::write(&path, b"{\"instance\":").unwrap();
        let err = Record::load(dir.path(), "vs1").unwrap_err();
        assert!(err.to_string().contains("not a health record"), "{err}");
    }

    #[test_log::test]
    fn load_refuses_links_fifos_and_huge_files_instead_of_following_or_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let inst = dir.path().join("vs1");
        fs::create_dir(&inst).unwrap();
        let secret = dir.path().join("root-only.json");
        fs::write(&secret, "{}").unwrap();
        std::os::unix::fs::symlink(&secret, inst.join(FILE)).unwrap();
        assert!(
            Record::load(dir.path(), "vs1").is_err(),
            "followed a symlink"
        );
        fs::remove_file(inst.join(FILE)).unwrap();
        nix::unistd::mkfifo(
            &inst.join(FILE),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let err = Record::load(dir.path(), "vs1").unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        fs::remove_file(inst.join(FILE)).unwrap();
        fs::write(inst.join(FILE), vec![b' '; 65 * 1024]).unwrap();
        let err = Record::load(dir.path(), "vs1").unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
    }
}
