//! The sandbox suites: real podman and docker with the real flags, the
//! test image built locally (`scripts/lib/build-test-image`), dockerd
//! started (`scripts/lib/start-dockerd`).

#[path = "../common/mod.rs"]
mod common;

mod abuse;
mod crash;
mod hostile_grid;
mod sandbox;
