//! Reaping orphaned claims (PROTOCOL.md, Orphans), as one planning step
//! over a fetched tip. Shared by the worker's sync (which folds it into its own
//! commit) and by `dgrid-worker reap` (the repo workflow's transaction), so
//! that both apply exactly the same rule.

use std::collections::{BTreeMap, BTreeSet};

use crate::escape::Untrusted;
use crate::git::{Blob, EntryMode, GridRepo, TreeEntry};
use crate::git::{Edit, Edits, GitError};
use crate::grid::claim::ClaimedTask;
use crate::grid::orphan::{self, Disposition, OrphanPolicy, OrphanReason, Reach};
use crate::grid::task::EntryKind;
use crate::grid::{Id, NodeRecord, Task, TaskRules, layout};
use crate::time::Timestamp;

use super::results::{PendingResult, Rejection, abandoned};
use super::room::GiveWay;

/// Who reaps, when, and under which rules.
pub struct ReapInput<'a> {
    /// The reaping node (a worker, or the tool's identity). Its own claims
    /// on tasks not in `held` are reaped at once: it restarted.
    pub node: &'a Id,
    pub now: Timestamp,
    pub held: &'a BTreeSet<Id>,
    /// The claims (task, attempt) the reaping node started before it
    /// restarted, as its state directory kept them; `None` when not known
    /// (a tool, a new state directory). One of its leftovers not among
    /// them never ran: back to the queue with its attempt unspent.
    pub started_before: Option<&'a BTreeSet<(Id, u32)>>,
    /// Tasks already handled in the same plan (outbox landings): left alone.
    pub skip: &'a BTreeSet<Id>,
    pub rules: &'a TaskRules,
    pub policy: &'a OrphanPolicy,
    /// How long the reaper has reached the grid: a peer's silence counts
    /// only from then (`orphan::Reach`).
    pub reach: Reach,
    /// The edits of the commit's plans before this one: a requeue writes
    /// over none of their moves either.
    pub earlier: &'a Edits,
    /// A node's say over a file that holds a claim's lane
    /// (`room::GiveWay`), asked where no place is free; the tools have
    /// none.
    pub give_way: Option<&'a dyn GiveWay>,
    /// May a claim whose seven places all hold tasks of its id end, so
    /// that they run instead? Not where the reaper cannot tell a copy that
    /// runs from a file no node enforcing trust runs (the tool, on a grid
    /// that signs its tasks): the nodes reap too, and can.
    pub ends_for_copies: bool,
}

#[derive(Debug, Default)]
pub struct ReapPlan {
    pub edits: Edits,
    pub results: Vec<PendingResult>,
    /// (task, what was done and why).
    pub reaped: Vec<(String, String)>,
    /// (entry name, reason): garbage found in `in_progress/`.
    pub invalid: Vec<(String, String)>,
    /// Commit message items.
    pub summary: Vec<String>,
    /// Peers that left claims made for them unanswered: their records now
    /// say they take no such claims, until they write them again.
    pub silent: Vec<Id>,
}

/// Garbage entries of `in_progress/` moved out by one plan, at most.
pub const REJECT_PER_PLAN: usize = 256;

/// Look at every claim in `in_progress/` at `tip` and plan what becomes of
/// the orphaned ones.
pub fn plan(repo: &GridRepo, tip: &str, input: &ReapInput<'_>) -> Result<ReapPlan, GitError> {
    let mut out = ReapPlan::default();
    // Garbage in in_progress/ (pushed by hand, or by a broken tool): it
    // blocks nothing but must not sit there for ever.
    let reject = |out: &mut ReapPlan, entry: &TreeEntry, error: &dyn std::fmt::Display| {
        // The rest in a later reap: each is a commit's edits, and a few
        // hundred KB of names would make one commit that never lands.
        if out.invalid.len() >= REJECT_PER_PLAN {
            return;
        }
        out.reject(Rejection::of(
            layout::IN_PROGRESS,
            entry,
            error,
            input.node,
            input.now,
        ));
    };
    let (entries, odd): (Vec<TreeEntry>, Vec<TreeEntry>) = repo
        .list_dir(tip, layout::IN_PROGRESS)?
        .into_iter()
        .filter(|e| e.name != layout::KEEP_FILE.as_bytes())
        .partition(|e| matches!(e.mode, EntryMode::File | EntryMode::Executable));
    // Symlinks, directories, submodules: never a claim, and never read.
    for entry in &odd {
        if let Err(e) = Task::from_entry(
            &entry.name_lossy(),
            EntryKind::from(entry.mode),
            b"",
            input.rules,
        ) {
            reject(&mut out, entry, &e);
        }
    }
    // A claim is a task file with a claim block: one bigger than a task may
    // be is no claim, and is refused by its size alone, unread.
    let blobs = repo.read_objects(
        &entries.iter().map(|e| e.oid.clone()).collect::<Vec<_>>(),
        input.rules.max_file_bytes as u64,
    )?;
    let mut claims = Vec::new();
    for (entry, blob) in entries.iter().zip(blobs) {
        let bytes = match blob {
            Blob::Data(b) => b,
            Blob::TooBig { size, cap } => {
                tracing::warn!(entry = %Untrusted(entry.name_lossy()), size, cap, "oversized entry in in_progress/; not read");
                let e = crate::grid::TaskError::TooLarge {
                    size: usize::try_from(size).unwrap_or(usize::MAX),
                    max: usize::try_from(cap).unwrap_or(usize::MAX),
                };
                reject(&mut out, entry, &e);
                continue;
            }
            // Not read this round: decide on it in a later one.
            _ => continue,
        };
        match ClaimedTask::parse(&entry.name_lossy(), &bytes, input.rules) {
            Ok(c) if input.skip.contains(&c.task.task_id) => {}
            Ok(c) => claims.push(c),
            Err(e) => reject(&mut out, entry, &e),
        }
    }
    let claimers: BTreeSet<&Id> = claims
        .iter()
        .map(|c| &c.claim.node_id)
        .filter(|n| *n != input.node)
        .collect();
    let specs: Vec<String> = claimers
        .iter()
        .map(|n| format!("{tip}:{}", layout::node_file(n)))
        .collect();
    // A record too big to read (or not a file) counts as none: that node's
    // claims are judged as an unknown node's. One not read for lack of
    // budget is not known yet: its claims wait for a later round.
    let mut unknown_yet: BTreeSet<&Id> = BTreeSet::new();
    let mut records: BTreeMap<&Id, NodeRecord> = BTreeMap::new();
    // The records as read, for those that take claims made for them: one
    // that leaves them unanswered is rewritten with all else it says kept.
    let mut taking: BTreeMap<&Id, Vec<u8>> = BTreeMap::new();
    for (n, b) in claimers
        .iter()
        .copied()
        .zip(repo.read_objects(&specs, layout::MAX_NODE_RECORD_BYTES)?)
    {
        match b {
            // A record is its node's only if it names that node: one that
            // mimics another id counts as none.
            Blob::Data(b) => {
                if let Ok(r) = NodeRecord::parse(&b)
                    .map_err(|_| ())
                    .and_then(|r| if &r.node_id == n { Ok(r) } else { Err(()) })
                {
                    if r.takes_assigned {
                        taking.insert(n, b);
                    }
                    records.insert(n, r);
                }
            }
            Blob::Deferred { .. } => {
                unknown_yet.insert(n);
            }
            other => {
                if let Some(why) = other.why_unread() {
                    tracing::warn!(node_id = %n, why, "node record not read; its claims are judged as an unknown node's");
                }
            }
        }
    }
    for c in &claims {
        let id = &c.task.task_id;
        if unknown_yet.contains(&c.claim.node_id) {
            continue;
        }
        let never_started = &c.claim.node_id == input.node
            && !c.claim.unanswered()
            && input
                .started_before
                .is_some_and(|s| !s.contains(&(id.clone(), c.claim.attempt)));
        let why = if never_started {
            (!input.held.contains(id)).then(|| "this node restarted before starting it".to_owned())
        } else if &c.claim.node_id == input.node {
            // Our own claim on a task we do not hold: we crashed or were
            // killed while it ran. No need to wait for the stale limit.
            // A claim a peer made for it that it is not running: it had
            // no room for it, or restarted before answering.
            (!input.held.contains(id)).then(|| {
                if c.claim.unanswered() {
                    "claimed for this node when it could not take it".to_owned()
                } else {
                    "this node restarted while holding the claim".to_owned()
                }
            })
        } else {
            let reason = orphan::orphan_reason(
                &c.claim,
                records.get(&c.claim.node_id),
                input.now,
                input.policy,
                input.reach,
            );
            // A node that leaves a claim made for it unanswered, or its own
            // past its deadline, with a record that still looks fresh, is
            // claimed for no more: holding nothing once reaped, it would
            // look run dry. (One whose record is stale is claimed for by
            // no one already.)
            let fresh = || {
                records
                    .get(&c.claim.node_id)
                    .is_some_and(|r| r.is_live(input.now, input.policy.stale_after))
            };
            let found = match reason {
                Some(OrphanReason::NotAnswered { .. }) => Some(Silent::Unanswered),
                Some(OrphanReason::DeadlinePassed { .. }) if fresh() => Some(Silent::Overdue),
                _ => None,
            };
            if let Some(found) = found
                && let Some(record) = taking.remove(&c.claim.node_id)
            {
                silence(&mut out, &c.claim.node_id, &record, input.now, found);
            }
            reason.map(|r| r.to_string())
        };
        let Some(why) = why else { continue };
        let disposition = match never_started {
            true => Disposition::Requeue {
                attempt: c.claim.attempt,
            },
            false => orphan::disposition(&c.claim, input.policy),
        };
        // Where a requeue goes (`queue::requeue_to`). None free: where each
        // of those places holds a task of its id, the claim holds them back
        // (a copy of a claimed task waits for the claim to go), and kept it
        // would keep them all from running for good: it ends instead, and
        // they run. Where one holds anything else, a node moves that to
        // `failed/`, and a later reap requeues the claim.
        let mut why = why;
        let requeue = match disposition {
            Disposition::Requeue { attempt } => {
                let plans = [input.earlier, &out.edits];
                let (node, now) = (input.node, input.now);
                let to = super::queue::requeue_place(
                    repo,
                    tip,
                    &plans,
                    input.give_way,
                    c,
                    attempt,
                    node,
                    now,
                )?;
                match to {
                    Some((to, given_way)) => {
                        if let Some(r) = given_way {
                            out.reject(r);
                        }
                        Some((attempt, to))
                    }
                    None => {
                        let plans = [input.earlier, &out.edits];
                        let places = super::queue::requeue_places(&c.task, c.arrival());
                        let rules = input.rules;
                        if !super::queue::all_hold_tasks_of(repo, tip, &plans, &places, id, rules)?
                        {
                            out.reaped.push((
                                id.to_string(),
                                format!("left for now ({why}): its lane, the inbox and the next minutes of its lane each hold a file of its id, not all of them tasks"),
                            ));
                            continue;
                        }
                        if !input.ends_for_copies {
                            out.reaped.push((
                                id.to_string(),
                                format!("left for now ({why}): its lane, the inbox and the next minutes of its lane each hold a task of its id, and only a node that holds the grid's trust policy can tell whether they run"),
                            ));
                            continue;
                        }
                        why = format!(
                            "{why}; its lane, the inbox and the next minutes of its lane each hold another task of its id, which run instead"
                        );
                        None
                    }
                }
            }
            Disposition::Abandon => None,
        };
        out.edits
            .insert(layout::in_progress_file(id).into_bytes(), Edit::Delete);
        match requeue {
            Some((attempt, to)) => {
                let inbox = if to.starts_with(layout::QUEUE) {
                    " to the inbox (its lane holds another file of its id)"
                } else {
                    ""
                };
                out.edits
                    .insert(to.into_bytes(), Edit::Put(c.requeued(attempt)));
                out.summary
                    .push(format!("requeue {id} (attempt {attempt})"));
                out.reaped.push((
                    id.to_string(),
                    format!("requeued as attempt {attempt}{inbox}: {why}"),
                ));
            }
            None => {
                let error = format!(
                    "abandoned after {}; the last claim, by {}, was orphaned: {why}",
                    super::results::attempts(c.claim.attempt),
                    c.claim.node_id
                );
                let result = abandoned(c, &c.claim.node_id, input.now, error.clone());
                out.results.push(PendingResult::unsigned(
                    c.claim.node_id.clone(),
                    id.to_string(),
                    result,
                ));
                out.summary.push(format!("abandon {id}"));
                out.reaped.push((id.to_string(), error));
            }
        }
    }
    Ok(out)
}

/// Why a peer is claimed for no more, as its record says.
#[derive(Clone, Copy)]
pub(crate) enum Silent {
    /// A claim made for it, unanswered past its `answer_by`
    /// (`unanswered_at`).
    Unanswered,
    /// A claim of its past its deadline (`overdue_at`).
    Overdue,
}

impl Silent {
    pub(crate) fn why(self) -> &'static str {
        match self {
            Silent::Unanswered => "left a claim made for it unanswered",
            Silent::Overdue => "left a claim past its deadline",
        }
    }
}

/// A peer left a claim made for it unanswered past its `answer_by`: dead
/// with a record that still looks fresh (a node that crashed counts as
/// live until `stale_after`, hours at the defaults), or cut off from the
/// grid. Its record is rewritten to say it takes no claims made for it
/// (`takes_assigned: false`; all else it says, fields this version does
/// not know included, kept as it was), so that no node claims for it
/// again, each time costing those tasks a minute. The node's own next
/// commit rewrites its record, and says it again if it does. The record
/// also says when it was found not answering (`unanswered_at`), for
/// `status` and the dashboard; that too goes with the node's next write.
/// The same for a claim of its own found past its deadline (`overdue_at`).
impl ReapPlan {
    fn reject(&mut self, r: Rejection) {
        self.edits.insert(r.path, Edit::Delete);
        self.summary.push(format!("reject {}", r.result.stem));
        self.results.push(r.result);
        self.invalid.push(r.invalid);
    }
}

fn silence(out: &mut ReapPlan, node: &Id, record: &[u8], now: Timestamp, found: Silent) {
    let Some(bytes) = silenced(record, now, found) else {
        return;
    };
    out.edits
        .insert(layout::node_file(node).into_bytes(), Edit::Put(bytes));
    out.summary.push(format!(
        "{node} {}: it takes no claims made for it",
        found.why()
    ));
    out.silent.push(node.clone());
}

/// A peer's `record` rewritten to say it takes no claims made for it, and
/// when it was `found` silent; everything else it says kept. None: not a
/// record this can rewrite (not a JSON object).
pub(crate) fn silenced(record: &[u8], now: Timestamp, found: Silent) -> Option<Vec<u8>> {
    let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_slice(record) else {
        return None;
    };
    fields.insert("takes_assigned".into(), serde_json::Value::Bool(false));
    let field = match found {
        Silent::Unanswered => "unanswered_at",
        Silent::Overdue => "overdue_at",
    };
    fields.insert(
        field.into(),
        serde_json::Value::String(crate::time::format(now)),
    );
    Some(crate::grid::claim::pretty(&serde_json::Value::Object(
        fields,
    )))
}
