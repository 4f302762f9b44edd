//! The claims a node holds and has not started: the order they start in
//! ([`in_order`]), and the queued work a look claims to go between them
//! ([`Owed`]).
//!
//! - **A submitter who came late.** A submitter whose tasks arrived after
//!   a node claimed ahead of another's would wait behind all of those
//!   claims: a look claims its tasks while it holds fewer there than the
//!   submitter holding most, less one, and claims start in submitters'
//!   turns. (A sweep's: three tasks behind thirty-nine, 17 s.)
//! - **Work fewer nodes serve.** A GPU task that arrives while a GPU node
//!   holds common claims of its level would wait behind them: a look
//!   claims one task a look of a class fewer live nodes serve than any it
//!   holds there, and claims start scarcer first (`scarcity`). (A
//!   sweep's: a GPU task waited 10.5-13 s behind 29 common ones.)
//!
//! Levels come first throughout: higher work takes held claims back by
//! its own rule (`share::preempt`).

use std::cmp::Reverse;
use std::collections::BTreeMap;

/// What a look owes against the claims a node holds at their lowest
/// level.
#[derive(Debug, Clone)]
pub struct Owed {
    level: u8,
    held: BTreeMap<Option<String>, usize>,
    most: usize,
    /// The fewest slots serving a class it holds there (none: not known).
    fewest: Option<u32>,
    /// One scarcer task a look: the next look sees it held.
    scarce_left: bool,
}

impl Owed {
    /// At `level`, where the node holds claims not started, each with its
    /// submitter and how many slots serve its class (if known). None:
    /// nothing can be owed.
    pub fn new<'a>(
        level: u8,
        held: impl IntoIterator<Item = (Option<&'a str>, Option<u32>)>,
    ) -> Option<Owed> {
        let mut counts: BTreeMap<Option<String>, usize> = BTreeMap::new();
        let mut fewest: Option<u32> = None;
        for (party, servers) in held {
            *counts.entry(party.map(str::to_owned)).or_default() += 1;
            if let Some(n) = servers {
                fewest = Some(fewest.map_or(n, |f| f.min(n)));
            }
        }
        let most = counts.values().copied().max().unwrap_or(0);
        (most >= 2 || fewest.is_some()).then_some(Owed {
            level,
            held: counts,
            most,
            fewest,
            scarce_left: true,
        })
    }

    fn held_of(&self, party: Option<&str>) -> usize {
        self.held
            .iter()
            .find(|(p, _)| p.as_deref() == party)
            .map_or(0, |(_, n)| *n)
    }

    fn turn(&self, level: u8, party: Option<&str>) -> bool {
        level == self.level && self.held_of(party) + 1 < self.most
    }

    fn scarcer(&self, level: u8, servers: u32) -> bool {
        level == self.level && self.scarce_left && self.fewest.is_some_and(|f| servers < f)
    }

    /// Is a queued task of `party` at `level`, of a class `servers` slots
    /// serve, owed a place among the claims held?
    pub fn owes(&self, level: u8, party: Option<&str>, servers: u32) -> bool {
        self.turn(level, party) || self.scarcer(level, servers)
    }

    /// [`Owed::owes`], and counted as claimed if so.
    pub fn take(&mut self, level: u8, party: Option<&str>, servers: u32) -> bool {
        let (turn, scarcer) = (self.turn(level, party), self.scarcer(level, servers));
        if scarcer && !turn {
            self.scarce_left = false;
        }
        if turn || scarcer {
            *self.held.entry(party.map(str::to_owned)).or_default() += 1;
        }
        turn || scarcer
    }
}

/// The order claims held and not started run in: higher level first;
/// within one, what fewer slots serve first (not known: last); then
/// submitters in turns (each one's first, then each one's second, ...,
/// each one's in the order they were claimed). `held`: each claim's level,
/// slots serving its class, and submitter, in the order claimed.
pub fn in_order(held: &[(u8, Option<u32>, Option<&str>)]) -> Vec<usize> {
    let mut seen: BTreeMap<(u8, Option<u32>, Option<&str>), usize> = BTreeMap::new();
    let mut keyed: Vec<(Reverse<u8>, u32, usize, usize)> = held
        .iter()
        .enumerate()
        .map(|(i, (level, servers, party))| {
            let round = seen.entry((*level, *servers, *party)).or_default();
            *round += 1;
            (Reverse(*level), servers.unwrap_or(u32::MAX), *round, i)
        })
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(.., i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_submitter_who_came_late_is_owed_turns_up_to_the_one_holding_most() {
        let held = [(Some("alice"), None); 5];
        let mut owed = Owed::new(50, held).unwrap();
        assert!(!owed.take(49, Some("bob"), 1), "another level");
        let taken = (0..10).filter(|_| owed.take(50, Some("bob"), 1)).count();
        assert_eq!(taken, 4, "up to one less than alice's five");
        assert!(!owed.take(50, Some("alice"), 1));
        assert!(owed.take(50, None, 1), "the nameless are a party too");
        // One claim each, nothing known of their classes: nothing owed.
        assert!(Owed::new(50, [(Some("a"), None), (Some("b"), None), (None, None)]).is_none());
    }

    #[test]
    fn work_fewer_nodes_serve_is_owed_one_place_a_look() {
        // Common claims that four slots serve.
        let mut owed = Owed::new(50, [(None, Some(4)), (None, Some(4))]).unwrap();
        assert!(!owed.owes(50, None, 4), "as plentiful as what it holds");
        assert!(!owed.owes(49, None, 1), "another level");
        assert!(owed.owes(50, None, 1));
        assert!(owed.take(50, None, 1));
        assert!(!owed.take(50, None, 1), "one a look");
    }

    #[test]
    fn claims_held_run_higher_first_then_scarcer_then_in_turns() {
        let held = [
            (50, Some(4), Some("alice")),
            (50, Some(4), Some("alice")),
            (50, Some(4), Some("alice")),
            (70, Some(4), Some("carol")),
            (50, Some(4), Some("bob")),
            (50, Some(4), Some("bob")),
            (50, Some(1), None),
            (50, None, None),
        ];
        assert_eq!(in_order(&held), [3, 6, 0, 4, 1, 5, 2, 7]);
        // One submitter, one class: the order claimed.
        let one = [
            (50, Some(2), None),
            (50, Some(2), None),
            (50, Some(2), None),
        ];
        assert_eq!(in_order(&one), [0, 1, 2]);
    }
}
