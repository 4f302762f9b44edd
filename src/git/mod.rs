//! Everything that touches git, through the git CLI.
//!
//! - [`command`]: one git invocation, with a timeout, a fixed environment and
//!   credentials passed only through the child's environment.
//! - [`repo`]: the worker's private clone and the plumbing reads and writes
//!   it needs (no work tree: reads with `ls-tree`/`cat-file`, commits with `fast-import`).
//! - [`failure`]: a failed fetch or push told apart by cause (authentication,
//!   read-only, not found, TLS, host key, unreachable), from git's stderr.
//! - [`tree`]: object ids and tree entries, shared by `repo` and `edits`.
//! - [`edits`]: a commit as path edits, written by `git fast-import`.
//! - [`txn`]: the transaction loop (fetch, plan, commit, push, retry).

pub mod auth;
pub mod command;
pub mod edits;
pub mod failure;
pub mod repo;
pub mod tree;
pub mod txn;

pub use command::{Git, GitError};
pub use edits::{Edit, Edits, Signature};
pub use failure::RemoteFailure;
pub use repo::{EntryMode, GridRepo, PushOutcome, TreeEntry};
pub use txn::{Plan, Txn, TxnError, TxnOutcome, TxnPolicy};
