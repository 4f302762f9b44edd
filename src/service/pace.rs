//! How many tasks to claim ahead, and when to push results: the batching
//! rule, pure.
//!
//! One commit per task caps a grid at the compare-and-swap rate of one ref
//! (DESIGN.md 7: about 30 commits/s, falling as workers are added), so
//! batching is the lever: a node that claims k tasks in one commit and
//! delivers their k results in the next makes 1/k of the commits. But a
//! task claimed ahead is a task another node could be running. The hoard is
//! therefore bounded by time, not by count: a node holds ahead what it can
//! run during [`SYNCS_COVERED`] syncs, as measured. Another node waits at
//! most a few syncs for it, and a node with long tasks claims one ahead, no
//! more. A node that has not timed a task yet claims none ahead: it cannot
//! size a batch, and its first task is timed within that task.
//! Results wait for the commit that claims the next batch, never longer
//! than [`MAX_RESULT_DELAY`].

use std::time::Duration;

/// A result waits at most this long for a claim to ride with. It bounds the
/// delay when a task runs far longer than its predecessors did.
pub const MAX_RESULT_DELAY: Duration = Duration::from_secs(2);

/// How many syncs' worth of work a node holds ahead. With one slot the
/// loop runs a batch, then syncs: a batch worth four syncs keeps the slot
/// busy four fifths of the time.
pub const SYNCS_COVERED: f64 = 4.0;

/// Below this a task's measured time is noise (and `true` in the shell
/// engine takes about a millisecond): it bounds the ratio below.
const SHORTEST_TASK: Duration = Duration::from_millis(1);

/// Recent sync and task durations, exponentially weighted.
#[derive(Debug, Default, Clone)]
pub struct Pace {
    sync: Option<f64>,
    task: Option<f64>,
}

/// Weight of the newest sample: a quarter follows a change in the grid
/// within a few syncs without jumping at one slow push.
const WEIGHT: f64 = 0.25;

fn blend(old: Option<f64>, new: Duration) -> Option<f64> {
    let new = new.as_secs_f64();
    Some(old.map_or(new, |old| old + WEIGHT * (new - old)))
}

impl Pace {
    pub fn sync_took(&mut self, d: Duration) {
        self.sync = blend(self.sync, d);
    }

    pub fn task_took(&mut self, d: Duration) {
        self.task = blend(self.task, d);
    }

    /// Has a task been timed (can a batch be sized)?
    pub fn measured(&self) -> bool {
        self.task.is_some() && self.sync.is_some()
    }

    /// Tasks to hold claimed beyond the free slots: enough to keep every
    /// slot busy through [`SYNCS_COVERED`] syncs, at least one, at most
    /// `max` (0: none). Until a task and a sync have been timed, none.
    pub fn ahead(&self, concurrency: u32, max: u32) -> usize {
        match self.task {
            Some(task) => self.ahead_if(task, concurrency, max),
            None => 0,
        }
    }

    /// What [`Pace::ahead`] would say if tasks took `task` seconds.
    fn ahead_if(&self, task: f64, concurrency: u32, max: u32) -> usize {
        let Some(sync) = self.sync else { return 0 };
        if max == 0 {
            return 0;
        }
        let task = task.max(SHORTEST_TASK.as_secs_f64());
        let covering = (f64::from(concurrency) * SYNCS_COVERED * sync / task).ceil();
        // `as` saturates; NaN cannot occur (both are finite and task > 0).
        (covering as usize).clamp(1, max as usize)
    }

    /// How long a task must have run before `waiting` claims are more than
    /// [`surplus`] allows: when to look again. `None`: never (too few
    /// waiting, or no sync timed).
    pub fn surplus_after(&self, waiting: usize, concurrency: u32) -> Option<Duration> {
        let sync = self.sync?;
        // surplus > 0 once ahead <= m, i.e. once ceil(k / t) <= m.
        let m = waiting.checked_sub(1)? / 2;
        if m == 0 {
            return None;
        }
        let k = f64::from(concurrency) * SYNCS_COVERED * sync;
        Some(Duration::from_secs_f64(k / m as f64))
    }

    /// The most this node should hold ahead, knowing that one of its tasks
    /// has been running for `running_for` already (a task is at least that
    /// long): lets a share taken before any task was timed go back as soon
    /// as the first task shows itself long, not when it ends. `None` when
    /// nothing is known yet.
    pub fn ahead_at_most(
        &self,
        running_for: Duration,
        concurrency: u32,
        max: u32,
    ) -> Option<usize> {
        let by_running = (!running_for.is_zero() && self.sync.is_some())
            .then(|| self.ahead_if(running_for.as_secs_f64(), concurrency, max));
        let by_measure = self.measured().then(|| self.ahead(concurrency, max));
        match (by_running, by_measure) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A queue this many times deeper than the idle nodes is deep: see
/// [`first_claim`].
pub const DEEP: usize = 8;

/// How many a node that has not timed a task yet claims at a queue of
/// `queue_len`, with `idle` nodes (itself included) able to take some, at
/// most `cap`. It cannot size a batch by time, so:
/// - at a shallow queue (a burst), its share: the queue divided among the
///   idle nodes, so that each starts at once;
/// - at a deep queue (at least [`DEEP`] tasks for every idle node), all it
///   may (`cap`). Every node that takes part in a drain makes at least two
///   commits (its claim, its results) on the one ref they all queue for:
///   measured with 16 workers on 500 short tasks, sharing among all made
///   17-31 commits and ran at half the rate of the greedy claim (11-13).
///   What turns out to be too much (long tasks) goes back soon after the
///   first task starts (see [`surplus`]), for the nodes that got none.
pub fn first_claim(queue_len: usize, idle: usize, cap: usize) -> usize {
    let idle = idle.max(1);
    let share = if queue_len >= DEEP * idle {
        queue_len
    } else {
        queue_len.div_ceil(idle)
    };
    share.min(cap)
}

/// Claims waiting beyond what the node can run soon: more than twice what
/// [`Pace::ahead`] asks for (a share taken before the first task was
/// timed, of tasks that turned out long). They go back to the queue for
/// nodes with free slots.
pub fn surplus(waiting: usize, ahead: usize) -> usize {
    waiting.saturating_sub(2 * ahead.max(1))
}

/// What [`flush_results`] decides on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flush {
    /// Results (and requeues) waiting to be pushed.
    pub pending: usize,
    /// Claimed tasks not started yet.
    pub waiting: usize,
    pub running: usize,
    /// The node would claim on this turn (free room, poll due).
    pub claiming: bool,
    /// How long the oldest pending entry has waited.
    pub oldest: Duration,
    pub stopping: bool,
}

/// Push the results waiting in the outbox now? Yes when nothing claimed is
/// left to start and either the sync that claims the next batch is due
/// (they ride with it) or nothing runs any more; when the oldest has waited
/// [`MAX_RESULT_DELAY`]; or when the node is stopping. At the end of a
/// queue the last results of a batch thus go in one commit, not one for
/// those done and one for the task still running.
pub fn flush_results(o: Flush) -> bool {
    o.pending > 0
        && (o.stopping
            || o.oldest >= MAX_RESULT_DELAY
            || (o.waiting == 0 && (o.running == 0 || o.claiming)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn none_ahead_until_measured() {
        let mut p = Pace::default();
        assert_eq!(p.ahead(1, 32), 0);
        p.sync_took(ms(70));
        assert_eq!(p.ahead(1, 32), 0);
        p.task_took(ms(25));
        assert_eq!(
            p.ahead(1, 32),
            12,
            "4 syncs of 70 ms cover 11.2 tasks of 25 ms"
        );
        let mut quick = Pace::default();
        quick.sync_took(ms(70));
        quick.task_took(ms(1));
        assert_eq!(quick.ahead(1, 32), 32, "capped");
        assert_eq!(p.ahead(1, 0), 0, "0 turns claiming ahead off");
    }

    #[test]
    fn long_tasks_get_one_ahead_short_ones_a_sync_worth() {
        let mut p = Pace::default();
        p.sync_took(ms(100));
        p.task_took(Duration::from_secs(60));
        assert_eq!(p.ahead(1, 32), 1);
        assert_eq!(p.ahead(8, 32), 1);
        let mut p = Pace::default();
        p.sync_took(ms(100));
        p.task_took(ms(120));
        assert_eq!(p.ahead(1, 32), 4);
        assert_eq!(p.ahead(2, 32), 7, "two slots run twice as many in one sync");
        p.task_took(Duration::ZERO);
        assert!(p.ahead(1, 32) <= 32);
    }

    #[test]
    fn one_slow_sample_moves_the_estimate_a_quarter() {
        let mut p = Pace::default();
        p.sync_took(ms(100));
        p.task_took(ms(45));
        assert_eq!(p.ahead(1, 100), 9);
        p.sync_took(ms(500));
        assert_eq!(p.ahead(1, 100), 18);
    }

    #[test]
    fn an_unmeasured_node_takes_a_share_or_a_batch_and_returns_surplus() {
        assert_eq!(first_claim(500, 8, 65), 65, "deep: all it may");
        assert_eq!(first_claim(500, 16, 65), 65);
        assert_eq!(first_claim(40, 8, 65), 5, "shallow: its share");
        assert_eq!(first_claim(500, 100, 65), 5);
        assert_eq!(first_claim(4, 4, 65), 1, "a burst among idle nodes");
        assert_eq!(first_claim(1, 4, 65), 1, "one task among idle nodes");
        assert_eq!(first_claim(0, 4, 65), 0);
        assert_eq!(first_claim(10, 0, 65), 10);
        assert_eq!(surplus(62, 1), 60, "long tasks: keep two");
        assert_eq!(surplus(62, 64), 0);
        assert_eq!(surplus(0, 0), 0);
    }

    #[test]
    fn a_running_task_bounds_what_is_held_ahead() {
        let mut p = Pace::default();
        assert_eq!(p.ahead_at_most(ms(500), 1, 64), None, "no sync timed");
        p.sync_took(ms(70));
        assert_eq!(p.ahead_at_most(Duration::ZERO, 1, 64), None);
        assert_eq!(p.ahead_at_most(ms(6), 1, 64), Some(47));
        assert_eq!(p.ahead_at_most(Duration::from_secs(3), 1, 64), Some(1));
        p.task_took(ms(2));
        assert_eq!(p.ahead_at_most(Duration::ZERO, 1, 64), Some(64));
        assert_eq!(
            p.ahead_at_most(Duration::from_secs(3), 1, 64),
            Some(1),
            "the running task is longer than those measured"
        );
    }

    #[test]
    fn the_loop_knows_when_a_running_task_makes_claims_surplus() {
        let mut p = Pace::default();
        assert_eq!(p.surplus_after(10, 1), None, "no sync timed");
        p.sync_took(ms(100));
        assert_eq!(p.surplus_after(2, 1), None, "two are never surplus");
        let at = p.surplus_after(4, 1).unwrap();
        assert_eq!(at, ms(400));
        let bound = |t: Duration| p.ahead_at_most(t, 1, 64).unwrap();
        assert_eq!(surplus(4, bound(at - ms(10))), 0);
        assert_eq!(surplus(4, bound(at + ms(10))), 2);
    }

    #[test]
    fn results_ride_with_the_next_claim_but_not_for_long() {
        let o = Flush {
            pending: 3,
            ..Flush::default()
        };
        assert!(
            !flush_results(Flush {
                pending: 0,
                stopping: true,
                ..o
            }),
            "nothing to push"
        );
        assert!(flush_results(o), "batch done, nothing runs");
        assert!(
            !flush_results(Flush {
                waiting: 5,
                oldest: ms(100),
                ..o
            }),
            "the batch runs on"
        );
        assert!(
            !flush_results(Flush { running: 1, ..o }),
            "the queue is empty: wait for the last task of the batch"
        );
        assert!(
            flush_results(Flush {
                running: 1,
                claiming: true,
                ..o
            }),
            "the next claim is due: ride with it"
        );
        assert!(
            flush_results(Flush {
                waiting: 5,
                oldest: MAX_RESULT_DELAY,
                ..o
            }),
            "waited enough"
        );
        assert!(
            flush_results(Flush {
                waiting: 5,
                stopping: true,
                ..o
            }),
            "stopping"
        );
    }

    proptest::proptest! {
        /// Whatever was measured, at least one and at most `max` ahead,
        /// and never fewer for a longer sync or a shorter task.
        #[test]
        fn ahead_is_bounded_and_monotone(
            sync in 0u64..10_000, task in 0u64..100_000, c in 1u32..64, max in 1u32..256,
        ) {
            let mut p = Pace::default();
            p.sync_took(ms(sync));
            p.task_took(ms(task));
            let a = p.ahead(c, max);
            proptest::prop_assert!(a >= 1 && a <= max as usize);
            let mut slower_sync = Pace::default();
            slower_sync.sync_took(ms(sync * 2));
            slower_sync.task_took(ms(task));
            proptest::prop_assert!(slower_sync.ahead(c, max) >= a);
            let mut longer_task = Pace::default();
            longer_task.sync_took(ms(sync));
            longer_task.task_took(ms(task * 2 + 1));
            proptest::prop_assert!(longer_task.ahead(c, max) <= a);
        }
    }
}
