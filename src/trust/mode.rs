//! How strictly a node checks what it runs: `off`, `warn`, `enforce`, and
//! what each does with a verdict.

use serde::Deserialize;

use super::verifier::{Action, Verdict};

/// How strictly a node checks tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// No checks (a grid that signs nothing).
    #[default]
    Off,
    /// Check, log what `enforce` would refuse, run everything: to roll out
    /// signing without stopping a grid.
    Warn,
    /// Run only trusted tasks: skip unsigned ones and unknown signers (the
    /// policy may be behind), fail bad signatures and expired tasks.
    Enforce,
}

impl Mode {
    pub fn action(self, verdict: &Verdict) -> Action {
        match (self, verdict) {
            (Mode::Off, _) | (_, Verdict::Trusted(_)) => Action::Run { warning: None },
            (Mode::Warn, Verdict::Skip(e) | Verdict::Reject(e)) => Action::Run {
                warning: Some(e.clone()),
            },
            (Mode::Enforce, Verdict::Skip(e)) => Action::Skip(e.clone()),
            (Mode::Enforce, Verdict::Reject(e)) => Action::Fail(e.clone()),
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Warn => "warn",
            Mode::Enforce => "enforce",
        }
    }

    pub fn parse(v: &str) -> Option<Mode> {
        match v {
            "off" => Some(Mode::Off),
            "warn" => Some(Mode::Warn),
            "enforce" => Some(Mode::Enforce),
            _ => None,
        }
    }
}
