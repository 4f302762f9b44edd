//! The node records at a tip, read as every reader must: bounded, and a
//! record that names another node than its file is no record.

use std::collections::HashMap;

use crate::git::{Blob, Edit, EntryMode, GitError, GridRepo, Oid, TreeEntry};
use crate::grid::node::junk_record;
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
    Ok(records_and_junk(repo, tip, except, None)?.0)
}

/// The files of `nodes/` that are no node's record, as a reap removes
/// them: their names with why, and the directory without them.
#[derive(Debug)]
pub struct Junk {
    pub removed: Vec<(String, String)>,
    /// `nodes/` written again without them (one `mktree`: fast-import
    /// would edit a directory of 100,000 a name at a time).
    pub tree: Oid,
}

impl Junk {
    /// The edit that writes `nodes/` again without them: first in a
    /// commit's order, so a record the same commit writes goes over it.
    pub fn edit(&self) -> (Vec<u8>, Edit) {
        let edit = Edit::Object {
            mode: EntryMode::Tree,
            oid: self.tree.clone(),
        };
        (layout::NODES.as_bytes().to_vec(), edit)
    }

    /// Logged, and said in the commit's message.
    pub fn say(&self) -> String {
        let shown: Vec<String> = self
            .removed
            .iter()
            .take(3)
            .map(|(name, why)| format!("{}: {why}", crate::escape::line(name)))
            .collect();
        tracing::warn!(files = self.removed.len(), first = %shown.join("; "), "files in nodes/ that are no node's record, to remove");
        format!("remove {} junk node records", self.removed.len())
    }
}

/// [`records`], read once with, when `now` is given, the junk among the
/// files (`grid::node::junk_record`), if any.
pub fn records_and_junk(
    repo: &GridRepo,
    tip: &str,
    except: Option<&str>,
    now: Option<Timestamp>,
) -> Result<(Vec<NodeRecord>, Option<Junk>), GitError> {
    let listed: Vec<TreeEntry> = repo.list_dir(tip, layout::NODES)?;
    let keep_file = |e: &TreeEntry| e.name == layout::KEEP_FILE.as_bytes();
    let files: Vec<&TreeEntry> = listed
        .iter()
        .filter(|e| e.mode == EntryMode::File && !keep_file(e))
        .collect();
    let blobs = repo.read_objects(
        &files.iter().map(|e| e.oid.clone()).collect::<Vec<_>>(),
        layout::MAX_NODE_RECORD_BYTES,
    )?;
    let read: HashMap<&str, &Blob> = files.iter().map(|e| e.oid.as_str()).zip(&blobs).collect();
    let bytes_of = |e: &TreeEntry| match e.mode {
        EntryMode::File => read.get(e.oid.as_str()).and_then(|b| b.data()),
        _ => None,
    };
    let records = files
        .iter()
        .filter(|e| except.is_none_or(|me| layout::json_stem(&e.name_lossy()) != Some(me)))
        .filter_map(|e| {
            NodeRecord::parse(bytes_of(e)?)
                .ok()
                .filter(|r| layout::json_stem(&e.name_lossy()) == Some(r.node_id.as_str()))
        })
        .collect();
    let Some(now) = now else {
        return Ok((records, None));
    };
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    for e in &listed {
        // A blob not read this time (a read budget spent) is judged later.
        let unread = e.mode == EntryMode::File
            && read
                .get(e.oid.as_str())
                .is_none_or(|b| matches!(b, Blob::Missing | Blob::Deferred { .. }));
        let why = junk_record(&e.name_lossy(), bytes_of(e), now);
        match why.filter(|_| !unread && !keep_file(e)) {
            Some(why) => removed.push((e.name_lossy(), why)),
            None => kept.push(e.clone()),
        }
    }
    if removed.is_empty() {
        return Ok((records, None));
    }
    let tree = repo.make_tree(&kept)?;
    Ok((records, Some(Junk { removed, tree })))
}
