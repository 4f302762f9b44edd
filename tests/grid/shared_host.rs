//! Workers as a newcomer runs them: two on one host (the demo does), their
//! stderr in log files. Neither may print an ERROR for something that is
//! not one, nor log lines meant for a terminal or a debugger.

use std::time::Duration;

use crate::common::*;

/// The status page of `log`'s worker: the address it says it listens on.
fn page_address(log: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains("status page listening"))?;
    let at = line.find("bound=")? + "bound=".len();
    Some(line[at..].split_whitespace().next()?.to_owned())
}

#[test]
fn two_workers_on_one_host_each_get_a_status_page_without_an_error() {
    // The test holds the default port, as a first worker would. Workers of
    // tests running alongside may have it for a moment: they fall back
    // too, and let go when they end.
    let mut held = None;
    wait_until(
        "the default port to be free",
        Duration::from_secs(120),
        || {
            held = std::net::TcpListener::bind(dgrid_worker::config::DEFAULT_STATUS_LISTEN).ok();
            held.is_some()
        },
    );
    let grid = Grid::new();
    grid.submit(&[("t1".into(), "echo one".into(), 30)]);
    let mut workers: Vec<WorkerProc> = ["host-a", "host-b"]
        .iter()
        .map(|n| {
            let mut spec = WorkerSpec::new(&grid, n);
            spec.drain = false;
            spawn_worker(&grid, &spec)
        })
        .collect();
    let mut pages = Vec::new();
    for w in &mut workers {
        wait_until("the status page", Duration::from_secs(60), || {
            page_address(&w.log_text()).is_some()
        });
        let log = w.log_text();
        let addr = page_address(&log).unwrap();
        assert_ne!(addr, dgrid_worker::config::DEFAULT_STATUS_LISTEN, "{log}");
        assert!(log.contains("the default one is in use"), "{log}");
        assert!(!log.contains("ERROR"), "{log}");
        let served = std::net::TcpStream::connect(&addr);
        assert!(served.is_ok(), "{addr}: {log}");
        pages.push(addr);
    }
    assert_ne!(pages[0], pages[1]);
}

#[test]
fn a_chosen_port_in_use_is_a_warning_and_the_worker_runs_on() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let grid = Grid::new();
    grid.submit(&[("t1".into(), "echo one".into(), 30)]);
    let mut spec = WorkerSpec::new(&grid, "chosen-1");
    spec.extra = format!("status_listen = \"127.0.0.1:{port}\"\n");
    let mut w = spawn_worker(&grid, &spec);
    assert!(w.wait_exit(Duration::from_secs(120)).success());
    let log = w.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains(" WARN ") && l.contains("status page off") && l.contains("in use")),
        "{log}"
    );
    assert!(!log.contains("ERROR"), "{log}");
    assert_eq!(grid.files("tasks/completed").len(), 1);
}

#[test]
fn log_files_carry_plain_fields() {
    let grid = Grid::new();
    grid.submit(&[
        ("ok".into(), "echo fine".into(), 30),
        ("bad".into(), "exit 3".into(), 30),
    ]);
    let spec = WorkerSpec::new(&grid, "plain-1");
    let mut w = spawn_worker(&grid, &spec);
    assert!(w.wait_exit(Duration::from_secs(120)).success());
    let log = w.log_text();
    assert!(!log.contains('\x1b'), "colour codes in a log file:\n{log}");
    assert!(
        log.contains("task_id=ok status=completed exit_code=0"),
        "{log}"
    );
    assert!(
        log.contains("task_id=bad status=failed exit_code=3"),
        "{log}"
    );
    assert!(log.contains("engine=shell "), "{log}");
    for debug in ["Some(", "Completed", "Failed", "elapsed=", "ms)", "=\""] {
        assert!(!log.contains(debug), "{debug:?} in:\n{log}");
    }
}

/// A configuration file `name` for the shell engine on `grid`, its state
/// in `state`, with `extra` lines after `[sandbox]`.
fn shell_config(
    grid: &Grid,
    name: &str,
    state: &std::path::Path,
    extra: &str,
) -> std::path::PathBuf {
    let config = grid.path(name);
    std::fs::write(
        &config,
        format!(
            "repo_url = \"{}\"\nstate_dir = \"{}\"\n[sandbox]\nengine = \"shell\"\n{extra}",
            grid.url(),
            state.display()
        ),
    )
    .unwrap();
    config
}

/// `dgrid-worker <cmd> --config <config>` with `env` added, outside any
/// unit: its exit code, and what it printed, stdout then stderr.
fn run_with_config(
    cmd: &str,
    config: &std::path::Path,
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    let out = std::process::Command::new(BIN)
        .args([cmd, "--config"])
        .arg(config)
        .env_remove("NOTIFY_SOCKET")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn check_says_each_thing_once_and_changes_nothing() {
    let grid = Grid::new();
    let state = grid.path("not-made-yet");
    let config = shell_config(&grid, "check.toml", &state, "");
    let (code, text) = run_with_config("check", &config, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(text.matches("without isolation").count(), 1, "{text}");
    assert_eq!(text.matches("NO isolation").count(), 0, "{text}");
    assert!(text.contains("will create it"), "{text}");
    assert!(!state.exists(), "check made the state directory");
    // Read in part (`check | head -1`): its verdict, not a panic.
    let out = crate::tools_fixture::with_stdout_closed(
        std::process::Command::new(BIN)
            .args(["check", "--config"])
            .arg(&config),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `quiet_hours` are read in local time: `check` names the zone, and a
/// `TZ` that names none (the C library then reads UTC, silently) is a
/// warning.
#[test]
fn check_names_the_zone_quiet_hours_are_read_in() {
    let grid = Grid::new();
    let quiet = "[budget]\nquiet_hours = [\"22:00-07:00\"]\n";
    let config = shell_config(&grid, "quiet.toml", &grid.path("state"), quiet);
    let check = |tz: &str| run_with_config("check", &config, &[("TZ", tz)]).1;
    let typo = check("Europe/Berln");
    assert!(
        typo.contains("quiet hours 22:00-07:00 in local time: TZ=Europe/Berln")
            && typo.contains("names no zone"),
        "{typo}"
    );
    let utc = check("UTC");
    assert!(
        utc.contains("TZ=UTC (UTC+00:00 now)") && !utc.contains("names no zone"),
        "{utc}"
    );
}

/// A file where the state directory should be: `check` and `run` both
/// stop as for a configuration error (78), naming `state_dir`. They
/// exited 1, saying only "is not a directory".
#[test]
fn a_state_dir_that_is_a_file_is_a_configuration_error() {
    let grid = Grid::new();
    let file = grid.path("a-file");
    std::fs::write(&file, b"x").unwrap();
    let config = shell_config(&grid, "file-state.toml", &file, "");
    for cmd in ["check", "run"] {
        let (code, text) = run_with_config(cmd, &config, &[]);
        assert_eq!(code, Some(78), "{cmd}: {text}");
        assert!(
            text.contains("`state_dir`") && text.contains("is not a directory"),
            "{cmd}: {text}"
        );
    }
}

/// `[tasks] max_timeout_seconds` is a volunteer's own limit: a task longer
/// than it is filed to its lane and left to a live peer that takes it (it
/// failed as invalid for the whole grid), and failed, naming the limits,
/// only when no live node takes it.
#[test]
fn a_task_longer_than_a_nodes_limit_is_left_to_a_peer_that_takes_it() {
    let grid = Grid::new();
    let spec = |node: &str, limit: Option<u64>| {
        let mut s = WorkerSpec::new(&grid, node);
        s.drain = false;
        if let Some(secs) = limit {
            s.extra = format!("[tasks]\nmax_timeout_seconds = {secs}\n");
        }
        s
    };
    let completed_by = |id: &str| {
        grid.json_files("tasks/completed")
            .into_values()
            .find(|r| r["task_id"] == id)
            .map(|r| r["node_id"].as_str().unwrap_or("").to_owned())
    };
    // The node that takes long tasks is busy (with no claims ahead), so
    // that the short node sees the long task and nobody claims it for it.
    let go = grid.path("go");
    let mut long_spec = spec("long", None);
    long_spec.extra = "claim_ahead = 0".into();
    let mut long = spawn_worker(&grid, &long_spec);
    grid.submit(&[(
        "gate".into(),
        format!("while [ ! -e '{}' ]; do sleep 0.1; done", go.display()),
        120,
    )]);
    wait_until(
        "the long node runs the gate",
        Duration::from_secs(60),
        || long.log_text().contains("running task_id=gate"),
    );
    let mut short = spawn_worker(&grid, &spec("short", Some(60)));
    grid.submit(&[
        ("hour".into(), "echo ran".into(), 600),
        ("brief".into(), "true".into(), 30),
    ]);
    wait_until(
        "the short node ran the brief task",
        Duration::from_secs(60),
        || completed_by("brief").as_deref() == Some("short"),
    );
    // It has looked at the long task since, and left it.
    let looked = short.log_text().matches("DEBUG sync").count();
    wait_until(
        "the short node looked twice more",
        Duration::from_secs(60),
        || short.log_text().matches("DEBUG sync").count() >= looked + 2,
    );
    assert!(
        grid.json_files("tasks/failed").is_empty(),
        "{:?}",
        grid.json_files("tasks/failed")
    );
    assert_eq!(completed_by("hour"), None);
    // Filed to its lane as any task, not left in the inbox that every
    // node reads a batch of at each claim.
    assert!(
        grid.files("tasks/queue").is_empty(),
        "{:?}",
        grid.files("tasks/queue").keys()
    );
    assert!(
        grid.lane_paths().iter().any(|p| p.ends_with("/hour.json")),
        "{:?}",
        grid.lane_paths()
    );
    std::fs::write(&go, b"").unwrap();
    wait_until(
        "the node that takes it ran it",
        Duration::from_secs(60),
        || completed_by("hour").as_deref() == Some("long"),
    );
    // The node that takes them stops (a restart, an upgrade): what waits
    // for it waits on. Longer than any node takes: failed, both limits
    // named.
    long.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        long.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        long.log_text()
    );
    grid.submit(&[
        ("again".into(), "true".into(), 600),
        ("day".into(), "true".into(), 86_400),
    ]);
    wait_until("the day-long task failed", Duration::from_secs(60), || {
        !grid.json_files("tasks/failed").is_empty()
    });
    let failed: Vec<_> = grid.json_files("tasks/failed").into_values().collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["task_id"], "day");
    let error = failed[0]["error"].as_str().unwrap_or("").to_owned();
    assert!(
        error.contains("`timeout_seconds` is 86400; no node takes a task that long"),
        "{error}"
    );
    assert!(
        grid.lane_paths().iter().any(|p| p.ends_with("/again.json")),
        "waits for the node that stopped: {:?}",
        grid.lane_paths()
    );
    assert!(error.contains("3600"), "{error}");
    short.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        short.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        short.log_text()
    );
}
