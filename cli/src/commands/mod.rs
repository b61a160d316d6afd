//! One module per training command: its arguments and `run` (parse, call, print). The data
//! commands are `electra-data`'s ([`electra_data_cli::commands`]).

pub mod bench_collective;
pub mod bench_train;
pub mod export_hf;
pub mod finetune;
pub mod flops;
pub mod pretrain;
