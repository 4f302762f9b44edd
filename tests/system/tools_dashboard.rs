//! The dashboard renders in headless Chromium for a grid with nodes, queued,
//! running, completed and failed tasks; the screenshot is kept under the
//! test's output and the rendered DOM is checked for the expected rows.

use crate::tools_fixture::*;

#[test]
fn dashboard_renders_every_state_in_chromium() {
    let grid = populated_grid();
    let out = grid.path("site");
    expect_code(
        &dgrid(&[
            "dashboard",
            "--repo",
            &grid.url(),
            "--out",
            out.to_str().unwrap(),
        ]),
        0,
    );
    let url = format!("file://{}", out.join("index.html").display());
    let dom = render(&url, "dashboard");
    for (what, needle) in [
        ("live node", "data-node=\"alpha\""),
        ("stale node", "data-node=\"beta\""),
        ("stale mark", "busy (stale heartbeat)"),
        ("queued task", "class=\"queued\" data-task=\"q-1\""),
        ("running task", "class=\"running\" data-task=\"t-run\""),
        ("the running count", "id=\"count-running\"><b>2</b>"),
        ("the count claimed ahead", "id=\"count-ahead\"><b>1</b>"),
        (
            "a claim its node's record does not list",
            "data-task=\"t-last\"><td>t-last</td><td>50</td><td>beta</td><td class=\"claim-state\">claimed ahead</td>",
        ),
        (
            "completed result",
            "data-task=\"c-0\" data-status=\"completed\"",
        ),
        (
            "failed result",
            "data-task=\"f-exit\" data-status=\"failed\"",
        ),
        (
            "timed-out result",
            "data-task=\"f-timeout\" data-status=\"timeout\"",
        ),
        ("failure's stderr", "boom: &lt;script&gt; went wrong"),
        ("failure's error", "killed after its timeout of 60 s"),
        ("throughput chart", "class=\"bar-ok\""),
    ] {
        assert!(
            dom.contains(needle),
            "{what}: {needle:?} not in the rendered page"
        );
    }
    assert_eq!(dom.matches("class=\"queued\"").count(), 3);
    assert_eq!(dom.matches("class=\"running\"").count(), 3);
    // The counts shown are the JSON's.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("grid.json")).unwrap()).unwrap();
    assert!(dom.contains(&format!(
        "id=\"count-completed\"><b>{}</b>",
        json["completed"]
    )));
}

/// A small grid as a first day has one: one idle node, two results within
/// one minute (one failed, with stderr, after 2 ms), nothing queued or
/// running. Each thing the page says must still read right.
#[test]
fn dashboard_of_a_small_grid_reads_right_in_chromium() {
    use chrono::Timelike;
    use dgrid_worker::grid::{NodeStatus, ResultStatus};
    let grid = crate::common::Grid::new();
    // Both results half a minute before the current minute began, so that
    // they fall in one minute's bucket whatever the clock says.
    let ago = dgrid_worker::time::now().second() as i64 + 30;
    let mut failed: serde_json::Value =
        serde_json::from_slice(&result("f-quick", "gamma", ResultStatus::Failed, ago)).unwrap();
    failed["duration_ms"] = 2.into();
    grid.commit_files(
        &[
            (
                "nodes/gamma.json".into(),
                node("gamma", NodeStatus::Idle, 6, &[]),
            ),
            (
                "tasks/completed/gamma@ok.json".into(),
                result("ok", "gamma", ResultStatus::Completed, ago + 1),
            ),
            (
                "tasks/failed/gamma@f-quick.json".into(),
                serde_json::to_vec(&failed).unwrap(),
            ),
        ],
        "a first day",
    );
    let out = grid.path("site");
    expect_code(
        &dgrid(&[
            "dashboard",
            "--repo",
            &grid.url(),
            "--out",
            out.to_str().unwrap(),
        ]),
        0,
    );
    let url = format!("file://{}", out.join("index.html").display());
    let dom = render(&url, "dashboard-small");

    // One bucket: one narrow bar, and an axis from its start to its end.
    assert_eq!(dom.matches("class=\"bar-ok\"").count(), 1, "{dom}");
    let width: f64 = between(&dom, "class=\"bar-ok\"", "width=\"", "\"")
        .parse()
        .unwrap();
    assert!(width <= 40.0, "a single bar {width} px wide");
    let start = between(&dom, "class=\"axis-start\"", ">", "<");
    let end = between(&dom, "class=\"axis-end\"", ">", "<");
    assert_ne!(start, end, "both axis labels read {start}");

    // Empty tables say so.
    for table in ["running", "queue"] {
        let t = between(&dom, &format!("id=\"{table}\""), ">", "</table>");
        assert!(t.contains("none:"), "{table}: {t}");
    }

    // The heartbeat as a time, with its age when the page was made.
    let hb = between(&dom, "class=\"heartbeat\"", ">", "</td>");
    assert!(hb.contains("<time datetime=\""), "{hb}");
    assert!(hb.contains("old when generated"), "{hb}");
    assert!(!hb.trim_start().starts_with("6s ago"), "{hb}");

    // Running: 0, not a blank cell.
    assert_eq!(between(&dom, "class=\"node-running\"", ">", "<"), "0");

    // 2 ms is 2 ms.
    let failures = between(&dom, "id=\"failures\"", ">", "</table>");
    assert!(failures.contains(">2 ms<"), "{failures}");
    assert!(!dom.contains(">0.0 s<"));

    // The error column holds the error; stderr has its own.
    assert!(
        failures.contains("<th>error</th><th>stderr (end)</th>"),
        "{failures}"
    );
    let stderr = between(failures, "class=\"stderr\"", ">", "</td>");
    assert!(
        stderr.contains("boom: &lt;script&gt; went wrong"),
        "{stderr}"
    );
    let error = between(failures, "class=\"error\"", ">", "</td>");
    assert!(!error.contains("boom"), "{error}");
}

/// The text after `anchor`, from the first `open` to the next `close`.
fn between<'a>(s: &'a str, anchor: &str, open: &str, close: &str) -> &'a str {
    let rest = &s[s.find(anchor).unwrap_or_else(|| panic!("no {anchor:?}")) + anchor.len()..];
    let rest = &rest[rest.find(open).unwrap() + open.len()..];
    &rest[..rest.find(close).unwrap()]
}

/// Scheduling on the page: the queue in claim order with priority (and
/// what age added), labels and submitter; a task waiting for another and
/// what for; a class no live node serves, and why; a node's labels and its
/// volunteer's pause.
#[test]
fn dashboard_shows_priority_labels_and_what_waits_in_chromium() {
    use dgrid_worker::grid::NodeStatus;
    let grid = crate::common::Grid::new();
    let task = |id: &str, extra: &str| {
        format!(r#"{{"task_id":"{id}","script":"echo","timeout_seconds":5{extra}}}"#).into_bytes()
    };
    let mut gpu_node: serde_json::Value =
        serde_json::from_slice(&node("gpu-box", NodeStatus::Idle, 5, &[])).unwrap();
    gpu_node["labels"] = serde_json::json!(["arch=amd64", "gpu"]);
    gpu_node["exclusive"] = serde_json::json!(["gpu"]);
    gpu_node["paused"] =
        "quiet hours (22:00-07:00, local time) until 2026-12-01T07:00:00.000Z".into();
    // An hour old: the low task has gained ten levels.
    let hour_ago = (dgrid_worker::time::now() - chrono::Duration::hours(1)).format("%Y%m%dT%H%M");
    let now = dgrid_worker::time::now().format("%Y%m%dT%H%M");
    grid.commit_files(
        &[
            (
                "nodes/gpu-box.json".into(),
                gpu_node.to_string().into_bytes(),
            ),
            (
                format!("tasks/lanes/p90/gpu/{now}-ana/urgent.json"),
                task(
                    "urgent",
                    r#","priority":90,"requires":["gpu"],"submitter":"ana""#,
                ),
            ),
            (
                format!("tasks/lanes/p10/any/{hour_ago}/old-low.json"),
                task("old-low", r#","priority":10"#),
            ),
            (
                format!("tasks/lanes/p50/fpga/{now}/needs-fpga.json"),
                task("needs-fpga", r#","requires":["fpga"]"#),
            ),
            (
                "tasks/blocked/urgent/after-urgent.json".into(),
                task("after-urgent", r#","after":["urgent"]"#),
            ),
        ],
        "scheduling",
    );
    let out = grid.path("site");
    expect_code(
        &dgrid(&[
            "dashboard",
            "--repo",
            &grid.url(),
            "--out",
            out.to_str().unwrap(),
        ]),
        0,
    );
    let dom = render(
        &format!("file://{}", out.join("index.html").display()),
        "dashboard-scheduling",
    );
    for (what, needle) in [
        (
            "the urgent task first",
            "class=\"queued\" data-task=\"urgent\"><td>urgent</td><td class=\"priority\">90</td><td class=\"requires\">gpu",
        ),
        (
            "age added to the low one",
            "data-task=\"old-low\"><td>old-low</td><td class=\"priority\">10 <span class=\"muted\">(now 20)</span>",
        ),
        ("the submitter", "<td>ana</td>"),
        (
            "what waits, and for what",
            "class=\"waiting\" data-task=\"after-urgent\"><td>after-urgent</td><td class=\"waits-for\">urgent <span class=\"bad\">behind `urgent`, which no live node runs now</span></td>",
        ),
        ("the class no node serves", "id=\"unservable\""),
        ("why", "no live node serves it: gpu-box lacks fpga"),
        (
            "the node's labels",
            "arch=amd64, gpu <span class=\"muted\">(only tasks that require gpu)</span>",
        ),
        ("its pause", "paused: quiet hours (22:00-07:00, local time)"),
        ("the waiting count", "id=\"count-waiting\"><b>1</b>"),
    ] {
        assert!(
            dom.contains(needle),
            "{what}: {needle:?} not in the rendered page"
        );
    }
    let urgent = dom.find("data-task=\"urgent\"").unwrap();
    let low = dom.find("data-task=\"old-low\"").unwrap();
    assert!(urgent < low, "claim order: 90 before 10 (now 20)");
}
