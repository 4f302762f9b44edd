//! Published outboxes (PROTOCOL.md, Published results): a branch of its
//! own, `outbox/<node>`, where a node puts the results it has not landed on
//! the grid's branch yet, for the next commit to land there, by whichever
//! node, to carry them.
//!
//! Every result goes through the one ref, a commit at a time. At the end of
//! a drain each node has its last results to land, and each push that loses
//! to a peer's costs a fetch and a push again: behind a far host, half a
//! second a turn, eight turns for eight nodes. A node's own branch has no
//! other writer, so a push there needs no fetch first and never loses; the
//! peers' next commits, which fetch these branches with the grid's, carry
//! what they find, and one commit lands the results of several nodes.
//!
//! Only a worker's clone fetches them ([`GridRepo::with_outboxes`]), and
//! only those of the peers holding claims at the last tip it planned on
//! ([`GridRepo::watch_outboxes`]): the branches of nodes that hold nothing
//! have nothing to carry, and a crowd of branches pushed by anyone costs
//! the fetch only its listing on the server; one named after such a peer,
//! which the peer's pattern matches, is fetched once and kept out from
//! then on ([`super::crowd`]). The tools read the grid's branch alone.

use crate::escape::Untrusted;

use super::command::GitError;
use super::crowd;
use super::edits::{Edits, Signature};
use super::repo::{GridRepo, OUTBOX_TRACKING as TRACKING, Watch};
use super::tree::Oid;

/// A node's outbox as it publishes it: the whole tree of its branch.
#[derive(Debug)]
pub struct Publish {
    pub node: String,
    pub edits: Edits,
    pub message: String,
    /// Set once a push of the branch was tried (one that failed may still
    /// have landed): from then on a peer may carry what it holds, whatever
    /// the node does after.
    pub sent: std::sync::atomic::AtomicBool,
}

impl Publish {
    /// Publish, as a transaction does after a lost round (or before its
    /// first push, deferring to peers at work), once: a second call sends
    /// nothing. A failure costs only the chance that a peer carries these
    /// (the node still lands them itself): logged, not returned.
    pub(super) fn publish(&self, repo: &GridRepo, who: &Signature) {
        if branch_for(&self.node).is_some()
            && self.sent.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        match repo.publish(&self.node, &self.edits, &self.message, who) {
            Ok(commit) => tracing::debug!(%commit, "outbox published for peers to carry"),
            Err(error) => {
                tracing::debug!(error = %Untrusted(&error), "could not publish the outbox")
            }
        }
    }
}

/// A fetch's refspecs for the watched outboxes.
#[derive(Debug, Default)]
pub(super) struct OutboxSpecs {
    pub(super) patterns: Vec<String>,
    /// Negative refspecs: the crowds learnt.
    pub(super) kept_out: Vec<String>,
    pub(super) watched: Vec<String>,
}

fn lock(watch: &std::sync::Mutex<Watch>) -> std::sync::MutexGuard<'_, Watch> {
    watch
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The branch a node publishes to, if its id makes a ref name: an id may
/// hold `..` or end in `.lock`, which git refuses in a ref (such a node
/// publishes nothing, and lands its results as every node did before).
pub fn branch_for(node: &str) -> Option<String> {
    let safe = !node.contains("..") && !node.ends_with(".lock") && !node.ends_with('.');
    safe.then(|| format!("outbox/{node}"))
}

impl GridRepo {
    /// Fetch the published outboxes of the nodes it is told to watch with
    /// the grid's branch (none until told).
    pub fn with_outboxes(mut self) -> GridRepo {
        self.outboxes = Some(Default::default());
        self
    }

    /// Watch these nodes' published outboxes from the next fetch on (those
    /// whose id makes a branch name), in place of the ones watched before.
    pub fn watch_outboxes(&self, nodes: &[&str]) {
        let Some(watch) = &self.outboxes else {
            return;
        };
        let nodes: Vec<String> = nodes
            .iter()
            .filter(|n| branch_for(n).is_some())
            .map(|n| n.to_string())
            .collect();
        lock(watch).nodes = nodes;
    }

    /// Did the last fetch bring what `node` published, if anything? Only
    /// then does the clone know it (a node becomes watched once a tip
    /// shows it holding claims).
    pub fn fetched_outbox_of(&self, node: &str) -> bool {
        self.outboxes
            .as_ref()
            .is_some_and(|w| lock(w).fetched.iter().any(|n| n == node))
    }

    /// What the next fetch of the grid's branch asks for besides it.
    pub(super) fn outbox_refspecs(&self) -> OutboxSpecs {
        let Some(watch) = &self.outboxes else {
            return OutboxSpecs::default();
        };
        let mut watch = lock(watch);
        watch.fetched = watch.nodes.clone();
        OutboxSpecs {
            // By pattern: one that matches no branch is no error, where a
            // missing branch named in full would be. With protocol v2 the
            // server lists only refs under these prefixes.
            patterns: watch
                .nodes
                .iter()
                .map(|n| format!("+refs/heads/outbox/{n}*:{TRACKING}/{n}*"))
                .collect(),
            kept_out: watch.kept_out.refspecs(&watch.nodes),
            watched: watch.nodes.clone(),
        }
    }

    /// After a fetch of `watched`' patterns that reported `report`: learn
    /// the crowds it brought that no watched peer publishes to, keep them
    /// out of the next fetches, and delete their copies from the clone (a
    /// fetch prunes no ref a negative refspec excludes). Failures cost
    /// only the next fetch's time: logged.
    pub(super) fn keep_crowds_out(&self, report: &[u8], watched: &[String]) {
        let Some(watch) = &self.outboxes else {
            return;
        };
        let report = String::from_utf8_lossy(report);
        let strangers: Vec<String> = crowd::brought(&report, TRACKING)
            .into_iter()
            .filter(|n| !watched.iter().any(|w| w == n))
            .map(str::to_owned)
            .collect();
        if strangers.is_empty() {
            return;
        }
        let (added, gone) = {
            let mut watch = lock(watch);
            let added = watch.kept_out.learn(watched, &strangers);
            // Only the copies the next fetch leaves out: a copy deleted
            // that the next fetch brings again would make every fetch
            // bring the whole crowd.
            let gone: String = strangers
                .iter()
                .filter(|n| watch.kept_out.excludes(n, watched))
                .map(|n| format!("delete {TRACKING}/{n}\n"))
                .collect();
            (added, gone)
        };
        if !gone.is_empty()
            && let Err(error) =
                self.git
                    .run_with(&["update-ref", "--stdin"], Some(gone.as_bytes()), &[0])
        {
            tracing::debug!(error = %Untrusted(&error), "could not delete the crowd's copies");
        }
        if !added.is_empty() {
            // Ref names hold no control character (git refuses them),
            // but may hold invisible and bidirectional ones.
            tracing::warn!(
                branches = strangers.len(),
                kept_out = %Untrusted(added.join(" ")),
                "branches that a watched peer's outbox pattern matches, not its own: \
                 kept out of this node's fetches while it watches that peer \
                 (the grid's reap deletes those no running node owns)"
            );
        }
    }

    /// This git refused the patterns (a fetch failed with them and
    /// succeeded without): fetch the crowds as before.
    pub(super) fn forget_crowds(&self) {
        if let Some(watch) = &self.outboxes {
            lock(watch).kept_out.refuse();
        }
    }

    /// How many branches named after watched peers, not their own, the
    /// fetches have brought (the status page's count of crowds).
    pub fn outbox_strangers(&self) -> usize {
        self.outboxes
            .as_ref()
            .map_or(0, |watch| lock(watch).kept_out.strangers)
    }

    /// [`GridRepo::outbox_strangers`], and the patterns in force for a
    /// fetch of `watched`' outboxes.
    pub fn crowds_kept_out(&self, watched: &[&str]) -> (usize, Vec<String>) {
        let Some(watch) = &self.outboxes else {
            return (0, Vec::new());
        };
        let watch = lock(watch);
        let watched: Vec<String> = watched.iter().map(|w| w.to_string()).collect();
        (watch.kept_out.strangers, watch.kept_out.refspecs(&watched))
    }

    /// The last fetched commit of each node's published outbox (`None`:
    /// none, or not a commit), read through the kept `--batch-check`.
    pub fn published_tips(&self, nodes: &[&str]) -> Result<Vec<Option<Oid>>, GitError> {
        let specs: Vec<String> = nodes
            .iter()
            .map(|n| match branch_for(n) {
                Some(_) => format!("{TRACKING}/{n}"),
                // Asks for nothing that can exist.
                None => "refs/dgrid/none".to_owned(),
            })
            .collect();
        Ok(self
            .object_info(&specs)?
            .into_iter()
            .map(|info| info.filter(|i| i.kind == "commit").map(|i| i.oid))
            .collect())
    }

    /// Publish `edits` (the whole tree: the commit has no parent) as
    /// `node`'s outbox, replacing what it published before. Nobody else
    /// writes the branch, so the push does not wait for a fetch.
    pub fn publish(
        &self,
        node: &str,
        edits: &Edits,
        message: &str,
        who: &Signature,
    ) -> Result<Oid, GitError> {
        let Some(branch) = branch_for(node) else {
            return Err(GitError::Unexpected {
                args: "push".into(),
                what: format!("{node:?} makes no branch name"),
            });
        };
        let commit = self.commit_edits(None, edits, message, who)?;
        let spec = format!("+{commit}:refs/heads/{branch}");
        // Until the push answers, the branch may hold this commit or the
        // one before: either is this node's to delete on its way out.
        if let Some(watch) = &self.outboxes {
            let published = &mut lock(watch).published;
            published.push(commit.clone());
            if published.len() > 2 {
                published.remove(0);
            }
        }
        self.git.run(&["push", "--quiet", "origin", &spec])?;
        Ok(commit)
    }

    /// On a node's way out, with nothing left in its outbox: delete the
    /// branch it published to in this run, leased to the last commit it
    /// pushed there (`delete_outboxes`). `None` when it published nothing
    /// (a branch an earlier run left is the reap's), else the refusal,
    /// if any (a push whose answer was lost may have left the commit
    /// before).
    pub fn unpublish(&self, node: &str) -> Option<Result<(), String>> {
        let watch = self.outboxes.as_ref()?;
        let published = std::mem::take(&mut lock(watch).published);
        let mut refusal = None;
        for commit in published.into_iter().rev() {
            match self.delete_outboxes(&[(node.to_owned(), commit)]).pop() {
                None => return Some(Ok(())),
                Some((_, why)) => refusal = refusal.or(Some(why)),
            }
        }
        refusal.map(Err)
    }
}

/// The published outboxes on the remote, as far as a bounded listing
/// goes: (node, commit) for each branch `outbox/<node>`.
#[derive(Debug, Default)]
pub struct Outboxes {
    pub branches: Vec<(String, Oid)>,
    /// The listing went past its bound: these are the first branches only.
    pub truncated: bool,
}

/// The most of `ls-remote` read for the published outboxes: about 8,000
/// branches. Anyone able to push can make more; the rest wait for the
/// next reap.
const MAX_LISTING: usize = 1 << 20;

/// Deletions per push: one push names each branch twice (its lease and
/// its refspec) on the command line, some 200 KiB for a thousand. The
/// remote's time goes to the deletions themselves (a thousand leased ones
/// in one push took 3.7 s on a local remote), so fewer pushes save little
/// but processes.
const DELETIONS_PER_PUSH: usize = 1000;

impl GridRepo {
    /// The published outboxes on the remote (for the reap to tidy).
    pub fn list_outboxes(&self) -> Result<Outboxes, GitError> {
        let (out, truncated) = self.git.run_capped(
            &["ls-remote", "--heads", "origin", "refs/heads/outbox/*"],
            MAX_LISTING,
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines: Vec<&str> = text.lines().collect();
        if truncated {
            // The last line may be cut short.
            lines.pop();
        }
        let branches = lines
            .iter()
            .filter_map(|line| {
                let (oid, name) = line.split_once('\t')?;
                let node = name.strip_prefix("refs/heads/outbox/")?;
                let is_oid = oid.len() >= 40 && oid.bytes().all(|b| b.is_ascii_hexdigit());
                is_oid.then(|| (node.to_owned(), oid.to_owned()))
            })
            .collect();
        Ok(Outboxes {
            branches,
            truncated,
        })
    }

    /// Delete these published outboxes, each only if it is still at the
    /// commit given (a node that published again since keeps its branch).
    /// Those not deleted are returned, with the remote's word or git's.
    pub fn delete_outboxes(&self, branches: &[(String, Oid)]) -> Vec<(String, String)> {
        let mut kept = Vec::new();
        for batch in branches.chunks(DELETIONS_PER_PUSH) {
            let mut args: Vec<String> = vec!["push".into(), "--porcelain".into()];
            for (node, oid) in batch {
                args.push(format!("--force-with-lease=refs/heads/outbox/{node}:{oid}"));
            }
            args.push("origin".into());
            args.extend(
                batch
                    .iter()
                    .map(|(node, _)| format!(":refs/heads/outbox/{node}")),
            );
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            // git exits 1 when the remote refused some: `--porcelain` says
            // each ref's fate, and only a line flagged `-` is a deletion.
            match self.git.run_with(&args, None, &[0, 1]) {
                Ok(out) => {
                    let said = out.stdout_str();
                    for (node, _) in batch {
                        // `-\t:refs/heads/outbox/<node>\t[deleted]`, or
                        // `!\t(delete):refs/heads/outbox/<node>\t[rejected] (why)`
                        let name = format!(":refs/heads/outbox/{node}\t");
                        match said.lines().find(|l| l.contains(&name)) {
                            Some(l) if l.starts_with('-') => {}
                            Some(l) => kept.push((
                                node.clone(),
                                l.rsplit('\t').next().unwrap_or("").to_owned(),
                            )),
                            None => kept.push((node.clone(), "the push did not say".into())),
                        }
                    }
                }
                Err(e) => kept.extend(batch.iter().map(|(node, _)| (node.clone(), e.to_string()))),
            }
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_that_makes_no_ref_name_publishes_nothing() {
        assert_eq!(branch_for("n1").as_deref(), Some("outbox/n1"));
        assert_eq!(
            branch_for("node-7.eu_west").as_deref(),
            Some("outbox/node-7.eu_west")
        );
        for bad in ["a..b", "n.lock", "n."] {
            assert_eq!(branch_for(bad), None, "{bad}");
        }
    }
}
