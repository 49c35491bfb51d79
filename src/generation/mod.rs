//! Installation generations (docs/updates.md). The game lives in root-owned
//! installations/<id>/, never changed once committed, and
//! installations/current, a root-owned regular file, names the one the next
//! mount uses. An update builds the next generation beside the ones running
//! instances use as their lowest layer, and switches `current` in one rename.
//!
//! The imports go one way: `current` (installations/ and `current`, the
//! locks, migration) and `in_use` (what mounted instances use, from
//! `instance`'s records) import `id` (names); `steam` (steamcmd as the
//! update user) imports `tree` (copying and taking over trees); `update`
//! (the verbs) imports them all; `id`, `manifest` and `tree` import no
//! sibling, and nothing imports `update` but this file, which only declares
//! the modules and re-exports what the rest of the crate uses. `instance`
//! imports nothing of `generation`: the mount resolves the generation
//! (`layer_rel`) and passes it down.

mod current;
mod id;
mod in_use;
mod manifest;
mod steam;
mod tree;
mod update;

pub(crate) use current::{
    MAX_CURRENT_BYTES, current, hold_for_mount, layer_rel, layer_rel_if_installed, parse_current,
};
pub(crate) use id::{GenerationId, INSTALLATIONS};
pub(crate) use in_use::of_stack;
pub(crate) use manifest::parse_manifest;
pub(crate) use steam::{FetchArgs, LoginMode, fetch};
pub(crate) use update::{
    After, CommitOutcome, CopyMode, ImportArgs, RestartPolicy, Sibling, abort, commit, gc, import,
    list, prepare, sweep_in_background,
};
