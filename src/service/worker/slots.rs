//! The task slots: what runs, what waits for a slot (claimed ahead), how
//! much room is left, and how a finished run becomes a result.
//!
//! Tasks run on their own threads (`Engine::run` blocks) and report over the
//! loop's channel; everything else here is plain bookkeeping, unit-tested.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use crate::grid::Class;
use crate::grid::claim::ClaimedTask;
use crate::grid::held::{self, Owed};
use crate::grid::{Id, ResultStatus, TaskResult};
use crate::sandbox::{CancelFlag, Engine, Job, Outcome, RunReport};
use crate::service::pace::Pace;
use crate::time;

use super::relay::Relay;
use super::signals::Event;

pub use super::relay::Ended;

pub struct Running {
    pub claimed: ClaimedTask,
    pub cancel: CancelFlag,
    pub started: Instant,
    /// Set by the task's thread the moment its run ends, before the loop
    /// (perhaps busy with a sync) takes the event: a task that ended is
    /// not one still running long.
    pub ended: Ended,
    /// The same moment on the wall clock (the volunteer's hourly limits).
    pub started_at: crate::time::Timestamp,
    /// The directory of its inputs, removed when it ends.
    pub inputs: Option<std::path::PathBuf>,
    /// Taken back for higher work just after it started (cancelled): its
    /// slot is free, and its claim waits again once its run reports.
    pub taken_back: bool,
    /// Its claim is not this node's any more (`Worker::drop_lost`): ended
    /// elsewhere, or another node's now. Stopped, it goes back to no queue.
    pub gone: bool,
}

pub struct Slots {
    concurrency: usize,
    pub running: BTreeMap<Id, Running>,
    /// Claimed ahead, to start the moment a slot frees: the next task starts
    /// without waiting for a push, and the push of the last result overlaps
    /// its run.
    pub waiting: VecDeque<ClaimedTask>,
    /// How many live slots serve each class this node serves, as its last
    /// claim or look counted them: claims held start scarcer first.
    pub servers: BTreeMap<Class, u32>,
    /// Claims whose start was taken back once: not again. A chaos session
    /// saw one start taken back three times (higher work kept arriving),
    /// each a run thrown away.
    taken_back_once: BTreeSet<Id>,
}

impl Slots {
    pub fn new(concurrency: u32) -> Slots {
        Slots {
            concurrency: concurrency as usize,
            running: BTreeMap::new(),
            waiting: VecDeque::new(),
            servers: BTreeMap::new(),
            taken_back_once: BTreeSet::new(),
        }
    }

    /// Keep a claim's or look's count of the slots serving each class
    /// (none counted: the last count stands).
    pub fn counted(&mut self, servers: &[(Class, u32)]) {
        if !servers.is_empty() {
            self.servers = servers.iter().cloned().collect();
        }
    }

    /// How many live slots serve `c`'s class, as last counted.
    fn servers_of(&self, c: &ClaimedTask) -> Option<u32> {
        self.servers.get(&c.task.class()).copied()
    }

    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
    }

    /// Slots that hold a run: those running, less runs taken back (their
    /// containers are on their way out, and their claims wait again).
    pub fn occupied(&self) -> usize {
        self.running.values().filter(|r| !r.taken_back).count()
    }

    /// Slots free to start a task now.
    pub fn free(&self) -> usize {
        self.concurrency
            .saturating_sub(self.running.len() + self.waiting.len())
    }

    /// Tasks to claim: free slots, plus as many ahead as `pace` says (at
    /// most `claim_ahead`) when `ahead_ok`. See `Worker::room` for when.
    pub fn room(&self, pace: &Pace, claim_ahead: u32, ahead_ok: bool, now: Instant) -> usize {
        let longest = self.running_for(now).into_iter().max().unwrap_or_default();
        let ahead = if ahead_ok {
            pace.ahead_now(longest, self.concurrency as u32, claim_ahead)
        } else {
            0
        };
        (self.concurrency + ahead).saturating_sub(self.running.len() + self.waiting.len())
    }

    /// Tasks to claim while peers sit idle: what this node starts before
    /// an idle peer would, at its next look at the queue (half a poll
    /// interval away on average), at most `claim_ahead` ahead. Short tasks
    /// then go a batch a commit, where spreading them would only add
    /// commits to the one ref; long ones are left to the peers. None until
    /// a task has been timed.
    pub fn room_before_peers_look(
        &self,
        pace: &Pace,
        pull_interval: Duration,
        claim_ahead: u32,
        now: Instant,
    ) -> usize {
        if !pace.measured() {
            return 0;
        }
        pace.startable_within(
            pull_interval / 2,
            self.concurrency as u32,
            &self.running_for(now),
        )
        .min(self.concurrency + claim_ahead as usize)
        .saturating_sub(self.running.len() + self.waiting.len())
    }

    /// The lowest level (priority with age) among the claims waiting to
    /// start: work queued above it goes before them.
    pub fn lowest_waiting_level(&self, now: time::Timestamp) -> Option<u8> {
        self.waiting.iter().map(|c| c.effective_priority(now)).min()
    }

    /// What a look owes against the claims not started at their lowest
    /// level (`held::Owed`): the tasks of a submitter who holds fewer
    /// there, and work fewer nodes serve.
    pub fn owed(&self, now: time::Timestamp) -> Option<Owed> {
        let level = self.lowest_waiting_level(now)?;
        Owed::new(
            level,
            self.waiting
                .iter()
                .filter(|c| c.effective_priority(now) == level)
                .map(|c| {
                    (
                        c.task.submitter.as_ref().map(|s| s.as_str()),
                        self.servers_of(c),
                    )
                }),
        )
    }

    /// The level of the claim that starts at the next free slot (the
    /// highest waiting: they wait in that order).
    /// The level of each of `ids` that this node holds (running or
    /// waiting).
    pub fn levels_of(
        &self,
        ids: &std::collections::BTreeSet<Id>,
        now: time::Timestamp,
    ) -> std::collections::BTreeMap<Id, u8> {
        let running = self.running.iter().map(|(id, r)| (id, &r.claimed));
        let waiting = self.waiting.iter().map(|c| (&c.task.task_id, c));
        running
            .chain(waiting)
            .filter(|(id, _)| ids.contains(*id))
            .map(|(id, c)| (id.clone(), c.effective_priority(now)))
            .collect()
    }

    pub fn next_waiting_level(&self, now: time::Timestamp) -> Option<u8> {
        self.waiting.iter().map(|c| c.effective_priority(now)).max()
    }

    /// The lowest level among all the tasks it holds, running or waiting.
    pub fn lowest_held_level(&self, now: time::Timestamp) -> Option<u8> {
        self.running
            .values()
            .map(|r| r.claimed.effective_priority(now))
            .chain(self.lowest_waiting_level(now))
            .min()
    }

    /// How long a task claimed now may wait for a slot, at most: until the
    /// running task closest to its timeout hits it, after those already
    /// waiting ran to theirs.
    pub fn longest_wait(&self, now: Instant) -> Duration {
        let soonest_slot = self
            .running
            .values()
            .map(|r| {
                Duration::from_secs(r.claimed.task.timeout_seconds)
                    .saturating_sub(now.saturating_duration_since(r.started))
            })
            .min()
            .unwrap_or_default();
        let queued: u64 = self.waiting.iter().map(|c| c.task.timeout_seconds).sum();
        soonest_slot + Duration::from_secs(queued)
    }

    /// Tasks this node holds (running or waiting): its claims on them are
    /// alive.
    pub fn held(&self) -> BTreeSet<Id> {
        self.running
            .keys()
            .cloned()
            .chain(self.waiting.iter().map(|c| c.task.task_id.clone()))
            .collect()
    }

    /// How long each running task has run; a task whose run has ended
    /// (its event not taken yet) is left out: its slot is as good as free.
    pub fn running_for(&self, now: Instant) -> Vec<Duration> {
        self.running
            .values()
            .filter(|r| r.ended.get().is_none())
            .map(|r| now.saturating_duration_since(r.started))
            .collect()
    }

    /// A run has ended whose event the loop has not taken yet.
    pub fn ended_untaken(&self) -> bool {
        self.running.values().any(|r| r.ended.get().is_some())
    }

    /// The runs among `started` (started at a free slot just before a look
    /// at the lanes) that are below the claims now waiting, as many as
    /// those are, taken back: each is cancelled (it ran for about a look
    /// and a sync), its slot is free at once for the higher work, and its
    /// claim waits again once its run reports (`Worker::wait_again`). A run
    /// that has ended by now stays a run. The ids and levels taken back.
    pub fn take_back_below(&mut self, started: &[Id], now: time::Timestamp) -> Vec<(Id, u8)> {
        let mut above: Vec<u8> = self
            .waiting
            .iter()
            .map(|c| c.effective_priority(now))
            .collect();
        // Higher claims that a run taken back already frees a slot for.
        for r in self.running.values().filter(|r| r.taken_back) {
            let level = r.claimed.effective_priority(now);
            if let Some(i) = above.iter().position(|&l| l > level) {
                above.swap_remove(i);
            }
        }
        let mut out = Vec::new();
        // Only what is still held is remembered.
        let (running, waiting) = (&self.running, &self.waiting);
        self.taken_back_once
            .retain(|id| running.contains_key(id) || waiting.iter().any(|c| &c.task.task_id == id));
        for id in started {
            let Some(r) = self.running.get_mut(id) else {
                continue;
            };
            if r.taken_back || r.ended.get().is_some() || self.taken_back_once.contains(id) {
                continue;
            }
            let level = r.claimed.effective_priority(now);
            let Some(i) = above.iter().position(|&l| l > level) else {
                continue;
            };
            above.swap_remove(i);
            self.taken_back_once.insert(id.clone());
            r.taken_back = true;
            r.cancel.store(true, Ordering::SeqCst);
            out.push((id.clone(), level));
        }
        out
    }

    /// Highest level first (higher work claimed while holding lower starts
    /// first); within one, what fewer nodes serve, then submitters in
    /// turns, each one's in the order they came (`held::in_order`).
    pub fn sort_waiting(&mut self, now: time::Timestamp) {
        let keys: Vec<(u8, Option<u32>, Option<&str>)> = self
            .waiting
            .iter()
            .map(|c| {
                (
                    c.effective_priority(now),
                    self.servers_of(c),
                    c.task.submitter.as_ref().map(|s| s.as_str()),
                )
            })
            .collect();
        let order = held::in_order(&keys);
        let mut slots: Vec<Option<ClaimedTask>> = std::mem::take(&mut self.waiting)
            .into_iter()
            .map(Some)
            .collect();
        self.waiting = order.into_iter().filter_map(|i| slots[i].take()).collect();
    }

    /// A claim whose start was taken back for higher work waits again, in
    /// its place: first of its level and its submitter's, as it was when
    /// it started (at the back, it ran after every claim of its level
    /// held, 19 in a drain traced, where the order they came says next).
    pub fn wait_again(&mut self, claimed: ClaimedTask, now: time::Timestamp) {
        self.waiting.push_front(claimed);
        self.sort_waiting(now);
    }

    /// The last `n` waiting claims, taken out.
    pub fn take_last_waiting(&mut self, n: usize) -> Vec<ClaimedTask> {
        let keep = self.waiting.len().saturating_sub(n);
        self.waiting.split_off(keep).into()
    }

    /// The waiting claims at `indices`, taken out (the others keep their
    /// order).
    pub fn take_waiting(&mut self, indices: &[usize]) -> Vec<ClaimedTask> {
        let mut out = Vec::new();
        let mut kept = VecDeque::new();
        for (i, c) in std::mem::take(&mut self.waiting).into_iter().enumerate() {
            if indices.contains(&i) {
                out.push(c);
            } else {
                kept.push_back(c);
            }
        }
        self.waiting = kept;
        out
    }

    /// The next waiting claim, if a slot is free for it.
    pub fn next_to_start(&mut self) -> Option<ClaimedTask> {
        if self.occupied() < self.concurrency {
            self.waiting.pop_front()
        } else {
            None
        }
    }
}

/// Run `claimed` on its own thread; its report comes back as
/// [`Event::Finished`], and `nudge` is set first: a sync that is only losing
/// races gives up between rounds, so that the next claimed task starts.
/// `ended` is set when the run ends. A run that ended (not cancelled, not
/// failed by the engine) while the loop is inside a sync starts the next
/// claim the loop armed, on this thread ([`Relay`]); its slot never freed,
/// so the nudge stays down.
pub fn launch(
    engine: &Arc<dyn Engine>,
    events: &Sender<Event>,
    nudge: &Arc<AtomicBool>,
    relay: &Relay,
    run: (Id, Job),
    ended: &Ended,
    started: &Arc<crate::service::started::StartLog>,
) -> std::io::Result<CancelFlag> {
    let (mut id, mut job) = run;
    let cancel: CancelFlag = Arc::new(AtomicBool::new(false));
    let engine = engine.clone();
    let events = events.clone();
    let mut flag = cancel.clone();
    let nudge = nudge.clone();
    let relay = relay.clone();
    let mut ended = ended.clone();
    let started = started.clone();
    std::thread::Builder::new()
        .name(format!("task-{id}"))
        .spawn(move || {
            loop {
                started.record(&job.task_id, job.attempt);
                let report = engine.run(&job, &flag);
                let _ = ended.set(Instant::now());
                let next = (!flag.load(Ordering::SeqCst)
                    && !matches!(report.outcome, Outcome::EngineFailed(_)))
                .then(|| relay.take_next())
                .flatten();
                // Before the event: a store after it could land once the
                // loop has taken the event and cleared the nudge (the send
                // wakes the loop, which may run before this thread does
                // again), and the next sync would give up at its first lost
                // round for a run that ended long ago. The loop sets it
                // again for runs whose events it has not taken
                // (`Slots::ended_untaken`).
                if next.is_none() {
                    nudge.store(true, Ordering::SeqCst);
                }
                let _ = events.send(Event::Finished { task: id, report });
                let Some((next_id, next_job, next_flag, next_ended)) = next else {
                    return;
                };
                (id, job, flag, ended) = (next_id, next_job, next_flag, next_ended);
            }
        })?;
    Ok(cancel)
}

/// The result of a run that ran (exited or timed out); `None` for one that
/// did not (engine failure, cancelled), which goes back to the queue.
pub fn result_of(report: &RunReport, claimed: &ClaimedTask, node: &Id) -> Option<TaskResult> {
    let (status, exit_code, error) = match report.outcome {
        Outcome::Exited(0) => (ResultStatus::Completed, Some(0), None),
        Outcome::Exited(c) => (ResultStatus::Failed, Some(c), None),
        Outcome::TimedOut => (
            ResultStatus::Timeout,
            None,
            Some(format!(
                "killed after its timeout of {} s",
                claimed.task.timeout_seconds
            )),
        ),
        Outcome::EngineFailed(_) | Outcome::Cancelled => return None,
    };
    // When the run ended, not when the loop took its report: a run that
    // ends inside a sync is taken after it, and the claim its thread
    // started meanwhile (the relay) began before that.
    let ended = report.started_at + chrono::Duration::from_std(report.duration).unwrap_or_default();
    Some(TaskResult {
        task_id: claimed.task.task_id.to_string(),
        node_id: node.clone(),
        exit_code,
        stdout: report.stdout.clone(),
        stderr: report.stderr.clone(),
        timestamp: time::format(ended),
        status,
        started_at: Some(time::format(report.started_at)),
        duration_ms: Some(report.duration.as_millis() as u64),
        attempt: claimed.claim.attempt,
        truncated: report.truncated,
        error,
    })
}

#[cfg(test)]
mod tests;
