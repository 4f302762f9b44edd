//! Which queued tasks a node may claim, and in which order: pure rules over
//! what the queue's paths say (`layout::Place`), so that a node orders a
//! queue of any size without reading it.
//!
//! - **Eligibility.** A node serves a class if it has every label the class
//!   requires, and, if it is exclusive to some labels (a GPU node kept for
//!   GPU work), the class requires each of those too: Kubernetes' taints
//!   and tolerations, GitLab's `run_untagged = false`.
//! - **Priority, with aging.** Higher runs first. A task gains one level
//!   per [`AGING_STEP_SECS`] it has waited, up to [`PRIORITY_MAX`], so that
//!   nothing starves: a task of priority 10 outranks fresh work of priority
//!   90 after eight hours; among equals the older goes first.
//! - **Fairness.** Within one level, submitters take turns (by name, each
//!   one's own tasks first in, first out), going round from the one after
//!   the submitter a node claimed for last: a submitter with a thousand
//!   tasks queued does not hold back one with ten. Tasks that name no
//!   submitter are one more party in the turns, the last.
//! - **Scarce work first.** Within one level, a node takes first what
//!   fewer of the live nodes serve (`scarcity`): a GPU node that takes
//!   common work too runs the GPU work only it can run first.
//! - **Spreading a level.** A node takes at most its share of a level
//!   ([`Picker`]), and goes no lower while any of that level is left for
//!   others: no node holds lower work behind higher work that waits.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use super::label::{Class, Label};
use super::layout::Place;
use super::task::PRIORITY_MAX;
use crate::time::Timestamp;

/// One level of priority gained per this many seconds of waiting: ten an
/// hour.
pub const AGING_STEP_SECS: i64 = 360;

/// A task's priority as it counts now: its own, plus one per
/// [`AGING_STEP_SECS`] since it arrived, at most [`PRIORITY_MAX`]. A
/// clock ahead of this node's counts as no wait at all.
pub fn effective_priority(priority: u8, arrival: Timestamp, now: Timestamp) -> u8 {
    let waited = (now - arrival).num_seconds().max(0);
    let gained = waited / AGING_STEP_SECS;
    let p = i64::from(priority).saturating_add(gained);
    p.min(i64::from(PRIORITY_MAX)) as u8
}

/// What a node has, for routing: its labels (configured and detected) and
/// those it is exclusive to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeLabels {
    pub labels: Class,
    pub exclusive: Class,
}

/// Why a node does not serve a class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lack {
    /// It lacks these labels.
    Labels(Vec<Label>),
    /// It takes only tasks that require these, and the class does not.
    Exclusive(Vec<Label>),
}

impl std::fmt::Display for Lack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |ls: &[Label]| ls.iter().map(Label::as_str).collect::<Vec<_>>().join(", ");
        match self {
            Lack::Labels(ls) => write!(f, "lacks {}", list(ls)),
            Lack::Exclusive(ls) => write!(f, "takes only tasks that require {}", list(ls)),
        }
    }
}

impl NodeLabels {
    /// Does this node serve `class`? If not, why.
    pub fn serves(&self, class: &Class) -> Result<(), Lack> {
        let missing: Vec<Label> = class.missing_from(&self.labels).cloned().collect();
        if !missing.is_empty() {
            return Err(Lack::Labels(missing));
        }
        let untolerated: Vec<Label> = self.exclusive.missing_from(class).cloned().collect();
        if !untolerated.is_empty() {
            return Err(Lack::Exclusive(untolerated));
        }
        Ok(())
    }

    /// From a node record's lists (untrusted): labels that are not labels
    /// are ignored.
    pub fn from_record(labels: &[String], exclusive: &[String]) -> NodeLabels {
        let parse = |ls: &[String]| {
            Class::of(
                ls.iter()
                    .filter_map(|l| Label::parse(l).ok())
                    .collect::<Vec<_>>(),
            )
        };
        NodeLabels {
            labels: parse(labels),
            exclusive: parse(exclusive),
        }
    }
}

/// Why none of `nodes` (name, labels) serves `class`; `None` if one does.
/// At most a few nodes are named, then how many more.
pub fn why_unserved(class: &Class, nodes: &[(&str, &NodeLabels)]) -> Option<String> {
    const NAMED: usize = 5;
    if nodes.is_empty() {
        return Some("no live node".to_owned());
    }
    let mut reasons = Vec::new();
    for (name, labels) in nodes {
        match labels.serves(class) {
            Ok(()) => return None,
            Err(lack) => reasons.push(format!("{name} {lack}")),
        }
    }
    let more = reasons.len().saturating_sub(NAMED);
    reasons.truncate(NAMED);
    let mut text = format!("no live node serves it: {}", reasons.join("; "));
    if more > 0 {
        text.push_str(&format!("; and {more} more"));
    }
    Some(text)
}

/// A queued task as the order sees it.
#[derive(Debug, Clone, Copy)]
pub struct Queued<'a> {
    pub place: &'a Place,
    /// Its id (the file's stem), the last tie-break.
    pub name: &'a [u8],
    /// How many slots of the live nodes serve its class
    /// (`scarcity::Scarcity::servers`): within a level, what fewer serve
    /// goes first. The same for all (0) where nobody reckons it.
    pub servers: u32,
}

/// The claim order of `tasks` at `now`: indices into `tasks`, highest
/// effective priority first; within one, what fewer nodes serve first
/// (`Queued::servers`); then submitters in turn (by name, the tasks that
/// name none last), each submitter's tasks oldest first. Each entry comes
/// with its effective priority.
pub fn order(tasks: &[Queued<'_>], now: Timestamp) -> Vec<(usize, u8)> {
    order_turning(tasks, now, None)
}

/// [`order`], with each level's turns going round from the submitter
/// after `last` (`Some(None)`: the tasks that name none), the one whose
/// task the node claimed last. Without it a node that claims one task at
/// a time would start every level's turns again from the first
/// submitter, who would take every turn.
pub fn order_turning(
    tasks: &[Queued<'_>],
    now: Timestamp,
    last: Option<Option<&str>>,
) -> Vec<(usize, u8)> {
    // The turns' order: by name, the nameless last.
    fn key(party: Option<&str>) -> (bool, Option<&str>) {
        (party.is_none(), party)
    }
    // (level, servers) -> party -> its tasks (arrival, name, index)
    type Party<'a> = Vec<(Timestamp, &'a [u8], usize)>;
    type Parties<'a> = BTreeMap<Option<&'a str>, Party<'a>>;
    let mut levels: BTreeMap<(u8, Reverse<u32>), Parties<'_>> = BTreeMap::new();
    for (i, t) in tasks.iter().enumerate() {
        let level = effective_priority(t.place.priority, t.place.batch.minute, now);
        let party = t.place.batch.submitter.as_ref().map(|s| s.as_str());
        levels
            .entry((level, Reverse(t.servers)))
            .or_default()
            .entry(party)
            .or_default()
            .push((t.place.batch.minute, t.name, i));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for ((level, _), parties) in levels.into_iter().rev() {
        let queues: Vec<(Option<&str>, Party<'_>)> = parties
            .into_iter()
            .map(|(party, mut q)| {
                q.sort_by(arrival);
                (party, q)
            })
            .collect();
        let mut round = 0;
        loop {
            // This round's task of each party that has one, from the one
            // after `last`.
            let mut turn: Vec<_> = queues
                .iter()
                .filter_map(|(party, q)| Some((*party, q.get(round)?)))
                .collect();
            if turn.is_empty() {
                break;
            }
            turn.sort_by_key(|(party, _)| {
                let k = key(*party);
                (last.is_some_and(|l| k <= key(l)), k)
            });
            out.extend(turn.into_iter().map(|(_, t)| (t.2, level)));
            round += 1;
        }
    }
    out
}

/// Which of two queued tasks (arrival minute, id, index) came first: the
/// earlier minute; within one minute (the path says no more), by id with
/// the numbers in ids compared as numbers, so that `task-2`, submitted
/// before `task-10` in a loop as such series are, goes first.
fn arrival(a: &(Timestamp, &[u8], usize), b: &(Timestamp, &[u8], usize)) -> std::cmp::Ordering {
    let natural = match (std::str::from_utf8(a.1), std::str::from_utf8(b.1)) {
        (Ok(x), Ok(y)) => alphanumeric_sort::compare_str(x, y),
        _ => std::cmp::Ordering::Equal,
    };
    a.0.cmp(&b.0)
        .then(natural)
        .then_with(|| a.1.cmp(b.1))
        .then(a.2.cmp(&b.2))
}

/// Walks the claim order and says which claimable tasks to take: at most
/// `want` in all, at most a level's quota of each level (a node's share of
/// it, [`Picker::offer`]), and nothing below a level of which a claimable
/// task was left, so that no node holds lower work behind higher work
/// waiting in the queue for another node.
#[derive(Debug, Clone)]
pub struct Picker {
    want: usize,
    taken: usize,
    level: Option<u8>,
    level_taken: usize,
    left_in_level: bool,
    stopped: bool,
}

impl Picker {
    pub fn new(want: usize) -> Picker {
        Picker {
            want,
            taken: 0,
            level: None,
            level_taken: 0,
            left_in_level: false,
            stopped: false,
        }
    }

    /// A claimable task of `level` (levels come in the order's, never
    /// rising), of which this node's quota is `quota`: take it?
    pub fn offer(&mut self, level: u8, quota: usize) -> bool {
        if self.stopped {
            return false;
        }
        if self.level != Some(level) {
            if self.left_in_level {
                self.stopped = true;
                return false;
            }
            self.level = Some(level);
            self.level_taken = 0;
        }
        if self.taken < self.want && self.level_taken < quota {
            self.taken += 1;
            self.level_taken += 1;
            true
        } else {
            self.left_in_level = true;
            false
        }
    }

    /// It stopped taking before the end of the order because a level's
    /// quota was reached (not because it has all it wants): the node should
    /// look again as soon as it has room.
    pub fn capped(&self) -> bool {
        self.left_in_level && self.taken < self.want
    }

    pub fn taken(&self) -> usize {
        self.taken
    }

    /// How much of what it wants it has taken, from 0 to 1 (nothing
    /// wanted: full): a node dealing the queue between itself and the
    /// peers it claims for takes a task when it is no fuller than they.
    pub fn filled(&self) -> f64 {
        if self.taken >= self.want {
            1.0
        } else {
            self.taken as f64 / self.want as f64
        }
    }
}

#[cfg(test)]
mod tests;
