//! What a worker holds to decide about tasks and results: its pinned roots,
//! the policy it has accepted, and a cache of what it found in each blob.
//! Pure: the clock is an argument, the state directory is read and written
//! by the caller ([`super::store`]).
//!
//! The worker's sync calls, per round:
//! - [`Verifier::offer_policy`] with the grid's `.dgrid/policy.json`, and
//!   stores the file when the answer is [`Offer::Newer`];
//! - [`Verifier::verify_task`] for each queue entry it may claim, then
//!   [`super::Mode::action`] to run, skip or fail it;
//! - [`Signer::sign_result`] for each result it writes.

use std::path::Path;
use std::sync::Arc;

use ssh_key::PublicKey;

use super::cache::Cache;
use super::error::{Disposition, TrustError};
use super::keys::KeyFileError;
use super::policy::{self, Accepted, Decision, Held, Kind, Lookup, Pinned, Policy, PolicyError};
use super::result::{self, Attested};
use super::sig::{KeySigner, SignError};
use super::task::{self, SignedTask, TaskDigest};
use crate::grid::{Id, TaskResult, TaskRules};
use crate::time::Timestamp;

/// How many blobs' findings a node keeps: a deep queue's worth.
pub const CACHE_ENTRIES: usize = 8192;

/// What the policy and the clock say about one task.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Trusted(SignedTask),
    /// Not now: leave it in the queue (see [`Disposition::Skip`]).
    Skip(TrustError),
    /// Never: it goes to `failed/` with the error.
    Reject(TrustError),
}

impl Verdict {
    fn from(r: Result<SignedTask, TrustError>) -> Verdict {
        match r {
            Ok(t) => Verdict::Trusted(t),
            Err(e) if e.disposition() == Disposition::Skip => Verdict::Skip(e),
            Err(e) => Verdict::Reject(e),
        }
    }
}

/// What the worker does with a task, by mode.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Run it; in `warn` mode, with what `enforce` would have refused.
    Run { warning: Option<TrustError> },
    /// Leave it in the queue and log why.
    Skip(TrustError),
    /// Move it to `failed/` with `TrustError::report` as its error.
    Fail(TrustError),
}

/// Whether the policy in use lets a node's key sign that node's results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStanding {
    Listed,
    NoPolicy,
    /// Why its results will not count (not listed, revoked, expired, ...).
    Problem(String),
}

/// The answer to a policy offered by the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// The one held already: nothing to do.
    Same,
    /// A newer version, now in use: store its file.
    Newer,
}

pub struct Verifier {
    pinned: Pinned,
    rules: TaskRules,
    /// The version floor; set even when the stored policy no longer
    /// verifies (the roots were re-pinned), so that it can only rise.
    held: Option<Held>,
    policy: Option<Accepted>,
    /// Per (blob, file name): the findings that depend on the bytes only.
    cache: Cache<Result<Arc<task::Opened>, TrustError>>,
}

impl Verifier {
    pub fn new(pinned: Pinned, rules: TaskRules) -> Verifier {
        Verifier {
            pinned,
            rules,
            held: None,
            policy: None,
            cache: Cache::new(CACHE_ENTRIES),
        }
    }

    /// Start from the policy file the state directory holds, if any. A
    /// stored file that no longer verifies (the roots were changed) is not
    /// used, but its version stays the floor; the error says why.
    pub fn with_stored(
        pinned: Pinned,
        rules: TaskRules,
        stored: Option<&[u8]>,
    ) -> (Verifier, Option<PolicyError>) {
        let mut v = Verifier::new(pinned, rules);
        let Some(file) = stored else {
            return (v, None);
        };
        match open_at_least(&v.pinned, file) {
            Ok(a) => {
                v.held = Some((&a).into());
                v.policy = Some(a);
                (v, None)
            }
            Err(e) => {
                let version = serde_json::from_slice::<serde_json::Value>(file)
                    .ok()
                    .and_then(|j| j["version"].as_u64());
                v.held = version.map(|version| Held {
                    version,
                    digest: String::new(),
                });
                (v, Some(e))
            }
        }
    }

    /// [`Verifier::with_stored`] from `<state_dir>/trust/policy.json`.
    pub fn open_state(
        pinned: Pinned,
        rules: TaskRules,
        state_dir: &Path,
    ) -> Result<(Verifier, Option<PolicyError>), super::store::StoreError> {
        let stored = super::store::load(state_dir)?;
        Ok(Verifier::with_stored(pinned, rules, stored.as_deref()))
    }

    pub fn grid_id(&self) -> &Id {
        &self.pinned.grid_id
    }

    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref().map(|a| &a.policy)
    }

    /// Offer the grid's policy file. A newer version signed by the roots is
    /// taken (the caller stores the file); anything else is refused with a
    /// named error and the policy held stays in use.
    pub fn offer_policy(&mut self, file: &[u8]) -> Result<Offer, PolicyError> {
        let candidate = open_at_least(&self.pinned, file)?;
        match policy::decide(self.held.as_ref(), &candidate)? {
            Decision::Same => {
                if self.policy.is_none() {
                    self.policy = Some(candidate);
                }
                Ok(Offer::Same)
            }
            Decision::Newer => {
                self.held = Some((&candidate).into());
                self.policy = Some(candidate);
                Ok(Offer::Newer)
            }
        }
    }

    /// The verdict on the task file `name` whose blob is `blob`, at `now`.
    /// The parsing and the signature check are done once per blob; the
    /// policy and the clock are applied each time (they change).
    pub fn verify_task(&mut self, blob: &str, name: &str, bytes: &[u8], now: Timestamp) -> Verdict {
        let key = format!("{blob} {name}");
        let opened = match self.cache.get(&key) {
            Some(found) => found.clone(),
            None => {
                let found =
                    task::open(name, bytes, &self.rules, &self.pinned.grid_id).map(Arc::new);
                self.cache.insert(key, found.clone());
                found
            }
        };
        Verdict::from(opened.and_then(|o| {
            let Some(p) = &self.policy else {
                return Err(TrustError::NoPolicy);
            };
            task::judge(&o, &p.index, p.policy.max_task_lifetime_seconds, now)
        }))
    }

    /// Does the result at `path` on the grid count? `claim_file` as
    /// [`result::judge`] takes it; the path must agree with what is signed
    /// ([`result::placed`]).
    pub fn verify_result(
        &self,
        path: &str,
        bytes: &[u8],
        claim_file: Option<&[u8]>,
        now: Timestamp,
    ) -> Result<Attested, TrustError> {
        let opened = result::open(bytes, &self.pinned.grid_id)?;
        let p = self.policy.as_ref().ok_or(TrustError::NoPolicy)?;
        // The path first: a shallow clone cannot check the claim of a copy,
        // but can tell it is one.
        result::placed(path, &opened.result)?;
        result::judge(&opened, &p.index, now, claim_file)
    }

    /// Does the result file `bytes` answer the task whose digest is
    /// `digest`, signed by the node it names? What a node can tell without
    /// the grid's history (its clone is shallow): the claim is not checked.
    /// Returns the node.
    pub fn answers(
        &self,
        bytes: &[u8],
        digest: &TaskDigest,
        now: Timestamp,
    ) -> Result<Id, TrustError> {
        let (opened, node) = self.signed_by_a_node(bytes, now)?;
        if opened.task_digest != digest.0 {
            return Err(TrustError::ClaimNotHeld(format!(
                "it answers task {}, not {digest}",
                opened.task_digest
            )));
        }
        Ok(node)
    }

    /// Does the result file `bytes` count as the completed result of task
    /// `task`, for the tasks that run after it: signed by a node the
    /// policy lists, now, as the node it names, for that task, which that
    /// node found signed by a submitter (or said nothing of, as results
    /// signed before nodes said it). What a node can tell without the
    /// grid's history, as [`Verifier::answers`].
    pub fn completes(&self, bytes: &[u8], task: &Id, now: Timestamp) -> Result<Id, TrustError> {
        let (opened, node) = self.signed_by_a_node(bytes, now)?;
        if opened.result.task_id != task.as_str()
            || opened.result.status != crate::grid::ResultStatus::Completed
        {
            return Err(TrustError::ClaimNotHeld(format!(
                "it is the `{}` result of task {}, not the completed result of {task}",
                opened.result.status.as_str(),
                opened.result.task_id
            )));
        }
        if opened.task_signer == result::TaskSigner::NotTaken {
            return Err(TrustError::TaskNotSigned(node.to_string()));
        }
        Ok(node)
    }

    /// The submitter whose signature on the task file `bytes` (filed as
    /// `name`) the policy in use takes at `at`: what this node says in the
    /// result of the task (`task_signed_by`). None for a task unsigned, or
    /// signed by a key the policy does not take then.
    pub fn task_signer(&self, name: &str, bytes: &[u8], at: Timestamp) -> Option<Id> {
        let p = self.policy.as_ref()?;
        let opened = task::open(name, bytes, &self.rules, &self.pinned.grid_id).ok()?;
        task::judge(&opened, &p.index, p.policy.max_task_lifetime_seconds, at)
            .ok()
            .map(|t| t.submitter)
    }

    /// The result file `bytes`, opened, and the node the policy lists
    /// that signed it as its own, now ([`result::judge_signer`]).
    fn signed_by_a_node(
        &self,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<(result::Opened, Id), TrustError> {
        let opened = result::open(bytes, &self.pinned.grid_id)?;
        let p = self.policy.as_ref().ok_or(TrustError::NoPolicy)?;
        let node = result::judge_signer(&opened, &p.index, now)?;
        Ok((opened, node))
    }

    /// The task and the node of the result file `bytes`, which a node the
    /// policy lists signed as the node it names. What a node can tell
    /// without the grid's history, as [`Verifier::answers`].
    pub fn answer_of(&self, bytes: &[u8], now: Timestamp) -> Result<(String, Id), TrustError> {
        let (opened, node) = self.signed_by_a_node(bytes, now)?;
        Ok((opened.result.task_id, node))
    }

    /// The version of the policy in use, if any.
    pub fn policy_version(&self) -> Option<u64> {
        self.policy().map(|p| p.version)
    }

    /// What the policy in use says of `key` as node `node`'s key.
    pub fn node_key_standing(&self, node: &Id, key: &PublicKey, now: Timestamp) -> KeyStanding {
        let Some(p) = &self.policy else {
            return KeyStanding::NoPolicy;
        };
        let version = p.policy.version;
        let problem = match p.index.lookup(key) {
            Lookup::Unknown => format!("policy version {version} does not list it"),
            Lookup::Revoked(r) => format!("it was revoked at {}", r.revoked_at),
            Lookup::Listed(l) if l.kind != Kind::Node || &l.name != node => format!(
                "policy version {version} lists it as {} {}'s key",
                l.kind, l.name
            ),
            Lookup::Listed(l) => match l.window.check(now) {
                Ok(()) => return KeyStanding::Listed,
                Err(e) => format!("it {e}"),
            },
        };
        KeyStanding::Problem(problem)
    }

    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

/// A node's key, signing its results for its grid.
pub struct Signer {
    grid: Id,
    key: KeySigner,
}

impl Signer {
    pub fn new(grid: Id, key: KeySigner) -> Signer {
        Signer { grid, key }
    }

    /// The node key at `path` (the systemd credential, or a file).
    pub fn open(grid: Id, path: &Path) -> Result<Signer, KeyFileError> {
        Ok(Signer::new(grid, KeySigner::open(path)?))
    }

    pub fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    /// The result file, signed, with the task it answers
    /// ([`result::Answered`]: the digest of the task file it ran,
    /// [`TaskDigest::of_file`], the commit that pushed its claim, and who
    /// signed the task).
    pub fn sign_result(
        &self,
        result: &TaskResult,
        answered: &result::Answered<'_>,
    ) -> Result<Vec<u8>, SignError> {
        result::sign(result, &self.grid, answered, &self.key)
    }

    /// The node's record file, signed ([`super::record`]).
    pub fn sign_record(&self, record: &crate::grid::NodeRecord) -> Result<Vec<u8>, SignError> {
        super::record::sign(record, &self.grid, &self.key)
    }
}

/// A policy file the pinned roots signed, of a version the node takes
/// at all (`Pinned::min_version`).
fn open_at_least(pinned: &Pinned, file: &[u8]) -> Result<Accepted, PolicyError> {
    let candidate = policy::open(pinned, file)?;
    let (found, min) = (candidate.policy.version, pinned.min_version);
    if found < min {
        return Err(PolicyError::BelowMinimum { found, min });
    }
    Ok(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::Mode;
    use crate::trust::policy::tests::{at, id, pinned, signer};
    use crate::trust::policy::{Kind, Window};

    /// A node that holds no policy yet takes none older than its
    /// configuration's `min_policy_version`: a pusher who put an older
    /// root-signed version back cannot hand it to a node joining the grid.
    #[test]
    fn a_node_with_no_policy_takes_none_below_its_minimum() {
        let root = signer();
        let v1 = Policy::new(id("g7"), at("2026-01-01T00:00:00Z"));
        let v2 = v1.successor(at("2026-01-02T00:00:00Z"));
        let (f1, f2) = (v1.seal(&[&root]).unwrap(), v2.seal(&[&root]).unwrap());
        let at_least_2 = Pinned {
            min_version: 2,
            ..pinned(&[&root], 1)
        };
        let mut v = Verifier::new(at_least_2.clone(), TaskRules::default());
        let e = v.offer_policy(&f1).unwrap_err();
        assert_eq!(e.code(), "rolled-back");
        assert!(e.to_string().contains("min_policy_version"), "{e}");
        assert!(v.policy().is_none());
        assert_eq!(v.offer_policy(&f2), Ok(Offer::Newer));
        // Nor one stored before the minimum was raised.
        let (stored, warn) = Verifier::with_stored(at_least_2, TaskRules::default(), Some(&f1));
        assert_eq!(warn.unwrap().code(), "rolled-back");
        assert!(stored.policy().is_none());
    }

    #[test]
    fn policy_updates_go_forward_only_and_the_floor_survives_a_restart() {
        let root = signer();
        let alice = signer();
        let v1 = Policy::new(id("g7"), at("2026-01-01T00:00:00Z"));
        let mut v2 = v1.successor(at("2026-01-02T00:00:00Z"));
        v2.add(
            Kind::Submitter,
            id("alice"),
            alice.public_key(),
            Window::default(),
        )
        .unwrap();
        let (f1, f2) = (v1.seal(&[&root]).unwrap(), v2.seal(&[&root]).unwrap());
        let mut v = Verifier::new(pinned(&[&root], 1), TaskRules::default());
        assert_eq!(v.offer_policy(&f1), Ok(Offer::Newer));
        assert_eq!(v.offer_policy(&f2), Ok(Offer::Newer));
        assert_eq!(v.offer_policy(&f2), Ok(Offer::Same));
        assert_eq!(v.offer_policy(&f1).unwrap_err().code(), "rolled-back");
        assert_eq!(v.policy().unwrap().version, 2, "the newer one stays in use");

        // After a restart from the stored file, still no rollback.
        let (mut again, warn) =
            Verifier::with_stored(pinned(&[&root], 1), TaskRules::default(), Some(&f2));
        assert!(warn.is_none());
        assert_eq!(again.offer_policy(&f1).unwrap_err().code(), "rolled-back");
        // Roots re-pinned: the stored file is not used, its version still counts.
        let new_root = signer();
        let (mut repinned, warn) =
            Verifier::with_stored(pinned(&[&new_root], 1), TaskRules::default(), Some(&f2));
        assert_eq!(warn.unwrap().code(), "not-signed-by-roots");
        assert!(repinned.policy().is_none());
        let new_root_v1 = v1.seal(&[&new_root]).unwrap();
        assert_eq!(
            repinned.offer_policy(&new_root_v1),
            Err(PolicyError::RolledBack { found: 1, held: 2 })
        );
        let mut v3 = v2.successor(at("2026-01-03T00:00:00Z"));
        v3.version = 3;
        assert_eq!(
            repinned.offer_policy(&v3.seal(&[&new_root]).unwrap()),
            Ok(Offer::Newer)
        );
    }

    #[test]
    fn verdicts_are_cached_per_blob_and_the_clock_is_applied_each_time() {
        let root = signer();
        let alice = signer();
        let mut p = Policy::new(id("g7"), at("2026-01-01T00:00:00Z"));
        p.add(
            Kind::Submitter,
            id("alice"),
            alice.public_key(),
            Window::default(),
        )
        .unwrap();
        let mut v = Verifier::new(pinned(&[&root], 1), TaskRules::default());
        let t = crate::grid::Task::parse(
            br#"{"task_id":"t1","script":"echo ok","timeout_seconds":5}"#,
            &TaskRules::default(),
        )
        .unwrap();
        let bytes = task::sign(
            &t,
            &id("g7"),
            at("2026-03-01T00:00:00Z"),
            at("2026-03-02T00:00:00Z"),
            &alice,
        )
        .unwrap();
        let before = v.verify_task("b1", "t1.json", &bytes, at("2026-03-01T01:00:00Z"));
        assert_eq!(before, Verdict::Skip(TrustError::NoPolicy));
        v.offer_policy(&p.seal(&[&root]).unwrap()).unwrap();
        let ok = v.verify_task("b1", "t1.json", &bytes, at("2026-03-01T01:00:00Z"));
        assert!(matches!(ok, Verdict::Trusted(ref s) if s.submitter.as_str() == "alice"));
        assert_eq!(v.cached(), 1);
        // The cache answers for the blob id: the bytes are not read again.
        let cached = v.verify_task("b1", "t1.json", b"", at("2026-03-01T02:00:00Z"));
        assert!(matches!(cached, Verdict::Trusted(_)));
        let late = v.verify_task("b1", "t1.json", &bytes, at("2026-03-03T00:00:00Z"));
        assert!(matches!(late, Verdict::Reject(TrustError::Expired(_))));

        assert_eq!(Mode::Enforce.action(&ok), Action::Run { warning: None });
        assert!(matches!(Mode::Enforce.action(&late), Action::Fail(_)));
        assert!(matches!(Mode::Enforce.action(&before), Action::Skip(_)));
        assert!(matches!(
            Mode::Warn.action(&late),
            Action::Run { warning: Some(_) }
        ));
        assert_eq!(Mode::Off.action(&late), Action::Run { warning: None });
    }
}
