//! The grid tools' command lines: `validate`, `submit`, `status`, `reap`,
//! `archive`, `dashboard`, `init`. Each parses its arguments, calls `crate::tools`, and
//! turns the outcome into output and an exit status for scripts and CI:
//! 0 success, 1 the grid or the input is not as asked (invalid tasks, a
//! duplicate id, an unreachable repository), 2 bad arguments (clap's own).

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{Map, Value};

use crate::git::txn::{self, TxnOutcome, TxnPolicy};
use crate::grid::orphan::OrphanPolicy;
use crate::grid::{Id, TaskRules};
use crate::time;
use crate::tools::escape::untrusted as esc;
use crate::tools::source::RepoArgs;
use crate::tools::{archive, attest, html, init, reap, submit, text, trust, validate, view};

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("dgrid-worker: {msg}");
    ExitCode::FAILURE
}

fn rules(max_timeout: u64) -> TaskRules {
    TaskRules {
        max_timeout_seconds: max_timeout,
        ..TaskRules::default()
    }
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Task files, or directories whose entries are all checked as queue
    /// entries (e.g. tasks/queue).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The grid's `tasks.max_timeout_seconds`, if the workers tighten it.
    #[arg(long, value_name = "SECS", default_value_t = crate::grid::TaskRules::default().max_timeout_seconds)]
    pub max_timeout: u64,
    /// A checkout of the grid: also refuse ids that are running there or
    /// already have a result.
    #[arg(long, value_name = "DIR")]
    pub grid: Option<PathBuf>,
    /// Also check each task's signature, as a worker in `enforce` mode
    /// would, against the policy on --trust-ref (and a changed
    /// .dgrid/policy.json in --grid against it).
    #[arg(long, requires = "trust_ref")]
    pub verify: bool,
    /// The ref whose policy and roots are trusted (in a pull request's
    /// check, the base branch: never the pull request itself), read from the
    /// repository at --grid (default: the current directory).
    #[arg(long, value_name = "REF")]
    pub trust_ref: Option<String>,
    /// The roots' public keys [default: .dgrid/roots on --trust-ref].
    #[arg(long, value_name = "FILE")]
    pub roots: Option<PathBuf>,
    /// Root signatures the policy needs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threshold: usize,
}

pub fn validate(a: ValidateArgs) -> ExitCode {
    let mut report = validate::validate(&a.paths, &rules(a.max_timeout));
    if let Some(grid) = &a.grid {
        validate::check_against_grid(&mut report, grid);
    }
    if let (true, Some(trust_ref)) = (a.verify, &a.trust_ref) {
        let dir = a.grid.clone().unwrap_or_else(|| PathBuf::from("."));
        match trust::verifier_at(
            &dir,
            trust_ref,
            a.roots.as_deref(),
            a.threshold,
            &rules(a.max_timeout),
        ) {
            Ok(mut v) => trust::verify_report(&mut report, &mut v, a.grid.as_deref(), time::now()),
            Err(e) => return fail(e),
        }
    }
    // In GitHub Actions, also as annotations on the pull request's files.
    let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    for f in report.unreadable.iter().chain(&report.findings) {
        println!("{f}");
        if github {
            println!("{}", validate::github_annotation(f));
        }
    }
    eprintln!(
        "{} checked: {} valid, {} invalid{}",
        report.checked,
        report.valid,
        report.findings.len(),
        if report.unreadable.is_empty() {
            String::new()
        } else {
            format!(", {} unreadable", report.unreadable.len())
        }
    );
    if report.findings.is_empty() && report.unreadable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["script", "script_file", "task_file"])))]
pub struct SubmitArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The task id [default: generated from the time and a random part].
    #[arg(long)]
    pub id: Option<String>,
    /// The script to run (sh -c).
    #[arg(long, conflicts_with = "script_file")]
    pub script: Option<String>,
    /// Read the script from this file.
    #[arg(long, value_name = "FILE")]
    pub script_file: Option<PathBuf>,
    /// A task JSON document to submit, or an array of them (a graph of
    /// tasks that run `after` one another, pushed in one commit); --id,
    /// --script and --timeout override a single task's fields, and an id is
    /// generated for a task that has none.
    #[arg(long, value_name = "FILE")]
    pub task_file: Option<PathBuf>,
    /// The task's timeout_seconds: how long it may run before it is killed
    /// (required, unless the --task-file sets it).
    #[arg(long, value_name = "SECS", required_unless_present = "task_file")]
    pub timeout: Option<u64>,
    /// priority of the task: 0 to 99, higher runs first [default: 50].
    #[arg(long, value_name = "N")]
    pub priority: Option<u64>,
    /// A label a node must have to run it (repeat for several), such as
    /// gpu or arch=arm64.
    #[arg(long = "requires", value_name = "LABEL")]
    pub requires: Vec<String>,
    /// A task that must complete first (repeat for several); its result is
    /// the task's input, /inputs/<id>.json.
    #[arg(long = "after", value_name = "ID")]
    pub after: Vec<String>,
    /// Who submits it, for fairness between submitters.
    #[arg(long, env = "DGRID_SUBMITTER", value_name = "NAME")]
    pub submitter: Option<String>,
    #[arg(long, value_name = "SECS", default_value_t = crate::grid::TaskRules::default().max_timeout_seconds)]
    pub max_timeout: u64,
    /// Sign the task with this submitter's private key (OpenSSH format; one
    /// with a passphrase is used through `ssh-keygen -Y sign`).
    #[arg(long, value_name = "KEY", requires = "grid_id")]
    pub sign_with: Option<PathBuf>,
    /// The grid the signature is for, as its workers pin it: part of the
    /// signature's namespace, so never read from the grid itself.
    #[arg(long, env = "DGRID_GRID_ID", value_name = "ID")]
    pub grid_id: Option<String>,
    /// How long a signed task may wait to run before it expires.
    #[arg(long, value_name = "SECS", default_value_t = 7 * 24 * 3600)]
    pub expires_in: u64,
}

/// The scheduling flags of `submit`, as fields of a task document.
fn scheduling_fields(a: &SubmitArgs, base: &mut Map<String, Value>) {
    if let Some(p) = a.priority {
        base.insert("priority".into(), p.into());
    }
    if !a.requires.is_empty() {
        base.insert("requires".into(), a.requires.clone().into());
    }
    if !a.after.is_empty() {
        base.insert("after".into(), a.after.clone().into());
    }
    if let Some(s) = &a.submitter {
        base.insert("submitter".into(), s.clone().into());
    }
}

pub fn submit(a: SubmitArgs) -> ExitCode {
    // One document, or an array of them (a graph).
    let bases: Vec<Map<String, Value>> = match &a.task_file {
        None => vec![Map::new()],
        Some(p) => match validate::read_regular(p, TaskRules::default().max_file_bytes as u64 * 64)
        {
            Err(e) => return fail(format_args!("{}: {e}", p.display())),
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(m)) => vec![m],
                Ok(Value::Array(items)) => {
                    let mut out = Vec::with_capacity(items.len());
                    for (i, item) in items.into_iter().enumerate() {
                        match item {
                            Value::Object(m) => out.push(m),
                            _ => {
                                return fail(format_args!(
                                    "{}: item {i} must be a JSON object (a task)",
                                    p.display()
                                ));
                            }
                        }
                    }
                    if out.is_empty() {
                        return fail(format_args!("{}: holds no task", p.display()));
                    }
                    out
                }
                Ok(_) => {
                    return fail(format_args!(
                        "{}: must be a JSON object (a task) or an array of them",
                        p.display()
                    ));
                }
                Err(e) => return fail(format_args!("{}: is not valid JSON: {e}", p.display())),
            },
        },
    };
    // clap requires --timeout without a task file; with one, the file may
    // set it, and if it does not, the flag is what to name.
    if a.timeout.is_none()
        && let Some(p) = &a.task_file
        && let Some(i) = bases
            .iter()
            .position(|b| !b.contains_key("timeout_seconds"))
    {
        let which = if bases.len() > 1 {
            format!(" (item {i})")
        } else {
            String::new()
        };
        return fail(format_args!(
            "{}{which}: field `timeout_seconds` is missing: give --timeout SECS, or set it in the file",
            p.display()
        ));
    }
    let graph = bases.len() > 1;
    if graph
        && (a.id.is_some() || a.script.is_some() || a.script_file.is_some() || !a.after.is_empty())
    {
        return fail(
            "--id, --script, --script-file and --after are one task's: with a file of several, give them in the file",
        );
    }
    let script = match (&a.script, &a.script_file) {
        (Some(s), _) => Some(s.clone()),
        (None, Some(p)) => {
            match validate::read_regular(p, TaskRules::default().max_script_bytes as u64) {
                Ok(b) => match String::from_utf8(b) {
                    Ok(s) => Some(s),
                    Err(_) => return fail(format_args!("{}: is not valid UTF-8", p.display())),
                },
                Err(e) => return fail(format_args!("{}: {e}", p.display())),
            }
        }
        (None, None) => None,
    };
    let rules = rules(a.max_timeout);
    let now = time::now();
    let mut tasks = Vec::with_capacity(bases.len());
    for (i, mut base) in bases.into_iter().enumerate() {
        scheduling_fields(&a, &mut base);
        let task = match submit::make_task(
            base,
            a.id.as_deref(),
            script.clone(),
            a.timeout,
            now,
            &rules,
        ) {
            Ok(t) => t,
            Err(e) => {
                let origin = match (&a.task_file, graph) {
                    (Some(p), true) => format!("{} item {i}", p.display()),
                    (Some(p), false) => p.display().to_string(),
                    (None, _) => "the task".to_owned(),
                };
                return fail(format_args!("{origin}: {e}"));
            }
        };
        let task = match (&a.sign_with, &a.grid_id) {
            (Some(key), Some(grid)) => {
                match trust::sign_task(&task, key, grid, a.expires_in, now, &rules) {
                    Ok(t) => t,
                    Err(e) => return fail(e),
                }
            }
            _ => task,
        };
        tasks.push(task);
    }
    if let Some(dup) = duplicate_id(&tasks) {
        return fail(format_args!(
            "field `task_id` {dup:?} is given to two tasks"
        ));
    }
    let opened = match a.repo.open_clone_as("submit") {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let identity = txn::Identity::for_node("submit");
    match txn::run(&opened.repo, &identity, &TxnPolicy::default(), |t| {
        submit::plan(t, &tasks, now)
    }) {
        Ok(TxnOutcome::Committed { value, .. }) => {
            if let submit::Submitted::Queued { paths } = value {
                for path in paths {
                    eprintln!("queued {}", esc(&path));
                }
            }
            for t in &tasks {
                println!("{}", t.task_id);
            }
            ExitCode::SUCCESS
        }
        Ok(TxnOutcome::Unchanged { value, .. }) => match value {
            submit::Submitted::Duplicate { id, path } => fail(format_args!(
                "field `task_id` {id:?} is already in use on the grid: {}",
                esc(&path)
            )),
            submit::Submitted::Refused(why) => fail(esc(&why)),
            submit::Submitted::Queued { .. } => fail("nothing pushed"),
        },
        Ok(TxnOutcome::Uncertain { error, .. }) => fail(format_args!(
            "{}: the push's answer was lost and the grid is unreachable ({error}); \
             look with `dgrid-worker status` before submitting again",
            a.repo.repo
        )),
        Err(e) => fail(format_args!("{}: {e}", a.repo.repo)),
    }
}

/// An id given to two of `tasks`, if any.
fn duplicate_id(tasks: &[crate::grid::Task]) -> Option<String> {
    let mut seen = std::collections::BTreeSet::new();
    tasks
        .iter()
        .find(|t| !seen.insert(t.task_id.clone()))
        .map(|t| t.task_id.to_string())
}

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

/// When a node counts as dead: the same rule, and by default the same limit,
/// as the workers' `stale_after`.
#[derive(Debug, clap::Args)]
pub struct StaleArgs {
    /// A node whose heartbeat is older than this is presumed dead.
    /// At most ten years, as in the workers' configuration.
    #[arg(
        long,
        env = "DGRID_STALE_AFTER",
        value_name = "SECS",
        default_value_t = crate::config::DEFAULT_STALE_SECS,
        value_parser = clap::value_parser!(u64).range(1..=MAX_SPAN_SECS)
    )]
    pub stale_after: u64,
}

/// Ten years: longer spans of time are refused, not wrapped or panicked on
/// (the worker's configuration caps every span the same way).
const MAX_SPAN_SECS: u64 = 10 * 366 * 86400;

fn load_view(
    repo: &RepoArgs,
    stale_after: u64,
    pin: &attest::PinArgs,
) -> Result<view::GridView, String> {
    let opened = repo.open_read().map_err(|e| e.to_string())?;
    let tip = opened.tip.clone().ok_or_else(|| {
        format!(
            "{}: the repository has no branch `{}`",
            repo.repo, repo.branch
        )
    })?;
    let stale = stale_after.min(i64::MAX as u64) as i64;
    let now = time::now();
    let mut v = view::GridView::load(&opened.repo, &tip, now, stale)
        .map_err(|e| format!("{}: {}", repo.repo, e))?;
    attest::attest(&mut v, &opened.repo, &tip, pin, now)
        .map_err(|e| format!("{}: {}", repo.repo, e))?;
    Ok(v)
}

pub fn status(a: StatusArgs) -> ExitCode {
    let v = match load_view(&a.repo, a.stale.stale_after, &a.pin) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("views serialise")
        );
    } else {
        print!("{}", text::status(&v, &a.repo.repo));
    }
    ExitCode::SUCCESS
}

#[derive(Debug, clap::Args)]
pub struct ReapArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Show what would be requeued or abandoned; push nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub stale: StaleArgs,
    /// Claims handed out before a task is abandoned (the workers'
    /// `max_attempts`).
    #[arg(long, env = "DGRID_MAX_ATTEMPTS", default_value_t = crate::grid::orphan::DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: u32,
    /// The reaper's name in commits and in results of unreadable claims.
    /// It must not be a worker's node id.
    #[arg(long = "as", value_name = "ID", default_value = "dgrid-reaper")]
    pub who: String,
    /// Print what was done as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn reap(a: ReapArgs) -> ExitCode {
    let who = match Id::parse(&a.who) {
        Ok(id) => id,
        Err(e) => return fail(format_args!("--as {:?}: {e}", a.who)),
    };
    if a.max_attempts == 0 {
        return fail("--max-attempts must be at least 1");
    }
    let policy = OrphanPolicy {
        stale_after: chrono::Duration::seconds(a.stale.stale_after.min(i64::MAX as u64) as i64),
        max_attempts: a.max_attempts,
    };
    let rules = TaskRules {
        max_timeout_seconds: u64::MAX,
        ..TaskRules::default()
    };
    let opened = match a.repo.open_clone_as(who.as_str()) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    if let Some(tip) = &opened.tip {
        // The reaper treats claims in its own name as leftovers of its own
        // crash; under a worker's name it would reap that worker's live
        // claims.
        let node_file = crate::grid::layout::node_file(&who);
        if matches!(opened.repo.exists(tip, &node_file), Ok(true)) {
            return fail(format_args!(
                "--as {who}: {node_file} exists; the reaper must not use a worker's node id"
            ));
        }
    }
    let summary = if a.dry_run {
        let t = txn::Txn {
            repo: &opened.repo,
            tip: opened.tip.clone(),
        };
        match reap::plan(&t, &who, time::now(), &policy, &rules) {
            Ok(p) => p.value,
            Err(e) => return fail(format_args!("{}: {e}", a.repo.repo)),
        }
    } else {
        let identity = txn::Identity::for_node(who.as_str());
        match txn::run(&opened.repo, &identity, &TxnPolicy::default(), |t| {
            reap::plan(t, &who, time::now(), &policy, &rules)
        }) {
            Ok(TxnOutcome::Committed { value, .. } | TxnOutcome::Unchanged { value, .. }) => value,
            // A reap is idempotent: the next run redoes what did not land.
            Ok(TxnOutcome::Uncertain { error, .. }) => {
                return fail(format_args!(
                    "{}: the push's answer was lost and the grid is unreachable: {error}",
                    a.repo.repo
                ));
            }
            Err(e) => return fail(format_args!("{}: {e}", a.repo.repo)),
        }
    };
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "dry_run": a.dry_run,
                "reaped": summary.reaped,
                "invalid": summary.invalid,
                "released": summary.released,
                "unservable": summary.unservable,
            })
        );
    } else {
        let verb = if a.dry_run { "would be " } else { "" };
        for (task, what) in &summary.reaped {
            println!("{}: {verb}{}", esc(task), esc(what));
        }
        for (entry, why) in &summary.invalid {
            println!("{}: {verb}moved to tasks/failed: {}", esc(entry), esc(why));
        }
        for (task, what) in &summary.released {
            println!("{}: {verb}{}", esc(task), esc(what));
        }
        for u in &summary.unservable {
            let more = u.tasks.saturating_sub(u.task_ids.len());
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            println!(
                "{}{more}: cannot run now, requires {}: {}",
                esc(&u.task_ids.join(", ")),
                esc(&u.requires.join(", ")),
                esc(&u.why)
            );
        }
        if summary.reaped.is_empty() && summary.invalid.is_empty() && summary.released.is_empty() {
            eprintln!("no orphaned claims");
        }
    }
    ExitCode::SUCCESS
}

#[derive(Debug, clap::Args)]
pub struct ArchiveArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Results to keep on the grid's branch: the newest by their
    /// `timestamp` (unreadable files count as oldest).
    #[arg(long, env = "DGRID_ARCHIVE_KEEP", value_name = "N", default_value_t = crate::grid::archive::DEFAULT_KEEP)]
    pub keep: usize,
    /// The branch results are moved to (created if absent), at the same
    /// paths: a result is on the grid's branch, else there.
    #[arg(long, value_name = "BRANCH", default_value = crate::grid::archive::ARCHIVE_BRANCH)]
    pub archive_branch: String,
    /// Show what would be moved; push nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print what was done as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn archive(a: ArchiveArgs) -> ExitCode {
    let opts = archive::ArchiveOptions {
        keep: a.keep,
        archive_branch: a.archive_branch.clone(),
    };
    let done = match archive::run(&a.repo, &opts, a.dry_run) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let s = &done.summary;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "dry_run": a.dry_run,
                "archive_branch": a.archive_branch,
                "results": s.results,
                "kept": s.kept,
                "moved": s.moved,
                "already_archived": s.already_archived,
                "kept_for_dependants": s.kept_for_dependants,
            })
        );
        return ExitCode::SUCCESS;
    }
    let verb = if a.dry_run { "would be " } else { "" };
    // One line per result would be tens of thousands on a first run: the
    // count, and the files whose name changed (their old name was taken).
    for (from, to) in s.renamed() {
        println!("{}: {verb}archived as {}", esc(from), esc(to));
    }
    for path in &s.already_archived {
        println!("{}: {verb}removed (the same file is archived)", esc(path));
    }
    let dependants = if s.kept_for_dependants > 0 {
        format!(
            " ({} of them because a task still to run runs after them)",
            s.kept_for_dependants
        )
    } else {
        String::new()
    };
    eprintln!(
        "{} of {} results {verb}moved to {}; {} kept on {}{dependants}",
        s.moved.len() + s.already_archived.len(),
        s.results,
        a.archive_branch,
        s.kept,
        a.repo.branch
    );
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
                &serde_json::to_vec_pretty(&v).expect("views serialise"),
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
    let opts = init::InitOptions {
        worker_git: a.worker_git,
        worker_ref: a.worker_ref,
        bare: a.bare,
    };
    match init::init(&a.dir, &opts) {
        Ok(()) => {
            eprintln!("new grid in {}", a.dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
