//! `validate --grid`: the valid tasks checked against a checkout of the
//! grid, so that a pull request's check refuses what `submit` would: an id
//! that is running or already has a result, and a task that runs after one
//! the grid has never heard of.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::place::walk;
use super::read::read_regular;
use super::{Finding, Report, after_finding, graph_finding};
use crate::grid::deps::{self, GraphError};
use crate::grid::{Id, layout};

/// Check the valid tasks of `report` against the grid checked out at `grid`:
/// an id that is running (`in_progress/`) or already has a result would be
/// run a second time. A pull request's check sees what `submit` refuses.
pub fn check_against_grid(report: &mut Report, grid: &Path) {
    let ids: BTreeSet<&str> = report.tasks.iter().map(|(_, id)| id.as_str()).collect();
    // id -> where it is in use already.
    let mut in_use: BTreeMap<String, String> = BTreeMap::new();
    for id in &ids {
        let claim = format!("{}/{id}.json", layout::IN_PROGRESS);
        if grid.join(&claim).exists() {
            in_use.insert(id.to_string(), format!("is running: {claim}"));
        }
    }
    for (id, file) in results_of(grid, &[layout::COMPLETED, layout::FAILED], &ids) {
        in_use
            .entry(id)
            .or_insert_with(|| format!("already has a result: {file}"));
    }
    check_lanes_after(report, grid);
    // A task that runs after another the grid has never heard of would
    // fail at once.
    let graph: Vec<(Id, Vec<Id>)> = report
        .graph
        .iter()
        .map(|(_, id, after)| (id.clone(), after.clone()))
        .collect();
    let queued = queued_files(grid);
    let on_grid = known_ids(grid, &graph, &queued);
    for e in deps::check_graph(&graph, |p| on_grid.contains(p)) {
        if matches!(e, GraphError::Unknown { .. }) {
            graph_finding(report, &e);
        }
    }
    check_cycles_with_the_grid(report, grid, &queued);
    // Queued or waiting already at another path (a pull request adding a
    // second file of an id the grid holds): it would run twice.
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    let elsewhere = |path: &Path, id: &str| {
        let (_, p) = queued
            .iter()
            .find(|(q, p)| q.as_str() == id && !same(p, path))?;
        let rel = p.strip_prefix(grid).unwrap_or(p).display().to_string();
        Some(match rel.starts_with(layout::BLOCKED) {
            true => format!("waits already: {rel}"),
            false => format!("is queued already: {rel}"),
        })
    };
    let tasks = std::mem::take(&mut report.tasks);
    for (path, id) in tasks {
        let why = in_use.get(&id).cloned().or_else(|| elsewhere(&path, &id));
        match why {
            Some(where_) => {
                report.valid -= 1;
                report.findings.push(Finding {
                    reason: format!("field `task_id` {id:?} {where_}; task ids must be new"),
                    path,
                    field: Some("task_id"),
                });
            }
            None => report.tasks.push((path, id)),
        }
    }
}

/// The task files queued or waiting in the checkout at `grid` (the inbox,
/// the lanes, `blocked/`), each with the id its name says.
fn queued_files(grid: &Path) -> Vec<(Id, PathBuf)> {
    let stem_id = |p: &Path| {
        let name = p.file_name()?.to_string_lossy();
        layout::json_stem(&name).and_then(|s| Id::parse(s).ok())
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(grid.join(layout::QUEUE))
        .into_iter()
        .flatten()
        .filter_map(|e| Some(e.ok()?.path()))
        .collect();
    for dir in [layout::LANES, layout::BLOCKED] {
        let mut found = Vec::new();
        walk(&grid.join(dir), &mut found, &mut Vec::new());
        paths.extend(found.into_iter().map(|(p, _)| p));
    }
    paths
        .into_iter()
        .filter_map(|p| Some((stem_id(&p)?, p)))
        .collect()
}

/// A cycle the tasks checked close with tasks waiting on the grid (a pull
/// request making `p` run after `c`, where `c` waits for `p`): each would
/// wait for the other, and the grid fails both, its own task too. Cycles
/// among the tasks checked alone are found without the grid.
fn check_cycles_with_the_grid(report: &mut Report, grid: &Path, queued: &[(Id, PathBuf)]) {
    if report.graph.is_empty() {
        return;
    }
    let ours: BTreeSet<Id> = report.graph.iter().map(|(_, id, _)| id.clone()).collect();
    let mut graph: Vec<(Id, Vec<Id>)> = report
        .graph
        .iter()
        .map(|(_, id, after)| (id.clone(), after.clone()))
        .collect();
    // The grid's waiting tasks (in the inbox or under `blocked/`), read
    // as the old whole-queue check read them, bounded.
    let lanes = grid.join(layout::LANES);
    let waiting = queued
        .iter()
        .filter(|(id, p)| !ours.contains(id) && !p.starts_with(&lanes));
    for (id, path) in waiting {
        let after = read_regular(
            path,
            crate::grid::TaskRules::default().max_file_bytes as u64,
        )
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            let ids = v["after"].as_array()?.iter();
            ids.map(|a| Id::parse(a.as_str()?).ok())
                .collect::<Option<Vec<Id>>>()
        });
        if let Some(after) = after.filter(|a| !a.is_empty()) {
            graph.push((id.clone(), after));
        }
    }
    for e in deps::check_graph(&graph, |_| true) {
        let GraphError::Cycle(ids) = &e else { continue };
        let Some(first) = ids.iter().find(|id| ours.contains(id)) else {
            continue;
        };
        if ids.iter().all(|id| ours.contains(id)) {
            continue;
        }
        let reason = format!("{e} (a cycle with tasks waiting on the grid)");
        after_finding(report, first, reason);
    }
}

/// Of the ids `graph`'s tasks run after, those the grid checked out at
/// `grid` holds: queued or waiting (`queued`, its [`queued_files`]),
/// running, or with a result.
fn known_ids(grid: &Path, graph: &[(Id, Vec<Id>)], queued: &[(Id, PathBuf)]) -> BTreeSet<Id> {
    let wanted: BTreeSet<&Id> = graph.iter().flat_map(|(_, a)| a).collect();
    let mut known = BTreeSet::new();
    if wanted.is_empty() {
        return known;
    }
    let stem_id = |name: &str| layout::json_stem(name).and_then(|s| Id::parse(s).ok());
    if let Ok(entries) = std::fs::read_dir(grid.join(layout::IN_PROGRESS)) {
        known.extend(
            entries
                .filter_map(Result::ok)
                .filter_map(|e| stem_id(&e.file_name().to_string_lossy())),
        );
    }
    known.extend(queued.iter().map(|(id, _)| id.clone()));
    let wanted_names: BTreeSet<&str> = wanted.iter().map(|id| id.as_str()).collect();
    let results = results_of(grid, &[layout::COMPLETED, layout::FAILED], &wanted_names);
    known.extend(
        results
            .into_iter()
            .filter_map(|(id, _)| Id::parse(&id).ok()),
    );
    known.retain(|id| wanted.contains(id));
    known
}

/// The result files in `dirs` that are results of the tasks `wanted`:
/// (task, `<dir>/<name>`), in listing order. Results are named
/// `<node>@<task>.json`, which says whose they are; an older
/// `<node>-<task>.json` name is only a candidate until the file's
/// `task_id` says so (read once, bounded). One listing a directory, each
/// name looked at once, whatever the number of tasks.
fn results_of(grid: &Path, dirs: &[&str], wanted: &BTreeSet<&str>) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(grid.join(dir)) else {
            continue;
        };
        // A result is a file: a directory or symbolic link named like one
        // is none (as the worker's look-up says).
        let files = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()));
        for e in files {
            let name = e.file_name().to_string_lossy().into_owned();
            let mut candidates = Vec::new();
            for (task, how) in layout::result_name_tasks(&name) {
                match how {
                    _ if !wanted.contains(task) => {}
                    layout::NameMatch::Yes => {
                        found.push((task.to_owned(), format!("{dir}/{name}")))
                    }
                    _ => candidates.push(task),
                }
            }
            if candidates.is_empty() {
                continue;
            }
            let task_id = read_regular(&e.path(), layout::MAX_RESULT_BYTES)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["task_id"].as_str().map(str::to_owned));
            if let Some(id) = task_id.filter(|t| candidates.contains(&t.as_str())) {
                found.push((id, format!("{dir}/{name}")));
            }
        }
    }
    found
}

/// A task in a lane that runs after others is where the grid put it once
/// every one of them completed (a node released it, its `after` kept); one
/// with a task in its `after` not completed belongs in `tasks/blocked/`.
fn check_lanes_after(report: &mut Report, grid: &Path) {
    let wanted: BTreeSet<&str> = report
        .lane_after
        .iter()
        .flat_map(|(_, a)| a.iter().map(Id::as_str))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let completed: BTreeSet<String> = results_of(grid, &[layout::COMPLETED], &wanted)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut refused = Vec::new();
    for (path, after) in &report.lane_after {
        if let Some(p) = after.iter().find(|p| !completed.contains(p.as_str())) {
            refused.push(Finding {
                path: path.clone(),
                field: Some("after"),
                reason: format!(
                    "`{p}` has not completed: a task that runs after others waits in {}/<the first of them not completed>/, not in a lane",
                    layout::BLOCKED
                ),
            });
        }
    }
    let paths: BTreeSet<&PathBuf> = refused.iter().map(|f| &f.path).collect();
    let before = report.tasks.len();
    report.tasks.retain(|(p, _)| !paths.contains(p));
    report.valid -= before - report.tasks.len();
    report.findings.extend(refused);
}
