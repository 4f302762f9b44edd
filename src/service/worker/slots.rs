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

use crate::grid::claim::ClaimedTask;
use crate::grid::{Id, ResultStatus, TaskResult};
use crate::sandbox::{CancelFlag, Engine, Job, Outcome, RunReport};
use crate::service::pace::Pace;
use crate::time;

use super::signals::Event;

/// When a task's run ended, once it has.
pub type Ended = Arc<std::sync::OnceLock<Instant>>;

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
}

pub struct Slots {
    concurrency: usize,
    pub running: BTreeMap<Id, Running>,
    /// Claimed ahead, to start the moment a slot frees: the next task starts
    /// without waiting for a push, and the push of the last result overlaps
    /// its run.
    pub waiting: VecDeque<ClaimedTask>,
}

impl Slots {
    pub fn new(concurrency: u32) -> Slots {
        Slots {
            concurrency: concurrency as usize,
            running: BTreeMap::new(),
            waiting: VecDeque::new(),
        }
    }

    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
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

    /// The level of the claim that starts at the next free slot (the
    /// highest waiting: they wait in that order).
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
        if self.running.len() < self.concurrency {
            self.waiting.pop_front()
        } else {
            None
        }
    }
}

/// Run `claimed` on its own thread; its report comes back as
/// [`Event::Finished`], and `nudge` is set: a sync that is only losing
/// races gives up between rounds, so that the next claimed task starts.
/// `ended` is set when the run ends.
pub fn launch(
    engine: &Arc<dyn Engine>,
    events: &Sender<Event>,
    nudge: &Arc<AtomicBool>,
    node: &Id,
    claimed: &ClaimedTask,
    inputs: Option<std::path::PathBuf>,
    ended: &Ended,
) -> std::io::Result<CancelFlag> {
    let id = claimed.task.task_id.clone();
    let job = Job {
        node_id: node.to_string(),
        task_id: id.to_string(),
        attempt: claimed.claim.attempt,
        script: claimed.task.script.clone(),
        timeout: Duration::from_secs(claimed.task.timeout_seconds),
        inputs,
    };
    let cancel: CancelFlag = Arc::new(AtomicBool::new(false));
    let engine = engine.clone();
    let events = events.clone();
    let flag = cancel.clone();
    let nudge = nudge.clone();
    let ended = ended.clone();
    std::thread::Builder::new()
        .name(format!("task-{id}"))
        .spawn(move || {
            let report = engine.run(&job, &flag);
            let _ = ended.set(Instant::now());
            let _ = events.send(Event::Finished { task: id, report });
            // After the event, so that the loop, which clears the nudge
            // before it takes events, never misses one.
            nudge.store(true, Ordering::SeqCst);
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
    Some(TaskResult {
        task_id: claimed.task.task_id.to_string(),
        node_id: node.clone(),
        exit_code,
        stdout: report.stdout.clone(),
        stderr: report.stderr.clone(),
        timestamp: time::format(time::now()),
        status,
        started_at: Some(time::format(report.started_at)),
        duration_ms: Some(report.duration.as_millis() as u64),
        attempt: claimed.claim.attempt,
        truncated: report.truncated,
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::{Task, TaskRules};

    fn claimed(id: &str, timeout: u64) -> ClaimedTask {
        claimed_with(id, &format!(r#","timeout_seconds":{timeout}"#))
    }

    /// A claim of task `id` whose file has `fields` (JSON, each with a
    /// leading comma) beside its id and script.
    fn claimed_with(id: &str, fields: &str) -> ClaimedTask {
        let bytes = format!(r#"{{"task_id":"{id}","script":"true"{fields}}}"#);
        let task = Task::from_entry(
            &format!("{id}.json"),
            crate::grid::task::EntryKind::File,
            bytes.as_bytes(),
            &TaskRules::default(),
        )
        .unwrap();
        ClaimedTask::new(
            task,
            &Id::parse("n1").unwrap(),
            time::now(),
            chrono::Duration::seconds(300),
        )
    }

    fn run(slots: &mut Slots, c: ClaimedTask, started: Instant) {
        slots.running.insert(
            c.task.task_id.clone(),
            Running {
                claimed: c,
                cancel: Arc::new(AtomicBool::new(false)),
                started,
                ended: Ended::default(),
                started_at: time::now(),
                inputs: None,
            },
        );
    }

    impl Slots {
        fn room_at(&self, pace: &Pace, claim_ahead: u32, ahead_ok: bool) -> usize {
            self.room(pace, claim_ahead, ahead_ok, Instant::now())
        }
    }

    #[test]
    fn room_is_free_slots_plus_what_pace_holds_ahead() {
        let mut pace = Pace::default();
        let mut s = Slots::new(2);
        assert_eq!(s.room_at(&pace, 128, false), 2, "just the slots");
        assert_eq!(s.room_at(&pace, 128, true), 2, "nothing timed: none ahead");
        pace.sync_took(Duration::from_millis(100));
        pace.task_took(Duration::from_millis(100));
        assert_eq!(s.room_at(&pace, 128, false), 2, "none ahead");
        assert_eq!(s.room_at(&pace, 128, true), 2 + 8, "4 syncs of work ahead");
        let now = Instant::now();
        run(&mut s, claimed("a", 30), now);
        assert_eq!(s.room_at(&pace, 128, true), 1 + 8);
        assert_eq!(s.room_at(&pace, 128, false), 1);
        assert_eq!(s.free(), 1);
        s.waiting.push_back(claimed("b", 30));
        assert_eq!(s.free(), 0);
        assert_eq!(s.room_at(&pace, 0, false), 0, "claim_ahead 0");
        assert_eq!(s.held().len(), 2);
    }

    #[test]
    fn while_peers_idle_a_node_takes_only_what_it_starts_before_they_would() {
        let now = Instant::now();
        let s = Slots::new(1);
        let second = Duration::from_secs(1);
        let mut pace = Pace::default();
        assert_eq!(
            s.room_before_peers_look(&pace, second, 128, now),
            0,
            "nothing timed"
        );
        pace.sync_took(Duration::from_millis(100));
        pace.task_took(Duration::from_millis(10));
        // Half a second of 10 ms tasks: fifty, within claim_ahead.
        let short = s.room_before_peers_look(&pace, second, 128, now);
        assert!((40..=60).contains(&short), "{short}");
        assert_eq!(s.room_before_peers_look(&pace, second, 8, now), 9);
        let mut long = Pace::default();
        long.sync_took(Duration::from_millis(100));
        long.task_took(Duration::from_secs(5));
        assert_eq!(
            s.room_before_peers_look(&long, second, 128, now),
            1,
            "the free slot only"
        );
    }

    #[test]
    fn a_claim_made_now_may_wait_for_the_running_and_the_waiting() {
        let now = Instant::now();
        let mut s = Slots::new(1);
        assert_eq!(s.longest_wait(now), Duration::ZERO);
        run(&mut s, claimed("a", 30), now);
        s.waiting.push_back(claimed("b", 20));
        let later = now + Duration::from_secs(10);
        assert_eq!(s.longest_wait(later), Duration::from_secs(20 + 20));
    }

    #[test]
    fn the_lowest_level_held_counts_running_and_waiting_tasks() {
        let at = |id: &str, priority: u8| {
            claimed_with(
                id,
                &format!(r#","timeout_seconds":5,"priority":{priority}"#),
            )
        };
        let now = Instant::now();
        let mut s = Slots::new(1);
        assert_eq!(s.lowest_held_level(time::now()), None, "holds nothing");
        run(&mut s, at("r", 40), now);
        assert_eq!(s.lowest_held_level(time::now()), Some(40));
        s.waiting.push_back(at("w", 90));
        assert_eq!(
            s.lowest_held_level(time::now()),
            Some(40),
            "the running one"
        );
        s.waiting.push_back(at("v", 10));
        assert_eq!(s.lowest_held_level(time::now()), Some(10), "a waiting one");
    }

    #[test]
    fn waiting_claims_start_only_into_a_free_slot() {
        let now = Instant::now();
        let mut s = Slots::new(1);
        s.waiting.push_back(claimed("a", 30));
        s.waiting.push_back(claimed("b", 30));
        s.waiting.push_back(claimed("c", 30));
        let first = s.next_to_start().unwrap();
        run(&mut s, first, now);
        assert!(s.next_to_start().is_none());
        let back = s.take_last_waiting(1);
        assert_eq!(back[0].task.task_id.as_str(), "c");
        assert_eq!(s.waiting.len(), 1);
        s.waiting.push_back(claimed("d", 30));
        s.waiting.push_back(claimed("e", 30));
        let back = s.take_waiting(&[0, 2]);
        let ids: Vec<&str> = back.iter().map(|c| c.task.task_id.as_str()).collect();
        assert_eq!(ids, ["b", "e"]);
        assert_eq!(s.waiting[0].task.task_id.as_str(), "d");
    }

    #[test]
    fn the_running_tasks_say_how_long_they_have_run() {
        let now = Instant::now();
        let mut s = Slots::new(2);
        assert!(s.running_for(now).is_empty());
        run(&mut s, claimed("a", 30), now);
        let later = now + Duration::from_secs(3);
        assert_eq!(s.running_for(later), vec![Duration::from_secs(3)]);
        // Its run ended while the loop was in a sync: not a long task.
        s.running.values().next().unwrap().ended.set(now).unwrap();
        assert!(s.running_for(later).is_empty());
    }

    #[test]
    fn a_run_becomes_a_result_unless_it_never_ran() {
        let c = claimed("t", 7);
        let node = Id::parse("n1").unwrap();
        let report = |outcome| RunReport {
            outcome,
            stdout: "out".into(),
            stderr: String::new(),
            truncated: false,
            started_at: time::now(),
            duration: Duration::from_millis(5),
        };
        let ok = result_of(&report(Outcome::Exited(0)), &c, &node).unwrap();
        assert_eq!(
            (ok.status, ok.exit_code),
            (ResultStatus::Completed, Some(0))
        );
        assert_eq!(ok.stdout, "out");
        let failed = result_of(&report(Outcome::Exited(3)), &c, &node).unwrap();
        assert_eq!(failed.status, ResultStatus::Failed);
        let late = result_of(&report(Outcome::TimedOut), &c, &node).unwrap();
        assert_eq!(late.status, ResultStatus::Timeout);
        assert!(late.error.unwrap().contains("7 s"));
        assert!(result_of(&report(Outcome::Cancelled), &c, &node).is_none());
        assert!(result_of(&report(Outcome::EngineFailed("x".into())), &c, &node).is_none());
    }
}
