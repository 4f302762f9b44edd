//! A crowd named after a watched peer: branches such as `outbox/<peer>-1`,
//! `outbox/<peer>-2`, ... pushed by anyone able to push. A worker fetches
//! each watched peer's outbox by the pattern `outbox/<peer>*` (a name in
//! full would fail the fetch while the peer has published nothing), so the
//! pattern brings every such branch along: measured with 12,000 of them, a
//! fetch of the grid took 0.9 s the first time and 0.3-0.7 s every time
//! after, for every node watching that peer, until the reap deleted them.
//!
//! A fetch says what it brought. Names it brought that no watched peer
//! publishes to are strangers; from them [`KeptOut`] learns patterns the
//! next fetches exclude (negative refspecs, `^refs/heads/outbox/<p>*`), a
//! short one for the whole crowd (`<peer>-` for `<peer>-1`, `<peer>-2`,
//! ...), never one that would exclude a watched peer's own branch. The
//! crowd then costs a fetch the listing of its names on the server (0.1 s
//! with the same 12,000), as a crowd under any other name does, and its
//! copies leave the clone. Pure: `repo.rs` runs the fetch and the deletion.

use std::collections::BTreeSet;

/// At most this many patterns are kept (each is one more refspec on every
/// fetch); a crowd that needs more is fetched as before, until the reap.
pub const MAX_PATTERNS: usize = 512;

/// What the fetches of one clone exclude from the watched peers' patterns.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeptOut {
    /// Names (after `outbox/`) whose branches, and every longer one, are
    /// not fetched: `^refs/heads/outbox/<p>*`.
    prefixes: BTreeSet<String>,
    /// Names excluded exactly, for a stranger that is the start of a
    /// watched peer's name (`node-1` while `node-10` is watched).
    exact: BTreeSet<String>,
    /// Strangers brought by fetches so far.
    pub strangers: usize,
    /// This git refused a fetch with the patterns: none is learnt again
    /// (the crowd is fetched as before, and its copies kept, so that it
    /// is fetched whole once, not on every fetch).
    refused: bool,
}

impl KeptOut {
    /// Learn from `strangers` (names after `outbox/` a fetch brought that
    /// are not in `watched`). Returns the patterns added, each as
    /// `<name>*` or `<name>`.
    pub fn learn(&mut self, watched: &[String], strangers: &[String]) -> Vec<String> {
        let mut added = Vec::new();
        for s in strangers {
            if watched.contains(s) {
                continue;
            }
            self.strangers += 1;
            if self.refused {
                continue;
            }
            let covered = self
                .prefixes
                .iter()
                .any(|p| s.starts_with(p.as_str()) && spares(p, watched));
            if covered || self.exact.contains(s) {
                continue;
            }
            if self.prefixes.len() + self.exact.len() >= MAX_PATTERNS {
                continue;
            }
            // The shortest start of the name that starts no watched peer's
            // name: `peer-` for `peer-1`, whatever follows.
            let shortest = s
                .char_indices()
                .map(|(i, c)| &s[..i + c.len_utf8()])
                .find(|p| !watched.iter().any(|w| w.starts_with(p)));
            match shortest {
                Some(p) => {
                    // A shorter one learnt before may cover it now: only
                    // the new one is kept.
                    self.prefixes.retain(|q| !q.starts_with(p));
                    self.prefixes.insert(p.to_owned());
                    added.push(format!("{p}*"));
                }
                None => {
                    self.exact.insert(s.clone());
                    added.push(s.clone());
                }
            }
        }
        added
    }

    /// The negative refspecs for a fetch of `watched`' patterns: those
    /// that fall under one of them, less any that would exclude a watched
    /// peer's own branch (the watched peers change from round to round; a
    /// crowd a pattern dropped this way lets in is learnt again, finer).
    pub fn refspecs(&self, watched: &[String]) -> Vec<String> {
        let prefixes = self
            .prefixes
            .iter()
            .filter(|p| applies(p, watched))
            .map(|p| format!("^refs/heads/outbox/{p}*"));
        let exact = self
            .exact
            .iter()
            .filter(|e| under(e, watched) && !watched.contains(e))
            .map(|e| format!("^refs/heads/outbox/{e}"));
        prefixes.chain(exact).collect()
    }

    /// A fetch of `watched`' patterns with [`KeptOut::refspecs`] leaves
    /// the branch `name` out: its copy may go.
    pub fn excludes(&self, name: &str, watched: &[String]) -> bool {
        let by_prefix = self
            .prefixes
            .iter()
            .any(|p| name.starts_with(p.as_str()) && applies(p, watched));
        let exactly =
            self.exact.contains(name) && under(name, watched) && !watched.iter().any(|w| w == name);
        by_prefix || exactly
    }

    /// This git refused the patterns: forget them, and learn no more.
    pub fn refuse(&mut self) {
        self.prefixes.clear();
        self.exact.clear();
        self.refused = true;
    }
}

/// `p` falls under a watched peer's pattern.
fn under(p: &str, watched: &[String]) -> bool {
    watched.iter().any(|w| p.starts_with(w.as_str()))
}

/// The pattern `<p>*` goes on a fetch of `watched`' patterns.
fn applies(p: &str, watched: &[String]) -> bool {
    under(p, watched) && spares(p, watched)
}

/// The pattern `<p>*` excludes no watched peer's own branch.
fn spares(p: &str, watched: &[String]) -> bool {
    !watched.iter().any(|w| w.starts_with(p))
}

/// The names under `tracking/` a fetch's report (its stderr, with
/// `fetch.output=full`) says it created or updated, as they follow
/// `tracking/`; lines about deleted refs are not counted.
pub fn brought<'a>(report: &'a str, tracking: &str) -> Vec<&'a str> {
    report
        .lines()
        .filter(|l| !l.contains("[deleted]"))
        .filter_map(|l| l.split_once(" -> "))
        .filter_map(|(_, to)| to.split_whitespace().next())
        .filter_map(|to| to.strip_prefix(tracking)?.strip_prefix('/'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_crowd_after_a_peer_is_kept_out_by_one_pattern() {
        let watched = names(&["b", "c"]);
        let mut k = KeptOut::default();
        let crowd: Vec<String> = (0..1000).map(|i| format!("b-{i}")).collect();
        assert_eq!(k.learn(&watched, &crowd), ["b-*"]);
        assert_eq!(k.strangers, 1000);
        assert_eq!(k.refspecs(&watched), ["^refs/heads/outbox/b-*"]);
        // More of the same crowd adds nothing; another one adds its own.
        assert!(k.learn(&watched, &names(&["b-5000"])).is_empty());
        assert_eq!(k.learn(&watched, &names(&["b.x", "b/y/z"])), ["b.*", "b/*"]);
        assert_eq!(k.refspecs(&watched).len(), 3);
        // Only the patterns under a watched peer go on the fetch.
        assert!(k.refspecs(&names(&["c"])).is_empty());
        assert!(k.excludes("b-77", &watched) && !k.excludes("b", &watched));
        assert!(
            !k.excludes("b-77", &names(&["c"])),
            "not fetched at all then"
        );
        // Refused by git: no pattern, none learnt, copies kept.
        k.refuse();
        assert!(k.refspecs(&watched).is_empty());
        assert!(k.learn(&watched, &names(&["b~1"])).is_empty());
        assert!(!k.excludes("b-77", &watched));
    }

    #[test]
    fn no_pattern_excludes_a_watched_peers_own_branch() {
        // node-1 is watched; its pattern brought node-10's branch (a node
        // not watched then) and a crowd named after node-10.
        let mut k = KeptOut::default();
        let watched = names(&["node-1"]);
        k.learn(&watched, &names(&["node-10", "node-10-x", "node-1x"]));
        assert_eq!(
            k.refspecs(&watched),
            ["^refs/heads/outbox/node-10*", "^refs/heads/outbox/node-1x*"]
        );
        // Once node-10 is watched, its branch is fetched again; the crowd
        // after it comes back with it, and is learnt finer.
        let watched = names(&["node-1", "node-10"]);
        assert_eq!(k.refspecs(&watched), ["^refs/heads/outbox/node-1x*"]);
        assert_eq!(k.learn(&watched, &names(&["node-10-x"])), ["node-10-*"]);
        assert_eq!(
            k.refspecs(&watched),
            [
                "^refs/heads/outbox/node-10-*",
                "^refs/heads/outbox/node-1x*"
            ]
        );
        // A stranger that starts a watched peer's name is kept out exactly.
        let watched = names(&["node-10"]);
        let mut k = KeptOut::default();
        assert_eq!(k.learn(&watched, &names(&["node-1"])), ["node-1"]);
        assert!(
            k.refspecs(&watched).is_empty(),
            "not under node-10's pattern"
        );
        assert_eq!(
            k.refspecs(&names(&["node-1", "node-10"])),
            Vec::<String>::new(),
            "node-1 is watched now"
        );
        assert_eq!(
            k.refspecs(&names(&["node-"])),
            ["^refs/heads/outbox/node-1"]
        );
    }

    #[test]
    fn patterns_are_bounded() {
        let watched = names(&["b"]);
        let mut k = KeptOut::default();
        // Each name after `b` at its own first character would need a
        // pattern of its own; past the bound, none is added.
        let crowd: Vec<String> = (0..MAX_PATTERNS + 40)
            .map(|i| format!("b{}", char::from_u32(0x4e00 + i as u32).unwrap()))
            .collect();
        assert_eq!(k.learn(&watched, &crowd).len(), MAX_PATTERNS);
        assert_eq!(k.refspecs(&watched).len(), MAX_PATTERNS);
        assert_eq!(k.strangers, MAX_PATTERNS + 40);
    }

    #[test]
    fn a_fetch_report_names_what_it_brought() {
        let report = "From file:///grid.git\n\
             \x20  1a2b3c4..5d6e7f8  main        -> refs/remotes/origin/main\n\
             \x20* [new branch]      outbox/b    -> refs/dgrid/outbox/b\n\
             \x20* [new branch]      outbox/b-1  -> refs/dgrid/outbox/b-1\n\
             \x20+ 1a2b3c4...5d6e7f8 outbox/c    -> refs/dgrid/outbox/c  (forced update)\n\
             \x20- [deleted]         (none)      -> refs/dgrid/outbox/gone\n";
        assert_eq!(brought(report, "refs/dgrid/outbox"), ["b", "b-1", "c"]);
        assert!(brought("", "refs/dgrid/outbox").is_empty());
    }
}
