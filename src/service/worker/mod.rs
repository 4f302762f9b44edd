//! The worker: start-up, then the main loop. Synchronous and small: git and
//! the engine are blocking calls with timeouts; tasks run on their own
//! threads and report back over a channel, so the loop stays free to
//! heartbeat, answer the watchdog and hear signals while a task runs.
//!
//! - `mod.rs`      start-up: engine, clone, status page, signals, register
//! - `main_loop`   the loop itself: one turn, the events, the stop
//! - `schedule`    when a sync is due and how long to sleep (pure)
//! - `load`        what the loop has room for, and when it must be free
//! - `slots`       what runs and what waits; a run becomes a result
//! - `relay`       a run's thread starts the next claim while a sync blocks
//! - `tasks`       starting and finishing tasks, giving claims back
//! - `handed_back` claims handed to peers, until their requeue lands
//! - `look`        higher work at a free slot: look, take the start back
//! - `exchange`    one sync with the grid, and acting on its report
//! - `report`      what the node says of itself: record, STATUS=, page
//! - `signals`     the events that wake the loop
//! - `attest`      trust: the node key and the gate; signed results
//! - `kept*`       what a node keeps between runs: its pace, its budget
//! - `lock`        one worker a state directory
//! - `setup`       what start-up puts together; one worker a node id

mod attest;
mod exchange;
mod handed_back;
mod kept_budget;
mod kept_pace;
mod load;
mod lock;
mod look;
mod main_loop;
mod mend;
mod relay;
mod report;
mod schedule;
mod setup;
mod signals;
mod slots;
mod tasks;
mod upkeep;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use ssh_key::PublicKey;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::escape::Untrusted;
use crate::git::txn::{Identity, TxnPolicy};
use crate::git::{Git, GridRepo};
use crate::grid::Id;
use crate::grid::schedule::NodeLabels;
use crate::sandbox::{self, Engine};
use crate::service::budget::{Budget, Paused};
use crate::service::notify::Notifier;
use crate::service::outbox::Outbox;
use crate::service::pace::Pace;
use crate::service::sync::{Gate, SyncReport};
use crate::status::{self, Board};
use crate::time;
use crate::trust::Signer;

use schedule::{Due, Schedule};
use signals::{Event, SignalCount};
use slots::Slots;

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
    /// `[trust]` cannot be applied (the node key, the state directory).
    #[error("trust: {0}")]
    Trust(String),
    /// Another worker runs on this state directory, or it cannot be locked.
    #[error(transparent)]
    StateLock(#[from] lock::LockError),
}

impl WorkerError {
    /// Only an operator can end it (another worker on the same state
    /// directory): as a configuration error, restarting cannot help.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            WorkerError::StateLock(
                lock::LockError::InUse { .. } | lock::LockError::NotADirectory { .. }
            )
        )
    }
}

/// What the last look at the grid saw (a claim, or a look while holding
/// claims not started).
#[derive(Debug, Clone)]
struct View {
    queue_left: usize,
    idle_peer_slots: u32,
    /// When the slots of the peers that could take this node's claims run
    /// dry, in seconds from the look, soonest first.
    peers_dry: Vec<crate::service::share::PeerSlot>,
    live_peer_slots: u32,
    /// The best level (priority with age) queued that this node serves.
    top_queued: Option<u8>,
}

impl View {
    fn of(report: &SyncReport) -> View {
        View {
            queue_left: report.queue_left,
            idle_peer_slots: report.idle_peer_slots,
            peers_dry: report.peers_dry.clone(),
            live_peer_slots: report.live_peer_slots,
            top_queued: report.top_queued,
        }
    }
}

/// Why the engine is not used for now, and when to look again.
struct Unhealthy {
    problem: String,
    retry_at: Instant,
}

const ENGINE_RETRY: Duration = Duration::from_secs(60);

struct Worker {
    cfg: Config,
    repo: GridRepo,
    identity: Identity,
    engine: Arc<dyn Engine>,
    outbox: Outbox,
    /// Which claims its task threads started (`service::started`), and
    /// what its last run started, until its own leftovers are reaped.
    started: Arc<crate::service::started::StartLog>,
    started_before: Option<crate::service::started::Started>,
    notifier: Notifier,
    events: Sender<Event>,
    /// Set by a task's thread when it ends: a sync losing races gives up
    /// then, if a claimed task waits to start.
    nudge: Arc<std::sync::atomic::AtomicBool>,
    /// The claims a run's thread may start while the loop is in a sync.
    relay: relay::Relay,
    signals: SignalCount,
    board: Board,
    slots: Slots,
    schedule: Schedule,
    /// Measured sync and task times: how far ahead to claim.
    pace: Pace,
    unhealthy: Option<Unhealthy>,
    draining_since: Option<Instant>,
    started_at: String,
    completed: u64,
    failed: u64,
    /// Tasks ended when the node last gave its free memory back (at idle).
    ended_at_trim: u64,
    /// The tip at which the queue was last seen empty: a poll that finds
    /// the same tip need not list it again.
    queue_empty_at: Option<String>,
    /// Claims live peers hold, not started, that this node serves (its last
    /// look's): `--drain` waits while there are any.
    peers_unstarted: usize,
    /// A slot left free for what a result releases (`holds_slot_for`).
    slot_held: bool,
    /// The last look at the queue left tasks in it: claiming ahead takes
    /// nothing another idle node would have started at once.
    queue_deep: bool,
    /// Since when every sync has reached the grid (none: none has yet, or
    /// the last failed): a peer cannot write its record while the grid is
    /// away from it either (`SyncRequest::reached_since`).
    reached_since: Option<crate::time::Timestamp>,
    /// Whose task it claimed last, for submitters' turns (`SyncRequest::turn_after`).
    last_submitter: Option<Option<crate::grid::Id>>,
    /// A sync has failed since the start (`SyncRequest::been_away`).
    been_away: bool,
    /// What the last look at the queue and the peers saw.
    last_view: Option<View>,
    /// The peers' node records read so far, by blob id.
    records: std::cell::RefCell<crate::service::sync::RecordCache>,
    /// A commit pushed with no answer while the grid was unreachable, and
    /// what it would mean if it landed.
    uncertain: Option<(String, SyncReport)>,
    /// What this node serves: its configured labels and the detected ones.
    labels: NodeLabels,
    /// Its volunteer's limits, and the tasks of the last hour.
    budget: Budget,
    /// When what the budget counts was last kept for a restart.
    budget_kept_at: Option<Instant>,
    /// Why it takes no work now, as last told (record, STATUS=, page).
    paused: Option<Paused>,
    /// For tasks claimed that run after others: the results to give them
    /// as inputs (task -> (parent, blob)).
    inputs: std::collections::BTreeMap<Id, Vec<(Id, String)>>,
    /// Tasks it holds that others wait for, as the last sync saw, with
    /// their level then.
    awaited: std::collections::BTreeMap<Id, u8>,
    /// A task ended with claims waiting, and the slot started these: look
    /// at the queue right away (`Worker::look_at_free_slot`).
    look_at_slot: Option<Vec<Id>>,
    /// The starts task threads made through the relay in the last sync:
    /// blind to what it brought, taken back for higher work it claimed
    /// (`Worker::take_back_recent_starts`).
    relayed: Vec<Id>,
    /// The level above its claims that the last look before a start saw
    /// and could not claim: not looked for again at every start.
    unclaimable_top: Option<u8>,
    /// The inbox as the last look before a start that read it found it
    /// (`QueueAt::inbox_key`): not read again at every start.
    inbox_looked: Option<u64>,
    /// `[trust]` in warn or enforce: what this node may claim.
    gate: Option<RefCell<Gate>>,
    /// This node's key and grid: signs its results.
    signer: Option<Signer>,
    /// This node's public key, for its record.
    node_key: Option<PublicKey>,
    /// The policy version this node's key was last checked against.
    key_checked_at: Option<u64>,
    /// In `enforce`, why the policy does not count its key: it claims nothing.
    key_refused: Option<String>,
    /// For each task this node holds, the commit that pushed its claim.
    claim_commits: HashMap<Id, String>,
    /// Claims handed to peers whose requeue has not landed: a free slot
    /// with nothing else to start takes them back (`handed_back`).
    handed_back: Vec<handed_back::HandedBack>,
    /// Claims peers made for this node that it started and has not
    /// answered yet (PROTOCOL.md, Assigned claims).
    unanswered: std::collections::BTreeSet<Id>,
    /// Since when `unanswered` has held something (`starved`).
    answers_since: Option<Instant>,
    /// Syncs in a row that lost rounds and landed nothing (`starved`).
    lost_syncs: u32,
    /// Who the claim files name, read so far, by blob id.
    claims_seen: RefCell<crate::service::sync::ClaimCache>,
    /// Peers' published outboxes with nothing left to carry, by commit.
    published_seen: RefCell<crate::service::sync::PublishedCache>,
    /// Registered: the node has seen the grid once, with the peers that
    /// were there. Until then it claims only its free slots (see
    /// `register`).
    registered: bool,
    /// Its id's record is still to be read before registering (`setup`):
    /// `Some(had_clone)`, whether the state directory held a clone before
    /// this start.
    id_to_check: Option<bool>,
    /// The clone was made afresh after damage, and no sync has landed on
    /// it yet (`mend`).
    clone_fresh: bool,
    /// Registering, until when it may stay out of a drain its peers cover
    /// (`share::stays_out`) rather than push its registration: a bound, so
    /// that a long drain does not keep it unregistered.
    join_by: Option<Instant>,
}

/// A node stays out of a drain its peers cover for at most this long
/// before it registers anyway.
const STAY_OUT_AT_MOST: Duration = Duration::from_secs(60);

pub fn run(cfg: Config, opts: RunOptions) -> Result<(), WorkerError> {
    crate::service::heap::limit_arenas();
    // Before anything is touched: a second worker here must not remove
    // the first one's containers, nor requeue its claims.
    let _state_lock = lock::take(&cfg.state_dir)?;
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

    let identity = Identity::for_node(node.as_str());
    let access = setup::worker_access(&cfg);
    let git = Git::new(
        &cfg.git_binary,
        cfg.state_dir.join("grid.git"),
        cfg.git_timeout,
    )
    .with_env(access.env())
    .with_env(identity.env());
    let had_clone = cfg.state_dir.join("grid.git").exists();
    lock::clear_git_locks(&cfg.state_dir.join("grid.git"));
    mend::remove_leftover(&cfg.state_dir);
    let repo = GridRepo::open_or_init(git, &cfg.repo_url, &cfg.branch)?.with_outboxes();
    let outbox = Outbox::open(cfg.state_dir.join("outbox"))?;
    let (started, started_before) = crate::service::started::StartLog::open(&cfg.state_dir);
    // Inputs written for tasks of an earlier run: those tasks are gone.
    match std::fs::remove_dir_all(cfg.state_dir.join("inputs")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(error = %e, "cannot remove the inputs of an earlier run")
        }
        _ => {}
    }
    let trust = attest::open(&cfg)?;

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
    let signals = signals::spawn_signal_thread(tx.clone()).map_err(WorkerError::Signals)?;

    let labels = setup::node_labels(&cfg, engine.name());
    tracing::info!(labels = %labels.labels.describe(), exclusive = %labels.exclusive.describe(), "routing");
    setup::say_zone(&cfg);
    let mut budget = Budget::new(cfg.scheduling.budget.clone());
    if budget.limits().counts_the_hour() {
        let runs = budget.restore(&kept_budget::load(&cfg.state_dir), time::now());
        tracing::info!(
            runs,
            "the limits count the runs of the last hour as the last run kept them"
        );
    }
    let mut pace = Pace::default();
    if let Some(task) = kept_pace::load(&cfg.state_dir, time::now()) {
        tracing::info!(
            task_secs = task,
            "tasks taken to last as the last run measured them"
        );
        pace.assume_task(task);
    }
    let now = Instant::now();
    let mut w = Worker {
        labels,
        budget,
        budget_kept_at: None,
        paused: None,
        inputs: Default::default(),
        awaited: Default::default(),
        look_at_slot: None,
        relayed: Vec::new(),
        unclaimable_top: None,
        inbox_looked: None,
        schedule: Schedule::starting(now, !outbox.is_empty()),
        slots: Slots::new(cfg.concurrency),
        cfg,
        repo,
        identity,
        engine,
        outbox,
        started: Arc::new(started),
        started_before,
        notifier: Notifier::from_env(),
        events: tx,
        nudge: Default::default(),
        relay: Default::default(),
        signals,
        board,
        pace,
        unhealthy,
        draining_since: None,
        started_at: time::format(time::now()),
        completed: 0,
        failed: 0,
        ended_at_trim: 0,
        queue_empty_at: None,
        peers_unstarted: 0,
        slot_held: false,
        queue_deep: false,
        reached_since: None,
        last_submitter: None,
        been_away: false,
        last_view: None,
        records: Default::default(),
        uncertain: None,
        gate: trust.gate,
        signer: trust.signer,
        node_key: trust.node_key,
        key_checked_at: None,
        key_refused: None,
        claim_commits: HashMap::new(),
        handed_back: Vec::new(),
        unanswered: Default::default(),
        answers_since: None,
        lost_syncs: 0,
        claims_seen: Default::default(),
        published_seen: Default::default(),
        registered: false,
        id_to_check: Some(had_clone),
        clone_fresh: false,
        join_by: None,
    };
    w.notifier.answer_during_git();
    let ran = match w.register(&rx) {
        // Told to stop while waiting for the grid: a clean stop, not a
        // failure. Results an earlier run left get one try to land (the
        // grid may be back by now); a remote still away keeps them.
        Err(WorkerError::StoppedBeforeReady) if w.outbox.is_empty() => Ok(()),
        Err(WorkerError::StoppedBeforeReady) => w.shutdown(),
        Err(e) => Err(e),
        Ok(()) => w.main_loop(&rx, &opts),
    };
    if let Some(shared) = &access.ssh_shared {
        shared.close();
    }
    ran
}

impl Worker {
    fn node(&self) -> &Id {
        &self.cfg.node_id
    }

    /// A sync could not reach the grid (or cannot tell whether its push
    /// landed): peers' silence counts again from the next one that does.
    fn lost_the_grid(&mut self) {
        self.reached_since = None;
        self.been_away = true;
    }

    /// Register (first heartbeat, pending outbox, own leftover claims) before
    /// telling systemd we are ready. The remote may be down at boot: keep
    /// trying, answering the watchdog and signals meanwhile.
    fn register(&mut self, rx: &Receiver<Event>) -> Result<(), WorkerError> {
        let mut delay = Duration::from_secs(1);
        self.join_by = Some(Instant::now() + STAY_OUT_AT_MOST);
        // A node at its limits says so in the record it registers with,
        // not in a commit of its own right after.
        self.check_budget();
        let mut stayed_out = false;
        let mut id_said = false;
        loop {
            if self.waited_for_id(rx, &mut id_said)? {
                continue;
            }
            // The registration claims too (as an idle node would on its
            // first poll): one commit fewer per start, where every node of
            // a grid may be starting at once. But only its free slots, not
            // a share: peers starting with it are not in `nodes/` yet, so
            // a share now would be all of a backlog.
            let due = Due {
                claims: self.room(),
                flush: true,
                heartbeat: true,
                reap: true,
                look: false,
                before_start: false,
            };
            self.note_registering();
            match self.sync(&due, &TxnPolicy::default()) {
                Ok(report) if report.stayed_out => {
                    // Its peers drain the queue sooner than it could join:
                    // it registers once they have, with no race for the ref.
                    if !stayed_out {
                        tracing::info!(
                            queued = report.queue_left,
                            "peers are draining a queue of short tasks; registering once they have"
                        );
                        stayed_out = true;
                    }
                    // What it saw of the queue was not its to claim: it
                    // joins, when it does, with its free slots only.
                    self.queue_deep = false;
                    self.notifier
                        .status("waiting to register: peers are draining a queue of short tasks");
                    self.wait_to_register(rx, self.cfg.pull_interval)?;
                    continue;
                }
                Ok(_) => {
                    self.registered = true;
                    self.join_by = None;
                    // Its leftovers reaped: the last run's starts are
                    // needed no more.
                    self.started_before = None;
                    self.started.rewrite(std::iter::empty(), true);
                    self.keep_registered();
                    break;
                }
                Err(e) => {
                    // Backing off as for an outage, but a grid that refused
                    // the credentials is asked once a minute at most, as
                    // once registered (`TxnError::retry_after`): a sweep
                    // counted 30 refused logins in 75 s from a node started
                    // with a wrong token.
                    let wait = e.retry_after(delay);
                    tracing::warn!(error = %Untrusted(&e), retry_in_s = wait.as_secs(), "cannot register with the grid yet");
                    self.notifier.status(&format!("waiting for the grid: {e}"));
                    self.wait_to_register(rx, wait)?;
                    delay = (delay * 2).min(self.cfg.pull_interval.max(Duration::from_secs(1)) * 6);
                    continue;
                }
            }
        }
        let status = self.status_line();
        self.notifier.ready(&status);
        tracing::info!(node_id = %self.node(), "registered; ready");
        Ok(())
    }

    /// Wait `wait` before trying to register again, answering the watchdog
    /// in steps (a minute is its interval in the unit) and stopping at a
    /// signal.
    fn wait_to_register(
        &mut self,
        rx: &Receiver<Event>,
        wait: Duration,
    ) -> Result<(), WorkerError> {
        let until = Instant::now() + wait;
        loop {
            self.notifier.watchdog();
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            if let Ok(Event::Signal) = rx.recv_timeout(left.min(Duration::from_secs(20))) {
                self.notifier.stopping("stopped before registering");
                return Err(WorkerError::StoppedBeforeReady);
            }
        }
    }
}
