//! How long `status` and `dashboard` take on a grid with 50,000 results.
//! A measurement, not an assertion (timings depend on the machine): run it
//! with `scripts/bench-tools`, which prints the figures docs/tools.md records.
//!
//!     cargo test --release --test system tools_perf:: -- --ignored --nocapture

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::common::*;
use crate::tools_fixture::*;
use dgrid_worker::grid::{NodeStatus, ResultStatus};

/// Add `files` to `main` of the bare repository in one commit, through
/// `git fast-import` (50,000 files through a work tree would take minutes).
fn fast_import(bare: &std::path::Path, files: &[(String, Vec<u8>)]) {
    let parent = git(bare, &["rev-parse", "main"]);
    let parent = String::from_utf8_lossy(&parent.stdout).trim().to_owned();
    let mut stream = Vec::new();
    writeln!(stream, "commit refs/heads/main").unwrap();
    writeln!(
        stream,
        "committer bench <bench@example.invalid> 1700000000 +0000"
    )
    .unwrap();
    writeln!(stream, "data 5\nbench").unwrap();
    writeln!(stream, "from {parent}").unwrap();
    for (path, bytes) in files {
        writeln!(stream, "M 100644 inline {path}").unwrap();
        writeln!(stream, "data {}", bytes.len()).unwrap();
        stream.extend_from_slice(bytes);
        stream.push(b'\n');
    }
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(bare)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&stream).unwrap();
    assert!(child.wait().unwrap().success());
}

/// The binary to time: `DGRID_BENCH_BIN` (scripts/bench-tools points it at
/// a release build, as the workflows' `cargo install` makes), else the
/// test's own debug build.
fn bench_bin() -> String {
    std::env::var("DGRID_BENCH_BIN").unwrap_or_else(|_| BIN.to_owned())
}

fn timed(args: &[&str]) -> f64 {
    let t = Instant::now();
    let out = Command::new(bench_bin()).args(args).output().unwrap();
    let secs = t.elapsed().as_secs_f64();
    expect_code(&out, 0);
    secs
}

#[test]
#[ignore = "a measurement; run by scripts/bench-tools"]
fn status_and_dashboard_on_50k_results() {
    const RESULTS: usize = 50_000;
    let grid = Grid::new();
    let mut files = populated_files();
    for i in 0..8 {
        let n = format!("node-{i}");
        files.push((
            format!("nodes/{n}.json"),
            node(&n, NodeStatus::Idle, 30, &[]),
        ));
    }
    for i in 0..200 {
        files.push((
            format!("tasks/queue/q-bulk-{i}.json"),
            format!(r#"{{"task_id":"q-bulk-{i}","script":"echo","timeout_seconds":30}}"#)
                .into_bytes(),
        ));
    }
    for i in 0..RESULTS {
        let (dir, status) = if i % 20 == 0 {
            ("failed", ResultStatus::Failed)
        } else {
            ("completed", ResultStatus::Completed)
        };
        let node = format!("node-{}", i % 8);
        let id = format!("bulk-{i:06}");
        // Spread over a week, newest first.
        let ago = (i as i64) * 7 * 86400 / RESULTS as i64;
        files.push((
            format!("tasks/{dir}/{node}-{id}.json"),
            result(&id, &node, status, ago),
        ));
    }
    let t = Instant::now();
    fast_import(&grid.bare, &files);
    eprintln!(
        "built a grid of {} files in {:.1} s",
        files.len(),
        t.elapsed().as_secs_f64()
    );
    let blob_bytes: usize = files.iter().map(|f| f.1.len()).sum();

    let bare = grid.bare.to_str().unwrap().to_owned();
    let url = grid.url();
    let site = grid.path("site");
    let site = site.to_str().unwrap();
    let mut rows = Vec::new();
    for (what, args) in [
        (
            "status (local repository, read in place)",
            vec!["status", "--repo", &bare],
        ),
        (
            "status --json (local)",
            vec!["status", "--repo", &bare, "--json"],
        ),
        (
            "dashboard (local)",
            vec!["dashboard", "--repo", &bare, "--out", site],
        ),
        (
            "status (file:// URL: fetched into a temporary clone)",
            vec!["status", "--repo", &url],
        ),
        (
            "dashboard (file:// URL)",
            vec!["dashboard", "--repo", &url, "--out", site],
        ),
    ] {
        // Best of three: the first run also warms the page cache.
        let best = (0..3).map(|_| timed(&args)).fold(f64::MAX, f64::min);
        rows.push((what, best));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(grid.path("site/grid.json")).unwrap()).unwrap();
    assert_eq!(
        json["completed"].as_u64().unwrap() + json["failed"].as_u64().unwrap(),
        RESULTS as u64 + 7
    );
    println!(
        "\n{} results ({:.1} MB of result JSON), binary {}:",
        RESULTS,
        blob_bytes as f64 / 1e6,
        bench_bin()
    );
    for (what, secs) in &rows {
        println!("  {secs:>6.2} s  {what}");
    }
}
