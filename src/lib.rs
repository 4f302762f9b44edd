//! dgrid-worker: a worker node for D-GRID, a task grid whose only database is
//! a git repository. The binary in `src/main.rs` is a thin shell over this
//! library; see `ARCHITECTURE.md` for the map.

pub mod cli;
pub mod config;
pub mod escape;
pub mod git;
pub mod grid;
pub mod html;
pub mod ledger;
pub mod logging;
pub mod sandbox;
pub mod service;
pub mod status;
pub mod time;
pub mod tools;
pub mod trust;
