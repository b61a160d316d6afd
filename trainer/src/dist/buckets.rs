//! Gradient buckets: the grads of many parameters flattened into a few buffers, each summed
//! over ranks with one all-reduce, as PyTorch DDP's reducer does.

use tch::{Device, Kind, Tensor};

use super::exchange::dist;
use super::ffi;
use super::Collective;
use crate::error::Result;

/// Bucket size PyTorch DDP uses (25 MiB).
pub const DEFAULT_BUCKET_BYTES: usize = 25 * 1024 * 1024;

/// One parameter's place in its bucket.
struct Member {
    param: usize,
    offset: i64,
    numel: i64,
}

/// A flat buffer: the members' grads, then one presence flag per member (1 when this rank
/// had the grad), so that after the sum every rank knows whether any rank had it.
struct Bucket {
    members: Vec<Member>,
    kind: Kind,
    device: Device,
    flags_offset: i64,
    flat: Option<Tensor>,
}

/// Sums gradients over ranks in buckets of about `bucket_bytes`.
///
/// The layout is fixed at construction from the parameters that require grad (the same on
/// every rank: the same model). At [`GradBuckets::reduce`] a parameter whose grad is
/// undefined on some rank counts as a zero grad there; when no rank has it, it stays
/// undefined everywhere (skipped consistently); when some rank has it, every rank ends with
/// the sum (a rank that had none gets a new grad). The result is a **sum**: divide by the
/// world size (or scale the loss) to average.
pub struct GradBuckets {
    params: Vec<Tensor>,
    buckets: Vec<Bucket>,
}

impl std::fmt::Debug for GradBuckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GradBuckets")
            .field("params", &self.params.len())
            .field("buckets", &self.buckets.len())
            .finish()
    }
}

impl GradBuckets {
    /// Plans buckets over `params` (in order; those without `requires_grad` are left out):
    /// consecutive parameters of one device and reduce kind, closed once they reach
    /// `bucket_bytes` ([`DEFAULT_BUCKET_BYTES`] is DDP's). `reduce_kind` (e.g.
    /// `Kind::BFloat16`, halving the traffic of f32 grads) is the buffers' kind; `None`
    /// keeps each grad's own kind. Buffers are allocated at the first reduce, on the
    /// parameters' devices: build this after moving the model.
    pub fn new(params: &[Tensor], bucket_bytes: usize, reduce_kind: Option<Kind>) -> Self {
        let params: Vec<Tensor> = params
            .iter()
            .filter(|p| p.requires_grad())
            .map(Tensor::shallow_clone)
            .collect();
        let mut buckets: Vec<Bucket> = Vec::new();
        let mut bytes = 0usize;
        for (index, param) in params.iter().enumerate() {
            let kind = reduce_kind.unwrap_or_else(|| param.kind());
            let device = param.device();
            let numel = param.numel();
            let fits = buckets
                .last()
                .is_some_and(|b| b.kind == kind && b.device == device && bytes < bucket_bytes);
            if !fits {
                buckets.push(Bucket {
                    members: Vec::new(),
                    kind,
                    device,
                    flags_offset: 0,
                    flat: None,
                });
                bytes = 0;
            }
            if let Some(bucket) = buckets.last_mut() {
                bucket.members.push(Member {
                    param: index,
                    offset: bucket.flags_offset,
                    numel: numel as i64,
                });
                bucket.flags_offset += numel as i64;
            }
            bytes += numel * kind.elt_size_in_bytes();
        }
        Self { params, buckets }
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no parameter requires grad.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Sums every planned grad over the ranks of `coll`, in place (see the type's docs).
    /// Every rank must call it at the same point with the same parameters.
    pub fn reduce(&mut self, coll: &dyn Collective) -> Result<()> {
        let params = &self.params;
        tch::no_grad(|| {
            for bucket in &mut self.buckets {
                reduce_bucket(bucket, params, coll)?;
            }
            Ok(())
        })
    }
}

fn reduce_bucket(bucket: &mut Bucket, params: &[Tensor], coll: &dyn Collective) -> Result<()> {
    let count = bucket.members.len() as i64;
    let flat = match &bucket.flat {
        Some(flat) => flat.shallow_clone(),
        None => {
            let flat =
                Tensor::f_zeros([bucket.flags_offset + count], (bucket.kind, bucket.device))?;
            bucket.flat = Some(flat.shallow_clone());
            flat
        }
    };
    // Flags all 1, then 0 where this rank has no grad: no host-to-device copy.
    let _ = flat.f_narrow(0, bucket.flags_offset, count)?.f_fill_(1.0)?;
    let mut grads = Vec::with_capacity(bucket.members.len());
    for (i, m) in bucket.members.iter().enumerate() {
        let grad = params[m.param].grad();
        let mut slot = flat.f_narrow(0, m.offset, m.numel)?;
        if grad.defined() {
            slot.f_copy_(&grad.f_reshape([-1])?)?;
            grads.push(Some(grad));
        } else {
            let _ = slot.f_zero_()?;
            let _ = flat
                .f_narrow(0, bucket.flags_offset + i as i64, 1)?
                .f_zero_()?;
            grads.push(None);
        }
    }

    coll.all_reduce_sum(&flat)?;

    // Only a rank missing a grad needs the flags (a host sync, then, and only then).
    let present: Option<Vec<f64>> = if grads.iter().any(Option::is_none) {
        let host = flat
            .f_narrow(0, bucket.flags_offset, count)?
            .f_to_kind(Kind::Double)?
            .f_to_device(Device::Cpu)?;
        Some(Vec::<f64>::try_from(&host)?)
    } else {
        None
    };
    for (i, (m, grad)) in bucket.members.iter().zip(grads).enumerate() {
        let param = &params[m.param];
        let sum = flat
            .f_narrow(0, m.offset, m.numel)?
            .f_view(param.size().as_slice())?;
        match grad {
            Some(mut grad) => {
                grad.f_copy_(&sum)?;
            }
            None => {
                let anyone = present
                    .as_ref()
                    .is_some_and(|p| p.get(i).is_some_and(|&c| c > 0.0));
                if anyone {
                    let mut new_grad = Tensor::f_empty_like(param)?;
                    new_grad.f_copy_(&sum)?;
                    ffi::set_grad(param, &new_grad).map_err(|e| {
                        dist(format!(
                            "rank {}: setting the summed grad of parameter {} failed: {e}",
                            coll.rank(),
                            m.param
                        ))
                    })?;
                }
            }
        }
    }
    Ok(())
}
