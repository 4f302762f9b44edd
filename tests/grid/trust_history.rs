//! The policy tools against what a pusher with plain git access can do to
//! `.dgrid/policy.json`: put an older root-signed version back, or delete
//! it. Nodes refuse whatever is built on that, and a version built on an
//! older one would bring back what the owner had revoked; so the tools
//! read the policy's history on the branch (through their shallow clone,
//! deepened) and refuse, saying how to restore the newest version. And
//! what no policy can do: revoke a root (each node pins its roots), or be
//! signed by fewer roots than the nodes' threshold may need.

use serde_json::Value;

use crate::common::*;
use crate::tools_fixture::*;
use crate::trust::TrustGrid;

fn tip(t: &TrustGrid) -> String {
    let out = git(&t.grid.bare, &["rev-parse", "main"]).stdout;
    String::from_utf8(out).unwrap().trim().to_owned()
}

fn policy_on_main(t: &TrustGrid) -> Value {
    serde_json::from_slice(&t.grid_file(".dgrid/policy.json")).unwrap()
}

/// What the refusals tell the owner to run, in a clone of the grid.
fn restore(t: &TrustGrid, commit: &str) {
    t.grid.commit_with("restore the policy", |work| {
        git(work, &["checkout", commit, "--", ".dgrid"]);
    });
}

/// The owner's routine change: list node n3 (its key made here).
fn add_n3(t: &TrustGrid) -> std::process::Output {
    if !std::path::Path::new(&t.key("n3.pub")).exists() {
        expect_code(&dgrid(&["keygen", "-f", &t.key("n3"), "-C", "n3"]), 0);
    }
    t.try_tool(
        &[
            "trust",
            "add-node",
            "--node-id",
            "n3",
            "--key",
            &t.key("n3.pub"),
        ],
        "root",
    )
}

#[test]
fn a_policy_rolled_back_by_a_pusher_is_never_built_on() {
    let t = TrustGrid::new();
    t.tool(&[
        "trust",
        "add-submitter",
        "--name",
        "mallory",
        "--key",
        &t.key("mallory.pub"),
    ]);
    let v5 = t.grid_file(".dgrid/policy.json");
    t.tool(&[
        "trust",
        "revoke",
        "--key",
        &t.key("mallory.pub"),
        "--reason",
        "leaked",
    ]);
    let v6_at = tip(&t);
    // A pusher, holding no key, puts the genuine version 5 back.
    t.grid
        .commit_files(&[(".dgrid/policy.json".into(), v5)], "back to v5");
    let rolled_at = tip(&t);
    let out = add_n3(&t);
    expect_refused(&out, "version 5");
    for said in [
        format!("(commit {rolled_at}) is older than version 6"),
        format!("at commit {v6_at} (rolled-back)"),
        format!("`git checkout {v6_at} -- .dgrid`"),
    ] {
        assert!(stderr(&out).contains(&said), "{said}: {}", stderr(&out));
    }
    assert_eq!(tip(&t), rolled_at, "nothing pushed");
    // `status` and the dashboard check by version 6, as the nodes that
    // took it do, and say why the tip's is not used.
    let roots = t.key("root.pub");
    let bare = t.grid.bare.to_str().unwrap();
    let said = format!(
        ".dgrid/policy.json (rolled-back): version 5 is older than version 6 that the roots signed; checked against version 6 (commit {v6_at})"
    );
    let status = dgrid(&["status", "--repo", bare, "--roots", &roots]);
    expect_code(&status, 0);
    let text = stdout(&status);
    assert!(
        text.contains("trust: policy version 6 of grid g7")
            && text.contains(&format!("the grid's newest policy is refused: {said}")),
        "{text}"
    );
    let json = dgrid(&["status", "--repo", bare, "--roots", &roots, "--json"]);
    let json: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["trust"]["policy_version"], 6, "{json}");
    let site = t.grid.path("site");
    let out = site.to_str().unwrap();
    let dash = dgrid(&["dashboard", "--repo", bare, "--roots", &roots, "--out", out]);
    expect_code(&dash, 0);
    let html = std::fs::read_to_string(site.join("index.html")).unwrap();
    assert!(
        html.contains("The grid's newest policy is refused: .dgrid/policy.json (rolled-back)")
            && html.contains("Results checked against policy version 6"),
        "{html}"
    );

    // The audit and the pull request's check stop with the refusal: by
    // version 5, mallory's key (revoked in 6) signs tasks and results
    // that pass.
    for out in [
        dgrid(&[
            "verify",
            "--repo",
            bare,
            "--grid-id",
            "g7",
            "--roots",
            &roots,
        ]),
        dgrid(&[
            "validate",
            "--grid",
            t.checkout().to_str().unwrap(),
            "--verify",
            "--trust-ref",
            "origin/main",
            t.grid.path("co/tasks/queue").to_str().unwrap(),
        ]),
    ] {
        assert!(!out.status.success(), "{}", stdout(&out));
        assert!(
            stderr(&out).contains("version 5 (commit")
                && stderr(&out).contains(&format!("is older than version 6 that the roots signed and the branch held at commit {v6_at} (rolled-back)")),
            "{}",
            stderr(&out)
        );
    }

    // Done as it says, the owner's change builds on version 6: mallory
    // stays revoked.
    restore(&t, &v6_at);
    let out = add_n3(&t);
    expect_code(&out, 0);
    assert!(
        stdout(&out).contains("policy version 7: add node n3"),
        "{}",
        stdout(&out)
    );
    let policy = policy_on_main(&t);
    assert_eq!(policy["version"], 7);
    assert_eq!(policy["revoked"].as_array().unwrap().len(), 1, "{policy}");
    assert!(
        !policy["submitters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "mallory"),
        "{policy}"
    );
}

#[test]
fn a_deleted_policy_is_restored_not_started_again() {
    let t = TrustGrid::new();
    let v4_at = tip(&t);
    t.grid.commit_with("a pusher deletes .dgrid", |work| {
        std::fs::remove_dir_all(work.join(".dgrid")).unwrap();
    });
    let deleted_at = tip(&t);
    let init = t.try_tool(&["trust", "init", "--grid-id", "g7"], "root");
    for out in [&add_n3(&t), &init] {
        expect_refused(out, "the grid has no .dgrid/policy.json, but it had one");
        for said in [
            format!("commit {deleted_at} deleted it"),
            format!("version 4, signed by the roots, is at commit {v4_at}"),
            "nodes holding version 4 refuse (rolled-back)".to_owned(),
            format!("`git checkout {v4_at} -- .dgrid`"),
        ] {
            assert!(stderr(out).contains(&said), "{said}: {}", stderr(out));
        }
    }
    assert_eq!(tip(&t), deleted_at, "nothing pushed");
    restore(&t, &v4_at);
    let out = add_n3(&t);
    expect_code(&out, 0);
    assert_eq!(policy_on_main(&t)["version"], 5);
}

#[test]
fn a_root_is_not_revoked_in_the_policy() {
    let t = TrustGrid::new();
    let before = tip(&t);
    let out = t.try_tool(
        &[
            "trust",
            "revoke",
            "--key",
            &t.key("root.pub"),
            "--reason",
            "leaked",
        ],
        "root",
    );
    expect_refused(&out, "is a root of the grid");
    assert!(
        stderr(&out).contains("`[trust] roots`") && stderr(&out).contains("on every node"),
        "{}",
        stderr(&out)
    );
    assert_eq!(tip(&t), before, "nothing pushed");
}

#[test]
fn a_version_signed_by_fewer_roots_than_the_last_needs_a_flag() {
    let grid = Grid::new();
    let key = |n: &str| grid.path(n).display().to_string();
    for n in ["r1", "r2", "alice", "bob"] {
        expect_code(&dgrid(&["keygen", "-f", &key(n), "-C", n]), 0);
    }
    let url = grid.url();
    let tool = |args: &[&str], signers: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--repo".into(), url.clone()]);
        for s in signers {
            all.extend(["--sign-with".into(), key(s)]);
        }
        dgrid(&all.iter().map(String::as_str).collect::<Vec<_>>())
    };
    expect_code(
        &tool(&["trust", "init", "--grid-id", "g7"], &["r1", "r2"]),
        0,
    );
    let alice = [
        "trust",
        "add-submitter",
        "--name",
        "alice",
        "--key",
        &key("alice.pub"),
    ];
    let out = tool(&alice, &["r1"]);
    expect_refused(
        &out,
        "version 1 carries 2 root signatures, and the new version would carry 1",
    );
    assert!(
        stderr(&out).contains("--fewer-signatures"),
        "{}",
        stderr(&out)
    );
    // Signed by both, it goes; the owner who means it says so.
    expect_code(&tool(&alice, &["r1", "r2"]), 0);
    let mut bob = vec!["trust", "add-submitter", "--name", "bob", "--key"];
    let bob_key = key("bob.pub");
    bob.extend([bob_key.as_str(), "--fewer-signatures"]);
    let out = tool(&bob, &["r2"]);
    expect_code(&out, 0);
    assert!(
        stdout(&out).contains("policy version 3"),
        "{}",
        stdout(&out)
    );
    // Nodes that pin both roots and a threshold of two keep version 2;
    // `status` pinned so checks by it too.
    let roots = grid.path("roots");
    let both = [key("r1.pub"), key("r2.pub")].map(|k| std::fs::read_to_string(k).unwrap());
    std::fs::write(&roots, both.concat()).unwrap();
    let roots = roots.to_str().unwrap();
    let status = dgrid(&[
        "status",
        "--repo",
        &url,
        "--roots",
        roots,
        "--threshold",
        "2",
    ]);
    expect_code(&status, 0);
    let text = stdout(&status);
    assert!(
        text.contains("trust: policy version 2 of grid g7")
            && text.contains("the grid's newest policy is refused: .dgrid/policy.json (too-few-signatures): is signed by 1 pinned root(s); 2 are required; checked against version 2 (commit "),
        "{text}"
    );
}

#[test]
fn a_merge_does_not_hide_the_newest_version() {
    let t = TrustGrid::new();
    let v4_at = tip(&t);
    // A merge of version 3's commit with the tip, keeping version 3's
    // tree: a plain `git log -- .dgrid/policy.json` follows the side that
    // kept the file as it is, and never sees version 4.
    t.grid.commit_with("merge, keeping version 3", |work| {
        git(work, &["checkout", "--quiet", "--detach", "main~1"]);
        git(
            work,
            &["merge", "--quiet", "-s", "ours", "main", "-m", "merge"],
        );
    });
    assert_eq!(policy_on_main(&t)["version"], 3);
    let out = add_n3(&t);
    expect_refused(&out, "is older than version 4");
    assert!(
        stderr(&out).contains(&format!("`git checkout {v4_at} -- .dgrid`")),
        "{}",
        stderr(&out)
    );
}

/// A pusher's junk at the policy's path (not JSON, no grid id, or the file
/// gone): nodes keep the version they hold, and `status` checks the
/// results against the newest the roots signed, saying why, rather than
/// checking nothing.
#[test]
fn status_checks_by_the_newest_signed_policy_when_the_tips_is_junk_or_gone() {
    let t = TrustGrid::new();
    let v = policy_on_main(&t)["version"].clone();
    let signed_at = tip(&t);
    let roots = t.key("root.pub");
    let bare = t.grid.bare.to_str().unwrap().to_owned();
    let status = || {
        let out = dgrid(&["status", "--repo", &bare, "--roots", &roots]);
        expect_code(&out, 0);
        stdout(&out)
    };
    t.grid.commit_files(
        &[(
            ".dgrid/policy.json".into(),
            b"{\"version\": 8, \"x\": ".to_vec(),
        )],
        "junk at the policy's path",
    );
    let text = status();
    let checked = format!("checked against version {v} (commit {signed_at})");
    assert!(
        text.contains(&format!("trust: policy version {v} of grid g7"))
            && text.contains("the grid's newest policy is refused: .dgrid/policy.json (")
            && text.contains(&checked),
        "{text}"
    );
    t.grid.commit_with("the policy deleted", |work| {
        std::fs::remove_file(work.join(".dgrid/policy.json")).unwrap();
    });
    let text = status();
    assert!(
        text.contains(&format!("trust: policy version {v} of grid g7")) && text.contains(&checked),
        "{text}"
    );
}
