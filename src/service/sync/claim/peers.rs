//! The peers: the other nodes taking work at a tip, as their records say
//! (slots, idle or not, what they serve), for this node's share; and the
//! cache that reads only the records that changed since the last round.

use std::collections::BTreeMap;

use crate::git::{EntryMode, GitError, GridRepo, TreeEntry};
use crate::grid::schedule::NodeLabels;
use crate::grid::{Class, Id, NodeRecord, NodeStatus, TaskRules, layout};
use crate::service::share::PeerSlot;
use crate::service::sync::SyncRequest;
use crate::service::sync::admit::record_counts;

/// The other nodes taking work at a tip, as their records say: their
/// slots, whether they are idle, and what they serve.
#[derive(Debug, Default, Clone)]
pub(super) struct Peers(Vec<Peer>);

#[derive(Debug, Clone)]
struct Peer {
    id: Id,
    slots: u32,
    idle: bool,
    labels: NodeLabels,
    /// The longest `timeout_seconds` it takes.
    max_timeout: u64,
    /// How long its tasks take, as it measured them (`task_ms`).
    task_secs: Option<f64>,
    /// The lowest level among the tasks it holds (`holds_level`).
    holds_level: Option<u8>,
    /// When, from now, it runs dry of what it holds, in seconds: 0 if idle,
    /// as its record reckons (`busy_ms`) if busy, none if it cannot tell.
    dry_in: Option<f64>,
    /// It starts claims made for it (`takes_assigned`).
    takes_assigned: bool,
    /// Busy by its record, but every claim naming it at the tip is a
    /// result it published for peers to carry (`published::ran_dry`): it
    /// has nothing left to run, and may be claimed for as an idle peer.
    ran_dry: bool,
    /// The tasks its record says it runs, and how long ago it wrote it
    /// (seconds; none if it cannot be read).
    running: Vec<String>,
    since: Option<f64>,
    /// How long its claims kept it busy from then, as it reckoned
    /// (`busy_ms`).
    busy: Option<f64>,
}

/// What a peer's record says of its line: its slots, how long its tasks
/// take (`task_ms`), the tasks it runs, how long ago it said so, and how
/// long its claims kept it busy from then (`busy_ms`).
pub(super) struct LineOf<'a> {
    pub slots: u32,
    pub task_secs: Option<f64>,
    pub running: &'a [String],
    pub since: Option<f64>,
    pub busy: Option<f64>,
}

/// An idle peer this node may claim for: its id, slots and labels.
pub(super) struct Assignable {
    pub id: Id,
    pub slots: u32,
    pub labels: NodeLabels,
    /// The longest `timeout_seconds` it takes: a longer task is not
    /// claimed for it.
    pub max_timeout: u64,
    /// Busy by its record, run dry by what it published: its own claims
    /// are not landing.
    pub ran_dry: bool,
}

impl Peer {
    /// Idle (by its record, or run dry past it) and starting claims made
    /// for it.
    fn assignable(&self) -> bool {
        (self.idle || self.ran_dry) && self.takes_assigned
    }

    /// Could it take over any of the claims of classes `holding` (none
    /// held: any)?
    fn could_take(&self, holding: &[Class]) -> bool {
        holding.is_empty() || holding.iter().any(|c| self.labels.serves(c).is_ok())
    }
}

/// A busy peer gets a burst claimed for it only if its tasks take at most
/// this long (as it measured them): it starts them at its next free slot,
/// well within the minute it has to answer.
const BURST_PEER_TASK_SECS: f64 = 10.0;

/// At most this many peers' slots are reckoned with in handing claims
/// over: a hostile grid's records cannot make the reckoning long.
const MAX_PEER_SLOTS_RECKONED: usize = 4096;

impl Peers {
    /// Is any peer idle and taking claims made for it?
    pub(super) fn any_assignable(&self) -> bool {
        self.0.iter().any(Peer::assignable)
    }

    /// The peers busy by their records that start claims made for them:
    /// those that may have run dry where their records cannot say so.
    pub(super) fn busy_takers(&self) -> Vec<Id> {
        self.0
            .iter()
            .filter(|p| !p.idle && p.takes_assigned)
            .map(|p| p.id.clone())
            .collect()
    }

    /// The peers `dry` ran dry (`published::ran_dry`): claimed for as idle
    /// ones, and running dry now in the reckoning of handbacks.
    pub(super) fn ran_dry(&mut self, dry: &std::collections::BTreeSet<Id>) {
        for p in self.0.iter_mut().filter(|p| dry.contains(&p.id)) {
            p.ran_dry = true;
            p.dry_in = Some(0.0);
        }
    }

    /// Peers holding claims at this tip (`holding`, by node) are not idle,
    /// whatever their records say: a claim made for one has not reached
    /// its record yet. When they run dry they cannot tell.
    pub(super) fn holding(&mut self, holding: &BTreeMap<Id, usize>) {
        for p in self.0.iter_mut().filter(|p| p.idle) {
            if holding.get(&p.id).is_some_and(|n| *n > 0) {
                p.idle = false;
                p.dry_in = None;
            }
        }
    }

    /// The idle peers that take claims made for them, in a random order:
    /// nodes that claim at once do not all favour the same peer.
    pub(super) fn assignable(&self) -> Vec<Assignable> {
        self.shuffled(Peer::assignable)
    }

    /// The peers `pick` takes, as [`Assignable`], in a random order.
    fn shuffled(&self, pick: impl Fn(&Peer) -> bool) -> Vec<Assignable> {
        let mut out: Vec<Assignable> = self
            .0
            .iter()
            .filter(|p| pick(p))
            .map(|p| Assignable {
                id: p.id.clone(),
                slots: p.slots,
                labels: p.labels.clone(),
                max_timeout: p.max_timeout,
                ran_dry: p.ran_dry && !p.idle,
            })
            .collect();
        fastrand::shuffle(&mut out);
        out
    }

    /// The peers this node may claim a burst for, a burst of work at `level`
    /// above what this node holds: those that take claims made for them,
    /// are not late to answer one (`holders.late`), and either sit idle or
    /// hold only work below it, in tasks short enough that a slot frees
    /// well within the answer window. What a peer holds is read from the
    /// claims at the tip, which show claims made for it and those its last
    /// commit took before its record can; how long its tasks take, from its
    /// record, or `task_secs` (the grid's, as this node knows it) for one
    /// that has timed none yet. Each finds its claims at its next free slot
    /// and starts them first, with no commit of its own before.
    pub(super) fn burst_assignable(
        &self,
        level: u8,
        holders: &super::super::assigned::Holders,
        task_secs: Option<f64>,
    ) -> Vec<Assignable> {
        self.shuffled(|p| {
            let holds = holders.lowest.get(&p.id).copied().or(p.holds_level);
            p.takes_assigned
                && !holders.late.contains(&p.id)
                && (p.idle
                    || (holds.is_some_and(|l| l < level)
                        && p.task_secs
                            .or(task_secs)
                            .is_some_and(|t| t <= BURST_PEER_TASK_SECS)))
        })
    }

    /// Slots of the peers holding claims (`holding`, by node) that serve
    /// `class` (any: `None`).
    pub(super) fn holding_slots(
        &self,
        holding: &BTreeMap<Id, usize>,
        class: Option<&Class>,
    ) -> u32 {
        self.0
            .iter()
            .filter(|p| holding.get(&p.id).is_some_and(|n| *n > 0))
            .filter(|p| class.is_none_or(|c| p.labels.serves(c).is_ok()))
            .fold(0u32, |n, p| n.saturating_add(p.slots))
    }

    /// Slots of the peers that serve any of `classes` (all: `None`).
    pub(super) fn live_slots(&self, classes: Option<&[&Class]>) -> u32 {
        self.0
            .iter()
            .filter(|p| classes.is_none_or(|cs| cs.iter().any(|c| p.labels.serves(c).is_ok())))
            .fold(0u32, |n, p| n.saturating_add(p.slots))
    }

    /// How long tasks take here, as the peers that timed any say (the
    /// median: one record cannot move it far): a prior for a node that
    /// has timed none of its own.
    pub(super) fn task_secs(&self) -> Option<f64> {
        median(self.0.iter().filter_map(|p| p.task_secs).collect())
    }

    /// As [`Peers::task_secs`], by the peers holding claims (`holding`):
    /// those draining the queue. A record that holds nothing is anyone's
    /// word (a hostile sweep: fifty records pushed by hand, idle, tasks of
    /// 1 ms, made a drain of 1 s tasks read as paying for one node, and
    /// kept a second node out of it for 45 s, 48 s against 23).
    pub(super) fn task_secs_of(&self, holding: &BTreeMap<Id, usize>) -> Option<f64> {
        let draining = self
            .0
            .iter()
            .filter(|p| holding.get(&p.id).is_some_and(|n| *n > 0));
        median(draining.filter_map(|p| p.task_secs).collect())
    }
}

/// The median of `timed`, if any.
fn median(mut timed: Vec<f64>) -> Option<f64> {
    if timed.is_empty() {
        return None;
    }
    timed.sort_by(f64::total_cmp);
    Some(timed[timed.len() / 2])
}

impl Peers {
    /// Does a peer hold work below `level`, out of the queue's sight? By
    /// more than one aging step: a record's level was reckoned when it was
    /// written, and the same task may have aged a step since.
    pub(super) fn hold_below(&self, level: u8) -> bool {
        self.0
            .iter()
            .any(|p| p.holds_level.is_some_and(|l| l.saturating_add(1) < level))
    }

    /// When, from now, each slot of the peers that could take over any of
    /// the claims this node holds (as [`Peers::idle_slots`]) runs dry, in
    /// seconds, soonest first, with how long the peer's tasks take; peers
    /// that cannot tell are left out.
    pub(super) fn dry_slots(&self, holding: &[Class]) -> Vec<PeerSlot> {
        let mut out: Vec<PeerSlot> = Vec::new();
        for p in self.0.iter().filter(|p| p.could_take(holding)) {
            let Some(dry) = p.dry_in else { continue };
            let room = MAX_PEER_SLOTS_RECKONED.saturating_sub(out.len());
            let slot = PeerSlot {
                dry,
                task: p.task_secs,
            };
            out.extend(std::iter::repeat_n(slot, (p.slots as usize).min(room)));
        }
        out.sort_by(|a, b| a.dry.total_cmp(&b.dry));
        out
    }

    /// A peer taking work, as a node with nothing to run reads its line
    /// (`steal`). None: no such peer.
    pub(super) fn line_of(&self, id: &Id) -> Option<LineOf<'_>> {
        self.0.iter().find(|p| &p.id == id).map(|p| LineOf {
            slots: p.slots,
            task_secs: p.task_secs,
            running: &p.running,
            since: p.since,
            busy: p.busy,
        })
    }

    /// Slots of the idle peers that could take over any of the claims this
    /// node holds (`holding`: their classes; none held: any idle peer).
    pub(super) fn idle_slots(&self, holding: &[Class]) -> u32 {
        self.0
            .iter()
            .filter(|p| p.idle && p.could_take(holding))
            .fold(0u32, |n, p| n.saturating_add(p.slots))
    }
}

pub(super) fn peers(
    repo: &GridRepo,
    nodes: &[TreeEntry],
    req: &SyncRequest<'_>,
) -> Result<Peers, GitError> {
    let others: Vec<&TreeEntry> = nodes
        .iter()
        .filter(|e| e.mode == EntryMode::File && e.name != layout::KEEP_FILE.as_bytes())
        .filter(|e| layout::json_stem(&e.name_lossy()) != Some(req.node.as_str()))
        .collect();
    let grid = req.trust.map(|g| g.borrow().grid_id().clone());
    let mut cache = req.records.borrow_mut();
    cache.read_new(repo, &others, grid.as_ref())?;
    Ok(Peers(
        others
            .iter()
            // A record too big to read, or one that names another node than
            // its file does, is no record: that node is not counted.
            .filter_map(|e| {
                cache
                    .read(&e.oid)
                    .filter(|r| {
                        layout::json_stem(&e.name_lossy()) == Some(r.record.node_id.as_str())
                    })
                    .filter(|r| record_counts(req, r))
                    .map(|r| &r.record)
            })
            .filter(|n| n.takes_work(req.now, req.policy.stale_after))
            .map(|n| (n, since(n, req.now)))
            .map(|(n, since)| Peer {
                id: n.node_id.clone(),
                // A record without the field (an older worker) has one slot.
                slots: n.concurrency.clamp(1, 1024),
                idle: n.status == NodeStatus::Idle,
                labels: n.node_labels(),
                max_timeout: n
                    .max_timeout_seconds
                    .unwrap_or(TaskRules::default().max_timeout_seconds),
                task_secs: n.task_ms.map(record_secs),
                holds_level: n.holds_level,
                dry_in: dry_in(n, since),
                takes_assigned: n.takes_assigned,
                ran_dry: false,
                running: n.running.clone(),
                since,
                busy: n.busy_ms.map(record_secs),
            })
            .collect(),
    ))
}

/// A duration a record gives in milliseconds, in seconds: at most a day,
/// as the record is hostile input.
fn record_secs(ms: u64) -> f64 {
    ms.min(86_400_000) as f64 / 1000.0
}

/// How long before `now` a record was written, in seconds (none if its
/// time cannot be read; none passed if it lies in the future).
fn since(record: &NodeRecord, now: crate::time::Timestamp) -> Option<f64> {
    let written = crate::time::parse(&record.last_heartbeat)?;
    Some((now - written).to_std().unwrap_or_default().as_secs_f64())
}

/// When a peer runs dry of what it holds, in seconds from now: at once if
/// idle; if busy, what its record reckoned (`busy_ms`) less the time
/// since it was written (`since`), at least nothing.
fn dry_in(record: &NodeRecord, since: Option<f64>) -> Option<f64> {
    if record.status == NodeStatus::Idle {
        return Some(0.0);
    }
    let busy = record_secs(record.busy_ms?);
    Some((busy - since?).max(0.0))
}
