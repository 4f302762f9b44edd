//! The worker's private clone is shallow (BENCHMARKS.md, Growth): it holds the
//! tip it first fetched and what came after, never the grid's history.
//! Real bare repositories, real pushes, over a path remote with git's
//! default configuration and over `git daemon`.

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use dgrid_worker::git::txn::{self, Identity, TxnOutcome, TxnPolicy};
use dgrid_worker::git::{Edit, Git, GridRepo};

/// Commits reachable from the clone's copy of `main`.
fn commits_in_clone(dir: &Path) -> usize {
    let out = git(dir, &["rev-list", "--count", "refs/remotes/origin/main"]);
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn is_shallow(dir: &Path) -> bool {
    let out = git(dir, &["rev-parse", "--is-shallow-repository"]);
    String::from_utf8_lossy(&out.stdout).trim() == "true"
}

/// A grid with `n` commits of history beyond its layout.
fn grid_with_commits(n: usize) -> Grid {
    let grid = Grid::new();
    for i in 0..n {
        grid.commit_files(
            &[(format!("nodes/old-{i}.json"), format!("{i}\n").into_bytes())],
            "history",
        );
    }
    grid
}

/// One transaction that writes `path`, as a tool or worker would.
fn write_file(repo: &GridRepo, path: &str, body: &str) -> String {
    let out = txn::run(
        repo,
        &Identity::for_node("tester"),
        &TxnPolicy::default(),
        |_| Ok(crate::common::plan::write_one(path, body.as_bytes())),
    )
    .unwrap();
    match out {
        TxnOutcome::Committed { commit, .. } => commit,
        other => panic!("not committed: {other:?}"),
    }
}

#[test]
fn workers_clone_only_the_tip_and_push_from_it_over_a_path_and_git_daemon() {
    let grid = grid_with_commits(6);
    let mut daemon = GitDaemon::start(&grid, free_port());
    grid.submit(&[
        ("s-1".into(), "echo one".into(), 30),
        ("s-2".into(), "echo two".into(), 30),
    ]);
    for (node, url) in [("by-path", grid.url()), ("by-daemon", daemon.url())] {
        let mut spec = WorkerSpec::new(&grid, node);
        spec.url = url;
        let mut w = spawn_worker(&grid, &spec);
        assert!(
            w.wait_exit(Duration::from_secs(60)).success(),
            "{}",
            w.log_text()
        );
        let clone = w.state.join("grid.git");
        assert!(is_shallow(&clone), "{node}: the clone is shallow");
        // The grid has 9+ commits; the clone holds what it saw happen.
        assert!(
            commits_in_clone(&clone) < grid.commit_count(),
            "{node}: {} of {} commits",
            commits_in_clone(&clone),
            grid.commit_count()
        );
        if node == "by-path" {
            // Its pushes landed: both results and the node record.
            assert_eq!(grid.files("tasks/completed").len(), 2);
        }
        assert!(grid.files("nodes").contains_key(&format!("{node}.json")));
    }
    // The server is a plain bare repository with git's defaults: it took
    // pushes from shallow clones without `receive.shallowUpdate`.
    let conf = git(&grid.bare, &["config", "--list", "--local"]);
    assert!(!String::from_utf8_lossy(&conf.stdout).contains("shallow"));
    daemon.stop();
}

#[test]
fn history_after_the_first_fetch_is_complete_and_maintain_cuts_it_back() {
    let grid = grid_with_commits(5);
    let dir = grid.path("clone/grid.git");
    let g = Git::new("git", &dir, Duration::from_secs(60));
    let repo = GridRepo::open_or_init(g, &grid.url(), "main").unwrap();
    let first = repo.fetch().unwrap().unwrap();
    assert!(is_shallow(&dir));
    assert_eq!(
        commits_in_clone(&dir),
        1,
        "the first fetch takes the tip only"
    );

    // Our commit, then others' commits on top: the later fetches are plain,
    // so the commit is found below the new tip (a push whose answer was
    // lost is then known to have landed).
    let ours = write_file(&repo, "nodes/tester.json", "{}\n");
    for i in 0..3 {
        grid.commit_files(&[(format!("nodes/later-{i}.json"), b"x".to_vec())], "later");
    }
    assert!(txn::landed(&repo, &ours).unwrap());
    assert_eq!(
        commits_in_clone(&dir),
        1 + 1 + 3,
        "incremental, not deepened"
    );
    let tip = repo.tip().unwrap().unwrap();
    assert!(repo.is_ancestor(&first, &tip).unwrap());
    // A commit that never landed is not taken for one that did.
    let stray = repo
        .commit_edits(
            Some(&first),
            &[(b"nodes/stray.json".to_vec(), Edit::Put(b"{}".to_vec()))]
                .into_iter()
                .collect(),
            "never pushed",
            &dgrid_worker::git::Signature {
                name: "t".into(),
                email: "t@x".into(),
                when: 1_800_000_000,
            },
        )
        .unwrap();
    assert!(!txn::landed(&repo, &stray).unwrap());

    // Maintenance: back to one commit, unreachable objects gone.
    grid.commit_files(&[("nodes/last.json".into(), b"x".to_vec())], "last");
    repo.maintain().unwrap();
    assert!(is_shallow(&dir));
    assert_eq!(commits_in_clone(&dir), 1);
    assert_eq!(
        repo.tip().unwrap(),
        Some(
            String::from_utf8(git(&grid.bare, &["rev-parse", "main"]).stdout)
                .unwrap()
                .trim()
                .to_owned()
        )
    );
    let missing = std::process::Command::new("git")
        .args(["cat-file", "-e", &stray])
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(!missing.success(), "the unreachable commit was pruned");
    git(&dir, &["fsck", "--connectivity-only", "--no-dangling"]);

    // And it still works: a transaction after maintenance lands and is
    // found again below a newer tip.
    let after = write_file(&repo, "nodes/tester.json", "{\"again\":1}\n");
    grid.commit_files(&[("nodes/later-x.json".into(), b"x".to_vec())], "later");
    assert!(txn::landed(&repo, &after).unwrap());
    assert_eq!(
        grid.files("nodes")["tester.json"],
        b"{\"again\":1}\n".to_vec()
    );
}

#[test]
fn an_old_full_clone_becomes_shallow_at_its_first_maintenance() {
    let grid = grid_with_commits(4);
    let dir = grid.path("old/grid.git");
    // A clone as earlier versions made it: full history.
    let g = Git::new("git", &dir, Duration::from_secs(60));
    let repo = GridRepo::open_or_init(g, &grid.url(), "main").unwrap();
    git(
        &dir,
        &[
            "fetch",
            "-q",
            "origin",
            "+refs/heads/main:refs/remotes/origin/main",
        ],
    );
    assert!(!is_shallow(&dir));
    assert_eq!(commits_in_clone(&dir), grid.commit_count());
    repo.maintain().unwrap();
    assert!(is_shallow(&dir));
    assert_eq!(commits_in_clone(&dir), 1);
    write_file(&repo, "nodes/tester.json", "{}\n");
    assert!(grid.files("nodes").contains_key("tester.json"));
}

/// Add `n` results (numbered from `from`) to `main`, 100 per commit, with
/// one `git fast-import` in the bare repository.
fn add_results(grid: &Grid, from: usize, n: usize) {
    use std::fmt::Write as _;
    let mut s = String::from("reset refs/heads/main\nfrom refs/heads/main^0\n");
    for chunk in (from..from + n).collect::<Vec<_>>().chunks(100) {
        let _ = write!(
            s,
            "commit refs/heads/main\ncommitter t <t@x> 1700000000 +0000\ndata 7\nresults\n"
        );
        for i in chunk {
            let body = serde_json::json!({
                "task_id": format!("r-{i:06}"), "node_id": "n1", "exit_code": 0,
                "stdout": format!("result number {i}\n"), "stderr": "", "status": "completed",
                "timestamp": dgrid_worker::time::format(
                    chrono::DateTime::from_timestamp(1_700_000_000 + *i as i64, 0).unwrap()),
            })
            .to_string();
            let _ = write!(
                s,
                "M 100644 inline tasks/completed/n1-r-{i:06}.json\ndata {}\n{body}\n",
                body.len()
            );
        }
        s.push('\n');
    }
    s.push_str("done\n");
    let mut child = std::process::Command::new("git")
        .args(["fast-import", "--quiet", "--done"])
        .current_dir(&grid.bare)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), s.as_bytes()).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

/// Bytes of the objects in a repository: packs, their indexes and loose
/// objects, by length (a small fetch leaves loose objects, each of which
/// `du` would round up to a 4 KiB block).
fn object_bytes(dir: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                let m = e.metadata().unwrap();
                if m.is_dir() { walk(&e.path()) } else { m.len() }
            })
            .sum()
    }
    walk(&dir.join("objects"))
}

fn archive(grid: &Grid, keep: usize) {
    let args = dgrid_worker::tools::source::RepoArgs {
        repo: grid.url(),
        branch: "main".into(),
        git_timeout: 120,
    };
    let opts = dgrid_worker::tools::archive::ArchiveOptions {
        keep,
        ..Default::default()
    };
    let done = dgrid_worker::tools::archive::run(&args, &opts, false).unwrap();
    assert!(done.pushed);
}

fn fresh_clone(grid: &Grid, name: &str) -> (GridRepo, std::path::PathBuf) {
    let dir = grid.path(name);
    let g = Git::new("git", &dir, Duration::from_secs(60));
    let repo = GridRepo::open_or_init(g, &grid.url(), "main").unwrap();
    repo.fetch().unwrap();
    (repo, dir)
}

#[test]
fn once_results_are_archived_the_clone_does_not_grow_with_them() {
    let grid = Grid::new();
    add_results(&grid, 0, 200);
    archive(&grid, 50);
    let (long_lived, long_dir) = fresh_clone(&grid, "long.git");
    let small = object_bytes(&long_dir);

    // Ten times the results, on main only: a fresh clone sees them all.
    add_results(&grid, 200, 2000);
    let (_, flat_dir) = fresh_clone(&grid, "flat.git");
    let flat = object_bytes(&flat_dir);
    assert!(
        flat > 4 * small,
        "the measure sees growth: {flat} vs {small}"
    );

    // Archived (the default keep is larger than this grid): a fresh clone
    // is as small as before.
    archive(&grid, 50);
    let (_, archived_dir) = fresh_clone(&grid, "archived.git");
    let archived = object_bytes(&archived_dir);
    assert!(
        archived * 10 < small * 15,
        "2,200 results archived: {archived} bytes vs {small} at 200"
    );

    // The long-lived clone fetched it all as it happened; maintenance cuts
    // it back to the size of a fresh one, and it keeps working.
    long_lived.fetch().unwrap();
    assert!(object_bytes(&long_dir) > 4 * small);
    long_lived.maintain().unwrap();
    assert!(is_shallow(&long_dir));
    let after = object_bytes(&long_dir);
    assert!(
        after * 10 < archived * 15,
        "after maintenance {after} bytes, a fresh clone {archived}"
    );
    eprintln!(
        "clone objects: {small} B at 200 results, {flat} B at 2,200 on main, \
         {archived} B archived, {after} B after maintenance"
    );
    write_file(&long_lived, "nodes/tester.json", "{}\n");
    assert!(grid.files("nodes").contains_key("tester.json"));
    assert_eq!(grid.files("tasks/completed").len(), 50);
}

/// Take object `oid` out of the clone at `dir`: its packs unpacked first
/// (into loose objects), so that one object can go, as a disk fault or a
/// crash mid-write takes it.
fn lose_object(dir: &Path, oid: &str) {
    let packs = dir.join("objects/pack");
    let aside = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&packs).unwrap() {
        let path = entry.unwrap().path();
        std::fs::rename(&path, aside.path().join(path.file_name().unwrap())).unwrap();
    }
    for entry in std::fs::read_dir(aside.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pack") {
            let pack = std::fs::File::open(&path).unwrap();
            let status = std::process::Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(["unpack-objects", "-q"])
                .stdin(pack)
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    std::fs::remove_file(dir.join("objects").join(&oid[..2]).join(&oid[2..])).unwrap();
}

/// A node `node` that has run task `a` and stopped, and its clone.
fn node_after_one_task(grid: &Grid, node: &str) -> (WorkerSpec, std::path::PathBuf) {
    grid.submit(&[("a".into(), "echo a".into(), 30)]);
    let spec = WorkerSpec::new(grid, node);
    let mut w = spawn_worker(grid, &spec);
    assert!(
        w.wait_exit(Duration::from_secs(120)).success(),
        "{}",
        w.log_text()
    );
    let clone = w.state.join("grid.git");
    (spec, clone)
}

/// Task `b`, run by that node started again: its log.
fn run_b(grid: &Grid, spec: &WorkerSpec) -> String {
    grid.submit(&[("b".into(), "echo b".into(), 30)]);
    let mut w = spawn_worker(grid, spec);
    let status = w.wait_exit(Duration::from_secs(180));
    let log = w.log_text();
    assert!(status.success(), "{status}: {log}");
    log
}

/// A clone that lost an object its tip names (here the tree of `nodes/`,
/// which the registration reads) decides nothing (`GitError::Damaged`):
/// the node moves it aside and clones the grid afresh by itself, rather
/// than fail every sync until a person deletes it. Nothing is lost or
/// run twice; the clone left is whole.
#[test]
fn a_damaged_clone_is_cloned_afresh_by_the_node() {
    let grid = Grid::new();
    let (spec, clone) = node_after_one_task(&grid, "mended");
    let out = git(&clone, &["rev-parse", "refs/remotes/origin/main:nodes"]);
    let nodes = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    lose_object(&clone, &nodes);
    let log = run_b(&grid, &spec);
    assert!(log.contains("is damaged"), "{log}");
    assert_eq!(
        log.matches("the next sync clones the grid afresh").count(),
        1,
        "{log}"
    );
    let results = grid.results();
    let ids: Vec<&str> = results.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(!clone.with_file_name("grid.git.damaged").exists());
    let fsck = git(&clone, &["fsck", "--connectivity-only"]);
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stderr)
    );
}

/// A clone grown past git's own limit for an automatic gc (6,700 loose
/// objects) is cut back at the node's next sync between tasks, not six
/// hours after its start: a soak of four busy nodes grew each clone by
/// 290-370 MB an hour, and a node restarted more often than that never
/// cut back at all.
#[test]
fn a_grown_clone_is_cut_back_at_the_next_sync_between_tasks() {
    let grid = Grid::new();
    let (spec, clone) = node_after_one_task(&grid, "tidy");
    // 7,000 objects no ref reaches, loose, as fetches and the node's own
    // commits leave them.
    let junk = tempfile::tempdir().unwrap();
    let paths: Vec<String> = (0..7000)
        .map(|i| {
            let p = junk.path().join(format!("{i}"));
            std::fs::write(&p, format!("junk {i}")).unwrap();
            p.display().to_string()
        })
        .collect();
    git_with_input(
        &clone,
        &["hash-object", "-w", "--stdin-paths"],
        (paths.join("\n") + "\n").as_bytes(),
    );
    let loose = |clone: &std::path::Path| -> u64 {
        let out = git(clone, &["count-objects", "-v"]);
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("count: "))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(loose(&clone) >= 7000);
    let log = run_b(&grid, &spec);
    assert!(log.contains("the clone has grown"), "{log}");
    assert!(loose(&clone) < 100, "{} loose objects left", loose(&clone));
    assert_eq!(grid.results().len(), 2);
}
