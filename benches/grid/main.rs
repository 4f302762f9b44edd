//! The benchmark harness: `cargo bench --bench grid [-- SCENARIO...]`.
//!
//! Each scenario measures the real binary (built with the bench profile)
//! against real bare repositories, and comparisons are measured side by side
//! in one run. Figures are printed and written to `BENCHMARKS.md` (with the
//! machine, git version and date) when every scenario ran.
//!
//! Scenarios: contention, commits, growth, pickup, footprint, overhead,
//! scaleout, schedule, trust.

#[path = "../../tests/common/mod.rs"]
mod common;
mod contention;
mod cpu;
mod growth;
mod scaleout;
mod schedule;
mod service;
mod trust;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
fn main() {
    // `cargo test --all-targets` runs bench binaries too, without `--bench`:
    // the scenarios take minutes, so they run only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benchmarks run with `cargo bench --bench grid`");
        return;
    }
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
        "scaleout",
        "schedule",
        "trust",
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
            "contention" => contention::contention(),
            "commits" => contention::commits(),
            "growth" => growth::growth(),
            "pickup" => service::pickup(),
            "footprint" => service::footprint(),
            "overhead" => service::overhead(),
            "scaleout" => scaleout::scaleout(),
            "schedule" => schedule::schedule(),
            "trust" => trust::trust(),
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
    let generated = format!(
        "{BEGIN}\nMeasured by `cargo bench --bench grid` on {date}: {cores} cores ({cpu}), {git}, \
         local bare repositories. Every comparison below was measured side by side in the same run.\n\n{body}{END}\n\n"
    );
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/BENCHMARKS.md");
    let old = std::fs::read_to_string(path).unwrap_or_default();
    std::fs::write(path, splice(&old, &generated)).unwrap();
    eprintln!("wrote BENCHMARKS.md");
}

const BEGIN: &str = "<!-- begin: written by `cargo bench --bench grid`; edit outside -->";
const END: &str = "<!-- end: written by `cargo bench --bench grid` -->";

/// The report between the markers replaces the last run's; what people
/// wrote around it (how the targets were reached, what was tried) stays.
fn splice(old: &str, generated: &str) -> String {
    match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => {
            let after = old[e + END.len()..].trim_start_matches('\n');
            format!("{}{generated}{after}", &old[..b])
        }
        _ => format!("# Benchmarks\n\n{generated}"),
    }
}

/// A worker as the benchmarks run it: shell engine, quiet, polling every second.
fn bench_spec(grid: &Grid, node: &str) -> WorkerSpec {
    let mut spec = WorkerSpec::new(grid, node);
    spec.env.push(("LOG_LEVEL".into(), "warn".into()));
    spec.cgroup = cpu::limited_cgroup(node);
    spec
}

/// `n` tasks running `true`, in their lane as `submit` files them (priority
/// 50, no labels, arrived this minute).
fn trivial_tasks(prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    let place = dgrid_worker::grid::layout::Place {
        priority: 50,
        class: dgrid_worker::grid::Class::any(),
        batch: dgrid_worker::grid::layout::Batch::new(dgrid_worker::time::now(), None),
    };
    (0..n)
        .map(|i| {
            let id = format!("{prefix}-{i:05}");
            let body = serde_json::json!({"task_id": id, "script": "true", "timeout_seconds": 30});
            (
                place.file(&dgrid_worker::grid::Id::parse(&id).unwrap()),
                body.to_string().into_bytes(),
            )
        })
        .collect()
}

/// Results on the remote's `main`, counted without reading them.
fn result_count(grid: &Grid) -> usize {
    let out = git(
        &grid.bare,
        &["ls-tree", "--name-only", "main", "tasks/completed/"],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.ends_with("/.gitkeep"))
        .count()
}

/// Waits until `main` holds `total` results, at most `within`; what it
/// saw last is when the drain ended. Looks every 25 ms at the ref's file
/// (a read, no process) and lists the results only when the ref moved:
/// a `git ls-tree` every 25 ms, 40 processes a second, was a load of the
/// harness's own on the two cores the workers it times share.
fn wait_for_results(grid: &Grid, total: usize, within: Duration) {
    let deadline = Instant::now() + within;
    let ref_file = grid.bare.join("refs/heads/main");
    let mut seen: Option<Vec<u8>> = None;
    loop {
        // A ref not in its own file (packed) is listed every time.
        let now = std::fs::read(&ref_file).ok();
        if (now.is_none() || now != seen) && result_count(grid) >= total {
            return;
        }
        seen = now;
        assert!(Instant::now() < deadline, "the drain did not finish");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The lowest and the highest of `v` (a run's range).
fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
