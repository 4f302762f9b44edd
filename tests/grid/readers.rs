//! The worker's kept `cat-file` readers (`git/batch.rs`): a node that
//! holds work keeps them between syncs, and an idle one stops them until
//! its next poll. The real binary against a real bare repository.

use std::time::Duration;

use crate::common::*;

/// The `git cat-file` processes whose parent is `pid`.
fn readers_of(pid: u32) -> Vec<u32> {
    process_cmdlines()
        .into_iter()
        .filter(|(p, cmd)| cmd.contains("cat-file") && parent_of(*p) == Some(pid))
        .map(|(p, _)| p)
        .collect()
}

/// The parent's pid, from `/proc/<pid>/stat` (after the command's
/// parenthesised name, which may hold spaces).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_busy_node_keeps_its_readers_and_stops_them_once_idle() {
    let grid = Grid::new();
    let mut spec = WorkerSpec::new(&grid, "reader-a");
    spec.drain = false;
    let mut worker = spawn_worker(&grid, &spec);
    let pid = worker.child.id();
    wait_until("registered", Duration::from_secs(60), || {
        grid.files("nodes").len() == 1
    });
    // Busy with a task: the readers stay between its syncs. Two kept
    // processes, `--batch-check` and `--batch`.
    grid.submit(&[("held".into(), "sleep 10".into(), 300)]);
    wait_until("a busy node's readers", Duration::from_secs(60), || {
        grid.files("tasks/in_progress").len() == 1 && readers_of(pid).len() == 2
    });
    // The same two a few polls (a second apart) later.
    let kept = readers_of(pid);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(readers_of(pid), kept, "kept between syncs");
    // Idle again once the result is delivered: none until its next read.
    wait_until("the result", Duration::from_secs(120), || {
        grid.files("tasks/completed").len() == 1
    });
    wait_until(
        "an idle node without readers",
        Duration::from_secs(60),
        || readers_of(pid).is_empty(),
    );
    worker.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        worker.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        worker.log_text()
    );
}
