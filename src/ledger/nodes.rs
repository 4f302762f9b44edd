//! The node records at a tip, read as every reader must: bounded, and a
//! record that names another node than its file is no record.

use crate::git::GitError;
use crate::git::{EntryMode, GridRepo, TreeEntry};
use crate::grid::schedule::NodeLabels;
use crate::grid::{NodeRecord, layout};
use crate::time::Timestamp;

/// The labels of the nodes live at `now` (idle or busy, beating within
/// `stale_after`), by node: who serves which lanes.
pub fn live_labels(
    records: &[NodeRecord],
    now: Timestamp,
    stale_after: chrono::Duration,
) -> Vec<(String, NodeLabels)> {
    records
        .iter()
        .filter(|r| r.is_live(now, stale_after))
        .map(|r| (r.node_id.to_string(), r.node_labels()))
        .collect()
}

/// Every readable record in `nodes/` at `tip`, but `except`'s. A record too
/// big to read, not JSON, or naming another node than its file is left
/// out: that node is not counted.
pub fn records(
    repo: &GridRepo,
    tip: &str,
    except: Option<&str>,
) -> Result<Vec<NodeRecord>, GitError> {
    let files: Vec<TreeEntry> = repo
        .list_dir(tip, layout::NODES)?
        .into_iter()
        .filter(|e| e.mode == EntryMode::File && e.name != layout::KEEP_FILE.as_bytes())
        .filter(|e| except.is_none_or(|me| layout::json_stem(&e.name_lossy()) != Some(me)))
        .collect();
    let blobs = repo.read_objects(
        &files.iter().map(|e| e.oid.clone()).collect::<Vec<_>>(),
        layout::MAX_NODE_RECORD_BYTES,
    )?;
    Ok(blobs
        .iter()
        .zip(&files)
        .filter_map(|(b, e)| Some((b.data()?, e)))
        .filter_map(|(b, e)| {
            NodeRecord::parse(b)
                .ok()
                .filter(|r| layout::json_stem(&e.name_lossy()) == Some(r.node_id.as_str()))
        })
        .collect())
}
