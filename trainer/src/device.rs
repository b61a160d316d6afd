//! What tch does not expose about devices: bfloat16 autocast on CPU or CUDA (tch's
//! `autocast` switches only CUDA's, in float16) and the CUDA caching allocator's peak
//! memory. Through the C++ shim (`csrc/device.cpp`). And [`retain_cpu_heap`], glibc's
//! allocator tuned for libtorch's CPU activations; [`DeviceChoice`], where to train.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int};
use std::sync::atomic::{AtomicBool, Ordering};

use tch::Device;

use crate::config::Precision;
use crate::error::{Result, TrainError};

extern "C" {
    fn electra_autocast(device_type: c_int, enabled: c_int) -> *mut c_char;
    fn electra_cuda_peak_allocated(device: c_int, reset: c_int, out: *mut i64) -> *mut c_char;
}

/// The shim's error message as an error saying what failed.
fn check(what: &str, message: *mut c_char) -> Result<()> {
    crate::dist::ffi::check(message).map_err(|text| TrainError::Device {
        reason: format!("{what}: {text}"),
    })
}

/// Bfloat16 autocast on `device` while it lives (float32 weights stay float32; matrix
/// products and attention run in bfloat16, reductions and losses in float32). Dropping it
/// ends the region.
#[derive(Debug)]
pub struct Autocast {
    device_type: c_int,
}

impl Autocast {
    /// Starts a bfloat16 autocast region on `device`'s type.
    pub fn bf16(device: Device) -> Result<Self> {
        let device_type = match device {
            Device::Cuda(_) => 1,
            _ => 0,
        };
        // SAFETY: plain values in; the shim catches every C++ exception.
        check("starting bfloat16 autocast", unsafe {
            electra_autocast(device_type, 1)
        })?;
        Ok(Self { device_type })
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        // SAFETY: as in `bf16`.
        let ended = check("ending autocast", unsafe {
            electra_autocast(self.device_type, 0)
        });
        if let Err(e) = ended {
            tracing::warn!("{e}");
        }
    }
}

/// Keeps freed memory in the process heap instead of handing it back to the kernel.
///
/// libtorch allocates CPU activations with `posix_memalign`. glibc serves every block
/// above its mmap threshold (at most 32 MiB, adjusted at run time) with a fresh `mmap` and
/// unmaps it on free, and trims the heap's top above the trim threshold. So each training
/// step faults in and zeroes its activations again: on ELECTRA-Small on CPU, 10-15% of the
/// step went to the kernel's page clearing. Raising both thresholds lets the heap keep
/// that memory for the next step (peak RSS unchanged, since the same sizes recur).
/// Set `ELECTRA_RETAIN_HEAP=0` to leave glibc's defaults. A no-op off glibc. Returns
/// whether the thresholds were set ([`heap_retained`] tells later).
pub fn retain_cpu_heap() -> bool {
    let set =
        std::env::var_os("ELECTRA_RETAIN_HEAP").is_none_or(|v| v != "0") && set_heap_thresholds();
    HEAP_RETAINED.store(set, Ordering::Relaxed);
    set
}

static HEAP_RETAINED: AtomicBool = AtomicBool::new(false);

/// Whether [`retain_cpu_heap`] set glibc's thresholds in this process.
pub fn heap_retained() -> bool {
    HEAP_RETAINED.load(Ordering::Relaxed)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_heap_thresholds() -> bool {
    // SAFETY: mallopt only changes glibc's allocator parameters; any value is allowed.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, c_int::MAX) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, c_int::MAX) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_heap_thresholds() -> bool {
    false
}

/// Peak bytes libtorch's CUDA allocator held on GPU `index` since the last reset; `reset`
/// starts a new peak after reading.
pub fn cuda_peak_allocated(index: usize, reset: bool) -> Result<u64> {
    let mut peak = 0i64;
    // SAFETY: `peak` outlives the call; the shim catches every C++ exception.
    check("reading CUDA memory statistics", unsafe {
        electra_cuda_peak_allocated(index as c_int, c_int::from(reset), &mut peak)
    })?;
    Ok(peak.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn bf16_autocast_runs_matrix_products_in_bfloat16_on_cpu_and_ends() {
        let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        {
            let _region = Autocast::bf16(Device::Cpu).unwrap();
            assert_eq!(a.matmul(&a).kind(), Kind::BFloat16);
        }
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
    }
}

/// A bfloat16 autocast region when `precision` asks for one.
pub fn autocast(precision: Precision, device: Device) -> Result<Option<Autocast>> {
    match precision {
        Precision::Fp32 => Ok(None),
        Precision::Bf16 => Autocast::bf16(device).map(Some),
    }
}

/// Where to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA when libtorch sees a GPU, else CPU.
    #[default]
    Auto,
    /// CPU.
    Cpu,
    /// The first CUDA device; an error when there is none.
    Cuda,
}

impl DeviceChoice {
    /// The libtorch device.
    pub fn resolve(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => Ok(Device::cuda_if_available()),
            Self::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            Self::Cuda => Err(TrainError::NoCuda),
        }
    }
}
