//! HTML for the dashboard: one self-contained page (inline CSS, an inline
//! SVG chart, no scripts, no external assets), so it renders from GitHub
//! Pages or a file:// URL alike. Every value from the grid is escaped (the
//! crate's one rule for grid text, then HTML): task ids are safe by
//! construction, but errors, host names, file names and output are not.

use std::fmt::Write;

use crate::html::{STYLE, escape, escape_block};

use super::view::{GridView, NODES_SHOWN, ResultView, human_age};

mod trust;
use trust::{attested_cell, key_cell, trust_note};

fn status_class(status: &str) -> &'static str {
    match status {
        "completed" | "idle" | "busy" => "ok",
        "draining" | "stopped" => "warn",
        _ => "bad",
    }
}

/// The dashboard page for `view`.
pub fn dashboard(view: &GridView, title: &str) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width\"><title>{t}</title><style>{STYLE}</style></head><body>\
<h1>{t}</h1><p class=\"muted\">Generated {g} from commit <code>{c}</code>. Data: <a href=\"grid.json\">grid.json</a>.</p>",
        t = escape(title),
        g = escape(&view.generated_at),
        c = escape(&view.commit[..view.commit.len().min(12)]),
    );
    let _ = write!(
        h,
        "<div class=\"cards\"><div class=\"card\" id=\"count-nodes\"><b>{}</b>nodes</div>\
<div class=\"card\" id=\"count-queue\"><b>{}</b>queued</div>\
<div class=\"card\" id=\"count-waiting\"><b>{}</b>waiting</div>\
<div class=\"card\" id=\"count-running\"><b>{}</b>running</div>\
<div class=\"card\" id=\"count-ahead\"><b>{}</b>claimed ahead</div>\
<div class=\"card\" id=\"count-completed\"><b>{}</b>completed</div>\
<div class=\"card\" id=\"count-failed\"><b>{}</b>failed</div>{}</div>",
        view.nodes.len(),
        view.queue.len(),
        view.waiting.len(),
        view.started_claims(),
        view.running.len() - view.started_claims(),
        view.completed,
        view.failed,
        match &view.trust {
            Some(t) if t.error.is_none() => format!(
                "<div class=\"card\" id=\"count-attested\"><b>{}/{}</b>listed results attested</div>",
                t.attested,
                t.checked - t.never_ran
            ),
            _ => String::new(),
        }
    );
    h.push_str(&trust_note(view));
    if let Some(a) = view
        .archived
        .as_ref()
        .filter(|a| a.completed + a.failed > 0)
    {
        h.push_str(&format!(
            "<p class=\"muted\" id=\"archived\">And {} completed, {} failed on branch {}, archived: not in these figures nor the chart.</p>",
            a.completed,
            a.failed,
            escape(&a.branch)
        ));
    }

    h.push_str("<h2>Throughput</h2>");
    h.push_str(&chart(view));

    h.push_str("<h2>Nodes</h2><table id=\"nodes\"><tr><th>node</th><th>status</th><th>last heartbeat</th><th>running</th><th>done</th><th>failed</th><th>labels</th><th>host</th><th>engine</th><th>version</th><th>key</th></tr>");
    for n in view.nodes_in_order().into_iter().take(NODES_SHOWN) {
        let status = match (&n.problem, &n.error) {
            (_, Some(e)) => format!("<span class=\"bad\">{}</span>", escape(e)),
            (Some(p), None) => format!(
                "<span class=\"bad\">{}</span>: {}",
                escape(&n.status),
                escape(p)
            ),
            (None, None) if n.stale => format!(
                "<span class=\"bad\">{} (stale heartbeat)</span>",
                escape(&n.status)
            ),
            (None, None) => format!(
                "<span class=\"{}\">{}</span>",
                status_class(&n.status),
                escape(&n.status)
            ),
        };
        let status = match &n.paused {
            Some(p) if n.error.is_none() => format!(
                "{status} <span class=\"warn paused\">paused: {}</span>",
                escape(p)
            ),
            _ => status,
        };
        let status = match &n.overdue_at {
            Some(at) if n.error.is_none() => format!(
                "{status} <span class=\"warn overdue\" title=\"presumed dead or cut off; no node claims for it until it writes its record again\">left a claim past its deadline ({})</span>",
                escape(at)
            ),
            _ => status,
        };
        let status = match &n.unanswered_at {
            Some(at) if n.error.is_none() => format!(
                "{status} <span class=\"warn unanswered\" title=\"no node claims for it until it writes its record again\">left a claim made for it unanswered ({})</span>",
                escape(at)
            ),
            _ => status,
        };
        let labels = if n.exclusive.is_empty() {
            escape(&n.labels.join(", "))
        } else {
            format!(
                "{} <span class=\"muted\">(only tasks that require {})</span>",
                escape(&n.labels.join(", ")),
                escape(&n.exclusive.join(", "))
            )
        };
        let _ = write!(
            h,
            "<tr class=\"node\" data-node=\"{id}\"><td>{id}</td><td>{status}</td><td class=\"heartbeat\">{hb}</td><td class=\"node-running\">{run}</td><td>{done}</td><td>{failed}</td><td class=\"labels\">{labels}</td><td>{host}</td><td>{engine}</td><td>{ver}</td><td class=\"node-key\">{key}</td></tr>",
            id = escape(&n.node_id),
            hb = heartbeat_cell(&n.last_heartbeat, n.heartbeat_age_s),
            run = running_cell(&n.running),
            done = n.tasks_completed,
            failed = n.tasks_failed,
            host = escape(&n.hostname),
            engine = escape(&n.engine),
            ver = escape(&n.version),
            key = key_cell(n),
        );
    }
    more_rows(&mut h, view.nodes.len(), NODES_SHOWN, 11);
    none_row(&mut h, view.nodes.is_empty(), 11, "no node has registered");
    h.push_str("</table>");

    h.push_str("<h2>Running</h2><table id=\"running\"><tr><th>task</th><th>priority</th><th>node</th><th>state</th><th>claimed</th><th>attempt</th><th>deadline</th></tr>");
    for r in view.running.iter().take(NODES_SHOWN) {
        let _ = write!(
            h,
            "<tr class=\"running\" data-task=\"{id}\"><td>{id}</td><td>{prio}</td><td>{node}{by}</td><td class=\"claim-state\">{state}</td><td class=\"claimed\">{age} ago</td><td>{att}</td><td>{dl}{err}</td></tr>",
            id = escape(&r.task_id),
            prio = r.priority.map(|p| p.to_string()).unwrap_or_default(),
            // By its node's record, as old as the node's last commit.
            state = match r.started {
                true => "running",
                false => "claimed ahead",
            },
            node = escape(&r.node_id),
            by = r
                .assigned_by
                .as_deref()
                .map(|b| format!(
                    " <span class=\"note\">(claimed for it by {}, not answered yet)</span>",
                    escape(b)
                ))
                .unwrap_or_default(),
            age = human_age(r.age_s),
            att = r.attempt,
            dl = escape(&r.deadline),
            err = r
                .error
                .as_deref()
                .map(|e| format!(" <span class=\"bad\">{}</span>", escape(e)))
                .unwrap_or_default(),
        );
    }
    more_rows(&mut h, view.running.len(), NODES_SHOWN, 7);
    none_row(&mut h, view.running.is_empty(), 7, "nothing is running");
    h.push_str("</table>");

    if !view.unservable.is_empty() {
        h.push_str("<h2>Cannot run now</h2><table id=\"unservable\"><tr><th>requires</th><th>tasks</th><th>why</th></tr>");
        for u in view.unservable.iter().take(QUEUE_SHOWN) {
            let _ = write!(
                h,
                "<tr class=\"unservable\"><td>{}</td><td>{}: {}</td><td class=\"bad\">{}</td></tr>",
                labels_cell(&u.requires),
                u.tasks,
                escape(&u.task_ids.join(", ")),
                escape(&u.why),
            );
        }
        more_rows(&mut h, view.unservable.len(), QUEUE_SHOWN, 3);
        h.push_str("</table>");
    }

    h.push_str(
        "<h2>Queue</h2><p class=\"muted\">In the order nodes take it: by priority (with the levels gained by waiting), submitters in turn.</p>\
<table id=\"queue\"><tr><th>task</th><th>priority</th><th>requires</th><th>submitter</th><th>queued</th></tr>",
    );
    for q in view.queue.iter().take(QUEUE_SHOWN) {
        let priority = match (q.priority, q.effective_priority) {
            (None, _) => "<span class=\"muted\">in the inbox, not filed yet</span>".to_owned(),
            (Some(p), Some(e)) if e != p => format!("{p} <span class=\"muted\">(now {e})</span>"),
            (Some(p), _) => p.to_string(),
        };
        let requires = requires_cell(&q.requires, q.unservable.as_deref());
        let _ = write!(
            h,
            "<tr class=\"queued\" data-task=\"{id}\"><td>{id}</td><td class=\"priority\">{priority}</td><td class=\"requires\">{requires}</td><td>{by}</td><td>{at}</td></tr>",
            id = escape(&q.task_id),
            by = escape(q.submitter.as_deref().unwrap_or("")),
            at = escape(q.queued_at.as_deref().unwrap_or("")),
        );
    }
    more_rows(&mut h, view.queue.len(), QUEUE_SHOWN, 5);
    none_row(&mut h, view.queue.is_empty(), 5, "the queue is empty");
    h.push_str("</table>");

    if !view.misplaced.is_empty() {
        h.push_str("<h2>No place for a task</h2><p class=\"muted\">Entries below tasks/lanes/ whose path says no priority, class or batch: the next node to claim moves each to tasks/failed.</p><table id=\"misplaced\"><tr><th>entry</th><th>why</th></tr>");
        for m in view.misplaced.iter().take(QUEUE_SHOWN) {
            let _ = write!(
                h,
                "<tr class=\"misplaced\"><td>{}</td><td class=\"bad\">{}</td></tr>",
                escape(&m.path),
                escape(&m.why)
            );
        }
        h.push_str("</table>");
    }

    h.push_str("<h2>Waiting for other tasks</h2><table id=\"waiting\"><tr><th>task</th><th>waits for</th><th>priority</th><th>requires</th></tr>");
    for w in view.waiting.iter().take(QUEUE_SHOWN) {
        let waits = match &w.error {
            Some(e) => format!("<span class=\"bad\">{}</span>", escape(e)),
            None if w.fails.is_some() => {
                format!("<span class=\"bad\">{}</span>", escape(&w.waits()))
            }
            None => match &w.held {
                Some(held) if w.waits_for.is_empty() => {
                    format!("<span class=\"muted\">{}</span>", escape(held))
                }
                _ => escape(&w.waits_for.join(", ")),
            },
        };
        let waits = match &w.behind {
            Some(behind) => format!("{waits} <span class=\"bad\">{}</span>", escape(behind)),
            None => waits,
        };
        let _ = write!(
            h,
            "<tr class=\"waiting\" data-task=\"{id}\"><td>{id}</td><td class=\"waits-for\">{waits}</td><td>{p}</td><td>{r}</td></tr>",
            id = escape(&w.task_id),
            p = w.priority.map(|p| p.to_string()).unwrap_or_default(),
            r = requires_cell(&w.requires, w.unservable.as_deref()),
        );
    }
    none_row(
        &mut h,
        view.waiting.is_empty(),
        4,
        "no task waits for another",
    );
    h.push_str("</table>");

    let attest = view.trust.as_ref().is_some_and(|t| t.error.is_none());
    h.push_str("<h2>Recent results</h2>");
    results_table(
        &mut h,
        "recent",
        &view.recent,
        false,
        attest,
        "no results yet",
    );
    h.push_str("<h2>Failures</h2>");
    results_table(
        &mut h,
        "failures",
        &view.failures,
        true,
        attest,
        "no failures",
    );
    h.push_str("</body></html>\n");
    h
}

/// Rows of a table's kind shown, at most (a queue, the classes no node
/// serves, claims): each is anyone's to fill.
const QUEUE_SHOWN: usize = 200;

/// A last row saying how many of `len` were not shown (`shown` were).
fn more_rows(h: &mut String, len: usize, shown: usize, columns: usize) {
    if len > shown {
        let _ = write!(
            h,
            "<tr><td colspan=\"{columns}\" class=\"muted\">and {} more</td></tr>",
            len - shown
        );
    }
}

/// A row saying the table is empty, rather than bare headers that read
/// as a page that failed to load.
fn none_row(h: &mut String, empty: bool, columns: usize, what: &str) {
    if empty {
        let _ = write!(
            h,
            "<tr class=\"none\"><td colspan=\"{columns}\" class=\"muted\">none: {what}</td></tr>"
        );
    }
}

/// The heartbeat as a time, and its age when the page was made: a static
/// page read an hour later must not claim "6s ago".
fn heartbeat_cell(last_heartbeat: &str, age_s: Option<i64>) -> String {
    match crate::time::parse(last_heartbeat) {
        Some(t) => format!(
            "<time datetime=\"{iso}\">{shown}</time> <span class=\"muted\">({age} old when generated)</span>",
            iso = escape(last_heartbeat),
            shown = t.format("%Y-%m-%d %H:%M:%S UTC"),
            age = human_age(age_s),
        ),
        None if last_heartbeat.is_empty() => "<span class=\"muted\">none</span>".into(),
        None => format!(
            "<span class=\"bad\">unreadable: {}</span>",
            escape(last_heartbeat)
        ),
    }
}

/// A task's labels, and what the live nodes lack where none serves them.
fn requires_cell(requires: &[String], unservable: Option<&str>) -> String {
    match unservable {
        Some(why) => format!(
            "{} <span class=\"bad\">{}</span>",
            labels_cell(requires),
            escape(why)
        ),
        None => labels_cell(requires),
    }
}

/// Labels a task requires: `nothing` rather than a blank cell.
fn labels_cell(labels: &[String]) -> String {
    if labels.is_empty() {
        return "<span class=\"muted\">nothing</span>".into();
    }
    escape(&labels.join(", "))
}

/// How many tasks a node runs, and which: `0` rather than a blank cell.
fn running_cell(running: &[String]) -> String {
    if running.is_empty() {
        return "0".into();
    }
    format!("{}: {}", running.len(), escape(&running.join(", ")))
}

/// A duration as a person reads it: `2 ms`, `1.5 s`, `3 min 20 s`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

fn results_table(
    h: &mut String,
    id: &str,
    rows: &[ResultView],
    with_errors: bool,
    attest: bool,
    none: &str,
) {
    let _ = write!(
        h,
        "<table id=\"{id}\"><tr><th>task</th><th>node</th><th>status</th><th>exit</th><th>finished</th><th>duration</th>{}{}</tr>",
        if attest { "<th>attested</th>" } else { "" },
        if with_errors {
            "<th>error</th><th>stderr (end)</th>"
        } else {
            ""
        }
    );
    for r in rows {
        let _ = write!(
            h,
            "<tr class=\"result\" data-task=\"{task}\" data-status=\"{st}\"{trust}><td>{task}</td><td>{node}</td><td class=\"{cls}\">{st}</td><td>{exit}</td><td>{ts}</td><td class=\"duration\">{dur}</td>",
            trust = r
                .trust
                .as_deref()
                .map(|t| format!(" data-trust=\"{}\"", escape(t)))
                .unwrap_or_default(),
            task = escape(&r.task_id),
            node = escape(&r.node_id),
            cls = status_class(&r.status),
            st = escape(&r.status),
            exit = r.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            ts = escape(&r.timestamp),
            dur = r.duration_ms.map(duration).unwrap_or_default(),
        );
        if attest {
            let _ = write!(h, "<td class=\"attested\">{}</td>", attested_cell(r));
        }
        if with_errors {
            let _ = write!(
                h,
                "<td class=\"error\"><pre>{}</pre></td><td class=\"stderr\"><pre>{}</pre></td>",
                escape_block(r.error.as_deref().unwrap_or("")),
                escape_block(r.stderr_tail.as_deref().unwrap_or(""))
            );
        }
        h.push_str("</tr>");
    }
    let columns = 6 + usize::from(attest) + if with_errors { 2 } else { 0 };
    none_row(h, rows.is_empty(), columns, none);
    h.push_str("</table>");
}

/// Results per bucket as stacked SVG bars: completed (green) under failed
/// (red), with the scale and the first and last bucket's time as labels.
fn chart(view: &GridView) -> String {
    let t = &view.throughput;
    if t.buckets.is_empty() {
        return "<p class=\"muted\" id=\"chart\">No results yet.</p>".into();
    }
    let (w, hgt, left, bottom) = (960.0_f64, 220.0_f64, 50.0_f64, 30.0_f64);
    let max = t
        .buckets
        .iter()
        .map(|b| b.completed + b.failed)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    // The time axis spans the whole width, one slot per bucket; a bar is at
    // most 40 px wide in the middle of its slot, so that a single bucket is
    // one bar, not a slab filling the chart.
    let slot = (w - left) / t.buckets.len() as f64;
    let bar_w = (slot - 2.0).clamp(1.0, 40.0);
    let plot_h = hgt - bottom - 10.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{hgt}\" role=\"img\" aria-label=\"results per {} s\">",
        t.bucket_s
    );
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"10\" x2=\"{left}\" y2=\"{y}\" stroke=\"#999\"/><line x1=\"{left}\" y1=\"{y}\" x2=\"{w}\" y2=\"{y}\" stroke=\"#999\"/>\
<text x=\"{tx}\" y=\"20\" font-size=\"11\" text-anchor=\"end\">{max}</text><text x=\"{tx}\" y=\"{y}\" font-size=\"11\" text-anchor=\"end\">0</text>",
        y = hgt - bottom,
        tx = left - 4.0,
    );
    for (i, b) in t.buckets.iter().enumerate() {
        let x = left + i as f64 * slot + (slot - bar_w) / 2.0;
        let ch = b.completed as f64 / max * plot_h;
        let fh = b.failed as f64 / max * plot_h;
        let base = hgt - bottom;
        let _ = write!(
            s,
            "<g><title>{start}: {c} completed, {f} failed</title><rect class=\"bar-ok\" x=\"{x:.1}\" y=\"{y1:.1}\" width=\"{bw:.1}\" height=\"{ch:.1}\" fill=\"#3c9a3c\"/><rect class=\"bar-bad\" x=\"{x:.1}\" y=\"{y2:.1}\" width=\"{bw:.1}\" height=\"{fh:.1}\" fill=\"#c83c3c\"/></g>",
            start = escape(&b.start),
            c = b.completed,
            f = b.failed,
            y1 = base - ch,
            y2 = base - ch - fh,
            bw = bar_w,
        );
    }
    // The axis runs from the first bar's start to the last bar's end, so
    // one bucket reads as the span it covers, not one minute twice.
    let minute = |ts: Option<crate::time::Timestamp>| {
        ts.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    let first_start = crate::time::parse(&t.buckets[0].start);
    let last_end = crate::time::parse(&t.buckets.last().expect("not empty").start)
        .map(|s| s + chrono::Duration::seconds(t.bucket_s));
    let _ = write!(
        s,
        "<text class=\"axis-start\" x=\"{left}\" y=\"{y}\" font-size=\"11\">{first}</text><text class=\"axis-end\" x=\"{w}\" y=\"{y}\" font-size=\"11\" text-anchor=\"end\">{last}</text></svg>\
<p class=\"muted\">Results per {} (green: completed, red: failed, timed out, invalid or abandoned).</p>",
        bucket_name(t.bucket_s),
        y = hgt - 8.0,
        first = escape(&minute(first_start)),
        last = escape(&minute(last_end)),
    );
    s
}

fn bucket_name(secs: i64) -> String {
    match secs {
        s if s % 86400 == 0 => format!("{} day(s)", s / 86400),
        s if s % 3600 == 0 => format!("{} hour(s)", s / 3600),
        s => format!("{} minute(s)", s / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<img src=x onerror='a'>&\""),
            "&lt;img src=x onerror=&#39;a&#39;&gt;&amp;&quot;"
        );
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(2), "2 ms");
        assert_eq!(duration(1500), "1.5 s");
        assert_eq!(duration(200_000), "3 min 20 s");
    }
}
