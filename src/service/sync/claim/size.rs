//! How many tasks a node claims, and of each level: its fair share of
//! the work not done (among the slots the drain pays for), held to what
//! it starts soon where peers are idle and to what no peer would start
//! sooner; and each priority level's quota, so that a burst of higher
//! work is spread over the nodes rather than taken by the first to see it.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use super::Candidate;
use super::peers::Peers;
use crate::grid::Class;
use crate::grid::layout::Place;
use crate::service::outbox::Finish;
use crate::service::share;
use crate::service::sync::{Draft, SyncRequest};

/// How many tasks to claim: `want_claims`, or the node's fair share if
/// more (up to `share_up_to`). The work in the grid is what is queued and
/// what is claimed but not done (running, or waiting at some node):
/// dividing all of it gives each node the same share however late it comes
/// to a backlog, and a node already holding its share takes no more. It
/// is divided among the slots the drain pays for (`share::participants`),
/// once the tasks' length is known here or to a peer. Where
/// the queue cannot fill the idle peers' slots, it takes no more than it
/// starts soon, and never what a peer, idle or running dry, would start
/// sooner: the rest would go back to them at its next look
/// (`share::give_back`), two commits for nothing.
pub(super) fn how_many(
    queued: usize,
    claimed: usize,
    req: &SyncRequest<'_>,
    peers: &Peers,
    d: &mut Draft<'_>,
) -> usize {
    if req.share_up_to == 0 {
        return req.want_claims;
    }
    let work = queued + claimed;
    let others = others_sharing(work, req, peers);
    let share = share::share_to_claim(work, req.holding, req.slots, others);
    d.report.fair_share = share;
    let want = req.want_claims.max(share.min(req.share_up_to));
    let want = if (peers.idle_slots(&[]) as usize) > queued {
        want.min(req.start_soon.max(1))
    } else {
        want
    };
    // Nor what a peer would start sooner, once what stays queued has gone
    // to the peers: it would go back to them at the next look. What it
    // leaves costs no handback, but a peer's claim: a round. (Starts not
    // given: nothing to reckon with.)
    let Some(starts) = req.next_starts.get(..want) else {
        return want;
    };
    let sooner = share::give_back(
        starts,
        queued.saturating_sub(want),
        &peers.dry_slots(&[]),
        req.pickup_secs,
        req.round_secs.unwrap_or(0.0),
        req.task_secs,
    );
    want - sooner.min(want)
}

/// The peers' slots that share a drain of `work` tasks with this node:
/// all the live peers', or, once the tasks' length is known (timed here,
/// or by the peers), only as many as the drain pays for: a drain of short
/// tasks goes to the first few, whose commits are all it costs the ref.
pub(super) fn others_sharing(work: usize, req: &SyncRequest<'_>, peers: &Peers) -> u32 {
    let others = peers.live_slots(None);
    match (req.task_secs.or(peers.task_secs()), req.round_secs) {
        (Some(task), Some(round)) => {
            let taking_part = share::participants(work, task, round);
            share::others_taking_part(req.slots, others, taking_part)
        }
        _ => others,
    }
}

/// Each level's quota: this node's share of the level, among the peers
/// that serve any of its classes; the lowest level queued at least its
/// `share` of all the work (`how_many`), unless lower work is held out of
/// the queue's sight. Not a level above: a burst of higher work goes to
/// every node, to start at each one's next free slot, not all to the node
/// that happened to claim first.
pub(super) fn level_quotas(
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
    let lowest = levels.keys().next().copied();
    // Lower work that the queue does not show: claims this node handed back
    // for higher work and has not pushed yet, or a peer's, as its record
    // says. The lowest level queued is then a burst above it, not the
    // backlog, and is shared by itself.
    let handing_back_lower = req.outbox.iter().any(|e| {
        matches!(
            e.finish,
            Finish::Requeue {
                preempted: true,
                ..
            }
        )
    });
    let backlog = |level: u8| !handing_back_lower && !peers.hold_below(level);
    levels
        .into_iter()
        .map(|(level, (count, classes))| {
            let classes: Vec<&Class> = classes.into_iter().collect();
            let others = peers.live_slots(Some(&classes));
            let quota = share::fair_share(count, req.slots, others);
            // The lowest level, when it is the backlog: never below the
            // node's share of all the work not done. A level's count leaves
            // out what is claimed of it already, and a node that comes late
            // to a backlog is due as much as the first.
            if Some(level) == lowest && backlog(level) {
                (level, quota.max(share))
            } else {
                (level, quota)
            }
        })
        .collect()
}
