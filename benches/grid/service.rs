//! Sections 4 to 6: pickup latency, an idle worker's footprint, and the
//! worker's overhead beyond a bare `podman run`.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::{bench_spec, median, min_max, percentile, trivial_tasks};

pub fn pickup() -> String {
    const TASKS: usize = 40;
    let grid = Grid::new();
    let starts = grid.path("starts");
    std::fs::create_dir_all(&starts).unwrap();
    let mut workers: Vec<WorkerProc> = (0..4)
        .map(|i| {
            let mut spec = bench_spec(&grid, &format!("idle{i}"));
            spec.drain = false;
            spawn_worker(&grid, &spec)
        })
        .collect();
    wait_until("four registrations", Duration::from_secs(30), || {
        grid.files("nodes").len() == 4
    });
    std::thread::sleep(Duration::from_secs(2));
    let mut latencies = Vec::new();
    for i in 0..TASKS {
        let id = format!("pick-{i:03}");
        let stamp = starts.join(&id);
        let script = format!("date +%s.%N > '{}'", stamp.display());
        let body = serde_json::json!({"task_id": id, "script": script, "timeout_seconds": 30});
        grid.commit_files(
            &[(
                format!("tasks/queue/{id}.json"),
                body.to_string().into_bytes(),
            )],
            "submit",
        );
        let pushed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        wait_until("the task to start", Duration::from_secs(30), || {
            stamp.exists() && std::fs::metadata(&stamp).unwrap().len() > 0
        });
        let started: f64 = std::fs::read_to_string(&stamp)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        latencies.push(started - pushed);
        // Submissions at irregular moments relative to the workers' polls.
        std::thread::sleep(Duration::from_millis(300 + fastrand::u64(0..1000)));
    }
    for w in &mut workers {
        w.signal(nix::sys::signal::Signal::SIGTERM);
        w.wait_exit(Duration::from_secs(30));
    }
    latencies.sort_by(f64::total_cmp);
    format!(
        "## 4. Pickup\n\n4 idle workers, `PULL_INTERVAL=1`, {TASKS} tasks submitted one at a time at irregular moments; \
         from the submitter's push returning to the task's script starting.\n\n\
         | p50 | p95 | max | target |\n|---:|---:|---:|---|\n| {:.2} s | {:.2} s | {:.2} s | p50 at most 0.7 s, p95 at most 1.5 s |\n",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        latencies[latencies.len() - 1],
    )
}

/// (RSS in KiB, CPU seconds of the process and its reaped children).
pub fn usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name's closing parenthesis: utime is 14th,
    // cutime 16th of the whole line, i.e. 12th and 14th after it.
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12, 13, 14]
        .iter()
        .map(|&i| rest[i].parse::<u64>().unwrap())
        .sum();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    (rss, ticks as f64 / hz)
}

pub fn footprint() -> String {
    const SECONDS: u64 = 60;
    let grid = Grid::new();
    let mut spec = WorkerSpec::new(&grid, "idle");
    spec.drain = false;
    spec.env.push(("LOG_LEVEL".into(), "warn".into()));
    // The default pull interval: the config written by the harness says 1 s.
    spec.env.push(("PULL_INTERVAL".into(), "10".into()));
    let mut w = spawn_worker(&grid, &spec);
    wait_until("registration", Duration::from_secs(30), || {
        grid.files("nodes").contains_key("idle.json")
    });
    std::thread::sleep(Duration::from_secs(5));
    let pid = w.child.id();
    let (_, cpu0) = usage(pid);
    let mut peak = 0;
    for _ in 0..SECONDS {
        std::thread::sleep(Duration::from_secs(1));
        peak = peak.max(usage(pid).0);
    }
    let (rss, cpu1) = usage(pid);
    // The same node after a long drain, idle again: what it kept of it.
    grid.commit_files(&trivial_tasks("f", AFTER), "a long drain");
    crate::wait_for_results(&grid, AFTER, Duration::from_secs(900));
    let drain_peak = peak_rss(pid);
    // Idle for two poll intervals: its syncs are over.
    std::thread::sleep(Duration::from_secs(20));
    let (after, _) = usage(pid);
    w.signal(nix::sys::signal::Signal::SIGTERM);
    w.wait_exit(Duration::from_secs(30));
    let share = (cpu1 - cpu0) / SECONDS as f64 * 100.0;
    let mib = |kb: u64| kb as f64 / 1024.0;
    format!(
        "## 5. Footprint\n\nOne idle worker at the default pull interval (10 s), over {SECONDS} s; CPU includes its git children. \
         Then the same worker drains {AFTER} `true` tasks (shell engine) and is idle again for 20 s.\n\n\
         | RSS at the end | peak RSS | CPU | idle after {AFTER} tasks | peak in the drain | target |\n|---:|---:|---:|---:|---:|---|\n\
         | {:.1} MiB | {:.1} MiB | {share:.2} % of a core | {:.1} MiB | {:.1} MiB | at most 10 MB, under 1 % |\n",
        mib(rss),
        mib(peak),
        mib(after),
        mib(drain_peak),
    )
}

/// Tasks the footprint's worker drains before it is measured idle again.
const AFTER: usize = 5000;

/// The most memory `pid` held so far (`VmHWM`), in KiB.
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn overhead() -> String {
    const TASKS: usize = 20;
    // Podman's own time moves by a third between runs on a busy machine
    // (bare runs of 221-369 ms in full runs): one drain each swung the
    // row from -6 % to 25 %. Bare and worker in turn, three times, and
    // the median of each round's ratio.
    const ROUNDS: usize = 3;
    require_podman_image();
    let conf = containers_conf();
    let mut bare = Vec::new();
    let mut worker = Vec::new();
    let mut ratios = Vec::new();
    for round in 0..ROUNDS {
        let b = bare_podman(&conf, TASKS, round);
        let w = through_worker(&conf, TASKS);
        bare.push(b);
        worker.push(w);
        ratios.push((w - b) / b * 100.0);
    }
    let range = |v: &[f64], k: f64| {
        let (lo, hi) = min_max(v);
        format!("{:.0}-{:.0}", lo * k, hi * k)
    };
    format!(
        "## 6. Overhead\n\n{TASKS} tasks (`true`) in podman with the sandbox flags, busybox image, one after another: \
         bare `podman run`, then the same tasks through one worker, in turn, {ROUNDS} times; medians, with the range.\n\n\
         | bare `podman run` | through the worker | worker's time beyond podman | target |\n|---:|---:|---:|---|\n\
         | {:.0} ms ({} ms) | {:.0} ms ({} ms) | {:.0} % ({} %) | at most 25 % |\n",
        median(&bare) * 1000.0,
        range(&bare, 1000.0),
        median(&worker) * 1000.0,
        range(&worker, 1000.0),
        median(&ratios),
        range(&ratios, 1.0),
    )
}

/// Seconds a task: `n` bare `podman run`s with the worker's own flags, one
/// after another.
fn bare_podman(conf: &std::path::Path, n: usize, round: usize) -> f64 {
    let job = dgrid_worker::sandbox::Job {
        node_id: "bare".into(),
        task_id: "x".into(),
        attempt: 1,
        script: "true".into(),
        timeout: Duration::from_secs(30),
        inputs: None,
    };
    let started = Instant::now();
    for i in 0..n {
        let mut j = job.clone();
        j.task_id = format!("bare-{round}-{i}");
        let args = dgrid_worker::sandbox::run_args(
            &j,
            TEST_IMAGE,
            &dgrid_worker::sandbox::Limits::default(),
        );
        let ok = Command::new("podman")
            .args(&args)
            .env("CONTAINERS_CONF", conf)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success());
    }
    started.elapsed().as_secs_f64() / n as f64
}

/// Seconds a task: `n` tasks through one worker, end to end, from its
/// first claim (start-up, the engine check, clone and registration, is
/// paid once per worker, not per task).
fn through_worker(conf: &std::path::Path, n: usize) -> f64 {
    let grid = Grid::new();
    let tasks: Vec<(String, Vec<u8>)> = trivial_tasks("pod", n);
    grid.commit_files(&tasks, "queue");
    let mut spec = bench_spec(&grid, "podder");
    spec.engine = "podman".into();
    spec.env
        .push(("CONTAINERS_CONF".into(), conf.display().to_string()));
    spec.env.push(("DGRID_IMAGE".into(), TEST_IMAGE.into()));
    let mut w = spawn_worker(&grid, &spec);
    wait_until("the first claim", Duration::from_secs(60), || {
        !grid.files("tasks/in_progress").is_empty()
    });
    let started = Instant::now();
    assert!(
        w.wait_exit(Duration::from_secs(600)).success(),
        "{}",
        w.log_text()
    );
    let worker = started.elapsed().as_secs_f64() / n as f64;
    assert_eq!(grid.files("tasks/completed").len(), n);
    worker
}
