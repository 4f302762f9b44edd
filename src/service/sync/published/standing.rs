//! A node's standing, published beside its results when its pushes keep
//! losing (PROTOCOL.md, Published results): its answers to the claims made
//! for it, and its record. A node slower than its peers (a tenth of a core
//! among nodes with more, or farther from the forge) makes a round longer
//! than the peers leave between their pushes, and loses every one: traced
//! in a drain of 8 such nodes of two speeds, a slow node landed nothing
//! for 25 s. Its claims stayed unanswered, so no idle peer took them over,
//! and past `answer_by` they would be reaped as orphans while it ran them.
//! A peer's commit carries its standing as it carries its results: each
//! answer as the node would write it, and its record if newer than the
//! one at the tip. Both are the node's own files, which it could push
//! itself: carrying them gives a publisher no power it lacks.

use std::collections::BTreeSet;

use super::{MAX_ENTRIES, beside_claims, deferred, listed_in};
use crate::git::published::Publish;
use crate::git::{Blob, Edit, Edits, GitError, GridRepo};
use crate::grid::claim::ClaimedTask;
use crate::grid::node::NodeRecord;
use crate::grid::{Id, layout};
use crate::service::sync::Draft;
use crate::time;

/// The directory of a published tree that holds the answers.
const ANSWERS: &str = "answers";
/// The published record's file.
const RECORD: &str = "record.json";
/// An answer's file: the task and the moment its claim was made.
const MAX_ANSWER_BYTES: u64 = 1024;
/// A record that says it was written later than this past the carrier's
/// clock is not carried: it would stand against the node's next ones.
const MAX_SKEW_SECS: i64 = 60;

#[derive(serde::Serialize, serde::Deserialize)]
struct Answer {
    task_id: Id,
    claimed_at: String,
}

/// What a node publishes of its standing: the claims made for it that it
/// answers (task, the moment each was made) and its record's file as its
/// next commit would write it (signed where it has a key: a carrier
/// copies the bytes, which only the node could sign).
pub struct Standing<'a> {
    pub answers: Vec<(&'a Id, &'a str)>,
    pub record: Vec<u8>,
}

/// `publication` (its results, if any) with `node`'s standing beside them.
pub fn with_standing(publication: Option<Publish>, node: &Id, s: &Standing<'_>) -> Publish {
    let mut p = publication.unwrap_or_else(|| Publish {
        node: node.to_string(),
        message: format!("{node}: answers and record for the next commit to carry\n"),
        edits: Edits::new(),
        sent: Default::default(),
    });
    for (id, claimed_at) in s.answers.iter().take(MAX_ENTRIES) {
        let answer = Answer {
            task_id: (*id).clone(),
            claimed_at: (*claimed_at).to_owned(),
        };
        p.edits.insert(
            format!("{ANSWERS}/{id}.json").into_bytes(),
            Edit::Put(serde_json::to_vec(&answer).expect("an answer serializes")),
        );
    }
    p.edits
        .insert(RECORD.as_bytes().to_vec(), Edit::Put(s.record.clone()));
    p
}

/// Carry `peer`'s standing published in `commit`: its answers to claims
/// at this tip still made for it and unanswered, and its record if newer
/// than the tip's. True if nothing in it can be carried now or later.
pub(super) fn carry(
    repo: &GridRepo,
    d: &mut Draft<'_>,
    touched: &mut BTreeSet<Id>,
    peer: &Id,
    commit: &str,
) -> Result<bool, GitError> {
    let ids = listed_in(repo, commit, ANSWERS)?.unwrap_or_default();
    let (mut specs, mut caps) = beside_claims(d, commit, (ANSWERS, MAX_ANSWER_BYTES), &ids);
    specs.push(format!("{commit}:{RECORD}"));
    specs.push(format!("{}:{}", d.tip, layout::node_file(peer)));
    caps.extend([layout::MAX_NODE_RECORD_BYTES; 2]);
    let blobs = repo.read_objects_capped(&specs, &caps)?;
    let (answers, record) = blobs.split_at(blobs.len() - 2);
    let mut settled = !deferred(record);
    let mut wrote = false;
    if let Some(r) = newer_record(record, peer, d) {
        d.edits
            .insert(layout::node_file(peer).into_bytes(), Edit::Put(r.to_vec()));
        wrote = true;
    }
    for (id, found) in ids.iter().zip(answers.chunks(2)) {
        if deferred(found) {
            settled = false;
            continue;
        }
        let Some(c) = answerable(&found[0], &found[1], id, peer, d) else {
            continue;
        };
        if touched.contains(id) {
            settled = false;
            continue;
        }
        d.edits.insert(
            layout::in_progress_file(id).into_bytes(),
            Edit::Put(c.answered().to_bytes()),
        );
        d.summary.push(format!("take {id} for {peer}"));
        touched.insert(id.clone());
        wrote = true;
    }
    if wrote {
        d.report.carried_standing.push(peer.clone());
    }
    // Written now: if this push loses, the next plan reads it again.
    Ok(settled && !wrote)
}

/// The published record (`found`: it, then the tip's), if it is `peer`'s
/// and written later than the tip's, not far past this node's clock.
fn newer_record<'b>(found: &'b [Blob], peer: &Id, d: &Draft<'_>) -> Option<&'b [u8]> {
    let bytes = found[0].data()?;
    let published = NodeRecord::parse(bytes).ok()?;
    let at = time::parse(&published.last_heartbeat)?;
    if &published.node_id != peer || at > d.req.now + chrono::Duration::seconds(MAX_SKEW_SECS) {
        return None;
    }
    let older = found[1]
        .data()
        .and_then(|b| NodeRecord::parse(b).ok())
        .and_then(|r| time::parse(&r.last_heartbeat))
        .is_some_and(|tip_at| tip_at >= at);
    (!older).then_some(bytes)
}

/// The claim at the tip (`claim`) that `entry` answers, if it is still
/// made for `peer` at the moment the answer names, and unanswered.
fn answerable(
    entry: &Blob,
    claim: &Blob,
    id: &Id,
    peer: &Id,
    d: &Draft<'_>,
) -> Option<ClaimedTask> {
    let answer = serde_json::from_slice::<Answer>(entry.data()?).ok()?;
    let c = ClaimedTask::parse(&format!("{id}.json"), claim.data()?, d.req.rules).ok()?;
    (&answer.task_id == id
        && &c.claim.node_id == peer
        && c.claim.claimed_at == answer.claimed_at
        && c.claim.unanswered())
    .then_some(c)
}
