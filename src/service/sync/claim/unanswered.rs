//! Taking over claims made for a peer that has left them unanswered past
//! `grid::claim::ANSWER_LATE` (PROTOCOL.md, Claims taken over). A node
//! that is well answers a claim made for it within `ANSWER_AFTER` and a few
//! lost races; one that has not in 30 s is most likely gone (killed while
//! idle, its record still fresh). The steal leaves such claims alone (the
//! peer may start them at any look, unrecorded), and the reap requeues
//! them only past `answer_by`, a minute, and at most once a minute: a
//! helper's sweep saw a node killed while idle dealt a third of a backlog,
//! its peers idle beside those claims about 100 s. Here an idle node takes
//! them over at 30 s, as it takes over a busy peer's line, and marks the
//! peer as taking no claims made for it (as the reap would): without that
//! mark, the next backlog is dealt to it again.
//!
//! If the peer was alive after all and had started one, it runs on and its
//! result lands (`Claim::taken_from`); at its next sync it finds the
//! others naming this node and drops them.

use std::collections::{BTreeMap, BTreeSet};

use super::takeover::take_over;
use crate::git::{Edit, GitError, GridRepo, TreeEntry};
use crate::grid::claim::{ANSWER_LATE, ClaimedTask};
use crate::grid::{Id, layout};
use crate::ledger::reap::{Silent, silenced};
use crate::service::sync::{Draft, assigned, published};

/// Take over, for this node, up to `up_to` claims made for peers that have
/// left them unanswered past `ANSWER_LATE` (`claims`: those at the tip, in
/// `in_progress`), highest level first; how many it took.
pub(super) fn take_unanswered(
    repo: &GridRepo,
    d: &mut Draft<'_>,
    touched: &mut BTreeSet<Id>,
    (claims, in_progress): (&BTreeMap<Id, assigned::HeldClaim>, &[TreeEntry]),
    up_to: usize,
) -> Result<usize, GitError> {
    let req = d.req;
    let now = req.now;
    // The peer's silence counts only while this node has reached the grid
    // (as the steal and the reap read it): while the grid was away, the
    // peer could not answer either.
    let heard = req.reached_since.map_or(chrono::Duration::zero(), |t| {
        now - t - chrono::Duration::milliseconds((req.pickup_secs * 1000.0) as i64)
    });
    if up_to == 0 || heard < ANSWER_LATE {
        return Ok(0);
    }
    let mut late: Vec<(u8, &Id, &Id)> = claims
        .iter()
        .filter(|(task, c)| {
            &c.node != req.node
                && c.late_at.is_some_and(|t| t <= now)
                && !touched.contains(*task)
                && req.labels.serves(&c.class).is_ok()
        })
        .map(|(task, c)| (c.level, task, &c.node))
        .collect();
    if late.is_empty() {
        return Ok(0);
    }
    // Not what a peer has published an entry for (it ran it, or gave it
    // up), and only from a peer whose published outbox the last fetch
    // brought.
    let published = published::published_ids(repo, d, in_progress)?;
    late.retain(|(_, task, peer)| {
        repo.fetched_outbox_of(peer.as_str())
            && !published.get(*peer).is_some_and(|p| p.contains(*task))
    });
    late.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let ids: Vec<&Id> = late.iter().map(|l| l.1).collect();
    let blobs = assigned::claim_files(repo, d, &ids)?;
    let mut taken = 0;
    let mut silent: BTreeSet<Id> = BTreeSet::new();
    let mut queued_before = chrono::Duration::zero();
    for ((_, id, peer), blob) in late.into_iter().zip(blobs) {
        if taken == up_to {
            break;
        }
        let Some(c) = blob
            .data()
            .and_then(|b| ClaimedTask::parse(&format!("{id}.json"), b, req.rules).ok())
            .filter(|c| &c.claim.node_id == peer && c.claim.late_at().is_some_and(|t| t <= now))
        else {
            continue;
        };
        // Not a task that reads inputs: it goes back at `answer_by`, by
        // the reap.
        let Some(q) = take_over(repo, d, touched, (id, &c), queued_before)? else {
            continue;
        };
        queued_before = q;
        d.report.taken_unanswered.push((id.clone(), peer.clone()));
        silent.insert(peer.clone());
        taken += 1;
    }
    for peer in silent {
        silence(repo, d, &peer)?;
    }
    Ok(taken)
}

/// Mark `peer`'s record at the tip as taking no claims made for it, as the
/// reap does for a claim unanswered past `answer_by`; its own next write
/// says it takes them again, if it is alive after all.
fn silence(repo: &GridRepo, d: &mut Draft<'_>, peer: &Id) -> Result<(), GitError> {
    let path = layout::node_file(peer);
    if d.edits.contains_key(path.as_bytes()) {
        return Ok(());
    }
    let spec = format!("{}:{path}", d.tip);
    let Some(record) = repo
        .read_objects(&[spec], layout::MAX_NODE_RECORD_BYTES)?
        .pop()
        .and_then(|b| b.data().map(<[u8]>::to_vec))
    else {
        return Ok(());
    };
    let takes = serde_json::from_slice::<serde_json::Value>(&record)
        .is_ok_and(|v| v["takes_assigned"] == true);
    if !takes {
        return Ok(());
    }
    if let Some(bytes) = silenced(&record, d.req.now, Silent::Unanswered) {
        d.edits.insert(path.into_bytes(), Edit::Put(bytes));
        d.summary.push(format!(
            "{peer} {}: it takes no claims made for it",
            Silent::Unanswered.why()
        ));
        d.report.silent.push(peer.clone());
    }
    Ok(())
}
