//! Trust: who may ask a node to run something, and who ran it.
//!
//! A grid's owner holds one or more **root keys**; every worker pins their
//! public halves (`[trust]` in worker.toml), never learning them from the
//! grid. The roots sign the grid's **policy** (`.dgrid/policy.json`): which
//! keys belong to submitters and which to nodes, with their time windows and
//! revocations, under a version number that only goes up. A **task** carries
//! a submitter's signature over its content, and a **result** its node's
//! signature over what it produced, the digest of the task it answers and
//! the claim it ran under. A node signs its own **record** too, so that a
//! node in `enforce` schedules only around the peers the policy lists
//! ([`record`]).
//!
//! Every signature is an SSH signature (`ssh-keygen -Y sign` format), made
//! and checked in process with the `ssh-key` crate, in a namespace that
//! binds the grid and the role (`dgrid-task-v1@<grid>`,
//! `dgrid-result-v1@<grid>`, `dgrid-policy-v1@<grid>`,
//! `dgrid-record-v1@<grid>`): a signature made for
//! one grid or role verifies for no other. The signed bytes travel inside
//! the file, in an [`envelope`], so a claim that rewrites the file cannot
//! touch them, and what runs is exactly what was signed.
//!
//! Layout: the decisions are pure and take the clock as an argument
//! ([`policy`], [`task`], [`result`], [`record`], [`verifier`]); reading and writing
//! files is in [`keys`] (key files), [`store`] (the policy a node holds) and
//! [`ran`] (the tasks it has run), the last two in its state directory.

pub mod cache;
pub mod envelope;
pub mod error;
pub mod keys;
pub mod mode;
pub mod policy;
pub mod ran;
pub mod record;
pub mod result;
pub mod sig;
pub mod store;
pub mod task;
pub mod verifier;

pub use envelope::Envelope;
pub use error::TrustError;
pub use mode::Mode;
pub use policy::{Pinned, Policy, PolicyError};
pub use sig::{KeySigner, Role};
pub use task::{SignedTask, TaskDigest};
pub use verifier::{Action, KeyStanding, Offer, Signer, Verdict, Verifier};
