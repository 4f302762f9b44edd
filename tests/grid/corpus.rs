//! The hostile-task corpus (tests/common/corpus.rs) met by a real worker:
//! every entry ends in `tasks/failed/` as `invalid` with an error naming the
//! entry and the reason, none of them runs, the valid tasks among them do,
//! and the worker stays up and exits cleanly.
//!
//! Also: a task resubmitted under an id that already has a result.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::corpus;
use crate::common::*;
use dgrid_worker::tools::escape::untrusted;

#[test]
fn every_hostile_entry_is_refused_with_its_reason_and_the_worker_lives() {
    let cases = corpus::cases();
    assert!(cases.len() >= 30, "the corpus has {} entries", cases.len());
    let grid = Grid::new();
    let markers = grid.path("markers");
    std::fs::create_dir(&markers).unwrap();
    let valid = corpus::valid_neighbours(&markers);
    grid.commit_with("hostile submissions", |work| {
        let queue = work.join("tasks/queue");
        corpus::write_queue(&queue);
        for (name, bytes) in &valid {
            std::fs::write(queue.join(name), bytes).unwrap();
        }
    });
    // Every case really is in the queue as the kind it claims to be.
    let listed = git(&grid.bare, &["ls-tree", "-z", "main", "tasks/queue/"]).stdout;
    let count = listed.split(|b| *b == 0).filter(|r| !r.is_empty()).count();
    assert_eq!(count, cases.len() + valid.len() + 1, "with .gitkeep");
    let modes = String::from_utf8_lossy(&listed).to_string();
    assert!(modes.contains("120000 blob") && modes.contains("040000 tree"));
    assert!(modes.contains("160000 commit"), "the gitlink: {modes}");

    let mut spec = WorkerSpec::new(&grid, "judge");
    spec.extra = "concurrency = 2".into();
    let mut w = spawn_worker(&grid, &spec);
    let status = w.wait_exit(Duration::from_secs(120));
    assert!(status.success(), "{}", w.log_text());

    let failed = grid.json_files("tasks/failed");
    let errors = errors_of(&failed);
    let mut problems = Vec::new();
    for h in &cases {
        let prefix = format!("tasks/queue/{}: ", h.shown_name());
        let hits: Vec<&String> = errors.iter().filter(|e| e.starts_with(&prefix)).collect();
        match hits.as_slice() {
            [one] if one.contains(h.reason) => {}
            [one] => problems.push(format!(
                "{} ({}): error {one:?} does not say {:?}",
                h.shown_name(),
                h.about,
                h.reason
            )),
            many => problems.push(format!(
                "{} ({}): {} failures instead of one",
                h.shown_name(),
                h.about,
                many.len()
            )),
        }
    }
    assert!(
        problems.is_empty(),
        "{problems:#?}\nall errors: {errors:#?}"
    );
    assert_eq!(
        failed.len(),
        cases.len(),
        "one failure per entry: {errors:#?}"
    );
    for (file, json) in &failed {
        assert_eq!(json["status"], "invalid", "{file}");
        assert!(json["exit_code"].is_null(), "{file}: never ran");
        assert!(
            file.starts_with("judge@") && file.is_ascii(),
            "result names are safe: {file:?}"
        );
    }

    // The valid neighbours ran, once each; nothing hostile did.
    let completed = grid.json_files("tasks/completed");
    let mut ran: Vec<String> = std::fs::read_dir(&markers)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ran.sort();
    assert_eq!(ran, ["dup-b.ran", "good.ran"]);
    assert_eq!(completed.len(), 2, "{completed:?}");
    assert_eq!(completed["judge@dup-b.json"]["stdout"], "fine-dup-b\n");
    assert!(grid.queued().is_empty(), "queue drained");
    assert!(grid.files("tasks/in_progress").is_empty());
    // The worker logged each refusal and never died on one.
    assert_eq!(
        w.log_text()
            .matches("invalid task moved to tasks/failed")
            .count(),
        cases.len()
    );
}

/// Garbage pushed straight into `in_progress/` (by hand or a broken tool)
/// is reaped to `failed/` with a reason, not left to block for ever.
#[test]
fn hostile_entries_in_in_progress_are_reaped_with_a_reason() {
    let grid = Grid::new();
    let picks = ["not-json.json", "array.json", "link.json", "traversal.json"];
    let cases: Vec<_> = corpus::cases()
        .into_iter()
        .filter(|h| picks.contains(&h.shown_name().as_str()))
        .collect();
    assert_eq!(cases.len(), picks.len());
    grid.commit_with("garbage claims", |work| {
        let scratch = tempfile::tempdir().unwrap();
        corpus::write_queue(scratch.path());
        for name in picks {
            let from = scratch.path().join(name);
            let to = work.join("tasks/in_progress").join(name);
            std::fs::rename(from, to).unwrap();
        }
        // A claim block naming nobody valid.
        std::fs::write(
            work.join("tasks/in_progress/noclaim.json"),
            br#"{"task_id":"noclaim","script":"echo","timeout_seconds":5}"#,
        )
        .unwrap();
        std::fs::write(
            work.join("tasks/in_progress/badclaim.json"),
            br#"{"task_id":"badclaim","script":"echo","timeout_seconds":5,"claim":{"node_id":"../x","claimed_at":1,"deadline":[],"attempt":-1}}"#,
        )
        .unwrap();
        // A claim taken over from a claim that cannot be (`taken_from`).
        std::fs::write(
            work.join("tasks/in_progress/badtaken.json"),
            br#"{"task_id":"badtaken","script":"echo","timeout_seconds":5,"claim":{"node_id":"w","claimed_at":"2026-01-01T00:00:00Z","deadline":"2026-01-01T00:01:00Z","attempt":1,"taken_from":{"node_id":"../x","claimed_at":5}}}"#,
        )
        .unwrap();
    });
    let mut w = spawn_worker(&grid, &WorkerSpec::new(&grid, "janitor"));
    let status = w.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{}", w.log_text());
    let failed = grid.json_files("tasks/failed");
    let errors = errors_of(&failed);
    // Nothing is read through the symlink; it goes too.
    for (name, why) in [
        ("not-json.json", "not valid JSON"),
        ("array.json", "field `claim` is missing"),
        ("traversal.json", "field `claim` is missing"),
        ("link.json", "is a symbolic link"),
        ("noclaim.json", "field `claim` is missing"),
        ("badclaim.json", "field `claim` is malformed"),
        ("badtaken.json", "field `claim` is malformed"),
    ] {
        let prefix = format!("tasks/in_progress/{name}: ");
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&prefix) && e.contains(why)),
            "{name}: want {why:?} in {errors:#?}"
        );
    }
    assert_eq!(failed.len(), 7, "{errors:#?}");
    assert!(grid.files("tasks/in_progress").is_empty());
}

/// A task id submitted again after it already has a result: the worker runs
/// it and keeps both results, the second under a time-suffixed name, so that
/// no result is ever overwritten (PROTOCOL.md: results are exactly once).
#[test]
fn a_resubmitted_id_runs_again_and_keeps_the_first_result() {
    let grid = Grid::new();
    grid.submit(&[("again".into(), "echo first".into(), 10)]);
    let spec = WorkerSpec::new(&grid, "repeat");
    let mut w = spawn_worker(&grid, &spec);
    assert!(w.wait_exit(Duration::from_secs(60)).success());
    grid.submit(&[("again".into(), "echo second".into(), 10)]);
    let mut w = spawn_worker(&grid, &spec);
    assert!(
        w.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        w.log_text()
    );
    let done = grid.json_files("tasks/completed");
    let outputs: BTreeMap<&str, &str> = done
        .iter()
        .map(|(f, j)| (f.as_str(), j["stdout"].as_str().unwrap()))
        .collect();
    assert_eq!(done.len(), 2, "{outputs:?}");
    assert_eq!(outputs["repeat@again.json"], "first\n");
    let (second, out) = outputs
        .iter()
        .find(|(f, _)| **f != "repeat@again.json")
        .unwrap();
    assert!(
        second.starts_with("repeat@again@") && second.ends_with(".json"),
        "{second}"
    );
    assert_eq!(*out, "second\n");
}

/// `dgrid-worker validate` (a pull request's check) meets the same corpus on
/// disk and refuses every entry for the reason the worker gives, so that
/// what CI accepts is what a worker runs.
#[test]
fn validate_refuses_every_hostile_entry_for_the_same_reason() {
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    corpus::write_queue(&queue);
    let markers = dir.path().join("markers");
    for (name, bytes) in corpus::valid_neighbours(&markers) {
        std::fs::write(queue.join(name), bytes).unwrap();
    }
    let out = std::process::Command::new(BIN)
        .arg("validate")
        .arg(&queue)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let mut problems = Vec::new();
    for h in corpus::cases() {
        // validate prints names and reasons escaped (one line each).
        let prefix = untrusted(&format!("{}/{}: ", queue.display(), h.shown_name())).into_owned();
        let reason = untrusted(h.reason_on_disk()).into_owned();
        let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with(&prefix)).collect();
        match lines.as_slice() {
            [one] if one.contains(&reason) => {}
            other => problems.push(format!(
                "{} ({}): want one line saying {:?}, got {other:?}",
                h.shown_name(),
                h.about,
                h.reason_on_disk()
            )),
        }
    }
    assert!(problems.is_empty(), "{problems:#?}\nstdout:\n{stdout}");
    for valid in ["dup-b.json", "good.json"] {
        let prefix = format!("{}/{valid}: ", queue.display());
        assert!(
            !stdout.lines().any(|l| l.starts_with(&prefix)),
            "{valid} is valid:\n{stdout}"
        );
    }
}
