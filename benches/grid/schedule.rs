//! Section 8: scheduling. What one claim costs on a queue of 10,000 tasks
//! over 20 label classes and 5 priorities, against one on a queue of 100;
//! and how soon a burst of high-priority tasks pushed in the middle of a
//! drain starts, against the slots that free after it.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use dgrid_worker::grid::label::{Class, Label};
use dgrid_worker::grid::layout::{Batch, Place};
use dgrid_worker::grid::schedule::NodeLabels;

use crate::common::plan::PlainNode;
use crate::common::*;
use crate::{bench_spec, median, percentile};

/// Claim transactions timed per grid, taken in turn across the grids.
const ROUNDS: usize = 25;

/// A grid whose lanes hold `lanes` (priority, class) with `per_lane` tasks
/// each, written with one `git fast-import` (one commit).
fn grid_with_lanes(lanes: &[(u8, Class)], per_lane: usize) -> Grid {
    let grid = Grid::new();
    let tip = String::from_utf8(git(&grid.bare, &["rev-parse", "main"]).stdout).unwrap();
    let arrived = dgrid_worker::time::now() - chrono::Duration::minutes(30);
    let mut s = format!(
        "commit refs/heads/main\ncommitter b <b@x> 1800000000 +0000\ndata 5\nqueue\nfrom {}\n",
        tip.trim()
    );
    let mut n = 0;
    for (p, class) in lanes {
        let place = Place {
            priority: *p,
            class: class.clone(),
            batch: Batch::new(arrived, None),
        };
        let requires: Vec<String> = class.labels().map(ToString::to_string).collect();
        for _ in 0..per_lane {
            let id = format!("t{n:06}");
            n += 1;
            let body = serde_json::json!({
                "task_id": id, "script": "true", "timeout_seconds": 30,
                "priority": p, "requires": requires,
            })
            .to_string();
            let _ = write!(
                s,
                "M 100644 inline {}\ndata {}\n{body}\n",
                place.file(&dgrid_worker::grid::Id::parse(&id).unwrap()),
                body.len()
            );
        }
    }
    s.push_str("\ndone\n");
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet", "--done"])
        .current_dir(&grid.bare)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), s.as_bytes()).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    git(&grid.bare, &["gc", "--quiet"]);
    grid
}

fn label(s: &str) -> Label {
    Label::parse(s).unwrap()
}

/// 20 classes: none, and one label each.
fn classes() -> Vec<Class> {
    std::iter::once(Class::any())
        .chain((1..20).map(|i| Class::of([label(&format!("l{i:02}"))])))
        .collect()
}

/// One node claiming from `grid` as the worker does (in process), one task
/// per transaction: each call returns one claim's time in ms.
struct Claimer {
    repo: dgrid_worker::git::GridRepo,
    node: PlainNode,
}

impl Claimer {
    fn new(grid: &Grid, name: &str, labels: NodeLabels) -> Claimer {
        use dgrid_worker::git::{Git, GridRepo};
        let state = grid.path(&format!("claimer-{name}"));
        let git_handle = Git::new("git", state.join("grid.git"), Duration::from_secs(600));
        let repo = GridRepo::open_or_init(git_handle, &grid.url(), "main").unwrap();
        let mut node = PlainNode::new(name);
        node.labels = labels;
        let mut c = Claimer { repo, node };
        c.claim(0);
        c
    }

    fn claim(&mut self, want: usize) -> f64 {
        use dgrid_worker::git::txn::{self, Identity, TxnPolicy};
        let t = Instant::now();
        let out = txn::run(
            &self.repo,
            &Identity::for_node(self.node.node.as_str()),
            &TxnPolicy::default(),
            |t| dgrid_worker::service::sync::plan(t, &self.node.request(want)),
        )
        .unwrap();
        match out {
            txn::TxnOutcome::Committed { value, .. } => {
                assert!(
                    want == 0 || value.claimed.len() == want,
                    "claimed {}",
                    value.claimed.len()
                );
            }
            _ => panic!("nothing committed"),
        }
        t.elapsed().as_secs_f64() * 1000.0
    }
}

fn claim_cost() -> String {
    let prios = [10u8, 30, 50, 70, 90];
    let lanes: Vec<(u8, Class)> = prios
        .iter()
        .flat_map(|p| classes().into_iter().map(move |c| (*p, c)))
        .collect();
    let t = Instant::now();
    // A grid each: a claimer fetches only its own commits, as a node
    // alone on its grid would.
    let small = grid_with_lanes(&[(50, Class::any())], 100);
    let big = grid_with_lanes(&lanes, 100);
    let big_too = grid_with_lanes(&lanes, 100);
    let one_lane = grid_with_lanes(&[(50, Class::any())], 10_000);
    eprintln!("  built grids in {:.1} s", t.elapsed().as_secs_f64());
    let some = NodeLabels {
        labels: Class::of((1..5).map(|i| label(&format!("l{i:02}")))),
        exclusive: Class::any(),
    };
    let all = NodeLabels {
        labels: Class::of((1..20).map(|i| label(&format!("l{i:02}")))),
        exclusive: Class::any(),
    };
    let mut rows = [
        (
            "100 tasks, one lane (p50, no labels)",
            Claimer::new(&small, "small", some.clone()),
            Vec::new(),
        ),
        (
            "10,000 tasks, 20 classes x 5 priorities; the node serves 5 classes (2,500 tasks)",
            Claimer::new(&big, "some", some.clone()),
            Vec::new(),
        ),
        (
            "10,000 tasks, 20 classes x 5 priorities; the node serves all 20",
            Claimer::new(&big_too, "all", all),
            Vec::new(),
        ),
        (
            "10,000 tasks in one lane (one class, one priority, one minute)",
            Claimer::new(&one_lane, "flat", some),
            Vec::new(),
        ),
    ];
    for _ in 0..ROUNDS {
        for (_, c, times) in rows.iter_mut() {
            times.push(c.claim(1));
        }
    }
    let base = median(&rows[0].2);
    let mut out = format!(
        "One node's claim transactions (fetch, list, order, read the sample, commit, push; one task each, in process as the worker makes them), \
         {ROUNDS} on each grid, taken in turn across the grids; one node per grid. The grids hold their queue in `tasks/lanes/` as `submit` writes it.\n\n\
         | queue | claim, median | range | vs 100 tasks |\n|---|---:|---:|---:|\n"
    );
    for (what, _, times) in &rows {
        let mut sorted = times.clone();
        sorted.sort_by(f64::total_cmp);
        let _ = writeln!(
            out,
            "| {what} | {:.1} ms | {:.1}-{:.1} | {:.2} |",
            median(times),
            sorted[0],
            sorted[sorted.len() - 1],
            median(times) / base
        );
    }
    out
}

/// One drain with a burst: the section's text (the waits beyond each high
/// task's free slot and from the push, and the nodes' mean syncs, all and
/// those that landed a commit). The burst is filed in its lane by
/// `submit`, or, `by_hand`, pushed as files to the inbox, as a pull
/// request or the forge's web editor would.
fn burst(by_hand: bool) -> String {
    const LOW: usize = 200;
    const HIGH: usize = 20;
    const NODES: usize = 4;
    let grid = Grid::new();
    let write = |name: &str, tasks: serde_json::Value| {
        let file = grid.path(name);
        std::fs::write(&file, tasks.to_string()).unwrap();
        let out = Command::new(BIN)
            .args([
                "submit",
                "--repo",
                &grid.url(),
                "--task-file",
                file.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let low: Vec<serde_json::Value> = (0..LOW)
        .map(|i| serde_json::json!({"task_id": format!("low-{i:03}"), "script": "sleep 0.2", "timeout_seconds": 30, "priority": 10}))
        .collect();
    write("low.json", serde_json::Value::Array(low));
    let ports: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
    let mut workers: Vec<WorkerProc> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let mut spec = bench_spec(&grid, &format!("n{i}"));
            spec.drain = false;
            spec.extra = format!("status_listen = \"127.0.0.1:{port}\"\n");
            if let Ok(level) = std::env::var("SCHEDULE_LOG") {
                spec.env.push(("LOG_LEVEL".into(), level));
            }
            spawn_worker(&grid, &spec)
        })
        .collect();
    wait_until("40 low tasks done", Duration::from_secs(300), || {
        grid.results().len() >= 40
    });
    let high: Vec<serde_json::Value> = (0..HIGH)
        .map(|i| serde_json::json!({"task_id": format!("high-{i:02}"), "script": "sleep 0.2", "timeout_seconds": 30, "priority": 90}))
        .collect();
    // When the burst landed on the ref: the moment `submit` returns is
    // later by what it does after its push (up to 0.2 s seen), and a
    // high task claimed in between would count as waiting for nothing.
    // A hook on the grid names each update's time, for the one push.
    let landed = grid.path("landed.log");
    let hook = grid.bare.join("hooks/reference-transaction");
    write_script(
        &hook,
        &format!(
            "#!/bin/sh\n[ \"$1\" = committed ] || exit 0\nnow=$(date +%s.%N)\n\
             while read old new ref; do echo \"$now $new\"; done >> '{}'\n",
            landed.display()
        ),
    );
    if by_hand {
        // As a hand-pushed burst: each file in the inbox, one commit.
        let files: Vec<(String, Vec<u8>)> = high
            .iter()
            .map(|t| {
                let id = t["task_id"].as_str().unwrap();
                (format!("tasks/queue/{id}.json"), t.to_string().into_bytes())
            })
            .collect();
        grid.commit_files(&files, "urgent work, by hand");
    } else {
        write("high.json", serde_json::Value::Array(high));
    }
    std::fs::remove_file(&hook).unwrap();
    let first_high = if by_hand {
        "tasks/queue/high-00.json"
    } else {
        "tasks/lanes/p90"
    };
    let pushed = landed_at(&grid, &landed, first_high);
    wait_until("every result", Duration::from_secs(600), || {
        grid.results().len() == LOW + HIGH
    });
    // The nodes' own mean sync, from their status pages.
    let mut sync_sum = 0.0;
    let mut sync_n = 0.0;
    let mut commit_sum = 0.0;
    let mut commit_n = 0.0;
    for port in &ports {
        let body = http_body(&format!("127.0.0.1:{port}"), "/api/status");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        sync_sum += v["git_sync_seconds"]["sum"].as_f64().unwrap();
        sync_n += v["git_sync_seconds"]["count"].as_f64().unwrap();
        commit_sum += v["git_commit_seconds"]["sum"].as_f64().unwrap();
        commit_n += v["git_commit_seconds"]["count"].as_f64().unwrap();
    }
    for w in &workers {
        w.signal(nix::sys::signal::Signal::SIGTERM);
    }
    for w in &mut workers {
        w.wait_exit(Duration::from_secs(60));
    }
    let sync = sync_sum / sync_n;
    let commit = commit_sum / commit_n;
    let parse = |s: &serde_json::Value| dgrid_worker::time::parse(s.as_str().unwrap()).unwrap();
    let mut runs: Vec<(
        String,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    )> = grid
        .results()
        .into_iter()
        .map(|(_, r)| {
            let start = parse(&r["started_at"]);
            let end = start + chrono::Duration::milliseconds(r["duration_ms"].as_i64().unwrap());
            (r["task_id"].as_str().unwrap().to_owned(), start, end)
        })
        .collect();
    runs.sort_by_key(|r| r.1);
    // The slots that free after the push, in order: the k-th high task to
    // start should have taken the k-th of them.
    let mut frees: Vec<_> = runs.iter().map(|r| r.2).filter(|e| *e > pushed).collect();
    frees.sort();
    let highs: Vec<_> = runs.iter().filter(|r| r.0.starts_with("high")).collect();
    let secs = |d: chrono::Duration| d.num_milliseconds() as f64 / 1000.0;
    let mut beyond: Vec<f64> = highs
        .iter()
        .enumerate()
        .map(|(k, h)| secs(h.1 - frees[k].max(pushed)).max(0.0))
        .collect();
    beyond.sort_by(f64::total_cmp);
    let mut from_push: Vec<f64> = highs.iter().map(|h| secs(h.1 - pushed)).collect();
    from_push.sort_by(f64::total_cmp);
    let last_high = highs.iter().map(|h| h.1).max().unwrap();
    let lows_between = runs
        .iter()
        .filter(|r| r.0.starts_with("low") && r.1 > pushed && r.1 < last_high)
        .count();
    let lows_after = runs
        .iter()
        .filter(|r| r.0.starts_with("low") && r.1 > last_high)
        .count();
    let how = if by_hand {
        "files in `tasks/queue/`, as pushed by hand"
    } else {
        "`submit --task-file`, which files them in their lane"
    };
    let table = format!(
        "{NODES} workers (shell engine, concurrency 1, `PULL_INTERVAL=1`) drain {LOW} tasks of priority 10 (`sleep 0.2`); \
         after 40 results, {HIGH} tasks of priority 90 arrive in one push ({how}; timed from the moment it landed on the ref, by a hook on the grid). For the k-th of them to start, \
         the wait beyond the k-th slot to free after the push (a task ending on any node), against the nodes' mean sync in the same run; \
         and the wait from the push.\n\n\
         | measure | p50 | p95 | max |\n|---|---:|---:|---:|\n\
         | high task's start beyond its free slot | {:.2} s | {:.2} s | {:.2} s |\n\
         | high task's start from the push | {:.2} s | {:.2} s | {:.2} s |\n\n\
         Mean sync (the nodes' `dgrid_git_sync_duration_seconds`): {:.2} s; of the syncs that landed a commit \
         (`dgrid_git_commit_duration_seconds`): {:.2} s. Low tasks started between the push and the last high start: \
         {lows_between} (the nodes' claims not started yet, up to their next look at the queue, every half poll interval); after it: {lows_after}.\n",
        percentile(&beyond, 0.5),
        percentile(&beyond, 0.95),
        beyond[beyond.len() - 1],
        percentile(&from_push, 0.5),
        percentile(&from_push, 0.95),
        from_push[from_push.len() - 1],
        sync,
        commit,
    );
    if std::env::var_os("SCHEDULE_KEEP").is_some() {
        eprintln!(
            "    kept: {} (pushed at {pushed})",
            grid.root.path().display()
        );
        std::mem::forget(grid);
    }
    table
}

/// When the commit that added `path` (the burst's lane, or its first
/// file in the inbox) landed, from the hook's lines (`<epoch seconds>
/// <new tip>`).
fn landed_at(grid: &Grid, log: &std::path::Path, path: &str) -> chrono::DateTime<chrono::Utc> {
    let out = Command::new("git")
        .arg("-C")
        .arg(&grid.bare)
        .args(["log", "--diff-filter=A", "--format=%H", "main", "--", path])
        .output()
        .unwrap();
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let lines = std::fs::read_to_string(log).unwrap();
    let secs: f64 = lines
        .lines()
        .find_map(|l| {
            let (at, tip) = l.split_once(' ')?;
            (tip.trim() == commit).then(|| at.parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("the burst's commit {commit:?} is not in {lines:?}"));
    chrono::DateTime::from_timestamp_micros((secs * 1e6) as i64).unwrap()
}

fn http_body(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

pub fn schedule() -> String {
    // SCHEDULE_ONLY=burst (or inbox: the burst pushed by hand, or claim):
    // that part alone, to try a change.
    match std::env::var("SCHEDULE_ONLY").as_deref() {
        Ok("burst") => return burst(false),
        Ok("inbox") => return burst(true),
        Ok("claim") => return claim_cost(),
        _ => {}
    }
    let cost = claim_cost();
    eprintln!("{cost}");
    let burst_filed = burst(false);
    eprintln!("{burst_filed}");
    let by_hand = burst(true);
    format!(
        "## 8. Scheduling\n\n\
         ### A claim on a deep queue of many classes\n\n{cost}\n\
         ### A priority burst in the middle of a drain\n\n{burst_filed}\n\
         ### The same burst pushed by hand\n\n{by_hand}"
    )
}
