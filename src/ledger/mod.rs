//! Plans over a fetched tip that the worker and the grid tools share: the
//! orphan sweep, and how rejected entries and results are written. Above
//! `git/` and `grid/`, below `service/` and `tools/`, so that a tool
//! applies exactly the rule a worker does without depending on the worker.

pub mod deps;
pub mod nodes;
pub mod queue;
pub mod reap;
pub mod refile;
pub mod result_index;
pub mod results;
pub mod routing;
