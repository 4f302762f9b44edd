//! Why a task is refused: one variant per problem, each naming the field
//! and the reason, so that a worker's `failed/` entry and `validate`'s
//! finding say the same thing; and the field each is about, for
//! machine-readable reports.

use super::limits::MAX_AFTER;
use crate::grid::id::IdError;
use crate::grid::label::ClassError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("file name must end in .json")]
    NotJsonName,
    #[error("file name is not a valid task id: {0}")]
    BadFileName(IdError),
    #[error("is a {0}, not a regular file")]
    NotAFile(&'static str),
    #[error("is empty")]
    Empty,
    #[error("is {size} bytes; at most {max} are allowed")]
    TooLarge { size: usize, max: usize },
    #[error("is not valid UTF-8 (first bad byte at offset {0})")]
    NotUtf8(usize),
    #[error("is not valid JSON: {0}")]
    NotJson(String),
    #[error("must be a JSON object, found {0}{hint}", hint = graph_hint(.0))]
    NotObject(&'static str),
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{field}` must be {expected}, found {found}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("field `task_id` {0}")]
    BadId(IdError),
    #[error("field `task_id` is {id:?} but the file is named {stem:?}.json; they must match")]
    IdMismatch { id: String, stem: String },
    #[error("field `{field}` is {value}; it must be between {min} and {max}")]
    OutOfRange {
        field: &'static str,
        value: String,
        min: u64,
        max: u64,
    },
    #[error("field `script` is {size} bytes; at most {max} are allowed")]
    ScriptTooLarge { size: usize, max: usize },
    #[error("field `script` is empty")]
    EmptyScript,
    #[error("field `script` contains a NUL byte, which no shell can run")]
    NulInScript,
    #[error("field `{0}` appears more than once; JSON parsers disagree on which one counts")]
    DuplicateField(String),
    #[error("field `requires` {0}")]
    BadRequires(ClassError),
    #[error("field `after` item {index} ({value}) {reason}")]
    BadAfter {
        index: usize,
        value: String,
        reason: IdError,
    },
    #[error("field `after` lists {0:?} twice")]
    DuplicateAfter(String),
    #[error("field `after` lists {count} tasks; at most {MAX_AFTER} are allowed")]
    TooManyAfter { count: usize },
    #[error("field `after` names the task itself; it would wait for ever")]
    AfterItself,
    #[error("field `submitter` {0}")]
    BadSubmitter(IdError),
    #[error("field `{field}` is {value:?}, not an RFC 3339 time (such as 2026-11-30T10:00:00Z)")]
    NotATime { field: &'static str, value: String },
}

impl TaskError {
    /// The field the error is about, for machine-readable reports.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            TaskError::Missing(f) | TaskError::WrongType { field: f, .. } => Some(f),
            TaskError::OutOfRange { field, .. } => Some(field),
            TaskError::BadId(_) | TaskError::IdMismatch { .. } => Some("task_id"),
            TaskError::ScriptTooLarge { .. } | TaskError::EmptyScript | TaskError::NulInScript => {
                Some("script")
            }
            TaskError::BadRequires(_) => Some("requires"),
            TaskError::BadAfter { .. }
            | TaskError::DuplicateAfter(_)
            | TaskError::TooManyAfter { .. }
            | TaskError::AfterItself => Some("after"),
            TaskError::BadSubmitter(_) => Some("submitter"),
            TaskError::NotATime { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// An array in the queue is most often a graph of tasks written for
/// `submit`, pushed by hand: say where it belongs.
fn graph_hint(found: &str) -> &'static str {
    match found {
        "an array" => {
            " (one task a file; an array of tasks is a graph for `dgrid-worker submit --task-file`, which files each, and checks one with --dry-run)"
        }
        _ => "",
    }
}
