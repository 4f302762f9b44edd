//! A token never travels in clear text to another machine.

use super::{env, load};

/// A token is never sent over plain http to another machine: a tester
/// had the server get `Authorization: Basic` with it. Loopback is let be
/// (a test grid), and so is https.
#[test]
fn a_token_over_plain_http_is_refused_but_on_loopback() {
    let e = load(
        "node_id = \"n1\"\n\nrepo_url = \"http://forge.example:8081/g.git\"\n",
        &env(&[("GIT_TOKEN", "tok_secret")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("/etc/dgrid/worker.toml line 3") && e.contains("`repo_url`"),
        "{e}"
    );
    assert!(e.contains("token_file") && e.contains("clear text"), "{e}");
    assert!(!e.contains("tok_secret"), "{e}");
    let with_token = env(&[
        ("GIT_TOKEN", "tok_secret"),
        ("DGRID_REPO_URL", "http://10.1.2.3/g.git"),
    ]);
    let e = load("repo_url = \"/g\"\n", &with_token)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("DGRID_REPO_URL") && e.contains("clear text"),
        "{e}"
    );
    for ok in ["http://127.0.0.1:8081/g.git", "https://forge.example/g.git"] {
        load(
            &format!("repo_url = \"{ok}\"\n"),
            &env(&[("GIT_TOKEN", "t")]),
        )
        .unwrap();
    }
    load("repo_url = \"http://forge.example/g\"\n", &env(&[])).unwrap();
}
