//! Keeping the private clone the size of one tip. Git's own housekeeping
//! is off (it would run inside a claim), so the worker cuts the clone back
//! itself (`GridRepo::maintain`): every six hours (`MAINTAIN_EVERY`), and as soon as
//! the clone has grown as far as git's automatic gc would let it. The
//! period alone let a busy grid's clones grow 290-370 MB an hour (a soak of
//! four nodes, 68 tasks a minute: 24,300 loose objects each in 24 minutes),
//! and a node restarted more often than the period never cut back at all.
//! The results put aside as superseded are pruned at the same time.

use std::time::Instant;

use super::Worker;
use crate::escape::Untrusted;

impl Worker {
    /// After a sync: cut the clone back when it is due, by the period or by
    /// its growth. Between tasks, where the loop waits for nothing; with
    /// tasks running only once it has grown far past git's limits (a node
    /// busy all day may never be between tasks at a sync). Never with a
    /// push of unknown outcome: it would cut the history that tells.
    pub(super) fn upkeep(&mut self, now: Instant) {
        if self.uncertain.is_some() {
            return;
        }
        let between_tasks = self.slots.running.is_empty();
        let mut overgrown = false;
        if self.schedule.take_growth_check(now) {
            match self.repo.growth() {
                Ok(g) if g.grown() => {
                    // Said once, though a node at work may cut it back later.
                    if !self.schedule.clone_grown {
                        tracing::info!(
                            loose = g.loose,
                            packs = g.packs,
                            "the clone has grown: cutting it back to the tip"
                        );
                    }
                    self.schedule.clone_grown = true;
                    overgrown = g.overgrown();
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %Untrusted(&e), "cannot tell how far the clone has grown");
                }
            }
        }
        let due = self.schedule.clone_grown || self.schedule.maintenance_due(now);
        if !(overgrown || between_tasks && due) {
            return;
        }
        self.schedule.maintained(now);
        if let Err(e) = self.repo.maintain() {
            tracing::warn!(error = %Untrusted(&e), "git maintenance failed");
        }
        match self.outbox.prune_superseded(std::time::SystemTime::now()) {
            Ok(0) => {}
            Ok(removed) => {
                tracing::info!(
                    removed,
                    "results put aside as superseded removed: older than a week, or past the newest 1,000"
                )
            }
            Err(e) => tracing::warn!(error = %e, "cannot prune the results put aside"),
        }
    }
}
