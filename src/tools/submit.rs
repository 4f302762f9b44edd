//! `dgrid-worker submit`: task files made by the worker's own rules, put in
//! the queue by a transaction whose precondition is that each id is new; a
//! whole graph of tasks (`after`) in one commit.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::git::txn::{Plan, Txn};
use crate::git::{Edit, Edits, GitError, GridRepo};
use crate::grid::claim::pretty;
use crate::grid::deps::{self, Next, Parent};
use crate::grid::layout::Place;
use crate::grid::task::EntryKind;
use crate::grid::{Id, Task, TaskError, TaskRules, layout};
use crate::ledger::blocked::BlockedAt;
use crate::ledger::queue::QueueAt;
use crate::ledger::result_index::{ResultIndex, ResultRef};
use crate::time::Timestamp;

/// A fresh id: the time (so ids sort by submission) and randomness (so two
/// people submitting in the same second do not collide).
pub fn generate_id(now: Timestamp) -> Id {
    let id = format!(
        "t-{}-{:06x}",
        now.format("%Y%m%dT%H%M%S"),
        fastrand::u32(..0x100_0000)
    );
    Id::parse(&id).expect("generated ids use the id alphabet")
}

/// Build the task document: `base` (from a file, possibly without an id),
/// overridden by what was given on the command line, stamped with the time
/// it is queued (`queued_at`, its age for the order), then checked by
/// `Task::from_entry` under the name it will have in the queue.
pub fn make_task(
    mut base: Map<String, Value>,
    id: Option<&str>,
    script: Option<String>,
    timeout: Option<u64>,
    now: Timestamp,
    rules: &TaskRules,
) -> Result<Task, TaskError> {
    if let Some(id) = id {
        base.insert("task_id".into(), id.into());
    }
    if !base.contains_key("task_id") {
        base.insert("task_id".into(), generate_id(now).to_string().into());
    }
    if let Some(s) = script {
        base.insert("script".into(), s.into());
    }
    if let Some(t) = timeout {
        base.insert("timeout_seconds".into(), t.into());
    }
    // A task signed already (by `ssh-keygen -Y sign`, say) takes no field
    // its signature does not cover: its lane's batch is then the time it
    // is queued, as for any task without `queued_at`.
    if !base.contains_key("queued_at") && !base.contains_key(crate::trust::envelope::ENVELOPE_FIELD)
    {
        base.insert("queued_at".into(), crate::time::format(now).into());
    }
    let bytes = pretty(&Value::Object(base.clone()));
    // The file name follows the id; an id that is not a valid file name is
    // reported as the `task_id` field's problem, not the file's.
    let name = match base.get("task_id") {
        Some(Value::String(s)) if Id::parse(s).is_ok() => format!("{s}.json"),
        _ => return Task::parse(&bytes, rules),
    };
    Task::from_entry(&name, EntryKind::File, &bytes, rules)
}

/// What a submit did, or why it did nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// Each task, where it went (its lane, or `blocked/` to wait).
    Queued { paths: Vec<String> },
    /// This id is in use on the grid already, at this path.
    Duplicate { id: Id, path: String },
    /// The graph cannot run: an unknown id, a cycle, a parent that failed;
    /// `task` is the one whose `after` says so (of a cycle, its first).
    Refused { task: Id, why: String },
}

/// Plan the submit of `tasks` (one, or a whole graph) at the fetched tip,
/// all in one commit: refuse an id that is queued, waiting, running, or
/// has a result; a task that runs after one neither among them nor on the
/// grid, or after one that did not complete; and tasks that wait for each
/// other in a cycle. Each goes to its lane, or, while a task it runs after
/// is not finished, to `blocked/` under the first such.
pub fn plan(txn: &Txn<'_>, tasks: &[Task], now: Timestamp) -> Result<Plan<Submitted>, GitError> {
    let unchanged = |value: Submitted| Plan {
        edits: Edits::new(),
        message: String::new(),
        value,
    };
    let ours: BTreeSet<&Id> = tasks.iter().map(|t| &t.task_id).collect();
    // On the grid: what is pending (queued, waiting, running), and results.
    let mut pending: BTreeMap<Id, String> = BTreeMap::new();
    let mut results: BTreeMap<Id, ResultRef> = BTreeMap::new();
    if let Some(tip) = txn.tip.as_deref() {
        let repo = txn.repo;
        let queue = QueueAt::list(repo, tip)?;
        for (id, path) in queue.paths() {
            pending.insert(id, String::from_utf8_lossy(&path).into_owned());
        }
        for e in repo.list_dir(tip, layout::IN_PROGRESS)? {
            if let Some(id) = layout::json_stem(&e.name_lossy()).and_then(|s| Id::parse(s).ok()) {
                pending.insert(id.clone(), layout::in_progress_file(&id));
            }
        }
        for b in BlockedAt::list(repo, tip)?.entries {
            if let Some(id) = b.child() {
                let path = String::from_utf8_lossy(&b.path()).into_owned();
                pending.insert(id, path);
            }
        }
        let mut asked: Vec<Id> = tasks.iter().map(|t| t.task_id.clone()).collect();
        asked.extend(tasks.iter().flat_map(|t| t.after().iter().cloned()));
        asked.sort();
        asked.dedup();
        results = ResultIndex::list(repo, tip)?.find(repo, &asked)?;
    }
    for t in tasks {
        let id = &t.task_id;
        if let Some(path) = pending.get(id) {
            return Ok(unchanged(Submitted::Duplicate {
                id: id.clone(),
                path: path.clone(),
            }));
        }
        if let Some(r) = results.get(id).filter(|r| r.counted) {
            return Ok(unchanged(Submitted::Duplicate {
                id: id.clone(),
                path: r.file.clone(),
            }));
        }
    }
    let graph: Vec<(Id, Vec<Id>)> = tasks
        .iter()
        .map(|t| (t.task_id.clone(), t.after().to_vec()))
        .collect();
    let known = |p: &Id| pending.contains_key(p) || results.contains_key(p);
    if let Some(e) = deps::check_graph(&graph, known).into_iter().next() {
        let task = match &e {
            deps::GraphError::Unknown { task, .. } => task.clone(),
            deps::GraphError::Cycle(ids) => ids[0].clone(),
        };
        let why = e.to_string();
        return Ok(unchanged(Submitted::Refused { task, why }));
    }
    let mut edits = Edits::new();
    let mut paths = Vec::new();
    for t in tasks {
        let next = deps::next(t.after(), |p| {
            if ours.contains(p) || pending.contains_key(p) {
                Parent::Pending
            } else {
                match results.get(p) {
                    // Junk under its result's name: as if still to finish,
                    // as a node reads it.
                    Some(r) if !r.counted => Parent::Pending,
                    Some(r) if r.completed => Parent::Completed,
                    Some(r) => Parent::Failed {
                        status: None,
                        file: r.file.clone(),
                    },
                    None => Parent::Unknown,
                }
            }
        });
        let path = match next {
            Next::Ready => Place::of(t, now).file(&t.task_id),
            Next::Wait(parent) => layout::blocked_file(&parent, &t.task_id),
            Next::Fail { error, .. } | Next::Invalid { error } => {
                return Ok(unchanged(Submitted::Refused {
                    task: t.task_id.clone(),
                    why: format!("field `after` of `{}`: {error}", t.task_id),
                }));
            }
        };
        edits.insert(
            path.clone().into_bytes(),
            Edit::Put(pretty(&Value::Object(t.to_json()))),
        );
        paths.push(path);
    }
    let message = match tasks {
        [one] => format!("submit {}\n", one.task_id),
        many => format!("submit {} tasks\n", many.len()),
    };
    Ok(Plan {
        edits,
        message,
        value: Submitted::Queued { paths },
    })
}

/// A result of task `id` on `main` at `tip`, if there is one: named so
/// (`<node>@<id>.json`), or under an older `<node>-<id>.json` name whose
/// file says it is `id`'s (node ids may hold `-`, so the name alone does
/// not tell).
pub fn find_result(repo: &GridRepo, tip: &str, id: &Id) -> Result<Option<String>, GitError> {
    Ok(ResultIndex::list(repo, tip)?
        .find(repo, std::slice::from_ref(id))?
        .remove(id)
        .map(|r| r.file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_generated_and_fields_checked() {
        let now = crate::time::parse("2026-01-02T03:04:05Z").unwrap();
        let rules = TaskRules::default();
        let t = make_task(
            Map::new(),
            None,
            Some("echo hi".into()),
            Some(5),
            now,
            &rules,
        )
        .unwrap();
        assert!(t.task_id.as_str().starts_with("t-20260102T030405-"));
        let e = make_task(
            Map::new(),
            Some("a/b"),
            Some("x".into()),
            Some(5),
            now,
            &rules,
        )
        .unwrap_err();
        assert_eq!(e.field(), Some("task_id"));
        let e = make_task(Map::new(), Some("ok"), Some("x".into()), None, now, &rules).unwrap_err();
        assert_eq!(e.to_string(), "field `timeout_seconds` is missing");
        let mut base = Map::new();
        base.insert("owner".into(), "ana".into());
        let t = make_task(base, Some("k"), Some("x".into()), Some(1), now, &rules).unwrap();
        assert_eq!(t.extra["owner"], "ana");
    }
}
