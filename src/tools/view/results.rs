//! Reading `completed/` and `failed/`: each result as a `ResultView`,
//! parsed into a small struct that skips the output (a failure keeps the
//! tail of its stderr), or as unreadable with the reason.

use serde::Deserialize;

use super::model::ResultView;
use super::{blob_ids, files, tail};
use crate::git::{Blob, EntryMode, GitError, GridRepo, TreeEntry};
use crate::grid::layout;

/// The tail of a failure's stderr that is shown with it.
const STDERR_TAIL: usize = 400;

/// The fields of a result file the views need; the rest is skipped.
#[derive(Deserialize)]
struct ResultLite {
    #[serde(default)]
    task_id: String,
    #[serde(default)]
    node_id: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    exit_code: Option<i64>,
    #[serde(default)]
    timestamp: String,
    #[serde(default)]
    duration_ms: Option<u64>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ResultWithStderr {
    #[serde(default)]
    stderr: String,
}

/// Read every result of `dir` into `out`; returns how many files it holds.
pub(super) fn read_results(
    repo: &GridRepo,
    commit: &str,
    dir: &str,
    keep_stderr: bool,
    out: &mut Vec<ResultView>,
) -> Result<usize, GitError> {
    let entries: Vec<TreeEntry> = files(repo.list_dir(commit, dir)?)
        .into_iter()
        .filter(|e| matches!(e.mode, EntryMode::File | EntryMode::Executable))
        .collect();
    let blobs = repo.read_objects(&blob_ids(&entries), layout::MAX_RESULT_BYTES)?;
    let default_status = if dir == layout::COMPLETED {
        "completed"
    } else {
        "failed"
    };
    for (e, b) in entries.iter().zip(blobs) {
        let file = format!("{dir}/{}", e.name_lossy());
        let parsed = match &b {
            Blob::Data(bytes) => serde_json::from_slice::<ResultLite>(bytes)
                .map_err(|e| format!("not a result file: {e}")),
            other => Err(other.why_unread().unwrap_or_else(|| "is gone".to_owned())),
        };
        let bytes = b.data().unwrap_or_default();
        let view = match parsed {
            Ok(r) => ResultView {
                file,
                task_id: r.task_id,
                node_id: r.node_id,
                status: r.status.unwrap_or_else(|| default_status.to_owned()),
                exit_code: r.exit_code,
                timestamp: r.timestamp,
                duration_ms: r.duration_ms,
                error: r.error,
                stderr_tail: keep_stderr
                    .then(|| serde_json::from_slice::<ResultWithStderr>(bytes).ok())
                    .flatten()
                    .map(|s| tail(&s.stderr, STDERR_TAIL))
                    .filter(|s| !s.is_empty()),
                trust: None,
                attested_by: None,
                trust_error: None,
                task_signed: None,
            },
            Err(err) => ResultView {
                error: Some(format!("{file}: {err}")),
                file,
                task_id: String::new(),
                node_id: String::new(),
                status: "unreadable".into(),
                exit_code: None,
                timestamp: String::new(),
                duration_ms: None,
                stderr_tail: None,
                trust: None,
                attested_by: None,
                trust_error: None,
                task_signed: None,
            },
        };
        out.push(view);
    }
    Ok(entries.len())
}
