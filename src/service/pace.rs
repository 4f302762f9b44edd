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
//! size a batch, and its first task is timed within that task. A node
//! restarted starts from what its last run measured (`Pace::assume_task`).
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

/// A look ahead of a free slot, made while the task before it runs, costs
/// the slot nothing, only the host's time for a fetch and a listing: it
/// may cost this share of a task.
const LOOK_AHEAD_SHARE: f64 = 0.5;

/// A start taken back for higher work may have run at most this share of
/// a task: it is work thrown away.
const TAKE_BACK_SHARE: f64 = 0.5;

/// A round at least this long (a fetch of three round trips and a push
/// of two, to a forge 100 ms away) makes a node's last delivery defer to
/// peers at work ([`Pace::defer_delivery`]). Where a round takes less (the
/// grid on this host, or near), a round lost costs less than the wait
/// for a peer: at the end of a drain of 1 s tasks on 8 nodes, the last
/// result landed 0.28 s after the last task ended pushing at once, and
/// 0.34-0.62 s deferring; behind a forge 100 ms away, 1.5-3.0 s against
/// 1.3-1.5 s, and over SSH 2.7-4.9 s against 1.9-2.1 s (BENCHMARKS.md,
/// "The last results of a drain, left to peers at work").
const DEFER_ROUND_SECS: f64 = 0.5;

/// Looks at most before a deferred delivery pushes after all: the last
/// nodes of a drain finish within a few rounds of each other; a peer
/// whose tasks run on longer should not hold these back.
const DEFER_STEPS: f64 = 4.0;

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

    /// Take tasks to last `secs` until one is timed (what the last run
    /// measured).
    pub fn assume_task(&mut self, secs: f64) {
        if self.task.is_none() && secs.is_finite() && secs >= 0.0 {
            self.task = Some(secs);
        }
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

    /// A whole sync's time, lost rounds included (seconds).
    pub fn sync_secs(&self) -> Option<f64> {
        self.sync
    }

    /// Do tasks take longer than `share` of a committing round (both
    /// measured)?
    pub fn tasks_outlast(&self, share: f64) -> bool {
        self.task
            .zip(self.round)
            .is_some_and(|(task, round)| task > round * share)
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

    /// What a sync takes, as measured: the longer of the recent syncs and
    /// a committing sync's round (looks, which only fetch, pull the first
    /// down).
    pub fn sync_estimate(&self) -> Duration {
        let secs = self.sync.unwrap_or(0.0).max(self.round.unwrap_or(0.0));
        Duration::from_secs_f64(secs)
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

    /// When to look at the lanes ahead of a slot that frees at `frees`, so
    /// that the look has ended by then and the slot starts whatever it
    /// found (work above the claims waiting, claimed for this node by a
    /// peer or by this look) without waiting for a look of its own. None
    /// where a look per task costs too much against a task
    /// ([`LOOK_AHEAD_SHARE`]), or nothing is timed yet.
    pub fn look_ahead_of(&self, frees: std::time::Instant) -> Option<std::time::Instant> {
        let (task, peek) = (self.task?, self.peek_secs()?);
        if peek > LOOK_AHEAD_SHARE * task {
            return None;
        }
        // Half a look's time to spare: a look runs late on a busy host.
        frees.checked_sub(Duration::from_secs_f64(peek * 1.5))
    }

    /// How young a run must be to be taken back for higher work that a
    /// sync brought: started at a free slot before a look and a sync could
    /// tell of that work, i.e. within their time, and never more than
    /// [`TAKE_BACK_SHARE`] of a task. None until a task is timed.
    pub fn take_back_window(&self) -> Option<Duration> {
        let task = self.task?;
        let learn = self.peek_secs().unwrap_or(0.0) + self.sync_estimate().as_secs_f64();
        Some(Duration::from_secs_f64(learn.min(TAKE_BACK_SHARE * task)))
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
        let average = self.task.map(|t| t.max(SHORTEST_TASK.as_secs_f64()));
        // A running task longer than the average says the tasks got longer:
        // those that follow are taken to be as long.
        let longest = running_for.iter().max().map_or(0.0, Duration::as_secs_f64);
        let task = average.map(|t| t.max(longest));
        let free = (slots as usize).saturating_sub(running_for.len());
        // But each running task ends by its own time: one long task in a
        // slot says nothing of the short one beside it (lengths are
        // heavy-tailed), which ends when the average says.
        let ends = running_for
            .iter()
            .map(|r| {
                let r = r.as_secs_f64();
                match average {
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

    /// Does a node's delivery of its last results wait for peers at work
    /// to carry them (`git::txn::Defer`), and if so, the wait between its
    /// looks (a sync's time: a peer's landing takes a round) and how long
    /// at most (a few looks, within `result_delay`)? Only where a round
    /// takes at least [`DEFER_ROUND_SECS`].
    pub fn defer_delivery(&self, result_delay: Duration) -> Option<(Duration, Duration)> {
        let round = self.round?;
        if round < DEFER_ROUND_SECS {
            return None;
        }
        let step = self.sync_estimate();
        Some((step, result_delay.min(step.mul_f64(DEFER_STEPS))))
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
mod tests;
