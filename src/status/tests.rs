use super::*;

#[test]
fn health_needs_a_live_loop_and_a_healthy_engine() {
    let now = time::parse("2026-01-01T00:10:00Z").unwrap();
    let mut s = Snapshot::new("n", "podman", Duration::from_secs(60));
    assert!(health(&s, now).is_err(), "not started");
    s.loop_alive_at = Some("2026-01-01T00:09:30Z".into());
    assert_eq!(health(&s, now), Ok(()));
    s.loop_alive_at = Some("2026-01-01T00:08:00Z".into());
    let e = health(&s, now).unwrap_err();
    assert!(e[0].contains("stuck: last seen 120s ago"), "{e:?}");
    s.loop_alive_at = Some("2026-01-01T00:09:30Z".into());
    s.engine_problem = Some("podman: no such image".into());
    let e = health(&s, now).unwrap_err();
    assert!(e[0].contains("engine unhealthy: podman: no such image"));
    assert!(metrics(&s, now).contains("dgrid_healthy 0"));
}

#[test]
fn a_crowd_kept_out_is_counted_in_the_metrics() {
    let now = time::parse("2026-01-01T00:10:00Z").unwrap();
    let mut s = Snapshot::new("n", "podman", Duration::from_secs(60));
    assert!(metrics(&s, now).contains("\ndgrid_outbox_strangers_total 0\n"));
    s.outbox_strangers = 3000;
    let m = metrics(&s, now);
    assert!(
        m.contains("# TYPE dgrid_outbox_strangers_total counter"),
        "{m}"
    );
    assert!(m.contains("\ndgrid_outbox_strangers_total 3000\n"), "{m}");
}

#[test]
fn only_syncs_that_commit_are_timed_as_commits() {
    let board = Board::new(Snapshot::new("n", "podman", Duration::from_secs(60)));
    let sync = SyncStats {
        took: Duration::from_millis(20),
        ok: true,
        rejections: 0,
        claims: 0,
        heartbeat: false,
        committed: false,
    };
    board.sync_done(sync);
    board.sync_done(SyncStats {
        took: Duration::from_millis(80),
        committed: true,
        ..sync
    });
    let s = board.snapshot();
    assert_eq!(s.git_sync_seconds.count, 2);
    assert_eq!(s.git_commit_seconds.count, 1);
    let m = metrics(&s, time::now());
    assert!(
        m.contains("\ndgrid_git_commit_duration_seconds_count 1\n"),
        "{m}"
    );
    assert!(
        m.contains("\ndgrid_git_sync_duration_seconds_count 2\n"),
        "{m}"
    );
}

#[test]
fn histograms_are_cumulative() {
    let mut h = Histogram::new(&[1.0, 10.0]);
    h.observe(Duration::from_millis(500));
    h.observe(Duration::from_secs(5));
    h.observe(Duration::from_secs(50));
    assert_eq!(h.counts, vec![1, 2]);
    assert_eq!(h.count, 3);
}
