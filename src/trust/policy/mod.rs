//! The grid's policy: `.dgrid/policy.json` on the grid's branch, signed by
//! the roots that every worker pins.
//!
//! ```json
//! {
//!   "grid_id": "g7",
//!   "version": 3,
//!   "issued_at": "2026-11-30T10:00:00.000Z",
//!   "max_task_lifetime_seconds": 2592000,
//!   "submitters": [{"name": "alice", "key": "ssh-ed25519 AAAA…"}],
//!   "nodes": [{"name": "n1", "key": "ssh-ed25519 AAAA…", "valid_before": "2027-01-01T00:00:00Z"}],
//!   "revoked": [{"key": "ssh-ed25519 AAAA…", "revoked_at": "…", "reason": "laptop stolen"}],
//!   "envelope": {"payload_type": "application/vnd.dgrid.policy.v1+json",
//!                "payload": "<base64 of the same fields>", "signatures": ["<one per root>"]}
//! }
//! ```
//!
//! What each key may do is its list: a submitter's key signs tasks, a
//! node's key (named by the node id) signs that node's results, and no key
//! is in both. A worker takes a new policy only if enough of its pinned
//! roots signed it and its version is higher than the one it holds
//! ([`decide`]): the git host can withhold a new policy but never bring
//! back an old one, nor write one of its own.
//!
//! Beside the policy the tools write, from it, `.dgrid/allowed_signers`
//! (for `ssh-keygen -Y verify`, each key limited to its namespace and time
//! window) and `.dgrid/revoked_keys` (for `ssh-keygen -Y verify -r`).

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use ssh_key::PublicKey;

use super::envelope::{self, Disagreement, ENVELOPE_FIELD, Envelope, EnvelopeError};
use super::keys::{self, fingerprint};
use super::sig::{self, KeySigner, Role, SigError, SignError};
use crate::grid::Id;
use crate::time::{self, Timestamp};

pub const POLICY_FILE: &str = ".dgrid/policy.json";
pub const ALLOWED_SIGNERS_FILE: &str = ".dgrid/allowed_signers";
pub const REVOKED_KEYS_FILE: &str = ".dgrid/revoked_keys";
/// The roots' public keys, for the grid's own CI (`validate --verify`)
/// only: a worker never reads them from the grid, it pins its own.
pub const ROOTS_FILE: &str = ".dgrid/roots";

/// A task may be valid for 30 days at most, unless the policy says
/// otherwise: a bound on how long a signed task can be replayed, and on
/// what a node must remember to refuse a replay.
pub const DEFAULT_MAX_TASK_LIFETIME: u64 = 30 * 24 * 3600;

/// A policy file is small; this bounds what a worker reads.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    /// A submitter's name, or a node's id.
    pub name: Id,
    /// `ssh-ed25519 AAAA…`, without a comment.
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_before: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    pub key: String,
    pub revoked_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The signed fields. Unknown fields are refused: a policy that says more
/// than this worker understands might restrict something it would ignore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub grid_id: Id,
    pub version: u64,
    pub issued_at: String,
    #[serde(default = "default_lifetime")]
    pub max_task_lifetime_seconds: u64,
    #[serde(default)]
    pub submitters: Vec<Principal>,
    #[serde(default)]
    pub nodes: Vec<Principal>,
    #[serde(default)]
    pub revoked: Vec<Revocation>,
}

fn default_lifetime() -> u64 {
    DEFAULT_MAX_TASK_LIFETIME
}

/// Who a key is, as far as the policy says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Submitter,
    Node,
}

impl Kind {
    pub fn word(self) -> &'static str {
        match self {
            Kind::Submitter => "submitter",
            Kind::Node => "node",
        }
    }

    /// The role a key of this kind signs for.
    pub fn role(self) -> Role {
        match self {
            Kind::Submitter => Role::Task,
            Kind::Node => Role::Result,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.word())
    }
}

/// A key's time window, against the worker's own clock (never a commit's
/// date, which the signer chooses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    pub after: Option<Timestamp>,
    pub before: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("is valid only from {0}")]
    NotYetValid(String),
    #[error("expired at {0}")]
    Expired(String),
}

impl Window {
    pub fn check(&self, now: Timestamp) -> Result<(), WindowError> {
        if let Some(a) = self.after.filter(|a| now < *a) {
            return Err(WindowError::NotYetValid(time::format(a)));
        }
        if let Some(b) = self.before.filter(|b| now >= *b) {
            return Err(WindowError::Expired(time::format(b)));
        }
        Ok(())
    }
}

/// One listed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub kind: Kind,
    pub name: Id,
    pub window: Window,
}

/// What the policy says about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<'a> {
    Listed(&'a Listed),
    Revoked(&'a Revocation),
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("is {0} bytes; a policy is at most {MAX_POLICY_BYTES}")]
    TooLarge(usize),
    #[error("is not a JSON object ({0})")]
    Malformed(String),
    #[error("has no `envelope`: the policy is not signed")]
    Unsigned,
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("{0}")]
    Disagrees(Disagreement),
    #[error("the signed payload is not a policy: {0}")]
    Body(String),
    #[error("{0}")]
    Invalid(String),
    #[error("is for grid {found:?}, not {expected:?}")]
    OtherGrid { found: String, expected: String },
    #[error("is signed by no pinned root (signed by {})", signers.join(", "))]
    NotSignedByRoots { signers: Vec<String> },
    #[error("has a bad signature by root {fingerprint}: it {error}")]
    BadRootSignature {
        fingerprint: String,
        error: SigError,
    },
    #[error(
        "is signed by {valid} pinned root(s); {threshold} are required{}",
        never_met(*threshold, *pinned)
    )]
    TooFewRootSignatures {
        valid: usize,
        threshold: usize,
        /// How many roots are pinned: a threshold above it is never met.
        pinned: usize,
    },
    #[error("is version {found}, older than version {held} already accepted: a rollback, refused")]
    RolledBack { found: u64, held: u64 },
    #[error(
        "is version {found}, older than version {min}, the lowest this node takes (`[trust] min_policy_version`): a rollback, refused"
    )]
    BelowMinimum { found: u64, min: u64 },
    #[error(
        "is version {version} with other content than the version {version} already accepted: refused"
    )]
    Equivocation { version: u64 },
}

/// Said of a threshold above the roots pinned (a tool's `--threshold`;
/// a node's configuration refuses one).
fn never_met(threshold: usize, pinned: usize) -> String {
    match threshold > pinned {
        true => {
            format!(", but only {pinned} root(s) are pinned: no policy can meet that threshold")
        }
        false => String::new(),
    }
}

impl PolicyError {
    /// A short stable name for logs and reports.
    pub fn code(&self) -> &'static str {
        match self {
            PolicyError::TooLarge(_) | PolicyError::Malformed(_) => "malformed",
            PolicyError::Unsigned => "unsigned",
            PolicyError::Envelope(_) | PolicyError::Body(_) | PolicyError::Invalid(_) => "invalid",
            PolicyError::Disagrees(_) => "tampered",
            PolicyError::OtherGrid { .. } => "other-grid",
            PolicyError::NotSignedByRoots { .. } => "not-signed-by-roots",
            PolicyError::BadRootSignature { .. } => "bad-signature",
            PolicyError::TooFewRootSignatures { .. } => "too-few-signatures",
            PolicyError::RolledBack { .. } | PolicyError::BelowMinimum { .. } => "rolled-back",
            PolicyError::Equivocation { .. } => "equivocation",
        }
    }
}

/// What a worker pins: the grid's id, its roots, and how many of them must
/// sign a policy.
#[derive(Debug, Clone)]
pub struct Pinned {
    pub grid_id: Id,
    pub roots: Vec<PublicKey>,
    pub threshold: usize,
    /// The lowest version taken (`[trust] min_policy_version`; 0: any):
    /// a node that holds no policy yet would otherwise take whatever
    /// root-signed version the branch has, an older one a pusher put
    /// back included.
    pub min_version: u64,
}

impl Pinned {
    fn is_root(&self, key: &PublicKey) -> bool {
        self.roots.iter().any(|r| r.key_data() == key.key_data())
    }
}

/// A policy whose signatures verified: its fields, the index of its keys,
/// and the exact bytes of its file (what the state directory keeps).
#[derive(Debug, Clone)]
pub struct Accepted {
    pub policy: Policy,
    pub index: Index,
    pub file: Vec<u8>,
    /// SHA-256 of the signed payload, hex: tells two equal versions apart.
    pub digest: String,
    /// How many distinct pinned roots' signatures verified: the policy
    /// tools refuse to replace it with a version signed by fewer.
    pub root_signatures: usize,
}

/// The keys of a policy, by fingerprint.
#[derive(Debug, Clone, Default)]
pub struct Index {
    listed: HashMap<String, Listed>,
    revoked: HashMap<String, Revocation>,
}

impl Index {
    pub fn lookup(&self, key: &PublicKey) -> Lookup<'_> {
        let fp = fingerprint(key);
        if let Some(r) = self.revoked.get(&fp) {
            return Lookup::Revoked(r);
        }
        match self.listed.get(&fp) {
            Some(l) => Lookup::Listed(l),
            None => Lookup::Unknown,
        }
    }
}

fn parse_time(
    who: &str,
    field: &str,
    v: &Option<String>,
) -> Result<Option<Timestamp>, PolicyError> {
    v.as_deref()
        .map(|s| {
            time::parse(s).ok_or_else(|| {
                PolicyError::Invalid(format!(
                    "{who}: field `{field}` is {s:?}, not an RFC 3339 time"
                ))
            })
        })
        .transpose()
}

impl Policy {
    /// Version 1 of a grid's policy: no submitters, no nodes yet.
    pub fn new(grid_id: Id, now: Timestamp) -> Policy {
        Policy {
            grid_id,
            version: 1,
            issued_at: time::format(now),
            max_task_lifetime_seconds: DEFAULT_MAX_TASK_LIFETIME,
            submitters: Vec::new(),
            nodes: Vec::new(),
            revoked: Vec::new(),
        }
    }

    /// The next version, to be edited and signed.
    pub fn successor(&self, now: Timestamp) -> Policy {
        Policy {
            version: self.version + 1,
            issued_at: time::format(now),
            ..self.clone()
        }
    }

    fn principals(&self) -> impl Iterator<Item = (Kind, &Principal)> {
        self.submitters
            .iter()
            .map(|p| (Kind::Submitter, p))
            .chain(self.nodes.iter().map(|p| (Kind::Node, p)))
    }

    /// Check every key and window, and index them. A key is in one list
    /// only, and a revoked key in none.
    pub fn index(&self) -> Result<Index, PolicyError> {
        let mut index = Index::default();
        for r in &self.revoked {
            let key = keys::parse_public(&r.key)
                .map_err(|e| PolicyError::Invalid(format!("revoked key {}: {e}", r.key)))?;
            index.revoked.insert(fingerprint(&key), r.clone());
        }
        for (kind, p) in self.principals() {
            let who = format!("{kind} {}", p.name);
            let key = keys::parse_public(&p.key)
                .map_err(|e| PolicyError::Invalid(format!("{who}: field `key` {e}")))?;
            let fp = fingerprint(&key);
            if index.revoked.contains_key(&fp) {
                return Err(PolicyError::Invalid(format!(
                    "{who}: key {fp} is listed and revoked"
                )));
            }
            let window = Window {
                after: parse_time(&who, "valid_after", &p.valid_after)?,
                before: parse_time(&who, "valid_before", &p.valid_before)?,
            };
            if let (Some(a), Some(b)) = (window.after, window.before)
                && a >= b
            {
                return Err(PolicyError::Invalid(format!(
                    "{who}: `valid_after` is not before `valid_before`"
                )));
            }
            let entry = Listed {
                kind,
                name: p.name.clone(),
                window,
            };
            if let Some(other) = index.listed.insert(fp.clone(), entry) {
                return Err(PolicyError::Invalid(format!(
                    "{who}: key {fp} is also listed for {} {}; one key has one role",
                    other.kind, other.name
                )));
            }
        }
        Ok(index)
    }

    /// Add a key for a submitter or a node (a name may hold several keys,
    /// for rotation).
    pub fn add(
        &mut self,
        kind: Kind,
        name: Id,
        key: &PublicKey,
        window: Window,
    ) -> Result<(), PolicyError> {
        let fp = fingerprint(key);
        if let Lookup::Revoked(_) | Lookup::Listed(_) = self.index()?.lookup(key) {
            return Err(PolicyError::Invalid(format!(
                "key {fp} is already in the policy (listed or revoked); a key is added once"
            )));
        }
        let p = Principal {
            name,
            key: keys::openssh_line(key),
            valid_after: window.after.map(time::format),
            valid_before: window.before.map(time::format),
        };
        match kind {
            Kind::Submitter => self.submitters.push(p),
            Kind::Node => self.nodes.push(p),
        }
        self.index().map(|_| ())
    }

    /// Revoke a key: it leaves its list and joins `revoked`, so no later
    /// version can list it again by mistake. Returns who held it.
    pub fn revoke(
        &mut self,
        key: &PublicKey,
        reason: Option<String>,
        now: Timestamp,
    ) -> Result<Option<(Kind, Id)>, PolicyError> {
        let fp = fingerprint(key);
        let line = keys::openssh_line(key);
        let index = self.index()?;
        let held = match index.lookup(key) {
            Lookup::Revoked(_) => {
                return Err(PolicyError::Invalid(format!("key {fp} is already revoked")));
            }
            Lookup::Listed(l) => Some((l.kind, l.name.clone())),
            Lookup::Unknown => None,
        };
        let same = |p: &Principal| keys::parse_public(&p.key).is_ok_and(|k| fingerprint(&k) == fp);
        self.submitters.retain(|p| !same(p));
        self.nodes.retain(|p| !same(p));
        self.revoked.push(Revocation {
            key: line,
            revoked_at: time::format(now),
            reason,
        });
        Ok(held)
    }

    /// The listed key whose fingerprint is `fp`, for `revoke --fingerprint`.
    pub fn key_by_fingerprint(&self, fp: &str) -> Option<PublicKey> {
        self.principals()
            .filter_map(|(_, p)| keys::parse_public(&p.key).ok())
            .find(|k| fingerprint(k) == fp)
    }

    fn to_object(&self) -> Map<String, Value> {
        match serde_json::to_value(self).expect("a policy serialises") {
            Value::Object(m) => m,
            _ => unreachable!("a struct serialises to an object"),
        }
    }

    /// The signed file: the fields, and the envelope with one signature per
    /// signer, each in this grid's policy namespace.
    pub fn seal(&self, signers: &[&KeySigner]) -> Result<Vec<u8>, SignError> {
        let payload =
            serde_json::to_vec(&Value::Object(self.to_object())).expect("a policy serialises");
        let signatures = signers
            .iter()
            .map(|s| s.sign(Role::Policy, &self.grid_id, &payload))
            .collect::<Result<Vec<_>, _>>()?;
        let mut top = self.to_object();
        top.insert(
            ENVELOPE_FIELD.into(),
            Envelope::new(Role::Policy, &payload, signatures).to_value(),
        );
        Ok(crate::grid::claim::pretty(&Value::Object(top)))
    }

    /// `.dgrid/allowed_signers` for `ssh-keygen -Y verify`: each key
    /// limited to its role's namespace in this grid and to its window.
    /// Principals are `submitter:<name>` and `node:<id>`.
    pub fn allowed_signers(&self) -> String {
        let mut out = format!(
            "# Made by dgrid-worker from {POLICY_FILE} version {}; do not edit.\n\
             # ssh-keygen -Y verify -f {ALLOWED_SIGNERS_FILE} -r {REVOKED_KEYS_FILE} \
             -I submitter:NAME -n {} -s SIG < PAYLOAD\n",
            self.version,
            Role::Task.namespace(&self.grid_id)
        );
        let stamp = |t: &Option<String>| {
            t.as_deref()
                .and_then(time::parse)
                .map(|t| t.format("%Y%m%d%H%M%SZ").to_string())
        };
        for (kind, p) in self.principals() {
            let mut options = format!("namespaces=\"{}\"", kind.role().namespace(&self.grid_id));
            if let Some(a) = stamp(&p.valid_after) {
                options.push_str(&format!(",valid-after=\"{a}\""));
            }
            if let Some(b) = stamp(&p.valid_before) {
                options.push_str(&format!(",valid-before=\"{b}\""));
            }
            out.push_str(&format!("{kind}:{} {options} {}\n", p.name, p.key));
        }
        out
    }

    /// The files the tools write beside the policy, made from it: each
    /// path and its content.
    pub fn made_files(&self) -> [(&'static str, String); 2] {
        [
            (ALLOWED_SIGNERS_FILE, self.allowed_signers()),
            (REVOKED_KEYS_FILE, self.revoked_keys()),
        ]
    }

    /// `.dgrid/revoked_keys`: one revoked key a line, which
    /// `ssh-keygen -Y verify -r` takes as well as a KRL.
    pub fn revoked_keys(&self) -> String {
        let mut out = format!(
            "# Made by dgrid-worker from {POLICY_FILE} version {}; do not edit.\n",
            self.version
        );
        for r in &self.revoked {
            out.push_str(&r.key);
            out.push('\n');
        }
        out
    }
}

mod accept;
#[cfg(test)]
pub(crate) mod tests;

pub use accept::{Decision, Held, decide, open};
