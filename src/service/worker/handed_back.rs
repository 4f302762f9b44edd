//! Claims handed to peers whose requeue has not landed yet. A handback
//! is a bet that an idle peer starts the task sooner than this node; it
//! goes back by the outbox, with the node's next sync, and on a ref that
//! many nodes push to that sync can lose its races for seconds. Meanwhile
//! no peer can claim the task and this node no longer means to run it.
//! Traced, a mixed drain of 8 nodes: requeues landed up to 5 s after the
//! handback while the peer it was meant for sat idle. So a sync that loses
//! a round publishes the requeue for a peer to carry, and claim, in its
//! own commit (`sync::published`); and until the requeue is published or
//! lands, the claim stays this node's to start: a slot that frees with
//! nothing else to run takes it back from the outbox and starts it. Once
//! published it is the peers' (one may hold it already): never taken back.

use crate::grid::Id;
use crate::grid::claim::ClaimedTask;
use crate::service::outbox::Finish;

use super::Worker;

/// A claim handed to the peers, with what the node kept for it: its
/// inputs and the commit that claimed it (`put_outbox` lets them go).
#[derive(Debug)]
pub(super) struct HandedBack {
    claimed: ClaimedTask,
    inputs: Option<Vec<(Id, String)>>,
    claim_commit: Option<String>,
}

impl Worker {
    /// Hand `claimed`, not started, to a peer that would start it sooner:
    /// back to the queue by the outbox, startable here until it lands.
    pub(super) fn hand_to_peers(&mut self, claimed: ClaimedTask, reason: String) {
        let id = &claimed.task.task_id;
        let kept = HandedBack {
            inputs: self.inputs.get(id).cloned(),
            claim_commit: self.claim_commits.get(id).cloned(),
            claimed: claimed.clone(),
        };
        self.put_outbox(&claimed, Finish::requeue(reason));
        self.handed_back.push(kept);
    }

    /// Nothing waits for a free slot: take back the first claim handed to
    /// the peers whose requeue is still in the outbox (not landed, not
    /// superseded), so that the slot starts it. False if there is none.
    /// Never while stopping (then the requeues go out), nor while a push's
    /// outcome is unknown.
    pub(super) fn take_back_handed(&mut self) -> bool {
        let outbox = &self.outbox;
        // What has landed (or was found moot) is the peers' now.
        self.handed_back.retain(|h| {
            outbox.entries().iter().any(|e| {
                e.task_id == h.claimed.task.task_id
                    && e.claimed_at == h.claimed.claim.claimed_at
                    && matches!(
                        e.finish,
                        Finish::Requeue {
                            preempted: false,
                            ..
                        }
                    )
            })
        });
        // A push whose outcome is not known yet may have landed the
        // requeue: the task may be a peer's already.
        if self.draining_since.is_some()
            || self.unhealthy.is_some()
            || self.uncertain.is_some()
            || self.handed_back.is_empty()
        {
            return false;
        }
        let h = self.handed_back.remove(0);
        let id = h.claimed.task.task_id.clone();
        // The disk first: a requeue left in the outbox would go out with the
        // next sync while the task runs here.
        if let Err(e) = self.outbox.remove(&id) {
            tracing::warn!(task_id = %id, error = %e, "cannot take back a claim handed to the peers; it goes back to the queue");
            return false;
        }
        if self.outbox.is_empty() {
            self.schedule.outbox_emptied();
        }
        tracing::info!(task_id = %id, "taking back a claim handed to the peers: its requeue has not landed, and a slot is free");
        if let Some(inputs) = h.inputs {
            self.inputs.insert(id.clone(), inputs);
        }
        if let Some(commit) = h.claim_commit {
            self.claim_commits.insert(id, commit);
        }
        self.slots.waiting.push_back(h.claimed);
        true
    }

    /// Handbacks whose requeues went out on the node's published branch
    /// (`published`, by task): a peer may carry them, and claim them, from
    /// then on, so they are the peers' already. Taking one back could run
    /// it twice.
    pub(super) fn handed_published(&mut self, published: impl Fn(&Id) -> bool) {
        self.handed_back
            .retain(|h| !published(&h.claimed.task.task_id));
    }

    /// A claim this node lost: not to be taken back either.
    pub(super) fn forget_handed(&mut self, id: &Id) {
        self.handed_back.retain(|h| &h.claimed.task.task_id != id);
    }
}
