//! The sandbox against real engines: podman (as root, runc) and docker.
//!
//! Prerequisites, run by CI before `cargo test` (as root):
//!   scripts/lib/start-dockerd
//!   scripts/lib/build-test-image podman
//!   scripts/lib/build-test-image docker
//! A missing engine or image fails the tests with a message saying so: a
//! sandbox whose isolation was never tested must not look green.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use dgrid_worker::sandbox::{
    CancelFlag, ContainerEngine, Engine, EngineFlavor, EngineKind, Job, Limits, Outcome, RunReport,
    SandboxConfig, ShellEngine,
};

const IMAGE: &str = "localhost/dgrid-busybox:latest";

/// podman as root needs runc (crun fails on these hybrid cgroups) and sane
/// ulimits (root's hard nofile limit breaks podman's defaults): the same
/// containers.conf the demo uses.
fn containers_conf() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/lib/containers.conf"
    ))
}

/// Unique per test process, so that parallel runs (and leftovers of a killed
/// run) never share container names.
fn node() -> String {
    format!("t{}", std::process::id())
}

fn config(image: &str, limits: Limits) -> SandboxConfig {
    SandboxConfig {
        engine: EngineKind::Auto,
        image: image.into(),
        limits,
        allow_unenforced_limits: false,
        engine_call_timeout: Duration::from_secs(30),
    }
}

fn engine_with(flavor: EngineFlavor, image: &str, limits: Limits) -> ContainerEngine {
    let e = ContainerEngine::new(flavor, &config(image, limits));
    match flavor {
        EngineFlavor::Podman => e.with_env("CONTAINERS_CONF", containers_conf()),
        EngineFlavor::Docker => e,
    }
}

/// The engine, after making sure (once per flavor) that it and the image are
/// there and that limits would be enforced.
fn engine(flavor: EngineFlavor, limits: Limits) -> ContainerEngine {
    static CHECKED: Mutex<Vec<(EngineFlavor, Result<(), String>)>> = Mutex::new(Vec::new());
    let e = engine_with(flavor, IMAGE, limits);
    let result = {
        let mut checked = CHECKED.lock().unwrap_or_else(|p| p.into_inner());
        match checked.iter().find(|(f, _)| *f == flavor) {
            Some((_, r)) => r.clone(),
            None => {
                let r = e.check().map_err(|err| err.to_string());
                checked.push((flavor, r.clone()));
                r
            }
        }
    };
    if let Err(err) = result {
        panic!(
            "{} is not ready for the sandbox tests: {err}\n\
             Run, as root, before `cargo test`: scripts/lib/start-dockerd; \
             scripts/lib/build-test-image podman; \
             scripts/lib/build-test-image docker",
            flavor.binary()
        );
    }
    e
}

/// The engine CLI, for the test's own look at containers.
fn cli(flavor: EngineFlavor) -> Command {
    let mut c = Command::new(flavor.binary());
    if flavor == EngineFlavor::Podman {
        c.env("CONTAINERS_CONF", containers_conf());
    }
    c
}

fn container_exists(flavor: EngineFlavor, name: &str) -> bool {
    let out = cli(flavor)
        .args(["ps", "-a", "--format", "{{.Names}}"])
        .output()
        .expect("run ps");
    assert!(out.status.success(), "ps failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == name)
}

fn job(task: &str, script: &str, timeout: Duration) -> Job {
    Job {
        node_id: node(),
        task_id: task.into(),
        attempt: 1,
        script: script.into(),
        timeout,
        inputs: None,
    }
}

fn no_cancel() -> CancelFlag {
    Arc::new(AtomicBool::new(false))
}

fn run(e: &dyn Engine, job: &Job) -> RunReport {
    e.run(job, &no_cancel())
}

fn small_limits() -> Limits {
    Limits {
        memory_mb: 64,
        cpus: 1.0,
        pids: 32,
        output_bytes: 10 * 1024,
    }
}

// ---- container cases, each run for podman and docker -----------------------

fn isolation(f: EngineFlavor) {
    let e = engine(f, Limits::default());
    let script = r#"
        echo "uid=$(id -u)"
        echo "ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ,)"
        echo "routes=$(tail -n +2 /proc/net/route | wc -l)"
        grep CapEff /proc/self/status
        if touch /x 2>/dev/null; then echo root=writable; else echo root=readonly; fi
        if touch /tmp/x; then echo tmp=writable; fi
    "#;
    let r = run(&e, &job("isolation", script, Duration::from_secs(30)));
    assert_eq!(r.outcome, Outcome::Exited(0), "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().map(str::trim).collect();
    for want in [
        "uid=1000",
        "ifaces=lo,",
        // No route to anywhere: nothing can leave, without trying to reach
        // an outside address to prove it.
        "routes=0",
        "CapEff:\t0000000000000000",
        "root=readonly",
        "tmp=writable",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in {r:?}");
    }
}

fn fork_bomb_is_contained(f: EngineFlavor) {
    let e = engine(f, small_limits());
    let t = Instant::now();
    let r = run(
        &e,
        &job(
            "forkbomb",
            "f() { f | f & }; f; sleep 2; echo survived",
            Duration::from_secs(30),
        ),
    );
    assert!(t.elapsed() < Duration::from_secs(30), "{r:?}");
    assert!(matches!(r.outcome, Outcome::Exited(_)), "{r:?}");
    assert!(
        r.stderr.contains("can't fork"),
        "the pids limit was not hit: {r:?}"
    );
    // The host (and the engine) still work.
    let after = run(
        &e,
        &job("after-forkbomb", "echo ok", Duration::from_secs(30)),
    );
    assert_eq!(after.outcome, Outcome::Exited(0), "{after:?}");
    assert_eq!(after.stdout, "ok\n");
}

fn memory_hog_is_killed(f: EngineFlavor) {
    let e = engine(f, small_limits());
    let r = run(
        &e,
        &job(
            "memhog",
            r#"x=$(head -c 200000000 /dev/zero | tr '\0' a); echo "len=${#x}""#,
            Duration::from_secs(60),
        ),
    );
    // Both engines report the OOM kill of the container's sh as 137.
    assert_eq!(r.outcome, Outcome::Exited(137), "{r:?}");
    assert!(!r.stdout.contains("len=200000000"), "{r:?}");
    // podman's conmon writes an `oom` file into the CLI's working directory;
    // the engine must not run the CLI from ours.
    assert!(
        !std::path::Path::new("oom").exists(),
        "an `oom` file appeared in the worker's directory"
    );
}

fn timeout_kills_and_removes_the_container(f: EngineFlavor) {
    let e = engine(f, Limits::default());
    let j = job("timeout", "sleep 300", Duration::from_secs(2));
    let t = Instant::now();
    let r = run(&e, &j);
    let took = t.elapsed();
    assert_eq!(r.outcome, Outcome::TimedOut, "{r:?}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(
        !container_exists(f, &j.container_name()),
        "container left behind"
    );
}

/// A deadline that passes while the engine is still creating the container:
/// the first removal finds nothing, yet nothing may be left running.
fn timeout_during_startup_leaves_nothing(f: EngineFlavor) {
    let e = engine(f, Limits::default());
    let j = job("earlytimeout", "sleep 300", Duration::from_millis(1));
    let t = Instant::now();
    let r = run(&e, &j);
    let took = t.elapsed();
    assert_eq!(r.outcome, Outcome::TimedOut, "{r:?}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(
        !container_exists(f, &j.container_name()),
        "container left behind"
    );
}

fn output_is_capped(f: EngineFlavor) {
    let e = engine(f, Limits::default());
    let r = run(
        &e,
        &job(
            "bigoutput",
            r"head -c 1048576 /dev/zero | tr '\0' x",
            Duration::from_secs(30),
        ),
    );
    assert_eq!(r.outcome, Outcome::Exited(0), "{:?}", r.outcome);
    assert_eq!(r.stdout.len(), 10240);
    assert!(r.stdout.bytes().all(|b| b == b'x'));
    assert!(r.truncated);
}

fn missing_image_is_an_engine_failure(f: EngineFlavor) {
    engine(f, Limits::default()); // the engine itself must be fine
    let e = engine_with(f, "localhost/dgrid-no-such-image:latest", Limits::default());
    let r = run(&e, &job("noimage", "true", Duration::from_secs(30)));
    assert!(matches!(r.outcome, Outcome::EngineFailed(_)), "{r:?}");
    let err = e
        .check()
        .expect_err("check() must notice the missing image");
    // Typed, so that `check` can say "image" rather than "engine".
    assert!(
        matches!(
            err,
            dgrid_worker::sandbox::SandboxError::ImageMissing { .. }
        ),
        "{err}"
    );
    let err = err.to_string();
    assert!(
        err.contains("not present locally") && err.contains("pull"),
        "{err}"
    );
}

/// An engine that cannot work at all: podman told to use a runtime that does
/// not exist, docker pointed at a socket nobody listens on.
fn engine_down_is_an_engine_failure(f: EngineFlavor) {
    engine(f, Limits::default()); // the working engine must be fine
    let e = match f {
        EngineFlavor::Podman => {
            let bad = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("containers-broken.conf");
            std::fs::write(&bad, "[engine]\nruntime = \"dgrid-no-such-runtime\"\n")
                .expect("write broken containers.conf");
            engine_with(f, IMAGE, Limits::default()).with_env("CONTAINERS_CONF", bad)
        }
        EngineFlavor::Docker => engine_with(f, IMAGE, Limits::default())
            .with_env("DOCKER_HOST", "unix:///nonexistent/dgrid-docker.sock"),
    };
    let r = run(&e, &job("enginedown", "true", Duration::from_secs(30)));
    assert!(matches!(r.outcome, Outcome::EngineFailed(_)), "{r:?}");
    assert!(e.check().is_err(), "check() must notice the broken engine");
}

fn exit_code_passes_through(f: EngineFlavor) {
    let e = engine(f, Limits::default());
    let r = run(
        &e,
        &job(
            "exit3",
            "echo out; echo err >&2; exit 3",
            Duration::from_secs(30),
        ),
    );
    assert_eq!(r.outcome, Outcome::Exited(3), "{r:?}");
    assert_eq!(r.stdout, "out\n");
    assert_eq!(r.stderr, "err\n");
    assert!(!r.truncated);
    // A task's own 125 is the task's, not the engine's.
    let r = run(&e, &job("exit125", "exit 125", Duration::from_secs(30)));
    assert_eq!(r.outcome, Outcome::Exited(125), "{r:?}");
}

fn cancel_kills_and_removes_the_container(f: EngineFlavor) {
    cancelled_after(f, "cancel", Duration::from_secs(1));
}

/// A start taken back for higher work is cancelled a look and a sync after
/// it began: while the engine may still be creating the container.
fn cancel_during_startup_leaves_nothing(f: EngineFlavor) {
    cancelled_after(f, "earlycancel", Duration::from_millis(50));
}

/// Run `sleep 300` as `name` and cancel it `after` its start: it reports
/// cancelled promptly and leaves no container.
fn cancelled_after(f: EngineFlavor, name: &str, after: Duration) {
    let e = engine(f, Limits::default());
    let j = job(name, "sleep 300", Duration::from_secs(120));
    let flag = no_cancel();
    let setter = Arc::clone(&flag);
    thread::spawn(move || {
        thread::sleep(after);
        setter.store(true, Ordering::SeqCst);
    });
    let t = Instant::now();
    let r = e.run(&j, &flag);
    let took = t.elapsed();
    assert_eq!(r.outcome, Outcome::Cancelled, "{r:?}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(
        !container_exists(f, &j.container_name()),
        "container left behind"
    );
}

/// The engine's CLI process running container `name`: its argv names the
/// container (conmon's does too, so the command name decides).
fn cli_running(f: EngineFlavor, name: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|d| {
        let pid: u32 = d.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(d.path().join("comm")).ok()?;
        let argv = std::fs::read(d.path().join("cmdline")).ok()?;
        let argv = String::from_utf8_lossy(&argv);
        (comm.trim() == f.binary() && argv.split('\0').any(|a| a == name)).then_some(pid)
    })
}

/// The engine's CLI killed under a running task (by the host's OOM killer,
/// an operator) says nothing of the task: an engine failure, not the
/// task's exit 137, and its container, which would run on outside the
/// slot that counted it, is removed.
fn a_killed_cli_is_the_engines_failure_and_leaves_no_container(f: EngineFlavor) {
    let e = engine(f, Limits::default());
    let j = job(
        "clikilled",
        "echo begin; sleep 300",
        Duration::from_secs(240),
    );
    let name = j.container_name();
    let _cleanup = Cleanup(f, vec![name.clone()]);
    let runner = thread::spawn(move || run(&e, &j));
    let until = Instant::now() + Duration::from_secs(120);
    let pid = loop {
        if let Some(pid) = cli_running(f, &name).filter(|_| container_exists(f, &name)) {
            break pid;
        }
        assert!(Instant::now() < until, "{name} never started");
        thread::sleep(Duration::from_millis(100));
    };
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let r = runner.join().unwrap();
    match &r.outcome {
        Outcome::EngineFailed(why) => assert!(why.contains("killed by signal 9"), "{why}"),
        other => panic!("not the engine's failure: {other:?} {r:?}"),
    }
    assert!(!container_exists(f, &name), "container left running");
}

/// Removes the named containers when dropped, so a failed assertion does not
/// leave `sleep 300` containers behind.
struct Cleanup(EngineFlavor, Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut c = cli(self.0);
        c.args(["rm", "-f"]);
        if self.0 == EngineFlavor::Podman {
            c.args(["-t", "0"]);
        }
        let _ = c.args(&self.1).output();
    }
}

fn remove_leftovers_only_takes_this_nodes(f: EngineFlavor) {
    let e = engine(f, Limits::default());
    let mine = format!("{}-left-a", node());
    let other = format!("{}-left-b", node());
    let names: Vec<String> = [&mine, &other]
        .iter()
        .map(|n| format!("dgrid-{n}-crashed-1"))
        .collect();
    let _cleanup = Cleanup(f, names.clone());
    for (n, name) in [&mine, &other].iter().zip(&names) {
        let out = cli(f)
            .args(["run", "-d", "--name", name])
            .args(["--label", "dgrid.managed=true"])
            .args(["--label", &format!("dgrid.node={n}")])
            .args(["--label", "dgrid.task=crashed"])
            .args([IMAGE, "sleep", "300"])
            .output()
            .expect("start detached container");
        assert!(out.status.success(), "run -d failed: {out:?}");
    }
    assert_eq!(e.remove_leftovers(&mine).expect("remove_leftovers"), 1);
    assert!(!container_exists(f, &names[0]));
    assert!(
        container_exists(f, &names[1]),
        "another node's container was removed"
    );
    assert_eq!(e.remove_leftovers(&mine).expect("remove_leftovers"), 0);
    assert_eq!(e.remove_leftovers(&other).expect("remove_leftovers"), 1);
    assert!(!container_exists(f, &names[1]));
}

/// A directory of inputs (a parent's result), as the worker writes it for
/// a task that runs after another: world-readable files in a directory of
/// their own.
fn inputs_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("dgrid-inputs-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = dir.path().join("build-1.json");
    std::fs::write(
        &file,
        "{\"task_id\": \"build-1\", \"stdout\": \"built\\n\"}\n",
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    dir
}

fn inputs_are_read_only_at_inputs(f: EngineFlavor) {
    let e = engine(f, Limits::default());
    let dir = inputs_dir();
    let mut j = job(
        "inputs",
        r#"
        echo "env=$DGRID_INPUTS"
        grep -q '"stdout": "built' /inputs/build-1.json && echo read=ok
        if echo x > /inputs/build-1.json 2>/dev/null; then echo write=yes; else echo write=refused; fi
        if touch /inputs/new 2>/dev/null; then echo create=yes; else echo create=refused; fi
        grep ' /inputs ' /proc/mounts | grep -q '[ ,]ro[ ,]' && echo mount=ro
        echo "uid=$(id -u)"
        "#,
        Duration::from_secs(30),
    );
    j.inputs = Some(dir.path().to_owned());
    let r = run(&e, &j);
    assert_eq!(r.outcome, Outcome::Exited(0), "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().map(str::trim).collect();
    for want in [
        "env=/inputs",
        "read=ok",
        "write=refused",
        "create=refused",
        "mount=ro",
        "uid=1000",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in {r:?}");
    }
    // The host's copy is untouched.
    let kept = std::fs::read_to_string(dir.path().join("build-1.json")).unwrap();
    assert!(kept.contains("built"), "{kept}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

macro_rules! for_each_engine {
    ($($case:ident),* $(,)?) => {
        mod podman {
            $( #[test] fn $case() { super::$case(super::EngineFlavor::Podman) } )*
        }
        mod docker {
            $( #[test] fn $case() { super::$case(super::EngineFlavor::Docker) } )*
        }
    };
}

for_each_engine!(
    isolation,
    fork_bomb_is_contained,
    memory_hog_is_killed,
    timeout_kills_and_removes_the_container,
    timeout_during_startup_leaves_nothing,
    output_is_capped,
    missing_image_is_an_engine_failure,
    engine_down_is_an_engine_failure,
    exit_code_passes_through,
    cancel_kills_and_removes_the_container,
    cancel_during_startup_leaves_nothing,
    remove_leftovers_only_takes_this_nodes,
    inputs_are_read_only_at_inputs,
    a_killed_cli_is_the_engines_failure_and_leaves_no_container,
);

// ---- shell engine ------------------------------------------------------------

fn shell() -> ShellEngine {
    ShellEngine::new(Limits::default())
}

/// True if `pid` is gone or a zombie waiting for its (new) parent.
/// Is `pid` gone (or a zombie) within 10 s? A SIGKILL sent to a group
/// is delivered asynchronously: on a loaded machine a member can still
/// show as sleeping the moment the run returns.
fn process_is_dead(pid: &str) -> bool {
    let dead = || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    };
    let until = Instant::now() + Duration::from_secs(10);
    while !dead() {
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn shell_exit_code_env_and_workdir() {
    let r = run(
        &shell(),
        &job(
            "shell-env",
            r#"echo "task=$TASK_ID"; [ "$HOME" = "$(pwd)" ] && echo home=cwd; env; exit 4"#,
            Duration::from_secs(10),
        ),
    );
    assert_eq!(r.outcome, Outcome::Exited(4), "{r:?}");
    assert!(r.stdout.contains("task=shell-env\n"), "{r:?}");
    assert!(r.stdout.contains("home=cwd\n"), "{r:?}");
    assert!(
        !r.stdout.contains("CARGO"),
        "environment not cleared: {r:?}"
    );
}

#[test]
fn shell_signal_is_128_plus_n() {
    let r = run(
        &shell(),
        &job("shell-sig", "kill -9 $$", Duration::from_secs(10)),
    );
    assert_eq!(r.outcome, Outcome::Exited(137), "{r:?}");
}

#[test]
fn shell_timeout_kills_the_process_group() {
    let t = Instant::now();
    let r = run(
        &shell(),
        &job(
            "shell-timeout",
            "sleep 300 & echo $!; sleep 300",
            Duration::from_secs(1),
        ),
    );
    assert_eq!(r.outcome, Outcome::TimedOut, "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let pid = r.stdout.trim();
    assert!(!pid.is_empty());
    assert!(process_is_dead(pid), "background sleep {pid} survived");
}

#[test]
fn shell_background_processes_die_with_the_script() {
    let t = Instant::now();
    let r = run(
        &shell(),
        &job("shell-bg", "sleep 300 & echo $!", Duration::from_secs(30)),
    );
    assert_eq!(r.outcome, Outcome::Exited(0), "{r:?}");
    // The backgrounded sleep holds stdout open; the report must not wait for it.
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(process_is_dead(r.stdout.trim()));
}

#[test]
fn shell_output_is_capped() {
    let r = run(
        &shell(),
        &job(
            "shell-big",
            r"head -c 1048576 /dev/zero | tr '\0' x",
            Duration::from_secs(30),
        ),
    );
    assert_eq!(r.outcome, Outcome::Exited(0));
    assert_eq!(r.stdout.len(), 10240);
    assert!(r.truncated);
}

#[test]
fn shell_names_its_inputs_in_the_environment() {
    let dir = inputs_dir();
    let mut j = job(
        "shell-inputs",
        r#"cat "$DGRID_INPUTS/build-1.json""#,
        Duration::from_secs(10),
    );
    j.inputs = Some(dir.path().to_owned());
    let r = shell().run(&j, &no_cancel());
    assert_eq!(r.outcome, Outcome::Exited(0), "{r:?}");
    assert!(r.stdout.contains("built"), "{r:?}");
    let r = shell().run(
        &job(
            "shell-no-inputs",
            "echo \"[$DGRID_INPUTS]\"",
            Duration::from_secs(10),
        ),
        &no_cancel(),
    );
    assert_eq!(r.stdout, "[]\n", "a task without inputs is told none");
}

#[test]
fn shell_cancel() {
    let flag = no_cancel();
    let setter = Arc::clone(&flag);
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        setter.store(true, Ordering::SeqCst);
    });
    let t = Instant::now();
    let r = shell().run(
        &job("shell-cancel", "sleep 300", Duration::from_secs(60)),
        &flag,
    );
    assert_eq!(r.outcome, Outcome::Cancelled, "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
}
