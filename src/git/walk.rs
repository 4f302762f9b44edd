//! A directory listed at any depth (`ls-tree -r`) through the clone's kept
//! readers (`batch`): the lanes are listed in every claim, and each
//! `ls-tree` is a process in a round a push must win.

use std::collections::HashMap;

use super::repo::GridRepo;
use super::tree::{EntryMode, Oid, TreeEntry};

/// [`GridRepo::list_dir_recursive`] through the kept readers: the
/// trees a level at a time (one exchange each), then listed depth
/// first in tree order, as `ls-tree -r` lists them. Deeper than
/// [`KEPT_WALK_DEPTH`] (no grid layout is), `ls-tree` does it.
pub(super) fn walk_kept(repo: &GridRepo, commit: &str, path: &str) -> Option<Vec<TreeEntry>> {
    let root = repo
        .cat
        .trees(&repo.git, &[format!("{commit}:{path}")])?
        .pop()?;
    let mut trees: HashMap<Oid, Vec<TreeEntry>> = HashMap::new();
    let mut level: Vec<Oid> = subtrees(&root, &trees);
    for _ in 0..KEPT_WALK_DEPTH {
        if level.is_empty() {
            let mut all = Vec::new();
            list_below(&root, b"", &trees, &mut all);
            return Some(all);
        }
        let found = repo.cat.trees(&repo.git, &level)?;
        let mut next = Vec::new();
        for (oid, entries) in level.into_iter().zip(found) {
            next.extend(subtrees(&entries, &trees));
            trees.insert(oid, entries);
        }
        next.sort();
        next.dedup();
        next.retain(|oid| !trees.contains_key(oid));
        level = next;
    }
    None
}

/// Levels of directories below a listed one that the kept readers walk;
/// the lanes are three deep (`p50/any/20261130T1205/t.json`).
const KEPT_WALK_DEPTH: usize = 32;

/// The trees among `entries` not read yet.
fn subtrees(entries: &[TreeEntry], read: &HashMap<Oid, Vec<TreeEntry>>) -> Vec<Oid> {
    entries
        .iter()
        .filter(|e| e.mode == EntryMode::Tree && !read.contains_key(&e.oid))
        .map(|e| e.oid.clone())
        .collect()
}

/// Everything but trees below `entries`, named from `prefix` on, depth
/// first.
fn list_below(
    entries: &[TreeEntry],
    prefix: &[u8],
    trees: &HashMap<Oid, Vec<TreeEntry>>,
    out: &mut Vec<TreeEntry>,
) {
    for e in entries {
        let mut name = prefix.to_vec();
        name.extend_from_slice(&e.name);
        if e.mode == EntryMode::Tree {
            name.push(b'/');
            list_below(&trees[&e.oid], &name, trees, out);
        } else {
            out.push(TreeEntry {
                mode: e.mode,
                oid: e.oid.clone(),
                name,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::Git;
    use crate::git::tree::{committed_repo, parse_ls_tree};

    #[test]
    fn the_kept_readers_list_as_ls_tree_does() {
        // Three levels as the lanes have them, two identical subtrees, a
        // name with a space and one that is not UTF-8, an executable, a
        // symlink, and a file beside the directories.
        let (_dir, repo) = committed_repo(|dir| {
            let files: [&[u8]; 7] = [
                b"l/p50/any/t1/a.json",
                b"l/p50/any/t1/b c.json",
                b"l/p90/gpu/t1/a.json",
                b"l/p90/gpu/t2/\xff.json",
                b"l/p90/top",
                b"l/run.sh",
                b"other/x",
            ];
            for f in files {
                use std::os::unix::ffi::OsStrExt;
                let p = dir.join(std::ffi::OsStr::from_bytes(f));
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, "same").unwrap();
            }
            let run_sh = dir.join("l/run.sh");
            let exec = std::os::unix::fs::PermissionsExt::from_mode(0o755);
            std::fs::set_permissions(&run_sh, exec).unwrap();
            std::os::unix::fs::symlink("p50", dir.join("l/link")).unwrap();
        });
        let ls_tree = |args: &[&str], strip: &[u8]| {
            parse_ls_tree(&repo.git.run(args).unwrap().stdout, strip).unwrap()
        };
        let kept = walk_kept(&repo, "HEAD", "l").expect("read by the kept readers");
        assert_eq!(kept.len(), 7);
        assert_eq!(
            kept,
            ls_tree(
                &["ls-tree", "-r", "-z", "--full-tree", "HEAD", "--", "l/"],
                b"l/"
            )
        );
        let dirs = repo
            .cat
            .trees(
                &repo.git,
                &[
                    "HEAD:l".into(),
                    "HEAD:nothing".into(),
                    "HEAD:other/x".into(),
                ],
            )
            .unwrap();
        assert_eq!(
            dirs[0],
            ls_tree(&["ls-tree", "-z", "--full-tree", "HEAD", "--", "l/"], b"l/")
        );
        assert!(
            dirs[1].is_empty() && dirs[2].is_empty(),
            "not there; not a tree"
        );
        assert!(dirs[0].iter().any(|e| e.mode == EntryMode::Tree));
        assert!(dirs[0].iter().any(|e| e.mode == EntryMode::Symlink));
        assert!(dirs[0].iter().any(|e| e.mode == EntryMode::Executable));
    }

    #[test]
    fn a_tree_deeper_than_the_kept_walk_is_listed_by_ls_tree() {
        let dir = tempfile::tempdir().unwrap();
        let git = Git::new("git", dir.path(), std::time::Duration::from_secs(30));
        git.run(&["init", "-q", "--bare"]).unwrap();
        // A blob, then a tree around it KEPT_WALK_DEPTH + 2 times.
        let mut oid = git
            .run_with(&["hash-object", "-w", "--stdin"], Some(b"deep"), &[0])
            .unwrap()
            .stdout_str()
            .to_owned();
        let mut mode = "100644 blob";
        for _ in 0..KEPT_WALK_DEPTH + 2 {
            let line = format!("{mode} {oid}\td\n");
            oid = git
                .run_with(&["mktree"], Some(line.as_bytes()), &[0])
                .unwrap()
                .stdout_str()
                .to_owned();
            mode = "040000 tree";
        }
        let repo = GridRepo::read_only(git, "main");
        assert_eq!(walk_kept(&repo, &oid, "d"), None, "too deep for the walk");
        let all = repo.list_dir_recursive(&oid, "d").unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].name_lossy(), "d/".repeat(KEPT_WALK_DEPTH) + "d");
    }
}
