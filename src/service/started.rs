//! Which claims this node started: `<state>/started`, a line a start
//! (`<task_id> <attempt>`), appended as the task's thread starts it.
//!
//! A node that restarts requeues the claims it left behind (it holds
//! nothing of them now). One that it started counts as an attempt: the
//! task may be what brought the node down, and `max_attempts` is what
//! stops such a task going round for ever. One it never started does not:
//! a node killed three times while holding twenty claims ahead used to
//! abandon all twenty, nineteen of which never ran. Without the file (a
//! new state directory), every claim left counts, as before.
//!
//! Appended without fsync: a start is a write to the page cache, and a
//! killed process leaves it there. A host's crash may lose the last
//! lines, and then those claims count as never started: a task that
//! brings down the host itself is not held back by `max_attempts`.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::grid::Id;

/// Read at most this much of the file a restart finds (its own file, but
/// a bound all the same: a start is a line of at most a few hundred bytes).
const READ_AT_MOST: u64 = 4 << 20;

/// Past this size, the file is written again with the runs going on.
const REWRITE_PAST: u64 = 256 << 10;

#[derive(Debug)]
pub struct StartLog {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

/// The claims (task, attempt) started by the node's last run.
pub type Started = BTreeSet<(Id, u32)>;

impl StartLog {
    /// Open the log in `state_dir`, with what it says the last run
    /// started (`None`: no log, so not known).
    pub fn open(state_dir: &Path) -> (StartLog, Option<Started>) {
        let path = state_dir.join("started");
        let before = std::fs::File::open(&path).ok().map(|f| {
            let mut text = String::new();
            let _ = f.take(READ_AT_MOST).read_to_string(&mut text);
            parse(&text)
        });
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "cannot keep which claims were started; a restart counts each claim left as an attempt"))
            .ok();
        let log = StartLog {
            path,
            file: Mutex::new(file),
        };
        (log, before)
    }

    /// Say that `task`'s claim `attempt` is starting.
    pub fn record(&self, task: &str, attempt: u32) {
        if let Ok(mut f) = self.file.lock()
            && let Some(f) = f.as_mut()
        {
            let _ = f.write_all(format!("{task} {attempt}\n").as_bytes());
        }
    }

    /// Start the log again from `running` when it has grown past its
    /// bound, or `now`.
    pub fn rewrite(&self, running: impl Iterator<Item = (String, u32)>, now: bool) {
        let Ok(mut f) = self.file.lock() else { return };
        let Some(file) = f.as_mut() else { return };
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        if !now && size <= REWRITE_PAST {
            return;
        }
        let lines: String = running.map(|(t, a)| format!("{t} {a}\n")).collect();
        if let Err(e) = file
            .set_len(0)
            .and_then(|()| file.write_all(lines.as_bytes()))
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot start the log of started claims again");
        }
    }
}

fn parse(text: &str) -> Started {
    text.lines()
        .filter_map(|l| {
            let (task, attempt) = l.split_once(' ')?;
            Some((Id::parse(task).ok()?, attempt.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_reads_what_the_last_run_started() {
        let dir = tempfile::tempdir().unwrap();
        let (log, before) = StartLog::open(dir.path());
        assert_eq!(before, None, "no log: not known");
        log.record("t1", 1);
        log.record("t2", 3);
        drop(log);
        let (log, before) = StartLog::open(dir.path());
        let id = |s: &str| Id::parse(s).unwrap();
        assert_eq!(before, Some(Started::from([(id("t1"), 1), (id("t2"), 3)])));
        log.rewrite([("t3".to_owned(), 1)].into_iter(), true);
        log.record("t4", 2);
        let (_, before) = StartLog::open(dir.path());
        assert_eq!(before, Some(Started::from([(id("t3"), 1), (id("t4"), 2)])));
        std::fs::write(dir.path().join("started"), "junk\nt5 x\nt6 2\n").unwrap();
        let (_, before) = StartLog::open(dir.path());
        assert_eq!(before, Some(Started::from([(id("t6"), 2)])));
    }
}
