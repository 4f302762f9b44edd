//! Names too long for `git fast-import`. git accepts a tree entry whose
//! name is 64 KiB or more (fsck only warns), but fast-import cannot load a
//! tree holding one ("Corrupt mode"): one such name, a push of 1 KB in
//! `tasks/queue/` or `nodes/`, made every commit of every node fail, for
//! ever. No grid entry has a name anywhere near [`MAX_NAME`]: when
//! fast-import fails so, the directories the commit edits are written
//! again without such names (`mktree`, bottom up to the root), and the
//! commit starts from that root.

use std::collections::{BTreeMap, BTreeSet};

use super::command::GitError;
use super::repo::GridRepo;
use super::tree::{EntryMode, Oid};
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
    /// in the directories on the way to each of `paths` (and the root):
    /// `None` if none holds one.
    pub(super) fn root_without_long_names(
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
        let listed = self.cat.trees(&self.git, &specs).ok_or_else(unreadable)?;
        let mut trees: BTreeMap<Vec<u8>, Vec<super::TreeEntry>> =
            dirs.into_iter().zip(listed).collect();
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
            entries.retain(|e| {
                let keep = e.name.len() <= MAX_NAME;
                if !keep {
                    let shown: String = String::from_utf8_lossy(&e.name).chars().take(64).collect();
                    tracing::error!(dir = %Untrusted(String::from_utf8_lossy(&dir)), name = %Untrusted(&shown), bytes = e.name.len(), "an entry whose name is too long for git fast-import is removed");
                }
                keep
            });
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

    /// One name of 70,000 bytes in `tasks/queue/` (a push of 1 KB) made
    /// every commit that touched the queue fail; the commit now lands,
    /// without that name, and with everything else the tree held.
    #[test]
    fn a_commit_beside_a_name_fast_import_cannot_load_lands_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let git = Git::new("git", dir.path(), std::time::Duration::from_secs(60));
        git.run(&["init", "-q", "--bare"]).unwrap();
        let run = |args: &[&str], input: &str| {
            git.run_with(args, Some(input.as_bytes()), &[0])
                .unwrap()
                .stdout_str()
                .to_owned()
        };
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
        let who = Signature {
            name: "t".into(),
            email: "t@t".into(),
            when: 0,
        };
        let commit = repo.commit_edits(Some(&parent), &edits, "m", &who).unwrap();
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
}
