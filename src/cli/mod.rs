//! The command line: `dgrid-worker <subcommand>`. Each subcommand is a thin
//! layer over the library; this module parses arguments, sets up logging and
//! turns errors into exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `println!` for what the tools print: a reader gone (`reap --dry-run |
/// head`) ends the printing, not the tool (`println!` panicked there).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub mod check;
mod generate;
pub mod tools;
pub mod trust;

use crate::config::Config;
use crate::service::{self, RunOptions};

#[derive(Debug, Parser)]
#[command(
    name = "dgrid-worker",
    version,
    about = "A worker node for D-GRID, the task grid whose database is a git repository"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the worker: claim tasks, run them in the sandbox, push results.
    Run {
        /// Configuration file [default: /etc/dgrid/worker.toml, if present]
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Exit 0 once the queue is empty and nothing of this node's is
        /// running or waiting to be pushed.
        #[arg(long)]
        drain: bool,
    },
    /// Check task files with the rules a worker applies; exit 1 if any is invalid.
    Validate(tools::ValidateArgs),
    /// Make a task and push it to a grid's queue, as a transaction.
    Submit(tools::SubmitArgs),
    /// The grid at a glance: nodes, queue, running, done, failed.
    Status(tools::StatusArgs),
    /// Requeue orphaned claims (or abandon them), as a transaction, and
    /// delete the outbox/ branches of nodes gone.
    Reap(tools::ReapArgs),
    /// Move old results from main to the archive branch, keeping the newest
    /// on main, as one atomic transaction over both branches.
    Archive(tools::ArchiveArgs),
    /// Write a static dashboard (index.html and grid.json) for a grid.
    Dashboard(tools::DashboardArgs),
    /// Create a new grid repository with the layout and workflows.
    Init(tools::InitArgs),
    /// Make a node's key pair (Ed25519, OpenSSH format): the private key
    /// 0600, the public key beside it as .pub and on stdout.
    Keygen(trust::KeygenArgs),
    /// Change the grid's signed policy: init, add-submitter, add-node, revoke.
    Trust(trust::TrustArgs),
    /// Check which results on the grid are attested by their node's
    /// signature; exit 1 if any is not.
    Verify(trust::VerifyArgs),
    /// Check that this node can run: configuration, state directory, git,
    /// the remote, the engine, the image, and that limits are enforced.
    /// Exit 0 when it can, 78 when the configuration or host must be fixed,
    /// 1 otherwise.
    Check {
        /// Configuration file [default: /etc/dgrid/worker.toml, if present]
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Fail only on what the worker would refuse to start with, and do
        /// not ask the remote: the mode of the service's ExecStartPre=.
        #[arg(long)]
        preflight: bool,
    },
    /// Write the man page or shell completions (used to build the packages).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: generate::What,
    },
}

/// Exit status for a configuration error (sysexits' EX_CONFIG), so that
/// systemd's `RestartPreventExitStatus=` can stop restarting a node that
/// cannot start until someone edits its configuration.
pub(crate) const EXIT_CONFIG: u8 = 78;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run { .. } | Command::Check { .. }) {
        // The tools talk to people and CI: warnings only, on stderr.
        // (`run` and `check` set up their own, once the config is read.)
        crate::logging::init("warn", None);
    }
    match cli.command {
        Command::Validate(a) => tools::validate(a),
        Command::Submit(a) => tools::submit(a),
        Command::Status(a) => tools::status(a),
        Command::Reap(a) => tools::reap(a),
        Command::Archive(a) => tools::archive(a),
        Command::Dashboard(a) => tools::dashboard(a),
        Command::Init(a) => tools::init(a),
        Command::Keygen(a) => trust::keygen(a),
        Command::Trust(a) => trust::trust(a),
        Command::Verify(a) => trust::verify(a),
        Command::Run { config, drain } => {
            let cfg = match Config::load(config.as_deref()) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("dgrid-worker: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            crate::logging::init(&cfg.log_level, Some(cfg.node_id.as_str()));
            match service::run(cfg, RunOptions { drain }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %crate::escape::Untrusted(&e), "worker stopped");
                    if e.is_configuration() {
                        ExitCode::from(EXIT_CONFIG)
                    } else {
                        ExitCode::FAILURE
                    }
                }
            }
        }
        Command::Check { config, preflight } => {
            ExitCode::from(check::main(config, check::CheckOptions { preflight }))
        }
        Command::Generate { what } => generate::main(what),
    }
}
