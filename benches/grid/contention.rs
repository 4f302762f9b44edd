//! Sections 1 and 2: draining a burst of trivial tasks with 1, 8 and 16
//! workers (contention), and the commits a drain and an idle node make.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::{bench_spec, median, min_max, trivial_tasks, wait_for_results};

pub struct Drain {
    seconds: f64,
    commits: usize,
    results: usize,
    /// From the workers' start to all of them registered.
    startup: f64,
}

/// `workers` workers start and register (idle, polling every second); then
/// `tasks` trivial tasks arrive in one push, and the drain is timed from that
/// push to the last result on `main`. Commits are those the workers made
/// meanwhile: claims, results and heartbeats, not registrations or stops.
pub fn drain(workers: usize, tasks: usize, extra: &str) -> Drain {
    let grid = Grid::new();
    let started = Instant::now();
    let mut procs: Vec<WorkerProc> = (0..workers)
        .map(|i| {
            let mut spec = bench_spec(&grid, &format!("w{i:02}"));
            spec.extra = extra.into();
            spec.drain = false;
            spawn_worker(&grid, &spec)
        })
        .collect();
    wait_until("every registration", Duration::from_secs(300), || {
        grid.files("nodes").len() == workers
    });
    let startup = started.elapsed().as_secs_f64();
    // Let the last registration's node settle into its idle poll.
    std::thread::sleep(Duration::from_secs(2));
    grid.commit_files(&trivial_tasks("t", tasks), "queue");
    let submitted = Instant::now();
    let before = grid.commit_count();
    wait_for_results(&grid, tasks, Duration::from_secs(1800));
    let seconds = submitted.elapsed().as_secs_f64();
    let commits = grid.commit_count() - before;
    stop_cleanly(&mut procs);
    let results = grid.files("tasks/completed").len();
    assert_eq!(results, tasks, "every task done, once");
    Drain {
        seconds,
        commits,
        results,
        startup,
    }
}

/// `git fetch; git commit; git push` in a loop, `writers` at once, for
/// `secs`: the ceiling one ref gives a naive writer.
pub fn bare_loop(writers: usize, secs: f64) -> f64 {
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

pub fn contention() -> String {
    const TASKS: usize = 500;
    /// Drains of one grid vary with who wins which race: each row is the
    /// median of this many, taken in turn (1, 8, 16, 1, 8, 16, ...) so that
    /// a change in the machine's load falls on every row alike.
    const RUNS: usize = 3;
    const WORKERS: [usize; 3] = [1, 8, 16];
    let mut runs: Vec<Vec<Drain>> = WORKERS.iter().map(|_| Vec::new()).collect();
    for round in 0..RUNS {
        for (i, workers) in WORKERS.iter().enumerate() {
            let d = drain(*workers, TASKS, "");
            eprintln!(
                "  run {round}: {workers} workers: {:.1} tasks/s, {} commits, registered in {:.1} s",
                d.results as f64 / d.seconds,
                d.commits,
                d.startup
            );
            runs[i].push(d);
        }
    }
    let rate = |d: &Drain| d.results as f64 / d.seconds;
    let rows: Vec<(usize, f64, f64, f64, f64, f64)> = WORKERS
        .iter()
        .zip(&runs)
        .map(|(w, ds)| {
            let rates: Vec<f64> = ds.iter().map(rate).collect();
            let commits: Vec<f64> = ds.iter().map(|d| d.commits as f64).collect();
            let startup: Vec<f64> = ds.iter().map(|d| d.startup).collect();
            let (lo, hi) = min_max(&rates);
            (
                *w,
                median(&rates),
                lo,
                hi,
                median(&commits),
                median(&startup),
            )
        })
        .collect();
    let rate1 = rows[0].1;
    let loop1 = bare_loop(1, 10.0);
    let loop8 = bare_loop(8, 10.0);
    let mut s = String::from("## 1. Contention\n\n");
    let _ = writeln!(
        s,
        "Draining {TASKS} tasks (`true`, shell engine, concurrency 1, `PULL_INTERVAL=1`, default \
         `claim_ahead`) from one bare repository: the workers start and register, then the tasks \
         arrive in one push; timed from that push to the last result on `main`. Commits are the \
         workers' (claims, results, heartbeats); the registration storm is timed apart. Median of \
         {RUNS} drains each, taken in turn, with the range.\n"
    );
    s.push_str(
        "| workers | tasks/s | range | vs 1 worker | commits | all registered after |\n|---:|---:|---:|---:|---:|---:|\n",
    );
    for (w, rate, lo, hi, commits, startup) in &rows {
        let _ = writeln!(
            s,
            "| {w} | {rate:.1} | {lo:.0}-{hi:.0} | {:.2} | {commits:.0} | {startup:.1} s |",
            rate / rate1
        );
    }
    let _ = writeln!(
        s,
        "\nBeside them, a bare `git fetch; git commit; git push` loop on the same machine: \
         {loop1:.1} commits/s with one writer, {loop8:.1} commits/s in total with eight.\n"
    );
    s
}

pub fn commits() -> String {
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
         | commits per task, 400 tasks, 4 workers (claims, results, heartbeats) | {per_task:.2} | at most 1.0 |\n\
         | idle node: commits per heartbeat interval (2 s interval, 20 s) | {per_interval:.2} | at most 1 |\n\
         | 100 idle nodes at the default interval ({default_interval:.0} s): commits per hour | {grid_hour:.0} | under 200 |\n"
    )
}
