//! Data-parallel collectives on PyTorch's own distributed engine (c10d), through a small C++
//! shim (`trainer/csrc/`).
//!
//! 1. [`DistEnv::from_env`]: this process's rank, world size and local rank, and rank 0's
//!    address, from torchrun's or Slurm's variables.
//! 2. [`connect`]: rank 0 serves a `c10d::TCPStore` at `MASTER_ADDR:MASTER_PORT`, the
//!    others connect; every rank meets the others there, then gets a [`Collective`]:
//!    - [`Backend::Nccl`]: `c10d::ProcessGroupNCCL` (what PyTorch DDP uses), one GPU per
//!      rank, stream-ordered; in builds where libtorch has CUDA (`cfg(electra_nccl)`).
//!    - [`Backend::Store`]: the same operations through the TCPStore, on any device. **Slow**
//!      (each all-reduce moves `W` buffers through rank 0's store): for tests and CPU-only
//!      clusters.
//! 3. [`GradBuckets`]: after backward, the grads flattened into buckets (optionally in
//!    bf16), each summed with one all-reduce.
//! 4. [`bench::bench_collective`]: checks and times the collectives (`electra bench
//!    collective`).
//!
//! Every wait is bounded by the timeout given to [`connect`]: a rank that dies or hangs
//! makes the others fail with an error naming the rank, the key and the store's address.
//!
//! ```no_run
//! use electra_trainer::dist::{connect, Backend, DistEnv};
//! use std::time::Duration;
//! let env = DistEnv::from_env()?.unwrap_or_else(DistEnv::single);
//! let coll = connect(&env, Backend::Store, tch::Device::Cpu, Duration::from_secs(60))?;
//! let t = tch::Tensor::ones([4], (tch::Kind::Float, tch::Device::Cpu));
//! coll.all_reduce_sum(&t)?; // every element is now the world size
//! # Ok::<(), electra_trainer::error::TrainError>(())
//! ```

pub mod bench;
mod buckets;
mod env;
mod exchange;
pub(crate) mod ffi;
#[cfg(electra_nccl)]
mod nccl;
mod store;

use std::time::Duration;

use tch::{Device, Tensor};

pub use buckets::{GradBuckets, DEFAULT_BUCKET_BYTES};
pub use env::{expand_nodelist, DistEnv, SLURM_PORT_BASE, SLURM_PORT_SPAN};

use crate::error::Result;
use exchange::{dist, Exchange};
use store::StoreCollective;

/// Whether this build has the NCCL backend (libtorch with CUDA and NCCL's headers).
pub const HAS_NCCL: bool = cfg!(electra_nccl);

/// Which collective implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// NCCL when the device is CUDA (and the build has it), else Store.
    #[default]
    Auto,
    /// c10d's ProcessGroupNCCL: one GPU per rank.
    Nccl,
    /// Through rank 0's TCPStore, on any device: slow, for tests and CPU-only clusters.
    Store,
}

impl Backend {
    /// The backend `Auto` stands for on `device`.
    pub fn resolve(self, device: Device) -> Backend {
        match self {
            Self::Auto if device.is_cuda() && HAS_NCCL => Self::Nccl,
            Self::Auto => Self::Store,
            other => other,
        }
    }
}

/// Collective operations over the ranks of a job. Every rank must call the same operations
/// in the same order with tensors of the same shape and kind.
pub trait Collective: Send {
    /// This process's rank.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn world_size(&self) -> usize;
    /// `"nccl"` or `"store"`.
    fn backend(&self) -> &'static str;
    /// In-place sum over ranks of a contiguous tensor (Float, Double, BFloat16, Half, Int64,
    /// Int). The result is identical, bit for bit, on every rank. Store backend: the tensor
    /// may be on any device (copied through the host); ranks' values are summed in rank
    /// order. NCCL: the tensor is on this rank's GPU; the sum is stream-ordered (the host
    /// does not wait for it).
    fn all_reduce_sum(&self, tensor: &Tensor) -> Result<()>;
    /// Copies `root`'s tensor into every rank's, in place.
    fn broadcast(&self, tensor: &Tensor, root: usize) -> Result<()>;
    /// Returns once every rank has reached it.
    fn barrier(&self) -> Result<()>;
    /// Every rank's bytes, in rank order (through the TCPStore for both backends).
    fn all_gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>>;
}

/// Joins the job described by `env`: rank 0 serves the TCPStore at
/// `master_addr:master_port` (port 0, world size 1 only: a free port), the others connect;
/// all ranks meet there (they must agree on world size and backend), then build `backend`'s
/// [`Collective`] on `device` (NCCL: pass `env.cuda_device()`). Every wait, connecting
/// included, gives up after `timeout`.
///
/// # Errors
/// [`TrainError::Dist`](crate::error::TrainError::Dist): the master cannot be reached, a
/// rank did not join in time, the ranks disagree, or NCCL is asked for on a CPU device or
/// in a build without it.
pub fn connect(
    env: &DistEnv,
    backend: Backend,
    device: Device,
    timeout: Duration,
) -> Result<Box<dyn Collective>> {
    let backend = backend.resolve(device);
    match backend {
        Backend::Nccl => connect_nccl(env, device, timeout),
        _ => {
            let exchange = Exchange::connect(env, timeout, "coll", "store")?;
            tracing::info!(
                rank = env.rank,
                world_size = env.world_size,
                store = %exchange.address,
                "connected (store backend)"
            );
            Ok(Box::new(StoreCollective { exchange }))
        }
    }
}

#[cfg(electra_nccl)]
fn connect_nccl(env: &DistEnv, device: Device, timeout: Duration) -> Result<Box<dyn Collective>> {
    let Device::Cuda(index) = device else {
        return Err(dist(format!(
            "rank {}: the NCCL backend needs a CUDA device, not {device:?}",
            env.rank
        )));
    };
    let exchange = Exchange::connect(env, timeout, "coll", "nccl")?;
    let coll = nccl::NcclCollective::new(exchange, index, timeout)?;
    tracing::info!(
        rank = env.rank,
        world_size = env.world_size,
        device = index,
        "connected (NCCL backend)"
    );
    Ok(Box::new(coll))
}

#[cfg(not(electra_nccl))]
fn connect_nccl(env: &DistEnv, _device: Device, _timeout: Duration) -> Result<Box<dyn Collective>> {
    Err(dist(format!(
        "rank {}: this build has no NCCL backend (libtorch without CUDA, or NCCL's headers \
         were missing at build time); use --backend store",
        env.rank
    )))
}
