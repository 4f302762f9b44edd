//! The relay: while the loop is inside a sync, a task's thread starts the
//! next claim itself.
//!
//! The loop starts every run, but a sync blocks it: a round is a fetch and
//! a push, and behind a far forge over HTTPS each costs 0.6-0.9 s (TLS, a
//! 401 before the token, the request). A run that ended inside a round
//! left its slot idle until the round ended, and a node losing races while
//! it pushed results idled up to a round per task (traced: 8 nodes draining
//! 1 s tasks over HTTPS 100 ms away, each task's slot 1.45-1.95 s apart).
//!
//! So before a sync the loop *arms* the claims that would start next (the
//! head of its waiting line, in order; under hourly limits at most one
//! per running task), and
//! the thread whose run ends takes the first armed one and runs it at
//! once. After the sync the loop *settles*: what was taken becomes a
//! running task in its books, the rest is disarmed and waits as before.
//! Armed claims stay in the waiting line meanwhile, so everything the sync
//! reckons (what it holds, what it may claim) is as if they waited; no
//! sync hands back a claim that waits (handbacks are decided after it, on
//! settled books), so none can go back while a thread starts it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::grid::Id;
use crate::grid::claim::ClaimedTask;
use crate::sandbox::{CancelFlag, Job};
use crate::time;

use super::Worker;

/// When a task's run ended, once it has.
pub type Ended = Arc<std::sync::OnceLock<Instant>>;

/// The job that runs `claimed`.
pub fn job_of(node: &Id, claimed: &ClaimedTask, inputs: Option<std::path::PathBuf>) -> Job {
    Job {
        node_id: node.to_string(),
        task_id: claimed.task.task_id.to_string(),
        attempt: claimed.claim.attempt,
        script: claimed.task.script.clone(),
        timeout: Duration::from_secs(claimed.task.timeout_seconds),
        inputs,
    }
}

/// The line a start leaves in the log, whoever made it (the loop, or a
/// thread through the relay): the benchmarks read when a task began from it.
pub fn log_start(claimed: &ClaimedTask) {
    tracing::info!(task_id = %claimed.task.task_id, timeout = claimed.task.timeout_seconds, priority = claimed.task.priority(), "running");
}

/// A claim a thread may start: what its run needs, made by the loop.
pub struct Armed {
    pub claimed: ClaimedTask,
    pub job: Job,
    pub cancel: CancelFlag,
    pub ended: Ended,
}

/// An armed claim that a thread started, for the loop to take into its
/// books when it settles.
pub struct Relayed {
    pub claimed: ClaimedTask,
    pub cancel: CancelFlag,
    pub ended: Ended,
    pub started: Instant,
    pub started_at: time::Timestamp,
}

#[derive(Default)]
struct State {
    armed: VecDeque<Armed>,
    started: Vec<Relayed>,
}

/// Shared by the loop and the task threads; the lock is held to move an
/// entry (and log a start), never across a run or a git call.
#[derive(Clone, Default)]
pub struct Relay {
    state: Arc<Mutex<State>>,
    /// Set when a thread starts an armed claim, cleared when the loop
    /// settles: for a sync that should give up once a start was made
    /// blind to what it may bring (a sync of results that can wait).
    started_any: Arc<AtomicBool>,
}

impl Relay {
    /// The flag a start through the relay sets, until the loop settles.
    pub fn started_flag(&self) -> Arc<AtomicBool> {
        self.started_any.clone()
    }

    /// Hand these claims to the threads, first to start first.
    pub fn arm(&self, armed: Vec<Armed>) {
        self.lock().armed.extend(armed);
    }

    /// Called by a thread whose run ended (not cancelled): the next armed
    /// claim, now started, with its job, cancel flag and end.
    pub fn take_next(&self) -> Option<(Id, Job, CancelFlag, Ended)> {
        let mut state = self.lock();
        let next = state.armed.pop_front()?;
        log_start(&next.claimed);
        let out = (
            next.claimed.task.task_id.clone(),
            next.job,
            next.cancel.clone(),
            next.ended.clone(),
        );
        self.started_any.store(true, Ordering::SeqCst);
        state.started.push(Relayed {
            claimed: next.claimed,
            cancel: next.cancel,
            ended: next.ended,
            started: Instant::now(),
            started_at: time::now(),
        });
        Some(out)
    }

    /// Disarm what no thread took; the claims threads started, in order.
    pub fn settle(&self) -> Vec<Relayed> {
        let mut state = self.lock();
        state.armed.clear();
        self.started_any.store(false, Ordering::SeqCst);
        std::mem::take(&mut state.started)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A thread that panicked holding the lock left whole entries (each
        // change is one push or pop): the state is still good to use.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Worker {
    /// Before a sync: hand the threads the claims that start next, the
    /// longest prefix of the line that needs no inputs (the loop reads
    /// those from the clone). Only while every slot is busy (a free one
    /// starts its claim now), and nothing stops starts: stopping, paused
    /// by the volunteer's limits, the engine unhealthy. Under hourly
    /// limits, one per running task: the limits are looked at again
    /// between syncs.
    pub(super) fn arm_relay(&mut self) {
        if self.draining_since.is_some()
            || self.paused.is_some()
            || self.unhealthy.is_some()
            || self.slots.free() > 0
            || self.runs_awaited_above()
        {
            return;
        }
        self.end_waiting_refused();
        let most = if self.budget.limits().is_unlimited() {
            self.slots.waiting.len()
        } else {
            self.slots.running.len()
        };
        let node = self.node().clone();
        let armed = self
            .slots
            .waiting
            .iter()
            .take(most)
            .take_while(|c| !self.inputs.contains_key(&c.task.task_id))
            .map(|c| Armed {
                claimed: c.clone(),
                job: job_of(&node, c, None),
                cancel: Default::default(),
                ended: Ended::default(),
            })
            .collect();
        self.relay.arm(armed);
    }

    /// After the sync: the claims threads started leave the waiting line
    /// for the running tasks, and get the look a start at a free slot
    /// gets; the rest is disarmed.
    pub(super) fn settle_relay(&mut self) {
        let relayed = self.relay.settle();
        self.relayed = relayed
            .iter()
            .map(|r| r.claimed.task.task_id.clone())
            .collect();
        if !relayed.is_empty() && self.look_after_start_pays() {
            self.look_after(self.relayed.clone());
        }
        for r in relayed {
            let id = &r.claimed.task.task_id;
            self.slots.waiting.retain(|c| &c.task.task_id != id);
            self.began(
                r.claimed,
                r.cancel,
                r.ended,
                (r.started, r.started_at),
                None,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn armed(id: &str) -> Armed {
        let claimed = crate::grid::claim::claimed_for_test(id, r#","timeout_seconds":5"#);
        Armed {
            job: job_of(&Id::parse("n1").unwrap(), &claimed, None),
            claimed,
            cancel: Default::default(),
            ended: Ended::default(),
        }
    }

    #[test]
    fn threads_take_armed_claims_in_order_and_the_loop_gets_them_once() {
        let relay = Relay::default();
        relay.arm(vec![armed("a"), armed("b"), armed("c")]);
        let (first, ..) = relay.take_next().unwrap();
        let (second, ..) = relay.take_next().unwrap();
        assert_eq!((first.as_str(), second.as_str()), ("a", "b"));
        assert!(relay.started_flag().load(Ordering::SeqCst));
        let started: Vec<String> = relay
            .settle()
            .iter()
            .map(|r| r.claimed.task.task_id.to_string())
            .collect();
        assert_eq!(started, ["a", "b"]);
        assert!(!relay.started_flag().load(Ordering::SeqCst));
        // `c` was disarmed: no thread takes it, and nothing is settled twice.
        assert!(relay.take_next().is_none());
        assert!(relay.settle().is_empty());
    }
}
