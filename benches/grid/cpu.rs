//! `BENCH_CPU_PER_WORKER=0.1`: each worker in a cgroup of its own, held to
//! that many cores, with everything it starts: its git, its tasks' shells,
//! and the server side of a push or fetch to a local bare repository,
//! which git runs as a child of the client. Each node is then a small
//! machine of its own, as volunteers' hosts are, instead of one process
//! among many on the bench's two cores: the drains that one node already
//! keeps three quarters busy (BENCHMARKS.md, "Where the zero-length
//! drains spend the machine") then say what the protocol costs, not what
//! the host has left. A diagnostic for a section run alone; the full run
//! never sets it. The `git daemon` of the far-host rows is not held.
//!
//! A list (`BENCH_CPU_PER_WORKER=0.1,0.4`) gives the workers those shares
//! in turn by their number (`w00` the first, `w01` the second, and so
//! on round the list): nodes of unequal speed, as a volunteer fleet is.

use std::path::PathBuf;

/// The cgroup a worker named `node` runs in, created and limited, when
/// `BENCH_CPU_PER_WORKER` asks for one; `None` when it does not.
pub fn limited_cgroup(node: &str) -> Option<PathBuf> {
    let shares: Vec<f64> = match std::env::var("BENCH_CPU_PER_WORKER") {
        Ok(v) => v
            .split(',')
            .map(|c| {
                c.trim()
                    .parse()
                    .ok()
                    .filter(|c: &f64| *c > 0.0)
                    .unwrap_or_else(|| {
                        panic!("BENCH_CPU_PER_WORKER={v}: cores, numbers above 0 split by commas")
                    })
            })
            .collect(),
        Err(_) => return None,
    };
    // The worker's number: the digits its name ends with.
    let digits = node.trim_start_matches(|c: char| !c.is_ascii_digit());
    let cores = shares[digits.parse::<usize>().unwrap_or(0) % shares.len()];
    const PERIOD_US: u64 = 100_000;
    let quota_us = (cores * PERIOD_US as f64).round() as u64;
    // One directory a worker, named for the bench's process so that runs
    // never share one; an empty one left by an earlier run is removed.
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let base = if v2 {
        PathBuf::from("/sys/fs/cgroup/dgrid-bench")
    } else {
        PathBuf::from("/sys/fs/cgroup/cpu/dgrid-bench")
    };
    let fail = |what: &str, e: std::io::Error| -> ! {
        panic!(
            "BENCH_CPU_PER_WORKER: {what} ({e}); the limit needs a writable cgroup cpu controller (root, or a delegated cgroup)"
        )
    };
    std::fs::create_dir_all(&base).unwrap_or_else(|e| fail(&base.display().to_string(), e));
    if v2 {
        std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", "+cpu")
            .and_then(|()| std::fs::write(base.join("cgroup.subtree_control"), "+cpu"))
            .unwrap_or_else(|e| fail("enabling the cpu controller", e));
    }
    let ours = format!("{}-", std::process::id());
    if let Ok(old) = std::fs::read_dir(&base) {
        for d in old.flatten() {
            if d.path().is_dir() && !d.file_name().to_string_lossy().starts_with(&ours) {
                let _ = std::fs::remove_dir(d.path());
            }
        }
    }
    let dir = base.join(format!("{ours}{node}"));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| fail(&dir.display().to_string(), e));
    let limit = if v2 {
        std::fs::write(dir.join("cpu.max"), format!("{quota_us} {PERIOD_US}"))
    } else {
        std::fs::write(dir.join("cpu.cfs_period_us"), PERIOD_US.to_string())
            .and_then(|()| std::fs::write(dir.join("cpu.cfs_quota_us"), quota_us.to_string()))
    };
    limit.unwrap_or_else(|e| fail("setting the quota", e));
    Some(dir)
}
