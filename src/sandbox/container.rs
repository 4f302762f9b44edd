//! podman and docker, through their CLIs. (Being implemented.)

use super::{CancelFlag, Engine, Job, RunReport, SandboxConfig, SandboxError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineFlavor {
    Podman,
    Docker,
}

impl EngineFlavor {
    pub fn binary(self) -> &'static str {
        match self {
            EngineFlavor::Podman => "podman",
            EngineFlavor::Docker => "docker",
        }
    }
    pub fn is_installed(self) -> bool {
        todo!()
    }
}

pub struct ContainerEngine {
    flavor: EngineFlavor,
}

impl ContainerEngine {
    pub fn new(flavor: EngineFlavor, _cfg: &SandboxConfig) -> Self {
        ContainerEngine { flavor }
    }
}

impl Engine for ContainerEngine {
    fn name(&self) -> &str {
        self.flavor.binary()
    }
    fn check(&self) -> Result<(), SandboxError> {
        todo!()
    }
    fn remove_leftovers(&self, _node_id: &str) -> Result<usize, SandboxError> {
        todo!()
    }
    fn run(&self, _job: &Job, _cancel: &CancelFlag) -> RunReport {
        todo!()
    }
}
