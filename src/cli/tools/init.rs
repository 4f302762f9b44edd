//! `dgrid-worker init`: a new grid repository, with its layout and
//! workflows.

use std::path::PathBuf;
use std::process::ExitCode;

use super::fail;
use crate::tools::init;

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The new grid's directory (must not exist, or be empty).
    pub dir: PathBuf,
    /// Where the grid's workflows build dgrid-worker from.
    #[arg(long, value_name = "URL", default_value = init::DEFAULT_WORKER_GIT)]
    pub worker_git: String,
    /// The branch or tag of --worker-git to build.
    #[arg(long, value_name = "REF", default_value = init::DEFAULT_WORKER_REF)]
    pub worker_ref: String,
    /// Make a bare repository (to serve, or to push to GitHub from).
    #[arg(long)]
    pub bare: bool,
}

pub fn init(a: InitArgs) -> ExitCode {
    let a_worker_git = a.worker_git.clone();
    let opts = init::InitOptions {
        worker_git: a.worker_git,
        worker_ref: a.worker_ref,
        bare: a.bare,
    };
    match init::init(&a.dir, &opts) {
        Ok(()) => {
            eprintln!("new grid in {}", a.dir.display());
            // The workflows would build from a placeholder, and fail at
            // their first step, until the owner says where from.
            if a_worker_git == init::DEFAULT_WORKER_GIT {
                eprintln!(
                    "dgrid-worker: warning: the grid's workflows build dgrid-worker from {}, a placeholder: set the repository variable DGRID_WORKER_GIT on the forge, or run init again with --worker-git URL",
                    init::DEFAULT_WORKER_GIT
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
