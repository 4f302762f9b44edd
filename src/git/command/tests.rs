use super::*;

/// A lock file's path is in git's first line, and five lines of advice
/// follow: the summary keeps the path (a fault sweep found it cut).
#[test]
fn a_summary_keeps_the_cause_before_the_advice() {
    let stderr = b"fatal: Unable to create '/s/grid.git/config.lock': File exists.\n\nAnother git process seems to be running in this repository, e.g.\nan editor opened by 'git commit'. Please make sure all processes\nare terminated then try again. If it still fails, a git process\nmay have crashed in this repository earlier:\nremove the file manually to continue.\n";
    let s = summarize(stderr);
    assert!(
        s.starts_with("fatal: Unable to create '/s/grid.git/config.lock'"),
        "{s}"
    );
    assert!(s.ends_with("remove the file manually to continue."), "{s}");
    assert_eq!(summarize(b"error: one\ntwo\n"), "error: one / two");
}

fn git(timeout: Duration) -> Git {
    Git::new("git", std::env::temp_dir(), timeout)
}

/// The token goes to the children that may reach the server; the kept
/// readers of the local clone, which live for a whole sync, get none
/// (a sweep found it in every `cat-file` process's environment).
#[test]
fn the_local_readers_are_given_no_credential() {
    let env = Git::new("env", std::env::temp_dir(), Duration::from_secs(10)).with_env(vec![
        ("DGRID_GIT_TOKEN".into(), "s3cret-tok".into()),
        (
            "GIT_CONFIG_VALUE_0".into(),
            "Authorization: Basic czNjcmV0".into(),
        ),
    ]);
    let networked = env.run(&[]).unwrap();
    assert!(
        networked
            .stdout_str()
            .contains("DGRID_GIT_TOKEN=s3cret-tok")
    );
    let mut reader = env.spawn_piped(&[]).unwrap();
    drop(reader.stdin.take());
    let out = reader.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("LC_ALL=C"), "{text}");
    assert!(
        !text.contains("s3cret") && !text.contains("czNjcmV0"),
        "{text}"
    );
}

#[test]
fn a_capped_run_reads_no_more_than_its_cap() {
    let (out, more) = git(Duration::from_secs(30))
        .run_capped(&["--version"], 7)
        .unwrap();
    assert_eq!(out.stdout, b"git ver");
    assert!(more);
    let (out, more) = git(Duration::from_secs(30))
        .run_capped(&["--version"], 1000)
        .unwrap();
    assert!(out.stdout_str().starts_with("git version"), "{out:?}");
    assert!(!more);
    let failed = git(Duration::from_secs(30)).run_capped(&["no-such-command"], 1000);
    assert!(matches!(failed, Err(GitError::Failed { .. })), "{failed:?}");
}

#[test]
fn a_capped_run_stops_at_the_timeout() {
    // A server that accepts and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("git://{}/grid.git", listener.local_addr().unwrap());
    let started = Instant::now();
    let hung = git(Duration::from_secs(1)).run_capped(&["ls-remote", &url], 1000);
    assert!(matches!(hung, Err(GitError::Timeout { .. })), "{hung:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    drop(listener);
}

/// TLS verification is on in every git child, whatever the environment
/// and the user's configuration say: `GIT_SSL_NO_VERIFY` is not passed
/// on, and `http.sslVerify=true` comes last, after the credentials'
/// entries (a tester had `check` say `ok remote` against a self-signed
/// forge with either).
#[test]
fn tls_verification_is_forced_on_in_every_child() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join(".gitconfig"),
        "[http]\n\tsslVerify = false\n",
    )
    .unwrap();
    let home_env = vec![
        ("HOME".to_owned(), home.path().display().to_string()),
        (
            "XDG_CONFIG_HOME".to_owned(),
            home.path().display().to_string(),
        ),
        ("GIT_CONFIG_NOSYSTEM".to_owned(), "1".to_owned()),
        ("GIT_SSL_NO_VERIFY".to_owned(), "1".to_owned()),
        (
            "GIT_CONFIG_PARAMETERS".to_owned(),
            "'http.sslverify'='false'".to_owned(),
        ),
    ];
    let token = crate::git::auth::credential_env(Some(&crate::git::auth::Secret::new("tok")), None);
    for with_token in [false, true] {
        let mut env = home_env.clone();
        if with_token {
            env.extend(token.clone());
        }
        let git = Git::new("git", home.path(), Duration::from_secs(30)).with_env(env);
        // The user's setting is there, and loses.
        let user = git
            .run(&["config", "--global", "--get", "http.sslVerify"])
            .unwrap();
        assert_eq!(user.stdout_str(), "false");
        let all = git.run(&["config", "--get-all", "http.sslVerify"]).unwrap();
        assert_eq!(all.stdout_str().lines().last(), Some("true"), "{all:?}");
        let effective = git
            .run(&["config", "--type=bool", "--get", "http.sslVerify"])
            .unwrap();
        assert_eq!(effective.stdout_str(), "true");
        if with_token {
            let header = git
                .run(&["config", "--get-all", "http.extraHeader"])
                .unwrap();
            assert!(
                header.stdout_str().contains("Authorization: Basic"),
                "{header:?}"
            );
        }
        let env = Git::new("env", home.path(), Duration::from_secs(10))
            .with_env(git.env.clone())
            .run(&[])
            .unwrap();
        let text = env.stdout_str();
        assert!(!text.contains("GIT_SSL_NO_VERIFY"), "{text}");
        assert!(!text.contains("GIT_CONFIG_PARAMETERS"), "{text}");
    }
    // The kept local readers too.
    let mut reader = Git::new("git", home.path(), Duration::from_secs(10))
        .with_env(home_env)
        .spawn_piped(&["config", "--type=bool", "--get", "http.sslVerify"])
        .unwrap();
    drop(reader.stdin.take());
    let out = reader.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "true");
}
