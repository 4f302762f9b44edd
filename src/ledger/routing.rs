//! Which queued tasks no live node can run: their class needs labels no
//! node has together, or every node that has them is exclusive to others.
//! Named, with what each node lacks, by `status`, the dashboard and the
//! reap, so that such a task is never failed, nor left, silently.

use std::collections::BTreeMap;

use super::queue::QueueAt;
use crate::grid::schedule::{self, NodeLabels};
use crate::grid::{Class, layout};

/// Queued tasks of one class that no live node serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unserved {
    pub class: Class,
    /// How many are queued.
    pub tasks: usize,
    /// The first of them (at most [`IDS_NAMED`]).
    pub task_ids: Vec<String>,
    /// What the live nodes lack.
    pub why: String,
}

/// Task ids named per class, at most.
pub const IDS_NAMED: usize = 10;

/// The classes of `queue`'s lanes that none of `live` (name, labels)
/// serves, with their tasks, in the order of their classes.
pub fn unserved(queue: &QueueAt, live: &[(&str, &NodeLabels)]) -> Vec<Unserved> {
    let mut why: BTreeMap<&Class, Option<String>> = BTreeMap::new();
    let mut out: BTreeMap<&Class, Unserved> = BTreeMap::new();
    for l in &queue.lanes {
        let reason = why
            .entry(&l.place.class)
            .or_insert_with(|| schedule::why_unserved(&l.place.class, live));
        let Some(reason) = reason else {
            continue;
        };
        let u = out.entry(&l.place.class).or_insert_with(|| Unserved {
            class: l.place.class.clone(),
            tasks: 0,
            task_ids: Vec::new(),
            why: reason.clone(),
        });
        u.tasks += 1;
        if u.task_ids.len() < IDS_NAMED {
            let name = String::from_utf8_lossy(l.file_name()).into_owned();
            u.task_ids
                .push(layout::json_stem(&name).unwrap_or(&name).to_owned());
        }
    }
    out.into_values().collect()
}

/// The classes only paused nodes serve (quiet hours, a limit reached),
/// beyond `unserved`: their tasks wait until one comes back, which may be
/// hours, and say so, naming each such node and its pause (`paused`: a
/// node's, by id).
pub fn served_only_by_paused(
    queue: &QueueAt,
    live: &[(&str, &NodeLabels)],
    unserved: &[Unserved],
    paused: &dyn Fn(&str) -> Option<String>,
) -> Vec<Unserved> {
    let working: Vec<(&str, &NodeLabels)> = live
        .iter()
        .copied()
        .filter(|(n, _)| paused(n).is_none())
        .collect();
    if working.len() == live.len() {
        return Vec::new();
    }
    self::unserved(queue, &working)
        .into_iter()
        .filter(|u| !unserved.iter().any(|v| v.class == u.class))
        .map(|mut u| {
            let servers: Vec<String> = live
                .iter()
                .filter(|(_, l)| l.serves(&u.class).is_ok())
                .filter_map(|(n, _)| Some(format!("{n} ({})", paused(n)?)))
                .collect();
            u.why = format!(
                "only nodes that take no work now serve it: {}",
                servers.join(", ")
            );
            u
        })
        .collect()
}
