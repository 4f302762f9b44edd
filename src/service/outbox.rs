//! The outbox: how a task ended, kept on disk until a push carrying it has
//! been accepted. A worker restarted, or cut off from the remote for hours,
//! loses nothing: on start it pushes what the outbox holds.
//!
//! One file per task, `<state>/outbox/<task_id>.json`, written atomically
//! (temp file, fsync, rename, fsync of the directory).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::grid::{Id, TaskResult};

/// How a claimed task ended, as far as the grid must hear of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finish {
    /// It ran (or timed out): the result goes to `completed/` or `failed/`,
    /// as `signed` (the file signed by this node) when there is a node key.
    Result {
        result: TaskResult,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signed: Option<String>,
    },
    /// It could not run through no fault of its own (the worker shutting
    /// down, claims given back): back to the queue, attempt unchanged.
    Requeue {
        reason: String,
        /// Handed back because work of a higher priority came first, not
        /// for an idle peer: the sync that carries it may give way to the
        /// start of the higher claim that waits for a slot.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        preempted: bool,
    },
    /// It could not run and the fault is the engine's (its container never
    /// started): back to the queue as its next attempt, or to `failed/` as
    /// abandoned once `max_attempts` are used up. Counting it is what makes
    /// sure no task, whatever it does, comes back for ever.
    Retry { reason: String },
}

impl Finish {
    /// Back to the queue, where a peer may be waiting for it.
    pub fn requeue(reason: String) -> Finish {
        Finish::Requeue {
            reason,
            preempted: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub task_id: Id,
    /// The attempt of the claim this ends; a later claim of the same task (by
    /// anyone) is not ours to end.
    pub attempt: u32,
    /// `claimed_at` of that claim: with the node id, it names one claim
    /// exactly, even when the same task comes back to this node later.
    pub claimed_at: String,
    pub finish: Finish,
    /// For a signed task that ran: its digest and expiry, recorded once the
    /// result is delivered so that the task never runs here again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ran: Option<crate::trust::ran::Ran>,
}

/// The outbox on disk, mirrored in memory so the loop can ask about it
/// cheaply; the disk is written first, always. An entry the disk refused
/// (full, read-only) is kept in memory all the same, pushed like the
/// others, and written again at each sync until it lands: a result is
/// lost only if the worker also dies before that push.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    entries: Vec<OutboxEntry>,
    /// Entries held only in memory: their write failed.
    unwritten: std::collections::BTreeSet<Id>,
}

#[derive(Debug, thiserror::Error)]
#[error("outbox {path}: {source}")]
pub struct OutboxError {
    path: PathBuf,
    source: std::io::Error,
}

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError + '_ {
    move |source| OutboxError {
        path: path.to_owned(),
        source,
    }
}

impl Outbox {
    pub fn open(dir: impl Into<PathBuf>) -> Result<Outbox, OutboxError> {
        let dir = dir.into();
        std::fs::create_dir_all(dir.join("superseded")).map_err(err(&dir))?;
        let entries = load(&dir)?;
        Ok(Outbox {
            dir,
            entries,
            unwritten: Default::default(),
        })
    }

    /// Everything waiting, oldest first.
    pub fn entries(&self) -> &[OutboxEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn path(&self, task: &Id) -> PathBuf {
        self.dir.join(format!("{task}.json"))
    }

    /// Store an entry durably before anything else is done with it. If
    /// the disk refuses it, the entry is kept in memory all the same (and
    /// the error returned, for the log): [`Outbox::write_unwritten`]
    /// tries again.
    pub fn put(&mut self, entry: &OutboxEntry) -> Result<(), OutboxError> {
        self.entries.retain(|e| e.task_id != entry.task_id);
        self.entries.push(entry.clone());
        match self.write(entry) {
            Ok(()) => {
                self.unwritten.remove(&entry.task_id);
                Ok(())
            }
            Err(e) => {
                self.unwritten.insert(entry.task_id.clone());
                Err(e)
            }
        }
    }

    /// Write again the entries the disk refused; the first error, if any
    /// is still refused.
    pub fn write_unwritten(&mut self) -> Result<(), OutboxError> {
        let waiting: Vec<OutboxEntry> = self
            .entries
            .iter()
            .filter(|e| self.unwritten.contains(&e.task_id))
            .cloned()
            .collect();
        let mut first = None;
        for entry in waiting {
            match self.write(&entry) {
                Ok(()) => {
                    self.unwritten.remove(&entry.task_id);
                }
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// How many entries are held only in memory.
    pub fn unwritten(&self) -> usize {
        self.unwritten.len()
    }

    fn write(&self, entry: &OutboxEntry) -> Result<(), OutboxError> {
        let path = self.path(&entry.task_id);
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(err(&self.dir))?;
        let bytes = serde_json::to_vec_pretty(entry).expect("outbox entries always serialise");
        tmp.write_all(&bytes).map_err(err(&path))?;
        tmp.as_file().sync_all().map_err(err(&path))?;
        tmp.persist(&path).map_err(|e| OutboxError {
            path: path.clone(),
            source: e.error,
        })?;
        sync_dir(&self.dir)
    }

    /// The entry has landed on the remote.
    pub fn remove(&mut self, task: &Id) -> Result<(), OutboxError> {
        let path = self.path(task);
        self.entries.retain(|e| &e.task_id != task);
        self.unwritten.remove(task);
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err(&path)(e)),
        }
    }

    /// The grid moved on without this entry (our claim was reaped and the
    /// task given to someone else): keep it for the operator, out of the way.
    pub fn supersede(&mut self, task: &Id) -> Result<(), OutboxError> {
        let from = self.path(task);
        let kept = self.entries.iter().find(|e| &e.task_id == task).cloned();
        self.entries.retain(|e| &e.task_id != task);
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let to = self
            .dir
            .join("superseded")
            .join(format!("{task}-{stamp}.json"));
        if self.unwritten.remove(task) {
            // Never on disk: write it where it is kept.
            let bytes = kept
                .map(|e| serde_json::to_vec_pretty(&e).expect("outbox entries always serialise"));
            std::fs::write(&to, bytes.unwrap_or_default()).map_err(err(&to))?;
        } else {
            std::fs::rename(&from, &to).map_err(err(&from))?;
        }
        sync_dir(&self.dir)
    }
}

/// How long a result put aside as superseded is kept for the operator,
/// and at most how many (the newest): the grid has the task's result, and
/// a busy node puts aside a few an hour (0.8 % of a soak's tasks, run
/// twice where a takeover raced its holder's start), for as long as it
/// runs.
const SUPERSEDED_KEPT_FOR: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
const SUPERSEDED_KEPT: usize = 1000;

impl Outbox {
    /// Remove what was put aside as superseded more than a week before
    /// `now`, and all but the newest [`SUPERSEDED_KEPT`]: how many went.
    pub fn prune_superseded(&self, now: std::time::SystemTime) -> Result<usize, OutboxError> {
        let dir = self.dir.join("superseded");
        let mut kept: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for item in std::fs::read_dir(&dir).map_err(err(&dir))? {
            let item = item.map_err(err(&dir))?;
            let Ok(meta) = item.metadata() else { continue };
            if meta.is_file() {
                let at = meta.modified().unwrap_or(now);
                kept.push((at, item.path()));
            }
        }
        kept.sort_by_key(|k| std::cmp::Reverse(k.0));
        let mut removed = 0;
        for (i, (at, path)) in kept.iter().enumerate() {
            let old = now.duration_since(*at).unwrap_or_default() > SUPERSEDED_KEPT_FOR;
            if old || i >= SUPERSEDED_KEPT {
                std::fs::remove_file(path).map_err(err(path))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Read the outbox back, oldest first. A file that cannot be read back is
/// moved aside to `corrupt/` and reported, never deleted.
fn load(dir: &Path) -> Result<Vec<OutboxEntry>, OutboxError> {
    let mut found = Vec::new();
    for item in std::fs::read_dir(dir).map_err(err(dir))? {
        let item = item.map_err(err(dir))?;
        let path = item.path();
        if path.extension().is_none_or(|e| e != "json") || !path.is_file() {
            continue;
        }
        let modified = item.metadata().and_then(|m| m.modified()).ok();
        match std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<OutboxEntry>(&b).ok())
        {
            Some(entry) => found.push((modified, entry)),
            None => {
                let aside = dir.join("corrupt");
                let _ = std::fs::create_dir_all(&aside);
                let _ = std::fs::rename(&path, aside.join(item.file_name()));
                tracing::error!(path = %path.display(), "unreadable outbox entry moved to corrupt/");
            }
        }
    }
    found.sort_by_key(|(modified, _)| *modified);
    Ok(found.into_iter().map(|(_, e)| e).collect())
}

fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_reopen_and_leave_only_when_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        let e = OutboxEntry {
            task_id: Id::parse("t1").unwrap(),
            attempt: 1,
            claimed_at: "2026-01-01T00:00:00.000Z".into(),
            finish: Finish::Requeue {
                reason: "engine down".into(),
                preempted: false,
            },
            ran: None,
        };
        outbox.put(&e).unwrap();
        std::fs::write(dir.path().join("junk.json"), b"{").unwrap();
        assert_eq!(outbox.len(), 1);
        let mut again = Outbox::open(dir.path()).unwrap();
        assert_eq!(again.entries(), &[e.clone()][..]);
        assert!(dir.path().join("corrupt/junk.json").exists());
        again.supersede(&e.task_id).unwrap();
        assert!(again.is_empty());
        assert!(Outbox::open(dir.path()).unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join("superseded"))
                .unwrap()
                .count(),
            1
        );
        again.remove(&e.task_id).unwrap();
    }

    #[test]
    fn results_put_aside_go_after_a_week_or_beyond_the_newest_thousand() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let aside = dir.path().join("superseded");
        let now = std::time::SystemTime::now();
        let day = std::time::Duration::from_secs(24 * 3600);
        for (name, age) in [("old", 8 * day), ("recent", day)] {
            let f = std::fs::File::create(aside.join(format!("{name}.json"))).unwrap();
            f.set_modified(now - age).unwrap();
        }
        assert_eq!(outbox.prune_superseded(now).unwrap(), 1);
        assert!(!aside.join("old.json").exists());
        assert!(aside.join("recent.json").exists());
        for i in 0..SUPERSEDED_KEPT {
            std::fs::write(aside.join(format!("n{i}.json")), b"{}").unwrap();
        }
        assert_eq!(outbox.prune_superseded(now).unwrap(), 1, "the oldest");
        assert!(!aside.join("recent.json").exists());
        assert_eq!(std::fs::read_dir(&aside).unwrap().count(), SUPERSEDED_KEPT);
    }

    #[test]
    fn an_entry_the_disk_refuses_is_kept_in_memory_and_written_later() {
        let dir = tempfile::tempdir().unwrap();
        let outbox_dir = dir.path().join("outbox");
        let mut outbox = Outbox::open(&outbox_dir).unwrap();
        let e = OutboxEntry {
            task_id: Id::parse("t1").unwrap(),
            attempt: 1,
            claimed_at: "2026-01-01T00:00:00.000Z".into(),
            finish: Finish::Retry { reason: "r".into() },
            ran: None,
        };
        // The directory gone stands for a disk that refuses writes (root
        // writes through permissions).
        let away = dir.path().join("away");
        std::fs::rename(&outbox_dir, &away).unwrap();
        assert!(outbox.put(&e).is_err());
        assert_eq!(outbox.entries(), &[e.clone()][..], "kept, to be pushed");
        assert_eq!(outbox.unwritten(), 1);
        assert!(outbox.write_unwritten().is_err());
        std::fs::rename(&away, &outbox_dir).unwrap();
        outbox.write_unwritten().unwrap();
        assert_eq!(outbox.unwritten(), 0);
        assert_eq!(
            Outbox::open(&outbox_dir).unwrap().entries(),
            &[e.clone()][..]
        );
        // One landed while held only in memory leaves nothing behind.
        std::fs::rename(&outbox_dir, &away).unwrap();
        let other = OutboxEntry {
            task_id: Id::parse("t2").unwrap(),
            ..e.clone()
        };
        assert!(outbox.put(&other).is_err());
        std::fs::rename(&away, &outbox_dir).unwrap();
        outbox.remove(&other.task_id).unwrap();
        outbox.supersede(&e.task_id).unwrap();
        assert!(outbox.is_empty());
        assert_eq!(outbox.unwritten(), 0);
        assert!(Outbox::open(&outbox_dir).unwrap().is_empty());
    }

    #[test]
    fn a_requeue_written_before_preemption_was_marked_reads_as_for_peers() {
        let old = br#"{"kind":"requeue","reason":"n1 handed it to an idle peer"}"#;
        let f: Finish = serde_json::from_slice(old).unwrap();
        assert_eq!(
            f,
            Finish::Requeue {
                reason: "n1 handed it to an idle peer".into(),
                preempted: false
            }
        );
        let back = serde_json::to_string(&f).unwrap();
        assert!(!back.contains("preempted"), "{back}");
        let marked = Finish::Requeue {
            reason: "r".into(),
            preempted: true,
        };
        let text = serde_json::to_string(&marked).unwrap();
        assert_eq!(serde_json::from_str::<Finish>(&text).unwrap(), marked);
    }
}
