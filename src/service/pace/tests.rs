//! The pace rules, against measured times.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn none_ahead_until_measured() {
    let mut p = Pace::default();
    assert_eq!(p.ahead(1, 32), 0);
    p.sync_took(ms(70));
    assert_eq!(p.ahead(1, 32), 0);
    p.task_took(ms(25));
    assert_eq!(
        p.ahead(1, 32),
        12,
        "4 syncs of 70 ms cover 11.2 tasks of 25 ms"
    );
    let mut quick = Pace::default();
    quick.sync_took(ms(70));
    quick.task_took(ms(1));
    assert_eq!(quick.ahead(1, 32), 32, "capped");
    assert_eq!(p.ahead(1, 0), 0, "0 turns claiming ahead off");
}

#[test]
fn long_tasks_get_one_ahead_short_ones_a_sync_worth() {
    let mut p = Pace::default();
    p.sync_took(ms(100));
    p.task_took(Duration::from_secs(60));
    assert_eq!(p.ahead(1, 32), 1);
    assert_eq!(p.ahead(8, 32), 1);
    let mut p = Pace::default();
    p.sync_took(ms(100));
    p.task_took(ms(120));
    assert_eq!(p.ahead(1, 32), 4);
    assert_eq!(p.ahead(2, 32), 7, "two slots run twice as many in one sync");
    p.task_took(Duration::ZERO);
    assert!(p.ahead(1, 32) <= 32);
}

#[test]
fn a_long_running_task_shrinks_what_is_held_ahead_now() {
    let mut p = Pace::default();
    p.sync_took(ms(100));
    p.task_took(ms(2));
    assert_eq!(p.ahead_now(Duration::ZERO, 1, 128), 128, "short tasks");
    assert_eq!(p.ahead_now(ms(2), 1, 128), 128);
    assert_eq!(
        p.ahead_now(Duration::from_secs(2), 1, 128),
        1,
        "a long one runs"
    );
    assert_eq!(Pace::default().ahead_now(ms(5), 1, 128), 0, "nothing timed");
}

#[test]
fn a_round_is_a_committing_sync_without_the_rounds_it_lost() {
    let mut p = Pace::default();
    assert_eq!(p.round_secs(), None);
    p.commit_took(ms(600), 3);
    assert!((p.round_secs().unwrap() - 0.2).abs() < 1e-9);
    p.commit_took(ms(100), 0);
    assert!(
        (p.round_secs().unwrap() - 0.175).abs() < 1e-9,
        "zero rounds counts as one"
    );
}

#[test]
fn a_last_delivery_defers_to_peers_only_behind_a_far_forge() {
    let secs = Duration::from_secs;
    // Nothing timed, or the grid on this host: push at once.
    assert_eq!(Pace::default().defer_delivery(secs(10)), None);
    let mut near = Pace::default();
    near.sync_took(ms(80));
    near.commit_took(ms(150), 0);
    assert_eq!(near.defer_delivery(secs(10)), None);
    // A round of 0.8 s: a look each sync, four at most.
    let mut far = Pace::default();
    far.sync_took(ms(400));
    far.commit_took(ms(800), 0);
    assert_eq!(far.defer_delivery(secs(10)), Some((ms(800), ms(3200))));
    // Never past how long a result may wait at all.
    assert_eq!(far.defer_delivery(secs(2)), Some((ms(800), secs(2))));
}

#[test]
fn one_slow_sample_moves_the_estimate_a_quarter() {
    let mut p = Pace::default();
    p.sync_took(ms(100));
    p.task_took(ms(45));
    assert_eq!(p.ahead(1, 100), 9);
    p.sync_took(ms(500));
    assert_eq!(p.ahead(1, 100), 18);
}

#[test]
fn a_look_at_every_free_slot_only_where_it_costs_little() {
    let mut p = Pace::default();
    assert!(!p.look_at_free_slots(), "nothing timed");
    p.sync_took(ms(100));
    p.task_took(ms(150));
    assert!(!p.look_at_free_slots(), "half a sync is a third of a task");
    p.task_took(Duration::from_secs(2));
    assert!(p.look_at_free_slots(), "tasks of seconds");
    assert_eq!(p.peek_estimate(), ms(50), "half a sync until timed");
    p.peek_took(ms(600));
    assert!(!p.look_at_free_slots(), "a far host: a look costs too much");
    let mut zero = Pace::default();
    zero.sync_took(ms(100));
    zero.task_took(ms(1));
    assert!(!zero.look_at_free_slots(), "zero-length tasks");
}

#[test]
fn a_start_is_taken_back_within_a_look_and_a_sync_at_most_half_a_task() {
    let mut p = Pace::default();
    p.sync_took(ms(100));
    assert_eq!(p.take_back_window(), None, "no task timed");
    p.task_took(Duration::from_secs(2));
    p.peek_took(ms(40));
    assert_eq!(p.take_back_window(), Some(ms(140)), "a look and a sync");
    let mut short = Pace::default();
    short.sync_took(ms(100));
    short.peek_took(ms(40));
    short.task_took(ms(200));
    assert_eq!(short.take_back_window(), Some(ms(100)), "half a task");
}

#[test]
fn a_look_ahead_of_a_free_slot_ends_before_it_where_it_costs_little_enough() {
    let frees = std::time::Instant::now() + Duration::from_secs(10);
    let mut p = Pace::default();
    assert_eq!(p.look_ahead_of(frees), None, "nothing timed");
    p.sync_took(ms(100));
    p.peek_took(ms(60));
    p.task_took(ms(100));
    assert_eq!(
        p.look_ahead_of(frees),
        None,
        "a look per task costs too much"
    );
    p.task_took(ms(300));
    p.task_took(ms(300));
    p.task_took(ms(300));
    assert!(!p.look_at_free_slots(), "a look at the slot would cost it");
    let at = p
        .look_ahead_of(frees)
        .expect("ahead of it costs the slot nothing");
    let before = (frees - at).as_secs_f64();
    assert!(
        (before - 0.09).abs() < 1e-6,
        "a look and half a look before: {before}"
    );
}

#[test]
fn what_starts_soon_follows_the_running_task() {
    let s = Duration::from_secs_f64;
    let mut p = Pace::default();
    assert_eq!(
        p.startable_within(s(0.5), 1, &[s(0.1)]),
        1,
        "nothing timed: it may end now"
    );
    assert_eq!(p.startable_within(s(0.5), 1, &[s(0.6)]), 0, "as long again");
    assert_eq!(p.startable_within(s(0.5), 2, &[s(0.6)]), 1, "a free slot");
    p.task_took(s(1.0));
    assert_eq!(p.startable_within(s(0.5), 1, &[s(0.2)]), 0, "ends in 0.8 s");
    assert_eq!(p.startable_within(s(0.5), 1, &[s(0.7)]), 1, "ends in 0.3 s");
    assert_eq!(p.startable_within(s(2.5), 1, &[s(0.7)]), 3, "then two more");
    assert_eq!(
        p.startable_within(s(2.5), 1, &[s(1.2)]),
        2,
        "a task longer than the average: it runs as long again, the next one as long"
    );
    assert_eq!(
        p.startable_within(s(0.5), 1, &[s(3.0)]),
        0,
        "a long one runs on"
    );
    let mut quick = Pace::default();
    quick.task_took(Duration::ZERO);
    assert_eq!(
        quick.startable_within(s(0.5), 1, &[Duration::ZERO]),
        500,
        "short tasks: many"
    );
    assert_eq!(
        quick.startable_within(s(1.0), 1, &[s(0.4)]),
        2,
        "short tasks measured, a long one running: few"
    );
}

#[test]
fn starts_follow_the_slots_as_they_free() {
    let s = Duration::from_secs_f64;
    let mut p = Pace::default();
    assert_eq!(p.starts(1, &[], 0), vec![0.0], "idle: dry now");
    assert_eq!(
        p.starts(1, &[s(0.5)], 2),
        vec![0.5, f64::INFINITY, f64::INFINITY],
        "nothing timed: the running task runs as long again, then never"
    );
    p.task_took(s(1.0));
    assert_eq!(p.starts(2, &[s(0.25)], 3), vec![0.0, 0.75, 1.0, 1.75]);
    assert_eq!(
        p.starts(1, &[s(3.0)], 2),
        vec![3.0, 6.0, 9.0],
        "behind a long task, the next ones as long"
    );
    assert_eq!(
        p.starts(2, &[s(3.0), s(0.25)], 2),
        vec![0.75, 3.0, 3.75],
        "a short task beside a long one ends by the average"
    );
}

#[test]
fn results_ride_with_the_next_claim_but_not_for_long() {
    let o = Flush {
        pending: 3,
        delay: MAX_RESULT_DELAY,
        ..Flush::default()
    };
    assert!(
        !flush_results(Flush {
            pending: 0,
            stopping: true,
            ..o
        }),
        "nothing to push"
    );
    assert!(flush_results(o), "batch done, nothing runs");
    assert!(
        !flush_results(Flush {
            waiting: 5,
            oldest: ms(100),
            ..o
        }),
        "the batch runs on"
    );
    assert!(
        !flush_results(Flush { running: 1, ..o }),
        "the queue is empty: wait for the last task of the batch"
    );
    assert!(
        flush_results(Flush {
            running: 1,
            claiming: true,
            ..o
        }),
        "the next claim is due: ride with it"
    );
    assert!(
        flush_results(Flush {
            waiting: 5,
            oldest: MAX_RESULT_DELAY,
            ..o
        }),
        "waited enough"
    );
    assert!(
        flush_results(Flush {
            waiting: 5,
            stopping: true,
            ..o
        }),
        "stopping"
    );
    assert!(
        flush_results(Flush {
            waiting: 5,
            giving_back: true,
            ..o
        }),
        "others may wait for what goes back"
    );
    let mut p = Pace::default();
    assert_eq!(p.result_delay(1), MAX_RESULT_DELAY);
    p.sync_took(ms(100));
    assert_eq!(p.result_delay(1), MAX_RESULT_DELAY, "a local grid");
    assert_eq!(p.result_delay(16), ms(3200), "sixteen nodes share the ref");
    p.sync_took(ms(1000));
    assert!(p.result_delay(1) >= Duration::from_secs(2), "a far host");
    p.sync_took(ms(60_000));
    assert!(p.result_delay(16) <= 10 * MAX_RESULT_DELAY);
}

proptest::proptest! {
    /// Whatever was measured, at least one and at most `max` ahead,
    /// and never fewer for a longer sync or a shorter task.
    #[test]
    fn ahead_is_bounded_and_monotone(
        sync in 0u64..10_000, task in 0u64..100_000, c in 1u32..64, max in 1u32..256,
    ) {
        let mut p = Pace::default();
        p.sync_took(ms(sync));
        p.task_took(ms(task));
        let a = p.ahead(c, max);
        proptest::prop_assert!(a >= 1 && a <= max as usize);
        let mut slower_sync = Pace::default();
        slower_sync.sync_took(ms(sync * 2));
        slower_sync.task_took(ms(task));
        proptest::prop_assert!(slower_sync.ahead(c, max) >= a);
        let mut longer_task = Pace::default();
        longer_task.sync_took(ms(sync));
        longer_task.task_took(ms(task * 2 + 1));
        proptest::prop_assert!(longer_task.ahead(c, max) <= a);
    }
}
