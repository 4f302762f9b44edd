//! A grid in every state, for the tools' tests: nodes (one live, one whose
//! heartbeat is stale), queued tasks, live and orphaned claims, completed and
//! failed results. Files are made with the library's own types, so they are
//! what workers write.
#![allow(dead_code)]

use std::process::{Command, Output};

use dgrid_worker::grid::claim::ClaimedTask;
use dgrid_worker::grid::{Id, NodeRecord, NodeStatus, ResultStatus, Task, TaskResult, TaskRules};
use dgrid_worker::time;

use crate::common::Grid;

pub fn id(s: &str) -> Id {
    Id::parse(s).unwrap()
}

pub fn node(name: &str, status: NodeStatus, hb_ago_s: i64, running: &[&str]) -> Vec<u8> {
    let now = time::now();
    NodeRecord {
        node_id: id(name),
        status,
        last_heartbeat: time::format(now - chrono::Duration::seconds(hb_ago_s)),
        started_at: time::format(now - chrono::Duration::hours(5)),
        version: "0.1.0".into(),
        hostname: format!("{name}.example"),
        engine: "podman".into(),
        concurrency: 1,
        running: running.iter().map(|s| s.to_string()).collect(),
        tasks_completed: 4,
        tasks_failed: 1,
        task_ms: None,
        holds_level: None,
        busy_ms: None,
        takes_assigned: false,
        unanswered_at: None,
        overdue_at: None,
        problem: None,
        labels: vec![
            "arch=amd64".into(),
            "engine=podman".into(),
            "os=linux".into(),
        ],
        exclusive: Vec::new(),
        paused: None,
        max_timeout_seconds: None,
        node_key: None,
    }
    .to_bytes()
}

pub fn task(name: &str, attempt: u32) -> Task {
    let mut t = Task::parse(
        format!(r#"{{"task_id":"{name}","script":"echo {name}","timeout_seconds":60}}"#).as_bytes(),
        &TaskRules::default(),
    )
    .unwrap();
    t.attempt = attempt;
    t
}

pub fn claim(name: &str, by: &str, ago_s: i64, attempt: u32) -> Vec<u8> {
    let at = time::now() - chrono::Duration::seconds(ago_s);
    ClaimedTask::new(
        task(name, attempt),
        &id(by),
        at,
        chrono::Duration::seconds(300),
    )
    .to_bytes()
}

pub fn result(name: &str, by: &str, status: ResultStatus, ago_s: i64) -> Vec<u8> {
    let at = time::now() - chrono::Duration::seconds(ago_s);
    let (code, err, stderr) = match status {
        ResultStatus::Completed => (Some(0), None, ""),
        ResultStatus::Failed => (Some(2), None, "boom: <script> went wrong"),
        _ => (
            None,
            Some("killed after its timeout of 60 s".to_owned()),
            "",
        ),
    };
    TaskResult {
        task_id: name.into(),
        node_id: id(by),
        exit_code: code,
        stdout: format!("{name} out\n"),
        stderr: stderr.into(),
        timestamp: time::format(at),
        status,
        started_at: Some(time::format(at - chrono::Duration::seconds(3))),
        duration_ms: Some(3000),
        attempt: 1,
        truncated: false,
        error: err,
    }
    .to_bytes()
}

/// The files of the populated grid.
pub fn populated_files() -> Vec<(String, Vec<u8>)> {
    let mut f: Vec<(String, Vec<u8>)> = vec![
        (
            "nodes/alpha.json".into(),
            node("alpha", NodeStatus::Busy, 20, &["t-run"]),
        ),
        (
            "nodes/beta.json".into(),
            node("beta", NodeStatus::Busy, 3 * 3600, &["t-orphan"]),
        ),
        (
            "tasks/in_progress/t-run.json".into(),
            claim("t-run", "alpha", 30, 1),
        ),
        (
            "tasks/in_progress/t-orphan.json".into(),
            claim("t-orphan", "beta", 10, 1),
        ),
        (
            "tasks/in_progress/t-last.json".into(),
            claim("t-last", "beta", 10, 3),
        ),
    ];
    for q in ["q-1", "q-2", "q-3"] {
        f.push((
            format!("tasks/queue/{q}.json"),
            format!(r#"{{"task_id":"{q}","script":"echo {q}","timeout_seconds":30}}"#).into_bytes(),
        ));
    }
    for i in 0..5 {
        let n = format!("c-{i}");
        f.push((
            format!("tasks/completed/alpha-{n}.json"),
            result(&n, "alpha", ResultStatus::Completed, 600 + i * 900),
        ));
    }
    f.push((
        "tasks/failed/alpha-f-exit.json".into(),
        result("f-exit", "alpha", ResultStatus::Failed, 300),
    ));
    f.push((
        "tasks/failed/beta-f-timeout.json".into(),
        result("f-timeout", "beta", ResultStatus::Timeout, 1200),
    ));
    f
}

pub fn populated_grid() -> Grid {
    let grid = Grid::new();
    grid.commit_files(&populated_files(), "a grid in every state");
    grid
}

/// Run the binary; never through a shell.
pub fn dgrid(args: &[&str]) -> Output {
    Command::new(crate::common::BIN)
        .args(args)
        .env_remove("DGRID_REPO_URL")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GIT_TOKEN")
        .output()
        .expect("dgrid-worker runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fail with the output when the tool did not exit as expected.
/// Run `cmd` with its stdout closed at once, as by a reader gone
/// (`| head -1`): what it printed on stderr, and how it ended.
pub fn with_stdout_closed(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

pub fn expect_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// Fail unless the tool refused (exit 1) and its message says `why`.
pub fn expect_refused(o: &Output, why: &str) {
    expect_code(o, 1);
    assert!(
        stderr(o).contains(why),
        "expected {why:?} in:\n{}",
        stderr(o)
    );
}

/// Where the browser tests leave their screenshots, for people to look at.
pub fn screenshot_dir() -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("tools-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Headless Chromium as root on these machines (see the README, "The status
/// page"): no sandbox, no GPU, no background networking, a fresh profile.
fn chromium(args: &[&str]) -> Output {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let child = cmd
        .spawn()
        .expect("chromium is required (scripts/lib/setup-host --tests installs it)");
    let pid = child.id();
    // A hung browser must fail the test, not hang it.
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(90));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    let out = child.wait_with_output().unwrap();
    drop(watchdog);
    assert!(
        out.status.success(),
        "chromium {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Render `url`: a screenshot at `<screenshot_dir>/<name>.png` (checked to
/// be a non-trivial PNG), and the DOM after rendering.
pub fn render(url: &str, name: &str) -> String {
    let png = screenshot_dir().join(format!("{name}.png"));
    let _ = std::fs::remove_file(&png);
    chromium(&[
        &format!("--screenshot={}", png.display()),
        "--window-size=1200,900",
        url,
    ]);
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is a PNG",
        png.display()
    );
    assert!(
        bytes.len() > 10_000,
        "{} looks empty ({} bytes)",
        png.display(),
        bytes.len()
    );
    let dom = chromium(&["--dump-dom", url]);
    String::from_utf8_lossy(&dom.stdout).into_owned()
}

/// A plain HTTP/1.1 GET: (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_owned())
}
