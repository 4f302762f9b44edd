//! The node's side of trust: at start-up, its key and (in `warn` and
//! `enforce`) the gate its claims pass through; then, for each task it
//! ran, the signed result and the record that it ran.
//!
//! A result is signed when it is made, with the claim it answers: the
//! commit that pushed the claim (known when that push landed) and the
//! digest of the task file claimed. It goes to the outbox signed, so a
//! restart pushes the same bytes.

use std::cell::RefCell;

use ssh_key::PublicKey;

use crate::config::Config;
use crate::escape::Untrusted;
use crate::grid::claim::ClaimedTask;
use crate::grid::{Id, TaskResult};
use crate::ledger::results::invalid_result;
use crate::service::outbox::Finish;
use crate::service::sync::{AtStart, Gate};
use crate::time;
use crate::trust::envelope::ENVELOPE_FIELD;
use crate::trust::ran::Ran;
use crate::trust::result::Answered;
use crate::trust::{KeySigner, KeyStanding, Mode, Signer, TaskDigest};

use super::{Worker, WorkerError};

/// What `[trust]` gives a worker at start.
pub(super) struct NodeTrust {
    pub gate: Option<RefCell<Gate>>,
    pub signer: Option<Signer>,
    pub node_key: Option<PublicKey>,
}

/// Open the node key and the gate. In `warn` and `enforce` a key that
/// cannot be used stops the worker (`check` says so first); in `off` it is
/// logged and results go unsigned.
pub(super) fn open(cfg: &Config) -> Result<NodeTrust, WorkerError> {
    let t = &cfg.trust;
    let key = match t.node_key.as_deref().map(KeySigner::open) {
        None => None,
        Some(Ok(KeySigner::SshKeygen { .. })) => {
            let path = t.node_key.as_deref().expect("opened from it");
            let e = WorkerError::Trust(format!(
                "{}: has a passphrase; a node signs unattended, so its key must have none (make one with `dgrid-worker keygen`)",
                path.display()
            ));
            if t.mode != Mode::Off {
                return Err(e);
            }
            tracing::warn!(error = %e, "results are not signed");
            None
        }
        Some(Ok(k)) => Some(k),
        Some(Err(e)) if t.mode != Mode::Off => return Err(WorkerError::Trust(e.to_string())),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "the node key cannot be used; results are not signed");
            None
        }
    };
    let node_key = key.as_ref().map(|k| k.public_key().clone());
    if let Some(k) = &node_key {
        tracing::info!(
            fingerprint = %crate::trust::keys::fingerprint(k),
            "node key loaded"
        );
    }
    let signer = match (key, &t.pinned) {
        (Some(k), Some(p)) => Some(Signer::new(p.grid_id.clone(), k)),
        _ => None,
    };
    let gate = match (&t.pinned, t.mode) {
        (Some(p), Mode::Warn | Mode::Enforce) => Some(RefCell::new(
            Gate::open(
                t.mode,
                p.clone(),
                cfg.task_rules.clone(),
                &cfg.state_dir,
                time::now(),
            )
            .map_err(|e| WorkerError::Trust(e.to_string()))?,
        )),
        _ => None,
    };
    Ok(NodeTrust {
        gate,
        signer,
        node_key,
    })
}

/// The record a signed task leaves once its result is delivered.
pub(super) fn ran_of(claimed: &ClaimedTask) -> Option<Ran> {
    let extra = &claimed.task.extra;
    if !extra.contains_key(ENVELOPE_FIELD) {
        return None;
    }
    Some(Ran {
        digest: TaskDigest::of_file(&claimed.to_bytes())?.0,
        expires_at: extra.get("expires_at")?.as_str()?.to_owned(),
    })
}

impl Worker {
    /// The result file, signed by this node for the claim it answers; none
    /// without a node key and a grid id (it then goes unsigned).
    pub(super) fn sign(&self, claimed: &ClaimedTask, result: &TaskResult) -> Option<String> {
        let signer = self.signer.as_ref()?;
        let commit = self.claim_commits.get(&claimed.task.task_id);
        let Some(digest) = TaskDigest::of_file(&claimed.to_bytes()) else {
            // Run in `warn` or `off`: its result says nothing of the task
            // its submitter signed, and no verifier may take it for one.
            tracing::warn!(task_id = %claimed.task.task_id, "the task's fields are not those its submitter signed: its result goes unsigned");
            return None;
        };
        // Whose signature this node's policy took on the task, when it was
        // claimed: nodes enforcing trust take the result as the task's
        // completion only if one was (`Verifier::completes`). In `off`
        // nothing was checked: none.
        let task_signer = self.gate.as_ref().and_then(|g| {
            let at = time::parse(&claimed.claim.claimed_at).unwrap_or_else(time::now);
            let name = format!("{}.json", claimed.task.task_id);
            g.borrow().task_signer(&name, &claimed.to_bytes(), at)
        });
        let answered = Answered {
            task_digest: &digest,
            claim_commit: commit.map(String::as_str),
            task_signer: task_signer.as_ref(),
        };
        match signer.sign_result(result, &answered) {
            Ok(bytes) => String::from_utf8(bytes).ok(),
            Err(e) => {
                // The result itself must not be lost: it goes unsigned.
                tracing::error!(task_id = %claimed.task.task_id, error = %e, "cannot sign the result; pushing it unsigned");
                None
            }
        }
    }

    /// Results a push delivered: the tasks they answer never run here again.
    pub(super) fn delivered(&mut self, landed: &[Id]) {
        let Some(gate) = &self.gate else { return };
        let ran: Vec<Ran> = self
            .outbox
            .entries()
            .iter()
            .filter(|e| landed.contains(&e.task_id))
            .filter(|e| matches!(e.finish, crate::service::outbox::Finish::Result { .. }))
            .filter_map(|e| e.ran.clone())
            .collect();
        gate.borrow_mut().ran(&ran);
    }

    /// A claim held ahead that the policy held now no longer starts
    /// (`Gate::at_start`: its submitter's key revoked, the task expired,
    /// since it was claimed) ends here: failed, or given back. True if it
    /// did.
    pub(super) fn ended_at_start(&mut self, claimed: &ClaimedTask) -> bool {
        let Some(gate) = &self.gate else {
            return false;
        };
        let now = time::now();
        let verdict = gate.borrow_mut().at_start(claimed, now);
        let id = &claimed.task.task_id;
        let finish = match verdict {
            AtStart::Run => return false,
            AtStart::GiveBack(why) => {
                tracing::warn!(task_id = %id, why = %Untrusted(&why), "trust: giving back a claim the policy no longer runs");
                Finish::requeue(format!("{} gave it back: {why}", self.node()))
            }
            AtStart::Fail(error) => {
                tracing::warn!(task_id = %id, error = %Untrusted(&error), "trust: failing a claim the policy no longer runs");
                let name = format!("{id}.json");
                let stamp = time::format(now);
                let result = invalid_result(&name, self.node(), &stamp, &error);
                Finish::Result {
                    result,
                    signed: None,
                }
            }
        };
        self.put_outbox(claimed, finish);
        true
    }

    /// The claims waiting that the policy held now no longer starts,
    /// ended (`ended_at_start`): before the threads are handed the line.
    pub(super) fn end_waiting_refused(&mut self) {
        if self.gate.is_none() {
            return;
        }
        for c in std::mem::take(&mut self.slots.waiting) {
            if !self.ended_at_start(&c) {
                self.slots.waiting.push_back(c);
            }
        }
    }

    /// Say once per policy version whether this node's results will count:
    /// a key the policy does not list signs results nobody attests. In
    /// `enforce` such a node claims nothing (`key_refused`, a pause): every
    /// task it ran would stand unattested on the grid, its dependants held
    /// by every enforcing node, this one too (a helper's trust session: a
    /// revoked node went on claiming, and each claim kept a task from the
    /// nodes whose results count).
    pub(super) fn check_node_key(&mut self) {
        let (Some(gate), Some(key)) = (&self.gate, &self.node_key) else {
            return;
        };
        let gate = gate.borrow();
        let Some(version) = gate.policy_version() else {
            return;
        };
        if Some(version) == self.key_checked_at {
            return;
        }
        self.key_checked_at = Some(version);
        let fingerprint = crate::trust::keys::fingerprint(key);
        let enforce = gate.mode() == Mode::Enforce;
        self.key_refused = match gate.node_key_standing(&self.cfg.node_id, key, time::now()) {
            KeyStanding::Listed => {
                tracing::info!(%fingerprint, policy = version, "this node's key is in the policy: its results count");
                None
            }
            KeyStanding::NoPolicy => None,
            KeyStanding::Problem(why) => {
                tracing::warn!(
                    %fingerprint,
                    policy = version,
                    problem = %Untrusted(&why),
                    "this node's results will not count as attested: send its public key to the grid's owner for `dgrid-worker trust add-node`"
                );
                enforce.then(|| {
                    format!(
                        "its key does not count in the grid's policy version {version} ({}): its results would not be attested",
                        Untrusted(&why)
                    )
                })
            }
        };
    }
}
