//! [`DeviceBatch`]: a host batch from the pipeline as device tensors, the one place a
//! `Batch` becomes `tch::Tensor`s.

use electra_model::ElectraInput;
use electra_pipeline::Batch;
use tch::{Device, Kind, Tensor};

/// A batch's tensors on the training device.
#[derive(Debug)]
pub struct DeviceBatch {
    input_ids: Tensor,
    segment_ids: Tensor,
    attention_mask: Tensor,
    masked_positions: Tensor,
    masked_labels: Tensor,
}

impl DeviceBatch {
    /// Copies `batch` to `device`: `[batch, seq]` ids, segments and mask, `[m]` masked
    /// positions and labels, all Int64.
    pub fn new(batch: &Batch, device: Device) -> Self {
        let shape = [batch.batch_size as i64, batch.seq_len as i64];
        let to = |v: &[i64], shape: &[i64]| upload(v, shape, device);
        Self {
            input_ids: to(&batch.input_ids, &shape),
            segment_ids: to(&batch.segment_ids, &shape),
            attention_mask: to(&batch.attention_mask, &shape),
            masked_positions: to(&batch.masked_positions, &[-1]),
            masked_labels: to(&batch.masked_labels, &[-1]),
        }
    }

    /// The model's input.
    pub fn input(&self) -> ElectraInput<'_> {
        ElectraInput {
            input_ids: &self.input_ids,
            segment_ids: &self.segment_ids,
            attention_mask: &self.attention_mask,
            masked_positions: &self.masked_positions,
            masked_labels: &self.masked_labels,
        }
    }
}

/// `v` as a `shape` Int64 tensor on `device`. To a GPU through pinned host memory, without
/// waiting for the copy: the host returns to the pipeline while the device works (the
/// caching host allocator keeps each staging buffer until its copy is done).
pub fn upload(v: &[i64], shape: &[i64], device: Device) -> Tensor {
    let host = Tensor::from_slice(v).view(shape);
    match device {
        Device::Cuda(_) => host
            .pin_memory(device)
            .to_device_(device, Kind::Int64, true, false),
        _ => host,
    }
}
