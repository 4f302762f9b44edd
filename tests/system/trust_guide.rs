//! docs/trust.md, "Setting it up, end to end": every block marked
//! `<!-- trust-steps: ROLE -->` runs as written, in order, against a real
//! bare repository, and the task Alice submits ends attested by node n1.
//!
//! What the test provides is what the text takes for granted:
//! - each role (owner, alice, volunteer) has a home directory with
//!   `~/.ssh`, and runs its blocks there; the files the text says are sent
//!   (`alice.pub`, `g7-root.pub`, `n1.pub`) are copied from one to the other;
//! - passphrases are typed through `SSH_ASKPASS` (as a desktop would);
//! - the volunteer's machine has the package's `/etc/dgrid` with its
//!   `worker.toml` edited (repo_url, node_id n1, the shell engine). So
//!   that no file of this host's `/etc` is touched, every block runs in a
//!   private mount namespace (`unshare`, `nsenter`) whose `/etc` is an
//!   overlay over the host's;
//! - `systemctl restart dgrid-worker` does what the unit does: its
//!   `LoadCredential=node-key:/etc/dgrid/node-key` (a private copy of the
//!   key in `$CREDENTIALS_DIRECTORY`), `ExecStartPre=dgrid-worker check
//!   --preflight` and `ExecStart=dgrid-worker run`. The unit itself is
//!   tested under systemd by scripts/lib/system-test.
//!
//! Needs root, util-linux (`unshare`, `nsenter`), overlayfs and ssh-keygen;
//! a missing one fails the test.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::common::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The marked blocks of docs/trust.md's "Setting it up, end to end": (role,
/// script).
fn steps() -> Vec<(String, String)> {
    let guide = std::fs::read_to_string(Path::new(ROOT).join("docs/trust.md")).unwrap();
    let start = guide
        .find("## Setting it up, end to end")
        .expect("docs/trust.md has the steps");
    let section = &guide[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut out = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        let Some(role) = line
            .strip_prefix("<!-- trust-steps: ")
            .and_then(|r| r.strip_suffix(" -->"))
        else {
            continue;
        };
        assert_eq!(lines.next(), Some("```sh"), "a marked block is sh");
        let script: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        out.push((role.to_owned(), script.join("\n") + "\n"));
    }
    out
}

/// A private mount namespace whose `/etc` is an overlay over the host's,
/// with an empty `/etc/dgrid`: alive while this value is.
struct Namespace {
    holder: Child,
}

impl Namespace {
    fn new(dir: &Path) -> Namespace {
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        let script = format!(
            "set -e; mount -t overlay overlay -o lowerdir=/etc,upperdir={},workdir={} /etc; \
             rm -rf /etc/dgrid; mkdir -m 755 /etc/dgrid; echo ready; exec sleep 3600",
            upper.display(),
            work.display()
        );
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("unshare (util-linux) is required");
        let mut first = String::new();
        BufReader::new(holder.stdout.as_mut().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert_eq!(
            first.trim(),
            "ready",
            "a private /etc needs root and overlayfs"
        );
        Namespace { holder }
    }

    /// `bash -e` running `script` in the namespace, in `dir`, with `env`.
    fn run(&self, dir: &Path, env: &[(&str, String)], script: &str) -> Output {
        let mut cmd = Command::new("nsenter");
        // nsenter starts in the namespace's root directory unless told.
        cmd.args(["-t", &self.holder.id().to_string(), "-m"])
            .arg(format!("--wd={}", dir.display()))
            .args([
                "--",
                "bash",
                "--noprofile",
                "--norc",
                "-e",
                "-o",
                "pipefail",
                "-c",
            ])
            .arg(script)
            .current_dir(dir)
            .env_clear();
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).output().expect("nsenter runs")
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_trust_guide_steps_run_as_written() {
    let steps = steps();
    let roles: Vec<&str> = steps.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        roles,
        [
            "owner",
            "alice",
            "owner",
            "volunteer",
            "owner",
            "volunteer",
            "alice",
            "owner"
        ],
        "the steps this test knows how to hand files between"
    );

    let grid = Grid::new();
    let t = grid.root.path().to_owned();
    let home = |role: &str| t.join("home").join(role);
    for role in ["owner", "alice", "volunteer"] {
        std::fs::create_dir_all(home(role).join(".ssh")).unwrap();
    }
    let askpass = t.join("askpass");
    write_script(&askpass, "#!/bin/sh\necho 'correct horse battery staple'\n");
    // What the unit does on `systemctl restart dgrid-worker`.
    let bin = t.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let (creds, log, pid) = (
        t.join("credentials"),
        t.join("worker.log"),
        t.join("worker.pid"),
    );
    write_script(
        &bin.join("systemctl"),
        &format!(
            "#!/bin/sh\nset -e\n[ \"$*\" = 'restart dgrid-worker' ] || {{ echo \"systemctl: not for this test: $*\" >&2; exit 1; }}\n\
             if [ -f {pid} ]; then kill \"$(cat {pid})\" 2>/dev/null || true; fi\n\
             mkdir -p -m 700 {creds}\ninstall -m 400 /etc/dgrid/node-key {creds}/node-key\n\
             export CREDENTIALS_DIRECTORY={creds}\n\
             dgrid-worker check --preflight >{log} 2>&1\n\
             dgrid-worker run >>{log} 2>&1 </dev/null &\necho $! >{pid}\n",
            pid = pid.display(),
            creds = creds.display(),
            log = log.display(),
        ),
    );
    let ns = Namespace::new(&t.join("etc-overlay"));
    // The package is installed and its worker.toml edited (README,
    // "Install, configure, start"): the grid, the node's name, and (for
    // this test) the shell engine.
    let state = t.join("state");
    let shipped = std::fs::read_to_string(Path::new(ROOT).join("packaging/worker.toml")).unwrap();
    assert!(shipped.contains("\n#engine = \"auto\"\n"));
    let config = format!(
        "repo_url = \"{}\"\nnode_id = \"n1\"\nstate_dir = \"{}\"\npull_interval = 1\n{}",
        grid.url(),
        state.display(),
        shipped.replace("\n#engine = \"auto\"\n", "\nengine = \"shell\"\n")
    );
    let bin_dir = Path::new(BIN).parent().unwrap().to_owned();
    let path = format!(
        "{}:{}:{}",
        bin.display(),
        bin_dir.display(),
        std::env::var("PATH").unwrap()
    );
    let env = |role: &str| {
        vec![
            ("HOME", home(role).display().to_string()),
            ("PATH", path.clone()),
            ("GRID", grid.url()),
            ("SSH_ASKPASS", askpass.display().to_string()),
            ("SSH_ASKPASS_REQUIRE", "force".to_owned()),
            ("LOG_LEVEL", "debug".to_owned()),
        ]
    };
    let setup = ns.run(
        &t,
        &env("volunteer"),
        &format!("cat > /etc/dgrid/worker.toml <<'END'\n{config}END\n"),
    );
    assert!(setup.status.success(), "{}", text(&setup));

    // Files handed from one role to another, as the text says.
    let sends: [(&str, &str, &str, &str); 3] = [
        ("alice", "alice.pub", "owner", "alice.pub"),
        ("owner", ".ssh/g7-root.pub", "volunteer", "g7-root.pub"),
        ("volunteer", "n1.pub", "owner", "n1.pub"),
    ];
    let mut outputs = Vec::new();
    for (i, (role, script)) in steps.iter().enumerate() {
        if i == steps.len() - 1 {
            // The last step checks what the node did with Alice's task.
            wait_until("n1's result of hello", Duration::from_secs(120), || {
                grid.files("tasks/completed").contains_key("n1@hello.json")
            });
        }
        let out = ns.run(&home(role), &env(role), script);
        assert!(
            out.status.success(),
            "step {} ({role}) failed:\n{script}\n{}\nworker log:\n{}",
            i + 1,
            text(&out),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        for (from, file, to, name) in sends {
            let (src, dst) = (home(from).join(file), home(to).join(name));
            if src.exists() && !dst.exists() {
                std::fs::copy(&src, &dst).unwrap();
            }
        }
        outputs.push(text(&out));
    }
    let worker = std::fs::read_to_string(&log).unwrap();
    if let Ok(p) = std::fs::read_to_string(&pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p.trim().parse().unwrap()),
            nix::sys::signal::Signal::SIGTERM,
        );
    }

    // The volunteer's check saw the pinned root and the node key.
    assert!(
        outputs[5].contains("trust    mode enforce, grid g7, 1 root(s), 1 needed")
            && outputs[5].contains("node key SHA256:"),
        "{}",
        outputs[5]
    );
    // The node ran Alice's task and signed its result; anyone can tell.
    assert!(
        worker.contains("this node's key is in the policy: its results count"),
        "{worker}"
    );
    let last = &outputs[7];
    assert!(
        last.contains("tasks/completed/n1@hello.json: attested by node n1")
            && last.contains("1 results: 1 attested, 0 not")
            && last
                .contains("of the 1 latest results and failures: 1 attested, 0 not, 0 unchecked"),
        "{last}"
    );
    let result = &grid.json_files("tasks/completed")["n1@hello.json"];
    assert_eq!(result["stdout"], "hello\n");
    // The root key has a passphrase: it was never written in the clear.
    assert!(
        dgrid_worker::trust::keys::read_private(&home("owner").join(".ssh/g7-root"))
            .unwrap()
            .is_encrypted()
    );
}
