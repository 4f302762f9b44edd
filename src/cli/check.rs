//! `dgrid-worker check`: can this node run? For operators, and as the unit's
//! `ExecStartPre=`. One line per check, `ok`, `WARN` or `FAIL`, then an exit
//! code a service manager can act on:
//!
//! - 0: everything checked is fine (warnings allowed);
//! - 78 (EX_CONFIG): something only an operator can fix: the configuration
//!   (a `state_dir` that is a file too), no engine installed, limits the
//!   engine would silently ignore. The unit lists 78 in
//!   `RestartPreventExitStatus=`, so a broken node stops instead of
//!   restarting forever;
//! - 1: anything else (a state directory not writable now, git, remote,
//!   engine down, image).
//!
//! `--preflight` is the unit's mode: it fails only on what the worker itself
//! would refuse to start with, and only warns about what the worker rides out
//! by itself (remote away at boot, engine down, image missing: it waits, or
//! registers as unhealthy, which the grid can see). The remote is not asked
//! at all then: network-online at boot is not a promise, and the worker's
//! own start retries.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;
use crate::git::Git;
use crate::sandbox::{self, EngineKind, SandboxError};

mod grid;
mod line;
pub use line::{Line, Verdict, exit_code};

#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// The unit's mode: see the module documentation.
    pub preflight: bool,
}

/// Run every check that the configuration allows, printing each line as it
/// is known (a slow remote should not hide that the config was fine).
pub fn run(cfg: &Config, opts: CheckOptions, out: &mut dyn FnMut(&Line)) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut emit = |l: Line| {
        out(&l);
        lines.push(l);
    };
    let line = |verdict, what, detail: String| Line {
        verdict,
        what,
        detail,
    };

    emit(line(
        Verdict::Ok,
        "config",
        format!(
            "{} (node {}, grid {} branch {}, token {})",
            cfg.source
                .as_deref()
                .map_or("no file, environment only".to_owned(), |p| p
                    .display()
                    .to_string()),
            cfg.node_id,
            cfg.repo_url,
            cfg.branch,
            // Whether there is one, never what it is.
            if cfg.access.token.is_some() {
                "set"
            } else {
                "none"
            }
        ),
    ));

    let quiet = crate::config::budget::quiet_hours_zone(&cfg.scheduling.budget.quiet_hours);
    if let Some((detail, missing)) = quiet {
        emit(match missing {
            Some(why) => line(Verdict::Warn, "budget", format!("{detail}; {why}")),
            None => line(Verdict::Ok, "budget", detail),
        });
    }

    emit(match check_state_dir(&cfg.state_dir) {
        Ok(how) => line(
            Verdict::Ok,
            "state",
            format!("{} {how}", cfg.state_dir.display()),
        ),
        // A file where the directory should be: only an edit mends it.
        Err(_) if cfg.state_dir.exists() && !cfg.state_dir.is_dir() => line(
            Verdict::FailConfig,
            "state",
            format!(
                "`state_dir` {} is not a directory (a file of that name is there)",
                cfg.state_dir.display()
            ),
        ),
        Err(e) => line(
            Verdict::Fail,
            "state",
            format!("{}: {e}", cfg.state_dir.display()),
        ),
    });

    // git runs from a directory that surely exists: ls-remote needs no repo.
    let git = Git::new(
        &cfg.git_binary,
        std::env::temp_dir(),
        cfg.git_timeout.min(Duration::from_secs(30)),
    )
    .with_env(cfg.access.env());
    let git_ok = match git.run(&["--version"]) {
        Ok(o) => {
            emit(line(Verdict::Ok, "git", o.stdout_str().to_owned()));
            true
        }
        Err(e) => {
            emit(line(Verdict::FailConfig, "git", e.to_string()));
            false
        }
    };

    // The grid's policy, where the remote was asked and roots are pinned.
    let mut grid_policy = None;
    if opts.preflight {
        emit(line(
            Verdict::Ok,
            "remote",
            "not asked (--preflight: the worker waits for the grid itself)".into(),
        ));
    } else if git_ok {
        let head = format!("refs/heads/{}", cfg.branch);
        let remote = match git.run(&["ls-remote", "--heads", "--", &cfg.repo_url, &head]) {
            Ok(o) if o.stdout_str().is_empty() => line(
                Verdict::Fail,
                "remote",
                format!(
                    "{} answers but has no branch {}: is it a grid repository?",
                    cfg.repo_url, cfg.branch
                ),
            ),
            Ok(o) => line(
                Verdict::Ok,
                "remote",
                format!(
                    "{} {} at {}",
                    cfg.repo_url,
                    cfg.branch,
                    o.stdout_str().get(..12).unwrap_or("?")
                ),
            ),
            // One line that names the cause (authentication, not found,
            // TLS, host key, unreachable: `RemoteFailure`).
            Err(e) => line(Verdict::Fail, "remote", format!("{}: {e}", cfg.repo_url)),
        };
        let readable = remote.verdict == Verdict::Ok;
        emit(remote);
        if readable {
            emit(check_push(cfg));
            if cfg.trust.pinned.is_some() {
                grid_policy = Some(grid::read(cfg));
            }
        }
    }

    if let Some((l, held)) = check_trust(cfg, grid_policy.as_ref()) {
        emit(l);
        // Who a node enforcing the policy would reckon without, for a
        // node about to (`warn`) or already enforcing.
        let enforcing = cfg.trust.mode != crate::trust::Mode::Off;
        if let (true, Some(v), Some(Ok(read))) = (enforcing, held, &grid_policy)
            && let Some(l) = grid::peers_line(cfg, &v, &read.records)
        {
            emit(l);
        }
    }
    for l in check_sandbox(cfg, opts) {
        emit(l);
    }
    lines
}

/// May these credentials push? A read-only token reads the grid fine and
/// fails only at the worker's first push, so `check` asks: a dry-run push
/// deleting a branch that does not exist. The server checks the right to
/// push before it is told what (GitHub and git-http-backend answer the
/// receive-pack advertisement with 403, an SSH forge refuses a read-only
/// key); a dry run sends nothing.
fn check_push(cfg: &Config) -> Line {
    let verdict = |verdict, detail| Line {
        verdict,
        what: "push",
        detail,
    };
    let Ok(scratch) = tempfile::Builder::new().prefix("dgrid-check-").tempdir() else {
        return verdict(Verdict::Warn, "not asked: no temporary directory".into());
    };
    let git = Git::new(
        &cfg.git_binary,
        scratch.path(),
        cfg.git_timeout.min(Duration::from_secs(30)),
    )
    .with_env(cfg.access.env());
    let probe = ":refs/heads/dgrid-check-write-access";
    let pushed = git.run(&["init", "--quiet", "--bare"]).and_then(|_| {
        git.run(&[
            "push",
            "--dry-run",
            "--porcelain",
            "--",
            &cfg.repo_url,
            probe,
        ])
    });
    match pushed {
        Ok(_) => verdict(
            Verdict::Ok,
            "the grid accepts pushes with these credentials (dry run, nothing sent)".into(),
        ),
        Err(e) => verdict(Verdict::Fail, format!("{}: {e}", cfg.repo_url)),
    }
}

/// `[trust]`, when anything of it is set: the mode, what is pinned, the
/// policy held, the grid's policy (`grid_policy`, where it was read) as the
/// pinned roots judge it, and the node key (which `warn` and `enforce`
/// need: they sign the node's results).
fn check_trust(
    cfg: &Config,
    grid_policy: Option<&Result<grid::GridRead, String>>,
) -> Option<(Line, Option<crate::trust::Verifier>)> {
    let t = &cfg.trust;
    if t.pinned.is_none() && t.node_key.is_none() {
        return None;
    }
    let mut detail = format!("mode {}", t.mode.word());
    // The policy the node would hold (for its own key's standing).
    let mut held = None;
    if let Some(p) = &t.pinned {
        let (mut verifier, stale) = match crate::trust::Verifier::open_state(
            p.clone(),
            cfg.task_rules.clone(),
            &cfg.state_dir,
        ) {
            Ok(v) => v,
            Err(e) => {
                let line = Line {
                    verdict: Verdict::Fail,
                    what: "trust",
                    detail: format!("{detail}: {e}"),
                };
                return Some((line, None));
            }
        };
        detail.push_str(&format!(
            ", grid {}, {} root(s), {} needed",
            p.grid_id,
            p.roots.len(),
            p.threshold
        ));
        match (verifier.policy_version(), stale) {
            (Some(v), _) => detail.push_str(&format!(", holding policy version {v}")),
            (None, Some(e)) => detail.push_str(&format!(
                ", the stored policy is not used ({}: {e})",
                e.code()
            )),
            (None, None) => detail.push_str(", no policy held yet"),
        }
        // What the node would make of the grid's policy at its next sync:
        // a policy its roots do not sign means it runs nothing signed.
        match grid_policy {
            Some(Ok(grid::GridRead {
                policy: Some(file), ..
            })) => match verifier.offer_policy(file) {
                Ok(_) => detail.push_str(&format!(
                    "; the grid's policy (version {}) is signed by the roots pinned",
                    verifier.policy_version().unwrap_or_default()
                )),
                // Holding a version its roots signed, the node keeps it
                // and runs what it allows (a new version short of
                // signatures, or older than the one held, changes
                // nothing); holding none, it runs nothing signed.
                Err(e) => {
                    let refused = format!(
                        "{detail}; the grid's {} is refused ({}): {e}",
                        crate::trust::policy::POLICY_FILE,
                        e.code()
                    );
                    let held_version = verifier.policy_version();
                    let (verdict, detail) = match held_version {
                        Some(v) => (
                            Verdict::Warn,
                            format!(
                                "{refused}; this node keeps version {v} and runs what it allows"
                            ),
                        ),
                        None => (
                            Verdict::FailConfig,
                            format!(
                                "{refused}; this node would run no signed task: {}",
                                policy_advice(e.code())
                            ),
                        ),
                    };
                    let line = Line {
                        verdict,
                        what: "trust",
                        detail,
                    };
                    return Some((line, held_version.map(|_| verifier)));
                }
            },
            Some(Ok(grid::GridRead { policy: None, .. })) => detail.push_str(&format!(
                "; the grid has no {} yet",
                crate::trust::policy::POLICY_FILE
            )),
            Some(Err(e)) => detail.push_str(&format!("; the grid's policy was not read: {e}")),
            None => {}
        }
        held = Some(verifier);
    }
    let Some(path) = &t.node_key else {
        let line = Line {
            verdict: Verdict::Ok,
            what: "trust",
            detail: format!("{detail}; no node key: results go unsigned"),
        };
        return Some((line, held));
    };
    let broken = if t.mode == crate::trust::Mode::Off {
        Verdict::Warn
    } else {
        Verdict::FailConfig
    };
    let line = match crate::trust::KeySigner::open(path) {
        Ok(crate::trust::KeySigner::InProcess(k)) => {
            let key = k.public_key();
            let detail = format!(
                "{detail}; node key {} ({})",
                crate::trust::keys::fingerprint(key),
                path.display()
            );
            let standing = held
                .as_ref()
                .map(|v| v.node_key_standing(&cfg.node_id, key, crate::time::now()));
            match standing {
                // It runs, and signs results that no one attests; in
                // `enforce` it claims nothing until its key is listed.
                Some(crate::trust::KeyStanding::Problem(why)) => Line {
                    verdict: Verdict::Warn,
                    what: "trust",
                    detail: format!(
                        "{detail}: its results will not count ({why}){}: send its public key to the grid's owner for `dgrid-worker trust add-node`",
                        if cfg.trust.mode == crate::trust::Mode::Enforce {
                            ", so in `enforce` it claims nothing"
                        } else {
                            ""
                        }
                    ),
                },
                _ => Line {
                    verdict: Verdict::Ok,
                    what: "trust",
                    detail,
                },
            }
        }
        Ok(crate::trust::KeySigner::SshKeygen { .. }) => Line {
            verdict: broken,
            what: "trust",
            detail: format!(
                "{detail}; node key {}: has a passphrase, which a service cannot type",
                path.display()
            ),
        },
        Err(e) => Line {
            verdict: broken,
            what: "trust",
            detail: format!("{detail}; node key {e}"),
        },
    };
    Some((line, held))
}

/// What to do about a grid's policy refused with `code`, for a node that
/// holds none.
fn policy_advice(code: &str) -> &'static str {
    match code {
        "other-grid" | "not-signed-by-roots" | "bad-signature" => {
            "check `[trust] roots` and `grid_id`"
        }
        "too-few-signatures" => {
            "the grid's owners must sign it with as many roots as `threshold` asks"
        }
        "rolled-back" => "it is older than `min_policy_version`: check that setting",
        _ => "the grid's owner must sign a sound policy",
    }
}

/// Can the worker keep its state in `dir`? Looked at, never made: `check`
/// changes nothing on the host (under systemd, `StateDirectory=` makes it
/// before the worker starts; elsewhere the worker makes it itself).
fn check_state_dir(dir: &Path) -> std::io::Result<&'static str> {
    if dir.is_dir() {
        // Written to and synced: an empty file is made even on a full
        // filesystem, where the worker's first write then fails.
        use std::io::Write;
        let mut f = tempfile::tempfile_in(dir)?;
        f.write_all(&[0; 64 << 10])?;
        f.sync_all()?;
        return Ok("is writable");
    }
    if dir.exists() {
        return Err(std::io::Error::other("is not a directory"));
    }
    let parent = dir
        .ancestors()
        .skip(1)
        .find(|a| a.is_dir())
        .unwrap_or(Path::new("/"));
    tempfile::tempfile_in(parent)
        .map(|_| "does not exist yet; the worker will create it")
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "does not exist, and it cannot be made in {}: {e}",
                    parent.display()
                ),
            )
        })
}

fn check_sandbox(cfg: &Config, opts: CheckOptions) -> Vec<Line> {
    let s = &cfg.sandbox;
    let line = |verdict, what, detail: String| Line {
        verdict,
        what,
        detail,
    };
    let engine = match sandbox::engine_from_config(s) {
        Ok(e) => e,
        Err(e) => return vec![line(Verdict::FailConfig, "engine", e.to_string())],
    };
    let limits = format!(
        "memory {} MB, pids {}, cpus {}",
        s.limits.memory_mb, s.limits.pids, s.limits.cpus
    );
    if s.engine == EngineKind::Shell {
        return vec![
            line(
                Verdict::Warn,
                "engine",
                "shell: tasks run on this host as the worker's user, without isolation".into(),
            ),
            line(
                Verdict::Warn,
                "limits",
                format!("{limits}: not enforced by the shell engine"),
            ),
        ];
    }
    let name = engine.name().to_owned();
    match engine.check() {
        Ok(()) => vec![
            line(Verdict::Ok, "engine", format!("{name} answers")),
            line(Verdict::Ok, "image", format!("{} is present", s.image)),
            if s.allow_unenforced_limits {
                line(
                    Verdict::Warn,
                    "limits",
                    format!("{limits}: enforcement not required (sandbox.allow_unenforced_limits)"),
                )
            } else {
                line(Verdict::Ok, "limits", format!("{limits}: enforced"))
            },
        ],
        Err(e @ SandboxError::LimitsNotEnforced { .. }) => vec![
            line(Verdict::Ok, "engine", format!("{name} answers")),
            line(Verdict::FailConfig, "limits", e.to_string()),
        ],
        Err(e @ SandboxError::NoEngine) => {
            vec![line(Verdict::FailConfig, "engine", e.to_string())]
        }
        Err(e) => {
            // The worker starts anyway and reports itself unhealthy until
            // the engine recovers: in the unit's mode that is a warning.
            let verdict = if opts.preflight {
                Verdict::Warn
            } else {
                Verdict::Fail
            };
            let what = match e {
                SandboxError::ImageMissing { .. } => "image",
                _ => "engine",
            };
            vec![line(verdict, what, e.to_string())]
        }
    }
}

/// `dgrid-worker check`: load the configuration (a failure is itself the
/// first FAIL line), run the checks, print, exit.
pub fn main(config: Option<PathBuf>, opts: CheckOptions) -> u8 {
    let cfg = match Config::load(config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            let l = Line {
                verdict: Verdict::FailConfig,
                what: "config",
                detail: e.to_string(),
            };
            say(&l);
            return exit_code(&[l]);
        }
    };
    // Errors only: every warning the checks meet (the shell engine, limits
    // not enforced but allowed) is one of the lines below already, and
    // saying it twice reads as two problems.
    crate::logging::init("error", Some(cfg.node_id.as_str()));
    let lines = run(&cfg, opts, &mut say);
    exit_code(&lines)
}

/// A line to stdout; a reader gone (`check | head -1`) ends nothing but
/// the printing: `println!` panicked there.
fn say(l: &Line) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{l}");
}

#[cfg(test)]
mod tests;
