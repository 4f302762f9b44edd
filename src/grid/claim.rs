//! Claims: a task in `tasks/in_progress/` carries a `claim` block naming the
//! node that holds it. Writing the node id into the file also makes two
//! nodes' claims of one task different patches, so git can never merge them
//! away as "already upstream" (PROTOCOL.md, The transaction).

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::task::CLAIM_FIELD;
use super::task::{EntryKind, TaskRules};
use super::{Id, Task};
use crate::time::{self, Timestamp};

/// How long a node has to answer a claim a peer made for it. A node that
/// takes such claims (`takes_assigned` in its record) looks at the grid at
/// least every 15 s, so this is four looks and the answer's commit.
pub const ANSWER_WITHIN: chrono::Duration = chrono::Duration::seconds(60);

/// How long a node waits, at most, to answer a claim made for it with a
/// commit of its own: until then the answer rides with any commit it makes
/// (its results, a claim), a third of the time it has, so that a push
/// losing races for a while still answers in time.
pub const ANSWER_AFTER: chrono::Duration = chrono::Duration::seconds(20);

/// A claim made for a node and still unanswered this long after it was
/// made is late: a node that is well answers within [`ANSWER_AFTER`] and a
/// few lost races. Its node may be gone, and nobody claims more for it.
pub const ANSWER_LATE: chrono::Duration = chrono::Duration::seconds(30);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub node_id: Id,
    pub claimed_at: String,
    /// claimed_at + timeout + grace: past it, the claim is an orphan whatever
    /// the node's heartbeat says.
    pub deadline: String,
    pub attempt: u32,
    /// When the task arrived in the queue, as its place there said: its
    /// age, kept through the claim, so that a requeue puts it back in its
    /// batch and its priority counts from the same moment.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub queued_at: Option<String>,
    /// A claim made for an idle peer by another node (`assigned_by`), in
    /// the one commit that claims for both: the peer starts it when it
    /// next looks, and answers by taking these two fields out. Past
    /// `answer_by` unanswered, the claim is an orphan (the peer may be
    /// dead though its record looks fresh) and goes back to the queue with
    /// its attempt unchanged: as far as the grid knows, it never ran.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub assigned_by: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub answer_by: Option<String>,
    /// A claim a node with nothing to run took over from a busy peer that
    /// had not started it, as far as the peer's record said: that peer's
    /// claim (`node_id`, `claimed_at`). If the peer had started it after
    /// all, its result still lands, and ends this claim: the first result
    /// of the two runs is the task's one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub taken_from: Option<TakenFrom>,
}

/// The claim a claim was taken over from (`Claim::taken_from`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakenFrom {
    pub node_id: Id,
    pub claimed_at: String,
}

impl Claim {
    /// Is this `node`'s claim made at `claimed_at`, or one taken over from
    /// it?
    pub fn made_by(&self, node: &Id, claimed_at: &str) -> bool {
        (&self.node_id == node && self.claimed_at == claimed_at)
            || self
                .taken_from
                .as_ref()
                .is_some_and(|t| &t.node_id == node && t.claimed_at == claimed_at)
    }

    /// Made for this node by a peer, and not answered yet.
    pub fn unanswered(&self) -> bool {
        self.answer_by.is_some()
    }

    /// When, unanswered, it turns late ([`ANSWER_LATE`] after it was made,
    /// as its `answer_by` says); none if answered. An `answer_by` that
    /// cannot be read is late at once: nobody counts on that node.
    pub fn late_at(&self) -> Option<Timestamp> {
        let by = self.answer_by.as_deref()?;
        Some(
            time::parse(by)
                .map(|by| by - ANSWER_WITHIN + ANSWER_LATE)
                .unwrap_or(chrono::DateTime::UNIX_EPOCH),
        )
    }
}

/// A task as it sits in `in_progress/`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedTask {
    pub task: Task,
    pub claim: Claim,
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimFileError {
    #[error("claimed task is invalid: {0}")]
    Task(#[from] super::TaskError),
    #[error("field `claim` is missing")]
    NoClaim,
    #[error("field `claim` is malformed: {0}")]
    BadClaim(serde_json::Error),
}

impl ClaimedTask {
    pub fn new(task: Task, node: &Id, now: Timestamp, grace: chrono::Duration) -> ClaimedTask {
        let deadline = now + chrono::Duration::seconds(task.timeout_seconds as i64) + grace;
        let claim = Claim {
            node_id: node.clone(),
            claimed_at: time::format(now),
            deadline: time::format(deadline),
            attempt: task.attempt,
            queued_at: None,
            assigned_by: None,
            answer_by: None,
            taken_from: None,
        };
        ClaimedTask { task, claim }
    }

    /// The claim `by` makes for its idle peer `node`, which must answer
    /// within `answer_within`.
    pub fn assigned(
        task: Task,
        node: &Id,
        by: &Id,
        now: Timestamp,
        grace: chrono::Duration,
        answer_within: chrono::Duration,
    ) -> ClaimedTask {
        let mut c = ClaimedTask::new(task, node, now, grace);
        c.claim.assigned_by = Some(by.clone());
        c.claim.answer_by = Some(time::format(now + answer_within));
        c
    }

    /// The claim as its node answers it: its own from now on.
    pub fn answered(&self) -> ClaimedTask {
        let mut c = self.clone();
        c.claim.assigned_by = None;
        c.claim.answer_by = None;
        c
    }

    /// The claim of a task that arrived in the queue at `arrival`.
    pub fn arrived(mut self, arrival: Timestamp) -> ClaimedTask {
        self.claim.queued_at = Some(time::format(arrival));
        self
    }

    /// When the task arrived in the queue, to the minute, as the queue's
    /// order counts it: what its place there said, else its own
    /// `queued_at`, else (an older claim) when it was claimed.
    pub fn arrival(&self) -> Timestamp {
        let t = self
            .claim
            .queued_at
            .as_deref()
            .and_then(time::parse)
            .or_else(|| self.task.queued_at())
            .or_else(|| time::parse(&self.claim.claimed_at))
            .unwrap_or_else(time::now);
        super::layout::Batch::new(t, None).minute
    }

    /// Its priority as it counts at `now` (with its age).
    pub fn effective_priority(&self, now: Timestamp) -> u8 {
        super::schedule::effective_priority(self.task.priority(), self.arrival(), now)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut obj = self.task.to_json();
        obj.insert(
            CLAIM_FIELD.into(),
            serde_json::to_value(&self.claim).expect("a claim always serialises"),
        );
        pretty(&Value::Object(obj))
    }

    /// Read an `in_progress/` file back. `Task::parse` drops the claim block,
    /// so it is taken out first.
    pub fn parse(
        name: &str,
        bytes: &[u8],
        rules: &TaskRules,
    ) -> Result<ClaimedTask, ClaimFileError> {
        // A task already running may have been accepted under looser rules;
        // only its shape matters here, not today's limits.
        let lenient = TaskRules {
            max_timeout_seconds: u64::MAX,
            ..rules.clone()
        };
        let Ok(mut value) = serde_json::from_slice::<Value>(bytes) else {
            // Not JSON (empty, cut short, nested too deep): said as a task
            // file would be, not as a missing claim.
            return Err(Task::from_entry(name, EntryKind::File, bytes, &lenient)
                .err()
                .map_or(ClaimFileError::NoClaim, ClaimFileError::from));
        };
        let claim = value
            .get_mut(CLAIM_FIELD)
            .map(Value::take)
            .ok_or(ClaimFileError::NoClaim)?;
        let claim: Claim = serde_json::from_value(claim).map_err(ClaimFileError::BadClaim)?;
        let task = Task::from_entry(name, EntryKind::File, bytes, &lenient)?;
        Ok(ClaimedTask { task, claim })
    }

    /// The task as it goes back to the queue: claim removed, attempt set.
    pub fn requeued(&self, attempt: u32) -> Vec<u8> {
        let mut task = self.task.clone();
        task.attempt = attempt;
        pretty(&Value::Object(task.to_json()))
    }
}

/// Pretty JSON with a trailing newline: grid files are read by people in
/// GitHub's web view and diffed in pull requests.
pub fn pretty(v: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).expect("JSON values always serialise");
    out.push(b'\n');
    out
}

/// For tests across the crate: node `n1`'s claim of the task file
/// `{"task_id":id,"script":"true"<fields>}` (`fields` JSON, each with a
/// leading comma), made now.
#[cfg(test)]
pub(crate) fn claimed_for_test(id: &str, fields: &str) -> ClaimedTask {
    let bytes = format!(r#"{{"task_id":"{id}","script":"true"{fields}}}"#);
    let task = Task::from_entry(
        &format!("{id}.json"),
        EntryKind::File,
        bytes.as_bytes(),
        &TaskRules::default(),
    )
    .unwrap();
    ClaimedTask::new(
        task,
        &Id::parse("n1").unwrap(),
        time::now(),
        chrono::Duration::seconds(300),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_round_trips_and_names_the_node() {
        let rules = TaskRules::default();
        let task = Task::parse(
            br#"{"task_id":"t","script":"x","timeout_seconds":30,"k":1}"#,
            &rules,
        )
        .unwrap();
        let now = time::parse("2026-01-01T00:00:00Z").unwrap();
        let node = Id::parse("n1").unwrap();
        let c = ClaimedTask::new(task, &node, now, chrono::Duration::seconds(60));
        assert_eq!(c.claim.deadline, "2026-01-01T00:01:30.000Z");
        let back = ClaimedTask::parse("t.json", &c.to_bytes(), &rules).unwrap();
        assert_eq!(back, c);
        let other = ClaimedTask::new(
            c.task.clone(),
            &Id::parse("n2").unwrap(),
            now,
            chrono::Duration::zero(),
        );
        assert_ne!(other.to_bytes(), c.to_bytes());
        let requeued: Value = serde_json::from_slice(&c.requeued(2)).unwrap();
        assert_eq!(requeued["attempt"], 2);
        assert_eq!(requeued["k"], 1);
        assert!(requeued.get("claim").is_none());
    }

    #[test]
    fn an_assigned_claim_round_trips_and_is_answered_by_dropping_its_fields() {
        let rules = TaskRules::default();
        let task = Task::parse(
            br#"{"task_id":"t","script":"x","timeout_seconds":30,"k":1}"#,
            &rules,
        )
        .unwrap();
        let now = time::parse("2026-01-01T00:00:00Z").unwrap();
        let (peer, me) = (Id::parse("p").unwrap(), Id::parse("n1").unwrap());
        let c = ClaimedTask::assigned(
            task,
            &peer,
            &me,
            now,
            chrono::Duration::seconds(60),
            chrono::Duration::seconds(45),
        );
        assert!(c.claim.unanswered());
        assert_eq!(c.claim.node_id, peer);
        assert_eq!(
            c.claim.answer_by.as_deref(),
            Some("2026-01-01T00:00:45.000Z")
        );
        let back = ClaimedTask::parse("t.json", &c.to_bytes(), &rules).unwrap();
        assert_eq!(back, c);
        let answered = back.answered();
        assert!(!answered.claim.unanswered());
        let v: Value = serde_json::from_slice(&answered.to_bytes()).unwrap();
        assert!(v["claim"].get("assigned_by").is_none());
        assert!(v["claim"].get("answer_by").is_none());
        assert_eq!(v["k"], 1);
        assert_eq!(v["claim"]["claimed_at"], "2026-01-01T00:00:00.000Z");
    }

    #[test]
    fn a_file_without_a_claim_is_an_error() {
        let e = ClaimedTask::parse(
            "t.json",
            br#"{"task_id":"t","script":"x","timeout_seconds":30}"#,
            &TaskRules::default(),
        )
        .unwrap_err();
        assert!(matches!(e, ClaimFileError::NoClaim));
    }

    /// A file that is no JSON at all says so, as a task file would, and
    /// not that its claim is missing.
    #[test]
    fn a_file_that_is_not_json_says_so() {
        for bytes in [&br#"{"task_id":"c10""#[..], b"", &[b'['; 100_000][..]] {
            let e = ClaimedTask::parse("c10.json", bytes, &TaskRules::default()).unwrap_err();
            assert!(matches!(e, ClaimFileError::Task(_)), "{e}");
        }
    }
}
