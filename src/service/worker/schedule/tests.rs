use super::*;

const PULL: Duration = Duration::from_secs(10);

fn at(start: Instant, ms: u64) -> Instant {
    start + Duration::from_millis(ms)
}

fn quiet(now: Instant) -> Schedule {
    let mut s = Schedule::starting(now, false);
    s.next_poll = now + PULL;
    s.next_heartbeat = now + Duration::from_secs(2400);
    s.next_reap = now + REAP_EVERY;
    s.next_look = now + PULL;
    s
}

fn base() -> Load {
    Load {
        result_delay: pace::MAX_RESULT_DELAY,
        ..Load::default()
    }
}

#[test]
fn a_new_node_registers_claims_and_reaps_at_once() {
    let now = Instant::now();
    let s = Schedule::starting(now, false);
    let load = Load { room: 1, ..base() };
    let due = s.due(now, &load).unwrap();
    assert_eq!(
        due,
        Due {
            claims: 1,
            flush: false,
            heartbeat: true,
            reap: true,
            look: false,
            before_start: false,
        }
    );
}

#[test]
fn an_idle_node_with_nothing_due_sleeps_until_its_poll() {
    let now = Instant::now();
    let s = quiet(now);
    let load = Load { room: 1, ..base() };
    assert_eq!(s.due(now, &load), None);
    assert_eq!(s.next_sync(now, &load), now + PULL);
    assert_eq!(s.sleep(now, &load, &[]), PULL);
    assert_eq!(
        s.sleep(now, &load, &[Some(at(now, 500)), None]),
        Duration::from_millis(500),
        "the watchdog comes first"
    );
    let full = base();
    assert_eq!(
        s.next_sync(now, &full),
        now + REAP_EVERY,
        "no room: the poll is no reason to wake"
    );
}

#[test]
fn claims_wait_until_nothing_claimed_is_left_to_start() {
    let now = Instant::now();
    let s = Schedule::starting(now, false);
    let load = Load {
        room: 3,
        waiting: 2,
        running: 1,
        ..base()
    };
    assert_eq!(s.due(now, &load).unwrap().claims, 0);
    let load = Load { waiting: 0, ..load };
    assert_eq!(s.due(now, &load).unwrap().claims, 3);
}

#[test]
fn a_failed_sync_holds_every_reason_back_for_the_interval() {
    let now = Instant::now();
    let mut s = Schedule::starting(now, true);
    let load = Load {
        room: 1,
        pending: 1,
        ..base()
    };
    assert!(s.due(now, &load).is_some());
    s.sync_failed(now, PULL);
    let soon = at(now, 5000);
    assert_eq!(s.due(soon, &load), None, "heartbeat and results wait");
    assert_eq!(s.next_sync(soon, &load), now + PULL);
    let due = s.due(now + PULL, &load).unwrap();
    assert!(due.heartbeat && due.flush && due.claims == 1);
}

#[test]
fn an_idle_node_whose_requeue_waits_tries_again_after_the_interval() {
    let now = Instant::now();
    let mut s = quiet(now);
    s.result_waiting(now);
    // Idle, with a requeue in the outbox: due at once.
    let idle = Load {
        room: 1,
        pending: 1,
        ..base()
    };
    assert!(s.due(now, &idle).is_some_and(|d| d.flush));
    s.requeue_waits(now, PULL);
    assert_eq!(s.due(at(now, 5), &idle), None, "not tried again at once");
    assert!(s.due(now + PULL, &idle).is_some_and(|d| d.flush));
}

#[test]
fn results_ride_with_the_next_claim_or_go_after_the_delay() {
    let now = Instant::now();
    let mut s = quiet(now);
    s.result_waiting(now);
    let running = Load {
        room: 0,
        waiting: 3,
        running: 1,
        pending: 1,
        ..base()
    };
    assert_eq!(s.due(now, &running), None, "the batch runs on");
    let giving_back = Load {
        giving_back: true,
        ..running
    };
    assert!(
        s.due(now, &giving_back).unwrap().flush,
        "what goes back goes now"
    );
    assert_eq!(s.next_sync(now, &running), now + pace::MAX_RESULT_DELAY);
    let later = now + pace::MAX_RESULT_DELAY;
    assert!(s.due(later, &running).unwrap().flush);
    let stopping = Load {
        stopping: true,
        ..running
    };
    let due = s.due(now, &stopping).unwrap();
    assert!(due.flush && !due.reap, "stopping: push, never reap");
    s.outbox_emptied();
    assert_eq!(s.results_since, None);
}

#[test]
fn a_claim_that_took_all_it_asked_for_polls_again_at_once() {
    let now = Instant::now();
    let mut s = quiet(now);
    s.claimed(now, true, PULL);
    assert_eq!(s.next_poll, now);
    s.claimed(now, false, PULL);
    assert_eq!(s.next_poll, now + PULL);
    s.reaped(now, Duration::from_secs(30), false);
    assert_eq!(
        s.next_reap,
        now + Duration::from_secs(15),
        "half the stale limit"
    );
    assert!(!s.maintenance_due(now));
    assert!(s.maintenance_due(now + MAINTAIN_EVERY));
    s.maintained(now + MAINTAIN_EVERY);
    assert!(!s.maintenance_due(now + MAINTAIN_EVERY));
    assert!(s.take_growth_check(now), "at the start");
    assert!(!s.take_growth_check(now + GROWTH_CHECK_EVERY / 2));
    assert!(s.take_growth_check(now + GROWTH_CHECK_EVERY));
}

#[test]
fn claims_not_started_make_the_node_look_again_within_half_an_interval() {
    let now = Instant::now();
    let mut s = quiet(now);
    let holding = Load {
        waiting: 3,
        running: 1,
        ..base()
    };
    s.looked(now, PULL);
    assert_eq!(s.due(now, &holding), None);
    assert_eq!(s.next_sync(now, &holding), now + PULL / 2);
    let due = s.due(now + PULL / 2, &holding).unwrap();
    assert!(due.look && due.claims == 0 && !due.flush);
    let stopping = Load {
        stopping: true,
        ..holding
    };
    assert_eq!(s.due(now + PULL / 2, &stopping), None);
    assert_eq!(s.due(now + PULL / 2, &base()), None, "nothing held");
}

#[test]
fn a_look_ahead_of_a_free_slot_falls_due_before_the_periodic_one() {
    let now = Instant::now();
    let mut s = quiet(now);
    s.looked(now, PULL);
    let ahead = now + Duration::from_millis(150);
    let holding = Load {
        waiting: 1,
        running: 1,
        look_ahead_at: Some(ahead),
        ..base()
    };
    assert_eq!(s.next_sync(now, &holding), ahead);
    assert_eq!(s.due(now, &holding), None);
    let due = s.due(ahead, &holding).unwrap();
    assert!(due.look && due.claims == 0 && !due.flush);
    let stopping = Load {
        stopping: true,
        ..holding
    };
    assert_eq!(s.due(ahead, &stopping), None);
}

#[test]
fn results_of_a_busy_node_can_wait_claims_and_stops_cannot() {
    let busy = Load {
        running: 1,
        pending: 2,
        ..base()
    };
    let results = Due {
        flush: true,
        ..Due::default()
    };
    assert!(results.can_wait(&busy));
    assert!(!results.can_wait(&base()), "nothing runs: push them");
    let claims = Due {
        claims: 1,
        ..results
    };
    assert!(!claims.can_wait(&busy));
    let giving_back = Load {
        giving_back: true,
        ..busy
    };
    assert!(!results.can_wait(&giving_back));
    let now = Instant::now();
    let mut s = quiet(now);
    s.result_waiting(now);
    let later = now + Duration::from_secs(1);
    s.results_deferred(later);
    assert_eq!(s.results_since, Some(later));
}

#[test]
fn the_loop_never_spins() {
    let now = Instant::now();
    let s = Schedule::starting(now, false);
    let load = Load { room: 1, ..base() };
    assert_eq!(s.sleep(now, &load, &[]), SHORTEST_SLEEP);
}

/// A node busy in one slot, a claim waiting, its task due to end at
/// `frees`; a look takes 300 ms, any other sync 400 ms.
fn waiting_for(frees: Instant) -> Load {
    Load {
        waiting: 1,
        running: 1,
        slot_frees: Some(frees),
        look_takes: Duration::from_millis(300),
        sync_takes: Duration::from_millis(400),
        task_takes: Duration::from_secs(1),
        ..base()
    }
}

/// A sync that only looks at the lanes, and one that pushes results.
const LOOK: Due = Due {
    claims: 0,
    flush: false,
    heartbeat: false,
    reap: false,
    look: true,
    before_start: false,
};
const PUSH: Due = Due {
    flush: true,
    look: false,
    ..LOOK
};

#[test]
fn a_sync_that_would_run_over_a_slot_freeing_waits_for_its_start() {
    let now = Instant::now();
    let (look, push) = (LOOK, PUSH);
    // Ends before the slot frees: made now.
    let mut s = quiet(now);
    assert!(!s.hold_for_slot(now, &waiting_for(at(now, 350)), &look));
    // The same slot against a push, which takes longer: held until it frees.
    let load = waiting_for(at(now, 350));
    assert!(s.hold_for_slot(now, &load, &push));
    // Until half a push past its due end: a task runs a little over.
    assert_eq!(s.hold, Hold::Until(at(now, 550)));
    assert!(s.hold_for_slot(at(now, 360), &load, &push), "still held");
    // The loop sleeps until then (or the task's end wakes it).
    let due_now = Load { pending: 1, ..load };
    s.results_since = Some(now - pace::MAX_RESULT_DELAY);
    assert!(s.flush_due(now, &due_now));
    assert_eq!(s.sleep(now, &due_now, &[]), Duration::from_millis(550));
    // The task ended: the sync runs, after the slot started its claim.
    s.slot_freed();
    assert!(!s.hold_for_slot(at(now, 300), &load, &push));
    // Once between syncs: the next slot to free does not hold it again.
    assert!(!s.hold_for_slot(at(now, 300), &waiting_for(at(now, 500)), &push));
    s.synced();
    assert!(s.hold_for_slot(at(now, 300), &waiting_for(at(now, 500)), &push));
    // A task that runs far over its measured length holds it no longer.
    assert!(!s.hold_for_slot(at(now, 700), &waiting_for(at(now, 500)), &push));
    assert_eq!(s.hold, Hold::Spent);
}

#[test]
fn nothing_holds_a_sync_without_a_claim_waiting_handbacks_or_a_stop() {
    let now = Instant::now();
    let push = PUSH;
    let frees = at(now, 100);
    let nothing_waits = Load {
        slot_frees: None,
        ..waiting_for(frees)
    };
    let giving_back = Load {
        giving_back: true,
        ..waiting_for(frees)
    };
    let stopping = Load {
        stopping: true,
        ..waiting_for(frees)
    };
    for load in [nothing_waits, giving_back, stopping] {
        let mut s = quiet(now);
        assert!(!s.hold_for_slot(now, &load, &push), "{load:?}");
        assert_eq!(s.hold, Hold::Free);
    }
    // Tasks shorter than a push: no push fits between two starts.
    let short = Load {
        task_takes: Duration::from_millis(300),
        ..waiting_for(frees)
    };
    let mut s = quiet(now);
    assert!(!s.hold_for_slot(now, &short, &push));
    assert!(s.hold_for_slot(now, &short, &LOOK), "a look fits");
    // Due in the past (the task ran over): nothing to wait for.
    let mut s = quiet(now);
    assert!(!s.hold_for_slot(now, &waiting_for(now - Duration::from_millis(1)), &push));
}
