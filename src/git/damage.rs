//! A path that is not in its commit, or an object the clone lost?
//! `cat-file` answers `missing` for both (`<rev>:<path>` either way), and
//! the worker reads "missing" as "not there": a claim gone (its run
//! stopped), a result superseded (put aside). A clone that lost an object
//! (a disk fault, a hand in `objects/`) must not turn into such decisions:
//! a read that meets one fails instead, naming it, and the results wait.
//!
//! For a missing `<rev>:<a/b/c>`, the commit and its trees on the way
//! (`<rev>^{tree}`, `<rev>:a`, `<rev>:a/b`) are looked up in one
//! batch-check, and the deepest tree found is read: if it names the next
//! part, the clone lacks an object it should hold. A commit the clone does
//! not have at all (a shallow clone's history) is not damage, nor is a
//! name in a tree out of git's order, which git's lookup does not find.

use std::collections::{HashMap, HashSet};

use super::batch::{CatFiles, ObjectInfo, parse_tree};
use super::command::Git;
use super::tree::{EntryMode, in_git_order};

/// Is any of `missing` (specs `cat-file` answered `missing` for) an object
/// the clone should hold? `Err` names the first such; None when the kept
/// readers could not answer. Specs that are not `<rev>:<path>` are left.
pub(super) fn lost(cat: &CatFiles, git: &Git, missing: &[&str]) -> Option<Result<(), String>> {
    let split: Vec<(&str, Vec<&str>)> = missing
        .iter()
        .filter_map(|s| s.split_once(':'))
        .filter(|(rev, path)| !rev.is_empty() && !path.is_empty())
        .map(|(rev, path)| (rev, path.split('/').collect()))
        .collect();
    if split.is_empty() {
        return Some(Ok(()));
    }
    // For each spec: the commit, its tree, then each directory on the way.
    let mut input = Vec::new();
    let mut lines = 0;
    for (rev, parts) in &split {
        let mut ancestors = vec![rev.to_string(), format!("{rev}^{{tree}}")];
        for depth in 1..parts.len() {
            ancestors.push(format!("{rev}:{}", parts[..depth].join("/")));
        }
        for a in ancestors {
            if a.contains('\n') {
                return Some(Ok(()));
            }
            input.extend_from_slice(a.as_bytes());
            input.push(b'\n');
            lines += 1;
        }
    }
    let infos = cat.info(git, &input, lines)?;
    let mut infos = infos.into_iter();
    // Each spec's deepest tree on the way and the part after it, read
    // once for all the specs under it (a plan checks hundreds of places
    // in one directory).
    let mut looks: Vec<(ObjectInfo, String, String)> = Vec::new();
    for (rev, parts) in &split {
        let commit = infos.next()?;
        let tree = infos.next()?;
        let dirs: Vec<_> = infos.by_ref().take(parts.len() - 1).collect();
        let Some(_) = commit else {
            // Not a commit of this clone's: nothing lost.
            continue;
        };
        let Some(mut deepest) = tree else {
            return Some(Err(format!(
                "commit {rev} is in the clone but its tree is not"
            )));
        };
        let mut next = 0;
        let mut under_a_file = false;
        for d in dirs {
            match d {
                Some(t) if t.kind == "tree" => {
                    deepest = t;
                    next += 1;
                }
                // A file where a directory would be: the path is not there.
                Some(_) => {
                    under_a_file = true;
                    break;
                }
                None => break,
            }
        }
        if deepest.kind == "tree" && !under_a_file {
            let path = parts[..=next].join("/");
            looks.push((deepest, parts[next].to_owned(), format!("{rev}:{path}")));
        }
    }
    let mut trees: Vec<&ObjectInfo> = looks.iter().map(|(t, ..)| t).collect();
    trees.sort_by(|a, b| a.oid.cmp(&b.oid));
    trees.dedup_by(|a, b| a.oid == b.oid);
    let oids: Vec<String> = trees.iter().map(|t| t.oid.clone()).collect();
    let sizes: Vec<u64> = trees.iter().map(|t| t.size).collect();
    let bodies = cat.contents(git, &oids, &sizes)?;
    let mut names: HashMap<&str, HashSet<Vec<u8>>> = HashMap::new();
    for (oid, body) in oids.iter().zip(bodies) {
        let entries = parse_tree(&body?, oid.len() / 2)?;
        // A tree out of git's order (a server without fsck takes one):
        // git's lookup by path stops early in it, so a name it holds reads
        // as not there, as git tells it, not as a lost object (a pusher's
        // such tree had every node clone the grid again). Commits write
        // it again in order (`git::irregular`).
        if !in_git_order(&entries) {
            cat.mark_irregular();
            continue;
        }
        // A submodule's commit is never in the clone: anyone can push
        // one, and it is a path that holds nothing, not damage.
        let held = entries
            .into_iter()
            .filter(|e| e.mode != EntryMode::Submodule);
        names.insert(oid, held.map(|e| e.name).collect());
    }
    for (tree, name, what) in &looks {
        let Some(held) = names.get(tree.oid.as_str()) else {
            continue;
        };
        if held.contains(name.as_bytes()) {
            return Some(Err(format!(
                "`{what}` is named by tree {} but the clone lacks it",
                tree.oid
            )));
        }
    }
    Some(Ok(()))
}

#[cfg(test)]
mod tests {
    use crate::git::GitError;
    use crate::git::tree::committed_repo;

    /// Remove the loose object `spec` names from the clone at `dir`.
    fn lose(dir: &std::path::Path, spec: &str) {
        let out = std::process::Command::new("git")
            .args(["rev-parse", spec])
            .current_dir(dir)
            .output()
            .unwrap();
        let oid = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        std::fs::remove_file(dir.join(".git/objects").join(&oid[..2]).join(&oid[2..])).unwrap();
    }

    #[test]
    fn a_lost_object_is_no_absent_path() {
        let (dir, repo) = committed_repo(|d| {
            for f in ["a/x", "a/y", "b/c/z"] {
                let p = d.join(f);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, f).unwrap();
            }
        });
        lose(dir.path(), "HEAD:a/x");
        lose(dir.path(), "HEAD:b/c");
        let info = |s: &str| repo.object_info(&[s.to_owned()]);
        assert!(
            matches!(info("HEAD:a/x"), Err(GitError::Damaged(_))),
            "{:?}",
            info("HEAD:a/x")
        );
        assert!(matches!(info("HEAD:b/c/z"), Err(GitError::Damaged(_))));
        // Paths that are not there are still none, however deep.
        assert_eq!(info("HEAD:a/nope").unwrap(), [None]);
        assert_eq!(info("HEAD:nope/deeper/x.json").unwrap(), [None]);
        assert_eq!(info("HEAD:a/y/under-a-file").unwrap(), [None]);
        // A commit the clone never had (a shallow clone's history).
        let unknown = format!("{}:a/x", "1".repeat(40));
        assert_eq!(info(&unknown).unwrap(), [None]);
        assert!(matches!(
            repo.list_dir("HEAD", "b/c"),
            Err(GitError::Damaged(_))
        ));
        assert!(repo.list_dir("HEAD", "b/none").unwrap().is_empty());
        let e = repo.list_dir("HEAD", "b/c").unwrap_err().to_string();
        assert!(
            e.contains("`HEAD:b/c` is named by tree") && e.contains("clones the grid afresh"),
            "{e}"
        );
    }

    /// A submodule's commit is never in the clone, and anyone can push
    /// one anywhere: a path under it is not there, and nothing is lost.
    #[test]
    fn a_submodule_is_no_damage() {
        let (dir, repo) = committed_repo(|d| {
            std::fs::create_dir_all(d.join("a")).unwrap();
            std::fs::write(d.join("a/x"), "x").unwrap();
        });
        let link = format!("160000,{},a/sub", "2".repeat(40));
        for args in [
            &["update-index", "--add", "--cacheinfo", &link][..],
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qm",
                "sub",
            ],
        ] {
            let out = std::process::Command::new("git")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
        let info = |s: &str| repo.object_info(&[s.to_owned()]).unwrap();
        assert_eq!(info("HEAD:a/sub"), [None]);
        assert_eq!(info("HEAD:a/sub/x.json"), [None]);
        assert!(repo.list_dir("HEAD", "a/sub").unwrap().is_empty());
    }

    /// A tree out of git's order (pushed to a server without fsck): git's
    /// lookup by path misses a name it holds. That is a path not there, as
    /// git reads it, not a lost object: a pusher's such tree in
    /// `in_progress/` had a node take its clone for damaged, and clone the
    /// grid again at every sync that followed a landed one.
    #[test]
    fn a_name_git_cannot_find_in_a_tree_out_of_order_is_no_damage() {
        let (_dir, repo) = committed_repo(|d| std::fs::write(d.join("x"), "x").unwrap());
        let run = |args: &[&str], input: &[u8]| {
            let out = repo.git.run_with(args, Some(input), &[0]).unwrap();
            out.stdout_str().trim().to_owned()
        };
        let blob = run(&["hash-object", "-w", "--stdin"], b"{}");
        let mut raw = Vec::new();
        for name in ["z.json", "b.json"] {
            raw.extend_from_slice(format!("100644 {name}\0").as_bytes());
            raw.extend_from_slice(&hex::decode(&blob).unwrap());
        }
        let dir_tree = run(
            &["hash-object", "-w", "-t", "tree", "--literally", "--stdin"],
            &raw,
        );
        let root = run(
            &["mktree"],
            format!("040000 tree {dir_tree}\td\n").as_bytes(),
        );
        let commit = run(&["commit-tree", &root, "-m", "unsorted"], b"");
        let info = repo.object_info(&[format!("{commit}:d/b.json")]).unwrap();
        assert_eq!(info, [None], "git's lookup misses it: not there");
    }
}
