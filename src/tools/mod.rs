//! The grid tools behind `validate`, `submit`, `status`, `reap`, `archive`,
//! `dashboard` and `init`: the same binary as the worker, reusing its rules
//! (`Task::from_entry`, the orphan rule) and its transaction (`txn::run`),
//! so that what a workflow checks is exactly what a worker enforces.

pub mod archive;
pub mod attest;
pub mod escape;
pub mod html;
pub mod init;
pub mod policy_history;
pub mod reap;
pub mod source;
pub mod submit;
pub mod text;
pub mod throughput;
pub mod trust;
pub mod validate;
pub mod verify;
pub mod view;
