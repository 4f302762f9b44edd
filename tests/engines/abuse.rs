//! The sandbox abuse suite: scripts that try what a hostile task would, run
//! by a real worker through the real podman engine (as root, runc, the test
//! image of scripts/lib/build-test-image). Each must be contained: the worker
//! stays up and reports each task, the host is untouched, and no container
//! or process is left behind.
//!
//! Network reach is only ever tried against loopback (the host's own
//! `git daemon` port on 127.0.0.1 and ::1): `--network=none` must stop even
//! that.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

/// A check on a result: a complaint, or None.
type Check = Box<dyn Fn(&Value) -> Option<String>>;

struct Abuse {
    id: &'static str,
    script: String,
    timeout: u64,
    /// Checks on the result; each returns a complaint or None.
    check: Check,
}

fn field<'a>(r: &'a Value, k: &str) -> &'a str {
    r[k].as_str().unwrap_or("")
}

fn status_is(want: &'static str) -> impl Fn(&Value) -> Option<String> {
    move |r| (r["status"] != want).then(|| format!("status {} instead of {want}", r["status"]))
}

fn says(stream: &'static str, want: &'static str) -> impl Fn(&Value) -> Option<String> {
    move |r| (!field(r, stream).contains(want)).then(|| format!("{stream} lacks {want:?}"))
}

fn never_says(stream: &'static str, bad: String) -> impl Fn(&Value) -> Option<String> {
    move |r| {
        field(r, stream)
            .contains(&bad)
            .then(|| format!("{stream} has {bad:?}"))
    }
}

fn all(checks: Vec<Check>) -> Check {
    Box::new(move |r| {
        let found: Vec<String> = checks.iter().filter_map(|c| c(r)).collect();
        (!found.is_empty()).then(|| found.join("; "))
    })
}

macro_rules! checks {
    ($($c:expr),* $(,)?) => { all(vec![$(Box::new($c)),*]) };
}

#[test]
fn hostile_scripts_are_contained_by_podman() {
    require_podman_image();
    let grid = Grid::new();
    let daemon = GitDaemon::start(&grid, free_port());
    // The port is really open to the host: a refused connection inside the
    // sandbox is the sandbox's doing.
    assert!(TcpStream::connect(("127.0.0.1", daemon.port)).is_ok());
    let port = daemon.port;
    let tag = std::process::id();
    let node = format!("abuse-{tag}");
    let host_secret = format!("HOST-SECRET-{tag}");
    let secret_file = grid.path("host-secret.txt");
    std::fs::write(&secret_file, &host_secret).unwrap();
    let token = format!("tok-abuse-{tag}");

    let mut spec = WorkerSpec::new(&grid, &node);
    spec.url = daemon.url();
    spec.engine = "podman".into();
    spec.drain = false;
    spec.extra = "concurrency = 2\ndrain_timeout = 3\n".into();
    spec.sandbox_extra = "memory_mb = 64\npids_limit = 32\n".into();
    spec.env = vec![
        (
            "CONTAINERS_CONF".into(),
            containers_conf().display().to_string(),
        ),
        ("DGRID_IMAGE".into(), TEST_IMAGE.into()),
        ("GIT_TOKEN".into(), token.clone()),
    ];
    let mut w = spawn_worker(&grid, &spec);
    let worker_pid = w.child.id();
    wait_until("the node to register", Duration::from_secs(60), || {
        grid.files("nodes").contains_key(&format!("{node}.json"))
    });

    let sleeper_a = 40000 + tag % 10000;
    let sleeper_b = sleeper_a + 1;
    let cases: Vec<Abuse> = vec![
        Abuse {
            id: "net-loopback",
            script: format!(
                "if nc -z -w 2 127.0.0.1 {port}; then echo reached-v4; else echo blocked-v4; fi; \
                 if nc -z -w 2 ::1 {port}; then echo reached-v6; else echo blocked-v6; fi; \
                 if wget -q -T 2 -O /dev/null http://127.0.0.1:{port}/; then echo reached-http; fi; \
                 echo ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ,)"
            ),
            timeout: 30,
            check: checks![
                status_is("completed"),
                says("stdout", "blocked-v4"),
                says("stdout", "blocked-v6"),
                says("stdout", "ifaces=lo,\n"),
                never_says("stdout", "reached".into()),
            ],
        },
        Abuse {
            id: "write-root",
            script: "for d in / /etc /bin /home/task /usr /var /var/tmp /run; do \
                     if touch $d/pwned 2>/dev/null; then echo wrote-$d; fi; done; \
                     if echo h > /proc/sysrq-trigger 2>/dev/null; then echo wrote-sysrq; fi; \
                     if mount -t tmpfs none /home/task 2>/dev/null; then echo mounted; fi; \
                     if mknod /tmp/sda b 8 0 2>/dev/null; then echo mknod; fi; \
                     echo checked"
                .into(),
            timeout: 30,
            check: checks![
                status_is("completed"),
                says("stdout", "checked"),
                never_says("stdout", "wrote-".into()),
                never_says("stdout", "mounted".into()),
                never_says("stdout", "mknod".into()),
            ],
        },
        Abuse {
            id: "read-secrets",
            script: format!(
                "cat /etc/shadow {} /root/.ssh/id_rsa /proc/1/environ 2>&1; \
                 ls /run/podman/podman.sock /var/run/docker.sock 2>&1; env; \
                 grep -rs {host_secret} /etc /home /tmp /var /root /run /mnt /srv; echo looked",
                secret_file.display()
            ),
            timeout: 60,
            check: checks![
                says("stdout", "looked"),
                never_says("stdout", host_secret.clone()),
                never_says("stderr", host_secret.clone()),
                never_says("stdout", token.clone()),
                never_says("stdout", "GIT_".into()),
                never_says("stdout", "root:".into()),
            ],
        },
        Abuse {
            id: "fork-bomb",
            script: "f() { f | f & }; f; sleep 2; echo survived".into(),
            timeout: 60,
            check: checks![says("stderr", "can't fork")],
        },
        Abuse {
            id: "memory-hog",
            script: r#"x=$(head -c 200000000 /dev/zero | tr '\0' a); echo "len=${#x}""#.into(),
            timeout: 60,
            check: checks![
                status_is("failed"),
                |r: &Value| (r["exit_code"] != 137).then(|| format!("exit {}", r["exit_code"])),
                never_says("stdout", "len=200000000".into()),
            ],
        },
        Abuse {
            id: "busy-loop",
            script: "while :; do :; done".into(),
            timeout: 3,
            check: checks![status_is("timeout"), |r: &Value| {
                (r["duration_ms"].as_u64().unwrap_or(0) > 15_000)
                    .then(|| format!("took {} ms", r["duration_ms"]))
            }],
        },
        Abuse {
            id: "output-flood",
            script: "yes AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA & yes BBBBBBBB >&2".into(),
            timeout: 4,
            check: checks![status_is("timeout"), |r: &Value| {
                let (o, e) = (field(r, "stdout").len(), field(r, "stderr").len());
                (o != 10240 || e != 10240 || r["truncated"] != true)
                    .then(|| format!("kept {o}+{e} bytes, truncated={}", r["truncated"]))
            }],
        },
        Abuse {
            id: "setuid",
            script: "cp /bin/busybox /tmp/bb && chmod 4755 /tmp/bb; /tmp/bb id -u; \
                     su -c 'id -u' root </dev/null 2>&1; \
                     grep -E '^(NoNewPrivs|CapEff|CapBnd)' /proc/self/status; \
                     echo uid=$(id -u)"
                .into(),
            timeout: 30,
            check: checks![
                says("stdout", "NoNewPrivs:\t1"),
                says("stdout", "CapEff:\t0000000000000000"),
                says("stdout", "CapBnd:\t0000000000000000"),
                says("stdout", "uid=1000"),
                never_says("stdout", "\n0\n".into()),
            ],
        },
        Abuse {
            id: "signals",
            script: format!(
                "kill -9 {worker_pid} 2>&1; kill -TERM {worker_pid} 2>&1; \
                 kill -TERM 1 2>&1; kill -9 1 2>&1; echo still-here; kill -9 -1; echo not-reached"
            ),
            timeout: 30,
            check: checks![says("stdout", "still-here")],
        },
        Abuse {
            id: "ignores-sigterm",
            script: "trap '' TERM INT HUP; while :; do sleep 1; done".into(),
            timeout: 3,
            check: checks![status_is("timeout"), |r: &Value| {
                (r["duration_ms"].as_u64().unwrap_or(0) > 15_000)
                    .then(|| format!("took {} ms", r["duration_ms"]))
            }],
        },
        Abuse {
            id: "detach",
            script: format!(
                "setsid sleep {sleeper_a} </dev/null >/dev/null 2>&1 & \
                 (sleep {sleeper_b} </dev/null >/dev/null 2>&1 &) ; echo detached"
            ),
            timeout: 30,
            check: checks![status_is("completed"), says("stdout", "detached")],
        },
        Abuse {
            id: "fill-tmp",
            script: "dd if=/dev/zero of=/tmp/fill bs=1M count=4096 2>&1; echo rc=$?".into(),
            timeout: 60,
            check: checks![|r: &Value| {
                // Stopped by the memory limit (tmpfs pages count against it):
                // the shell is OOM-killed, or dd fails and says so.
                let stopped = r["exit_code"] == 137
                    || field(r, "stdout").contains("No space left")
                    || field(r, "stdout").contains("rc=1");
                (!stopped || field(r, "stdout").contains("4294967296 bytes"))
                    .then(|| format!("/tmp was filled: {r}"))
            }],
        },
        Abuse {
            id: "escape-tools",
            script: "nsenter -t 1 -m -u -i -n -p id 2>&1; chroot / id 2>&1; \
                     ls /proc/1/root/ >/dev/null 2>&1 && echo saw-root; \
                     cat /proc/1/cgroup | head -1; ping -c 1 -W 1 127.0.0.1 2>&1; echo tried"
                .into(),
            timeout: 30,
            check: checks![
                says("stdout", "tried"),
                never_says("stdout", "uid=0".into()),
                never_says("stdout", "64 bytes from".into()),
            ],
        },
    ];
    assert!(cases.len() >= 12);
    let submitted = Instant::now();
    grid.submit(
        &cases
            .iter()
            .map(|c| (c.id.to_owned(), c.script.clone(), c.timeout))
            .collect::<Vec<_>>(),
    );
    wait_until(
        "a result for every script",
        Duration::from_secs(300),
        || {
            assert!(
                w.child.try_wait().unwrap().is_none(),
                "the worker died:\n{}",
                w.log_text()
            );
            grid.results().len() == cases.len()
        },
    );
    eprintln!("abuse scripts done in {:?}", submitted.elapsed());

    let results: BTreeMap<String, Value> = grid
        .results()
        .into_iter()
        .map(|(_, r)| (field(&r, "task_id").to_owned(), r))
        .collect();
    let mut problems = Vec::new();
    for c in &cases {
        let r = &results[c.id];
        if let Some(p) = (c.check)(r) {
            problems.push(format!("{}: {p}\n  result: {r}", c.id));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The worker is alive and well: one more task runs normally.
    grid.submit(&[("after".into(), "echo fine".into(), 30)]);
    wait_until("the task after the abuse", Duration::from_secs(60), || {
        grid.json_files("tasks/completed")
            .get(&format!("{node}@after.json"))
            .is_some_and(|r| r["stdout"] == "fine\n")
    });

    // A task that ignores SIGTERM while the worker is told to stop: the
    // drain timeout passes, its container is killed and the task requeued.
    grid.submit(&[(
        "stubborn".into(),
        "trap '' TERM INT HUP; while :; do sleep 1; done".into(),
        600,
    )]);
    wait_until("stubborn to run", Duration::from_secs(60), || {
        !node_containers(&node).is_empty()
    });
    let stop = Instant::now();
    w.signal(Signal::SIGTERM);
    let status = w.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{}", w.log_text());
    assert!(
        stop.elapsed() < Duration::from_secs(30),
        "{:?}",
        stop.elapsed()
    );
    assert!(grid.queued().contains_key("stubborn.json"));
    assert!(grid.files("tasks/in_progress").is_empty());

    // Nothing left behind: no container, no detached sleeper, no stray
    // file written outside the sandbox.
    assert_eq!(node_containers(&node), Vec::<String>::new());
    let strays: Vec<(u32, String)> = process_cmdlines()
        .into_iter()
        .filter(|(_, c)| {
            c.contains(&format!("sleep {sleeper_a}"))
                || c.contains(&format!("sleep {sleeper_b}"))
                || c.contains(&format!("dgrid-{}-{node}-", node.len()))
        })
        .collect();
    assert!(
        strays.is_empty(),
        "processes outlived their tasks: {strays:?}"
    );
    assert!(!std::path::Path::new("/pwned").exists());
    assert!(!std::path::Path::new("oom").exists());
    let log = w.log_text();
    assert!(!log.contains(&token), "token in the worker's log");
}
