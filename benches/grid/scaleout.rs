//! Section 7: scale-out. Does a grid finish a backlog N times faster with
//! N nodes, with tasks that take seconds (where holding work ahead costs
//! other nodes their turn), with a git host 100 ms away, and with a fleet
//! that starts up together?
//!
//! Each drain: N workers (shell engine, concurrency 1), idle and registered
//! before the backlog arrives in one push (unless the fleet starts with it),
//! timed from that push to the last result on `main`. E(N) = rate with N
//! workers / (N × rate with 1). Every worker's log says when it claimed,
//! started and gave back each task; from those come the per-node first
//! start and the tail: the longest a node sat idle while another held a
//! claim it had not started, counted from when it went idle, and counted
//! only while another held one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime};

use crate::common::delay_proxy::DelayProxy;
use crate::common::hosts::{HttpsHost, SshHost};
use crate::common::*;
use crate::{bench_spec, median, min_max, wait_for_results};

/// Drains per row, taken in turn across the rows of a comparison.
const RUNS: usize = 3;

fn drains_per_row() -> usize {
    std::env::var("SCALEOUT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RUNS)
}
/// One way, through the far host's proxy: a round trip costs 100 ms.
const FAR: Duration = Duration::from_millis(50);

#[derive(Clone)]
struct Shape {
    workers: usize,
    /// (task id, script)
    tasks: Vec<(String, String)>,
    pull_interval: u64,
    far: bool,
    /// The grid is served over HTTPS (nginx and git-http-backend, a token),
    /// as a forge serves it, instead of over a path or `git daemon`.
    https: bool,
    /// The grid is served over SSH (OpenSSH's sshd, a deploy key and a
    /// pinned host key), as a forge serves it to a deploy key.
    ssh: bool,
    /// The workers start with the backlog already queued (registration
    /// included in the time), instead of idle before it arrives.
    fleet_start: bool,
    /// Each worker's slots.
    concurrency: u32,
}

struct Run {
    seconds: f64,
    rate: f64,
    commits: usize,
    /// Per node: from the backlog's push to its first task's start.
    first_start: Vec<f64>,
    /// The longest a node sat idle, after its first task, while another
    /// node held a claim it had not started: from when it went idle.
    tail_idle: f64,
    /// The same, counted only while another node held one (the longest
    /// stretch of both at once).
    held_idle: f64,
    /// Tasks handed back to the queue.
    given_back: usize,
    /// Starts beyond one a task: runs of a task taken over that its first
    /// holder had started too (the work done twice).
    ran_twice: usize,
}

fn sleeps(prefix: &str, lengths: &[f64]) -> Vec<(String, String)> {
    lengths
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let script = if *s == 0.0 {
                "true".to_owned()
            } else {
                format!("sleep {s:.3}")
            };
            (format!("{prefix}-{i:04}"), script)
        })
        .collect()
}

/// Heavy-tailed task lengths from 0.1 s to 5 s (Pareto, alpha 1, cut at
/// 5 s), from a fixed seed: most tasks short, a few long.
fn heavy_tailed(n: usize) -> Vec<f64> {
    let mut rng = fastrand::Rng::with_seed(20261130);
    (0..n)
        .map(|_| {
            let u = rng.f64().max(1e-9);
            (0.1 / u).min(5.0)
        })
        .collect()
}

fn drain(shape: &Shape) -> Run {
    let grid = Grid::new();
    let https = shape.https.then(|| HttpsHost::start(grid.root.path()));
    let ssh = shape.ssh.then(SshHost::start);
    let daemon =
        (shape.far && !shape.https && !shape.ssh).then(|| GitDaemon::start(&grid, free_port()));
    let upstream = https
        .as_ref()
        .map(|h| h.port)
        .or(ssh.as_ref().map(|h| h.port))
        .or(daemon.as_ref().map(|d| d.port));
    let proxy = upstream
        .filter(|_| shape.far)
        .map(|port| DelayProxy::start(port, FAR));
    let files: Vec<(String, Vec<u8>)> = shape
        .tasks
        .iter()
        .map(|(id, script)| {
            let body = serde_json::json!({"task_id": id, "script": script, "timeout_seconds": 60});
            (
                format!("tasks/queue/{id}.json"),
                body.to_string().into_bytes(),
            )
        })
        .collect();
    let spawn_all = || -> Vec<WorkerProc> {
        (0..shape.workers)
            .map(|i| {
                let mut spec = bench_spec(&grid, &format!("w{i:02}"));
                spec.drain = false;
                spec.env.retain(|(k, _)| k != "LOG_LEVEL");
                // info: the lines the tail is read from; SCALEOUT_LOG=debug
                // shows every round of every sync.
                let level = std::env::var("SCALEOUT_LOG").unwrap_or_else(|_| "info".into());
                spec.env.push(("LOG_LEVEL".into(), level));
                spec.env
                    .push(("PULL_INTERVAL".into(), shape.pull_interval.to_string()));
                spec.env
                    .push(("DGRID_CONCURRENCY".into(), shape.concurrency.to_string()));
                if let Some(h) = &https {
                    let port = proxy.as_ref().map_or(h.port, |p| p.port);
                    spec.url = format!("https://127.0.0.1:{port}/grid.git");
                    spec.extra += &format!("\n[git]\nca_file = \"{}\"\n", h.ca.display());
                    spec.env.push(("GIT_TOKEN".into(), h.token.clone()));
                } else if let Some(h) = &ssh {
                    let port = proxy.as_ref().map_or(h.port, |p| p.port);
                    spec.url = h.url_at(port, &grid.bare);
                    spec.extra += &format!(
                        "\n[git]\nssh_key_file = \"{}\"\nknown_hosts = \"{}\"\n",
                        h.key.display(),
                        h.known_hosts_at(port).display()
                    );
                } else if let Some(p) = &proxy {
                    spec.url = p.url("grid.git");
                }
                spawn_worker(&grid, &spec)
            })
            .collect()
    };
    let mut cpu_before: Vec<f64> = vec![0.0; shape.workers];
    let (mut procs, pushed_at, pushed) = if shape.fleet_start {
        grid.commit_files(&files, "queue");
        let at = SystemTime::now();
        (spawn_all(), at, Instant::now())
    } else {
        let procs = spawn_all();
        wait_until("every registration", Duration::from_secs(300), || {
            grid.files("nodes").len() == shape.workers
        });
        // Let the last registration settle into its idle poll.
        std::thread::sleep(Duration::from_secs(shape.pull_interval.min(3) + 1));
        cpu_before = procs
            .iter()
            .map(|p| crate::service::usage(p.child.id()).1)
            .collect();
        grid.commit_files(&files, "queue");
        (procs, SystemTime::now(), Instant::now())
    };
    let before = grid.commit_count();
    let total = shape.tasks.len();
    wait_for_results(&grid, total, Duration::from_secs(1800));
    let seconds = pushed.elapsed().as_secs_f64();
    let ended_at = SystemTime::now();
    let commits = grid.commit_count() - before;
    // While tuning: where the machine went, node by node (SCALEOUT_CPU=1).
    let cpu: Vec<f64> = procs
        .iter()
        .zip(&cpu_before)
        .map(|(p, b)| crate::service::usage(p.child.id()).1 - b)
        .collect();
    for p in &mut procs {
        p.signal(nix::sys::signal::Signal::SIGTERM);
    }
    for p in &mut procs {
        assert!(
            p.wait_exit(Duration::from_secs(120)).success(),
            "{}",
            p.log_text()
        );
    }
    assert_eq!(
        grid.files("tasks/completed").len(),
        total,
        "every task done, once"
    );
    let logs: Vec<Vec<Event>> = procs.iter().map(|p| events(&p.log_text())).collect();
    if std::env::var_os("SCALEOUT_KEEP").is_some() {
        eprintln!("    kept: {}", grid.root.path().display());
        std::mem::forget(procs);
        std::mem::forget(grid);
    }
    let t0 = secs(pushed_at);
    if std::env::var_os("SCALEOUT_CPU").is_some() {
        let ran = |l: &[Event]| l.iter().filter(|e| e.what == What::Finished).count();
        let line: Vec<String> = logs
            .iter()
            .zip(&cpu)
            .map(|(l, c)| format!("{}:{c:.2}s", ran(l)))
            .collect();
        let total: f64 = cpu.iter().sum();
        eprintln!(
            "    {seconds:.2} s, nodes' cpu {total:.2} s (tasks:cpu) {}",
            line.join(" ")
        );
    }
    let tail = tail_idle(&logs, secs(ended_at));
    Run {
        seconds,
        rate: total as f64 / seconds,
        commits,
        first_start: logs
            .iter()
            .filter_map(|l| l.iter().find(|e| e.what == What::Started))
            .map(|e| e.at - t0)
            .collect(),
        tail_idle: tail.0,
        held_idle: tail.1,
        given_back: logs
            .iter()
            .flatten()
            .filter(|e| e.what == What::GaveBack)
            .count(),
        ran_twice: ran_twice(&logs),
    }
}

/// Starts beyond the first of each task, over every node's log; a start
/// taken back for higher work is not a run.
fn ran_twice(logs: &[Vec<Event>]) -> usize {
    let mut starts: std::collections::BTreeMap<&str, isize> = Default::default();
    for e in logs.iter().flatten() {
        match e.what {
            What::Started => *starts.entry(&e.task).or_default() += 1,
            What::TakenBack => *starts.entry(&e.task).or_default() -= 1,
            _ => {}
        }
    }
    starts.values().map(|n| (n - 1).max(0) as usize).sum()
}

fn secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    Claimed,
    Started,
    Finished,
    GaveBack,
    /// A start taken back for higher work: its run ends with no
    /// "task finished".
    TakenBack,
}

#[derive(Debug, Clone)]
struct Event {
    at: f64,
    what: What,
    task: String,
}

/// The worker's log lines that say what became of a task, with their
/// times. Colour codes, if any, are dropped first.
fn events(log: &str) -> Vec<Event> {
    let mut out = Vec::new();
    for raw in log.lines() {
        let line = strip_ansi(raw);
        let Some((stamp, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(at) = chrono::DateTime::parse_from_rfc3339(stamp) else {
            continue;
        };
        let Some(task) = rest
            .split_whitespace()
            .find_map(|w| w.strip_prefix("task_id="))
        else {
            continue;
        };
        let message = rest.trim_start_matches(|c: char| c.is_ascii_uppercase() || c == ' ');
        let what = if message.starts_with("claimed") {
            What::Claimed
        } else if message.starts_with("running") {
            What::Started
        } else if message.starts_with("task finished") {
            What::Finished
        } else if message.starts_with("giving back") {
            What::GaveBack
        } else if message.starts_with("taking back the start") {
            What::TakenBack
        } else {
            continue;
        };
        out.push(Event {
            at: at.timestamp_micros() as f64 / 1e6,
            what,
            task: task.to_owned(),
        });
    }
    out
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The longest a node sat idle (nothing running, after its first task
/// started, until its next start or the end of the drain) while another
/// node held a claim it had not started (from its claim until it started
/// it or gave it back). What runs is kept by task: a start the relay makes
/// while the loop is inside a sync is logged before the end of the run
/// before it, which the loop logs after the sync (read in order, as the
/// last run's end, that made a node look idle for a whole task).
/// The tail ([`Run::tail_idle`], [`Run::held_idle`]).
fn tail_idle(logs: &[Vec<Event>], end: f64) -> (f64, f64) {
    // Per node: idle intervals, and held-unstarted intervals.
    let mut idle: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut held: Vec<Vec<(f64, f64)>> = Vec::new();
    for log in logs {
        let mut gaps = Vec::new();
        let mut free_since: Option<f64> = None;
        let mut running: BTreeSet<&str> = BTreeSet::new();
        let mut claims: BTreeMap<&str, f64> = BTreeMap::new();
        let mut holds = Vec::new();
        for e in log {
            match e.what {
                What::Claimed => {
                    claims.insert(&e.task, e.at);
                }
                What::Started => {
                    if let Some(since) = free_since.take() {
                        gaps.push((since, e.at));
                    }
                    running.insert(&e.task);
                    if let Some(c) = claims.remove(e.task.as_str()) {
                        holds.push((c, e.at));
                    }
                }
                What::Finished | What::TakenBack => {
                    if running.remove(e.task.as_str()) && running.is_empty() {
                        free_since = Some(e.at);
                    }
                }
                What::GaveBack => {
                    if let Some(c) = claims.remove(e.task.as_str()) {
                        holds.push((c, e.at));
                    }
                }
            }
        }
        if let Some(since) = free_since {
            gaps.push((since, end));
        }
        idle.push(gaps);
        held.push(holds);
    }
    let mut worst: f64 = 0.0;
    let mut while_held: f64 = 0.0;
    for (b, gaps) in idle.iter().enumerate() {
        // What the other nodes held, as one set of intervals.
        let mut others: Vec<(f64, f64)> = held
            .iter()
            .enumerate()
            .filter(|(a, _)| *a != b)
            .flat_map(|(_, holds)| holds.iter().copied())
            .collect();
        others.sort_by(|x, y| x.0.total_cmp(&y.0));
        let mut union: Vec<(f64, f64)> = Vec::new();
        for (h0, h1) in others {
            match union.last_mut() {
                Some(last) if h0 <= last.1 => last.1 = last.1.max(h1),
                _ => union.push((h0, h1)),
            }
        }
        for &(i0, i1) in gaps {
            for &(h0, h1) in &union {
                let (from, upto) = (i0.max(h0), i1.min(h1));
                if upto > from {
                    worst = worst.max(upto - i0);
                    while_held = while_held.max(upto - from);
                }
            }
        }
    }
    (worst, while_held)
}

/// Runs of several shapes, taken in turn, `RUNS` each.
fn in_turn(shapes: &[Shape]) -> Vec<Vec<Run>> {
    let mut runs: Vec<Vec<Run>> = shapes.iter().map(|_| Vec::new()).collect();
    for round in 0..drains_per_row() {
        for (i, shape) in shapes.iter().enumerate() {
            let r = drain(shape);
            eprintln!(
                "  run {round}: {} workers{}, {} tasks{}{}: {:.1} s, {:.2} tasks/s, {} commits, tail idle {:.2} s ({:.2} s while held), {} given back, {} run twice",
                shape.workers,
                if shape.concurrency > 1 {
                    format!(" of {} slots", shape.concurrency)
                } else {
                    String::new()
                },
                shape.tasks.len(),
                if shape.far { ", far host" } else { "" },
                if shape.fleet_start {
                    ", fleet start"
                } else {
                    ""
                },
                r.seconds,
                r.rate,
                r.commits,
                r.tail_idle,
                r.held_idle,
                r.given_back,
                r.ran_twice
            );
            runs[i].push(r);
        }
    }
    runs
}

fn med(runs: &[Run], f: impl Fn(&Run) -> f64) -> f64 {
    median(&runs.iter().map(f).collect::<Vec<_>>())
}

fn range(runs: &[Run], f: impl Fn(&Run) -> f64) -> (f64, f64) {
    min_max(&runs.iter().map(f).collect::<Vec<_>>())
}

fn shape(workers: usize, tasks: Vec<(String, String)>) -> Shape {
    Shape {
        workers,
        tasks,
        pull_interval: 1,
        far: false,
        https: false,
        ssh: false,
        fleet_start: false,
        concurrency: 1,
    }
}

/// An E(N) comparison: one worker against N, each row's runs in turn.
struct Efficiency {
    label: String,
    rows: Vec<(usize, Vec<Run>)>,
}

impl Efficiency {
    fn measure(label: &str, shapes: Vec<Shape>) -> Efficiency {
        let runs = in_turn(&shapes);
        Efficiency {
            label: label.into(),
            rows: shapes.iter().map(|s| s.workers).zip(runs).collect(),
        }
    }

    fn rate1(&self) -> f64 {
        med(&self.rows[0].1, |r| r.rate)
    }

    fn e(&self, workers: usize) -> f64 {
        let (_, runs) = self.rows.iter().find(|(w, _)| *w == workers).unwrap();
        med(runs, |r| r.rate) / (workers as f64 * self.rate1())
    }

    fn table(&self, s: &mut String) {
        for (w, runs) in &self.rows {
            let (lo, hi) = range(runs, |r| r.rate);
            let tasks = runs[0].rate * runs[0].seconds;
            let _ = writeln!(
                s,
                "| {} | {w} | {tasks:.0} | {:.1} s | {:.2} | {lo:.2}-{hi:.2} | {:.2} | {:.0} | {:.2} s | {:.2} s | {:.0} |",
                self.label,
                med(runs, |r| r.seconds),
                med(runs, |r| r.rate),
                med(runs, |r| r.rate) / (*w as f64 * self.rate1()),
                med(runs, |r| r.commits as f64),
                med(runs, |r| r.tail_idle),
                med(runs, |r| r.held_idle),
                med(runs, |r| r.given_back as f64),
            );
        }
    }
}

/// While tuning: `SCALEOUT_ONLY=second,far cargo bench --bench grid scaleout`
/// runs only those rows (second, ten, mixed, far, fleet, pickup) and prints
/// their drains, not the section.
fn only(row: &str) -> bool {
    std::env::var("SCALEOUT_ONLY").map_or(true, |v| v.split(',').any(|r| r == row))
}

pub fn scaleout() -> String {
    if std::env::var("SCALEOUT_ONLY").is_ok() {
        let one_s = |n: usize, p: &str| sleeps(p, &vec![1.0; n]);
        let far = |mut s: Shape| {
            s.far = true;
            s
        };
        if only("second") {
            in_turn(&[
                shape(1, one_s(16, "a")),
                shape(8, one_s(64, "b")),
                shape(16, one_s(128, "c")),
            ]);
        }
        if only("ten") {
            in_turn(&[
                shape(1, sleeps("d", &[10.0; 4])),
                shape(16, sleeps("e", &[10.0; 64])),
            ]);
        }
        if only("mixed") {
            in_turn(&[shape(8, sleeps("m", &heavy_tailed(128)))]);
        }
        if only("zero") {
            in_turn(&[
                shape(1, sleeps("z", &[0.0; 500])),
                shape(8, sleeps("y", &[0.0; 500])),
            ]);
        }
        if only("far") {
            in_turn(&[far(shape(1, one_s(16, "f"))), far(shape(8, one_s(64, "g")))]);
        }
        if only("farzero") {
            in_turn(&[
                far(shape(1, sleeps("h", &[0.0; 500]))),
                far(shape(8, sleeps("i", &[0.0; 500]))),
            ]);
        }
        if only("fleet1") {
            let fleet = |mut s: Shape| {
                s.fleet_start = true;
                s
            };
            in_turn(&[fleet(shape(1, sleeps("j", &[0.0; 500])))]);
        }
        if only("fleet") {
            let fleet = |mut s: Shape| {
                s.fleet_start = true;
                s
            };
            in_turn(&[
                fleet(shape(1, sleeps("j", &[0.0; 500]))),
                fleet(shape(8, sleeps("k", &[0.0; 500]))),
            ]);
        }
        if only("custom") {
            custom();
        }
        if only("pickup") {
            in_turn(&[Shape {
                pull_interval: 10,
                ..shape(16, sleeps("p", &[3.0; 32]))
            }]);
        }
        return String::new();
    }
    full()
}

/// A drain the fixed rows do not cover, to check a rule against what a
/// user would run: `SCALEOUT_ONLY=custom SCALEOUT_CUSTOM=workers=4,
/// slots=2,tasks=32,len=2,interval=10,far=1,https=1` (len in seconds, or
/// `mixed` for the heavy-tailed lengths; `https=1` serves the grid as a
/// forge does, over HTTPS with a token, behind the far proxy with `far=1`;
/// `ssh=1` over SSH with a deploy key). One worker drains its share of the
/// tasks (tasks / workers, as in the E rows; `one=500` for the whole
/// backlog, as the contention rows do) in turn with the N.
fn custom() {
    let spec = std::env::var("SCALEOUT_CUSTOM").unwrap_or_default();
    let get = |key: &str, default: &str| -> String {
        spec.split(',')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map_or(default.to_owned(), |(_, v)| v.to_owned())
    };
    let num = |key: &str, default: &str| -> usize {
        get(key, default)
            .parse()
            .unwrap_or_else(|_| panic!("SCALEOUT_CUSTOM: {key} is not a number"))
    };
    let workers = num("workers", "8");
    let tasks = num("tasks", "64");
    let len = get("len", "1");
    let lengths = |n: usize| match len.as_str() {
        "mixed" => heavy_tailed(n),
        l => match l.strip_prefix("cpu") {
            // Sized in the loop's turns below, not in seconds.
            Some(_) => vec![0.0; n],
            None => vec![
                l.parse()
                    .expect("SCALEOUT_CUSTOM: len is seconds, mixed or cpuN");
                n
            ],
        },
    };
    // `len=cpuN`: a task that counts to N thousand in the shell, work for
    // the processor (about 1.3 s a million turns on a core here), so that
    // a node held to less of a core (`BENCH_CPU_PER_WORKER`) takes longer.
    let cpu_work = |tasks: Vec<(String, String)>| match len.strip_prefix("cpu") {
        Some(k) => {
            let turns = k
                .parse::<usize>()
                .expect("SCALEOUT_CUSTOM: len=cpuN, N a number")
                * 1000;
            tasks
                .into_iter()
                .map(|(id, _)| {
                    let script = format!("i=0; while [ $i -lt {turns} ]; do i=$((i+1)); done");
                    (id, script)
                })
                .collect()
        }
        None => tasks,
    };
    let make = |workers: usize, n: usize, prefix: &str| Shape {
        pull_interval: num("interval", "1") as u64,
        far: num("far", "0") == 1,
        https: num("https", "0") == 1,
        ssh: num("ssh", "0") == 1,
        concurrency: num("slots", "1") as u32,
        ..shape(workers, cpu_work(sleeps(prefix, &lengths(n))))
    };
    let one = num("one", &(tasks / workers).to_string());
    let runs = in_turn(&[make(1, one, "u"), make(workers, tasks, "v")]);
    let rate = |r: &[Run]| med(r, |r| r.rate);
    // The one worker's rate scaled to the N's share of the backlog.
    let scale = one as f64 * workers as f64 / tasks as f64;
    eprintln!(
        "  E({workers}) = {:.2} ({:.2} x one worker)",
        rate(&runs[1]) * scale / (workers as f64 * rate(&runs[0])),
        rate(&runs[1]) / rate(&runs[0])
    );
}

fn full() -> String {
    let one_s = |n: usize, p: &str| sleeps(p, &vec![1.0; n]);
    let ten_s = |n: usize, p: &str| sleeps(p, &vec![10.0; n]);
    let zero = |n: usize, p: &str| sleeps(p, &vec![0.0; n]);

    eprintln!("  1 s tasks");
    let second = Efficiency::measure(
        "1 s",
        vec![
            shape(1, one_s(16, "a")),
            shape(8, one_s(64, "b")),
            shape(16, one_s(128, "c")),
        ],
    );
    eprintln!("  10 s tasks");
    let ten = Efficiency::measure(
        "10 s",
        vec![shape(1, ten_s(4, "d")), shape(16, ten_s(64, "e"))],
    );
    eprintln!("  mixed lengths");
    let lengths = heavy_tailed(128);
    let work: f64 = lengths.iter().sum();
    let longest = lengths.iter().copied().fold(0.0, f64::max);
    let ideal = (work / 8.0).max(longest);
    let mixed = in_turn(&[shape(8, sleeps("m", &lengths))]).remove(0);
    eprintln!("  far host: 1 s tasks, and zero-length");
    let far = |mut s: Shape| {
        s.far = true;
        s
    };
    let far_second = Efficiency::measure(
        "1 s, far host",
        vec![far(shape(1, one_s(16, "f"))), far(shape(8, one_s(64, "g")))],
    );
    let far_zero = Efficiency::measure(
        "0 s, far host",
        vec![far(shape(1, zero(500, "h"))), far(shape(8, zero(500, "i")))],
    );
    eprintln!("  a fleet starting up");
    let fleet = |mut s: Shape| {
        s.fleet_start = true;
        s
    };
    let fleet_start = Efficiency::measure(
        "0 s, fleet start",
        vec![
            fleet(shape(1, zero(500, "j"))),
            fleet(shape(8, zero(500, "k"))),
        ],
    );
    eprintln!("  16 nodes at the default pull interval");
    let slow_poll = Shape {
        pull_interval: 10,
        ..shape(16, sleeps("p", &[3.0; 32]))
    };
    let pickup = in_turn(&[slow_poll]).remove(0);
    let last_first_start = |r: &Run| {
        assert_eq!(r.first_start.len(), 16, "every node ran a task");
        r.first_start.iter().copied().fold(0.0, f64::max)
    };

    let mut s = String::from("## 7. Scale-out\n\n");
    let _ = writeln!(
        s,
        "Workers idle and registered (shell engine, concurrency 1, `PULL_INTERVAL=1`), then a \
         backlog arrives in one push; timed from that push to the last result on `main`. \
         E = rate with N workers / (N × rate with 1 worker). \"Tail idle\": the longest a node \
         sat idle, after its first task, while another node held a claim it had not started, \
         counted from when it went idle; \"while held\": the same, counted only while another \
         node held one. \
         The far host is `git daemon` behind a proxy on loopback that delays each direction by \
         {} ms. Median of {RUNS} drains per row, taken in turn, with the range of the rate.\n",
        FAR.as_millis()
    );
    s.push_str(
        "| tasks of | workers | tasks | time | tasks/s | range | E | commits | tail idle | while held | given back |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    second.table(&mut s);
    ten.table(&mut s);
    far_second.table(&mut s);
    far_zero.table(&mut s);
    fleet_start.table(&mut s);
    let (mlo, mhi) = range(&mixed, |r| r.seconds);
    let _ = writeln!(
        s,
        "\nMixed lengths: 8 workers, 128 tasks of 0.1-5 s (heavy-tailed, fixed seed; {work:.0} s \
         of work, the longest {longest:.1} s): makespan {:.1} s ({mlo:.1}-{mhi:.1}), ideal \
         {ideal:.1} s, ratio {:.2}; tail idle {:.2} s ({:.2} s while held).\n",
        med(&mixed, |r| r.seconds),
        med(&mixed, |r| r.seconds) / ideal,
        med(&mixed, |r| r.tail_idle),
        med(&mixed, |r| r.held_idle),
    );
    let (plo, phi) = range(&pickup, last_first_start);
    let _ = writeln!(
        s,
        "At the default pull interval (10 s), 32 tasks of 3 s pushed to 16 idle nodes: the \
         last node started its first task {:.1} s after the push ({plo:.1}-{phi:.1}).\n",
        med(&pickup, last_first_start),
    );
    let worst = |of: fn(&Run) -> f64| {
        [&second.rows, &ten.rows, &far_second.rows]
            .iter()
            .flat_map(|rows| rows.iter())
            .flat_map(|(_, runs)| runs.iter().map(of))
            .chain(mixed.iter().map(of))
            .fold(0.0, f64::max)
    };
    let (tail, held) = (worst(|r| r.tail_idle), worst(|r| r.held_idle));
    let _ = writeln!(
        s,
        "| target | measured |\n|---|---|\n\
         | 1 s tasks: E(8) ≥ 0.85, E(16) ≥ 0.75 | E(8) {:.2}, E(16) {:.2} |\n\
         | 10 s tasks, four per node: E(16) ≥ 0.9 | E(16) {:.2} |\n\
         | mixed lengths: makespan ≤ 1.3 × ideal | {:.2} × |\n\
         | far host: E(8) ≥ 0.7 with 1 s tasks; 500 zero-length tasks, 8 workers ≥ 1 worker | E(8) {:.2}; {:.2} × |\n\
         | fleet start, 500 `true` tasks: 8 workers ≥ 1 worker | {:.2} × |\n\
         | default pull interval: every node started within 12 s | {:.1} s |\n\
         | tail: no node idle > `pull_interval` while another holds unstarted claims | worst {tail:.2} s from the idle start, {held:.2} s while held (interval 1 s) |\n",
        second.e(8),
        second.e(16),
        ten.e(16),
        med(&mixed, |r| r.seconds) / ideal,
        far_second.e(8),
        far_zero.e(8) * 8.0,
        fleet_start.e(8) * 8.0,
        med(&pickup, last_first_start),
    );
    s
}
