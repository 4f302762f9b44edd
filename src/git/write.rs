//! Writing through the clone: trees and commits built without a work tree
//! (`mktree`, one `fast-import`), pushes with their porcelain read (a lost
//! race, a lost lock, a refusal), and whether a commit is on a tip.

use super::command::{GitError, summarize};
use super::edits::{self, Edit, Edits, Signature};
use super::repo::GridRepo;
use super::tree::{EntryMode, Oid, TreeEntry};

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// The remote's `main` now points at our commit.
    Accepted,
    /// Someone else pushed first (not a fast-forward, or the ref's lock was
    /// taken): fetch and re-plan. Carries git's words for it.
    Rejected(String),
}

/// The id git gives `data` as a blob (the SHA-1 of its header and bytes),
/// with no process and nothing written: for a file a commit being planned
/// writes, named before the commit (a dependant claimed in the commit that
/// writes its parent's result reads that result by this id).
pub fn blob_id(data: &[u8]) -> Oid {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", data.len()).as_bytes());
    h.update(data);
    hex::encode(h.finalize())
}

impl GridRepo {
    /// Write a tree object of `entries` (one directory, not recursive) with
    /// one `git mktree`, which sorts them as git wants. This is how a
    /// directory of tens of thousands of entries is rewritten in one go:
    /// fast-import edits one entry at a time, each a scan of the directory.
    pub fn make_tree(&self, entries: &[TreeEntry]) -> Result<Oid, GitError> {
        let mut input = Vec::new();
        // A name holding a `/` names no path, and `mktree` refuses it
        // (`git::irregular`): a directory written again leaves it out.
        for e in entries
            .iter()
            .filter(|e| !super::tree::unaddressable(&e.name))
        {
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

    /// Write `data` as a blob and return its id: for content a plan judges
    /// before any commit holds it.
    pub fn write_blob(&self, data: &[u8]) -> Result<Oid, GitError> {
        let out = self
            .git
            .run_with(&["hash-object", "-w", "--stdin"], Some(data), &[0])?;
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
        let fast_import = |edits: &Edits| {
            let stream = edits::fast_import_stream(parent, edits, message, who);
            self.git.run_with(
                &["fast-import", "--quiet", "--force", "--done"],
                Some(&stream),
                &[0],
            )
        };
        // A tree out of git's order met: the directories edited are
        // written again first, else a `D` would leave a name's second entry.
        let cleaned = match parent {
            Some(parent) if self.cat.met_irregular() => {
                self.root_without_irregular(parent, edits.keys().cloned())?
            }
            _ => None,
        };
        let out = match cleaned {
            Some(root) => fast_import(&from_root(edits, root))?,
            None => match (fast_import(edits), parent) {
                (Err(e), Some(parent)) if super::irregular::is_unloadable_tree(&e) => {
                    self.remove_crash_reports();
                    let root = self.root_without_irregular(parent, edits.keys().cloned())?;
                    let Some(root) = root else { return Err(e) };
                    fast_import(&from_root(edits, root))?
                }
                (out, _) => out?,
            },
        };
        let oid = out.stdout_str();
        if oid.len() < 40 || !oid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(GitError::Unexpected {
                args: "fast-import".into(),
                what: format!("{oid:?} for a commit id"),
            });
        }
        Ok(oid.to_owned())
    }

    /// fast-import leaves a crash report in the repository at each failure.
    fn remove_crash_reports(&self) {
        let Ok(dir) = std::fs::read_dir(self.git.dir()) else {
            return;
        };
        for e in dir.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with("fast_import_crash_")
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
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
        // Exit 1 is also git's for a push that never started (a refspec
        // it cannot resolve): told like any other refusal.
        let failed = || match super::failure::classify(&String::from_utf8_lossy(&out.stderr), true)
        {
            Some((failure, said)) => GitError::Remote {
                failure,
                args: "push".into(),
                said,
            },
            None => GitError::Failed {
                args: "push".into(),
                code: out.code,
                stderr: summarize(&out.stderr),
            },
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

/// `edits` made on `root` instead of the parent's root: its `M 040000`
/// of the root sorts first.
fn from_root(edits: &Edits, root: Oid) -> Edits {
    let mut cleaned = edits.clone();
    cleaned.insert(
        Vec::new(),
        Edit::Object {
            mode: EntryMode::Tree,
            oid: root,
        },
    );
    cleaned
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id named in process is the one git writes the blob under.
    #[test]
    fn a_blob_id_is_gits() {
        let dir = tempfile::tempdir().unwrap();
        let git = crate::git::Git::new("git", dir.path(), std::time::Duration::from_secs(30));
        git.run(&["init", "-q", "--bare"]).unwrap();
        let repo = GridRepo::read_only(git, "main");
        for data in [&b""[..], b"{}", b"a\0b\n", &[0xffu8; 3000]] {
            assert_eq!(blob_id(data), repo.write_blob(data).unwrap());
        }
    }

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
}
