//! Reading the tasks not done yet: the queue in claim order with the
//! classes no live node serves, the tasks waiting for others (and which of
//! those they still wait for, and any no live node serves that they wait
//! behind), and the claims running in `in_progress/`.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::model::{MisplacedView, NodeView, QueuedView, RunningView, UnservableView, WaitingView};
use super::{age, blob_ids, files};
use crate::git::{Blob, EntryMode, GitError, GridRepo, TreeEntry};
use crate::grid::claim::ClaimedTask;
use crate::grid::schedule::{self, NodeLabels};
use crate::grid::task::EntryKind;
use crate::grid::{Class, Id, ResultStatus, Task, TaskRules, layout};
use crate::ledger::blocked::BlockedAt;
use crate::ledger::queue::QueueAt;
use crate::ledger::result_index::ResultIndex;
use crate::ledger::routing;
use crate::time::{self, Timestamp};

/// The queue, the classes no live node serves, the lanes' misplaced entries.
type QueueViews = (Vec<QueuedView>, Vec<UnservableView>, Vec<MisplacedView>);

/// The queue in claim order, from the paths alone (nothing is read), the
/// classes no live node serves, with what each node lacks, and the
/// entries of the lanes that are no place for a task. A node
/// counts as live by its heartbeat (`nodes` were marked stale or not), a
/// paused one too: it comes back.
pub(super) fn queue_views(
    repo: &GridRepo,
    commit: &str,
    now: Timestamp,
    nodes: &[NodeView],
) -> Result<QueueViews, GitError> {
    let q = QueueAt::list(repo, commit)?;
    let live = live_labels(nodes);
    let refs: Vec<(&str, &NodeLabels)> = live.iter().map(|(n, l)| (*n, l)).collect();
    let mut unserved = routing::unserved(&q, &refs);
    let paused = |id: &str| {
        nodes
            .iter()
            .find(|n| n.node_id == id)
            .and_then(|n| n.paused.clone())
    };
    unserved.extend(routing::served_only_by_paused(
        &q, &refs, &unserved, &paused,
    ));
    let why: BTreeMap<&Class, &str> = unserved
        .iter()
        .map(|u| (&u.class, u.why.as_str()))
        .collect();
    let places: Vec<schedule::Queued<'_>> = q
        .lanes
        .iter()
        .map(|l| schedule::Queued {
            place: &l.place,
            name: l.file_name(),
            // The grid's order, not one node's: no class goes first.
            servers: 0,
        })
        .collect();
    let mut queue = Vec::with_capacity(q.len());
    let mut misplaced = Vec::new();
    for (i, level) in schedule::order(&places, now) {
        let l = &q.lanes[i];
        let name = String::from_utf8_lossy(l.file_name()).into_owned();
        // What its name and kind alone say a node refuses (a name that is
        // no task id, a symlink) is no queued task: listed as one, it was
        // counted in the queue until a node failed it.
        if let Some(why) = name_refused(&name, l.entry.mode) {
            misplaced.push(MisplacedView {
                path: String::from_utf8_lossy(&l.path()).into_owned(),
                why,
            });
            continue;
        }
        let task_id = layout::json_stem(&name).unwrap_or(&name).to_owned();
        let requires: Vec<String> = l.place.class.labels().map(ToString::to_string).collect();
        let lacking = why.get(&l.place.class).map(|w| (*w).to_owned());
        queue.push(QueuedView {
            task_id,
            priority: Some(l.place.priority),
            effective_priority: Some(level),
            requires,
            submitter: l.place.batch.submitter.as_ref().map(Id::to_string),
            queued_at: Some(time::format(l.place.batch.minute)),
            path: String::from_utf8_lossy(&l.path()).into_owned(),
            unservable: lacking,
        });
    }
    for e in &q.inbox {
        let n = e.name_lossy();
        queue.push(QueuedView {
            task_id: layout::json_stem(&n).unwrap_or(&n).to_owned(),
            priority: None,
            effective_priority: None,
            requires: Vec::new(),
            submitter: None,
            queued_at: None,
            path: format!("{}/{n}", layout::QUEUE),
            unservable: None,
        });
    }
    let unservable = unserved
        .into_iter()
        .map(|u| UnservableView {
            requires: u.class.labels().map(ToString::to_string).collect(),
            tasks: u.tasks,
            task_ids: u.task_ids,
            why: u.why,
        })
        .collect();
    misplaced.extend(q.misplaced.iter().map(|(e, why)| {
        MisplacedView {
            path: String::from_utf8_lossy(&crate::ledger::results::entry_path(
                layout::LANES,
                &e.name,
            ))
            .into_owned(),
            why: why.to_string(),
        }
    }));
    Ok((queue, unservable, misplaced))
}

/// Why a node refuses a lane's entry by its name and kind alone, if it
/// does: as `Task::from_entry` says it, its contents unread.
fn name_refused(name: &str, mode: EntryMode) -> Option<String> {
    use crate::grid::TaskError;
    let rules = TaskRules::default();
    match Task::from_entry(name, EntryKind::from(mode), b"", &rules) {
        Err(e @ (TaskError::NotAFile(_) | TaskError::NotJsonName | TaskError::BadFileName(_))) => {
            Some(e.to_string())
        }
        _ => None,
    }
}

/// The live nodes' labels, by node: what routes the tasks now.
fn live_labels(nodes: &[NodeView]) -> Vec<(&str, NodeLabels)> {
    nodes
        .iter()
        .filter(|n| n.error.is_none() && !n.stale && matches!(n.status.as_str(), "idle" | "busy"))
        .map(|n| {
            (
                n.node_id.as_str(),
                NodeLabels::from_record(&n.labels, &n.exclusive),
            )
        })
        .collect()
}

/// The tasks waiting for others, each with those it still waits for (its
/// `after` less those with a completed result), and, where no live node
/// serves its labels, what they lack: released, it would wait for good.
pub(super) fn waiting_views(
    repo: &GridRepo,
    commit: &str,
    nodes: &[NodeView],
) -> Result<Vec<WaitingView>, GitError> {
    let blocked = BlockedAt::list(repo, commit)?;
    if blocked.entries.is_empty() {
        return Ok(Vec::new());
    }
    // Read as a worker reads the grid: a task up to a week is a task.
    let rules = TaskRules::default().to_read_by();
    let files: Vec<String> = blocked
        .entries
        .iter()
        .filter(|b| matches!(b.entry.mode, EntryMode::File | EntryMode::Executable))
        .map(|b| b.entry.oid.clone())
        .collect();
    let mut blobs = repo
        .read_objects(&files, rules.max_file_bytes as u64)?
        .into_iter();
    let mut parsed = Vec::new();
    for b in &blocked.entries {
        let path = String::from_utf8_lossy(&b.path()).into_owned();
        let task = if matches!(b.entry.mode, EntryMode::File | EntryMode::Executable) {
            match blobs.next().unwrap_or(Blob::Missing) {
                Blob::Data(bytes) => {
                    Task::from_entry(&b.file_name(), EntryKind::File, &bytes, &rules)
                        .map_err(|e| e.to_string())
                }
                other => Err(other.why_unread().unwrap_or_else(|| "is gone".to_owned())),
            }
        } else {
            Err("is not a regular file".to_owned())
        };
        parsed.push((b, path, task));
    }
    let parents: Vec<Id> = parsed
        .iter()
        .filter_map(|(_, _, t)| t.as_ref().ok())
        .flat_map(|t| t.after().iter().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let done = ResultIndex::list(repo, commit)?.find(repo, &parents)?;
    let live = live_labels(nodes);
    let refs: Vec<(&str, &NodeLabels)> = live.iter().map(|(n, l)| (*n, l)).collect();
    let mut why: BTreeMap<Class, Option<String>> = BTreeMap::new();
    let mut unservable = |class: Class| {
        why.entry(class)
            .or_insert_with_key(|c| schedule::why_unserved(c, &refs))
            .clone()
    };
    Ok(parsed
        .into_iter()
        .map(|(b, path, task)| match task {
            Ok(t) => {
                let failed = t.after().iter().find_map(|p| {
                    let r = done.get(p).filter(|r| !r.completed && r.counted)?;
                    Some((p, r.file.as_str(), r.status))
                });
                WaitingView {
                    task_id: t.task_id.to_string(),
                    waits_for: t
                        .after()
                        .iter()
                        .filter(|p| !done.get(*p).is_some_and(|r| r.completed && r.counted))
                        .map(Id::to_string)
                        .collect(),
                    held: held(&t, &b.parent, |p| {
                        done.get(p).is_some_and(|r| r.completed && r.counted)
                    }),
                    fails: failed.map(|(p, file, _)| {
                        format!(
                            "fails when `{}` finishes: dependency `{p}` did not complete ({file})",
                            b.parent
                        )
                    }),
                    // Judged, not run: it ends the task only where no copy
                    // of it is still to run (`ledger::deps::Finished`).
                    failed_parent: failed
                        .filter(|(_, _, s)| {
                            matches!(
                                s,
                                Some(ResultStatus::Invalid | ResultStatus::DependencyFailed)
                            )
                        })
                        .map(|(p, ..)| p.to_string()),
                    priority: Some(t.priority()),
                    requires: t.class().labels().map(ToString::to_string).collect(),
                    unservable: unservable(t.class()),
                    behind: None,
                    path,
                    error: None,
                    parent_results: t
                        .after()
                        .iter()
                        .filter_map(|p| done.get(p).filter(|r| r.completed && r.counted))
                        .map(|r| r.file.clone())
                        .collect(),
                }
            }
            Err(e) => WaitingView {
                task_id: b
                    .child()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| b.file_name()),
                waits_for: vec![b.parent.to_string()],
                held: None,
                fails: None,
                failed_parent: None,
                priority: None,
                requires: Vec::new(),
                unservable: None,
                behind: None,
                error: Some(format!("{path}: {e}")),
                path,
                parent_results: Vec::new(),
            },
        })
        .collect())
}

/// What holds a waiting task that waits for none of the tasks its
/// `after` names (a file pushed under `blocked/` by hand, or one whose
/// parents all completed): the parent its path names, until a node moves
/// it on. None while it waits for one of them.
fn held(task: &Task, parent: &Id, completed: impl Fn(&Id) -> bool) -> Option<String> {
    if !task.after().iter().all(completed) {
        return None;
    }
    let why = if task.after().is_empty() {
        "its file names no `after`"
    } else {
        "every task its `after` names completed"
    };
    Some(format!(
        "waits under `{parent}` by its path ({why}): a node queues it when `{parent}` finishes (by the result that ends it, or the first sweep after)"
    ))
}

/// The claims in `in_progress/`, each `started` where its node's record
/// (among `nodes`) lists it among the tasks it runs.
pub(super) fn running_views(
    repo: &GridRepo,
    commit: &str,
    now: Timestamp,
    nodes: &[NodeView],
) -> Result<Vec<RunningView>, GitError> {
    let entries: Vec<TreeEntry> = files(repo.list_dir(commit, layout::IN_PROGRESS)?)
        .into_iter()
        .filter(|e| matches!(e.mode, EntryMode::File | EntryMode::Executable))
        .collect();
    let rules = TaskRules::default();
    let blobs = repo.read_objects(&blob_ids(&entries), rules.max_file_bytes as u64)?;
    Ok(entries
        .iter()
        .zip(blobs)
        .map(|(e, b)| {
            let name = e.name_lossy();
            let parsed = match &b {
                Blob::Data(bytes) => {
                    ClaimedTask::parse(&name, bytes, &rules).map_err(|e| e.to_string())
                }
                other => Err(other.why_unread().unwrap_or_else(|| "is gone".to_owned())),
            };
            match parsed {
                Ok(c) => RunningView {
                    started: nodes.iter().any(|n| {
                        n.node_id == c.claim.node_id.as_str()
                            && n.running.iter().any(|r| r == c.task.task_id.as_str())
                    }),
                    task_id: c.task.task_id.to_string(),
                    node_id: c.claim.node_id.to_string(),
                    age_s: age(now, &c.claim.claimed_at),
                    claimed_at: c.claim.claimed_at,
                    deadline: c.claim.deadline,
                    attempt: c.claim.attempt,
                    priority: Some(c.task.priority()),
                    assigned_by: c.claim.assigned_by.map(|b| b.to_string()),
                    answer_by: c.claim.answer_by,
                    error: None,
                },
                Err(err) => RunningView {
                    task_id: layout::json_stem(&name).unwrap_or(&name).to_owned(),
                    node_id: String::new(),
                    claimed_at: String::new(),
                    age_s: None,
                    deadline: String::new(),
                    attempt: 0,
                    priority: None,
                    started: false,
                    assigned_by: None,
                    answer_by: None,
                    error: Some(format!("{}/{name}: {err}", layout::IN_PROGRESS)),
                },
            }
        })
        .collect())
}

/// Mark each waiting task that waits, directly or through others waiting,
/// for a task no live node serves (queued, or waiting and unservable once
/// released): it never runs while that holds, and `status` said only
/// "waits for" the task in between. The hint names that task, whose own
/// line says what the nodes lack: copied into each of a chain of 50,000,
/// the reason (up to five nodes' labels) took a `status` from 106 MB to
/// 1 GB. An entry that cannot be read as a task is neither marked nor
/// walked through: it never runs, whatever it waits for.
pub(super) fn mark_behind(waiting: &mut [WaitingView], queue: &[QueuedView]) {
    // Who waits for each task, by id.
    let mut dependants: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, w) in waiting
        .iter()
        .enumerate()
        .filter(|(_, w)| w.error.is_none())
    {
        for p in &w.waits_for {
            dependants.entry(p.as_str()).or_default().push(i);
        }
    }
    let roots: Vec<&str> = queue
        .iter()
        .filter(|q| q.unservable.is_some())
        .map(|q| q.task_id.as_str())
        .chain(
            waiting
                .iter()
                .filter(|w| w.unservable.is_some() && w.error.is_none())
                .map(|w| w.task_id.as_str()),
        )
        .collect();
    // From each root down its dependants; each id walked once (files of
    // one id pushed by hand share their dependants), each task marked by
    // the first root to reach it.
    let mut behind: Vec<Option<String>> = vec![None; waiting.len()];
    let mut walked: HashSet<&str> = HashSet::new();
    let mut walk: Vec<(&str, &str)> = Vec::new();
    for root in roots {
        if walked.insert(root) {
            walk.push((root, root));
        }
        while let Some((id, root)) = walk.pop() {
            for &i in dependants.get(id).into_iter().flatten() {
                let task = waiting[i].task_id.as_str();
                if behind[i].is_some() || task == root {
                    continue;
                }
                behind[i] = Some(if id == root {
                    format!("behind `{root}`, which no live node runs now")
                } else {
                    format!("behind `{root}` (through `{id}`), which no live node runs now")
                });
                if walked.insert(task) {
                    walk.push((task, root));
                }
            }
        }
    }
    for (w, b) in waiting.iter_mut().zip(behind) {
        w.behind = b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(id: &str, after: &[&str]) -> WaitingView {
        WaitingView {
            task_id: id.to_owned(),
            waits_for: after.iter().map(|a| (*a).to_owned()).collect(),
            held: None,
            fails: None,
            failed_parent: None,
            priority: Some(50),
            requires: Vec::new(),
            unservable: None,
            behind: None,
            path: format!("tasks/blocked/x/{id}.json"),
            error: None,
            parent_results: Vec::new(),
        }
    }

    fn queued(id: &str, unservable: Option<&str>) -> QueuedView {
        QueuedView {
            task_id: id.to_owned(),
            priority: Some(50),
            effective_priority: Some(50),
            requires: Vec::new(),
            submitter: None,
            queued_at: None,
            path: format!("tasks/lanes/p50/{id}.json"),
            unservable: unservable.map(str::to_owned),
        }
    }

    #[test]
    fn a_chain_behind_an_unservable_task_is_marked_down_to_its_end_and_no_further() {
        // Listed end first, as a long chain's waiting files may come.
        let mut w: Vec<WaitingView> = (1..200)
            .rev()
            .map(|i| waiting(&format!("c{i:03}"), &[&format!("c{:03}", i - 1)]))
            .collect();
        w.push(waiting("other", &["ok"]));
        let q = [
            queued("c000", Some("no live node serves it")),
            queued("ok", None),
        ];
        mark_behind(&mut w, &q);
        assert_eq!(
            w[0].behind.as_deref(),
            Some("behind `c000` (through `c198`), which no live node runs now")
        );
        assert_eq!(
            w[198].behind.as_deref(),
            Some("behind `c000`, which no live node runs now")
        );
        assert!(w[199].behind.is_none(), "behind a servable task: nothing");
    }

    #[test]
    fn a_cycle_pushed_by_hand_ends_the_walk() {
        let mut w = vec![waiting("a", &["b", "root"]), waiting("b", &["a"])];
        let q = [queued("root", Some("no live node serves it"))];
        mark_behind(&mut w, &q);
        assert_eq!(
            w[0].behind.as_deref(),
            Some("behind `root`, which no live node runs now")
        );
        assert_eq!(
            w[1].behind.as_deref(),
            Some("behind `root` (through `a`), which no live node runs now")
        );
    }

    #[test]
    fn an_entry_that_is_no_task_is_neither_marked_nor_walked_through() {
        let mut broken = waiting("selfy", &["selfy", "root"]);
        broken.error = Some("field `after` names the task itself".to_owned());
        let mut w = vec![broken, waiting("next", &["selfy"])];
        let q = [queued("root", Some("no live node serves it"))];
        mark_behind(&mut w, &q);
        assert!(w[0].behind.is_none(), "{:?}", w[0].behind);
        assert!(w[1].behind.is_none(), "{:?}", w[1].behind);
    }

    #[test]
    fn copies_of_one_id_mark_their_dependants_once() {
        let mut w: Vec<WaitingView> = (0..3).map(|_| waiting("dup", &["root"])).collect();
        w.extend((0..3).map(|i| waiting(&format!("d{i}"), &["dup"])));
        let q = [queued("root", Some("no live node serves it"))];
        mark_behind(&mut w, &q);
        assert!(w.iter().all(|w| w.behind.is_some()), "{w:?}");
        assert_eq!(
            w[5].behind.as_deref(),
            Some("behind `root` (through `dup`), which no live node runs now")
        );
    }
}
