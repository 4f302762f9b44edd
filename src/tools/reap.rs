//! `dgrid-worker reap`: the worker's orphan rule (`ledger::reap`) and its
//! sweep of waiting tasks (`ledger::deps`) as a transaction of its own, for
//! the repo workflow or an operator; the queued tasks no live node can
//! run (`ledger::routing`), named; and the published outboxes no running
//! node owns, to delete.

use std::collections::{BTreeMap, BTreeSet};

use crate::git::txn::{Plan, Txn};
use crate::git::{Edits, GitError, GridRepo};
use crate::grid::orphan::{OrphanPolicy, Reach};
use crate::grid::schedule::NodeLabels;
use crate::grid::{Id, TaskRules};
use crate::ledger::deps::{self, Finished};
use crate::ledger::queue::QueueAt;
use crate::ledger::reap::{self, ReapInput};
use crate::ledger::{nodes, refile, results, routing};
use crate::time::Timestamp;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ReapSummary {
    /// (task, what was done and why).
    pub reaped: Vec<(String, String)>,
    /// (entry, why): unreadable claim files moved to `failed/`.
    pub invalid: Vec<(String, String)>,
    /// (task, what became of it): waiting tasks moved on, and tasks filed
    /// by hand in a lane no live node serves moved to their own.
    pub released: Vec<(String, String)>,
    /// Queued tasks no live node serves, by class.
    pub unservable: Vec<Unservable>,
    /// Nodes that left claims made for them unanswered: their records now
    /// say they take none.
    pub silent: Vec<String>,
    /// Published outboxes no running node owns, to delete: (node, commit).
    pub outboxes: Vec<(String, String)>,
    /// The running nodes, whose outboxes stay (for a listing made after).
    #[serde(skip)]
    pub running: BTreeSet<String>,
}

/// Queued tasks of one class that no live node serves.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Unservable {
    pub requires: Vec<String>,
    pub tasks: usize,
    pub task_ids: Vec<String>,
    pub why: String,
}

/// Does the grid at `tip` sign its tasks (it holds a trust policy)?
fn signs_tasks(repo: &GridRepo, tip: &str) -> Result<bool, GitError> {
    let spec = format!("{tip}:{}", crate::trust::policy::POLICY_FILE);
    Ok(repo.object_info(&[spec])?[0].is_some())
}

/// Plan the reap at the fetched tip. `who` is the reaper's identity: it must
/// not be a worker's id, or that worker's live claims would be taken for
/// its own leftovers. `outboxes`: the published outboxes on the remote
/// (node, commit), of which those no live node owns are named to delete.
pub fn plan(
    txn: &Txn<'_>,
    who: &Id,
    now: Timestamp,
    policy: &OrphanPolicy,
    rules: &TaskRules,
    outboxes: &[(String, String)],
) -> Result<Plan<ReapSummary>, GitError> {
    let Some(tip) = txn.tip.as_deref() else {
        return Ok(Plan {
            edits: Edits::new(),
            message: String::new(),
            value: ReapSummary::default(),
        });
    };
    let none = BTreeSet::new();
    let input = ReapInput {
        started_before: None,
        node: who,
        now,
        held: &none,
        skip: &none,
        rules,
        policy,
        // Run once on the grid as the forge gives it: it has no outage of
        // its own to discount (RELIABILITY.md, the reap and an outage).
        reach: Reach::Unbroken,
        earlier: &Edits::new(),
        // It holds no policy: every file keeps its place, and on a grid
        // that signs its tasks it cannot tell a copy that runs from a file
        // that never does.
        give_way: None,
        ends_for_copies: !signs_tasks(txn.repo, tip)?,
    };
    let planned = reap::plan(txn.repo, tip, &input)?;
    let mut edits = planned.edits;
    let mut pending = planned.results;
    // Named first: a dependant failed now names the file its parent's
    // result lands in.
    results::name_results(
        txn.repo,
        tip,
        now,
        &mut pending.iter_mut().collect::<Vec<_>>(),
    )?;
    let mut summary = planned.summary;
    let mut invalid = planned.invalid;
    // Waiting tasks: those of the tasks abandoned now, and every one whose
    // parent is no longer pending.
    let queue = QueueAt::list(txn.repo, tip)?;
    let finished: BTreeMap<Id, Finished> = pending
        .iter()
        .filter_map(|r| Some((Id::parse(&r.result.task_id).ok()?, Finished::of(r))))
        .collect();
    let mut released = deps::release(
        txn.repo,
        tip,
        &deps::ReleaseInput {
            node: who,
            now,
            rules,
            finished: &finished,
            queue: &queue,
            claimed: &none,
            filed: &[],
            sweep: true,
            // The tool holds no policy: a node with trust enforced puts
            // back, at its claim, a task released by a result it does not
            // count.
            counts: None,
            earlier: &edits,
            // Nor can it tell a file no node runs from a copy of the task:
            // every file keeps its place.
            give_way: None,
        },
    )?;
    // What no live node can run, as the nodes' records say now.
    let (records, junk) = nodes::records_and_junk(txn.repo, tip, None, Some(now))?;
    if let Some(junk) = junk {
        let (path, edit) = junk.edit();
        edits.insert(path, edit);
        summary.push(junk.say());
    }
    let live = nodes::live_labels(&records, now, policy.stale_after);
    let refs: Vec<(&str, &NodeLabels)> = live.iter().map(|(n, l)| (n.as_str(), l)).collect();
    // Where none of them reads, a task filed by hand in the wrong lane
    // would wait unseen: those lanes' files are read here.
    // After the reap's and the release's moves: none written over.
    let earlier = [&edits, &released.edits];
    let refiled = refile::plan(
        txn.repo,
        (tip, &earlier),
        &queue,
        &refs,
        rules,
        who,
        now,
        None,
    )?;
    let mut queue = queue;
    queue
        .lanes
        .retain(|l| !refiled.edits.contains_key(&l.path()));
    released.extend(refiled);
    edits.extend(released.edits);
    pending.extend(released.results);
    summary.extend(released.summary);
    invalid.extend(released.invalid);
    let moved = released.moved;
    edits.extend(results::place_results(txn.repo, tip, now, pending)?);
    let message = format!("{who}: {}\n", summary.join(", "));
    let running: BTreeSet<String> = records
        .iter()
        .filter(|r| r.is_up(now, policy.stale_after))
        .map(|r| r.node_id.to_string())
        .collect();
    // The lanes as this reap leaves them: a claim it requeues into a lane
    // no live node serves cannot run now either (it went unnamed, and
    // `status` named it right after).
    let queue = queue.lanes_after(&edits);
    let mut unserved = routing::unserved(&queue, &refs);
    let paused = |id: &str| {
        records
            .iter()
            .find(|r| r.node_id.as_str() == id)
            .and_then(|r| r.paused.clone())
    };
    unserved.extend(routing::served_only_by_paused(
        &queue, &refs, &unserved, &paused,
    ));
    let unservable = unserved
        .into_iter()
        .map(|u| Unservable {
            requires: u.class.labels().map(ToString::to_string).collect(),
            tasks: u.tasks,
            task_ids: u.task_ids,
            why: u.why,
        })
        .collect();
    Ok(Plan {
        edits,
        message,
        value: ReapSummary {
            reaped: planned.reaped,
            invalid,
            released: moved,
            unservable,
            silent: planned.silent.iter().map(ToString::to_string).collect(),
            outboxes: unowned(outboxes, &running),
            running,
        },
    })
}

/// The published outboxes (node, commit) that no running node owns
/// (`live`: [`crate::grid::NodeRecord::is_up`]): those of nodes gone (no
/// record, a stale one, or stopped), and any other branch
/// under `outbox/`, which no node publishes and none reads. A node
/// publishes only results of claims it holds, which go back to the queue
/// once it is gone, so what its branch holds can no longer be carried;
/// and the results themselves stay in its own outbox until it lands them.
pub fn unowned(outboxes: &[(String, String)], live: &BTreeSet<String>) -> Vec<(String, String)> {
    outboxes
        .iter()
        .filter(|(node, _)| !live.contains(node))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_outboxes_of_live_nodes_stay() {
        let listed: Vec<(String, String)> = ["n1", "n2", "gone", "n1-x", "a/b"]
            .iter()
            .map(|n| (n.to_string(), format!("{n}-commit")))
            .collect();
        let live: BTreeSet<String> = ["n1", "n2", "n3"].map(String::from).into();
        let names: Vec<String> = unowned(&listed, &live)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["gone", "n1-x", "a/b"]);
        assert!(unowned(&[], &live).is_empty());
    }
}
