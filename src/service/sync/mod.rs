//! One sync: the transaction that carries everything this node has to say to
//! the grid in a single commit: results and requeues from the outbox, new
//! claims, invalid queue entries moved to `failed/`, orphaned claims reaped,
//! and the node's heartbeat riding along. Folding them into one commit is
//! what keeps commits per task near one and pushes per task low.
//!
//! The plan is made afresh from each fetched tip, so every precondition
//! ("the task is still queued", "this claim is still mine") is checked
//! against the state the push will be judged on.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use crate::git::txn::{Plan, Txn};
use crate::git::{Edit, Edits, GitError};
use crate::git::{GridRepo, Oid, TreeEntry};
use crate::grid::orphan::{self, OrphanPolicy};
use crate::grid::schedule::NodeLabels;
use crate::grid::{Class, Id, NodeRecord, NodeStatus, ResultStatus, TaskRules, layout};
use crate::ledger::blocked::BlockedEntry;
use crate::ledger::queue::QueueAt;
use crate::ledger::reap;
use crate::ledger::results::{self, PendingResult, Rejection};
use crate::ledger::room::GiveWay;
use crate::service::outbox::OutboxEntry;
use crate::time::Timestamp;

pub struct SyncRequest<'a> {
    pub node: &'a Id,
    pub now: Timestamp,
    pub outbox: &'a [OutboxEntry],
    /// How many tasks to claim.
    pub want_claims: usize,
    /// How many of those start at once (the rest are claimed ahead and
    /// wait for a slot): only these are listed as running.
    pub start_now: usize,
    /// Look for orphaned claims this round.
    pub reap: bool,
    /// Tasks this node is running or has results for: its claims on them
    /// are alive. Any other claim naming this node is left from a crash.
    pub held: &'a BTreeSet<Id>,
    /// The claims this node started before it restarted (`None`: not
    /// known): one of its leftovers it never started costs no attempt.
    pub started_before: Option<&'a crate::service::started::Started>,
    /// Write the node record even if nothing else changes.
    pub heartbeat: bool,
    /// The record to write (with `last_heartbeat` = now).
    pub record: &'a NodeRecord,
    pub rules: &'a TaskRules,
    pub policy: &'a OrphanPolicy,
    pub claim_grace: chrono::Duration,
    /// The queue was empty at this tip: skip listing it again.
    pub queue_empty_at: Option<&'a Oid>,
    /// Claim at least this node's fair share of the queue, up to this many
    /// tasks: the queue divided among the nodes taking work, by their
    /// slots (`share::fair_share`). 0: just `want_claims`.
    pub share_up_to: usize,
    /// This node's slots (its concurrency), for its share.
    pub slots: u32,
    /// Tasks this node holds (running, or claimed and waiting): its share
    /// counts them.
    pub holding: usize,
    /// How many tasks this node would start within a poll interval
    /// (`Pace::startable_within`): all it takes while idle peers would
    /// otherwise find the queue empty.
    pub start_soon: usize,
    /// How long this node's tasks take, and one round of a sync that
    /// commits, as measured (none until timed): what a drain of the queue
    /// pays for (`share::participants`).
    pub task_secs: Option<f64>,
    pub round_secs: Option<f64>,
    /// How long a whole sync takes, its lost rounds included, as measured
    /// (none until timed): what a busy peer's results take to land.
    pub sync_secs: Option<f64>,
    /// When this node would start the tasks it claims now, in the order it
    /// claims them, and then run dry (seconds from now, `Pace::starts`: one
    /// more than it may claim), and how long a peer
    /// takes to find a task given back (a poll interval): it takes none that
    /// a peer would start sooner (`share::give_back`).
    pub next_starts: &'a [f64],
    pub pickup_secs: f64,
    /// Node records read in earlier rounds, by blob id.
    pub records: &'a std::cell::RefCell<RecordCache>,
    /// Look at the queue and the peers even when claiming nothing: the
    /// report's `queue_left` and `idle_peer_slots` tell a node holding
    /// claims it has not started whether idle peers wait for work.
    pub survey: bool,
    /// The outbox may wait for a task still running: commit its entries only
    /// if this sync has more to say (claims, a reap, a heartbeat).
    pub defer_results: bool,
    /// What this node serves: it claims only tasks whose class it has
    /// every label of (and, if exclusive, that require its labels).
    pub labels: &'a NodeLabels,
    /// The submitter of the task this node claimed last (`Some(None)`: one
    /// that named none): within a level, submitters' turns go round from
    /// the next (`schedule::order_turning`).
    pub turn_after: Option<Option<&'a Id>>,
    /// The classes of the claims it holds and has not started: idle peers
    /// count for handing them over only if they serve one.
    pub holding_classes: &'a [Class],
    /// Surveying while holding claims not started: the lowest level
    /// (priority with age) among them. Queued work above it is claimed in
    /// this look, up to `preempt_up_to` tasks (what it holds), to start
    /// before them; those go back by the outbox (`share::preempt`).
    pub preempt_below: Option<u8>,
    pub preempt_up_to: usize,
    /// Surveying while holding claims not started: what a look owes
    /// against them at their lowest level (`held::Owed`: a submitter who
    /// came late, work fewer nodes serve), claimed up to `preempt_up_to`
    /// to start among them (`Slots::sort_waiting`).
    pub owed: Option<crate::grid::held::Owed>,
    /// The node's trust (`[trust] mode` warn or enforce): which queue
    /// entries it may claim. None: every valid task.
    pub trust: Option<&'a RefCell<Gate>>,
    /// The node's key and grid: its record goes signed (`trust::record`).
    pub seal: Option<&'a crate::trust::Signer>,
    /// This node takes claims peers make for it and has a free slot: a
    /// look that finds some ends there, unpushed, and reports up to this
    /// many of them to start at once (`assigned::discover`). 0: none.
    pub adopt: usize,
    /// Beyond `adopt`, how many claims made for it it may take that are
    /// above the lowest level it holds, running or waiting (its record's
    /// `holds_level`): a burst of higher work a peer claimed for it
    /// starts at its next free slot, before the lower claims it holds.
    /// 0: none.
    pub adopt_above: usize,
    /// Claims made for this node that it has started and not answered
    /// yet: this commit answers them.
    pub answer: &'a BTreeSet<Id>,
    /// How long a peer has to answer a claim this node makes for it (none:
    /// it makes none).
    pub assign_within: Option<chrono::Duration>,
    /// Claim files read in earlier rounds, by blob id.
    pub claims_seen: &'a RefCell<ClaimCache>,
    /// Peers' published outboxes found to hold nothing left to carry.
    pub published_seen: &'a RefCell<PublishedCache>,
    /// This sync registers the node and it has nothing of its own to
    /// deliver: it may stay out of a drain its peers cover
    /// (`share::stays_out`), pushing nothing (the report's `stayed_out`).
    pub joining: bool,
    /// Take over claims busy peers hold and have not started, up to this
    /// many, where nothing else is claimed (`claim::steal`). 0: none.
    pub steal_up_to: usize,
    /// Take over claims made for peers that have left them unanswered past
    /// `grid::claim::ANSWER_LATE`, up to this many, where nothing else is
    /// claimed (`claim::take_unanswered`): whatever the tasks' length, a
    /// node that has not answered in 30 s is most likely gone. 0: none.
    pub take_late_up_to: usize,
    /// Since when this node's syncs have reached the grid, none failing
    /// (none: this is the first, or the one before failed). While the grid
    /// was away from it, it was from its peers too, most likely, and they
    /// could not write their records: their silence counts from then
    /// (`claim::steal`).
    pub reached_since: Option<Timestamp>,
    /// A sync of this node has failed since it started: its reap reads a
    /// peer's silence only from `reached_since` (`orphan::Reach`). Until
    /// then, by the clock, as the grid's tool does: a node just started
    /// knows of no outage.
    pub been_away: bool,
    /// Look whether the claims this node holds (`held`, less its outbox
    /// and `answer`) still name it: where tasks outlast a round, an idle
    /// peer may take over one it has not started (`SyncReport::taken`).
    pub watch: bool,
    /// Count the peers at work (`SyncReport::peers_at_work`), which reads
    /// their published outboxes: only a delivery that may defer to them
    /// (`TxnPolicy::defer`) asks.
    pub count_at_work: bool,
}

mod admit;
mod assigned;
mod claim;
mod land;
mod published;
mod record;
mod records;
mod refile;
mod release;
mod report;

pub use admit::at_start::AtStart;
pub use admit::{Gate, GateError};
pub use assigned::{ClaimCache, made_for};
use claim::{claim, steal};
use land::land_outbox;
pub use published::{
    PublishedCache, Standing, publishes, publishes_all, to_publish, with_standing,
};
pub use record::record_file;
pub use records::RecordCache;
use release::release;
pub use report::SyncReport;

/// The commit being planned: its edits, the results it will write, the
/// words of its message, and the report for the loop.
struct Draft<'a> {
    req: &'a SyncRequest<'a>,
    tip: &'a str,
    edits: Edits,
    results: Vec<PendingResult>,
    summary: Vec<String>,
    report: SyncReport,
    /// The queue at `tip`, listed once and shared by the steps.
    queue: Option<Rc<QueueAt>>,
    /// `in_progress/` and `nodes/` at `tip`, listed once.
    claims_and_nodes: Option<Rc<[Vec<TreeEntry>; 2]>>,
    /// Tasks this plan files under `blocked/`: the release looks at them
    /// with those waiting at the tip.
    waiting: Vec<BlockedEntry>,
    /// Tasks this plan releases to their lanes (path, blob), for the node
    /// to claim in it (`claim::claim_released`).
    ready: Vec<(Vec<u8>, Oid)>,
}

impl Draft<'_> {
    /// The queue at this plan's tip (listed on first use).
    fn queue(&mut self, repo: &GridRepo) -> Result<Rc<QueueAt>, GitError> {
        if let Some(q) = &self.queue {
            return Ok(q.clone());
        }
        let q = Rc::new(QueueAt::list(repo, self.tip)?);
        self.queue = Some(q.clone());
        Ok(q)
    }

    /// Is `path` free at this plan's tip, as its edits leave it
    /// (`ledger::room::is_free`)? A lane's path is looked up in the
    /// queue's listing, which the plan holds already.
    fn is_free(&mut self, repo: &GridRepo, path: &str) -> Result<bool, GitError> {
        match self.edits.get(path.as_bytes()) {
            Some(Edit::Delete) => return Ok(true),
            Some(_) => return Ok(false),
            None => {}
        }
        if let Some(rel) = below_lanes(path) {
            // Nor a file where one of its directories goes (pushed there by
            // hand), unless this plan moved it out.
            let queue = self.queue(repo)?;
            let taken = |dir: &str| {
                below_lanes(dir).is_some_and(|d| queue.holds(d.as_bytes()))
                    && !matches!(self.edits.get(dir.as_bytes()), Some(Edit::Delete))
            };
            return Ok(!queue.holds(rel.as_bytes()) && !layout::dirs_made_by(path).any(taken));
        }
        crate::ledger::room::is_free(repo, self.tip, &[&self.edits], path)
    }

    /// The claims and the node records at this plan's tip, in one listing
    /// (on first use).
    fn claims_and_nodes(&mut self, repo: &GridRepo) -> Result<Rc<[Vec<TreeEntry>; 2]>, GitError> {
        if let Some(l) = &self.claims_and_nodes {
            return Ok(l.clone());
        }
        let [claims, nodes]: [Vec<TreeEntry>; 2] = repo
            .list_dirs(self.tip, &[layout::IN_PROGRESS, layout::NODES])?
            .try_into()
            .expect("two directories asked, two listed");
        let l = Rc::new([claims, nodes]);
        self.claims_and_nodes = Some(l.clone());
        Ok(l)
    }

    /// Move an entry that breaks the rules out of `dir` into `failed/`,
    /// with the reason naming the file.
    /// Waiting entries moved on by a shared planner (release, refile).
    fn fold(&mut self, m: crate::ledger::Moves) {
        self.edits.extend(m.edits);
        self.results.extend(m.results);
        self.summary.extend(m.summary);
        self.report.invalid.extend(m.invalid);
        self.report.released.extend(m.moved);
        self.report.release_more |= m.more;
    }

    fn reject(&mut self, dir: &str, entry: &TreeEntry, error: &dyn std::fmt::Display) {
        self.rejected(Rejection::of(
            dir,
            entry,
            error,
            self.req.node,
            self.req.now,
        ));
    }

    fn rejected(&mut self, r: Rejection) {
        self.edits.insert(r.path, Edit::Delete);
        self.summary.push(format!("reject {}", r.result.stem));
        self.results.push(r.result);
        self.report.invalid.push(r.invalid);
    }
}

/// The nodes that may push to the ref now, as the tip shows them, when
/// this plan only delivers what this node holds (results, claims going
/// back): those holding claims there, and this one. That is the end of a
/// drain, where the last holders each push their last results. Not read
/// (0) for a plan that claims or registers: idle nodes racing for a queue
/// that just filled, or a fleet registering, hold no claims, and the tip
/// cannot count them. Claim files not read yet (a look reads a bounded
/// number) count for nobody.
///
/// And of those peers, how many are at work (`SyncReport::peers_at_work`).
fn writers(repo: &GridRepo, d: &mut Draft<'_>) -> Result<(u32, u32), GitError> {
    let delivering = !d.req.outbox.is_empty()
        && !d.req.joining
        && d.report.claimed.is_empty()
        && d.report.assigned.is_empty();
    if !delivering {
        return Ok((0, 0));
    }
    let listed = d.claims_and_nodes(repo)?;
    let holders = assigned::holders(repo, d, &listed[0])?;
    let others: Vec<Id> = holders
        .by_node
        .iter()
        .filter(|(node, n)| **n > 0 && *node != d.req.node)
        .map(|(node, _)| node.clone())
        .collect();
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let at_work = if d.req.count_at_work {
        let dry = published::ran_dry(repo, d, &holders.by_node, &others)?;
        count(others.len() - dry.len())
    } else {
        0
    };
    Ok((count(others.len()).saturating_add(1), at_work))
}

/// `path` below `tasks/lanes/`, if it is there.
fn below_lanes(path: &str) -> Option<&str> {
    path.strip_prefix(layout::LANES)?.strip_prefix('/')
}

pub fn plan(txn: &Txn<'_>, req: &SyncRequest<'_>) -> Result<Plan<SyncReport>, GitError> {
    let repo = txn.repo;
    let Some(tip) = txn.tip.as_deref() else {
        // An empty remote: nothing to read; registering creates the grid.
        let mut edits = Edits::new();
        if req.heartbeat {
            edits.insert(
                layout::node_file(req.node).into_bytes(),
                Edit::Put(record_file(req.seal, req.record)),
            );
        }
        let report = SyncReport {
            wrote_heartbeat: req.heartbeat,
            ..SyncReport::default()
        };
        return Ok(Plan {
            edits,
            message: format!("{}: register", req.node),
            value: report,
        });
    };
    let mut d = Draft {
        req,
        tip,
        edits: Edits::new(),
        results: Vec::new(),
        summary: Vec::new(),
        report: SyncReport {
            tip: Some(tip.to_owned()),
            ..SyncReport::default()
        },
        queue: None,
        claims_and_nodes: None,
        waiting: Vec::new(),
        ready: Vec::new(),
    };
    if req.adopt > 0 || req.adopt_above > 0 {
        // Claims a peer made for this node: they start now, before any
        // push of its own; their answer goes with the next commit.
        let adopted = assigned::discover(repo, &mut d)?;
        if !adopted.is_empty() {
            return Ok(Plan {
                edits: Edits::new(),
                message: String::new(),
                value: SyncReport {
                    tip: Some(tip.to_owned()),
                    adopted,
                    ..SyncReport::default()
                },
            });
        }
    }
    let mut touched = land_outbox(repo, &mut d)?;
    let mut landing_only = d.edits.len();
    assigned::answer(repo, &mut d, &touched)?;
    if req.watch {
        assigned::watch_taken(repo, &mut d, &touched)?;
    }
    if matches!(
        req.record.status,
        NodeStatus::Stopped | NodeStatus::Draining
    ) {
        assigned::decline(repo, &mut d)?;
    }
    claim(repo, &mut d, &mut touched)?;
    steal(repo, &mut d, &mut touched)?;
    if d.report.stayed_out {
        return Ok(Plan {
            edits: Edits::new(),
            message: String::new(),
            value: SyncReport {
                tip: Some(tip.to_owned()),
                stayed_out: true,
                queue_left: d.report.queue_left,
                ..SyncReport::default()
            },
        });
    }
    if !d.edits.is_empty() || req.heartbeat {
        // A commit is made anyway: it carries the results peers published
        // when their own pushes lost, which wait like this node's own.
        // (Carrying them in a commit made for nothing else, at an idle
        // node's poll, added writers to the ref and landed nothing sooner:
        // BENCHMARKS.md, Results carried by peers' commits.)
        let before = d.edits.len();
        published::carry(repo, &mut d, &mut touched)?;
        landing_only += d.edits.len() - before;
    }
    if req.reap {
        reap(repo, &mut d, &touched)?;
        refile::refile(repo, &mut d)?;
    }
    if req.defer_results && !req.heartbeat && d.edits.len() == landing_only {
        // Nothing to claim after all, and a task of the batch still runs:
        // its result is near, and both go in one commit. Claims made for
        // this node found lost need no commit: it stops them now.
        return Ok(Plan {
            edits: Edits::new(),
            message: String::new(),
            value: SyncReport {
                tip: Some(tip.to_owned()),
                lost: std::mem::take(&mut d.report.lost),
                taken: std::mem::take(&mut d.report.taken),
                ended: std::mem::take(&mut d.report.ended),
                queue_left: d.report.queue_left,
                idle_peer_slots: d.report.idle_peer_slots,
                peers_dry: std::mem::take(&mut d.report.peers_dry),
                live_peer_slots: d.report.live_peer_slots,
                top_queued: d.report.top_queued,
                awaited: release::awaited(repo, &d)?,
                ..SyncReport::default()
            },
        });
    }
    release(repo, &mut d)?;
    claim::claim_released(repo, &mut d)?;
    write_results(repo, &mut d)?;
    d.report.awaited = release::awaited(repo, &d)?;

    record::write(&mut d);
    (d.report.writers, d.report.peers_at_work) = writers(repo, &mut d)?;
    Ok(Plan {
        message: commit_message(req.node, &d.summary),
        edits: d.edits,
        value: d.report,
    })
}

/// Requeue (or abandon) claims whose owner is gone. The rule itself lives
/// in ledger::reap, shared with `dgrid-worker reap`.
fn reap(repo: &GridRepo, d: &mut Draft<'_>, touched: &BTreeSet<Id>) -> Result<(), GitError> {
    let give_way = admit::give_way(d.req, d.tip);
    let input = reap::ReapInput {
        node: d.req.node,
        now: d.req.now,
        held: d.req.held,
        started_before: d.req.started_before,
        skip: touched,
        rules: d.req.rules,
        policy: d.req.policy,
        reach: match (d.req.been_away, d.req.reached_since) {
            (false, _) => orphan::Reach::Unbroken,
            (true, Some(t)) => orphan::Reach::Since(t),
            (true, None) => orphan::Reach::NotYet,
        },
        earlier: &d.edits,
        give_way: give_way.as_ref().map(|g| g as &dyn GiveWay),
        ends_for_copies: true,
    };
    let planned = reap::plan(repo, d.tip, &input)?;
    d.edits.extend(planned.edits);
    d.results.extend(planned.results);
    d.summary.extend(planned.summary);
    d.report.invalid.extend(planned.invalid);
    d.report.reaped.extend(planned.reaped);
    d.report.silent.extend(planned.silent);
    Ok(())
}

/// Put the results at paths that do not exist yet.
fn write_results(repo: &GridRepo, d: &mut Draft<'_>) -> Result<(), GitError> {
    if d.results.is_empty() {
        return Ok(());
    }
    let results = std::mem::take(&mut d.results);
    d.edits
        .extend(results::place_results(repo, d.tip, d.req.now, results)?);
    Ok(())
}

fn status_word(s: ResultStatus) -> &'static str {
    match s {
        ResultStatus::Completed => "complete",
        ResultStatus::Failed => "fail",
        ResultStatus::Timeout => "time out",
        ResultStatus::Invalid => "reject",
        ResultStatus::Abandoned => "abandon",
        ResultStatus::DependencyFailed => "fail (dependency)",
    }
}

/// `n1: complete t1, claim t2, claim t3`, shortened past a few items: the
/// log stays readable in `git log --oneline`.
fn commit_message(node: &Id, items: &[String]) -> String {
    const SHOWN: usize = 6;
    let mut subject = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        subject.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    let mut msg = format!("{node}: {subject}\n");
    if items.len() > SHOWN {
        msg.push('\n');
        for item in items {
            msg.push_str(item);
            msg.push('\n');
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_messages_stay_short() {
        let me = Id::parse("n1").unwrap();
        assert_eq!(commit_message(&me, &["claim a".into()]), "n1: claim a\n");
        let many: Vec<String> = (0..8).map(|i| format!("claim t{i}")).collect();
        let msg = commit_message(&me, &many);
        assert!(msg.starts_with(
            "n1: claim t0, claim t1, claim t2, claim t3, claim t4, claim t5 and 2 more\n\n"
        ));
    }
}
