//! The `when-empty` update restart policy (docs/updates.md, "Restart
//! policy"): once `installations/current` names another generation than the
//! one the instance was mounted with, the check restarts the server the
//! first time an A2S_INFO answer reports no human players, so the next mount
//! picks up the new generation without throwing anyone out of a game.
//!
//! Such a restart is not a failure: it does not count against the health
//! restart budget, and it is kept in the record as `last_rollover`. If the
//! restarted server still runs the generation it was restarted away from
//! (the mount did not move, say), the same move is not tried again: a loop
//! of restarts would be worse than a server that stays on the old build.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::read_small_file;
use crate::a2s::Info;
use crate::error::{Failure, Kind};
use crate::generation::{self, GenerationId, INSTALLATIONS, RestartPolicy};
use clap::ValueEnum;

pub(crate) const POLICY: &str = "LEFT4ME_UPDATE_RESTART";
pub(crate) const GENERATION: &str = "LEFT4ME_GENERATION";
pub(crate) const STATE_DIR: &str = "LEFT4ME_STATE_DIR";
const DEFAULT_STATE_DIR: &str = "/var/lib/left4me";

/// LEFT4ME_UPDATE_RESTART through `lookup`; unset means when-empty.
pub(crate) fn policy_from_lookup(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<RestartPolicy, Failure> {
    let Some(raw) = lookup(POLICY) else {
        return Ok(RestartPolicy::default());
    };
    RestartPolicy::value_variants()
        .iter()
        .copied()
        .find(|p| p.label() == raw.trim())
        .ok_or_else(|| {
            Failure::new(
                Kind::InvalidConfig,
                format!("{POLICY}={raw:?}: not one of never, when-empty, now"),
            )
            .hint(format!(
                "fix it in /etc/left4me/host.env, e.g. {POLICY}=when-empty (docs/updates.md)"
            ))
        })
}

/// A rollover restart the check asked for, as the record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rollover {
    pub time_ms: u64,
    /// The generation the instance ran, and the one that was current.
    pub from: String,
    pub to: String,
    /// The answer that showed the server empty of humans.
    pub players: u8,
    pub bots: u8,
    /// A later run of the check saw the instance on another generation than
    /// `from`: the restart moved it. Until then the same move is not retried.
    #[serde(default)]
    pub confirmed: bool,
}

impl Rollover {
    /// Why, for the journal.
    pub(crate) fn reason(&self, instance: &str) -> String {
        format!(
            "generation {} is current and {instance} runs {}; A2S_INFO reports no human \
             player ({} players, {} bots) and {POLICY}=when-empty",
            self.to, self.from, self.players, self.bots
        )
    }

    /// Carried into the next run of the check, which was started with the
    /// instance on `generation`.
    pub(crate) fn seen_by(mut self, generation: Option<&str>) -> Rollover {
        if generation != Some(self.from.as_str()) {
            self.confirmed = true;
        }
        self
    }
}

/// What one answer means for the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision<'a> {
    /// Nothing to do: another policy, no generation to compare, or already current.
    Stay,
    /// Another generation is current, but humans are on the server.
    Wait { to: &'a str, humans: u8 },
    /// This very move was asked for before and the instance did not move.
    Stuck { from: &'a str, to: &'a str },
    /// Restart now: another generation is current and nobody human is on.
    Restart { from: &'a str, to: &'a str },
}

/// The decision itself, without any I/O. `running` is LEFT4ME_GENERATION,
/// `current` what `installations/current` names (None: unreadable).
/// Source counts bots among the players, so the humans are players minus
/// bots; a server reporting more bots than players has none.
pub(crate) fn decide<'a>(
    policy: RestartPolicy,
    running: Option<&'a str>,
    current: Option<&'a str>,
    info: &Info,
    last: Option<&Rollover>,
) -> Decision<'a> {
    if policy != RestartPolicy::WhenEmpty {
        return Decision::Stay;
    }
    let (Some(from), Some(to)) = (running, current) else {
        return Decision::Stay;
    };
    if from == to {
        return Decision::Stay;
    }
    let humans = info.players.saturating_sub(info.bots);
    if humans > 0 {
        return Decision::Wait { to, humans };
    }
    match last {
        Some(l) if !l.confirmed && l.from == from && l.to == to => Decision::Stuck { from, to },
        _ => Decision::Restart { from, to },
    }
}

/// The generation `installations/current` names, by the helper's rule
/// (generation::parse_current); why there is none, as text for the
/// journal, otherwise. The health unit binds installations/ read-only into
/// its sandbox, which otherwise hides the whole state dir; read as
/// [`read_small_file`] reads, at most [`generation::MAX_CURRENT_BYTES`].
pub(crate) fn read_current(installations: &Path) -> Result<GenerationId, String> {
    let path = installations.join("current");
    match read_small_file(
        installations,
        "current",
        generation::MAX_CURRENT_BYTES as u64,
    ) {
        Ok(Some(bytes)) => {
            generation::parse_current(&bytes, &path, installations).map_err(|f| f.message)
        }
        Ok(None) => Err(format!("{} does not exist", path.display())),
        Err(e) => Err(e.to_string()),
    }
}

/// The policy at work in one run of the check: it reads `current` after
/// each answer and logs each new situation once, not once per query.
pub(crate) struct Watcher {
    policy: RestartPolicy,
    running: Option<String>,
    installations: PathBuf,
    /// The last problem with `current` that was logged.
    warned: Option<String>,
    /// The generation the check last logged it waits for.
    waiting_for: Option<String>,
    stuck_logged: bool,
}

impl Watcher {
    /// LEFT4ME_GENERATION and LEFT4ME_STATE_DIR through `lookup`. An empty
    /// generation is taken as absent, a malformed one is a settings error.
    pub(crate) fn from_lookup(
        policy: RestartPolicy,
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<Watcher, Failure> {
        let running = match lookup(GENERATION) {
            Some(raw) if raw.trim().is_empty() => None,
            Some(raw) if GenerationId::parse(raw.trim()).is_some() => Some(raw.trim().to_owned()),
            Some(raw) => {
                return Err(Failure::new(
                    Kind::InvalidConfig,
                    format!("{GENERATION}={raw:?}: not a generation id"),
                )
                .hint(
                    "left4me-overlay mount writes it into runtime/.left4me/INSTANCE.env; \
                     do not set it in /etc/left4me/host.env",
                ));
            }
            None => None,
        };
        let state_dir =
            PathBuf::from(lookup(STATE_DIR).unwrap_or_else(|| DEFAULT_STATE_DIR.into()));
        if !state_dir.is_absolute() {
            return Err(Failure::new(
                Kind::InvalidConfig,
                format!(
                    "{STATE_DIR}={:?}: not an absolute path",
                    state_dir.display()
                ),
            )
            .hint(format!(
                "fix it in /etc/left4me/host.env, e.g. {STATE_DIR}={DEFAULT_STATE_DIR}"
            )));
        }
        Ok(Watcher {
            policy,
            running,
            installations: state_dir.join(INSTALLATIONS),
            warned: None,
            waiting_for: None,
            stuck_logged: false,
        })
    }

    /// STATE_DIR/installations, whose generations the metrics count.
    pub(crate) fn installations(&self) -> PathBuf {
        self.installations.clone()
    }

    /// The generation the instance runs, when the helper recorded one.
    pub(crate) fn running(&self) -> Option<&str> {
        self.running.as_deref()
    }

    /// Logged once when the check starts.
    pub(crate) fn announce(&self, instance: &str) {
        match (self.policy, &self.running) {
            (RestartPolicy::WhenEmpty, Some(g)) => tracing::info!(
                "{instance} runs generation {g}; with {POLICY}=when-empty it is restarted \
                 once another generation is current ({}/current) and no human player is on",
                self.installations.display()
            ),
            (RestartPolicy::WhenEmpty, None) => tracing::debug!(
                "{instance}: no {GENERATION} in the environment (mounted without generations), \
                 so {POLICY}=when-empty has nothing to compare"
            ),
            (p, _) => tracing::debug!(
                "{POLICY}={}: the health check restarts nothing for updates",
                p.label()
            ),
        }
    }

    /// After each answer: the rollover to ask for now, if any.
    pub(crate) fn after_answer(
        &mut self,
        instance: &str,
        info: &Info,
        last: Option<&Rollover>,
        now_ms: u64,
    ) -> Option<Rollover> {
        if self.policy != RestartPolicy::WhenEmpty || self.running.is_none() {
            return None;
        }
        let current = match read_current(&self.installations) {
            Ok(id) => {
                if self.warned.take().is_some() {
                    tracing::info!("{}/current is readable again", self.installations.display());
                }
                Some(id)
            }
            Err(why) => {
                if self.warned.as_ref() != Some(&why) {
                    tracing::warn!(
                        "{why}; no update restart of {instance} until installations/current names a generation"
                    );
                    self.warned = Some(why);
                }
                None
            }
        };
        let decision = decide(
            self.policy,
            self.running.as_deref(),
            current.as_ref().map(GenerationId::as_str),
            info,
            last,
        );
        if !matches!(decision, Decision::Wait { .. }) {
            self.waiting_for = None;
        }
        match decision {
            Decision::Stay => None,
            Decision::Wait { to, humans } => {
                if self.waiting_for.as_deref() != Some(to) {
                    tracing::info!(
                        "generation {to} is current, {instance} runs {}: restarting it once \
                         no human player is on ({humans} now)",
                        self.running.as_deref().unwrap_or("")
                    );
                    self.waiting_for = Some(to.to_owned());
                }
                None
            }
            Decision::Stuck { from, to } => {
                if !self.stuck_logged {
                    tracing::warn!(
                        "{instance} still runs generation {from} after its restart onto {to}; \
                         not restarting it again for that (check `left4me-overlay status {instance}`)"
                    );
                    self.stuck_logged = true;
                }
                None
            }
            Decision::Restart { from, to } => Some(Rollover {
                time_ms: now_ms,
                from: from.to_owned(),
                to: to.to_owned(),
                players: info.players,
                bots: info.bots,
                confirmed: false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::collections::HashMap;
    use std::fs;

    fn info(players: u8, bots: u8) -> Info {
        Info::for_test(players, bots)
    }

    const OLD: &str = "20261130T030000Z";
    const NEW: &str = "20261201T040000Z-2";

    fn restart() -> Decision<'static> {
        Decision::Restart { from: OLD, to: NEW }
    }

    #[rstest]
    #[case::never(RestartPolicy::Never, Some(OLD), Some(NEW), 0, 0, Decision::Stay)]
    #[case::now(RestartPolicy::Now, Some(OLD), Some(NEW), 0, 0, Decision::Stay)]
    #[case::empty(RestartPolicy::WhenEmpty, Some(OLD), Some(NEW), 0, 0, restart())]
    #[case::only_bots(RestartPolicy::WhenEmpty, Some(OLD), Some(NEW), 4, 4, restart())]
    #[case::more_bots_than_players(RestartPolicy::WhenEmpty, Some(OLD), Some(NEW), 1, 3, restart())]
    #[case::one_human(RestartPolicy::WhenEmpty, Some(OLD), Some(NEW), 1, 0, Decision::Wait { to: NEW, humans: 1 })]
    #[case::human_and_bots(RestartPolicy::WhenEmpty, Some(OLD), Some(NEW), 4, 3, Decision::Wait { to: NEW, humans: 1 })]
    #[case::full(RestartPolicy::WhenEmpty, Some(OLD), Some(NEW), 8, 0, Decision::Wait { to: NEW, humans: 8 })]
    #[case::already_current(RestartPolicy::WhenEmpty, Some(NEW), Some(NEW), 0, 0, Decision::Stay)]
    #[case::no_generation(RestartPolicy::WhenEmpty, None, Some(NEW), 0, 0, Decision::Stay)]
    #[case::current_unreadable(RestartPolicy::WhenEmpty, Some(OLD), None, 0, 0, Decision::Stay)]
    #[case::never_with_humans(RestartPolicy::Never, Some(OLD), Some(NEW), 3, 0, Decision::Stay)]
    fn the_decision(
        #[case] policy: RestartPolicy,
        #[case] running: Option<&str>,
        #[case] current: Option<&str>,
        #[case] players: u8,
        #[case] bots: u8,
        #[case] expected: Decision<'static>,
    ) {
        assert_eq!(
            decide(policy, running, current, &info(players, bots), None),
            expected
        );
    }

    fn done(from: &str, to: &str, confirmed: bool) -> Rollover {
        Rollover {
            time_ms: 1,
            from: from.into(),
            to: to.into(),
            players: 0,
            bots: 0,
            confirmed,
        }
    }

    #[rstest]
    // The restart did not move the instance: not again.
    #[case::same_move_unconfirmed(done(OLD, NEW, false), Decision::Stuck { from: OLD, to: NEW })]
    // It moved once, and came back (a rollback and a manual restart): allowed.
    #[case::same_move_confirmed(done(OLD, NEW, true), restart())]
    #[case::another_move(done("20261101T000000Z", OLD, false), restart())]
    #[case::other_target(done(OLD, "20261130T050000Z", false), restart())]
    fn a_move_that_did_not_happen_is_not_retried(
        #[case] last: Rollover,
        #[case] expected: Decision<'static>,
    ) {
        assert_eq!(
            decide(
                RestartPolicy::WhenEmpty,
                Some(OLD),
                Some(NEW),
                &info(0, 0),
                Some(&last)
            ),
            expected
        );
    }

    #[rstest]
    #[case::moved(Some(NEW), true)]
    #[case::stayed(Some(OLD), false)]
    #[case::no_generation_any_more(None, true)]
    fn the_next_run_confirms_a_move(#[case] generation: Option<&str>, #[case] confirmed: bool) {
        assert_eq!(
            done(OLD, NEW, false).seen_by(generation).confirmed,
            confirmed
        );
    }

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[rstest]
    #[case::unset(&[], RestartPolicy::WhenEmpty)]
    #[case::never(&[(POLICY, "never")], RestartPolicy::Never)]
    #[case::when_empty(&[(POLICY, " when-empty ")], RestartPolicy::WhenEmpty)]
    #[case::now(&[(POLICY, "now")], RestartPolicy::Now)]
    fn the_policy_setting(#[case] pairs: &[(&str, &str)], #[case] expected: RestartPolicy) {
        assert_eq!(policy_from_lookup(&lookup(pairs)).unwrap(), expected);
    }

    #[rstest]
    #[case("sometimes")]
    #[case("")]
    #[case("when_empty")]
    #[case("NOW")]
    fn a_bad_policy_names_the_variable_and_the_value(#[case] raw: &str) {
        let err = policy_from_lookup(&lookup(&[(POLICY, raw)])).unwrap_err();
        assert_eq!(err.kind, Kind::InvalidConfig);
        assert_eq!(
            err.message,
            format!("LEFT4ME_UPDATE_RESTART={raw:?}: not one of never, when-empty, now")
        );
        assert!(
            err.hint
                .unwrap()
                .contains("LEFT4ME_UPDATE_RESTART=when-empty")
        );
    }

    #[rstest]
    #[case::absent(&[], None)]
    #[case::empty(&[(GENERATION, "")], None)]
    #[case::set(&[(GENERATION, OLD)], Some(OLD))]
    fn the_generation_from_the_environment(
        #[case] pairs: &[(&str, &str)],
        #[case] expected: Option<&str>,
    ) {
        let w = Watcher::from_lookup(RestartPolicy::WhenEmpty, &lookup(pairs)).unwrap();
        assert_eq!(w.running(), expected);
        assert_eq!(w.installations, Path::new("/var/lib/left4me/installations"));
    }

    #[rstest]
    #[case::generation(GENERATION, "../x", "not a generation id")]
    #[case::generation_spaces(GENERATION, "a b", "not a generation id")]
    #[case::relative_state_dir(STATE_DIR, "var/lib/left4me", "not an absolute path")]
    fn bad_inputs_are_settings_errors(#[case] key: &str, #[case] raw: &str, #[case] why: &str) {
        let err = Watcher::from_lookup(RestartPolicy::WhenEmpty, &lookup(&[(key, raw)]))
            .err()
            .unwrap();
        assert_eq!(err.kind, Kind::InvalidConfig);
        assert!(
            err.message.starts_with(&format!("{key}=")),
            "{}",
            err.message
        );
        assert!(err.message.contains(why), "{}", err.message);
    }

    /// A state dir with `installations/current` holding `content`.
    fn state(content: Option<&[u8]>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("installations")).unwrap();
        if let Some(c) = content {
            fs::write(dir.path().join("installations/current"), c).unwrap();
        }
        dir
    }

    /// The check's own opener (no openat2 in its sandbox): the helper's
    /// rule for the content, and no link, FIFO or large file taken.
    #[test_log::test]
    fn the_checks_reader_follows_no_link_and_blocks_on_no_fifo() {
        let dir = state(Some(b"20261130T030000Z\n"));
        let inst = dir.path().join("installations");
        assert_eq!(read_current(&inst).unwrap().as_str(), OLD);
        let current = inst.join("current");
        fs::write(&current, vec![b'a'; 257]).unwrap();
        assert!(
            read_current(&inst)
                .unwrap_err()
                .contains("larger than 256 bytes")
        );
        fs::write(&current, "../installation\n").unwrap();
        assert!(
            read_current(&inst)
                .unwrap_err()
                .contains("does not name a generation")
        );
        fs::remove_file(&current).unwrap();
        assert!(read_current(&inst).unwrap_err().ends_with("does not exist"));
        let target = dir.path().join("elsewhere");
        fs::write(&target, "20261130T030000Z\n").unwrap();
        std::os::unix::fs::symlink(&target, &current).unwrap();
        assert!(read_current(&inst).is_err(), "a symlink was followed");
        fs::remove_file(&current).unwrap();
        nix::unistd::mkfifo(&current, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(
            read_current(&inst)
                .unwrap_err()
                .contains("not a regular file")
        );
    }

    #[test_log::test]
    fn the_watcher_restarts_an_empty_server_onto_a_new_current() {
        let dir = state(Some(b"20261130T030000Z\n"));
        let state_dir = dir.path().to_str().unwrap().to_owned();
        let mut w = Watcher::from_lookup(
            RestartPolicy::WhenEmpty,
            &lookup(&[(GENERATION, OLD), (STATE_DIR, &state_dir)]),
        )
        .unwrap();
        assert_eq!(w.after_answer("vs1", &info(0, 0), None, 10), None);
        fs::write(dir.path().join("installations/current"), format!("{NEW}\n")).unwrap();
        assert_eq!(w.after_answer("vs1", &info(2, 1), None, 20), None);
        assert_eq!(w.waiting_for.as_deref(), Some(NEW));
        let r = w.after_answer("vs1", &info(1, 1), None, 30).unwrap();
        assert_eq!(
            r,
            Rollover {
                time_ms: 30,
                from: OLD.into(),
                to: NEW.into(),
                players: 1,
                bots: 1,
                confirmed: false
            }
        );
        assert_eq!(
            r.reason("vs1"),
            format!(
                "generation {NEW} is current and vs1 runs {OLD}; A2S_INFO reports no human \
                 player (1 players, 1 bots) and LEFT4ME_UPDATE_RESTART=when-empty"
            )
        );
        // A broken current is warned about once and stops the rollover.
        fs::write(dir.path().join("installations/current"), "garbage here\n").unwrap();
        assert_eq!(w.after_answer("vs1", &info(0, 0), None, 40), None);
        assert!(
            w.warned
                .as_deref()
                .unwrap()
                .contains("does not name a generation"),
            "{:?}",
            w.warned
        );
        fs::remove_file(dir.path().join("installations/current")).unwrap();
        assert_eq!(w.after_answer("vs1", &info(0, 0), None, 50), None);
        assert!(
            w.warned
                .as_deref()
                .unwrap()
                .ends_with("installations/current does not exist"),
            "{:?}",
            w.warned
        );
    }

    #[test]
    fn the_watcher_without_a_generation_reads_nothing() {
        // The state dir does not exist: reading current would warn.
        let mut w = Watcher::from_lookup(
            RestartPolicy::WhenEmpty,
            &lookup(&[(STATE_DIR, "/nonexistent-left4me-state")]),
        )
        .unwrap();
        assert_eq!(w.after_answer("vs1", &info(0, 0), None, 10), None);
        assert_eq!(w.warned, None);
    }
}
