//! The scheduling fields of a task: `priority`, `requires` (the labels a
//! node must have), `after` (the tasks it waits for), `submitter` and
//! `queued_at`. They are kept as given (absent stays absent), and read
//! through the accessors here, which apply the defaults.

use serde_json::Value;

use super::Task;
use super::error::TaskError;
use super::json::wrong;
use super::limits::{DEFAULT_PRIORITY, MAX_AFTER};
use crate::grid::{Class, Id};

impl Task {
    /// The priority, or [`DEFAULT_PRIORITY`] if the task gives none.
    pub fn priority(&self) -> u8 {
        self.priority.unwrap_or(DEFAULT_PRIORITY)
    }

    /// The class: the labels it requires, as a set (validated at parse).
    pub fn class(&self) -> Class {
        match &self.requires {
            Some(r) => Class::from_labels(r.iter().map(String::as_str))
                .expect("`requires` was checked when the task was parsed"),
            None => Class::any(),
        }
    }

    /// The tasks it runs after (none if it gives no `after`).
    pub fn after(&self) -> &[Id] {
        self.after.as_deref().unwrap_or(&[])
    }

    /// When it was first queued, if it says.
    pub fn queued_at(&self) -> Option<crate::time::Timestamp> {
        self.queued_at.as_deref().and_then(crate::time::parse)
    }
}

/// `requires`: an array of labels forming a class.
pub(super) fn parse_requires(v: &Value) -> Result<Vec<String>, TaskError> {
    let Value::Array(items) = v else {
        return Err(wrong("requires", "an array of labels", v));
    };
    let mut labels = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(s) => labels.push(s.clone()),
            other => return Err(wrong("requires", "an array of labels (strings)", other)),
        }
    }
    Class::from_labels(labels.iter().map(String::as_str)).map_err(TaskError::BadRequires)?;
    Ok(labels)
}

/// `after`: an array of task ids, none twice, not the task itself.
pub(super) fn parse_after(v: &Value, me: &Id) -> Result<Vec<Id>, TaskError> {
    let Value::Array(items) = v else {
        return Err(wrong("after", "an array of task ids", v));
    };
    if items.len() > MAX_AFTER {
        return Err(TaskError::TooManyAfter { count: items.len() });
    }
    let mut ids: Vec<Id> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let Value::String(s) = item else {
            return Err(wrong("after", "an array of task ids (strings)", item));
        };
        let id = Id::parse(s).map_err(|reason| TaskError::BadAfter {
            index,
            value: format!("{s:?}"),
            reason,
        })?;
        if &id == me {
            return Err(TaskError::AfterItself);
        }
        if ids.contains(&id) {
            return Err(TaskError::DuplicateAfter(s.clone()));
        }
        ids.push(id);
    }
    Ok(ids)
}
