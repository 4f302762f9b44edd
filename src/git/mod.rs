//! Everything that touches git, through the git CLI.
//!
//! - [`command`]: one git invocation, with a timeout, a fixed environment and
//!   credentials passed only through the child's environment.
//! - [`repo`]: the worker's private clone: open, fetch, maintain.
//! - [`read`]: listings and bounded reads of blobs (`ls-tree`, `cat-file`).
//! - [`batch`]: the clone's kept `cat-file` processes, which `read` uses;
//!   [`walk`]: a directory at any depth through them.
//! - [`write`]: trees, commits (`fast-import`) and pushes.
//! - [`failure`]: a failed fetch or push told apart by cause (authentication,
//!   read-only, not found, TLS, host key, unreachable), from git's stderr.
//! - [`tree`]: object ids and tree entries, shared by `repo` and `edits`.
//! - [`edits`]: a commit as path edits, written by `git fast-import`.
//! - [`txn`]: the transaction loop (fetch, plan, commit, push, retry).
//! - [`published`]: a node's outbox on a branch of its own, for peers'
//!   commits to carry when its own lose the race; [`crowd`]: the branches
//!   named after a watched peer's that its fetches keep out.

pub mod auth;
mod batch;
mod child;
pub mod command;
pub mod crowd;
mod damage;
pub mod edits;
pub mod failure;
mod irregular;
pub mod published;
pub mod read;
pub mod repo;
pub mod ssh;
pub mod tree;
pub mod txn;
mod walk;
pub mod write;

pub use batch::ObjectInfo;
pub use child::{Pulse, set_pulse};
pub use command::{Git, GitError};
pub use edits::{Edit, Edits, Signature};
pub use failure::RemoteFailure;
pub use read::Blob;
pub use repo::{GridRepo, Growth};
pub use tree::{EntryMode, Oid, TreeEntry};
pub use txn::{Plan, Txn, TxnError, TxnOutcome, TxnPolicy};
pub use write::PushOutcome;
