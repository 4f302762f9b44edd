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
//! Here: the candidates, the claim loop and the order. Apart: `size.rs`,
//! how many (by fair share) and each level's quota; `judge.rs`, reading
//! and judging a candidate ([`Verdict`]), and filing the inbox; `take.rs`,
//! the edits of a task taken or moved; `peers.rs`, the peers' records.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use super::admit;
use super::{Draft, SyncRequest};
use crate::git::{Edit, GitError, GridRepo, TreeEntry};
use crate::grid::layout::Place;
use crate::grid::schedule::{self, Picker};
use crate::grid::{Class, Id, layout};
use crate::ledger::queue::QueueAt;
use crate::ledger::result_index::ResultIndex;
use crate::ledger::results;
use crate::service::share;

mod assign;
mod judge;
mod order;
mod peers;
mod released;
mod size;
mod steal;
mod take;
mod takeover;
mod unanswered;

use assign::Assignees;
use judge::{Verdict, consider, file_inbox, handed_back, read_sample};
use peers::{Peers, peers};
pub(super) use released::claim_released;
use size::{how_many, level_quotas, others_sharing};
pub(super) use steal::steal;
use take::{inputs_of, move_to, take, wait_under};

/// Inbox entries read (and filed into their lanes) in one sync, at least
/// (more when the node claims more): an old grid's flat queue moves into
/// lanes a batch at a time, each batch one commit of small edits.
const INBOX_BATCH: usize = 256;
/// Entries of `tasks/lanes/` that are no place for a task, moved to
/// `failed/` in one sync, at most.
const MISPLACED_BATCH: usize = 64;

/// Lane entries a round reads at most past entries not this node's to
/// run (the claim loop): a flood is read through in a few rounds.
const SKIPS_READ: usize = 4096;

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

    /// Who submitted it, as its path says.
    fn party(&self) -> Option<&str> {
        self.place.batch.submitter.as_ref().map(|s| s.as_str())
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
    touched: &mut BTreeSet<Id>,
) -> Result<(), GitError> {
    let req = d.req;
    if req.want_claims == 0 && !req.survey {
        return Ok(());
    }
    let mut claiming = req.want_claims > 0 && req.queue_empty_at.is_none_or(|t| t != d.tip);
    // Claims peers handed back and published the requeues of: back in
    // their lanes with this commit, and claimable in it like what is
    // queued. Looked for even where the queue was empty at this tip: a
    // published branch moves apart from the grid's.
    let listed = d.claims_and_nodes(repo)?;
    let handed = if req.want_claims > 0 {
        super::published::carry_handbacks(repo, d, &listed[0], touched)?
    } else {
        Vec::new()
    };
    claiming |= !handed.is_empty();
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
    // Queued files of an id this plan settles already (a result, a claim
    // handed back): copies, which wait for their turn (below), still work.
    let mut copies = 0;
    for l in &queue.lanes {
        let ok = *serves
            .entry(&l.place.class)
            .or_insert_with(|| req.labels.serves(&l.place.class).is_ok());
        let new = not_touched(l.file_name());
        copies += usize::from(ok && !new);
        // Not work for this node until its policy changes (trust).
        if ok && new && !admit::skipped(d, &l.entry.oid) {
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
    // The claims and the nodes, in one listing (above): the work not done
    // counts what is claimed, and the peers' records say who shares it.
    let [in_progress, nodes] = &*listed;
    let claimed = in_progress
        .iter()
        .filter(|e| e.name != layout::KEEP_FILE.as_bytes() && not_touched(&e.name))
        .count();
    let claimed = claimed.saturating_sub(handed.len());
    for (c, bytes) in handed {
        touched.insert(c.task.task_id.clone());
        candidates.extend(handed_back(repo, d, &c, bytes)?);
    }
    let mut peers = if candidates.is_empty() && inbox.is_empty() && !req.survey && !req.joining {
        Peers::default()
    } else {
        peers(repo, nodes, req)?
    };
    // A peer idle by its record may hold claims made for it already, which
    // its record cannot show yet: it is not idle, neither to claim for nor
    // to hand claims back to. A peer busy by its record that holds
    // nothing, or whose claims are all results it published, has run dry:
    // claimed for as an idle one. Who holds what is read once for both.
    let checks_dry =
        claiming && req.assign_within.is_some() && !(candidates.is_empty() && inbox.is_empty());
    if peers.any_assignable() || checks_dry && !peers.busy_takers().is_empty() {
        let holders = super::assigned::holders(repo, d, in_progress)?;
        peers.holding(&holders.by_node);
        let busy = peers.busy_takers();
        if checks_dry && !busy.is_empty() {
            let dry = super::published::ran_dry(repo, d, &holders.by_node, &busy)?;
            peers.ran_dry(&dry);
        }
    }
    if claiming
        && req.joining
        && stays_out(
            repo,
            d,
            in_progress,
            &peers,
            &candidates,
            inbox.len() + claimed,
        )?
    {
        d.report.stayed_out = true;
        d.report.queue_left = candidates.len() + inbox.len() + copies;
        return Ok(());
    }
    let assigning = req
        .assign_within
        .filter(|_| claiming && peers.any_assignable());
    d.report.idle_peer_slots = peers.idle_slots(req.holding_classes);
    d.report.peers_dry = peers.dry_slots(req.holding_classes);
    d.report.live_peer_slots = peers.live_slots(None);
    // The inbox first: what it holds is read now (a batch of it), filed
    // into its lane, and claimable in this same round. A look made while
    // holding claims not started reads it too: a task pushed there by hand
    // above what the node holds is seen by this look, not at the node's
    // next claim, and what was read goes to its lane in this commit.
    let mut unread = inbox.len();
    if claiming || req.preempt_below.is_some() {
        let batch = if claiming {
            INBOX_BATCH.max(req.want_claims.max(req.share_up_to) * 2 + 4)
        } else {
            INBOX_BATCH
        };
        fastrand::shuffle(&mut inbox);
        unread = inbox.len().saturating_sub(batch);
        inbox.truncate(batch);
        candidates.extend(file_inbox(repo, d, std::mem::take(&mut inbox))?);
    }
    let top = candidates.iter().map(|c| level_of(&c.place, req)).max();
    // Holding claims not started, a node that sees work of a higher level
    // claims it in this very look (its share of it, above what it holds),
    // so that it starts at the node's next free slot; what it held goes
    // back by the outbox (`share::preempt`).
    let above = match (claiming, req.preempt_below, top) {
        (false, Some(held), Some(top)) if top > held => Some(held),
        _ => None,
    };
    let scarcity = order::scarcity(&queue, &candidates, req, &peers);
    d.report.servers = scarcity.counts();
    let places = order::queued(&candidates, &scarcity);
    // Surveying while holding claims not started, with nothing above
    // them: what a look owes against them (`held::Owed`: the tasks of a
    // submitter who came late, work fewer nodes serve), claimed now.
    let mut owed = match (claiming, above, &req.owed) {
        (false, None, Some(o)) if order::owes_any(o, &places, req) => Some(o.clone()),
        _ => None,
    };
    if !claiming && above.is_none() && owed.is_none() {
        for c in &candidates {
            file_unclaimed(repo, d, c)?;
        }
        d.report.queue_left = candidates.len() + unread + copies;
        d.report.top_queued = top;
        return Ok(());
    }
    let servers: Vec<u32> = places.iter().map(|q| q.servers).collect();
    let order =
        schedule::order_turning(&places, req.now, req.turn_after.map(|l| l.map(Id::as_str)));
    let queued = candidates.len() + unread;
    let (want, mut assignees) = match (above, assigning) {
        _ if owed.is_some() => (req.preempt_up_to, Assignees::none()),
        (Some(held), _) => {
            // A burst above what this node holds: its share for itself, and
            // the peers' shares for them, in this one commit.
            let plan = match (req.assign_within, top) {
                (Some(within), Some(top)) => {
                    let holders = super::assigned::holders(repo, d, in_progress)?;
                    let burst = order.iter().filter(|(_, l)| *l > held).count();
                    let others = peers.live_slots(None);
                    let mine = share::fair_share(burst, req.slots, others).min(req.preempt_up_to);
                    Assignees::burst(
                        burst,
                        mine,
                        (req.slots, others),
                        peers.burst_assignable(top, &holders, req.task_secs.or(peers.task_secs())),
                        within,
                    )
                }
                _ => Assignees::none(),
            };
            (req.preempt_up_to, plan)
        }
        (None, None) => (how_many(queued, claimed, req, &peers, d), Assignees::none()),
        (None, Some(within)) => {
            let want = how_many(queued, claimed, req, &peers, d);
            let others = others_sharing(queued + claimed, req, &peers);
            let blind = req.task_secs.or(peers.task_secs()).is_none();
            let plan = Assignees::plan(
                queued + claimed,
                queued.saturating_sub(want),
                (req.slots, others),
                blind,
                &peers,
                within,
            );
            (want, plan)
        }
    };
    let quotas = level_quotas(&candidates, &order, req, &peers, d.report.fair_share);
    let mut sample = order.len().min((want + assignees.total()) * 2 + 4);
    let mut read = read_sample(repo, &candidates, &order[..sample], req)?;
    let mut skipped = 0;
    // The ids claims hold at this tip (`<id>.json`).
    let running: BTreeSet<&[u8]> = in_progress.iter().map(|e| &e.name[..]).collect();
    let mut picker = Picker::new(want);
    let mut results_index: Option<ResultIndex> = None;
    let mut claimed_ids: BTreeSet<Id> = BTreeSet::new();
    let mut left = unread + copies;
    let mut top: Option<u8> = None;
    // A task claimed ahead waits for a slot: for the tasks claimed before
    // it in this batch (the wait for tasks already running or waiting is in
    // `claim_grace`). Its deadline allows for their timeouts, so that a
    // healthy node's batch is never taken for orphaned.
    let mut queued_before = chrono::Duration::zero();
    for (k, &(i, level)) in order.iter().enumerate() {
        // Entries not this node's to run (unsigned, an unknown signer:
        // `admit`) took the sample's reads: read on, doubling, up to
        // SKIPS_READ a round, while the skip cache holds them (`skips`).
        // 6,000 unsigned files at p99 held signed work back 36 s before.
        if k == sample
            && skipped > 0
            && picker.taken() < want
            && sample < SKIPS_READ
            && admit::skips::room_for(req, SKIPS_READ)
        {
            let end = order.len().min(sample * 2).min(SKIPS_READ);
            read = read_sample(repo, &candidates, &order[sample..end], req)?;
            sample = end;
        }
        if above.is_some_and(|held| level <= held) {
            // Nothing at or below what it holds is claimed in a look.
            left += 1;
            top = top.max(Some(level));
            file_unclaimed(repo, d, &candidates[i])?;
            continue;
        }
        if owed
            .as_ref()
            .is_some_and(|o| !o.owes(level, candidates[i].party(), servers[i]))
        {
            left += 1;
            top = top.max(Some(level));
            file_unclaimed(repo, d, &candidates[i])?;
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
            Verdict::Skip => {
                skipped += 1;
                continue;
            }
            Verdict::Elsewhere(_) => continue,
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
                repo,
                d,
                &c.path(),
                &home.file(&task.task_id),
                &c.entry.oid,
                "file",
            )?;
            continue;
        }
        // Claimed already: a copy of a running task's file pushed again,
        // or a second file of one id. Claimed, it would overwrite the
        // claim that runs, whose result would then be dropped. It stays
        // where it is, and runs once no claim holds the id, as a task
        // submitted again does: left in the queue (a drain waits for it),
        // though not as higher work for which held claims go back (a copy
        // of a running task's id with a higher priority would otherwise
        // turn nodes' claims over for as long as the task runs).
        let held = d
            .edits
            .get(layout::in_progress_file(&task.task_id).as_bytes())
            .map_or_else(
                || running.contains(format!("{}.json", task.task_id).as_bytes()),
                |e| !matches!(e, Edit::Delete),
            );
        if held || !claimed_ids.insert(task.task_id.clone()) {
            left += 1;
            if c.dir == layout::QUEUE {
                move_to(
                    repo,
                    d,
                    &c.path(),
                    &home.file(&task.task_id),
                    &c.entry.oid,
                    "file",
                )?;
            }
            continue;
        }
        let inputs = if task.after().is_empty() {
            Ok(Vec::new())
        } else {
            if results_index.is_none() {
                results_index = Some(ResultIndex::list(repo, d.tip)?);
            }
            let counts = |id: &Id, bytes: &[u8]| admit::result_counts(req, id, bytes);
            inputs_of(
                repo,
                results_index.as_ref().expect("listed above"),
                &task,
                req.trust.is_some().then_some(&counts),
                &[],
            )?
        };
        let inputs = match inputs {
            Ok(inputs) => inputs,
            Err(wait_for) => {
                // A task it runs after has not completed (it was pushed
                // among the ready ones by hand): it waits under that one,
                // and what becomes of it is decided there (`ledger::deps`).
                wait_under(repo, d, &c.path(), &wait_for, &task.task_id, &c.entry.oid)?;
                continue;
            }
        };
        let path = c.path();
        let arrival = c.place.batch.minute;
        // An idle peer due some is dealt its turn (`Assignees::filled`).
        let peer = assignees.who(&c.place.class, level, (&task, &inputs), &scarcity);
        let peers_turn = peer.is_some_and(|who| assignees.filled(who) < picker.filled());
        if !peers_turn && picker.offer(level, quotas.get(&level).copied().unwrap_or(usize::MAX)) {
            if let Some(o) = owed.as_mut() {
                o.take(
                    level,
                    task.submitter.as_ref().map(|s| s.as_str()),
                    servers[i],
                );
            }
            queued_before = take(d, (&path, None), task, arrival, inputs, queued_before);
            continue;
        }
        // Not this node's: the peer's, dealt its turn or due some.
        if let Some(who) = peer {
            assignees.take(who, d, &path, task, arrival);
            continue;
        }
        left += 1;
        top = top.max(Some(level));
        if c.dir == layout::QUEUE {
            move_to(
                repo,
                d,
                &path,
                &c.place.file(&task.task_id),
                &c.entry.oid,
                "file",
            )?;
        }
    }
    // The peers claimed for are idle no more: this node hands them nothing
    // back at once.
    let given = assignees.given();
    if !given.is_empty() {
        peers.holding(&given);
        d.report.idle_peer_slots = peers.idle_slots(req.holding_classes);
        d.report.peers_dry = peers.dry_slots(req.holding_classes);
    }
    // Stopped at a level's share, or at the inbox's batch: more is there
    // for this node as soon as it has room.
    d.report.capped = picker.capped() || (unread > 0 && picker.taken() < want);
    d.report.queue_left = left;
    d.report.top_queued = top;
    Ok(())
}

/// An inbox entry read and judged, not claimed: to its lane.
fn file_unclaimed(repo: &GridRepo, d: &mut Draft<'_>, c: &Candidate<'_>) -> Result<(), GitError> {
    if c.dir == layout::QUEUE
        && let Some(Verdict::Claimable(task)) = &c.judged
    {
        move_to(
            repo,
            d,
            &c.path(),
            &c.place.file(&task.task_id),
            &c.entry.oid,
            "file",
        )?;
    }
    Ok(())
}

/// Joining, does this node stay out of the drain at this tip
/// (`share::stays_out`)? The work is what it could claim (`candidates`)
/// and `more` (the inbox, unread, and what is claimed); the peers that
/// cover it are those holding claims, and they must cover every class it
/// could claim (a GPU node does not stay out of GPU work because CPU peers
/// are busy). Only once the tasks' length is known (a holder timed them)
/// and a round's (this sync lost one), and never while a claim names it
/// (left from before a restart: its registration requeues it).
fn stays_out(
    repo: &GridRepo,
    d: &Draft<'_>,
    in_progress: &[TreeEntry],
    peers: &Peers,
    candidates: &[Candidate<'_>],
    more: usize,
) -> Result<bool, GitError> {
    let req = d.req;
    let holders = super::assigned::holders(repo, d, in_progress)?;
    let (Some(task), Some(round)) = (peers.task_secs_of(&holders.by_node), req.round_secs) else {
        return Ok(false);
    };
    if holders.by_node.get(req.node).is_some_and(|n| *n > 0) {
        return Ok(false);
    }
    // The class the holders serve least: every class must be covered.
    // Nothing queued for it, only claims: the drain's end, all of them.
    let classes: BTreeSet<&Class> = candidates.iter().map(|c| &c.place.class).collect();
    let covering = classes
        .into_iter()
        .map(|c| peers.holding_slots(&holders.by_node, Some(c)))
        .min()
        .unwrap_or_else(|| peers.holding_slots(&holders.by_node, None));
    Ok(share::stays_out(
        candidates.len() + more,
        task,
        round,
        covering,
    ))
}

/// The level (effective priority) of a place now.
pub(super) fn level_of(place: &Place, req: &SyncRequest<'_>) -> u8 {
    schedule::effective_priority(place.priority, place.batch.minute, req.now)
}

/// Entries of the lanes that are no place for a task: to `failed/`, a
/// batch at a time.
fn reject_misplaced(d: &mut Draft<'_>, queue: &QueueAt) {
    for (entry, why) in queue.misplaced.iter().take(MISPLACED_BATCH) {
        d.reject(layout::LANES, entry, why);
    }
}
