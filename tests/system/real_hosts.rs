//! The worker against the kinds of server a volunteer points it at: a forge
//! over HTTPS with a token, or over SSH with a deploy key. The servers are
//! real (nginx + git-http-backend with TLS and basic auth; OpenSSH's sshd;
//! `crate::common::hosts`), and so is every failure: a wrong, revoked or read-only
//! token, a missing repository, an untrusted certificate, an unknown or
//! changed host key. Each is told apart by name, in the worker's log and in
//! `dgrid-worker check`, and none loses a result or stops the worker.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::hosts::{HttpsHost, READER, SshHost};
use crate::common::*;

fn toml_str(p: &Path) -> String {
    format!("\"{}\"", p.display())
}

/// A worker on the HTTPS host, trusting its CA; `top` holds top-level keys.
fn https_spec(grid: &Grid, host: &HttpsHost, node: &str, top: &str) -> WorkerSpec {
    let mut spec = WorkerSpec::new(grid, node);
    spec.url = host.url("grid.git");
    spec.extra = format!("{top}\n[git]\nca_file = {}\n", toml_str(&host.ca));
    spec
}

fn ssh_spec(grid: &Grid, host: &SshHost, node: &str, git: &str) -> WorkerSpec {
    let mut spec = WorkerSpec::new(grid, node);
    spec.url = host.url(&grid.bare);
    spec.extra = format!("\n[git]\n{git}\n");
    spec
}

/// `dgrid-worker check` on a worker's configuration, with `env` only (no
/// token from the test's own environment).
fn check(grid: &Grid, spec: &WorkerSpec, env: &[(&str, &str)]) -> (i32, String) {
    let state = grid.path(&format!("state-{}", spec.node));
    let config = grid.path(&format!("{}-check.toml", spec.node));
    std::fs::write(&config, spec.config_text(&state)).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .env_remove("GIT_TOKEN")
        .env_remove("DGRID_TOKEN_FILE")
        .env_remove("CREDENTIALS_DIRECTORY")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The one line `check` printed about `what` (`remote`, `push`).
fn line<'a>(text: &'a str, what: &str) -> &'a str {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(what))
        .collect();
    assert_eq!(lines.len(), 1, "one `{what}` line in:\n{text}");
    lines[0]
}

/// The logins the server refuses for the token's user over the next
/// `span`: each is a 401 in its access log.
fn refused_logins_in(host: &HttpsHost, span: Duration) -> usize {
    let refused = |log: &str| {
        log.lines()
            .filter(|l| l.contains(" - x-access-token [") && l.contains("\" 401 "))
            .count()
    };
    let before = refused(&host.access_log());
    std::thread::sleep(span);
    refused(&host.access_log()) - before
}

fn result_name(node: &str, task: &str) -> String {
    format!("{node}@{task}.json")
}

#[test]
fn https_drains_with_the_token_from_env_file_and_credential() {
    let grid = Grid::new();
    let host = HttpsHost::start(grid.root.path());
    let token_file = grid.path("git-token");
    std::fs::write(&token_file, format!("{}\n", host.token)).unwrap();
    let creds = grid.path("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("git-token"), format!("{}\n", host.token)).unwrap();

    for mode in ["env", "file", "credential"] {
        let (node, task) = (format!("https-{mode}"), format!("t-{mode}"));
        grid.submit(&[(task.clone(), format!("echo ran with {mode}"), 30)]);
        let top = match mode {
            "file" => format!("token_file = {}", toml_str(&token_file)),
            _ => String::new(),
        };
        let mut spec = https_spec(&grid, &host, &node, &top);
        match mode {
            "env" => spec.env.push(("GIT_TOKEN".into(), host.token.clone())),
            "credential" => spec
                .env
                .push(("CREDENTIALS_DIRECTORY".into(), creds.display().to_string())),
            _ => {}
        }
        let mut w = spawn_worker(&grid, &spec);
        let status = w.wait_exit(Duration::from_secs(240));
        let log = w.log_text();
        assert!(status.success(), "{mode}: {log}");
        let done = grid.json_files("tasks/completed");
        let result = &done[&result_name(&node, &task)];
        assert_eq!(result["stdout"], format!("ran with {mode}\n"), "{mode}");
        assert!(
            !log.contains(&host.token),
            "{mode}: the token is in the log"
        );
        let git_config = std::fs::read_to_string(w.state.join("grid.git/config")).unwrap();
        assert!(!git_config.contains(&host.token) && git_config.contains("https://"));
    }
    // Pushes went over HTTPS as the token's user, and the token is in no
    // URL the server logged, nor anywhere else it wrote.
    let access = host.access_log();
    assert!(
        access.lines().any(|l| l.contains("x-access-token")
            && l.contains("POST /grid.git/git-receive-pack")
            && l.contains("\" 200 ")),
        "{access}"
    );
    assert!(!host.all_logs().contains(&host.token));
    // The token goes with each call's first request: none was refused for
    // want of it (a 401 and a second try cost a round trip a git call).
    let refused: Vec<&str> = access.lines().filter(|l| l.contains("\" 401 ")).collect();
    assert!(refused.is_empty(), "{refused:#?}");
}

#[test]
fn a_revoked_token_is_named_the_worker_backs_off_and_keeps_its_result() {
    let grid = Grid::new();
    let host = HttpsHost::start(grid.root.path());
    grid.submit(&[("slow".into(), "sleep 3; echo finished".into(), 120)]);
    let mut spec = https_spec(&grid, &host, "revoked-1", "");
    spec.env.push(("GIT_TOKEN".into(), host.token.clone()));
    spec.drain = false;
    let mut w = spawn_worker(&grid, &spec);
    wait_until("the task to be claimed", Duration::from_secs(120), || {
        grid.files("tasks/in_progress").contains_key("slow.json")
    });

    // The forge revokes the token while the task runs.
    host.set_users(&[(READER, &host.read_token)]);
    wait_until("the result in the outbox", Duration::from_secs(120), || {
        w.outbox_len() == 1
    });
    wait_until("the refusal in the log", Duration::from_secs(120), || {
        w.log_text().contains("authentication failed")
    });
    assert!(w.child.try_wait().unwrap().is_none(), "{}", w.log_text());
    assert!(grid.files("tasks/completed").is_empty());
    assert!(!w.log_text().contains(&host.token));

    // `check` says the same, in one line.
    let (code, text) = check(&grid, &spec, &[("GIT_TOKEN", &host.token)]);
    assert_eq!(code, 1, "{text}");
    assert!(
        line(&text, "remote").contains("authentication failed"),
        "{text}"
    );

    // No knocking every poll: at most one attempt in ten seconds (the
    // worker polls each second here), where every attempt is logged by
    // the server as a 401 for the token's user.
    let during = refused_logins_in(&host, Duration::from_secs(10));
    assert!(during <= 1, "{during} refused attempts in 10 s");
    assert_eq!(w.outbox_len(), 1);

    // The token is given back: the result lands, once.
    host.set_users(&[("x-access-token", &host.token)]);
    wait_until("the result on the grid", Duration::from_secs(240), || {
        grid.files("tasks/completed")
            .contains_key(&result_name("revoked-1", "slow"))
    });
    wait_until("an empty outbox", Duration::from_secs(60), || {
        w.outbox_len() == 0
    });
    w.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(w.wait_exit(Duration::from_secs(120)).success());
    assert_eq!(grid.results().len(), 1);
}

/// A node started with a token the forge refuses asks again once a
/// minute, as a registered node does: a sweep counted 30 refused logins in
/// 75 s (backing off as for an outage, from a second up to six polls).
#[test]
fn a_node_started_with_a_refused_token_asks_once_a_minute() {
    let grid = Grid::new();
    let host = HttpsHost::start(grid.root.path());
    let mut spec = https_spec(&grid, &host, "wrong-token", "");
    spec.env
        .push(("GIT_TOKEN".into(), "ghp_not_the_token_0123456789".into()));
    spec.drain = false;
    let mut w = spawn_worker(&grid, &spec);
    wait_until("the refusal in the log", Duration::from_secs(120), || {
        w.log_text().contains("authentication failed")
    });
    assert!(w.log_text().contains("retry_in_s=60"), "{}", w.log_text());
    let during = refused_logins_in(&host, Duration::from_secs(10));
    assert_eq!(during, 0, "refused logins in 10 s after the first refusal");
    assert!(w.child.try_wait().unwrap().is_none(), "{}", w.log_text());
    assert!(grid.files("nodes").is_empty());
    w.signal(nix::sys::signal::Signal::SIGTERM);
    w.wait_exit(Duration::from_secs(60));
}

#[test]
fn check_tells_each_https_failure_apart_in_one_line() {
    let grid = Grid::new();
    let host = HttpsHost::start(grid.root.path());
    let good = https_spec(&grid, &host, "chk-good", "");
    let (code, text) = check(&grid, &good, &[("GIT_TOKEN", &host.token)]);
    assert_eq!(code, 0, "{text}");
    assert!(line(&text, "remote").starts_with("ok"), "{text}");
    assert!(line(&text, "push").starts_with("ok"), "{text}");

    let reader = https_spec(
        &grid,
        &host,
        "chk-reader",
        &format!("git_username = \"{READER}\""),
    );
    let mut missing = https_spec(&grid, &host, "chk-missing", "");
    missing.url = host.url("nope.git");
    let mut untrusted = WorkerSpec::new(&grid, "chk-untrusted");
    untrusted.url = host.url("grid.git");
    let mut unreachable = https_spec(&grid, &host, "chk-unreachable", "");
    unreachable.url = format!("https://127.0.0.1:{}/grid.git", free_port());
    let cases: [(&WorkerSpec, &str, &str, &str); 6] = [
        (&good, "wrong-token", "remote", "authentication failed"),
        (&good, "", "remote", "authentication required"),
        (&reader, &host.read_token, "push", "push refused"),
        (&missing, &host.token, "remote", "repository not found"),
        (
            &untrusted,
            &host.token,
            "remote",
            "TLS: the server's certificate is not trusted",
        ),
        (&unreachable, &host.token, "remote", "unreachable"),
    ];
    for (spec, token, what, says) in cases {
        let env: Vec<(&str, &str)> = if token.is_empty() {
            vec![]
        } else {
            vec![("GIT_TOKEN", token)]
        };
        let (code, text) = check(&grid, spec, &env);
        assert_eq!(code, 1, "{says}: {text}");
        let l = line(&text, what);
        assert!(l.starts_with("FAIL") && l.contains(says), "{says}: {text}");
        assert!(!text.contains(&host.token) && !text.contains(&host.read_token));
    }
    // Nothing of the checks reached the grid.
    assert!(grid.files("nodes").is_empty());
}

#[test]
fn the_worker_names_each_https_failure_and_keeps_running() {
    let grid = Grid::new();
    let host = HttpsHost::start(grid.root.path());
    let mut reader = https_spec(
        &grid,
        &host,
        "w-reader",
        &format!("git_username = \"{READER}\""),
    );
    reader
        .env
        .push(("GIT_TOKEN".into(), host.read_token.clone()));
    let mut missing = https_spec(&grid, &host, "w-missing", "");
    missing.url = host.url("nope.git");
    missing.env.push(("GIT_TOKEN".into(), host.token.clone()));
    let mut untrusted = WorkerSpec::new(&grid, "w-untrusted");
    untrusted.url = host.url("grid.git");
    untrusted.env.push(("GIT_TOKEN".into(), host.token.clone()));
    let mut workers = Vec::new();
    for (mut spec, says) in [
        (reader, "push refused"),
        (missing, "repository not found"),
        (untrusted, "certificate is not trusted"),
    ] {
        spec.drain = false;
        workers.push((spawn_worker(&grid, &spec), says));
    }
    for (w, says) in &mut workers {
        wait_until(says, Duration::from_secs(120), || {
            w.log_text().contains(*says)
        });
        assert!(w.child.try_wait().unwrap().is_none(), "{}", w.log_text());
        let log = w.log_text();
        assert!(!log.contains(&host.token) && !log.contains(&host.read_token));
        assert!(!log.contains("\x1b["), "colour codes in a log file");
    }
    assert!(grid.files("nodes").is_empty());
}

#[test]
fn ssh_drains_with_a_deploy_key_from_a_file_or_the_credential() {
    let grid = Grid::new();
    let host = SshHost::start();
    let creds = grid.path("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::copy(&host.key, creds.join("ssh-key")).unwrap();
    for mode in ["file", "credential"] {
        let (node, task) = (format!("ssh-{mode}"), format!("s-{mode}"));
        grid.submit(&[(task.clone(), format!("echo over ssh {mode}"), 30)]);
        let known = format!("known_hosts = {}", toml_str(&host.known_hosts));
        let git = match mode {
            "file" => format!("{known}\nssh_key_file = {}", toml_str(&host.key)),
            _ => known,
        };
        let mut spec = ssh_spec(&grid, &host, &node, &git);
        if mode == "credential" {
            spec.env
                .push(("CREDENTIALS_DIRECTORY".into(), creds.display().to_string()));
        }
        let mut w = spawn_worker(&grid, &spec);
        assert!(
            w.wait_exit(Duration::from_secs(240)).success(),
            "{mode}: {}",
            w.log_text()
        );
        let done = grid.json_files("tasks/completed");
        assert_eq!(
            done[&result_name(&node, &task)]["stdout"],
            format!("over ssh {mode}\n")
        );
    }
    assert!(host.log().contains("Accepted publickey"), "{}", host.log());
}

/// Every git call over ssh used to open its own connection: a key
/// exchange and an authentication each, seven or eight round trips to a
/// far forge. The worker keeps one open between calls, its socket in a
/// private directory of its state.
#[test]
fn ssh_git_calls_share_one_connection() {
    use std::os::unix::fs::PermissionsExt;
    let grid = Grid::new();
    let host = SshHost::start();
    let tasks: Vec<_> = (0..4)
        .map(|i| (format!("shared-{i}"), format!("echo {i}"), 30))
        .collect();
    grid.submit(&tasks);
    let git = format!(
        "known_hosts = {}\nssh_key_file = {}",
        toml_str(&host.known_hosts),
        toml_str(&host.key)
    );
    let mut spec = ssh_spec(&grid, &host, "ssh-shared", &git);
    // One task a claim: more syncs, each of them git calls over ssh.
    spec.extra.insert_str(0, "claim_ahead = 1\n");
    let mut w = spawn_worker(&grid, &spec);
    assert!(
        w.wait_exit(Duration::from_secs(240)).success(),
        "{}",
        w.log_text()
    );
    assert_eq!(grid.json_files("tasks/completed").len(), 4);
    let log = host.log();
    let sessions = log.matches("Starting session: command").count();
    let connections = log.matches("Accepted publickey").count();
    // A second connection can open when two calls start before the first
    // master listens; after that, every call goes through it.
    assert!(
        sessions >= 6 && (1..=2).contains(&connections),
        "{sessions} git calls over {connections} connections:\n{log}"
    );
    let dir = std::fs::metadata(w.state.join("ssh")).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o700);
    // The worker stopped its master on the way out (else it would stay two
    // minutes): the master removes its socket as it exits, and no ssh is
    // left on it. Its own time would be 120 s; the bound is well inside.
    let socket = w.state.join("ssh/master");
    let on_socket = || {
        process_cmdlines()
            .into_iter()
            .filter(|(_, cmd)| cmd.contains(&socket.display().to_string()))
            .count()
    };
    wait_until("the master to exit", Duration::from_secs(60), || {
        !socket.exists() && on_socket() == 0
    });
}

#[test]
fn ssh_host_keys_are_pinned_never_trusted_on_first_use() {
    let grid = Grid::new();
    let host = SshHost::start();
    let empty = grid.path("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let key = format!("ssh_key_file = {}", toml_str(&host.key));
    let spec = |node: &str, known: &Path| {
        ssh_spec(
            &grid,
            &host,
            node,
            &format!("{key}\nknown_hosts = {}", toml_str(known)),
        )
    };
    let good = spec("pin-good", &host.known_hosts);
    let (code, text) = check(&grid, &good, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(line(&text, "push").starts_with("ok"), "{text}");

    let unknown = spec("pin-unknown", &empty);
    let changed = spec("pin-changed", &host.wrong_known_hosts());
    let other_key = grid.path("other_key");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other_key)
        .status()
        .unwrap();
    assert!(keygen.success());
    let wrong_key = ssh_spec(
        &grid,
        &host,
        "pin-wrong-key",
        &format!(
            "ssh_key_file = {}\nknown_hosts = {}",
            toml_str(&other_key),
            toml_str(&host.known_hosts)
        ),
    );
    for (spec, says) in [
        (&unknown, "SSH host key unknown"),
        (&changed, "SSH host key CHANGED"),
        (&wrong_key, "authentication failed"),
    ] {
        let (code, text) = check(&grid, spec, &[]);
        assert_eq!(code, 1, "{says}: {text}");
        let l = line(&text, "remote");
        assert!(l.starts_with("FAIL") && l.contains(says), "{says}: {text}");
    }
    // The worker refuses the unknown host too, says why, and waits: it
    // neither trusts the key nor writes it anywhere.
    let mut w_spec = spec("pin-worker", &empty);
    w_spec.drain = false;
    let w = spawn_worker(&grid, &w_spec);
    let mut w = w;
    wait_until("the refusal in the log", Duration::from_secs(120), || {
        w.log_text().contains("SSH host key unknown")
    });
    assert!(w.child.try_wait().unwrap().is_none());
    assert_eq!(std::fs::read_to_string(&empty).unwrap(), "");
    assert!(grid.files("nodes").is_empty());
}

/// TLS verification cannot be turned off around the worker or the tools:
/// with no `ca_file`, a forge whose CA is not trusted is refused even with
/// `GIT_SSL_NO_VERIFY=1`, `http.sslVerify=false` in `$HOME/.gitconfig` and
/// `git -c http.sslVerify=false` in the environment (a tester had `check`
/// say `ok remote` with the first two).
#[test]
fn tls_verification_cannot_be_turned_off() {
    let grid = Grid::new();
    let host = HttpsHost::start(grid.root.path());
    let home = grid.path("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(home.join(".gitconfig"), "[http]\n\tsslVerify = false\n").unwrap();
    let home_s = home.display().to_string();
    let env = [
        ("GIT_TOKEN", host.token.as_str()),
        ("HOME", home_s.as_str()),
        ("GIT_SSL_NO_VERIFY", "1"),
        ("GIT_CONFIG_PARAMETERS", "'http.sslverify'='false'"),
    ];
    let mut untrusted = WorkerSpec::new(&grid, "chk-noverify");
    untrusted.url = host.url("grid.git");
    let (code, text) = check(&grid, &untrusted, &env);
    assert_eq!(code, 1, "{text}");
    let l = line(&text, "remote");
    assert!(
        l.starts_with("FAIL") && l.contains("certificate is not trusted"),
        "{text}"
    );

    let tool = Command::new(BIN)
        .args(["status", "--repo", &host.url("grid.git")])
        .env_remove("DGRID_TOKEN_FILE")
        .env_remove("CREDENTIALS_DIRECTORY")
        .envs(env)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&tool.stderr);
    assert!(!tool.status.success(), "{stderr}");
    assert!(stderr.contains("certificate is not trusted"), "{stderr}");
    assert!(!stderr.contains(&host.token), "{stderr}");
    assert!(grid.files("nodes").is_empty());
}
