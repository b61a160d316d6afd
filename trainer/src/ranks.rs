//! Who this process is in a run: rank and world size from the launcher's variables
//! (torchrun, Slurm), the device, and the collective joining the ranks.

use std::time::Duration;

use tch::Device;

use crate::config::{DistBackend, RunConfig};
use crate::device::DeviceChoice;
use crate::dist::{Backend, Collective, DistEnv};
use crate::error::{Result, TrainError};

/// This process's place in the run.
pub struct Ranks {
    /// Its rank (0 in a single process).
    pub rank: usize,
    /// The number of ranks.
    pub world: usize,
    /// Its device (its local GPU under a launcher).
    pub device: Device,
    /// The collective over all ranks; `None` in a single process.
    pub collective: Option<Box<dyn Collective>>,
}

impl Ranks {
    /// Joins the process group the launcher's variables describe (a single process when
    /// there are none), on `choice`'s device.
    pub fn join(config: &RunConfig, choice: DeviceChoice) -> Result<Self> {
        let env = DistEnv::from_env()?;
        let (rank, world) = env.as_ref().map_or((0, 1), |e| (e.rank, e.world_size));
        let device = match (&env, choice.resolve()?) {
            (Some(env), Device::Cuda(_)) => env.cuda_device(),
            (_, device) => device,
        };
        let slices = config.dist.data_slices;
        if world > slices {
            return Err(TrainError::InvalidConfig {
                field: "dist.data_slices".into(),
                reason: format!(
                    "{slices} slices for {world} ranks: every rank needs a slice; set dist.data_slices to a multiple of the world size"
                ),
            });
        }
        let collective = match &env {
            Some(env) => Some(connect(config, env, device)?),
            None => None,
        };
        Ok(Self {
            rank,
            world,
            device,
            collective,
        })
    }
}

fn connect(config: &RunConfig, env: &DistEnv, device: Device) -> Result<Box<dyn Collective>> {
    let backend = match config.dist.execution.backend {
        DistBackend::Auto => Backend::Auto,
        DistBackend::Nccl => Backend::Nccl,
        DistBackend::Store => Backend::Store,
    };
    let timeout = Duration::from_secs(config.dist.execution.timeout_seconds);
    let collective = crate::dist::connect(env, backend, device, timeout)?;
    tracing::info!(
        rank = env.rank,
        world = env.world_size,
        local_rank = env.local_rank,
        backend = collective.backend(),
        master = %format!("{}:{}", env.master_addr, env.master_port),
        "joined the process group"
    );
    Ok(collective)
}
