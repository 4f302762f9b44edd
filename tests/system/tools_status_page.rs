//! The running worker's status page: `/metrics` parses as Prometheus text
//! and its counters move when tasks run, `/healthz` answers 503 when the
//! engine is unhealthy, the page renders in headless Chromium with the
//! running task and the counters, and the listen address is configurable.

use std::time::Duration;

use crate::common::*;
use crate::tools_fixture::*;
use prometheus_parse::{Scrape, Value};

fn scrape(addr: &str) -> Scrape {
    let (code, body) = http_get(addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    // Every declared metric came through the parser with samples.
    for line in body.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).unwrap();
        assert!(
            scrape.samples.iter().any(|s| s.metric == name),
            "{name} declared but not parsed:\n{body}"
        );
    }
    scrape
}

fn value(s: &Scrape, metric: &str, label: Option<(&str, &str)>) -> f64 {
    let sample = s
        .samples
        .iter()
        .find(|x| x.metric == metric && label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
        .unwrap_or_else(|| panic!("no {metric} {label:?}"));
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
        Value::Summary(_) => panic!("{metric} is a summary"),
    }
}

fn api(addr: &str) -> serde_json::Value {
    let (code, body) = http_get(addr, "/api/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn worker_with_page(grid: &Grid, node: &str, extra: &str) -> (WorkerProc, String) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut spec = WorkerSpec::new(grid, node);
    spec.drain = false;
    spec.extra = format!("status_listen = \"{addr}\"\n{extra}");
    let w = spawn_worker(grid, &spec);
    wait_until("the status page to answer", Duration::from_secs(30), || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    (w, addr)
}

#[test]
fn metrics_move_when_tasks_run_and_the_page_shows_the_running_task() {
    let grid = Grid::new();
    let (w, addr) = worker_with_page(&grid, "page-1", "");
    wait_until("the loop to report in", Duration::from_secs(30), || {
        http_get(&addr, "/healthz").0 == 200
    });
    let before = scrape(&addr);
    assert_eq!(
        value(&before, "dgrid_tasks_total", Some(("outcome", "completed"))),
        0.0
    );
    assert_eq!(value(&before, "dgrid_healthy", None), 1.0);
    assert!(value(&before, "dgrid_last_heartbeat_timestamp_seconds", None) > 1.7e9);

    grid.submit(&[
        ("ok-1".into(), "echo one".into(), 10),
        ("ok-2".into(), "echo two".into(), 10),
        ("bad-1".into(), "exit 3".into(), 10),
    ]);
    wait_until("three tasks to end", Duration::from_secs(60), || {
        let v = api(&addr);
        v["tasks"]["completed"] == 2 && v["tasks"]["failed"] == 1
    });
    // Then a task that keeps running while we look.
    grid.submit(&[("sleeper".into(), "sleep 60".into(), 120)]);
    wait_until("the sleeper to run", Duration::from_secs(60), || {
        api(&addr)["running"]
            .as_array()
            .is_some_and(|r| r.iter().any(|t| t["task_id"] == "sleeper"))
    });

    let after = scrape(&addr);
    assert_eq!(
        value(&after, "dgrid_tasks_total", Some(("outcome", "completed"))),
        2.0
    );
    assert_eq!(
        value(&after, "dgrid_tasks_total", Some(("outcome", "failed"))),
        1.0
    );
    assert_eq!(
        value(&after, "dgrid_tasks_total", Some(("outcome", "timeout"))),
        0.0
    );
    assert_eq!(value(&after, "dgrid_claims_total", None), 4.0);
    assert_eq!(value(&after, "dgrid_running_tasks", None), 1.0);
    assert_eq!(value(&after, "dgrid_sandbox_duration_seconds", None), 3.0);
    assert!(
        value(&after, "dgrid_git_sync_duration_seconds", None)
            > value(&before, "dgrid_git_sync_duration_seconds", None)
    );
    // Its claims and results landed as commits: timed as such too.
    assert!(
        value(&after, "dgrid_git_commit_duration_seconds", None)
            > value(&before, "dgrid_git_commit_duration_seconds", None)
    );
    assert!(
        value(&after, "dgrid_last_heartbeat_timestamp_seconds", None)
            >= value(&before, "dgrid_last_heartbeat_timestamp_seconds", None)
    );
    assert!(value(&after, "dgrid_claim_conflicts_total", None) >= 0.0);

    let dom = render(&format!("http://{addr}/"), "status-page");
    for needle in [
        "dgrid-worker page-1",
        "class=\"running\" data-task=\"sleeper\"",
        "data-name=\"tasks_completed\"><th>tasks completed</th><td>2</td>",
        "data-name=\"tasks_failed\"><th>tasks failed</th><td>1</td>",
        "data-name=\"claims\"><th>claims</th><td>4</td>",
    ] {
        assert!(
            dom.contains(needle),
            "{needle:?} not in the rendered page:\n{dom}"
        );
    }
    assert!(
        dom.contains("class=\"ok\">busy"),
        "healthy and busy:\n{dom}"
    );
    drop(w);
}

#[test]
fn healthz_is_503_when_the_engine_is_unhealthy() {
    let grid = Grid::new();
    let conf = containers_conf();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut spec = WorkerSpec::new(&grid, "sick-1");
    spec.drain = false;
    spec.engine = "podman".into();
    spec.extra = format!("status_listen = \"{addr}\"\n");
    spec.env
        .push(("CONTAINERS_CONF".into(), conf.display().to_string()));
    // An image that does not exist: the engine check fails, the worker
    // starts (it may recover) but claims nothing and reports unhealthy.
    spec.env.push((
        "DGRID_IMAGE".into(),
        "localhost/dgrid-no-such-image:none".into(),
    ));
    let w = spawn_worker(&grid, &spec);
    wait_until("the status page", Duration::from_secs(30), || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    wait_until("the loop to report in", Duration::from_secs(30), || {
        api(&addr)["loop_alive_at"].is_string()
    });
    let (code, body) = http_get(&addr, "/healthz");
    assert_eq!(code, 503, "{body}\n{}", w.log_text());
    assert!(body.contains("engine unhealthy"), "{body}");
    let v = api(&addr);
    assert_eq!(v["healthy"], false);
    assert_eq!(v["status"], "unhealthy");
    assert_eq!(value(&scrape(&addr), "dgrid_healthy", None), 0.0);
}

#[test]
fn the_listen_address_comes_from_the_config_and_the_environment_turns_it_off() {
    let grid = Grid::new();
    let port = free_port();
    let mut spec = WorkerSpec::new(&grid, "quiet-1");
    spec.drain = false;
    spec.extra = format!("status_listen = \"127.0.0.1:{port}\"\n");
    spec.env.push(("DGRID_STATUS_LISTEN".into(), "off".into()));
    let w = spawn_worker(&grid, &spec);
    wait_until("the node to register", Duration::from_secs(30), || {
        grid.files("nodes").contains_key("quiet-1.json")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "DGRID_STATUS_LISTEN=off must win over the file:\n{}",
        w.log_text()
    );
    drop(w);

    // A bad address is a configuration error naming the key.
    let cfg = grid.path("bad.toml");
    std::fs::write(
        &cfg,
        format!(
            "repo_url = \"{}\"\nstatus_listen = \"localhost:http\"\n",
            grid.url()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["run", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("`status_listen`"),
        "{err}"
    );
}

/// A running worker watching a peer that holds a claim, with 500 branches
/// named after that peer's outbox on the grid (anyone able to push can
/// make them): `/metrics` counts them once, and the fetches after the
/// first leave them out (the counter stays while the syncs go on).
#[test]
fn a_crowd_named_after_a_peer_is_counted_once_on_the_metrics() {
    let grid = Grid::new();
    let now = dgrid_worker::time::format(dgrid_worker::time::now());
    let claim = serde_json::json!({
        "task_id": "held", "script": "true", "timeout_seconds": 30,
        "claim": {"node_id": "peer", "claimed_at": now,
                  "deadline": "2999-01-01T00:00:00Z", "attempt": 1}
    });
    let record = serde_json::json!({"node_id": "peer", "status": "busy", "last_heartbeat": now});
    grid.commit_files(
        &[
            (
                "tasks/in_progress/held.json".into(),
                claim.to_string().into_bytes(),
            ),
            ("nodes/peer.json".into(), record.to_string().into_bytes()),
        ],
        "a peer holding a claim",
    );
    let tip = grid.tip_of("main").unwrap();
    grid.outbox_crowd((0..500).map(|i| format!("peer-{i}")), &tip);
    let (w, addr) = worker_with_page(&grid, "watcher", "");
    wait_until("the crowd counted", Duration::from_secs(60), || {
        value(&scrape(&addr), "dgrid_outbox_strangers_total", None) >= 500.0
    });
    let syncs = value(&scrape(&addr), "dgrid_syncs_total", None);
    wait_until("three more syncs", Duration::from_secs(60), || {
        value(&scrape(&addr), "dgrid_syncs_total", None) >= syncs + 3.0
    });
    assert_eq!(
        value(&scrape(&addr), "dgrid_outbox_strangers_total", None),
        500.0,
        "fetched once:\n{}",
        w.log_text()
    );
    assert!(
        w.log_text().contains("kept_out=peer-*"),
        "the warning names the pattern:\n{}",
        w.log_text()
    );
}
