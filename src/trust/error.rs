//! Why a task or a result is not trusted, each reason with a stable name
//! (`code`) for the `error` field of a result in `failed/` and for logs.

use super::envelope::{Disagreement, EnvelopeError};
use super::policy::{Kind, WindowError};
use super::sig::SigError;
use crate::grid::TaskError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("has no `envelope`: it is not signed")]
    Unsigned,
    #[error("no policy has been accepted yet, so no signer is known")]
    NoPolicy,
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("{0}")]
    Tampered(Disagreement),
    #[error("the signed task is invalid: {0}")]
    BadTask(TaskError),
    #[error("the signed payload has no valid `{field}`: {reason}")]
    BadField { field: &'static str, reason: String },
    #[error("is signed for grid {found:?}, not this grid ({expected:?})")]
    OtherGrid { found: String, expected: String },
    #[error("is signed by key {fingerprint}, which the policy does not list")]
    UnknownSigner { fingerprint: String },
    #[error(
        "is signed by key {fingerprint} of {kind} {name}; only a {wanted}'s key may sign a {role}"
    )]
    WrongRole {
        fingerprint: String,
        kind: Kind,
        name: String,
        wanted: Kind,
        role: &'static str,
    },
    #[error("is signed by key {fingerprint}, revoked at {revoked_at}{}", reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Revoked {
        fingerprint: String,
        revoked_at: String,
        reason: Option<String>,
    },
    #[error("has a bad signature: it {0}")]
    BadSignature(SigError),
    #[error("is signed by the key of {kind} {name}, which {error}")]
    KeyWindow {
        kind: Kind,
        name: String,
        error: WindowError,
    },
    #[error("was issued at {0}, later than this node's clock")]
    NotYetIssued(String),
    #[error("expired at {0}")]
    Expired(String),
    #[error("is valid for {seconds} s; the policy allows at most {max} s")]
    LifetimeTooLong { seconds: i64, max: u64 },
    #[error("is signed by node {signer} but names node {node_id}")]
    WrongNode { signer: String, node_id: String },
    #[error("answers a claim its node never held: {0}")]
    ClaimNotHeld(String),
    /// A result's path says another node, task or outcome than its signed
    /// fields: a copy or a move of a real result, which must not count as
    /// what its path claims.
    #[error("is filed where its signed fields do not put it: {0}")]
    Misplaced(String),
    /// The task ran already: a copy put back in the queue after its result
    /// (by the host, or anyone with push access) never runs again.
    #[error("was run already: {0}")]
    Replayed(String),
    /// A completed result whose node took no submitter's signature on the
    /// task it ran (a listed node in `warn` or `off` runs what no one
    /// signed): no completion of a signed task, whatever its id.
    #[error(
        "answers a task that node {0} did not find signed by a submitter its policy lists (it ran it in `warn` or `off`)"
    )]
    TaskNotSigned(String),
}

/// What a node does with a task it does not trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Leave it in the queue and log it: the policy may only be behind (an
    /// unknown signer), or the task not yet due. Another node, or this one
    /// later, may run it.
    Skip,
    /// Move it to `failed/` with the error: no policy can make it good.
    Reject,
}

impl TrustError {
    /// A short stable name: `unsigned`, `bad-signature`, `expired`, ...
    pub fn code(&self) -> &'static str {
        match self {
            TrustError::Unsigned => "unsigned",
            TrustError::NoPolicy => "no-policy",
            TrustError::Envelope(_) => "malformed-envelope",
            TrustError::Tampered(_) => "tampered",
            TrustError::BadTask(_) | TrustError::BadField { .. } => "invalid-payload",
            TrustError::OtherGrid { .. } => "other-grid",
            TrustError::UnknownSigner { .. } => "unknown-signer",
            TrustError::WrongRole { .. } => "wrong-role",
            TrustError::Revoked { .. } => "revoked-key",
            TrustError::BadSignature(_) => "bad-signature",
            TrustError::KeyWindow {
                error: WindowError::Expired(_),
                ..
            } => "key-expired",
            TrustError::KeyWindow { .. } => "key-not-yet-valid",
            TrustError::NotYetIssued(_) => "not-yet-issued",
            TrustError::Expired(_) => "expired",
            TrustError::LifetimeTooLong { .. } => "lifetime-too-long",
            TrustError::WrongNode { .. } => "wrong-node",
            TrustError::ClaimNotHeld(_) => "claim-not-held",
            TrustError::Misplaced(_) => "misplaced",
            TrustError::Replayed(_) => "replayed",
            TrustError::TaskNotSigned(_) => "task-not-signed",
        }
    }

    pub fn disposition(&self) -> Disposition {
        match self {
            TrustError::Unsigned
            | TrustError::NoPolicy
            | TrustError::UnknownSigner { .. }
            | TrustError::NotYetIssued(_) => Disposition::Skip,
            _ => Disposition::Reject,
        }
    }

    /// The text for a result's `error` field: the name, then the reason.
    pub fn report(&self) -> String {
        format!("untrusted ({}): {self}", self.code())
    }
}
