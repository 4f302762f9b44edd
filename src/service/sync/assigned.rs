//! Claims made for idle peers (PROTOCOL.md, Assigned claims). A node that
//! claims from a backlog claims for idle peers too, in its one commit, so
//! that one push starts many nodes instead of each waiting its turn on the
//! ref. Here: who holds claims at a tip (read once per blob, through a
//! cache), the claims a peer made for this node (found when it looks, and
//! started before any push of its own), and its answers to them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Draft;
use crate::git::{Blob, Edit, EntryMode, GitError, GridRepo, Oid, TreeEntry};
use crate::grid::claim::ClaimedTask;
use crate::grid::{Class, Id, Task, layout};
use crate::ledger::queue::requeue_to;

/// Claim files read in one sync, at most, beyond those read before: a grid
/// that fills `in_progress/` with junk cannot make a look long. Those not
/// read count for nobody until a later look reads them.
const MAX_CLAIMS_READ: usize = 512;

/// Who each claim file names, by blob id (a blob never changes), so that
/// a look reads only the claims made since the last. Bounded: a grid that
/// keeps pushing new claims empties it now and then, and claims no longer
/// listed are dropped once they outnumber those listed (after a drain,
/// the cache does not keep thousands of finished claims alive).
#[derive(Debug, Default)]
pub struct ClaimCache(HashMap<Oid, Option<Holder>>);

#[derive(Debug, Clone)]
struct Holder {
    node: Id,
    /// Made for it and not answered yet: when that turns late.
    late_at: Option<crate::time::Timestamp>,
    /// The task's priority and when it arrived: its level at any moment.
    priority: u8,
    arrival: crate::time::Timestamp,
    /// The labels it requires.
    class: Class,
    /// When it was made (none if unreadable).
    claimed_at: Option<crate::time::Timestamp>,
}

impl ClaimCache {
    const MAX: usize = 8192;

    fn remember(&mut self, oid: Oid, holder: Option<Holder>) {
        if self.0.len() >= Self::MAX {
            self.0.clear();
        }
        self.0.insert(oid, holder);
    }
}

/// A cache by blob id keeps only the blobs of `listed` once the rest
/// outnumber them: after a drain it does not keep thousands of finished
/// claims or old records alive, and a few stale ones are not worth a set
/// each round.
pub(super) fn forget_unlisted<V>(cache: &mut HashMap<Oid, V>, listed: &[&TreeEntry]) {
    if cache.len() > 2 * listed.len() + 64 {
        let keep: std::collections::HashSet<&str> = listed.iter().map(|e| e.oid.as_str()).collect();
        cache.retain(|oid, _| keep.contains(oid.as_str()));
    }
}

/// The claims at a tip, by the node they name.
#[derive(Debug, Default)]
pub(super) struct Holders {
    /// Claims naming each node (answered or not).
    pub by_node: BTreeMap<Id, usize>,
    /// The lowest level (priority with age) among the claims naming each
    /// node: what it holds, as the tip shows it before its record can.
    pub lowest: BTreeMap<Id, u8>,
    /// The nodes named by a claim made for them that is late to be
    /// answered (`grid::claim::ANSWER_LATE`): they may be gone.
    pub late: BTreeSet<Id>,
    /// The claim files made for this node and not answered yet, with
    /// what their tasks' levels are read from.
    mine: Vec<(TreeEntry, Holder)>,
}

/// One claim at a tip, as [`held_claims`] reads it.
#[derive(Debug, Clone)]
pub(super) struct HeldClaim {
    pub node: Id,
    pub level: u8,
    pub unanswered: bool,
    /// Made for its node and not answered: when that turns late
    /// (`grid::claim::ANSWER_LATE`).
    pub late_at: Option<crate::time::Timestamp>,
    pub class: Class,
    pub claimed_at: Option<crate::time::Timestamp>,
}

/// Who holds the claims listed in `in_progress/` (`entries`), as far as
/// this look can read.
pub(super) fn holders(
    repo: &GridRepo,
    d: &Draft<'_>,
    entries: &[TreeEntry],
) -> Result<Holders, GitError> {
    holders_of(
        repo,
        (d.req.node, d.req.now),
        d.req.rules,
        d.req.claims_seen,
        entries,
    )
}

/// Are there claims made for `node` at `tip`, that it does not hold
/// (`held`), of work above `level` at `now`? A look at a free slot asks,
/// with a claim of `level` to start next: a peer may have claimed a burst
/// of higher work for it, which it then syncs to start first.
pub fn made_for(
    repo: &GridRepo,
    tip: &str,
    (node, held): (&Id, &BTreeSet<Id>),
    (level, now): (u8, crate::time::Timestamp),
    rules: &crate::grid::TaskRules,
    cache: &std::cell::RefCell<ClaimCache>,
) -> Result<bool, GitError> {
    let entries = repo.list_dir(tip, layout::IN_PROGRESS)?;
    let h = holders_of(repo, (node, now), rules, cache, &entries)?;
    Ok(h.mine.iter().any(|(e, m)| {
        crate::grid::schedule::effective_priority(m.priority, m.arrival, now) > level
            && layout::json_stem(&e.name_lossy())
                .and_then(|s| Id::parse(s).ok())
                .is_none_or(|id| !held.contains(&id))
    }))
}

fn holders_of(
    repo: &GridRepo,
    (node, now): (&Id, crate::time::Timestamp),
    rules: &crate::grid::TaskRules,
    cache: &std::cell::RefCell<ClaimCache>,
    entries: &[TreeEntry],
) -> Result<Holders, GitError> {
    let files = read_unseen(repo, rules, cache, entries)?;
    let cache = cache.borrow();
    let mut out = Holders::default();
    for e in files {
        let Some(Some(h)) = cache.0.get(&e.oid) else {
            continue;
        };
        *out.by_node.entry(h.node.clone()).or_default() += 1;
        let level = crate::grid::schedule::effective_priority(h.priority, h.arrival, now);
        out.lowest
            .entry(h.node.clone())
            .and_modify(|l| *l = (*l).min(level))
            .or_insert(level);
        if let Some(late_at) = h.late_at {
            if &h.node == node {
                out.mine.push((e.clone(), h.clone()));
            }
            if late_at <= now {
                out.late.insert(h.node.clone());
            }
        }
    }
    Ok(out)
}

/// The claim files among `entries`, with those the cache lacks read into
/// it (at most `MAX_CLAIMS_READ` a look).
fn read_unseen<'e>(
    repo: &GridRepo,
    rules: &crate::grid::TaskRules,
    cache: &std::cell::RefCell<ClaimCache>,
    entries: &'e [TreeEntry],
) -> Result<Vec<&'e TreeEntry>, GitError> {
    let files: Vec<&TreeEntry> = entries
        .iter()
        .filter(|e| e.mode == EntryMode::File && e.name != layout::KEEP_FILE.as_bytes())
        .collect();
    let mut cache = cache.borrow_mut();
    forget_unlisted(&mut cache.0, &files);
    // By blob, with a name it is found under: a claim's task id is its
    // file's stem.
    let unseen: BTreeMap<Oid, String> = files
        .iter()
        .filter(|e| !cache.0.contains_key(&e.oid))
        .map(|e| (e.oid.clone(), e.name_lossy()))
        .take(MAX_CLAIMS_READ)
        .collect();
    let oids: Vec<Oid> = unseen.keys().cloned().collect();
    let read = repo.read_objects(&oids, rules.max_file_bytes as u64)?;
    for ((oid, name), blob) in unseen.into_iter().zip(read) {
        let holder = match &blob {
            Blob::Data(b) => ClaimedTask::parse(&name, b, rules).ok().map(|c| Holder {
                late_at: c.claim.late_at(),
                priority: c.task.priority(),
                arrival: c.arrival(),
                class: c.task.class(),
                claimed_at: crate::time::parse(&c.claim.claimed_at),
                node: c.claim.node_id,
            }),
            // Not read for lack of budget: not known yet.
            Blob::Deferred { .. } => continue,
            _ => None,
        };
        cache.remember(oid, holder);
    }
    Ok(files)
}

/// The claims listed in `in_progress/` (`entries`) of the tasks `keep`
/// picks, as far as this look can read, by task: the node each names,
/// its level, whether it was made for that node and is not answered
/// yet, and its class. Apart from [`holders`], which every plan asks and
/// which a drain of 500 claims would pay for at each round: only claims
/// taken over, and watched for that, read this.
pub(super) fn held_claims(
    repo: &GridRepo,
    d: &Draft<'_>,
    entries: &[TreeEntry],
    keep: impl Fn(&Id) -> bool,
) -> Result<BTreeMap<Id, HeldClaim>, GitError> {
    let files = read_unseen(repo, d.req.rules, d.req.claims_seen, entries)?;
    let cache = d.req.claims_seen.borrow();
    let now = d.req.now;
    let mut out = BTreeMap::new();
    for e in files {
        let Some(Some(h)) = cache.0.get(&e.oid) else {
            continue;
        };
        let Some(task) = layout::json_stem(&e.name_lossy())
            .and_then(|s| Id::parse(s).ok())
            .filter(|t| keep(t))
        else {
            continue;
        };
        let claim = HeldClaim {
            node: h.node.clone(),
            level: crate::grid::schedule::effective_priority(h.priority, h.arrival, now),
            unanswered: h.late_at.is_some(),
            late_at: h.late_at,
            class: h.class.clone(),
            claimed_at: h.claimed_at,
        };
        out.insert(task, claim);
    }
    Ok(out)
}

/// The claims made for this node, unanswered, that it does not hold, as
/// files at this tip.
fn unheld(repo: &GridRepo, d: &mut Draft<'_>) -> Result<Vec<ClaimedTask>, GitError> {
    let listed = d.claims_and_nodes(repo)?;
    let holders = holders(repo, d, &listed[0])?;
    if holders.mine.is_empty() {
        return Ok(Vec::new());
    }
    let req = d.req;
    let oids: Vec<Oid> = holders.mine.iter().map(|(e, _)| e.oid.clone()).collect();
    let blobs = repo.read_objects(&oids, req.rules.max_file_bytes as u64)?;
    Ok(holders
        .mine
        .iter()
        .zip(blobs)
        .filter_map(|((e, _), b)| ClaimedTask::parse(&e.name_lossy(), b.data()?, req.rules).ok())
        .filter(|c| !req.held.contains(&c.task.task_id))
        .collect())
}

/// A node stopping puts back the claims made for it that it has not
/// started, as the same attempt, rather than leave them for `answer_by`.
pub(super) fn decline(repo: &GridRepo, d: &mut Draft<'_>) -> Result<(), GitError> {
    for c in unheld(repo, d)? {
        let id = &c.task.task_id;
        // Nowhere free (copies pushed again): left for its `answer_by`.
        let Some(to) = requeue_to(repo, d.tip, &[&d.edits], &c.task, c.arrival())? else {
            continue;
        };
        d.edits
            .insert(layout::in_progress_file(id).into_bytes(), Edit::Delete);
        d.edits
            .insert(to.into_bytes(), Edit::Put(c.requeued(c.claim.attempt)));
        d.summary.push(format!("requeue {id} (not taken)"));
        d.report.requeued += 1;
    }
    Ok(())
}

/// The claims peers made for this node that it does not hold yet and can
/// run: it starts them at once, and answers them in its next commit.
/// Claims it cannot run (its rules or labels refuse the task), and those
/// beyond what it may hold (`req.adopt`, and `req.adopt_above` more of
/// work above what it holds waiting), it leaves: unanswered, they go
/// back to the queue at their `answer_by`, or at its own next reap.
pub(super) fn discover(repo: &GridRepo, d: &mut Draft<'_>) -> Result<Vec<ClaimedTask>, GitError> {
    let req = d.req;
    let mut found = Vec::new();
    // Taken within `req.adopt`, and beyond it as work above what it
    // holds waiting.
    let (mut within, mut above) = (0, 0);
    for c in unheld(repo, d)? {
        // Its own rules, not the assigning node's: a task it would not
        // claim it does not run for being handed it.
        let strict = Task::parse(&c.requeued(c.claim.attempt), req.rules);
        if strict.is_err() || req.labels.serves(&c.task.class()).is_err() {
            tracing::warn!(task_id = %c.task.task_id, "a claim assigned to this node asks what it does not serve; left to go back to the queue");
            continue;
        }
        if within < req.adopt {
            within += 1;
            found.push(c);
        } else if above < req.adopt_above
            && req
                .record
                .holds_level
                .is_some_and(|held| c.effective_priority(req.now) > held)
        {
            above += 1;
            found.push(c);
        }
        if within >= req.adopt && above >= req.adopt_above {
            break;
        }
    }
    Ok(found)
}

/// The claims this node holds (`req.held` less its outbox, whose landing
/// judges its own, and the claims it answers), as the tip has them. One
/// it has not started (not in its record's `running`) that the tip names
/// another node for: an idle peer took it over (`claim::steal`), or it
/// was reaped and claimed again; the node drops it (`SyncReport::taken`).
/// One it runs it runs on while the tip names anyone: its result lands if
/// it is the first (`Claim::taken_from`). One it runs that the tip no
/// longer holds, nor queues: the task ended elsewhere (the first holder
/// of a claim taken over had started it after all, and its result
/// landed first), and the node stops its run, whose result would be
/// superseded (`SyncReport::ended`). One not started and not at the tip
/// is left: its result may have landed.
pub(super) fn watch_taken(
    repo: &GridRepo,
    d: &mut Draft<'_>,
    touched: &BTreeSet<Id>,
) -> Result<(), GitError> {
    let req = d.req;
    let outbox: BTreeSet<&Id> = req.outbox.iter().map(|e| &e.task_id).collect();
    let mine: Vec<&Id> = req
        .held
        .iter()
        .filter(|id| !outbox.contains(id) && !req.answer.contains(*id) && !touched.contains(*id))
        .collect();
    if mine.is_empty() {
        return Ok(());
    }
    let runs = |id: &Id| req.record.running.iter().any(|r| r == id.as_str());
    let listed = d.claims_and_nodes(repo)?;
    let claims = held_claims(repo, d, &listed[0], |t| mine.contains(&t))?;
    // A task it runs whose claim was not read here (rare): is its file at
    // the tip at all?
    let listed_at_tip = |id: &Id| {
        let name = format!("{id}.json");
        listed[0].iter().any(|e| e.name == name.as_bytes())
    };
    let mut gone = Vec::new();
    for id in mine {
        match claims.get(id) {
            Some(c) if &c.node != req.node && !runs(id) => d.report.taken.push(id.clone()),
            None if runs(id) && !listed_at_tip(id) => gone.push(id.clone()),
            _ => {}
        }
    }
    if !gone.is_empty() {
        let queued = d.queue(repo)?.paths();
        d.report
            .ended
            .extend(gone.into_iter().filter(|id| !queued.contains_key(id)));
    }
    Ok(())
}

/// The claim files of tasks `ids` at this plan's tip, read in one call
/// (bounded as a task is).
pub(super) fn claim_files(
    repo: &GridRepo,
    d: &Draft<'_>,
    ids: &[&Id],
) -> Result<Vec<Blob>, GitError> {
    let specs: Vec<String> = ids
        .iter()
        .map(|id| format!("{}:{}", d.tip, layout::in_progress_file(id)))
        .collect();
    repo.read_objects(&specs, d.req.rules.max_file_bytes as u64)
}

/// Answer the claims made for this node that it has started
/// (`req.answer`): the claim becomes its own. One whose result lands in
/// this very commit needs no answer. One it no longer holds (reaped after
/// its `answer_by`, and maybe claimed again) is lost: the node stops
/// running it, so that no two live nodes run one task for longer than it
/// takes to find out.
pub(super) fn answer(
    repo: &GridRepo,
    d: &mut Draft<'_>,
    landing: &BTreeSet<Id>,
) -> Result<(), GitError> {
    let req = d.req;
    if req.answer.is_empty() {
        return Ok(());
    }
    let ids: Vec<&Id> = req.answer.iter().collect();
    let blobs = claim_files(repo, d, &ids)?;
    for (id, blob) in ids.into_iter().zip(blobs) {
        if matches!(blob, Blob::Deferred { .. }) {
            continue;
        }
        d.report.answered.push(id.clone());
        // Ended by this commit, or landed already (a peer carried its
        // published result): not lost.
        if landing.contains(id) || d.report.landed.contains(id) {
            continue;
        }
        let Some(c) = blob
            .data()
            .and_then(|b| ClaimedTask::parse(&format!("{id}.json"), b, req.rules).ok())
        else {
            d.report.lost.push(id.clone());
            continue;
        };
        if &c.claim.node_id != req.node {
            d.report.lost.push(id.clone());
            continue;
        }
        if !c.claim.unanswered() {
            continue;
        }
        d.edits.insert(
            layout::in_progress_file(id).into_bytes(),
            Edit::Put(c.answered().to_bytes()),
        );
        d.summary.push(format!("take {id}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_no_longer_listed_go_once_they_outnumber_the_listed() {
        let entry = |i: usize| TreeEntry {
            mode: EntryMode::File,
            oid: format!("{i:040x}"),
            name: format!("n{i}.json").into_bytes(),
        };
        let mut cache: HashMap<Oid, ()> = (0..300).map(|i| (entry(i).oid, ())).collect();
        let listed: Vec<TreeEntry> = (290..300).map(entry).collect();
        let refs: Vec<&TreeEntry> = listed.iter().collect();
        forget_unlisted(&mut cache, &refs);
        assert_eq!(cache.len(), 10);
        assert!(refs.iter().all(|e| cache.contains_key(&e.oid)));
        // A few stale ones stay.
        cache.extend((300..350).map(|i| (entry(i).oid, ())));
        forget_unlisted(&mut cache, &refs);
        assert_eq!(cache.len(), 60);
    }
}
