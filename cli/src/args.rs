//! The command line's names for library choices (clap lives only in the CLI crates): each
//! enum converts into the library's type.

use clap::ValueEnum;
use electra_config::Precision;
use electra_trainer::device::DeviceChoice;
use electra_trainer::dist::Backend;
use electra_trainer::task::TaskType;

/// Where to run.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum DeviceArg {
    /// CUDA when libtorch sees a GPU, else CPU.
    #[default]
    Auto,
    /// CPU.
    Cpu,
    /// The first CUDA device; an error when there is none.
    Cuda,
}

impl From<DeviceArg> for DeviceChoice {
    fn from(device: DeviceArg) -> Self {
        match device {
            DeviceArg::Auto => Self::Auto,
            DeviceArg::Cpu => Self::Cpu,
            DeviceArg::Cuda => Self::Cuda,
        }
    }
}

/// The forward pass's arithmetic.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PrecisionArg {
    /// float32 throughout.
    Fp32,
    /// bfloat16 autocast with float32 master weights and optimizer state.
    Bf16,
}

impl From<PrecisionArg> for Precision {
    fn from(precision: PrecisionArg) -> Self {
        match precision {
            PrecisionArg::Fp32 => Self::Fp32,
            PrecisionArg::Bf16 => Self::Bf16,
        }
    }
}

/// Which collective implementation.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum BackendArg {
    /// NCCL when the device is CUDA (and the build has it), else Store.
    #[default]
    Auto,
    /// c10d's ProcessGroupNCCL: one GPU per rank.
    Nccl,
    /// Through rank 0's TCPStore, on any device: slow, for tests and CPU-only clusters.
    Store,
}

impl From<BackendArg> for Backend {
    fn from(backend: BackendArg) -> Self {
        match backend {
            BackendArg::Auto => Self::Auto,
            BackendArg::Nccl => Self::Nccl,
            BackendArg::Store => Self::Store,
        }
    }
}

/// Classification or regression.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum TaskTypeArg {
    /// Regression when every training label is a number and one is not an integer.
    #[default]
    Auto,
    /// One class per distinct training label.
    Classification,
    /// Labels are numbers; one output, mean squared error.
    Regression,
}

impl From<TaskTypeArg> for TaskType {
    fn from(task_type: TaskTypeArg) -> Self {
        match task_type {
            TaskTypeArg::Auto => Self::Auto,
            TaskTypeArg::Classification => Self::Classification,
            TaskTypeArg::Regression => Self::Regression,
        }
    }
}
