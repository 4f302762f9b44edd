//! A directory listed at any depth (`ls-tree -r`) through the clone's kept
//! readers (`batch`): the lanes are listed in every claim, and each
//! `ls-tree` is a process in a round a push must win.
//!
//! A tree is named by its contents, so a subtree read by the last walk of
//! the same directory is the same list now. A claim changes one batch
//! directory of the lanes (and the directories above it); the others are
//! not read again. On a queue of 10,000 tasks in 100 batches, the walk
//! read 10,000 entries each claim, 5-6 ms of a 75 ms claim.

use std::collections::HashMap;
use std::sync::Arc;

use super::batch::CatFiles;
use super::command::Git;
use super::tree::{EntryMode, Oid, TreeEntry};

/// The subtrees of one directory's last walk, by id.
type Trees = HashMap<Oid, Arc<Vec<TreeEntry>>>;

/// The trees each walked directory's last walk read, shared by a clone's
/// copies.
#[derive(Debug, Default)]
pub(super) struct WalkCache {
    by_dir: std::sync::Mutex<HashMap<String, Trees>>,
}

/// A walk's trees are kept for the next only while they hold this much
/// (names, ids and the entries themselves; a queue of about 20,000 tasks):
/// past it, each walk reads the whole directory, as before, and an idle
/// node keeps nothing of a crowd of long names.
const KEPT_BYTES: usize = 2 << 20;

/// What `trees` hold in memory, as [`KEPT_BYTES`] counts it.
fn held(trees: &Trees) -> usize {
    trees
        .values()
        .flat_map(|t| t.iter())
        .map(|e| std::mem::size_of::<TreeEntry>() + e.name.len() + e.oid.len())
        .sum()
}

/// `GridRepo::list_dir_recursive` through the kept readers: the
/// trees a level at a time (one exchange each, for the trees the last
/// walk of `path` did not read), then listed depth first in tree order,
/// as `ls-tree -r` lists them, but for what a listing must not expand
/// (`list_below`): a subtree met again, and trees deeper than
/// [`KEPT_WALK_DEPTH`], are listed as one entry each, a tree where a
/// file belongs, which the grid's rules refuse (and remove).
pub(super) fn walk_kept(
    cat: &CatFiles,
    git: &Git,
    cache: &WalkCache,
    commit: &str,
    path: &str,
) -> Option<Vec<TreeEntry>> {
    let root = cat.trees(git, &[format!("{commit}:{path}")])?.pop()?;
    let last: Trees = cache
        .by_dir
        .lock()
        .ok()
        .and_then(|mut m| m.remove(path))
        .unwrap_or_default();
    let mut trees: Trees = HashMap::new();
    let mut level: Vec<Oid> = subtrees(&root, &trees);
    for depth in 0..=KEPT_WALK_DEPTH {
        if level.is_empty() || depth == KEPT_WALK_DEPTH {
            let mut all = Vec::new();
            let mut listed = Listed::default();
            list_below(&root, b"", &trees, &mut listed, &mut all);
            if held(&trees) <= KEPT_BYTES
                && let Ok(mut m) = cache.by_dir.lock()
            {
                m.insert(path.to_owned(), trees);
            }
            return Some(all);
        }
        // Read only what the last walk did not: a tree's id names its
        // contents.
        let (known, unknown): (Vec<Oid>, Vec<Oid>) =
            level.into_iter().partition(|oid| last.contains_key(oid));
        let found = if unknown.is_empty() {
            Vec::new()
        } else {
            cat.trees(git, &unknown)?
        };
        let read = unknown.into_iter().zip(found.into_iter().map(Arc::new));
        let kept = known.into_iter().map(|oid| {
            let entries = last[&oid].clone();
            (oid, entries)
        });
        let mut next = Vec::new();
        for (oid, entries) in read.chain(kept) {
            next.extend(subtrees(&entries, &trees));
            trees.insert(oid, entries);
        }
        next.sort();
        next.dedup();
        next.retain(|oid| !trees.contains_key(oid));
        level = next;
    }
    unreachable!("the last level lists")
}

/// Levels of directories below a listed one that the walk reads; the
/// lanes are three deep (`p50/any/20261130T1205/t.json`). A tree deeper
/// is listed as one entry.
const KEPT_WALK_DEPTH: usize = 32;

/// At most this many entries are listed of one directory, in tree order
/// (a queue of a few hundred thousand tasks; tens of MB): a listing the
/// grid's writers size must not size a node's memory.
pub(super) const MAX_LISTED: usize = 500_000;

/// What a listing has expanded so far.
#[derive(Default)]
struct Listed {
    /// The subtrees already listed: one met again is a copy.
    expanded: std::collections::HashSet<Oid>,
    count: usize,
}

/// The trees among `entries` not read yet.
fn subtrees(entries: &[TreeEntry], read: &Trees) -> Vec<Oid> {
    entries
        .iter()
        .filter(|e| e.mode == EntryMode::Tree && !read.contains_key(&e.oid))
        .map(|e| e.oid.clone())
        .collect()
}

/// Everything but trees below `entries`, named from `prefix` on, depth
/// first, at most [`MAX_LISTED`]. A subtree is expanded once: a tree
/// met again (and one not read, below the walk's depth) is listed as
/// itself. Without that, a push of a few KB (eight levels of ten names
/// for one subtree) lists 10^8 paths and takes every node's memory;
/// with it, a listing is as long as the trees fetched.
fn list_below(
    entries: &[TreeEntry],
    prefix: &[u8],
    trees: &Trees,
    listed: &mut Listed,
    out: &mut Vec<TreeEntry>,
) {
    for e in entries {
        if listed.count >= MAX_LISTED {
            return;
        }
        let mut name = prefix.to_vec();
        name.extend_from_slice(&e.name);
        let below = (e.mode == EntryMode::Tree)
            .then(|| trees.get(&e.oid))
            .flatten()
            .filter(|_| listed.expanded.insert(e.oid.clone()));
        if let Some(below) = below {
            name.push(b'/');
            list_below(below, &name, trees, listed, out);
        } else {
            listed.count += 1;
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
    use crate::git::GridRepo;
    use crate::git::tree::{committed_repo, git_in, parse_ls_tree};

    /// `path` at `commit`, walked through `repo`'s kept readers.
    fn walk(repo: &GridRepo, commit: &str, path: &str) -> Option<Vec<TreeEntry>> {
        walk_kept(&repo.cat, &repo.git, &repo.walks, commit, path)
    }

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
        let kept = walk(&repo, "HEAD", "l").expect("read by the kept readers");
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
    fn a_walk_reads_only_the_trees_the_last_walk_of_its_directory_did_not() {
        let (dir, repo) = committed_repo(|dir| {
            for (f, body) in [("l/a/x/1.json", "1"), ("l/b/y/2.json", "2")] {
                std::fs::create_dir_all(dir.join(f).parent().unwrap()).unwrap();
                std::fs::write(dir.join(f), body).unwrap();
            }
        });
        let git = |args: &[&str]| git_in(dir.path(), args);
        let first = walk(&repo, "HEAD", "l").unwrap();
        assert_eq!(first.len(), 2);
        // A second commit changes `l/a` only; then the object of the
        // unchanged `l/b/y` goes from the disk. The walk still lists it,
        // as the last walk read it: it was not read again.
        std::fs::write(dir.path().join("l/a/x/3.json"), "3").unwrap();
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "y"]);
        let expected = parse_ls_tree(
            &repo
                .git
                .run(&["ls-tree", "-r", "-z", "--full-tree", "HEAD", "--", "l/"])
                .unwrap()
                .stdout,
            b"l/",
        )
        .unwrap();
        let unchanged = git(&["rev-parse", "HEAD:l/b/y"]);
        let (fan, rest) = unchanged.split_at(2);
        std::fs::remove_file(dir.path().join(".git/objects").join(fan).join(rest)).unwrap();
        let second = walk(&repo, "HEAD", "l").unwrap();
        assert_eq!(second, expected);
        assert_eq!(second.len(), 3);
        // A clone's copy with no walk behind it reads every tree, and finds
        // that one missing.
        let fresh = GridRepo::read_only(repo.git.clone(), "main");
        let listed = walk(&fresh, "HEAD", "l").unwrap_or_default();
        assert!(
            !listed.iter().any(|e| e.name == b"b/y/2.json"),
            "{listed:?}"
        );
        // Another directory's walk keeps its own trees.
        assert_eq!(walk(&repo, "HEAD", "l/a").unwrap().len(), 2);
        assert_eq!(walk(&repo, "HEAD", "l").unwrap(), expected);
    }

    #[test]
    fn a_tree_deeper_than_the_walk_is_listed_as_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let git = Git::new("git", dir.path(), std::time::Duration::from_secs(30));
        git.run(&["init", "-q", "--bare"]).unwrap();
        // A blob, then a tree around it KEPT_WALK_DEPTH + 4 times.
        let mut oid = git
            .run_with(&["hash-object", "-w", "--stdin"], Some(b"deep"), &[0])
            .unwrap()
            .stdout_str()
            .to_owned();
        let mut mode = "100644 blob";
        for _ in 0..KEPT_WALK_DEPTH + 4 {
            let line = format!("{mode} {oid}\td\n");
            oid = git
                .run_with(&["mktree"], Some(line.as_bytes()), &[0])
                .unwrap()
                .stdout_str()
                .to_owned();
            mode = "040000 tree";
        }
        let repo = GridRepo::read_only(git, "main");
        let all = walk(&repo, &oid, "d").unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].mode, EntryMode::Tree, "a tree where a file belongs");
        assert_eq!(all[0].name_lossy(), "d/".repeat(KEPT_WALK_DEPTH) + "d");
        assert_eq!(repo.list_dir_recursive(&oid, "d").unwrap(), all);
    }

    /// Eight levels of ten names for one subtree: a push of a few KB, 10^8
    /// paths. Each subtree is listed once; its copies are entries of their
    /// own, and `ls-tree` (when the kept readers cannot answer) stops at
    /// its cap.
    #[test]
    fn a_subtree_named_again_is_listed_once_and_its_copies_as_trees() {
        let dir = tempfile::tempdir().unwrap();
        let git = Git::new("git", dir.path(), std::time::Duration::from_secs(60));
        git.run(&["init", "-q", "--bare"]).unwrap();
        let mut oid = git
            .run_with(&["hash-object", "-w", "--stdin"], Some(b"{}"), &[0])
            .unwrap()
            .stdout_str()
            .to_owned();
        let mut mode = "100644 blob";
        for level in 0..9 {
            let names: String = (0..10)
                .map(|i| {
                    format!(
                        "{mode} {oid}\t{i}{}\n",
                        if level == 0 { ".json" } else { "" }
                    )
                })
                .collect();
            oid = git
                .run_with(&["mktree"], Some(names.as_bytes()), &[0])
                .unwrap()
                .stdout_str()
                .to_owned();
            mode = "040000 tree";
        }
        let line = format!("040000 tree {oid}\tl\n");
        let top = git
            .run_with(&["mktree"], Some(line.as_bytes()), &[0])
            .unwrap()
            .stdout_str()
            .to_owned();
        let repo = GridRepo::read_only(git.clone(), "main");
        let all = walk(&repo, &top, "l").unwrap();
        // Ten files at the bottom of one chain, nine copies at each of the
        // eight levels above.
        assert_eq!(all.len(), 10 + 9 * 8, "{}", all.len());
        let copies: Vec<_> = all.iter().filter(|e| e.mode == EntryMode::Tree).collect();
        assert_eq!(copies.len(), 72);
        assert_eq!(copies[0].name_lossy(), "0/0/0/0/0/0/0/1");
        assert_eq!(all[0].name_lossy(), "0/0/0/0/0/0/0/0/0.json");
        // The fallback lists through `ls-tree -r`, capped.
        let (out, more) = git
            .run_capped(&["ls-tree", "-r", "-z", &top, "--", "l/"], 4096)
            .unwrap();
        assert!(more && out.stdout.len() <= 4096 + 65536);
    }
}
