//! Node records: `nodes/<id>.json`, written at registration and with every
//! heartbeat. Other nodes and the repo tools read `last_heartbeat` to decide
//! whether this node's claims are orphaned.

use serde::{Deserialize, Serialize};

use super::Id;

/// The most labels a node's configuration may give it (`labels`), and so
/// the most it may be exclusive to. With the three it detects and the most
/// slots ([`MAX_SLOTS`]), its record stays well under what peers read of
/// one ([`super::layout::MAX_NODE_RECORD_BYTES`]): 35 KB of 64 at most,
/// escapes and all. A sweep's node with 1000 labels wrote 72 KB, which its
/// peers read as no record at all: no live node served its tasks.
pub const MAX_CONFIGURED_LABELS: usize = 64;

/// The most slots a node may run (`concurrency`): its record lists the
/// task each runs.
pub const MAX_SLOTS: u32 = 256;

/// The most bytes of why a node is unhealthy that its record keeps: the
/// engine's own words, which a record must not grow without bound.
pub const MAX_PROBLEM_BYTES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    Idle,
    Busy,
    Draining,
    /// The engine failed: the node claims nothing until it recovers.
    Unhealthy,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: Id,
    pub status: NodeStatus,
    pub last_heartbeat: String,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub engine: String,
    #[serde(default)]
    pub concurrency: u32,
    #[serde(default)]
    pub running: Vec<String>,
    #[serde(default)]
    pub tasks_completed: u64,
    #[serde(default)]
    pub tasks_failed: u64,
    /// How long its recent tasks took, in milliseconds, as it measured them
    /// (a weighted mean): a node that has timed none of its own sizes its
    /// share of a drain by it (`service::share::participants`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub task_ms: Option<u64>,
    /// The lowest level (priority with age) among the tasks it holds,
    /// running or waiting: work not done that the queue does not show, so
    /// that a burst of higher work queued alone is not taken for the
    /// lowest work there is (`service::sync::claim`, `level_quotas`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub holds_level: Option<u8>,
    /// How long, from `last_heartbeat`, the work it holds (running and
    /// claimed ahead) keeps it busy, as it reckons by its measured task
    /// length: a peer holding claims it would start later than that hands
    /// them back for it (`service::share::give_back`). None: it cannot
    /// tell (nothing timed yet).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub busy_ms: Option<u64>,
    /// It starts claims a peer makes for it while it is idle, and answers
    /// them within a minute (PROTOCOL.md, Assigned claims). Absent (an
    /// older worker, or one that checks what it runs by policy or budget):
    /// nobody claims for it.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub takes_assigned: bool,
    /// When a peer's reap found a claim made for it unanswered past its
    /// `answer_by` and marked it as taking no more (`takes_assigned:
    /// false`). Never written by the node itself: its own next write of
    /// the record clears it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unanswered_at: Option<String>,
    /// When a peer's reap found a claim of its past its deadline (the node
    /// dead, hung or cut off, its record still fresh) and marked it as
    /// taking no claims made for it, as for `unanswered_at`: holding
    /// nothing after the reap, it looked run dry and was claimed for
    /// again, a minute each time. Its own next write clears it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub overdue_at: Option<String>,
    /// Why the node is unhealthy, when it is.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub problem: Option<String>,
    /// Its labels, configured and detected (`arch=`, `os=`, `engine=`): it
    /// runs tasks that require a subset of them. A record without them
    /// (an older worker) serves only tasks that require nothing.
    #[serde(default)]
    pub labels: Vec<String>,
    /// The labels it is exclusive to: it takes only tasks that require
    /// every one of them.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub exclusive: Vec<String>,
    /// Why it takes no work for now (its volunteer's limits: a cap reached,
    /// quiet hours), and until when.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub paused: Option<String>,
    /// The longest `timeout_seconds` it takes (`tasks.max_timeout_seconds`):
    /// a node with a shorter limit leaves a longer task to it. Absent (an
    /// older worker): the default, 3600.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub max_timeout_seconds: Option<u64>,
    /// The public key this node signs its results with (`ssh-ed25519
    /// AAAA…`), for the grid's owner to list in the policy. Only the
    /// policy says whether it counts.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node_key: Option<String>,
}

impl NodeRecord {
    /// A record with what the orphan rule reads (status and heartbeat) and
    /// the rest empty.
    pub fn new(node_id: Id, status: NodeStatus, last_heartbeat: String) -> NodeRecord {
        NodeRecord {
            node_id,
            status,
            last_heartbeat,
            started_at: String::new(),
            version: String::new(),
            hostname: String::new(),
            engine: String::new(),
            concurrency: 1,
            running: Vec::new(),
            tasks_completed: 0,
            tasks_failed: 0,
            task_ms: None,
            holds_level: None,
            busy_ms: None,
            takes_assigned: false,
            unanswered_at: None,
            overdue_at: None,
            problem: None,
            labels: Vec::new(),
            exclusive: Vec::new(),
            paused: None,
            max_timeout_seconds: None,
            node_key: None,
        }
    }

    /// `problem` as the record keeps it: at most [`MAX_PROBLEM_BYTES`], cut
    /// on a character and marked as cut.
    pub fn problem_of(problem: &str) -> String {
        if problem.len() <= MAX_PROBLEM_BYTES {
            return problem.to_owned();
        }
        let end = problem.floor_char_boundary(MAX_PROBLEM_BYTES);
        format!("{}…", &problem[..end])
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        super::claim::pretty(&serde_json::to_value(self).expect("node records always serialise"))
    }

    pub fn parse(bytes: &[u8]) -> Result<NodeRecord, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Is this node alive at `now`: idle or busy, with a heartbeat younger
    /// than `stale_after`? (It may be paused by its limits all the same.)
    pub fn is_live(&self, now: crate::time::Timestamp, stale_after: chrono::Duration) -> bool {
        matches!(self.status, NodeStatus::Idle | NodeStatus::Busy) && self.beats(now, stale_after)
    }

    /// Is this node still running at `now`: not stopped, with a heartbeat
    /// younger than `stale_after` (it may be draining, or its engine down)?
    pub fn is_up(&self, now: crate::time::Timestamp, stale_after: chrono::Duration) -> bool {
        self.status != NodeStatus::Stopped && self.beats(now, stale_after)
    }

    /// Is its heartbeat younger than `stale_after` at `now`? One dated
    /// beyond any clock's skew is no heartbeat: a record forged to stay
    /// live for ever would be claimed for, and wait for, for ever.
    fn beats(&self, now: crate::time::Timestamp, stale_after: chrono::Duration) -> bool {
        crate::time::parse(&self.last_heartbeat)
            .is_some_and(|t| t + stale_after >= now && t <= now + crate::time::MAX_CLOCK_SKEW)
    }

    /// Has it been heard from within `stale_after` at `now`, whatever its
    /// status (a node draining, or stopped for a restart, comes back)?
    pub fn heard_within(&self, now: crate::time::Timestamp, stale_after: chrono::Duration) -> bool {
        self.beats(now, stale_after)
    }

    /// Is this node taking work at `now`: alive, and not paused by its
    /// volunteer's limits?
    pub fn takes_work(&self, now: crate::time::Timestamp, stale_after: chrono::Duration) -> bool {
        self.is_live(now, stale_after) && self.paused.is_none()
    }

    /// Its labels, for routing ([`crate::grid::schedule::NodeLabels`]).
    pub fn node_labels(&self) -> crate::grid::schedule::NodeLabels {
        crate::grid::schedule::NodeLabels::from_record(&self.labels, &self.exclusive)
    }
}

/// How long a node record may stay silent before a reap removes it: a
/// month. A node back after that registers again; its counts start anew.
pub const RECORD_KEPT_DAYS: i64 = 30;

/// Why a file in `nodes/` is no node's record and goes at a reap, if it
/// is none: a push of 100,000 junk names (1.2 MB) made every node's every
/// sync ten times slower, fetching, listing and writing again a 6.9 MB
/// tree. `name` is the file's name, `bytes` its content (None: not a
/// regular file, or over the read cap). Kept: anything every version
/// writes (`node_id` as its file says, `status`, `last_heartbeat`), fields
/// of a later version too, heard from within [`RECORD_KEPT_DAYS`].
pub fn junk_record(
    name: &str,
    bytes: Option<&[u8]>,
    now: crate::time::Timestamp,
) -> Option<String> {
    let Some(stem) = super::id::json_stem(name).filter(|s| Id::parse(s).is_ok()) else {
        return Some("not named <node id>.json".into());
    };
    let Some(bytes) = bytes else {
        return Some("not a file no bigger than a record may be".into());
    };
    let record: serde_json::Map<String, serde_json::Value> = match serde_json::from_slice(bytes) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => return Some("not a JSON object".into()),
    };
    let text = |k: &str| record.get(k).and_then(serde_json::Value::as_str);
    if text("node_id") != Some(stem) || text("status").is_none() {
        return Some("no `node_id` naming its file, or no `status`".into());
    }
    let heard = text("last_heartbeat").and_then(crate::time::parse);
    match heard {
        None => Some("no `last_heartbeat` that is a time".into()),
        Some(t) if now - t > chrono::Duration::days(RECORD_KEPT_DAYS) => {
            Some(format!("silent for more than {RECORD_KEPT_DAYS} days"))
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::label::MAX_LABEL_LEN;
    use crate::grid::layout::MAX_NODE_RECORD_BYTES;

    /// A heartbeat counts from its time to `stale_after` after it, and
    /// not at all when dated beyond any clock's skew from now: a record
    /// forged in year 9999 is no live node to claim for.
    #[test]
    fn a_heartbeat_far_in_the_future_is_none() {
        let now = crate::time::parse("2026-12-05T12:00:00.000Z").unwrap();
        let stale = chrono::Duration::hours(2);
        let at = |hb: &str| NodeRecord::new(Id::parse("n").unwrap(), NodeStatus::Idle, hb.into());
        assert!(at("2026-12-05T10:00:00.000Z").is_live(now, stale));
        assert!(!at("2026-12-05T09:59:59.999Z").is_live(now, stale));
        assert!(
            at("2026-12-05T13:00:00.000Z").is_live(now, stale),
            "an hour fast"
        );
        assert!(!at("2026-12-05T13:00:00.001Z").is_live(now, stale));
        assert!(!at("9999-12-31T23:59:59.999Z").is_up(now, stale));
    }

    /// `n` distinct strings of `len` characters that JSON escapes to six
    /// bytes each where it can (a label cannot hold such characters; the
    /// other text may).
    fn long(prefix: &str, n: usize, len: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                let head = format!("{prefix}{i}-");
                format!("{head}{}", "x".repeat(len - head.len()))
            })
            .collect()
    }

    #[test]
    fn the_largest_record_the_configuration_allows_is_read_by_peers() {
        let id = |s: String| Id::parse(&s).unwrap();
        let mut r = NodeRecord::new(
            id("n".repeat(crate::grid::id::MAX_LEN)),
            NodeStatus::Unhealthy,
            "2026-11-30T10:00:00.000Z".into(),
        );
        r.started_at = r.last_heartbeat.clone();
        r.version = "999.999.999-really-long".into();
        // Linux's HOST_NAME_MAX.
        r.hostname = "h".repeat(64);
        r.engine = "podman".into();
        r.concurrency = MAX_SLOTS;
        r.running = long("t", MAX_SLOTS as usize, crate::grid::id::MAX_LEN);
        r.tasks_completed = u64::MAX;
        r.tasks_failed = u64::MAX;
        r.task_ms = Some(u64::MAX);
        r.holds_level = Some(99);
        r.busy_ms = Some(u64::MAX);
        r.takes_assigned = true;
        r.unanswered_at = Some(r.last_heartbeat.clone());
        r.overdue_at = Some(r.last_heartbeat.clone());
        // Control characters: six bytes each in JSON.
        r.problem = Some(NodeRecord::problem_of(&"\u{1}".repeat(10_000)));
        let mut labels = long("l", MAX_CONFIGURED_LABELS, MAX_LABEL_LEN);
        r.exclusive = labels.clone();
        labels.extend(["arch=amd64", "os=linux", "engine=podman"].map(String::from));
        r.labels = labels;
        r.paused = Some(format!(
            "at its limit of {} s of task time an hour: its tasks take about {} s each, more than an hour allows until 2026-11-30T11:00:00.000Z",
            u64::MAX,
            u64::MAX
        ));
        r.node_key = Some(format!("sk-ssh-ed25519@openssh.com {}", "A".repeat(200)));
        r.max_timeout_seconds = Some(u64::MAX);
        let bytes = r.to_bytes();
        assert!(
            (bytes.len() as u64) < MAX_NODE_RECORD_BYTES * 3 / 4,
            "{} bytes, against a cap of {MAX_NODE_RECORD_BYTES} on reading one",
            bytes.len()
        );
        assert_eq!(NodeRecord::parse(&bytes).unwrap(), r);
    }

    #[test]
    fn a_long_problem_is_cut_on_a_character() {
        assert_eq!(NodeRecord::problem_of("engine down"), "engine down");
        let cut = NodeRecord::problem_of(&"é".repeat(MAX_PROBLEM_BYTES));
        assert!(cut.ends_with('…') && cut.len() <= MAX_PROBLEM_BYTES + '…'.len_utf8());
    }

    #[test]
    fn junk_records_are_told_from_records_of_any_version() {
        let now = crate::time::parse("2026-12-06T12:00:00Z").unwrap();
        let rec = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
        let fresh = rec(
            serde_json::json!({"node_id": "n1", "status": "busy", "last_heartbeat": "2026-12-06T11:00:00Z", "a_later_field": [1]}),
        );
        assert_eq!(junk_record("n1.json", Some(&fresh), now), None);
        let stopped = rec(
            serde_json::json!({"node_id": "n1", "status": "stopped", "last_heartbeat": "2026-11-10T11:00:00Z"}),
        );
        assert_eq!(
            junk_record("n1.json", Some(&stopped), now),
            None,
            "silent 26 days: kept"
        );
        let old = rec(
            serde_json::json!({"node_id": "n1", "status": "stopped", "last_heartbeat": "2026-10-01T00:00:00Z"}),
        );
        assert!(
            junk_record("n1.json", Some(&old), now)
                .unwrap()
                .contains("silent")
        );
        for (name, bytes) in [
            ("n1.json", Some(b"junk 1".as_slice())),
            ("n1.json", Some(b"[]".as_slice())),
            (
                "n1.json",
                Some(
                    br#"{"node_id":"n2","status":"busy","last_heartbeat":"2026-12-06T11:00:00Z"}"#
                        .as_slice(),
                ),
            ),
            (
                "n1.json",
                Some(br#"{"node_id":"n1","last_heartbeat":"2026-12-06T11:00:00Z"}"#.as_slice()),
            ),
            (
                "n1.json",
                Some(
                    br#"{"node_id":"n1","status":"busy","last_heartbeat":"yesterday"}"#.as_slice(),
                ),
            ),
            ("n1.json", None),
            ("n1.txt", Some(fresh.as_slice())),
            ("-n1.json", Some(fresh.as_slice())),
        ] {
            assert!(junk_record(name, bytes, now).is_some(), "{name} {bytes:?}");
        }
    }
}
