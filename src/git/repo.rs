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

use std::io::{BufRead, Read};
use std::path::Path;

use super::command::{Git, GitError, summarize};
use super::edits::{self, Edits, Signature};

pub use super::tree::{EntryMode, Oid, TreeEntry};

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// The remote's `main` now points at our commit.
    Accepted,
    /// Someone else pushed first (not a fast-forward, or the ref's lock was
    /// taken): fetch and re-plan. Carries git's words for it.
    Rejected(String),
}

/// What a bounded read ([`GridRepo::read_objects`]) found for one spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blob {
    /// No such object or path.
    Missing,
    /// Not a blob (a tree or a submodule's commit at that path): not read.
    NotABlob(String),
    /// Larger than the caller's cap: not read.
    TooBig {
        size: u64,
        cap: u64,
    },
    /// Not read in this round: the round's read budget was spent on the
    /// blobs before it. Unknown, not bad: leave it for a later round.
    Deferred {
        size: u64,
    },
    Data(Vec<u8>),
}

impl Blob {
    /// The bytes, if they were read.
    pub fn data(&self) -> Option<&[u8]> {
        match self {
            Blob::Data(b) => Some(b),
            _ => None,
        }
    }

    pub fn into_data(self) -> Option<Vec<u8>> {
        match self {
            Blob::Data(b) => Some(b),
            _ => None,
        }
    }

    /// Something is there, read or not.
    pub fn exists(&self) -> bool {
        !matches!(self, Blob::Missing)
    }

    /// Why a blob that is there was not read, for error messages.
    pub fn why_unread(&self) -> Option<String> {
        match self {
            Blob::Missing | Blob::Data(_) => None,
            Blob::NotABlob(kind) => Some(format!("is a {kind}, not a file")),
            Blob::TooBig { size, cap } => Some(format!("is {size} bytes; at most {cap} are read")),
            Blob::Deferred { size } => Some(format!(
                "is {size} bytes, more than this round's read budget has left; not read now"
            )),
        }
    }
}

/// One object as `cat-file --batch-check` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub oid: Oid,
    /// `blob`, `tree`, `commit`, `tag`.
    pub kind: String,
    pub size: u64,
}

/// Bytes of blobs one round of the worker (one fetch, one plan) may read:
/// a sync reads a sample of the queue, the claims, node records and a few
/// outbox paths, a few hundred KB on a busy grid. Past it, blobs are
/// [`Blob::Deferred`] to a later round, so that no push, however crafted,
/// makes one round read more than this.
pub const ROUND_READ_BUDGET: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct GridRepo {
    git: Git,
    branch: String,
    /// The tracking ref is known to exist: later fetches are incremental.
    /// Remembered so that each fetch need not ask (one process fewer per
    /// transaction round).
    fetched: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Bytes left to read in this round, and what a round starts with.
    budget: std::sync::Arc<std::sync::atomic::AtomicU64>,
    round_budget: u64,
}

/// The remote-tracking ref the worker plans against.
const TRACKING: &str = "refs/remotes/origin/main";

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
        };
        if !dir.join("HEAD").exists() {
            repo.git.run(&["init", "--quiet", "--bare"])?;
        }
        let fetch_spec = format!("+refs/heads/{branch}:{TRACKING}");
        for (key, value) in [
            ("remote.origin.url", url),
            ("remote.origin.fetch", fetch_spec.as_str()),
            // Housekeeping runs on the worker's schedule, never inside a claim
            // (an automatic gc mid-claim costs 150-200 ms, DESIGN.md 7).
            ("gc.auto", "0"),
            ("maintenance.auto", "false"),
            ("fetch.writeCommitGraph", "false"),
            ("core.logAllRefUpdates", "false"),
        ] {
            repo.git.run(&["config", key, value])?;
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
        loop {
            let specs: Vec<String> = present
                .iter()
                .map(|b| format!("+refs/heads/{b}:{}", self.tracking_ref(b)))
                .collect();
            let mut args = vec!["fetch", "--quiet", "--no-tags", "--no-write-fetch-head"];
            if first {
                args.push("--depth=1");
            }
            args.push("origin");
            args.extend(specs.iter().map(String::as_str));
            match self.git.run(&args) {
                Ok(_) => break,
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

    /// The last fetched tip of `branch`, without asking the remote.
    pub fn branch_tip(&self, branch: &str) -> Result<Option<Oid>, GitError> {
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

    /// The last fetched tip, without asking the remote.
    pub fn tip(&self) -> Result<Option<Oid>, GitError> {
        let branch = self.branch.clone();
        self.branch_tip(&branch)
    }

    /// The entries of directory `path` (e.g. `tasks/queue`) in `commit`;
    /// empty when the directory does not exist.
    pub fn list_dir(&self, commit: &str, path: &str) -> Result<Vec<TreeEntry>, GitError> {
        let prefix = format!("{path}/");
        let out = self
            .git
            .run(&["ls-tree", "-z", "--full-tree", commit, "--", &prefix])?;
        parse_ls_tree(&out.stdout, prefix.as_bytes()).map_err(|what| GitError::Unexpected {
            args: "ls-tree".into(),
            what,
        })
    }

    /// Every file (and symlink, and submodule) below directory `path` in
    /// `commit`, at any depth, named by its path below `path`
    /// (`p50/any/20261130T1205/t.json`): one `ls-tree -r`, whose cost
    /// follows the number of entries (10,000 in about 8 ms).
    pub fn list_dir_recursive(&self, commit: &str, path: &str) -> Result<Vec<TreeEntry>, GitError> {
        let prefix = format!("{path}/");
        let out = self
            .git
            .run(&["ls-tree", "-r", "-z", "--full-tree", commit, "--", &prefix])?;
        parse_ls_tree(&out.stdout, prefix.as_bytes()).map_err(|what| GitError::Unexpected {
            args: "ls-tree -r".into(),
            what,
        })
    }

    /// The entries of one tree object.
    pub fn list_tree(&self, tree: &str) -> Result<Vec<TreeEntry>, GitError> {
        let out = self.git.run(&["ls-tree", "-z", tree])?;
        parse_ls_tree(&out.stdout, b"").map_err(|what| GitError::Unexpected {
            args: "ls-tree".into(),
            what,
        })
    }

    /// What `specs` (`<oid>` or `<commit>:<path>`) name, without reading
    /// them: one `cat-file --batch-check` call; `None` for each that does not
    /// exist. Cheap whatever the objects' sizes: only headers are looked at.
    pub fn object_info(&self, specs: &[String]) -> Result<Vec<Option<ObjectInfo>>, GitError> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let mut input = Vec::new();
        for spec in specs {
            // A newline would end the request early and shift every answer
            // after it; no spec the grid code builds has one.
            let spec = if spec.contains('\n') { "missing" } else { spec };
            input.extend_from_slice(spec.as_bytes());
            input.push(b'\n');
        }
        let out = self
            .git
            .run_with(&["cat-file", "--batch-check"], Some(&input), &[0])?;
        parse_batch_check(&out.stdout, specs.len()).map_err(|what| GitError::Unexpected {
            args: "cat-file --batch-check".into(),
            what,
        })
    }

    /// Read the blobs named by `specs` (`<oid>` or `<commit>:<path>`),
    /// bounded: sizes are checked first (`cat-file --batch-check`), and only
    /// blobs of at most `cap` bytes are read (one `cat-file --batch` call),
    /// as long as this round's read budget lasts. Everything in the grid is
    /// untrusted: twenty entries naming one 50 MB blob cost a pusher a few
    /// KB, and must not cost a reader a gigabyte. What was not read says why
    /// ([`Blob`]), and each caller decides what that means for its file.
    pub fn read_objects(&self, specs: &[String], cap: u64) -> Result<Vec<Blob>, GitError> {
        self.read_objects_capped(specs, &vec![cap; specs.len()])
    }

    /// [`GridRepo::read_objects`] with a cap for each spec (`caps[i]` for
    /// `specs[i]`): one pair of calls for files of different kinds.
    pub fn read_objects_capped(
        &self,
        specs: &[String],
        caps: &[u64],
    ) -> Result<Vec<Blob>, GitError> {
        use std::sync::atomic::Ordering;
        assert_eq!(specs.len(), caps.len(), "one cap per spec");
        let infos = self.object_info(specs)?;
        let mut found: Vec<Blob> = Vec::with_capacity(infos.len());
        let mut wanted: Vec<(usize, String)> = Vec::new();
        for (i, (info, &cap)) in infos.into_iter().zip(caps).enumerate() {
            found.push(match info {
                None => Blob::Missing,
                Some(info) if info.kind != "blob" => Blob::NotABlob(info.kind),
                Some(info) if info.size > cap => Blob::TooBig {
                    size: info.size,
                    cap,
                },
                Some(info) => {
                    let left = self.budget.load(Ordering::Relaxed);
                    if info.size > left {
                        Blob::Deferred { size: info.size }
                    } else {
                        self.budget.store(left - info.size, Ordering::Relaxed);
                        wanted.push((i, info.oid));
                        Blob::Data(Vec::new())
                    }
                }
            });
        }
        if wanted.is_empty() {
            return Ok(found);
        }
        // By object id: what --batch-check sized is what is read.
        let oids: Vec<String> = wanted.iter().map(|(_, oid)| oid.clone()).collect();
        let bodies = self.read_sized(&oids)?;
        for ((i, _), body) in wanted.into_iter().zip(bodies) {
            found[i] = match body {
                Some(b) => Blob::Data(b),
                None => Blob::Missing,
            };
        }
        Ok(found)
    }

    /// `cat-file --batch` of objects already sized and found small enough.
    fn read_sized(&self, oids: &[String]) -> Result<Vec<Option<Vec<u8>>>, GitError> {
        let mut input = Vec::new();
        for oid in oids {
            input.extend_from_slice(oid.as_bytes());
            input.push(b'\n');
        }
        let out = self
            .git
            .run_with(&["cat-file", "--batch"], Some(&input), &[0])?;
        parse_cat_file_batch(&out.stdout, oids.len()).map_err(|what| GitError::Unexpected {
            args: "cat-file --batch".into(),
            what,
        })
    }

    /// Read the file at `path` in `commit`, if it is there and at most `cap`
    /// bytes.
    pub fn read_path(&self, commit: &str, path: &str, cap: u64) -> Result<Blob, GitError> {
        Ok(self
            .read_objects(&[format!("{commit}:{path}")], cap)?
            .pop()
            .unwrap_or(Blob::Missing))
    }

    /// Does `path` exist in `commit`? Reads nothing.
    pub fn exists(&self, commit: &str, path: &str) -> Result<bool, GitError> {
        Ok(self
            .object_info(&[format!("{commit}:{path}")])?
            .pop()
            .flatten()
            .is_some())
    }

    /// Set how many bytes of blobs each round may read (a round starts with
    /// each fetch; a repository read in place has one round).
    pub fn with_read_budget(mut self, bytes: u64) -> GridRepo {
        self.round_budget = bytes;
        self.budget = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(bytes));
        self
    }

    /// Start a new round of reads: the budget is full again.
    pub fn reset_read_budget(&self) {
        self.budget
            .store(self.round_budget, std::sync::atomic::Ordering::Relaxed);
    }

    /// Write a tree object of `entries` (one directory, not recursive) with
    /// one `git mktree`, which sorts them as git wants. This is how a
    /// directory of tens of thousands of entries is rewritten in one go:
    /// fast-import edits one entry at a time, each a scan of the directory.
    pub fn make_tree(&self, entries: &[TreeEntry]) -> Result<Oid, GitError> {
        let mut input = Vec::new();
        for e in entries {
            let kind = match e.mode {
                EntryMode::Tree => "tree",
                EntryMode::Submodule => "commit",
                _ => "blob",
            };
            input.extend_from_slice(format!("{} {kind} {}\t", e.mode.as_str(), e.oid).as_bytes());
            input.extend_from_slice(&e.name);
            input.push(0);
        }
        let out = self.git.run_with(&["mktree", "-z"], Some(&input), &[0])?;
        Ok(out.stdout_str().to_owned())
    }

    /// Write a commit of `edits` on top of `parent` with one
    /// `git fast-import`, and return its id.
    pub fn commit_edits(
        &self,
        parent: Option<&str>,
        edits: &Edits,
        message: &str,
        who: &Signature,
    ) -> Result<Oid, GitError> {
        let stream = edits::fast_import_stream(parent, edits, message, who);
        let out = self.git.run_with(
            &["fast-import", "--quiet", "--force", "--done"],
            Some(&stream),
            &[0],
        )?;
        let oid = out.stdout_str();
        if oid.len() < 40 || !oid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(GitError::Unexpected {
                args: "fast-import".into(),
                what: format!("{oid:?} for a commit id"),
            });
        }
        Ok(oid.to_owned())
    }

    /// Push `commit` as the new `main`. A plain (non-force) push is the
    /// compare-and-swap: it only succeeds if `main` is still our parent.
    pub fn push(&self, commit: &str) -> Result<PushOutcome, GitError> {
        let branch = self.branch.clone();
        self.push_branches(&[(commit, branch.as_str())])
    }

    /// Push each `(commit, branch)` as the new tip of its branch. With more
    /// than one, the push is `--atomic`: the server updates all the refs or
    /// none, so a transaction over several branches is one compare-and-swap.
    pub fn push_branches(&self, updates: &[(&str, &str)]) -> Result<PushOutcome, GitError> {
        let refspecs: Vec<String> = updates
            .iter()
            .map(|(commit, branch)| format!("{commit}:refs/heads/{branch}"))
            .collect();
        let mut args = vec!["push", "--porcelain"];
        if updates.len() > 1 {
            args.push("--atomic");
        }
        args.push("origin");
        args.extend(refspecs.iter().map(String::as_str));
        let out = self.git.run_with(&args, None, &[0, 1])?;
        let lines: Vec<Option<PushLine>> = updates
            .iter()
            .map(|(_, branch)| parse_push_porcelain(&out.stdout, &format!("refs/heads/{branch}")))
            .collect();
        let failed = || GitError::Failed {
            args: "push".into(),
            code: out.code,
            stderr: summarize(&out.stderr),
        };
        // The tracking refs are left alone: every transaction starts with a
        // fetch, which brings them up to date.
        if lines.iter().any(Option::is_none) {
            return Err(failed());
        }
        let lines: Vec<PushLine> = lines.into_iter().flatten().collect();
        if let Some(PushLine::RemoteRejected(reason)) = lines
            .iter()
            .find(|l| matches!(l, PushLine::RemoteRejected(_)))
        {
            return Err(GitError::PushRefused {
                reason: reason.clone(),
            });
        }
        // In an atomic push, refs that were fine are marked as failed
        // because of another: report the ref that caused it.
        let rejected = lines
            .iter()
            .filter_map(|l| match l {
                PushLine::Rejected(why) => Some(why),
                _ => None,
            })
            .min_by_key(|why| ATOMIC_ECHO.iter().any(|m| why.contains(m)));
        match rejected {
            Some(why) => Ok(PushOutcome::Rejected(why.clone())),
            None if out.code == 0 => Ok(PushOutcome::Accepted),
            None => Err(failed()),
        }
    }

    /// Is `commit` already contained in `tip`? Used after a push whose answer
    /// was lost: it may have landed all the same.
    pub fn is_ancestor(&self, commit: &str, tip: &str) -> Result<bool, GitError> {
        let out =
            self.git
                .run_with(&["merge-base", "--is-ancestor", commit, tip], None, &[0, 1])?;
        Ok(out.code == 0)
    }

    /// Housekeeping, off the claim path: cut the clone back to the tip
    /// (`fetch --depth=1`) and drop everything else (`gc --prune=now`), so
    /// that its size stays that of one tip, however long the worker runs,
    /// and the one pack per fetch does not pile up (DESIGN.md 7). A full
    /// clone made by an older version becomes shallow here too.
    ///
    /// The caller must make sure no push is uncertain: the uncertain
    /// commit would be pruned, and the history between it and the tip cut,
    /// so [`GridRepo::is_ancestor`] could no longer tell whether it landed.
    pub fn maintain(&self) -> Result<(), GitError> {
        let spec = format!("+refs/heads/{}:{TRACKING}", self.branch);
        self.git.run(&[
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--depth=1",
            "origin",
            &spec,
        ])?;
        // The last transaction's commit: it would keep the history below it.
        self.git
            .run_with(&["update-ref", "-d", edits::SCRATCH_REF], None, &[0, 1])?;
        self.git.run(&["gc", "--quiet", "--prune=now"])?;
        Ok(())
    }
}

/// Does git's (summarised) stderr say that `branch` is not on the remote?
fn says_missing(stderr: &str, branch: &str) -> bool {
    let said = format!("couldn't find remote ref refs/heads/{branch}");
    stderr
        .split(" / ")
        .any(|line| line.trim().strip_prefix("fatal: ") == Some(said.as_str()))
}

enum PushLine {
    Ok,
    Rejected(String),
    RemoteRejected(String),
}

/// How receive-pack reports losing the ref lock to a concurrent push
/// (the last: the same, for an atomic push).
const LOCK_LOST: &[&str] = &[
    "failed to update ref",
    "cannot lock ref",
    "failed to lock",
    "incorrect old value",
    "atomic transaction failed",
];

/// How an atomic push marks the refs that failed only because another did
/// (client side, then server side).
const ATOMIC_ECHO: &[&str] = &["atomic push failed", "atomic push failure"];

/// `git push --porcelain` prints one line per ref: a flag, TAB, `from:to`,
/// TAB, a summary. `!` with `[rejected]` is a lost race; `!` with
/// `[remote rejected]` is the server refusing (a hook, a protected branch).
fn parse_push_porcelain(stdout: &[u8], dst: &str) -> Option<PushLine> {
    let text = String::from_utf8_lossy(stdout);
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, '\t');
        let flag = parts.next()?;
        let refs = parts.next()?;
        let summary = parts.next().unwrap_or("");
        if !refs.ends_with(&format!(":{dst}")) {
            return None;
        }
        Some(match flag {
            " " | "+" | "*" | "=" => PushLine::Ok,
            // Two pushes at once to one repository: the loser cannot take the
            // ref's lock. That is a lost race like any other, not a refusal.
            "!" if summary.starts_with("[remote rejected]")
                && LOCK_LOST
                    .iter()
                    .chain(ATOMIC_ECHO)
                    .any(|m| summary.contains(m)) =>
            {
                PushLine::Rejected(summary.to_owned())
            }
            "!" if summary.starts_with("[remote rejected]") => {
                PushLine::RemoteRejected(summary.to_owned())
            }
            "!" => PushLine::Rejected(summary.to_owned()),
            _ => return None,
        })
    })
}

fn parse_ls_tree(out: &[u8], strip: &[u8]) -> Result<Vec<TreeEntry>, String> {
    out.split(|b| *b == 0)
        .filter(|rec| !rec.is_empty())
        .map(|rec| {
            let tab = rec
                .iter()
                .position(|b| *b == b'\t')
                .ok_or("no tab in ls-tree record")?;
            let meta =
                std::str::from_utf8(&rec[..tab]).map_err(|_| "non-UTF-8 ls-tree metadata")?;
            let mut fields = meta.split(' ');
            let mode = fields
                .next()
                .and_then(EntryMode::parse)
                .ok_or_else(|| format!("unknown mode in {meta:?}"))?;
            let oid = fields
                .nth(1)
                .ok_or("no object id in ls-tree record")?
                .to_owned();
            let name = rec[tab + 1..]
                .strip_prefix(strip)
                .unwrap_or(&rec[tab + 1..])
                .to_vec();
            Ok(TreeEntry { mode, oid, name })
        })
        .collect()
}

/// `cat-file --batch-check` lines: `<oid> <type> <size>`, or `<spec>
/// missing` (`ambiguous` for a short id that names several objects).
fn parse_batch_check(out: &[u8], expected: usize) -> Result<Vec<Option<ObjectInfo>>, String> {
    let text = std::str::from_utf8(out).map_err(|_| "non-UTF-8 cat-file output".to_owned())?;
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() != expected {
        return Err(format!("{} lines for {expected} objects", lines.len()));
    }
    lines
        .into_iter()
        .map(|line| {
            if line.ends_with(" missing") || line.ends_with(" ambiguous") {
                return Ok(None);
            }
            let mut f = line.split(' ');
            match (
                f.next(),
                f.next(),
                f.next().and_then(|s| s.parse().ok()),
                f.next(),
            ) {
                (Some(oid), Some(kind), Some(size), None) => Ok(Some(ObjectInfo {
                    oid: oid.to_owned(),
                    kind: kind.to_owned(),
                    size,
                })),
                _ => Err(format!("bad cat-file --batch-check line {line:?}")),
            }
        })
        .collect()
}

fn parse_cat_file_batch(out: &[u8], expected: usize) -> Result<Vec<Option<Vec<u8>>>, String> {
    let mut reader = std::io::Cursor::new(out);
    let mut results = Vec::with_capacity(expected);
    for _ in 0..expected {
        let mut header = String::new();
        reader.read_line(&mut header).map_err(|e| e.to_string())?;
        let header = header.trim_end();
        if header.ends_with(" missing") || header.ends_with(" ambiguous") {
            results.push(None);
            continue;
        }
        let size: usize = header
            .rsplit(' ')
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad cat-file header {header:?}"))?;
        let mut body = vec![0; size + 1];
        reader.read_exact(&mut body).map_err(|e| e.to_string())?;
        body.pop();
        results.push(Some(body));
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_porcelain_lines() {
        let ok = b"To /x\n \tabc:refs/heads/main\t111..222\nDone\n";
        assert!(matches!(
            parse_push_porcelain(ok, "refs/heads/main"),
            Some(PushLine::Ok)
        ));
        let lost = b"To /x\n!\tabc:refs/heads/main\t[rejected] (fetch first)\nDone\n";
        assert!(matches!(
            parse_push_porcelain(lost, "refs/heads/main"),
            Some(PushLine::Rejected(_))
        ));
        let locked = b"!\tabc:refs/heads/main\t[remote rejected] (failed to update ref)\n";
        assert!(matches!(
            parse_push_porcelain(locked, "refs/heads/main"),
            Some(PushLine::Rejected(why)) if why == "[remote rejected] (failed to update ref)"
        ));
        let hook = b"!\tabc:refs/heads/main\t[remote rejected] (pre-receive hook declined)\n";
        assert!(matches!(
            parse_push_porcelain(hook, "refs/heads/main"),
            Some(PushLine::RemoteRejected(_))
        ));
        assert!(parse_push_porcelain(b"fatal: nope\n", "refs/heads/main").is_none());
    }

    #[test]
    fn atomic_push_lines() {
        // A lost race on main makes the client fail the whole atomic push.
        let out = b"To /x\n!\tb:refs/heads/archive\t[rejected] (atomic push failed)\n\
                    !\ta:refs/heads/main\t[rejected] (non-fast-forward)\nDone\n";
        assert!(matches!(
            parse_push_porcelain(out, "refs/heads/archive"),
            Some(PushLine::Rejected(why)) if why.contains("atomic push failed")
        ));
        // Losing the server's ref transaction to a concurrent push.
        let out = b"!\tb:refs/heads/archive\t[remote rejected] (atomic transaction failed)\n";
        assert!(matches!(
            parse_push_porcelain(out, "refs/heads/archive"),
            Some(PushLine::Rejected(_))
        ));
        // Refused for another ref's sake is not a refusal of this one.
        let out = b"!\tb:refs/heads/archive\t[remote rejected] (atomic push failure)\n";
        assert!(matches!(
            parse_push_porcelain(out, "refs/heads/archive"),
            Some(PushLine::Rejected(_))
        ));
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

    #[test]
    fn ls_tree_keeps_odd_names_as_bytes() {
        let out =
            b"100644 blob aaaa\ttasks/queue/a.json\x00120000 blob bbbb\ttasks/queue/l\xffnk\x00";
        let e = parse_ls_tree(out, b"tasks/queue/").unwrap();
        assert_eq!(e[0].name, b"a.json");
        assert_eq!(e[1].mode, EntryMode::Symlink);
        assert_eq!(e[1].name, b"l\xffnk");
    }

    #[test]
    fn batch_check_lines() {
        let out = b"aaaa blob 3\nx:y missing\nbbbb tree 70\n";
        let r = parse_batch_check(out, 3).unwrap();
        assert_eq!(r[0].as_ref().unwrap().size, 3);
        assert!(r[1].is_none());
        assert_eq!(r[2].as_ref().unwrap().kind, "tree");
        assert!(parse_batch_check(out, 2).is_err());
        assert!(parse_batch_check(b"aaaa blob x\n", 1).is_err());
    }

    #[test]
    fn cat_file_batch_with_missing_objects() {
        let out = b"aaaa blob 3\nabc\nx:y missing\nbbbb blob 0\n\n";
        let r = parse_cat_file_batch(out, 3).unwrap();
        assert_eq!(r, vec![Some(b"abc".to_vec()), None, Some(vec![])]);
    }
}
