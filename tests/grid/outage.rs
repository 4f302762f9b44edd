//! Outage (issue item 4): the remote goes away while tasks run. Results wait
//! in the outbox, survive a restart of the worker, and land once the remote
//! is back. Nothing is lost, nothing is pushed twice.

use std::time::Duration;

use crate::common::*;
use nix::sys::signal::Signal;

/// A node whose three results finished while the remote was away, stopped
/// while it still is: (the remote, the node's spec, the stopped node).
fn three_results_kept_through_an_outage(grid: &Grid) -> (GitDaemon, WorkerSpec, WorkerProc) {
    let mut daemon = GitDaemon::start(grid, free_port());
    // The tasks end when the test says so (the shell engine runs them on
    // this host), not after a sleep a loaded machine could outlast before
    // the remote goes away: then one result would land before the outage.
    let go = grid.path("go");
    let tasks: Vec<(String, String, u64)> = (0..3)
        .map(|i| {
            let script = format!(
                "while [ ! -e '{}' ]; do sleep 0.1; done; echo done-{i}",
                go.display()
            );
            (format!("slow-{i}"), script, 120)
        })
        .collect();
    grid.submit(&tasks);

    let mut spec = WorkerSpec::new(grid, "islander");
    spec.url = daemon.url();
    spec.drain = false;
    spec.extra = "concurrency = 3".into();
    let mut w = spawn_worker(grid, &spec);

    // All three claimed and running; then the remote disappears.
    wait_until("three claims", Duration::from_secs(30), || {
        grid.files("tasks/in_progress").len() == 3
    });
    daemon.stop();
    std::fs::write(&go, b"").unwrap();

    // They finish during the outage: the results are on disk, not pushed.
    wait_until(
        "three results in the outbox",
        Duration::from_secs(120),
        || w.outbox_len() == 3,
    );
    assert!(grid.files("tasks/completed").is_empty());

    // The worker is stopped while the remote is still away: it exits cleanly
    // and keeps its outbox.
    w.signal(Signal::SIGTERM);
    let status = w.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{}", w.log_text());
    assert_eq!(
        w.outbox_len(),
        3,
        "the outbox survives the stop:\n{}",
        w.log_text()
    );
    (daemon, spec, w)
}

/// The three results, each once, and nothing left claimed or queued.
fn assert_the_three_landed(grid: &Grid) {
    let completed = grid.json_files("tasks/completed");
    assert_eq!(completed.len(), 3, "{completed:?}");
    for i in 0..3 {
        let r = &completed[&format!("islander@slow-{i}.json")];
        assert_eq!(r["stdout"], format!("done-{i}\n"));
        assert_eq!(r["status"], "completed");
    }
    assert!(grid.files("tasks/in_progress").is_empty());
    assert!(grid.queued().is_empty());
    assert!(grid.files("tasks/failed").is_empty());
}

#[test]
fn results_wait_in_the_outbox_and_land_when_the_remote_returns() {
    let grid = Grid::new();
    let (mut daemon, mut spec, w) = three_results_kept_through_an_outage(&grid);

    // The remote returns; a new run of the same node delivers everything.
    daemon.restart();
    spec.drain = true;
    let mut again = spawn_worker(&grid, &spec);
    let status = again.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{}", again.log_text());
    assert_eq!(again.outbox_len(), 0);
    assert_the_three_landed(&grid);
    assert!(
        w.log_text().contains("waiting"),
        "the outage is reported in the log"
    );
}

/// Started again while the remote is still away, the node waits for it;
/// told to stop just after the remote is back, before its next try, it
/// tries once more on the way out and lands what its last run left.
#[test]
fn a_node_stopped_while_it_waits_for_the_grid_lands_what_it_holds() {
    let grid = Grid::new();
    let (mut daemon, spec, _) = three_results_kept_through_an_outage(&grid);
    let mut again = spawn_worker(&grid, &spec);
    // Its third failed try: the next is 4 s away.
    wait_until("the grid waited for", Duration::from_secs(60), || {
        again.log_text().contains("retry_in_s=4")
    });
    daemon.restart();
    again.signal(Signal::SIGTERM);
    let status = again.wait_exit(Duration::from_secs(60));
    let log = again.log_text();
    assert!(status.success(), "{log}");
    // The log file is the node's: this run's part begins at its start.
    let this_run = &log[log.rfind("starting node_id").unwrap()..];
    assert!(!this_run.contains("registered; ready"), "{log}");
    assert_eq!(again.outbox_len(), 0, "{log}");
    assert_the_three_landed(&grid);
    let record = &grid.json_files("nodes")["islander.json"];
    assert_eq!(record["status"], "stopped", "{record}");
}

#[test]
fn a_worker_cut_off_keeps_running_and_delivers_on_its_own() {
    let grid = Grid::new();
    let mut daemon = GitDaemon::start(&grid, free_port());
    grid.submit(&[("cut-1".into(), "sleep 2; echo ok".into(), 30)]);
    let mut spec = WorkerSpec::new(&grid, "stubborn");
    spec.url = daemon.url();
    // Heartbeats (and reaps) fall due during the outage.
    spec.extra = "heartbeat_interval = 1\nstale_after = 4\n".into();
    let mut w = spawn_worker(&grid, &spec);
    // Cut the grid off once the task runs: cut it off as soon as the claim
    // is on the remote and the push's answer may be lost with it, which is
    // another test (`a_claim_whose_push_answer_was_lost_is_kept`).
    wait_until("the task to start", Duration::from_secs(30), || {
        w.log_text()
            .lines()
            .any(|l| l.contains(" running") && l.contains("cut-1"))
    });
    daemon.stop();
    let cut_at = std::time::Instant::now();
    wait_until("the result in the outbox", Duration::from_secs(30), || {
        w.outbox_len() == 1
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        w.child.try_wait().unwrap().is_none(),
        "the worker rides out the outage"
    );
    let outage = cut_at.elapsed();
    daemon.restart();
    let status = w.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{}", w.log_text());
    assert_eq!(grid.files("tasks/completed").len(), 1);
    // It retried at its pull interval (1 s), not in a tight loop: a remote
    // that is down (or rate-limiting) must not be hammered.
    let tries = w.log_text().matches("sync failed").count();
    assert!(
        tries >= 1 && tries as u64 <= outage.as_secs() + 2,
        "{tries} failed syncs in {outage:?}:\n{}",
        w.log_text()
    );
    assert!(grid.files("tasks/in_progress").is_empty());
}

/// A push that lands on the remote while the worker sees an error, and the
/// remote gone before the worker can look: the claim must not be left with
/// no owner. Once the grid is back, the worker finds its commit there and
/// runs the task it claimed, as attempt 1.
#[test]
fn a_claim_whose_push_answer_was_lost_is_kept() {
    let grid = Grid::new();
    let real = real_git();
    let flag = grid.path("lose-next-push");
    let away = grid.path("grid.git.away");
    let wrapper = grid.path("git-flaky");
    write_script(
        &wrapper,
        &format!(
            "#!/bin/sh\nif [ \"$1\" = push ] && [ -e '{flag}' ]; then\n  '{real}' \"$@\" >/dev/null 2>&1\n  rm -f '{flag}'\n  mv '{bare}' '{away}'\n  echo 'fatal: the remote end hung up unexpectedly' >&2\n  exit 128\nfi\nexec '{real}' \"$@\"\n",
            flag = flag.display(),
            real = real,
            bare = grid.bare.display(),
            away = away.display(),
        ),
    );

    let mut spec = WorkerSpec::new(&grid, "unsure");
    spec.drain = false;
    spec.extra = format!("[git]\nbinary = \"{}\"\n", wrapper.display());
    let mut w = spawn_worker(&grid, &spec);
    wait_until("registration", Duration::from_secs(20), || {
        grid.files("nodes").contains_key("unsure.json")
    });
    std::fs::write(&flag, b"").unwrap();
    grid.submit(&[("lost-answer".into(), "echo ran".into(), 30)]);
    wait_until(
        "the claim's push to land and the remote to vanish",
        Duration::from_secs(20),
        || away.exists(),
    );
    std::thread::sleep(Duration::from_secs(2));
    std::fs::rename(&away, &grid.bare).unwrap();

    wait_until("the result", Duration::from_secs(30), || {
        !grid.results().is_empty()
    });
    w.signal(Signal::SIGTERM);
    assert!(
        w.wait_exit(Duration::from_secs(20)).success(),
        "{}",
        w.log_text()
    );
    let results = grid.results();
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].0, "unsure@lost-answer.json");
    assert_eq!(
        results[0].1["attempt"], 1,
        "the claim was kept, not reaped and rerun"
    );
    assert!(
        w.log_text().contains("the uncertain push had landed"),
        "{}",
        w.log_text()
    );
    assert!(grid.files("tasks/in_progress").is_empty());
}

/// A node `relay` that reaches the grid through `proxy`, once it has run
/// four tasks it timed as short (it then claims ahead, a batch at once),
/// and how many those were (their results are on `main`).
fn node_warmed_up(
    grid: &Grid,
    proxy: &crate::common::delay_proxy::DelayProxy,
) -> (WorkerProc, usize) {
    let warm: Vec<(String, String, u64)> = (0..4)
        .map(|i| (format!("warm-{i}"), "true".to_owned(), 30))
        .collect();
    grid.submit(&warm);
    let mut spec = WorkerSpec::new(grid, "relay");
    spec.url = proxy.url("grid.git");
    spec.drain = false;
    let w = spawn_worker(grid, &spec);
    wait_until("the short tasks done", Duration::from_secs(60), || {
        grid.files("tasks/completed").len() == warm.len()
    });
    (w, warm.len())
}

/// A remote that hangs (it takes connections and answers nothing) while a
/// node holds claims it has not started: the loop waits inside its sync,
/// up to git's timeout (120 s), and each run's thread starts the next
/// claim itself. Before, the first run's end left the slot idle until the
/// sync returned: no task ran while the remote hung.
#[test]
fn claims_held_run_one_after_another_while_the_remote_hangs() {
    let grid = Grid::new();
    let daemon = GitDaemon::start(&grid, free_port());
    let proxy = crate::common::delay_proxy::DelayProxy::start(daemon.port, Duration::ZERO);
    // Every task waits for `go`, then marks that it ran: which one the
    // node starts first does not matter, and none ends before the remote
    // hangs.
    let go = grid.path("go");
    let ran = grid.path("ran");
    std::fs::create_dir(&ran).unwrap();
    let ids: Vec<String> = (0..5).map(|i| format!("held-{i}")).collect();
    let tasks: Vec<(String, String, u64)> = ids
        .iter()
        .map(|id| {
            let script = format!(
                "while [ ! -e '{}' ]; do sleep 0.1; done; touch '{}/{id}'",
                go.display(),
                ran.display()
            );
            (id.clone(), script, 120)
        })
        .collect();
    let (mut w, warm) = node_warmed_up(&grid, &proxy);
    grid.submit(&tasks);
    wait_until("claims held, one running", Duration::from_secs(60), || {
        grid.files("tasks/in_progress").len() >= 2
            && w.log_text()
                .lines()
                .any(|l| l.contains("running") && l.contains("task_id=held-"))
    });
    let held = grid.files("tasks/in_progress").len();

    // The node's next sync connects and waits; then the running task ends.
    proxy.hold(true);
    wait_until(
        "the node to wait on the hung remote",
        Duration::from_secs(60),
        || proxy.held() > 0,
    );
    std::fs::write(&go, b"").unwrap();
    wait_until(
        "every held claim run while the remote hangs",
        Duration::from_secs(60),
        || std::fs::read_dir(&ran).unwrap().count() >= held,
    );
    assert_eq!(
        grid.files("tasks/completed").len(),
        warm,
        "nothing landed while the remote hung"
    );

    // Once it answers, every result lands, each once.
    proxy.hold(false);
    wait_until("every result", Duration::from_secs(120), || {
        grid.files("tasks/completed").len() == warm + ids.len()
    });
    w.signal(Signal::SIGTERM);
    let status = w.wait_exit(Duration::from_secs(120));
    assert!(status.success(), "{}", w.log_text());
    let landed = grid.files("tasks/completed");
    for id in &ids {
        assert_eq!(
            landed
                .keys()
                .filter(|f| f.ends_with(&format!("@{id}.json")))
                .count(),
            1,
            "{id} in {:?}",
            landed.keys()
        );
    }
    assert!(grid.files("tasks/in_progress").is_empty());
}

/// The relay's start is blind: a task's thread starts the next claim while
/// the loop's sync is still out, and that sync may bring higher work. Here
/// the node's look hangs on the remote; meanwhile a task of priority 90 is
/// pushed by hand to the inbox (`tasks/queue/`) and the running low task
/// ends, so its thread starts the next low claim. When the look returns it
/// has read the inbox and claimed the urgent task, and the relayed start
/// is taken back for it, as a start at a free slot just before a look
/// would be. Before, the look read only the lanes, and the low task (which
/// here never ends by itself) kept the slot: the urgent task waited.
#[test]
fn a_start_the_relay_made_inside_a_sync_is_taken_back_for_the_higher_work_it_brought() {
    let grid = Grid::new();
    let daemon = GitDaemon::start(&grid, free_port());
    let proxy = crate::common::delay_proxy::DelayProxy::start(daemon.port, Duration::ZERO);
    // Each task marks its start, and a low one ends only when the test
    // opens its gate.
    let (started, gates) = (grid.path("started"), grid.path("gates"));
    std::fs::create_dir(&started).unwrap();
    std::fs::create_dir(&gates).unwrap();
    let task = |id: &str, script: String, priority: u8| {
        let body = serde_json::json!({"task_id": id, "script": script, "timeout_seconds": 120, "priority": priority});
        (
            format!("tasks/queue/{id}.json"),
            body.to_string().into_bytes(),
        )
    };
    let low: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| {
            let id = format!("low-{i}");
            let script = format!(
                "touch '{s}/{id}'; while [ ! -e '{g}/{id}' ]; do sleep 0.1; done",
                s = started.display(),
                g = gates.display()
            );
            task(&id, script, 10)
        })
        .collect();
    let starts = || -> Vec<String> {
        std::fs::read_dir(&started)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let (mut w, warm) = node_warmed_up(&grid, &proxy);
    grid.commit_files(&low, "submit low tasks");
    wait_until("claims held, one running", Duration::from_secs(60), || {
        grid.files("tasks/in_progress").len() >= 2 && starts().len() == 1
    });
    let first = starts().remove(0);

    // The node's next look hangs; the urgent task is queued meanwhile, and
    // the running task ends: its thread starts the next claim.
    proxy.hold(true);
    wait_until(
        "the node to wait on the hung remote",
        Duration::from_secs(60),
        || proxy.held() > 0,
    );
    let urgent = format!("touch '{}/urgent'", started.display());
    grid.commit_files(&[task("urgent", urgent, 90)], "submit urgent");
    std::fs::write(gates.join(&first), b"").unwrap();
    wait_until(
        "a low claim started by the relay",
        Duration::from_secs(60),
        || starts().len() == 2,
    );
    let relayed = starts().into_iter().find(|id| *id != first).unwrap();

    proxy.hold(false);
    wait_until(
        "the urgent task started while the relayed one's gate is shut",
        Duration::from_secs(60),
        || starts().contains(&"urgent".to_owned()),
    );
    let log = w.log_text();
    assert!(
        log.contains(&format!(
            "taking back the start: higher work is claimed for this slot task_id={relayed}"
        )),
        "{log}"
    );

    // Every gate open: everything ends, each task once.
    for i in 0..5 {
        std::fs::write(gates.join(format!("low-{i}")), b"").unwrap();
    }
    wait_until("every result", Duration::from_secs(120), || {
        grid.results().len() == warm + 6
    });
    w.signal(Signal::SIGTERM);
    assert!(
        w.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        w.log_text()
    );
    let mut ids: Vec<String> = grid
        .results()
        .iter()
        .map(|(_, r)| r["task_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), warm + 6, "each task once: {ids:?}");
}

/// A node back from an outage (one of its syncs failed) judges its peers
/// by what they could do since: an answer, a deadline and a heartbeat that passed while the grid
/// was away from it (and so, most likely, from them) count only once it
/// has reached the grid for as long as each allows. Before, the first sync
/// back reaped every claim made for a peer just before an outage of a
/// minute, and marked the peer as taking none; past a claim's deadline or
/// `stale_after`, every claim of every peer, the tasks they ran through
/// the outage included.
#[test]
fn a_reap_counts_a_peers_silence_from_when_the_grid_came_back() {
    use crate::common::plan::{PlainNode, commit_at, plan_at};
    use dgrid_worker::grid::{Id, NodeRecord, NodeStatus};
    use dgrid_worker::service::sync::SyncRequest;

    let grid = Grid::new();
    let now = dgrid_worker::time::now();
    let at = |secs: i64| dgrid_worker::time::format(now + chrono::Duration::seconds(secs));
    let rec = |node: &str, heard: i64| {
        let r = NodeRecord {
            takes_assigned: true,
            ..NodeRecord::new(Id::parse(node).unwrap(), NodeStatus::Busy, at(heard))
        };
        (format!("nodes/{node}.json"), r.to_bytes())
    };
    let claim = |task: &str, node: &str, claimed: i64, deadline: i64, answer_by: Option<i64>| {
        let mut c = serde_json::json!({
            "task_id": task, "script": "true", "timeout_seconds": 30,
            "claim": {"node_id": node, "claimed_at": at(claimed), "deadline": at(deadline), "attempt": 1},
        });
        if let Some(by) = answer_by {
            c["claim"]["assigned_by"] = "elsewhere".into();
            c["claim"]["answer_by"] = at(by).into();
        }
        (
            format!("tasks/in_progress/{task}.json"),
            serde_json::to_vec_pretty(&c).unwrap(),
        )
    };
    // Two hours away (`stale_after` is one): each peer last wrote when the
    // grid went.
    let gone = -2 * 3600;
    grid.commit_files(
        &[
            // Made for `answers` just before: answer_by a minute later.
            rec("answers", gone),
            claim("made-for", "answers", gone, 3600, Some(gone + 60)),
            // Its task ended in the outage: the deadline passed.
            rec("finished", gone),
            claim("ran-out", "finished", gone, gone + 330, None),
            // A long task, its deadline to come: only the heartbeat aged.
            rec("long", gone),
            claim("long-run", "long", gone, 3600, None),
        ],
        "three busy peers, as the outage left them",
    );
    let back = PlainNode::new("back");
    // Its reap, back (one of its syncs failed) `reached` seconds ago.
    let back_for = |reached: Option<i64>| SyncRequest {
        reap: true,
        now,
        reached_since: reached.map(|s| now - chrono::Duration::seconds(s)),
        been_away: true,
        ..back.request(0)
    };
    let reaped_after = |reached: Option<i64>| -> Vec<String> {
        let mut r: Vec<String> = plan_at(&grid.url(), &back_for(reached))
            .reaped
            .into_iter()
            .map(|(task, _)| task)
            .collect();
        r.sort();
        r
    };
    let none: Vec<String> = Vec::new();
    // A node none of whose syncs failed knows of no outage: the clock.
    let by_the_clock = plan_at(
        &grid.url(),
        &SyncRequest {
            been_away: false,
            ..back_for(None)
        },
    );
    assert_eq!(by_the_clock.reaped.len(), 3, "{:?}", by_the_clock.reaped);
    assert_eq!(reaped_after(None), none, "the first sync back");
    assert_eq!(reaped_after(Some(5)), none, "back for 5 s");
    assert_eq!(
        reaped_after(Some(61)),
        ["made-for"],
        "back past the answer's minute"
    );
    assert_eq!(
        reaped_after(Some(301)),
        ["made-for", "ran-out"],
        "back past the result's grace (5 min)"
    );
    // Back past `stale_after`: every one, as the clock alone would judge.
    let landed = commit_at(&grid.url(), &back_for(Some(3601)));
    let mut all: Vec<&str> = landed.reaped.iter().map(|(t, _)| t.as_str()).collect();
    all.sort();
    assert_eq!(all, ["long-run", "made-for", "ran-out"]);
    assert_eq!(landed.silent.len(), 1, "{:?}", landed.silent);
    assert!(
        grid.files("tasks/in_progress").keys().all(|f| f == ".keep"),
        "nothing left claimed"
    );
}

/// The same rule in a running worker, through a real outage: a peer's
/// claim whose deadline passes while the grid is away is left alone by the
/// worker's first sync back (a reap falls due during the outage, so that
/// sync reaps), and reaped only once the worker has reached the grid for
/// its `claim_grace`; it then runs the task itself, as attempt 2.
#[test]
fn a_worker_back_from_an_outage_gives_a_peers_passed_deadline_its_grace() {
    use dgrid_worker::grid::{Id, NodeRecord, NodeStatus};
    let grid = Grid::new();
    let mut daemon = GitDaemon::start(&grid, free_port());
    let mut spec = WorkerSpec::new(&grid, "back");
    spec.url = daemon.url();
    spec.drain = false;
    // A reap at most every 10 s (half `stale_after`); a heartbeat each
    // second, so that the record says when a sync lands.
    spec.extra = "heartbeat_interval = 1\nstale_after = 20\nclaim_grace = 20\n".into();
    let mut w = spawn_worker(&grid, &spec);
    wait_until("registered", Duration::from_secs(30), || {
        grid.files("nodes").contains_key("back.json")
    });

    // A peer at work on a task whose deadline is 3 s off.
    let now = dgrid_worker::time::now();
    let at = |secs: i64| dgrid_worker::time::format(now + chrono::Duration::seconds(secs));
    let peer = NodeRecord::new(Id::parse("peer").unwrap(), NodeStatus::Busy, at(0));
    let claim = serde_json::json!({
        "task_id": "peer-task", "script": "echo rerun", "timeout_seconds": 2,
        "claim": {"node_id": "peer", "claimed_at": at(0), "deadline": at(3), "attempt": 1},
    });
    grid.commit_files(
        &[
            ("nodes/peer.json".into(), peer.to_bytes()),
            (
                "tasks/in_progress/peer-task.json".into(),
                claim.to_string().into_bytes(),
            ),
        ],
        "a peer at work",
    );
    daemon.stop();
    let away = std::time::Instant::now();
    // Away past the deadline and past the reap's 10 s, so that the first
    // sync back reaps; the worker tried and failed meanwhile.
    wait_until("a failed sync", Duration::from_secs(60), || {
        w.log_text().contains("sync failed")
    });
    while away.elapsed() < Duration::from_secs(11) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let beat = |g: &Grid| -> String {
        let r: serde_json::Value = serde_json::from_slice(&g.files("nodes")["back.json"]).unwrap();
        r["last_heartbeat"].as_str().unwrap_or_default().to_owned()
    };
    let before = beat(&grid);
    daemon.restart();
    wait_until("a sync back", Duration::from_secs(60), || {
        beat(&grid) != before
    });
    assert!(
        grid.files("tasks/in_progress")
            .contains_key("peer-task.json"),
        "the first sync back reaped the peer's claim:\n{}",
        w.log_text()
    );

    // Once in reach for its grace, the claim is the orphan it is.
    wait_until("the task run again", Duration::from_secs(90), || {
        grid.files("tasks/completed")
            .contains_key("back@peer-task.json")
    });
    let done = grid.json_files("tasks/completed");
    assert_eq!(done["back@peer-task.json"]["attempt"], 2);
    w.signal(Signal::SIGTERM);
    assert!(w.wait_exit(Duration::from_secs(60)).success());
}

/// A tmpfs of `size` mounted at `dir` for the life of the guard.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: std::path::PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .expect("mount (the test runs as root, as CI does)");
        assert!(out.status.success(), "mount: {out:?}");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The state directory fills up while a task runs: its result cannot be
/// written, nor pushed (git cannot write there either). Stopped then, the
/// node says the result is lost and exits with a failure, not "the outbox
/// keeps it" and 0 (a tester's full disk); its claim stays on the grid,
/// and started again with room, the node runs the task again. Nothing of
/// the task is lost.
#[test]
fn a_result_the_full_state_directory_cannot_take_is_said_lost_and_the_task_runs_again() {
    let grid = Grid::new();
    let go = grid.path("go");
    grid.submit(&[(
        "t".into(),
        format!(
            "while [ ! -e '{}' ]; do sleep 0.05; done; echo ran",
            go.display()
        ),
        120,
    )]);
    let state = grid.path("state-full");
    let _tmpfs = Tmpfs::mount(state.clone(), "16m");
    let mut spec = WorkerSpec::new(&grid, "full");
    spec.drain = false;
    let mut w = spawn_worker(&grid, &spec);
    wait_until("the task runs", Duration::from_secs(60), || {
        w.log_text().contains("running task_id=t")
    });
    // Every byte left taken.
    let mut fill = std::fs::File::create(state.join("fill")).unwrap();
    let chunk = vec![0u8; 1 << 16];
    while std::io::Write::write_all(&mut fill, &chunk).is_ok() {}
    drop(fill);
    std::fs::write(&go, b"").unwrap();
    wait_until(
        "the result cannot be written",
        Duration::from_secs(60),
        || w.log_text().contains("cannot write the outbox"),
    );
    w.signal(Signal::SIGTERM);
    let status = w.wait_exit(Duration::from_secs(60));
    let log = w.log_text();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("results held only in memory are lost"),
        "{log}"
    );
    assert!(grid.files("tasks/in_progress").contains_key("t.json"));
    // Room again: the node takes its claim back and runs the task.
    std::fs::remove_file(state.join("fill")).unwrap();
    let mut w = spawn_worker(&grid, &spec);
    wait_until("the task ran again", Duration::from_secs(60), || {
        grid.files("tasks/completed").len() == 1
    });
    stop_cleanly(std::slice::from_mut(&mut w));
}
