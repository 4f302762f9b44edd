//! The dashboard renders in headless Chromium for a grid with nodes, queued,
//! running, completed and failed tasks; the screenshot is kept under the
//! test's output and the rendered DOM is checked for the expected rows.

mod common;
mod tools_fixture;

use tools_fixture::*;

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
