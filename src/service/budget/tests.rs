//! The budget's rules, over a clock the tests set.

use chrono::{NaiveDateTime, Utc};

use super::*;

fn at(s: &str) -> Timestamp {
    crate::time::parse(s).unwrap()
}

/// A zone whose wall clock reads `local` at `now`.
fn wall(now: Timestamp, local: &str) -> chrono::FixedOffset {
    let local = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M:%S").unwrap();
    let offset = (local - now.naive_utc()).num_seconds();
    chrono::FixedOffset::east_opt(i32::try_from(offset).unwrap()).unwrap()
}

fn limits(tasks: Option<u32>, secs: Option<u64>, quiet: &[&str]) -> Limits {
    Limits {
        tasks_per_hour: tasks,
        task_seconds_per_hour: secs,
        quiet_hours: quiet
            .iter()
            .map(|q| QuietHours::parse(q).unwrap())
            .collect(),
    }
}

#[test]
fn no_limits_allow_anything() {
    let b = Budget::new(Limits::default());
    let now = at("2026-11-30T10:00:00Z");
    assert_eq!(b.allowance(now, &Utc, None), Allowance::Open(None));
}

#[test]
fn a_cap_on_tasks_counts_starts_in_the_last_hour_and_claims_waiting() {
    let mut b = Budget::new(limits(Some(3), None, &[]));
    let t0 = at("2026-11-30T10:00:00Z");
    let l = &Utc;
    let open = b.allowance(t0, l, None);
    assert_eq!(open, Allowance::Open(Some(3)));
    assert_eq!(open.room(2), Some(1), "two claimed, not started");
    assert_eq!(open.surplus(5), 2, "five held, three may start");
    b.started(t0);
    b.ended(t0, t0 + chrono::Duration::seconds(5));
    b.started(t0 + chrono::Duration::minutes(10));
    assert_eq!(
        b.allowance(t0 + chrono::Duration::minutes(11), l, None),
        Allowance::Open(Some(1))
    );
    b.started(t0 + chrono::Duration::minutes(20));
    let paused = b.allowance(t0 + chrono::Duration::minutes(21), l, None);
    assert_eq!(
        paused,
        Allowance::Paused(Paused {
            why: "at its limit of 3 tasks an hour".into(),
            until: Some(t0 + chrono::Duration::hours(1)),
        })
    );
    // An hour after the first start, one may go again.
    let later = t0 + chrono::Duration::minutes(61);
    assert_eq!(b.allowance(later, l, None), Allowance::Open(Some(1)));
    // One task an hour, said so.
    let mut one = Budget::new(limits(Some(1), None, &[]));
    one.started(t0);
    let Allowance::Paused(p) = one.allowance(t0, l, None) else {
        panic!("at its cap")
    };
    assert_eq!(p.why, "at its limit of 1 task an hour");
}

#[test]
fn a_start_taken_back_is_not_a_task() {
    let mut b = Budget::new(limits(Some(2), None, &[]));
    let t0 = at("2026-11-30T10:00:00Z");
    let l = &Utc;
    b.started(t0);
    let again = t0 + chrono::Duration::seconds(1);
    b.started(again);
    assert!(matches!(b.allowance(again, l, None), Allowance::Paused(_)));
    b.taken_back(again);
    assert_eq!(
        b.allowance(again, l, None),
        Allowance::Open(Some(1)),
        "one start counted"
    );
    // The one that runs on stays counted, ended or not.
    b.taken_back(again);
    assert_eq!(b.allowance(again, l, None), Allowance::Open(Some(1)));
}

#[test]
fn a_cap_on_seconds_counts_what_running_tasks_will_still_take() {
    // 7 s an hour, tasks of 3 s, four slots: two fit, not three, and no
    // more while they run.
    let mut b = Budget::new(limits(None, Some(7), &[]));
    let t0 = at("2026-11-30T10:00:00Z");
    assert_eq!(b.allowance(t0, &Utc, Some(3.0)), Allowance::Open(Some(2)));
    b.started(t0);
    b.started(t0);
    let soon = t0 + chrono::Duration::milliseconds(100);
    assert_eq!(
        b.allowance(soon, &Utc, Some(3.0)),
        Allowance::Open(Some(0)),
        "5.8 s still to run against 6.8 s left: a third would pass the limit"
    );
    // One ends early, after 1 s: what it did not take is free again.
    b.ended(t0, t0 + chrono::Duration::seconds(1));
    let later = t0 + chrono::Duration::seconds(1);
    assert_eq!(
        b.allowance(later, &Utc, Some(3.0)),
        Allowance::Open(Some(1)),
        "1 s used, 1 s running, 2 s ahead of it: 3 s left, one task"
    );
    // Unmeasured, one at a time: nothing beside a task that runs.
    let mut b = Budget::new(limits(None, Some(600), &[]));
    assert_eq!(b.allowance(t0, &Utc, None), Allowance::Open(Some(1)));
    b.started(t0);
    assert_eq!(b.allowance(soon, &Utc, None), Allowance::Open(Some(0)));
}

#[test]
fn a_cap_on_seconds_starts_no_task_measured_to_pass_it() {
    // The sweep's node: 10 s an hour, tasks of 4 s, two slots. After the
    // first (unmeasured, alone), 6 s are left: one more, not two.
    let mut b = Budget::new(limits(None, Some(10), &[]));
    let t0 = at("2026-11-30T10:00:00Z");
    let s = |secs| t0 + chrono::Duration::seconds(secs);
    b.started(t0);
    b.ended(t0, s(4));
    assert_eq!(b.allowance(s(4), &Utc, Some(4.0)), Allowance::Open(Some(1)));
    b.started(s(4));
    assert_eq!(b.allowance(s(5), &Utc, Some(4.0)), Allowance::Open(Some(0)));
    b.ended(s(4), s(8));
    // 2 s left hold no task of 4 s: paused (not open with no room, which
    // would say nothing of why), until the first run's time leaves the
    // window far enough (at 11:00:02), found ten seconds at a time.
    let Allowance::Paused(p) = b.allowance(s(8), &Utc, Some(4.0)) else {
        panic!("2 s left, tasks of 4 s")
    };
    assert_eq!(p.why, "at its limit of 10 s of task time an hour");
    let until = p.until.unwrap();
    assert!(until >= s(3602) && until <= s(3612), "{until}");
    assert_eq!(
        b.allowance(s(3602), &Utc, Some(4.0)),
        Allowance::Open(Some(1)),
        "2 s of the first run out of the window: 4 s left"
    );
    // With 1 s left, nothing of 4 s starts (the sweep's second node: 8 s
    // in an hour of 5).
    let mut b = Budget::new(limits(None, Some(5), &[]));
    b.started(t0);
    b.ended(t0, s(4));
    assert!(matches!(
        b.allowance(s(4), &Utc, Some(4.0)),
        Allowance::Paused(_)
    ));
    // A task that fits exactly is not lost to rounding.
    let b = Budget::new(limits(None, Some(8), &[]));
    assert_eq!(b.allowance(t0, &Utc, Some(4.0)), Allowance::Open(Some(2)));
    // Said to a tenth of a second, not rounded up past the limit.
    let b = Budget::new(limits(None, Some(1), &[]));
    let Allowance::Paused(p) = b.allowance(t0, &Utc, Some(1.5)) else {
        panic!("a task of 1.5 s in an hour of 1")
    };
    assert!(p.why.contains("take about 1.5 s each"), "{}", p.why);
    // Tasks longer than the hour allows: none, and why.
    let b = Budget::new(limits(None, Some(5), &[]));
    let Allowance::Paused(p) = b.allowance(t0, &Utc, Some(6.0)) else {
        panic!("a task of 6 s in an hour of 5")
    };
    assert_eq!(
        p.why,
        "at its limit of 5 s of task time an hour: its tasks take about 6.0 s each, more than an hour allows"
    );
    assert_eq!(p.until, None);
    // The first run, unmeasured, used the hour up: why no hour holds one,
    // not an hour's wait after which none starts either.
    let mut b = Budget::new(limits(None, Some(1), &[]));
    b.started(t0);
    b.ended(t0, s(2));
    let Allowance::Paused(p) = b.allowance(s(2), &Utc, Some(2.0)) else {
        panic!("a task of 2 s in an hour of 1")
    };
    assert!(p.why.contains("more than an hour allows"), "{}", p.why);
    assert_eq!(p.until, None);
}

#[test]
fn a_cap_on_seconds_counts_time_inside_the_window_running_tasks_included() {
    let mut b = Budget::new(limits(None, Some(600), &[]));
    let t0 = at("2026-11-30T10:00:00Z");
    let l = &Utc;
    b.started(t0);
    b.ended(t0, t0 + chrono::Duration::seconds(300));
    let now = t0 + chrono::Duration::seconds(400);
    assert_eq!(b.allowance(now, l, Some(100.0)), Allowance::Open(Some(3)));
    assert_eq!(
        b.allowance(now, l, None),
        Allowance::Open(Some(1)),
        "unmeasured: one"
    );
    b.started(now);
    let later = now + chrono::Duration::seconds(300);
    let Allowance::Paused(p) = b.allowance(later, l, Some(100.0)) else {
        panic!("300 s done and 300 s running make 600")
    };
    assert_eq!(p.why, "at its limit of 600 s of task time an hour");
    assert_eq!(p.until, None, "a task still runs: it cannot be told");
    b.ended(now, later);
    let Allowance::Paused(p) = b.allowance(later, l, Some(100.0)) else {
        panic!()
    };
    // The first 300 s leave the window from 11:00 on, one second each.
    let until = p.until.unwrap();
    assert!(
        until > t0 + chrono::Duration::hours(1) && until <= t0 + chrono::Duration::seconds(3610),
        "{until}"
    );
    // A task that began before the window counts only its part inside.
    let mut b = Budget::new(limits(None, Some(600), &[]));
    b.started(t0);
    b.ended(t0, t0 + chrono::Duration::minutes(70));
    let now = t0 + chrono::Duration::minutes(75);
    assert!(matches!(
        b.allowance(now, l, Some(60.0)),
        Allowance::Paused(_)
    ));
    let now = t0 + chrono::Duration::minutes(121);
    assert_eq!(
        b.allowance(now, l, Some(60.0)),
        Allowance::Open(Some(1)),
        "9 minutes inside the window: 60 s left"
    );
}

#[test]
fn quiet_hours_pause_until_they_end_in_local_time() {
    let b = Budget::new(limits(None, None, &["22:00-07:00", "12:00-12:30"]));
    let now = at("2026-11-30T21:00:00Z");
    let paused = b.allowance(now, &wall(now, "2026-11-30 23:30:00"), None);
    assert_eq!(paused.surplus(4), 4, "nothing held while paused");
    assert_eq!(paused.room(0), Some(0));
    let Allowance::Paused(p) = paused else {
        panic!()
    };
    assert_eq!(p.why, "quiet hours (22:00-07:00, local time)");
    assert_eq!(p.until, Some(now + chrono::Duration::minutes(450)));
    assert!(matches!(
        b.allowance(now, &wall(now, "2026-12-01 06:59:30"), None),
        Allowance::Paused(_)
    ));
    assert_eq!(
        b.allowance(now, &wall(now, "2026-12-01 07:00:00"), None),
        Allowance::Open(None)
    );
    assert!(matches!(
        b.allowance(now, &wall(now, "2026-12-01 12:10:00"), None),
        Allowance::Paused(_)
    ));
    assert_eq!(
        b.allowance(now, &wall(now, "2026-12-01 12:30:00"), None),
        Allowance::Open(None)
    );
}

#[test]
fn quiet_hours_are_read_strictly() {
    assert!(QuietHours::parse("22:00-07:00").is_ok());
    assert_eq!(
        QuietHours::parse("9:00-17:30").unwrap().to_string(),
        "09:00-17:30"
    );
    for bad in [
        "22-07",
        "25:00-07:00",
        "22:00-07:60",
        "22:00",
        "22:00-22:00",
        "a:b-c:d",
        "22:0-07:00",
    ] {
        assert!(QuietHours::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(
        QuietHours::parse("-1:00-07:00").unwrap_err(),
        r#""-1:00-07:00": "" is not a time of day such as 22:00"#,
        "the span named, not only its empty first part"
    );
}

#[test]
fn what_a_restart_keeps_is_the_last_hour_and_counts_as_before() {
    let lim = limits(Some(3), Some(600), &[]);
    let mut b = Budget::new(lim.clone());
    b.started(at("2026-12-01T09:00:00Z"));
    b.ended(at("2026-12-01T09:00:00Z"), at("2026-12-01T09:05:00Z"));
    b.started(at("2026-12-01T10:00:00Z"));
    b.ended(at("2026-12-01T10:00:00Z"), at("2026-12-01T10:04:00Z"));
    b.started(at("2026-12-01T10:10:00Z"));
    let now = at("2026-12-01T10:11:00Z");
    let kept = b.kept(now, 100);
    assert_eq!(
        kept,
        [
            (at("2026-12-01T10:00:00Z"), at("2026-12-01T10:04:00Z")),
            (at("2026-12-01T10:10:00Z"), now),
        ],
        "the run of 9:00 ended over an hour ago; the running one counts to now"
    );
    assert_eq!(b.kept(now, 1), kept[1..], "the newest when bounded");
    let mut restarted = Budget::new(lim);
    let mut lies = kept.clone();
    lies.push((at("2026-12-01T11:00:00Z"), at("2026-12-01T11:01:00Z")));
    lies.push((now, at("2026-12-01T10:00:00Z")));
    assert_eq!(restarted.restore(&lies, now), 2);
    let allowance = |b: &Budget| b.allowance(now, &Utc, Some(1.0));
    assert_eq!(
        allowance(&restarted),
        Allowance::Open(Some(1)),
        "two of three tasks used, as before the restart; what lies is not counted"
    );
    restarted.started(now);
    assert!(matches!(allowance(&restarted), Allowance::Paused(_)));
}

#[test]
fn the_record_holds_only_an_hours_work() {
    let mut b = Budget::new(limits(Some(1000), None, &[]));
    let t0 = at("2026-11-30T10:00:00Z");
    for i in 0..100 {
        let s = t0 + chrono::Duration::minutes(i);
        b.started(s);
        b.ended(s, s + chrono::Duration::seconds(1));
    }
    b.started(t0 + chrono::Duration::minutes(100));
    assert!(b.runs.len() <= 62, "{}", b.runs.len());
}
