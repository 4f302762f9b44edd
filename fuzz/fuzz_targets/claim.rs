//! `in_progress/` files: claims, as any node (or anyone) pushed them.
#![no_main]

use dgrid_worker::grid::TaskRules;
use dgrid_worker::grid::claim::ClaimedTask;
use dgrid_worker::grid::orphan::{self, OrphanPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rules = TaskRules::default();
    let Ok(c) = ClaimedTask::parse("t.json", data, &rules) else {
        return;
    };
    let back = ClaimedTask::parse("t.json", &c.to_bytes(), &rules).expect("round trip");
    assert_eq!(back, c);
    let policy = OrphanPolicy {
        stale_after: chrono::Duration::seconds(60),
        max_attempts: 3,
    };
    let now = dgrid_worker::time::now();
    let _ = orphan::orphan_reason(&c.claim, None, now, &policy);
    if let orphan::Disposition::Requeue { attempt } = orphan::disposition(&c.claim, &policy) {
        let requeued = c.requeued(attempt);
        let task = dgrid_worker::grid::Task::from_entry(
            "t.json",
            dgrid_worker::grid::task::EntryKind::File,
            &requeued,
            &TaskRules {
                max_timeout_seconds: u64::MAX,
                ..rules
            },
        )
        .expect("a requeued task is valid");
        assert_eq!(task.attempt, attempt);
    }
});
