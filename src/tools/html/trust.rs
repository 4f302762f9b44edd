//! What the dashboard says of trust: the policy the results were checked
//! against, each node's key and record, and whether each result is
//! attested. Every value from the grid is escaped.

use crate::html::escape;
use crate::tools::view::{GridView, NodeView, ResultView};

/// The trust line under the counts: which policy the results were
/// checked against, and where its roots came from.
pub(super) fn trust_note(view: &GridView) -> String {
    match &view.trust {
        None => String::new(),
        Some(t) => match &t.error {
            Some(e) => format!(
                "<p id=\"trust\" class=\"bad\">Results not checked: {}</p>",
                escape(e)
            ),
            None => format!(
                "{tip}<p id=\"trust\" class=\"muted\">Results checked against policy version {v} of grid <code>{g}</code>, roots from {r}: {a} attested, {n} not, {u}{never}.</p>",
                tip = t.tip_refused.as_ref().map_or_else(String::new, |why| format!(
                    "<p id=\"policy-refused\" class=\"bad\">The grid's newest policy is refused: {}</p>",
                    escape(why)
                )),
                v = t.policy_version.unwrap_or_default(),
                g = escape(&t.grid_id),
                r = escape(&t.roots),
                a = t.attested,
                n = t.not_attested,
                u = crate::tools::text::unchecked_words(t.unchecked),
                never = crate::tools::text::never_ran_words(t.never_ran),
            ),
        },
    }
}

/// A node's key: its fingerprint, what the policy says of it, and of the
/// record it signed.
pub(super) fn key_cell(n: &NodeView) -> String {
    let Some(k) = &n.key else {
        return "<span class=\"muted\">none</span>".into();
    };
    let record = (n.record_problem.as_ref())
        .map(|p| format!("record {p}: not counted by nodes that enforce"));
    let bad = [n.key_problem.as_ref(), record.as_ref()]
        .into_iter()
        .flatten();
    let bad: String = bad
        .map(|p| format!(" <span class=\"bad\">{}</span>", escape(p)))
        .collect();
    format!("<code>{}</code>{bad}", escape(k))
}

/// Whether a result is attested: by which node, or why not.
pub(super) fn attested_cell(r: &ResultView) -> String {
    match (r.trust.as_deref(), &r.attested_by) {
        (Some("attested"), Some(node)) if r.task_signed == Some(false) => format!(
            "<span class=\"warn\" title=\"the task was not signed\">by {} (task not signed)</span>",
            escape(node)
        ),
        (Some("attested"), Some(node)) => {
            format!("<span class=\"ok\">by {}</span>", escape(node))
        }
        (Some(code), _) => format!(
            "<span class=\"{}\" title=\"{}\">{}</span>",
            match code {
                crate::tools::verify::UNCHECKED => "warn",
                crate::tools::verify::NEVER_RAN => "muted",
                _ => "bad",
            },
            escape(r.trust_error.as_deref().unwrap_or("")),
            escape(code)
        ),
        (None, _) => String::new(),
    }
}
