//! The queue at a tip, as its listings say: the inbox (`tasks/queue/`,
//! flat) and the lanes (`tasks/lanes/p<NN>/<class>/<batch>/`), two
//! `ls-tree` calls whatever the queue's size. Nothing is read: a lane's
//! path says all the claim order needs (`grid::layout::Place`).

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use crate::git::{Edit, Edits, EntryMode, GitError};
use crate::git::{GridRepo, TreeEntry};
use crate::grid::claim::ClaimedTask;
use crate::grid::layout::{self, Place, PlaceError};
use crate::grid::schedule::{NodeLabels, effective_priority};
use crate::grid::task::EntryKind;
use crate::grid::{Class, Id, Task, TaskRules};
use crate::time::Timestamp;

use super::results::Rejection;
use super::room::{GiveWay, Mover, Room, room_for};

/// One task file in a lane.
#[derive(Debug, Clone)]
pub struct LaneEntry {
    /// Named by its path below `tasks/lanes/`.
    pub entry: TreeEntry,
    /// Shared by the entries of one batch: a deep queue has far fewer
    /// directories than tasks.
    pub place: Rc<Place>,
}

impl LaneEntry {
    /// Its own name (`t.json`).
    pub fn file_name(&self) -> &[u8] {
        let name = &self.entry.name;
        let start = name.iter().rposition(|b| *b == b'/').map_or(0, |i| i + 1);
        &name[start..]
    }

    /// Its id, if its name is `<id>.json`.
    pub fn id(&self) -> Option<Id> {
        std::str::from_utf8(self.file_name())
            .ok()
            .and_then(layout::json_stem)
            .and_then(|s| Id::parse(s).ok())
    }

    /// Its full path in the grid, as bytes.
    pub fn path(&self) -> Vec<u8> {
        crate::ledger::results::entry_path(layout::LANES, &self.entry.name)
    }
}

/// Where a queued task is, and what is queued at a tip.
#[derive(Debug, Clone, Default)]
pub struct QueueAt {
    /// `tasks/queue/` but its `.gitkeep`: tasks not filed yet.
    pub inbox: Vec<TreeEntry>,
    pub lanes: Vec<LaneEntry>,
    /// Entries below `tasks/lanes/` that are no place for a task (named by
    /// their path below it), and why.
    pub misplaced: Vec<(TreeEntry, PlaceError)>,
    /// The lanes' file names (below `tasks/lanes/`), once asked.
    names: std::cell::OnceCell<std::collections::HashSet<Vec<u8>>>,
}

fn is_keep(name: &[u8]) -> bool {
    let last = name.rsplit(|b| *b == b'/').next().unwrap_or(name);
    last == layout::KEEP_FILE.as_bytes()
}

impl QueueAt {
    pub fn list(repo: &GridRepo, tip: &str) -> Result<QueueAt, GitError> {
        let inbox = repo
            .list_dir(tip, layout::QUEUE)?
            .into_iter()
            .filter(|e| !is_keep(&e.name))
            .collect();
        Ok(QueueAt {
            inbox,
            ..QueueAt::list_lanes(repo, tip)?
        })
    }

    /// The lanes alone (one `ls-tree`), the inbox left empty: enough to
    /// see what is filed and at which level.
    fn list_lanes(repo: &GridRepo, tip: &str) -> Result<QueueAt, GitError> {
        let mut lanes = Vec::new();
        let mut misplaced = Vec::new();
        // Each batch directory is read once, whatever it holds.
        let mut dirs: HashMap<Vec<u8>, Result<Rc<Place>, PlaceError>> = HashMap::new();
        for entry in repo.list_dir_recursive(tip, layout::LANES)? {
            if is_keep(&entry.name) {
                continue;
            }
            let dir = match entry.name.iter().rposition(|b| *b == b'/') {
                Some(i) => &entry.name[..i],
                None => &[][..],
            };
            let place = match dirs.get(dir) {
                Some(p) => p.clone(),
                None => {
                    let p = Place::parse(&entry.name).map(|(place, _)| Rc::new(place));
                    dirs.insert(dir.to_vec(), p.clone());
                    p
                }
            };
            // What a path says depends on its directory alone (the depth
            // too): one verdict for all of a directory's entries. A tree
            // above a task's depth is listed only where it copies one
            // listed before (`git::walk`): said so, not that it is no
            // place (a helper read that as a task lost without a trace).
            let copy =
                entry.mode == EntryMode::Tree && entry.name.split(|b| *b == b'/').count() < 4;
            let place = if copy { Err(PlaceError::Copy) } else { place };
            match place {
                Ok(place) => lanes.push(LaneEntry { entry, place }),
                Err(e) => misplaced.push((entry, e)),
            }
        }
        Ok(QueueAt {
            inbox: Vec::new(),
            lanes,
            misplaced,
            names: Default::default(),
        })
    }

    /// The lanes as `edits` leave them: the files they put below
    /// `tasks/lanes/` listed (with no object id, as they are not in the
    /// repository yet), those they delete gone; the inbox and what is
    /// misplaced left out. For what is said of the lanes after a plan: a
    /// reap that requeues a claim into a lane no live node serves names
    /// it among the tasks that cannot run now, as `status` does after.
    pub fn lanes_after(&self, edits: &Edits) -> QueueAt {
        let prefix = format!("{}/", layout::LANES);
        let mut lanes = self.lanes.clone();
        for (path, edit) in edits {
            let Some(rel) = path.strip_prefix(prefix.as_bytes()) else {
                continue;
            };
            // A file, or a directory with all below it.
            lanes.retain(|l| {
                let name = &l.entry.name;
                !(name.starts_with(rel) && matches!(name.get(rel.len()), None | Some(b'/')))
            });
            let oid = match edit {
                Edit::Delete => continue,
                Edit::Put(_) => String::new(),
                Edit::Object { oid, .. } => oid.clone(),
            };
            if let Ok((place, _)) = Place::parse(rel) {
                lanes.push(LaneEntry {
                    entry: TreeEntry {
                        mode: EntryMode::File,
                        oid,
                        name: rel.to_vec(),
                    },
                    place: Rc::new(place),
                });
            }
        }
        QueueAt {
            inbox: Vec::new(),
            lanes,
            misplaced: Vec::new(),
            names: Default::default(),
        }
    }

    /// Is there a file at `rel` (a path below `tasks/lanes/`) in this
    /// listing, a task or a misplaced entry? Asked of every task a plan
    /// files: in memory, where asking git cost a drain of 500 tasks 40-60
    /// ms a sync. A directory that copies another is listed as one entry
    /// (no place for a task: it goes to `failed/` whole), its files not:
    /// they are copies of files listed.
    pub fn holds(&self, rel: &[u8]) -> bool {
        self.names
            .get_or_init(|| {
                let misplaced = self.misplaced.iter().map(|(e, _)| e);
                self.lanes
                    .iter()
                    .map(|l| &l.entry)
                    .chain(misplaced.filter(|e| e.mode != EntryMode::Tree))
                    .map(|e| e.name.clone())
                    .collect()
            })
            .contains(rel)
    }

    /// What the inbox holds, as one number (`None` when it is empty): a
    /// look that finds the inbox as the last look that read it left it
    /// (tasks this node may not file, a batch it could not read) does not
    /// read it again.
    pub fn inbox_key(&self) -> Option<u64> {
        use std::hash::{DefaultHasher, Hash, Hasher};
        if self.inbox.is_empty() {
            return None;
        }
        let mut h = DefaultHasher::new();
        for e in &self.inbox {
            e.name.hash(&mut h);
            e.oid.hash(&mut h);
        }
        Some(h.finish())
    }

    /// Tasks queued (filed or not).
    pub fn len(&self) -> usize {
        self.inbox.len() + self.lanes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The best level (priority with age, `grid::schedule`) filed in the
    /// lanes that a node with `labels` serves, at `now`. The inbox is left
    /// out: its tasks say their priority only once read.
    pub fn top_level(&self, labels: &NodeLabels, now: Timestamp) -> Option<u8> {
        let mut serves: HashMap<&Class, bool> = HashMap::new();
        self.lanes
            .iter()
            .filter(|l| {
                *serves
                    .entry(&l.place.class)
                    .or_insert_with(|| labels.serves(&l.place.class).is_ok())
            })
            .map(|l| effective_priority(l.place.priority, l.place.batch.minute, now))
            .max()
    }

    /// Every queued id, with the path of its file (a second file of one id
    /// is left out: only one of them can be claimed).
    pub fn paths(&self) -> BTreeMap<Id, Vec<u8>> {
        let mut out = BTreeMap::new();
        for e in &self.inbox {
            if let Some(id) = layout::json_stem(&e.name_lossy()).and_then(|s| Id::parse(s).ok()) {
                out.entry(id)
                    .or_insert_with(|| crate::ledger::results::entry_path(layout::QUEUE, &e.name));
            }
        }
        for l in &self.lanes {
            if let Some(id) = l.id() {
                out.entry(id).or_insert_with(|| l.path());
            }
        }
        out
    }
}

/// Where `task` goes back to the queue (a requeue, a task released by its
/// dependencies, an inbox entry filed): its lane, by its own fields; if it
/// says nowhere when it was queued, `arrival` is its arrival.
pub fn requeue_path(task: &Task, arrival: Timestamp) -> String {
    Place::of(task, arrival).file(&task.task_id)
}

/// Later minutes of its lane a claim going back may take when its own
/// place and the inbox are taken.
const LATER_MINUTES: i64 = 5;

/// Where a claim going back to the queue is written: its lane
/// (`requeue_path`) if that is free; else the inbox, from which a node
/// files it once its lane is free (PROTOCOL.md, Layout); else its lane a
/// minute later (up to [`LATER_MINUTES`]), where a node claims it or, if
/// its `queued_at` names its own minute, moves it there once that is
/// free. Else nowhere now, and the claim stays for a later plan. Kept
/// claimed while copies wait in its lane and the inbox, none of the three
/// could ever move: the copies wait for the claim to go.
pub fn requeue_to(
    repo: &GridRepo,
    tip: &str,
    plans: &[&Edits],
    task: &Task,
    arrival: Timestamp,
) -> Result<Option<String>, GitError> {
    for to in requeue_places(task, arrival) {
        if super::room::is_free(repo, tip, plans, &to)? {
            return Ok(Some(to));
        }
    }
    Ok(None)
}

/// Where the claim `c` going back to the queue as attempt `attempt` goes:
/// [`requeue_to`]'s first free place; else its own lane, where the file
/// there gives way to it (`room::GiveWay`: a node enforcing trust, the
/// file one it never runs), with that file's rejection to plan in the same
/// commit (the requeue's write of the path replaces its delete).
#[allow(clippy::too_many_arguments)]
pub fn requeue_place(
    repo: &GridRepo,
    tip: &str,
    plans: &[&Edits],
    give_way: Option<&dyn GiveWay>,
    c: &ClaimedTask,
    attempt: u32,
    node: &Id,
    now: Timestamp,
) -> Result<Option<(String, Option<Rejection>)>, GitError> {
    if let Some(to) = requeue_to(repo, tip, plans, &c.task, c.arrival())? {
        return Ok(Some((to, None)));
    }
    if give_way.is_none() {
        return Ok(None);
    }
    let lane = requeue_path(&c.task, c.arrival());
    let mover = || {
        Ok(Mover {
            blob: None,
            bytes: c.requeued(attempt),
        })
    };
    Ok(
        match room_for(repo, tip, plans, &lane, give_way, mover, node, now)? {
            Room::GivenWay(r) => Some((lane, Some(*r))),
            Room::Free | Room::Taken => None,
        },
    )
}

/// The places [`requeue_to`] tries, in order: its lane, the inbox, its
/// lane a minute later up to [`LATER_MINUTES`].
pub fn requeue_places(task: &Task, arrival: Timestamp) -> Vec<String> {
    let home = Place::of(task, arrival);
    let later = (1..=LATER_MINUTES).map(|m| {
        let mut p = home.clone();
        p.batch.minute += chrono::Duration::minutes(m);
        p.file(&task.task_id)
    });
    [home.file(&task.task_id), layout::queue_file(&task.task_id)]
        .into_iter()
        .chain(later)
        .collect()
}

/// Does each of `places` hold a file that is a task of `id`, as the
/// commit's `plans` leave them (a move or requeue of another plan there
/// counts)?
/// Read, bounded: a junk file, or a file where one of a place's
/// directories goes, is no task, and a node moves it to `failed/`, which
/// frees that place; a task there runs, and frees it only then.
pub fn all_hold_tasks_of(
    repo: &GridRepo,
    tip: &str,
    plans: &[&Edits],
    places: &[String],
    id: &Id,
    rules: &TaskRules,
) -> Result<bool, GitError> {
    let mut at_tip = Vec::new();
    for place in places {
        match super::last_edit(plans, place.as_bytes()) {
            // A plan moved or requeued a task there.
            Some(Edit::Object { .. } | Edit::Put(_)) => {}
            Some(Edit::Delete) => return Ok(false),
            None => at_tip.push(format!("{tip}:{place}")),
        }
    }
    let blobs = repo.read_objects(&at_tip, rules.max_file_bytes as u64)?;
    Ok(at_tip.iter().zip(blobs).all(|(spec, blob)| {
        let name = spec.rsplit('/').next().unwrap_or(spec);
        blob.data().is_some_and(|bytes| {
            Task::from_entry(name, EntryKind::File, bytes, &rules.to_read_by())
                .is_ok_and(|t| &t.task_id == id)
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::tree::EntryMode;

    fn lane(priority: u8, class: &Class, minute: Timestamp, id: &str) -> LaneEntry {
        let place = Place {
            priority,
            class: class.clone(),
            batch: layout::Batch::new(minute, None),
        };
        LaneEntry {
            entry: TreeEntry {
                mode: EntryMode::File,
                oid: "0".repeat(40),
                name: place.file(&Id::parse(id).unwrap()).into_bytes(),
            },
            place: Rc::new(place),
        }
    }

    #[test]
    fn the_top_level_is_the_best_a_node_serves() {
        let now = crate::time::now();
        let gpu = Class::from_labels(["gpu"]).unwrap();
        let plain = NodeLabels::default();
        let q = QueueAt {
            lanes: vec![
                lane(10, &Class::any(), now, "a"),
                lane(90, &gpu, now, "b"),
                lane(50, &Class::any(), now, "c"),
            ],
            ..QueueAt::default()
        };
        assert_eq!(q.top_level(&plain, now), Some(50), "not the gpu task");
        let with_gpu = NodeLabels {
            labels: gpu.clone(),
            ..NodeLabels::default()
        };
        assert_eq!(q.top_level(&with_gpu, now), Some(90));
        assert_eq!(QueueAt::default().top_level(&plain, now), None);
        // Old work ages upward.
        let old = QueueAt {
            lanes: vec![lane(
                10,
                &Class::any(),
                now - chrono::Duration::days(30),
                "d",
            )],
            ..QueueAt::default()
        };
        assert!(old.top_level(&plain, now).unwrap() > 10);
    }

    #[test]
    fn the_inbox_key_changes_with_what_the_inbox_holds() {
        let entry = |name: &str, oid: char| TreeEntry {
            mode: EntryMode::File,
            oid: oid.to_string().repeat(40),
            name: name.as_bytes().to_vec(),
        };
        let inbox = |entries: Vec<TreeEntry>| QueueAt {
            inbox: entries,
            ..QueueAt::default()
        };
        assert_eq!(inbox(vec![]).inbox_key(), None, "nothing to read");
        let one = inbox(vec![entry("a.json", '1')]).inbox_key();
        assert!(one.is_some());
        assert_eq!(inbox(vec![entry("a.json", '1')]).inbox_key(), one);
        // A file rewritten in place, or one more, is new to read.
        assert_ne!(inbox(vec![entry("a.json", '2')]).inbox_key(), one);
        assert_ne!(
            inbox(vec![entry("a.json", '1'), entry("b.json", '1')]).inbox_key(),
            one
        );
        // The lanes do not count.
        let with_lanes = QueueAt {
            lanes: vec![lane(10, &Class::any(), crate::time::now(), "c")],
            ..inbox(vec![entry("a.json", '1')])
        };
        assert_eq!(with_lanes.inbox_key(), one);
    }
}
