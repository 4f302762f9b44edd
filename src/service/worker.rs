//! The main loop. Synchronous and small: git and the engine are blocking
//! calls with timeouts; tasks run on their own threads and report back over
//! a channel, so the loop stays free to heartbeat, answer the watchdog and
//! hear signals while a task runs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::config::Config;
use crate::git::txn::{self, Identity, TxnOutcome, TxnPolicy};
use crate::git::{Git, GridRepo};
use crate::grid::claim::ClaimedTask;
use crate::grid::orphan::OrphanPolicy;
use crate::grid::{Id, NodeRecord, NodeStatus, ResultStatus, TaskResult};
use crate::sandbox::{self, CancelFlag, Engine, Job, Outcome, RunReport};
use crate::service::notify::Notifier;
use crate::service::outbox::{Finish, Outbox, OutboxEntry};
use crate::service::pace::{self, Pace};
use crate::service::sync::{self, SyncReport, SyncRequest};
use crate::status::{self, Board};
use crate::time;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Exit 0 once the queue is empty and nothing of ours is running or
    /// waiting to be pushed.
    pub drain: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    #[error(transparent)]
    Outbox(#[from] crate::service::outbox::OutboxError),
    #[error("cannot set up signal handling: {0}")]
    Signals(std::io::Error),
    #[error("stopped before the node could register")]
    StoppedBeforeReady,
}

enum Event {
    Finished { task: Id, report: RunReport },
    Signal,
}

struct Running {
    claimed: ClaimedTask,
    cancel: CancelFlag,
    started: Instant,
}

/// Why the engine is not used for now, and when to look again.
struct Unhealthy {
    problem: String,
    retry_at: Instant,
}

const ENGINE_RETRY: Duration = Duration::from_secs(60);
/// Reap at most this often: reaping lists `in_progress/` and reads claims.
const REAP_EVERY: Duration = Duration::from_secs(60);
const MAINTAIN_EVERY: Duration = Duration::from_secs(6 * 3600);

struct Worker {
    cfg: Config,
    repo: GridRepo,
    identity: Identity,
    engine: Arc<dyn Engine>,
    outbox: Outbox,
    notifier: Notifier,
    events: Sender<Event>,
    running: BTreeMap<Id, Running>,
    /// Claimed ahead, to start the moment a slot frees: the next task starts
    /// without waiting for a push, and the push of the last result overlaps
    /// its run.
    waiting: VecDeque<ClaimedTask>,
    unhealthy: Option<Unhealthy>,
    started_at: String,
    completed: u64,
    failed: u64,
    draining_since: Option<Instant>,
    queue_empty_at: Option<String>,
    next_poll: Instant,
    next_heartbeat: Instant,
    next_reap: Instant,
    next_maintenance: Instant,
    remote_ok: bool,
    /// A commit pushed with no answer while the grid was unreachable, and
    /// what it would mean if it landed.
    uncertain: Option<(String, SyncReport)>,
    /// After a failed sync, no sync (for any reason) before this.
    retry_sync_at: Instant,
    /// Measured sync and task times: how far ahead to claim.
    pace: Pace,
    /// The last look at the queue left tasks in it: claiming ahead takes
    /// nothing another idle node would have started at once.
    queue_deep: bool,
    /// When the oldest result in the outbox was put there.
    results_since: Option<Instant>,
    signals_seen: Arc<std::sync::atomic::AtomicUsize>,
    /// What the status page shows; see `publish`.
    board: Board,
}

pub fn run(cfg: Config, opts: RunOptions) -> Result<(), WorkerError> {
    let engine: Arc<dyn Engine> = Arc::from(sandbox::engine_from_config(&cfg.sandbox)?);
    let node = cfg.node_id.clone();
    tracing::info!(node_id = %node, engine = %engine.name(), repo = %cfg.repo_url, "starting");

    // Refuse outright what configuration must fix (no engine, limits that
    // would be ignored); start unhealthy on what may pass (engine down).
    let mut unhealthy = None;
    match engine.check() {
        Ok(()) => {}
        Err(
            e @ (sandbox::SandboxError::NoEngine | sandbox::SandboxError::LimitsNotEnforced { .. }),
        ) => {
            return Err(e.into());
        }
        Err(e) => {
            tracing::error!(error = %e, "engine check failed; starting unhealthy");
            unhealthy = Some(Unhealthy {
                problem: e.to_string(),
                retry_at: Instant::now() + ENGINE_RETRY,
            });
        }
    }
    match engine.remove_leftovers(node.as_str()) {
        Ok(0) => {}
        Ok(n) => tracing::warn!(count = n, "removed containers left by an earlier run"),
        Err(e) => tracing::warn!(error = %e, "could not look for leftover containers"),
    }

    let git = Git::new(
        &cfg.git_binary,
        cfg.state_dir.join("grid.git"),
        cfg.git_timeout,
    )
    .with_env(cfg.access.env())
    .with_env(Identity::for_node(node.as_str()).env());
    let repo = GridRepo::open_or_init(git, &cfg.repo_url, &cfg.branch)?;
    let outbox = Outbox::open(cfg.state_dir.join("outbox"))?;
    let results_since = (!outbox.is_empty()).then(Instant::now);

    // The status page: its own thread. A port already taken costs the page,
    // not the worker's work (`status::server::start`).
    let board = Board::new(status::Snapshot::new(
        node.as_str(),
        engine.name(),
        status::stuck_after(cfg.pull_interval, cfg.git_timeout),
    ));
    if let Some(addr) = cfg.status_listen {
        status::server::start(addr, cfg.status_listen_is_default, board.clone());
    }

    let (tx, rx) = channel();
    let signals_seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    spawn_signal_thread(tx.clone(), signals_seen.clone())?;

    let now = Instant::now();
    let mut w = Worker {
        identity: Identity::for_node(node.as_str()),
        cfg,
        repo,
        engine,
        outbox,
        notifier: Notifier::from_env(),
        events: tx,
        running: BTreeMap::new(),
        waiting: VecDeque::new(),
        unhealthy,
        started_at: time::format(time::now()),
        completed: 0,
        failed: 0,
        draining_since: None,
        queue_empty_at: None,
        next_poll: now,
        next_heartbeat: now,
        next_reap: now,
        next_maintenance: now + MAINTAIN_EVERY,
        remote_ok: false,
        uncertain: None,
        retry_sync_at: now,
        pace: Pace::default(),
        queue_deep: false,
        results_since,
        signals_seen,
        board,
    };
    match w.register(&rx) {
        // Told to stop while waiting for the grid: a clean stop, not a failure.
        Err(WorkerError::StoppedBeforeReady) => return Ok(()),
        other => other?,
    }
    w.main_loop(&rx, &opts);
    Ok(())
}

fn spawn_signal_thread(
    tx: Sender<Event>,
    seen: Arc<std::sync::atomic::AtomicUsize>,
) -> Result<(), WorkerError> {
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(WorkerError::Signals)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                seen.fetch_add(1, Ordering::SeqCst);
                tracing::info!(signal = sig, "signal received");
                if tx.send(Event::Signal).is_err() {
                    break;
                }
            }
        })
        .map_err(WorkerError::Signals)?;
    Ok(())
}

impl Worker {
    fn node(&self) -> &Id {
        &self.cfg.node_id
    }

    fn status(&self) -> NodeStatus {
        if self.draining_since.is_some() {
            NodeStatus::Draining
        } else if self.unhealthy.is_some() {
            NodeStatus::Unhealthy
        } else if self.running.is_empty() {
            NodeStatus::Idle
        } else {
            NodeStatus::Busy
        }
    }

    fn record(&self, status: NodeStatus) -> NodeRecord {
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
            running: self.running.keys().map(Id::to_string).collect(),
            tasks_completed: self.completed,
            tasks_failed: self.failed,
            problem: self.unhealthy.as_ref().map(|u| u.problem.clone()),
        }
    }

    fn orphan_policy(&self) -> OrphanPolicy {
        OrphanPolicy {
            stale_after: chrono::Duration::from_std(self.cfg.stale_after)
                .unwrap_or(chrono::Duration::MAX),
            max_attempts: self.cfg.max_attempts,
        }
    }

    /// Register (first heartbeat, pending outbox, own leftover claims) before
    /// telling systemd we are ready. The remote may be down at boot: keep
    /// trying, answering the watchdog and signals meanwhile.
    fn register(&mut self, rx: &Receiver<Event>) -> Result<(), WorkerError> {
        let mut delay = Duration::from_secs(1);
        loop {
            // The registration claims too (as an idle node would on its
            // first poll): one commit fewer per start, where every node of
            // a grid may be starting at once.
            let want = self.free_claims();
            match self.sync(want, true, true) {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_s = delay.as_secs(), "cannot reach the grid yet");
                    self.notifier.status(&format!("waiting for the grid: {e}"));
                }
            }
            self.notifier.watchdog();
            if let Ok(Event::Signal) = rx.recv_timeout(delay) {
                self.notifier.stopping("stopped before registering");
                return Err(WorkerError::StoppedBeforeReady);
            }
            delay = (delay * 2).min(self.cfg.pull_interval.max(Duration::from_secs(1)) * 6);
        }
        let status = self.status_line();
        self.notifier.ready(&status);
        tracing::info!(node_id = %self.node(), "registered; ready");
        Ok(())
    }

    fn main_loop(&mut self, rx: &Receiver<Event>, opts: &RunOptions) {
        loop {
            self.notifier.watchdog();
            self.check_engine_recovery();

            let now = Instant::now();
            if let Some(since) = self.draining_since
                && now.duration_since(since) > self.cfg.drain_timeout
            {
                self.cancel_all("the drain timeout passed");
            }

            self.give_back_surplus();
            let free = self.free_claims();
            let pending = self.outbox_len();
            let flush = self.flush_due(now);
            // Claims only once nothing claimed is left to start: a batch is
            // claimed in one commit, not topped up one task per commit.
            let want = if free > 0 && self.waiting.is_empty() && (now >= self.next_poll || flush) {
                free
            } else {
                0
            };
            let heartbeat = now >= self.next_heartbeat;
            let reap = now >= self.next_reap && self.draining_since.is_none();
            let due = flush || want > 0 || heartbeat || reap;
            if due && now >= self.retry_sync_at {
                match self.sync(want, heartbeat, reap) {
                    Ok(report) => {
                        if want > 0 {
                            // Poll again at once while the queue has work and
                            // we have room; otherwise at the interval.
                            // Also at once after putting tasks back in the
                            // queue: they were not there to claim.
                            let more = report.queue_left > 0 && report.claimed.len() == want;
                            self.next_poll = if more || report.requeued > 0 {
                                now
                            } else {
                                now + self.cfg.pull_interval
                            };
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, waiting = pending, "sync failed; results stay in the outbox");
                        self.next_poll = now + self.cfg.pull_interval;
                        // A due heartbeat or reap stays due: without this,
                        // the loop would retry every 10 ms while the remote
                        // is away.
                        self.retry_sync_at = now + e.retry_after(self.cfg.pull_interval);
                    }
                }
            }
            let status = self.status_line();
            self.notifier.status(&status);

            let idle = self.running.is_empty() && self.waiting.is_empty() && self.outbox_len() == 0;
            // Stopping: once nothing runs, shutdown() makes the last push;
            // a remote that is away then must not hold the stop hostage.
            if self.draining_since.is_some() && self.running.is_empty() {
                break;
            }
            if opts.drain && idle && self.remote_ok && self.queue_empty_at.is_some() {
                tracing::info!("queue empty and nothing pending; --drain ends here");
                break;
            }

            // Last thing before waiting: the page shows this round's claims.
            self.publish();
            let wait = self.next_wake().saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while let Ok(event) = rx.try_recv() {
                self.handle(event);
            }
        }
        self.shutdown();
    }

    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let mut at = self.next_heartbeat.min(self.next_reap);
        if self.free_claims() > 0 {
            at = at.min(self.next_poll);
        }
        if self.flush_due(now) {
            at = now;
        } else if let Some(since) = self.results_since
            && self.outbox_len() > 0
        {
            at = at.min(since + pace::MAX_RESULT_DELAY);
        }
        // Everything above is a reason to sync, and none may come before
        // the retry time a failed sync set.
        at = at.max(self.retry_sync_at);
        if let Some(every) = self.notifier.watchdog_every() {
            at = at.min(now + every);
        }
        if let Some(u) = &self.unhealthy {
            at = at.min(u.retry_at);
        }
        if self.draining_since.is_some() {
            at = at.min(now + Duration::from_secs(1));
        }
        // Claims held ahead become surplus once a running task shows itself
        // long: look then (give_back_surplus).
        if let Some(after) = self
            .pace
            .surplus_after(self.waiting.len(), self.cfg.concurrency)
            && let Some(first) = self.first_started()
        {
            // A little past the point, so rounding cannot wake it early
            // (and again, and again).
            at = at.min(first + after + Duration::from_millis(10));
        }
        at.max(now + Duration::from_millis(10))
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Finished { task, report } => self.finished(task, report),
            Event::Signal => {
                let n = self.signals_seen.load(Ordering::SeqCst);
                if self.draining_since.is_none() && n <= 1 {
                    tracing::info!(
                        running = self.running.len(),
                        "stopping: no new claims; letting running tasks finish"
                    );
                    self.draining_since = Some(Instant::now());
                    self.give_back_waiting();
                    self.notifier.stopping("draining");
                    self.notifier
                        .extend_timeout(self.cfg.drain_timeout + Duration::from_secs(30));
                } else {
                    tracing::warn!(
                        "second signal: stopping now; running tasks go back to the queue"
                    );
                    self.draining_since.get_or_insert_with(Instant::now);
                    self.give_back_waiting();
                    self.cancel_all("the worker was told to stop now");
                }
            }
        }
    }

    fn cancel_all(&mut self, why: &str) {
        for (id, r) in &self.running {
            if !r.cancel.swap(true, Ordering::SeqCst) {
                tracing::warn!(task_id = %id, reason = why, "cancelling task");
            }
        }
    }

    fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Push the outbox on this turn? See `pace::flush_results`.
    fn flush_due(&self, now: Instant) -> bool {
        let oldest = self
            .results_since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
        pace::flush_results(pace::Flush {
            pending: self.outbox_len(),
            waiting: self.waiting.len(),
            running: self.running.len(),
            claiming: self.free_claims() > 0 && now >= self.next_poll,
            oldest,
            stopping: self.draining_since.is_some(),
        })
    }

    /// One sync transaction; updates schedules and the outbox from its report.
    fn sync(
        &mut self,
        want: usize,
        heartbeat: bool,
        reap: bool,
    ) -> Result<SyncReport, txn::TxnError> {
        self.sync_as(want, heartbeat, reap, self.status(), &TxnPolicy::default())
    }

    fn sync_as(
        &mut self,
        want: usize,
        heartbeat: bool,
        reap: bool,
        status: NodeStatus,
        txn_policy: &TxnPolicy,
    ) -> Result<SyncReport, txn::TxnError> {
        self.resolve_uncertain()?;
        let outbox = self.outbox.entries().to_vec();
        let held: BTreeSet<Id> = self
            .running
            .keys()
            .cloned()
            .chain(self.waiting.iter().map(|c| c.task.task_id.clone()))
            .chain(outbox.iter().map(|e| e.task_id.clone()))
            .collect();
        let record = self.record(status);
        let policy = self.orphan_policy();
        // A task claimed ahead may wait for a slot: its deadline allows for
        // that, so that a healthy node's queued claim is never reaped.
        let start_now = self.free_slots();
        let wait = if want > start_now {
            self.longest_wait()
        } else {
            Duration::ZERO
        };
        let grace = chrono::Duration::from_std(self.cfg.claim_grace + wait).unwrap_or_default();
        let queue_empty_at = self.queue_empty_at.clone();
        // Not able to size a batch by time yet, and idle: a share of a
        // shallow queue, a batch of a deep one (pace::first_claim).
        let share_up_to = if want > 0
            && !self.pace.measured()
            && self.running.is_empty()
            && self.waiting.is_empty()
        {
            self.cfg.concurrency as usize + self.cfg.claim_ahead as usize
        } else {
            0
        };
        // The outbox is due only because a claim is (pace::flush_results): if
        // the queue turns out empty, the result of the running task is near.
        let defer_results = !self.running.is_empty()
            && self.draining_since.is_none()
            && self
                .results_since
                .is_some_and(|since| since.elapsed() < pace::MAX_RESULT_DELAY);
        let started = Instant::now();
        let result = txn::run(&self.repo, &self.identity, txn_policy, |t| {
            let req = SyncRequest {
                node: &self.cfg.node_id,
                now: time::now(),
                outbox: &outbox,
                want_claims: want,
                start_now,
                reap,
                held: &held,
                heartbeat,
                record: &record,
                rules: &self.cfg.task_rules,
                policy: &policy,
                claim_grace: grace,
                queue_empty_at: queue_empty_at.as_ref(),
                share_up_to,
                defer_results,
            };
            sync::plan(t, &req)
        });
        let elapsed = started.elapsed();
        if let Err(e) = &result {
            let lost = match e {
                txn::TxnError::Contended { rounds, .. } => *rounds,
                _ => 0,
            };
            self.board.sync_done(elapsed, false, lost, 0, false);
        }
        let outcome = result.inspect_err(|_| self.remote_ok = false)?;
        self.remote_ok = true;
        let report = match outcome {
            TxnOutcome::Committed {
                commit,
                value,
                rejections,
            } => {
                tracing::debug!(elapsed_ms = elapsed.as_millis() as u64, rejections, %commit, "sync");
                self.pace.sync_took(elapsed);
                let (claimed, hb) = (value.claimed.len(), value.wrote_heartbeat);
                self.board.sync_done(elapsed, true, rejections, claimed, hb);
                value
            }
            TxnOutcome::Unchanged {
                value, rejections, ..
            } => {
                tracing::debug!(
                    elapsed_ms = elapsed.as_millis() as u64,
                    rejections,
                    "sync: nothing to change"
                );
                self.pace.sync_took(elapsed);
                self.board.sync_done(elapsed, true, rejections, 0, false);
                value
            }
            TxnOutcome::Uncertain {
                commit,
                value,
                error,
            } => {
                tracing::warn!(%commit, %error, "push outcome unknown and the grid unreachable; will check once it is back");
                self.remote_ok = false;
                self.board.sync_done(elapsed, false, 0, 0, false);
                self.uncertain = Some((commit, value));
                return Err(txn::TxnError::Git(error));
            }
        };
        let now = Instant::now();
        if reap {
            self.next_reap = now + REAP_EVERY.min(self.cfg.stale_after / 2);
        }
        if want > 0 {
            self.queue_empty_at =
                (report.queue_left == 0 && report.claimed.is_empty() && report.invalid.is_empty())
                    .then(|| report.tip.clone())
                    .flatten();
            self.queue_deep = report.queue_left > 0;
        }
        self.absorb(&report);
        // Not with a push of unknown outcome: maintenance may cut history
        // that telling whether it landed needs.
        if now >= self.next_maintenance && self.running.is_empty() && self.uncertain.is_none() {
            self.next_maintenance = now + MAINTAIN_EVERY;
            if let Err(e) = self.repo.maintain() {
                tracing::warn!(error = %e, "git maintenance failed");
            }
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
                self.absorb(&report);
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

    /// Act on a sync that landed: clear delivered results from the outbox,
    /// start what was claimed, and log what the grid now says.
    fn absorb(&mut self, report: &SyncReport) {
        if report.requeued > 0 || !report.reaped.is_empty() {
            // This commit put tasks back in the queue: it is not empty, and
            // a node with room looks at it again.
            self.queue_empty_at = None;
            self.next_poll = Instant::now();
        }
        if report.wrote_heartbeat {
            self.next_heartbeat = Instant::now() + self.cfg.heartbeat_interval;
        }
        for id in &report.landed {
            if let Err(e) = self.outbox.remove(id) {
                tracing::error!(task_id = %id, error = %e, "landed but could not clear from the outbox");
            }
        }
        for id in &report.superseded {
            tracing::warn!(task_id = %id, "result not pushed: the task was reaped and taken by another node; kept in outbox/superseded");
            if let Err(e) = self.outbox.supersede(id) {
                tracing::error!(task_id = %id, error = %e, "cannot move superseded result aside");
            }
        }
        if self.outbox.is_empty() {
            self.results_since = None;
        }
        for (name, reason) in &report.invalid {
            tracing::warn!(entry = %name, error = %reason, "invalid task moved to tasks/failed");
        }
        for (task, what) in &report.reaped {
            tracing::warn!(task_id = %task, action = %what, "orphaned claim reaped");
        }
        for c in &report.claimed {
            tracing::info!(task_id = %c.task.task_id, attempt = c.claim.attempt, "claimed");
            self.waiting.push_back(c.clone());
        }
        if self.draining_since.is_some() {
            // Claimed by a push we only now know landed, while stopping:
            // give it back rather than start it.
            self.give_back_waiting();
        }
        self.start_waiting();
    }

    /// When the task running longest started: a lower bound on how long
    /// tasks take, before any has been timed (pace::Pace::ahead_at_most).
    fn first_started(&self) -> Option<Instant> {
        self.running.values().map(|r| r.started).min()
    }

    /// Slots free to start a task now.
    fn free_slots(&self) -> usize {
        (self.cfg.concurrency as usize).saturating_sub(self.running.len() + self.waiting.len())
    }

    /// Tasks to claim on the next sync: free slots, plus as many ahead as
    /// `pace` says (at most `claim_ahead`) while busy or while the queue is
    /// deep. Not while idle at a shallow queue: an idle node that claimed
    /// ahead would hold a task another idle node could start at once.
    fn free_claims(&self) -> usize {
        if self.draining_since.is_some() || self.unhealthy.is_some() {
            return 0;
        }
        let ahead = if self.running.is_empty() && !self.queue_deep {
            0
        } else {
            self.pace.ahead(self.cfg.concurrency, self.cfg.claim_ahead)
        };
        (self.cfg.concurrency as usize + ahead)
            .saturating_sub(self.running.len() + self.waiting.len())
    }

    /// How long a task claimed now may wait for a slot, at most: until the
    /// running task closest to its timeout hits it, after those already
    /// waiting ran to theirs.
    fn longest_wait(&self) -> Duration {
        let soonest_slot = self
            .running
            .values()
            .map(|r| {
                Duration::from_secs(r.claimed.task.timeout_seconds)
                    .saturating_sub(r.started.elapsed())
            })
            .min()
            .unwrap_or_default();
        let queued: u64 = self.waiting.iter().map(|c| c.task.timeout_seconds).sum();
        soonest_slot + Duration::from_secs(queued)
    }

    fn start_waiting(&mut self) {
        while self.running.len() < self.cfg.concurrency as usize {
            let Some(next) = self.waiting.pop_front() else {
                break;
            };
            self.start(next);
        }
    }

    /// Hand back claims beyond what this node can run soon (a share taken
    /// before its first task was timed, of tasks that turned out long): the
    /// requeues ride with the next sync.
    fn give_back_surplus(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let running_for = self.first_started().map_or(Duration::ZERO, |t| t.elapsed());
        let Some(ahead) =
            self.pace
                .ahead_at_most(running_for, self.cfg.concurrency, self.cfg.claim_ahead)
        else {
            return;
        };
        let n = pace::surplus(self.waiting.len(), ahead);
        if n == 0 {
            return;
        }
        tracing::info!(
            count = n,
            keep = self.waiting.len() - n,
            "giving back claims this node cannot start soon"
        );
        let keep = self.waiting.len() - n;
        for c in self.waiting.split_off(keep) {
            let reason = format!("{} claimed more than it can start soon", self.node());
            self.put_outbox(&c, Finish::Requeue { reason });
        }
    }

    /// Hand claimed-ahead tasks back to the queue (the node is stopping).
    fn give_back_waiting(&mut self) {
        for c in std::mem::take(&mut self.waiting) {
            let reason = format!("{} stopped before starting it", self.node());
            self.put_outbox(&c, Finish::Requeue { reason });
        }
    }

    fn start(&mut self, claimed: ClaimedTask) {
        let id = claimed.task.task_id.clone();
        let job = Job {
            node_id: self.node().to_string(),
            task_id: id.to_string(),
            attempt: claimed.claim.attempt,
            script: claimed.task.script.clone(),
            timeout: Duration::from_secs(claimed.task.timeout_seconds),
        };
        let cancel: CancelFlag = Arc::new(AtomicBool::new(false));
        let engine = self.engine.clone();
        let events = self.events.clone();
        let flag = cancel.clone();
        let task = id.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("task-{id}"))
            .spawn(move || {
                let report = engine.run(&job, &flag);
                let _ = events.send(Event::Finished { task, report });
            });
        match spawned {
            Ok(_) => {
                tracing::info!(task_id = %id, timeout = claimed.task.timeout_seconds, "running");
                self.running.insert(
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

    fn finished(&mut self, task: Id, report: RunReport) {
        let Some(running) = self.running.remove(&task) else {
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
        let finish = match &report.outcome {
            Outcome::EngineFailed(problem) => {
                tracing::error!(task_id = %task, error = %problem, "engine failure; requeueing the task, node unhealthy");
                self.unhealthy = Some(Unhealthy {
                    problem: problem.clone(),
                    retry_at: Instant::now() + ENGINE_RETRY,
                });
                Finish::Requeue {
                    reason: format!("engine failure on {node}: {problem}"),
                }
            }
            Outcome::Cancelled => {
                tracing::warn!(task_id = %task, "task cancelled; requeueing");
                Finish::Requeue {
                    reason: format!("{node} stopped before the task finished"),
                }
            }
            outcome => {
                let (status, code, error) = match outcome {
                    Outcome::Exited(0) => (ResultStatus::Completed, Some(0), None),
                    Outcome::Exited(c) => (ResultStatus::Failed, Some(*c), None),
                    _ => (
                        ResultStatus::Timeout,
                        None,
                        Some(format!(
                            "killed after its timeout of {} s",
                            claimed.task.timeout_seconds
                        )),
                    ),
                };
                if status.is_success() {
                    self.completed += 1;
                } else {
                    self.failed += 1;
                }
                tracing::info!(task_id = %task, %status, exit_code = code, duration_ms = report.duration.as_millis() as u64, "task finished");
                Finish::Result {
                    result: TaskResult {
                        task_id: task.to_string(),
                        node_id: node,
                        exit_code: code,
                        stdout: report.stdout,
                        stderr: report.stderr,
                        timestamp: time::format(time::now()),
                        status,
                        started_at: Some(time::format(report.started_at)),
                        duration_ms: Some(report.duration.as_millis() as u64),
                        attempt: claimed.claim.attempt,
                        truncated: report.truncated,
                        error,
                    },
                }
            }
        };
        self.put_outbox(&claimed, finish);
        // Start what was claimed ahead before pushing this result: the push
        // then overlaps the next run.
        self.start_waiting();
    }

    fn put_outbox(&mut self, claimed: &ClaimedTask, finish: Finish) {
        let entry = OutboxEntry {
            task_id: claimed.task.task_id.clone(),
            attempt: claimed.claim.attempt,
            claimed_at: claimed.claim.claimed_at.clone(),
            finish,
        };
        self.results_since.get_or_insert_with(Instant::now);
        if let Err(e) = self.outbox.put(&entry) {
            // Without a durable copy the result would be lost on a crash;
            // without even that, it must not be lost now: keep going and
            // let the orphan rule requeue the task.
            tracing::error!(task_id = %entry.task_id, error = %e, "cannot write the outbox; the claim will be reaped and the task rerun");
        }
    }

    fn check_engine_recovery(&mut self) {
        let Some(u) = &self.unhealthy else { return };
        if Instant::now() < u.retry_at {
            return;
        }
        match self.engine.check() {
            Ok(()) => {
                tracing::info!("engine healthy again");
                self.unhealthy = None;
                self.next_heartbeat = Instant::now();
            }
            Err(e) => {
                self.unhealthy = Some(Unhealthy {
                    problem: e.to_string(),
                    retry_at: Instant::now() + ENGINE_RETRY,
                });
            }
        }
    }

    /// Publish the loop's state to the status page; also the loop's sign of
    /// life for `/healthz`.
    fn publish(&self) {
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
                .running
                .values()
                .map(|r| status::RunningTask {
                    task_id: r.claimed.task.task_id.to_string(),
                    attempt: r.claimed.claim.attempt,
                    claimed_at: r.claimed.claim.claimed_at.clone(),
                    timeout_seconds: r.claimed.task.timeout_seconds,
                })
                .collect();
            s.outbox = self.outbox.len();
            s.loop_alive_at = Some(time::format(time::now()));
        });
    }

    fn status_line(&self) -> String {
        let pending = self.outbox_len();
        let mut s = match (&self.unhealthy, self.draining_since) {
            (_, Some(_)) => format!("draining: {} running", self.running.len()),
            (Some(u), None) => format!("unhealthy: {}", u.problem),
            (None, None) if self.running.is_empty() => "idle".to_owned(),
            (None, None) => format!(
                "running {}",
                self.running
                    .keys()
                    .map(Id::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        if pending > 0 {
            s.push_str(&format!("; {pending} result(s) waiting to be pushed"));
        }
        if !self.remote_ok {
            s.push_str("; grid unreachable");
        }
        s
    }

    /// Push what is pending and mark the node stopped. Bounded: a remote
    /// that is away keeps the outbox for the next start.
    fn shutdown(&mut self) {
        self.draining_since.get_or_insert_with(Instant::now);
        self.notifier.stopping("stopping: pushing pending results");
        // As many rounds as any sync: a grid whose nodes all stop at once
        // (a fleet restarted) contends like one that starts at once, and
        // this push carries the last results. A remote that is away fails
        // the first round; only contention takes more.
        let policy = TxnPolicy::default();
        match self.sync_as(0, true, false, NodeStatus::Stopped, &policy) {
            Ok(_) if self.outbox.is_empty() => tracing::info!(node_id = %self.node(), "stopped"),
            Ok(_) => tracing::warn!(
                waiting = self.outbox.len(),
                "stopped with results still in the outbox"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "could not push on the way out; the outbox keeps it for the next start")
            }
        }
    }
}
