//! Results read back: outbox entries on disk (a result or a requeue), and
//! result files as the grid holds them.
#![no_main]

use dgrid_worker::grid::TaskResult;
use dgrid_worker::service::outbox::OutboxEntry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<TaskResult>(data) {
        let back: TaskResult = serde_json::from_slice(&r.to_bytes()).expect("round trip");
        assert_eq!(back, r);
    }
    if let Ok(e) = serde_json::from_slice::<OutboxEntry>(data) {
        let bytes = serde_json::to_vec(&e).unwrap();
        let back: OutboxEntry = serde_json::from_slice(&bytes).expect("round trip");
        assert_eq!(back, e);
    }
});
