//! The worker's private clone of the grid: a bare repository under the state
//! directory, holding `origin/main` and the objects the worker writes. There
//! is no work tree and no index: the worker reads with `ls-tree`/`cat-file`
//! and writes new trees with `mktree`, so the cost of a transaction depends on
//! the few directories it touches, not on how many results the grid holds.
//!
//! The clone is shallow. Its first fetch takes only the tip (`--depth=1`);
//! later fetches are plain incremental fetches, as cheap as in a full clone,
//! so the history from the first tip fetched onwards is complete. That is
//! what [`GridRepo::is_ancestor`] relies on: it only ever asks about a commit
//! this clone built on a tip it had fetched, against a tip fetched later, and
//! every commit between the two arrived with those incremental fetches.
//! [`GridRepo::maintain`] cuts the history back to the tip, so it must never
//! run while such a question is still open (a push whose answer was lost).
//! A shallow clone pushes like a full one: each push builds on the remote's
//! own tip, so the server never needs history the clone lacks.

use std::path::Path;

use crate::escape::Untrusted;

use super::batch::CatFiles;
use super::command::{Git, GitError};
use super::edits;

use super::tree::Oid;

/// Bytes of blobs one round of the worker (one fetch, one plan) may read:
/// a sync reads a sample of the queue, the claims, node records and what
/// peers published for it to carry, a few hundred KB on a busy grid. Past
/// it, blobs are [`Blob::Deferred`] to a later round, so that no push,
/// however crafted, makes one round read more than this.
pub const ROUND_READ_BUDGET: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct GridRepo {
    pub(super) git: Git,
    pub(super) branch: String,
    /// The tracking ref is known to exist: later fetches are incremental.
    /// Remembered so that each fetch need not ask (one process fewer per
    /// transaction round).
    pub(super) fetched: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Bytes left to read in this round, and what a round starts with.
    pub(super) budget: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub(super) round_budget: u64,
    /// The clone's kept `cat-file` processes, shared by its copies.
    pub(super) cat: std::sync::Arc<CatFiles>,
    /// The trees the last walk of each directory read (`walk.rs`).
    pub(super) walks: std::sync::Arc<super::walk::WalkCache>,
    /// The nodes whose published outboxes ([`super::published`]) the next
    /// fetch of the grid's branch brings along: a worker's clone watches
    /// its peers holding claims; the tools' clones watch none (`None`).
    pub(super) outboxes: Option<std::sync::Arc<std::sync::Mutex<Watch>>>,
}

/// The peers a worker's clone watches, and the crowds its fetches keep out
/// (`published.rs`).
#[derive(Debug, Default)]
pub struct Watch {
    pub(super) nodes: Vec<String>,
    /// The nodes the last fetch asked for (`nodes` as it was then).
    pub(super) fetched: Vec<String>,
    pub(super) kept_out: super::crowd::KeptOut,
    /// The last two commits this node pushed to its own outbox branch in
    /// this run, the last one last.
    pub(super) published: Vec<Oid>,
}

/// The remote-tracking ref the worker plans against.
const TRACKING: &str = "refs/remotes/origin/main";

/// Where the copies of the nodes' published outboxes ([`super::published`])
/// are kept: apart from `refs/remotes/`, like the other branches' copies.
pub(super) const OUTBOX_TRACKING: &str = "refs/dgrid/outbox";

/// Where fetched copies of other branches (the `archive`) are kept: apart
/// from `refs/remotes/`, so that no branch name can collide with [`TRACKING`].
const OTHER_TRACKING: &str = "refs/dgrid/branches";

impl GridRepo {
    /// Open the private clone at `dir`, creating it if needed, pointed at
    /// `url`. Nothing is fetched yet.
    pub fn open_or_init(git: Git, url: &str, branch: &str) -> Result<GridRepo, GitError> {
        let dir = git.dir().to_owned();
        std::fs::create_dir_all(&dir).map_err(|source| GitError::Spawn {
            binary: "mkdir".into(),
            args: dir.display().to_string(),
            source,
        })?;
        let repo = GridRepo {
            git,
            branch: branch.to_owned(),
            fetched: Default::default(),
            budget: std::sync::Arc::new(ROUND_READ_BUDGET.into()),
            round_budget: ROUND_READ_BUDGET,
            cat: Default::default(),
            walks: Default::default(),
            outboxes: None,
        };
        if !dir.join("HEAD").exists() {
            repo.git.run(&["init", "--quiet", "--bare"])?;
        }
        let fetch_spec = format!("+refs/heads/{branch}:{TRACKING}");
        let listed = repo
            .git
            .run_with(&["config", "--local", "--list"], None, &[0, 1])?;
        let set: std::collections::HashMap<String, String> = listed
            .stdout_str()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        for (key, value) in [
            ("remote.origin.url", url),
            ("remote.origin.fetch", fetch_spec.as_str()),
            // Housekeeping runs on the worker's schedule, never inside a claim
            // (an automatic gc mid-claim costs 150-200 ms, measured on a grid of
            // 50,000 results; DEVELOPING.md, What we measured).
            ("gc.auto", "0"),
            ("maintenance.auto", "false"),
            ("fetch.writeCommitGraph", "false"),
            ("core.logAllRefUpdates", "false"),
            // A fetch's report names each ref it brought, in full, whatever
            // the service user's own configuration says: `published.rs`
            // reads it for the crowd after a watched peer.
            ("fetch.output", "full"),
        ] {
            // Written only where it differs: a node restarted on a full
            // disk (systemd restarts it, and gives up after a few) starts,
            // and its syncs wait for space as they do in a run.
            if set.get(&key.to_ascii_lowercase()).map(String::as_str) != Some(value) {
                repo.git.run(&["config", key, value])?;
            }
        }
        Ok(repo)
    }

    /// A repository read in place, as it is: a grid's own checkout or bare
    /// repository, for the read-only tools (`status`, `dashboard`). Unlike
    /// [`GridRepo::open_or_init`] it configures and fetches nothing, so it
    /// never alters someone's clone.
    pub fn read_only(git: Git, branch: &str) -> GridRepo {
        GridRepo {
            git,
            branch: branch.to_owned(),
            fetched: Default::default(),
            budget: std::sync::Arc::new(ROUND_READ_BUDGET.into()),
            round_budget: ROUND_READ_BUDGET,
            cat: Default::default(),
            walks: Default::default(),
            outboxes: None,
        }
    }

    /// The grid's branch (`main`).
    pub fn branch(&self) -> &str {
        &self.branch
    }

    pub fn git(&self) -> &Git {
        &self.git
    }

    pub fn dir(&self) -> &Path {
        self.git.dir()
    }

    /// Fetch the branch and return the new tip of `origin/main`.
    pub fn fetch(&self) -> Result<Option<Oid>, GitError> {
        let branch = self.branch.clone();
        Ok(self.fetch_branches(&[branch.as_str()])?.pop().flatten())
    }

    /// Fetch several branches in one call and return their tips, in the
    /// order asked. The grid's branch must exist on the remote; any other
    /// may be absent (`None`, e.g. an `archive` not created yet).
    ///
    /// The first fetch into an empty clone (no tracking ref yet) takes only
    /// the tips (`--depth=1`): the clone never holds the grid's history.
    /// Every later fetch is plain, i.e. incremental, so the history from
    /// those tips onwards stays complete (see the module's notes).
    pub fn fetch_branches(&self, branches: &[&str]) -> Result<Vec<Option<Oid>>, GitError> {
        use std::sync::atomic::Ordering;
        let first = !self.fetched.load(Ordering::Relaxed) && self.tip()?.is_none();
        let mut present: Vec<&str> = branches.to_vec();
        // The watched outboxes, by pattern, less the crowds learnt
        // (`published.rs`, `crowd.rs`).
        let mut outboxes = match branches.contains(&self.branch.as_str()) {
            true => self.outbox_refspecs(),
            false => Default::default(),
        };
        let mut refused = false;
        loop {
            let specs: Vec<String> = present
                .iter()
                .map(|b| format!("+refs/heads/{b}:{}", self.tracking_ref(b)))
                .collect();
            let mut args = vec!["fetch", "--no-tags", "--no-write-fetch-head"];
            if first {
                args.push("--depth=1");
            }
            if outboxes.patterns.is_empty() {
                args.push("--quiet");
            } else {
                // Watching outboxes, the fetch reports what it brought (for
                // the crowds), and an outbox deleted on the remote goes from
                // the clone too.
                args.push("--prune");
            }
            args.push("origin");
            args.extend(specs.iter().map(String::as_str));
            args.extend(outboxes.patterns.iter().map(String::as_str));
            args.extend(outboxes.kept_out.iter().map(String::as_str));
            match self.git.run(&args) {
                Ok(out) => {
                    if refused {
                        self.forget_crowds();
                    }
                    if !outboxes.patterns.is_empty() {
                        self.keep_crowds_out(&out.stderr, &outboxes.watched);
                    }
                    break;
                }
                // git names the first missing ref and fetches nothing; drop
                // it (unless it is the grid's own branch) and ask again.
                Err(GitError::Failed { ref stderr, .. })
                    if present
                        .iter()
                        .any(|b| *b != self.branch && says_missing(stderr, b)) =>
                {
                    let gone = present
                        .iter()
                        .position(|b| *b != self.branch && says_missing(stderr, b))
                        .expect("checked above");
                    let gone = present.remove(gone);
                    // Deleted on the remote: forget the copy as well.
                    self.git
                        .run(&["update-ref", "-d", &self.tracking_ref(gone)])?;
                    if present.is_empty() {
                        break;
                    }
                }
                // A fetch with the crowds kept out failed: once more
                // without them. If that succeeds, this git refuses them,
                // and the crowds are fetched as before from then on.
                Err(GitError::Failed { ref stderr, .. }) if !outboxes.kept_out.is_empty() => {
                    tracing::warn!(stderr = %Untrusted(&stderr), "a fetch with the crowds kept out failed; trying without");
                    refused = true;
                    outboxes.kept_out.clear();
                }
                Err(e) => return Err(e),
            }
        }
        let tips: Vec<Option<Oid>> = branches
            .iter()
            .map(|b| self.branch_tip(b))
            .collect::<Result<_, _>>()?;
        let ours = branches.iter().position(|b| *b == self.branch);
        if ours.is_some_and(|i| tips[i].is_some()) {
            self.fetched.store(true, Ordering::Relaxed);
        }
        // Each fetch starts a round: a transaction plans anew from it.
        self.reset_read_budget();
        Ok(tips)
    }

    /// The ref a fetched branch is kept under.
    fn tracking_ref(&self, branch: &str) -> String {
        if branch == self.branch {
            TRACKING.to_owned()
        } else {
            format!("{OTHER_TRACKING}/{branch}")
        }
    }

    /// The last fetched tip of `branch`, without asking the remote: from
    /// the kept `--batch-check` ([`super::batch`]), which reads the ref
    /// afresh at each request (as git reads a ref: the loose file, else
    /// `packed-refs` if it changed), else from a `rev-parse` of its own.
    pub fn branch_tip(&self, branch: &str) -> Result<Option<Oid>, GitError> {
        let spec = format!("{}\n", self.tracking_ref(branch));
        if let Some(mut found) = self.cat.info(&self.git, spec.as_bytes(), 1) {
            return Ok(found.pop().flatten().map(|info| info.oid));
        }
        let out = self.git.run_with(
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &self.tracking_ref(branch),
            ],
            None,
            &[0, 1],
        )?;
        Ok((out.code == 0).then(|| out.stdout_str().to_owned()))
    }

    /// Is this clone shallow (it holds history only from some tip onwards)?
    pub fn is_shallow(&self) -> Result<bool, GitError> {
        let out = self.git.run(&["rev-parse", "--is-shallow-repository"])?;
        Ok(out.stdout_str() == "true")
    }

    /// Fetch the branch's whole history into this clone, if it is shallow,
    /// and return the tip: the policy tools look at every version of
    /// `.dgrid/policy.json` the branch held, which a shallow clone hides.
    /// Later fetches stay incremental, so the history stays complete.
    pub fn deepen(&self) -> Result<Option<Oid>, GitError> {
        if self.is_shallow()? {
            self.fetch_branch_to("--unshallow")?;
            // A reader started before would not see the new pack.
            self.release_readers();
        }
        self.tip()
    }

    /// Fetch the grid's branch to the depth `depth` says (`--depth=1`,
    /// `--unshallow`), nothing else.
    fn fetch_branch_to(&self, depth: &str) -> Result<(), GitError> {
        let spec = format!("+refs/heads/{}:{TRACKING}", self.branch);
        self.git
            .run(&[
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-write-fetch-head",
                depth,
                "origin",
                &spec,
            ])
            .map(drop)
    }

    /// The last fetched tip, without asking the remote.
    pub fn tip(&self) -> Result<Option<Oid>, GitError> {
        let branch = self.branch.clone();
        self.branch_tip(&branch)
    }

    /// Stop the kept `cat-file` processes ([`super::batch`]); the next
    /// read starts them again. For a node with nothing to do until its
    /// next poll: they hold a few MB each.
    pub fn release_readers(&self) {
        self.cat.reset();
    }

    /// How far the clone has grown since it was last cut back.
    pub fn growth(&self) -> Result<Growth, GitError> {
        let out = self.git.run(&["count-objects", "-v"])?;
        Ok(Growth::parse(out.stdout_str()))
    }

    /// Housekeeping, off the claim path: cut the clone back to the tip
    /// (`fetch --depth=1`) and drop everything else (`gc --prune=now`), so
    /// that its size stays that of one tip, however long the worker runs,
    /// and the one pack per fetch does not pile up (a blobless clone with
    /// maintenance off went from 66 to 116 ms a claim over 600 claims). A full
    /// clone made by an older version becomes shallow here too.
    ///
    /// The caller must make sure no push is uncertain: the uncertain
    /// commit would be pruned, and the history between it and the tip cut,
    /// so [`GridRepo::is_ancestor`] could no longer tell whether it landed.
    pub fn maintain(&self) -> Result<(), GitError> {
        self.fetch_branch_to("--depth=1")?;
        // The last transaction's commit: it would keep the history below it.
        self.git
            .run_with(&["update-ref", "-d", edits::SCRATCH_REF], None, &[0, 1])?;
        // The kept readers would hold the old packs open.
        self.release_readers();
        self.git.run(&["gc", "--quiet", "--prune=now"])?;
        Ok(())
    }
}

/// How far a clone has grown: its loose objects and packs, as `git
/// count-objects -v` counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Growth {
    pub loose: u64,
    pub packs: u64,
}

/// Git's own limits for an automatic gc (`gc.auto`, `gc.autoPackLimit`),
/// which the worker's clone turns off: past either, the clone is cut back
/// at the next sync between tasks.
const LOOSE_LIMIT: u64 = 6700;
const PACK_LIMIT: u64 = 50;
/// Past this many times those limits, it is cut back with tasks running.
const OVERGROWN: u64 = 4;

impl Growth {
    /// Parse `git count-objects -v` (`count: N`, `packs: N`, ...).
    fn parse(out: &str) -> Growth {
        let field = |name: &str| {
            out.lines()
                .filter_map(|l| l.split_once(": "))
                .find(|(k, _)| *k == name)
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0)
        };
        Growth {
            loose: field("count"),
            packs: field("packs"),
        }
    }

    pub fn grown(&self) -> bool {
        self.loose >= LOOSE_LIMIT || self.packs >= PACK_LIMIT
    }

    pub fn overgrown(&self) -> bool {
        self.loose >= LOOSE_LIMIT * OVERGROWN || self.packs >= PACK_LIMIT * OVERGROWN
    }
}

/// Does git's (summarised) stderr say that `branch` is not on the remote?
fn says_missing(stderr: &str, branch: &str) -> bool {
    let said = format!("couldn't find remote ref refs/heads/{branch}");
    stderr
        .split(" / ")
        .any(|line| line.trim().strip_prefix("fatal: ") == Some(said.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_reader_follows_the_tracking_ref_loose_and_packed() {
        let dir = tempfile::tempdir().unwrap();
        let git = Git::new("git", dir.path(), std::time::Duration::from_secs(30));
        git.run(&["init", "-q", "--bare"]).unwrap();
        let out = |args: &[&str]| git.run(args).unwrap().stdout_str().to_owned();
        let tree = out(&["hash-object", "-t", "tree", "-w", "/dev/null"]);
        let c1 = out(&["commit-tree", &tree, "-m", "1"]);
        let c2 = out(&["commit-tree", &tree, "-p", &c1, "-m", "2"]);
        let repo = GridRepo::read_only(git.clone(), "main");
        assert_eq!(repo.tip().unwrap(), None, "no ref yet");
        let reader = repo.cat.check_pid().expect("read by the kept reader");
        let set = |c: &str| out(&["update-ref", TRACKING, c]);
        set(&c1);
        assert_eq!(repo.tip().unwrap().as_deref(), Some(c1.as_str()));
        set(&c2);
        assert_eq!(repo.tip().unwrap().as_deref(), Some(c2.as_str()), "loose");
        out(&["pack-refs", "--all", "--prune"]);
        assert_eq!(repo.tip().unwrap().as_deref(), Some(c2.as_str()), "packed");
        set(&c1);
        assert_eq!(
            repo.tip().unwrap().as_deref(),
            Some(c1.as_str()),
            "loose over packed"
        );
        set(&c2);
        out(&["pack-refs", "--all", "--prune"]);
        assert_eq!(
            repo.tip().unwrap().as_deref(),
            Some(c2.as_str()),
            "packed anew"
        );
        out(&["update-ref", "-d", TRACKING]);
        assert_eq!(repo.tip().unwrap(), None, "deleted");
        assert_eq!(repo.cat.check_pid(), Some(reader), "one reader throughout");
    }

    #[test]
    fn growth_is_read_from_count_objects_and_judged_by_gits_limits() {
        let g = Growth::parse("count: 6700\nsize: 27\nin-pack: 3\npacks: 1\nsize-pack: 1\n");
        assert_eq!(
            g,
            Growth {
                loose: 6700,
                packs: 1
            }
        );
        assert!(g.grown() && !g.overgrown());
        let packs = Growth {
            loose: 0,
            packs: 200,
        };
        assert!(packs.grown() && packs.overgrown());
        assert!(!Growth::parse("garbage").grown(), "unread: not grown");
    }

    #[test]
    fn a_missing_branch_is_told_apart_from_its_prefixes() {
        let said = "fatal: couldn't find remote ref refs/heads/archive-old";
        assert!(says_missing(said, "archive-old"));
        assert!(!says_missing(said, "archive"));
        assert!(says_missing(
            "warning: x / fatal: couldn't find remote ref refs/heads/archive",
            "archive"
        ));
        assert!(!says_missing("fatal: unable to access", "archive"));
    }
}
