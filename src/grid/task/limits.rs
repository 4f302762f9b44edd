//! The bounds a task is held to: sizes and the timeout (`TaskRules`, which
//! a grid may tighten in its configuration), and the ranges of the
//! scheduling fields. Apart so that the errors that quote them and the
//! fields they bound both read them from one place.

/// Limits a task must respect. A grid may tighten them in its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRules {
    pub max_file_bytes: usize,
    pub max_script_bytes: usize,
    pub max_timeout_seconds: u64,
}

impl Default for TaskRules {
    fn default() -> Self {
        TaskRules {
            // A task is a small JSON document; anything bigger is a mistake or
            // an attack on the workers' memory.
            max_file_bytes: 256 * 1024,
            // The script is passed as one argv string; Linux caps one argument
            // at 128 KiB (MAX_ARG_STRLEN), so stay well under it.
            max_script_bytes: 64 * 1024,
            max_timeout_seconds: 3600,
        }
    }
}

impl TaskRules {
    /// What a file must respect to be a task at all, as a worker reads the
    /// grid: these rules, with a timeout up to [`TIMEOUT_CEILING`]. Whether
    /// it runs a task longer than its own limit is the node's own affair,
    /// not the task's validity.
    pub fn to_read_by(&self) -> TaskRules {
        TaskRules {
            max_timeout_seconds: TIMEOUT_CEILING,
            ..self.clone()
        }
    }
}

/// The longest `timeout_seconds` a task may ask for on any node (a week;
/// the most `tasks.max_timeout_seconds` may be). Below it, a
/// task longer than a node's own limit is left for a peer that takes it:
/// one volunteer's limit does not fail a task for the whole grid.
pub const TIMEOUT_CEILING: u64 = 7 * 24 * 3600;

/// The lowest and highest `priority`; higher runs first.
pub const PRIORITY_MAX: u8 = 99;
/// The priority of a task that gives none: the middle of the range.
pub const DEFAULT_PRIORITY: u8 = 50;
/// The most tasks one task may run `after`. A join of more goes through
/// intermediate tasks: each time one of its parents finishes, a waiting
/// task is looked at again.
pub const MAX_AFTER: usize = 100;
