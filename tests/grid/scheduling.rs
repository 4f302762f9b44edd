//! Scheduling against real repositories and the real binary: priorities
//! (and a burst of urgent work in the middle of a drain), labels (two
//! nodes with different labels on one mixed queue; a task no node can run,
//! named), dependencies (a graph, inputs, failures named, a dependency that
//! completes while its dependants are being claimed and submitted), a
//! volunteer's limits, and the layout's hostile entries.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::*;
use crate::tools_fixture::{dgrid, expect_code, expect_refused, http_get, stderr, stdout};
use serde_json::{Value, json};

/// Submit `tasks` (a JSON array) with `dgrid-worker submit --task-file`:
/// one commit, each task where it belongs.
fn submit(grid: &Grid, name: &str, tasks: Value) {
    let file = grid.path(&format!("{name}.json"));
    std::fs::write(&file, tasks.to_string()).unwrap();
    let out = dgrid(&[
        "submit",
        "--repo",
        &grid.url(),
        "--task-file",
        file.to_str().unwrap(),
    ]);
    expect_code(&out, 0);
}

/// Every result by task id (each task must have exactly one).
fn results_by_task(grid: &Grid) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (file, r) in grid.results() {
        let id = r["task_id"].as_str().unwrap().to_owned();
        assert!(
            out.insert(id.clone(), r).is_none(),
            "two results of {id} ({file})"
        );
    }
    out
}

/// A worker that runs until the queue is empty and nothing is pending, and
/// exits cleanly (its log in the panic if not).
fn drained(grid: &Grid, node: &str) {
    let mut w = spawn_worker(grid, &WorkerSpec::new(grid, node));
    assert!(
        w.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        w.log_text()
    );
}

fn started(r: &Value) -> chrono::DateTime<chrono::Utc> {
    dgrid_worker::time::parse(r["started_at"].as_str().unwrap()).unwrap()
}

fn ended(r: &Value) -> chrono::DateTime<chrono::Utc> {
    dgrid_worker::time::parse(r["timestamp"].as_str().unwrap()).unwrap()
}

#[test]
fn higher_priority_runs_first_and_old_tasks_without_the_fields_run_as_before() {
    let grid = Grid::new();
    // An old task, straight in the flat queue: the default priority.
    grid.submit(&[("plain".into(), "echo plain".into(), 30)]);
    submit(
        &grid,
        "prio",
        json!([
            {"task_id": "low", "script": "echo low", "timeout_seconds": 30, "priority": 10, "keep": {"me": 1}},
            {"task_id": "urgent", "script": "echo urgent", "timeout_seconds": 30, "priority": 90},
            {"task_id": "high", "script": "echo high", "timeout_seconds": 30, "priority": 70},
        ]),
    );
    let lanes = grid.lane_paths();
    assert!(
        lanes
            .iter()
            .any(|p| p.starts_with("p90/any/") && p.ends_with("/urgent.json")),
        "{lanes:?}"
    );
    // One at a time: the order is the claim order.
    let mut spec = WorkerSpec::new(&grid, "solo");
    spec.extra = "claim_ahead = 0".into();
    let mut w = spawn_worker(&grid, &spec);
    assert!(
        w.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        w.log_text()
    );
    let r = results_by_task(&grid);
    assert_eq!(r.len(), 4);
    let mut order: Vec<(&String, chrono::DateTime<chrono::Utc>)> =
        r.iter().map(|(id, r)| (id, started(r))).collect();
    order.sort_by_key(|(_, t)| *t);
    let ids: Vec<&str> = order.iter().map(|(id, _)| id.as_str()).collect();
    // The old task waited in the inbox: it was filed at p50 on the first
    // sync, and runs between 70 and 10.
    assert_eq!(ids, ["urgent", "high", "plain", "low"]);
    assert_eq!(r["plain"]["stdout"], "plain\n");
    assert!(grid.queued().is_empty());
}

/// Submitters take turns within a level even where a node claims one task
/// at a time (one slot, long tasks): alice's six do not hold back bob's
/// three, queued in the same minute, and a task that names no submitter is
/// one more party. The order run is the one `status` prints.
#[test]
fn submitters_take_turns_when_a_node_claims_one_task_at_a_time() {
    let grid = Grid::new();
    let task = |id: String, who: Option<&str>| {
        let mut t = json!({"task_id": id, "script": format!("echo {id}"), "timeout_seconds": 30});
        if let Some(who) = who {
            t["submitter"] = who.into();
        }
        t
    };
    let mut tasks: Vec<Value> = (1..=6)
        .map(|i| task(format!("alice-{i}"), Some("alice")))
        .collect();
    tasks.extend((1..=3).map(|i| task(format!("bob-{i}"), Some("bob"))));
    tasks.push(task("anon-1".into(), None));
    submit(&grid, "turns", Value::Array(tasks));
    let shown = stdout(&dgrid(&["status", "--repo", &grid.url()]));
    let mut spec = WorkerSpec::new(&grid, "solo");
    spec.extra = "claim_ahead = 0".into();
    let mut w = spawn_worker(&grid, &spec);
    assert!(
        w.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        w.log_text()
    );
    let r = results_by_task(&grid);
    let mut order: Vec<(&String, chrono::DateTime<chrono::Utc>)> =
        r.iter().map(|(id, r)| (id, started(r))).collect();
    order.sort_by_key(|(_, t)| *t);
    let ids: Vec<&str> = order.iter().map(|(id, _)| id.as_str()).collect();
    // Each turn goes to the party after the last, by name, the nameless
    // last.
    assert_eq!(
        ids,
        [
            "alice-1", "bob-1", "anon-1", "alice-2", "bob-2", "alice-3", "bob-3", "alice-4",
            "alice-5", "alice-6"
        ],
        "{}",
        w.log_text()
    );
    let listed: Vec<&str> = shown
        .split_whitespace()
        .filter(|w| ids.contains(w))
        .collect();
    assert_eq!(listed, ids, "status lists the order run:\n{shown}");
}

/// A submitter who comes after a node claimed ahead from another gets
/// turns with the claims it holds: the next look claims the newcomer's
/// tasks and they start between the others'. They waited behind all of
/// them (a sweep's: three tasks behind thirty-nine, 17 s).
#[test]
fn a_submitter_who_comes_after_claims_ahead_gets_turns() {
    let grid = Grid::new();
    let tasks = |who: &str, n: usize| {
        let t: Vec<Value> = (1..=n)
            .map(|i| json!({"task_id": format!("{who}-{i}"), "script": "sleep 0.3", "timeout_seconds": 30, "submitter": who}))
            .collect();
        Value::Array(t)
    };
    submit(&grid, "alice", tasks("alice", 30));
    let mut w = spawn_worker(&grid, &WorkerSpec::new(&grid, "solo"));
    wait_until("claims ahead of alice's", Duration::from_secs(60), || {
        grid.files("tasks/in_progress").len() >= 15
    });
    submit(&grid, "bob", tasks("bob", 3));
    assert!(
        w.wait_exit(Duration::from_secs(120)).success(),
        "{}",
        w.log_text()
    );
    let r = results_by_task(&grid);
    assert_eq!(r.len(), 33);
    let last_bob = r
        .iter()
        .filter(|(id, _)| id.starts_with("bob-"))
        .map(|(_, r)| started(r))
        .max()
        .unwrap();
    let alice_after = r
        .iter()
        .filter(|(id, r)| id.starts_with("alice-") && started(r) > last_bob)
        .count();
    assert!(
        alice_after >= 8,
        "bob's tasks waited behind alice's claims: {alice_after} of alice's started after them\n{}",
        w.log_text()
    );
}

#[test]
fn two_nodes_with_different_labels_share_a_mixed_queue_and_an_unservable_task_is_named() {
    let grid = Grid::new();
    let mut tasks = Vec::new();
    for i in 0..12 {
        tasks.push(json!({"task_id": format!("gpu-{i:02}"), "script": "echo gpu", "timeout_seconds": 30, "requires": ["gpu"]}));
        tasks.push(
            json!({"task_id": format!("any-{i:02}"), "script": "echo any", "timeout_seconds": 30}),
        );
    }
    let arch = dgrid_worker::grid::label::arch_label().to_string();
    tasks.push(json!({"task_id": "on-this-arch", "script": "true", "timeout_seconds": 30, "requires": [arch]}));
    tasks.push(json!({"task_id": "needs-fpga", "script": "true", "timeout_seconds": 30, "requires": ["fpga", "gpu"]}));
    submit(&grid, "mixed", Value::Array(tasks));

    // A GPU node kept for GPU work, and a plain node, at once.
    let mut gpu = WorkerSpec::new(&grid, "gpu-node");
    gpu.extra = "labels = [\"gpu\"]\nexclusive = [\"gpu\"]\n".into();
    let plain = WorkerSpec::new(&grid, "plain-node");
    let mut a = spawn_worker(&grid, &gpu);
    let mut b = spawn_worker(&grid, &plain);
    for w in [&mut a, &mut b] {
        assert!(
            w.wait_exit(Duration::from_secs(120)).success(),
            "{}",
            w.log_text()
        );
    }
    let r = results_by_task(&grid);
    assert_eq!(r.len(), 25, "{:?}", r.keys());
    for (id, res) in &r {
        let node = res["node_id"].as_str().unwrap();
        match id.as_str() {
            i if i.starts_with("gpu-") => assert_eq!(node, "gpu-node", "{id}"),
            _ => assert_eq!(node, "plain-node", "{id}: the GPU node takes only GPU work"),
        }
        assert_eq!(res["status"], "completed", "{id}");
    }
    // Nobody has fpga: it stays queued, never failed, and is named with
    // what each node lacks.
    let queued = grid.queued();
    assert_eq!(queued.keys().collect::<Vec<_>>(), ["needs-fpga.json"]);
    let record: Value = serde_json::from_slice(&grid.files("nodes")["gpu-node.json"]).unwrap();
    assert_eq!(record["exclusive"], json!(["gpu"]));
    assert!(
        record["labels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "gpu")
            && record["labels"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| *l == json!(arch))
            && record["labels"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l == "engine=shell"),
        "{record}"
    );

    // A record pushed by hand that serves fpga, its heartbeat dated 9999:
    // as the nodes read it, it holds nothing, and the tools say so.
    let mut forged = record.clone();
    forged["node_id"] = json!("fut");
    forged["labels"].as_array_mut().unwrap().push(json!("fpga"));
    forged["exclusive"] = json!([]);
    forged["last_heartbeat"] = json!("9999-01-01T00:00:00Z");
    grid.commit_files(
        &[(
            "nodes/fut.json".to_owned(),
            serde_json::to_vec(&forged).unwrap(),
        )],
        "a record dated 9999",
    );

    // The nodes stopped; as live nodes their records still count for the
    // tools' verdict when fresh: make them so by reading at once.
    let out = dgrid(&["status", "--repo", &grid.bare.display().to_string()]);
    expect_code(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("! its heartbeat is dated more than an hour ahead of this clock: no node counts it as live"),
        "{text}"
    );
    assert!(text.contains("cannot run now"), "{text}");
    assert!(
        text.contains("requires fpga, gpu: 1 task (needs-fpga)"),
        "{text}"
    );
    assert!(text.contains("no live node"), "{text}");
    let out = dgrid(&["reap", "--repo", &grid.url()]);
    expect_code(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("needs-fpga: cannot run now, requires fpga, gpu: no live node"),
        "{text}"
    );
    assert!(
        grid.queued().contains_key("needs-fpga.json"),
        "the reap fails nothing"
    );
}

/// A GPU node that takes common work too, beside a plain node, both idle
/// and registered when a mixed backlog arrives (the common tasks first in
/// the queue's order): the GPU node runs the GPU work, which only it can
/// run, before any common task, and the plain node claims no common work
/// for it while GPU work waits. In the queue's order alone, a GPU node
/// beside one plain node ran seven of twelve common tasks before its
/// twelve GPU tasks (of 0.5 s: the drain took 9.8 s, against 6.8 s now).
#[test]
fn a_node_with_a_scarce_label_runs_the_work_only_it_can_first() {
    let grid = Grid::new();
    let mut gpu = WorkerSpec::new(&grid, "gpu-node");
    gpu.extra = "labels = [\"gpu\"]\n".into();
    gpu.drain = false;
    // It looks less often than the plain nodes, which so see the backlog
    // first: what they claim for it, it starts first.
    gpu.env.push(("PULL_INTERVAL".into(), "4".into()));
    let mut workers = vec![spawn_worker(&grid, &gpu)];
    // Two plain nodes: a node claims for idle peers only where it starts
    // two of them at least.
    for node in ["plain-a", "plain-b"] {
        let mut plain = WorkerSpec::new(&grid, node);
        plain.drain = false;
        workers.push(spawn_worker(&grid, &plain));
    }
    wait_until("every registration", Duration::from_secs(60), || {
        grid.files("nodes").len() == 3
    });
    let mut tasks = Vec::new();
    for i in 0..12 {
        tasks.push(
            json!({"task_id": format!("any-{i:02}"), "script": "sleep 0.3", "timeout_seconds": 30}),
        );
    }
    for i in 0..8 {
        tasks.push(json!({"task_id": format!("gpu-{i:02}"), "script": "sleep 0.3", "timeout_seconds": 30, "requires": ["gpu"]}));
    }
    submit(&grid, "mixed", Value::Array(tasks));
    wait_until("every result", Duration::from_secs(120), || {
        grid.results().len() == 20
    });
    stop_cleanly(&mut workers);
    let r = results_by_task(&grid);
    let on_gpu_node = |prefix: &str| -> Vec<chrono::DateTime<chrono::Utc>> {
        r.iter()
            .filter(|(id, res)| id.starts_with(prefix) && res["node_id"] == "gpu-node")
            .map(|(_, res)| started(res))
            .collect()
    };
    let gpu_starts = on_gpu_node("gpu-");
    assert_eq!(gpu_starts.len(), 8, "{r:?}");
    let last_gpu = gpu_starts.iter().max().unwrap();
    let common_first: Vec<&String> = r
        .iter()
        .filter(|(id, res)| {
            id.starts_with("any-") && res["node_id"] == "gpu-node" && started(res) < *last_gpu
        })
        .map(|(id, _)| id)
        .collect();
    assert!(
        common_first.is_empty(),
        "the GPU node ran common work while GPU work waited: {common_first:?}"
    );
    assert!(r.values().all(|res| res["status"] == "completed"), "{r:?}");
}

/// A GPU task pushed while the GPU node (not exclusive) holds common
/// claims of its level ahead: the GPU node's next look claims it and it
/// starts at the next free slot, not after those claims (a sweep's waited
/// 10.5-13 s behind 29 of them).
#[test]
fn work_only_a_busy_node_serves_starts_before_the_common_claims_it_holds() {
    let grid = Grid::new();
    let mut gpu = WorkerSpec::new(&grid, "gpu-node");
    gpu.extra = "labels = [\"gpu\"]\n".into();
    gpu.drain = false;
    let mut plain = WorkerSpec::new(&grid, "plain-node");
    plain.drain = false;
    let mut workers = [spawn_worker(&grid, &gpu), spawn_worker(&grid, &plain)];
    wait_until("both registrations", Duration::from_secs(60), || {
        grid.files("nodes").len() == 2
    });
    let common: Vec<Value> = (0..40)
        .map(|i| json!({"task_id": format!("common-{i:02}"), "script": "sleep 0.5", "timeout_seconds": 30}))
        .collect();
    submit(&grid, "common", Value::Array(common));
    let held_by_gpu_node = || {
        grid.json_files("tasks/in_progress")
            .values()
            .filter(|c| c["claim"]["node_id"] == "gpu-node")
            .count()
    };
    wait_until(
        "the GPU node holds common claims ahead",
        Duration::from_secs(60),
        || held_by_gpu_node() >= 8,
    );
    let pushed = chrono::Utc::now();
    submit(
        &grid,
        "gpu",
        json!([{"task_id": "gpu-1", "script": "true", "timeout_seconds": 30, "requires": ["gpu"]}]),
    );
    wait_until("every result", Duration::from_secs(120), || {
        grid.results().len() == 41
    });
    stop_cleanly(&mut workers);
    let r = results_by_task(&grid);
    let gpu_start = started(&r["gpu-1"]);
    let common_between: Vec<&String> = r
        .iter()
        .filter(|(id, res)| {
            id.starts_with("common-")
                && res["node_id"] == "gpu-node"
                && started(res) > pushed
                && started(res) < gpu_start
        })
        .map(|(id, _)| id)
        .collect();
    assert!(
        common_between.len() <= 3,
        "the GPU task waited behind the common claims the GPU node held: {common_between:?}"
    );
}

/// A GPU task longer than the GPU node's limit, beside a plain node whose
/// limit takes it: no live node can run it, and the GPU node fails it
/// naming why. The plain node's limit made it wait in its lane for good,
/// named by nothing (a sweep's). Its result names it by its id, not its
/// lane's path, and a task after it ends `dependency_failed`: with the
/// path as its `task_id`, the dependant waited on a parent that had
/// failed, and the reap failed it as naming no task on the grid.
#[test]
fn a_task_too_long_for_every_node_that_serves_its_labels_fails_named() {
    let grid = Grid::new();
    let mut plain = WorkerSpec::new(&grid, "plain-long");
    plain.drain = false;
    plain.extra = "[tasks]\nmax_timeout_seconds = 7200\n".into();
    let mut gpu = WorkerSpec::new(&grid, "gpu-short");
    gpu.drain = false;
    gpu.extra = "labels = [\"gpu\"]\n".into();
    let mut workers = [spawn_worker(&grid, &plain), spawn_worker(&grid, &gpu)];
    wait_until("both registrations", Duration::from_secs(60), || {
        grid.files("nodes").len() == 2
    });
    submit(
        &grid,
        "long-gpu",
        json!([
            {"task_id": "long-gpu", "script": "true", "timeout_seconds": 5000, "requires": ["gpu"]},
            {"task_id": "after-long", "script": "true", "timeout_seconds": 5, "after": ["long-gpu"]},
        ]),
    );
    wait_until(
        "the long GPU task and its dependant failed",
        Duration::from_secs(60),
        || grid.json_files("tasks/failed").len() == 2,
    );
    stop_cleanly(&mut workers);
    let failed = results_by_task(&grid);
    assert_eq!(failed.len(), 2, "{failed:?}");
    let long = &failed["long-gpu"];
    assert_eq!(long["status"], "invalid");
    let error = long["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("`timeout_seconds` is 5000")
            && error.contains("3600")
            && error.contains("no peer that serves it"),
        "{error}"
    );
    let after = &failed["after-long"];
    assert_eq!(after["status"], "dependency_failed", "{after}");
    let error = after["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("long-gpu") && error.contains("invalid"),
        "{error}"
    );
}

/// Pushed by hand into `p50/gpu/`, which no node serves (there is none at
/// all, so no node lists that lane to meet a task misfiled there): `plain`,
/// which requires nothing, `on-gpu`, which does ask for a GPU, and `extra`
/// files by name.
fn misfile_in_the_gpu_lane(grid: &Grid, extra: &[(&str, &[u8])]) {
    let batch = "tasks/lanes/p50/gpu/20261203T1400";
    let task = |id: &str, requires: Value| {
        json!({"task_id": id, "script": "echo ran", "timeout_seconds": 30, "requires": requires})
            .to_string()
            .into_bytes()
    };
    let mut files = vec![
        (format!("{batch}/plain.json"), task("plain", json!([]))),
        (
            format!("{batch}/on-gpu.json"),
            task("on-gpu", json!(["gpu"])),
        ),
    ];
    files.extend(
        extra
            .iter()
            .map(|(n, b)| (format!("{batch}/{n}"), b.to_vec())),
    );
    grid.commit_files(&files, "filed by hand");
}

#[test]
fn a_task_filed_by_hand_in_a_lane_no_node_serves_is_moved_by_the_reap() {
    let grid = Grid::new();
    misfile_in_the_gpu_lane(&grid, &[("junk.json", b"{}")]);
    let out = dgrid(&["reap", "--repo", &grid.url()]);
    expect_code(&out, 0);
    let text = stdout(&out);
    let mut lanes = grid.lane_paths();
    lanes.sort();
    assert_eq!(
        lanes,
        [
            "p50/any/20261203T1400/plain.json",
            "p50/gpu/20261203T1400/on-gpu.json"
        ],
        "{text}"
    );
    assert!(
        text.contains("plain: filed in tasks/lanes/p50/any/"),
        "{text}"
    );
    assert!(text.contains("junk.json: moved to tasks/failed"), "{text}");
    assert!(
        text.contains("on-gpu: cannot run now, requires gpu: no live node"),
        "{text}"
    );
    assert!(
        !text.contains("plain: cannot run now, requires gpu")
            && text.contains("plain: cannot run now, requires nothing: no live node"),
        "the moved task is named by its own labels, in its new lane: {text}"
    );
    assert_eq!(grid.files("tasks/failed").len(), 1);
    // A second reap finds nothing more to move.
    let out = dgrid(&["reap", "--repo", &grid.url()]);
    expect_code(&out, 0);
    assert!(!stdout(&out).contains("filed in"), "{}", stdout(&out));
}

/// The same on a grid that runs no `reap` tool (no grid workflow): a
/// worker's own reap reads the lanes no live node serves, moves the task
/// misfiled there to its lane, and then runs it; the task that does ask
/// for a GPU stays, named.
#[test]
fn a_worker_alone_moves_a_task_misfiled_in_a_lane_nobody_serves_and_runs_it() {
    let grid = Grid::new();
    misfile_in_the_gpu_lane(&grid, &[]);
    let mut w = spawn_worker(&grid, &WorkerSpec::new(&grid, "n1"));
    wait_until(
        "the misfiled task's result",
        Duration::from_secs(60),
        || !grid.files("tasks/completed").is_empty(),
    );
    stop_cleanly([&mut w]);
    let r = results_by_task(&grid);
    assert_eq!(r["plain"]["status"], "completed", "{}", r["plain"]);
    assert!(!r.contains_key("on-gpu"), "{r:?}");
    assert_eq!(grid.lane_paths(), ["p50/gpu/20261203T1400/on-gpu.json"]);
    let log = w.log_text();
    assert!(
        log.contains("plain") && log.contains("in a lane no live node serves"),
        "{log}"
    );
}

#[test]
fn a_task_no_live_node_can_serve_says_what_each_node_lacks() {
    let grid = Grid::new();
    submit(
        &grid,
        "unservable",
        json!([
            {"task_id": "needs-fpga", "script": "true", "timeout_seconds": 30, "requires": ["fpga"]},
            // Waiting, and unservable once released: said now.
            {"task_id": "then-fpga", "script": "true", "timeout_seconds": 30, "requires": ["fpga"], "after": ["needs-fpga"]},
            // Served, but behind one no node serves, at one remove and two.
            {"task_id": "then-gpu", "script": "true", "timeout_seconds": 30, "requires": ["gpu"], "after": ["needs-fpga"]},
            {"task_id": "last-gpu", "script": "true", "timeout_seconds": 30, "requires": ["gpu"], "after": ["then-gpu"]}
        ]),
    );
    // A node that stays up, exclusive to gpu: it lacks fpga.
    let mut spec = WorkerSpec::new(&grid, "gpu-box");
    spec.extra = "labels = [\"gpu\"]\nexclusive = [\"gpu\"]\n".into();
    spec.drain = false;
    let mut w = spawn_worker(&grid, &spec);
    wait_until("the node's record", Duration::from_secs(30), || {
        grid.files("nodes").contains_key("gpu-box.json")
    });
    for (cmd, want) in [
        ("status", "no live node serves it: gpu-box lacks fpga"),
        (
            "status",
            "waits for needs-fpga  ! no live node serves it: gpu-box lacks fpga",
        ),
        (
            "status",
            "waits for needs-fpga  ! behind `needs-fpga`, which no live node runs now",
        ),
        (
            "status",
            "waits for then-gpu  ! behind `needs-fpga` (through `then-gpu`), which no live node runs now",
        ),
        (
            "reap",
            "needs-fpga: cannot run now, requires fpga: no live node serves it: gpu-box lacks fpga",
        ),
    ] {
        let repo = if cmd == "status" {
            grid.bare.display().to_string()
        } else {
            grid.url()
        };
        let out = dgrid(&[cmd, "--repo", &repo]);
        expect_code(&out, 0);
        assert!(stdout(&out).contains(want), "{cmd}: {}", stdout(&out));
    }
    let site = grid.path("site");
    expect_code(
        &dgrid(&[
            "dashboard",
            "--repo",
            &grid.bare.display().to_string(),
            "--out",
            site.to_str().unwrap(),
        ]),
        0,
    );
    let html = std::fs::read_to_string(site.join("index.html")).unwrap();
    assert!(
        html.contains("id=\"unservable\"") && html.contains("gpu-box lacks fpga"),
        "{html}"
    );
    let json: Value =
        serde_json::from_slice(&std::fs::read(site.join("grid.json")).unwrap()).unwrap();
    assert_eq!(json["unservable"][0]["task_ids"], json!(["needs-fpga"]));
    assert_eq!(
        json["waiting"][0]["unservable"],
        "no live node serves it: gpu-box lacks fpga"
    );
    assert!(
        html.contains("<td>50</td><td>fpga <span class=\"bad\">no live node serves it: gpu-box lacks fpga</span></td></tr>"),
        "{html}"
    );
    let last = json["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["task_id"] == "last-gpu")
        .unwrap();
    assert_eq!(
        last["behind"],
        "behind `needs-fpga` (through `then-gpu`), which no live node runs now"
    );
    assert!(
        html.contains("then-gpu <span class=\"bad\">behind `needs-fpga` (through `then-gpu`)"),
        "{html}"
    );
    stop_cleanly([&mut w]);
    assert!(grid.queued().contains_key("needs-fpga.json"));
}

/// A claim `reap` requeues into a lane no live node serves is named among
/// what cannot run now, as `status` names it right after (it went
/// unnamed: the list was of the lanes before the reap).
#[test]
fn a_claim_reap_requeues_where_no_live_node_serves_is_named() {
    let grid = Grid::new();
    submit(
        &grid,
        "exclusive",
        json!([{"task_id": "gblong", "script": "sleep 60", "timeout_seconds": 120, "requires": ["gpu", "big"]}]),
    );
    let mut spec = WorkerSpec::new(&grid, "ex");
    spec.extra = "labels = [\"gpu\", \"big\"]\nexclusive = [\"gpu\", \"big\"]\n".into();
    spec.drain = false;
    let mut ex = spawn_worker(&grid, &spec);
    // A peer that stays live and lacks both labels.
    let mut spec = WorkerSpec::new(&grid, "np");
    spec.extra = "heartbeat_interval = 2\nstale_after = 60\n".into();
    spec.drain = false;
    let mut np = spawn_worker(&grid, &spec);
    wait_until("gblong running on ex", Duration::from_secs(60), || {
        grid.files("nodes").contains_key("ex.json")
            && grid.files("nodes").contains_key("np.json")
            && record(&grid, "ex")["running"] == json!(["gblong"])
    });
    ex.signal(nix::sys::signal::Signal::SIGKILL);
    ex.wait_exit(Duration::from_secs(30));
    let heartbeat =
        dgrid_worker::time::parse(record(&grid, "ex")["last_heartbeat"].as_str().unwrap()).unwrap();
    wait_until("ex's heartbeat stale", Duration::from_secs(60), || {
        chrono::Utc::now() - heartbeat > chrono::Duration::seconds(12)
    });
    let out = dgrid(&["reap", "--repo", &grid.url(), "--stale-after", "10"]);
    expect_code(&out, 0);
    let said = stdout(&out);
    assert!(said.contains("gblong: requeued as attempt 2"), "{said}");
    assert!(
        said.contains(
            "gblong: cannot run now, requires big, gpu: no live node serves it: np lacks big, gpu"
        ),
        "{said}"
    );
    // As `status` says it, by the same count of who is live.
    let out = dgrid(&[
        "status",
        "--repo",
        &grid.bare.display().to_string(),
        "--stale-after",
        "10",
    ]);
    assert!(
        stdout(&out).contains("np lacks big, gpu"),
        "{}",
        stdout(&out)
    );
    stop_cleanly([&mut np]);
}

/// A task that only a paused node serves (its quiet hours, its hourly
/// limit) waits until that node comes back, perhaps for hours: `status`,
/// the dashboard's data and `reap` say so, naming the node and its pause.
/// They called it servable.
#[test]
fn a_task_only_a_paused_node_serves_says_so() {
    let grid = Grid::new();
    submit(
        &grid,
        "paused",
        json!([{"task_id": "on-gpu", "script": "true", "timeout_seconds": 30, "requires": ["gpu"]}]),
    );
    let now = dgrid_worker::time::format(dgrid_worker::time::now());
    let records = [
        json!({"node_id": "g1", "status": "idle", "last_heartbeat": now, "labels": ["gpu"],
               "paused": "quiet hours (22:00-07:00, local time) until 07:00"}),
        json!({"node_id": "n2", "status": "idle", "last_heartbeat": now}),
    ];
    let files: Vec<(String, Vec<u8>)> = records
        .iter()
        .map(|r| {
            (
                format!("nodes/{}.json", r["node_id"].as_str().unwrap()),
                r.to_string().into_bytes(),
            )
        })
        .collect();
    grid.commit_files(&files, "two nodes, one paused");
    let want = "only nodes that take no work now serve it: g1 (quiet hours (22:00-07:00, local time) until 07:00)";
    let out = dgrid(&["status", "--repo", &grid.bare.display().to_string()]);
    expect_code(&out, 0);
    assert!(stdout(&out).contains(want), "{}", stdout(&out));
    let out = dgrid(&[
        "status",
        "--json",
        "--repo",
        &grid.bare.display().to_string(),
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["unservable"][0]["task_ids"], json!(["on-gpu"]), "{v}");
    let out = dgrid(&["reap", "--repo", &grid.url()]);
    expect_code(&out, 0);
    assert!(stdout(&out).contains(want), "{}", stdout(&out));
}

#[test]
fn a_graph_runs_in_order_with_its_inputs_and_a_failure_fails_its_dependants_by_name() {
    let grid = Grid::new();
    submit(
        &grid,
        "graph",
        json!([
            {"task_id": "build-1", "script": "echo one", "timeout_seconds": 30},
            {"task_id": "build-2", "script": "echo two", "timeout_seconds": 30},
            {"task_id": "test", "timeout_seconds": 30, "after": ["build-1", "build-2"],
             "script": "grep -q '\"stdout\": \"one' \"$DGRID_INPUTS/build-1.json\" && grep -q '\"stdout\": \"two' \"$DGRID_INPUTS/build-2.json\" && ls \"$DGRID_INPUTS\" && echo tested"},
            {"task_id": "report", "script": "echo reported", "timeout_seconds": 30, "after": ["test"]},
            {"task_id": "bad", "script": "exit 3", "timeout_seconds": 30},
            {"task_id": "after-bad", "script": "echo never", "timeout_seconds": 30, "after": ["bad", "build-1"]},
            {"task_id": "after-after-bad", "script": "echo never", "timeout_seconds": 30, "after": ["after-bad"]},
        ]),
    );
    // Waiting, not queued: no node can claim them early.
    let blocked = grid.blocked();
    assert_eq!(blocked.len(), 4, "{:?}", blocked.keys());
    let lanes = grid.lane_paths();
    assert_eq!(lanes.len(), 3, "{lanes:?}");

    let mut a = spawn_worker(&grid, &WorkerSpec::new(&grid, "w1"));
    let mut b = spawn_worker(&grid, &WorkerSpec::new(&grid, "w2"));
    for w in [&mut a, &mut b] {
        assert!(
            w.wait_exit(Duration::from_secs(120)).success(),
            "{}",
            w.log_text()
        );
    }
    let r = results_by_task(&grid);
    assert_eq!(r.len(), 7, "{:?}", r.keys());
    assert_eq!(r["test"]["status"], "completed", "{}", r["test"]);
    assert_eq!(r["test"]["stdout"], "build-1.json\nbuild-2.json\ntested\n");
    assert!(
        started(&r["test"]) >= ended(&r["build-1"]) && started(&r["test"]) >= ended(&r["build-2"])
    );
    assert_eq!(r["report"]["status"], "completed");
    assert!(started(&r["report"]) >= ended(&r["test"]));
    assert_eq!(r["bad"]["status"], "failed");
    assert_eq!(r["after-bad"]["status"], "dependency_failed");
    let e = r["after-bad"]["error"].as_str().unwrap();
    assert!(e.contains("dependency `bad` did not complete"), "{e}");
    let e = r["after-after-bad"]["error"].as_str().unwrap();
    assert!(e.contains("dependency `after-bad` did not complete"), "{e}");
    assert!(r["after-bad"]["stdout"] == "", "never ran");
    assert!(grid.blocked().is_empty() && grid.queued().is_empty());
    assert!(grid.files("tasks/in_progress").is_empty());
}

/// A task that fails ends the tasks after it in the commit of its result,
/// also those waiting under another of their parents still running (they
/// wait under the first not finished): a reduce whose one map failed
/// fails at once, not when its longest map ends; and `status` never says
/// it waits for the failed one.
#[test]
fn a_failure_fails_its_dependants_waiting_under_a_parent_still_running() {
    let grid = Grid::new();
    let go = grid.path("go");
    let slow = format!(
        "while [ ! -e '{}' ]; do sleep 0.1; done; echo slow",
        go.display()
    );
    submit(
        &grid,
        "graph",
        json!([
            {"task_id": "slow", "script": slow, "timeout_seconds": 300},
            {"task_id": "bad", "script": "exit 3", "timeout_seconds": 30},
            {"task_id": "reduce", "script": "echo never", "timeout_seconds": 30, "after": ["slow", "bad"]},
            {"task_id": "post", "script": "echo never", "timeout_seconds": 30, "after": ["reduce"]},
        ]),
    );
    let under_slow = grid.files("tasks/blocked/slow");
    assert!(
        under_slow.contains_key("reduce.json"),
        "{:?}",
        under_slow.keys()
    );
    let mut spec = WorkerSpec::new(&grid, "w1");
    spec.extra = "concurrency = 2\n".into();
    let mut w = spawn_worker(&grid, &spec);
    wait_until("reduce and post failed", Duration::from_secs(90), || {
        grid.results()
            .iter()
            .filter(|(_, r)| r["status"] == "dependency_failed")
            .count()
            == 2
    });
    let r = results_by_task(&grid);
    assert!(!r.contains_key("slow"), "slow still runs: {:?}", r.keys());
    let e = r["reduce"]["error"].as_str().unwrap();
    assert!(
        e.contains("dependency `bad` did not complete: it ended `failed`"),
        "{e}"
    );
    let e = r["post"]["error"].as_str().unwrap();
    assert!(e.contains("dependency `reduce` did not complete"), "{e}");
    assert!(grid.blocked().is_empty(), "{:?}", grid.blocked());

    std::fs::write(&go, "").unwrap();
    assert!(
        w.wait_exit(Duration::from_secs(120)).success(),
        "{}",
        w.log_text()
    );
    assert_eq!(results_by_task(&grid)["slow"]["status"], "completed");
}

/// A failure written where no node looked at the tasks after it (by hand,
/// or a tool): `status` says such a task will fail, and when, not that it
/// waits for the failed one.
#[test]
fn status_says_a_task_after_a_failed_one_fails_and_when() {
    let grid = Grid::new();
    submit(
        &grid,
        "graph",
        json!([
            {"task_id": "slow", "script": "true", "timeout_seconds": 30},
            {"task_id": "bad", "script": "true", "timeout_seconds": 30},
            {"task_id": "reduce", "script": "true", "timeout_seconds": 30, "after": ["slow", "bad"]},
        ]),
    );
    let bad_lane = grid
        .lane_paths()
        .into_iter()
        .find(|p| p.ends_with("/bad.json"))
        .unwrap();
    let failed = json!({
        "task_id": "bad", "node_id": "x", "exit_code": 3, "stdout": "", "stderr": "",
        "timestamp": "2026-12-07T08:00:00Z", "status": "failed", "attempt": 1, "truncated": false
    });
    grid.commit_with("bad failed, written by hand", |dir| {
        std::fs::remove_file(dir.join("tasks/lanes").join(&bad_lane)).unwrap();
        std::fs::write(dir.join("tasks/failed/x@bad.json"), failed.to_string()).unwrap();
    });
    let text = stdout(&dgrid(&["status", "--repo", &grid.url()]));
    let says =
        "fails when `slow` finishes: dependency `bad` did not complete (tasks/failed/x@bad.json)";
    assert!(
        text.lines()
            .any(|l| l.contains("reduce") && l.contains(says)),
        "{text}"
    );
    let json: Value = serde_json::from_str(&stdout(&dgrid(&[
        "status",
        "--repo",
        &grid.url(),
        "--json",
    ])))
    .unwrap();
    assert_eq!(json["waiting"][0]["fails"], says, "{}", json["waiting"]);

    // A judged failure (an invalid file under the id) while a copy of the
    // task still waits in its lane: that copy runs, and so will the task
    // after it, as nodes judge it.
    submit(
        &grid,
        "graph2",
        json!([
            {"task_id": "slow2", "script": "true", "timeout_seconds": 30},
            {"task_id": "bad2", "script": "true", "timeout_seconds": 30},
            {"task_id": "reduce2", "script": "true", "timeout_seconds": 30, "after": ["slow2", "bad2"]},
        ]),
    );
    let invalid = json!({
        "task_id": "bad2", "node_id": "x", "exit_code": null, "stdout": "", "stderr": "",
        "timestamp": "2026-12-07T08:00:00Z", "status": "invalid", "attempt": 1, "truncated": false,
        "error": "tasks/queue/bad2.json: is not valid JSON"
    });
    grid.commit_with("an invalid copy of bad2 failed", |dir| {
        std::fs::write(dir.join("tasks/failed/x@bad2.json"), invalid.to_string()).unwrap();
    });
    let text = stdout(&dgrid(&["status", "--repo", &grid.url()]));
    let line = text.lines().find(|l| l.contains("reduce2")).unwrap();
    assert!(!line.contains("fails when"), "{line}");
}

/// A result that tasks wait for goes at once, not with the node's next
/// claim: a chain through a node busy with a long task beside it moves a
/// link per push. Each result held for a claim to ride with (up to 2 s
/// while a task runs) made 15 links take 31 s; pushed at once, 3.4 s. The
/// bound sits between: 12 links held so cannot end within it.
#[test]
fn a_result_others_wait_for_is_pushed_at_once_while_a_long_task_runs() {
    let grid = Grid::new();
    let stop = grid.path("stop");
    let low = format!("while [ ! -e '{}' ]; do sleep 0.1; done", stop.display());
    let mut tasks =
        vec![json!({"task_id": "low", "script": low, "timeout_seconds": 300, "priority": 10})];
    for i in 0..12 {
        let mut t = json!({"task_id": format!("h{i}"), "script": "true", "timeout_seconds": 30, "priority": 80});
        if i > 0 {
            t["after"] = json!([format!("h{}", i - 1)]);
        }
        tasks.push(t);
    }
    submit(&grid, "chain", Value::Array(tasks));
    let mut spec = WorkerSpec::new(&grid, "w1");
    spec.extra = "concurrency = 2\n".into();
    spec.drain = false;
    let mut w = spawn_worker(&grid, &spec);
    wait_until("the chain's last result", Duration::from_secs(20), || {
        grid.files("tasks/completed").contains_key("w1@h11.json")
    });
    let r = results_by_task(&grid);
    assert!(!r.contains_key("low"), "low still runs beside the chain");
    for i in 1..12 {
        let (parent, kid) = (&r[&format!("h{}", i - 1)], &r[&format!("h{i}")]);
        assert!(started(kid) >= ended(parent), "{parent}\n{kid}");
    }
    std::fs::write(&stop, "").unwrap();
    w.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        w.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        w.log_text()
    );
}

/// A chain on an idle node: the commit that lands a link's result claims
/// the next link, which reads that result as its input (written in that
/// very commit). Each link took two pushes, `complete c2, release c3`
/// then `claim c3`: behind a forge 100 ms away, 1.5 s between links.
#[test]
fn the_commit_that_lands_a_links_result_claims_the_next_link() {
    let grid = Grid::new();
    let tasks: Vec<Value> = (0..6)
        .map(|i| match i {
            0 => json!({"task_id": "c0", "script": "echo c0", "timeout_seconds": 30}),
            _ => json!({
                "task_id": format!("c{i}"), "timeout_seconds": 30, "after": [format!("c{}", i - 1)],
                "script": format!("grep -q '\"stdout\": \"c{}' \"$DGRID_INPUTS/c{}.json\" && echo c{i}", i - 1, i - 1),
            }),
        })
        .collect();
    submit(&grid, "chain", Value::Array(tasks));
    drained(&grid, "w1");
    let r = results_by_task(&grid);
    for i in 0..6 {
        let c = &r[&format!("c{i}")];
        assert_eq!(c["stdout"], format!("c{i}\n"), "{c}");
    }
    // The log says when each run ended, as its result does (the line is
    // written when the loop takes the end in, after a sync under way).
    let log = std::fs::read_to_string(grid.path("w1.log")).unwrap();
    let ended = r["c0"]["timestamp"].as_str().unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("task finished") && l.contains(ended)),
        "{log}"
    );
    for i in 1..6 {
        let landed = commit_adding(&grid, &format!("tasks/completed/w1@c{}.json", i - 1));
        let claim = json_at(&grid, &landed, &format!("tasks/in_progress/c{i}.json"));
        assert_eq!(claim["claim"]["node_id"], "w1", "{claim}");
    }
}

/// The one commit on `main` that added `path`.
fn commit_adding(grid: &Grid, path: &str) -> String {
    let log = git(
        &grid.bare,
        &["log", "--format=%H", "--diff-filter=A", "main", "--", path],
    );
    let landed = String::from_utf8_lossy(&log.stdout).trim().to_owned();
    assert_eq!(landed.lines().count(), 1, "{path}: {landed:?}");
    landed
}

/// The JSON file at `path` in `commit` (which must hold it).
fn json_at(grid: &Grid, commit: &str, path: &str) -> Value {
    let blob = git(&grid.bare, &["show", &format!("{commit}:{path}")]);
    assert!(blob.status.success(), "{path} is not in {commit}");
    serde_json::from_slice(&blob.stdout).unwrap()
}

/// Pushed by hand into the inbox in one commit: a parent that is invalid,
/// its dependant and theirs, two tasks that wait for each other, and a
/// task after a parent that completed before. The commit that lands the
/// parent's `invalid` result fails its dependants, naming it and how it
/// ended, rejects the cycle as invalid, and queues the task whose parent
/// completed (and claims it: the node has room):
/// nothing is left in `tasks/blocked/` for a later sweep.
#[test]
fn a_parent_rejected_as_invalid_fails_its_dependants_in_the_same_commit() {
    let grid = Grid::new();
    submit(
        &grid,
        "first",
        json!([{"task_id": "done-par", "script": "echo done", "timeout_seconds": 30}]),
    );
    drained(&grid, "n1");
    let task = |id: &str, script: &str, after: &[&str]| {
        let mut t = json!({"task_id": id, "script": script, "timeout_seconds": 30});
        if !after.is_empty() {
            t["after"] = json!(after);
        }
        (format!("tasks/queue/{id}.json"), t.to_string().into_bytes())
    };
    grid.commit_files(
        &[
            task("par3", "", &[]),
            task("ch3", "echo never", &["par3"]),
            task("gch3", "echo never", &["ch3"]),
            task("cyc-a", "echo never", &["cyc-b"]),
            task("cyc-b", "echo never", &["cyc-a"]),
            task("late", "cat \"$DGRID_INPUTS/done-par.json\"", &["done-par"]),
        ],
        "by hand, in one commit",
    );
    drained(&grid, "n2");
    let par = "tasks/failed/n2@par3.json";
    let landed = commit_adding(&grid, par);
    let at = |path: &str| json_at(&grid, &landed, path);
    assert_eq!(at(par)["status"], "invalid");
    let paths = git(
        &grid.bare,
        &["ls-tree", "-r", "--name-only", &landed, "tasks/"],
    );
    let paths = String::from_utf8_lossy(&paths.stdout).to_string();
    assert!(
        !paths.lines().any(|p| p.starts_with("tasks/blocked/")),
        "nothing left waiting:\n{paths}"
    );
    // Queued, and claimed in the same commit by the node that has room.
    assert!(
        paths.lines().any(|p| p == "tasks/in_progress/late.json"),
        "the task whose parent completed is claimed:\n{paths}"
    );
    for (id, want) in [
        (
            "ch3",
            "dependency `par3` did not complete: it ended `invalid` (tasks/failed/n2@par3.json)",
        ),
        (
            "gch3",
            "dependency `ch3` did not complete: it ended `dependency_failed`",
        ),
        (
            "cyc-a",
            "tasks/queue/cyc-a.json: field `after` makes a cycle: cyc-a -> cyc-b -> cyc-a",
        ),
        (
            "cyc-b",
            "tasks/queue/cyc-b.json: field `after` makes a cycle: cyc-a -> cyc-b -> cyc-a",
        ),
    ] {
        let r = at(&format!("tasks/failed/n2@{id}.json"));
        // A parent that did not complete fails its dependants; an `after`
        // that can never be met (a cycle) makes the task invalid.
        let want_status = if id.starts_with("cyc") {
            "invalid"
        } else {
            "dependency_failed"
        };
        assert_eq!(r["status"], want_status, "{id}: {r}");
        let e = r["error"].as_str().unwrap();
        assert!(e.contains(want), "{id}: {e}");
    }
    let r = results_by_task(&grid);
    assert_eq!(r["late"]["status"], "completed", "{}", r["late"]);
    assert!(r["late"]["stdout"].as_str().unwrap().contains("done"));
    assert!(grid.blocked().is_empty() && grid.queued().is_empty());
}

/// `par` (echoes "parent"), and `kid` after it, which prints its input.
fn submit_parent_and_kid(grid: &Grid) {
    submit(
        grid,
        "graph",
        json!([
            {"task_id": "par", "script": "echo parent", "timeout_seconds": 30},
            {"task_id": "kid", "script": "cat \"$DGRID_INPUTS/par.json\"", "timeout_seconds": 30, "after": ["par"]},
        ]),
    );
}

/// A file pushed into the inbox under the id of a task that is queued,
/// invalid, fails as a file (its own `invalid` result), not as the task:
/// the task's dependant waits for the task, which runs and completes, and
/// then runs too.
#[test]
fn an_invalid_file_under_a_queued_tasks_id_does_not_fail_its_dependants() {
    let grid = Grid::new();
    submit_parent_and_kid(&grid);
    grid.commit_files(
        &[(
            "tasks/queue/par.json".to_owned(),
            b"{\"task_id\": \"par\"}".to_vec(),
        )],
        "a file of par's id, with no script",
    );
    drained(&grid, "n1");
    let mut by_id: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (_, r) in grid.results() {
        by_id
            .entry(r["task_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(r);
    }
    let mut par: Vec<&str> = by_id["par"]
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    par.sort();
    assert_eq!(par, ["completed", "invalid"], "{:?}", by_id["par"]);
    let kid = &by_id["kid"];
    assert_eq!(kid.len(), 1, "{kid:?}");
    assert_eq!(kid[0]["status"], "completed", "{}", kid[0]);
    assert!(
        kid[0]["stdout"].as_str().unwrap().contains("parent"),
        "{}",
        kid[0]
    );
    assert!(grid.blocked().is_empty() && grid.queued().is_empty());
}

/// More dependants of one parent than a plan looks at (512) all move on
/// when it completes, within a drain: the rest are swept in the syncs
/// right after, not a sweep a minute later (a `--drain` ended with them
/// still waiting).
#[test]
fn a_parent_with_more_dependants_than_a_plan_looks_at_releases_them_all_in_one_drain() {
    let grid = Grid::new();
    let task = |id: &str, after: &[&str]| {
        serde_json::to_vec(
            &json!({"task_id": id, "script": "true", "timeout_seconds": 30, "after": after}),
        )
        .unwrap()
    };
    let mut files = vec![("tasks/queue/p0.json".to_owned(), task("p0", &[]))];
    files.extend((0..530).map(|i| {
        let id = format!("f{i}");
        (format!("tasks/blocked/p0/{id}.json"), task(&id, &["p0"]))
    }));
    grid.commit_files(&files, "a parent and 530 dependants, by hand");
    let mut w = spawn_worker(&grid, &WorkerSpec::new(&grid, "n1"));
    assert!(
        w.wait_exit(Duration::from_secs(240)).success(),
        "{}",
        w.log_text()
    );
    assert!(grid.blocked().is_empty(), "{:?}", grid.blocked().len());
    assert!(grid.queued().is_empty());
    let completed = grid
        .results()
        .into_iter()
        .filter(|(_, r)| r["status"] == "completed")
        .count();
    assert_eq!(completed, 531);
}

/// Files pushed by hand under a parent's result names that are no result
/// of it (not JSON, another task's, one that did not end as its directory
/// says) release nothing, fail nothing, and are no one's input: the
/// dependant waits for the parent's own result and reads it.
#[test]
fn junk_under_a_parents_result_names_neither_releases_nor_fails_its_dependants() {
    let grid = Grid::new();
    submit_parent_and_kid(&grid);
    let other = json!({"task_id": "other", "node_id": "evil", "exit_code": 0, "stdout": "forged",
        "stderr": "", "timestamp": "2026-12-07T00:00:00Z", "status": "completed", "attempt": 1, "truncated": false});
    let mut failed_as_completed = other.clone();
    failed_as_completed["task_id"] = json!("par");
    failed_as_completed["status"] = json!("failed");
    grid.commit_files(
        &[
            (
                "tasks/completed/evil@par.json".to_owned(),
                b"{not json".to_vec(),
            ),
            (
                "tasks/completed/evil2@par.json".to_owned(),
                serde_json::to_vec(&other).unwrap(),
            ),
            (
                "tasks/completed/evil3@par.json".to_owned(),
                serde_json::to_vec(&failed_as_completed).unwrap(),
            ),
            ("tasks/failed/evil@par.json".to_owned(), b"[1, 2]".to_vec()),
            // A task no one has, whose only "result" is junk: no task at
            // all, so its dependant is refused, not held for good.
            (
                "tasks/completed/evil@ghost.json".to_owned(),
                b"{not json".to_vec(),
            ),
            (
                "tasks/blocked/ghost/orphan.json".to_owned(),
                serde_json::to_vec(&json!({"task_id": "orphan", "script": "true", "timeout_seconds": 30, "after": ["ghost"]})).unwrap(),
            ),
        ],
        "junk under par's result names",
    );
    let refused = dgrid(&[
        "submit",
        "--repo",
        &grid.url(),
        "--id",
        "late",
        "--after",
        "ghost",
        "--script",
        "true",
        "--timeout",
        "30",
    ]);
    assert!(
        stderr(&refused)
            .contains("names `ghost`, which is neither among these tasks nor on the grid"),
        "{}",
        stderr(&refused)
    );
    drained(&grid, "n1");
    let orphan = grid
        .results()
        .into_iter()
        .map(|(_, r)| r)
        .find(|r| r["task_id"] == "orphan")
        .expect("a result of orphan");
    assert_eq!(orphan["status"], "invalid", "{orphan}");
    assert!(
        orphan["error"].as_str().unwrap().contains("ghost"),
        "{orphan}"
    );
    let kid: Vec<Value> = grid
        .results()
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| r["task_id"] == "kid")
        .collect();
    assert_eq!(kid.len(), 1, "{kid:?}");
    assert_eq!(kid[0]["status"], "completed", "{}", kid[0]);
    let out = kid[0]["stdout"].as_str().unwrap();
    assert!(out.contains("\"stdout\": \"parent"), "{out}");
    assert!(grid.blocked().is_empty() && grid.queued().is_empty());
}

/// Copies of a queued parent pushed where they fail, or where they look
/// like a loop, fail as copies: the parent's dependants wait for the parent
/// itself. A copy under a parent nobody knows (`invalid`), a copy waiting
/// under the parent's own dependant (no loop: the parent is queued), and a
/// junk file in `tasks/lanes/` named after a parent that the same commit
/// files from the inbox into a lane no live node serves.
#[test]
fn copies_of_a_queued_parent_that_fail_do_not_fail_its_dependants() {
    let grid = Grid::new();
    submit(
        &grid,
        "graph",
        json!([
            {"task_id": "P", "script": "echo P", "timeout_seconds": 30},
            {"task_id": "D", "script": "echo D", "timeout_seconds": 30, "after": ["P"]},
        ]),
    );
    let task = |id: &str, extra: &str| {
        format!(r#"{{"task_id":"{id}","script":"echo {id}","timeout_seconds":30{extra}}}"#)
            .into_bytes()
    };
    grid.commit_files(
        &[
            (
                "tasks/blocked/nobody/P.json".into(),
                task("P", r#","after":["nobody"]"#),
            ),
            ("tasks/blocked/D/P.json".into(), task("P", "")),
            (
                "tasks/queue/G.json".into(),
                task("G", r#","requires":["gpu"]"#),
            ),
            (
                "tasks/blocked/G/E.json".into(),
                task("E", r#","after":["G"]"#),
            ),
            ("tasks/lanes/G.json".into(), b"not json".to_vec()),
        ],
        "copies of parents where they fail",
    );
    drained(&grid, "n1");
    let ended = |id: &str| -> Vec<String> {
        grid.results()
            .into_iter()
            .filter(|(_, r)| r["task_id"] == id)
            .map(|(f, r)| format!("{f}: {} {}", r["status"], r["error"]))
            .collect()
    };
    let d = ended("D");
    assert!(
        d.len() == 1 && d[0].contains("\"completed\""),
        "D: {d:?}, P: {:?}",
        ended("P")
    );
    assert!(
        ended("E").is_empty(),
        "E waits for G, which is queued: {:?}",
        ended("E")
    );
    let mut spec = WorkerSpec::new(&grid, "gpu1");
    spec.extra = "labels = [\"gpu\"]\n".into();
    let mut w = spawn_worker(&grid, &spec);
    assert!(
        w.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        w.log_text()
    );
    let e = ended("E");
    assert!(e.len() == 1 && e[0].contains("\"completed\""), "E: {e:?}");
    assert!(grid.blocked().is_empty() && grid.queued().is_empty());
}

/// A run's failure ends its task whatever copies are left: a copy of the
/// parent waiting in a lane no live node serves (or, with trust enforced,
/// an unsigned copy no node ever runs) kept the dependant waiting for good.
/// The dependant's error names the file the failure landed in, suffixed
/// where a junk file of the parent's name was rejected first.
#[test]
fn a_parent_that_ran_and_failed_fails_its_dependants_whatever_copies_wait() {
    let grid = Grid::new();
    submit(
        &grid,
        "graph",
        json!([
            {"task_id": "P", "script": "exit 3", "timeout_seconds": 30},
            {"task_id": "D", "script": "echo D", "timeout_seconds": 30, "after": ["P"]},
        ]),
    );
    let copy = r#"{"task_id":"P","script":"echo copy","timeout_seconds":30,"requires":["gpu"],"queued_at":"2026-12-06T13:00:00Z"}"#;
    grid.commit_files(
        &[
            (
                "tasks/lanes/p50/gpu/20261206T1300/P.json".into(),
                copy.as_bytes().to_vec(),
            ),
            // Rejected first, its `invalid` result takes `n1@P.json`.
            ("tasks/queue/P.json".into(), b"not json".to_vec()),
        ],
        "a copy of P nobody here serves, and junk of its name",
    );
    drained(&grid, "n1");
    let results = grid.results();
    let d: Vec<&Value> = results
        .iter()
        .map(|(_, r)| r)
        .filter(|r| r["task_id"] == "D")
        .collect();
    assert_eq!(d.len(), 1, "D has no result: {:?}", grid.blocked());
    assert_eq!(d[0]["status"], "dependency_failed", "{}", d[0]);
    // It names the file P's failure landed in (a suffixed name: the
    // junk's result has P's own).
    let (failed, _) = results
        .iter()
        .find(|(_, r)| r["task_id"] == "P" && r["status"] == "failed")
        .expect("P ran and failed");
    let error = d[0]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("it ended `failed` (tasks/failed/{failed})")),
        "{error} does not name {failed}"
    );
}

/// Pushed by hand: a task filed under a parent that failed before (the
/// sweep at a node's start moves it on, naming how its parent ended), and
/// two tasks whose `after`s make a loop only once their first parent is
/// done (`loop-a` after `x` and `loop-b`, `loop-b` after `loop-a`): the
/// commit that lands `x`'s result rejects both, naming the loop, where the
/// move of `loop-a` under `loop-b` left them for a later sweep.
#[test]
fn a_loop_closed_by_a_release_fails_at_once_and_a_late_dependant_says_how_its_parent_ended() {
    let grid = Grid::new();
    submit(
        &grid,
        "first",
        json!([{"task_id": "bad", "script": "exit 3", "timeout_seconds": 30}]),
    );
    drained(&grid, "n1");
    let task = |path: &str, id: &str, after: &[&str]| {
        let t =
            json!({"task_id": id, "script": "echo never", "timeout_seconds": 30, "after": after});
        (path.replace("{id}", id), t.to_string().into_bytes())
    };
    grid.commit_files(
        &[
            task("tasks/blocked/bad/{id}.json", "late", &["bad"]),
            (
                "tasks/queue/x.json".to_owned(),
                json!({"task_id": "x", "script": "echo x", "timeout_seconds": 30})
                    .to_string()
                    .into_bytes(),
            ),
            task("tasks/queue/{id}.json", "loop-a", &["x", "loop-b"]),
            task("tasks/queue/{id}.json", "loop-b", &["loop-a"]),
        ],
        "by hand, in one commit",
    );
    drained(&grid, "n2");
    let r = results_by_task(&grid);
    let e = r["late"]["error"].as_str().unwrap();
    assert!(
        e.contains(
            "dependency `bad` did not complete: it ended `failed` (tasks/failed/n1@bad.json)"
        ),
        "{e}"
    );
    assert_eq!(r["x"]["status"], "completed", "{}", r["x"]);
    let landed = commit_adding(&grid, "tasks/completed/n2@x.json");
    for id in ["loop-a", "loop-b"] {
        // Failed in the commit of x's result.
        let r = json_at(&grid, &landed, &format!("tasks/failed/n2@{id}.json"));
        assert_eq!(r["status"], "invalid", "{id}: {r}");
        let e = r["error"].as_str().unwrap();
        assert!(
            e.contains("field `after` makes a cycle: loop-a -> loop-b -> loop-a"),
            "{id}: {e}"
        );
    }
    assert!(grid.blocked().is_empty() && grid.queued().is_empty());
}

/// Two tasks pushed by hand that wait for each other behind one parent:
/// as the parent's result moves them on, the loop is found, and both fail
/// in that commit naming it (before, the one moved first went on waiting
/// under the other, failed, until a sweep; a drain ended with it there).
#[test]
fn a_loop_behind_one_parent_fails_whole_when_the_parent_ends() {
    let grid = Grid::new();
    let task = |id: &str, after: &[&str]| {
        let t =
            json!({"task_id": id, "script": "echo never", "timeout_seconds": 30, "after": after});
        (format!("tasks/queue/{id}.json"), t.to_string().into_bytes())
    };
    grid.commit_files(
        &[
            (
                "tasks/queue/p.json".to_owned(),
                json!({"task_id": "p", "script": "echo p", "timeout_seconds": 30})
                    .to_string()
                    .into_bytes(),
            ),
            task("ring-a", &["p", "ring-b"]),
            task("ring-b", &["p", "ring-a"]),
        ],
        "by hand, in one commit",
    );
    drained(&grid, "n1");
    let landed = commit_adding(&grid, "tasks/completed/n1@p.json");
    for id in ["ring-a", "ring-b"] {
        let r = json_at(&grid, &landed, &format!("tasks/failed/n1@{id}.json"));
        invalid_saying(
            &r,
            "field `after` makes a cycle: ring-a -> ring-b -> ring-a",
        );
    }
    assert!(grid.blocked().is_empty(), "{:?}", grid.blocked());
}

/// `r` is an `invalid` result whose error says `what`.
fn invalid_saying(r: &Value, what: &str) {
    assert_eq!(r["status"], "invalid", "{r}");
    let e = r["error"].as_str().unwrap_or_default();
    assert!(e.contains(what), "{e}");
}

/// A task whose `after` names a task not on the grid is invalid as it is
/// filed, wherever the name stands in the list: not only once the parents
/// named before it have finished (the parent here runs until the test has
/// seen the refusal).
#[test]
fn an_unknown_parent_anywhere_in_after_is_invalid_at_once() {
    let grid = Grid::new();
    let go = grid.path("go");
    let blocker = format!("while [ ! -e {} ]; do sleep 0.05; done", go.display());
    submit(
        &grid,
        "parent",
        json!([{"task_id": "p", "script": blocker, "timeout_seconds": 120}]),
    );
    let mut spec = WorkerSpec::new(&grid, "n1");
    spec.drain = false;
    // A slot free while p runs: the node keeps looking at the queue.
    spec.extra = "concurrency = 2".into();
    let mut w = spawn_worker(&grid, &spec);
    wait_until("n1 runs p", Duration::from_secs(60), || {
        w.log_text().contains("running task_id=p")
    });
    grid.commit_files(
        &[(
            "tasks/queue/x.json".to_owned(),
            json!({"task_id": "x", "script": "echo never", "timeout_seconds": 30, "after": ["p", "ghost"]})
                .to_string()
                .into_bytes(),
        )],
        "a task after p and a task no one pushed",
    );
    wait_until(
        "x failed while p still runs",
        Duration::from_secs(60),
        || grid.files("tasks/failed").contains_key("n1@x.json"),
    );
    std::fs::write(&go, b"").unwrap();
    wait_until("p completed", Duration::from_secs(60), || {
        grid.files("tasks/completed").contains_key("n1@p.json")
    });
    stop_cleanly(std::slice::from_mut(&mut w));
    invalid_saying(
        &grid.json_files("tasks/failed")["n1@x.json"],
        "field `after` names `ghost`, which is not on the grid",
    );
    assert!(grid.blocked().is_empty(), "{:?}", grid.blocked());
}

#[test]
fn unknown_parents_and_cycles_are_refused_by_submit_and_validate() {
    let grid = Grid::new();
    let file = grid.path("cycle.json");
    std::fs::write(
        &file,
        json!([
            {"task_id": "a", "script": "true", "timeout_seconds": 5, "after": ["b"]},
            {"task_id": "b", "script": "true", "timeout_seconds": 5, "after": ["a"]},
        ])
        .to_string(),
    )
    .unwrap();
    let out = dgrid(&[
        "submit",
        "--repo",
        &grid.url(),
        "--task-file",
        file.to_str().unwrap(),
    ]);
    expect_refused(&out, "field `after` makes a cycle: a -> b -> a");
    let out = dgrid(&[
        "submit",
        "--repo",
        &grid.url(),
        "--script",
        "true",
        "--timeout",
        "5",
        "--id",
        "orphan",
        "--after",
        "ghost",
    ]);
    expect_refused(
        &out,
        "field `after` of `orphan` names `ghost`, which is neither among these tasks nor on the grid",
    );
    assert!(
        grid.queued().is_empty() && grid.blocked().is_empty(),
        "nothing pushed"
    );

    // The same, as a pull request's check sees them.
    let co = grid.path("checkout");
    git(
        grid.root.path(),
        &["clone", "--quiet", &grid.url(), "checkout"],
    );
    let q = co.join("tasks/queue");
    std::fs::write(
        q.join("a.json"),
        r#"{"task_id":"a","script":"true","timeout_seconds":5,"after":["b"]}"#,
    )
    .unwrap();
    std::fs::write(
        q.join("b.json"),
        r#"{"task_id":"b","script":"true","timeout_seconds":5,"after":["a"]}"#,
    )
    .unwrap();
    std::fs::write(
        q.join("c.json"),
        r#"{"task_id":"c","script":"true","timeout_seconds":5,"after":["ghost"]}"#,
    )
    .unwrap();
    let out = dgrid(&[
        "validate",
        "--grid",
        co.to_str().unwrap(),
        q.to_str().unwrap(),
    ]);
    expect_code(&out, 1);
    let text = stdout(&out);
    assert!(
        text.contains("a.json: field `after` makes a cycle: a -> b -> a"),
        "{text}"
    );
    assert!(
        text.contains("c.json: field `after` of `c` names `ghost`"),
        "{text}"
    );
}

/// Many small graphs, three nodes racing: each parent's result lands in a
/// commit that also releases its dependants, while the other nodes are
/// claiming; and dependants submitted while their parent runs and lands.
/// Every task runs exactly once, never before the task it runs after has
/// its result, always with that result as its input.
#[test]
fn a_dependency_that_completes_while_its_dependants_are_claimed_and_submitted() {
    let grid = Grid::new();
    let mut tasks = Vec::new();
    for i in 0..15 {
        tasks.push(json!({"task_id": format!("p{i:02}"), "script": format!("sleep 0.{}; echo parent-{i}", i % 4), "timeout_seconds": 30}));
        for j in 0..2 {
            tasks.push(json!({
                "task_id": format!("c{i:02}-{j}"), "timeout_seconds": 30, "after": [format!("p{i:02}")],
                "script": format!("grep -q 'parent-{i}' \"$DGRID_INPUTS/p{i:02}.json\" && echo child-{i}-{j}"),
            }));
        }
    }
    tasks.push(
        json!({"task_id": "slow-parent", "script": "sleep 2; echo slow", "timeout_seconds": 30}),
    );
    submit(&grid, "many", Value::Array(tasks));
    let mut workers: Vec<WorkerProc> = (0..3)
        .map(|i| {
            let mut spec = WorkerSpec::new(&grid, &format!("racer-{i}"));
            spec.drain = false;
            spawn_worker(&grid, &spec)
        })
        .collect();
    // Dependants of the slow parent, submitted one by one as it is claimed,
    // runs and lands: each finds it running (and waits) or completed (and
    // is queued at once).
    wait_until("the slow parent's claim", Duration::from_secs(60), || {
        grid.files("tasks/in_progress")
            .contains_key("slow-parent.json")
            || results_by_task(&grid).contains_key("slow-parent")
    });
    for k in 0..6 {
        let out = dgrid(&[
            "submit",
            "--repo",
            &grid.url(),
            "--id",
            &format!("late-{k}"),
            "--timeout",
            "30",
            "--after",
            "slow-parent",
            "--script",
            "grep -q '\"stdout\": \"slow' \"$DGRID_INPUTS/slow-parent.json\" && echo late",
        ]);
        expect_code(&out, 0);
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_until("every task's result", Duration::from_secs(180), || {
        results_by_task(&grid).len() == 15 * 3 + 1 + 6
    });
    stop_cleanly(&mut workers);
    let r = results_by_task(&grid);
    for (id, res) in &r {
        assert_eq!(res["status"], "completed", "{id}: {res}");
        let parent = if id.starts_with('c') {
            Some(format!("p{}", &id[1..3]))
        } else if id.starts_with("late-") {
            Some("slow-parent".into())
        } else {
            None
        };
        if let Some(p) = parent {
            assert!(
                started(res) >= ended(&r[&p]),
                "{id} started before {p} ended"
            );
        }
    }
    assert!(grid.blocked().is_empty() && grid.queued().is_empty());
}

#[test]
fn a_priority_burst_mid_drain_starts_before_the_low_work_left() {
    let grid = Grid::new();
    // Low tasks long enough that a slow machine's syncs (a loaded one's
    // take a second or more) cost a few of them, not most.
    let low: Vec<Value> = (0..120)
        .map(|i| json!({"task_id": format!("low-{i:03}"), "script": "sleep 0.8", "timeout_seconds": 30, "priority": 10}))
        .collect();
    submit(&grid, "low", Value::Array(low));
    let mut workers: Vec<WorkerProc> = (0..4)
        .map(|i| {
            let mut spec = WorkerSpec::new(&grid, &format!("drain-{i}"));
            spec.drain = false;
            spawn_worker(&grid, &spec)
        })
        .collect();
    wait_until("24 low tasks done", Duration::from_secs(120), || {
        grid.results().len() >= 24
    });
    let high: Vec<Value> = (0..20)
        .map(|i| json!({"task_id": format!("high-{i:02}"), "script": "sleep 0.3", "timeout_seconds": 30, "priority": 90}))
        .collect();
    submit(&grid, "high", Value::Array(high));
    let pushed = dgrid_worker::time::now();
    // Only the burst is waited for: what low work is left then has not
    // started, which is what the test is about, and the rest of the drain
    // would only make the suite slower.
    wait_until("every high task's result", Duration::from_secs(300), || {
        grid.results()
            .iter()
            .filter(|(_, r)| {
                r["task_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("high"))
            })
            .count()
            == 20
    });
    stop_cleanly(&mut workers);
    let r = results_by_task(&grid);
    let last_high = r
        .iter()
        .filter(|(id, _)| id.starts_with("high"))
        .map(|(_, r)| started(r))
        .max()
        .unwrap();
    // A low task with no result when the workers stopped never started.
    let lows_after = |t: &chrono::DateTime<chrono::Utc>| {
        120 - r
            .iter()
            .filter(|(id, r)| id.starts_with("low") && started(r) <= *t)
            .count()
    };
    // All twenty high ones started while most of the low work left when
    // they arrived still waited.
    let left = lows_after(&pushed);
    let after = lows_after(&last_high);
    assert!(
        after * 2 >= left,
        "only {after} of the {left} low tasks left at the burst started after the last high one"
    );
    let given_back: usize = workers
        .iter()
        .map(|w| {
            w.log_text()
                .matches("giving back the claim: higher priority waits")
                .count()
        })
        .sum();
    eprintln!(
        "low claims given back for the burst: {given_back}; low tasks after the last high start: {after} of {left}"
    );
    // Claims a node made for its busy peers (a burst above what they hold)
    // were all taken: none sat unanswered until it went back.
    for w in &workers {
        let log = w.log_text();
        assert!(!log.contains("not answered"), "{log}");
    }
}

/// One node, low work claimed ahead and a chain of high work: each link,
/// released by the result of the one before, starts at that one's slot,
/// before the low claims held (before, each link waited out a low task
/// the slot had started blind to it: `h1 low0 h2 low0 h3 low1 h4`).
#[test]
fn a_chain_of_high_work_runs_link_after_link_before_low_claims_held() {
    let grid = Grid::new();
    let mut tasks: Vec<Value> = (0..8)
        .map(|i| json!({"task_id": format!("low-{i}"), "script": "sleep 1", "timeout_seconds": 30, "priority": 10}))
        .collect();
    tasks
        .push(json!({"task_id": "h1", "script": "sleep 1", "timeout_seconds": 30, "priority": 90}));
    for i in 2..=4 {
        tasks.push(json!({"task_id": format!("h{i}"), "script": "sleep 1", "timeout_seconds": 30, "priority": 90, "after": [format!("h{}", i - 1)]}));
    }
    submit(&grid, "chain", Value::Array(tasks));
    drained(&grid, "n1");
    let r = results_by_task(&grid);
    for i in 2..=4 {
        let (before, link) = (&r[&format!("h{}", i - 1)], &r[&format!("h{i}")]);
        let between: Vec<&String> = r
            .iter()
            .filter(|(id, low)| {
                id.starts_with("low-")
                    && started(low) > ended(before)
                    && started(low) < started(link)
            })
            .map(|(id, _)| id)
            .collect();
        assert!(
            between.is_empty(),
            "h{i} waited for {between:?}: {}",
            std::fs::read_to_string(grid.path("n1.log")).unwrap_or_default()
        );
    }
}

/// A node `holder`, registered and idle, then six tasks of priority 10
/// arrive (a node starting with a backlog claims only its free slots):
/// alone, it claims them all and runs `blocker_script` first, holding
/// five tasks (`true`) it has not started.
fn holding_six_claims(grid: &Grid, blocker_script: &str) -> WorkerProc {
    let mut low = vec![
        json!({"task_id": "blocker", "script": blocker_script, "timeout_seconds": 120, "priority": 10}),
    ];
    low.extend((0..5).map(|i| json!({"task_id": format!("low-{i}"), "script": "true", "timeout_seconds": 30, "priority": 10})));
    let mut spec = WorkerSpec::new(grid, "holder");
    spec.drain = false;
    let w = spawn_worker(grid, &spec);
    wait_until("registered", Duration::from_secs(20), || {
        grid.files("nodes").len() == 1
    });
    submit(grid, "low", Value::Array(low));
    wait_until("all six claimed", Duration::from_secs(30), || {
        grid.files("tasks/in_progress").len() == 6
    });
    w
}

/// One node busy with a long low task and holding five more it has not
/// started: a high one pushed meanwhile is claimed at its next look, and
/// runs next, before the low ones it held.
#[test]
fn work_of_a_higher_priority_takes_the_next_slot_from_claims_held() {
    let grid = Grid::new();
    let mut w = holding_six_claims(&grid, "sleep 5");
    submit(
        &grid,
        "high",
        json!([{"task_id": "urgent", "script": "echo urgent", "timeout_seconds": 30, "priority": 90}]),
    );
    let r = stop_after_results(&grid, &mut w, 7);
    let urgent = started(&r["urgent"]);
    assert!(
        urgent >= ended(&r["blocker"]),
        "it waited for the running task:\n{}",
        w.log_text()
    );
    for i in 0..5 {
        assert!(
            started(&r[&format!("low-{i}")]) > urgent,
            "low-{i} ran before the urgent task"
        );
    }
}

/// As above, with the urgent task pushed by hand to the inbox
/// (`tasks/queue/`), as a pull request or the forge's web editor would:
/// the node's look reads the inbox too, so the task is claimed while the
/// node still holds its low claims, and runs next. Before, it waited in
/// the inbox until the node claimed again, after the five it held.
#[test]
fn work_of_a_higher_priority_pushed_by_hand_takes_the_next_slot_from_claims_held() {
    let grid = Grid::new();
    // The running task ends when the test says so: after the urgent task
    // is claimed, whatever the machine's load.
    let gate = grid.path("gate");
    let blocker = format!("while [ ! -e '{}' ]; do sleep 0.1; done", gate.display());
    let mut w = holding_six_claims(&grid, &blocker);
    push_by_hand(
        &grid,
        &json!({"task_id": "urgent", "script": "echo urgent", "timeout_seconds": 30, "priority": 90}),
    );
    wait_until(
        "the urgent task claimed while the node holds its low claims",
        Duration::from_secs(60),
        || grid.files("tasks/in_progress").contains_key("urgent.json"),
    );
    std::fs::write(&gate, b"").unwrap();
    let r = stop_after_results(&grid, &mut w, 7);
    let urgent = started(&r["urgent"]);
    for i in 0..5 {
        assert!(
            started(&r[&format!("low-{i}")]) > urgent,
            "low-{i} ran before the urgent task:\n{}",
            w.log_text()
        );
    }
}

/// The look at a free slot: a node holding claims of tasks shorter than
/// its result delay makes no other sync between two of them, and its
/// periodic look (half a poll interval, here 30 s) is far off; higher work
/// pushed meanwhile still starts at its next free slot.
#[test]
fn higher_work_starts_at_the_next_free_slot_between_periodic_looks() {
    let grid = Grid::new();
    let low: Vec<Value> = (0..10)
        .map(|i| json!({"task_id": format!("low-{i}"), "script": "sleep 0.8", "timeout_seconds": 30, "priority": 10}))
        .collect();
    submit(&grid, "low", Value::Array(low));
    let mut w = holder_looking_rarely(&grid);
    // Alone, once it has timed a task it holds all the rest.
    wait_until(
        "two results, the rest held",
        Duration::from_secs(60),
        || grid.results().len() >= 2 && grid.files("tasks/in_progress").len() >= 5,
    );
    submit(
        &grid,
        "high",
        json!([{"task_id": "urgent", "script": "echo urgent", "timeout_seconds": 30, "priority": 90}]),
    );
    let pushed = dgrid_worker::time::now();
    let r = stop_after_results(&grid, &mut w, 11);
    let urgent = started(&r["urgent"]);
    let lows_before: Vec<&String> = r
        .iter()
        .filter(|(id, v)| id.starts_with("low") && started(v) > pushed && started(v) < urgent)
        .map(|(id, _)| id)
        .collect();
    // The slot that frees first after the push takes it; one more low may
    // start if that slot freed while the push was on its way.
    assert!(
        lows_before.len() <= 1,
        "low tasks started after the push and before the urgent one: {lows_before:?}\n{}",
        w.log_text()
    );
}

/// The look at a free slot comes after the slot has started its next
/// claim, so that the slot never waits for a fetch: higher work that the
/// look finds takes the slot back from the run that just started, and that
/// claim runs again later, once. Here the one look that could see the
/// higher work first is the one at the slot: it is pushed after the look
/// ahead of the long task's end (made by the mean of the short tasks) and
/// after the results before it landed, and the periodic look is 30 s off.
#[test]
fn higher_work_found_just_after_a_start_takes_the_slot_back() {
    found_just_after_a_start(|grid, urgent| submit(grid, "high", json!([urgent])));
}

/// As above, with the urgent task pushed by hand to the inbox, where its
/// level is known only once read: the look at the free slot reads the
/// inbox too. Before, it listed the lanes alone, and the task waited for
/// the periodic look (30 s off here) while the low claims ran.
#[test]
fn higher_work_pushed_by_hand_just_after_a_start_takes_the_slot_back() {
    found_just_after_a_start(|grid, urgent| push_by_hand(grid, &urgent));
}

/// `task` as a file in the inbox, one commit: as a pull request or the
/// forge's web editor would queue it.
fn push_by_hand(grid: &Grid, task: &Value) {
    let id = task["task_id"].as_str().unwrap();
    grid.commit_files(
        &[(
            format!("tasks/queue/{id}.json"),
            task.to_string().into_bytes(),
        )],
        &format!("{id}, by hand"),
    );
}

/// Short tasks, then a long one, then two more; `push` queues an urgent
/// task while the long one runs, after the look ahead of its end.
fn found_just_after_a_start(push: impl FnOnce(&Grid, Value)) {
    let grid = Grid::new();
    let mut low: Vec<Value> = (0..4)
        .map(|i| json!({"task_id": format!("a-{i}"), "script": "sleep 0.3", "timeout_seconds": 30, "priority": 10}))
        .collect();
    low.push(
        json!({"task_id": "b-long", "script": "sleep 8", "timeout_seconds": 60, "priority": 10}),
    );
    low.extend((0..2).map(|i| json!({"task_id": format!("c-{i}"), "script": "sleep 1", "timeout_seconds": 30, "priority": 10})));
    submit(&grid, "low", Value::Array(low));
    let mut w = holder_looking_rarely(&grid);
    wait_until(
        "the long task running, the short ones' results on main",
        Duration::from_secs(60),
        || w.log_text().contains("running task_id=b-long") && grid.results().len() >= 4,
    );
    assert!(
        !w.log_text().contains("task_id=b-long status"),
        "the long task ended before the higher work could be pushed:\n{}",
        w.log_text()
    );
    push(
        &grid,
        json!({"task_id": "urgent", "script": "echo urgent", "timeout_seconds": 30, "priority": 90}),
    );
    let r = stop_after_results(&grid, &mut w, 8);
    let log = w.log_text();
    assert!(
        log.contains("taking back the start") && log.contains("task_id=c-0 level=10"),
        "{log}"
    );
    let urgent = started(&r["urgent"]);
    assert!(
        urgent >= ended(&r["b-long"]),
        "it waited for the running task"
    );
    assert!(
        started(&r["c-0"]) > urgent,
        "the start taken back ran again after the urgent task"
    );
    assert_eq!(log.matches("running task_id=c-0").count(), 2, "{log}");
    for (id, res) in &r {
        assert_eq!(res["status"], "completed", "{id}");
    }
}

/// A node named `holder` that keeps running once the queue is empty and
/// looks at the queue every 30 s (half its poll interval): between two of
/// its own syncs, only a look at a free slot can see new work.
fn holder_looking_rarely(grid: &Grid) -> WorkerProc {
    let mut spec = WorkerSpec::new(grid, "holder");
    spec.drain = false;
    spec.env.push(("PULL_INTERVAL".into(), "60".into()));
    spawn_worker(grid, &spec)
}

/// Wait for `n` results, stop the worker cleanly, and give the results by
/// task.
fn stop_after_results(grid: &Grid, w: &mut WorkerProc, n: usize) -> BTreeMap<String, Value> {
    wait_until("every result", Duration::from_secs(120), || {
        grid.results().len() == n
    });
    stop_cleanly([w]);
    results_by_task(grid)
}

fn record(grid: &Grid, node: &str) -> Value {
    serde_json::from_slice(&grid.files("nodes")[&format!("{node}.json")]).unwrap()
}

/// A batch run (`--drain`, a volunteer's cron job) at its limit ends with
/// what it may run now, the rest left queued: it sat paused until its
/// hour was over (a sweep's, killed by its timeout).
#[test]
fn a_drain_paused_by_its_limits_ends_with_the_rest_queued() {
    let grid = Grid::new();
    let tasks: Vec<(String, String, u64)> = (0..4)
        .map(|i| (format!("t{i}"), "echo hi".into(), 30))
        .collect();
    grid.submit(&tasks);
    let mut spec = WorkerSpec::new(&grid, "batch");
    spec.extra = "[budget]\ntasks_per_hour = 2\n".into();
    let mut w = spawn_worker(&grid, &spec);
    assert!(
        w.wait_exit(Duration::from_secs(90)).success(),
        "{}",
        w.log_text()
    );
    assert!(
        w.log_text()
            .contains("paused by the volunteer's limits and nothing pending; --drain ends here"),
        "{}",
        w.log_text()
    );
    assert_eq!(grid.results().len(), 2);
    assert_eq!(grid.queued().len(), 2, "the rest wait, none held");
    assert!(grid.files("tasks/in_progress").is_empty());
}

#[test]
fn a_node_at_its_hourly_cap_stops_claiming_holds_nothing_and_says_so() {
    let grid = Grid::new();
    let tasks: Vec<(String, String, u64)> = (0..6)
        .map(|i| (format!("t{i}"), "echo hi".into(), 30))
        .collect();
    grid.submit(&tasks);
    let port = free_port();
    let mut spec = WorkerSpec::new(&grid, "capped");
    spec.drain = false;
    spec.extra = format!("status_listen = \"127.0.0.1:{port}\"\n[budget]\ntasks_per_hour = 3\n");
    let mut w = spawn_worker(&grid, &spec);
    wait_until(
        "three results and the pause in the record",
        Duration::from_secs(60),
        || {
            grid.results().len() == 3
                && grid.files("nodes").contains_key("capped.json")
                && record(&grid, "capped")["paused"].is_string()
        },
    );
    let paused = record(&grid, "capped")["paused"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        paused.starts_with("at its limit of 3 tasks an hour until "),
        "{paused}"
    );
    // A node with limits judges what it runs by its budget: no peer claims
    // for it (PROTOCOL.md, Assigned claims).
    assert!(
        record(&grid, "capped").get("takes_assigned").is_none(),
        "{}",
        record(&grid, "capped")
    );
    // Nothing held while it waits for its budget: the rest stay queued.
    std::thread::sleep(Duration::from_secs(3));
    assert!(grid.files("tasks/in_progress").is_empty());
    assert_eq!(grid.queued().len(), 3);
    assert_eq!(grid.results().len(), 3);
    let (code, body) = http_get(&format!("127.0.0.1:{port}"), "/api/status");
    assert_eq!(code, 200);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert!(
        status["paused"]
            .as_str()
            .unwrap()
            .contains("limit of 3 tasks"),
        "{status}"
    );
    assert!(
        status["status_line"]
            .as_str()
            .unwrap()
            .contains("paused: at its limit"),
        "{status}"
    );
    let (_, page) = http_get(&format!("127.0.0.1:{port}"), "/");
    assert!(
        page.contains("id=\"paused\" class=\"bad\">at its limit of 3 tasks an hour"),
        "{page}"
    );
    let out = dgrid(&["status", "--repo", &grid.bare.display().to_string()]);
    assert!(
        stdout(&out).contains("! paused: at its limit of 3 tasks an hour"),
        "{}",
        stdout(&out)
    );
    // It dies while it waits for its budget (nothing has started since
    // the three), and is started again: it counts the hour on. Its first
    // record says paused, and nothing more is claimed.
    w.signal(nix::sys::signal::Signal::SIGKILL);
    w.wait_exit(Duration::from_secs(30));
    let first_start = record(&grid, "capped")["started_at"].clone();
    let mut w = spawn_worker(&grid, &spec);
    wait_until(
        "the restarted node's record, paused",
        Duration::from_secs(60),
        || {
            let r = record(&grid, "capped");
            r["started_at"] != first_start && r["paused"].is_string()
        },
    );
    let again = record(&grid, "capped");
    assert!(
        again["paused"]
            .as_str()
            .is_some_and(|p| p.starts_with("at its limit of 3 tasks an hour")),
        "{again}\n{}",
        w.log_text()
    );
    assert!(grid.files("tasks/in_progress").is_empty());
    assert_eq!(grid.results().len(), 3);
    assert!(w.log_text().contains("runs=3"), "{}", w.log_text());
    stop_cleanly([&mut w]);
}

/// A node killed (SIGKILL) right after a few starts under its cap of
/// tasks an hour counts them after its restart: a tester's node capped
/// at 8 had kept 1 of its 5 starts (the file was written every 10 s at
/// most), and ran 12 in the hour.
#[test]
fn a_node_killed_under_its_hourly_cap_counts_every_start_after_a_restart() {
    let grid = Grid::new();
    let tasks: Vec<(String, String, u64)> = (0..12)
        .map(|i| (format!("h{i}"), "sleep 1".into(), 30))
        .collect();
    grid.submit(&tasks);
    let mut spec = WorkerSpec::new(&grid, "crashy");
    spec.drain = false;
    spec.extra = "[budget]\ntasks_per_hour = 6\n".into();
    let mut w = spawn_worker(&grid, &spec);
    let starts = |log: &str| log.matches("running task_id=").count();
    wait_until("three starts", Duration::from_secs(60), || {
        starts(&w.log_text()) >= 3
    });
    w.signal(nix::sys::signal::Signal::SIGKILL);
    w.wait_exit(Duration::from_secs(30));
    // The log is appended to: the restart's lines follow.
    let first = w.log_text();
    let mut w = spawn_worker(&grid, &spec);
    wait_until(
        "the restarted node at its cap",
        Duration::from_secs(90),
        || {
            w.log_text()[first.len()..]
                .contains("paused by the volunteer's limits: claiming nothing")
        },
    );
    let (before, all) = (starts(&first), starts(&w.log_text()));
    assert!(
        all <= 6,
        "{before} starts before the crash and {} after, against a cap of 6\n{}",
        all - before,
        w.log_text()
    );
    stop_cleanly([&mut w]);
}

#[test]
fn a_node_in_its_quiet_hours_takes_nothing() {
    let grid = Grid::new();
    grid.submit(&[("quiet".into(), "echo hi".into(), 30)]);
    // A window around now, in UTC (the worker's local time here).
    let now = chrono::Utc::now();
    let window = format!(
        "{}-{}",
        (now - chrono::Duration::hours(1)).format("%H:%M"),
        (now + chrono::Duration::hours(1)).format("%H:%M")
    );
    let mut spec = WorkerSpec::new(&grid, "sleepy");
    spec.drain = false;
    spec.env.push(("TZ".into(), "UTC".into()));
    spec.extra = format!("[budget]\nquiet_hours = [\"{window}\"]\n");
    let mut w = spawn_worker(&grid, &spec);
    wait_until("the pause in the record", Duration::from_secs(60), || {
        grid.files("nodes").contains_key("sleepy.json")
            && record(&grid, "sleepy")["paused"].is_string()
    });
    let paused = record(&grid, "sleepy")["paused"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        paused.starts_with(&format!("quiet hours ({window}, local time) until ")),
        "{paused}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(grid.results().is_empty() && grid.files("tasks/in_progress").is_empty());
    assert_eq!(grid.queued().len(), 1);
    // It says so in the record it registers with, not in a commit of its
    // own right after: one commit wrote its record, and says paused.
    let writes = git(
        &grid.bare,
        &["log", "--format=%H", "main", "--", "nodes/sleepy.json"],
    )
    .stdout;
    let writes: Vec<&str> = std::str::from_utf8(&writes).unwrap().lines().collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    stop_cleanly([&mut w]);
}

#[test]
fn a_node_holds_no_claim_it_cannot_start_before_its_quiet_hours() {
    // Quiet hours that begin 20 s from now: a zone whose clock is ahead of
    // UTC by the seconds that put their start on a minute (POSIX TZ takes
    // seconds), so the test waits 20 s, not up to a minute.
    use chrono::Timelike;
    let grid = Grid::new();
    let tasks: Vec<(String, String, u64)> = (0..60)
        .map(|i| (format!("m{i}"), "sleep 1".into(), 10))
        .collect();
    grid.submit(&tasks);
    let begins = (chrono::Utc::now() + chrono::Duration::seconds(20))
        .with_nanosecond(0)
        .unwrap();
    let ahead = (60 - begins.second()) % 60;
    let local = begins + chrono::Duration::seconds(ahead.into());
    let window = format!(
        "{}-{}",
        local.format("%H:%M"),
        (local + chrono::Duration::minutes(10)).format("%H:%M")
    );
    let mut spec = WorkerSpec::new(&grid, "evening");
    spec.drain = false;
    spec.env.push(("TZ".into(), format!("XXX-0:00:{ahead:02}")));
    spec.extra = format!("[budget]\nquiet_hours = [\"{window}\"]\n");
    let mut w = spawn_worker(&grid, &spec);
    let until =
        |t: chrono::DateTime<chrono::Utc>| (t - chrono::Utc::now()).to_std().unwrap_or_default();
    std::thread::sleep(until(begins - chrono::Duration::seconds(4)));
    // In the last seconds before them: one running, and what its slot
    // starts before they begin (1 s tasks). Without the bound, about 40.
    let mut held = 0;
    while chrono::Utc::now() < begins - chrono::Duration::seconds(1) {
        held = held.max(grid.files("tasks/in_progress").len());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(held <= 8, "{held} claims held 4 s before quiet hours");
    wait_until("the pause in the record", Duration::from_secs(60), || {
        record(&grid, "evening")["paused"]
            .as_str()
            .is_some_and(|p| p.starts_with("quiet hours"))
    });
    wait_until("nothing held", Duration::from_secs(30), || {
        grid.files("tasks/in_progress").is_empty()
    });
    let given_back = w
        .log_text()
        .matches("giving back the claim: the volunteer's limits")
        .count();
    assert!(
        given_back <= 5,
        "{given_back} claims given back\n{}",
        w.log_text()
    );
    assert!(!grid.results().is_empty(), "it worked until then");
    stop_cleanly([&mut w]);
}

/// Quiet hours that begin while every slot is busy are said when they
/// begin, while the task runs, not at its end: nothing else wakes a node
/// with no room to claim (a tester's node said them 18 s late behind a
/// task of 40 s).
#[test]
fn quiet_hours_that_begin_while_every_slot_is_busy_are_said_at_once() {
    use chrono::Timelike;
    let grid = Grid::new();
    // Ends before the node's first reap after its start (60 s on), the
    // one other thing that would wake it while the task runs.
    grid.submit(&[("long".into(), "sleep 50".into(), 120)]);
    // Quiet hours that begin 25 s from now, on a minute of a zone ahead
    // of UTC by the seconds that put them there (as above).
    let begins = (chrono::Utc::now() + chrono::Duration::seconds(25))
        .with_nanosecond(0)
        .unwrap();
    let ahead = (60 - begins.second()) % 60;
    let local = begins + chrono::Duration::seconds(ahead.into());
    let window = format!(
        "{}-{}",
        local.format("%H:%M"),
        (local + chrono::Duration::minutes(10)).format("%H:%M")
    );
    let port = free_port();
    let mut spec = WorkerSpec::new(&grid, "busy");
    spec.drain = false;
    spec.env.push(("TZ".into(), format!("XXX-0:00:{ahead:02}")));
    spec.extra =
        format!("status_listen = \"127.0.0.1:{port}\"\n[budget]\nquiet_hours = [\"{window}\"]\n");
    let mut w = spawn_worker(&grid, &spec);
    let running = |grid: &Grid| {
        grid.files("nodes").contains_key("busy.json")
            && record(grid, "busy")["running"] == json!(["long"])
    };
    wait_until("the long task running", Duration::from_secs(60), || {
        running(&grid)
    });
    assert!(
        chrono::Utc::now() < begins,
        "the task started after the quiet hours began: the test says nothing\n{}",
        w.log_text()
    );
    wait_until("the pause in the record", Duration::from_secs(90), || {
        record(&grid, "busy")["paused"].is_string()
    });
    let r = record(&grid, "busy");
    assert!(
        r["paused"]
            .as_str()
            .unwrap()
            .starts_with(&format!("quiet hours ({window}, local time) until ")),
        "{r}"
    );
    // Said while the task runs: the record that says it still lists it,
    // and its result is yet to come.
    assert_eq!(r["running"], json!(["long"]), "{r}\n{}", w.log_text());
    assert!(grid.results().is_empty(), "{}", w.log_text());
    let (code, body) = http_get(&format!("127.0.0.1:{port}"), "/api/status");
    assert_eq!(code, 200);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert!(
        status["paused"]
            .as_str()
            .is_some_and(|p| p.starts_with("quiet hours")),
        "{status}"
    );
    // The task that started before them runs to its end.
    stop_after_results(&grid, &mut w, 1);
}

#[test]
fn a_node_at_its_cap_of_task_time_starts_nothing_measured_to_pass_it() {
    // The sweep's node: two slots, 10 s of task time an hour, tasks of
    // 3 s. The first runs alone (unmeasured); 7 s left hold two more, not
    // three: 9 s in all. Rounding up, it started a fourth (12 s).
    let grid = Grid::new();
    let tasks: Vec<(String, String, u64)> = (0..6)
        .map(|i| (format!("s{i}"), "sleep 3".into(), 30))
        .collect();
    grid.submit(&tasks);
    let mut spec = WorkerSpec::new(&grid, "budgeted");
    spec.drain = false;
    spec.extra = "concurrency = 2\n[budget]\ntask_seconds_per_hour = 10\n".into();
    let mut w = spawn_worker(&grid, &spec);
    wait_until("the pause in the record", Duration::from_secs(90), || {
        grid.files("nodes").contains_key("budgeted.json")
            && record(&grid, "budgeted")["paused"]
                .as_str()
                .is_some_and(|p| p.contains("limit of 10 s of task time an hour"))
    });
    wait_until("nothing held", Duration::from_secs(30), || {
        grid.files("tasks/in_progress").is_empty()
    });
    let results = results_by_task(&grid);
    let ran: u64 = results
        .values()
        .map(|r| r["duration_ms"].as_u64().unwrap())
        .sum();
    // A task may run past its measured length by a little (a loaded
    // machine): half a second of slack, far from the 12 s of a fourth.
    assert!(
        (2..=3).contains(&results.len()) && ran <= 10_500,
        "{} tasks, {ran} ms of task time\n{}",
        results.len(),
        w.log_text()
    );
    assert_eq!(grid.queued().len(), 6 - results.len());
    stop_cleanly([&mut w]);
}

#[test]
fn hostile_entries_in_lanes_and_blocked_go_to_failed_with_a_named_error() {
    let grid = Grid::new();
    let task = |id: &str, extra: &str| {
        format!(r#"{{"task_id":"{id}","script":"echo {id}","timeout_seconds":5{extra}}}"#)
            .into_bytes()
    };
    let big = {
        let mut b = b"{\"task_id\":\"big\",\"script\":\"".to_vec();
        b.extend(std::iter::repeat_n(b'x', 300 * 1024));
        b.extend(b"\",\"timeout_seconds\":5}");
        b
    };
    grid.commit_files(
        &[
            ("tasks/lanes/stray.json".into(), task("stray", "")),
            // The same directory twice: the second is a copy of the first.
            (
                "tasks/lanes/p20/any/20261130T1200/dup.json".into(),
                task("dup", r#","priority":20"#),
            ),
            (
                "tasks/lanes/p21/any/20261130T1200/dup.json".into(),
                task("dup", r#","priority":20"#),
            ),
            (
                "tasks/lanes/p7/any/20261130T1200/short-p.json".into(),
                task("short-p", ""),
            ),
            (
                "tasks/lanes/p50/GPU/20261130T1200/upper.json".into(),
                task("upper", ""),
            ),
            (
                "tasks/lanes/p50/any/yesterday/when.json".into(),
                task("when", ""),
            ),
            (
                "tasks/lanes/p50/any/20261130T1200/deep/x.json".into(),
                task("x", ""),
            ),
            (
                "tasks/lanes/p50/any/20261130T1200/broken.json".into(),
                b"{not json".to_vec(),
            ),
            ("tasks/lanes/p50/any/20261130T1200/big.json".into(), big),
            (
                "tasks/lanes/p50/any/20261130T1200/other.json".into(),
                task("mismatch", ""),
            ),
            // Fields that say another place: moved there, then run.
            (
                "tasks/lanes/p10/any/20261130T1200/misfiled.json".into(),
                task("misfiled", r#","priority":90"#),
            ),
            ("tasks/blocked/stray.json".into(), task("b-stray", "")),
            (
                "tasks/blocked/nobody/orphan-child.json".into(),
                task("orphan-child", r#","after":["nobody"]"#),
            ),
            // Pushed where tasks are pushed, with `after`s that can never
            // be met: named by the file pushed, not the place under
            // `blocked/` the plan that fails them filed them first.
            (
                "tasks/queue/unk.json".into(),
                task("unk", r#","after":["nosuch"]"#),
            ),
            (
                "tasks/queue/cyc-a.json".into(),
                task("cyc-a", r#","after":["cyc-b"]"#),
            ),
            (
                "tasks/queue/cyc-b.json".into(),
                task("cyc-b", r#","after":["cyc-a"]"#),
            ),
        ],
        "hostile lanes",
    );
    drained(&grid, "sturdy");
    let failed = grid.json_files("tasks/failed");
    let errors = errors_of(&failed).join("\n");
    for want in [
        "tasks/lanes/stray.json: is not where a queued task can be",
        "tasks/lanes/p21: is a copy of another directory of the lanes",
        "tasks/lanes/p7/any/20261130T1200/short-p.json: is under \"p7\", which is not a priority",
        "tasks/lanes/p50/GPU/20261130T1200/upper.json: is under \"GPU\", which is not a class",
        "tasks/lanes/p50/any/yesterday/when.json: is under \"yesterday\", which is not a batch",
        "tasks/lanes/p50/any/20261130T1200/deep/x.json: is not where a queued task can be",
        "tasks/lanes/p50/any/20261130T1200/broken.json: is not valid JSON",
        "tasks/lanes/p50/any/20261130T1200/big.json: is 307",
        "tasks/lanes/p50/any/20261130T1200/other.json: field `task_id` is \"mismatch\" but the file is named \"other\".json",
        "tasks/blocked/stray.json: is not where a waiting task can be",
        "tasks/blocked/nobody/orphan-child.json: field `after` names `nobody`, which is not on the grid",
        "tasks/queue/unk.json: field `after` names `nosuch`, which is not on the grid",
        "tasks/queue/cyc-a.json: field `after` makes a cycle",
        "tasks/queue/cyc-b.json: field `after` makes a cycle",
    ] {
        assert!(errors.contains(want), "{want:?} not in:\n{errors}");
    }
    assert_eq!(failed["sturdy@orphan-child.json"]["status"], "invalid");
    let done = grid.json_files("tasks/completed");
    assert_eq!(done["sturdy@misfiled.json"]["stdout"], "misfiled\n");
    assert_eq!(done["sturdy@dup.json"]["stdout"], "dup\n");
    assert!(
        grid.queued().is_empty() && grid.blocked().is_empty(),
        "{:?}",
        grid.lane_paths()
    );
}

#[test]
fn archive_keeps_the_results_a_waiting_task_needs() {
    let grid = Grid::new();
    submit(
        &grid,
        "deps",
        json!([
            {"task_id": "old-parent", "script": "echo parent", "timeout_seconds": 30},
            {"task_id": "filler-1", "script": "true", "timeout_seconds": 30},
            {"task_id": "filler-2", "script": "true", "timeout_seconds": 30},
        ]),
    );
    drained(&grid, "w");
    // A child of the finished parent, and one of a parent still to come.
    submit(
        &grid,
        "later",
        json!([
            {"task_id": "gate", "script": "true", "timeout_seconds": 30, "requires": ["nobody-has-this"]},
            {"task_id": "child", "timeout_seconds": 30, "after": ["old-parent", "gate"],
             "script": "cat \"$DGRID_INPUTS/old-parent.json\""},
        ]),
    );
    assert_eq!(grid.blocked().len(), 1);
    let out = dgrid(&["archive", "--repo", &grid.url(), "--keep", "0"]);
    expect_code(&out, 0);
    assert!(
        crate::tools_fixture::stderr(&out)
            .contains("1 of them because a task still to run runs after them"),
        "{}",
        crate::tools_fixture::stderr(&out)
    );
    let main = grid.json_files("tasks/completed");
    assert_eq!(main.keys().collect::<Vec<_>>(), ["w@old-parent.json"]);
    assert_eq!(grid.files_on("archive", "tasks/completed").len(), 2);
}

/// A burst queued alone, while the low work it came over is all claimed,
/// is still shared: each node takes its share of the burst, not its share
/// of all the work in the grid (which would cover the whole burst). The
/// low work is out of the queue's sight, and a node knows of it from its
/// peers' records (`holds_level`) or from its own outbox (claims it handed
/// back for the burst and has not pushed yet). A grid of older workers,
/// whose records say nothing, looks like a backlog at the burst's level.
/// (A plan on a real repository; four live nodes, 40 low claims, 8 urgent
/// tasks queued.)
#[test]
fn a_burst_over_low_work_held_out_of_the_queues_sight_is_shared() {
    use crate::common::plan::{PlainNode, plan_at};
    use dgrid_worker::grid::{Id, NodeRecord, NodeStatus};
    use dgrid_worker::service::outbox::{Finish, OutboxEntry};
    use dgrid_worker::service::sync::SyncRequest;

    let now = dgrid_worker::time::format(dgrid_worker::time::now());
    let claims = |peers_say: Option<u8>, outbox: &[OutboxEntry]| -> usize {
        let grid = Grid::new();
        let mut files: Vec<(String, Vec<u8>)> = (1..4)
            .map(|i| {
                let id = Id::parse(&format!("n{i}")).unwrap();
                let record = NodeRecord {
                    holds_level: peers_say,
                    ..NodeRecord::new(id, NodeStatus::Busy, now.clone())
                };
                (
                    format!("nodes/n{i}.json"),
                    serde_json::to_vec(&record).unwrap(),
                )
            })
            .collect();
        files.extend((0..40).map(|i| {
            let body = json!({"task_id": format!("low-{i:02}"), "script": "true", "timeout_seconds": 30, "priority": 10,
                "claim": {"node_id": format!("n{}", i % 4), "claimed_at": now, "deadline": now, "attempt": 1}});
            (
                format!("tasks/in_progress/low-{i:02}.json"),
                body.to_string().into_bytes(),
            )
        }));
        grid.commit_files(&files, "a drain of low work, all claimed");
        submit(
            &grid,
            "burst",
            Value::Array(
                (0..8)
                    .map(|i| json!({"task_id": format!("high-{i}"), "script": "true", "timeout_seconds": 30, "priority": 90}))
                    .collect(),
            ),
        );
        let node = PlainNode::new("n0");
        let req = SyncRequest {
            outbox,
            share_up_to: 100,
            ..node.request(1)
        };
        let report = plan_at(&grid.url(), &req);
        assert!(
            report
                .claimed
                .iter()
                .all(|c| c.task.task_id.as_str().starts_with("high-")),
            "only the burst is queued"
        );
        report.claimed.len()
    };
    let handed_back = [OutboxEntry {
        task_id: Id::parse("low-00").unwrap(),
        attempt: 1,
        claimed_at: now.clone(),
        finish: Finish::Requeue {
            reason: "n0 handed it back for work of a higher priority".into(),
            preempted: true,
        },
        ran: None,
    }];
    assert_eq!(
        claims(Some(10), &[]),
        2,
        "the peers hold level 10: its share of the burst among four"
    );
    assert_eq!(
        claims(None, &handed_back),
        2,
        "its own outbox holds level 10: the same"
    );
    assert_eq!(
        claims(None, &[]),
        8,
        "nothing says so: the burst is the backlog, and its share of all 48 (12) covers it"
    );
    assert_eq!(
        claims(Some(90), &[]),
        8,
        "the peers hold work as high: the same"
    );
    assert_eq!(
        claims(Some(89), &[]),
        8,
        "one step below is the same work aged since the record was written"
    );
}

/// A look that owes the nameless a turn against the claims of bob it
/// holds passes bob's queued task by, unread, and claims the nameless
/// one after it. Its bytes were read with the sample in claim order and
/// handed out in turn: the task after one passed by was judged by its
/// neighbour's bytes, failed as "`task_id` is b-1 but the file is named
/// c-1", and its dependants with it (a helper's chain of 200 lost 100
/// links so, in every run with a submitter's bursts beside it).
#[test]
fn a_task_after_one_a_look_passes_by_is_judged_by_its_own_bytes() {
    use crate::common::plan::{PlainNode, commit_at};
    use dgrid_worker::grid::held::Owed;
    use dgrid_worker::service::sync::SyncRequest;

    let grid = Grid::new();
    // Queued a minute ago and now: young enough not to have aged a level
    // above the claims held.
    let task = |id: &str, ago: i64, submitter: Option<&str>| {
        let at = dgrid_worker::time::now() - chrono::Duration::minutes(ago);
        let mut body = json!({"task_id": id, "script": "true", "timeout_seconds": 30,
            "queued_at": at.format("%Y-%m-%dT%H:%M:00Z").to_string()});
        let mut batch = at.format("%Y%m%dT%H%M").to_string();
        if let Some(s) = submitter {
            body["submitter"] = s.into();
            batch = format!("{batch}-{s}");
        }
        (
            format!("tasks/lanes/p50/any/{batch}/{id}.json"),
            body.to_string().into_bytes(),
        )
    };
    grid.commit_files(
        &[
            task("b-1", 1, Some("bob")),
            task("b-2", 0, Some("bob")),
            task("c-1", 0, None),
        ],
        "bob's tasks, and one that names no submitter, in one minute",
    );
    let mut node = PlainNode::new("me");
    node.record.last_heartbeat = dgrid_worker::time::format(dgrid_worker::time::now());
    let report = commit_at(
        &grid.url(),
        &SyncRequest {
            survey: true,
            preempt_up_to: 1,
            owed: Owed::new(50, [(Some("bob"), None), (Some("bob"), None)]),
            ..node.request(0)
        },
    );
    let claimed: Vec<&str> = report
        .claimed
        .iter()
        .map(|c| c.task.task_id.as_str())
        .collect();
    assert_eq!(claimed, ["c-1"], "{report:?}");
    assert!(grid.json_files("tasks/failed").is_empty());
    assert_eq!(
        grid.json_files("tasks/in_progress")["c-1.json"]["task_id"],
        "c-1"
    );
}
