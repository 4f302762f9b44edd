//! The loop itself. Each turn: ping the watchdog, recheck an unhealthy
//! engine, give back claims that turned out surplus, make one sync if the
//! schedule says one is due, publish, then sleep on the event channel until
//! the next reason to wake (a task's end, a signal, a timer).

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::escape::Untrusted;
use crate::git::txn::{TxnError, TxnPolicy};
use crate::grid::NodeStatus;

use super::schedule::Due;
use super::signals::Event;
use super::{RunOptions, Worker, WorkerError};

impl Worker {
    pub(super) fn main_loop(
        &mut self,
        rx: &Receiver<Event>,
        opts: &RunOptions,
    ) -> Result<(), WorkerError> {
        loop {
            self.notifier.watchdog();
            self.check_engine_recovery();
            if self.draining_since.is_none() {
                self.check_budget();
            }

            let now = Instant::now();
            if let Some(since) = self.draining_since
                && now.duration_since(since) > self.cfg.drain_timeout
            {
                self.cancel_all("the drain timeout passed");
            }

            if let Some(at_slot) = self.look_at_slot.take() {
                self.look_at_free_slot(&at_slot);
            }
            let load = self.load();
            if let Some(due) = self
                .schedule
                .due(now, &load)
                .filter(|due| !self.schedule.hold_for_slot(Instant::now(), &load, due))
            {
                let can_wait = due.can_wait(&load);
                // A change that can wait begins no round it cannot end
                // before a slot frees with a claim waiting for it: that
                // start would wait for the round, and on a far host a round
                // lost to other writers is half a second.
                // Where looks cost little against a task, it also gives up
                // at a lost round once a task's thread has started a claim
                // through the relay: that start was made blind to what the
                // round's winner brought (traced: a burst of higher work
                // claimed for this node by the winner, seen only after the
                // retry's backoff and round, 0.4 s later, with three low
                // tasks started meanwhile), and the look a relayed start
                // gets fetches at once. Not where looks are dear (over
                // HTTPS, 100 ms away, giving up cost 8 nodes' drains of 1 s
                // tasks 1.3 s: the results waited for a later round).
                let policy = if can_wait {
                    let policy = TxnPolicy::yielding()
                        .rounds_end_by(load.slot_to_keep_clear(load.sync_takes));
                    if self.look_after_start_pays() {
                        policy.interruptible(self.relay.started_flag())
                    } else {
                        policy
                    }
                } else {
                    TxnPolicy::default()
                };
                // A task that ends while this sync loses races makes it give
                // up: if a claimed one waits to start, the slot must not idle
                // while the ref is busy; and a sync made while tasks run
                // leaves their results for later (the next is near), so the
                // next round should carry the one that just ended. Not
                // while claims go back and none waits here: idle peers wait
                // for them, and nothing here would start sooner. (With one
                // waiting, the slot starts it, and the claims go back with
                // the sync right after: a handback that lost seven races
                // in a row once kept a slot idle for four seconds.)
                let policy = if self.slots.is_idle()
                    || (self.others_wait() && self.slots.waiting.is_empty())
                {
                    policy
                } else {
                    policy.interruptible(self.nudge.clone())
                };
                match self.sync(&due, &policy) {
                    Ok(_) => self.take_back_recent_starts(),
                    Err(TxnError::Interrupted { rounds }) => {
                        tracing::debug!(
                            rounds,
                            "sync interrupted: a slot freed, or a claim started blind to it; the next sync carries what it held"
                        );
                    }
                    Err(TxnError::Contended { .. }) if can_wait => {
                        tracing::debug!("results wait: the grid's ref is busy");
                        self.schedule.results_deferred(Instant::now());
                    }
                    Err(e) => {
                        tracing::warn!(error = %Untrusted(&e), waiting = self.outbox.len(), "sync failed; results stay in the outbox");
                        self.schedule
                            .sync_failed(now, e.retry_after(self.cfg.pull_interval));
                    }
                }
            }
            // A slot held for what a result releases (`Worker::finished`)
            // starts what comes first now, whatever the sync did.
            if std::mem::take(&mut self.slot_held) {
                self.start_waiting();
            }
            let status = self.status_line();
            self.notifier.status(&status);

            // Stopping: once nothing runs, shutdown() makes the last push;
            // a remote that is away then must not hold the stop hostage.
            if self.draining_since.is_some() && self.slots.running.is_empty() {
                break;
            }
            let idle = self.slots.is_idle() && self.outbox.is_empty();
            let ended = self.completed + self.failed;
            if idle && ended != self.ended_at_trim {
                // Idle after work: what the drain freed goes back.
                crate::service::heap::release_free();
                self.ended_at_trim = ended;
            }
            // Nor while peers hold claims it could run that they have not
            // started: it may take them over (a helper's sweep: four nodes
            // draining eight 20 s tasks, two ended as the other two claimed
            // one each ahead, which then ran in turn, 60 s against 40).
            if opts.drain
                && idle
                && self.reached_since.is_some()
                && self.queue_empty_at.is_some()
                && self.peers_unstarted == 0
            {
                tracing::info!(
                    "nothing queued that this node can take, and nothing pending; --drain ends here"
                );
                break;
            }
            // Paused by the volunteer's limits, it may sit still for hours:
            // a batch run (a cron job's) ends with what it may run now.
            if opts.drain
                && idle
                && self.reached_since.is_some()
                && let Some(p) = &self.paused
            {
                tracing::info!(why = %p, "paused by {} and nothing pending; --drain ends here", self.paused_by());
                break;
            }

            // Last thing before waiting: the page shows this round's claims.
            self.publish();
            let wait = self.sleep_for();
            match rx.recv_timeout(wait) {
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while let Ok(event) = rx.try_recv() {
                self.handle(event);
            }
            self.renew_nudge();
        }
        self.shutdown()
    }

    /// The nudge says whether a run has ended that the loop has not taken
    /// yet: cleared, then set again if so. In that order, a run ending in
    /// between is never missed: its thread sets the nudge after its end
    /// is visible here. A nudge left set by a run already taken made the
    /// next sync give up at its first lost round: traced, a look that
    /// found a priority burst lost its claim to that and ran a low task
    /// while the burst waited for it.
    fn renew_nudge(&self) {
        use std::sync::atomic::Ordering;
        self.nudge.store(false, Ordering::SeqCst);
        if self.slots.ended_untaken() {
            self.nudge.store(true, Ordering::SeqCst);
        }
    }

    /// Until the next sync may be due, or sooner: the watchdog, an engine
    /// recheck, the drain's clock, claims turning surplus, a pause that
    /// lifts or quiet hours that begin. With every slot busy no poll
    /// wakes the loop (it has no room to claim), and quiet hours begun
    /// then went unsaid (record, `STATUS=`, page) until a task ended:
    /// 18 s late behind a task of 40 s.
    fn sleep_for(&self) -> Duration {
        let now = Instant::now();
        let others = [
            self.notifier.watchdog_every().map(|every| now + every),
            self.unhealthy.as_ref().map(|u| u.retry_at),
            self.draining_since.map(|_| now + Duration::from_secs(1)),
            self.paused_until(),
            self.quiet_begins_at(),
        ];
        self.schedule.sleep(now, &self.load(), &others)
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Finished { task, report } => self.finished(task, report),
            Event::Signal => {
                let n = self.signals.get();
                if self.draining_since.is_none() && n <= 1 {
                    tracing::info!(
                        running = self.slots.running.len(),
                        "stopping: no new claims; letting running tasks finish"
                    );
                    self.draining_since = Some(Instant::now());
                    self.give_back_waiting("stopping");
                    self.notifier.stopping("draining");
                    self.notifier
                        .extend_timeout(self.cfg.drain_timeout + Duration::from_secs(30));
                } else {
                    tracing::warn!(
                        "second signal: stopping now; running tasks go back to the queue"
                    );
                    self.draining_since.get_or_insert_with(Instant::now);
                    self.give_back_waiting("stopping");
                    self.cancel_all("the worker was told to stop now");
                }
            }
        }
    }

    /// Push what is pending and mark the node stopped. Bounded: a remote
    /// that is away keeps the outbox for the next start.
    pub(super) fn shutdown(&mut self) -> Result<(), WorkerError> {
        self.draining_since.get_or_insert_with(Instant::now);
        self.notifier.stopping("stopping: pushing pending results");
        self.keep_budget(super::kept_budget::Keep::Now);
        // As many rounds as any sync: a grid whose nodes all stop at once
        // (a fleet restarted) contends like one that starts at once, and
        // this push carries the last results. A remote that is away fails
        // the first round; only contention takes more.
        let last = Due {
            claims: 0,
            flush: true,
            heartbeat: true,
            reap: false,
            look: false,
            before_start: false,
        };
        match self.sync_as(&last, NodeStatus::Stopped, &TxnPolicy::default()) {
            Ok(_) if self.outbox.is_empty() => {
                // What it published for peers to carry has landed: its
                // branch goes with it, rather than wait for the reap.
                if let Some(Err(why)) = self.repo.unpublish(self.node().as_str()) {
                    tracing::info!(why = %Untrusted(&why), "its published outbox stays for the reap");
                }
                tracing::info!(node_id = %self.node(), "stopped")
            }
            Ok(_) => tracing::warn!(
                waiting = self.outbox.len(),
                "stopped with results still in the outbox"
            ),
            Err(e) => {
                tracing::warn!(error = %Untrusted(&e), "could not push on the way out; the outbox keeps what it could write for the next start")
            }
        }
        // What the state directory could not take (a full disk) goes with
        // the process: one last try, else said, and the exit is a failure
        // (a tester's full disk: "the outbox keeps it", exit 0, and the
        // result was gone; its task ran again after its claim went back).
        if self.outbox.unwritten() > 0
            && let Err(e) = self.outbox.write_unwritten()
        {
            tracing::error!(
                error = %e,
                lost = self.outbox.unwritten(),
                "results held only in memory are lost: their claims go back to the queue, and their tasks run again"
            );
            return Err(e.into());
        }
        Ok(())
    }
}
