//! `dgrid-worker status` for a terminal: the grid at a glance. Also what
//! the grid workflow puts in its job summary, inside a code fence: every
//! value read from the grid goes through `escape::untrusted`, so no file
//! name or error can move the cursor, end the fence, or start a line.

use std::fmt::Write;

use super::escape::untrusted as esc;
use super::view::{GridView, ResultView, human_age};

/// Lists longer than this are cut, with a count of the rest.
const SHOWN: usize = 20;

use super::view::NODES_SHOWN;

pub fn status(view: &GridView, repo: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "grid {} at {}",
        esc(repo),
        esc(&view.commit[..view.commit.len().min(12)])
    );
    let _ = writeln!(
        s,
        "queued {}  waiting {}  running {}  claimed ahead {}  completed {}  failed {}",
        view.queue.len(),
        view.waiting.len(),
        view.started_claims(),
        view.running.len() - view.started_claims(),
        view.completed,
        view.failed
    );

    let _ = writeln!(s, "\nnodes ({}):", view.nodes.len());
    // A grid's nodes/ is anyone's to fill: 100,000 records printed a line
    // each (18 MB).
    // Keys are judged only against a policy that could be read.
    let policy_read = view.trust.as_ref().is_some_and(|t| t.error.is_none());
    for n in view.nodes_in_order().into_iter().take(NODES_SHOWN) {
        let mut extra = match (&n.error, &n.problem, &n.paused) {
            (Some(e), _, _) => format!("  ! {}", esc(e)),
            (None, Some(p), _) => format!("  ! {}", esc(p)),
            _ if n.stale => "  ! stale heartbeat: presumed dead".to_owned(),
            (None, None, Some(p)) => format!("  ! paused: {}", esc(p)),
            _ => String::new(),
        };
        if let Some(at) = &n.overdue_at {
            extra.push_str(&format!(
                "  ! left a claim past its deadline (found {}): presumed dead or cut off; no node claims for it until it writes its record again",
                esc(at)
            ));
        }
        if let Some(at) = &n.unanswered_at {
            extra.push_str(&format!(
                "  ! left a claim made for it unanswered (found {}): no node claims for it until it writes its record again",
                esc(at)
            ));
        }
        if let Some(p) = &n.record_problem {
            extra.push_str(&format!(
                "  ! its record {}: a node enforcing the policy reckons without it",
                esc(p)
            ));
        }
        match (&n.key, &n.key_problem) {
            (Some(k), Some(p)) => extra.push_str(&format!(
                "  ! the key its record names, {}: {}; results that key signs do not count",
                esc(k),
                esc(p)
            )),
            (Some(k), None) if policy_read => {
                extra.push_str(&format!("  key {}, as the policy lists it", esc(k)))
            }
            _ => {}
        }
        let _ = writeln!(
            s,
            "  {:<20} {:<10} heartbeat {:>4} ago  running {:<3} done {:<6} failed {:<6}{extra}",
            esc(&n.node_id),
            esc(&n.status),
            human_age(n.heartbeat_age_s),
            n.running.len(),
            n.tasks_completed,
            n.tasks_failed,
        );
        if !n.labels.is_empty() {
            let exclusive = if n.exclusive.is_empty() {
                String::new()
            } else {
                format!(
                    "; takes only tasks that require {}",
                    esc(&n.exclusive.join(", "))
                )
            };
            let _ = writeln!(s, "    labels {}{exclusive}", esc(&n.labels.join(", ")));
        }
    }

    if view.nodes.len() > NODES_SHOWN {
        let _ = writeln!(
            s,
            "  ... and {} more (status --json lists every one)",
            view.nodes.len() - NODES_SHOWN
        );
    }

    // Running by its node's record, then claimed and not started by it
    // (claimed ahead; or started since, or its node is gone).
    for (title, started) in [
        ("running", true),
        ("claimed ahead, not started by its node's record", false),
    ] {
        let claims: Vec<_> = view
            .running
            .iter()
            .filter(|r| r.started == started)
            .collect();
        if !started && claims.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n{title} ({}):", claims.len());
        for r in claims.iter().take(SHOWN) {
            let _ = writeln!(s, "  {}", claim_line(r));
        }
        more(&mut s, claims.len());
    }

    // Filed tasks in claim order; the inbox apart: its entries have no
    // place in that order until a node has read and filed them (and some
    // may be refused then).
    let (filed, inbox): (Vec<_>, Vec<_>) = view.queue.iter().partition(|q| q.priority.is_some());
    let _ = writeln!(
        s,
        "\nqueue ({}), in the order nodes take it (priority, with age):",
        filed.len()
    );
    for q in filed.iter().take(SHOWN) {
        let _ = writeln!(s, "  {}", queued_line(q));
    }
    more(&mut s, filed.len());
    if !inbox.is_empty() {
        let _ = writeln!(
            s,
            "\nin the inbox ({}), read and filed (or refused) by the next node that looks:",
            inbox.len()
        );
        for q in inbox.iter().take(SHOWN) {
            let _ = writeln!(s, "  {}", esc(&q.task_id));
        }
        more(&mut s, inbox.len());
    }

    if !view.unservable.is_empty() {
        let classes = plural(view.unservable.len(), "class");
        let _ = writeln!(s, "\ncannot run now ({classes}):");
        for u in view.unservable.iter().take(SHOWN) {
            let more = if u.tasks > u.task_ids.len() {
                format!(" and {} more", u.tasks - u.task_ids.len())
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "  {}: {} ({}{more}): {}",
                requirement(&u.requires),
                plural(u.tasks, "task"),
                esc(&u.task_ids.join(", ")),
                esc(&u.why)
            );
        }
        more(&mut s, view.unservable.len());
    }

    if !view.misplaced.is_empty() {
        let _ = writeln!(
            s,
            "\nno place for a task ({}; the next node to claim moves each to tasks/failed):",
            view.misplaced.len()
        );
        for m in view.misplaced.iter().take(SHOWN) {
            let _ = writeln!(s, "  {} ! {}", esc(&m.path), esc(&m.why));
        }
        more(&mut s, view.misplaced.len());
    }

    if !view.waiting.is_empty() {
        let _ = writeln!(s, "\nwaiting for other tasks ({}):", view.waiting.len());
        for w in view.waiting.iter().take(SHOWN) {
            match &w.error {
                Some(e) => {
                    let _ = writeln!(s, "  {:<30} ! {}", esc(&w.task_id), esc(e));
                }
                None => {
                    // Its level and labels too: what it will ask of a node
                    // once it is released.
                    let level = w.priority.map(|p| format!("p{p}")).unwrap_or_default();
                    let requires = requirement(&w.requires);
                    let unservable: String = [&w.unservable, &w.behind]
                        .into_iter()
                        .flatten()
                        .map(|why| format!("  ! {}", esc(why)))
                        .collect();
                    let _ = writeln!(
                        s,
                        "  {:<30} {level:<12} {requires}  {}{unservable}",
                        esc(&w.task_id),
                        esc(&w.waits())
                    );
                }
            }
        }
        more(&mut s, view.waiting.len());
    }

    let statuses: Vec<String> = view
        .by_status
        .iter()
        .map(|(k, v)| format!("{} {v}", esc(k)))
        .collect();
    let by_status = if statuses.is_empty() {
        String::new()
    } else {
        format!(" ({})", statuses.join(", "))
    };
    let _ = writeln!(
        s,
        "\ndone: {} completed, {} failed{by_status}",
        view.completed, view.failed
    );
    if let Some(a) = view
        .archived
        .as_ref()
        .filter(|a| a.completed + a.failed > 0)
    {
        let _ = writeln!(
            s,
            "archived: {} completed, {} failed more, on branch {} (not in the figures above)",
            a.completed,
            a.failed,
            esc(&a.branch)
        );
    }
    trust(&mut s, view);
    if !view.failures.is_empty() {
        let _ = writeln!(s, "\nrecent failures:");
        for f in view.failures.iter().take(10) {
            let why = f
                .error
                .clone()
                .unwrap_or_else(|| format!("exit {}", f.exit_code.unwrap_or(-1)));
            let why: String = why.lines().next().unwrap_or("").chars().take(100).collect();
            let _ = writeln!(
                s,
                "  {:<30} {:<10} on {:<16} {}  {}",
                esc(&f.task_id),
                esc(&f.status),
                esc(&f.node_id),
                esc(&f.timestamp),
                esc(&why)
            );
        }
    }
    s
}

/// One queued task: id, priority (with age), labels, submitter, and why
/// no node takes it, if none does.
fn queued_line(q: &super::view::QueuedView) -> String {
    let Some(p) = q.priority else {
        return format!("{:<30} (in the inbox, not filed yet)", esc(&q.task_id));
    };
    let level = match q.effective_priority {
        Some(e) if e != p => format!("p{p} (now {e})"),
        _ => format!("p{p}"),
    };
    let requires = requirement(&q.requires);
    let mut line = format!("{:<30} {level:<12} {requires}", esc(&q.task_id));
    if let Some(by) = &q.submitter {
        line.push_str(&format!("  by {}", esc(by)));
    }
    if let Some(why) = &q.unservable {
        line.push_str(&format!("  ! {}", esc(why)));
    }
    line
}

/// `n` of `what`, in English: "1 class", "3 classes", "0 tasks".
pub fn plural(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        _ if what.ends_with('s') => format!("{n} {what}es"),
        _ => format!("{n} {what}s"),
    }
}

/// What a class of tasks asks of a node, escaped: "requires gpu, arch=arm64",
/// or "requires nothing" for the class of tasks that name no label.
pub fn requirement(labels: &[String]) -> String {
    if labels.is_empty() {
        "requires nothing".to_owned()
    } else {
        format!("requires {}", esc(&labels.join(", ")))
    }
}

fn more(s: &mut String, len: usize) {
    if len > SHOWN {
        let _ = writeln!(s, "  ... and {} more", len - SHOWN);
    }
}

/// Which of the results listed (the latest and the latest failures) are
/// attested, and why each other one is not.
fn trust(s: &mut String, view: &GridView) {
    let Some(t) = &view.trust else { return };
    if let Some(e) = &t.error {
        let _ = writeln!(s, "\ntrust: results not checked: {}", esc(e));
        return;
    }
    let _ = writeln!(
        s,
        "\ntrust: policy version {} of grid {}, roots from {}",
        t.policy_version.unwrap_or_default(),
        esc(&t.grid_id),
        esc(&t.roots)
    );
    if let Some(why) = &t.tip_refused {
        let _ = writeln!(s, "  the grid's newest policy is refused: {}", esc(why));
    }
    let unsigned = match t.attested_unsigned {
        0 => String::new(),
        n => format!(" ({n} of them of a task not signed)"),
    };
    let _ = writeln!(
        s,
        "  of the {} latest results and failures: {} attested{unsigned}, {} not, {}{}",
        t.checked,
        t.attested,
        t.not_attested,
        unchecked_words(t.unchecked),
        never_ran_words(t.never_ran)
    );
    let mut seen = std::collections::BTreeSet::new();
    let listed = |r: &&ResultView| {
        r.trust
            .as_deref()
            .is_some_and(|c| c != "attested" && c != super::verify::NEVER_RAN)
            || r.task_signed == Some(false)
    };
    let not: Vec<_> = view
        .recent
        .iter()
        .chain(&view.failures)
        .filter(listed)
        .filter(|r| seen.insert(r.file.clone()))
        .collect();
    for r in not.iter().take(SHOWN) {
        if let (Some("attested"), Some(node)) = (r.trust.as_deref(), &r.attested_by) {
            let note = super::attest::unsigned_note(r.task_signed);
            let _ = writeln!(
                s,
                "  {}  attested by node {}{note}",
                esc(&r.file),
                esc(node)
            );
            continue;
        }
        let why: String = r
            .trust_error
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(120)
            .collect();
        let _ = writeln!(
            s,
            "  {}  not attested ({}): {}",
            esc(&r.file),
            esc(r.trust.as_deref().unwrap_or("")),
            esc(&why)
        );
    }
    more(s, not.len());
}

/// How many results were not checked, and why, if any.
pub(super) fn unchecked_words(n: usize) -> String {
    match n {
        0 => "0 unchecked".to_owned(),
        n => format!("{n} unchecked (their claim's commit is not in this clone)"),
    }
}

/// How many results are of tasks that never ran, if any: no node signs
/// those, and they are neither attested nor refused.
pub(super) fn never_ran_words(n: usize) -> String {
    match n {
        0 => String::new(),
        n => format!("; {n} of tasks that never ran (nothing to attest)"),
    }
}

/// A claim, for the lists of what is running and claimed ahead.
fn claim_line(r: &super::view::RunningView) -> String {
    if let Some(e) = &r.error {
        return format!("{:<30} ! {}", esc(&r.task_id), esc(e));
    }
    let priority = r.priority.map(|p| format!("p{p}")).unwrap_or_default();
    // The grid holds when a claim was made, not when its run started (a
    // claim ahead waits for a slot first): said as such.
    format!(
        "{:<30} {priority:<4} on {:<20} claimed {:>4} ago  attempt {}{}",
        esc(&r.task_id),
        esc(&r.node_id),
        human_age(r.age_s),
        r.attempt,
        unanswered(r)
    )
}

/// A claim made for the node by a peer, not answered yet: said so, as it
/// may go back to the queue at `answer_by`.
fn unanswered(r: &super::view::RunningView) -> String {
    match (&r.assigned_by, &r.answer_by) {
        (Some(by), Some(until)) => format!(
            "  (claimed for it by {}, not answered yet; back to the queue after {})",
            esc(by),
            esc(until)
        ),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_class_with_no_label_requires_nothing_and_labels_are_escaped() {
        assert_eq!(requirement(&[]), "requires nothing");
        assert_eq!(
            requirement(&["arch=arm64".into(), "gpu".into()]),
            "requires arch=arm64, gpu"
        );
        assert!(!requirement(&["gpu\u{1b}[2J".into()]).contains('\u{1b}'));
    }

    #[test]
    fn counts_read_as_english() {
        assert_eq!(plural(1, "class"), "1 class");
        assert_eq!(plural(3, "class"), "3 classes");
        assert_eq!(plural(0, "task"), "0 tasks");
    }
}
