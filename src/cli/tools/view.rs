//! `dgrid-worker status` and `dashboard`: the grid's view at its tip
//! (attested where the grid has a policy), printed as text or JSON, or
//! written as a static page with its grid.json. Both load it the same way.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{StaleArgs, fail};
use crate::time;
use crate::tools::source::RepoArgs;
use crate::tools::{attest, html, text, view};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Print the view as JSON (the dashboard's grid.json).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub stale: StaleArgs,
    #[command(flatten)]
    pub pin: attest::PinArgs,
}

fn load_view(
    repo: &RepoArgs,
    stale_after: u64,
    pin: &attest::PinArgs,
) -> Result<view::GridView, String> {
    // Pinned roots ask for the claims to be checked, which takes history.
    let opened = match pin.roots {
        Some(_) => repo.open_read_with_history(),
        None => repo.open_read(),
    }
    .map_err(|e| e.to_string())?;
    let tip = opened.tip.clone().ok_or_else(|| {
        format!(
            "{}: the repository has no branch `{}`",
            repo.shown(),
            repo.branch
        )
    })?;
    let stale = stale_after.min(i64::MAX as u64) as i64;
    let now = time::now();
    let mut v = view::GridView::load(&opened.repo, &tip, now, stale)
        .map_err(|e| format!("{}: {}", repo.shown(), e))?;
    attest::attest(&mut v, &opened.repo, &tip, pin, now)
        .map_err(|e| format!("{}: {}", repo.shown(), e))?;
    Ok(v)
}

pub fn status(a: StatusArgs) -> ExitCode {
    let v = match load_view(&a.repo, a.stale.stale_after, &a.pin) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    if a.json {
        let text = serde_json::to_string_pretty(&v).expect("views serialise");
        say!("{}", crate::escape::json(text));
    } else {
        {
            use std::io::Write as _;
            let _ = write!(
                std::io::stdout().lock(),
                "{}",
                text::status(&v, &a.repo.shown())
            );
        }
    }
    ExitCode::SUCCESS
}

#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Where to write index.html and grid.json (created if needed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The page's title.
    #[arg(long, default_value = "D-GRID dashboard")]
    pub title: String,
    #[command(flatten)]
    pub stale: StaleArgs,
    #[command(flatten)]
    pub pin: attest::PinArgs,
}

pub fn dashboard(a: DashboardArgs) -> ExitCode {
    let v = match load_view(&a.repo, a.stale.stale_after, &a.pin) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let write = |name: &str, bytes: &[u8]| {
        let p = a.out.join(name);
        std::fs::write(&p, bytes).map_err(|e| format!("{}: {e}", p.display()))
    };
    let done = std::fs::create_dir_all(&a.out)
        .map_err(|e| format!("{}: {e}", a.out.display()))
        .and_then(|()| {
            write(
                "grid.json",
                crate::escape::json(serde_json::to_string_pretty(&v).expect("views serialise"))
                    .as_bytes(),
            )
        })
        .and_then(|()| write("index.html", html::dashboard(&v, &a.title).as_bytes()));
    match done {
        Ok(()) => {
            eprintln!("dashboard written to {}", a.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
