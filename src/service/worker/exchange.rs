//! One sync with the grid (`service::sync::plan` inside the transaction
//! loop of `git::txn`), and acting on what it reports: start what was
//! claimed, clear what landed from the outbox, reschedule.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::escape::Untrusted;
use crate::git::txn::{self, TxnOutcome, TxnPolicy};
use crate::grid::NodeStatus;
use crate::service::outbox::Finish;
use crate::service::sync::{self, SyncReport, SyncRequest};
use crate::status::SyncStats;
use crate::time;

use super::schedule::Due;
use super::{View, Worker, kept_pace};

impl Worker {
    /// One sync carrying what `due` asks for, with the node's current status.
    pub(super) fn sync(
        &mut self,
        due: &Due,
        txn_policy: &TxnPolicy,
    ) -> Result<SyncReport, txn::TxnError> {
        let ran = self.sync_as(due, self.status(), txn_policy);
        self.mend_clone(&ran);
        ran
    }

    /// One sync, writing the node record with `status` (signed where it
    /// has a key). Results and requeues in the outbox always go along.
    pub(super) fn sync_as(
        &mut self,
        due: &Due,
        status: NodeStatus,
        txn_policy: &TxnPolicy,
    ) -> Result<SyncReport, txn::TxnError> {
        self.schedule.synced();
        self.resolve_uncertain()?;
        let want = due.claims;
        if self.outbox.unwritten() > 0
            && let Err(e) = self.outbox.write_unwritten()
        {
            tracing::error!(error = %e, kept = self.outbox.unwritten(), "outbox entries still held only in memory");
        }
        let outbox = self.outbox.entries().to_vec();
        let mut held = self.slots.held();
        held.extend(outbox.iter().map(|e| e.task_id.clone()));
        let record = self.record(status);
        let policy = self.cfg.orphan_policy();
        let preempt_below = self.slots.lowest_waiting_level(time::now());
        // A task claimed ahead may wait for a slot: its deadline allows for
        // that, so that a healthy node's queued claim is never reaped.
        let start_now = self.slots.free();
        let wait = if want > start_now || preempt_below.is_some() {
            self.slots.longest_wait(Instant::now())
        } else {
            Duration::ZERO
        };
        let grace = chrono::Duration::from_std(self.cfg.claim_grace + wait).unwrap_or_default();
        let queue_empty_at = self.queue_empty_at.clone();
        // At least its fair share of the queue, up to what it may hold.
        // Never beyond what the volunteer's limits let it start.
        let share_up_to = if want > 0 && self.registered {
            let room = (self.cfg.concurrency as usize + self.cfg.claim_ahead as usize)
                .saturating_sub(self.slots.running.len() + self.slots.waiting.len());
            match self.allowance().room(self.slots.waiting.len()) {
                Some(budget) => room.min(budget),
                None => room,
            }
        } else {
            0
        };
        let running = self.slots.running_for(Instant::now());
        let start_soon =
            self.pace
                .startable_within(self.cfg.pull_interval, self.cfg.concurrency, &running);
        // When it would start what it claims now: after the claims it holds.
        let next_starts = {
            let held = self.slots.waiting.len();
            let mut starts =
                self.pace
                    .starts(self.cfg.concurrency, &running, held + want.max(share_up_to));
            starts.split_off(held.min(starts.len()))
        };
        // Holding claims not started: see whether idle peers want them.
        let survey = due.look || !self.slots.waiting.is_empty();
        // The outbox is due only because a claim is (pace::flush_results): if
        // the queue turns out empty, the result of the running task is near.
        // Not tasks going back: others may be waiting for them.
        // A look before starting a claim: the slot waits, results too.
        // Not a result that releases tasks (`Worker::awaited_pending`):
        // the look carries it, and what it releases is looked at next,
        // the start just made taken back for it if higher.
        let defer_results = (due.before_start
            || !self.slots.running.is_empty()
                && self.draining_since.is_none()
                && !self.giving_back()
                && self
                    .schedule
                    .results_since
                    .is_some_and(|since| since.elapsed() < self.result_delay()))
            && !self.awaited_pending();
        let holding_classes: Vec<crate::grid::Class> = self
            .slots
            .waiting
            .iter()
            .map(|c| c.task.class())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // A free slot: claims a peer made for this node start at once.
        // As many as it may hold: a grid cannot fill its slots' waiting
        // line past what it would claim itself.
        let takes = self.registered && self.takes_assigned();
        let adopt = if takes && start_now > 0 {
            (self.cfg.concurrency as usize + self.cfg.claim_ahead as usize)
                .saturating_sub(self.slots.running.len() + self.slots.waiting.len())
        } else {
            0
        };
        // Busy, work above what it holds claimed for it by a peer (a
        // burst), as much as it could hold: it starts at the next free
        // slots, before the lower claims it holds. Read at looks only (the
        // periodic one, and one at a free slot): a sync that only pushes
        // results has no use for it.
        let adopt_above = if takes && due.look && record.holds_level.is_some() {
            self.cfg.concurrency as usize + self.cfg.claim_ahead as usize
        } else {
            0
        };
        let joining = !self.registered
            && outbox.is_empty()
            && self.join_by.is_some_and(|by| Instant::now() < by);
        let started = Instant::now();
        let mut round = 0u32;
        let writers = Arc::new(AtomicU32::new(0));
        let seen = std::cell::RefCell::new(None);
        let txn_policy = txn_policy.clone().writers(writers.clone());
        let nothing_to_run = self.slots.running.is_empty() && self.slots.waiting.is_empty();
        // Nothing to run until this sync lands: every round it waits out,
        // it sits idle, and that costs the grid a task's time where tasks
        // take longer than a round. (Where they take less, the ref is what
        // bounds a drain, and the doubling is what spares it.)
        let long = self.pace.tasks_outlast(1.0);
        let idle = want > 0 && self.registered && !joining && nothing_to_run && long;
        // Takeovers watched for where tasks outlast half a round: a peer
        // takes over where they outlast its own, and rounds lost make ours
        // twice its (chaos suite: rounds 0.34 s against 0.15 s, 0.2 s tasks).
        let watch = !nothing_to_run && self.pace.tasks_outlast(0.5);
        // Free slots and nothing waiting (a claim is due only then), where
        // tasks outlast a round: claims a busy peer has not started may be
        // taken over, as many as start now. (Taken over to wait here, one
        // was taken over again from this node within half a second.)
        let take_late_up_to = match status {
            NodeStatus::Idle | NodeStatus::Busy if self.registered && !joining => {
                want.min(start_now)
            }
            _ => 0,
        };
        let steal_up_to = if long { take_late_up_to } else { 0 };
        let txn_policy = if idle { txn_policy.idle() } else { txn_policy };
        // Its last results, with nothing left to run, or claims handed
        // back: should a round be lost, they go where a peer's commit may
        // carry them (PROTOCOL.md, Published results); the idle peer a
        // handback is for claims it in the commit that carries it. A busy
        // node's results ride with its next claim (a push more each lost
        // round cost a mixed drain more than it saved), unless starved;
        // handbacks only where tasks outlast a round, or a peer's claim
        // from the queue is as quick (BENCHMARKS.md: Results carried by
        // peers' commits; Handbacks published where tasks take longer
        // than a round).
        let hands_back = long
            && outbox
                .iter()
                .any(|e| matches!(e.finish, Finish::Requeue { .. }));
        let starved = self.starved();
        let publication = (nothing_to_run || hands_back || starved)
            .then(|| sync::to_publish(&self.cfg.node_id, &outbox, long))
            .flatten();
        let publication = self.standing(publication, starved, &record);
        let published_all = publication
            .as_ref()
            .is_some_and(|p| sync::publishes_all(p, &outbox));
        let txn_policy = match publication {
            // A handback published is a peer's to take, not this node's.
            Some(p) if starved && !hands_back => txn_policy.publish_first(p),
            Some(p) => txn_policy.publish(p),
            None => txn_policy,
        };
        // Its last results, nothing else: while peers are still at work,
        // their commits may land these (`txn::Defer`), where a round costs
        // enough for that to pay (`Pace::defer_delivery`). Only if one
        // publication holds them all, so that peers see this node has run
        // dry and do not wait for it. Not a node that is stopping, nor one
        // handing claims back: someone waits for those.
        let peers_at_work = Arc::new(AtomicBool::new(false));
        let defer = self.pace.defer_delivery(self.result_delay()).filter(|_| {
            nothing_to_run
                && self.registered
                && status != NodeStatus::Stopped
                && status != NodeStatus::Draining
                && published_all
                && outbox
                    .iter()
                    .all(|e| matches!(e.finish, Finish::Result { .. }))
        });
        let txn_policy = if let Some((step, until)) = defer {
            txn_policy.defer(txn::Defer {
                peers_at_work: peers_at_work.clone(),
                step,
                until,
            })
        } else {
            txn_policy
        };
        // The loop is blind until the sync returns: a run that ends meanwhile
        // starts the next claim on its own thread.
        self.arm_relay();
        let result = txn::run(&self.repo, &self.identity, &txn_policy, |t| {
            // Before any commit has been timed, the rounds this sync lost
            // (all before this one) say what a round costs.
            let round_secs = self.pace.round_secs().or_else(|| {
                (round > 0).then(|| started.elapsed().as_secs_f64() / f64::from(round))
            });
            round += 1;
            let req = SyncRequest {
                node: &self.cfg.node_id,
                now: time::now(),
                outbox: &outbox,
                want_claims: want,
                start_now,
                reap: due.reap,
                held: &held,
                started_before: self.started_before.as_ref(),
                heartbeat: due.heartbeat,
                record: &record,
                rules: &self.cfg.task_rules,
                policy: &policy,
                claim_grace: grace,
                queue_empty_at: queue_empty_at.as_ref(),
                share_up_to,
                slots: self.cfg.concurrency,
                holding: self.slots.running.len() + self.slots.waiting.len(),
                start_soon,
                task_secs: self.pace.task_secs(),
                round_secs,
                sync_secs: self.pace.sync_secs(),
                next_starts: &next_starts,
                pickup_secs: self.cfg.pull_interval.as_secs_f64(),
                records: &self.records,
                survey,
                defer_results,
                labels: &self.labels,
                turn_after: self.last_submitter.as_ref().map(Option::as_ref),
                holding_classes: &holding_classes,
                preempt_below,
                preempt_up_to: self.slots.waiting.len(),
                owed: self.slots.owed(time::now()),
                trust: self.gate.as_ref(),
                seal: self.signer.as_ref(),
                adopt,
                adopt_above,
                answer: &self.unanswered,
                assign_within: Some(crate::grid::claim::ANSWER_WITHIN),
                claims_seen: &self.claims_seen,
                published_seen: &self.published_seen,
                joining,
                count_at_work: defer.is_some(),
                steal_up_to,
                take_late_up_to,
                reached_since: self.reached_since,
                been_away: self.been_away,
                watch,
            };
            let planned = sync::plan(t, &req)?;
            *seen.borrow_mut() = Some(View::of(&planned.value));
            writers.store(planned.value.writers, Ordering::SeqCst);
            peers_at_work.store(planned.value.peers_at_work > 0, Ordering::SeqCst);
            Ok(planned)
        });
        let took = started.elapsed();
        self.settle_relay();
        if let Some(p) = &txn_policy.publish
            && p.sent.load(Ordering::SeqCst)
        {
            // A peer may carry these now: not to be taken back.
            self.handed_published(|id| sync::publishes(p, id));
        }
        let failed = |rejections| SyncStats {
            took,
            ok: false,
            rejections,
            claims: 0,
            heartbeat: false,
            committed: false,
        };
        if let Err(e) = &result {
            let lost = match e {
                txn::TxnError::Contended { rounds, .. } | txn::TxnError::Interrupted { rounds } => {
                    *rounds
                }
                txn::TxnError::Git(_) => 0,
            };
            self.board.sync_done(failed(lost));
            self.lost_syncs += u32::from(lost > 0);
            // What its lost rounds read of the grid is as good as a look:
            // a node whose pushes keep losing hands claims on all the same.
            if let Some(view) = seen.take().filter(|_| survey && lost > 0) {
                self.rebalance_on(view);
            }
        }
        // Losing races says the grid is there and busy, not away.
        let outcome = result.inspect_err(|e| {
            if matches!(e, txn::TxnError::Git(_)) {
                self.lost_the_grid();
            }
        })?;
        self.reached_since.get_or_insert_with(time::now);
        let (report, commit) = match outcome {
            TxnOutcome::Committed {
                commit,
                value,
                rejections,
            } => {
                tracing::debug!(took_ms = took.as_millis() as u64, rejections, %commit, "sync");
                self.pace.sync_took(took);
                self.pace.commit_took(took, rejections.saturating_add(1));
                self.lost_syncs = 0;
                self.board.sync_done(SyncStats {
                    took,
                    ok: true,
                    rejections,
                    claims: value.claimed.len(),
                    heartbeat: value.wrote_heartbeat,
                    committed: true,
                });
                (value, Some(commit))
            }
            TxnOutcome::Unchanged {
                value, rejections, ..
            } => {
                tracing::debug!(
                    took_ms = took.as_millis() as u64,
                    rejections,
                    "sync: nothing to change"
                );
                self.pace.sync_took(took);
                // A look that found nothing to do: a fetch and a listing,
                // what a look at a free slot costs. Timed here too, or one
                // slow look at a slot would turn those looks off for good
                // (`Pace::look_at_free_slots`), with none left to time.
                if due.look && rejections == 0 {
                    self.pace.peek_took(took);
                }
                if !self.registered && rejections > 0 {
                    // Joining, it stayed out after losing rounds: they were
                    // commits the ref turned away, and what a round costs
                    // is what its next try at joining weighs.
                    self.pace.commit_took(took, rejections);
                }
                self.board.sync_done(SyncStats {
                    ok: true,
                    ..failed(rejections)
                });
                (value, None)
            }
            TxnOutcome::Uncertain {
                commit,
                value,
                error,
            } => {
                tracing::warn!(%commit, error = %Untrusted(&error), "push outcome unknown and the grid unreachable; will check once it is back");
                self.lost_the_grid();
                self.board.sync_done(failed(0));
                self.uncertain = Some((commit, value));
                return Err(txn::TxnError::Git(error));
            }
        };
        let now = Instant::now();
        let more = report.release_more;
        if due.reap || more {
            self.schedule.reaped(now, self.cfg.stale_after, more);
        }
        let looked = want > 0 || survey;
        if looked {
            self.schedule.looked(now, self.cfg.pull_interval);
        }
        if want > 0 {
            // A look that found claims made for it saw nothing of the queue.
            let empty = report.queue_left == 0
                && report.claimed.is_empty()
                && report.invalid.is_empty()
                && report.adopted.is_empty();
            self.queue_empty_at = empty.then(|| report.tip.clone()).flatten();
            self.peers_unstarted = report.peers_unstarted;
            self.queue_deep = report.queue_left > 0;
            // Poll again at once while the queue has work and we have room;
            // also at once after putting tasks back in the queue: they were
            // not there to claim.
            // Also when the claim stopped at its share of a priority level:
            // more of it is queued, and it goes before anything lower.
            let more = report.queue_left > 0 && (report.claimed.len() >= want || report.capped)
                || !report.adopted.is_empty();
            self.schedule
                .claimed(now, more || report.requeued > 0, self.cfg.pull_interval);
        }
        self.absorb(&report, commit.as_deref());
        if report.requeues_waiting > 0 {
            self.schedule.requeue_waits(now, self.cfg.pull_interval);
        }
        self.check_node_key();
        if looked {
            self.rebalance_on(View::of(&report));
        }
        self.upkeep(now);
        // An idle node's next sync is a poll interval away: it keeps no
        // reader processes (their memory) until then.
        if self.slots.is_idle() {
            self.repo.release_readers();
        }
        Ok(report)
    }

    /// A commit whose push outcome was unknown: once the grid answers, act
    /// on it if it landed (its claims are ours, its results delivered), and
    /// forget it if it did not (its outbox entries are still there).
    fn resolve_uncertain(&mut self) -> Result<(), txn::TxnError> {
        let Some((commit, report)) = self.uncertain.take() else {
            return Ok(());
        };
        match txn::landed(&self.repo, &commit) {
            Ok(true) => {
                tracing::info!(%commit, "the uncertain push had landed");
                self.absorb(&report, Some(&commit));
                Ok(())
            }
            Ok(false) => {
                tracing::info!(%commit, "the uncertain push had not landed");
                Ok(())
            }
            Err(e) => {
                self.uncertain = Some((commit, report));
                Err(e.into())
            }
        }
    }

    /// Act on a sync that landed in `commit` (none if nothing changed):
    /// clear delivered results from the outbox, start what was claimed, and
    /// log what the grid now says.
    fn absorb(&mut self, report: &SyncReport, commit: Option<&str>) {
        let now = Instant::now();
        self.slots.counted(&report.servers);
        if report.requeued > 0 || !report.reaped.is_empty() || !report.released.is_empty() {
            // Tasks went back to the queue (or waiting ones into it): it is
            // not empty, and a node with room looks at it again; one that
            // holds claims, for work above them.
            self.queue_empty_at = None;
            self.schedule.next_poll = now;
            self.schedule.next_look = now;
        }
        if report.wrote_heartbeat {
            self.schedule
                .heartbeat_written(now, self.cfg.heartbeat_interval);
            // With each heartbeat, and with the last one on the way out.
            if let Some(task) = self.pace.task_secs() {
                kept_pace::save(&self.cfg.state_dir, task, time::now());
            }
        }
        self.delivered(&report.landed);
        for id in &report.landed {
            if let Err(e) = self.outbox.remove(id) {
                tracing::error!(task_id = %id, error = %e, "landed but could not clear from the outbox");
            }
        }
        for id in &report.superseded {
            tracing::warn!(task_id = %id, "result not pushed: another node holds the task, or its result landed first; kept in outbox/superseded");
            if let Err(e) = self.outbox.supersede(id) {
                tracing::error!(task_id = %id, error = %e, "cannot move superseded result aside");
            }
        }
        if self.outbox.is_empty() {
            self.schedule.outbox_emptied();
        }
        report.log_moves();
        for (task, inputs) in &report.inputs {
            self.inputs.insert(task.clone(), inputs.clone());
        }
        for id in &report.answered {
            self.unanswered.remove(id);
        }
        self.drop_claims_gone(report);
        for c in &report.adopted {
            tracing::info!(task_id = %c.task.task_id, attempt = c.claim.attempt, by = %c.claim.assigned_by.as_ref().map_or("a peer", |b| b.as_str()), "claimed for this node by a peer");
            // The tip it was found at holds the claim, as the result says.
            if let Some(tip) = &report.tip {
                self.claim_commits
                    .insert(c.task.task_id.clone(), tip.clone());
            }
            self.unanswered.insert(c.task.task_id.clone());
            self.slots.waiting.push_back(c.clone());
        }
        self.note_answers();
        if !self.unanswered.is_empty() {
            // The answer rides with the next commit this node makes anyway
            // (its first results, a claim), or goes alone well before its
            // `answer_by`: a commit each for a drain's idle nodes would
            // crowd the ref just as the drain starts.
            let by = now
                + crate::grid::claim::ANSWER_AFTER
                    .to_std()
                    .expect("a positive constant");
            self.schedule.next_heartbeat = self.schedule.next_heartbeat.min(by);
        }
        for c in &report.claimed {
            tracing::info!(task_id = %c.task.task_id, attempt = c.claim.attempt, priority = c.task.priority(), "claimed");
            // The commit that holds the claim: the node's result names it.
            if let Some(commit) = commit {
                self.claim_commits
                    .insert(c.task.task_id.clone(), commit.to_owned());
            }
            self.slots.waiting.push_back(c.clone());
            self.last_submitter = Some(c.task.submitter.clone());
        }
        if !report.claimed.is_empty() || !report.adopted.is_empty() {
            // Higher work claimed while holding lower: it starts first.
            self.slots.sort_waiting(time::now());
        }
        if report.tip.is_some() {
            // Its claims are all in the slots now; one that ended while the
            // sync ran keeps the level it had.
            let mut levels = self.slots.levels_of(&report.awaited, time::now());
            for id in &report.awaited {
                if let Some(&l) = self.awaited.get(id) {
                    levels.entry(id.clone()).or_insert(l);
                }
            }
            self.awaited = levels;
        }
        if self.draining_since.is_some() {
            // Claimed by a push we only now know landed, while stopping:
            // give it back rather than start it.
            self.give_back_waiting("stopping");
        }
        self.start_waiting();
    }
}
