//! Test harness: real bare repositories, real pushes, the real binary.
#![allow(dead_code)]

pub mod corpus;
pub mod delay_proxy;
pub mod hosts;
pub mod plan;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_dgrid-worker");

pub fn git(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run git in `dir` with `input` on its stdin: its stdout, trimmed. The
/// input is written from a thread of its own: git may fill its stdout
/// before it has read all of it.
pub fn git_with_input(dir: &Path, args: &[&str], input: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("git runs");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "git {args:?} in {}", dir.display());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A grid: a bare repository seeded with the layout, in a temp directory
/// that also holds the workers' state and logs.
pub struct Grid {
    pub root: tempfile::TempDir,
    pub bare: PathBuf,
}

impl Grid {
    pub fn new() -> Grid {
        let root = tempfile::tempdir().unwrap();
        let bare = root.path().join("grid.git");
        std::fs::create_dir(&bare).unwrap();
        git(&bare, &["init", "--quiet", "--bare", "-b", "main"]);
        let grid = Grid { root, bare };
        let mut files: Vec<(String, Vec<u8>)> = [
            "tasks/queue",
            "tasks/in_progress",
            "tasks/completed",
            "tasks/failed",
            "nodes",
        ]
        .iter()
        .map(|d| (format!("{d}/.gitkeep"), Vec::new()))
        .collect();
        files.push(("README.md".into(), b"a test grid\n".to_vec()));
        grid.commit_files(&files, "seed the grid layout");
        grid
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// Clone, let `edit` change the work tree, commit everything, push;
    /// retry from a fresh clone if a worker pushed in between.
    pub fn commit_with(&self, message: &str, edit: impl Fn(&Path)) {
        for _ in 0..20 {
            let scratch = tempfile::tempdir().unwrap();
            let work = scratch.path().join("w");
            git(scratch.path(), &["clone", "--quiet", &self.url(), "w"]);
            edit(&work);
            git(&work, &["add", "-A"]);
            git(
                &work,
                &["commit", "--quiet", "--allow-empty", "-m", message],
            );
            let pushed = Command::new("git")
                .args(["push", "--quiet", "origin", "HEAD:main"])
                .current_dir(&work)
                .output()
                .unwrap();
            if pushed.status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("could not push to the test grid");
    }

    pub fn commit_files(&self, files: &[(String, Vec<u8>)], message: &str) {
        self.commit_with(message, |work| {
            for (path, bytes) in files {
                let p = work.join(path);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, bytes).unwrap();
            }
        });
    }

    /// Create the branches `outbox/<name>` for each of `names` on the
    /// remote, at `tip`, in one transaction: a crowd, as anyone able to
    /// push could make one.
    pub fn outbox_crowd(&self, names: impl Iterator<Item = String>, tip: &str) {
        let lines: String = names
            .map(|n| format!("create refs/heads/outbox/{n} {tip}\n"))
            .collect();
        let mut child = std::process::Command::new("git")
            .args(["update-ref", "--stdin"])
            .current_dir(&self.bare)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(lines.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    }

    /// Queue tasks `(id, script, timeout)`.
    pub fn submit(&self, tasks: &[(String, String, u64)]) {
        let files: Vec<(String, Vec<u8>)> = tasks
            .iter()
            .map(|(id, script, timeout)| {
                let body = serde_json::json!({"task_id": id, "script": script, "timeout_seconds": timeout});
                (format!("tasks/queue/{id}.json"), body.to_string().into_bytes())
            })
            .collect();
        self.commit_files(&files, "submit tasks");
    }

    /// Files of a directory on the remote's `main`: name -> content,
    /// without the `.gitkeep`.
    pub fn files(&self, dir: &str) -> BTreeMap<String, Vec<u8>> {
        self.files_on("main", dir)
    }

    /// As [`Grid::files`], on another branch; empty if it does not exist.
    pub fn files_on(&self, branch: &str, dir: &str) -> BTreeMap<String, Vec<u8>> {
        if self.tip_of(branch).is_none() {
            return BTreeMap::new();
        }
        let out = git(&self.bare, &["ls-tree", "-z", branch, &format!("{dir}/")]);
        let mut files = BTreeMap::new();
        for rec in out.stdout.split(|b| *b == 0).filter(|r| !r.is_empty()) {
            let tab = rec.iter().position(|b| *b == b'\t').unwrap();
            let meta = String::from_utf8_lossy(&rec[..tab]).to_string();
            let name = String::from_utf8_lossy(&rec[tab + 1..]).to_string();
            let short = name.rsplit('/').next().unwrap().to_owned();
            if short == ".gitkeep" {
                continue;
            }
            let oid = meta.split(' ').nth(2).unwrap();
            let content = if meta.contains(" blob ") {
                git(&self.bare, &["cat-file", "blob", oid]).stdout
            } else {
                Vec::new()
            };
            files.insert(short, content);
        }
        files
    }

    /// Files below a directory on `main`, at any depth: name (the last
    /// component) -> content, without `.gitkeep`s.
    pub fn files_below(&self, dir: &str) -> BTreeMap<String, Vec<u8>> {
        let out = git(
            &self.bare,
            &["ls-tree", "-r", "-z", "main", &format!("{dir}/")],
        );
        let mut files = BTreeMap::new();
        for rec in out.stdout.split(|b| *b == 0).filter(|r| !r.is_empty()) {
            let tab = rec.iter().position(|b| *b == b'\t').unwrap();
            let meta = String::from_utf8_lossy(&rec[..tab]).to_string();
            let name = String::from_utf8_lossy(&rec[tab + 1..]).to_string();
            let short = name.rsplit('/').next().unwrap().to_owned();
            if short == ".gitkeep" {
                continue;
            }
            let oid = meta.split(' ').nth(2).unwrap();
            files.insert(short, git(&self.bare, &["cat-file", "blob", oid]).stdout);
        }
        files
    }

    /// Every queued task, filed in its lane or not (`tasks/queue/`,
    /// `tasks/lanes/`): file name -> JSON.
    pub fn queued(&self) -> BTreeMap<String, serde_json::Value> {
        let mut all = self.files("tasks/queue");
        all.extend(self.files_below("tasks/lanes"));
        all.into_iter()
            .map(|(k, v)| {
                (
                    k,
                    serde_json::from_slice(&v).unwrap_or(serde_json::Value::Null),
                )
            })
            .collect()
    }

    /// The paths of the queued tasks in their lanes, below `tasks/lanes/`.
    pub fn lane_paths(&self) -> Vec<String> {
        let out = git(
            &self.bare,
            &["ls-tree", "-r", "--name-only", "main", "tasks/lanes/"],
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.ends_with("/.gitkeep"))
            .map(|l| l.trim_start_matches("tasks/lanes/").to_owned())
            .collect()
    }

    /// Tasks waiting for others (`tasks/blocked/<parent>/`): file name ->
    /// JSON.
    pub fn blocked(&self) -> BTreeMap<String, serde_json::Value> {
        self.files_below("tasks/blocked")
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    serde_json::from_slice(&v).unwrap_or(serde_json::Value::Null),
                )
            })
            .collect()
    }

    pub fn json_files(&self, dir: &str) -> BTreeMap<String, serde_json::Value> {
        self.files(dir)
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    serde_json::from_slice(&v).unwrap_or(serde_json::Value::Null),
                )
            })
            .collect()
    }

    /// Every result, completed and failed, as (file name, JSON).
    pub fn results(&self) -> Vec<(String, serde_json::Value)> {
        let mut all: Vec<_> = self.json_files("tasks/completed").into_iter().collect();
        all.extend(self.json_files("tasks/failed"));
        all
    }

    /// The commit a branch points at, if it exists.
    pub fn tip_of(&self, branch: &str) -> Option<String> {
        let out = Command::new("git")
            .args([
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/heads/{branch}"),
            ])
            .current_dir(&self.bare)
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub fn commit_count(&self) -> usize {
        let out = git(&self.bare, &["rev-list", "--count", "main"]);
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }
}

/// A worker's configuration, written to a file in the grid's directory.
pub struct WorkerSpec {
    pub node: String,
    pub url: String,
    pub engine: String,
    pub extra: String,
    /// Lines for the `[sandbox]` table, after `engine`.
    pub sandbox_extra: String,
    pub env: Vec<(String, String)>,
    pub drain: bool,
    /// A cgroup directory the worker runs in (the benches' CPU limit), with
    /// everything it starts.
    pub cgroup: Option<PathBuf>,
    /// The name its configuration, state directory and log are filed
    /// under in the grid's directory, where not its node id (a second
    /// host under the same id).
    pub files: Option<String>,
}

impl WorkerSpec {
    pub fn new(grid: &Grid, node: &str) -> WorkerSpec {
        WorkerSpec {
            node: node.into(),
            url: grid.url(),
            engine: "shell".into(),
            extra: String::new(),
            sandbox_extra: String::new(),
            env: Vec::new(),
            drain: true,
            cgroup: None,
            files: None,
        }
    }

    pub fn config_text(&self, state: &Path) -> String {
        format!(
            "node_id = \"{}\"\nrepo_url = \"{}\"\nstate_dir = \"{}\"\npull_interval = 1\n{}\n[sandbox]\nengine = \"{}\"\n{}\n",
            self.node,
            self.url,
            state.display(),
            self.extra,
            self.engine,
            self.sandbox_extra
        )
    }
}

pub struct WorkerProc {
    pub child: Child,
    pub log: PathBuf,
    pub state: PathBuf,
}

pub fn spawn_worker(grid: &Grid, spec: &WorkerSpec) -> WorkerProc {
    let name = spec.files.as_deref().unwrap_or(&spec.node);
    let state = grid.path(&format!("state-{name}"));
    std::fs::create_dir_all(&state).unwrap();
    let config = grid.path(&format!("{name}.toml"));
    std::fs::write(&config, spec.config_text(&state)).unwrap();
    let log = grid.path(&format!("{name}.log"));
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let mut cmd = match &spec.cgroup {
        // The shell moves itself into the cgroup, then becomes the worker:
        // nothing the worker starts runs outside it.
        Some(dir) => {
            let mut c = Command::new("sh");
            c.args(["-c", r#"echo $$ > "$0/cgroup.procs" && exec "$@""#])
                .arg(dir)
                .arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    cmd.args(["run", "--config"]).arg(&config);
    if spec.drain {
        cmd.arg("--drain");
    }
    cmd.env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("JOURNAL_STREAM")
        .env("LOG_LEVEL", "debug")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file);
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("the worker starts");
    WorkerProc { child, log, state }
}

/// Stop workers with SIGTERM, all at once, and wait for each to exit
/// cleanly (its log in the panic if not).
pub fn stop_cleanly<'w>(workers: impl IntoIterator<Item = &'w mut WorkerProc>) {
    let mut workers: Vec<&mut WorkerProc> = workers.into_iter().collect();
    for w in &workers {
        w.signal(nix::sys::signal::Signal::SIGTERM);
    }
    for w in &mut workers {
        assert!(
            w.wait_exit(Duration::from_secs(60)).success(),
            "{}",
            w.log_text()
        );
    }
}

impl WorkerProc {
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "worker did not exit within {within:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    pub fn outbox_len(&self) -> usize {
        std::fs::read_dir(self.state.join("outbox"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .count()
            })
            .unwrap_or(0)
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `cond` every 50 ms until it holds, or fail with `what`.
pub fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `error` of each result file (empty when it has none), e.g. of
/// `tasks/failed/`, to look for a reason in.
/// A git repository with one commit at `path` (made here): committed in
/// a work tree around it, git records it as a gitlink (a submodule).
pub fn nested_repo(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::write(path.join("README"), b"nested\n").unwrap();
    for args in [
        &["init", "--quiet", "-b", "main"][..],
        &["add", "README"],
        &["commit", "--quiet", "-m", "nested"],
    ] {
        git(path, args);
    }
}

pub fn errors_of(results: &BTreeMap<String, serde_json::Value>) -> Vec<String> {
    results
        .values()
        .map(|j| j["error"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// A `git daemon` on 127.0.0.1 serving the grid, with push enabled.
pub struct GitDaemon {
    child: Option<Child>,
    pub port: u16,
    base: PathBuf,
}

impl GitDaemon {
    pub fn start(grid: &Grid, port: u16) -> GitDaemon {
        let base = grid.root.path().to_owned();
        let child = Some(GitDaemon::spawn(&base, port));
        GitDaemon { child, port, base }
    }

    fn spawn(base: &Path, port: u16) -> Child {
        let child = Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", base.display()),
            ])
            .arg(base)
            // `git daemon` runs `git-daemon` as a child: its own group, so
            // that stop() can kill both and the server cannot outlive the
            // "outage".
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon starts");
        wait_until("git daemon to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        child
    }

    pub fn url(&self) -> String {
        format!("git://127.0.0.1:{}/grid.git", self.port)
    }

    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
        wait_until(
            "git daemon to stop listening",
            Duration::from_secs(10),
            || std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err(),
        );
    }

    /// Stop the server the way an orderly shutdown does: SIGTERM to the
    /// daemon and its connections. git removes its lock files on SIGTERM;
    /// after a SIGKILL (`stop`) a receive-pack killed mid-update can leave
    /// `HEAD.lock` or `refs/heads/main.lock` behind, which fails every later
    /// push until someone deletes it, as with any git server that crashes.
    pub fn stop_gracefully(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGTERM);
        let _ = child.wait();
        wait_until(
            "git daemon's connections to end",
            Duration::from_secs(10),
            || nix::sys::signal::killpg(pgid, None).is_err(),
        );
        wait_until(
            "git daemon to stop listening",
            Duration::from_secs(10),
            || std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err(),
        );
    }

    pub fn restart(&mut self) {
        self.stop();
        self.child = Some(GitDaemon::spawn(&self.base, self.port));
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn append_line(path: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(f, "{line}").unwrap();
}

/// The image the container tests run (built by scripts/lib/build-test-image).
pub const TEST_IMAGE: &str = "localhost/dgrid-busybox:latest";

/// podman as root on these hosts needs runc and sane ulimits (DEVELOPING.md, This machine's traps):
/// the containers.conf the demo uses.
pub fn containers_conf() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/lib/containers.conf"
    ))
}

/// Fail (never skip) when podman or the test image is missing: CI installs
/// both before running the tests.
pub fn require_podman_image() {
    let out = Command::new("podman")
        .args(["image", "exists", TEST_IMAGE])
        .status();
    assert!(
        matches!(out, Ok(s) if s.success()),
        "podman with {TEST_IMAGE} is required: run scripts/lib/build-test-image (as .ci/run does)"
    );
}

/// Containers of a node, running or not.
pub fn node_containers(node: &str) -> Vec<String> {
    let out = Command::new("podman")
        .args([
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("label=dgrid.node={node}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every process's command line now: (pid, arguments joined by spaces).
pub fn process_cmdlines() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // Gone already, or a kernel thread: nothing to read.
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if raw.is_empty() {
            continue;
        }
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        out.push((pid, args.join(" ")));
    }
    out
}

/// The git on PATH, as an absolute path, for wrapper scripts to exec.
pub fn real_git() -> String {
    let out = Command::new("sh")
        .args(["-c", "command -v git"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Write an executable script (a stand-in `git` for a test).
pub fn write_script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// Workers idle and registered (they stay when the queue empties).
pub fn idle_fleet(grid: &Grid, nodes: &[&str]) -> Vec<WorkerProc> {
    let workers: Vec<WorkerProc> = nodes
        .iter()
        .map(|n| {
            let mut spec = WorkerSpec::new(grid, n);
            spec.drain = false;
            spawn_worker(grid, &spec)
        })
        .collect();
    wait_until("every registration", Duration::from_secs(60), || {
        grid.files("nodes").len() == nodes.len()
    });
    workers
}
