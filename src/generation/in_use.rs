//! Which generation each mounted instance (or one being mounted) uses, from
//! its stack record: what collection must keep and the `now` restart policy
//! moves.

use std::collections::BTreeMap;
use std::os::fd::AsFd;

use super::id::{GenerationId, INSTALLATIONS};
use crate::error::Result;
use crate::fsx;
use crate::instance::{self, Layer, Role};
use crate::lock;
use crate::name::InstanceName;
use crate::state::{self, InstancePaths, Own, State};

/// The generation a layer stack (a mount's record) uses; `None` for the
/// legacy installation/ or no installation layer.
pub(crate) fn of_stack(layers: &[Layer]) -> Option<GenerationId> {
    layers
        .iter()
        .find(|l| l.role == Role::Installation)
        .and_then(|l| l.rel.strip_prefix(&format!("{INSTALLATIONS}/")))
        .and_then(GenerationId::parse)
}

/// Which generations mounted instances, and those being mounted, use, from
/// their stack records.
#[derive(Debug, Default)]
pub(crate) struct InUse {
    pub(crate) by: BTreeMap<GenerationId, Vec<String>>,
    /// Mounted instances whose record names no generation: mounted by an
    /// older helper, from installation/, or with an unreadable record.
    pub(crate) unknown: Vec<String>,
}

pub(crate) fn in_use(state: &State) -> Result<InUse> {
    let mut used = InUse::default();
    let Some(runtime) = state.open_runtime()? else {
        return Ok(used);
    };
    let helper_dir = state.open_helper_dir(runtime.as_fd())?;
    let mut names: Vec<InstanceName> = state
        .names_in(state::RUNTIME)?
        .iter()
        .filter_map(|n| InstanceName::parse(n).ok())
        .collect();
    names.sort();
    for name in names {
        let paths = InstancePaths::new(&name);
        let shown = state.shown(&paths.runtime());
        let Some(runtime_i) = fsx::open_dir_if_exists(state.fd(), &paths.runtime(), &shown)? else {
            continue;
        };
        let merged_shown = state.shown(&paths.part(state::MERGED));
        match instance::mounted_here(runtime_i.as_fd(), &name, &merged_shown) {
            // Not mounted, but maybe being mounted: a mount records its
            // generation before it lets the installations lock go, and
            // holds the instance's lock until it is attached (or failed).
            // A verb holding it for something else costs at most keeping a
            // generation until the next collection.
            Ok(None)
                if !helper_dir
                    .as_ref()
                    .is_some_and(|dir| lock::held(dir.as_fd(), &paths.own(Own::Lock))) =>
            {
                continue;
            }
            Ok(_) => {}
            // Something odd is mounted there: count it as unknown, so
            // nothing is removed on a guess.
            Err(_) => {
                used.unknown.push(name.to_string());
                continue;
            }
        }
        let record = helper_dir
            .as_ref()
            .and_then(|dir| instance::read_record(dir.as_fd(), &paths));
        match record.as_deref().and_then(of_stack) {
            Some(id) => used.by.entry(id).or_default().push(name.to_string()),
            None => used.unknown.push(name.to_string()),
        }
    }
    Ok(used)
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test_log::test]
    fn a_stack_names_its_generation_only_under_installations() {
        let stack = |rel: &str| {
            vec![Layer {
                role: Role::Installation,
                rel: rel.into(),
            }]
        };
        assert_eq!(
            of_stack(&stack("installations/20261130T031500Z")).map(|i| i.to_string()),
            Some("20261130T031500Z".into())
        );
        assert_eq!(of_stack(&stack("installation")), None);
        assert_eq!(of_stack(&stack("installations/.next")), None);
        assert_eq!(of_stack(&[]), None);
    }
}
