//! The task rules, case by case: each problem named with its field, the
//! scheduling fields checked and written back as given, unknown fields kept
//! to the digit.

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
            r#"[{"task_id":"a"}]"#,
            "an array of tasks is a graph for `dgrid-worker submit --task-file`",
        ),
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
            "must be an integer, found a number written with a decimal point or an exponent",
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
    // A directory pushed into the inbox is named for what it is, whatever
    // its name.
    let e = Task::from_entry("sub", EntryKind::Directory, b"", &rules).unwrap_err();
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
