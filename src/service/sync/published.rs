//! Published outboxes, the sync's side (PROTOCOL.md, Published results):
//! what a node publishes when its push loses a round, and the peers'
//! results and handbacks a plan carries.
//!
//! A published entry is the node's own outbox entry, so a peer checks it
//! exactly as the node would: the claim at the tip is that node's, made at
//! that moment. The peer writes the file the node would have written, at
//! the path it would have chosen, so that the node, seeing it there, takes
//! it as its own delivery. A node can publish results and requeues only
//! for claims it holds, which it could push to the grid's branch itself:
//! carrying them gives a publisher no power it lacks.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::land::is_ours;
use super::{Draft, admit, assigned, status_word};
use crate::git::published::Publish;
use crate::git::{Blob, Edit, Edits, GitError, GridRepo, Oid, TreeEntry};
use crate::grid::claim::ClaimedTask;
use crate::grid::{Id, layout};
use crate::ledger::queue::requeue_path;
use crate::ledger::results::PendingResult;
use crate::service::outbox::{Finish, OutboxEntry};

/// The directory of a published outbox's tree that holds its entries.
const DIR: &str = "results";

/// Entries a node publishes, and a plan reads of one peer's: the oldest
/// first. More wait for the next time. Enough for a whole batch of short
/// tasks' results to ride one peer's commit: behind a far forge, a node
/// left with more than one publication holds pushes them itself, each
/// writer's turn half a second or more (traced: a drain of 500 `true`
/// tasks on 8 nodes landed its last 399 results in four commits, one a
/// second, after the last task had run).
pub const MAX_ENTRIES: usize = 512;

/// What one publication holds in all, as written (the oldest entries
/// first, one at least): a peer reads it within its round's read budget
/// (`git::ROUND_READ_BUDGET`) beside its own plan.
const MAX_PUBLISHED_BYTES: usize = 1024 * 1024;

/// Peers whose published outboxes one plan reads.
const MAX_PEERS: usize = 32;

/// The largest entry read: a result at its largest, as a JSON string
/// (escaped, up to twice its size) beside its own fields.
const MAX_ENTRY_BYTES: u64 = 2 * layout::MAX_RESULT_BYTES + 64 * 1024;

/// The largest listing of a published tree read: `MAX_ENTRIES` names of
/// the longest ids (an entry of a tree: mode, name, a NUL and an object
/// id of up to 32 bytes, at most 109 bytes).
const MAX_TREE_BYTES: u64 = 64 * 1024;

/// Published commits read already, by id, bounded (emptied when full). An
/// entry whose claim is gone never becomes carriable again (a claim names
/// the moment it was made).
#[derive(Debug, Default)]
pub struct PublishedCache {
    /// Holding nothing to carry any more.
    settled: HashSet<Oid>,
    /// Holding no handback to carry any more (results maybe).
    no_handbacks: HashSet<Oid>,
}

const CACHE_MAX: usize = 1024;

fn remember(set: &mut HashSet<Oid>, tip: Oid) {
    if set.len() >= CACHE_MAX {
        set.clear();
    }
    set.insert(tip);
}

/// The outbox as `node` publishes it: its results, and its requeues if
/// `handbacks` (a retry spends an attempt by the grid's policy, which is
/// the node's to apply), none if it has nothing of these. The oldest
/// first, up to `MAX_ENTRIES` and `MAX_PUBLISHED_BYTES`.
pub fn to_publish(node: &Id, outbox: &[OutboxEntry], handbacks: bool) -> Option<Publish> {
    let mut edits = Edits::new();
    let mut bytes = 0;
    for e in outbox
        .iter()
        .filter(|e| match e.finish {
            Finish::Result { .. } => true,
            Finish::Requeue { .. } => handbacks,
            Finish::Retry { .. } => false,
        })
        .take(MAX_ENTRIES)
    {
        let json = serde_json::to_vec(e).expect("an outbox entry serializes");
        bytes += json.len();
        if bytes > MAX_PUBLISHED_BYTES && !edits.is_empty() {
            break;
        }
        edits.insert(entry_path(&e.task_id).into_bytes(), Edit::Put(json));
    }
    (!edits.is_empty()).then(|| Publish {
        node: node.to_string(),
        message: format!("{node}: results and handbacks for the next commit to carry\n"),
        edits,
        sent: Default::default(),
    })
}

fn entry_path(id: &Id) -> String {
    format!("{DIR}/{id}.json")
}

/// Does `p` hold an entry for each of `outbox`'s?
pub fn publishes_all(p: &Publish, outbox: &[OutboxEntry]) -> bool {
    outbox.iter().all(|e| publishes(p, &e.task_id))
}

/// Does `p` hold the entry for task `id`?
pub fn publishes(p: &Publish, id: &Id) -> bool {
    p.edits.contains_key(entry_path(id).as_bytes())
}

/// Carry what the peers holding claims at this tip have published, for
/// claims that are still theirs; `touched` gains the tasks carried.
pub(super) fn carry(
    repo: &GridRepo,
    d: &mut Draft<'_>,
    touched: &mut BTreeSet<Id>,
) -> Result<(), GitError> {
    let listed = d.claims_and_nodes(repo)?;
    for (peer, tip) in holders_published(repo, d, &listed[0])? {
        if d.req.published_seen.borrow().settled.contains(&tip) {
            continue;
        }
        let results = carry_one(repo, d, touched, &peer, &tip)?;
        if standing::carry(repo, d, touched, &peer, &tip)? && results {
            remember(&mut d.req.published_seen.borrow_mut().settled, tip);
        }
    }
    Ok(())
}

/// The peers holding claims at this tip (`in_progress`; at most
/// `MAX_PEERS`), with the tips of what they published, those that have
/// one. The next fetch brings what they publish.
fn holders_published(
    repo: &GridRepo,
    d: &Draft<'_>,
    in_progress: &[TreeEntry],
) -> Result<Vec<(Id, Oid)>, GitError> {
    let holders = assigned::holders(repo, d, in_progress)?;
    let peers: Vec<Id> = holders
        .by_node
        .iter()
        .filter(|(node, n)| **n > 0 && *node != d.req.node)
        .map(|(node, _)| node.clone())
        .take(MAX_PEERS)
        .collect();
    let names: Vec<&str> = peers.iter().map(Id::as_str).collect();
    repo.watch_outboxes(&names);
    if peers.is_empty() {
        return Ok(Vec::new());
    }
    let tips = repo.published_tips(&names)?;
    Ok(peers
        .into_iter()
        .zip(tips)
        .filter_map(|(peer, tip)| tip.map(|t| (peer, t)))
        .collect())
}

/// The claims that peers handed back and published the requeues of (a
/// busy node hands back what an idle peer would start sooner, and its push
/// may lose rounds for seconds: traced, up to 5 s with the task out of
/// everyone's reach). Carried back to their lanes in this plan, each
/// returned with the file written there: the claiming plan takes them as
/// it takes what is queued, in this same commit. Asked only by a plan that
/// claims; reads nothing beyond the published tips unless one is new.
pub(super) fn carry_handbacks(
    repo: &GridRepo,
    d: &mut Draft<'_>,
    in_progress: &[TreeEntry],
    touched: &BTreeSet<Id>,
) -> Result<Vec<(ClaimedTask, Vec<u8>)>, GitError> {
    let mut out = Vec::new();
    for (peer, tip) in holders_published(repo, d, in_progress)? {
        {
            let seen = d.req.published_seen.borrow();
            if seen.settled.contains(&tip) || seen.no_handbacks.contains(&tip) {
                continue;
            }
        }
        let Some((ids, blobs)) = read_published(repo, d, &tip)? else {
            continue;
        };
        let mut settled = true;
        for (id, found) in ids.iter().zip(blobs.chunks(2)) {
            if deferred(found) {
                settled = false;
                continue;
            }
            let (entry, claim) = (&found[0], &found[1]);
            let handback = carriable(entry, claim, id, &peer, d)
                .is_some_and(|e| matches!(e.finish, Finish::Requeue { .. }));
            if !handback || touched.contains(id) {
                continue;
            }
            settled = false;
            out.extend(requeue_for(repo, d, id, claim, &peer)?);
        }
        if settled {
            remember(&mut d.req.published_seen.borrow_mut().no_handbacks, tip);
        }
    }
    Ok(out)
}

/// Is either blob of a published entry (`found`: the entry, then the
/// claim at the tip) past this look's budget? Then it is read in a later
/// one.
fn deferred(found: &[Blob]) -> bool {
    found.iter().any(|b| matches!(b, Blob::Deferred { .. }))
}

/// A published outbox read beside a tip: the tasks of its entries, and
/// for each two blobs in turn, the entry and the claim at the tip.
type ReadPublished = (Vec<Id>, Vec<Blob>);

/// What a peer published in `commit`, read beside this tip
/// ([`ReadPublished`]). None if the commit holds no listing to read (not a
/// tree, or past its bound).
fn read_published(
    repo: &GridRepo,
    d: &Draft<'_>,
    commit: &str,
) -> Result<Option<ReadPublished>, GitError> {
    let Some(ids) = listed(repo, commit)? else {
        return Ok(None);
    };
    let (specs, caps) = beside_claims(d, commit, (DIR, MAX_ENTRY_BYTES), &ids);
    let blobs = repo.read_objects_capped(&specs, &caps)?;
    Ok(Some((ids, blobs)))
}

/// What to read of `ids` (and how much at most): for each, its entry
/// under `dir` in `commit` (at most `cap` bytes), then its claim at the
/// tip.
fn beside_claims(
    d: &Draft<'_>,
    commit: &str,
    (dir, cap): (&str, u64),
    ids: &[Id],
) -> (Vec<String>, Vec<u64>) {
    let mut specs = Vec::new();
    let mut caps = Vec::new();
    for id in ids {
        specs.push(format!("{commit}:{dir}/{id}.json"));
        caps.push(cap);
        specs.push(format!("{}:{}", d.tip, layout::in_progress_file(id)));
        caps.push(d.req.rules.max_file_bytes as u64);
    }
    (specs, caps)
}

/// The tasks a peer published entries for in `commit` (at most
/// `MAX_ENTRIES`). None if the commit holds no listing to read (not a
/// tree, or past its bound).
fn listed(repo: &GridRepo, commit: &str) -> Result<Option<Vec<Id>>, GitError> {
    listed_in(repo, commit, DIR)
}

/// The tasks named under `dir` in `commit`, as [`listed`].
fn listed_in(repo: &GridRepo, commit: &str, dir: &str) -> Result<Option<Vec<Id>>, GitError> {
    // A listing is read whole: a crafted tree of a million names must not be.
    let tree = repo
        .object_info(&[format!("{commit}:{dir}")])?
        .pop()
        .flatten();
    match tree {
        Some(t) if t.kind == "tree" && t.size <= MAX_TREE_BYTES => {}
        _ => return Ok(None),
    }
    Ok(Some(
        repo.list_dir(commit, dir)?
            .iter()
            .filter_map(|e| layout::json_stem(&e.name_lossy()).and_then(|s| Id::parse(s).ok()))
            .take(MAX_ENTRIES)
            .collect(),
    ))
}

/// The tasks each peer holding claims at this tip has published entries
/// for (results, handbacks): claims it ran or gave up, whatever its
/// record says, which nobody takes over from it (`claim::steal`). Only
/// the listings are read.
pub(super) fn published_ids(
    repo: &GridRepo,
    d: &Draft<'_>,
    in_progress: &[TreeEntry],
) -> Result<BTreeMap<Id, BTreeSet<Id>>, GitError> {
    let mut out = BTreeMap::new();
    for (peer, tip) in holders_published(repo, d, in_progress)? {
        let ids = listed(repo, &tip)?.unwrap_or_default();
        out.insert(peer, ids.into_iter().collect());
    }
    Ok(out)
}

/// The published entry `entry` (for task `id`), if `peer` may deliver it
/// now: for that task and the claim at the tip (`claim`), which is still
/// `peer`'s, made at the entry's moment; a result, by that node, or a
/// requeue.
fn carriable(entry: &Blob, claim: &Blob, id: &Id, peer: &Id, d: &Draft<'_>) -> Option<OutboxEntry> {
    let entry = entry
        .data()
        .and_then(|b| serde_json::from_slice::<OutboxEntry>(b).ok())?;
    // Enforcing trust: only a result the peer signed. A branch is anyone's
    // to push, and a forged result carried in this node's commit had
    // ended the peer's claim, its own result then put aside (a sweep).
    let fits = match &entry.finish {
        Finish::Result { result, signed } => {
            result.task_id == id.as_str()
                && &result.node_id == peer
                && admit::answers::signed_as(
                    d.req,
                    signed.as_deref().unwrap_or_default().as_bytes(),
                    id,
                    peer,
                )
        }
        Finish::Requeue { .. } => true,
        Finish::Retry { .. } => false,
    };
    (fits && &entry.task_id == id && is_ours(&entry, peer, claim.data(), d.req.rules))
        .then_some(entry)
}

/// End `peer`'s claim of task `id` (`claim`, at the tip) as its requeue
/// would: back to its lane, attempt unchanged. Returns the task as it
/// goes back, and the file written there.
/// Not carried where its lane holds another file of its id (a copy
/// pushed again): the peer's claim stays, and the peer lands its requeue
/// itself (by the inbox, if need be).
fn requeue_for(
    repo: &GridRepo,
    d: &mut Draft<'_>,
    id: &Id,
    claim: &Blob,
    peer: &Id,
) -> Result<Option<(ClaimedTask, Vec<u8>)>, GitError> {
    let Some(c) = claim
        .data()
        .and_then(|b| ClaimedTask::parse(&format!("{id}.json"), b, d.req.rules).ok())
    else {
        return Ok(None);
    };
    let to = requeue_path(&c.task, c.arrival());
    if !crate::ledger::room::is_free(repo, d.tip, &[&d.edits], &to)? {
        return Ok(None);
    }
    let bytes = c.requeued(c.claim.attempt);
    d.edits
        .insert(layout::in_progress_file(id).into_bytes(), Edit::Delete);
    d.edits.insert(to.into_bytes(), Edit::Put(bytes.clone()));
    d.summary.push(format!("requeue {id} for {peer}"));
    d.report.carried_back.push((id.clone(), peer.clone()));
    Ok(Some((c, bytes)))
}

/// Carry what `peer` published in `commit`. True if nothing in it can be
/// carried now or later.
fn carry_one(
    repo: &GridRepo,
    d: &mut Draft<'_>,
    touched: &mut BTreeSet<Id>,
    peer: &Id,
    commit: &str,
) -> Result<bool, GitError> {
    let Some((ids, blobs)) = read_published(repo, d, commit)? else {
        return Ok(true);
    };
    let mut settled = true;
    for (id, found) in ids.iter().zip(blobs.chunks(2)) {
        if deferred(found) {
            settled = false;
            continue;
        }
        let (entry, claim) = (&found[0], &found[1]);
        let Some(entry) = carriable(entry, claim, id, peer, d) else {
            continue;
        };
        if touched.contains(id) {
            // This plan ends the claim another way: look again next time.
            settled = false;
            continue;
        }
        let Finish::Result { result, signed } = &entry.finish else {
            if requeue_for(repo, d, id, claim, peer)?.is_some() {
                touched.insert(id.clone());
                settled = false;
            }
            continue;
        };
        touched.insert(id.clone());
        d.edits
            .insert(layout::in_progress_file(id).into_bytes(), Edit::Delete);
        d.summary
            .push(format!("{} {id} for {peer}", status_word(result.status)));
        d.results.push(PendingResult {
            node: peer.clone(),
            stem: id.to_string(),
            result: result.clone(),
            signed: signed.as_ref().map(|s| s.clone().into_bytes()),
        });
        d.report.carried.push((id.clone(), peer.clone()));
        // Carried now; if this push loses, the next plan reads it again.
        settled = false;
    }
    Ok(settled)
}

/// Of the peers `busy` (busy by their records), those that ran dry: they
/// hold no claim at this tip (`in_progress`), or every claim naming them
/// is a result they published for a peer to carry. A node publishes only
/// with nothing left to run and a push that lost (PROTOCOL.md, Published
/// results); while its pushes keep losing, its record cannot say it ran
/// dry, and once a peer has carried the last of what it published, it
/// holds nothing while its record still says busy (only its own commit
/// rewrites that, and a dead node's claims are reaped before its record
/// ages out of the live peers). Traced in a mixed drain of 8: such a node
/// lost five to eight rounds in a row, 3.5-4 s with work queued, while
/// the nodes that landed claimed 8-13 tasks each and none for it; behind
/// a far host, once a peer had carried its results, one lost six rounds
/// over 9 s and ran nothing more in the drain. `holders`: how many claims
/// each node holds at this tip (`assigned::holders`, which the caller has
/// read). Reads no published tree unless one is new to this node.
pub(super) fn ran_dry(
    repo: &GridRepo,
    d: &Draft<'_>,
    holders: &BTreeMap<Id, usize>,
    busy: &[Id],
) -> Result<BTreeSet<Id>, GitError> {
    let mut out = BTreeSet::new();
    let mut holding: Vec<(&Id, usize)> = Vec::new();
    for peer in busy.iter().take(MAX_PEERS) {
        match holders.get(peer) {
            Some(&held) if held > 0 => holding.push((peer, held)),
            _ => {
                out.insert(peer.clone());
            }
        }
    }
    let names: Vec<&str> = holding.iter().map(|(p, _)| p.as_str()).collect();
    let tips = repo.published_tips(&names)?;
    let fresh = holding
        .into_iter()
        .zip(tips)
        .filter_map(|(p, tip)| tip.map(|t| (p, t)))
        .filter(|(_, tip)| !d.req.published_seen.borrow().settled.contains(tip));
    for ((peer, held), tip) in fresh {
        let Some((ids, blobs)) = read_published(repo, d, &tip)? else {
            continue;
        };
        let theirs = ids
            .iter()
            .zip(blobs.chunks(2))
            .filter(|(id, found)| carriable(&found[0], &found[1], id, peer, d).is_some())
            .count();
        if theirs == held {
            out.insert(peer.clone());
        }
    }
    Ok(out)
}

mod standing;
pub use standing::{Standing, with_standing};

#[cfg(test)]
mod tests;
