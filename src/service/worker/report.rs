//! What the node says of itself: its record in `nodes/`, systemd's
//! `STATUS=` line, and the snapshot the status page reads.

use crate::grid::{Id, NodeRecord, NodeStatus};
use crate::status;
use crate::time;

use super::Worker;

/// A node that looks less often than this takes no claims made for it:
/// it could not answer them within `grid::claim::ANSWER_WITHIN`.
const MAX_PULL_FOR_ASSIGNED: std::time::Duration = std::time::Duration::from_secs(15);

impl Worker {
    pub(super) fn status(&self) -> NodeStatus {
        if self.draining_since.is_some() {
            NodeStatus::Draining
        } else if self.unhealthy.is_some() {
            NodeStatus::Unhealthy
        } else if self.slots.running.is_empty() {
            NodeStatus::Idle
        } else {
            NodeStatus::Busy
        }
    }

    pub(super) fn record(&self, status: NodeStatus) -> NodeRecord {
        NodeRecord {
            node_id: self.node().clone(),
            status,
            last_heartbeat: time::format(time::now()),
            started_at: self.started_at.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            hostname: nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default(),
            engine: self.engine.name().to_owned(),
            concurrency: self.cfg.concurrency,
            running: self.slots.running.keys().map(Id::to_string).collect(),
            tasks_completed: self.completed,
            tasks_failed: self.failed,
            task_ms: self.pace.task_secs().map(|s| (s * 1000.0).round() as u64),
            holds_level: self.slots.lowest_held_level(time::now()),
            busy_ms: self.dry_in().map(|secs| (secs * 1000.0).round() as u64),
            takes_assigned: self.takes_assigned(),
            // Its own write clears a peer's finding that it did not answer.
            unanswered_at: None,
            overdue_at: None,
            problem: self
                .unhealthy
                .as_ref()
                .map(|u| NodeRecord::problem_of(&u.problem)),
            labels: self.labels.labels.labels().map(|l| l.to_string()).collect(),
            exclusive: self
                .labels
                .exclusive
                .labels()
                .map(|l| l.to_string())
                .collect(),
            paused: self.paused.as_ref().map(ToString::to_string),
            max_timeout_seconds: Some(self.cfg.task_rules.max_timeout_seconds),
            node_key: self.node_key.as_ref().map(crate::trust::keys::openssh_line),
        }
    }

    /// Does this node start claims its peers make for it? Only where its
    /// labels alone decide what it runs (no trust gate, no volunteer's
    /// limits), while it takes work, and looking often enough to answer
    /// within `ANSWER_WITHIN`.
    pub(super) fn takes_assigned(&self) -> bool {
        self.gate.is_none()
            && self.budget.limits().is_unlimited()
            && self.draining_since.is_none()
            && self.unhealthy.is_none()
            && self.cfg.pull_interval <= MAX_PULL_FOR_ASSIGNED
    }

    /// When, from now, this node would run dry of the work it holds
    /// (seconds; None: it cannot tell before a task has been timed).
    pub(super) fn dry_in(&self) -> Option<f64> {
        let running = self.slots.running_for(std::time::Instant::now());
        if self.pace.task_secs().is_none() && !running.is_empty() {
            // A task just started would be reckoned to end now.
            return None;
        }
        let starts = self
            .pace
            .starts(self.cfg.concurrency, &running, self.slots.waiting.len());
        starts.last().copied().filter(|s| s.is_finite())
    }

    pub(super) fn status_line(&self) -> String {
        let pending = self.outbox.len();
        let running = &self.slots.running;
        let mut s = match (&self.unhealthy, self.draining_since) {
            (_, Some(_)) => format!("draining: {} running", running.len()),
            (Some(u), None) => format!("unhealthy: {}", u.problem),
            (None, None) if running.is_empty() => "idle".to_owned(),
            (None, None) => format!(
                "running {}",
                running
                    .keys()
                    .map(Id::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        if let (Some(p), None) = (&self.paused, self.draining_since) {
            s.push_str(&format!("; paused: {p}"));
        }
        if pending > 0 {
            s.push_str(&format!("; {pending} result(s) waiting to be pushed"));
        }
        if self.reached_since.is_none() {
            s.push_str("; grid unreachable");
        }
        s
    }

    /// Publish the loop's state to the status page; also the loop's sign of
    /// life for `/healthz`.
    pub(super) fn publish(&self) {
        let line = self.status_line();
        let status = self.status();
        self.board.update(|s| {
            s.status = serde_json::to_value(status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            s.status_line = line;
            s.engine_problem = self.unhealthy.as_ref().map(|u| u.problem.clone());
            s.running = self
                .slots
                .running
                .values()
                .map(|r| status::RunningTask {
                    task_id: r.claimed.task.task_id.to_string(),
                    attempt: r.claimed.claim.attempt,
                    claimed_at: r.claimed.claim.claimed_at.clone(),
                    timeout_seconds: r.claimed.task.timeout_seconds,
                    priority: r.claimed.task.priority(),
                })
                .collect();
            s.outbox = self.outbox.len();
            s.outbox_strangers = self.repo.outbox_strangers() as u64;
            s.paused = self.paused.as_ref().map(ToString::to_string);
            s.labels = self.labels.labels.labels().map(|l| l.to_string()).collect();
            s.exclusive = self
                .labels
                .exclusive
                .labels()
                .map(|l| l.to_string())
                .collect();
            s.waiting = self
                .slots
                .waiting
                .iter()
                .map(|c| status::WaitingTask {
                    task_id: c.task.task_id.to_string(),
                    priority: c.task.priority(),
                })
                .collect();
            s.loop_alive_at = Some(time::format(time::now()));
        });
    }
}
