//! What a node has run: the digest of each signed task whose result it
//! pushed, kept in its state directory (`<state_dir>/trust/ran`) until the
//! task expires. A copy of the task put back in the queue later (its result
//! removed or archived, then the file pushed again) is refused as a replay
//! by this node, whatever the grid says; past `expires_at` it is refused as
//! expired anyway, so nothing older need be kept.
//!
//! A digest is recorded only once the push carrying its result was
//! accepted: a task requeued after a crash, or handed back unstarted, was
//! never answered, and runs again as it should.
//!
//! The file is one line per task, `sha256:<hex> <expires_at>`, appended and
//! synced with each landing; expired lines are dropped when it is opened.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::time::{self, Timestamp};

/// One task run: the digest of its signed payload and when it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ran {
    pub digest: String,
    pub expires_at: String,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("trust").join("ran")
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct RanError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// The record, in memory and on disk.
#[derive(Debug)]
pub struct RanRecord {
    path: PathBuf,
    ran: HashMap<String, Timestamp>,
}

impl RanRecord {
    /// Open the record in `state_dir`, dropping what expired before `now`.
    /// A line that cannot be read is dropped too: it names no task this
    /// node could be asked to run again.
    pub fn open(state_dir: &Path, now: Timestamp) -> Result<RanRecord, RanError> {
        let path = path(state_dir);
        let err = |source| RanError {
            path: path.clone(),
            source,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(err(e)),
        };
        let mut ran = HashMap::new();
        let mut dropped = false;
        for line in text.lines() {
            let parsed = line
                .split_once(' ')
                .and_then(|(d, t)| Some((d, time::parse(t)?)))
                .filter(|(d, _)| d.starts_with("sha256:"));
            match parsed {
                Some((d, t)) if t > now => {
                    ran.insert(d.to_owned(), t);
                }
                _ => dropped = true,
            }
        }
        let record = RanRecord {
            path: path.clone(),
            ran,
        };
        if dropped {
            record.rewrite().map_err(err)?;
        }
        Ok(record)
    }

    /// Has this node run the task with this digest (and pushed its result)?
    pub fn contains(&self, digest: &str) -> bool {
        self.ran.contains_key(digest)
    }

    pub fn len(&self) -> usize {
        self.ran.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ran.is_empty()
    }

    /// Record tasks whose results a push just delivered.
    pub fn record(&mut self, tasks: &[Ran]) -> Result<(), RanError> {
        let new: Vec<(&Ran, Timestamp)> = tasks
            .iter()
            .filter(|r| !self.ran.contains_key(&r.digest))
            .filter_map(|r| Some((r, time::parse(&r.expires_at)?)))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let err = |source| RanError {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().expect("the path has a directory");
        std::fs::create_dir_all(dir).map_err(err)?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(err)?;
        let mut text = String::new();
        for (r, _) in &new {
            text.push_str(&format!("{} {}\n", r.digest, r.expires_at));
        }
        f.write_all(text.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        for (r, t) in new {
            self.ran.insert(r.digest.clone(), t);
        }
        Ok(())
    }

    /// Write the record anew (temporary file, sync, rename).
    fn rewrite(&self) -> std::io::Result<()> {
        let dir = self.path.parent().expect("the path has a directory");
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        for (d, t) in &self.ran {
            writeln!(tmp, "{d} {}", time::format(*t))?;
        }
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::policy::tests::at;

    fn ran(d: &str, t: &str) -> Ran {
        Ran {
            digest: format!("sha256:{d}"),
            expires_at: t.into(),
        }
    }

    #[test]
    fn what_ran_is_remembered_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let now = at("2026-03-01T00:00:00Z");
        let mut r = RanRecord::open(dir.path(), now).unwrap();
        assert!(r.is_empty());
        r.record(&[
            ran("aa", "2026-03-02T00:00:00Z"),
            ran("bb", "2026-03-10T00:00:00Z"),
        ])
        .unwrap();
        r.record(&[ran("aa", "2026-03-02T00:00:00Z")]).unwrap();
        assert!(r.contains("sha256:aa") && r.contains("sha256:bb"));
        let lines = std::fs::read_to_string(path(dir.path())).unwrap();
        assert_eq!(lines.lines().count(), 2, "{lines}");

        // Reopened after aa expired: only bb is left, in memory and on disk.
        std::fs::write(
            path(dir.path()),
            format!("{lines}garbage\nsha256:cc not-a-time\n"),
        )
        .unwrap();
        let r = RanRecord::open(dir.path(), at("2026-03-05T00:00:00Z")).unwrap();
        assert!(!r.contains("sha256:aa") && r.contains("sha256:bb"));
        assert_eq!(r.len(), 1);
        let lines = std::fs::read_to_string(path(dir.path())).unwrap();
        assert_eq!(lines, "sha256:bb 2026-03-10T00:00:00.000Z\n");
    }
}
