//! The git token (issue item 8): given in the configuration or as GIT_TOKEN,
//! it reaches git only through the child's environment, and never appears in
//! logs, `.git/config`, the remote URL, any git process's arguments, or
//! anything pushed to the grid (a task printing its environment included).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64ct::Encoding;

use crate::common::*;
use dgrid_worker::git::auth::{Secret, credential_env};

/// A git that records its arguments before running the real one.
fn spy_git(grid: &Grid) -> (std::path::PathBuf, std::path::PathBuf) {
    let real = real_git();
    let argv_log = grid.path("git-argv.log");
    let spy = grid.path("git-spy");
    write_script(
        &spy,
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{real}' \"$@\"\n",
            argv_log.display(),
        ),
    );
    (spy, argv_log)
}

/// What the sampler found: samples taken, programs seen, leaking lines.
type Watched = (usize, BTreeSet<String>, Vec<String>);

/// Samples every process's command line until dropped: the worker's, git's,
/// the credential helper's, the task's.
struct CmdlineWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Watched>>,
}

impl CmdlineWatch {
    fn start(secrets: Vec<String>) -> CmdlineWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut samples, mut seen, mut leaks) = (0, BTreeSet::new(), Vec::new());
            while !flag.load(Ordering::SeqCst) {
                for (_, cmd) in process_cmdlines() {
                    if secrets.iter().any(|s| cmd.contains(s)) {
                        leaks.push(cmd.clone());
                    }
                    seen.insert(cmd.split(' ').next().unwrap_or("").to_owned());
                }
                samples += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            (samples, seen, leaks)
        });
        CmdlineWatch {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Watched {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

fn assert_nowhere(token: &str, grid: &Grid, w: &WorkerProc, argv_log: &Path) {
    for (file, result) in grid.results() {
        assert!(
            !result.to_string().contains(token),
            "token in result {file}"
        );
    }
    let log = w.log_text();
    assert!(!log.is_empty());
    assert!(!log.contains(token), "token in the worker's log");
    let config = std::fs::read_to_string(w.state.join("grid.git/config")).unwrap();
    assert!(!config.contains(token), "token in .git/config:\n{config}");
    assert!(
        config.contains("url = file://"),
        "remote URL is the plain one:\n{config}"
    );
    let argv = std::fs::read_to_string(argv_log).unwrap();
    assert!(argv.lines().count() > 10, "the spy saw the git calls");
    assert!(!argv.contains(token), "token in a git command line");
    let objects = git(&grid.bare, &["cat-file", "--batch-all-objects", "--batch"]).stdout;
    assert!(
        !String::from_utf8_lossy(&objects).contains(token),
        "token pushed to the grid"
    );
    let mut outbox_and_state = Vec::new();
    for entry in walk(&w.state) {
        outbox_and_state.extend(std::fs::read(entry).unwrap_or_default());
    }
    assert!(
        !String::from_utf8_lossy(&outbox_and_state).contains(token),
        "token in the state directory"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn run_with_token(how: &str) {
    let token = format!("tok-{how}-5ecr3t-{}", std::process::id());
    let grid = Grid::new();
    let (spy, argv_log) = spy_git(&grid);
    grid.submit(&[(
        "snoop".into(),
        // The task's own environment must not carry it. (The shell engine
        // is no isolation: a task could read its parent's /proc entry, which
        // is why the token belongs in a credential file under systemd.)
        "env; tr '\\0' ' ' < /proc/$PPID/cmdline; echo; echo snooped".into(),
        10,
    )]);
    let mut spec = WorkerSpec::new(&grid, "keeper");
    spec.extra = format!("[git]\nbinary = \"{}\"\n", spy.display());
    match how {
        "env" => spec.env.push(("GIT_TOKEN".into(), token.clone())),
        _ => {
            let file = grid.path("token");
            std::fs::write(&file, format!("{token}\n")).unwrap();
            spec.extra = format!("token_file = \"{}\"\n{}", file.display(), spec.extra);
        }
    }
    spec.env.push(("LOG_LEVEL".into(), "trace".into()));
    // The token also goes as a header, base64-encoded with the user name.
    let encoded = base64ct::Base64::encode_string(format!("x-access-token:{token}").as_bytes());
    let watch = CmdlineWatch::start(vec![token.clone(), encoded.clone()]);
    let mut w = spawn_worker(&grid, &spec);
    let status = w.wait_exit(Duration::from_secs(60));
    let (samples, seen, leaks) = watch.finish();
    assert!(status.success(), "{}", w.log_text());
    assert!(leaks.is_empty(), "token in a command line: {leaks:?}");
    // The sampler really watched the run: it saw the worker and git.
    assert!(samples > 20, "{samples} samples");
    assert!(seen.contains(BIN), "never saw the worker: {seen:?}");
    assert!(
        seen.iter()
            .any(|c| c.ends_with("git") || c.ends_with("git-spy")),
        "never saw git: {seen:?}"
    );
    let done = grid.json_files("tasks/completed");
    assert_eq!(
        done["keeper@snoop.json"]["stdout"]
            .as_str()
            .unwrap()
            .lines()
            .last(),
        Some("snooped")
    );
    assert_nowhere(&token, &grid, &w, &argv_log);
    assert_nowhere(&encoded, &grid, &w, &argv_log);
}

#[test]
fn token_from_git_token_stays_secret() {
    run_with_token("env");
}

#[test]
fn token_from_token_file_stays_secret() {
    run_with_token("file");
}

/// The helper git is given really answers with the token, so the secrecy
/// above is not bought by never using it.
#[test]
fn the_credential_helper_hands_the_token_to_git() {
    let dir = tempfile::tempdir().unwrap();
    let env = credential_env(Some(&Secret::new("s3cret-value")), None);
    let out = Command::new("git")
        .args(["credential", "fill"])
        .current_dir(dir.path())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(b"protocol=https\nhost=github.com\n\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("username=x-access-token"), "{text}");
    assert!(text.contains("password=s3cret-value"), "{text}");
}

/// A token with a line break in it: git's credential protocol is one
/// `key=value` a line, so the second line was read as a field of its own
/// (`username=...` replaced the user name) and, being no field, printed
/// back by git in a warning that reached the log. Refused at start (the
/// configuration's exit status), and by the tools, naming where the token
/// came from and never what it is.
#[test]
fn a_token_with_a_line_break_is_refused_at_start_and_by_the_tools() {
    let grid = Grid::new();
    grid.submit(&[("t1".into(), "echo ran".into(), 10)]);
    let evil = "tok-first-line\nusername=injected-second-line";
    for how in ["env", "file"] {
        let mut spec = WorkerSpec::new(&grid, &format!("nl-{how}"));
        match how {
            "env" => spec.env.push(("GIT_TOKEN".into(), evil.into())),
            _ => {
                let file = grid.path("nl-token");
                std::fs::write(&file, format!("{evil}\n")).unwrap();
                spec.extra = format!("token_file = \"{}\"\n", file.display());
            }
        }
        let mut w = spawn_worker(&grid, &spec);
        let status = w.wait_exit(Duration::from_secs(60));
        let log = w.log_text();
        assert_eq!(status.code(), Some(78), "{how}: {log}");
        let origin = if how == "env" {
            "GIT_TOKEN"
        } else {
            "nl-token"
        };
        assert!(
            log.contains("control character") && log.contains(origin),
            "{how}: {log}"
        );
        assert!(
            !log.contains("tok-first-line") && !log.contains("injected"),
            "{how}: {log}"
        );
    }
    assert!(grid.files("tasks/completed").is_empty(), "nothing ran");

    let out = Command::new(BIN)
        .args([
            "submit",
            "--repo",
            &grid.url(),
            "--script",
            "true",
            "--timeout",
            "5",
        ])
        .env("GIT_TOKEN", evil)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("GIT_TOKEN") && err.contains("control character"),
        "{err}"
    );
    assert!(!err.contains("injected"), "{err}");
    assert_eq!(grid.files("tasks/queue").len(), 1, "nothing submitted");
}
