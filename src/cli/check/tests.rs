use super::*;
use crate::config::NoEnv;

fn cfg(extra: &str, state: &Path, url: &str) -> Config {
    let text = format!(
        "node_id = \"n1\"\nrepo_url = \"{url}\"\nstate_dir = \"{}\"\n{extra}",
        state.display()
    );
    Config::from_str_with(&text, Path::new("/t/worker.toml"), &NoEnv).unwrap()
}

fn verdicts(lines: &[Line]) -> Vec<(&'static str, Verdict)> {
    lines.iter().map(|l| (l.what, l.verdict)).collect()
}

#[test]
fn shell_engine_warns_and_a_missing_remote_fails() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/nowhere.git", dir.path().display());
    let c = cfg(
        "[sandbox]\nengine = \"shell\"\n",
        &dir.path().join("s"),
        &url,
    );
    let lines = run(&c, CheckOptions::default(), &mut |_| {});
    assert_eq!(
        verdicts(&lines),
        [
            ("config", Verdict::Ok),
            ("state", Verdict::Ok),
            ("git", Verdict::Ok),
            ("remote", Verdict::Fail),
            ("engine", Verdict::Warn),
            ("limits", Verdict::Warn),
        ]
    );
    assert_eq!(exit_code(&lines), 1);
    // Preflight does not ask the remote, so the same node passes.
    let lines = run(&c, CheckOptions { preflight: true }, &mut |_| {});
    assert_eq!(exit_code(&lines), 0, "{lines:?}");
}

#[test]
fn check_does_not_make_the_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("not").join("yet");
    let c = cfg("[sandbox]\nengine = \"shell\"\n", &state, "/srv/g.git");
    let lines = run(&c, CheckOptions { preflight: true }, &mut |_| {});
    assert_eq!(lines[1].verdict, Verdict::Ok, "{lines:?}");
    assert!(lines[1].detail.contains("will create it"), "{lines:?}");
    assert!(!dir.path().join("not").exists());
    std::fs::write(dir.path().join("file"), "").unwrap();
    let c = cfg(
        "[sandbox]\nengine = \"shell\"\n",
        &dir.path().join("file"),
        "/srv/g.git",
    );
    let lines = run(&c, CheckOptions { preflight: true }, &mut |_| {});
    // A file where the directory should be: only an edit mends it.
    assert_eq!(lines[1].verdict, Verdict::FailConfig, "{lines:?}");
    assert!(lines[1].detail.contains("`state_dir`"), "{lines:?}");
}

#[test]
fn an_unusable_git_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(
        "[sandbox]\nengine = \"shell\"\n[git]\nbinary = \"/nonexistent/git\"\n",
        dir.path(),
        "/srv/grid.git",
    );
    let lines = run(&c, CheckOptions { preflight: true }, &mut |_| {});
    assert_eq!(exit_code(&lines), 78, "{lines:?}");
}

#[test]
fn a_node_key_that_cannot_sign_stops_a_checking_node() {
    let dir = tempfile::tempdir().unwrap();
    let root = crate::trust::keys::generate("root");
    let root = root.public_key().to_openssh().unwrap();
    let key = dir.path().join("node-key");
    crate::trust::keys::write_new_pair(&key, &crate::trust::keys::generate("n1")).unwrap();
    let trust = |mode: &str, key: &Path| {
        format!(
            "[sandbox]\nengine = \"shell\"\n[trust]\nmode = \"{mode}\"\ngrid_id = \"g7\"\nroots = [\"{root}\"]\nnode_key = \"{}\"\n",
            key.display()
        )
    };
    let c = cfg(&trust("enforce", &key), &dir.path().join("s"), "/srv/g.git");
    let lines = run(&c, CheckOptions { preflight: true }, &mut |_| {});
    let l = lines.iter().find(|l| l.what == "trust").unwrap();
    assert_eq!(l.verdict, Verdict::Ok, "{l}");
    assert!(
        l.detail.contains(
            "mode enforce, grid g7, 1 root(s), 1 needed, no policy held yet; node key SHA256:"
        ),
        "{l}"
    );
    let missing = dir.path().join("nowhere");
    let c = cfg(
        &trust("enforce", &missing),
        &dir.path().join("s"),
        "/srv/g.git",
    );
    let lines = run(&c, CheckOptions { preflight: true }, &mut |_| {});
    assert_eq!(exit_code(&lines), 78, "{lines:?}");
    // In `off` the node still runs, its results unsigned.
    let c = cfg(&trust("off", &missing), &dir.path().join("s"), "/srv/g.git");
    let lines = run(&c, CheckOptions { preflight: true }, &mut |_| {});
    assert_eq!(exit_code(&lines), 0, "{lines:?}");
}

#[test]
fn the_token_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg("[sandbox]\nengine = \"shell\"\n", dir.path(), "/srv/g.git");
    c.access.token = Some(crate::git::auth::Secret::new("s3cr3t-t0k3n"));
    let lines = run(&c, CheckOptions { preflight: true }, &mut |_| {});
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    assert!(
        text.contains("token set") && !text.contains("s3cr3t"),
        "{text}"
    );
}
