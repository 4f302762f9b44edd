//! Long-lived `git cat-file --batch-check` and `--batch` processes, one of
//! each per clone. A sync round reads the clone five or six times (claims,
//! records, a sample of the queue, the outbox's paths), each a size check
//! and a read: twelve git processes a round, 2-3 ms each on an idle
//! machine and several times that on a busy one, in a round a push must
//! win. Kept open, a read is a write and a read on a pipe.
//!
//! They see what later fetches and commits bring: git looks for an object
//! it does not find again after re-reading the pack directory. Anything
//! odd (a process that died, an answer that does not parse, no answer
//! within the git timeout) drops the process, and the caller reads with a
//! process of its own, which reports the error as before; the next read
//! starts a new one.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::command::Git;
use super::tree::{EntryMode, Oid, TreeEntry};

/// One object as `cat-file --batch-check` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub oid: Oid,
    /// `blob`, `tree`, `commit`, `tag`.
    pub kind: String,
    pub size: u64,
}

/// The two processes of one clone, started at their first use.
#[derive(Debug, Default)]
pub(super) struct CatFiles {
    check: Mutex<Option<Batch>>,
    contents: Mutex<Option<Batch>>,
    /// Set for good once a tree read was out of git's order (a name twice):
    /// from then on each commit writes the directories it edits again
    /// (`git::irregular`).
    irregular: AtomicBool,
}

impl CatFiles {
    /// `cat-file --batch-check` of `input` (`lines` specs, one a line):
    /// what each names, `None` for each that does not exist; None in all
    /// when the kept process could not answer.
    pub fn info(&self, git: &Git, input: &[u8], lines: usize) -> Option<Vec<Option<ObjectInfo>>> {
        let answer = Self::exchange(&self.check, git, "--batch-check", input, |out| {
            let mut all = Vec::new();
            for _ in 0..lines {
                // Each answer line echoes a spec at most, and specs are ours.
                if out.read_until(b'\n', &mut all).ok()? == 0 {
                    return None;
                }
            }
            Some(all)
        })?;
        parse_batch_check(&answer, lines).ok()
    }

    /// `cat-file --batch` of `oids`, whose sizes the caller has checked
    /// (`sizes[i]` for `oids[i]`): the contents, or None each if missing.
    pub fn contents(
        &self,
        git: &Git,
        oids: &[String],
        sizes: &[u64],
    ) -> Option<Vec<Option<Vec<u8>>>> {
        if oids.is_empty() {
            return Some(Vec::new());
        }
        let mut input = Vec::new();
        for oid in oids {
            input.extend_from_slice(oid.as_bytes());
            input.push(b'\n');
        }
        Self::exchange(&self.contents, git, "--batch", &input, |out| {
            let mut found = Vec::with_capacity(oids.len());
            for &size in sizes {
                let mut header = Vec::new();
                if out.read_until(b'\n', &mut header).ok()? == 0 {
                    return None;
                }
                let header = std::str::from_utf8(&header).ok()?.trim_end();
                if header.ends_with(" missing") {
                    found.push(None);
                    continue;
                }
                // The size git states must be the one checked: never read
                // more than the caller allowed for.
                let stated: u64 = header.rsplit(' ').next()?.parse().ok()?;
                if stated != size {
                    return None;
                }
                let mut body = vec![0; usize::try_from(size).ok()?.checked_add(1)?];
                out.read_exact(&mut body).ok()?;
                (body.pop() == Some(b'\n')).then_some(())?;
                found.push(Some(body));
            }
            Some(found)
        })
    }

    /// The entries of the trees that `specs` (`<commit>:<path>`, or a
    /// tree's id) name, as `ls-tree` lists them (names without the path);
    /// an empty list for a spec that names no tree, as `ls-tree` of a
    /// directory that is not there.
    ///
    /// A tree out of git's order is listed with the first entry of each
    /// name only, as git's own lookups find it, and the reader remembers
    /// it met one (`git::irregular`).
    pub fn trees(&self, git: &Git, specs: &[String]) -> Option<Vec<Vec<TreeEntry>>> {
        let mut listed = self.trees_as_written(git, specs)?;
        for entries in &mut listed {
            if !super::tree::in_git_order(entries) {
                self.irregular.store(true, Ordering::Relaxed);
                super::tree::first_of_each_name(entries);
            }
            if entries.iter().any(|e| super::tree::unaddressable(&e.name)) {
                self.irregular.store(true, Ordering::Relaxed);
            }
        }
        Some(listed)
    }

    /// [`Self::trees`] with every entry each tree object holds.
    pub fn trees_as_written(&self, git: &Git, specs: &[String]) -> Option<Vec<Vec<TreeEntry>>> {
        let mut input = Vec::new();
        for spec in specs {
            // A newline would shift every answer after it; the grid code
            // builds none.
            if spec.contains('\n') {
                return None;
            }
            input.extend_from_slice(spec.as_bytes());
            input.push(b'\n');
        }
        let infos = self.info(git, &input, specs.len())?;
        let trees: Vec<(usize, ObjectInfo)> = infos
            .into_iter()
            .enumerate()
            .filter_map(|(i, info)| Some((i, info?)))
            .filter(|(_, info)| info.kind == "tree")
            .collect();
        let oids: Vec<String> = trees.iter().map(|(_, t)| t.oid.clone()).collect();
        let sizes: Vec<u64> = trees.iter().map(|(_, t)| t.size).collect();
        let bodies = self.contents(git, &oids, &sizes)?;
        let mut listed = vec![Vec::new(); specs.len()];
        for ((i, info), body) in trees.into_iter().zip(bodies) {
            // Each id is 20 raw bytes in a SHA-1 repository, 32 in SHA-256.
            listed[i] = parse_tree(&body?, info.oid.len() / 2)?;
        }
        Some(listed)
    }

    /// Has a tree read been out of git's order?
    /// A tree out of git's order was met outside [`Self::trees`]
    /// (`git::damage`): commits write the directories they edit again.
    pub(super) fn mark_irregular(&self) {
        self.irregular.store(true, Ordering::Relaxed);
    }

    pub fn met_irregular(&self) -> bool {
        self.irregular.load(Ordering::Relaxed)
    }

    /// Drop both processes (after housekeeping replaced the packs).
    pub fn reset(&self) {
        for slot in [&self.check, &self.contents] {
            if let Ok(mut b) = slot.lock() {
                *b = None;
            }
        }
    }

    /// Write `input` to the kept process (started if need be) while
    /// `read` takes its answer, within the git timeout. On any failure the
    /// process is dropped.
    fn exchange<T: Send>(
        slot: &Mutex<Option<Batch>>,
        git: &Git,
        mode: &str,
        input: &[u8],
        read: impl FnOnce(&mut BufReader<ChildStdout>) -> Option<T> + Send,
    ) -> Option<T> {
        // A lock poisoned by a panic elsewhere: read with a process of one's own.
        let mut guard = slot.lock().ok()?;
        // One that has exited since (killed, or out of memory) is replaced
        // before it is asked.
        if guard
            .as_mut()
            .is_none_or(|b| !matches!(b.child.try_wait(), Ok(None)))
        {
            *guard = Batch::start(git, mode);
        }
        let batch = guard.as_mut()?;
        let answer = batch.exchange(input, git.timeout(), read);
        if answer.is_none() {
            *guard = None;
        }
        answer
    }
}

/// `cat-file --batch-check` lines: `<oid> <type> <size>`, or `<spec>
/// missing` (`ambiguous` for a short id that names several objects).
pub(super) fn parse_batch_check(
    out: &[u8],
    expected: usize,
) -> Result<Vec<Option<ObjectInfo>>, String> {
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

/// A tree object's entries: `<octal mode> <name>\0<raw id>`, each.
pub(super) fn parse_tree(mut body: &[u8], id_len: usize) -> Option<Vec<TreeEntry>> {
    let mut entries = Vec::new();
    while !body.is_empty() {
        let space = body.iter().position(|b| *b == b' ')?;
        let nul = space + body[space..].iter().position(|b| *b == 0)?;
        let mode = EntryMode::of_tree_object(&body[..space])?;
        let id = body.get(nul + 1..nul + 1 + id_len)?;
        // A deep queue's listing is tens of thousands of entries: one
        // allocation each for the id, none for the mode.
        let mut hex = [0u8; 64];
        let hex = hex.get_mut(..id_len * 2)?;
        hex::encode_to_slice(id, hex).ok()?;
        entries.push(TreeEntry {
            mode,
            // Hex digits are ASCII.
            oid: String::from_utf8(hex.to_vec()).ok()?,
            name: body[space + 1..nul].to_vec(),
        });
        body = &body[nul + 1 + id_len..];
    }
    Some(entries)
}

#[derive(Debug)]
struct Batch {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Batch {
    fn start(git: &Git, mode: &str) -> Option<Batch> {
        let mut child = git.spawn_piped(&["cat-file", mode]).ok()?;
        let stdin = child.stdin.take()?;
        let stdout = BufReader::new(child.stdout.take()?);
        Some(Batch {
            child,
            stdin,
            stdout,
        })
    }

    /// The input is written from a thread of its own: git answers as it
    /// reads, and an answer larger than the pipe holds would otherwise
    /// stop both sides. A process that does not answer in time is killed,
    /// which ends the read.
    fn exchange<T: Send>(
        &mut self,
        input: &[u8],
        timeout: Duration,
        read: impl FnOnce(&mut BufReader<ChildStdout>) -> Option<T> + Send,
    ) -> Option<T> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).ok()?);
        let (stdin, stdout) = (&mut self.stdin, &mut self.stdout);
        std::thread::scope(|s| {
            let writer = s.spawn(move || stdin.write_all(input).and_then(|()| stdin.flush()));
            let (tx, rx) = std::sync::mpsc::channel();
            let reader = s.spawn(move || {
                let answer = read(stdout);
                let _ = tx.send(());
                answer
            });
            // Not reaped until dropped: the pid is still this child's. Killed
            // too when the answer was not understood, for the writer may
            // still be waiting on a full pipe.
            let kill = || nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            if rx.recv_timeout(timeout).is_err() {
                let _ = kill();
            }
            let answer = reader.join().ok().flatten();
            if answer.is_none() {
                let _ = kill();
            }
            let written = writer.join().ok().is_some_and(|w| w.is_ok());
            answer.filter(|_| written)
        })
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
impl CatFiles {
    /// The kept `--batch-check` process's pid, if one runs.
    pub(super) fn check_pid(&self) -> Option<u32> {
        self.check.lock().unwrap().as_ref().map(|b| b.child.id())
    }

    /// Kill both kept processes behind the slots' backs, as a crash would.
    pub(super) fn kill_for_test(&self) {
        for slot in [&self.check, &self.contents] {
            if let Some(batch) = slot.lock().unwrap().as_mut() {
                batch.child.kill().unwrap();
                batch.child.wait().unwrap();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bare() -> (tempfile::TempDir, Git) {
        let dir = tempfile::tempdir().unwrap();
        let git = Git::new("git", dir.path(), Duration::from_secs(30));
        git.run(&["init", "-q", "--bare"]).unwrap();
        (dir, git)
    }

    fn write_blob(git: &Git, body: &[u8]) -> String {
        let out = git.run_with(&["hash-object", "-w", "--stdin"], Some(body), &[0]);
        out.unwrap().stdout_str().to_owned()
    }

    /// Sizes, then contents, as `GridRepo::read_objects` asks.
    fn read(cat: &CatFiles, git: &Git, specs: &[String]) -> Option<Vec<Option<Vec<u8>>>> {
        let input: String = specs.iter().map(|s| format!("{s}\n")).collect();
        let infos = cat.info(git, input.as_bytes(), specs.len())?;
        let found: Vec<&ObjectInfo> = infos.iter().flatten().collect();
        let oids: Vec<String> = found.iter().map(|i| i.oid.clone()).collect();
        let sizes: Vec<u64> = found.iter().map(|i| i.size).collect();
        let mut bodies = cat.contents(git, &oids, &sizes)?.into_iter();
        Some(
            infos
                .iter()
                .map(|i| i.as_ref().and_then(|_| bodies.next().flatten()))
                .collect(),
        )
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
    fn tree_objects_parse_by_their_stored_modes() {
        let entry = |mode: &str, name: &str, id: u8| {
            let mut e = format!("{mode} {name}\0").into_bytes();
            e.extend([id; 20]);
            e
        };
        let body: Vec<u8> = [
            entry("40000", "dir", 1),
            entry("100644", "a.json", 0xab),
            entry("100755", "run", 2),
            entry("120000", "link", 3),
            entry("160000", "sub", 4),
        ]
        .concat();
        let listed = parse_tree(&body, 20).unwrap();
        let modes: Vec<EntryMode> = listed.iter().map(|e| e.mode).collect();
        use EntryMode::*;
        assert_eq!(modes, [Tree, File, Executable, Symlink, Submodule]);
        assert_eq!(listed[1].oid, "ab".repeat(20));
        assert_eq!(listed[1].name, b"a.json");
        // A mode git does not write (zero-padded, or group-writable) is not
        // guessed at: the listing goes to `ls-tree`, which says what it is.
        for odd in ["040000", "100664", "644"] {
            assert!(parse_tree(&entry(odd, "x", 5), 20).is_none(), "{odd}");
        }
        assert!(parse_tree(&entry("100644", "cut", 5)[..20], 20).is_none());
    }

    #[test]
    fn a_kept_reader_sees_objects_written_after_it_started() {
        let (dir, git) = bare();
        let cat = CatFiles::default();
        let a = write_blob(&git, b"a");
        let got = read(&cat, &git, std::slice::from_ref(&a)).unwrap();
        assert_eq!(got, [Some(b"a".to_vec())]);
        // Written by another process after the reader started, into a pack
        // as a fetch or a commit writes it, and the loose ones packed away.
        let b = write_blob(&git, b"bb");
        let list = format!("{a}\n{b}\n");
        let pack = ["pack-objects", "-q", "objects/pack/pack"];
        git.run_with(&pack, Some(list.as_bytes()), &[0]).unwrap();
        git.run(&["prune-packed"]).unwrap();
        let loose = dir.path().join("objects").join(&b[..2]).join(&b[2..]);
        assert!(!loose.exists(), "packed");
        let got = read(&cat, &git, &[b, a, "0".repeat(40)]).unwrap();
        assert_eq!(got, [Some(b"bb".to_vec()), Some(b"a".to_vec()), None]);
    }

    #[test]
    fn answers_larger_than_a_pipe_are_read_whole() {
        let (_dir, git) = bare();
        let cat = CatFiles::default();
        // 300 KB twice, and 3,000 specs in one check: both sides' pipes
        // fill while the other side is still writing.
        let big = vec![b'x'; 300 * 1024];
        let oid = write_blob(&git, &big);
        let specs = vec![oid; 3000];
        let input: String = specs.iter().map(|s| format!("{s}\n")).collect();
        let infos = cat.info(&git, input.as_bytes(), 3000).unwrap();
        assert!(
            infos
                .iter()
                .all(|i| i.as_ref().unwrap().size == big.len() as u64)
        );
        let got = read(&cat, &git, &specs[..2]).unwrap();
        assert_eq!(got, [Some(big.clone()), Some(big)]);
    }

    #[test]
    fn a_reader_that_died_is_started_again() {
        let (_dir, git) = bare();
        let cat = CatFiles::default();
        let a = write_blob(&git, b"a");
        assert!(read(&cat, &git, std::slice::from_ref(&a)).is_some());
        let pid = |slot: &Mutex<Option<Batch>>| slot.lock().unwrap().as_ref().map(|b| b.child.id());
        let before = (pid(&cat.check), pid(&cat.contents));
        cat.kill_for_test();
        // Found dead before it is asked, and started again.
        let got = read(&cat, &git, std::slice::from_ref(&a)).unwrap();
        assert_eq!(got, [Some(b"a".to_vec())]);
        let after = (pid(&cat.check), pid(&cat.contents));
        assert!(after.0.is_some() && after.1.is_some());
        assert!(after.0 != before.0 && after.1 != before.1, "new processes");
    }

    #[test]
    fn a_contents_answer_of_another_size_than_checked_is_refused() {
        let (_dir, git) = bare();
        let cat = CatFiles::default();
        let a = write_blob(&git, b"abc");
        assert_eq!(cat.contents(&git, std::slice::from_ref(&a), &[2]), None);
        assert_eq!(
            cat.contents(&git, &[a], &[3]),
            Some(vec![Some(b"abc".to_vec())])
        );
    }
}
