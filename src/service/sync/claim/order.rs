//! The claim's order, where it depends on the peers: within a level, what
//! fewer live nodes serve goes first (`grid::scarcity`).

use std::rc::Rc;

use super::Candidate;
use super::peers::Peers;
use crate::grid::Class;
use crate::grid::held::Owed;
use crate::grid::layout::Place;
use crate::grid::scarcity::Scarcity;
use crate::grid::schedule::Queued;
use crate::ledger::queue::QueueAt;
use crate::service::sync::SyncRequest;

/// The classes queued (in the lanes, and read from the inbox), each with
/// how many slots of the live nodes serve it: within a level a node takes
/// first what fewer serve, and claims for a peer nothing the peer would
/// rather leave for scarcer work it serves.
pub(super) fn scarcity(
    queue: &QueueAt,
    candidates: &[Candidate<'_>],
    req: &SyncRequest<'_>,
    peers: &Peers,
) -> Scarcity {
    let mut places: Vec<&Rc<Place>> = Vec::new();
    // Tasks of one batch share their place: each once. Every candidate's
    // class is counted (one handed back by a peer is in no lane at this
    // tip): each is served by this node at least.
    let lanes = queue.lanes.iter().map(|l| &l.place);
    for p in lanes.chain(candidates.iter().map(|c| &c.place)) {
        if places.last().is_none_or(|last| !Rc::ptr_eq(last, p)) {
            places.push(p);
        }
    }
    let own = |class: &Class| req.labels.serves(class).is_ok();
    Scarcity::new(
        places.iter().map(|p| (&p.class, super::level_of(p, req))),
        own,
        |class| {
            let mine = if own(class) { req.slots } else { 0 };
            peers.live_slots(Some(&[class])).saturating_add(mine)
        },
    )
}

/// The candidates as the order sees them, each with how many slots serve
/// its class.
pub(super) fn queued<'c>(candidates: &'c [Candidate<'_>], scarcity: &Scarcity) -> Vec<Queued<'c>> {
    // A batch's tasks come together: its class looked up once.
    let mut last: Option<(*const Place, u32)> = None;
    candidates
        .iter()
        .map(|c| {
            let p = Rc::as_ptr(&c.place);
            let servers = match last {
                Some((q, n)) if q == p => n,
                _ => scarcity.servers(&c.place.class),
            };
            last = Some((p, servers));
            Queued {
                place: &c.place,
                name: c.name(),
                servers,
            }
        })
        .collect()
}

/// Does the look owe any of the candidates a place among the claims held
/// (`held::Owed`)? A batch's tasks share their place: asked once each.
pub(super) fn owes_any(owed: &Owed, places: &[Queued<'_>], req: &SyncRequest<'_>) -> bool {
    let mut last: Option<*const Place> = None;
    places.iter().any(|q| {
        let p: *const Place = q.place;
        let new = last != Some(p);
        last = Some(p);
        let party = q.place.batch.submitter.as_ref().map(|s| s.as_str());
        new && owed.owes(super::level_of(q.place, req), party, q.servers)
    })
}
