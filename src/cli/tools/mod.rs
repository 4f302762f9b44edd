//! The grid tools' command lines: `validate`, `submit`, `status`, `reap`,
//! `archive`, `dashboard`, `init`. Each parses its arguments, calls `crate::tools`, and
//! turns the outcome into output and an exit status for scripts and CI:
//! 0 success, 1 the grid or the input is not as asked (invalid tasks, a
//! duplicate id, an unreachable repository), 2 bad arguments (clap's own).
//!
//! One file per group of subcommands: `validate.rs`, `submit.rs`,
//! `view.rs` (`status` and `dashboard`, which load the same view of the
//! grid), `reap.rs`, `archive.rs`, `init.rs`. Here: what they share, the
//! one way to fail, the task rules from `--max-timeout`, and the flag that
//! says when a node counts as dead.

use std::process::ExitCode;

use crate::grid::TaskRules;
use crate::tools::escape::untrusted as esc;

mod archive;
mod init;
mod reap;
mod submit;
mod validate;
mod view;

pub use archive::{ArchiveArgs, archive};
pub use init::{InitArgs, init};
pub use reap::{ReapArgs, reap};
pub use submit::{SubmitArgs, submit};
pub use validate::{ValidateArgs, validate};
pub use view::{DashboardArgs, StatusArgs, dashboard, status};

/// The one way to fail: a message quoting the grid (a path, git's
/// words) is printed escaped.
fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("dgrid-worker: {}", esc(&msg.to_string()));
    ExitCode::FAILURE
}

fn rules(max_timeout: u64) -> TaskRules {
    TaskRules {
        max_timeout_seconds: max_timeout,
        ..TaskRules::default()
    }
}

/// When a node counts as dead: the same rule, and by default the same limit,
/// as the workers' `stale_after`.
#[derive(Debug, clap::Args)]
pub struct StaleArgs {
    /// A node whose heartbeat is older than this is presumed dead.
    /// At most ten years, as in the workers' configuration.
    #[arg(
        long,
        env = "DGRID_STALE_AFTER",
        value_name = "SECS",
        default_value_t = crate::config::DEFAULT_STALE_SECS,
        value_parser = clap::value_parser!(u64).range(1..=MAX_SPAN_SECS)
    )]
    pub stale_after: u64,
}

/// Ten years: longer spans of time are refused, not wrapped or panicked on
/// (the worker's configuration caps every span the same way).
const MAX_SPAN_SECS: u64 = 10 * 366 * 86400;
