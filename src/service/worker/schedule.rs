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
/// Cut the private clone back to the tip this often (`GridRepo::maintain`).
pub const MAINTAIN_EVERY: Duration = Duration::from_secs(6 * 3600);
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
    /// After a failed sync, no sync (for any reason) before this.
    pub retry_sync_at: Instant,
    /// When the oldest entry in the outbox was put there.
    pub results_since: Option<Instant>,
    /// While holding claims it has not started: when to look at the grid
    /// again for idle peers to hand them to.
    pub next_look: Instant,
    /// When the grid was last looked at (a claim or a look).
    pub last_look: Option<Instant>,
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
    /// Among them, tasks handed back to the queue.
    pub giving_back: bool,
    /// How long a result may wait for a claim to ride with.
    pub result_delay: Duration,
    /// Stopping: claim nothing, reap nothing, push what is pending.
    pub stopping: bool,
    /// When to look at the queue ahead of the next free slot, holding
    /// claims for it (`Worker::look_ahead_at`), besides the periodic look.
    pub look_ahead_at: Option<Instant>,
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
            retry_sync_at: now,
            results_since: outbox_pending.then_some(now),
            next_look: now,
            last_look: None,
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
        at.max(self.retry_sync_at)
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

    pub fn reaped(&mut self, now: Instant, stale_after: Duration) {
        self.next_reap = now + REAP_EVERY.min(stale_after / 2);
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

    /// Maintenance is due now; if so, it is scheduled for the next period.
    pub fn take_maintenance(&mut self, now: Instant) -> bool {
        let due = now >= self.next_maintenance;
        if due {
            self.next_maintenance = now + MAINTAIN_EVERY;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PULL: Duration = Duration::from_secs(10);

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    fn quiet(now: Instant) -> Schedule {
        let mut s = Schedule::starting(now, false);
        s.next_poll = now + PULL;
        s.next_heartbeat = now + Duration::from_secs(2400);
        s.next_reap = now + REAP_EVERY;
        s.next_look = now + PULL;
        s
    }

    fn base() -> Load {
        Load {
            result_delay: pace::MAX_RESULT_DELAY,
            ..Load::default()
        }
    }

    #[test]
    fn a_new_node_registers_claims_and_reaps_at_once() {
        let now = Instant::now();
        let s = Schedule::starting(now, false);
        let load = Load { room: 1, ..base() };
        let due = s.due(now, &load).unwrap();
        assert_eq!(
            due,
            Due {
                claims: 1,
                flush: false,
                heartbeat: true,
                reap: true,
                look: false,
                before_start: false,
            }
        );
    }

    #[test]
    fn an_idle_node_with_nothing_due_sleeps_until_its_poll() {
        let now = Instant::now();
        let s = quiet(now);
        let load = Load { room: 1, ..base() };
        assert_eq!(s.due(now, &load), None);
        assert_eq!(s.next_sync(now, &load), now + PULL);
        assert_eq!(s.sleep(now, &load, &[]), PULL);
        assert_eq!(
            s.sleep(now, &load, &[Some(at(now, 500)), None]),
            Duration::from_millis(500),
            "the watchdog comes first"
        );
        let full = base();
        assert_eq!(
            s.next_sync(now, &full),
            now + REAP_EVERY,
            "no room: the poll is no reason to wake"
        );
    }

    #[test]
    fn claims_wait_until_nothing_claimed_is_left_to_start() {
        let now = Instant::now();
        let s = Schedule::starting(now, false);
        let load = Load {
            room: 3,
            waiting: 2,
            running: 1,
            ..base()
        };
        assert_eq!(s.due(now, &load).unwrap().claims, 0);
        let load = Load { waiting: 0, ..load };
        assert_eq!(s.due(now, &load).unwrap().claims, 3);
    }

    #[test]
    fn a_failed_sync_holds_every_reason_back_for_the_interval() {
        let now = Instant::now();
        let mut s = Schedule::starting(now, true);
        let load = Load {
            room: 1,
            pending: 1,
            ..base()
        };
        assert!(s.due(now, &load).is_some());
        s.sync_failed(now, PULL);
        let soon = at(now, 5000);
        assert_eq!(s.due(soon, &load), None, "heartbeat and results wait");
        assert_eq!(s.next_sync(soon, &load), now + PULL);
        let due = s.due(now + PULL, &load).unwrap();
        assert!(due.heartbeat && due.flush && due.claims == 1);
    }

    #[test]
    fn results_ride_with_the_next_claim_or_go_after_the_delay() {
        let now = Instant::now();
        let mut s = quiet(now);
        s.result_waiting(now);
        let running = Load {
            room: 0,
            waiting: 3,
            running: 1,
            pending: 1,
            ..base()
        };
        assert_eq!(s.due(now, &running), None, "the batch runs on");
        let giving_back = Load {
            giving_back: true,
            ..running
        };
        assert!(
            s.due(now, &giving_back).unwrap().flush,
            "what goes back goes now"
        );
        assert_eq!(s.next_sync(now, &running), now + pace::MAX_RESULT_DELAY);
        let later = now + pace::MAX_RESULT_DELAY;
        assert!(s.due(later, &running).unwrap().flush);
        let stopping = Load {
            stopping: true,
            ..running
        };
        let due = s.due(now, &stopping).unwrap();
        assert!(due.flush && !due.reap, "stopping: push, never reap");
        s.outbox_emptied();
        assert_eq!(s.results_since, None);
    }

    #[test]
    fn a_claim_that_took_all_it_asked_for_polls_again_at_once() {
        let now = Instant::now();
        let mut s = quiet(now);
        s.claimed(now, true, PULL);
        assert_eq!(s.next_poll, now);
        s.claimed(now, false, PULL);
        assert_eq!(s.next_poll, now + PULL);
        s.reaped(now, Duration::from_secs(30));
        assert_eq!(
            s.next_reap,
            now + Duration::from_secs(15),
            "half the stale limit"
        );
        assert!(!s.take_maintenance(now));
        assert!(s.take_maintenance(now + MAINTAIN_EVERY));
        assert!(!s.take_maintenance(now + MAINTAIN_EVERY));
    }

    #[test]
    fn claims_not_started_make_the_node_look_again_within_half_an_interval() {
        let now = Instant::now();
        let mut s = quiet(now);
        let holding = Load {
            waiting: 3,
            running: 1,
            ..base()
        };
        s.looked(now, PULL);
        assert_eq!(s.due(now, &holding), None);
        assert_eq!(s.next_sync(now, &holding), now + PULL / 2);
        let due = s.due(now + PULL / 2, &holding).unwrap();
        assert!(due.look && due.claims == 0 && !due.flush);
        let stopping = Load {
            stopping: true,
            ..holding
        };
        assert_eq!(s.due(now + PULL / 2, &stopping), None);
        assert_eq!(s.due(now + PULL / 2, &base()), None, "nothing held");
    }

    #[test]
    fn a_look_ahead_of_a_free_slot_falls_due_before_the_periodic_one() {
        let now = Instant::now();
        let mut s = quiet(now);
        s.looked(now, PULL);
        let ahead = now + Duration::from_millis(150);
        let holding = Load {
            waiting: 1,
            running: 1,
            look_ahead_at: Some(ahead),
            ..base()
        };
        assert_eq!(s.next_sync(now, &holding), ahead);
        assert_eq!(s.due(now, &holding), None);
        let due = s.due(ahead, &holding).unwrap();
        assert!(due.look && due.claims == 0 && !due.flush);
        let stopping = Load {
            stopping: true,
            ..holding
        };
        assert_eq!(s.due(ahead, &stopping), None);
    }

    #[test]
    fn results_of_a_busy_node_can_wait_claims_and_stops_cannot() {
        let busy = Load {
            running: 1,
            pending: 2,
            ..base()
        };
        let results = Due {
            flush: true,
            ..Due::default()
        };
        assert!(results.can_wait(&busy));
        assert!(!results.can_wait(&base()), "nothing runs: push them");
        let claims = Due {
            claims: 1,
            ..results
        };
        assert!(!claims.can_wait(&busy));
        let giving_back = Load {
            giving_back: true,
            ..busy
        };
        assert!(!results.can_wait(&giving_back));
        let now = Instant::now();
        let mut s = quiet(now);
        s.result_waiting(now);
        let later = now + Duration::from_secs(1);
        s.results_deferred(later);
        assert_eq!(s.results_since, Some(later));
    }

    #[test]
    fn the_loop_never_spins() {
        let now = Instant::now();
        let s = Schedule::starting(now, false);
        let load = Load { room: 1, ..base() };
        assert_eq!(s.sleep(now, &load, &[]), SHORTEST_SLEEP);
    }
}
