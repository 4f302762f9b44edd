//! What the loop has room for, and when it must be free: the claims to
//! ask for (free slots, claims ahead, the volunteer's allowance), results
//! that may wait, the next slot to free and the look ahead of it. Read by
//! the schedule (`Load`) and by each sync's request.

use std::time::{Duration, Instant};

use super::{Worker, schedule};
use crate::service::budget::Allowance;
use crate::time;

/// Something of this node's (a result, an answer) has waited this long to
/// land: its pushes keep losing. A busy node holds its results up to
/// `Pace::result_delay` (2 s at most) for a claim to ride with, and a
/// crowd's last writers lose a few rounds (BENCHMARKS.md, The last results
/// of a drain): five seconds is past both.
const STARVED: Duration = Duration::from_secs(5);

/// And it lost rounds in this many syncs in a row, landing nothing: a
/// node that lands between its losses (a crowd's turns on the ref) is
/// not starved, and its results ride with its next claim as before.
const STARVED_SYNCS: u32 = 3;

impl Worker {
    /// Have its results or answers waited [`STARVED`] or more, over
    /// [`STARVED_SYNCS`] lost syncs? Then what
    /// it publishes carries its standing too (`sync::Standing`), and it
    /// publishes before its first push.
    pub(super) fn starved(&self) -> bool {
        self.lost_syncs >= STARVED_SYNCS
            && [self.schedule.results_since, self.answers_since]
                .into_iter()
                .flatten()
                .any(|since| since.elapsed() >= STARVED)
    }

    /// Keep `answers_since` with what `unanswered` holds.
    pub(super) fn note_answers(&mut self) {
        self.answers_since = match self.answers_since {
            _ if self.unanswered.is_empty() => None,
            since => since.or(Some(Instant::now())),
        };
    }

    /// `publication` with this node's answers and record beside its
    /// results if it is `starved`, for a peer's commit to carry
    /// (PROTOCOL.md, Published results): its claims stay its own, and its
    /// peers see what it runs.
    pub(super) fn standing(
        &self,
        publication: Option<crate::git::published::Publish>,
        starved: bool,
        record: &crate::grid::node::NodeRecord,
    ) -> Option<crate::git::published::Publish> {
        if !starved {
            return publication;
        }
        let standing = crate::service::sync::Standing {
            answers: self.answers(),
            record: crate::service::sync::record_file(self.signer.as_ref(), record),
        };
        Some(crate::service::sync::with_standing(
            publication,
            &self.cfg.node_id,
            &standing,
        ))
    }

    /// The claims made for this node that it answers (`unanswered`), with
    /// the moment each was made.
    pub(super) fn answers(&self) -> Vec<(&crate::grid::Id, &str)> {
        self.unanswered
            .iter()
            .filter_map(|id| {
                let held = match self.slots.running.get(id) {
                    Some(r) => Some(&r.claimed),
                    None => self.slots.waiting.iter().find(|c| &c.task.task_id == id),
                };
                held.map(|c| (id, c.claim.claimed_at.as_str()))
            })
            .collect()
    }

    /// Tasks to claim on the next sync (none while stopping, unhealthy or
    /// paused by its volunteer's limits): free slots, and claims ahead while
    /// busy or while the queue is deep. None ahead while idle at a shallow
    /// queue (an idle peer could start them at once), nor while the last
    /// look saw peers idle (they are what claims ahead would keep waiting).
    pub(super) fn room(&self) -> usize {
        if self.draining_since.is_some() || self.unhealthy.is_some() {
            return 0;
        }
        let peers_idle = self
            .last_view
            .as_ref()
            .is_some_and(|v| v.idle_peer_slots > 0);
        let ahead_ok = (!self.slots.running.is_empty() || self.queue_deep) && !peers_idle;
        let now = Instant::now();
        let mut room = self
            .slots
            .room(&self.pace, self.cfg.claim_ahead, ahead_ok, now);
        if peers_idle {
            room = room.max(self.slots.room_before_peers_look(
                &self.pace,
                self.cfg.pull_interval,
                self.cfg.claim_ahead,
                now,
            ));
        }
        match self.allowance().room(self.slots.waiting.len()) {
            Some(budget) => room.min(budget),
            None => room,
        }
    }

    /// What the volunteer's limits allow now: within the hour's limits,
    /// and no more than the slots start before the next quiet hours
    /// begin, at the measured pace. Held past their start, claims wait
    /// through them, kept from other nodes, and go back only then: a
    /// sweep found a node holding 35 claims of 1 s tasks 3 s before them.
    /// Before them, a node whose own key the policy it enforces does not
    /// count claims nothing (`check_node_key`).
    pub(super) fn allowance(&self) -> Allowance {
        if let Some(why) = &self.key_refused {
            return Allowance::Paused(crate::service::budget::Paused {
                why: why.clone(),
                until: None,
            });
        }
        if self.budget.limits().is_unlimited() {
            return Allowance::Open(None);
        }
        let now = time::now();
        let allowance = self
            .budget
            .allowance(now, &chrono::Local, self.pace.task_secs());
        let Some(begins) = self.budget.quiet_begins(now, &chrono::Local) else {
            return allowance;
        };
        let within = (begins - now).to_std().unwrap_or_default();
        let running = self.slots.running_for(Instant::now());
        allowance.at_most(
            self.pace
                .startable_within(within, self.cfg.concurrency, &running),
        )
    }

    /// When the next quiet hours begin, on the loop's clock (none set, or
    /// in them now: `paused_until` says when they end).
    pub(super) fn quiet_begins_at(&self) -> Option<Instant> {
        if self.budget.limits().quiet_hours.is_empty() {
            return None;
        }
        let now = time::now();
        let begins = self.budget.quiet_begins(now, &chrono::Local)?;
        Some(Instant::now() + (begins - now).to_std().unwrap_or_default())
    }

    /// Tasks wait in the outbox to go back to the queue: others may be
    /// waiting for them, so they go at once, and the sync that carries them
    /// does not give way to this node's own task ends. Not claims handed
    /// back for higher work: their peers are as busy, so they ride with the
    /// next sync like a result, and the higher claim that waits for this
    /// node's free slot starts first.
    pub(super) fn giving_back(&self) -> bool {
        use crate::service::outbox::Finish;
        self.outbox.entries().iter().any(|e| {
            matches!(
                e.finish,
                Finish::Requeue {
                    preempted: false,
                    ..
                } | Finish::Retry { .. }
            )
        })
    }

    /// Does the outbox hold what others wait for: tasks going back to the
    /// queue (`giving_back`), or the result of a task others run `after`
    /// (`SyncReport::awaited`) above what this node starts next? Then it
    /// goes at once, not with the next claim: a chain of tasks through a
    /// busy grid waited that long at each link (1-2 s, and a link on a node
    /// that then started a lower task of 8 s began 8 s late). Not with
    /// claims of its level or higher still to start here: what it releases
    /// would wait behind them, and a layered graph pushed each of its
    /// results alone (10 times the commits, 3 times as long).
    pub(super) fn others_wait(&self) -> bool {
        self.giving_back() || self.awaited_pending()
    }

    /// The second half of [`Worker::others_wait`]: a result that releases
    /// tasks, above the claims this node still has to start.
    pub(super) fn awaited_pending(&self) -> bool {
        use crate::service::outbox::Finish;
        let next = self.slots.next_waiting_level(time::now());
        self.outbox.entries().iter().any(|e| {
            matches!(e.finish, Finish::Result { .. })
                && self
                    .awaited
                    .get(&e.task_id)
                    .is_some_and(|&level| next.is_none_or(|n| level > n))
        })
    }

    /// Does the result of `task`, just ended, release work above every
    /// claim waiting here? Then its slot starts none of them until the
    /// sync that lands the result has claimed that work (`claim_released`):
    /// started blind, the next link of a high chain waited out a low task
    /// at each link. Only while the grid answers: away, the slot starts
    /// what it holds.
    pub(super) fn holds_slot_for(&self, task: &crate::grid::Id) -> bool {
        let next = self.slots.next_waiting_level(time::now());
        self.reached_since.is_some()
            && self.draining_since.is_none()
            && self
                .awaited
                .get(task)
                .is_some_and(|&l| next.is_some_and(|n| l > n))
    }

    /// A task running here whose result releases work above every claim
    /// waiting: the relay starts nothing at task ends (a start there is
    /// as blind as at a free slot, [`Worker::holds_slot_for`]).
    pub(super) fn runs_awaited_above(&self) -> bool {
        let next = self.slots.next_waiting_level(time::now());
        self.slots.running.keys().any(|id| {
            self.awaited
                .get(id)
                .is_some_and(|&l| next.is_some_and(|n| l > n))
        })
    }

    /// What pauses this node: the policy it enforces, which does not count
    /// its key, or else its volunteer's limits.
    pub(super) fn paused_by(&self) -> &'static str {
        if self.key_refused.is_some() {
            "the grid's policy"
        } else {
            "the volunteer's limits"
        }
    }

    /// How long results may wait for a claim to ride with, given how many
    /// nodes share the ref (`Pace::result_delay`).
    pub(super) fn result_delay(&self) -> std::time::Duration {
        let peers = self.last_view.as_ref().map_or(0, |v| v.live_peer_slots);
        self.pace.result_delay(peers as usize + 1)
    }

    /// The loop's load, as the schedule sees it.
    pub(super) fn load(&self) -> schedule::Load {
        schedule::Load {
            room: self.room(),
            waiting: self.slots.waiting.len(),
            running: self.slots.running.len(),
            pending: self.outbox.len(),
            giving_back: self.others_wait(),
            result_delay: self.result_delay(),
            stopping: self.draining_since.is_some(),
            look_ahead_at: self.look_ahead_at(),
            slot_frees: self.slot_frees(),
            look_takes: self.pace.peek_estimate(),
            sync_takes: self.pace.sync_estimate(),
            task_takes: Duration::from_secs_f64(self.pace.task_secs().unwrap_or(0.0)),
        }
    }

    /// When the first running task is due to end, by the measured task
    /// length, while every slot is busy and a claim waits for one: the
    /// moment the loop must be free to start it.
    pub(super) fn slot_frees(&self) -> Option<Instant> {
        if self.draining_since.is_some()
            || self.unhealthy.is_some()
            || self.slots.waiting.is_empty()
            || self.slots.occupied() < self.cfg.concurrency as usize
        {
            return None;
        }
        let task = Duration::from_secs_f64(self.pace.task_secs()?);
        self.slots
            .running
            .values()
            .filter(|r| r.ended.get().is_none())
            .map(|r| r.started + task)
            .min()
    }

    /// When to look at the queue ahead of the next free slot: every slot
    /// busy and a claim waiting for one, a look made shortly before the
    /// first running task is due to end (by the measured task length) lets
    /// the slot start higher work, claimed by this look or for this node
    /// by a peer, the moment it frees, where a look at the slot would make
    /// it wait (`Pace::look_ahead_of`). Once a slot: a look made since
    /// covers it.
    pub(super) fn look_ahead_at(&self) -> Option<Instant> {
        let frees = self.slot_frees()?;
        let at = self.pace.look_ahead_of(frees)?;
        if self.schedule.last_look.is_some_and(|l| l >= at) {
            return None;
        }
        Some(at)
    }
}
