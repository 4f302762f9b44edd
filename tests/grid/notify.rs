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
