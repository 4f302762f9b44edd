//! sd_notify (issue item 7): a socket standing in for systemd receives
//! READY=1 only after the node is registered in the grid, STATUS= lines,
//! WATCHDOG=1 at half the watchdog interval, and STOPPING=1 on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;

#[test]
fn ready_status_watchdog_and_stopping_reach_the_notify_socket() {
    let grid = Grid::new();
    let sock_path = grid.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();

    let mut spec = WorkerSpec::new(&grid, "notified");
    spec.drain = false;
    spec.env = vec![
        ("NOTIFY_SOCKET".into(), sock_path.display().to_string()),
        ("WATCHDOG_USEC".into(), "1000000".into()),
    ];
    let mut w = spawn_worker(&grid, &spec);

    let mut messages: Vec<(Instant, String)> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut collect = |until: Instant, messages: &mut Vec<(Instant, String)>| {
        while Instant::now() < until {
            if let Ok(n) = sock.recv(&mut buf) {
                messages.push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ));
            }
        }
    };

    // READY=1, and by then the node record is in the grid.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !messages
        .iter()
        .any(|(_, m)| m.lines().any(|l| l == "READY=1"))
    {
        assert!(
            Instant::now() < deadline,
            "no READY=1; got {messages:?}\n{}",
            w.log_text()
        );
        collect(Instant::now() + Duration::from_millis(200), &mut messages);
    }
    assert!(
        grid.files("nodes").contains_key("notified.json"),
        "READY=1 came after registration"
    );
    let ready_msg = messages
        .iter()
        .find(|(_, m)| m.contains("READY=1"))
        .unwrap();
    assert!(
        ready_msg.1.contains("STATUS="),
        "READY carries a status: {ready_msg:?}"
    );

    // A task changes the status line.
    grid.submit(&[("noted".into(), "sleep 1; echo hi".into(), 10)]);
    collect(Instant::now() + Duration::from_secs(4), &mut messages);
    let statuses: Vec<&str> = messages
        .iter()
        .flat_map(|(_, m)| m.lines())
        .filter(|l| l.starts_with("STATUS="))
        .collect();
    assert!(
        statuses.iter().any(|s| s.contains("running noted")),
        "{statuses:?}"
    );
    assert!(statuses.contains(&"STATUS=idle"), "{statuses:?}");

    // Watchdog pings at about half of WATCHDOG_USEC: several in 4 s.
    let pings: Vec<Instant> = messages
        .iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect();
    assert!(
        pings.len() >= 5,
        "expected WATCHDOG=1 about every 0.5 s, got {}",
        pings.len()
    );
    let max_gap = pings.windows(2).map(|p| p[1] - p[0]).max().unwrap();
    assert!(
        max_gap < Duration::from_millis(1000),
        "watchdog gap {max_gap:?} would trip systemd"
    );

    w.signal(Signal::SIGTERM);
    let status = w.wait_exit(Duration::from_secs(20));
    collect(Instant::now() + Duration::from_millis(300), &mut messages);
    assert!(status.success(), "{}", w.log_text());
    assert!(
        messages
            .iter()
            .any(|(_, m)| m.lines().any(|l| l == "STOPPING=1")),
        "{messages:?}"
    );
    let node: serde_json::Value =
        serde_json::from_slice(&grid.files("nodes")["notified.json"]).unwrap();
    assert_eq!(node["status"], "stopped");
    assert_eq!(grid.json_files("tasks/completed").len(), 1);
}

/// A git call that hangs is no stuck loop: while the worker's fetch waits
/// on a server that accepts and never answers, for up to its `[git]
/// timeout` (here longer than the watchdog's interval, as the defaults
/// are: 120 s against the unit's 60), WATCHDOG=1 keeps coming at half the
/// interval. A tester saw 100 s of silence, which systemd would have
/// ended by killing the worker.
#[test]
fn the_watchdog_is_answered_while_a_git_call_hangs() {
    let grid = Grid::new();
    let sock_path = grid.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // The frozen server: it takes every connection and says nothing.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });

    let mut spec = WorkerSpec::new(&grid, "frozen");
    spec.drain = false;
    spec.url = format!("http://127.0.0.1:{port}/grid.git");
    spec.extra = "[git]\ntimeout = 30\n".into();
    spec.env = vec![
        ("NOTIFY_SOCKET".into(), sock_path.display().to_string()),
        ("WATCHDOG_USEC".into(), "3000000".into()),
    ];
    let mut w = spawn_worker(&grid, &spec);

    // 12 s of the 30 s fetch: every ping's time.
    let started = Instant::now();
    let mut pings = vec![started];
    let mut buf = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(12) {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert!(
                !msg.contains("READY=1"),
                "the frozen server answered? {msg}"
            );
            if msg.lines().any(|l| l == "WATCHDOG=1") {
                pings.push(Instant::now());
            }
        }
    }
    pings.push(Instant::now());
    let max_gap = pings.windows(2).map(|p| p[1] - p[0]).max().unwrap();
    w.signal(Signal::SIGKILL);
    let _ = w.wait_exit(Duration::from_secs(20));
    assert!(
        max_gap < Duration::from_millis(2500),
        "a gap of {max_gap:?} between WATCHDOG=1 (interval 3 s) while git hung; {} pings\n{}",
        pings.len() - 2,
        w.log_text()
    );
    assert!(pings.len() >= 8, "{} pings", pings.len() - 2);
}
