//! Results as a plan writes them: an entry rejected into `failed/`, and
//! the placing of results at paths no other result holds. Shared by the
//! worker's sync and the tools that change the grid (`reap`).

use std::collections::BTreeSet;

use crate::git::{Edit, Edits, GitError};
use crate::git::{GridRepo, TreeEntry};
use crate::grid::claim::ClaimedTask;
use crate::grid::{Id, ResultStatus, TaskResult, layout};
use crate::time::{self, Timestamp};

/// A result to write, before its final path is chosen.
#[derive(Debug, Clone)]
pub struct PendingResult {
    pub node: Id,
    pub stem: String,
    pub result: TaskResult,
    /// The file as its node signed it; none for an unsigned result (the
    /// file is then the result as JSON).
    pub signed: Option<Vec<u8>>,
}

impl PendingResult {
    pub fn unsigned(node: Id, stem: String, result: TaskResult) -> PendingResult {
        PendingResult {
            node,
            stem,
            result,
            signed: None,
        }
    }

    /// Where it goes in the grid, by its stem.
    pub fn path(&self) -> String {
        layout::result_file(self.result.status.is_success(), &self.node, &self.stem)
    }

    /// The file as it goes in the grid.
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.signed {
            Some(b) => b.clone(),
            None => self.result.to_bytes(),
        }
    }
}

/// The path of entry `name` of `dir`, as bytes: hostile names are deleted
/// under exactly the name they were pushed with.
pub fn entry_path(dir: &str, name: &[u8]) -> Vec<u8> {
    let mut p = format!("{dir}/").into_bytes();
    p.extend_from_slice(name);
    p
}

/// An entry that breaks the rules, on its way out of its directory into
/// `failed/`: what the worker's sync and the reaper both do with one.
pub struct Rejection {
    /// The entry's path, to delete.
    pub path: Vec<u8>,
    /// Its `invalid` result.
    pub result: PendingResult,
    /// (entry name, reason naming the file).
    pub invalid: (String, String),
}

impl Rejection {
    pub fn of(
        dir: &str,
        entry: &TreeEntry,
        error: &dyn std::fmt::Display,
        node: &Id,
        now: Timestamp,
    ) -> Rejection {
        let name = entry.name_lossy();
        let reason = clip_error(format!("{dir}/{name}: {error}"));
        let result = PendingResult::unsigned(
            node.clone(),
            layout::result_stem_for_entry(&name),
            invalid_result(&name, node, &time::format(now), &reason),
        );
        Rejection {
            path: entry_path(dir, &entry.name),
            result,
            invalid: (name, reason),
        }
    }
}

/// Edits writing `results` at paths that do not exist yet at `tip` and
/// that no other result of the same commit takes ([`name_results`]).
pub fn place_results(
    repo: &GridRepo,
    tip: &str,
    now: Timestamp,
    mut results: Vec<PendingResult>,
) -> Result<Edits, GitError> {
    name_results(repo, tip, now, &mut results.iter_mut().collect::<Vec<_>>())?;
    Ok(results
        .iter()
        .map(|r| (r.path().into_bytes(), Edit::Put(r.to_bytes())))
        .collect())
}

/// Give each of `results` a stem whose path does not exist yet at `tip`
/// and that no other of them takes: a clash (the same id submitted again
/// later, or two entries with one stem rejected at once) gets a suffix
/// (`@<millis>`, then `@<millis>.2`, ...) instead of overwriting the other
/// result. Done before the results' dependants are judged, so that a
/// dependant's error names the file its parent's result lands in; a stem
/// named so keeps its name when named again. The same rule as the
/// worker's sync.
pub fn name_results(
    repo: &GridRepo,
    tip: &str,
    now: Timestamp,
    results: &mut [&mut PendingResult],
) -> Result<(), GitError> {
    let path_of = |r: &PendingResult, stem: &str| {
        layout::result_file(r.result.status.is_success(), &r.node, stem)
    };
    let millis = now.timestamp_millis();
    // Every name that may be asked for, checked in one call: each result's
    // own and its first suffixed one.
    let mut specs: Vec<String> = Vec::new();
    for r in results.iter() {
        specs.push(format!("{tip}:{}", path_of(r, &r.stem)));
        specs.push(format!(
            "{tip}:{}",
            path_of(r, &layout::extra_result_stem(&r.stem, millis))
        ));
    }
    let infos = repo.object_info(&specs)?;
    let asked: BTreeSet<String> = specs
        .iter()
        .map(|s| s[tip.len() + 1..].to_owned())
        .collect();
    let at_tip: BTreeSet<&String> = specs
        .iter()
        .zip(&infos)
        .filter(|(_, info)| info.is_some())
        .map(|(s, _)| s)
        .collect();
    let there = |p: &str| -> Result<bool, GitError> {
        if asked.contains(p) {
            Ok(at_tip.contains(&format!("{tip}:{p}")))
        } else {
            // Beyond the names asked about (three results of one task by
            // one node in one commit): rare enough to ask one by one.
            repo.exists(tip, p)
        }
    };
    let mut taken: BTreeSet<String> = BTreeSet::new();
    for r in results.iter_mut() {
        let mut candidates = std::iter::once(r.stem.clone())
            .chain(std::iter::once(layout::extra_result_stem(&r.stem, millis)))
            .chain((2u32..).map(|n| layout::extra_result_stem(&r.stem, format!("{millis}.{n}"))));
        let stem = loop {
            let stem = candidates.next().expect("an endless list");
            let p = path_of(r, &stem);
            if !taken.contains(&p) && !there(&p)? {
                taken.insert(p);
                break stem;
            }
        };
        r.stem = stem;
    }
    Ok(())
}

/// The `invalid` result of a queue or claim entry that breaks the rules,
/// named after the raw entry name.
pub fn invalid_result(name: &str, node: &Id, now: &str, reason: &str) -> TaskResult {
    // A lane's entry is named by its own name, its last component, as its
    // result's file is: its dependants, `status` and `submit` find it by
    // that id (the lane's path here left a graph waiting on a parent that
    // had failed, and let its id be submitted again).
    let own = name.rsplit('/').next().unwrap_or(name);
    TaskResult {
        task_id: layout::json_stem(own).unwrap_or(own).to_owned(),
        node_id: node.clone(),
        exit_code: None,
        stdout: String::new(),
        stderr: String::new(),
        timestamp: now.to_owned(),
        status: ResultStatus::Invalid,
        started_at: None,
        duration_ms: None,
        attempt: 1,
        truncated: false,
        error: Some(clip_error(reason.to_owned())),
    }
}

/// The most of an error a result keeps, in bytes: an error quotes the bad
/// value, and a 200 KB label or a 200,000-digit priority made an error
/// (and a line of `status`) of that size.
pub const MAX_ERROR_BYTES: usize = 2048;

/// `error` cut to about [`MAX_ERROR_BYTES`] in its middle, at characters'
/// edges, saying how much was cut: the value it quotes is in the middle,
/// the file and field before it, the reason after.
pub fn clip_error(error: String) -> String {
    if error.len() <= MAX_ERROR_BYTES {
        return error;
    }
    let mut head = MAX_ERROR_BYTES / 2;
    while !error.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = error.len() - MAX_ERROR_BYTES / 2;
    while !error.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{} [... {} bytes cut ...] {}",
        &error[..head],
        tail - head,
        &error[tail..]
    )
}

/// "1 attempt", "3 attempts": how many a task was given, for an error.
pub fn attempts(n: u32) -> String {
    match n {
        1 => "1 attempt".to_owned(),
        n => format!("{n} attempts"),
    }
}

/// The `abandoned` result of a claimed task that will not be tried again.
pub fn abandoned(c: &ClaimedTask, node: &Id, now: Timestamp, error: String) -> TaskResult {
    TaskResult {
        task_id: c.task.task_id.to_string(),
        node_id: node.clone(),
        exit_code: None,
        stdout: String::new(),
        stderr: String::new(),
        timestamp: time::format(now),
        status: ResultStatus::Abandoned,
        started_at: Some(c.claim.claimed_at.clone()),
        duration_ms: None,
        attempt: c.claim.attempt,
        truncated: false,
        error: Some(error),
    }
}
