//! Claiming for idle peers: the queue's order is dealt between the node's
//! own share and the idle peers that start claims made for them, each up
//! to its share (`share::assign`), in the same commit.
//! One push then starts many nodes: each idle peer finds its claims at its
//! next look and starts them before any push of its own.

use crate::git::{Edit, Oid};
use crate::grid::claim::ClaimedTask;
use crate::grid::scarcity::Scarcity;
use crate::grid::schedule::NodeLabels;
use crate::grid::{Class, Id, Task, layout};
use crate::service::share;
use crate::service::sync::Draft;

use super::peers::{Assignable, Peers};

/// Blind (no task timed here or by any peer), a peer gets at most this
/// many a slot: enough to keep it busy until its first results can tell
/// how long tasks take, few enough that a drain of tasks of a few
/// milliseconds is not spread over every node before anyone can tell that
/// it pays for five (`share::participants`). Measured: a task a slot left
/// 16 nodes idle for 19 s in a drain of 1 s tasks; a whole share for every
/// peer made 8 nodes drain 500 `true` tasks at 0.42 x one node.
const BLIND_PER_SLOT: usize = 8;

/// A node claims for its idle peers only when it starts at least this many
/// of them: what a claim for peers saves is their taking turns on the ref.
const MIN_PEERS: usize = 2;

struct Assignee {
    id: Id,
    labels: NodeLabels,
    max_timeout: u64,
    /// How many more to claim for it.
    due: usize,
    slots: usize,
    given: usize,
    /// The timeouts of the tasks claimed for it beyond its slots: they
    /// wait for those, and their deadlines allow for it.
    queued_before: chrono::Duration,
}

/// The idle peers this node claims for in this commit, and how many each.
pub(super) struct Assignees {
    peers: Vec<Assignee>,
    within: chrono::Duration,
}

impl Assignees {
    /// Claim nothing for anyone.
    pub(super) fn none() -> Assignees {
        Assignees {
            peers: Vec::new(),
            within: chrono::Duration::zero(),
        }
    }

    /// For `work` tasks not done, of which `queued` are left once this
    /// node has claimed its own, shared among this node's `mine` slots and
    /// `others` of its peers'. `blind`: no task's length is known here or
    /// to the peers, so how many slots the drain pays for is not known
    /// either; each peer gets at most [`BLIND_PER_SLOT`] a slot, and
    /// claims more itself once it has timed one.
    pub(super) fn plan(
        work: usize,
        queued: usize,
        (mine, others): (u32, u32),
        blind: bool,
        peers: &Peers,
        within: chrono::Duration,
    ) -> Assignees {
        let idle = peers.assignable();
        let slots: Vec<u32> = idle.iter().map(|p| p.slots).collect();
        let mut due = share::assign(work, queued, mine, others, &slots);
        if blind {
            for (d, s) in due.iter_mut().zip(&slots) {
                *d = (*d).min(*s as usize * BLIND_PER_SLOT);
            }
        }
        // Claims for one peer only do not pay: that peer starts them at its
        // own next look, where on its own it would have had them at the first
        // look of any idle node (pickup p50 0.36 s before, 0.61 s with).
        // Unless it ran dry where its record cannot say so: its own claims
        // are losing their races (`published::ran_dry`).
        let given = due.iter().filter(|d| **d > 0).count();
        let starving = due.iter().zip(&idle).any(|(d, p)| *d > 0 && p.ran_dry);
        if given < MIN_PEERS && !starving {
            return Assignees::none();
        }
        Assignees::due(idle, due, within)
    }

    /// For a burst of `burst` tasks above what this node holds, of which
    /// it takes `mine_take` itself: each peer in `peers` (idle, or busy
    /// with lower work; `Peers::burst_assignable`) gets its share of the
    /// burst, by slots among this node's `mine` and `others` of its peers'.
    /// One commit then hands a burst to every node that should start it,
    /// where each would otherwise put its own claim on the ref in turn,
    /// all at the same moment. Unlike a backlog, one peer is worth it: a
    /// busy peer would claim its share in a commit of its own.
    pub(super) fn burst(
        burst: usize,
        mine_take: usize,
        (mine, others): (u32, u32),
        peers: Vec<Assignable>,
        within: chrono::Duration,
    ) -> Assignees {
        let slots: Vec<u32> = peers.iter().map(|p| p.slots).collect();
        let due = share::assign(burst, burst.saturating_sub(mine_take), mine, others, &slots);
        Assignees::due(peers, due, within)
    }

    /// The peers due some (`due`, by `peers`' order), each to be given
    /// that many.
    fn due(peers: Vec<Assignable>, due: Vec<usize>, within: chrono::Duration) -> Assignees {
        Assignees {
            peers: peers
                .into_iter()
                .zip(due)
                .filter(|(_, due)| *due > 0)
                .map(|(p, due)| Assignee {
                    id: p.id,
                    labels: p.labels,
                    max_timeout: p.max_timeout,
                    due,
                    slots: p.slots as usize,
                    given: 0,
                    queued_before: chrono::Duration::zero(),
                })
                .collect(),
            within,
        }
    }

    /// The peers it claimed for, and how many each.
    pub(super) fn given(&self) -> std::collections::BTreeMap<Id, usize> {
        self.peers
            .iter()
            .filter(|p| p.given > 0)
            .map(|p| (p.id.clone(), p.given))
            .collect()
    }

    /// How many tasks it means to claim for peers in all.
    pub(super) fn total(&self) -> usize {
        self.peers.iter().map(|p| p.due).sum()
    }

    /// The peer still due some that serves `class` and takes `task`
    /// (which reads `inputs`), least given to for its due (ties: the
    /// first), if any: not for a task that reads inputs (a peer finds only
    /// its claim); not one that has work queued at `level` or above that
    /// fewer nodes serve: by its own order it takes that first (a GPU node
    /// runs the GPU work before common work).
    pub(super) fn who(
        &self,
        class: &Class,
        level: u8,
        (task, inputs): (&Task, &[(Id, Oid)]),
        scarcity: &Scarcity,
    ) -> Option<usize> {
        if !inputs.is_empty() {
            return None;
        }
        let serves = |p: &Assignee| {
            p.due > 0
                && p.labels.serves(class).is_ok()
                && task.timeout_seconds <= p.max_timeout
                && !scarcity.rather(&p.labels, class, level)
        };
        (0..self.peers.len())
            .filter(|&i| serves(&self.peers[i]))
            .min_by(|&a, &b| self.filled(a).total_cmp(&self.filled(b)))
    }

    /// How much of its due peer `who` has been given, from 0 to 1. The
    /// queue is dealt by it, this node's own share with the rest
    /// ([`Picker::filled`](crate::grid::schedule::Picker::filled)): tasks
    /// next to each other in the queue's order, as a submission's long
    /// ones often are, go to different nodes. Given out in runs, one node
    /// held both 20 s tasks at the head of a backlog of 26 and ran them in
    /// turn: 46 s where three nodes could end in 30.
    pub(super) fn filled(&self, who: usize) -> f64 {
        let p = &self.peers[who];
        p.given as f64 / (p.given + p.due) as f64
    }

    /// Claim `task` (the queue file at `from`) for peer `who` (from
    /// [`Assignees::who`]).
    pub(super) fn take(
        &mut self,
        who: usize,
        d: &mut Draft<'_>,
        from: &[u8],
        task: Task,
        arrival: crate::time::Timestamp,
    ) {
        let p = &mut self.peers[who];
        let req = d.req;
        let grace = req.claim_grace + p.queued_before;
        if p.given >= p.slots {
            // Validated: at most max_timeout_seconds.
            p.queued_before += chrono::Duration::seconds(task.timeout_seconds as i64);
        }
        p.due -= 1;
        p.given += 1;
        let claimed = ClaimedTask::assigned(task, &p.id, req.node, req.now, grace, self.within)
            .arrived(arrival);
        let id = claimed.task.task_id.clone();
        d.edits.insert(from.to_vec(), Edit::Delete);
        d.edits.insert(
            layout::in_progress_file(&id).into_bytes(),
            Edit::Put(claimed.to_bytes()),
        );
        d.summary.push(format!("claim {id} for {}", p.id));
        d.report.assigned.push((id, p.id.clone()));
    }
}
