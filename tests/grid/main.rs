//! The grid suites: what needs only git and the `shell` engine (real bare
//! repositories, real pushes, the real binary). `scripts/test --quick` runs
//! these, with the unit tests.

#[path = "../common/mod.rs"]
mod common;
#[path = "../tools_fixture/mod.rs"]
mod tools_fixture;

mod archive;
mod assigned;
mod bad_input;
mod corpus;
mod handback;
mod joining;
mod lifecycle;
mod notify;
mod outage;
mod props;
mod published;
mod race;
mod readers;
mod scheduling;
mod secrets;
mod shallow;
mod shared_host;
mod standing;
mod steal;
mod structure;
mod tools_cli;
mod trust;
mod trust_history;
