//! The Store backend: collectives through rank 0's TCPStore, for tests and CPU-only
//! clusters.
//!
//! **Slow.** Each all-reduce copies the tensor to the host, sends it to rank 0's store and
//! reads the other `W - 1` ranks' copies back: rank 0's network carries `W` buffers in
//! and `W (W - 1)` out per all-reduce, and its memory holds up to two rounds of `W`
//! buffers. Use NCCL on GPUs; use this to test on one machine or for small models.

use tch::{Device, Kind, Tensor};

use super::exchange::Exchange;
use super::Collective;
use crate::error::Result;

/// Collectives over the TCPStore (see the module docs).
pub(crate) struct StoreCollective {
    pub(crate) exchange: Exchange,
}

/// The kinds the Store backend sums (NCCL takes the same).
pub(crate) fn check_tensor(
    tensor: &Tensor,
    what: &str,
    rank: usize,
) -> std::result::Result<(), String> {
    match tensor.kind() {
        Kind::Float | Kind::Double | Kind::BFloat16 | Kind::Half | Kind::Int64 | Kind::Int => {}
        other => {
            return Err(format!(
                "rank {rank}: {what}: tensors of kind {other:?} are not supported"
            ))
        }
    }
    if !tensor.is_contiguous() {
        return Err(format!("rank {rank}: {what}: the tensor is not contiguous"));
    }
    Ok(())
}

/// The tensor on the host, contiguous, and its bytes.
fn host_bytes(tensor: &Tensor) -> Result<Vec<u8>> {
    let host = tensor.f_to_device(Device::Cpu)?.f_contiguous()?;
    let numel = host.numel();
    let mut bytes = vec![0u8; numel * host.kind().elt_size_in_bytes()];
    host.f_copy_data_u8(&mut bytes, numel)?;
    Ok(bytes)
}

/// Checks that a peer's buffer has the size of ours.
fn same_size(ex: &Exchange, what: &str, peer: usize, theirs: usize, ours: usize) -> Result<()> {
    if theirs == ours {
        return Ok(());
    }
    Err(ex.fail(format!(
        "rank {}: {what}: rank {peer} sent {theirs} bytes, this rank has {ours}: every rank \
         must pass a tensor of the same shape and kind",
        ex.rank
    )))
}

impl Collective for StoreCollective {
    fn rank(&self) -> usize {
        self.exchange.rank
    }

    fn world_size(&self) -> usize {
        self.exchange.world_size
    }

    fn backend(&self) -> &'static str {
        "store"
    }

    fn all_reduce_sum(&self, tensor: &Tensor) -> Result<()> {
        let what = "all_reduce_sum";
        let ex = &self.exchange;
        check_tensor(tensor, what, ex.rank).map_err(|e| ex.fail(e))?;
        let mine = host_bytes(tensor)?;
        let round = ex.begin(what, &mine)?;
        let (size, kind) = (tensor.size(), tensor.kind());
        // Summed in rank order on every rank: the same operations on the same bytes give
        // the same result everywhere.
        let mut sum: Option<Tensor> = None;
        for peer in 0..ex.world_size {
            let part = if peer == ex.rank {
                Tensor::f_from_data_size(&mine, &size, kind)?
            } else {
                let theirs = ex.read(what, round, peer)?;
                same_size(ex, what, peer, theirs.len(), mine.len())?;
                Tensor::f_from_data_size(&theirs, &size, kind)?
            };
            sum = Some(match sum {
                None => part,
                Some(mut acc) => {
                    let _ = acc.f_add_(&part)?;
                    acc
                }
            });
        }
        ex.finish(what, round)?;
        if let Some(sum) = sum {
            tch::no_grad(|| tensor.shallow_clone().f_copy_(&sum))?;
        }
        Ok(())
    }

    fn broadcast(&self, tensor: &Tensor, root: usize) -> Result<()> {
        let what = "broadcast";
        let ex = &self.exchange;
        check_tensor(tensor, what, ex.rank).map_err(|e| ex.fail(e))?;
        if root >= ex.world_size {
            return Err(ex.fail(format!(
                "rank {}: broadcast from rank {root}, but the world size is {}",
                ex.rank, ex.world_size
            )));
        }
        let mine = if ex.rank == root {
            host_bytes(tensor)?
        } else {
            Vec::new()
        };
        let round = ex.begin(what, &mine)?;
        if ex.rank != root {
            let theirs = ex.read(what, round, root)?;
            let ours = tensor.numel() * tensor.kind().elt_size_in_bytes();
            same_size(ex, what, root, theirs.len(), ours)?;
            let value = Tensor::f_from_data_size(&theirs, &tensor.size(), tensor.kind())?;
            tch::no_grad(|| tensor.shallow_clone().f_copy_(&value))?;
        }
        ex.finish(what, round)
    }

    fn barrier(&self) -> Result<()> {
        self.exchange.barrier()
    }

    fn all_gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.exchange.all_gather(bytes)
    }
}
