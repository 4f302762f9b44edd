//! Everything that touches git, through the git CLI.
//!
//! - [`command`]: one git invocation, with a timeout, a fixed environment and
//!   credentials passed only through the child's environment.
//! - [`repo`]: the worker's private clone and the plumbing reads and writes
//!   it needs (no work tree: trees are edited with `ls-tree`/`mktree`).
//! - [`tree`]: building a new root tree from a set of path edits.
//! - [`txn`]: the transaction loop (fetch, plan, commit, push, retry).

pub mod auth;
pub mod command;
pub mod repo;
pub mod tree;
pub mod txn;

pub use command::{Git, GitError};
pub use repo::{EntryMode, GridRepo, PushOutcome, TreeEntry};
pub use tree::{Edit, Edits};
pub use txn::{Plan, Txn, TxnError, TxnOutcome, TxnPolicy};
