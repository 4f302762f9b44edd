//! What `check` reads of the grid for `[trust]`: its policy, and its
//! node records, from one shallow fetch of the branch into a scratch
//! repository; and the live peers whose records a node enforcing that
//! policy would leave out of its reckoning (an older worker's, unsigned,
//! or one signed by a key the policy does not list for it). Switching to
//! `enforce` before they are mended makes this node claim as if they were
//! not there, and fail a long task only such a peer would take.

use std::time::Duration;

use super::{Line, Verdict};
use crate::config::Config;
use crate::git::{Blob, EntryMode, Git, GridRepo};
use crate::grid::{Id, NodeRecord, layout};
use crate::trust::{KeyStanding, Verifier};

/// The most records read, and the most peers named in the line.
const RECORDS_READ: usize = 4096;
const PEERS_NAMED: usize = 5;

/// The grid's branch as `check` reads it.
pub(super) struct GridRead {
    /// `.dgrid/policy.json`, if the grid has one.
    pub policy: Option<Vec<u8>>,
    /// Each record in `nodes/`, by file name, as read (bounded).
    pub records: Vec<(String, Vec<u8>)>,
}

/// Fetch the branch (depth 1) into a scratch repository and read the
/// policy and the node records, each bounded.
pub(super) fn read(cfg: &Config) -> Result<GridRead, String> {
    use crate::trust::policy::{MAX_POLICY_BYTES, POLICY_FILE};
    let scratch = tempfile::Builder::new()
        .prefix("dgrid-check-")
        .tempdir()
        .map_err(|e| format!("no temporary directory: {e}"))?;
    let git = Git::new(
        &cfg.git_binary,
        scratch.path(),
        cfg.git_timeout.min(Duration::from_secs(60)),
    )
    .with_env(cfg.access.env());
    let head = format!("refs/heads/{}", cfg.branch);
    git.run(&["init", "--quiet", "--bare"])
        .and_then(|_| {
            git.run(&[
                "fetch",
                "--quiet",
                "--depth",
                "1",
                "--",
                &cfg.repo_url,
                &head,
            ])
        })
        .map_err(|e| e.to_string())?;
    let repo = GridRepo::read_only(git, &cfg.branch);
    let tip = "FETCH_HEAD";
    let policy = match repo
        .read_path(tip, POLICY_FILE, MAX_POLICY_BYTES as u64)
        .map_err(|e| e.to_string())?
    {
        Blob::Data(p) => Some(p),
        Blob::Missing => None,
        unread => {
            return Err(format!(
                "{POLICY_FILE} {}",
                unread.why_unread().unwrap_or_default()
            ));
        }
    };
    let entries: Vec<_> = repo
        .list_dir(tip, layout::NODES)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|e| matches!(e.mode, EntryMode::File | EntryMode::Executable))
        .take(RECORDS_READ)
        .collect();
    let oids: Vec<String> = entries.iter().map(|e| e.oid.clone()).collect();
    let blobs = repo
        .read_objects(&oids, layout::MAX_NODE_RECORD_BYTES)
        .map_err(|e| e.to_string())?;
    let records = entries
        .iter()
        .zip(blobs)
        .filter_map(|(e, b)| Some((e.name_lossy(), b.into_data()?)))
        .collect();
    Ok(GridRead { policy, records })
}

/// The line on the peers a node enforcing `verifier`'s policy would leave
/// out, for a node in `warn` or `enforce`; none when every live peer's
/// record counts.
pub(super) fn peers_line(
    cfg: &Config,
    verifier: &Verifier,
    records: &[(String, Vec<u8>)],
) -> Option<Line> {
    let grid = &cfg.trust.pinned.as_ref()?.grid_id;
    let now = crate::time::now();
    let stale_after = chrono::Duration::from_std(cfg.stale_after).unwrap_or(chrono::Duration::MAX);
    let left: Vec<String> = records
        .iter()
        .filter_map(|(name, bytes)| {
            let record = NodeRecord::parse(bytes).ok()?;
            let own = layout::json_stem(name).and_then(|s| Id::parse(s).ok());
            if own.as_ref() != Some(&record.node_id)
                || record.node_id == cfg.node_id
                || !record.heard_within(now, stale_after)
            {
                return None;
            }
            let why = match crate::trust::record::signer(bytes, grid) {
                Err(e) => format!("its record {e}"),
                Ok(key) => match verifier.node_key_standing(&record.node_id, &key, now) {
                    KeyStanding::Listed | KeyStanding::NoPolicy => return None,
                    KeyStanding::Problem(p) => format!("its record's key: {p}"),
                },
            };
            Some(format!("{} ({why})", record.node_id))
        })
        .collect();
    if left.is_empty() {
        return None;
    }
    let named: Vec<&str> = left.iter().take(PEERS_NAMED).map(String::as_str).collect();
    let more = match left.len().saturating_sub(PEERS_NAMED) {
        0 => String::new(),
        n => format!(" and {n} more (`status --roots` names them all)"),
    };
    Some(Line {
        verdict: Verdict::Warn,
        what: "peers",
        detail: format!(
            "{} live peer(s) a node in `enforce` reckons without: {}{more}; it claims as if they were not there and fails a long task only they would take: have them upgrade and be listed (`trust add-node`) before enforcing",
            left.len(),
            crate::escape::line(&named.join(", "))
        ),
    })
}
