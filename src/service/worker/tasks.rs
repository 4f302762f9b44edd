//! Starting and finishing tasks, and giving claims back: the loop's side
//! of the slots. Every way a claim ends goes through the outbox first.

use std::sync::atomic::Ordering;
use std::time::Instant;

use std::path::{Path, PathBuf};

use crate::escape::Untrusted;
use crate::grid::Id;
use crate::grid::claim::ClaimedTask;
use crate::sandbox::{Outcome, RunReport};
use crate::service::outbox::{Finish, OutboxEntry};
use crate::service::share;
use crate::service::sync::SyncReport;
use crate::status;
use crate::time;

use super::kept_budget::Keep;
use super::slots::{self, Running};
use super::{ENGINE_RETRY, Unhealthy, View, Worker};

impl Worker {
    /// Start waiting claims while slots are free; the ids of those started.
    pub(super) fn start_waiting(&mut self) -> Vec<Id> {
        let mut started = Vec::new();
        if self.unhealthy.is_some() {
            // Each start would fail the engine too and spend an attempt of
            // the task: peers start them now, this node once healthy.
            self.give_back_waiting("the engine is unhealthy");
            return started;
        }
        loop {
            while let Some(next) = self.slots.next_to_start() {
                let id = next.task.task_id.clone();
                if self.start(next) {
                    started.push(id);
                }
            }
            // A slot still free: a claim handed to the peers and not gone
            // yet starts here (`handed_back`).
            if self.slots.occupied() >= self.cfg.concurrency as usize || !self.take_back_handed() {
                return started;
            }
        }
    }

    /// Start `claimed` in a free slot; false if it could not start (its
    /// claim then went to the outbox).
    fn start(&mut self, claimed: ClaimedTask) -> bool {
        if self.ended_at_start(&claimed) {
            return false;
        }
        let id = claimed.task.task_id.clone();
        let inputs = match self.prepare_inputs(&claimed) {
            Ok(dir) => dir,
            Err(reason) => {
                tracing::error!(task_id = %id, error = %Untrusted(&reason), "cannot give the task its inputs; requeueing");
                self.put_outbox(&claimed, Finish::Retry { reason });
                return false;
            }
        };
        let ended = slots::Ended::default();
        let job = super::relay::job_of(self.node(), &claimed, inputs.clone());
        let running = self.slots.running.values();
        self.started.rewrite(
            running.map(|r| (r.claimed.task.task_id.to_string(), r.claimed.claim.attempt)),
            false,
        );
        match slots::launch(
            &self.engine,
            &self.events,
            &self.nudge,
            &self.relay,
            (id.clone(), job),
            &ended,
            &self.started,
        ) {
            Ok(cancel) => {
                super::relay::log_start(&claimed);
                let now = (Instant::now(), time::now());
                self.began(claimed, cancel, ended, now, inputs);
                true
            }
            Err(e) => {
                remove_inputs(inputs.as_deref());
                tracing::error!(task_id = %id, error = %e, "cannot start a thread for the task; requeueing");
                self.put_outbox(
                    &claimed,
                    Finish::requeue(format!("worker could not start the task: {e}")),
                );
                false
            }
        }
    }

    /// A run has begun (here, or on a thread the relay handed it to): it
    /// occupies its slot and counts against the volunteer's limits.
    pub(super) fn began(
        &mut self,
        claimed: ClaimedTask,
        cancel: crate::sandbox::CancelFlag,
        ended: slots::Ended,
        (started, started_at): (Instant, time::Timestamp),
        inputs: Option<PathBuf>,
    ) {
        self.budget.started(started_at);
        self.keep_budget(Keep::Started);
        self.slots.running.insert(
            claimed.task.task_id.clone(),
            Running {
                claimed,
                cancel,
                started,
                ended,
                started_at,
                inputs,
                taken_back: false,
                gone: false,
            },
        );
    }

    pub(super) fn finished(&mut self, task: Id, report: RunReport) {
        let Some(running) = self.slots.running.remove(&task) else {
            return;
        };
        self.schedule.slot_freed();
        if running.taken_back && matches!(report.outcome, Outcome::Cancelled) {
            self.wait_again(running);
            return;
        }
        self.budget.ended(running.started_at, time::now());
        self.keep_budget(Keep::Ended);
        remove_inputs(running.inputs.as_deref());
        let gone = running.gone;
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
                // Logged when the loop takes the end in, which a sync under
                // way delays (up to 1.9 s in a walk behind a far forge):
                // `ended_at` says when the run ended, as its result does.
                tracing::info!(
                    task_id = %task,
                    status = %result.status,
                    exit_code = result.exit_code,
                    duration_ms = report.duration.as_millis() as u64,
                    ended_at = %result.timestamp,
                    "task finished"
                );
                let signed = self.sign(&claimed, &result);
                Finish::Result { result, signed }
            }
            (Outcome::EngineFailed(problem), None) => {
                tracing::error!(task_id = %task, error = %Untrusted(&problem), "engine failure; requeueing the task, node unhealthy");
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
            // Stopped because its claim is not this node's any more: its
            // requeue lands moot, and nothing goes back to the queue (a
            // node that said "requeueing" here alarmed a tester for
            // nothing, after a peer's result had landed).
            (_, None) if gone => {
                tracing::info!(task_id = %task, "run stopped: its claim is not this node's any more; nothing goes back to the queue");
                Finish::requeue(format!("{node} stopped its run: the claim is not its own"))
            }
            (_, None) => {
                tracing::warn!(task_id = %task, "task cancelled; requeueing");
                Finish::requeue(format!("{node} stopped before the task finished"))
            }
        };
        self.put_outbox(&claimed, finish);
        if self.holds_slot_for(&task) {
            // The loop's next turn pushes the result, which releases work
            // above what waits here, claims it, and starts it in this slot.
            self.slot_held = true;
            return;
        }
        // Start what was claimed ahead before pushing this result: the push
        // then overlaps the next run. A look at the lanes, if one is due,
        // comes right after the start, not before it: the slot never waits
        // for a fetch, and a start the look would have changed is taken
        // back (`take_back_below`).
        let look = self.look_pays();
        let started = self.start_waiting();
        if look {
            self.look_after(started);
        }
    }

    /// A run taken back for higher work has ended: its claim waits again,
    /// in its place by level (or goes back to the queue, if the node is
    /// stopping), and its slot starts what comes first now.
    fn wait_again(&mut self, running: Running) {
        remove_inputs(running.inputs.as_deref());
        self.budget.taken_back(running.started_at);
        self.keep_budget(Keep::Started);
        let claimed = running.claimed;
        if self.draining_since.is_some() {
            let reason = format!("{} stopped before the task finished", self.node());
            self.put_outbox(&claimed, Finish::requeue(reason));
        } else {
            self.slots.wait_again(claimed, time::now());
        }
        self.start_waiting();
    }

    pub(super) fn put_outbox(&mut self, claimed: &ClaimedTask, finish: Finish) {
        // A claim that ends here (given back, or never started) needs its
        // inputs no more.
        self.inputs.remove(&claimed.task.task_id);
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
            // Kept in memory and pushed all the same: only a crash before
            // that push loses it (then the orphan rule reruns the task).
            tracing::error!(task_id = %entry.task_id, error = %e, "cannot write the outbox; the result is kept in memory, pushed at the next sync and written again until then");
        }
    }

    /// The results of the tasks `claimed` runs after, written for it to
    /// read: `<state>/inputs/<task>-<attempt>/<id>.json`, world-readable
    /// (a rootless container's user is not the worker's), read-only to the
    /// task (mounted so). None for a task that runs after nothing.
    fn prepare_inputs(&mut self, claimed: &ClaimedTask) -> Result<Option<PathBuf>, String> {
        use std::os::unix::fs::PermissionsExt;
        // Kept until the claim ends (`put_outbox`): a start taken back for
        // higher work starts again with the same inputs.
        let Some(parents) = self.inputs.get(&claimed.task.task_id).cloned() else {
            return Ok(None);
        };
        let dir = self.cfg.state_dir.join("inputs").join(format!(
            "{}-{}",
            claimed.task.task_id, claimed.claim.attempt
        ));
        let io = |e: std::io::Error| format!("{}: {e}", dir.display());
        // The container engines take the path in a `--mount` list, split
        // on commas.
        if dir.to_str().is_none_or(|d| d.contains(',')) {
            return Err(format!(
                "{}: the state directory's path must be UTF-8 without ',' to mount a task's inputs",
                dir.display()
            ));
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io)?;
        }
        std::fs::create_dir_all(&dir).map_err(io)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
        // Each a round of reads of its own: a result is capped (1 MiB),
        // but twenty of them are more than one round reads, and a task
        // whose inputs never fit one round failed every attempt.
        for (parent, oid) in &parents {
            self.repo.reset_read_budget();
            let blob = self
                .repo
                .read_objects(
                    std::slice::from_ref(oid),
                    crate::grid::layout::MAX_RESULT_BYTES,
                )
                .map_err(|e| e.to_string())?
                .pop()
                .unwrap_or(crate::git::Blob::Missing);
            let Some(bytes) = blob.data() else {
                remove_inputs(Some(&dir));
                return Err(format!(
                    "the result of `{parent}`, an input, cannot be read: {}",
                    blob.why_unread().unwrap_or_else(|| "it is gone".into())
                ));
            };
            let file = dir.join(format!("{parent}.json"));
            std::fs::write(&file, bytes).map_err(io)?;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).map_err(io)?;
        }
        Ok(Some(dir))
    }

    /// Look at the volunteer's limits: a change (paused, or free again) is
    /// logged and goes into the next heartbeat; claims held beyond what may
    /// start within the limits go back to the queue at once.
    pub(super) fn check_budget(&mut self) {
        let allowance = self.allowance();
        let paused = match &allowance {
            crate::service::budget::Allowance::Paused(p) => Some(p.clone()),
            _ => None,
        };
        let by = self.paused_by();
        if paused.as_ref().map(|p| &p.why) != self.paused.as_ref().map(|p| &p.why) {
            match &paused {
                Some(p) => tracing::info!(why = %p, "paused by {by}: claiming nothing"),
                None => tracing::info!("nothing pauses this node any more: claiming again"),
            }
            self.schedule.next_heartbeat = Instant::now();
            if paused.is_none() {
                self.schedule.next_poll = Instant::now();
            }
        }
        if paused.is_some() && self.paused.is_none() {
            // At its limit it may sit still for an hour, starting nothing
            // that would keep the count: a node that dies then must not
            // come back with a fresh hour.
            self.keep_budget(Keep::Now);
        }
        self.paused = paused;
        let surplus = allowance.surplus(self.slots.waiting.len());
        if surplus > 0 {
            let why = self
                .paused
                .as_ref()
                .map_or("at its limit".to_owned(), ToString::to_string);
            for c in self.slots.take_last_waiting(surplus) {
                tracing::info!(task_id = %c.task.task_id, "giving back the claim: {by}");
                let reason = format!("{} gave it back: {why}", self.node());
                self.put_outbox(&c, Finish::requeue(reason));
            }
        }
    }

    /// When a paused node may take work again, on the loop's clock.
    pub(super) fn paused_until(&self) -> Option<Instant> {
        let until = self.paused.as_ref()?.until?;
        let wait = (until - time::now()).to_std().unwrap_or_default();
        Some(Instant::now() + wait)
    }

    /// [`Self::rebalance`] on `view`, kept as the last look's.
    pub(super) fn rebalance_on(&mut self, view: View) {
        self.rebalance(&view);
        self.last_view = Some(view);
    }

    /// Hand claims this node has not started back to the queue when the
    /// last look at the grid saw work it should do first or peers to do
    /// them: those of a lower priority than the best it could claim
    /// (`share::preempt`), so that the higher one starts at the next free
    /// slot; and those a peer, idle or running dry, would start sooner
    /// than this node, once the queue has gone to the peers
    /// (`share::give_back`). The requeues go with the next sync, at once.
    fn rebalance(&mut self, view: &View) {
        let now = time::now();
        let levels: Vec<u8> = self
            .slots
            .waiting
            .iter()
            .map(|c| c.effective_priority(now))
            .collect();
        let lower = share::preempt(&levels, view.top_queued);
        if !lower.is_empty() {
            tracing::info!(
                count = lower.len(),
                top_queued = view.top_queued,
                "handing back claims not started: work of a higher priority waits"
            );
            for c in self.slots.take_waiting(&lower) {
                tracing::info!(task_id = %c.task.task_id, priority = c.task.priority(), "giving back the claim: higher priority waits");
                let reason = format!(
                    "{} handed it back for work of a higher priority",
                    self.node()
                );
                self.put_outbox(
                    &c,
                    Finish::Requeue {
                        reason,
                        preempted: true,
                    },
                );
            }
        }
        if self.slots.waiting.is_empty() || view.peers_dry.is_empty() {
            return;
        }
        // When this node would start each claim it holds, and when the
        // peers' slots run dry: an idle peer takes a task given back at its
        // next poll, within a poll interval, and a busy one within that of
        // running dry. What a peer would start sooner goes to it.
        let running = self.slots.running_for(Instant::now());
        let mut starts = self
            .pace
            .starts(self.cfg.concurrency, &running, self.slots.waiting.len());
        starts.pop(); // when it would run dry
        // A handback is two commits (this node's, the peer's claim) on a ref
        // the others push to: a round each, as measured with its lost races.
        // (The claim itself reckons with one: what it does not take, it
        // need not hand back, but a peer must claim.) And a poll interval
        // more: traced at the end of mixed drains, a handback took 1-2.5 s
        // from this decision to a peer's start at an interval of 1 s (its
        // requeue lost rounds, was published and carried, then waited for
        // a look), and a task handed on twice started last; 24 mixed pairs
        // with it, makespan median 9.5 s against 9.8 s (BENCHMARKS.md,
        // "A handback's real cost").
        let handback_cost =
            2.0 * self.pace.round_secs().unwrap_or(0.0) + self.cfg.pull_interval.as_secs_f64();
        let n = share::give_back(
            &starts,
            view.queue_left,
            &view.peers_dry,
            self.cfg.pull_interval.as_secs_f64(),
            handback_cost,
            self.pace.task_secs(),
        );
        if n == 0 {
            return;
        }
        tracing::info!(
            count = n,
            keep = self.slots.waiting.len() - n,
            idle_peer_slots = view.idle_peer_slots,
            soonest_dry = view.peers_dry.first().map(|p| p.dry),
            "handing claims not started to peers that would start them sooner"
        );
        for c in self.slots.take_last_waiting(n) {
            tracing::info!(task_id = %c.task.task_id, "giving back the claim: a peer would start it sooner");
            let reason = format!(
                "{} handed it to a peer that would start it sooner",
                self.node()
            );
            self.hand_to_peers(c, reason);
        }
    }

    /// Hand claimed-ahead tasks back to the queue, their attempt unspent
    /// (`why`: the node is stopping, or its engine is unhealthy).
    pub(super) fn give_back_waiting(&mut self, why: &str) {
        let all = self.slots.waiting.len();
        for c in self.slots.take_last_waiting(all) {
            tracing::info!(task_id = %c.task.task_id, why, "giving back the claim");
            let reason = format!("{} gave it back before starting it: {why}", self.node());
            self.put_outbox(&c, Finish::requeue(reason));
        }
    }

    /// A claim made for this node that it lost (it answered too late):
    /// stop running it, or drop it unstarted. Its result or requeue, if
    /// any reaches the outbox, is found moot when it lands.
    /// Drop the claims a sync found this node no longer holds: made for
    /// it and reaped before it answered, taken over before it started
    /// them, or ended elsewhere while it ran them.
    pub(super) fn drop_claims_gone(&mut self, report: &SyncReport) {
        for id in &report.lost {
            tracing::warn!(task_id = %id, "a claim made for this node names another node before its answer landed (reaped, or taken over by a peer); stopping the task");
            self.drop_lost(id);
        }
        for id in &report.taken {
            if self.slots.running.contains_key(id) {
                // Started meanwhile: it runs on, and the first result lands.
                continue;
            }
            tracing::info!(task_id = %id, "a claim of this node's names another node now (taken over before it started here, or reaped); dropping it");
            self.drop_lost(id);
        }
        for id in &report.ended {
            tracing::info!(task_id = %id, "this task ended elsewhere (the first holder of a claim taken over landed its result first); stopping its run here");
            self.drop_lost(id);
        }
    }

    pub(super) fn drop_lost(&mut self, id: &Id) {
        if let Some(r) = self.slots.running.get_mut(id) {
            r.cancel.store(true, Ordering::SeqCst);
            // Not to wait again: the claim is not this node's any more.
            r.taken_back = false;
            r.gone = true;
        }
        self.slots.waiting.retain(|c| &c.task.task_id != id);
        self.claim_commits.remove(id);
        // Nothing to answer: a look that found it lost without a commit
        // must not find it again at every look after.
        self.unanswered.remove(id);
        self.forget_handed(id);
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

/// Remove a task's inputs directory (it ran, or never will).
fn remove_inputs(dir: Option<&Path>) {
    if let Some(dir) = dir
        && let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a task's inputs");
    }
}
