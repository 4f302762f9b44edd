//! The configuration file: TOML an operator (or a package) wrote.
#![no_main]

use std::path::Path;

use dgrid_worker::config::{Config, Env};
use libfuzzer_sys::fuzz_target;

struct NoEnv;

impl Env for NoEnv {
    fn get(&self, _: &str) -> Option<String> {
        None
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_str_with(text, Path::new("/fuzz/worker.toml"), &NoEnv) {
        Ok(cfg) => {
            assert!(cfg.concurrency >= 1);
            // The sums the worker makes with these settings must not overflow.
            let now = std::time::Instant::now();
            for span in [
                cfg.pull_interval,
                cfg.heartbeat_interval,
                cfg.stale_after,
                cfg.drain_timeout,
                cfg.git_timeout,
            ] {
                assert!(now.checked_add(span).is_some(), "{span:?}");
            }
            assert!(
                cfg.drain_timeout
                    .checked_add(std::time::Duration::from_secs(30))
                    .is_some()
            );
            let grace = chrono::Duration::from_std(cfg.claim_grace).expect("grace fits");
            let longest = chrono::Duration::try_seconds(cfg.task_rules.max_timeout_seconds as i64)
                .expect("timeout fits");
            assert!(
                dgrid_worker::time::now()
                    .checked_add_signed(longest + grace)
                    .is_some()
            );
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
