//! The configuration's rules, from TOML text and a made-up environment.

use super::*;
use crate::sandbox::EngineKind;
use std::collections::HashMap;

#[test]
fn spans_of_time_are_bounded() {
    // Found by fuzzing: 3 * heartbeat_interval overflowed, and a huge
    // interval would panic the loop at its first Instant + Duration.
    for text in [
        "repo_url = \"/g\"\nheartbeat_interval = 9000000000000000000\n",
        "repo_url = \"/g\"\npull_interval = 9000000000000000000\n",
        "repo_url = \"/g\"\ndrain_timeout = 18446744073709551615\n",
    ] {
        let e = Config::from_str_with(text, Path::new("w.toml"), &env(&[])).unwrap_err();
        assert!(e.to_string().contains("at most 315360000"), "{text}: {e}");
    }
}

/// No task may be longer than a week on any node: a node's limit above
/// it made such a task run or fail by which node read it first.
#[test]
fn a_nodes_longest_task_is_a_week_at_most() {
    let text = |secs: u64| format!("repo_url = \"/g\"\n[tasks]\nmax_timeout_seconds = {secs}\n");
    let week = Config::from_str_with(&text(604_800), Path::new("w.toml"), &env(&[])).unwrap();
    assert_eq!(week.task_rules.max_timeout_seconds, 604_800);
    let e = Config::from_str_with(&text(700_000), Path::new("w.toml"), &env(&[])).unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("w.toml line 3")
            && e.contains("tasks.max_timeout_seconds")
            && e.contains("at most 604800"),
        "{e}"
    );
}

struct MapEnv(HashMap<&'static str, &'static str>);
impl Env for MapEnv {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|s| s.to_string())
    }
}
fn env(pairs: &[(&'static str, &'static str)]) -> MapEnv {
    MapEnv(pairs.iter().copied().collect())
}
fn load(text: &str, e: &MapEnv) -> Result<Config, ConfigError> {
    Config::from_str_with(text, Path::new("/etc/dgrid/worker.toml"), e)
}

#[test]
fn file_then_environment() {
    let text = "node_id = \"n1\"\nrepo_url = \"/srv/grid.git\"\npull_interval = 5\n[sandbox]\nengine = \"podman\"\nimage = \"img\"\n";
    let c = load(text, &env(&[])).unwrap();
    assert_eq!(c.node_id.as_str(), "n1");
    assert_eq!(c.pull_interval, Duration::from_secs(5));
    assert_eq!(c.sandbox.engine, EngineKind::Podman);
    let c = load(
        text,
        &env(&[
            ("NODE_ID", "n2"),
            ("PULL_INTERVAL", "1"),
            ("DGRID_ENGINE", "shell"),
            ("GIT_TOKEN", "t0k"),
        ]),
    )
    .unwrap();
    assert_eq!(c.node_id.as_str(), "n2");
    assert_eq!(c.pull_interval, Duration::from_secs(1));
    assert_eq!(c.sandbox.engine, EngineKind::Shell);
    assert_eq!(
        c.access.token.as_ref().map(auth::Secret::expose),
        Some("t0k")
    );
    assert!(!format!("{c:?}").contains("t0k"));
}

#[test]
fn errors_name_key_file_and_line() {
    let e = load("repo_url = \"/g\"\n\npul_interval = 5\n", &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/etc/dgrid/worker.toml") && e.contains("line 3") && e.contains("pul_interval"),
        "{e}"
    );
    let e = load("repo_url = \"/g\"\n[sandbox]\nmemory_mb = 0\n", &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 3") && e.contains("memory_mb"), "{e}");
    let e = load("repo_url = \"/g\"\nnode_id = \"../x\"\n", &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2") && e.contains("node_id"), "{e}");
    let e = load("repo_url = \"/g\"\n", &env(&[("PULL_INTERVAL", "soon")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("PULL_INTERVAL") && e.contains("soon"), "{e}");
    let e = load("", &env(&[])).unwrap_err().to_string();
    assert!(
        e.contains("repo_url") && e.contains("DGRID_REPO_URL"),
        "{e}"
    );
    let e = load("repo_url = \"https://tok@github.com/o/g\"\n", &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("repo_url") && e.contains("credentials"), "{e}");
    // Checked after parsing, and still with the line, as every other error.
    let e = load(
        "node_id = \"n1\"\n\nrepo_url = \"https://u:p@github.com/o/g\"\n",
        &env(&[]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("/etc/dgrid/worker.toml line 3") && e.contains("`repo_url`"),
        "{e}"
    );
    let e = load(
        "repo_url = \"/g\"\ngit_username = \"x\\nusername=y\"\n",
        &env(&[]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("line 2") && e.contains("git_username"), "{e}");
    let e = load(
        "repo_url = \"/g\"\n[git]\nca_file = \"/nonexistent/ca.pem\"\n",
        &env(&[]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("line 3") && e.contains("git.ca_file") && e.contains("/nonexistent/ca.pem"),
        "{e}"
    );
}

#[test]
fn ssh_settings_and_the_ssh_key_credential() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ssh-key");
    std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let known = dir.path().join("known_hosts");
    std::fs::write(&known, "").unwrap();
    let text = format!(
        "repo_url = \"ssh://git@h/g\"\n[git]\nssh_key_file = \"{}\"\nknown_hosts = \"{}\"\n",
        key.display(),
        known.display()
    );
    let e = load(&text, &env(&[])).unwrap_err().to_string();
    assert!(e.contains("line 3") && e.contains("chmod 600"), "{e}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let c = load(&text, &env(&[])).unwrap();
    assert_eq!(c.access.ssh_key_file.as_deref(), Some(key.as_path()));
    assert_eq!(c.access.known_hosts.as_deref(), Some(known.as_path()));
    // Without a setting, the unit's credential `ssh-key` is the key.
    let creds: &'static str = Box::leak(dir.path().display().to_string().into_boxed_str());
    let c = load(
        "repo_url = \"ssh://git@h/g\"\n",
        &env(&[("CREDENTIALS_DIRECTORY", creds)]),
    )
    .unwrap();
    assert_eq!(c.access.ssh_key_file.as_deref(), Some(key.as_path()));
}

#[test]
fn a_token_with_a_line_break_stops_the_start() {
    let e = load("repo_url = \"/g\"\n", &env(&[("GIT_TOKEN", "abc\ndef")]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("GIT_TOKEN") && e.contains("control character"),
        "{e}"
    );
    assert!(!e.contains("def"), "{e}");
}

/// A sweep's node configured `arch=arm64` on amd64 and `engine=docker`
/// with the shell engine: it claimed tasks that asked for those, and ran
/// them as it was.
#[test]
fn a_label_of_a_detected_key_must_say_what_is_detected() {
    let other = if crate::grid::label::arch_label().as_str() == "arch=arm64" {
        "arch=amd64"
    } else {
        "arch=arm64"
    };
    let text = format!("repo_url = \"/g\"\n\nlabels = [\"gpu\", \"{other}\"]\n");
    let e = load(&text, &env(&[])).unwrap_err().to_string();
    assert!(
        e.contains("line 3") && e.contains("labels") && e.contains(other) && e.contains("detected"),
        "{e}"
    );
    let e = load(
        "repo_url = \"/g\"\nlabels = [\"engine=docker\"]\n[sandbox]\nengine = \"shell\"\n",
        &env(&[]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("line 2") && e.contains("engine=docker"), "{e}");
    let e = load(
        "repo_url = \"/g\"\n",
        &env(&[("DGRID_LABELS", "os=windows")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("DGRID_LABELS") && e.contains("os=windows"),
        "{e}"
    );
    // With the engine found at start (auto), the start judges it.
    assert!(
        load(
            "repo_url = \"/g\"\nlabels = [\"engine=podman\"]\n",
            &env(&[])
        )
        .is_ok()
    );
    // Saying what is detected is no error.
    let c = load(
        "repo_url = \"/g\"\nlabels = [\"engine=shell\", \"os=linux\"]\n[sandbox]\nengine = \"shell\"\n",
        &env(&[]),
    )
    .unwrap();
    assert_eq!(c.scheduling.labels.len(), 2);
}

#[test]
fn labels_exclusive_and_budget_are_checked_with_the_line() {
    let text = "repo_url = \"/g\"\nlabels = [\"gpu\", \"zone=eu\"]\nexclusive = [\"gpu\"]\n[budget]\ntasks_per_hour = 10\ntask_seconds_per_hour = 600\nquiet_hours = [\"22:00-07:00\"]\n";
    let c = load(text, &env(&[])).unwrap();
    let names: Vec<&str> = c.scheduling.labels.iter().map(|l| l.as_str()).collect();
    assert_eq!(names, ["gpu", "zone=eu"]);
    assert_eq!(c.scheduling.exclusive.len(), 1);
    assert_eq!(c.scheduling.budget.tasks_per_hour, Some(10));
    assert_eq!(c.scheduling.budget.task_seconds_per_hour, Some(600));
    assert_eq!(c.scheduling.budget.quiet_hours.len(), 1);
    let c = load("repo_url = \"/g\"\n", &env(&[])).unwrap();
    assert!(c.scheduling.labels.is_empty() && c.scheduling.budget.is_unlimited());

    let e = load("repo_url = \"/g\"\n\nlabels = [\"GPU\"]\n", &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 3") && e.contains("labels") && e.contains("\"GPU\""),
        "{e}"
    );
    // A list a line per entry: the entry's own line, not the list's.
    for (key, text) in [
        (
            "labels",
            "labels = [\n  \"gpu\",\n  \"zone=eu\",\n  \"GPU\",\n]\n",
        ),
        (
            "budget.quiet_hours",
            "[budget]\nquiet_hours = [\n  \"22:00-07:00\",\n  \"25:00-26:00\",\n]\n",
        ),
    ] {
        let e = load(&format!("repo_url = \"/g\"\n{text}"), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 5") && e.contains(key), "{e}");
    }
    let e = load(
        "repo_url = \"/g\"\nlabels = [\"gpu\"]\nexclusive = [\"fpga\"]\n",
        &env(&[]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("line 3") && e.contains("exclusive") && e.contains("fpga"),
        "{e}"
    );
    let e = load(
        "repo_url = \"/g\"\nlabels = [\"gpu\"]\n",
        &env(&[("DGRID_EXCLUSIVE", "tpu")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("DGRID_EXCLUSIVE") && e.contains("tpu") && !e.contains("line"),
        "named where it was set: {e}"
    );
    let e = load(
        "repo_url = \"/g\"\n[budget]\nquiet_hours = [\"25:00-07:00\"]\n",
        &env(&[]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("line 3") && e.contains("budget.quiet_hours"),
        "{e}"
    );
    let e = load(
        "repo_url = \"/g\"\n[budget]\ntasks_per_hour = 0\n",
        &env(&[]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("line 3") && e.contains("tasks_per_hour"), "{e}");
    let labels: &'static str = format!("gpu, {}", crate::grid::label::arch_label().as_str()).leak();
    let c = load("repo_url = \"/g\"\n", &env(&[("DGRID_LABELS", labels)])).unwrap();
    assert_eq!(c.scheduling.labels.len(), 2);
    let e = load("repo_url = \"/g\"\n", &env(&[("DGRID_LABELS", "a/b")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("DGRID_LABELS") && e.contains("a/b"), "{e}");
}

#[test]
fn every_key_the_conffile_documents_parses() {
    // Uncomment each `#key = value` line of the packaged worker.toml:
    // what it documents is what the worker takes. Each file it names must
    // exist here for the worker to start: those files are made for the
    // test, under the paths the example gives, by rewriting them.
    let dir = tempfile::tempdir().unwrap();
    let files = ["ca_file", "ssh_key_file", "known_hosts"];
    // The `[trust]` table is commented out whole (its roots name a key
    // file of the grid's owner): left so, its keys are checked by
    // `trust::tests`.
    let mut in_trust = false;
    let text: String = include_str!("../../packaging/worker.toml")
        .lines()
        .map(|l| {
            if l.starts_with("#[") || l.starts_with('[') {
                in_trust = l == "#[trust]";
            }
            (l, in_trust)
        })
        .map(
            |(l, in_trust)| match l.strip_prefix('#').filter(|_| !in_trust) {
                Some(rest)
                    if rest.split_once(" = ").is_some_and(|(k, _)| {
                        !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
                {
                    let (key, _) = rest.split_once(" = ").unwrap();
                    if files.contains(&key) {
                        let path = dir.path().join(key);
                        std::fs::write(&path, "x").unwrap();
                        use std::os::unix::fs::PermissionsExt;
                        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                            .unwrap();
                        format!("{key} = {:?}", path.display().to_string())
                    } else {
                        rest.to_owned()
                    }
                }
                _ => l.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("\n");
    let c = load(&text, &env(&[])).unwrap();
    assert_eq!(c.scheduling.exclusive.len(), 1);
    assert_eq!(c.scheduling.budget.tasks_per_hour, Some(100));
    assert_eq!(c.scheduling.budget.quiet_hours.len(), 1);
}

#[test]
fn labels_and_slots_are_bounded_so_that_peers_read_the_record() {
    // A sweep's node with 1000 labels wrote a record its peers could not
    // read; `check` said ok.
    let labels = |n: usize| {
        (0..n)
            .map(|i| format!("\"l{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = |n| format!("repo_url = \"/g\"\n\nlabels = [{}]\n", labels(n));
    let c = load(&text(64), &env(&[])).unwrap();
    assert_eq!(c.scheduling.labels.len(), 64);
    let e = load(&text(65), &env(&[])).unwrap_err().to_string();
    assert!(
        e.contains("line 3") && e.contains("`labels`") && e.contains("65 labels; at most 64"),
        "{e}"
    );
    // The environment of these tests lives as long as the test binary.
    let many: &'static str = Box::leak(
        (0..65)
            .map(|i| format!("l{i}"))
            .collect::<Vec<_>>()
            .join(",")
            .into_boxed_str(),
    );
    let e = load("repo_url = \"/g\"\n", &env(&[("DGRID_LABELS", many)]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("DGRID_LABELS") && e.contains("65 labels"), "{e}");
    let e = load(
        "repo_url = \"/g\"\n",
        &env(&[("DGRID_LABELS", "gpu"), ("DGRID_EXCLUSIVE", many)]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("DGRID_EXCLUSIVE") && e.contains("65 labels"),
        "{e}"
    );

    let c = load("repo_url = \"/g\"\nconcurrency = 256\n", &env(&[])).unwrap();
    assert_eq!(c.concurrency, 256);
    let e = load("repo_url = \"/g\"\n\nconcurrency = 257\n", &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 3") && e.contains("`concurrency`") && e.contains("at most 256"),
        "{e}"
    );
    // Not cut to 32 bits either (2^32 + 1 was read as 1).
    let e = load(
        "repo_url = \"/g\"\n",
        &env(&[("DGRID_CONCURRENCY", "4294967297")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("DGRID_CONCURRENCY") && e.contains("at most 256"),
        "{e}"
    );
}

/// Limits an engine refuses (or whose arithmetic overflows), and an
/// output cap whose result no reader would read, are refused with the
/// key and the range: they passed, and every task then failed as the
/// engine's, or had its output replaced by the start mark.
#[test]
fn sandbox_limits_outside_what_engines_take_are_refused() {
    for (line, key, range) in [
        ("memory_mb = 1", "sandbox.memory_mb", "from 6 to"),
        (
            "memory_mb = 18446744073709551615",
            "sandbox.memory_mb",
            "from 6 to",
        ),
        (
            "pids_limit = 4294967295",
            "sandbox.pids_limit",
            "at most 4194304",
        ),
        ("cpus = 0.0001", "sandbox.cpus", "from 0.01 to 1024"),
        ("cpus = 2000.0", "sandbox.cpus", "from 0.01 to 1024"),
        (
            "output_limit_bytes = 18446744073709551615",
            "sandbox.output_limit_bytes",
            "at most 65536",
        ),
        (
            "output_limit_bytes = 100000",
            "sandbox.output_limit_bytes",
            "at most 65536",
        ),
    ] {
        let text = format!("repo_url = \"/g\"\n[sandbox]\n{line}\n");
        let e = load(&text, &env(&[])).unwrap_err().to_string();
        assert!(e.contains(key) && e.contains(range), "{line}: {e}");
    }
    let text =
        "repo_url = \"/g\"\n[sandbox]\nmemory_mb = 6\ncpus = 0.01\noutput_limit_bytes = 65536\n";
    assert!(load(text, &env(&[])).is_ok());
}

/// A word that is no level logs nothing at all (`tracing` reads it as a
/// target): refused, from the file and from `LOG_LEVEL`.
#[test]
fn a_log_level_that_is_no_level_is_refused() {
    let e = load("repo_url = \"/g\"\nlog_level = \"verbose\"\n", &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("log_level") && e.contains("\"verbose\" is no level"),
        "{e}"
    );
    let e = load("repo_url = \"/g\"\n", &env(&[("LOG_LEVEL", "warning")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("LOG_LEVEL") && e.contains("\"warning\""), "{e}");
    for ok in [
        "info",
        "DEBUG",
        "warn,dgrid_worker=trace",
        "dgrid_worker::git=debug",
    ] {
        assert!(
            load("repo_url = \"/g\"\n", &env(&[("LOG_LEVEL", ok)])).is_ok(),
            "{ok}"
        );
    }
}

/// A span too long for the clock is named where it was set: a variable
/// was blamed on the file.
#[test]
fn a_span_too_long_is_named_where_it_was_set() {
    let e = load(
        "repo_url = \"/g\"\n",
        &env(&[("PULL_INTERVAL", "99999999999999")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("PULL_INTERVAL") && e.contains("ten years"),
        "{e}"
    );
    assert!(!e.contains("worker.toml"), "{e}");
    let e = load(
        "repo_url = \"/g\"\npull_interval = 99999999999999\n",
        &env(&[]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("worker.toml") && e.contains("pull_interval"),
        "{e}"
    );
}

/// The labels a node is exclusive to, against a task's class rules.
mod exclusive;

/// A token and the transport it would travel by.
mod transport;
