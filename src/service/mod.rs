//! The long-running worker: the main loop and what it talks to (the outbox
//! on disk, systemd's notification socket, signals).

pub mod budget;
pub mod heap;
mod kept;
pub mod notify;
pub mod outbox;
pub mod pace;
pub mod share;
pub mod started;
pub mod sync;
pub mod worker;

pub use worker::{RunOptions, run};
