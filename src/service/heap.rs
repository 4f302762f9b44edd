//! The allocator's side of a node that runs for months. glibc's malloc
//! gives each thread that allocates under contention an arena of its own
//! (up to eight a core), and gives freed memory back to the system only
//! from the top of each heap. Every task runs on a thread of its own, so
//! after a drain of thousands of tasks an idle node held twice what it
//! started with (6,000 `true` tasks: 16.6 MB idle after, against 7.7 MB
//! before; two arenas and a trim when it turns idle: BENCHMARKS.md,
//! "An idle node after a long drain"). Elsewhere than glibc, nothing to do.

/// Two arenas: the loop's and its task threads'. Before the threads start.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; M_ARENA_MAX takes
    // any positive count, and allocations already made are unaffected.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Give the free pages of every arena back to the system: when the node
/// turns idle after work, not on a hot path (it walks the heaps).
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system; it takes
    // the arenas' locks itself and touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}
