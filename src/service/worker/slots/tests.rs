//! The slots' bookkeeping, on claims built from task files.

use super::*;
/// A claim of task `id` whose file has `fields` (JSON, each with a leading
/// comma) beside its id and script.
use crate::grid::claim::claimed_for_test as claimed_with;

fn claimed(id: &str, timeout: u64) -> ClaimedTask {
    claimed_with(id, &format!(r#","timeout_seconds":{timeout}"#))
}

/// A claim of task `id` at `priority`.
fn at_level(id: &str, priority: u8) -> ClaimedTask {
    claimed_with(
        id,
        &format!(r#","timeout_seconds":5,"priority":{priority}"#),
    )
}

fn run(slots: &mut Slots, c: ClaimedTask, started: Instant) {
    slots.running.insert(
        c.task.task_id.clone(),
        Running {
            claimed: c,
            cancel: Arc::new(AtomicBool::new(false)),
            started,
            ended: Ended::default(),
            started_at: time::now(),
            inputs: None,
            taken_back: false,
            gone: false,
        },
    );
}

impl Slots {
    fn room_at(&self, pace: &Pace, claim_ahead: u32, ahead_ok: bool) -> usize {
        self.room(pace, claim_ahead, ahead_ok, Instant::now())
    }
}

#[test]
fn room_is_free_slots_plus_what_pace_holds_ahead() {
    let mut pace = Pace::default();
    let mut s = Slots::new(2);
    assert_eq!(s.room_at(&pace, 128, false), 2, "just the slots");
    assert_eq!(s.room_at(&pace, 128, true), 2, "nothing timed: none ahead");
    pace.sync_took(Duration::from_millis(100));
    pace.task_took(Duration::from_millis(100));
    assert_eq!(s.room_at(&pace, 128, false), 2, "none ahead");
    assert_eq!(s.room_at(&pace, 128, true), 2 + 8, "4 syncs of work ahead");
    let now = Instant::now();
    run(&mut s, claimed("a", 30), now);
    assert_eq!(s.room_at(&pace, 128, true), 1 + 8);
    assert_eq!(s.room_at(&pace, 128, false), 1);
    assert_eq!(s.free(), 1);
    s.waiting.push_back(claimed("b", 30));
    assert_eq!(s.free(), 0);
    assert_eq!(s.room_at(&pace, 0, false), 0, "claim_ahead 0");
    assert_eq!(s.held().len(), 2);
}

#[test]
fn while_peers_idle_a_node_takes_only_what_it_starts_before_they_would() {
    let now = Instant::now();
    let s = Slots::new(1);
    let second = Duration::from_secs(1);
    let mut pace = Pace::default();
    assert_eq!(
        s.room_before_peers_look(&pace, second, 128, now),
        0,
        "nothing timed"
    );
    pace.sync_took(Duration::from_millis(100));
    pace.task_took(Duration::from_millis(10));
    // Half a second of 10 ms tasks: fifty, within claim_ahead.
    let short = s.room_before_peers_look(&pace, second, 128, now);
    assert!((40..=60).contains(&short), "{short}");
    assert_eq!(s.room_before_peers_look(&pace, second, 8, now), 9);
    let mut long = Pace::default();
    long.sync_took(Duration::from_millis(100));
    long.task_took(Duration::from_secs(5));
    assert_eq!(
        s.room_before_peers_look(&long, second, 128, now),
        1,
        "the free slot only"
    );
}

#[test]
fn a_claim_made_now_may_wait_for_the_running_and_the_waiting() {
    let now = Instant::now();
    let mut s = Slots::new(1);
    assert_eq!(s.longest_wait(now), Duration::ZERO);
    run(&mut s, claimed("a", 30), now);
    s.waiting.push_back(claimed("b", 20));
    let later = now + Duration::from_secs(10);
    assert_eq!(s.longest_wait(later), Duration::from_secs(20 + 20));
}

#[test]
fn the_lowest_level_held_counts_running_and_waiting_tasks() {
    let now = Instant::now();
    let mut s = Slots::new(1);
    assert_eq!(s.lowest_held_level(time::now()), None, "holds nothing");
    run(&mut s, at_level("r", 40), now);
    assert_eq!(s.lowest_held_level(time::now()), Some(40));
    s.waiting.push_back(at_level("w", 90));
    assert_eq!(
        s.lowest_held_level(time::now()),
        Some(40),
        "the running one"
    );
    s.waiting.push_back(at_level("v", 10));
    assert_eq!(s.lowest_held_level(time::now()), Some(10), "a waiting one");
}

#[test]
fn waiting_claims_start_only_into_a_free_slot() {
    let now = Instant::now();
    let mut s = Slots::new(1);
    s.waiting.push_back(claimed("a", 30));
    s.waiting.push_back(claimed("b", 30));
    s.waiting.push_back(claimed("c", 30));
    let first = s.next_to_start().unwrap();
    run(&mut s, first, now);
    assert!(s.next_to_start().is_none());
    let back = s.take_last_waiting(1);
    assert_eq!(back[0].task.task_id.as_str(), "c");
    assert_eq!(s.waiting.len(), 1);
    s.waiting.push_back(claimed("d", 30));
    s.waiting.push_back(claimed("e", 30));
    let back = s.take_waiting(&[0, 2]);
    let ids: Vec<&str> = back.iter().map(|c| c.task.task_id.as_str()).collect();
    assert_eq!(ids, ["b", "e"]);
    assert_eq!(s.waiting[0].task.task_id.as_str(), "d");
}

#[test]
fn a_start_below_higher_work_is_taken_back_and_frees_its_slot() {
    let now = Instant::now();
    let mut s = Slots::new(2);
    run(&mut s, at_level("low", 10), now);
    run(&mut s, at_level("mid", 50), now);
    run(&mut s, at_level("older", 10), now);
    let id = |s: &str| Id::parse(s).unwrap();
    run(&mut s, at_level("quick", 10), now);
    s.running[&id("quick")].ended.set(now).unwrap();
    s.waiting.push_back(at_level("urgent", 90));
    // Only what the slot started just now, and not a run that ended;
    // one higher claim takes back one run.
    let started = [id("quick"), id("low"), id("mid")];
    let back = s.take_back_below(&started, time::now());
    assert_eq!(back, [(id("low"), 10)]);
    assert!(s.running[&id("low")].taken_back);
    assert!(s.running[&id("low")].cancel.load(Ordering::SeqCst));
    assert!(!s.running[&id("mid")].cancel.load(Ordering::SeqCst));
    assert!(
        !s.running[&id("older")].taken_back,
        "not started at the slot"
    );
    assert_eq!(s.occupied(), 3, "a run taken back holds no slot");
    assert!(s.take_back_below(&started, time::now()).is_empty(), "once");
    // Nothing above a run: nothing taken back.
    s.waiting.clear();
    s.waiting.push_back(at_level("same", 50));
    assert!(s.take_back_below(&[id("mid")], time::now()).is_empty());
}

#[test]
fn a_start_taken_back_waits_first_of_its_level_not_last() {
    let mut s = Slots::new(1);
    for (id, p) in [("al-12", 50), ("urgent", 90), ("al-13", 50)] {
        s.waiting.push_back(at_level(id, p));
    }
    s.wait_again(at_level("al-11", 50), time::now());
    let order: Vec<&str> = s.waiting.iter().map(|c| c.task.task_id.as_str()).collect();
    assert_eq!(order, ["urgent", "al-11", "al-12", "al-13"]);
}

#[test]
fn a_start_is_taken_back_once_not_again() {
    let now = Instant::now();
    let id = |s: &str| Id::parse(s).unwrap();
    let mut s = Slots::new(1);
    run(&mut s, at_level("low", 10), now);
    s.waiting.push_back(at_level("urgent", 90));
    assert_eq!(
        s.take_back_below(&[id("low")], time::now()),
        [(id("low"), 10)]
    );
    // Its run ends; it waits, and starts again after the urgent one.
    let low = s.running.remove(&id("low")).unwrap().claimed;
    s.waiting.pop_front();
    s.wait_again(low, time::now());
    let low = s.waiting.pop_front().unwrap();
    run(&mut s, low, now);
    // More higher work: this start runs on.
    s.waiting.push_back(at_level("urgent-2", 90));
    assert!(s.take_back_below(&[id("low")], time::now()).is_empty());
    assert!(!s.running[&id("low")].taken_back);
}

#[test]
fn claims_wait_highest_first_in_the_order_they_came() {
    let mut s = Slots::new(1);
    for (id, p) in [("a", 10), ("b", 90), ("c", 10), ("d", 50), ("e", 90)] {
        s.waiting.push_back(at_level(id, p));
    }
    s.sort_waiting(time::now());
    let ids: Vec<&str> = s.waiting.iter().map(|c| c.task.task_id.as_str()).collect();
    assert_eq!(ids, ["b", "e", "d", "a", "c"]);
}

#[test]
fn the_running_tasks_say_how_long_they_have_run() {
    let now = Instant::now();
    let mut s = Slots::new(2);
    assert!(s.running_for(now).is_empty());
    run(&mut s, claimed("a", 30), now);
    let later = now + Duration::from_secs(3);
    assert_eq!(s.running_for(later), vec![Duration::from_secs(3)]);
    // Its run ended while the loop was in a sync: not a long task.
    s.running.values().next().unwrap().ended.set(now).unwrap();
    assert!(s.running_for(later).is_empty());
}

#[test]
fn a_run_becomes_a_result_unless_it_never_ran() {
    let c = claimed("t", 7);
    let node = Id::parse("n1").unwrap();
    // A run of 5 ms that began an hour ago, reported only now.
    let began = time::now() - chrono::Duration::hours(1);
    let report = |outcome| RunReport {
        outcome,
        stdout: "out".into(),
        stderr: String::new(),
        truncated: false,
        started_at: began,
        duration: Duration::from_millis(5),
    };
    let ok = result_of(&report(Outcome::Exited(0)), &c, &node).unwrap();
    assert_eq!(
        (ok.status, ok.exit_code),
        (ResultStatus::Completed, Some(0))
    );
    // Its time is when the run ended, not when its report was taken.
    assert_eq!(
        ok.timestamp,
        time::format(began + chrono::Duration::milliseconds(5))
    );
    assert_eq!(ok.stdout, "out");
    let failed = result_of(&report(Outcome::Exited(3)), &c, &node).unwrap();
    assert_eq!(failed.status, ResultStatus::Failed);
    let late = result_of(&report(Outcome::TimedOut), &c, &node).unwrap();
    assert_eq!(late.status, ResultStatus::Timeout);
    assert!(late.error.unwrap().contains("7 s"));
    assert!(result_of(&report(Outcome::Cancelled), &c, &node).is_none());
    assert!(result_of(&report(Outcome::EngineFailed("x".into())), &c, &node).is_none());
}

#[test]
fn a_run_that_ended_counts_until_the_loop_takes_its_event() {
    let now = Instant::now();
    let mut s = Slots::new(2);
    assert!(!s.ended_untaken());
    run(&mut s, at_level("a", 50), now);
    run(&mut s, at_level("b", 50), now);
    assert!(!s.ended_untaken(), "both still running");
    let id = Id::parse("b").unwrap();
    s.running[&id].ended.set(now).unwrap();
    assert!(s.ended_untaken(), "b ended, its event not taken");
    // Taking the event removes the run (`Worker::finished`).
    s.running.remove(&id);
    assert!(!s.ended_untaken());
}
