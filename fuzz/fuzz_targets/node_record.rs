//! Other nodes' records, read when deciding whether their claims are orphaned.
#![no_main]

use dgrid_worker::grid::Id;
use dgrid_worker::grid::NodeRecord;
use dgrid_worker::grid::claim::Claim;
use dgrid_worker::grid::orphan::{self, OrphanPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = NodeRecord::parse(data) else {
        return;
    };
    let back = NodeRecord::parse(&record.to_bytes()).expect("round trip");
    assert_eq!(back, record);
    // Whatever its timestamps say, the orphan rule decides without panicking.
    let claim = Claim {
        node_id: Id::parse("n").unwrap(),
        claimed_at: record.started_at.clone(),
        deadline: record.last_heartbeat.clone(),
        attempt: record.concurrency,
        queued_at: None,
    };
    let policy = OrphanPolicy {
        stale_after: chrono::Duration::seconds(60),
        max_attempts: 3,
    };
    let now = dgrid_worker::time::now();
    let _ = orphan::orphan_reason(&claim, Some(&record), now, &policy);
    let _ = orphan::disposition(&claim, &policy);
    // Its labels, whatever they hold, route without panicking.
    let labels = record.node_labels();
    let _ = labels.serves(&dgrid_worker::grid::Class::any());
});
