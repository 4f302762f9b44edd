//! An untrusted file gives way to a trusted task (PROTOCOL.md): with trust
//! enforced, a file a node never runs nor moves (no signature, or a key
//! the policy does not list), pushed where a signed task must go, held that
//! task back for good, since a move never writes over a file. Each place a
//! trusted task moves to, with real workers on real bare repositories: the
//! file goes to `failed/`, naming why, and the task runs once.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;
use crate::tools_fixture::{dgrid, expect_code, stdout};
use crate::trust_fixture::*;
use crate::trust_worker::failed_error;

/// The `queued_at` every task here names: its lane's minute is fixed.
const QUEUED_AT: &str = "2026-12-06T13:00:00Z";

/// The lane of a task of `id` asking for nothing, `minute` minutes after
/// the one its `queued_at` names.
fn lane(id: &str, minute: u32) -> String {
    format!("tasks/lanes/p50/any/20261206T130{minute}/{id}.json")
}

/// Task `id` queued at [`QUEUED_AT`], leaving the mark `id` (after
/// `before`, a shell command), with the fields of `more`, signed by alice.
fn signed(t: &TrustedGrid, id: &str, before: &str, more: Value) -> Vec<u8> {
    let mut task = json!({
        "task_id": id, "script": format!("{before}{}", t.marking(id)),
        "timeout_seconds": 30, "queued_at": QUEUED_AT,
    });
    for (k, v) in more.as_object().into_iter().flatten() {
        task[k] = v.clone();
    }
    t.signed_task(task, "alice", GRID_ID, -10, 3600)
}

/// An unsigned file of task `id` that leaves the mark `squat`.
fn squat(t: &TrustedGrid, id: &str) -> Vec<u8> {
    let task = json!({
        "task_id": id, "script": t.marking("squat"), "timeout_seconds": 30, "queued_at": QUEUED_AT,
    });
    serde_json::to_vec(&task).unwrap()
}

/// An unsigned file of `id` at each of the seven places a claim of it
/// going back may take: its lane, the inbox, its lane up to five minutes
/// later.
fn every_place(t: &TrustedGrid, id: &str) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![(format!("tasks/queue/{id}.json"), squat(t, id))];
    files.extend((0..=5).map(|m| (lane(id, m), squat(t, id))));
    files
}

/// `id` ran once and no file that took its place did; the one at `place`
/// went to `failed/`, refused as `code`, giving way.
fn gave_way(t: &TrustedGrid, w: &WorkerProc, id: &str, place: &str, code: &str) {
    assert_eq!(t.runs(id), 1, "{}", w.log_text());
    assert_eq!(t.runs("squat"), 0);
    let e = failed_error(t, &format!("n1@{id}.json"));
    assert!(
        e.starts_with(&format!("{place}: untrusted ({code})"))
            && e.contains("gives way to a trusted task of its id"),
        "{e}"
    );
}

/// At the lane a signed dependant is released to (the path its signed
/// `queued_at` names). The file's `invalid` result, under the dependant's
/// id, fails nothing that waits for it.
#[test]
fn an_unsigned_file_where_a_signed_dependant_is_released_gives_way() {
    let t = TrustedGrid::new();
    t.grid.commit_files(
        &[
            (
                "tasks/queue/P.json".into(),
                t.by_alice("P", &t.marking("P")),
            ),
            (
                "tasks/queue/D.json".into(),
                signed(&t, "D", "", json!({"after": ["P"]})),
            ),
            (lane("D", 0), squat(&t, "D")),
            (
                "tasks/queue/E.json".into(),
                signed(&t, "E", "", json!({"after": ["D"]})),
            ),
        ],
        "a signed graph, and an unsigned file where its dependant goes",
    );
    let w = t.drain(&t.worker("n1", "enforce"));
    assert_eq!(t.runs("P"), 1, "{}", w.log_text());
    gave_way(&t, &w, "D", &lane("D", 0), "unsigned");
    assert_eq!(t.runs("E"), 1, "{:?}", t.grid.json_files("tasks/failed"));
    assert!(t.grid.lane_paths().is_empty(), "{:?}", t.grid.lane_paths());
}

/// Around a dead node's claim on a signed task, at each of the seven
/// places a requeue may take (the one in its lane signed by a key the
/// policy does not list): nodes enforcing trust run none of them, yet the
/// claim was abandoned as if they would run instead. The `reap` tool,
/// which holds no policy, leaves it to the nodes on a grid that signs its
/// tasks; a node enforcing trust requeues it to its lane.
#[test]
fn unsigned_files_around_a_dead_nodes_claim_give_way_to_it() {
    let t = TrustedGrid::new();
    let mut claimed: Value = serde_json::from_slice(&signed(&t, "T", "", json!({}))).unwrap();
    claimed["claim"] = json!({
        "node_id": "gone", "claimed_at": "2026-01-01T00:00:00Z",
        "deadline": "2026-01-01T00:10:00Z", "attempt": 1, "queued_at": QUEUED_AT,
    });
    let mut files = every_place(&t, "T");
    let by_eve = json!({
        "task_id": "T", "script": t.marking("squat"), "timeout_seconds": 30, "queued_at": QUEUED_AT,
    });
    files.retain(|(path, _)| *path != lane("T", 0));
    files.extend([
        (
            lane("T", 0),
            t.signed_task(by_eve, "eve", GRID_ID, -10, 3600),
        ),
        (
            "tasks/in_progress/T.json".into(),
            serde_json::to_vec(&claimed).unwrap(),
        ),
    ]);
    t.grid
        .commit_files(&files, "untrusted files everywhere a requeue could go");
    let reap = dgrid(&["reap", "--repo", &t.grid.url()]);
    expect_code(&reap, 0);
    assert!(
        stdout(&reap).contains("only a node that holds the grid's trust policy can tell"),
        "{}",
        stdout(&reap)
    );
    assert!(t.grid.files("tasks/in_progress").contains_key("T.json"));
    let w = t.drain(&t.worker("n1", "enforce"));
    gave_way(&t, &w, "T", &lane("T", 0), "unknown-signer");
    let failed = t.grid.json_files("tasks/failed");
    assert!(
        !failed.values().any(|r| r["status"] == "abandoned"),
        "{failed:?}"
    );
}

/// At a signed task's own lane, where it is moved from a later minute
/// (where a requeue goes when its own place is taken) before it is
/// claimed.
#[test]
fn an_unsigned_file_in_a_signed_tasks_own_lane_gives_way() {
    let t = TrustedGrid::new();
    t.grid.commit_files(
        &[
            (lane("T", 3), signed(&t, "T", "", json!({}))),
            (lane("T", 0), squat(&t, "T")),
        ],
        "a signed task three minutes late, an unsigned file in its place",
    );
    let w = t.drain(&t.worker("n1", "enforce"));
    gave_way(&t, &w, "T", &lane("T", 0), "unsigned");
}

/// At each place a node's own requeue may take: a node stopped while it
/// runs a signed task cancels it at its drain timeout and puts it back.
/// Its claim stayed, and the node tried the requeue again every few ms;
/// now the stop's own commit puts it back in its lane.
#[test]
fn a_nodes_own_requeue_takes_its_lane_from_an_unsigned_file() {
    let t = TrustedGrid::new();
    t.queue(
        &[("T", signed(&t, "T", "sleep 5; ", json!({})))],
        "a signed task that takes a while",
    );
    let mut spec = t.worker("n1", "enforce");
    spec.drain = false;
    spec.extra = format!("drain_timeout = 1\n{}", spec.extra);
    let mut w = spawn_worker(&t.grid, &spec);
    wait_until("T claimed", Duration::from_secs(60), || {
        t.grid.files("tasks/in_progress").contains_key("T.json")
    });
    t.grid.commit_files(
        &every_place(&t, "T"),
        "unsigned files everywhere a requeue could go",
    );
    w.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        w.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        w.log_text()
    );
    let log = w.log_text();
    assert!(
        log.contains("task cancelled; requeueing")
            && !log.contains("the requeue waits")
            && !t.grid.files("tasks/in_progress").contains_key("T.json"),
        "put back by the stop's own commit: {log}"
    );
    let again = t.drain(&t.worker("n1", "enforce"));
    gave_way(&t, &again, "T", &lane("T", 0), "unsigned");
}

/// At the place a signed task misfiled in a lane no live node serves
/// (`gpu`, asking for nothing) is refiled to by the reap.
#[test]
fn a_signed_task_refiled_from_a_lane_nobody_serves_takes_its_place() {
    let t = TrustedGrid::new();
    t.grid.commit_files(
        &[
            (
                "tasks/lanes/p50/gpu/20261206T1300/T.json".into(),
                signed(&t, "T", "", json!({})),
            ),
            (lane("T", 0), squat(&t, "T")),
        ],
        "a signed task in a gpu lane, an unsigned file where it belongs",
    );
    let w = t.drain(&t.worker("n1", "enforce"));
    gave_way(&t, &w, "T", &lane("T", 0), "unsigned");
}

/// Not to a replay: a signed task that ran already (its signed result is
/// on the grid), pushed again under a parent. Released, it would only be
/// failed as `replayed`, for nobody to run; the file at its lane, which a
/// node not enforcing trust may run, keeps its place.
#[test]
fn an_unsigned_file_keeps_its_place_from_a_replayed_task() {
    let t = TrustedGrid::new();
    let x = signed(&t, "X", "", json!({}));
    t.queue(&[("X", x.clone())], "X");
    t.drain(&t.worker("n1", "enforce"));
    assert_eq!(t.runs("X"), 1);
    t.grid.commit_files(
        &[
            (
                "tasks/queue/P.json".into(),
                t.by_alice("P", &t.marking("P")),
            ),
            ("tasks/blocked/P/X.json".into(), x),
            (lane("X", 0), squat(&t, "X")),
        ],
        "X pushed again under P, and an unsigned file at its lane",
    );
    let w = t.drain(&t.worker("n1", "enforce"));
    assert_eq!(t.runs("P"), 1, "{}", w.log_text());
    assert_eq!(t.runs("X"), 1);
    let failed = t.grid.json_files("tasks/failed");
    assert!(
        !failed
            .values()
            .any(|r| r["error"].as_str().is_some_and(|e| e.contains("gives way"))),
        "{failed:?}"
    );
    let kept = lane("X", 0).replace("tasks/lanes/", "");
    assert!(
        t.grid.lane_paths().contains(&kept),
        "{:?}",
        t.grid.lane_paths()
    );
}

/// Not held back by a flood: thousands of unsigned files pushed above a
/// signed task, read by a node that wants one task a round
/// (`claim_ahead = 0`). Each file it skips is known for good (the skip
/// cache), yet a round read only twice what it wanted: the flood took
/// hundreds of rounds to read through before the signed task's turn.
#[test]
fn a_flood_of_unsigned_files_above_a_signed_task_is_read_through_at_once() {
    let t = TrustedGrid::new();
    let flood = |i: usize| {
        let id = format!("flood-{i:04}");
        let task = json!({
            "task_id": id, "script": t.marking("squat"), "timeout_seconds": 30,
            "queued_at": QUEUED_AT, "priority": 99,
        });
        let path = format!("tasks/lanes/p99/any/20261206T1300/{id}.json");
        (path, serde_json::to_vec(&task).unwrap())
    };
    let mut files: Vec<(String, Vec<u8>)> = (0..3000).map(flood).collect();
    files.push((lane("S", 0), signed(&t, "S", "", json!({}))));
    t.grid
        .commit_files(&files, "a flood of unsigned files above a signed task");
    let mut spec = t.worker("n1", "enforce");
    spec.extra = format!("claim_ahead = 0\n{}", spec.extra);
    let w = t.drain(&spec);
    assert_eq!(t.runs("S"), 1, "{}", w.log_text());
    assert_eq!(t.runs("squat"), 0);
}
