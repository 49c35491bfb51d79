//! Failures the helper reports on purpose: each has a kind with its own exit
//! code, a message saying what is wrong and where, and a hint saying what to do.
//! Anything else (an OS error nobody anticipated) exits with 1.

use std::fmt;

/// Exit codes are part of the contract (README, "Exit codes"): scripts and
/// systemd's `status=` in the journal rely on them staying put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    InvalidName = 10,
    InvalidConfig = 11,
    Missing = 12,
    UnsafePath = 13,
    Busy = 14,
    Conflict = 15,
    LockTimeout = 16,
    KernelLimit = 17,
    NotPermitted = 18,
    UnknownUser = 19,
}

impl Kind {
    pub fn exit_code(self) -> u8 {
        self as u8
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::InvalidName => "invalid-name",
            Kind::InvalidConfig => "invalid-config",
            Kind::Missing => "missing",
            Kind::UnsafePath => "unsafe-path",
            Kind::Busy => "busy",
            Kind::Conflict => "conflict",
            Kind::LockTimeout => "lock-timeout",
            Kind::KernelLimit => "kernel-limit",
            Kind::NotPermitted => "not-permitted",
            Kind::UnknownUser => "unknown-user",
        }
    }
}

#[derive(Debug)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

/// The exit code for any error the helper can end with.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    failure_of(err).map_or(1, |f| f.kind.exit_code())
}

pub fn failure_of(err: &anyhow::Error) -> Option<&Failure> {
    err.chain().find_map(|e| e.downcast_ref::<Failure>())
}

pub type Result<T, E = anyhow::Error> = std::result::Result<T, E>;
