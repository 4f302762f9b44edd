//! Claiming: the node's fair share of what it can serve (or more, by what
//! it can run in a few syncs), highest priority first, with invalid entries
//! met on the way moved to `failed/`; and what the peers' records say about
//! their slots.
//!
//! In steps, each its own function so that a rule can be added to one
//! without touching the others: list the queue (inbox and lanes), look at
//! the peers, file what the inbox holds, decide the order and how many
//! (`grid::schedule`), read the sample (bounded), judge each candidate
//! ([`consider`]), and claim the ones taken ([`take`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use super::admit::{self, Admit};
use super::{Draft, SyncRequest};
use crate::git::{Blob, EntryMode, GridRepo, Oid, TreeEntry};
use crate::git::{Edit, GitError};
use crate::grid::claim::ClaimedTask;
use crate::grid::layout::Place;
use crate::grid::schedule::{self, NodeLabels, Picker, Queued};
use crate::grid::task::EntryKind;
use crate::grid::{Class, Id, NodeRecord, NodeStatus, Task, TaskError, layout};
use crate::ledger::deps::ResultIndex;
use crate::ledger::queue::QueueAt;
use crate::ledger::results;
use crate::service::pace;

/// Inbox entries read (and filed into their lanes) in one sync, at least
/// (more when the node claims more): an old grid's flat queue moves into
/// lanes a batch at a time, each batch one commit of small edits.
const INBOX_BATCH: usize = 256;
/// Entries of `tasks/lanes/` that are no place for a task, moved to
/// `failed/` in one sync, at most.
const MISPLACED_BATCH: usize = 64;

fn is_file(mode: EntryMode) -> bool {
    matches!(mode, EntryMode::File | EntryMode::Executable)
}

fn entry_kind(mode: EntryMode) -> EntryKind {
    match mode {
        EntryMode::File => EntryKind::File,
        EntryMode::Executable => EntryKind::Executable,
        EntryMode::Symlink => EntryKind::Symlink,
        EntryMode::Tree => EntryKind::Directory,
        EntryMode::Submodule => EntryKind::Submodule,
    }
}

/// A queued task this node could claim.
struct Candidate<'q> {
    /// The directory `entry` is named below (`tasks/queue` or
    /// `tasks/lanes`).
    dir: &'static str,
    entry: Cow<'q, TreeEntry>,
    /// Where it is in the lanes (for an inbox entry: where it belongs).
    place: Rc<Place>,
    /// An inbox entry, read and judged already.
    judged: Option<Verdict>,
}

impl Candidate<'_> {
    fn path(&self) -> Vec<u8> {
        results::entry_path(self.dir, &self.entry.name)
    }

    fn name(&self) -> &[u8] {
        let n = &self.entry.name;
        &n[n.iter().rposition(|b| *b == b'/').map_or(0, |i| i + 1)..]
    }
}

/// Claim up to `want_claims` valid tasks, or the node's fair share if more;
/// invalid entries met on the way go to `failed/`. Surveying only, look at
/// the queue and the peers and claim nothing.
pub(super) fn claim(
    repo: &GridRepo,
    d: &mut Draft<'_>,
    touched: &BTreeSet<Id>,
) -> Result<(), GitError> {
    let req = d.req;
    let claiming = req.want_claims > 0 && req.queue_empty_at.is_none_or(|t| t != d.tip);
    if !claiming && !req.survey {
        return Ok(());
    }
    admit::refresh(repo, d)?;
    let queue = d.queue(repo)?;
    reject_misplaced(d, &queue);
    let not_touched = |name: &[u8]| {
        if touched.is_empty() {
            return true;
        }
        let id = std::str::from_utf8(name)
            .ok()
            .and_then(layout::json_stem)
            .and_then(|s| Id::parse(s).ok());
        !id.is_some_and(|id| touched.contains(&id))
    };
    // Whether it serves a class is asked once per class, not per task.
    let mut serves: BTreeMap<&Class, bool> = BTreeMap::new();
    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    for l in &queue.lanes {
        let ok = *serves
            .entry(&l.place.class)
            .or_insert_with(|| req.labels.serves(&l.place.class).is_ok());
        // Not work for this node until its policy changes (trust).
        if ok && not_touched(l.file_name()) && !admit::skipped(d, &l.entry.oid) {
            candidates.push(Candidate {
                dir: layout::LANES,
                entry: Cow::Borrowed(&l.entry),
                place: l.place.clone(),
                judged: None,
            });
        }
    }
    let mut inbox: Vec<TreeEntry> = queue
        .inbox
        .iter()
        .filter(|e| not_touched(&e.name) && !admit::skipped(d, &e.oid))
        .cloned()
        .collect();
    // The claims and the nodes, in one listing: the work not done counts
    // what is claimed, and the peers' records say who shares it.
    let [in_progress, nodes]: [Vec<TreeEntry>; 2] = repo
        .list_dirs(d.tip, &[layout::IN_PROGRESS, layout::NODES])?
        .try_into()
        .expect("two directories asked, two listed");
    let claimed = in_progress
        .iter()
        .filter(|e| e.name != layout::KEEP_FILE.as_bytes() && not_touched(&e.name))
        .count();
    let peers = if candidates.is_empty() && inbox.is_empty() && !req.survey {
        Peers::default()
    } else {
        peers(repo, nodes, req)?
    };
    d.report.idle_peer_slots = peers.idle_slots(req.holding_classes);
    d.report.live_peer_slots = peers.live_slots(None);
    let top = candidates.iter().map(|c| level_of(&c.place, req)).max();
    // Holding claims not started, a node that sees work of a higher level
    // claims it in this very look (its share of it, above what it holds),
    // so that it starts at the node's next free slot; what it held goes
    // back by the outbox (`pace::preempt`).
    let above = match (claiming, req.preempt_below, top) {
        (false, Some(held), Some(top)) if top > held => Some(held),
        _ => None,
    };
    if !claiming && above.is_none() {
        d.report.queue_left = candidates.len() + inbox.len();
        d.report.top_queued = top;
        return Ok(());
    }
    if above.is_some() {
        // Only the lanes: the inbox waits for the node's next claim.
        inbox.clear();
    }
    // The inbox first: what it holds is read now (a batch of it), filed
    // into its lane, and claimable in this same round.
    fastrand::shuffle(&mut inbox);
    let batch = INBOX_BATCH.max(req.want_claims.max(req.share_up_to) * 2 + 4);
    let unread = inbox.len().saturating_sub(batch);
    inbox.truncate(batch);
    candidates.extend(file_inbox(repo, d, inbox)?);

    let places: Vec<Queued<'_>> = candidates
        .iter()
        .map(|c| Queued {
            place: &c.place,
            name: c.name(),
        })
        .collect();
    let order = schedule::order(&places, req.now);
    let want = match above {
        Some(_) => req.preempt_up_to,
        None => how_many(candidates.len() + unread, claimed, req, &peers, d),
    };
    let quotas = level_quotas(&candidates, &order, req, &peers, d.report.fair_share);
    let sample = order.len().min(want * 2 + 4);
    let mut read = read_sample(repo, &candidates, &order[..sample], req)?;
    let mut picker = Picker::new(want);
    let mut results_index: Option<ResultIndex> = None;
    let mut claimed_ids: BTreeSet<Id> = BTreeSet::new();
    let mut left = unread;
    let mut top: Option<u8> = None;
    // A task claimed ahead waits for a slot: for the tasks claimed before
    // it in this batch (the wait for tasks already running or waiting is in
    // `claim_grace`). Its deadline allows for their timeouts, so that a
    // healthy node's batch is never taken for orphaned.
    let mut queued_before = chrono::Duration::zero();
    for (k, &(i, level)) in order.iter().enumerate() {
        if above.is_some_and(|held| level <= held) {
            // Nothing at or below what it holds is claimed in a look.
            left += 1;
            top = top.max(Some(level));
            continue;
        }
        let c = &mut candidates[i];
        let verdict = match (k < sample, c.judged.take()) {
            (_, Some(v)) => v,
            (true, None) => consider(repo, d, &c.entry, c.name(), read.next_for(&c.entry))?,
            (false, None) => {
                left += 1;
                top = top.max(Some(level));
                continue;
            }
        };
        let task = match verdict {
            Verdict::Claimable(task) => task,
            Verdict::Reject(e) => {
                d.reject(c.dir, &c.entry, &e);
                continue;
            }
            Verdict::Skip => continue,
            Verdict::Later => {
                left += 1;
                top = top.max(Some(level));
                continue;
            }
        };
        // A task whose fields say another place than its path (pushed there
        // by hand) is moved where it belongs, and claimed from there later:
        // the order it was judged in was the path's.
        let home = Place::of(&task, c.place.batch.minute);
        if c.dir == layout::LANES && home != *c.place {
            move_to(
                d,
                &c.path(),
                &home.file(&task.task_id),
                &c.entry.oid,
                "file",
            );
            continue;
        }
        if !claimed_ids.insert(task.task_id.clone()) {
            // A second file of one id: one claim only.
            continue;
        }
        let inputs = if task.after().is_empty() {
            Ok(Vec::new())
        } else {
            if results_index.is_none() {
                results_index = Some(ResultIndex::list(repo, d.tip)?);
            }
            inputs_of(repo, results_index.as_ref().expect("listed above"), &task)?
        };
        let inputs = match inputs {
            Ok(inputs) => inputs,
            Err(wait_for) => {
                // A task it runs after has not completed (it was pushed
                // among the ready ones by hand): it waits under that one,
                // and what becomes of it is decided there (`ledger::deps`).
                let to = layout::blocked_file(&wait_for, &task.task_id);
                move_to(d, &c.path(), &to, &c.entry.oid, "wait");
                continue;
            }
        };
        if picker.offer(level, quotas.get(&level).copied().unwrap_or(usize::MAX)) {
            let path = c.path();
            let arrival = c.place.batch.minute;
            queued_before = take(d, &path, task, arrival, inputs, queued_before);
        } else {
            left += 1;
            top = top.max(Some(level));
            if c.dir == layout::QUEUE {
                move_to(
                    d,
                    &c.path(),
                    &c.place.file(&task.task_id),
                    &c.entry.oid,
                    "file",
                );
            }
        }
    }
    // Stopped at a level's share, or at the inbox's batch: more is there
    // for this node as soon as it has room.
    d.report.capped = picker.capped() || (unread > 0 && picker.taken() < want);
    d.report.queue_left = left;
    d.report.top_queued = top;
    Ok(())
}

/// The level (effective priority) of a place now.
fn level_of(place: &Place, req: &SyncRequest<'_>) -> u8 {
    schedule::effective_priority(place.priority, place.batch.minute, req.now)
}

/// Entries of the lanes that are no place for a task: to `failed/`, a
/// batch at a time.
fn reject_misplaced(d: &mut Draft<'_>, queue: &QueueAt) {
    for (entry, why) in queue.misplaced.iter().take(MISPLACED_BATCH) {
        d.reject(layout::LANES, entry, why);
    }
}

/// Move the file at `from` (blob `oid`, unchanged: a signed task stays
/// signed) to `to`.
fn move_to(d: &mut Draft<'_>, from: &[u8], to: &str, oid: &Oid, word: &str) {
    d.edits.insert(from.to_vec(), Edit::Delete);
    d.edits.insert(
        to.as_bytes().to_vec(),
        Edit::Object {
            mode: EntryMode::File,
            oid: oid.clone(),
        },
    );
    let name = to.rsplit('/').next().unwrap_or(to);
    d.summary.push(format!(
        "{word} {}",
        layout::json_stem(name).unwrap_or(name)
    ));
}

/// Read and judge a batch of the inbox: a broken entry goes to `failed/`;
/// a task that runs after others waits in `blocked/` (where its parents are
/// looked at); one this node does not serve goes to its lane; the others
/// become candidates, judged, to be claimed or filed.
fn file_inbox(
    repo: &GridRepo,
    d: &mut Draft<'_>,
    inbox: Vec<TreeEntry>,
) -> Result<Vec<Candidate<'static>>, GitError> {
    let req = d.req;
    let files: Vec<String> = inbox
        .iter()
        .filter(|e| is_file(e.mode))
        .map(|e| e.oid.clone())
        .collect();
    let mut read = Sample(
        repo.read_objects(&files, req.rules.max_file_bytes as u64)?
            .into_iter(),
    );
    let mut out = Vec::new();
    for entry in inbox {
        let task = match consider(repo, d, &entry, &entry.name, read.next_for(&entry))? {
            Verdict::Claimable(task) => task,
            Verdict::Reject(e) => {
                d.reject(layout::QUEUE, &entry, &e);
                continue;
            }
            Verdict::Skip | Verdict::Later => continue,
        };
        let from = results::entry_path(layout::QUEUE, &entry.name);
        if let Some(first) = task.after().first() {
            let to = layout::blocked_file(first, &task.task_id);
            move_to(d, &from, &to, &entry.oid, "wait");
            continue;
        }
        let place = Place::of(&task, req.now);
        if req.labels.serves(&place.class).is_err() {
            move_to(d, &from, &place.file(&task.task_id), &entry.oid, "file");
            continue;
        }
        out.push(Candidate {
            dir: layout::QUEUE,
            entry: Cow::Owned(entry),
            place: Rc::new(place),
            judged: Some(Verdict::Claimable(task)),
        });
    }
    Ok(out)
}

/// The results of the tasks `task` runs after, to mount as its inputs, if
/// every one completed; else the first that has not.
fn inputs_of(
    repo: &GridRepo,
    index: &ResultIndex,
    task: &Task,
) -> Result<Result<Vec<(Id, Oid)>, Id>, GitError> {
    let found = index.find(repo, task.after())?;
    Ok(task
        .after()
        .iter()
        .map(|p| match found.get(p) {
            Some(r) if r.completed => Ok((p.clone(), r.oid.clone())),
            _ => Err(p.clone()),
        })
        .collect())
}

/// How many tasks to claim: `want_claims`, or the node's fair share if
/// more (up to `share_up_to`). The work in the grid is what is queued and
/// what is claimed but not done (running, or waiting at some node):
/// dividing all of it gives each node the same share however late it comes
/// to a backlog, and a node already holding its share takes no more. Where
/// the queue cannot fill the idle peers' slots, it takes no more than it
/// starts soon: the rest would go back to them at its next look
/// (`pace::give_back`), two commits for nothing.
fn how_many(
    queued: usize,
    claimed: usize,
    req: &SyncRequest<'_>,
    peers: &Peers,
    d: &mut Draft<'_>,
) -> usize {
    if req.share_up_to == 0 {
        return req.want_claims;
    }
    let share = pace::share_to_claim(
        queued + claimed,
        req.holding,
        req.slots,
        peers.live_slots(None),
    );
    d.report.fair_share = share;
    let want = req.want_claims.max(share.min(req.share_up_to));
    if (peers.idle_slots(&[]) as usize) > queued {
        want.min(req.start_soon.max(1))
    } else {
        want
    }
}

/// Each level's quota: this node's share of the level, among the peers
/// that serve any of its classes, and at least its `share` of all the
/// work (`how_many`).
fn level_quotas(
    candidates: &[Candidate<'_>],
    order: &[(usize, u8)],
    req: &SyncRequest<'_>,
    peers: &Peers,
    share: usize,
) -> BTreeMap<u8, usize> {
    let mut levels: BTreeMap<u8, (usize, BTreeSet<&Class>)> = BTreeMap::new();
    let mut last: Option<(u8, *const Place)> = None;
    for &(i, level) in order {
        let l = levels.entry(level).or_default();
        l.0 += 1;
        // Tasks of one batch come together: its class once.
        let place = Rc::as_ptr(&candidates[i].place);
        if last != Some((level, place)) {
            l.1.insert(&candidates[i].place.class);
            last = Some((level, place));
        }
    }
    levels
        .into_iter()
        .map(|(level, (count, classes))| {
            let classes: Vec<&Class> = classes.into_iter().collect();
            let others = peers.live_slots(Some(&classes));
            // Never below the node's share of all the work not done: a
            // level's count leaves out what is claimed of it already, and a
            // node that comes late to a backlog is due as much as the first.
            (level, pace::fair_share(count, req.slots, others).max(share))
        })
        .collect()
}

/// The sample's blobs, read in one bounded call: only files are read, and
/// none bigger than a task may be (a bigger one is refused by its size
/// alone).
struct Sample(std::vec::IntoIter<Blob>);

impl Sample {
    /// What was read for `entry`, the next entry of the sample in order.
    fn next_for(&mut self, entry: &TreeEntry) -> Blob {
        if is_file(entry.mode) {
            self.0.next().unwrap_or(Blob::Missing)
        } else {
            // Symlinks, trees and submodules are refused by their kind,
            // unread.
            Blob::Data(Vec::new())
        }
    }
}

/// The lane candidates among `order`'s, read in that order (inbox ones
/// were read already).
fn read_sample(
    repo: &GridRepo,
    candidates: &[Candidate<'_>],
    order: &[(usize, u8)],
    req: &SyncRequest<'_>,
) -> Result<Sample, GitError> {
    let files: Vec<String> = order
        .iter()
        .map(|(i, _)| &candidates[*i])
        .filter(|c| c.judged.is_none() && is_file(c.entry.mode))
        .map(|c| c.entry.oid.clone())
        .collect();
    let blobs = repo.read_objects(&files, req.rules.max_file_bytes as u64)?;
    Ok(Sample(blobs.into_iter()))
}

/// What becomes of one candidate.
enum Verdict {
    /// A valid task this node may claim (for a signed task, what was
    /// signed).
    Claimable(Task),
    /// Broken, or refused by the node's trust for good: to `failed/`, with
    /// this reason.
    Reject(String),
    /// Not this node's to run now (unsigned, an unknown signer, not yet
    /// issued: `admit`): left where it is, not counted as work left.
    Skip,
    /// Not decided in this round (not read: budget spent, or gone).
    Later,
}

/// Judge one queue entry (its own name `name`) from what was read of it:
/// the task rules, then the node's trust (`admit`).
fn consider(
    repo: &GridRepo,
    d: &Draft<'_>,
    entry: &TreeEntry,
    name: &[u8],
    blob: Blob,
) -> Result<Verdict, GitError> {
    let content = match blob {
        Blob::Data(b) => b,
        Blob::TooBig { size, cap } => {
            return Ok(Verdict::Reject(
                TaskError::TooLarge {
                    size: usize::try_from(size).unwrap_or(usize::MAX),
                    max: usize::try_from(cap).unwrap_or(usize::MAX),
                }
                .to_string(),
            ));
        }
        _ => return Ok(Verdict::Later),
    };
    let name = String::from_utf8_lossy(name);
    Ok(
        match admit::admit(repo, d, entry, &name, entry_kind(entry.mode), &content)? {
            Admit::Run(task) => Verdict::Claimable(task),
            Admit::Skip => Verdict::Skip,
            Admit::Reject(e) => Verdict::Reject(e),
        },
    )
}

/// Claim `task` (the queue file at `from`): out of the queue, into
/// `in_progress/` with a claim block naming this node and the task's
/// arrival. `queued_before` is the time the tasks claimed before it in
/// this batch may take; returns it with this task's.
fn take(
    d: &mut Draft<'_>,
    from: &[u8],
    task: Task,
    arrival: crate::time::Timestamp,
    inputs: Vec<(Id, Oid)>,
    queued_before: chrono::Duration,
) -> chrono::Duration {
    let req = d.req;
    let grace = if d.report.claimed.len() < req.start_now {
        req.claim_grace
    } else {
        req.claim_grace + queued_before
    };
    // Validated: at most max_timeout_seconds.
    let queued_before = queued_before + chrono::Duration::seconds(task.timeout_seconds as i64);
    let claimed = ClaimedTask::new(task, req.node, req.now, grace).arrived(arrival);
    d.edits.insert(from.to_vec(), Edit::Delete);
    d.edits.insert(
        layout::in_progress_file(&claimed.task.task_id).into_bytes(),
        Edit::Put(claimed.to_bytes()),
    );
    d.summary.push(format!("claim {}", claimed.task.task_id));
    if !inputs.is_empty() {
        d.report.inputs.insert(claimed.task.task_id.clone(), inputs);
    }
    d.report.claimed.push(claimed);
    queued_before
}

/// The other nodes taking work at a tip, as their records say: their
/// slots, whether they are idle, and what they serve.
#[derive(Debug, Default, Clone)]
struct Peers(Vec<Peer>);

#[derive(Debug, Clone)]
struct Peer {
    slots: u32,
    idle: bool,
    labels: NodeLabels,
}

impl Peers {
    /// Slots of the peers that serve any of `classes` (all: `None`).
    fn live_slots(&self, classes: Option<&[&Class]>) -> u32 {
        self.0
            .iter()
            .filter(|p| classes.is_none_or(|cs| cs.iter().any(|c| p.labels.serves(c).is_ok())))
            .fold(0u32, |n, p| n.saturating_add(p.slots))
    }

    /// Slots of the idle peers that could take over any of the claims this
    /// node holds (`holding`: their classes; none held: any idle peer).
    fn idle_slots(&self, holding: &[Class]) -> u32 {
        self.0
            .iter()
            .filter(|p| p.idle)
            .filter(|p| holding.is_empty() || holding.iter().any(|c| p.labels.serves(c).is_ok()))
            .fold(0u32, |n, p| n.saturating_add(p.slots))
    }
}

fn peers(repo: &GridRepo, nodes: Vec<TreeEntry>, req: &SyncRequest<'_>) -> Result<Peers, GitError> {
    let others: Vec<TreeEntry> = nodes
        .into_iter()
        .filter(|e| e.mode == EntryMode::File && e.name != layout::KEEP_FILE.as_bytes())
        .filter(|e| layout::json_stem(&e.name_lossy()) != Some(req.node.as_str()))
        .collect();
    // Most records are the same blobs as in the last round: read only the
    // new ones.
    let mut cache = req.records.borrow_mut();
    let unseen: Vec<String> = others
        .iter()
        .filter(|e| !cache.0.contains_key(&e.oid))
        .map(|e| e.oid.clone())
        .collect();
    let read = repo.read_objects(&unseen, layout::MAX_NODE_RECORD_BYTES)?;
    cache.remember(
        unseen.into_iter().zip(
            read.iter()
                .map(|b| b.data().and_then(|b| NodeRecord::parse(b).ok())),
        ),
    );
    Ok(Peers(
        others
            .iter()
            // A record too big to read, or one that names another node than
            // its file does, is no record: that node is not counted.
            .filter_map(|e| {
                cache
                    .0
                    .get(&e.oid)
                    .and_then(Option::as_ref)
                    .filter(|r| layout::json_stem(&e.name_lossy()) == Some(r.node_id.as_str()))
            })
            .filter(|n| n.takes_work(req.now, req.policy.stale_after))
            .map(|n| Peer {
                // A record without the field (an older worker) has one slot.
                slots: n.concurrency.clamp(1, 1024),
                idle: n.status == NodeStatus::Idle,
                labels: n.node_labels(),
            })
            .collect(),
    ))
}

/// Node records already read, by blob id (a blob's content never changes),
/// so that a round reads only the records that changed since the last.
/// Bounded: a grid that keeps pushing new records empties it now and then.
#[derive(Debug, Default)]
pub struct RecordCache(std::collections::HashMap<Oid, Option<NodeRecord>>);

impl RecordCache {
    const MAX: usize = 4096;

    fn remember(&mut self, read: impl Iterator<Item = (Oid, Option<NodeRecord>)>) {
        for (oid, record) in read {
            if self.0.len() >= Self::MAX {
                self.0.clear();
            }
            self.0.insert(oid, record);
        }
    }
}
