//! Links the `electra` binary and this crate's tests against the libtorch that `torch-sys` found
//! (`../trainer/libtorch_link.rs`: an rpath so they run without `LD_LIBRARY_PATH`,
//! `libtorch_cuda` kept linked so CUDA kernels register).

include!("../trainer/libtorch_link.rs");

fn main() {
    println!("cargo:rerun-if-changed=../trainer/libtorch_link.rs");
    link_libtorch();
}
