//! Reading `nodes/`: each node record as a `NodeView`, or, for a file that
//! is not one (or names another node than its file), an error under the
//! file's name.

use super::model::NodeView;
use super::{age, blob_ids, files};
use crate::git::{Blob, EntryMode, GitError, GridRepo};
use crate::grid::{NodeRecord, layout};
use crate::time::Timestamp;

pub(super) fn node_views(
    repo: &GridRepo,
    commit: &str,
    now: Timestamp,
) -> Result<Vec<NodeView>, GitError> {
    let entries = files(repo.list_dir(commit, layout::NODES)?);
    let blobs = repo.read_objects(&blob_ids(&entries), layout::MAX_NODE_RECORD_BYTES)?;
    let mut blobs = blobs.into_iter();
    let mut out = Vec::new();
    for e in &entries {
        let name = e.name_lossy();
        let id = layout::json_stem(&name).unwrap_or(&name).to_owned();
        let parsed = if matches!(e.mode, EntryMode::File | EntryMode::Executable) {
            match blobs.next().unwrap_or(Blob::Missing) {
                Blob::Data(b) => Some(
                    NodeRecord::parse(&b)
                        .map(|r| (r, b))
                        .map_err(|e| e.to_string()),
                ),
                other => Some(Err(other
                    .why_unread()
                    .unwrap_or_else(|| "is gone".to_owned()))),
            }
        } else {
            None
        };
        // A record that names another node than its file mimics it: shown
        // under its file's name, as an error, never as that node.
        let parsed = match parsed {
            Some(Ok((r, _))) if r.node_id.as_str() != id => Some(Err(format!(
                "names node {:?}, but the file is named for {:?}",
                r.node_id.as_str(),
                id
            ))),
            other => other,
        };
        out.push(match parsed {
            Some(Ok((r, bytes))) => NodeView {
                node_id: r.node_id.to_string(),
                status: serde_json::to_value(r.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                heartbeat_age_s: age(now, &r.last_heartbeat),
                stale: false,
                last_heartbeat: r.last_heartbeat,
                hostname: r.hostname,
                version: r.version,
                engine: r.engine,
                running: r.running,
                tasks_completed: r.tasks_completed,
                tasks_failed: r.tasks_failed,
                problem: r.problem,
                labels: r.labels,
                exclusive: r.exclusive,
                paused: r.paused,
                takes_assigned: r.takes_assigned,
                unanswered_at: r.unanswered_at,
                overdue_at: r.overdue_at,
                error: None,
                key: r.node_key.as_deref().map(|k| {
                    crate::trust::keys::parse_public(k)
                        .map(|k| crate::trust::keys::fingerprint(&k))
                        .unwrap_or_else(|e| format!("unreadable: {e}"))
                }),
                key_problem: None,
                key_line: r.node_key,
                record_problem: None,
                record_bytes: bytes,
            },
            other => NodeView {
                node_id: id,
                status: "unknown".into(),
                last_heartbeat: String::new(),
                heartbeat_age_s: None,
                stale: false,
                hostname: String::new(),
                version: String::new(),
                engine: String::new(),
                running: Vec::new(),
                tasks_completed: 0,
                tasks_failed: 0,
                problem: None,
                labels: Vec::new(),
                exclusive: Vec::new(),
                paused: None,
                takes_assigned: false,
                unanswered_at: None,
                overdue_at: None,
                key: None,
                key_problem: None,
                key_line: None,
                record_problem: None,
                record_bytes: Vec::new(),
                error: Some(match other {
                    Some(Err(e)) => format!("{}/{name}: not a node record: {e}", layout::NODES),
                    _ => format!("{}/{name}: not a regular file", layout::NODES),
                }),
            },
        });
    }
    Ok(out)
}
