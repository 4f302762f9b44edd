//! A sync request as a bare node makes it: nothing held, nothing running,
//! no share to take, no trust, no claims made for or by peers. The benchmarks and property tests that call
//! `service::sync::plan` directly start from this and override what they
//! are about (`SyncRequest { outbox: &o, ..node.request(1) }`).

use std::cell::RefCell;
use std::collections::BTreeSet;

use dgrid_worker::git::{Git, GridRepo, Txn};
use dgrid_worker::grid::orphan::OrphanPolicy;
use dgrid_worker::grid::schedule::NodeLabels;
use dgrid_worker::grid::{Id, NodeRecord, NodeStatus, TaskRules};
use dgrid_worker::service::sync::{
    self, ClaimCache, PublishedCache, RecordCache, SyncReport, SyncRequest,
};

pub struct PlainNode {
    pub node: Id,
    pub record: NodeRecord,
    pub rules: TaskRules,
    pub policy: OrphanPolicy,
    pub labels: NodeLabels,
    held: BTreeSet<Id>,
    records: RefCell<RecordCache>,
    claims_seen: RefCell<ClaimCache>,
    published_seen: RefCell<PublishedCache>,
}

impl PlainNode {
    pub fn new(node: &str) -> PlainNode {
        let node = Id::parse(node).unwrap();
        PlainNode {
            record: NodeRecord::new(node.clone(), NodeStatus::Idle, String::new()),
            node,
            rules: TaskRules::default(),
            policy: OrphanPolicy {
                stale_after: chrono::Duration::hours(1),
                max_attempts: 3,
                claim_grace: chrono::Duration::minutes(5),
            },
            labels: NodeLabels::default(),
            held: BTreeSet::new(),
            records: RefCell::default(),
            claims_seen: RefCell::default(),
            published_seen: RefCell::default(),
        }
    }

    /// Claim `want` tasks (none: just the heartbeat).
    pub fn request(&self, want: usize) -> SyncRequest<'_> {
        SyncRequest {
            node: &self.node,
            now: dgrid_worker::time::now(),
            outbox: &[],
            want_claims: want,
            start_now: want,
            reap: false,
            held: &self.held,
            started_before: None,
            heartbeat: want == 0,
            record: &self.record,
            rules: &self.rules,
            policy: &self.policy,
            claim_grace: chrono::Duration::minutes(5),
            queue_empty_at: None,
            share_up_to: 0,
            slots: 1,
            holding: 0,
            start_soon: usize::MAX,
            task_secs: None,
            round_secs: None,
            sync_secs: None,
            next_starts: &[],
            pickup_secs: 1.0,
            records: &self.records,
            survey: false,
            defer_results: false,
            labels: &self.labels,
            turn_after: None,
            holding_classes: &[],
            preempt_below: None,
            preempt_up_to: 0,
            owed: None,
            trust: None,
            seal: None,
            adopt: 0,
            adopt_above: 0,
            answer: &self.held,
            assign_within: None,
            claims_seen: &self.claims_seen,
            published_seen: &self.published_seen,
            joining: false,
            count_at_work: false,
            steal_up_to: 0,
            take_late_up_to: 0,
            // The grid reached for long: peers' records read as they are.
            reached_since: Some(dgrid_worker::time::now() - chrono::Duration::hours(1)),
            been_away: false,
            watch: false,
        }
    }
}

/// Plan `req` on the tip of the grid at `url`, from a fresh clone: what
/// the node would commit there (nothing is pushed).
pub fn plan_at(url: &str, req: &SyncRequest<'_>) -> SyncReport {
    let (_state, repo) = clone_of(url);
    let tip = repo.fetch().unwrap();
    sync::plan(&Txn { repo: &repo, tip }, req).unwrap().value
}

/// Plan `req` on the tip of the grid at `url` and push it, from a fresh
/// clone: the report of the plan that landed (none pushed if it changed
/// nothing).
pub fn commit_at(url: &str, req: &SyncRequest<'_>) -> SyncReport {
    use dgrid_worker::git::TxnOutcome;
    use dgrid_worker::git::txn::{self, Identity, TxnPolicy};
    let (_state, repo) = clone_of(url);
    let who = Identity::for_node(req.node.as_str());
    match txn::run(&repo, &who, &TxnPolicy::default(), |t| sync::plan(t, req)).unwrap() {
        TxnOutcome::Committed { value, .. } | TxnOutcome::Unchanged { value, .. } => value,
        TxnOutcome::Uncertain { error, .. } => panic!("push outcome unknown: {error}"),
    }
}

/// One heartbeat of `node` from the clone `repo` (which keeps what it
/// learnt, as a worker's does), committed.
pub fn heartbeat(repo: &GridRepo, node: &PlainNode) -> SyncReport {
    use dgrid_worker::git::TxnOutcome;
    use dgrid_worker::git::txn::{self, Identity, TxnPolicy};
    let who = Identity::for_node(node.node.as_str());
    let plan = |t: &Txn<'_>| sync::plan(t, &node.request(0));
    match txn::run(repo, &who, &TxnPolicy::default(), plan).unwrap() {
        TxnOutcome::Committed { value, .. } => value,
        other => panic!("a heartbeat commits: {other:?}"),
    }
}

/// Publish `edits` as `node`'s outbox on the grid at `url` (the whole
/// tree of its branch), as the node does when its push loses a round.
pub fn publish_at(url: &str, node: &str, edits: &dgrid_worker::git::Edits) {
    let (_state, repo) = clone_of(url);
    let who = dgrid_worker::git::Signature {
        name: node.into(),
        email: format!("{node}@dgrid.invalid"),
        when: chrono::Utc::now().timestamp(),
    };
    repo.publish(node, edits, "published", &who).unwrap();
}

/// A fresh private clone of the grid at `url` (gone with the directory),
/// fetching the nodes' published outboxes as a worker's does.
pub fn clone_of(url: &str) -> (tempfile::TempDir, GridRepo) {
    let state = tempfile::tempdir().unwrap();
    let git = Git::new(
        "git",
        state.path().join("grid.git"),
        std::time::Duration::from_secs(30),
    );
    let repo = GridRepo::open_or_init(git, url, "main")
        .unwrap()
        .with_outboxes();
    (state, repo)
}

/// A transaction's plan that writes one file, as a tool or a worker would.
pub fn write_one(path: &str, body: &[u8]) -> dgrid_worker::git::txn::Plan<()> {
    let mut edits = dgrid_worker::git::Edits::new();
    edits.insert(
        path.as_bytes().to_vec(),
        dgrid_worker::git::Edit::Put(body.to_vec()),
    );
    dgrid_worker::git::txn::Plan {
        edits,
        message: format!("write {path}"),
        value: (),
    }
}

/// `node`'s outbox entry of a run of `task` that completed with no output,
/// under its claim made at `claimed_at` (attempt `attempt`), ended at
/// `ended`: a result ready to deliver, as the tests of landing need one.
pub fn completed(
    task: &str,
    node: &str,
    attempt: u32,
    claimed_at: &str,
    ended: String,
) -> dgrid_worker::service::outbox::OutboxEntry {
    use dgrid_worker::grid::{ResultStatus, TaskResult};
    use dgrid_worker::service::outbox::{Finish, OutboxEntry};
    OutboxEntry {
        task_id: Id::parse(task).unwrap(),
        attempt,
        claimed_at: claimed_at.into(),
        finish: Finish::Result {
            result: TaskResult {
                task_id: task.into(),
                node_id: Id::parse(node).unwrap(),
                exit_code: Some(0),
                stdout: String::new(),
                stderr: String::new(),
                timestamp: ended,
                status: ResultStatus::Completed,
                started_at: None,
                duration_ms: None,
                attempt,
                truncated: false,
                error: None,
            },
            signed: None,
        },
        ran: None,
    }
}
