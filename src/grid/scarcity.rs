//! Which work a node takes first within one level of priority: what fewer
//! of the live nodes can serve. A GPU node that takes common work too then
//! runs the GPU tasks only it can run, while the common tasks go to the
//! nodes that have nothing else to run; on a grid whose nodes all serve
//! alike nothing changes. (HTCondor lets a machine rank the jobs it
//! prefers; here the grid's shape is the rank.)
//!
//! Levels still come first: a node never takes scarce work of a lower
//! level ahead of common work of a higher one.

use std::collections::BTreeMap;

use super::label::Class;
use super::schedule::NodeLabels;

/// Of the classes a node does not serve, at most this many are reckoned
/// with (the highest queued).
pub const OTHER_CLASSES_RECKONED: usize = 64;

/// The classes queued: how many slots of the live nodes serve each, and
/// the highest level it is queued at.
#[derive(Debug, Default, Clone)]
pub struct Scarcity {
    /// The classes some live node serves, fewest servers first.
    classes: Vec<Queued>,
    servers: BTreeMap<Class, u32>,
}

#[derive(Debug, Clone)]
struct Queued {
    class: Class,
    servers: u32,
    top: u8,
}

impl Scarcity {
    /// From the classes queued, each with a level it is queued at (a class
    /// may come many times); `own`: does this node serve a class; and
    /// `servers`: how many slots of the live nodes, this one's included,
    /// serve a class. This node's own classes all count; of the others
    /// (what peers may serve, for the claims made for them) only the
    /// [`OTHER_CLASSES_RECKONED`] queued highest: each costs a pass over
    /// the peers' records, and a hostile grid's junk classes and records
    /// made every claim round of a sweep's node take seconds.
    pub fn new<'a>(
        queued: impl IntoIterator<Item = (&'a Class, u8)>,
        own: impl Fn(&Class) -> bool,
        servers: impl Fn(&Class) -> u32,
    ) -> Scarcity {
        let mut top: BTreeMap<&Class, u8> = BTreeMap::new();
        for (class, level) in queued {
            let t = top.entry(class).or_insert(level);
            *t = (*t).max(level);
        }
        let (mine, mut others): (Vec<_>, Vec<_>) = top.into_iter().partition(|(c, _)| own(c));
        others.sort_by_key(|(_, level)| std::cmp::Reverse(*level));
        others.truncate(OTHER_CLASSES_RECKONED);
        let mut classes: Vec<Queued> = mine
            .into_iter()
            .chain(others)
            .map(|(class, top)| Queued {
                servers: servers(class),
                class: class.clone(),
                top,
            })
            // What nobody serves is nobody's first choice (and a grid's
            // junk classes make no work of each look at it).
            .filter(|q| q.servers > 0)
            .collect();
        classes.sort_by_key(|q| q.servers);
        let servers = classes
            .iter()
            .map(|q| (q.class.clone(), q.servers))
            .collect();
        Scarcity { classes, servers }
    }

    /// Each class reckoned with, and how many slots serve it.
    pub fn counts(&self) -> Vec<(Class, u32)> {
        self.classes
            .iter()
            .map(|q| (q.class.clone(), q.servers))
            .collect()
    }

    /// How many slots serve `class` (0: none, not queued, or not
    /// reckoned).
    pub fn servers(&self, class: &Class) -> u32 {
        self.servers.get(class).copied().unwrap_or(0)
    }

    /// Would a node with `labels` rather take other work, queued at
    /// `level` or above, that fewer slots serve than `class`? It takes that
    /// first by its own order, so a task of `class` is not claimed for it.
    pub fn rather(&self, labels: &NodeLabels, class: &Class, level: u8) -> bool {
        let mine = self.servers(class);
        self.classes
            .iter()
            .take_while(|q| q.servers < mine)
            .any(|q| q.top >= level && labels.serves(&q.class).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(labels: &[&str]) -> Class {
        Class::from_labels(labels.iter().copied()).unwrap()
    }

    fn node(labels: &[&str]) -> NodeLabels {
        NodeLabels {
            labels: class(labels),
            exclusive: Class::any(),
        }
    }

    /// A GPU node of one slot beside three plain nodes of one slot each.
    fn servers(c: &Class) -> u32 {
        if c.labels().count() == 0 { 4 } else { 1 }
    }

    #[test]
    fn a_node_would_rather_take_what_fewer_serve_at_its_level_or_above() {
        let (any, gpu) = (Class::any(), class(&["gpu"]));
        let s = Scarcity::new(
            [(&any, 50), (&gpu, 40), (&gpu, 50), (&any, 30)],
            |_| true,
            servers,
        );
        assert_eq!(s.servers(&any), 4);
        assert_eq!(s.servers(&gpu), 1);
        assert_eq!(s.servers(&class(&["fpga"])), 0, "not queued");
        assert!(s.rather(&node(&["gpu"]), &any, 50));
        assert!(!s.rather(&node(&[]), &any, 50), "it serves no GPU work");
        assert!(!s.rather(&node(&["gpu"]), &gpu, 50), "nothing is scarcer");
        assert!(
            !s.rather(&node(&["gpu"]), &any, 51),
            "the GPU work is queued below the common task's level"
        );
    }

    #[test]
    fn where_every_node_serves_alike_no_work_comes_first() {
        let (any, amd) = (Class::any(), class(&["arch=amd64"]));
        let s = Scarcity::new([(&any, 50), (&amd, 50)], |_| true, |_| 3);
        assert!(!s.rather(&node(&["arch=amd64"]), &any, 50));
        assert!(!s.rather(&node(&["arch=amd64"]), &amd, 0));
        assert_eq!(Scarcity::default().servers(&any), 0);
    }

    #[test]
    fn of_the_classes_a_node_does_not_serve_only_the_highest_are_reckoned() {
        let mine = Class::any();
        let others: Vec<Class> = (0..OTHER_CLASSES_RECKONED + 6)
            .map(|i| class(&[&format!("junk-{i}")]))
            .collect();
        // The others at rising levels: the six lowest are left out.
        let queued = others
            .iter()
            .enumerate()
            .map(|(i, c)| (c, i as u8))
            .chain([(&mine, 0)]);
        let s = Scarcity::new(queued, |c| *c == mine, |_| 1);
        assert_eq!(s.servers(&mine), 1, "its own class, however low");
        assert_eq!(s.counts().len(), OTHER_CLASSES_RECKONED + 1);
        assert_eq!(s.servers(&others[5]), 0);
        assert_eq!(s.servers(&others[6]), 1);
    }
}
