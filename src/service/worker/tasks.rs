//! Starting and finishing tasks, and giving claims back: the loop's side
//! of the slots. Every way a claim ends goes through the outbox first.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::grid::Id;
use crate::grid::claim::ClaimedTask;
use crate::sandbox::{Outcome, RunReport};
use crate::service::outbox::{Finish, OutboxEntry};
use crate::service::pace;
use crate::status;

use super::slots::{self, Running};
use super::{ENGINE_RETRY, Unhealthy, View, Worker};

impl Worker {
    /// Start waiting claims while slots are free.
    pub(super) fn start_waiting(&mut self) {
        while let Some(next) = self.slots.next_to_start() {
            self.start(next);
        }
    }

    fn start(&mut self, claimed: ClaimedTask) {
        let id = claimed.task.task_id.clone();
        match slots::launch(
            &self.engine,
            &self.events,
            &self.nudge,
            self.node(),
            &claimed,
        ) {
            Ok(cancel) => {
                tracing::info!(task_id = %id, timeout = claimed.task.timeout_seconds, "running");
                self.slots.running.insert(
                    id,
                    Running {
                        claimed,
                        cancel,
                        started: Instant::now(),
                    },
                );
            }
            Err(e) => {
                tracing::error!(task_id = %id, error = %e, "cannot start a thread for the task; requeueing");
                self.put_outbox(
                    &claimed,
                    Finish::Requeue {
                        reason: format!("worker could not start the task: {e}"),
                    },
                );
            }
        }
    }

    pub(super) fn finished(&mut self, task: Id, report: RunReport) {
        let Some(running) = self.slots.running.remove(&task) else {
            return;
        };
        let claimed = running.claimed;
        if !matches!(
            report.outcome,
            Outcome::EngineFailed(_) | Outcome::Cancelled
        ) {
            self.pace.task_took(report.duration);
        }
        self.board
            .task_done(status::outcome_name(&report.outcome), report.duration);
        let node = self.node().clone();
        let finish = match (&report.outcome, slots::result_of(&report, &claimed, &node)) {
            (_, Some(result)) => {
                if result.status.is_success() {
                    self.completed += 1;
                } else {
                    self.failed += 1;
                }
                tracing::info!(
                    task_id = %task,
                    status = %result.status,
                    exit_code = result.exit_code,
                    duration_ms = report.duration.as_millis() as u64,
                    "task finished"
                );
                let signed = self.sign(&claimed, &result);
                Finish::Result { result, signed }
            }
            (Outcome::EngineFailed(problem), None) => {
                tracing::error!(task_id = %task, error = %problem, "engine failure; requeueing the task, node unhealthy");
                self.unhealthy = Some(Unhealthy {
                    problem: problem.clone(),
                    retry_at: Instant::now() + ENGINE_RETRY,
                });
                // As the task's next attempt: a task that fails the engine
                // on every node ends in failed/ after max_attempts.
                Finish::Retry {
                    reason: format!("engine failure on {node}: {problem}"),
                }
            }
            (_, None) => {
                tracing::warn!(task_id = %task, "task cancelled; requeueing");
                Finish::Requeue {
                    reason: format!("{node} stopped before the task finished"),
                }
            }
        };
        self.put_outbox(&claimed, finish);
        // Start what was claimed ahead before pushing this result: the push
        // then overlaps the next run.
        self.start_waiting();
    }

    pub(super) fn put_outbox(&mut self, claimed: &ClaimedTask, finish: Finish) {
        let ran = match finish {
            Finish::Result { .. } => super::attest::ran_of(claimed),
            _ => None,
        };
        let entry = OutboxEntry {
            task_id: claimed.task.task_id.clone(),
            attempt: claimed.claim.attempt,
            claimed_at: claimed.claim.claimed_at.clone(),
            finish,
            ran,
        };
        // The claim ends here, one way or another.
        self.claim_commits.remove(&entry.task_id);
        self.schedule.result_waiting(Instant::now());
        if let Err(e) = self.outbox.put(&entry) {
            // Without a durable copy the result would be lost on a crash;
            // without even that, it must not be lost now: keep going and
            // let the orphan rule requeue the task.
            tracing::error!(task_id = %entry.task_id, error = %e, "cannot write the outbox; the claim will be reaped and the task rerun");
        }
    }

    /// Hand claims this node has not started to idle peers, through the
    /// queue, when the last look at the grid saw some and the queue cannot
    /// fill their slots (`pace::give_back`): what it would not start within
    /// a poll interval. The requeues go with the next sync, at once.
    pub(super) fn rebalance(&mut self, view: &View) {
        if self.slots.waiting.is_empty() || view.idle_peer_slots == 0 {
            return;
        }
        // An idle peer takes a task given back at its next poll, within a
        // poll interval: keep what this node starts sooner than that.
        let startable = self.pace.startable_within(
            self.cfg.pull_interval,
            self.cfg.concurrency,
            &self.slots.running_for(Instant::now()),
        );
        // What one idle slot would start in that time, with tasks as long
        // as here.
        let per_slot = self.pace.startable_within(self.cfg.pull_interval, 1, &[]);
        let n = pace::give_back(
            self.slots.waiting.len(),
            view.queue_left,
            view.idle_peer_slots,
            startable,
            per_slot,
        );
        if n == 0 {
            return;
        }
        tracing::info!(
            count = n,
            keep = self.slots.waiting.len() - n,
            idle_peer_slots = view.idle_peer_slots,
            "handing claims not started to idle peers"
        );
        for c in self.slots.take_last_waiting(n) {
            tracing::info!(task_id = %c.task.task_id, "giving back the claim: a peer is idle");
            let reason = format!("{} handed it to an idle peer", self.node());
            self.put_outbox(&c, Finish::Requeue { reason });
        }
    }

    /// Hand claimed-ahead tasks back to the queue (the node is stopping).
    pub(super) fn give_back_waiting(&mut self) {
        let all = self.slots.waiting.len();
        for c in self.slots.take_last_waiting(all) {
            tracing::info!(task_id = %c.task.task_id, "giving back the claim: stopping");
            let reason = format!("{} stopped before starting it", self.node());
            self.put_outbox(&c, Finish::Requeue { reason });
        }
    }

    pub(super) fn cancel_all(&mut self, why: &str) {
        for (id, r) in &self.slots.running {
            if !r.cancel.swap(true, Ordering::SeqCst) {
                tracing::warn!(task_id = %id, reason = why, "cancelling task");
            }
        }
    }

    pub(super) fn check_engine_recovery(&mut self) {
        let Some(u) = &self.unhealthy else { return };
        if Instant::now() < u.retry_at {
            return;
        }
        match self.engine.check() {
            Ok(()) => {
                tracing::info!("engine healthy again");
                self.unhealthy = None;
                self.schedule.next_heartbeat = Instant::now();
            }
            Err(e) => {
                self.unhealthy = Some(Unhealthy {
                    problem: e.to_string(),
                    retry_at: Instant::now() + ENGINE_RETRY,
                });
            }
        }
    }
}
