//! A claim held ahead, judged again as it starts: the policy, or the
//! clock, may have moved since it was claimed. Claims wait ahead for a few
//! syncs of work (dozens of tasks, or an hour of long ones): a submitter's
//! key revoked in that time (a key that leaked) still ran every task of it
//! the node held, and a task past its `expires_at` ran late, its result
//! attested as any other's.

use super::Gate;
use crate::escape::Untrusted;
use crate::grid::claim::ClaimedTask;
use crate::time::Timestamp;
use crate::trust::envelope::ENVELOPE_FIELD;
use crate::trust::{Action, TaskDigest};

/// What becomes of a claim held when it comes to start.
#[derive(Debug, PartialEq, Eq)]
pub enum AtStart {
    Run,
    /// Not now (an unknown signer, say: a policy may list it again): back
    /// to the queue, with this reason.
    GiveBack(String),
    /// Never (a key revoked, the task expired): failed, with this error.
    Fail(String),
}

impl Gate {
    /// [`AtStart`] for `claimed` by the policy held at `now`. In `warn`, it
    /// runs, and what `enforce` would do is said once. Not checked again:
    /// a replay (this node claimed it: it is no replay) and a task whose
    /// fields are not what was signed (judged at the claim, and its result
    /// goes unsigned).
    pub fn at_start(&mut self, claimed: &ClaimedTask, now: Timestamp) -> AtStart {
        // A task no one signed has no key to revoke nor window to pass: as
        // it was judged at its claim (`warn` ran it, and said so).
        if !claimed.task.extra.contains_key(ENVELOPE_FIELD) {
            return AtStart::Run;
        }
        let bytes = claimed.to_bytes();
        let Some(digest) = TaskDigest::of_file(&bytes) else {
            return AtStart::Run;
        };
        let name = format!("{}.json", claimed.task.task_id);
        // Named by what was signed, in the verifier's cache as a queued
        // file is by its blob.
        let key = format!("claimed {}", digest.0);
        let verdict = self.verifier.verify_task(&key, &name, &bytes, now);
        match self.mode.action(&verdict) {
            Action::Run { warning: None } => AtStart::Run,
            Action::Run { warning: Some(e) } => {
                if self.first_time(&key, e.code()) {
                    tracing::warn!(task_id = %claimed.task.task_id, code = %e.code(), error = %Untrusted(&e), "trust (warn mode): starting a claim that enforce mode would not start now");
                }
                AtStart::Run
            }
            Action::Skip(e) => AtStart::GiveBack(format!(
                "not started: {} (since it was claimed)",
                e.report()
            )),
            Action::Fail(e) => AtStart::Fail(format!(
                "{name}: not started: {} (since it was claimed)",
                e.report()
            )),
        }
    }
}
