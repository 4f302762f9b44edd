//! What a tree holds, as the rest of the crate sees it: object ids, entry
//! modes and entries. Read by `read` (from `ls-tree`) and `batch` (from
//! tree objects), and written by `edits` (into a `fast-import` stream).

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

/// What a task's rules see of an entry: its kind alone.
impl From<EntryMode> for crate::grid::task::EntryKind {
    fn from(mode: EntryMode) -> Self {
        use crate::grid::task::EntryKind;
        match mode {
            EntryMode::File => EntryKind::File,
            EntryMode::Executable => EntryKind::Executable,
            EntryMode::Symlink => EntryKind::Symlink,
            EntryMode::Tree => EntryKind::Directory,
            EntryMode::Submodule => EntryKind::Submodule,
        }
    }
}

impl EntryMode {
    const ALL: [EntryMode; 5] = [
        EntryMode::File,
        EntryMode::Executable,
        EntryMode::Symlink,
        EntryMode::Tree,
        EntryMode::Submodule,
    ];

    /// The mode as a tree object stores it: as `ls-tree` prints it
    /// ([`EntryMode::as_str`]) without the leading zero of a tree's
    /// `040000`. Anything else (zero-padded, group-writable) is none.
    pub(super) fn of_tree_object(mode: &[u8]) -> Option<EntryMode> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str().trim_start_matches('0').as_bytes() == mode)
    }

    /// The mode as `ls-tree` prints it.
    pub(super) fn parse(mode: &str) -> Option<EntryMode> {
        Self::ALL.into_iter().find(|m| m.as_str() == mode)
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

/// `ls-tree -z` records, names stripped of `strip`.
pub(super) fn parse_ls_tree(out: &[u8], strip: &[u8]) -> Result<Vec<TreeEntry>, String> {
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

/// Keep one entry of each name: the first directory of that name if there
/// is one (a file placed in front of `tasks/in_progress` hid every claim,
/// and kept a finished run's result out), else the first entry, as git's
/// lookups find it. Returns the others.
pub fn first_of_each_name(entries: &mut Vec<TreeEntry>) -> Vec<TreeEntry> {
    let mut chosen: std::collections::HashMap<Vec<u8>, usize> = std::collections::HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let c = chosen.entry(e.name.clone()).or_insert(i);
        if e.mode == EntryMode::Tree && entries[*c].mode != EntryMode::Tree {
            *c = i;
        }
    }
    let (kept, later) = std::mem::take(entries)
        .into_iter()
        .enumerate()
        .partition::<Vec<_>, _>(|(i, e)| chosen.get(&e.name) == Some(i));
    *entries = kept.into_iter().map(|(_, e)| e).collect();
    later.into_iter().map(|(_, e)| e).collect()
}

/// A name no path can reach (it holds a `/`; a server without `fsck`
/// takes it): `mktree` refuses it (`git::irregular`).
pub fn unaddressable(name: &[u8]) -> bool {
    name.contains(&b'/')
}

/// Are `entries` in the order git writes a tree in, each name once? Names
/// compare as bytes, a directory's as if it ended in `/`; two entries of
/// one name next to each other (a file and a directory so named, too) are
/// out of order.
pub fn in_git_order(entries: &[TreeEntry]) -> bool {
    fn key(e: &TreeEntry) -> impl Iterator<Item = u8> + '_ {
        let dir = (e.mode == EntryMode::Tree).then_some(b'/');
        e.name.iter().copied().chain(dir)
    }
    entries
        .windows(2)
        .all(|w| w[0].name != w[1].name && key(&w[0]).lt(key(&w[1])))
}

/// For tests: git run in the work tree `dir`, as a test's author and
/// committer; its output, trimmed.
#[cfg(test)]
pub(super) fn git_in(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// For tests: a repository whose one commit on `main` holds the files
/// `write` puts in its work tree (given the work tree's path), read in
/// place.
#[cfg(test)]
pub(super) fn committed_repo(
    write: impl FnOnce(&std::path::Path),
) -> (tempfile::TempDir, super::GridRepo) {
    let dir = tempfile::tempdir().unwrap();
    git_in(dir.path(), &["init", "-q", "-b", "main"]);
    write(dir.path());
    git_in(dir.path(), &["add", "-A"]);
    git_in(dir.path(), &["commit", "-q", "-m", "x"]);
    let git = super::Git::new(
        "git",
        dir.path().join(".git"),
        std::time::Duration::from_secs(30),
    );
    (dir, super::GridRepo::read_only(git, "main"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_order_is_names_as_bytes_a_directory_as_if_ending_in_a_slash() {
        let e = |name: &str, mode| TreeEntry {
            mode,
            oid: "0".repeat(40),
            name: name.as_bytes().to_vec(),
        };
        let (f, t) = (EntryMode::File, EntryMode::Tree);
        // As git writes them: `a` the file, `a-b`, `a` the directory.
        assert!(in_git_order(&[
            e("a", f),
            e("a-b", f),
            e("a", t),
            e("b", f)
        ]));
        assert!(in_git_order(&[]));
        assert!(!in_git_order(&[e("a", f), e("a", f)]));
        assert!(
            !in_git_order(&[e("a", f), e("a", t)]),
            "one name, two kinds"
        );
        assert!(!in_git_order(&[e("b", f), e("a", f)]));
        assert!(!in_git_order(&[e("a", t), e("a-b", f)]));
    }

    #[test]
    fn of_one_name_the_directory_is_kept_else_the_first() {
        let e = |name: &str, mode, oid: char| TreeEntry {
            mode,
            oid: oid.to_string().repeat(40),
            name: name.as_bytes().to_vec(),
        };
        let (f, t) = (EntryMode::File, EntryMode::Tree);
        let mut entries = vec![
            e("tasks", f, '1'),
            e("tasks", t, '2'),
            e("x.json", f, '3'),
            e("x.json", f, '4'),
        ];
        let dropped = first_of_each_name(&mut entries);
        assert_eq!(entries, [e("tasks", t, '2'), e("x.json", f, '3')]);
        assert_eq!(dropped, [e("tasks", f, '1'), e("x.json", f, '4')]);
    }
}
