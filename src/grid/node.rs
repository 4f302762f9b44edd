//! Node records: `nodes/<id>.json`, written at registration and with every
//! heartbeat. Other nodes and the repo tools read `last_heartbeat` to decide
//! whether this node's claims are orphaned.

use serde::{Deserialize, Serialize};

use super::Id;

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
    /// Why the node is unhealthy, when it is.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub problem: Option<String>,
}

impl NodeRecord {
    pub fn to_bytes(&self) -> Vec<u8> {
        super::claim::pretty(&serde_json::to_value(self).expect("node records always serialise"))
    }

    pub fn parse(bytes: &[u8]) -> Result<NodeRecord, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Is this node taking work at `now`: idle or busy, with a heartbeat
    /// younger than `stale_after`?
    pub fn takes_work(&self, now: crate::time::Timestamp, stale_after: chrono::Duration) -> bool {
        matches!(self.status, NodeStatus::Idle | NodeStatus::Busy)
            && crate::time::parse(&self.last_heartbeat).is_some_and(|t| t + stale_after >= now)
    }
}
