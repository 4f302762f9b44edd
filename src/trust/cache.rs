//! A bounded cache of verdicts by blob id.
//!
//! A git blob id names exact bytes, so what was found in a blob holds as
//! long as the blob does: a queue entry is read, parsed and its signature
//! checked once, however many syncs see it. The cache is bounded (the
//! oldest entry goes first) so that a queue flooded with junk cannot grow
//! a node's memory.

use std::collections::{HashMap, VecDeque};

pub struct Cache<V> {
    map: HashMap<String, V>,
    order: VecDeque<String>,
    capacity: usize,
}

impl<V> Cache<V> {
    pub fn new(capacity: usize) -> Cache<V> {
        Cache {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.map.get(key)
    }

    pub fn insert(&mut self, key: String, value: V) {
        if self.map.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_entry_goes_first_and_the_size_stays_bounded() {
        let mut c = Cache::new(2);
        c.insert("a".into(), 1);
        c.insert("b".into(), 2);
        c.insert("a".into(), 10);
        assert_eq!(c.get("a"), Some(&10));
        c.insert("c".into(), 3);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("a"), None);
        assert_eq!(c.get("c"), Some(&3));
        for i in 0..1000 {
            c.insert(format!("k{i}"), i);
        }
        assert_eq!(c.len(), 2);
        assert_eq!(c.order.len(), 2);
    }
}
