//! `dgrid-worker submit`: make a task (or a graph of them from a file)
//! from the flags, sign it if asked, and push it to the grid's queue as one
//! transaction; an id already in use is refused.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{Map, Value};

use super::{fail, rules};
use crate::git::txn::{self, TxnOutcome};
use crate::grid::TaskRules;
use crate::time;
use crate::tools::escape::untrusted as esc;
use crate::tools::source::RepoArgs;
use crate::tools::{submit, trust, validate};

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
    /// --script and --timeout override a single task's fields, --priority,
    /// --requires, --after and --submitter fill the fields a task leaves
    /// out (one that sets another value is an error), and an id is
    /// generated for a task that has none.
    #[arg(long, value_name = "FILE")]
    pub task_file: Option<PathBuf>,
    /// The task's timeout_seconds: how long it may run before it is killed
    /// (required, unless the --task-file sets it).
    #[arg(long, value_name = "SECS", required_unless_present = "task_file")]
    pub timeout: Option<u64>,
    /// priority of the task: 0 to 99, higher runs first [default: 50].
    // Negative numbers are read as numbers, so that `--priority -1` is
    // refused as the field's error, not as an unknown option.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub priority: Option<i64>,
    /// A label a node must have to run it (repeat for several), such as
    /// gpu or arch=arm64.
    #[arg(long = "requires", value_name = "LABEL")]
    pub requires: Vec<String>,
    /// A task that must complete first (repeat for several); its result is
    /// the task's input, $DGRID_INPUTS/<id>.json (/inputs/<id>.json in a
    /// container).
    #[arg(long = "after", value_name = "ID")]
    pub after: Vec<String>,
    /// Who submits it, for fairness between submitters.
    #[arg(long, env = "DGRID_SUBMITTER", value_name = "NAME")]
    pub submitter: Option<String>,
    /// The longest `timeout_seconds` the grid accepts (as `validate`'s).
    #[arg(long, value_name = "SECS", default_value_t = crate::grid::task::TIMEOUT_CEILING)]
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
    /// Check the task (or the graph) as submit would, against the grid as
    /// it is now (ids in use, parents, cycles, the grid's policy), say
    /// where each would go, and push nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// The scheduling flags of `submit`, as fields of a task document. They
/// fill what a task file leaves out; where the file sets a field to
/// something else, that is an error, never a silent override (the
/// submitter, say, may come from `DGRID_SUBMITTER` left in a shell, and
/// fairness between submitters rests on it).
fn scheduling_fields(a: &SubmitArgs, base: &mut Map<String, Value>) -> Result<(), String> {
    let flags: [(&str, &str, Option<Value>); 4] = [
        ("priority", "--priority", a.priority.map(Value::from)),
        (
            "requires",
            "--requires",
            (!a.requires.is_empty()).then(|| a.requires.clone().into()),
        ),
        (
            "after",
            "--after",
            (!a.after.is_empty()).then(|| a.after.clone().into()),
        ),
        (
            "submitter",
            "--submitter (or DGRID_SUBMITTER)",
            a.submitter.clone().map(Value::from),
        ),
    ];
    fill(base, flags)
}

/// Set each field a flag gives where `base` leaves it out; a different
/// value in `base` is an error. A task signed already (it has an
/// envelope) takes no new field either: its signature would not cover it.
fn fill<'a>(
    base: &mut Map<String, Value>,
    flags: impl IntoIterator<Item = (&'a str, &'a str, Option<Value>)>,
) -> Result<(), String> {
    let signed = base.contains_key(crate::trust::envelope::ENVELOPE_FIELD);
    for (field, flag, value) in flags {
        let Some(value) = value else { continue };
        match base.get(field) {
            None if signed => {
                return Err(format!(
                    "field `{field}` is not in the file, which is signed already: {flag} would add it outside the signature"
                ));
            }
            None => {
                base.insert(field.into(), value);
            }
            Some(set) if *set == value => {}
            Some(set) => {
                return Err(format!(
                    "field `{field}` is {set} in the file, and {flag} says {value}: give one"
                ));
            }
        }
    }
    Ok(())
}

pub fn submit(a: SubmitArgs) -> ExitCode {
    // One document, or an array of them (a graph).
    let bases: Vec<Map<String, Value>> = match &a.task_file {
        None => vec![Map::new()],
        Some(p) => match validate::read_regular(p, TaskRules::default().max_file_bytes as u64 * 64)
        {
            Err(e) => return fail(format_args!("{}: {e}", p.display())),
            // A key given twice: serde_json keeps the last, a reviewer reads
            // the first (the worker and `validate` refuse such a task too).
            Ok(bytes)
                if let Some((item, key)) = std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(crate::grid::task::duplicate_key_in_file) =>
            {
                let item = item.map(|i| format!(" item {i}")).unwrap_or_default();
                let e = crate::grid::TaskError::DuplicateField(key);
                return fail(format_args!("{}{item}: {e}", p.display()));
            }
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(m)) => vec![m],
                Ok(Value::Array(items)) => {
                    let mut out = Vec::with_capacity(items.len());
                    for (i, item) in items.into_iter().enumerate() {
                        match item {
                            Value::Object(m) => out.push(m),
                            _ => {
                                return fail(format_args!(
                                    "{}: item {} must be a JSON object (a task)",
                                    p.display(),
                                    i + 1
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
            format!(" (item {})", i + 1)
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
    // Where each task came from, to name in what is said of it.
    let mut origins = Vec::with_capacity(bases.len());
    // Every item's errors, not only the first's: a graph is fixed in one
    // pass, as `validate` lists every file's.
    let mut errors: Vec<String> = Vec::new();
    for (i, mut base) in bases.into_iter().enumerate() {
        let origin = match (&a.task_file, graph) {
            // Counted from 1, as a person counts, with the task it holds.
            (Some(p), true) => match base.get("task_id").and_then(Value::as_str) {
                Some(id) => format!(
                    "{} item {} ({})",
                    p.display(),
                    i + 1,
                    crate::tools::escape::untrusted(id)
                ),
                None => format!("{} item {}", p.display(), i + 1),
            },
            (Some(p), false) => p.display().to_string(),
            (None, _) => "the task".to_owned(),
        };
        // A signed file's own fields stand: the flags may only agree.
        let own = [
            ("task_id", "--id", a.id.clone().map(Value::from)),
            ("script", "--script", script.clone().map(Value::from)),
            ("timeout_seconds", "--timeout", a.timeout.map(Value::from)),
        ];
        let signed = base.contains_key(crate::trust::envelope::ENVELOPE_FIELD);
        if let Err(e) = scheduling_fields(&a, &mut base).and_then(|()| match signed {
            true => fill(&mut base, own),
            false => Ok(()),
        }) {
            errors.push(format!("{origin}: {e}"));
            continue;
        }
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
                errors.push(format!("{origin}: {e}"));
                continue;
            }
        };
        for (field, meant) in task.likely_mistakes() {
            eprintln!(
                "dgrid-worker: warning: {}: {}",
                esc(&origin),
                esc(&validate::mistake(field, meant))
            );
        }
        let task = match (&a.sign_with, &a.grid_id) {
            (Some(key), Some(grid)) => {
                match trust::sign_task(&task, key, grid, a.expires_in, now, &rules) {
                    Ok(t) => t,
                    Err(e) => {
                        errors.push(format!("{origin}: {e}"));
                        continue;
                    }
                }
            }
            _ => task,
        };
        tasks.push(task);
        origins.push(origin);
    }
    if let Some(last) = errors.pop() {
        for e in &errors {
            let _ = fail(e);
        }
        return fail(last);
    }
    if let Some((first, second)) = duplicate_id(&tasks) {
        return fail(format_args!(
            "{}: field `task_id` {:?} is given to two tasks (item {} has it too)",
            origins[second],
            tasks[second].task_id.as_str(),
            first + 1
        ));
    }
    // Said of a task by its id: named by where it came from.
    let origin_of = |id: &crate::grid::Id| {
        let i = tasks.iter().position(|t| &t.task_id == id);
        i.map_or("the task", |i| origins[i].as_str()).to_owned()
    };
    let opened = match a.repo.open_clone_as("submit") {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    if a.sign_with.is_some()
        && let Err(e) = check_signed(&opened, &tasks, &origins, &rules, now)
    {
        return fail(e);
    }
    // What the grid says of the tasks, whether it is pushed or not.
    let said = |value: submit::Submitted, verb: &str| match value {
        submit::Submitted::Queued { paths } => {
            for path in paths {
                eprintln!("{verb} {}", esc(&path));
            }
            for t in &tasks {
                say!("{}", t.task_id);
            }
            ExitCode::SUCCESS
        }
        submit::Submitted::Duplicate { id, path } => fail(format_args!(
            "{}: field `task_id` {:?} is already in use on the grid: {path}",
            origin_of(&id),
            id.as_str()
        )),
        submit::Submitted::Refused { task, why } => {
            fail(format_args!("{}: {why}", origin_of(&task)))
        }
    };
    if a.dry_run {
        let at = txn::Txn {
            repo: &opened.repo,
            tip: opened.tip.clone(),
        };
        return match submit::plan(&at, &tasks, now) {
            Ok(plan) => {
                let code = said(plan.value, "would queue");
                eprintln!("dry run: nothing pushed");
                code
            }
            Err(e) => fail(format_args!("{}: {e}", a.repo.shown())),
        };
    }
    let identity = txn::Identity::for_node("submit");
    match txn::run(&opened.repo, &identity, &opened.txn_policy(), |t| {
        submit::plan(t, &tasks, now)
    }) {
        Ok(TxnOutcome::Committed { value, .. }) => said(value, "queued"),
        Ok(TxnOutcome::Unchanged { value, .. }) => match value {
            submit::Submitted::Queued { .. } => fail("nothing pushed"),
            refused => said(refused, "queued"),
        },
        Ok(TxnOutcome::Uncertain { error, .. }) => fail(format_args!(
            "{}: the push's answer was lost and the grid is unreachable ({error}); \
             look with `dgrid-worker status` before submitting again",
            a.repo.shown()
        )),
        Err(e) => fail(format_args!("{}: {e}", a.repo.shown())),
    }
}

/// Two of `tasks` given one id, if any: the first's index and the
/// second's.
fn duplicate_id(tasks: &[crate::grid::Task]) -> Option<(usize, usize)> {
    let mut seen = std::collections::BTreeMap::new();
    tasks
        .iter()
        .enumerate()
        .find_map(|(i, t)| seen.insert(&t.task_id, i).map(|first| (first, i)))
}

/// The tasks `submit --sign-with` signed, checked as a node would check
/// them against the grid's policy at the fetched tip (the verifier of
/// `validate --verify`, with the grid's own roots: a check for the
/// submitter's sake, not a trust decision): one a node would fail
/// (`wrong-role`, `other-grid`, `expired`, ...) is an error, nothing
/// pushed; one it would only leave in the queue (`unknown-signer`) a
/// warning. A grid without a policy checks nothing.
fn check_signed(
    opened: &crate::tools::source::Opened,
    tasks: &[crate::grid::Task],
    origins: &[String],
    rules: &TaskRules,
    now: time::Timestamp,
) -> Result<(), String> {
    use crate::trust::Verdict;
    let Some(tip) = &opened.tip else {
        return Ok(());
    };
    let policy = crate::trust::policy::POLICY_FILE;
    if !opened.repo.exists(tip, policy).map_err(|e| e.to_string())? {
        return Ok(());
    }
    let mut verifier = match trust::verifier_at(opened.repo.dir(), tip, None, 1, rules) {
        Ok(v) => v,
        Err(e) => {
            eprintln!(
                "dgrid-worker: warning: the signed tasks are not checked: {}",
                esc(&e)
            );
            return Ok(());
        }
    };
    for (t, origin) in tasks.iter().zip(origins) {
        let bytes = crate::grid::claim::pretty(&Value::Object(t.to_json()));
        let name = format!("{}.json", t.task_id);
        match verifier.verify_task(origin, &name, &bytes, now) {
            Verdict::Trusted(_) => {}
            Verdict::Skip(e) => eprintln!(
                "dgrid-worker: warning: {}: a node would leave it in the queue: {}",
                esc(origin),
                esc(&e.report())
            ),
            Verdict::Reject(e) => {
                return Err(format!(
                    "{origin}: every node would refuse it under the grid's {policy}: {}; nothing pushed",
                    e.report()
                ));
            }
        }
    }
    Ok(())
}
