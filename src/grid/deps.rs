//! Dependencies: a task that runs `after` others waits until every one of
//! them has a completed result, and fails, naming it, if one did not
//! complete. Pure: the rule for one waiting task given what is known of its
//! parents, and the checks of a graph (unknown ids, cycles).

use std::collections::{BTreeMap, BTreeSet};

use super::Id;

/// What the grid says of one task a waiting task runs after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parent {
    /// It has a completed result.
    Completed,
    /// It has a result that is not `completed`: its status (if known) and
    /// its file.
    Failed {
        status: Option<String>,
        file: String,
    },
    /// Queued, waiting itself, or running.
    Pending,
    /// Nowhere on the grid's branch.
    Unknown,
}

/// What becomes of a waiting task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Every parent completed: it may run.
    Ready,
    /// It waits for this parent (the first of its `after` still pending).
    Wait(Id),
    /// It will never run: this parent did not complete.
    Fail { parent: Id, error: String },
    /// It can never run, by its own `after`: it names a task that is not
    /// on the grid (or its `after`s close a cycle, which takes the whole
    /// graph to see). Invalid, as `validate` and `submit` say.
    Invalid { error: String },
}

/// Decide for a task that runs after `after`, by `state` of each. A failed
/// or vanished parent decides at once, whatever the others are doing: the
/// task cannot run any more.
pub fn next(after: &[Id], mut state: impl FnMut(&Id) -> Parent) -> Next {
    let mut waiting_for = None;
    for parent in after {
        match state(parent) {
            Parent::Completed => {}
            Parent::Failed { status, file } => {
                let how = status
                    .map(|s| format!(": it ended `{s}`"))
                    .unwrap_or_default();
                return Next::Fail {
                    parent: parent.clone(),
                    error: format!("dependency `{parent}` did not complete{how} ({file})"),
                };
            }
            Parent::Unknown => {
                return Next::Invalid {
                    error: format!(
                        "field `after` names `{parent}`, which is not on the grid: no task of that id is queued, waiting, running or finished on its branch (a result moved to the `archive` branch counts no more)"
                    ),
                };
            }
            Parent::Pending => {
                waiting_for.get_or_insert_with(|| parent.clone());
            }
        }
    }
    match waiting_for {
        Some(p) => Next::Wait(p),
        None => Next::Ready,
    }
}

/// What is wrong with a set of tasks and their `after`s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error(
        "field `after` of `{task}` names `{parent}`, which is neither among these tasks nor on the grid (a result moved to the `archive` branch counts no more)"
    )]
    Unknown { task: Id, parent: Id },
    #[error("field `after` makes a cycle: {}; none of them could ever run", cycle_text(.0))]
    Cycle(Vec<Id>),
}

/// Ids a cycle's text names, at most: a cycle pushed by hand may run
/// through a hundred thousand tasks, and each of their results carries
/// the text (named whole, it took a reap 24 GB).
const CYCLE_NAMED: usize = 10;

fn cycle_text(ids: &[Id]) -> String {
    let mut parts: Vec<&str> = ids.iter().take(CYCLE_NAMED).map(Id::as_str).collect();
    if ids.len() > CYCLE_NAMED {
        parts.push("…");
    }
    if let Some(first) = ids.first() {
        parts.push(first.as_str());
    }
    let text = parts.join(" -> ");
    if ids.len() > CYCLE_NAMED {
        format!("{text} ({} tasks)", ids.len())
    } else {
        text
    }
}

/// Check `tasks` (id, after) as one graph: each parent is one of them or
/// `known` (on the grid already), and no cycle runs through them. Every
/// problem is reported, each once.
pub fn check_graph(tasks: &[(Id, Vec<Id>)], known: impl Fn(&Id) -> bool) -> Vec<GraphError> {
    let ours: BTreeSet<&Id> = tasks.iter().map(|(id, _)| id).collect();
    let mut errors = Vec::new();
    for (task, after) in tasks {
        for parent in after {
            if !ours.contains(parent) && !known(parent) {
                errors.push(GraphError::Unknown {
                    task: task.clone(),
                    parent: parent.clone(),
                });
            }
        }
    }
    let edges: BTreeMap<&Id, Vec<&Id>> = tasks
        .iter()
        .map(|(id, after)| (id, after.iter().filter(|p| ours.contains(p)).collect()))
        .collect();
    errors.extend(cycles(&edges).into_iter().map(GraphError::Cycle));
    errors
}

/// The cycles of a graph (node -> the nodes it waits for), one per
/// strongly connected set, each as a path that starts at its smallest id.
pub fn cycles(edges: &BTreeMap<&Id, Vec<&Id>>) -> Vec<Vec<Id>> {
    // Iterative depth-first search with colours: white (unseen), grey (on
    // the path), black (done). A grey node met again closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        Grey,
        Black,
    }
    let mut colour: BTreeMap<&Id, Colour> = BTreeMap::new();
    let mut found: Vec<Vec<Id>> = Vec::new();
    let mut in_a_cycle: BTreeSet<&Id> = BTreeSet::new();
    for &start in edges.keys() {
        if colour.contains_key(start) {
            continue;
        }
        let mut path: Vec<(&Id, usize)> = vec![(start, 0)];
        colour.insert(start, Colour::Grey);
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let children = edges.get(node).map(Vec::as_slice).unwrap_or(&[]);
            if let Some(&child) = children.get(*next) {
                *next += 1;
                match colour.get(child) {
                    None => {
                        colour.insert(child, Colour::Grey);
                        path.push((child, 0));
                    }
                    Some(Colour::Grey) if !in_a_cycle.contains(child) => {
                        let from = path.iter().position(|(n, _)| *n == child).unwrap_or(0);
                        let mut cycle: Vec<Id> =
                            path[from..].iter().map(|(n, _)| (*n).clone()).collect();
                        in_a_cycle.extend(path[from..].iter().map(|(n, _)| *n));
                        let smallest = (0..cycle.len()).min_by_key(|i| &cycle[*i]).unwrap_or(0);
                        cycle.rotate_left(smallest);
                        found.push(cycle);
                    }
                    _ => {}
                }
            } else {
                colour.insert(node, Colour::Black);
                path.pop();
            }
        }
    }
    found
}

/// The loop that `task` would close by waiting under `parent`, where
/// `waits` says under whom each waiting task waits: each waits for one
/// task at a time, so a loop is a chain that comes back. Given as
/// [`cycles`] gives it (from its smallest id, in the order they wait).
pub fn loop_through(waits: &BTreeMap<Id, Id>, task: &Id, parent: &Id) -> Option<Vec<Id>> {
    let mut path = vec![task.clone()];
    let mut at = parent;
    // A chain longer than the tasks that wait has met a loop elsewhere.
    for _ in 0..=waits.len() {
        if at == task {
            let smallest = (0..path.len()).min_by_key(|i| &path[*i]).unwrap_or(0);
            path.rotate_left(smallest);
            return Some(path);
        }
        path.push(at.clone());
        at = waits.get(at)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Id {
        Id::parse(s).unwrap()
    }

    /// A cycle pushed by hand may run through 100,000 tasks, and each of
    /// their results carries its text: ten ids and the count.
    #[test]
    fn a_long_cycle_is_named_by_its_first_ten_and_its_length() {
        let ids: Vec<Id> = (0..25).map(|i| id(&format!("t{i}"))).collect();
        let text = GraphError::Cycle(ids).to_string();
        assert_eq!(
            text,
            "field `after` makes a cycle: t0 -> t1 -> t2 -> t3 -> t4 -> t5 -> t6 -> t7 -> t8 -> t9 -> … -> t0 (25 tasks); none of them could ever run"
        );
        let ten: Vec<Id> = (0..10).map(|i| id(&format!("t{i}"))).collect();
        assert!(!GraphError::Cycle(ten).to_string().contains('…'));
    }

    #[test]
    fn a_task_runs_once_every_parent_completed() {
        let after = [id("a"), id("b"), id("c")];
        let all_done = next(&after, |_| Parent::Completed);
        assert_eq!(all_done, Next::Ready);
        let waiting = next(&after, |p| {
            if p.as_str() == "a" {
                Parent::Completed
            } else {
                Parent::Pending
            }
        });
        assert_eq!(waiting, Next::Wait(id("b")));
        assert_eq!(next(&[], |_| Parent::Unknown), Next::Ready);
    }

    #[test]
    fn a_parent_that_failed_fails_it_at_once_by_name() {
        let after = [id("a"), id("b")];
        let got = next(&after, |p| match p.as_str() {
            "a" => Parent::Pending,
            _ => Parent::Failed {
                status: Some("timeout".into()),
                file: "tasks/failed/n1@b.json".into(),
            },
        });
        let Next::Fail { parent, error } = got else {
            panic!("{got:?}")
        };
        assert_eq!(parent, id("b"));
        assert!(
            error.contains("`b`") && error.contains("timeout") && error.contains("n1@b.json"),
            "{error}"
        );
        let gone = next(&after, |_| Parent::Unknown);
        assert!(
            matches!(gone, Next::Invalid { error } if error.contains("`a`, which is not on the grid"))
        );
    }

    #[test]
    fn unknown_parents_and_cycles_are_named() {
        let tasks = vec![
            (id("a"), vec![id("b")]),
            (id("b"), vec![id("c")]),
            (id("c"), vec![id("a"), id("old")]),
            (id("d"), vec![id("ghost")]),
            (id("e"), vec![id("a")]),
        ];
        let errors = check_graph(&tasks, |p| p.as_str() == "old");
        assert_eq!(
            errors,
            vec![
                GraphError::Unknown {
                    task: id("d"),
                    parent: id("ghost")
                },
                GraphError::Cycle(vec![id("a"), id("b"), id("c")]),
            ]
        );
        assert_eq!(
            errors[1].to_string(),
            "field `after` makes a cycle: a -> b -> c -> a; none of them could ever run"
        );
        let fine = vec![
            (id("a"), vec![]),
            (id("b"), vec![id("a")]),
            (id("c"), vec![id("a"), id("b")]),
        ];
        assert!(check_graph(&fine, |_| false).is_empty());
    }

    #[test]
    fn a_wait_that_closes_a_loop_is_found() {
        // c waits under b, b under a; a moving under c closes the loop.
        let waits: BTreeMap<Id, Id> = [(id("c"), id("b")), (id("b"), id("a")), (id("x"), id("y"))]
            .into_iter()
            .collect();
        assert_eq!(
            loop_through(&waits, &id("a"), &id("c")),
            Some(vec![id("a"), id("c"), id("b")])
        );
        assert_eq!(
            loop_through(&waits, &id("b"), &id("b")),
            Some(vec![id("b")])
        );
        assert_eq!(loop_through(&waits, &id("a"), &id("x")), None);
        assert_eq!(loop_through(&waits, &id("a"), &id("free")), None);
        // A loop that does not pass through the task is not its own.
        let ring: BTreeMap<Id, Id> = [(id("p"), id("q")), (id("q"), id("p"))]
            .into_iter()
            .collect();
        assert_eq!(loop_through(&ring, &id("a"), &id("p")), None);
    }

    proptest::proptest! {
        /// A graph whose edges only go from a later task to an earlier one
        /// has no cycle; one back edge from the first to the last makes one.
        #[test]
        fn cycles_are_found_exactly(n in 2usize..12, extra in proptest::collection::vec((0usize..12, 0usize..12), 0..20)) {
            let ids: Vec<Id> = (0..n).map(|i| id(&format!("t{i:02}"))).collect();
            let mut after: Vec<Vec<Id>> = vec![Vec::new(); n];
            for (a, b) in extra {
                let (a, b) = (a % n, b % n);
                if a > b && !after[a].contains(&ids[b]) {
                    after[a].push(ids[b].clone());
                }
            }
            let tasks: Vec<(Id, Vec<Id>)> = ids.iter().cloned().zip(after.clone()).collect();
            proptest::prop_assert!(check_graph(&tasks, |_| false).is_empty());
            let mut looped = tasks.clone();
            if !looped[0].1.contains(&ids[n - 1]) {
                looped[0].1.push(ids[n - 1].clone());
            }
            // A path from the last to the first closes the loop only if
            // there is one; add it.
            for i in 1..n {
                if !looped[i].1.contains(&ids[i - 1]) {
                    looped[i].1.push(ids[i - 1].clone());
                }
            }
            let errors = check_graph(&looped, |_| false);
            proptest::prop_assert!(errors.iter().any(|e| matches!(e, GraphError::Cycle(_))));
        }
    }
}
