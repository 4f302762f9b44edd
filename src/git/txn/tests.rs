use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32};

#[test]
fn a_pause_ends_early_when_interrupted() {
    let flag = Arc::new(AtomicBool::new(false));
    let p = TxnPolicy::default().interruptible(flag.clone());
    assert!(pause(&p, Duration::from_millis(30)));
    flag.store(true, Ordering::SeqCst);
    let t = std::time::Instant::now();
    assert!(!pause(&p, Duration::from_secs(10)));
    assert!(t.elapsed() < Duration::from_secs(1));
    // Any of several flags.
    let second = Arc::new(AtomicBool::new(false));
    let p = TxnPolicy::default()
        .interruptible(Arc::new(AtomicBool::new(false)))
        .interruptible(second.clone());
    assert!(pause(&p, Duration::from_millis(30)));
    second.store(true, Ordering::SeqCst);
    assert!(!pause(&p, Duration::from_secs(10)));
}

#[test]
fn a_round_that_would_end_after_the_deadline_is_not_begun() {
    let ms = Duration::from_millis;
    let by = std::time::Instant::now() + Duration::from_secs(10);
    let p = TxnPolicy::default().rounds_end_by(Some(by));
    assert!(!p.ends_too_late(ms(100), ms(500)));
    assert!(p.ends_too_late(ms(9_600), ms(500)));
    assert!(p.ends_too_late(ms(0), Duration::from_secs(11)));
    let free = TxnPolicy::default().rounds_end_by(None);
    assert!(!free.ends_too_late(Duration::from_secs(60), Duration::from_secs(60)));
}

#[test]
fn backoff_is_measured_in_rounds_and_capped() {
    let p = TxnPolicy::default();
    let ms = Duration::from_millis;
    for _ in 0..200 {
        assert!(backoff(&p, 0, ms(60)) <= ms(60));
        assert!(backoff(&p, 1, ms(60)) <= ms(120));
        assert!(backoff(&p, 9, ms(60)) <= ms(480), "doubling stops");
        assert!(backoff(&p, 0, ms(1)) <= p.backoff_base, "at least the base");
        assert!(backoff(&p, 9, Duration::from_secs(5)) <= p.backoff_max);
    }
}

#[test]
fn an_idle_node_backs_off_two_rounds_at_most() {
    let ms = Duration::from_millis;
    let idle = TxnPolicy::default().idle();
    let busy = TxnPolicy::default();
    let most = |p: &TxnPolicy, round| (0..200).map(|_| backoff(p, round, ms(100))).max().unwrap();
    assert!(most(&idle, 9) <= ms(200), "{:?}", most(&idle, 9));
    assert!(most(&idle, 0) <= ms(100), "the first loss: a round, as any");
    assert!(most(&busy, 9) > ms(400), "a busy node doubles on");
}

#[test]
fn backoff_spreads_over_the_writers_left() {
    let ms = Duration::from_millis;
    let writers = Arc::new(AtomicU32::new(0));
    let p = TxnPolicy::default().writers(writers.clone());
    let most = |round| (0..200).map(|_| backoff(&p, round, ms(100))).max().unwrap();
    // Not read yet: the doubling alone.
    assert!(most(3) > ms(400), "{:?}", most(3));
    writers.store(2, Ordering::SeqCst);
    assert!(most(3) <= ms(200), "two writers: two rounds");
    assert!(most(0) <= ms(100), "never more than the doubling");
    writers.store(1, Ordering::SeqCst);
    assert!(most(5) <= ms(100), "alone: one round");
}
