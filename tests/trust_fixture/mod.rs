//! A grid with a signed policy, its keys, and workers that pin it: for the
//! tests that run real workers in `warn` and `enforce` mode.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::tools_fixture::{dgrid, expect_code};
use dgrid_worker::grid::{Id, Task, TaskRules};
use dgrid_worker::time;
use dgrid_worker::trust::KeySigner;

/// Keys: `root` (the grid's only root), submitters `alice` and `bob`
/// (bob's key revoked in the last version), nodes `n1` and `n2`, and
/// `eve`, whom the policy never lists.
pub struct TrustedGrid {
    pub grid: Grid,
    pub keys: PathBuf,
    /// Where the test tasks leave a mark when their script runs.
    pub marks: PathBuf,
}

pub const GRID_ID: &str = "g7";

impl TrustedGrid {
    pub fn new() -> TrustedGrid {
        let grid = Grid::new();
        let keys = grid.path("keys");
        let marks = grid.path("marks");
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::create_dir_all(&marks).unwrap();
        let t = TrustedGrid { grid, keys, marks };
        for name in ["root", "alice", "bob", "eve", "n1", "n2", "carol"] {
            expect_code(&dgrid(&["keygen", "-f", &t.key(name), "-C", name]), 0);
        }
        t.policy(&["trust", "init", "--grid-id", GRID_ID]);
        t.policy(&[
            "trust",
            "add-submitter",
            "--name",
            "alice",
            "--key",
            &t.key("alice.pub"),
        ]);
        t.policy(&[
            "trust",
            "add-submitter",
            "--name",
            "bob",
            "--key",
            &t.key("bob.pub"),
        ]);
        for n in ["n1", "n2"] {
            t.policy(&[
                "trust",
                "add-node",
                "--node-id",
                n,
                "--key",
                &t.key(&format!("{n}.pub")),
            ]);
        }
        t.policy(&[
            "trust",
            "revoke",
            "--key",
            &t.key("bob.pub"),
            "--reason",
            "laptop lost",
        ]);
        t
    }

    pub fn key(&self, name: &str) -> String {
        self.keys.join(name).display().to_string()
    }

    /// A policy tool, signed by the root; must succeed.
    pub fn policy(&self, args: &[&str]) {
        let url = self.grid.url();
        let root = self.key("root");
        let mut all = args.to_vec();
        all.extend(["--repo", &url, "--sign-with", &root]);
        expect_code(&dgrid(&all), 0);
    }

    /// `id`, running `script`, signed by `signer` for `grid`, valid from
    /// `from` to `to` seconds from now.
    pub fn signed(
        &self,
        id: &str,
        script: &str,
        signer: &str,
        grid: &str,
        from: i64,
        to: i64,
    ) -> Vec<u8> {
        let task = serde_json::json!({"task_id": id, "script": script, "timeout_seconds": 30});
        self.signed_task(task, signer, grid, from, to)
    }

    /// The task `task` (its JSON), signed as [`TrustedGrid::signed`] signs.
    pub fn signed_task(
        &self,
        task: serde_json::Value,
        signer: &str,
        grid: &str,
        from: i64,
        to: i64,
    ) -> Vec<u8> {
        // Any task a test asks for, longer than a node's default limit too.
        let rules = TaskRules {
            max_timeout_seconds: 7 * 86_400,
            ..TaskRules::default()
        };
        let task = Task::parse(task.to_string().as_bytes(), &rules).unwrap();
        let key = KeySigner::open(Path::new(&self.key(signer))).unwrap();
        let now = time::now();
        dgrid_worker::trust::task::sign(
            &task,
            &Id::parse(grid).unwrap(),
            now + chrono::Duration::seconds(from),
            now + chrono::Duration::seconds(to),
            &key,
        )
        .unwrap()
    }

    /// A task signed by alice for this grid, valid for an hour.
    pub fn by_alice(&self, id: &str, script: &str) -> Vec<u8> {
        self.signed(id, script, "alice", GRID_ID, -10, 3600)
    }

    /// A script that leaves the mark `name` when it runs.
    pub fn marking(&self, name: &str) -> String {
        format!("echo ran >> {}/{name}", self.marks.display())
    }

    /// How many times the script marking `name` ran.
    pub fn runs(&self, name: &str) -> usize {
        std::fs::read_to_string(self.marks.join(name))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    pub fn queue(&self, files: &[(&str, Vec<u8>)], message: &str) {
        let files: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|(id, b)| (format!("tasks/queue/{id}.json"), b.clone()))
            .collect();
        self.grid.commit_files(&files, message);
    }

    /// A worker `node` (whose key is `keys/<node>`) pinning the root, in
    /// `mode`.
    pub fn worker(&self, node: &str, mode: &str) -> WorkerSpec {
        let mut spec = WorkerSpec::new(&self.grid, node);
        spec.extra = format!(
            "[trust]\nmode = \"{mode}\"\ngrid_id = \"{GRID_ID}\"\nroots = \"{}\"\nnode_key = \"{}\"\n",
            self.key("root.pub"),
            self.key(node)
        );
        spec
    }

    /// Run `spec` with `--drain` until it exits 0.
    pub fn drain(&self, spec: &WorkerSpec) -> WorkerProc {
        let mut w = spawn_worker(&self.grid, spec);
        let status = w.wait_exit(Duration::from_secs(180));
        assert!(status.success(), "{status}: {}", w.log_text());
        w
    }

    /// The policy version a worker holds in its state directory.
    pub fn held_version(&self, w: &WorkerProc) -> u64 {
        let p: Value =
            serde_json::from_slice(&std::fs::read(w.state.join("trust/policy.json")).unwrap())
                .unwrap();
        p["version"].as_u64().unwrap()
    }

    /// `dgrid-worker verify` of `paths` against the pinned root: one line
    /// per result.
    pub fn verify(&self, paths: &[&str]) -> String {
        String::from_utf8_lossy(&self.verify_run(paths).stdout).into_owned()
    }

    /// The same, run with `args` after the pinning (paths, `--json`):
    /// what it printed and its exit status.
    pub fn verify_run(&self, args: &[&str]) -> std::process::Output {
        let bare = self.grid.bare.display().to_string();
        let root = self.key("root.pub");
        let mut all = vec![
            "verify",
            "--repo",
            bare.as_str(),
            "--grid-id",
            GRID_ID,
            "--roots",
            root.as_str(),
        ];
        all.extend_from_slice(args);
        dgrid(&all)
    }
}

/// Lines of a worker's log that mention `needle`, without the terminal
/// colours the log has (`entry=x.json`, not `\x1b[3mentry\x1b[0m=...`).
pub fn log_lines(w: &WorkerProc, needle: &str) -> Vec<String> {
    w.log_text()
        .lines()
        .map(plain)
        .filter(|l| l.contains(needle))
        .collect()
}

/// `line` without ANSI escape sequences (`ESC [ ... letter`).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
