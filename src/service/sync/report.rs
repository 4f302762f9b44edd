//! What a sync tells the loop: what it claimed and landed, what it found
//! at the tip, and what the loop should do about it.

use std::collections::{BTreeMap, BTreeSet};

use crate::escape::Untrusted;
use crate::git::Oid;
use crate::grid::Id;
use crate::grid::claim::ClaimedTask;

#[derive(Debug, Default)]
pub struct SyncReport {
    pub tip: Option<Oid>,
    pub claimed: Vec<ClaimedTask>,
    /// Outbox entries that are done with: landed now, or found moot.
    pub landed: Vec<Id>,
    /// Outbox results the grid no longer wants (another node owns the task).
    pub superseded: Vec<Id>,
    /// Queue entries moved to `failed/` as invalid: (entry name, reason).
    pub invalid: Vec<(String, String)>,
    /// Orphaned claims handled: (task, what was done and why).
    pub reaped: Vec<(String, String)>,
    /// Peers whose records now say they take no claims made for them, as
    /// they left such claims unanswered.
    pub silent: Vec<Id>,
    /// Queue entries left after this plan (valid or not yet looked at), when
    /// the queue was looked at (claiming or surveying).
    pub queue_left: usize,
    /// Slots of the peers that are idle and taking work at this tip, when
    /// the queue was looked at.
    pub idle_peer_slots: u32,
    /// When each slot of those peers (idle, or busy and able to tell) runs
    /// dry, in seconds from this look, soonest first, when the queue was
    /// looked at: claims this node would start later go to them
    /// (`share::give_back`).
    pub peers_dry: Vec<crate::service::share::PeerSlot>,
    /// Slots of all the peers taking work at this tip, when the queue was
    /// looked at.
    pub live_peer_slots: u32,
    /// This node's fair share when it claimed (0: not computed).
    pub fair_share: usize,
    pub wrote_heartbeat: bool,
    /// Tasks this commit puts back in the queue (requeues from the outbox).
    pub requeued: usize,
    /// Requeues from the outbox with nowhere to go now (each place holds
    /// another file of the task's id): they wait, and so does the node's
    /// next sync, a poll interval, rather than try again at once.
    pub requeues_waiting: usize,
    /// The highest priority (with its age) of the tasks this node could
    /// claim that are left in the queue, when it was looked at: claims not
    /// started of a lower one go back for it (`share::preempt`).
    pub top_queued: Option<u8>,
    /// How many live slots serve each class queued, as the claim counted
    /// them (`grid::scarcity`; empty: not counted): claims held start
    /// scarcer first.
    pub servers: Vec<(crate::grid::Class, u32)>,
    /// The claim stopped at this node's share of a priority level, with
    /// more of it queued for others: look again as soon as there is room.
    pub capped: bool,
    /// For each task claimed that runs after others: their results (the
    /// blob of each on this tip), to read into its inputs when it starts.
    pub inputs: BTreeMap<Id, Vec<(Id, Oid)>>,
    /// Tasks that waited for others, moved on: (task, what became of it).
    pub released: Vec<(String, String)>,
    /// More waiting tasks than one plan looks at could move on: the next
    /// sync sweeps (`Moves::more`).
    pub release_more: bool,
    /// Tasks this node holds that others wait for (`release::awaited`):
    /// their results do not wait for the node's next claim.
    pub awaited: BTreeSet<Id>,
    /// Claims peers made for this node, found in this look: to start now
    /// and answer in the next commit (this plan pushes nothing).
    pub adopted: Vec<ClaimedTask>,
    /// Claims made for this node that need no answer any more: answered by
    /// this commit, or gone.
    pub answered: Vec<Id>,
    /// Claims made for this node that it started and no longer holds: it
    /// answered too late. It stops them.
    pub lost: Vec<Id>,
    /// Claims this commit makes for idle peers: (task, peer).
    pub assigned: Vec<(Id, Id)>,
    /// Peers' published results this commit carries: (task, peer).
    pub carried: Vec<(Id, Id)>,
    /// Peers whose published answers or record this commit carries.
    pub carried_standing: Vec<Id>,
    /// Peers' published handbacks this commit carries back to the queue
    /// (the claim may take them in it, as `claimed` says): (task, peer).
    pub carried_back: Vec<(Id, Id)>,
    /// The nodes that may push to the ref now, as this tip shows them
    /// (those holding claims, and this one), when this plan only delivers
    /// (0: not read): if its push loses, the wait before the next round is
    /// spread over no more rounds than that (`TxnPolicy::writers`).
    pub writers: u32,
    /// Of those, peers at work, where the request asks (`count_at_work`):
    /// holding claims that are not all results they published
    /// (`published::ran_dry`). Their next commits carry
    /// this node's published results (`TxnPolicy::defer`).
    pub peers_at_work: u32,
    /// Joining, it stayed out of a drain its peers cover: nothing pushed,
    /// the node registers later.
    pub stayed_out: bool,
    /// Claims this commit takes over from busy peers that had not started
    /// them (`claim::steal`; among `claimed` too): (task, peer).
    pub stolen: Vec<(Id, Id)>,
    /// Claims this commit takes over that were made for a peer which has
    /// not answered them in `grid::claim::ANSWER_LATE`
    /// (`claim::take_unanswered`; among `claimed` too): (task, peer).
    pub taken_unanswered: Vec<(Id, Id)>,
    /// Claims live peers hold that this node serves and they have not
    /// started, as far as their records tell (`claim::steal`, read only by
    /// a node with nothing to claim): a drain does not end beside them.
    pub peers_unstarted: usize,
    /// Claims this node holds (`SyncRequest::watch`) that the tip names
    /// another node for: taken over by an idle peer, or reaped and claimed
    /// again. It stops them.
    pub taken: Vec<Id>,
    /// Tasks this node runs (`SyncRequest::watch`) whose claim the tip no
    /// longer holds, nor queues: ended elsewhere (a claim taken over whose
    /// first holder's result landed first). It stops their runs.
    pub ended: Vec<Id>,
}

impl SyncReport {
    /// Say in the log what the commit moved besides this node's own
    /// claims and results: each line names the task and the peer.
    pub fn log_moves(&self) {
        for (name, reason) in &self.invalid {
            tracing::warn!(entry = %Untrusted(name), error = %Untrusted(reason), "invalid task moved to tasks/failed");
        }
        for (task, what) in &self.reaped {
            tracing::warn!(task_id = %task, action = %Untrusted(what), "orphaned claim reaped");
        }
        for peer in &self.silent {
            tracing::warn!(node_id = %peer, "a peer left claims made for it unanswered; none are made for it until it writes its record again");
        }
        for (task, what) in &self.released {
            tracing::info!(task_id = %task, action = %Untrusted(what), "waiting task moved on");
        }
        for (task, peer) in &self.assigned {
            tracing::info!(task_id = %task, peer = %peer, "claimed for a peer");
        }
        for (task, peer) in &self.carried {
            tracing::info!(task_id = %task, peer = %peer, "carried a peer's published result");
        }
        for peer in &self.carried_standing {
            tracing::info!(peer = %peer, "carried a peer's published answers and record");
        }
        for (task, peer) in &self.carried_back {
            tracing::info!(task_id = %task, peer = %peer, "carried a claim a peer handed back to the queue");
        }
        for (task, peer) in &self.stolen {
            tracing::info!(task_id = %task, peer = %peer, "took over a claim a busy peer had not started");
        }
        for (task, peer) in &self.taken_unanswered {
            tracing::info!(task_id = %task, peer = %peer, "took over a claim made for a peer that has not answered it");
        }
    }
}
