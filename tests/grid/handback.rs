//! A claim handed to the peers stays the node's to start until its
//! requeue lands: a handback never leaves a task in between, claimed by
//! a node that no longer means to run it and out of its peers' reach.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::common::*;
use nix::sys::signal::Signal;

/// A server-side hook that refuses every push carrying a requeue, as a
/// ref that other nodes keep winning does for seconds at a time.
fn refuse_requeues(grid: &Grid) {
    let hook = grid.bare.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\n\
         while read old new ref; do\n\
           if git log --format=%B \"$old..$new\" 2>/dev/null | grep -q 'requeue '; then\n\
             echo 'this test refuses requeues' >&2; exit 1\n\
           fi\n\
         done\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_claim_handed_back_that_has_not_landed_starts_at_the_next_free_slot() {
    let grid = Grid::new();
    let mut spec = WorkerSpec::new(&grid, "holder");
    spec.drain = false;
    let mut holder = spawn_worker(&grid, &spec);
    wait_until("registered", Duration::from_secs(20), || {
        grid.files("nodes").len() == 1
    });
    // Alone, its share is the whole queue: one running, three waiting.
    let tasks: Vec<(String, String, u64)> = (0..4)
        .map(|i| (format!("held-{i}"), "sleep 3; echo ok".into(), 30))
        .collect();
    grid.submit(&tasks);
    wait_until("the share", Duration::from_secs(20), || {
        grid.files("tasks/in_progress").len() == 4
    });
    refuse_requeues(&grid);
    // An idle peer: the holder hands it what it cannot start soon, and
    // the push that would carry those requeues is refused.
    let mut spec = WorkerSpec::new(&grid, "idle");
    spec.drain = false;
    let mut idle = spawn_worker(&grid, &spec);
    wait_until("a handback", Duration::from_secs(60), || {
        holder.log_text().contains("a peer would start it sooner")
    });
    // Its first task ends; nothing else waits for the slot: the claims
    // handed back start here, one after another, and every result lands.
    wait_until("every result", Duration::from_secs(120), || {
        grid.json_files("tasks/completed").len() == 4
    });
    let log = holder.log_text();
    assert!(
        log.contains("taking back a claim handed to the peers"),
        "{log}"
    );
    let done = grid.json_files("tasks/completed");
    for i in 0..4 {
        assert!(
            done.contains_key(&format!("holder@held-{i}.json")),
            "held-{i} ran on the node that held it: {:?}",
            done.keys()
        );
    }
    assert!(grid.files("tasks/in_progress").is_empty());
    assert!(grid.queued().is_empty(), "no requeue went out");
    for w in [&mut holder, &mut idle] {
        w.signal(Signal::SIGTERM);
    }
    for w in [&mut holder, &mut idle] {
        assert!(
            w.wait_exit(Duration::from_secs(60)).success(),
            "{}",
            w.log_text()
        );
    }
}
