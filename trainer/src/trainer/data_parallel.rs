//! Data parallelism inside a step: every rank starts from rank 0's weights, scales its
//! losses to the global batch's counts (so the ranks' gradients add up to the
//! single-process gradient), sums gradients in buckets, and the ranks' counters meet at
//! logging and checkpoint steps.

use tch::{nn, Device, Kind, Tensor};

use crate::config::{DistSection, GradReduceKind};
use crate::dist::{Collective, GradBuckets};
use crate::error::{Result, TrainError};
use crate::objective::{LossWeights, Losses};
use crate::parallel::{combine, Combined, RankReport};

/// The collective and the gradient buckets of this rank.
pub(super) struct DataParallel {
    collective: Box<dyn Collective>,
    buckets: GradBuckets,
}

impl DataParallel {
    /// Broadcasts rank 0's variables of `vs` to every rank and lays out the gradient
    /// buckets (variables in name order, `dist.bucket_mb` each, `dist.grad_reduce` kind).
    pub fn new(
        collective: Box<dyn Collective>,
        vs: &nn::VarStore,
        dist: &DistSection,
    ) -> Result<Self> {
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        tch::no_grad(|| -> Result<()> {
            for (_, tensor) in &named {
                collective.broadcast(tensor, 0)?;
            }
            Ok(())
        })?;
        let params: Vec<Tensor> = named.iter().map(|(_, t)| t.shallow_clone()).collect();
        let kind = match dist.execution.grad_reduce {
            GradReduceKind::Fp32 => None,
            GradReduceKind::Bf16 => Some(Kind::BFloat16),
        };
        let buckets = GradBuckets::new(&params, dist.execution.bucket_mb << 20, kind);
        Ok(Self {
            collective,
            buckets,
        })
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.collective.rank()
    }

    /// This rank's losses scaled by its share of the global batch's masked positions
    /// (`gen_loss`) and real tokens (`disc_loss`), and their weighted sum.
    pub fn scale_losses(
        &self,
        losses: Losses,
        weights: LossWeights,
        masked: usize,
        real_tokens: usize,
        device: Device,
    ) -> Result<Losses> {
        let local = Tensor::from_slice(&[masked as f32, real_tokens as f32]).to_device(device);
        let global = local.copy();
        self.collective.all_reduce_sum(&global)?;
        let scale = (local / global).detach();
        let gen_loss = &losses.gen_loss * scale.get(0);
        let disc_loss = &losses.disc_loss * scale.get(1);
        let loss = &gen_loss * weights.gen + &disc_loss * weights.disc;
        Ok(Losses {
            loss,
            gen_loss,
            disc_loss,
            stats: losses.stats,
        })
    }

    /// Sums the gradients over ranks.
    pub fn reduce_grads(&mut self) -> Result<()> {
        self.buckets.reduce(self.collective.as_ref())
    }

    /// Sums `tensor` over ranks, in place.
    pub fn sum(&self, tensor: &Tensor) -> Result<()> {
        self.collective.all_reduce_sum(tensor)
    }

    /// Every rank's report, combined.
    pub fn gather(&self, report: &RankReport, slices: usize) -> Result<Combined> {
        let bytes = serde_json::to_vec(report).map_err(|e| TrainError::Dist {
            reason: format!("encoding this rank's report: {e}"),
        })?;
        let reports = self
            .collective
            .all_gather_bytes(&bytes)?
            .iter()
            .enumerate()
            .map(|(r, b)| {
                serde_json::from_slice::<RankReport>(b).map_err(|e| TrainError::Dist {
                    reason: format!("rank {r}'s report: {e}"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        combine(&reports, slices)
    }

    /// Returns once every rank has reached it.
    pub fn barrier(&self) -> Result<()> {
        self.collective.barrier()
    }
}
