//! A node joining a grid in the middle of a drain (`share::stays_out`):
//! its registration is one more writer on the one ref, so it stays out of
//! a drain of short tasks that the peers holding claims cover, pushes
//! nothing, and registers once the drain is over. Real repositories and
//! real pushes throughout.

use crate::common::plan::{PlainNode, commit_at};
use crate::common::*;
use dgrid_worker::grid::{Class, Label};
use dgrid_worker::service::sync::SyncRequest;

/// A peer that has timed its tasks at `task_ms`, live now.
fn peer(node: &str, task_ms: Option<u64>) -> PlainNode {
    let mut n = PlainNode::new(node);
    n.record.last_heartbeat = dgrid_worker::time::format(dgrid_worker::time::now());
    n.record.task_ms = task_ms;
    n
}

/// A grid of 500 queued `true` tasks, of which `holders` peers (tasks
/// timed at `task_ms`) have claimed 20 each; then a node joins, having
/// lost a round that took `round` seconds: what it did, and whether it
/// pushed its registration.
fn join(holders: usize, task_ms: Option<u64>, round: Option<f64>) -> (bool, usize, bool) {
    join_with(holders, task_ms, round, false)
}

/// As [`join`]; with `gpu`, ten of the tasks require a GPU, which the
/// joining node has and the peers do not.
fn join_with(
    holders: usize,
    task_ms: Option<u64>,
    round: Option<f64>,
    gpu: bool,
) -> (bool, usize, bool) {
    let grid = Grid::new();
    let tasks: Vec<(String, Vec<u8>)> = (0..500)
        .map(|i| {
            let mut body = serde_json::json!({"task_id": format!("t{i:03}"), "script": "true", "timeout_seconds": 30});
            if gpu && i % 50 == 0 {
                body["requires"] = serde_json::json!(["gpu"]);
            }
            (
                format!("tasks/queue/t{i:03}.json"),
                body.to_string().into_bytes(),
            )
        })
        .collect();
    grid.commit_files(&tasks, "a backlog");
    for i in 0..holders {
        let p = peer(&format!("p{i}"), task_ms);
        let report = commit_at(&grid.url(), &p.request(20));
        assert_eq!(report.claimed.len(), 20, "peer p{i} claims its 20");
    }
    let mut me = PlainNode::new("me");
    if gpu {
        me.labels.labels = Class::of([Label::parse("gpu").unwrap()]);
    }
    let req = SyncRequest {
        joining: true,
        heartbeat: true,
        round_secs: round,
        ..me.request(1)
    };
    let report = commit_at(&grid.url(), &req);
    let registered = grid.files("nodes").contains_key("me.json");
    (report.stayed_out, report.claimed.len(), registered)
}

/// 500 tasks of 5 ms and rounds of 0.3 s pay for three slots
/// (`share::participants`): three peers holding claims cover the drain,
/// and the joining node stays out, claiming nothing and pushing nothing.
/// Two do not: it joins, registering with its one claim, as it does when
/// the tasks take a second, when no task has been timed, when it has no
/// round timed, or when some of the tasks need a label only it has.
#[test]
fn a_joining_node_stays_out_of_a_short_drain_its_peers_cover() {
    assert_eq!(
        join(3, Some(5), Some(0.3)),
        (true, 0, false),
        "covered: stays out"
    );
    assert_eq!(
        join(2, Some(5), Some(0.3)),
        (false, 1, true),
        "two slots: joins"
    );
    assert_eq!(
        join(3, Some(1000), Some(0.3)),
        (false, 1, true),
        "tasks of a second pay for it"
    );
    assert_eq!(join(3, None, Some(0.3)), (false, 1, true), "nothing timed");
    assert_eq!(join(3, Some(5), None), (false, 1, true), "no round timed");
    // Ten of the tasks require a GPU, and only the joining node has one:
    // the peers do not cover those, and it joins.
    let (stayed_out, claimed, registered) = join_with(3, Some(5), Some(0.3), true);
    assert!(
        !stayed_out && registered && claimed == 1,
        "a GPU node joins"
    );
}

/// A node that stays out of a drain stays out of its end (the queue empty,
/// the peers' claims still out) and registers once it is over: with no
/// claim left, the same request registers.
#[test]
fn a_node_that_stayed_out_registers_once_the_drain_is_over() {
    let grid = Grid::new();
    let tasks: Vec<(String, String, u64)> = (0..60)
        .map(|i| (format!("t{i:02}"), "true".to_owned(), 30))
        .collect();
    grid.submit(&tasks);
    let peers: Vec<PlainNode> = (0..3).map(|i| peer(&format!("p{i}"), Some(5))).collect();
    for p in &peers {
        commit_at(&grid.url(), &p.request(20));
    }
    let me = PlainNode::new("me");
    let req = SyncRequest {
        joining: true,
        heartbeat: true,
        round_secs: Some(0.3),
        ..me.request(1)
    };
    assert!(
        commit_at(&grid.url(), &req).stayed_out,
        "covered: stays out"
    );
    // The queue is drained, and the peers' claims are still running: it
    // stays out of the drain's end too.
    grid.commit_with("the queue drained", |work| {
        remove_json_below(&work.join("tasks/lanes"));
    });
    assert!(
        commit_at(&grid.url(), &req).stayed_out,
        "claims still out: stays out"
    );
    // The peers finish: every claim leaves `in_progress/`.
    grid.commit_with("the drain ends", |work| {
        remove_json_below(&work.join("tasks/in_progress"));
    });
    let report = commit_at(&grid.url(), &req);
    assert!(
        !report.stayed_out && report.wrote_heartbeat,
        "nothing to stay out of: registers"
    );
    assert!(grid.files("nodes").contains_key("me.json"));
}

fn remove_json_below(dir: &std::path::Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            remove_json_below(&p);
        } else if p.extension().is_some_and(|x| x == "json") {
            std::fs::remove_file(p).unwrap();
        }
    }
}

/// A hostile sweep: fifty records pushed by hand, idle, their tasks
/// timed at 1 ms, made a drain of 1 s tasks read as paying for one node
/// (the median of every record's `task_ms`), and a second node stayed out
/// of it for 45 s. How long tasks take is read from the peers holding
/// claims: forty 1 s tasks and rounds of 0.3 s pay for twelve slots, and
/// the one holder does not cover them.
#[test]
fn records_that_hold_no_claim_do_not_keep_a_joining_node_out() {
    let grid = Grid::new();
    let now = dgrid_worker::time::format(dgrid_worker::time::now());
    let mut files: Vec<(String, Vec<u8>)> = (0..50)
        .map(|i| {
            let r = serde_json::json!({
                "node_id": format!("f{i:02}"), "status": "idle", "last_heartbeat": now,
                "concurrency": 1, "task_ms": 1, "busy_ms": 0,
            });
            (format!("nodes/f{i:02}.json"), r.to_string().into_bytes())
        })
        .collect();
    files.extend((0..40).map(|i| {
        let body = serde_json::json!({"task_id": format!("t{i:02}"), "script": "sleep 1", "timeout_seconds": 30});
        (format!("tasks/queue/t{i:02}.json"), body.to_string().into_bytes())
    }));
    grid.commit_files(&files, "forged records and a backlog");
    let holder = commit_at(&grid.url(), &peer("p0", Some(1000)).request(10));
    assert!(!holder.claimed.is_empty());
    let me = PlainNode::new("me");
    let req = SyncRequest {
        joining: true,
        heartbeat: true,
        round_secs: Some(0.3),
        ..me.request(1)
    };
    let report = commit_at(&grid.url(), &req);
    assert!(!report.stayed_out, "kept out by records that hold nothing");
    assert!(grid.files("nodes").contains_key("me.json"));
}
