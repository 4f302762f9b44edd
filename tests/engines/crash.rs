//! Crash (issue item 3): a worker killed with SIGKILL in the middle of a
//! task. Its claim is requeued once its heartbeat is stale and another
//! worker completes the task; the container the dead worker left running is
//! removed when it starts again.

use std::time::Duration;

use crate::common::*;
use nix::sys::signal::Signal;

fn podman_worker(grid: &Grid, node: &str, conf: &std::path::Path) -> WorkerSpec {
    let mut spec = WorkerSpec::new(grid, node);
    spec.engine = "podman".into();
    spec.extra = "heartbeat_interval = 1\nstale_after = 3\n".into();
    spec.env = vec![
        ("CONTAINERS_CONF".into(), conf.display().to_string()),
        ("DGRID_IMAGE".into(), TEST_IMAGE.into()),
    ];
    spec
}

#[test]
fn a_killed_workers_claim_is_requeued_and_its_container_removed() {
    require_podman_image();
    let grid = Grid::new();
    let conf = containers_conf();
    grid.submit(&[("long-haul".into(), "sleep 12; echo survived".into(), 60)]);

    // A claims the task and starts its container; then A dies hard.
    let mut a_spec = podman_worker(&grid, "crash-a", &conf);
    a_spec.drain = false;
    let mut a = spawn_worker(&grid, &a_spec);
    wait_until("crash-a's container", Duration::from_secs(60), || {
        !node_containers("crash-a").is_empty()
    });
    a.signal(Signal::SIGKILL);
    a.wait_exit(Duration::from_secs(10));
    let claim: serde_json::Value =
        serde_json::from_slice(&grid.files("tasks/in_progress")["long-haul.json"]).unwrap();
    assert_eq!(claim["claim"]["node_id"], "crash-a");
    assert!(
        !node_containers("crash-a").is_empty(),
        "the container outlived its worker"
    );

    // B finds the claim orphaned (crash-a's heartbeat goes stale), requeues
    // it as attempt 2, claims it and runs it.
    // (Not --drain: the queue is empty while crash-a's claim is live.)
    let mut b_spec = podman_worker(&grid, "crash-b", &conf);
    b_spec.drain = false;
    let mut b = spawn_worker(&grid, &b_spec);
    wait_until(
        "crash-b to take the task over",
        Duration::from_secs(60),
        || {
            grid.files("tasks/in_progress")
                .get("long-haul.json")
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .is_some_and(|v| v["claim"]["node_id"] == "crash-b")
        },
    );

    // A restarts: its leftover container goes, and it takes nothing (B
    // holds the only task).
    let mut a2 = spawn_worker(&grid, &podman_worker(&grid, "crash-a", &conf));
    wait_until(
        "crash-a's leftover container to be removed",
        Duration::from_secs(30),
        || node_containers("crash-a").is_empty(),
    );
    assert!(
        a2.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        a2.log_text()
    );
    assert!(
        a2.log_text()
            .contains("removed containers left by an earlier run"),
        "{}",
        a2.log_text()
    );

    wait_until("the result", Duration::from_secs(60), || {
        !grid.results().is_empty()
    });
    b.signal(Signal::SIGTERM);
    assert!(
        b.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        b.log_text()
    );
    let results = grid.results();
    assert_eq!(results.len(), 1, "exactly one result: {results:?}");
    let (file, result) = &results[0];
    assert_eq!(file, "crash-b@long-haul.json");
    assert_eq!(result["status"], "completed");
    assert_eq!(result["attempt"], 2);
    assert_eq!(result["stdout"], "survived\n");
    assert!(
        b.log_text().contains("orphaned claim reaped"),
        "{}",
        b.log_text()
    );
    assert!(grid.queued().is_empty());
    assert!(grid.files("tasks/in_progress").is_empty());
    assert!(node_containers("crash-b").is_empty());
}
