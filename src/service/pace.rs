//! How many tasks to claim ahead, and when to push results: the batching
//! rule, pure.
//!
//! One commit per task caps a grid at the compare-and-swap rate of one ref
//! (about 30 commits/s on a local bare repository, falling as workers are
//! added: BENCHMARKS.md, Contention), so
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
    /// A look at the lanes before starting a claim (a fetch and a listing).
    peek: Option<f64>,
    /// A sync that committed, per round (fetch, plan, commit, push; the
    /// lost rounds and the waits after them spread over all): about what
    /// one commit holds the ref for.
    round: Option<f64>,
}

/// A look at the queue at every free slot may cost at most this share of
/// a task's time.
const PEEK_SHARE: f64 = 0.25;

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

    pub fn peek_took(&mut self, d: Duration) {
        self.peek = blend(self.peek, d);
    }

    /// The measured time of a task, in seconds (if one was timed).
    pub fn task_secs(&self) -> Option<f64> {
        self.task
    }

    /// A sync that committed took `d` over `rounds` rounds.
    pub fn commit_took(&mut self, d: Duration, rounds: u32) {
        self.round = blend(self.round, d / rounds.max(1));
    }

    /// What a committing sync takes per round, in seconds (as measured).
    pub fn round_secs(&self) -> Option<f64> {
        self.round
    }

    /// What a look at the lanes takes, in seconds: as measured, or half a
    /// sync's time until a look has been timed (it is a sync's fetch and
    /// listing without its reads, commit and push).
    fn peek_secs(&self) -> Option<f64> {
        self.peek.or(self.sync.map(|s| s / 2.0))
    }

    /// What a look at the lanes takes, as measured (or estimated).
    pub fn peek_estimate(&self) -> Duration {
        Duration::from_secs_f64(self.peek_secs().unwrap_or(0.0))
    }

    /// Is a look at the lanes at every free slot worth its time? It lets
    /// work of a higher priority start at the next free slot, not at the
    /// next periodic look, and costs a fetch and a listing before each
    /// task: yes where that is at most [`PEEK_SHARE`] of a task, as
    /// measured. Before shorter tasks a slot frees again soon, and the
    /// claims' own syncs see the higher work.
    pub fn look_at_free_slots(&self) -> bool {
        match (self.task, self.peek_secs()) {
            (Some(task), Some(peek)) => peek <= PEEK_SHARE * task,
            _ => false,
        }
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

    /// [`Pace::ahead`], knowing that a task running now has run for
    /// `longest_running` already: a task far longer than the average says
    /// the tasks have changed (short ones measured, long ones arrived), and
    /// what is held ahead shrinks now, not when it ends.
    pub fn ahead_now(&self, longest_running: Duration, concurrency: u32, max: u32) -> usize {
        match self.task {
            Some(task) => self.ahead_if(task.max(longest_running.as_secs_f64()), concurrency, max),
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

    /// How many claimed tasks this node can expect to start within
    /// `within`, with `slots` slots of which those running have run for
    /// `running_for`. A running task is expected to end when the measured
    /// average says, or, once it has run longer than that (or nothing is
    /// measured), to run as long again: task lengths are heavy-tailed; and
    /// the tasks after it are taken to be as long as the longer of the two.
    pub fn startable_within(
        &self,
        within: Duration,
        slots: u32,
        running_for: &[Duration],
    ) -> usize {
        let within = within.as_secs_f64();
        let (task, ends) = self.slots_free(slots, running_for);
        ends.into_iter()
            .map(|free_at| {
                if free_at > within {
                    0
                } else {
                    // Then one after another, each as long as the average; a
                    // node that has measured nothing counts just the first.
                    let more = task.map_or(0.0, |t| ((within - free_at) / t).floor());
                    1 + more.min(1e9) as usize
                }
            })
            .sum()
    }

    /// When each slot frees (seconds from now), with `slots` slots of which
    /// those running have run for `running_for`, and the length taken for
    /// the tasks after them (none until one is timed): as
    /// [`Pace::startable_within`] reckons them.
    fn slots_free(&self, slots: u32, running_for: &[Duration]) -> (Option<f64>, Vec<f64>) {
        // A running task longer than the average says the tasks got longer:
        // those that follow are taken to be as long.
        let longest = running_for.iter().max().map_or(0.0, Duration::as_secs_f64);
        let task = self
            .task
            .map(|t| t.max(SHORTEST_TASK.as_secs_f64()).max(longest));
        let free = (slots as usize).saturating_sub(running_for.len());
        let ends = running_for
            .iter()
            .map(|r| {
                let r = r.as_secs_f64();
                match task {
                    Some(t) if r < t => t - r,
                    _ => r,
                }
            })
            .chain(std::iter::repeat_n(0.0, free))
            .collect();
        (task, ends)
    }

    /// When this node would start each of its next `n` tasks (seconds from
    /// now, in the order they start), and then when a slot would run dry:
    /// `n + 1` times. A slot takes the next task when it frees, each task
    /// as long as [`Pace::startable_within`] takes them; until a task has
    /// been timed, what follows a slot's first is never (infinity).
    pub fn starts(&self, slots: u32, running_for: &[Duration], n: usize) -> Vec<f64> {
        let (task, mut free) = self.slots_free(slots, running_for);
        let step = task.unwrap_or(f64::INFINITY);
        let mut out = Vec::with_capacity(n + 1);
        for _ in 0..=n {
            // Slots are few (the node's concurrency): a scan is enough.
            let Some((i, &at)) = free.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)) else {
                out.push(f64::INFINITY);
                continue;
            };
            out.push(at);
            free[i] = at + step;
        }
        out
    }
}

/// Results wait at most this many syncs' time (or [`MAX_RESULT_DELAY`], if
/// longer) for a claim to ride with: where each push takes long (a far git
/// host) the ref has fewer pushes to spare.
pub const RESULT_DELAY_SYNCS: f64 = 8.0;

impl Pace {
    /// How long a result may wait in the outbox for a claim to ride with,
    /// when `nodes` nodes share the ref: at least [`MAX_RESULT_DELAY`], at
    /// least [`RESULT_DELAY_SYNCS`] syncs, and long enough that the nodes'
    /// result pushes together take at most half of the ref (a sync's time
    /// each, measured with the rounds it lost), so that nodes waiting for
    /// their first claim can still get theirs in. At most ten times the
    /// least.
    pub fn result_delay(&self, nodes: usize) -> Duration {
        let sync = self.sync.unwrap_or(0.0);
        let by_sync = sync * RESULT_DELAY_SYNCS;
        let by_share = sync * 2.0 * nodes as f64;
        Duration::from_secs_f64(by_sync.max(by_share))
            .clamp(MAX_RESULT_DELAY, 10 * MAX_RESULT_DELAY)
    }
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
    /// How long a result may wait ([`Pace::result_delay`]).
    pub delay: Duration,
    /// Tasks handed back wait among them: others may be waiting for them.
    pub giving_back: bool,
    pub stopping: bool,
}

/// Push the results waiting in the outbox now? Yes when nothing claimed is
/// left to start and either the sync that claims the next batch is due
/// (they ride with it) or nothing runs any more; when the oldest has waited
/// its delay; when tasks go back to the queue; or when the node is
/// stopping. At the end of a queue the last results of a batch thus go in
/// one commit, not one for those done and one for the task still running.
pub fn flush_results(o: Flush) -> bool {
    o.pending > 0
        && (o.stopping
            || o.giving_back
            || o.oldest >= o.delay
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
    fn a_long_running_task_shrinks_what_is_held_ahead_now() {
        let mut p = Pace::default();
        p.sync_took(ms(100));
        p.task_took(ms(2));
        assert_eq!(p.ahead_now(Duration::ZERO, 1, 128), 128, "short tasks");
        assert_eq!(p.ahead_now(ms(2), 1, 128), 128);
        assert_eq!(
            p.ahead_now(Duration::from_secs(2), 1, 128),
            1,
            "a long one runs"
        );
        assert_eq!(Pace::default().ahead_now(ms(5), 1, 128), 0, "nothing timed");
    }

    #[test]
    fn a_round_is_a_committing_sync_without_the_rounds_it_lost() {
        let mut p = Pace::default();
        assert_eq!(p.round_secs(), None);
        p.commit_took(ms(600), 3);
        assert!((p.round_secs().unwrap() - 0.2).abs() < 1e-9);
        p.commit_took(ms(100), 0);
        assert!(
            (p.round_secs().unwrap() - 0.175).abs() < 1e-9,
            "zero rounds counts as one"
        );
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
    fn a_look_at_every_free_slot_only_where_it_costs_little() {
        let mut p = Pace::default();
        assert!(!p.look_at_free_slots(), "nothing timed");
        p.sync_took(ms(100));
        p.task_took(ms(150));
        assert!(!p.look_at_free_slots(), "half a sync is a third of a task");
        p.task_took(Duration::from_secs(2));
        assert!(p.look_at_free_slots(), "tasks of seconds");
        assert_eq!(p.peek_estimate(), ms(50), "half a sync until timed");
        p.peek_took(ms(600));
        assert!(!p.look_at_free_slots(), "a far host: a look costs too much");
        let mut zero = Pace::default();
        zero.sync_took(ms(100));
        zero.task_took(ms(1));
        assert!(!zero.look_at_free_slots(), "zero-length tasks");
    }

    #[test]
    fn what_starts_soon_follows_the_running_task() {
        let s = Duration::from_secs_f64;
        let mut p = Pace::default();
        assert_eq!(
            p.startable_within(s(0.5), 1, &[s(0.1)]),
            1,
            "nothing timed: it may end now"
        );
        assert_eq!(p.startable_within(s(0.5), 1, &[s(0.6)]), 0, "as long again");
        assert_eq!(p.startable_within(s(0.5), 2, &[s(0.6)]), 1, "a free slot");
        p.task_took(s(1.0));
        assert_eq!(p.startable_within(s(0.5), 1, &[s(0.2)]), 0, "ends in 0.8 s");
        assert_eq!(p.startable_within(s(0.5), 1, &[s(0.7)]), 1, "ends in 0.3 s");
        assert_eq!(p.startable_within(s(2.5), 1, &[s(0.7)]), 3, "then two more");
        assert_eq!(
            p.startable_within(s(2.5), 1, &[s(1.2)]),
            2,
            "a task longer than the average: it runs as long again, the next one as long"
        );
        assert_eq!(
            p.startable_within(s(0.5), 1, &[s(3.0)]),
            0,
            "a long one runs on"
        );
        let mut quick = Pace::default();
        quick.task_took(Duration::ZERO);
        assert_eq!(
            quick.startable_within(s(0.5), 1, &[Duration::ZERO]),
            500,
            "short tasks: many"
        );
        assert_eq!(
            quick.startable_within(s(1.0), 1, &[s(0.4)]),
            2,
            "short tasks measured, a long one running: few"
        );
    }

    #[test]
    fn starts_follow_the_slots_as_they_free() {
        let s = Duration::from_secs_f64;
        let mut p = Pace::default();
        assert_eq!(p.starts(1, &[], 0), vec![0.0], "idle: dry now");
        assert_eq!(
            p.starts(1, &[s(0.5)], 2),
            vec![0.5, f64::INFINITY, f64::INFINITY],
            "nothing timed: the running task runs as long again, then never"
        );
        p.task_took(s(1.0));
        assert_eq!(p.starts(2, &[s(0.25)], 3), vec![0.0, 0.75, 1.0, 1.75]);
        assert_eq!(
            p.starts(1, &[s(3.0)], 2),
            vec![3.0, 6.0, 9.0],
            "behind a long task, the next ones as long"
        );
    }

    #[test]
    fn results_ride_with_the_next_claim_but_not_for_long() {
        let o = Flush {
            pending: 3,
            delay: MAX_RESULT_DELAY,
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
        assert!(
            flush_results(Flush {
                waiting: 5,
                giving_back: true,
                ..o
            }),
            "others may wait for what goes back"
        );
        let mut p = Pace::default();
        assert_eq!(p.result_delay(1), MAX_RESULT_DELAY);
        p.sync_took(ms(100));
        assert_eq!(p.result_delay(1), MAX_RESULT_DELAY, "a local grid");
        assert_eq!(p.result_delay(16), ms(3200), "sixteen nodes share the ref");
        p.sync_took(ms(1000));
        assert!(p.result_delay(1) >= Duration::from_secs(2), "a far host");
        p.sync_took(ms(60_000));
        assert!(p.result_delay(16) <= 10 * MAX_RESULT_DELAY);
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
