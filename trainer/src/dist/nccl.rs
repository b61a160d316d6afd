//! The NCCL backend: c10d's `ProcessGroupNCCL` (what PyTorch DDP uses) over a
//! `PrefixStore("nccl")` on the job's TCPStore, one GPU per rank.
//!
//! Collectives are stream-ordered: `work->wait()` makes the current CUDA stream wait for
//! NCCL's, the host does not block (the barrier does). A peer that dies or hangs makes
//! c10d's watchdog abort the communicators after the timeout and end the process with a
//! "Watchdog caught collective operation timeout" message (PyTorch's
//! `TORCH_NCCL_ASYNC_ERROR_HANDLING` decides how), so no rank waits forever.

use std::time::Duration;

use tch::{Device, Tensor};

use super::exchange::Exchange;
use super::ffi::Nccl;
use super::store::check_tensor;
use super::Collective;
use crate::error::Result;

/// Collectives through ProcessGroupNCCL; `all_gather_bytes` through the TCPStore.
pub(crate) struct NcclCollective {
    // Dropped before the exchange (fields drop in order): the group goes, then the store.
    group: Nccl,
    exchange: Exchange,
    device: usize,
}

impl NcclCollective {
    pub(crate) fn new(exchange: Exchange, device: usize, timeout: Duration) -> Result<Self> {
        let group = Nccl::new(
            &exchange.store,
            "nccl",
            exchange.rank,
            exchange.world_size,
            device,
            timeout,
        )
        .map_err(|e| {
            exchange.fail(format!(
                "rank {}: creating the NCCL process group on cuda:{device} (store {}) failed: {e}",
                exchange.rank, exchange.address
            ))
        })?;
        Ok(Self {
            group,
            exchange,
            device,
        })
    }

    fn check(&self, tensor: &Tensor, what: &str) -> Result<()> {
        let ex = &self.exchange;
        check_tensor(tensor, what, ex.rank).map_err(|e| ex.fail(e))?;
        if tensor.device() != Device::Cuda(self.device) {
            return Err(ex.fail(format!(
                "rank {}: {what}: the NCCL backend works on cuda:{}, the tensor is on {:?}",
                ex.rank,
                self.device,
                tensor.device()
            )));
        }
        Ok(())
    }

    fn failed(&self, what: &str, e: String) -> crate::error::TrainError {
        self.group.abort_on_drop.set(true);
        self.exchange.fail(format!(
            "rank {}: NCCL {what} failed (store {}, timeout {}s): {e}",
            self.exchange.rank,
            self.exchange.address,
            self.exchange.timeout.as_secs_f64()
        ))
    }
}

impl Collective for NcclCollective {
    fn rank(&self) -> usize {
        self.exchange.rank
    }

    fn world_size(&self) -> usize {
        self.exchange.world_size
    }

    fn backend(&self) -> &'static str {
        "nccl"
    }

    fn all_reduce_sum(&self, tensor: &Tensor) -> Result<()> {
        self.check(tensor, "all_reduce_sum")?;
        self.group
            .all_reduce_sum(tensor)
            .map_err(|e| self.failed("all_reduce_sum", e))
    }

    fn broadcast(&self, tensor: &Tensor, root: usize) -> Result<()> {
        self.check(tensor, "broadcast")?;
        self.group
            .broadcast(tensor, root)
            .map_err(|e| self.failed("broadcast", e))
    }

    fn barrier(&self) -> Result<()> {
        self.group.barrier().map_err(|e| self.failed("barrier", e))
    }

    fn all_gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.exchange.all_gather(bytes)
    }
}
