//! Submitted tasks: parsing and validation.
//!
//! The same rules serve the worker (before it runs anything) and
//! `dgrid-worker validate` (in the grid's CI), so that what CI accepts is
//! exactly what a worker runs. Every error names the field and the reason.

use serde_json::{Map, Value};

use super::label::{Class, ClassError};
use super::{Id, IdError};

/// The block a claim adds to a task file (`grid::claim`): the grid's own,
/// never part of what a submitter wrote.
pub const CLAIM_FIELD: &str = "claim";

/// Limits a task must respect. A grid may tighten them in its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRules {
    pub max_file_bytes: usize,
    pub max_script_bytes: usize,
    pub max_timeout_seconds: u64,
}

impl Default for TaskRules {
    fn default() -> Self {
        TaskRules {
            // A task is a small JSON document; anything bigger is a mistake or
            // an attack on the workers' memory.
            max_file_bytes: 256 * 1024,
            // The script is passed as one argv string; Linux caps one argument
            // at 128 KiB (MAX_ARG_STRLEN), so stay well under it.
            max_script_bytes: 64 * 1024,
            max_timeout_seconds: 3600,
        }
    }
}

/// The lowest and highest `priority`; higher runs first.
pub const PRIORITY_MAX: u8 = 99;
/// The priority of a task that gives none: the middle of the range.
pub const DEFAULT_PRIORITY: u8 = 50;
/// The most tasks one task may run `after`. A join of more goes through
/// intermediate tasks: each time one of its parents finishes, a waiting
/// task is looked at again.
pub const MAX_AFTER: usize = 100;

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
    #[error("must be a JSON object, found {0}")]
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

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(n) if n.is_i64() && n.as_i64().is_some_and(|i| i < 0) => "a negative number",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Task {
    /// Validate a queue entry: its name, how git stores it, and its bytes.
    pub fn from_entry(
        name: &str,
        kind: EntryKind,
        bytes: &[u8],
        rules: &TaskRules,
    ) -> Result<Task, TaskError> {
        let stem = super::id::json_stem(name).ok_or(TaskError::NotJsonName)?;
        match kind {
            EntryKind::File | EntryKind::Executable => {}
            EntryKind::Symlink => return Err(TaskError::NotAFile("symbolic link")),
            EntryKind::Directory => return Err(TaskError::NotAFile("directory")),
            EntryKind::Submodule => return Err(TaskError::NotAFile("submodule")),
        }
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

/// `requires`: an array of labels forming a class.
fn parse_requires(v: &Value) -> Result<Vec<String>, TaskError> {
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
fn parse_after(v: &Value, me: &Id) -> Result<Vec<Id>, TaskError> {
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

/// The first top-level key of a JSON object that appears twice, if any.
pub(crate) fn duplicate_key(text: &str) -> Option<String> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

    struct FirstDuplicate(Option<String>);
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = FirstDuplicate;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FirstDuplicate, A::Error> {
            let mut seen = std::collections::BTreeSet::new();
            let mut first = None;
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                if first.is_none() && seen.contains(&key) {
                    first = Some(key);
                } else {
                    seen.insert(key);
                }
            }
            Ok(FirstDuplicate(first))
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_map(Keys).ok().and_then(|d| d.0)
}

fn wrong(field: &'static str, expected: &'static str, found: &Value) -> TaskError {
    TaskError::WrongType {
        field,
        expected,
        found: type_name(found),
    }
}

fn bounded_int(v: &Value, field: &'static str, min: u64, max: u64) -> Result<u64, TaskError> {
    let Value::Number(n) = v else {
        return Err(wrong(field, "an integer", v));
    };
    let out_of_range = || TaskError::OutOfRange {
        field,
        value: n.to_string(),
        min,
        max,
    };
    if n.is_f64() {
        return Err(wrong(field, "an integer", v));
    }
    match n.as_u64() {
        Some(x) if (min..=max).contains(&x) => Ok(x),
        _ => Err(out_of_range()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, text: &str) -> Result<Task, TaskError> {
        Task::from_entry(
            name,
            EntryKind::File,
            text.as_bytes(),
            &TaskRules::default(),
        )
    }

    #[test]
    fn valid_task_keeps_unknown_fields() {
        let t = parse(
            "t1.json",
            r#"{"task_id":"t1","script":"echo hi","timeout_seconds":30,"owner":"ana"}"#,
        )
        .unwrap();
        assert_eq!(t.task_id.as_str(), "t1");
        assert_eq!(t.attempt, 1);
        assert_eq!(t.extra["owner"], "ana");
        assert_eq!(t.to_json()["owner"], "ana");
    }

    #[test]
    fn each_problem_is_named() {
        let cases: &[(&str, &str, &str)] = &[
            ("t.json", "", "is empty"),
            ("t.json", "{", "not valid JSON"),
            ("t.json", "[1]", "must be a JSON object, found an array"),
            (
                "t.json",
                r#"{"script":"x","timeout_seconds":1}"#,
                "`task_id` is missing",
            ),
            (
                "t.json",
                r#"{"task_id":7,"script":"x","timeout_seconds":1}"#,
                "`task_id` must be a string, found a number",
            ),
            (
                "t.json",
                r#"{"task_id":"t","timeout_seconds":1}"#,
                "`script` is missing",
            ),
            (
                "t.json",
                r#"{"task_id":"t","script":["x"],"timeout_seconds":1}"#,
                "`script` must be a string, found an array",
            ),
            (
                "t.json",
                r#"{"task_id":"t","script":"x"}"#,
                "`timeout_seconds` is missing",
            ),
            (
                "t.json",
                r#"{"task_id":"t","script":"x","timeout_seconds":"30"}"#,
                "`timeout_seconds` must be an integer, found a string",
            ),
            (
                "t.json",
                r#"{"task_id":"t","script":"x","timeout_seconds":0}"#,
                "`timeout_seconds` is 0; it must be between 1 and 3600",
            ),
            (
                "t.json",
                r#"{"task_id":"t","script":"x","timeout_seconds":-5}"#,
                "`timeout_seconds` is -5",
            ),
            (
                "t.json",
                r#"{"task_id":"t","script":"x","timeout_seconds":1.5}"#,
                "must be an integer, found a fractional number",
            ),
            (
                "t.json",
                r#"{"task_id":"t","script":"x","timeout_seconds":99999}"#,
                "is 99999",
            ),
            (
                "t.json",
                r#"{"task_id":"u","script":"x","timeout_seconds":1}"#,
                r#"is "u" but the file is named "t".json"#,
            ),
            (
                "t.json",
                r#"{"task_id":"../x","script":"x","timeout_seconds":1}"#,
                "`task_id` must start with a letter or digit",
            ),
            (
                "t.json",
                r#"{"task_id":"t","script":"  ","timeout_seconds":1}"#,
                "`script` is empty",
            ),
            ("t.txt", r#"{}"#, "must end in .json"),
            ("a b.json", r#"{}"#, "not a valid task id"),
        ];
        for (name, text, want) in cases {
            let err = parse(name, text).expect_err(text).to_string();
            assert!(err.contains(want), "{text:?}: got {err:?}, want {want:?}");
        }
    }

    #[test]
    fn non_files_and_bad_bytes_are_rejected() {
        let rules = TaskRules::default();
        let e = Task::from_entry("t.json", EntryKind::Symlink, b"x", &rules).unwrap_err();
        assert_eq!(e, TaskError::NotAFile("symbolic link"));
        let e = Task::from_entry("t.json", EntryKind::Directory, b"", &rules).unwrap_err();
        assert_eq!(e, TaskError::NotAFile("directory"));
        let e = Task::from_entry("t.json", EntryKind::File, b"{\"a\xff", &rules).unwrap_err();
        assert_eq!(e, TaskError::NotUtf8(3));
        let big = vec![b' '; rules.max_file_bytes + 1];
        let mut big = big;
        big[0] = b'{';
        assert!(matches!(
            Task::from_entry("t.json", EntryKind::File, &big, &rules),
            Err(TaskError::TooLarge { .. })
        ));
        let deep = "[".repeat(10_000);
        assert!(matches!(
            Task::parse(deep.as_bytes(), &rules),
            Err(TaskError::NotJson(_))
        ));
    }

    #[test]
    fn unknown_fields_are_kept_to_the_digit() {
        // Found by fuzzing: numbers past u64 became floats, so a claim or a
        // requeue rewrote 6000000000000000000787475350 as 6.000000000000001e27.
        let text = r#"{"task_id":"x","script":"a","timeout_seconds":1,"big":6000000000000000000787475350,"f":0.10000000000000000001}"#;
        let t = Task::parse(text.as_bytes(), &TaskRules::default()).unwrap();
        let again = serde_json::to_string(&Value::Object(t.to_json())).unwrap();
        assert!(
            again.contains(r#""big":6000000000000000000787475350"#),
            "{again}"
        );
        assert!(again.contains(r#""f":0.10000000000000000001"#), "{again}");
        let e = Task::parse(
            br#"{"task_id":"x","script":"a","timeout_seconds":18446744073709551616}"#,
            &TaskRules::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("is 18446744073709551616; it must be between"),
            "{e}"
        );
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        let e = Task::parse(
            br#"{"task_id":"t","script":"echo ok","timeout_seconds":1,"script":"echo evil"}"#,
            &TaskRules::default(),
        )
        .unwrap_err();
        assert_eq!(e, TaskError::DuplicateField("script".into()));
        // Equal keys in nested values are the task's own business.
        assert!(
            Task::parse(
                br#"{"task_id":"t","script":"x","timeout_seconds":1,"meta":{"a":1,"a":2}}"#,
                &TaskRules::default(),
            )
            .is_ok()
        );
    }

    #[test]
    fn attempt_round_trips_and_stale_claims_are_dropped() {
        let t = Task::parse(
            br#"{"task_id":"t","script":"x","timeout_seconds":1,"attempt":2,"claim":{"node_id":"n"}}"#,
            &TaskRules::default(),
        )
        .unwrap();
        assert_eq!(t.attempt, 2);
        let json = t.to_json();
        assert_eq!(json["attempt"], 2);
        assert!(!json.contains_key("claim"));
    }

    #[test]
    fn scheduling_fields_are_checked_and_kept_as_given() {
        let t = Task::parse(
            br#"{"task_id":"t","script":"x","timeout_seconds":1,"priority":80,"requires":["gpu","arch=arm64"],"after":["a","b"],"submitter":"ana","queued_at":"2026-11-30T10:00:00Z"}"#,
            &TaskRules::default(),
        )
        .unwrap();
        assert_eq!(t.priority(), 80);
        assert_eq!(t.class().dir_name(), "arch=arm64+gpu");
        assert_eq!(t.after().len(), 2);
        assert_eq!(t.submitter.as_ref().unwrap().as_str(), "ana");
        assert!(t.queued_at().is_some());
        let json = t.to_json();
        assert_eq!(json["requires"], serde_json::json!(["gpu", "arch=arm64"]));
        assert_eq!(json["after"], serde_json::json!(["a", "b"]));
        assert_eq!(json["priority"], 80);
        assert_eq!(json["queued_at"], "2026-11-30T10:00:00Z");
        // An old task: the defaults, and nothing added when written back.
        let old = Task::parse(
            br#"{"task_id":"t","script":"x","timeout_seconds":1}"#,
            &TaskRules::default(),
        )
        .unwrap();
        assert_eq!(old.priority(), DEFAULT_PRIORITY);
        assert!(old.class().is_empty());
        assert!(old.after().is_empty());
        let json = old.to_json();
        for f in ["priority", "requires", "after", "submitter", "queued_at"] {
            assert!(!json.contains_key(f), "{f} added to an old task");
        }
    }

    #[test]
    fn each_scheduling_problem_is_named() {
        let base = r#""task_id":"t","script":"x","timeout_seconds":1"#;
        let cases: &[(&str, &str, &str)] = &[
            (
                r#""priority":100"#,
                "priority",
                "`priority` is 100; it must be between 0 and 99",
            ),
            (r#""priority":-1"#, "priority", "`priority` is -1"),
            (
                r#""priority":"high""#,
                "priority",
                "`priority` must be an integer, found a string",
            ),
            (
                r#""priority":7.5"#,
                "priority",
                "`priority` must be an integer",
            ),
            (
                r#""requires":"gpu""#,
                "requires",
                "`requires` must be an array of labels, found a string",
            ),
            (
                r#""requires":[1]"#,
                "requires",
                "`requires` must be an array of labels (strings), found a number",
            ),
            (
                r#""requires":["GPU"]"#,
                "requires",
                r#"`requires` label "GPU" must start with a lower-case"#,
            ),
            (
                r#""requires":["gpu","gpu"]"#,
                "requires",
                r#"`requires` lists "gpu" twice"#,
            ),
            (r#""requires":["any"]"#, "requires", "is reserved"),
            (r#""requires":["a/b"]"#, "requires", "contains '/'"),
            (
                r#""after":"a""#,
                "after",
                "`after` must be an array of task ids, found a string",
            ),
            (
                r#""after":["a","../b"]"#,
                "after",
                r#"`after` item 1 ("../b") must start with a letter or digit"#,
            ),
            (
                r#""after":["a","a"]"#,
                "after",
                r#"`after` lists "a" twice"#,
            ),
            (r#""after":["t"]"#, "after", "`after` names the task itself"),
            (
                r#""submitter":"a b""#,
                "submitter",
                "`submitter` contains ' '",
            ),
            (
                r#""submitter":5"#,
                "submitter",
                "`submitter` must be a string",
            ),
            (
                r#""queued_at":"yesterday""#,
                "queued_at",
                r#"`queued_at` is "yesterday", not an RFC 3339 time"#,
            ),
        ];
        for (field, name, want) in cases {
            let text = format!("{{{base},{field}}}");
            let e = Task::parse(text.as_bytes(), &TaskRules::default()).expect_err(&text);
            assert!(
                e.to_string().contains(want),
                "{text}: got {e}, want {want:?}"
            );
            assert_eq!(e.field(), Some(*name), "{text}");
        }
        let many: Vec<String> = (0..=MAX_AFTER).map(|i| format!("\"p{i}\"")).collect();
        let text = format!("{{{base},\"after\":[{}]}}", many.join(","));
        let e = Task::parse(text.as_bytes(), &TaskRules::default()).unwrap_err();
        assert_eq!(
            e,
            TaskError::TooManyAfter {
                count: MAX_AFTER + 1
            }
        );
    }
}
