//! left4me-overlay: the privileged helper that assembles, tears down, resets
//! and inspects one left4me instance's overlayfs mount. The binary is a thin
//! shell over [`main`]; see docs/helper.md for the contract and threat model.
//! The crate's second program, the per-instance health check `left4me-health`
//! (docs/health.md), is [`health_main`]; the root helper never calls it.
//! The third, the admin command `left4me` (docs/admin.md), is [`admin_main`]:
//! it acts through systemd and is never run by a root unit.
//! Everything else is private to the crate, and `unsafe` lives in `sys` only.
#![deny(unsafe_code)]
#![warn(unreachable_pub)]

mod a2s;
mod admin;
mod cli;
mod console;
mod contract;
mod cpus;
mod discard;
mod envfile;
mod error;
mod fsx;
mod generation;
mod health;
mod idmap;
mod instance;
mod last_failure;
mod lock;
mod logging;
mod mounts;
mod name;
mod namespace;
mod overlay;
mod ports;
mod procs;
mod requests;
mod run;
mod state;
mod status;
#[allow(unsafe_code)]
mod sys;
mod verbs;

/// left4me's program (src/bin/left4me.rs).
pub use admin::main as admin_main;
/// left4me-health's program (src/bin/left4me-health.rs).
pub use health::main as health_main;
pub use run::main;
