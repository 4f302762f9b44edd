//! When the loop syncs and how long it sleeps: pure, over the loop's
//! monotonic clock, so every rule is unit-tested without a grid.
//!
//! A sync is due for four reasons: claims (room for tasks and the poll is
//! due), results to push (see [`pace::flush_results`]), a heartbeat, a reap.
//! None of them may come before `retry_sync_at`, which a failed sync sets:
//! a remote that is away is asked once per `pull_interval`, not every turn.

use std::time::{Duration, Instant};

use crate::service::pace;

/// Reap at most this often: reaping lists `in_progress/` and reads claims.
pub const REAP_EVERY: Duration = Duration::from_secs(60);
/// Cut the private clone back to the tip this often (`GridRepo::maintain`),
/// and sooner once it has grown (`git::Growth`).
pub const MAINTAIN_EVERY: Duration = Duration::from_secs(6 * 3600);
/// Ask how far the clone has grown this often (`git count-objects`: a
/// listing of its object directories).
pub const GROWTH_CHECK_EVERY: Duration = Duration::from_secs(60);
/// Never sleep less than this: a rule that is due "now" again and again must
/// not spin the loop.
const SHORTEST_SLEEP: Duration = Duration::from_millis(10);

/// The loop's timers.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub next_poll: Instant,
    pub next_heartbeat: Instant,
    pub next_reap: Instant,
    pub next_maintenance: Instant,
    pub next_growth_check: Instant,
    /// The last check found the clone grown: cut back at the next sync
    /// between tasks.
    pub clone_grown: bool,
    /// After a failed sync, no sync (for any reason) before this.
    pub retry_sync_at: Instant,
    /// When the oldest entry in the outbox was put there.
    pub results_since: Option<Instant>,
    /// While holding claims it has not started: when to look at the grid
    /// again for idle peers to hand them to.
    pub next_look: Instant,
    /// When the grid was last looked at (a claim or a look).
    pub last_look: Option<Instant>,
    /// A due sync held back for a slot about to free
    /// ([`Schedule::hold_for_slot`]).
    pub hold: Hold,
}

/// Whether a due sync waits for a slot to start its next claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hold {
    /// No sync held since the last one ran.
    #[default]
    Free,
    /// Held until this instant: half a sync past the slot's due end.
    Until(Instant),
    /// Held once since the last sync: the next due one runs.
    Spent,
}

/// What the loop holds this turn, as far as the schedule decides on it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    /// Tasks this node would claim now (free slots and claims ahead).
    pub room: usize,
    /// Claimed tasks waiting for a slot.
    pub waiting: usize,
    pub running: usize,
    /// Entries in the outbox.
    pub pending: usize,
    /// Among them, what others wait for: tasks handed back to the queue,
    /// or results of tasks others run after (`Worker::others_wait`).
    pub giving_back: bool,
    /// How long a result may wait for a claim to ride with.
    pub result_delay: Duration,
    /// Stopping: claim nothing, reap nothing, push what is pending.
    pub stopping: bool,
    /// When to look at the queue ahead of the next free slot, holding
    /// claims for it (`Worker::look_ahead_at`), besides the periodic look.
    pub look_ahead_at: Option<Instant>,
    /// When the first running task is due to end (by the measured task
    /// length), while every slot is busy and a claim waits for one.
    pub slot_frees: Option<Instant>,
    /// What a look at the lanes takes, and any other sync, as measured.
    pub look_takes: Duration,
    pub sync_takes: Duration,
    /// What a task takes, as measured.
    pub task_takes: Duration,
}

impl Load {
    /// When the slot a sync of `takes` should stay clear of is due to
    /// free ([`Load::slot_frees`]), where such a sync fits between two
    /// starts: before tasks shorter than a sync, a sync kept clear of one
    /// end runs over the next, and a node that gave way to each would only
    /// push more often, a round at a time.
    pub fn slot_to_keep_clear(&self, takes: Duration) -> Option<Instant> {
        self.slot_frees.filter(|_| self.task_takes >= takes)
    }
}

/// What a sync made now should carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Due {
    /// Tasks to claim (0: none).
    pub claims: usize,
    /// The outbox is due.
    pub flush: bool,
    pub heartbeat: bool,
    pub reap: bool,
    /// Look at the queue and the peers (holding claims not started yet).
    pub look: bool,
    /// The look is made at a free slot, before the claim that waits for it
    /// starts: the outbox waits for the next sync, so that the look pushes
    /// only when it finds higher work to claim.
    pub before_start: bool,
}

impl Due {
    pub fn any(&self) -> bool {
        self.claims > 0 || self.flush || self.heartbeat || self.reap || self.look
    }

    /// A look at the lanes and nothing else: a fetch and a listing.
    fn only_a_look(&self) -> bool {
        self.look && self.claims == 0 && !self.flush && !self.heartbeat && !self.reap
    }

    /// Only results of a node still at work (or a look): they can wait for
    /// a quieter ref if the push loses a race, instead of contending with
    /// the nodes that are claiming their first work. Tasks handed back, a
    /// heartbeat, a reap or a stop cannot wait.
    pub fn can_wait(&self, load: &Load) -> bool {
        self.claims == 0
            && !self.heartbeat
            && !self.reap
            && load.running > 0
            && !load.giving_back
            && !load.stopping
    }
}

impl Schedule {
    /// Everything due at once (register, heartbeat, reap), maintenance later.
    pub fn starting(now: Instant, outbox_pending: bool) -> Schedule {
        Schedule {
            next_poll: now,
            next_heartbeat: now,
            next_reap: now,
            next_maintenance: now + MAINTAIN_EVERY,
            // A node restarted on a grown clone cuts it back at once: the
            // period starts again at every start.
            next_growth_check: now,
            clone_grown: false,
            retry_sync_at: now,
            results_since: outbox_pending.then_some(now),
            next_look: now,
            last_look: None,
            hold: Hold::Free,
        }
    }

    fn oldest_result(&self, now: Instant) -> Duration {
        self.results_since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }

    fn poll_due(&self, now: Instant, load: &Load) -> bool {
        load.room > 0 && now >= self.next_poll
    }

    /// Push the outbox on this turn? See [`pace::flush_results`].
    pub fn flush_due(&self, now: Instant, load: &Load) -> bool {
        pace::flush_results(pace::Flush {
            pending: load.pending,
            waiting: load.waiting,
            running: load.running,
            claiming: self.poll_due(now, load),
            oldest: self.oldest_result(now),
            delay: load.result_delay,
            giving_back: load.giving_back,
            stopping: load.stopping,
        })
    }

    /// What a sync made now should carry. Claims only once nothing claimed
    /// is left to start: a batch is claimed in one commit, not topped up
    /// one task per commit. `None` when nothing is due, or when a failed
    /// sync holds every sync back.
    pub fn due(&self, now: Instant, load: &Load) -> Option<Due> {
        let flush = self.flush_due(now, load);
        let claims = if load.room > 0 && load.waiting == 0 && (now >= self.next_poll || flush) {
            load.room
        } else {
            0
        };
        let due = Due {
            claims,
            flush,
            heartbeat: now >= self.next_heartbeat,
            reap: now >= self.next_reap && !load.stopping,
            look: self.look_due(now, load),
            before_start: false,
        };
        (due.any() && now >= self.retry_sync_at).then_some(due)
    }

    fn look_due(&self, now: Instant, load: &Load) -> bool {
        load.waiting > 0 && !load.stopping && now >= self.next_look(load)
    }

    /// The next look: the periodic one, or one ahead of a free slot.
    fn next_look(&self, load: &Load) -> Instant {
        load.look_ahead_at
            .map_or(self.next_look, |at| at.min(self.next_look))
    }

    /// The next moment a sync may fall due: the nearest of the poll (with
    /// room), the look (with claims waiting), the heartbeat, the reap, and
    /// the outbox's deadline; never before the retry time a failed sync set.
    pub fn next_sync(&self, now: Instant, load: &Load) -> Instant {
        let mut at = self.next_heartbeat.min(self.next_reap);
        if load.room > 0 {
            at = at.min(self.next_poll);
        }
        if load.waiting > 0 && !load.stopping {
            at = at.min(self.next_look(load));
        }
        if self.flush_due(now, load) {
            at = now;
        } else if let Some(since) = self.results_since
            && load.pending > 0
        {
            at = at.min(since + load.result_delay);
        }
        if let Hold::Until(until) = self.hold {
            at = at.max(until);
        }
        at.max(self.retry_sync_at)
    }

    /// Hold the `due` sync back until the slot about to free has started
    /// the claim waiting for it? Yes when the sync, made now, would still
    /// run when the first running task is due to end (`Load::slot_frees`,
    /// against what such a sync takes, as measured): the loop, inside a
    /// sync, starts nothing, and the slot would idle until the sync ends.
    /// Traced behind a far host: looks of 0.2-0.4 s, made on their periodic
    /// clock, started 1 s tasks 0.25-0.4 s late. Held at most until half a
    /// sync past the slot's due end (or it frees sooner), and once between
    /// syncs: with several slots one frees every fraction of a task, and a
    /// sync held at each would never run. Never while tasks handed back
    /// wait for idle peers, nor stopping.
    pub fn hold_for_slot(&mut self, now: Instant, load: &Load, due: &Due) -> bool {
        if let Hold::Until(until) = self.hold {
            if now < until {
                return true;
            }
            self.hold = Hold::Spent;
        }
        if self.hold == Hold::Spent || load.giving_back || load.stopping {
            return false;
        }
        let takes = if due.only_a_look() {
            load.look_takes
        } else {
            load.sync_takes
        };
        match load.slot_to_keep_clear(takes) {
            Some(frees) if frees > now && now + takes > frees => {
                // Half a sync beyond the due end: a task that runs a few ms
                // over its measured length (most do) still starts its
                // successor first. Traced: a hold that lapsed at the due
                // end started its look 1-3 ms before the task ended.
                self.hold = Hold::Until(frees + takes / 2);
                true
            }
            _ => false,
        }
    }

    /// A task ended: a sync held for its slot runs once the slot started.
    pub fn slot_freed(&mut self) {
        if let Hold::Until(_) = self.hold {
            self.hold = Hold::Spent;
        }
    }

    /// A sync ran: the next due one may be held again.
    pub fn synced(&mut self) {
        self.hold = Hold::Free;
    }

    /// How long to sleep: until the next sync, or the earliest of `others`
    /// (watchdog, engine recheck, ...), and never less than a few ms.
    pub fn sleep(&self, now: Instant, load: &Load, others: &[Option<Instant>]) -> Duration {
        let at = others
            .iter()
            .flatten()
            .fold(self.next_sync(now, load), |a, b| a.min(*b));
        at.max(now + SHORTEST_SLEEP).saturating_duration_since(now)
    }

    /// A sync failed: hold every sync back for `pull_interval`. A due
    /// heartbeat or reap stays due; without this, the loop would retry
    /// every few ms while the remote is away.
    pub fn sync_failed(&mut self, now: Instant, pull_interval: Duration) {
        self.next_poll = now + pull_interval;
        self.retry_sync_at = now + pull_interval;
    }

    /// A requeue from the outbox had nowhere to go (`SyncReport::
    /// requeues_waiting`): nothing the next sync could change until the
    /// grid does, so it waits `pull_interval`, as after a failed sync;
    /// tried at once, it would make a plan every few ms.
    pub fn requeue_waits(&mut self, now: Instant, pull_interval: Duration) {
        self.retry_sync_at = now + pull_interval;
    }

    /// A sync that claimed landed: poll again at once while the queue has
    /// more and the claim took all it asked for (or tasks just went back to
    /// the queue); otherwise at the interval.
    pub fn claimed(&mut self, now: Instant, poll_again_now: bool, pull_interval: Duration) {
        self.next_poll = if poll_again_now {
            now
        } else {
            now + pull_interval
        };
    }

    /// The grid was looked at (a claim or a look): holding claims not
    /// started, look again after half a poll interval, so that a peer that
    /// goes idle gets them within one.
    pub fn looked(&mut self, now: Instant, pull_interval: Duration) {
        self.next_look = now + pull_interval / 2;
        self.last_look = Some(now);
    }

    /// A sweep (a reap) landed, or a plan left more waiting tasks to move
    /// on than it looks at (`more`): then the next sync sweeps for the
    /// rest, not one a minute away.
    pub fn reaped(&mut self, now: Instant, stale_after: Duration, more: bool) {
        self.next_reap = match more {
            true => now,
            false => now + REAP_EVERY.min(stale_after / 2),
        };
    }

    pub fn heartbeat_written(&mut self, now: Instant, interval: Duration) {
        self.next_heartbeat = now + interval;
    }

    /// A push that could wait lost its race: results wait one delay more.
    pub fn results_deferred(&mut self, now: Instant) {
        self.results_since = Some(now);
        self.next_look = now + pace::MAX_RESULT_DELAY;
    }

    /// An entry went into the outbox.
    pub fn result_waiting(&mut self, now: Instant) {
        self.results_since.get_or_insert(now);
    }

    pub fn outbox_emptied(&mut self) {
        self.results_since = None;
    }

    /// Is maintenance due by the period?
    pub fn maintenance_due(&self, now: Instant) -> bool {
        now >= self.next_maintenance
    }

    /// Maintenance ran: the next a period from now.
    pub fn maintained(&mut self, now: Instant) {
        self.next_maintenance = now + MAINTAIN_EVERY;
        self.clone_grown = false;
    }

    /// Is a check of the clone's growth due now? If so, the next a
    /// [`GROWTH_CHECK_EVERY`] later.
    pub fn take_growth_check(&mut self, now: Instant) -> bool {
        let due = now >= self.next_growth_check;
        if due {
            self.next_growth_check = now + GROWTH_CHECK_EVERY;
        }
        due
    }
}

#[cfg(test)]
mod tests;
