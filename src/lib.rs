//! left4me-overlay: the privileged helper that assembles, tears down, resets
//! and inspects one left4me instance's overlayfs mount. The binary is a thin
//! shell over [`run::run`]; see the README for the contract and threat model.

mod a2s;
pub mod cli;
pub mod discard;
pub mod envfile;
pub mod error;
pub mod fsx;
pub mod health;
pub mod idmap;
pub mod lock;
pub mod logging;
pub mod mounts;
pub mod name;
pub mod namespace;
pub mod ops;
pub mod run;
pub mod state;
pub mod status;
