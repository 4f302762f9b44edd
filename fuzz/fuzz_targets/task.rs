//! Queue entries: a name and bytes from a stranger's push.
#![no_main]

use dgrid_worker::grid::task::EntryKind;
use dgrid_worker::grid::{Id, Task, TaskRules, layout};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First line: the entry's name; the rest: its content.
    let (name, bytes) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"t.json"[..], data),
    };
    let name = String::from_utf8_lossy(name);
    let rules = TaskRules::default();
    let stem = layout::result_stem_for_entry(&name);
    assert!(Id::parse(&stem).is_ok(), "unsafe result stem {stem:?}");
    for kind in [EntryKind::File, EntryKind::Symlink] {
        if let Ok(task) = Task::from_entry(&name, kind, bytes, &rules) {
            assert_eq!(kind, EntryKind::File);
            // What the worker writes back (a requeue) must read back the same.
            let again = serde_json::to_vec(&serde_json::Value::Object(task.to_json())).unwrap();
            let back = Task::from_entry(&name, kind, &again, &rules).expect("round trip");
            assert_eq!(back, task);
        }
    }
    if let Ok(task) = Task::parse(bytes, &rules) {
        // Where it is queued is a path that reads back as the same place:
        // no label, submitter or time can make it another path.
        let place = layout::Place::of(&task, dgrid_worker::time::now());
        let path = place.file(&task.task_id);
        let rel = path.strip_prefix("tasks/lanes/").expect("in the lanes");
        let (back, name) = layout::Place::parse(rel.as_bytes()).expect("a place");
        assert_eq!(back, place);
        assert_eq!(name, format!("{}.json", task.task_id).as_bytes());
        assert!(!task.script.trim().is_empty());
        assert!((1..=rules.max_timeout_seconds).contains(&task.timeout_seconds));
        assert!(task.attempt >= 1);
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        let _ = Id::parse(s);
    }
});
