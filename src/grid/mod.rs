//! The grid's data model and rules, as pure functions over bytes and values:
//! where files live, what a valid task is, what a claim, a result and a node
//! record say, and which claims are orphaned. Nothing here runs a process.

pub mod archive;
pub mod claim;
pub mod deps;
pub mod held;
pub mod id;
pub mod label;
pub mod layout;
pub mod node;
pub mod orphan;
pub mod result;
pub mod scarcity;
pub mod schedule;
pub mod task;

pub use claim::Claim;
pub use id::{Id, IdError};
pub use label::{Class, Label};
pub use node::{NodeRecord, NodeStatus};
pub use result::{ResultStatus, TaskResult};
pub use task::{Task, TaskError, TaskRules};
