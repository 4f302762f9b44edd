//! `dgrid-worker submit`: a task file made by the worker's own rules, put in
//! the queue by a transaction whose precondition is that the id is new.

use serde_json::{Map, Value};

use crate::git::txn::{Plan, Txn};
use crate::git::{Edit, Edits, GitError, GridRepo};
use crate::grid::claim::pretty;
use crate::grid::task::EntryKind;
use crate::grid::{Id, Task, TaskError, TaskRules, layout};
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
/// overridden by what was given on the command line, then checked by
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
    let bytes = pretty(&Value::Object(base.clone()));
    // The file name follows the id; an id that is not a valid file name is
    // reported as the `task_id` field's problem, not the file's.
    let name = match base.get("task_id") {
        Some(Value::String(s)) if Id::parse(s).is_ok() => format!("{s}.json"),
        _ => return Task::parse(&bytes, rules),
    };
    Task::from_entry(&name, EntryKind::File, &bytes, rules)
}

/// Where an id is already in use on the grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    Queued { path: String },
    Duplicate { path: String },
}

/// Plan the submit at the fetched tip: refuse an id that is queued, running,
/// or has a result already.
pub fn plan(txn: &Txn<'_>, task: &Task) -> Result<Plan<Submitted>, GitError> {
    let id = &task.task_id;
    let target = layout::queue_file(id);
    let unchanged = |path: String| Plan {
        edits: Edits::new(),
        message: String::new(),
        value: Submitted::Duplicate { path },
    };
    if let Some(tip) = txn.tip.as_deref() {
        let repo = txn.repo;
        for path in [layout::queue_file(id), layout::in_progress_file(id)] {
            if repo.exists(tip, &path)? {
                return Ok(unchanged(path));
            }
        }
        if let Some(path) = find_result(repo, tip, id)? {
            return Ok(unchanged(path));
        }
    }
    let mut edits = Edits::new();
    edits.insert(
        target.clone().into_bytes(),
        Edit::Put(pretty(&Value::Object(task.to_json()))),
    );
    Ok(Plan {
        edits,
        message: format!("submit {id}\n"),
        value: Submitted::Queued { path: target },
    })
}

/// A result of task `id` on `main` at `tip`, if there is one: named so
/// (`<node>@<id>.json`), or under an older `<node>-<id>.json` name whose
/// file says it is `id`'s (node ids may hold `-`, so the name alone does
/// not tell).
pub fn find_result(repo: &GridRepo, tip: &str, id: &Id) -> Result<Option<String>, GitError> {
    for dir in [layout::COMPLETED, layout::FAILED] {
        let mut candidates = Vec::new();
        for e in repo.list_dir(tip, dir)? {
            match layout::result_name_is_for(&e.name_lossy(), id) {
                layout::NameMatch::Yes => return Ok(Some(format!("{dir}/{}", e.name_lossy()))),
                layout::NameMatch::Candidate => candidates.push(e),
                layout::NameMatch::No => {}
            }
        }
        let blobs = repo.read_objects(
            &candidates.iter().map(|e| e.oid.clone()).collect::<Vec<_>>(),
            layout::MAX_RESULT_BYTES,
        )?;
        for (e, b) in candidates.iter().zip(blobs) {
            let same = b
                .data()
                .and_then(|b| serde_json::from_slice::<Value>(b).ok())
                .is_some_and(|v| v["task_id"] == id.as_str());
            if same {
                return Ok(Some(format!("{dir}/{}", e.name_lossy())));
            }
        }
    }
    Ok(None)
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
