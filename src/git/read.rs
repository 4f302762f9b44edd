//! Reading the clone: tree listings, and bounded reads of blobs. Every
//! read of grid content checks sizes first (`cat-file --batch-check`) and
//! reads only what fits under the caller's cap and the round's budget:
//! twenty entries naming one 50 MB blob cost a pusher a few KB, and must not
//! cost a reader a gigabyte.

use std::io::{BufRead, Read};

use super::batch::{ObjectInfo, parse_batch_check};
use super::command::GitError;
use super::repo::GridRepo;
use super::tree::{TreeEntry, parse_ls_tree};

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
    /// Something is there, read or not.
    pub fn exists(&self) -> bool {
        !matches!(self, Blob::Missing)
    }

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

/// Bytes of `ls-tree -r` read when the kept readers cannot answer: a
/// few hundred thousand entries.
const LS_TREE_CAP: usize = 64 << 20;

impl GridRepo {
    /// Does `path` exist in `commit`? Reads nothing.
    pub fn exists(&self, commit: &str, path: &str) -> Result<bool, GitError> {
        Ok(self
            .object_info(&[format!("{commit}:{path}")])?
            .pop()
            .flatten()
            .is_some())
    }

    /// The entries of directory `path` (e.g. `tasks/queue`) in `commit`;
    /// empty when the directory does not exist.
    pub fn list_dir(&self, commit: &str, path: &str) -> Result<Vec<TreeEntry>, GitError> {
        Ok(self.list_dirs(commit, &[path])?.pop().unwrap_or_default())
    }

    /// The entries of several directories of `commit` (none inside another),
    /// in the order given, with one `ls-tree`: a claim lists the queue, the claims and the nodes
    /// in every round, and each git process costs a round a few ms more in
    /// which another node's push can land first.
    pub fn list_dirs(&self, commit: &str, paths: &[&str]) -> Result<Vec<Vec<TreeEntry>>, GitError> {
        let specs: Vec<String> = paths.iter().map(|p| format!("{commit}:{p}")).collect();
        if let Some(dirs) = self.cat.trees(&self.git, &specs) {
            // No tree is empty: an empty listing is a directory not there,
            // or one the clone lost, which is no empty one (`git::damage`).
            self.none_lost(&specs, |i| dirs[i].is_empty())?;
            return Ok(dirs);
        }
        let prefixes: Vec<String> = paths.iter().map(|p| format!("{p}/")).collect();
        let mut args = vec!["ls-tree", "-z", "--full-tree", commit, "--"];
        args.extend(prefixes.iter().map(String::as_str));
        let out = self.git.run(&args)?;
        let all = parse_ls_tree(&out.stdout, b"").map_err(|what| GitError::Unexpected {
            args: "ls-tree".into(),
            what,
        })?;
        let mut dirs: Vec<Vec<TreeEntry>> = vec![Vec::new(); paths.len()];
        for mut e in all {
            let Some(i) = prefixes
                .iter()
                .position(|p| e.name.starts_with(p.as_bytes()))
            else {
                continue;
            };
            e.name.drain(..prefixes[i].len());
            dirs[i].push(e);
        }
        Ok(dirs)
    }

    /// Every file (and symlink, and submodule) below directory `path` in
    /// `commit`, at any depth, named by its path below `path`
    /// (`p50/any/20261130T1205/t.json`): through the kept readers, which
    /// read only the subtrees the last walk of `path` did not (`walk.rs`);
    /// `ls-tree -r` when they cannot answer (10,000 entries in about 8 ms).
    /// A subtree met again is listed once, its copies as tree entries (a
    /// tree where a file belongs), and at most `walk::MAX_LISTED` entries.
    pub fn list_dir_recursive(&self, commit: &str, path: &str) -> Result<Vec<TreeEntry>, GitError> {
        if let Some(all) = super::walk::walk_kept(&self.cat, &self.git, &self.walks, commit, path) {
            return Ok(all);
        }
        // The kept readers failed: `ls-tree` lists it, expanding every
        // copy of a subtree, so its output is capped.
        let prefix = format!("{path}/");
        let (out, more) = self.git.run_capped(
            &["ls-tree", "-r", "-z", "--full-tree", commit, "--", &prefix],
            LS_TREE_CAP,
        )?;
        let whole = match more {
            false => &out.stdout[..],
            // Up to the last whole record.
            true => {
                let end = out.stdout.iter().rposition(|b| *b == 0).unwrap_or(0);
                tracing::warn!(dir = path, cap = LS_TREE_CAP, "listing cut at its cap");
                &out.stdout[..end]
            }
        };
        let mut all =
            parse_ls_tree(whole, prefix.as_bytes()).map_err(|what| GitError::Unexpected {
                args: "ls-tree -r".into(),
                what,
            })?;
        all.truncate(super::walk::MAX_LISTED);
        Ok(all)
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
        if let Some(infos) = self.cat.info(&self.git, &input, specs.len()) {
            self.none_lost(specs, |i| infos[i].is_none())?;
            return Ok(infos);
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
        let mut wanted: Vec<(usize, String, u64)> = Vec::new();
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
                        wanted.push((i, info.oid, info.size));
                        Blob::Data(Vec::new())
                    }
                }
            });
        }
        if wanted.is_empty() {
            return Ok(found);
        }
        // By object id: what --batch-check sized is what is read.
        let oids: Vec<String> = wanted.iter().map(|(_, oid, _)| oid.clone()).collect();
        let sizes: Vec<u64> = wanted.iter().map(|(_, _, size)| *size).collect();
        let bodies = match self.cat.contents(&self.git, &oids, &sizes) {
            Some(bodies) => bodies,
            None => self.read_sized(&oids)?,
        };
        for ((i, _, _), body) in wanted.into_iter().zip(bodies) {
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

    /// Of `specs`, those `missing` says were not found: is any an object
    /// the clone lost, not a path that is not there (`git::damage`)?
    fn none_lost(&self, specs: &[String], missing: impl Fn(usize) -> bool) -> Result<(), GitError> {
        let missing: Vec<&str> = (0..specs.len())
            .filter(|&i| missing(i))
            .map(|i| specs[i].as_str())
            .collect();
        match super::damage::lost(&self.cat, &self.git, &missing) {
            Some(Err(what)) => Err(GitError::Damaged(what)),
            _ => Ok(()),
        }
    }

    /// Read the file at `path` in `commit`, if it is there and at most `cap`
    /// bytes.
    pub fn read_path(&self, commit: &str, path: &str, cap: u64) -> Result<Blob, GitError> {
        Ok(self
            .read_objects(&[format!("{commit}:{path}")], cap)?
            .pop()
            .unwrap_or(Blob::Missing))
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
    use crate::git::tree::committed_repo;
    use crate::git::{EntryMode, Git};

    #[test]
    fn several_directories_are_listed_in_one_call() {
        let (_dir, repo) = committed_repo(|dir| {
            for f in ["a/x", "a/y", "a/b/z", "c/w", "d/v"] {
                let p = dir.join(f);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, f).unwrap();
            }
        });
        let names =
            |v: &Vec<TreeEntry>| -> Vec<String> { v.iter().map(TreeEntry::name_lossy).collect() };
        let dirs = repo.list_dirs("HEAD", &["a", "c", "e"]).unwrap();
        assert_eq!(names(&dirs[0]), ["b", "x", "y"], "direct entries only");
        assert_eq!(dirs[0][0].mode, EntryMode::Tree);
        assert_eq!(names(&dirs[1]), ["w"]);
        assert!(dirs[2].is_empty(), "a directory that is not there");
    }

    #[test]
    fn reads_go_on_when_the_kept_readers_died() {
        let dir = tempfile::tempdir().unwrap();
        let git = Git::new("git", dir.path(), std::time::Duration::from_secs(30));
        git.run(&["init", "-q", "--bare"]).unwrap();
        let a = git.run_with(&["hash-object", "-w", "--stdin"], Some(b"a"), &[0]);
        let a = a.unwrap().stdout_str().to_owned();
        let repo = GridRepo::read_only(git, "main");
        let read = || repo.read_objects(std::slice::from_ref(&a), 10).unwrap();
        assert_eq!(read()[0].data(), Some(&b"a"[..]));
        repo.cat.kill_for_test();
        assert_eq!(read()[0].data(), Some(&b"a"[..]));
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
