//! The suites that need more of the host: git servers over HTTPS and SSH
//! (nginx, sshd), headless Chromium, actionlint, root's namespaces, and the
//! longer runs (the short chaos run; the measurements `--ignored` keeps
//! out).

#[path = "../common/mod.rs"]
mod common;
#[path = "../tools_fixture/mod.rs"]
mod tools_fixture;
#[path = "../trust_fixture/mod.rs"]
mod trust_fixture;

mod chaos;
mod real_hosts;
mod tools_dashboard;
mod tools_perf;
mod tools_status_page;
mod tools_workflows;
mod trust_give_way;
mod trust_guide;
mod trust_worker;
