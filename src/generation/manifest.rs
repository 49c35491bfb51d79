//! Steam's app manifest of a generation: its build id and whether the app
//! is fully installed.

use std::os::fd::BorrowedFd;

use crate::error::{Kind, Result};
use crate::fsx;

pub(super) const MANIFEST: &str = "steamapps/appmanifest_222860.acf";
/// Steam's "fully installed" state flag.
const FULLY_INSTALLED: u32 = 4;

/// The Steam build id and whether the app is fully installed, from the
/// generation's app manifest (`None` when it has none: a tree imported by
/// hand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub(crate) build_id: Option<String>,
    pub(crate) fully_installed: bool,
}

/// Reads `MANIFEST` below `dir` (a generation, or .next/).
pub(super) fn read_manifest(
    dir: BorrowedFd<'_>,
    shown_dir: &std::path::Path,
) -> Result<Option<Manifest>> {
    let shown = shown_dir.join(MANIFEST);
    match fsx::read_small_root_file(dir, MANIFEST, &shown, 64 * 1024) {
        Ok(bytes) => Ok(Some(parse_manifest(&String::from_utf8_lossy(&bytes)))),
        Err(f) if f.kind == Kind::Missing => Ok(None),
        Err(f) => Err(f),
    }
}

/// Steam's KeyValues text: `"key"  "value"` pairs, one per line. Only the
/// two top-level keys that matter are looked for.
pub(crate) fn parse_manifest(text: &str) -> Manifest {
    let value = |key: &str| {
        text.lines().find_map(|line| {
            let mut quoted = line.split('"').skip(1).step_by(2);
            let k = quoted.next()?;
            let v = quoted.next()?;
            k.eq_ignore_ascii_case(key).then(|| v.to_owned())
        })
    };
    let flags: Option<u32> = value("StateFlags").and_then(|v| v.parse().ok());
    Manifest {
        build_id: value("buildid")
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())),
        fully_installed: flags
            .is_some_and(|f| f & FULLY_INSTALLED != 0 && f & !FULLY_INSTALLED == 0),
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test_log::test]
    fn manifests_give_the_build_and_whether_it_is_complete() {
        let complete = "\"AppState\"\n{\n\t\"appid\"\t\t\"222860\"\n\t\"StateFlags\"\t\t\"4\"\n\t\"buildid\"\t\t\"16212116\"\n}\n";
        assert_eq!(
            parse_manifest(complete),
            Manifest {
                build_id: Some("16212116".into()),
                fully_installed: true
            }
        );
        // 1026 = update required | update running: a download cut short.
        let partial = complete.replace("\"4\"", "\"1026\"");
        assert!(!parse_manifest(&partial).fully_installed);
        assert_eq!(parse_manifest("garbage").build_id, None);
        assert!(!parse_manifest("garbage").fully_installed);
        assert_eq!(parse_manifest("\"buildid\" \"12; rm\"").build_id, None);
    }
}
