//! `dgrid-worker keygen`, `dgrid-worker trust ...` and `dgrid-worker
//! verify`: a node's key, the grid's policy, and which results count.
//! Exit status as the other tools: 0 done, 1 refused or failed, 2 bad
//! arguments.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ssh_key::PublicKey;

use crate::git::txn::{self, TxnOutcome};
use crate::grid::{Id, TaskRules};
use crate::time;
use crate::tools::escape::untrusted as esc;
use crate::tools::source::RepoArgs;
use crate::tools::trust::{self as tools, PolicyEdit};
use crate::trust::keys;
use crate::trust::policy::{Kind, Pinned, Window};
use crate::trust::{KeySigner, Verifier};

/// The one way to fail: a message quoting the grid (a path, git's
/// words) is printed escaped.
fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("dgrid-worker: {}", esc(&msg.to_string()));
    ExitCode::FAILURE
}

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the private key (0600); the public key goes beside it
    /// as FILE.pub. Neither may exist.
    #[arg(long, short = 'f', value_name = "FILE", default_value_os_t = tools::default_key_path())]
    pub file: PathBuf,
    /// The public key's comment [default: dgrid-node@<host name>].
    #[arg(long, short = 'C')]
    pub comment: Option<String>,
}

pub fn keygen(a: KeygenArgs) -> ExitCode {
    let comment = a.comment.unwrap_or_else(|| {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into());
        format!("dgrid-node@{host}")
    });
    let key = keys::generate(&comment);
    match keys::write_new_pair(&a.file, &key) {
        Ok(public) => {
            eprintln!(
                "wrote {} (private, 0600) and {}",
                a.file.display(),
                public.display()
            );
            // The public key on stdout, for `trust add-node --key -`.
            say!(
                "{}",
                key.public_key().to_openssh().expect("a new key encodes")
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

#[derive(Debug, clap::Args)]
pub struct TrustArgs {
    #[command(subcommand)]
    pub what: TrustCommand,
}

/// What every policy change needs: the grid, and the root keys that sign.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// A root's private key to sign the new policy version with (repeat for
    /// several roots). A key with a passphrase is used through
    /// `ssh-keygen -Y sign`, which asks for it.
    #[arg(long, value_name = "KEY", required = true)]
    pub sign_with: Vec<PathBuf>,
    /// The grid's root public keys, if the current policy was signed by
    /// roots other than those signing now.
    #[arg(long, value_name = "FILE")]
    pub roots: Option<PathBuf>,
    /// Sign the new version with fewer roots than signed the current one
    /// (refused otherwise: nodes whose `threshold` needs more refuse it).
    #[arg(long)]
    pub fewer_signatures: bool,
}

/// A key's time window, as RFC 3339 times.
#[derive(Debug, clap::Args)]
pub struct WindowArgs {
    /// The key is valid from this time on (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub valid_after: Option<String>,
    /// The key is valid until this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub valid_before: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum TrustCommand {
    /// Write version 1 of the grid's policy (no submitters, no nodes yet),
    /// signed by the roots, and the roots' public keys in .dgrid/roots for
    /// the grid's CI.
    Init {
        #[command(flatten)]
        sign: SignArgs,
        /// The grid's id: part of every signature's namespace.
        #[arg(long, value_name = "ID")]
        grid_id: String,
    },
    /// List a submitter's public key: tasks it signs are run.
    AddSubmitter {
        #[command(flatten)]
        sign: SignArgs,
        /// The submitter's name.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// The submitter's public key (a .pub file).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[command(flatten)]
        window: WindowArgs,
    },
    /// List a node's public key: results it signs in its name count.
    AddNode {
        #[command(flatten)]
        sign: SignArgs,
        /// The node's id.
        #[arg(long, value_name = "ID")]
        node_id: String,
        /// The node's public key (the .pub file `dgrid-worker keygen` wrote).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[command(flatten)]
        window: WindowArgs,
    },
    /// Revoke a key: it leaves its list and no task or result it signs counts.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["key", "fingerprint"])))]
    Revoke {
        #[command(flatten)]
        sign: SignArgs,
        /// The public key to revoke (a .pub file).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// The fingerprint (SHA256:...) of a listed key to revoke.
        #[arg(long, value_name = "FP")]
        fingerprint: Option<String>,
        /// Why, kept in the policy.
        #[arg(long)]
        reason: Option<String>,
    },
}

fn window(w: &WindowArgs) -> Result<Window, String> {
    let t = |flag: &str, v: &Option<String>| {
        v.as_deref()
            .map(|s| {
                time::parse(s).ok_or_else(|| {
                    format!("--{flag} {s:?}: not an RFC 3339 time (2026-12-31T00:00:00Z)")
                })
            })
            .transpose()
    };
    Ok(Window {
        after: t("valid-after", &w.valid_after)?,
        before: t("valid-before", &w.valid_before)?,
    })
}

fn id(flag: &str, v: &str) -> Result<Id, String> {
    Id::parse(v).map_err(|e| format!("--{flag} {v:?}: {e}"))
}

fn public(path: &Path) -> Result<PublicKey, String> {
    keys::read_public(path).map_err(|e| e.to_string())
}

pub fn trust(a: TrustArgs) -> ExitCode {
    let (sign, edit) = match prepare(a.what) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let signers = match sign
        .sign_with
        .iter()
        .map(|p| KeySigner::open(p).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let mut roots: Vec<PublicKey> = signers.iter().map(|s| s.public_key().clone()).collect();
    if let Some(p) = &sign.roots {
        match keys::read_public_list(p) {
            Ok(k) => roots.extend(k),
            Err(e) => return fail(e),
        }
    }
    let edit = match edit {
        PolicyEdit::Init { grid_id, .. } => PolicyEdit::Init {
            grid_id,
            roots: roots.clone(),
        },
        other => other,
    };
    let mut opened = match sign.repo.open_clone_as("trust") {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    // The clone is shallow; the policy's history tells a rollback.
    match opened.repo.deepen() {
        Ok(tip) => opened.tip = tip,
        Err(e) => return fail(format_args!("{}: {e}", sign.repo.shown())),
    }
    let refs: Vec<&KeySigner> = signers.iter().collect();
    let identity = txn::Identity::for_node("trust");
    match txn::run(&opened.repo, &identity, &opened.txn_policy(), |t| {
        tools::plan(t, &edit, &refs, &roots, sign.fewer_signatures, time::now())
    }) {
        Ok(TxnOutcome::Committed {
            value: Ok(changed), ..
        }) => {
            say!("policy version {}: {}", changed.version, changed.summary);
            ExitCode::SUCCESS
        }
        Ok(TxnOutcome::Committed {
            value: Err(why), ..
        })
        | Ok(TxnOutcome::Unchanged {
            value: Err(why), ..
        }) => fail(why),
        Ok(TxnOutcome::Unchanged { value: Ok(_), .. }) => fail("nothing pushed"),
        Ok(TxnOutcome::Uncertain { error, .. }) => fail(format_args!(
            "{}: the push's answer was lost and the grid is unreachable ({error}); \
             look at {} before trying again",
            sign.repo.shown(),
            crate::trust::policy::POLICY_FILE
        )),
        Err(e) => fail(format_args!("{}: {e}", sign.repo.shown())),
    }
}

fn prepare(what: TrustCommand) -> Result<(SignArgs, PolicyEdit), String> {
    Ok(match what {
        TrustCommand::Init { sign, grid_id } => (
            sign,
            PolicyEdit::Init {
                grid_id: id("grid-id", &grid_id)?,
                roots: Vec::new(),
            },
        ),
        TrustCommand::AddSubmitter {
            sign,
            name,
            key,
            window: w,
        } => (
            sign,
            PolicyEdit::Add {
                kind: Kind::Submitter,
                name: id("name", &name)?,
                key: public(&key)?,
                window: window(&w)?,
            },
        ),
        TrustCommand::AddNode {
            sign,
            node_id,
            key,
            window: w,
        } => (
            sign,
            PolicyEdit::Add {
                kind: Kind::Node,
                name: id("node-id", &node_id)?,
                key: public(&key)?,
                window: window(&w)?,
            },
        ),
        TrustCommand::Revoke {
            sign,
            key,
            fingerprint,
            reason,
        } => {
            let edit = match (key, fingerprint) {
                (Some(k), _) => PolicyEdit::Revoke {
                    key: public(&k)?,
                    reason,
                },
                (None, Some(fp)) => PolicyEdit::RevokeFingerprint {
                    fingerprint: fp,
                    reason,
                },
                (None, None) => unreachable!("clap requires one"),
            };
            (sign, edit)
        }
    })
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The grid's id, as the workers pin it.
    #[arg(long, env = "DGRID_GRID_ID", value_name = "ID")]
    pub grid_id: String,
    /// The grid's root public keys, as the workers pin them (never taken
    /// from the grid).
    #[arg(long, value_name = "FILE")]
    pub roots: PathBuf,
    /// Root signatures the policy needs.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threshold: u64,
    /// Print one JSON object per result.
    #[arg(long)]
    pub json: bool,
    /// Result files to check (e.g. tasks/completed/n1-t1.json) [default:
    /// every file in tasks/completed and tasks/failed].
    #[arg(value_name = "PATH")]
    pub paths: Vec<String>,
}

pub fn verify(a: VerifyArgs) -> ExitCode {
    let grid_id = match id("grid-id", &a.grid_id) {
        Ok(g) => g,
        Err(e) => return fail(e),
    };
    let roots = match keys::read_public_list(&a.roots) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let opened = match a.repo.open_read_with_history() {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let Some(tip) = opened.tip.clone() else {
        return fail(format_args!("{}: the grid is empty", a.repo.shown()));
    };
    let pinned = Pinned {
        grid_id,
        roots,
        threshold: a.threshold as usize,
        min_version: 0,
    };
    let mut verifier = Verifier::new(pinned.clone(), TaskRules::default());
    let policy = match opened.repo.read_path(
        &tip,
        crate::trust::policy::POLICY_FILE,
        crate::trust::policy::MAX_POLICY_BYTES as u64,
    ) {
        Ok(crate::git::Blob::Data(p)) => p,
        Ok(crate::git::Blob::Missing) => {
            return fail(format_args!(
                "{}: has no {}",
                a.repo.shown(),
                crate::trust::policy::POLICY_FILE
            ));
        }
        Ok(unread) => {
            return fail(format_args!(
                "{}: {} {}",
                a.repo.shown(),
                crate::trust::policy::POLICY_FILE,
                unread.why_unread().unwrap_or_default()
            ));
        }
        Err(e) => return fail(format_args!("{}: {e}", a.repo.shown())),
    };
    if let Err(e) = verifier.offer_policy(&policy) {
        return fail(format_args!(
            "{}: {} {e}",
            a.repo.shown(),
            crate::trust::policy::POLICY_FILE
        ));
    }
    // A version the roots signed, put back over a newer one (a revocation
    // undone by anyone who can push): the nodes that took the newer one
    // refuse it, and so does the audit. Checked by it, a revoked key's
    // results read as attested.
    match crate::tools::trust::rolled_back(&opened.repo, &tip, &pinned, &policy) {
        Ok(None) => {}
        Ok(Some(why)) => return fail(format_args!("{}: {why}", a.repo.shown())),
        Err(e) => return fail(format_args!("{}: {e}", a.repo.shown())),
    }
    let checks = match crate::tools::verify::verify_results(
        &opened.repo,
        &tip,
        &verifier,
        &a.paths,
        time::now(),
    ) {
        Ok(c) => c,
        Err(e) => return fail(format_args!("{}: {e}", a.repo.shown())),
    };
    let never_ran = checks
        .iter()
        .filter(|c| c.code == Some(crate::tools::verify::NEVER_RAN))
        .count();
    let unattested = checks.iter().filter(|c| c.attested_by.is_none()).count() - never_ran;
    for c in &checks {
        if a.json {
            say!("{}", serde_json::to_string(c).expect("checks serialise"));
        } else {
            match (&c.attested_by, &c.error) {
                (Some(node), _) => say!(
                    "{}: attested by node {}{}",
                    esc(&c.path),
                    esc(node),
                    match c.task_signed {
                        Some(false) => crate::tools::attest::unsigned_note(c.task_signed),
                        _ => crate::tools::attest::not_taken_note(c.task_not_taken),
                    }
                ),
                (None, Some(e)) if c.code == Some(crate::tools::verify::NEVER_RAN) => {
                    say!("{}: {}", esc(&c.path), esc(e))
                }
                (None, Some(e)) => say!(
                    "{}: not attested ({}): {}",
                    esc(&c.path),
                    c.code.unwrap_or("error"),
                    esc(e)
                ),
                (None, None) => {}
            }
        }
    }
    eprintln!(
        "{} results: {} attested, {unattested} not; {never_ran} of tasks that never ran",
        checks.len(),
        checks.len() - unattested - never_ran
    );
    if unattested == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
