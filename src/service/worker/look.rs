//! Higher work at a free slot: the look at the lanes a slot makes just
//! after it started its next claim, and taking back a start that higher
//! work, found by that look or brought by any sync, goes before.

use std::time::Instant;

use crate::escape::Untrusted;
use crate::git::txn::TxnPolicy;
use crate::grid::Id;
use crate::ledger::queue::QueueAt;
use crate::time;

use super::Worker;
use super::schedule::Due;

impl Worker {
    /// After a look at a free slot claimed higher work: take back the runs
    /// the slot started just before the look that are below it
    /// (`Slots::take_back_below`); their slots start the higher work.
    /// Whether any was.
    pub(super) fn take_back_below(&mut self, at_slot: &[Id]) -> bool {
        let back = self.slots.take_back_below(at_slot, time::now());
        for (id, level) in &back {
            tracing::info!(task_id = %id, level, "taking back the start: higher work is claimed for this slot");
        }
        !back.is_empty()
    }

    /// After a sync that brought work above a run this node started
    /// moments ago (claimed for it by a peer, or by the sync): take the
    /// start back, as a look at the free slot does (`take_back_below`).
    /// The start was made at a free slot just before the sync could tell
    /// it of the higher work (`Pace::take_back_window`), or by a task's
    /// thread while the sync ran (the relay); traced, such a slot ran its
    /// low task out while the burst claimed for it waited.
    pub(super) fn take_back_recent_starts(&mut self) {
        let relayed = std::mem::take(&mut self.relayed);
        let window = self.pace.take_back_window().unwrap_or_default();
        let recent: Vec<Id> = self
            .slots
            .running
            .iter()
            .filter(|(id, r)| r.started.elapsed() <= window || relayed.contains(id))
            .map(|(id, _)| id.clone())
            .collect();
        if recent.is_empty() || self.draining_since.is_some() {
            return;
        }
        // Only then a start: a slot left free by no take-back is not this
        // rule's to fill (a handback waiting in the outbox is taken back
        // at a free slot, not after any sync).
        if self.take_back_below(&recent) {
            self.start_waiting();
        }
    }

    /// At a free slot with a claim waiting for it, look at the lanes? Work
    /// of a higher priority may have arrived since the claim was made, and
    /// should start at this slot, not after the claims held. Where a look
    /// costs little against a task (`Pace::look_at_free_slots`), and only
    /// if the last look is older than the look takes: one that recent is
    /// as good as a new one.
    pub(super) fn look_pays(&self) -> bool {
        !self.slots.waiting.is_empty()
            && self.slots.occupied() < self.cfg.concurrency as usize
            && self.look_after_start_pays()
    }

    /// A look just after a start: where looks cost little against a task,
    /// and the last is older than a look takes. Asked at a free slot
    /// ([`Worker::look_pays`]), and for the starts a task's thread made
    /// through the relay while the loop was inside a sync: those were made
    /// as blind as a start at a free slot (traced: with the relay and no
    /// look, a priority burst claimed for a node waited for a whole low
    /// task at its first slot, 0.2 s, where the look took the start back).
    pub(super) fn look_after_start_pays(&self) -> bool {
        self.draining_since.is_none()
            && self.unhealthy.is_none()
            && self.pace.look_at_free_slots()
            && self
                .schedule
                .last_look
                .is_none_or(|at| at.elapsed() >= self.pace.peek_estimate())
    }

    /// Look at the lanes, at the next turn of the loop, just after these
    /// starts (`look_at_free_slot`).
    pub(super) fn look_after(&mut self, started: Vec<Id>) {
        self.look_at_slot.get_or_insert_default().extend(started);
    }

    /// The look [`Worker::look_pays`] asked for, made just after the free
    /// slot started `at_slot`: fetch and list the lanes and the inbox; if
    /// the lanes hold work above what the slot started, or the inbox holds
    /// tasks no look has read (pushed there by hand: their level is known
    /// only once read), one sync reads them, claims the higher work (and
    /// hands back, by the outbox, the claims it goes before), and the start
    /// is taken back for it. A look that finds nothing pushes nothing.
    /// Without the inbox here, a task pushed there by hand waited for the
    /// periodic look (half a poll interval: 5 s at the default) and, the
    /// slot's start made, for a whole low task more. The slot never
    /// waits for the look: measured with mixed task lengths, a fetch before
    /// each start cost a tenth of the drain (BENCHMARKS.md, "A look after
    /// the start").
    pub(super) fn look_at_free_slot(&mut self, at_slot: &[Id]) {
        let started = Instant::now();
        // What the slot started, or else the next to start: the level the
        // look must find work above.
        let now = time::now();
        let held = at_slot
            .iter()
            .filter_map(|id| self.slots.running.get(id))
            .map(|r| r.claimed.effective_priority(now))
            .chain(self.slots.next_waiting_level(now))
            .max();
        let takes_assigned = self.takes_assigned();
        let mut made_for_it = false;
        let mut fetched = None;
        let mut inbox = None;
        let top = self.repo.fetch().and_then(|tip| match tip {
            Some(tip) => {
                fetched = Some(tip.clone());
                // A peer may have claimed a burst of higher work for this
                // node: it is no longer in the lanes, but waits for it.
                if takes_assigned && let Some(next) = held {
                    made_for_it = crate::service::sync::made_for(
                        &self.repo,
                        &tip,
                        (&self.cfg.node_id, &self.slots.held()),
                        (next, now),
                        &self.cfg.task_rules,
                        &self.claims_seen,
                    )?;
                }
                // The inbox's listing is one more tree through the kept
                // reader, not one more git process.
                let queue = QueueAt::list(&self.repo, &tip)?;
                inbox = queue.inbox_key();
                Ok(queue.top_level(&self.labels, time::now()))
            }
            None => Ok(None),
        });
        // A failed look says nothing of what a look costs (a remote that is
        // away can take a timeout), and must not turn the looks off.
        if top.is_ok() {
            self.pace.peek_took(started.elapsed());
        }
        // Read only by a sync that looks above claims still waiting (the
        // claim's `preempt_below`): with none left, no sync for it.
        let inbox_unread =
            inbox.is_some() && inbox != self.inbox_looked && !self.slots.waiting.is_empty();
        // Only work above what starts next is worth the slot's wait for a
        // sync: below that, what waits starts now, and the claims it goes
        // before go back at the next look, which the slot does not wait
        // for.
        match top {
            // The same higher level that the last look could not claim
            // (tasks this node may not take, as trust rules): the periodic
            // look will see what changes; no sync per task for it.
            Ok(top) if made_for_it || inbox_unread || top > held && top != self.unclaimable_top => {
                tracing::debug!(
                    ?top,
                    ?held,
                    made_for_it,
                    inbox_unread,
                    "higher work queued, claimed for this node or pushed to the inbox; looking before starting"
                );
                self.inbox_looked = inbox;
                let due = Due {
                    look: true,
                    before_start: true,
                    ..Due::default()
                };
                // The look and the sync in one: the sync plans on the tip
                // the look fetched (a fetch is most of a look), where a
                // sync of its own fetched again before it claimed.
                let policy = TxnPolicy::default().interruptible(self.nudge.clone());
                let policy = match fetched {
                    Some(tip) => policy.from_tip(tip),
                    None => policy,
                };
                match self.sync(&due, &policy) {
                    Ok(report) => {
                        self.unclaimable_top = (report.claimed.is_empty()
                            && report.top_queued == top)
                            .then_some(top)
                            .flatten();
                        // And what the relay started while this sync ran.
                        let blind: Vec<Id> = at_slot
                            .iter()
                            .cloned()
                            .chain(std::mem::take(&mut self.relayed))
                            .collect();
                        self.take_back_below(&blind);
                    }
                    Err(e) => {
                        tracing::debug!(error = %Untrusted(&e), "claiming the higher work failed; starting what waits");
                    }
                }
            }
            Ok(top) => {
                if top <= held {
                    self.unclaimable_top = None;
                }
                self.schedule.last_look = Some(Instant::now());
            }
            Err(e) => {
                tracing::debug!(error = %Untrusted(&e), "cannot look at the lanes; starting what waits")
            }
        }
        self.start_waiting();
    }
}
