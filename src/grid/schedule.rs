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
//! - **Spreading a level.** A node takes at most its share of a level
//!   ([`Picker`]), and goes no lower while any of that level is left for
//!   others: no node holds lower work behind higher work that waits.

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
}

/// The claim order of `tasks` at `now`: indices into `tasks`, highest
/// effective priority first; within one, submitters in turn (by name, the
/// tasks that name none last), each submitter's tasks oldest first. Each
/// entry comes with its effective priority.
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
    // level -> party -> its tasks (arrival, name, index)
    type Party<'a> = Vec<(Timestamp, &'a [u8], usize)>;
    let mut levels: BTreeMap<u8, BTreeMap<Option<&str>, Party<'_>>> = BTreeMap::new();
    for (i, t) in tasks.iter().enumerate() {
        let level = effective_priority(t.place.priority, t.place.batch.minute, now);
        let party = t.place.batch.submitter.as_ref().map(|s| s.as_str());
        levels
            .entry(level)
            .or_default()
            .entry(party)
            .or_default()
            .push((t.place.batch.minute, t.name, i));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for (level, parties) in levels.into_iter().rev() {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Id;
    use crate::grid::layout::Batch;

    fn at(s: &str) -> Timestamp {
        crate::time::parse(s).unwrap()
    }

    fn place(p: u8, class: &[&str], minute: &str, who: Option<&str>) -> Place {
        Place {
            priority: p,
            class: Class::from_labels(class.iter().copied()).unwrap(),
            batch: Batch::new(at(minute), who.map(|w| Id::parse(w).unwrap())),
        }
    }

    fn node(labels: &[&str], exclusive: &[&str]) -> NodeLabels {
        NodeLabels {
            labels: Class::from_labels(labels.iter().copied()).unwrap(),
            exclusive: Class::from_labels(exclusive.iter().copied()).unwrap(),
        }
    }

    #[test]
    fn a_node_serves_what_it_has_every_label_for() {
        let gpu_arm = Class::from_labels(["gpu", "arch=arm64"]).unwrap();
        let any = Class::any();
        let plain = node(&["arch=amd64", "os=linux"], &[]);
        assert_eq!(plain.serves(&any), Ok(()));
        assert_eq!(
            plain.serves(&gpu_arm),
            Err(Lack::Labels(vec![
                Label::parse("arch=arm64").unwrap(),
                Label::parse("gpu").unwrap()
            ]))
        );
        let arm = node(&["arch=arm64", "gpu", "os=linux"], &[]);
        assert_eq!(arm.serves(&gpu_arm), Ok(()));
        assert_eq!(arm.serves(&any), Ok(()));
    }

    #[test]
    fn an_exclusive_node_takes_only_what_asks_for_its_label() {
        let gpu_node = node(&["gpu", "arch=amd64"], &["gpu"]);
        assert_eq!(
            gpu_node.serves(&Class::any()),
            Err(Lack::Exclusive(vec![Label::parse("gpu").unwrap()]))
        );
        assert_eq!(
            gpu_node.serves(&Class::from_labels(["gpu"]).unwrap()),
            Ok(())
        );
        assert_eq!(
            gpu_node.serves(&Class::from_labels(["arch=amd64"]).unwrap()),
            Err(Lack::Exclusive(vec![Label::parse("gpu").unwrap()]))
        );
        assert_eq!(
            Lack::Exclusive(vec![Label::parse("gpu").unwrap()]).to_string(),
            "takes only tasks that require gpu"
        );
        let from_record =
            NodeLabels::from_record(&["gpu".into(), "Bad Label".into()], &["gpu".into()]);
        assert_eq!(from_record, node(&["gpu"], &["gpu"]));
    }

    #[test]
    fn a_class_no_node_serves_says_what_each_lacks() {
        let gpu = Class::from_labels(["gpu"]).unwrap();
        let plain = node(&["arch=amd64"], &[]);
        let fpga = node(&["fpga"], &["fpga"]);
        let has_gpu = node(&["gpu"], &[]);
        assert_eq!(
            why_unserved(&gpu, &[("n1", &plain), ("n2", &fpga)]).unwrap(),
            "no live node serves it: n1 lacks gpu; n2 lacks gpu"
        );
        assert_eq!(
            why_unserved(&Class::any(), &[("n2", &fpga)]).unwrap(),
            "no live node serves it: n2 takes only tasks that require fpga"
        );
        assert_eq!(
            why_unserved(&gpu, &[("n1", &plain), ("n3", &has_gpu)]),
            None
        );
        assert_eq!(why_unserved(&gpu, &[]).unwrap(), "no live node");
        let many: Vec<(String, NodeLabels)> =
            (0..8).map(|i| (format!("n{i}"), plain.clone())).collect();
        let refs: Vec<(&str, &NodeLabels)> = many.iter().map(|(n, l)| (n.as_str(), l)).collect();
        assert!(why_unserved(&gpu, &refs).unwrap().ends_with("; and 3 more"));
    }

    #[test]
    fn old_tasks_age_upward_ten_levels_an_hour() {
        let t0 = at("2026-11-30T10:00:00Z");
        assert_eq!(effective_priority(10, t0, t0), 10);
        assert_eq!(effective_priority(10, t0, at("2026-11-30T10:05:59Z")), 10);
        assert_eq!(effective_priority(10, t0, at("2026-11-30T10:06:00Z")), 11);
        assert_eq!(effective_priority(10, t0, at("2026-11-30T11:00:00Z")), 20);
        assert_eq!(
            effective_priority(10, t0, at("2026-12-30T10:00:00Z")),
            PRIORITY_MAX
        );
        assert_eq!(
            effective_priority(10, t0, at("2026-11-30T09:00:00Z")),
            10,
            "from the future: no wait"
        );
        assert_eq!(effective_priority(99, t0, at("2030-01-01T00:00:00Z")), 99);
    }

    fn queued<S: AsRef<str>>(tasks: &[(Place, S)]) -> Vec<Queued<'_>> {
        tasks
            .iter()
            .map(|(p, n)| Queued {
                place: p,
                name: n.as_ref().as_bytes(),
            })
            .collect()
    }

    fn ids(tasks: &[(Place, &str)], now: Timestamp) -> Vec<String> {
        order(&queued(tasks), now)
            .into_iter()
            .map(|(i, _)| tasks[i].1.to_owned())
            .collect()
    }

    #[test]
    fn higher_first_then_first_in_first_out() {
        let now = at("2026-11-30T10:10:00Z");
        let tasks = vec![
            (place(50, &[], "2026-11-30T10:09:00Z", None), "late"),
            (place(90, &["gpu"], "2026-11-30T10:09:30Z", None), "urgent"),
            (place(50, &[], "2026-11-30T10:08:00Z", None), "early"),
            (place(10, &[], "2026-11-30T10:00:00Z", None), "low"),
            (place(50, &[], "2026-11-30T10:08:00Z", None), "early2"),
        ];
        assert_eq!(
            ids(&tasks, now),
            ["urgent", "early", "early2", "late", "low"]
        );
    }

    #[test]
    fn within_a_minute_numbered_ids_go_in_their_numbers_order() {
        let now = at("2026-11-30T10:10:00Z");
        let minute = "2026-11-30T10:09:00Z";
        let tasks: Vec<(Place, &str)> = ["s10", "s2", "s1", "s9", "s02", "t1"]
            .into_iter()
            .map(|n| (place(50, &[], minute, None), n))
            .collect();
        assert_eq!(ids(&tasks, now), ["s1", "s2", "s02", "s9", "s10", "t1"]);
    }

    #[test]
    fn an_old_task_overtakes_fresher_work_of_a_higher_priority() {
        let now = at("2026-11-30T18:00:00Z");
        let tasks = vec![
            (place(90, &[], "2026-11-30T17:59:00Z", None), "fresh-90"),
            (place(10, &[], "2026-11-30T09:00:00Z", None), "old-10"),
        ];
        assert_eq!(ids(&tasks, now), ["old-10", "fresh-90"]);
    }

    #[test]
    fn submitters_take_turns_within_a_level() {
        // All within one aging step: one level.
        let now = at("2026-11-30T10:05:30Z");
        let mut tasks = Vec::new();
        let names: Vec<String> = (0..5).map(|i| format!("ana-{i}")).collect();
        for n in &names {
            tasks.push((
                place(50, &[], "2026-11-30T10:00:00Z", Some("ana")),
                n.as_str(),
            ));
        }
        tasks.push((place(50, &[], "2026-11-30T10:05:00Z", Some("bob")), "bob-0"));
        tasks.push((place(50, &[], "2026-11-30T10:05:00Z", Some("bob")), "bob-1"));
        tasks.push((place(50, &[], "2026-11-30T10:01:00Z", None), "anon-0"));
        assert_eq!(
            ids(&tasks, now),
            [
                "ana-0", "bob-0", "anon-0", "ana-1", "bob-1", "ana-2", "ana-3", "ana-4"
            ]
        );
    }

    /// Claimed one at a time (a node's one slot, long tasks), each claim
    /// ordered anew after the submitter of the last: the turns go round,
    /// where the longest waiting party would take every one.
    #[test]
    fn one_claim_at_a_time_still_goes_round_the_submitters() {
        let now = at("2026-11-30T10:05:30Z");
        let mut tasks: Vec<(Place, String)> = [("ana", 5, "10:00"), ("bob", 2, "10:05")]
            .into_iter()
            .flat_map(|(who, n, hm)| (0..n).map(move |i| (who, i, hm)))
            .map(|(who, i, hm)| {
                let p = place(50, &[], &format!("2026-11-30T{hm}:00Z"), Some(who));
                (p, format!("{who}-{i}"))
            })
            .collect();
        tasks.push((
            place(50, &[], "2026-11-30T10:01:00Z", None),
            "anon-0".into(),
        ));
        let mut last: Option<Option<String>> = None;
        let mut claimed = Vec::new();
        while !tasks.is_empty() {
            let turn = last.as_ref().map(|l| l.as_deref());
            let first = order_turning(&queued(&tasks), now, turn)[0].0;
            let (p, name) = tasks.remove(first);
            last = Some(p.batch.submitter.map(|s| s.to_string()));
            claimed.push(name);
        }
        assert_eq!(
            claimed,
            [
                "ana-0", "bob-0", "anon-0", "ana-1", "bob-1", "ana-2", "ana-3", "ana-4"
            ]
        );
    }

    #[test]
    fn the_picker_takes_a_share_of_a_level_and_goes_no_lower_while_some_is_left() {
        // 20 at level 90 over 4 nodes: a share of 5, then stop.
        let mut p = Picker::new(128);
        let taken = (0..20).filter(|_| p.offer(90, 5)).count();
        assert_eq!(taken, 5);
        assert!(!p.offer(10, 128), "nothing lower while 90s are left");
        assert!(p.capped());
        // The whole of a level it may take, then on down.
        let mut p = Picker::new(10);
        assert_eq!((0..3).filter(|_| p.offer(90, 5)).count(), 3);
        assert_eq!((0..20).filter(|_| p.offer(10, 100)).count(), 7);
        assert!(!p.capped(), "it has all it wants");
        assert_eq!(p.taken(), 10);
    }

    proptest::proptest! {
        /// Whatever the queue, the order is a permutation whose levels
        /// never rise, and a party's tasks come oldest first.
        #[test]
        fn the_order_is_a_permutation_by_level(
            tasks in proptest::collection::vec((0u8..100, 0i64..600, 0u8..3), 0..40),
        ) {
            let now = at("2026-11-30T12:00:00Z");
            let places: Vec<(Place, String)> = tasks
                .iter()
                .enumerate()
                .map(|(i, (p, mins, who))| {
                    let t = now - chrono::Duration::minutes(*mins);
                    let who = ["a", "b", ""][*who as usize];
                    let place = Place {
                        priority: *p,
                        class: Class::any(),
                        batch: Batch::new(t, (!who.is_empty()).then(|| Id::parse(who).unwrap())),
                    };
                    (place, format!("t{i:03}"))
                })
                .collect();
            let q: Vec<Queued<'_>> = places
                .iter()
                .map(|(p, n)| Queued { place: p, name: n.as_bytes() })
                .collect();
            let o = order(&q, now);
            let mut seen: Vec<usize> = o.iter().map(|(i, _)| *i).collect();
            seen.sort();
            proptest::prop_assert_eq!(seen, (0..places.len()).collect::<Vec<_>>());
            for w in o.windows(2) {
                proptest::prop_assert!(w[0].1 >= w[1].1);
            }
            for (k, (i, level)) in o.iter().enumerate() {
                for (j, level2) in &o[k + 1..] {
                    if level == level2 && places[*i].0.batch.submitter == places[*j].0.batch.submitter {
                        proptest::prop_assert!(places[*i].0.batch.minute <= places[*j].0.batch.minute);
                    }
                }
            }
        }
    }
}
