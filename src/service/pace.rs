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

    /// Tasks to hold claimed beyond the free slots: enough to keep every
    /// slot busy through [`SYNCS_COVERED`] syncs, at least one, at most
    /// `max` (0: none). Until a task and a sync have been timed, none.
    pub fn ahead(&self, concurrency: u32, max: u32) -> usize {
        let (Some(sync), Some(task)) = (self.sync, self.task) else {
            return 0;
        };
        if max == 0 {
            return 0;
        }
        let task = task.max(SHORTEST_TASK.as_secs_f64());
        let covering = (f64::from(concurrency) * SYNCS_COVERED * sync / task).ceil();
        // `as` saturates; NaN cannot occur (both are finite and task > 0).
        (covering as usize).clamp(1, max as usize)
    }
}

/// Push the results waiting in the outbox now? Yes when nothing claimed is
/// left to start (the sync that claims the next batch is due, and they ride
/// with it), when the oldest has waited [`MAX_RESULT_DELAY`], or when the
/// node is stopping.
pub fn flush_results(pending: usize, waiting: usize, oldest: Duration, stopping: bool) -> bool {
    pending > 0 && (waiting == 0 || oldest >= MAX_RESULT_DELAY || stopping)
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
    fn results_ride_with_the_next_claim_but_not_for_long() {
        assert!(
            !flush_results(0, 0, Duration::ZERO, true),
            "nothing to push"
        );
        assert!(flush_results(3, 0, Duration::ZERO, false), "batch done");
        assert!(!flush_results(3, 5, ms(100), false), "the batch runs on");
        assert!(
            flush_results(3, 5, MAX_RESULT_DELAY, false),
            "waited enough"
        );
        assert!(flush_results(1, 5, Duration::ZERO, true), "stopping");
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
