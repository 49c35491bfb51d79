//! A generation's name: what `installations/<id>` may be called, how new
//! ones are made and how they sort. The bottom of the module: it imports
//! nothing of its siblings.

/// The directory of the generations, in the state dir.
pub(crate) const INSTALLATIONS: &str = "installations";

/// A generation's name, validated whenever one is read back: 1-64 of
/// [A-Za-z0-9._-], first alphanumeric (so never `.next` or `..`). New
/// ones are the UTC commit time, `YYYYMMDDTHHMMSSZ`, which sorts by age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GenerationId(String);

/// Oldest first: by the stamp, then by the `-N` suffix as a number (so
/// `-10` comes after `-2`).
impl Ord for GenerationId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

impl PartialOrd for GenerationId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl GenerationId {
    pub(crate) fn parse(s: &str) -> Option<GenerationId> {
        let ok = (1..=64).contains(&s.len())
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        ok.then(|| GenerationId(s.to_owned()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The layer's path relative to the state dir.
    pub(crate) fn rel(&self) -> String {
        format!("{INSTALLATIONS}/{}", self.0)
    }

    /// (stamp, suffix): a plain stamp counts as suffix 1, `-2` follows it.
    fn sort_key(&self) -> (&str, u64) {
        match self.0.rsplit_once('-') {
            Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                (base, n.parse().unwrap_or(u64::MAX))
            }
            _ => (&self.0, 1),
        }
    }

    /// A new id for a generation committed at `unix_secs`, not among
    /// `taken`, and newer than all of them even if the clock went back.
    pub(super) fn new_at(unix_secs: u64, taken: &[GenerationId]) -> GenerationId {
        let stamp = utc_stamp(unix_secs);
        let newest = taken.iter().map(|t| t.sort_key().0).max().unwrap_or("");
        let base = if newest > stamp.as_str() && newest.len() == stamp.len() {
            newest.to_owned()
        } else {
            stamp
        };
        let last = taken
            .iter()
            .map(GenerationId::sort_key)
            .filter(|(b, _)| *b == base)
            .map(|(_, n)| n)
            .max();
        GenerationId(match last {
            None => base,
            Some(n) => format!("{base}-{}", n.saturating_add(1)),
        })
    }
}

impl std::fmt::Display for GenerationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `YYYYMMDDTHHMMSSZ` (days to civil date after Howard Hinnant's algorithm).
fn utc_stamp(unix_secs: u64) -> String {
    let days = (unix_secs / 86400) as i64;
    let secs = unix_secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[test_log::test]
    fn ids_are_utc_stamps_that_sort_by_age_and_never_collide() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_700_000_000), "20231114T221320Z");
        let a = GenerationId::new_at(1_796_000_000, &[]);
        let b = GenerationId::new_at(1_796_000_000, std::slice::from_ref(&a));
        let c = GenerationId::new_at(1_796_000_000, &[a.clone(), b.clone()]);
        assert_eq!(b.as_str(), format!("{a}-2"));
        assert_eq!(c.as_str(), format!("{a}-3"));
        assert!(GenerationId::new_at(1_796_000_001, &[]) > a);
        // -10 sorts after -2, and a new id follows the highest suffix even
        // when lower ones were collected.
        let ten = GenerationId(format!("{a}-10"));
        assert!(ten > b);
        assert_eq!(
            GenerationId::new_at(1_796_000_000, std::slice::from_ref(&ten)).as_str(),
            format!("{a}-11")
        );
        // A clock that went back still gives a newer id.
        let back = GenerationId::new_at(1_795_000_000, std::slice::from_ref(&c));
        assert!(back > c, "{back} after {c}");
    }

    #[rstest]
    #[case("20261130T031500Z", true)]
    #[case("migrated", true)]
    #[case(".next", false)]
    #[case("..", false)]
    #[case("a/b", false)]
    #[case("", false)]
    #[case("-x", false)]
    fn generation_names(#[case] name: &str, #[case] ok: bool) {
        assert_eq!(GenerationId::parse(name).is_some(), ok, "{name}");
    }
}
