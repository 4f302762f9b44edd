//! Submitted tasks: parsing and validation.
//!
//! The same rules serve the worker (before it runs anything) and
//! `dgrid-worker validate` (in the grid's CI), so that what CI accepts is
//! exactly what a worker runs. Every error names the field and the reason.
//!
//! The folder, by concern: this file holds the task, its fields and the
//! parse that checks them; `limits.rs` the bounds a grid may tighten;
//! `scheduling.rs` the fields that say when and where a task runs
//! (`priority`, `requires`, `after`, `submitter`, `queued_at`); `error.rs`
//! the named errors; `json.rs` the reading of untrusted JSON that the parse
//! stands on (type names, bounded integers, keys given twice); `hints.rs`
//! the known field an unknown one was probably meant to be.

use serde_json::{Map, Value};

use super::Id;

mod error;
mod hints;
mod json;
mod limits;
mod scheduling;
#[cfg(test)]
mod tests;

pub use error::TaskError;
use json::{bounded_int, type_name, wrong};
pub(crate) use json::{duplicate_key, duplicate_key_in_file};
pub use limits::{DEFAULT_PRIORITY, MAX_AFTER, PRIORITY_MAX, TIMEOUT_CEILING, TaskRules};
use scheduling::{parse_after, parse_requires};

/// The block a claim adds to a task file (`grid::claim`): the grid's own,
/// never part of what a submitter wrote.
pub const CLAIM_FIELD: &str = "claim";

/// A valid task, with the fields the worker does not know kept as they were.
///
/// The scheduling fields are kept as given (absent stays absent), so that a
/// task written back by a claim or a requeue says what its submitter wrote;
/// [`Task::priority`] and [`Task::class`] apply the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub task_id: Id,
    pub script: String,
    pub timeout_seconds: u64,
    /// 1 for a fresh task; raised each time an orphaned claim is requeued.
    pub attempt: u32,
    /// `priority`: 0 to [`PRIORITY_MAX`]; higher runs first.
    pub priority: Option<u8>,
    /// `requires`: labels a node must have to run it, as listed.
    pub requires: Option<Vec<String>>,
    /// `after`: tasks that must have completed before this one runs.
    pub after: Option<Vec<Id>>,
    /// `submitter`: who asked, for fairness between submitters.
    pub submitter: Option<Id>,
    /// `queued_at`: when it was first queued (RFC 3339), for its age.
    pub queued_at: Option<String>,
    /// Every other top-level field, kept verbatim.
    pub extra: Map<String, Value>,
}

/// How a queue entry is stored in git, as far as validation cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Executable,
    Symlink,
    Directory,
    Submodule,
}

impl Task {
    /// Validate a queue entry: its name, how git stores it, and its bytes.
    pub fn from_entry(
        name: &str,
        kind: EntryKind,
        bytes: &[u8],
        rules: &TaskRules,
    ) -> Result<Task, TaskError> {
        // What it is before what it is called: a directory pushed into the
        // inbox was refused as "file name must end in .json".
        match kind {
            EntryKind::File | EntryKind::Executable => {}
            EntryKind::Symlink => return Err(TaskError::NotAFile("symbolic link")),
            EntryKind::Directory => return Err(TaskError::NotAFile("directory")),
            EntryKind::Submodule => return Err(TaskError::NotAFile("submodule")),
        }
        let stem = super::id::json_stem(name).ok_or(TaskError::NotJsonName)?;
        let file_id = Id::parse(stem).map_err(TaskError::BadFileName)?;
        let task = Task::parse(bytes, rules)?;
        if task.task_id != file_id {
            return Err(TaskError::IdMismatch {
                id: task.task_id.to_string(),
                stem: stem.to_owned(),
            });
        }
        Ok(task)
    }

    /// Validate a task document on its own (no file name to compare with).
    pub fn parse(bytes: &[u8], rules: &TaskRules) -> Result<Task, TaskError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(TaskError::Empty);
        }
        if bytes.len() > rules.max_file_bytes {
            return Err(TaskError::TooLarge {
                size: bytes.len(),
                max: rules.max_file_bytes,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|e| TaskError::NotUtf8(e.valid_up_to()))?;
        let value: Value =
            serde_json::from_str(text).map_err(|e| TaskError::NotJson(e.to_string()))?;
        let Value::Object(mut obj) = value else {
            return Err(TaskError::NotObject(type_name(&value)));
        };
        // serde_json keeps the last of two equal keys, other parsers the
        // first: a reviewer (or a CI check in another language) could see a
        // harmless script where the worker runs another.
        if let Some(key) = duplicate_key(text) {
            return Err(TaskError::DuplicateField(key));
        }

        let task_id = match obj.remove("task_id") {
            None => return Err(TaskError::Missing("task_id")),
            Some(Value::String(s)) => Id::parse(&s).map_err(TaskError::BadId)?,
            Some(other) => return Err(wrong("task_id", "a string", &other)),
        };
        let script = match obj.remove("script") {
            None => return Err(TaskError::Missing("script")),
            Some(Value::String(s)) => s,
            Some(other) => return Err(wrong("script", "a string", &other)),
        };
        if script.trim().is_empty() {
            return Err(TaskError::EmptyScript);
        }
        if script.len() > rules.max_script_bytes {
            return Err(TaskError::ScriptTooLarge {
                size: script.len(),
                max: rules.max_script_bytes,
            });
        }
        if script.contains('\0') {
            return Err(TaskError::NulInScript);
        }
        let timeout_seconds = match obj.remove("timeout_seconds") {
            None => return Err(TaskError::Missing("timeout_seconds")),
            Some(v) => bounded_int(&v, "timeout_seconds", 1, rules.max_timeout_seconds)?,
        };
        let attempt = match obj.remove("attempt") {
            None => 1,
            Some(v) => bounded_int(&v, "attempt", 1, u64::from(u32::MAX))? as u32,
        };
        let priority = match obj.remove("priority") {
            None => None,
            Some(v) => Some(bounded_int(&v, "priority", 0, u64::from(PRIORITY_MAX))? as u8),
        };
        let requires = match obj.remove("requires") {
            None => None,
            Some(v) => Some(parse_requires(&v)?),
        };
        let after = match obj.remove("after") {
            None => None,
            Some(v) => Some(parse_after(&v, &task_id)?),
        };
        let submitter = match obj.remove("submitter") {
            None => None,
            Some(Value::String(s)) => Some(Id::parse(&s).map_err(TaskError::BadSubmitter)?),
            Some(other) => return Err(wrong("submitter", "a string", &other)),
        };
        let queued_at = match obj.remove("queued_at") {
            None => None,
            Some(Value::String(s)) if crate::time::parse(&s).is_some() => Some(s),
            Some(Value::String(s)) => {
                return Err(TaskError::NotATime {
                    field: "queued_at",
                    value: s,
                });
            }
            Some(other) => return Err(wrong("queued_at", "a string", &other)),
        };
        // A claim block in a queued task is left over from a requeue by an
        // older tool; it is not the task's and is dropped rather than kept.
        obj.remove(CLAIM_FIELD);
        Ok(Task {
            task_id,
            script,
            timeout_seconds,
            attempt,
            priority,
            requires,
            after,
            submitter,
            queued_at,
            extra: obj,
        })
    }

    /// The kept fields that look like a known field mistyped or named as
    /// another scheduler names it: (the field, the one probably meant).
    /// They are kept all the same; `validate` and `submit` warn.
    pub fn likely_mistakes(&self) -> Vec<(&str, &'static str)> {
        self.extra
            .keys()
            .filter_map(|k| hints::meant(k).map(|m| (k.as_str(), m)))
            .collect()
    }

    /// The task as a JSON object, known fields first, then the kept ones.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut obj = Map::new();
        obj.insert("task_id".into(), self.task_id.to_string().into());
        obj.insert("script".into(), self.script.clone().into());
        obj.insert("timeout_seconds".into(), self.timeout_seconds.into());
        if self.attempt > 1 {
            obj.insert("attempt".into(), self.attempt.into());
        }
        if let Some(p) = self.priority {
            obj.insert("priority".into(), p.into());
        }
        if let Some(r) = &self.requires {
            obj.insert("requires".into(), r.clone().into());
        }
        if let Some(a) = &self.after {
            let ids: Vec<Value> = a.iter().map(|id| id.to_string().into()).collect();
            obj.insert("after".into(), ids.into());
        }
        if let Some(s) = &self.submitter {
            obj.insert("submitter".into(), s.to_string().into());
        }
        if let Some(q) = &self.queued_at {
            obj.insert("queued_at".into(), q.clone().into());
        }
        obj.extend(self.extra.clone());
        obj
    }
}
