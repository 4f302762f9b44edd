//! One worker a state directory. A second `run` on the same `state_dir`
//! (the same configuration started twice: by hand beside the service, or
//! two units) took the first one's claims for those of its own earlier
//! run, requeued them as "this node restarted", and shared its clone and
//! outbox. The first takes an exclusive lock on `<state_dir>/lock` before
//! it touches anything and holds it for its life (the kernel lets it go
//! however the process ends, so a crash leaves no stale lock); a second
//! finds it taken and stops, naming the directory and the holder's pid.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The lock file's name in the state directory. It holds the pid of the
/// worker that has it, for the one refused to name.
pub const FILE: &str = "lock";

/// The lock, held while this value lives.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "state directory {dir} is in use by another dgrid-worker{holder}: a second worker on it would take the first one's claims for its own and requeue them; stop that one, or give this one its own state_dir",
        dir = dir.display(),
        holder = holder.map_or(String::new(), |p| format!(" (pid {p})"))
    )]
    InUse { dir: PathBuf, holder: Option<u32> },
    #[error("`state_dir` {} is not a directory (a file of that name is there): point state_dir at a directory, or move the file", dir.display())]
    NotADirectory { dir: PathBuf },
    #[error("state directory {}: cannot lock {}: {source}", dir.display(), FILE)]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// Take the state directory's lock (making the directory if need be), or
/// say who holds it.
pub fn take(dir: &Path) -> Result<StateLock, LockError> {
    let io = |source| LockError::Io {
        dir: dir.to_owned(),
        source,
    };
    if dir.exists() && !dir.is_dir() {
        return Err(LockError::NotADirectory {
            dir: dir.to_owned(),
        });
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    // Not truncated on open: the pid in it is the holder's until the lock
    // is ours. Opened close-on-exec (std's default), so that no git, engine
    // or task process inherits it and holds the lock past the worker.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join(FILE))
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(LockError::InUse {
                dir: dir.to_owned(),
                holder: holder(&mut file),
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(StateLock { _file: file })
}

/// The pid the holder wrote, if it has (it writes it just after taking
/// the lock).
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Lock files git left in the node's clone (`clone`) when a process of an
/// earlier run died, removed: taken after the state directory's lock and
/// before any git process of this run, each is stale, and git would refuse
/// every fetch, commit or configuration write on it, for good (a
/// `refs/remotes/origin/main.lock` left so kept a node from ever syncing,
/// logged as "cannot reach the grid"). The clone's top and its `refs/`,
/// bounded; returns how many were removed.
pub fn clear_git_locks(clone: &Path) -> usize {
    let mut dirs = vec![clone.to_path_buf()];
    let mut removed = 0;
    let mut seen = 0;
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            seen += 1;
            if seen > 100_000 {
                return removed;
            }
            let path = e.path();
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() && path.starts_with(clone.join("refs")) {
                dirs.push(path);
            } else if kind.is_file()
                && path.extension().is_some_and(|x| x == "lock")
                && std::fs::remove_file(&path).is_ok()
            {
                tracing::warn!(file = %path.display(), "removed a lock file a git process of an earlier run left in the clone");
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_refused_with_the_holders_pid_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = take(&state).unwrap();
        // flock is per open file: a second open, as a second process makes.
        let e = take(&state).unwrap_err();
        assert!(
            matches!(e, LockError::InUse { holder: Some(p), .. } if p == std::process::id()),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&state.display().to_string())
                && msg.contains(&format!("(pid {})", std::process::id())),
            "{msg}"
        );
        drop(first);
        let _again = take(&state).unwrap();
    }

    #[test]
    fn locks_git_left_in_the_clone_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let clone = dir.path().join("grid.git");
        let files = [
            "config.lock",
            "HEAD",
            "refs/remotes/origin/main.lock",
            "refs/remotes/origin/main",
            "refs/dgrid/txn.lock",
            "objects/pack/x.lock",
        ];
        for f in files {
            std::fs::create_dir_all(clone.join(f).parent().unwrap()).unwrap();
            std::fs::write(clone.join(f), "x").unwrap();
        }
        assert_eq!(clear_git_locks(&clone), 3);
        let left: Vec<&str> = files
            .into_iter()
            .filter(|f| clone.join(f).exists())
            .collect();
        assert_eq!(
            left,
            ["HEAD", "refs/remotes/origin/main", "objects/pack/x.lock"]
        );
        assert_eq!(clear_git_locks(&dir.path().join("none")), 0, "no clone yet");
    }
}
