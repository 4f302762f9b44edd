//! The worker's private clone of the grid: a bare repository under the state
//! directory, holding `origin/main` and the objects the worker writes. There
//! is no work tree and no index: the worker reads with `ls-tree`/`cat-file`
//! and writes new trees with `mktree`, so the cost of a transaction depends on
//! the few directories it touches, not on how many results the grid holds.

use std::io::{BufRead, Read};
use std::path::Path;

use super::command::{Git, GitError, summarize};
use super::edits::{self, Edits, Signature};

/// A 40- (or 64-) hex-digit object id.
pub type Oid = String;

/// The modes git stores in trees, as the grid cares about them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    File,
    Executable,
    Symlink,
    Tree,
    Submodule,
}

impl EntryMode {
    fn parse(mode: &str) -> Option<EntryMode> {
        Some(match mode {
            "100644" => EntryMode::File,
            "100755" => EntryMode::Executable,
            "120000" => EntryMode::Symlink,
            "040000" => EntryMode::Tree,
            "160000" => EntryMode::Submodule,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EntryMode::File => "100644",
            EntryMode::Executable => "100755",
            EntryMode::Symlink => "120000",
            EntryMode::Tree => "040000",
            EntryMode::Submodule => "160000",
        }
    }
}

/// One entry of a tree. Names are bytes: git allows any byte but `/` and
/// NUL, and a hostile name must be deleted exactly as it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    pub mode: EntryMode,
    pub oid: Oid,
    pub name: Vec<u8>,
}

impl TreeEntry {
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// The remote's `main` now points at our commit.
    Accepted,
    /// Someone else pushed first (not a fast-forward, or the ref's lock was
    /// taken): fetch and re-plan. Carries git's words for it.
    Rejected(String),
}

#[derive(Debug, Clone)]
pub struct GridRepo {
    git: Git,
    branch: String,
}

/// The remote-tracking ref the worker plans against.
const TRACKING: &str = "refs/remotes/origin/main";

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
        }
    }

    pub fn git(&self) -> &Git {
        &self.git
    }

    pub fn dir(&self) -> &Path {
        self.git.dir()
    }

    /// Fetch the branch and return the new tip of `origin/main`.
    pub fn fetch(&self) -> Result<Option<Oid>, GitError> {
        let spec = format!("+refs/heads/{}:{TRACKING}", self.branch);
        self.git.run(&[
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "origin",
            &spec,
        ])?;
        self.tip()
    }

    /// The last fetched tip, without asking the remote.
    pub fn tip(&self) -> Result<Option<Oid>, GitError> {
        let out = self.git.run_with(
            &["rev-parse", "--verify", "--quiet", TRACKING],
            None,
            &[0, 1],
        )?;
        Ok((out.code == 0).then(|| out.stdout_str().to_owned()))
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

    /// The entries of one tree object.
    pub fn list_tree(&self, tree: &str) -> Result<Vec<TreeEntry>, GitError> {
        let out = self.git.run(&["ls-tree", "-z", tree])?;
        parse_ls_tree(&out.stdout, b"").map_err(|what| GitError::Unexpected {
            args: "ls-tree".into(),
            what,
        })
    }

    /// Read objects named by `specs` (`<oid>` or `<commit>:<path>`) in one
    /// `cat-file --batch` call; `None` for each that does not exist.
    pub fn read_objects(&self, specs: &[String]) -> Result<Vec<Option<Vec<u8>>>, GitError> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let mut input = Vec::new();
        for spec in specs {
            input.extend_from_slice(spec.as_bytes());
            input.push(b'\n');
        }
        let out = self
            .git
            .run_with(&["cat-file", "--batch"], Some(&input), &[0])?;
        parse_cat_file_batch(&out.stdout, specs.len()).map_err(|what| GitError::Unexpected {
            args: "cat-file --batch".into(),
            what,
        })
    }

    /// Read the file at `path` in `commit`, if it is there.
    pub fn read_path(&self, commit: &str, path: &str) -> Result<Option<Vec<u8>>, GitError> {
        Ok(self
            .read_objects(&[format!("{commit}:{path}")])?
            .pop()
            .flatten())
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
        let refspec = format!("{commit}:refs/heads/{}", self.branch);
        let out = self
            .git
            .run_with(&["push", "--porcelain", "origin", &refspec], None, &[0, 1])?;
        let outcome = parse_push_porcelain(&out.stdout, &format!("refs/heads/{}", self.branch));
        match outcome {
            // The tracking ref is left alone: every transaction starts with
            // a fetch, which brings it up to date.
            Some(PushLine::Ok) if out.code == 0 => Ok(PushOutcome::Accepted),
            Some(PushLine::Rejected(why)) => Ok(PushOutcome::Rejected(why)),
            Some(PushLine::RemoteRejected(reason)) => Err(GitError::PushRefused { reason }),
            _ => Err(GitError::Failed {
                args: "push".into(),
                code: out.code,
                stderr: summarize(&out.stderr),
            }),
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

    /// Repack and prune, off the claim path (DESIGN.md 7: one pack per fetch
    /// piles up otherwise).
    pub fn maintain(&self) -> Result<(), GitError> {
        self.git.run(&[
            "-c",
            "gc.auto=1000",
            "-c",
            "gc.autoPackLimit=20",
            "gc",
            "--auto",
            "--quiet",
        ])?;
        Ok(())
    }
}

enum PushLine {
    Ok,
    Rejected(String),
    RemoteRejected(String),
}

/// How receive-pack reports losing the ref lock to a concurrent push.
const LOCK_LOST: &[&str] = &[
    "failed to update ref",
    "cannot lock ref",
    "failed to lock",
    "incorrect old value",
];

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
                && LOCK_LOST.iter().any(|m| summary.contains(m)) =>
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
    fn ls_tree_keeps_odd_names_as_bytes() {
        let out =
            b"100644 blob aaaa\ttasks/queue/a.json\x00120000 blob bbbb\ttasks/queue/l\xffnk\x00";
        let e = parse_ls_tree(out, b"tasks/queue/").unwrap();
        assert_eq!(e[0].name, b"a.json");
        assert_eq!(e[1].mode, EntryMode::Symlink);
        assert_eq!(e[1].name, b"l\xffnk");
    }

    #[test]
    fn cat_file_batch_with_missing_objects() {
        let out = b"aaaa blob 3\nabc\nx:y missing\nbbbb blob 0\n\n";
        let r = parse_cat_file_batch(out, 3).unwrap();
        assert_eq!(r, vec![Some(b"abc".to_vec()), None, Some(vec![])]);
    }
}
