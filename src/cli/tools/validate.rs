//! `dgrid-worker validate`: check task files with the worker's rules
//! (and, given a checkout of the grid, against the ids already in use; with
//! `--verify`, their signatures), print one line per finding, and as
//! GitHub annotations in Actions.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{fail, rules};
use crate::time;
use crate::tools::{trust, validate};

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Task files, or directories whose entries are all checked as queue
    /// entries (e.g. tasks/queue).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The longest `timeout_seconds` the grid accepts: by default a week,
    /// as the workers read a task; each node runs those up to its own
    /// `tasks.max_timeout_seconds` and leaves longer ones to a peer.
    #[arg(long, value_name = "SECS", default_value_t = crate::grid::task::TIMEOUT_CEILING)]
    pub max_timeout: u64,
    /// A checkout of the grid: also refuse ids that are running there or
    /// already have a result.
    #[arg(long, value_name = "DIR")]
    pub grid: Option<PathBuf>,
    /// Also check each task's signature, as a worker in `enforce` mode
    /// would, against the policy on --trust-ref (and a changed
    /// .dgrid/policy.json in --grid against it).
    #[arg(long, requires = "trust_ref")]
    pub verify: bool,
    /// The ref whose policy and roots are trusted (in a pull request's
    /// check, the base branch: never the pull request itself), read from the
    /// repository at --grid (default: the current directory).
    #[arg(long, value_name = "REF")]
    pub trust_ref: Option<String>,
    /// The roots' public keys [default: .dgrid/roots on --trust-ref].
    #[arg(long, value_name = "FILE")]
    pub roots: Option<PathBuf>,
    /// Root signatures the policy needs.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threshold: u64,
}

pub fn validate(a: ValidateArgs) -> ExitCode {
    let mut report = validate::validate(&a.paths, &rules(a.max_timeout));
    if let Some(grid) = &a.grid {
        validate::check_against_grid(&mut report, grid);
    }
    if let (true, Some(trust_ref)) = (a.verify, &a.trust_ref) {
        let dir = a.grid.clone().unwrap_or_else(|| PathBuf::from("."));
        match trust::verifier_at(
            &dir,
            trust_ref,
            a.roots.as_deref(),
            a.threshold as usize,
            &rules(a.max_timeout),
        ) {
            Ok(mut v) => trust::verify_report(&mut report, &mut v, a.grid.as_deref(), time::now()),
            Err(e) => return fail(e),
        }
    }
    // In GitHub Actions, also as annotations on the pull request's files.
    let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    for f in report.unreadable.iter().chain(&report.findings) {
        say!("{f}");
        if github {
            say!("{}", validate::github_annotation(f));
        }
    }
    for w in &report.warnings {
        say!("warning: {w}");
        if github {
            say!("{}", validate::github_warning(w));
        }
    }
    eprintln!(
        "{} checked: {} valid, {} invalid{}{}",
        report.checked,
        report.valid,
        report.findings.len(),
        if report.unreadable.is_empty() {
            String::new()
        } else {
            format!(", {} unreadable", report.unreadable.len())
        },
        match report.warnings.len() {
            0 => String::new(),
            n => format!(", {}", crate::tools::text::plural(n, "warning")),
        }
    );
    if report.findings.is_empty() && report.unreadable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
