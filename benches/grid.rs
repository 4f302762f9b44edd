//! The benchmark harness: `cargo bench --bench grid [-- SCENARIO...]`.
//!
//! Each scenario measures the real binary (built with the bench profile)
//! against real bare repositories, and comparisons are measured side by side
//! in one run. Figures are printed and written to `BENCHMARKS.md` (with the
//! machine, git version and date) when every scenario ran.
//!
//! Scenarios: contention, commits, growth, pickup, footprint, overhead.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn main() {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let all = [
        "contention",
        "commits",
        "growth",
        "pickup",
        "footprint",
        "overhead",
    ];
    let run: Vec<&str> = all
        .iter()
        .copied()
        .filter(|s| wanted.is_empty() || wanted.iter().any(|w| w == s))
        .collect();
    let mut report = String::new();
    for scenario in &run {
        eprintln!("== {scenario}");
        let section = match *scenario {
            "contention" => contention(),
            "commits" => commits(),
            "growth" => growth(),
            "pickup" => pickup(),
            "footprint" => footprint(),
            "overhead" => overhead(),
            _ => unreachable!(),
        };
        println!("{section}");
        report.push_str(&section);
        report.push('\n');
    }
    if run.len() == all.len() {
        write_report(&report);
    }
}

fn write_report(body: &str) {
    let git = String::from_utf8_lossy(
        &Command::new("git")
            .arg("--version")
            .output()
            .unwrap()
            .stdout,
    )
    .trim()
    .to_owned();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_owned();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let date = chrono::Utc::now().format("%Y-%m-%d");
    let text = format!(
        "# Benchmarks\n\nMeasured by `cargo bench --bench grid` on {date}: {cores} cores ({cpu}), {git}, \
         local bare repositories. Every comparison below was measured side by side in the same run.\n\n{body}"
    );
    std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/BENCHMARKS.md"), text).unwrap();
    eprintln!("wrote BENCHMARKS.md");
}

/// A worker as the benchmarks run it: shell engine, quiet, polling every second.
fn bench_spec(grid: &Grid, node: &str) -> WorkerSpec {
    let mut spec = WorkerSpec::new(grid, node);
    spec.env.push(("LOG_LEVEL".into(), "warn".into()));
    spec
}

fn trivial_tasks(prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let id = format!("{prefix}-{i:05}");
            let body = serde_json::json!({"task_id": id, "script": "true", "timeout_seconds": 30});
            (
                format!("tasks/queue/{id}.json"),
                body.to_string().into_bytes(),
            )
        })
        .collect()
}

struct Drain {
    seconds: f64,
    commits: usize,
    results: usize,
}

/// Drain `tasks` trivial tasks with `workers` workers; wall time from the
/// workers' start to the last exit.
fn drain(workers: usize, tasks: usize, extra: &str) -> Drain {
    let grid = Grid::new();
    grid.commit_files(&trivial_tasks("t", tasks), "queue");
    let before = grid.commit_count();
    let started = Instant::now();
    let mut procs: Vec<WorkerProc> = (0..workers)
        .map(|i| {
            let mut spec = bench_spec(&grid, &format!("w{i:02}"));
            spec.extra = extra.into();
            spawn_worker(&grid, &spec)
        })
        .collect();
    for p in &mut procs {
        assert!(
            p.wait_exit(Duration::from_secs(1800)).success(),
            "{}",
            p.log_text()
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let results = grid.files("tasks/completed").len();
    assert_eq!(results, tasks, "every task done");
    Drain {
        seconds,
        commits: grid.commit_count() - before,
        results,
    }
}

/// `git fetch; git commit; git push` in a loop, `writers` at once, for
/// `secs`: the ceiling one ref gives a naive writer.
fn bare_loop(writers: usize, secs: f64) -> f64 {
    let grid = Grid::new();
    let url = grid.url();
    let script = format!(
        "set -e; d=$(mktemp -d); git clone -q '{url}' $d/w; cd $d/w; n=0; end=$(($(date +%s%N) + {ns})); \
         while [ $(date +%s%N) -lt $end ]; do git fetch -q origin; git reset -q --soft origin/main; \
         git -c user.name=b -c user.email=b@b commit -q --allow-empty -m x; \
         if git push -q origin HEAD:main 2>/dev/null; then n=$((n+1)); fi; done; echo $n; rm -rf $d",
        ns = (secs * 1e9) as u64
    );
    let children: Vec<_> = (0..writers)
        .map(|_| {
            Command::new("sh")
                .args(["-c", &script])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let total: u64 = children
        .into_iter()
        .map(|c| {
            String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout)
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
        })
        .sum();
    total as f64 / secs
}

fn contention() -> String {
    const TASKS: usize = 500;
    let mut rows = Vec::new();
    let mut rate1 = 0.0;
    for workers in [1, 8, 16] {
        let d = drain(workers, TASKS, "");
        let rate = d.results as f64 / d.seconds;
        if workers == 1 {
            rate1 = rate;
        }
        eprintln!(
            "  {workers} workers: {rate:.1} tasks/s, {} commits",
            d.commits
        );
        rows.push((workers, rate, d.commits));
    }
    let loop1 = bare_loop(1, 10.0);
    let loop8 = bare_loop(8, 10.0);
    let mut s = String::from("## 1. Contention\n\n");
    let _ = writeln!(
        s,
        "Draining {TASKS} tasks (`true`, shell engine, concurrency 1, `PULL_INTERVAL=1`) from one bare repository.\n"
    );
    s.push_str("| workers | tasks/s | vs 1 worker | commits |\n|---:|---:|---:|---:|\n");
    for (w, rate, commits) in &rows {
        let _ = writeln!(s, "| {w} | {rate:.1} | {:.2} | {commits} |", rate / rate1);
    }
    let _ = writeln!(
        s,
        "\nBeside them, a bare `git fetch; git commit; git push` loop on the same machine: \
         {loop1:.1} commits/s with one writer, {loop8:.1} commits/s in total with eight.\n"
    );
    s
}

fn commits() -> String {
    // Sustained load: commits per task over a long drain, 4 workers.
    let d = drain(4, 400, "");
    let per_task = d.commits as f64 / d.results as f64;
    // Idle: one node, heartbeat every 2 s, 20 s idle.
    let grid = Grid::new();
    let mut spec = bench_spec(&grid, "idler");
    spec.drain = false;
    spec.extra = "heartbeat_interval = 2\nstale_after = 10\n".into();
    let before = grid.commit_count();
    let mut w = spawn_worker(&grid, &spec);
    std::thread::sleep(Duration::from_secs(1));
    let start = grid.commit_count();
    std::thread::sleep(Duration::from_secs(20));
    let idle = grid.commit_count() - start;
    w.signal(nix::sys::signal::Signal::SIGTERM);
    w.wait_exit(Duration::from_secs(10));
    let _ = before;
    let per_interval = idle as f64 / 10.0;
    let default_interval = dgrid_worker::config::DEFAULT_HEARTBEAT_SECS as f64;
    let grid_hour = 100.0 * per_interval * 3600.0 / default_interval;
    format!(
        "## 2. Commits\n\n\
         | measure | figure | target |\n|---|---:|---:|\n\
         | commits per task, 400 tasks, 4 workers (registration and stop included) | {per_task:.2} | at most 1.0 |\n\
         | idle node: commits per heartbeat interval (2 s interval, 20 s) | {per_interval:.2} | at most 1 |\n\
         | 100 idle nodes at the default interval ({default_interval:.0} s): commits per hour | {grid_hour:.0} | under 200 |\n"
    )
}

fn growth() -> String {
    String::from("## 3. Growth\n\n(not yet measured)\n")
}

fn pickup() -> String {
    String::from("## 4. Pickup\n\n(not yet measured)\n")
}

fn footprint() -> String {
    String::from("## 5. Footprint\n\n(not yet measured)\n")
}

fn overhead() -> String {
    String::from("## 6. Overhead\n\n(not yet measured)\n")
}

#[allow(dead_code)]
fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[allow(dead_code)]
type Unused = BTreeMap<(), ()>;
