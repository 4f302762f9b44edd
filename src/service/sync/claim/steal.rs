//! Taking over claims a busy peer has not started (work stealing;
//! PROTOCOL.md, Claims taken over). A node with a free slot, nothing
//! waiting and nothing queued that it serves reads, at the tip, the
//! claims each live peer holds beyond the tasks its record says it runs,
//! and takes the last of the longest lines (`share::take_over`) in its own
//! commit (with its results and record). The peer, at its next sync, finds
//! a claim it has not started naming another node and drops it
//! (`assigned::watch_taken`); one it had started runs on, and the first
//! result lands (`Claim::taken_from`).

use std::collections::{BTreeMap, BTreeSet};

use super::peers::{Peers, peers};
use super::takeover::take_over;
use super::unanswered::take_unanswered;
use crate::git::{GitError, GridRepo};
use crate::grid::Id;
use crate::grid::claim::ClaimedTask;
use crate::service::share::{self, Line};
use crate::service::sync::{Draft, SyncRequest, assigned, published};

/// A peer's claims not started, in the order it starts them (level, task),
/// and its line as `share::take_over` reads it.
type PeerLine<'a> = (&'a Id, Vec<(u8, &'a Id)>, Line);

/// Peers whose lines one plan reads, at most: a grid of many records
/// cannot make a plan long.
const MAX_LINES: usize = 64;

/// Take over, for this node, claims made for peers that have left them
/// unanswered past `ANSWER_LATE`, up to `req.take_late_up_to`, then claims
/// busy peers hold and have not started, up to `req.steal_up_to` in all,
/// where this plan claimed nothing else; and count the claims peers hold
/// and have not started (`SyncReport::peers_unstarted`).
pub(in crate::service::sync) fn steal(
    repo: &GridRepo,
    d: &mut Draft<'_>,
    touched: &mut BTreeSet<Id>,
) -> Result<(), GitError> {
    let req = d.req;
    if req.steal_up_to == 0 && req.take_late_up_to == 0 {
        return Ok(());
    }
    if !d.report.claimed.is_empty() || !d.report.assigned.is_empty() || d.report.queue_left > 0 {
        return Ok(());
    }
    let listed = d.claims_and_nodes(repo)?;
    let [in_progress, nodes] = &*listed;
    let claims = assigned::held_claims(repo, d, in_progress, |_| true)?;
    if claims.values().all(|c| &c.node == req.node) {
        return Ok(());
    }
    // Claims made for peers and not answered yet are not started either:
    // a drain does not end beside them (their node may be gone, and they
    // are taken over once late).
    let unanswered = claims
        .iter()
        .filter(|(task, c)| {
            &c.node != req.node
                && c.unanswered
                && !touched.contains(*task)
                && req.labels.serves(&c.class).is_ok()
        })
        .count();
    let took = take_unanswered(
        repo,
        d,
        touched,
        (&claims, in_progress),
        req.take_late_up_to,
    )?;
    d.report.peers_unstarted = unanswered.saturating_sub(took);
    let up_to = req.steal_up_to.saturating_sub(took);
    if req.round_secs.is_none() || up_to == 0 {
        return Ok(());
    }
    let peers = peers(repo, nodes, req)?;
    // The lines first as the tip and the records show them; what the
    // peers published is read only where a claim would be taken over.
    let none = BTreeMap::new();
    let (lines, counts) = lines_of(repo, (d.req, &*touched, up_to), &claims, &peers, &none);
    d.report.peers_unstarted += lines.iter().map(|(_, _, l)| l.waiting).sum::<usize>();
    if counts.iter().all(|n| *n == 0) {
        return Ok(());
    }
    let published = published::published_ids(repo, d, in_progress)?;
    let (order, counts) = lines_of(repo, (d.req, &*touched, up_to), &claims, &peers, &published);
    let mut queued_before = chrono::Duration::zero();
    for ((peer, waiting, _), n) in order.iter().zip(counts) {
        let ids: Vec<&Id> = waiting[waiting.len() - n..].iter().map(|w| w.1).collect();
        let blobs = assigned::claim_files(repo, d, &ids)?;
        for (id, blob) in ids.into_iter().zip(blobs) {
            let Some(c) = blob
                .data()
                .and_then(|b| ClaimedTask::parse(&format!("{id}.json"), b, req.rules).ok())
                .filter(|c| &c.claim.node_id == *peer && !c.claim.unanswered())
            else {
                continue;
            };
            let Some(q) = take_over(repo, d, touched, (id, &c), queued_before)? else {
                continue;
            };
            queued_before = q;
            d.report.stolen.push((id.clone(), (*peer).clone()));
        }
    }
    Ok(())
}

/// Each live peer's claims not started that this node serves, as the tip
/// and the peer's record show them, and how many of each line to take
/// over (`share::take_over`). Answered (one made for it and not answered
/// it may start at any look, unrecorded), not among what its record says
/// it runs, nor published (`published`: it ran them, or gave them up,
/// past its record), and only from peers whose published entries the
/// last fetch brought. In the order it starts them: the highest level
/// first, then by name, as it claimed them.
fn lines_of<'h>(
    repo: &GridRepo,
    (req, touched, up_to): (&SyncRequest<'_>, &BTreeSet<Id>, usize),
    claims: &'h BTreeMap<Id, assigned::HeldClaim>,
    peers: &Peers,
    published: &BTreeMap<Id, BTreeSet<Id>>,
) -> (Vec<PeerLine<'h>>, Vec<usize>) {
    let mut lines: BTreeMap<&Id, Vec<(u8, &Id)>> = BTreeMap::new();
    // Each peer's newest claim: it said, then, what its line holds.
    let mut newest: BTreeMap<&Id, crate::time::Timestamp> = BTreeMap::new();
    for (task, c) in claims {
        if let Some(t) = c.claimed_at {
            let n = newest.entry(&c.node).or_insert(t);
            *n = (*n).max(t);
        }
        if &c.node != req.node
            && !c.unanswered
            && !touched.contains(task)
            && req.labels.serves(&c.class).is_ok()
        {
            lines.entry(&c.node).or_default().push((c.level, task));
        }
    }
    let task_secs = req.task_secs.or(peers.task_secs());
    // Checked by the caller: no round timed, nothing taken over.
    let round = req.round_secs.unwrap_or(f64::INFINITY);
    // How far back a peer's silence can count (seconds): from when the
    // grid came back to this node, less a poll interval, within which the
    // peer tries again. While the grid was away the peer ran its line on
    // and could not say so (traced in the chaos suite: the first node back
    // from an outage of 6 s took over two claims whose peers had run them
    // during it, their results waiting in their outboxes).
    let heard = req.reached_since.map_or(0.0, |t| {
        (req.now - t).to_std().unwrap_or_default().as_secs_f64() - req.pickup_secs
    });
    let mut order: Vec<PeerLine<'_>> = Vec::new();
    let mut read = 0;
    for (peer, mut waiting) in lines {
        // A live peer, whose published entries the last fetch brought.
        let Some(of) = peers.line_of(peer) else {
            continue;
        };
        if !repo.fetched_outbox_of(peer.as_str()) {
            continue;
        }
        let gone = published.get(peer);
        let running = |task: &Id| of.running.iter().any(|r| r == task.as_str());
        waiting.retain(|(_, task)| !running(task));
        // Published and not running by its record: started after it, and
        // ended (counted below among what it started since).
        let before = waiting.len();
        waiting.retain(|(_, task)| !gone.is_some_and(|p| p.contains(*task)));
        let ended_seen = before - waiting.len();
        if waiting.is_empty() {
            continue;
        }
        read += 1;
        if read > MAX_LINES {
            break;
        }
        let (Some(task_secs), Some(since)) = (of.task_secs.or(task_secs), of.since) else {
            continue;
        };
        waiting.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        // Its record is as old as its last commit, and a node starts the
        // next claim in its line at each task's end without one: those it
        // has likely started since are not counted, nor the head of what
        // is left, which it starts at its next task's end, which may have
        // come (traced in drains of 1 s tasks: claims taken over had
        // started 0.2-0.9 s before). Unless its claims have kept it busy
        // for a task longer than it reckoned they would (`busy_ms`): then
        // a task runs long, with the line behind it, as its record says.
        // Reckoned from the record's time, or its newest claim's if later
        // (`said`, below), and its claims start only once that commit
        // landed: a round more (traced
        // in the chaos suite: claims of 0.2 s tasks, started on pace 0.7 s
        // after the record, a round of 0.3 s, read as overdue and taken
        // over after they had started). And its next record comes only
        // with its next commit, which lands a sync after its last task
        // ended at the soonest, and this node reads it at its own fetch
        // after that: two syncs, lost rounds included, at least two rounds
        // (traced in the chaos suite: a peer ran its whole line of 0.2 s
        // tasks, its claims' commit 0.25 s landing, and an idle node read
        // it 0.84 s after its record, past 0.418 + 0.209 + 0.166, took
        // over the last two, which had ended 0.2 s before, and ran them
        // again, chaos-0166/0167; with a round more, where eight nodes
        // raced for the ref, a peer's results, its line ended at pace,
        // lost a round and were published 0.44 s after it, and an idle
        // node that fetched before that took over two of them 0.55 s
        // after, chaos-0080/0082, twice in six runs).
        // Its silence counts only as far back as `heard` (above). A record
        // without `busy_ms` (a claim made before it had timed a task) is
        // reckoned by what it held: its line and its runs, a task each,
        // over its slots. Read as never overdue, a node killed right after
        // such a claim kept its line for a minute, until the reap.
        let held = waiting.len() + of.running.len();
        let busy = of
            .busy
            .unwrap_or(held.div_ceil(of.slots.max(1) as usize) as f64 * task_secs);
        // Silent only since its newest claim, where that is later than
        // its record: a node writes its record as a sync starts and makes
        // its claims at the plan, after the fetch, which a busy forge or
        // lost races make long (traced in the chaos suite: a record 1.19
        // s old, its claims 0.69 s, read as overdue by 1.19 > 0.41 + 0.20
        // + 2 x 0.17; the two claims taken over had started 0.4 s before,
        // and ran on both; chaos-0078/0080).
        let said = newest.get(peer).map_or(since, |t| {
            since.min((req.now - *t).to_std().unwrap_or_default().as_secs_f64())
        });
        let deliver = round.max(2.0 * req.sync_secs.unwrap_or(0.0));
        let overdue = said.min(heard) > busy + task_secs + round + deliver;
        let (started, head) = if overdue {
            (0, 0)
        } else {
            // Counted to this plan's landing, a round on: the peer learns
            // of a takeover only at its first sync after that, and starts
            // the next claim at that task's end before the sync. Counted
            // to the plan only, a task ending within the round started a
            // claim taken over blind (the chaos suite's second route to a
            // task run by two live workers, where tasks are shorter than
            // a round).
            let ended = ((since + round) / task_secs).floor().min(1e6) as usize;
            let started = ended.saturating_mul(of.slots as usize);
            let head = share::head_left(of.slots, task_secs, req.task_secs, round);
            (started.saturating_sub(ended_seen), head)
        };
        tracing::debug!(
            peer = %peer, waiting = waiting.len(), started, head, task_secs, since,
            overdue, mine = ?req.task_secs, round, "a busy peer's line"
        );
        let line = Line {
            waiting: waiting.len().saturating_sub(started),
            head,
            slots: of.slots,
            task_secs,
        };
        order.push((peer, waiting, line));
    }
    let lines: Vec<Line> = order.iter().map(|(_, _, l)| *l).collect();
    let counts = share::take_over(&lines, (req.slots, req.task_secs), up_to, round);
    (order, counts)
}
