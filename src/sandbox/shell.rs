//! The `shell` engine. (Being implemented.)

use super::{CancelFlag, Engine, Job, Limits, RunReport, SandboxError};

pub struct ShellEngine {
    _limits: Limits,
}

impl ShellEngine {
    pub fn new(limits: Limits) -> Self {
        ShellEngine { _limits: limits }
    }
}

impl Engine for ShellEngine {
    fn name(&self) -> &str {
        "shell"
    }
    fn check(&self) -> Result<(), SandboxError> {
        todo!()
    }
    fn remove_leftovers(&self, _node_id: &str) -> Result<usize, SandboxError> {
        Ok(0)
    }
    fn run(&self, _job: &Job, _cancel: &CancelFlag) -> RunReport {
        todo!()
    }
}
