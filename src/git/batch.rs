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
use std::time::Duration;

use super::command::Git;

/// The two processes of one clone, started at their first use.
#[derive(Debug, Default)]
pub(super) struct CatFiles {
    check: Mutex<Option<Batch>>,
    contents: Mutex<Option<Batch>>,
}

impl CatFiles {
    /// `cat-file --batch-check` of `input` (one spec a line), its answer
    /// parsed by `parse` (given the answer's lines); None when the kept
    /// process could not answer.
    pub fn check<T>(
        &self,
        git: &Git,
        input: &[u8],
        lines: usize,
        parse: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Option<T> {
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
        parse(&answer).ok()
    }

    /// `cat-file --batch` of `oids`, whose sizes the caller has checked
    /// (`sizes[i]` for `oids[i]`): the contents, or None each if missing.
    pub fn contents(
        &self,
        git: &Git,
        oids: &[String],
        sizes: &[u64],
    ) -> Option<Vec<Option<Vec<u8>>>> {
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
        if guard.is_none() {
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
mod tests {
    use super::*;
    use crate::git::GridRepo;

    fn repo() -> (tempfile::TempDir, GridRepo) {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("git")
            .args(["init", "-q", "--bare"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        let git = Git::new("git", dir.path(), Duration::from_secs(30));
        (dir, GridRepo::read_only(git, "main"))
    }

    fn write_blob(dir: &std::path::Path, body: &[u8]) -> String {
        let mut child = std::process::Command::new("git")
            .args(["hash-object", "-w", "--stdin"])
            .current_dir(dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(body).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    #[test]
    fn a_kept_reader_sees_objects_written_after_it_started() {
        let (dir, repo) = repo();
        let a = write_blob(dir.path(), b"a");
        assert_eq!(
            repo.read_objects(std::slice::from_ref(&a), 10).unwrap()[0].data(),
            Some(&b"a"[..])
        );
        // Written by another process after the reader started, into a pack
        // as a fetch or a commit writes it, and the loose one packed away.
        let b = write_blob(dir.path(), b"bb");
        let mut pack = std::process::Command::new("git")
            .args(["pack-objects", "-q", "objects/pack/pack"])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        write!(pack.stdin.take().unwrap(), "{a}\n{b}\n").unwrap();
        assert!(pack.wait().unwrap().success());
        let out = std::process::Command::new("git")
            .args(["prune-packed"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let loose = dir.path().join("objects").join(&b[..2]).join(&b[2..]);
        assert!(!loose.exists(), "packed");
        assert!(
            std::fs::read_dir(dir.path().join("objects/pack"))
                .unwrap()
                .count()
                > 0
        );
        let got = repo.read_objects(&[b, a, "0".repeat(40)], 10).unwrap();
        assert_eq!(got[0].data(), Some(&b"bb"[..]));
        assert_eq!(got[1].data(), Some(&b"a"[..]));
        assert_eq!(got[2], crate::git::Blob::Missing);
    }

    #[test]
    fn answers_larger_than_a_pipe_are_read_whole() {
        let (dir, repo) = repo();
        // 300 KB in one blob, and 3,000 specs in one check: both sides'
        // pipes fill while the other side is still writing.
        let big = vec![b'x'; 300 * 1024];
        let oid = write_blob(dir.path(), &big);
        let specs = vec![oid; 3000];
        let infos = repo.object_info(&specs).unwrap();
        assert!(
            infos
                .iter()
                .all(|i| i.as_ref().unwrap().size == big.len() as u64)
        );
        let got = repo.read_objects(&specs[..2], 1 << 20).unwrap();
        assert_eq!(got[0].data(), Some(&big[..]));
        assert_eq!(got[1].data(), Some(&big[..]));
    }

    #[test]
    fn a_reader_that_died_is_replaced() {
        let (dir, repo) = repo();
        let a = write_blob(dir.path(), b"a");
        assert!(repo.read_objects(std::slice::from_ref(&a), 10).unwrap()[0].exists());
        for slot in [&repo.cat.check, &repo.cat.contents] {
            let mut guard = slot.lock().unwrap();
            let batch = guard.as_mut().expect("started by the read");
            batch.child.kill().unwrap();
            batch.child.wait().unwrap();
        }
        // This read falls back to a process of its own; the next starts a
        // new kept reader.
        assert_eq!(
            repo.read_objects(std::slice::from_ref(&a), 10).unwrap()[0].data(),
            Some(&b"a"[..])
        );
        assert!(repo.cat.check.lock().unwrap().is_none(), "dropped");
        assert_eq!(
            repo.read_objects(&[a], 10).unwrap()[0].data(),
            Some(&b"a"[..])
        );
        assert!(repo.cat.check.lock().unwrap().is_some(), "started again");
        assert!(repo.cat.contents.lock().unwrap().is_some());
    }
}
