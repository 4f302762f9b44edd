//! `dgrid-worker archive`: move old results from the grid's branch to the
//! archive branch in one atomic push, and say what moved in a few lines
//! (or as JSON).

use std::process::ExitCode;

use super::fail;
use crate::tools::archive;
use crate::tools::escape::untrusted as esc;
use crate::tools::source::RepoArgs;

#[derive(Debug, clap::Args)]
pub struct ArchiveArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Results to keep on the grid's branch: the newest by their
    /// `timestamp` (unreadable files count as oldest).
    #[arg(long, env = "DGRID_ARCHIVE_KEEP", value_name = "N", default_value_t = crate::grid::archive::DEFAULT_KEEP)]
    pub keep: usize,
    /// The branch results are moved to (created if absent), at the same
    /// paths: a result is on the grid's branch, else there.
    #[arg(long, value_name = "BRANCH", default_value = crate::grid::archive::ARCHIVE_BRANCH)]
    pub archive_branch: String,
    /// Show what would be moved; push nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print what was done as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn archive(a: ArchiveArgs) -> ExitCode {
    let opts = archive::ArchiveOptions {
        keep: a.keep,
        archive_branch: a.archive_branch.clone(),
    };
    let done = match archive::run(&a.repo, &opts, a.dry_run) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let s = &done.summary;
    if a.json {
        say!(
            "{}",
            serde_json::json!({
                "dry_run": a.dry_run,
                "archive_branch": a.archive_branch,
                "results": s.results,
                "kept": s.kept,
                "moved": s.moved,
                "already_archived": s.already_archived,
                "kept_for_dependants": s.kept_for_dependants,
            })
        );
        return ExitCode::SUCCESS;
    }
    let verb = if a.dry_run { "would be " } else { "" };
    // One line per result would be tens of thousands on a first run: the
    // count, and the files whose name changed (their old name was taken).
    for (from, to) in s.renamed() {
        say!("{}: {verb}archived as {}", esc(from), esc(to));
    }
    for path in &s.already_archived {
        say!("{}: {verb}removed (the same file is archived)", esc(path));
    }
    let dependants = if s.kept_for_dependants > 0 {
        format!(
            " ({} of them because a task still to run runs after them)",
            s.kept_for_dependants
        )
    } else {
        String::new()
    };
    eprintln!(
        "{} of {} results {verb}moved to {}; {} kept on {}{dependants}",
        s.moved.len() + s.already_archived.len(),
        s.results,
        a.archive_branch,
        s.kept,
        a.repo.branch
    );
    ExitCode::SUCCESS
}
