//! Tasks filed in a lane no live node serves, checked against their own
//! fields. A node reads only the lanes it serves, and moves a task whose
//! fields say another place than its path (the fields are the truth, the
//! path a copy); but a task pushed by hand into a lane nobody serves (one
//! that requires nothing, filed under `gpu` on a grid without one) is met
//! by no node: it would wait for ever, and `status` would name the labels
//! of its path as its own. The reap reads a batch of such lanes' files
//! each time and moves those misfiled to their lane, or to `failed/` when
//! they are no task at all.

use std::collections::HashMap;

use crate::git::{Blob, Edit, Edits, EntryMode, GitError, GridRepo};
use crate::grid::layout::{self, Place};
use crate::grid::schedule::{self, NodeLabels};
use crate::grid::task::EntryKind;
use crate::grid::{Class, Id, Task, TaskError, TaskRules};
use crate::time::Timestamp;

use super::Moves;
use super::queue::{LaneEntry, QueueAt};
use super::results::Rejection;
use super::room::{GiveWay, Mover, Room, room_for};

/// Files read in one reap, at most: a grid with more waiting in unserved
/// lanes has a different batch of them read at each reap.
pub const READ_PER_REAP: usize = 256;

/// Read a batch of the files in lanes that none of `live` serves and plan
/// what becomes of those filed elsewhere than their fields say. `now`
/// picks the batch when there are more than [`READ_PER_REAP`]. A file
/// where one belongs gives way as `give_way` says (`room::GiveWay`: a
/// node's; the tools have none).
#[allow(clippy::too_many_arguments)]
pub fn plan(
    repo: &GridRepo,
    (tip, earlier): (&str, &[&Edits]),
    queue: &QueueAt,
    live: &[(&str, &NodeLabels)],
    rules: &TaskRules,
    node: &Id,
    now: Timestamp,
    give_way: Option<&dyn GiveWay>,
) -> Result<Moves, GitError> {
    let mut out = Moves::default();
    // Judged once a class: a deep queue has far fewer classes than tasks.
    let mut served: HashMap<&Class, bool> = HashMap::new();
    let unserved: Vec<&LaneEntry> = queue
        .lanes
        .iter()
        .filter(|l| {
            !*served
                .entry(&l.place.class)
                .or_insert_with(|| schedule::why_unserved(&l.place.class, live).is_none())
        })
        .collect();
    let batch = batch(&unserved, now);
    // Only files are read: a submodule's or a symbolic link's entry is
    // judged by its kind (a gitlink names a commit the grid does not have,
    // which would be "not read this time" at every reap, for good).
    let is_file = |l: &LaneEntry| matches!(l.entry.mode, EntryMode::File | EntryMode::Executable);
    let specs: Vec<String> = batch
        .iter()
        .filter(|l| is_file(l))
        .map(|l| l.entry.oid.clone())
        .collect();
    let mut blobs = repo
        .read_objects(&specs, rules.max_file_bytes as u64)?
        .into_iter();
    for l in batch {
        let blob = match is_file(l) {
            true => blobs.next().unwrap_or(Blob::Missing),
            false => Blob::Data(Vec::new()),
        };
        let name = String::from_utf8_lossy(l.file_name()).into_owned();
        let parsed = match blob {
            Blob::Data(bytes) => Task::from_entry(
                &name,
                EntryKind::from(l.entry.mode),
                &bytes,
                &rules.to_read_by(),
            ),
            Blob::TooBig { size, cap } => Err(TaskError::TooLarge {
                size: usize::try_from(size).unwrap_or(usize::MAX),
                max: usize::try_from(cap).unwrap_or(usize::MAX),
            }),
            // Not read this time: a later reap reads it.
            _ => continue,
        };
        match parsed {
            Err(e) => {
                out.reject(Rejection::of(layout::LANES, &l.entry, &e, node, now));
            }
            Ok(task) => {
                let home = Place::of(&task, l.place.batch.minute);
                if home == *l.place {
                    continue;
                }
                let to = home.file(&task.task_id);
                // Never over a file: one of its id there is another copy.
                let plans: Vec<&Edits> = earlier.iter().copied().chain([&out.edits]).collect();
                let mover = || Mover::read(repo, &l.entry.oid, rules.max_file_bytes);
                match room_for(repo, tip, &plans, &to, give_way, mover, node, now)? {
                    Room::Free => {}
                    Room::GivenWay(r) => out.reject(*r),
                    Room::Taken => {
                        out.moved.push((
                            task.task_id.to_string(),
                            format!("left where it is: {to}, where its fields put it, holds another file of its id"),
                        ));
                        continue;
                    }
                }
                out.edits.insert(l.path(), Edit::Delete);
                out.edits.insert(
                    to.clone().into_bytes(),
                    Edit::Object {
                        mode: EntryMode::File,
                        oid: l.entry.oid.clone(),
                    },
                );
                out.summary.push(format!("file {}", task.task_id));
                out.moved.push((
                    task.task_id.to_string(),
                    format!(
                        "filed in {to}: its path, in a lane no live node serves, said another place than its fields"
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// The files of `unserved` to read now: all if they fit, else a window of
/// [`READ_PER_REAP`] that moves on each minute, so that successive reaps
/// read all of them in turn.
fn batch<'a>(unserved: &[&'a LaneEntry], now: Timestamp) -> Vec<&'a LaneEntry> {
    if unserved.len() <= READ_PER_REAP {
        return unserved.to_vec();
    }
    let minute = usize::try_from(now.timestamp() / 60).unwrap_or(0);
    let start = minute.wrapping_mul(READ_PER_REAP) % unserved.len();
    unserved
        .iter()
        .cycle()
        .skip(start)
        .take(READ_PER_REAP)
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::TreeEntry;
    use std::rc::Rc;

    fn lanes(n: usize) -> Vec<LaneEntry> {
        let place = Rc::new(Place {
            priority: 50,
            class: crate::grid::Class::any(),
            batch: layout::Batch::new(crate::time::now(), None),
        });
        (0..n)
            .map(|i| LaneEntry {
                entry: TreeEntry {
                    mode: EntryMode::File,
                    oid: format!("{i:040}"),
                    name: format!("t{i}.json").into_bytes(),
                },
                place: place.clone(),
            })
            .collect()
    }

    #[test]
    fn a_batch_moves_on_until_every_file_was_read() {
        let all = lanes(READ_PER_REAP * 2 + 10);
        let refs: Vec<&LaneEntry> = all.iter().collect();
        let t0 = crate::time::parse("2026-12-03T10:00:00Z").unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for m in 0..3 {
            let b = batch(&refs, t0 + chrono::Duration::minutes(m));
            assert_eq!(b.len(), READ_PER_REAP);
            seen.extend(b.iter().map(|l| l.entry.oid.clone()));
        }
        assert_eq!(seen.len(), all.len(), "three reaps read them all");
        let few: Vec<&LaneEntry> = refs[..5].to_vec();
        assert_eq!(batch(&few, t0).len(), 5);
    }
}
