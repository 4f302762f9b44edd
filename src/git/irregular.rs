//! Trees git takes but `git fast-import` cannot edit right; only a
//! participant building trees by hand pushes one.
//!
//! - A name of 64 KiB or more (fsck only warns): fast-import cannot load
//!   the tree ("Corrupt mode"). One such name, a push of 1 KB in
//!   `tasks/queue/` or `nodes/`, made every commit of every node fail, for
//!   ever. No grid entry has a name anywhere near [`MAX_NAME`]: when
//!   fast-import fails so, the directories the commit edits are written
//!   again without such names.
//! - A name given twice in one directory (a server without `fsck` takes
//!   it): fast-import's `D` removes the first entry only, so a claimed
//!   task stayed queued under its second entry and ran again. Once the
//!   clone's reader has met a tree out of git's order (`tree::in_git_order`),
//!   the directories each commit edits are written again keeping the
//!   first entry of each name, the one git and the walk find.
//! - A name holding a `/` (a server without `fsck` takes it): no path
//!   names the entry, so a `D` of it removed nothing, and a node filed it
//!   as invalid at every sync, for ever; `mktree` refuses the directory,
//!   so a commit that wrote it again failed. Once the reader has met one,
//!   the directories each commit edits are written again without it.
//!
//! Written again with `mktree`, bottom up to the root; the commit starts
//! from that root.

use std::collections::{BTreeMap, BTreeSet};

use super::command::GitError;
use super::repo::GridRepo;
use super::tree::{EntryMode, Oid, TreeEntry, first_of_each_name, unaddressable};
use crate::escape::Untrusted;

/// Longest name kept in a directory written again; far beyond any grid
/// layout's (ids are at most a few hundred bytes), far below fast-import's
/// limit.
pub const MAX_NAME: usize = 4096;

/// Does fast-import's error say it could not load a tree?
pub(super) fn is_unloadable_tree(e: &GitError) -> bool {
    e.to_string().contains("Corrupt mode")
}

impl GridRepo {
    /// The root of `parent` written again without names over [`MAX_NAME`]
    /// or a second entry of a name, in the directories on the way to each
    /// of `paths` (and the root): `None` if none holds one.
    pub(super) fn root_without_irregular(
        &self,
        parent: &str,
        paths: impl Iterator<Item = Vec<u8>>,
    ) -> Result<Option<Oid>, GitError> {
        // Every directory above an edited path, the root as "".
        let mut dirs: BTreeSet<Vec<u8>> = BTreeSet::from([Vec::new()]);
        for path in paths {
            for (i, b) in path.iter().enumerate() {
                if *b == b'/' {
                    dirs.insert(path[..i].to_vec());
                }
            }
        }
        // A spec cannot hold a line feed; such a directory is left as it is.
        let dirs: Vec<Vec<u8>> = dirs.into_iter().filter(|d| !d.contains(&b'\n')).collect();
        let specs: Vec<String> = dirs
            .iter()
            .map(|d| format!("{parent}:{}", String::from_utf8_lossy(d)))
            .collect();
        let unreadable = || GitError::Unexpected {
            args: "cat-file --batch".into(),
            what: "the directories of a commit could not be read".into(),
        };
        let listed = self
            .cat
            .trees_as_written(&self.git, &specs)
            .ok_or_else(unreadable)?;
        let mut trees: BTreeMap<Vec<u8>, Vec<TreeEntry>> = dirs.into_iter().zip(listed).collect();
        // Deepest first: a directory written again is named by its new id
        // in the one above it.
        let mut order: Vec<Vec<u8>> = trees.keys().cloned().collect();
        order.sort_by_key(|d| {
            std::cmp::Reverse(d.iter().filter(|b| **b == b'/').count() + usize::from(!d.is_empty()))
        });
        let mut written: BTreeMap<Vec<u8>, Oid> = BTreeMap::new();
        for dir in order {
            let mut entries = trees.remove(&dir).unwrap_or_default();
            let before = entries.len();
            let shown = |e: &TreeEntry| {
                let s: String = String::from_utf8_lossy(&e.name).chars().take(64).collect();
                Untrusted(s)
            };
            let in_dir = Untrusted(String::from_utf8_lossy(&dir));
            entries.retain(|e| {
                let keep = e.name.len() <= MAX_NAME;
                if !keep {
                    tracing::error!(dir = %in_dir, name = %shown(e), bytes = e.name.len(), "an entry whose name is too long for git fast-import is removed");
                }
                keep
            });
            entries.retain(|e| {
                let keep = !unaddressable(&e.name);
                if !keep {
                    tracing::error!(dir = %in_dir, name = %shown(e), "an entry whose name holds a '/' is removed (a tree no git host with fsck takes)");
                }
                keep
            });
            for e in first_of_each_name(&mut entries) {
                tracing::error!(dir = %in_dir, name = %shown(&e), "a second entry of one name is removed (a tree no git host with fsck takes)");
            }
            let mut changed = entries.len() != before;
            for e in entries.iter_mut().filter(|e| e.mode == EntryMode::Tree) {
                let mut child = dir.clone();
                if !child.is_empty() {
                    child.push(b'/');
                }
                child.extend_from_slice(&e.name);
                if let Some(oid) = written.get(&child) {
                    e.oid = oid.clone();
                    changed = true;
                }
            }
            if changed {
                written.insert(dir, self.make_tree(&entries)?);
            }
        }
        Ok(written.remove(&Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::Git;
    use crate::git::edits::{Edit, Edits, Signature};

    /// A bare repository in a directory of its own (kept while the first
    /// is).
    fn bare() -> (tempfile::TempDir, Git) {
        let dir = tempfile::tempdir().unwrap();
        let git = Git::new("git", dir.path(), std::time::Duration::from_secs(60));
        git.run(&["init", "-q", "--bare"]).unwrap();
        (dir, git)
    }

    /// The commit of `edits` on `parent`, as a node writes it.
    fn commit(repo: &GridRepo, parent: &str, edits: &Edits) -> String {
        let who = Signature {
            name: "t".into(),
            email: "t@t".into(),
            when: 0,
        };
        repo.commit_edits(Some(parent), edits, "m", &who).unwrap()
    }

    /// What git run with `args` in `git`'s repository printed, `input` on
    /// its standard input.
    fn run_in(git: &Git, args: &[&str], input: &[u8]) -> String {
        git.run_with(args, Some(input), &[0])
            .unwrap()
            .stdout_str()
            .to_owned()
    }

    /// A commit whose `tasks/queue/` holds `entries` (name, blob), its
    /// tree written raw, as a participant builds one that `mktree` (and a
    /// server with fsck) refuses.
    fn raw_queue(git: &Git, entries: &[(&str, &String)]) -> String {
        let mut raw = Vec::new();
        for (name, oid) in entries {
            raw.extend_from_slice(format!("100644 {name}\0").as_bytes());
            raw.extend_from_slice(&hex::decode(oid).unwrap());
        }
        let literally = ["hash-object", "-w", "-t", "tree", "--literally", "--stdin"];
        let queue = run_in(git, &literally, &raw);
        let tasks = run_in(
            git,
            &["mktree"],
            format!("040000 tree {queue}\tqueue\n").as_bytes(),
        );
        let root = run_in(
            git,
            &["mktree"],
            format!("040000 tree {tasks}\ttasks\n").as_bytes(),
        );
        run_in(git, &["commit-tree", &root, "-m", "x"], b"")
    }

    /// One name of 70,000 bytes in `tasks/queue/` (a push of 1 KB) made
    /// every commit that touched the queue fail; the commit now lands,
    /// without that name, and with everything else the tree held.
    #[test]
    fn a_commit_beside_a_name_fast_import_cannot_load_lands_without_it() {
        let (dir, git) = bare();
        let run = |args: &[&str], input: &str| run_in(&git, args, input.as_bytes());
        let blob = run(&["hash-object", "-w", "--stdin"], "{}");
        let long = format!("{}.json", "A".repeat(70_000));
        let queue = run(
            &["mktree"],
            &format!("100644 blob {blob}\t{long}\n100644 blob {blob}\tkept.json\n"),
        );
        let tasks = run(&["mktree"], &format!("040000 tree {queue}\tqueue\n"));
        let root = run(
            &["mktree"],
            &format!("040000 tree {tasks}\ttasks\n100644 blob {blob}\tREADME\n"),
        );
        let parent = run(&["commit-tree", &root, "-m", "x"], "");
        let repo = GridRepo::read_only(git.clone(), "main");
        let mut edits = Edits::new();
        edits.insert(b"tasks/queue/new.json".to_vec(), Edit::Put(b"{}".to_vec()));
        let commit = commit(&repo, &parent, &edits);
        let listed = run(&["ls-tree", "-r", "--name-only", &commit], "");
        assert_eq!(
            listed.lines().collect::<Vec<_>>(),
            ["README", "tasks/queue/kept.json", "tasks/queue/new.json"]
        );
        let crashes = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("fast_import_crash_")
            })
            .count();
        assert_eq!(crashes, 0, "fast-import's crash report is removed");
    }

    /// A directory with one name twice (a server without fsck takes it):
    /// fast-import's `D` removed only the first entry, and the task stayed
    /// queued under the second. Once the reader has met such a tree, the
    /// commit writes the directory again: the name is gone, the rest kept.
    #[test]
    fn a_name_given_twice_is_gone_after_a_commit_that_removes_it() {
        let (_dir, git) = bare();
        let run = |args: &[&str], input: &[u8]| run_in(&git, args, input);
        let one = run(&["hash-object", "-w", "--stdin"], b"{\"n\": 1}");
        let two = run(&["hash-object", "-w", "--stdin"], b"{\"n\": 2}");
        let kept = run(&["hash-object", "-w", "--stdin"], b"{}");
        // `mktree` refuses a name twice: the tree object is written raw.
        let parent = raw_queue(
            &git,
            &[("a.json", &one), ("a.json", &two), ("b.json", &kept)],
        );
        let repo = GridRepo::read_only(git.clone(), "main");
        let listed = repo.list_dir(&parent, "tasks/queue").unwrap();
        let names: Vec<_> = listed
            .iter()
            .map(|e| (e.name.clone(), e.oid.clone()))
            .collect();
        assert_eq!(
            names,
            [(b"a.json".to_vec(), one), (b"b.json".to_vec(), kept)],
            "listed with the first entry of a name, as git finds it"
        );
        let mut edits = Edits::new();
        edits.insert(b"tasks/queue/a.json".to_vec(), Edit::Delete);
        let commit = commit(&repo, &parent, &edits);
        let listed = run(&["ls-tree", "-r", "--name-only", &commit], b"");
        assert_eq!(listed.lines().collect::<Vec<_>>(), ["tasks/queue/b.json"]);
    }

    /// A name holding a `/` (a push to a server without fsck): no path
    /// reaches it, so the `D` of it removed nothing and a node filed it as
    /// invalid at every sync. Once the reader has listed it, the commit
    /// that removes it writes the directory again without it.
    #[test]
    fn a_name_holding_a_slash_is_gone_after_a_commit_that_removes_it() {
        let (_dir, git) = bare();
        let run = |args: &[&str], input: &[u8]| run_in(&git, args, input);
        let blob = run(&["hash-object", "-w", "--stdin"], b"{}");
        // `mktree` refuses such a name: the tree object is written raw.
        let parent = raw_queue(&git, &[("a/b.json", &blob), ("b.json", &blob)]);
        let repo = GridRepo::read_only(git.clone(), "main");
        let listed = repo.list_dir(&parent, "tasks/queue").unwrap();
        let names: Vec<_> = listed.iter().map(|e| e.name.clone()).collect();
        assert_eq!(names, [b"a/b.json".to_vec(), b"b.json".to_vec()]);
        let mut edits = Edits::new();
        edits.insert(b"tasks/queue/a/b.json".to_vec(), Edit::Delete);
        edits.insert(b"tasks/failed/n@b.json".to_vec(), Edit::Put(b"{}".to_vec()));
        let commit = commit(&repo, &parent, &edits);
        let listed = run(&["ls-tree", "-r", "--name-only", &commit], b"");
        assert_eq!(
            listed.lines().collect::<Vec<_>>(),
            ["tasks/failed/n@b.json", "tasks/queue/b.json"]
        );
        // A directory holding one, written again by `make_tree`: left out.
        let entries = repo.list_dir(&parent, "tasks/queue").unwrap();
        let tree = repo.make_tree(&entries).unwrap();
        let listed = run(&["ls-tree", "--name-only", &tree], b"");
        assert_eq!(listed.lines().collect::<Vec<_>>(), ["b.json"]);
    }
}
