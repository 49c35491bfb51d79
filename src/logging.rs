//! Under systemd (stderr is the journal stream), events go to journald with
//! structured fields LEFT4ME_INSTANCE and LEFT4ME_VERB (and whatever fields
//! the event itself carries, upper-cased: `health_reason` is HEALTH_REASON), so
//! `journalctl LEFT4ME_INSTANCE=vs1` finds everything about one instance.
//! Elsewhere they go to stderr, filtered by LEFT4ME_LOG (default: warn).

use std::os::fd::AsFd;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::prelude::*;

/// Returns whether events go to the journal.
pub(crate) fn init(verb: &str, instance: Option<&str>) -> bool {
    init_as("left4me-overlay", verb, instance)
}

/// As [`init`], for another of the crate's programs: `identifier` becomes
/// SYSLOG_IDENTIFIER, so `journalctl -t left4me-health` finds that program.
pub(crate) fn init_as(identifier: &str, verb: &str, instance: Option<&str>) -> bool {
    if stderr_is_journal() {
        let mut fields = vec![("LEFT4ME_VERB".to_owned(), verb.to_owned())];
        if let Some(instance) = instance {
            fields.push(("LEFT4ME_INSTANCE".to_owned(), instance.to_owned()));
        }
        if let Ok(layer) = tracing_journald::layer() {
            let layer = layer
                .with_syslog_identifier(identifier.into())
                .with_field_prefix(None)
                .with_custom_fields(fields);
            tracing_subscriber::registry()
                .with(layer.with_filter(level("info")))
                .init();
            return true;
        }
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_max_level(level("warn"))
        .init();
    false
}

fn level(default: &str) -> LevelFilter {
    std::env::var("LEFT4ME_LOG")
        .unwrap_or_else(|_| default.into())
        .parse()
        .unwrap_or(LevelFilter::WARN)
}

/// systemd sets JOURNAL_STREAM=dev:inode of the stream it connected; only
/// trust it if stderr really is that stream (not redirected since).
fn stderr_is_journal() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(st) = rustix::fs::fstat(std::io::stderr().as_fd()) else {
        return false;
    };
    value == format!("{}:{}", st.st_dev, st.st_ino)
}
