//! The non-finite guard: device counters of steps skipped for a non-finite loss or
//! gradient norm (the total, the current streak, the longest streak). They are read only
//! at logging steps (no host synchronisation per step); a skipped step changes no weights,
//! so stopping a few steps after the limit loses nothing.

use std::collections::BTreeMap;

use tch::{Device, Kind, Tensor};

use super::copy_tensor;
use crate::error::Result;

/// Names of the guard's counters in a checkpoint.
pub(super) const GUARD_TENSORS: [&str; 3] = ["guard.skipped", "guard.consecutive", "guard.longest"];

/// The counters, each a float32 device scalar.
pub(super) struct Guard {
    skipped: Tensor,
    consecutive: Tensor,
    longest: Tensor,
}

impl Guard {
    pub fn new(device: Device) -> Self {
        Self {
            skipped: Tensor::zeros([], (Kind::Float, device)),
            consecutive: Tensor::zeros([], (Kind::Float, device)),
            longest: Tensor::zeros([], (Kind::Float, device)),
        }
    }

    /// Counts a step: `ok` (a boolean device scalar) is whether it made an update.
    pub fn record(&mut self, ok: &Tensor) {
        let bad = ok.logical_not().to_kind(Kind::Float);
        self.skipped = &self.skipped + &bad;
        self.consecutive = (&self.consecutive + 1.0) * &bad;
        self.longest = self.longest.maximum(&self.consecutive);
    }

    /// (skipped in all, longest streak so far); a host synchronisation.
    pub fn read(&self) -> Result<(u64, u64)> {
        let skipped = f64::try_from(&self.skipped.to_kind(Kind::Double))?;
        let longest = f64::try_from(&self.longest.to_kind(Kind::Double))?;
        Ok((skipped as u64, longest as u64))
    }

    /// The counters with their checkpoint names.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let tensors = [&self.skipped, &self.consecutive, &self.longest];
        GUARD_TENSORS
            .iter()
            .zip(tensors)
            .map(|(name, t)| (name.to_string(), t.shallow_clone()))
            .collect()
    }

    /// Copies a checkpoint's counters in.
    pub fn restore(&self, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
        for (name, target) in self.named_tensors() {
            copy_tensor(tensors, &name, &target)?;
        }
        Ok(())
    }
}
