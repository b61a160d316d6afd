//! Links test binaries of this crate against the libtorch that `torch-sys` found
//! (`libtorch_link.rs`: an rpath so they run without `LD_LIBRARY_PATH`, `libtorch_cuda`
//! kept linked so CUDA kernels register).
//!
//! Compiles the c10d shim (`csrc/`): the TCPStore part always, the ProcessGroupNCCL part when
//! libtorch has CUDA and the NCCL and CUDA headers are found (then `cfg(electra_nccl)`).
//! The headers come from the torch wheel's `nvidia/*` dependencies (`nvidia/nccl/include`,
//! `nvidia/cu13/include`, with `nvidia-cuda-cccl` and `nvidia-cuda-crt` installed), or from
//! `ELECTRA_CUDA_INCLUDE` (colon-separated folders) for a libtorch outside a wheel. Set
//! `ELECTRA_NO_NCCL=1` to build without it.

use std::path::{Path, PathBuf};

include!("libtorch_link.rs");

fn main() {
    println!("cargo::rustc-check-cfg=cfg(electra_nccl)");
    println!("cargo:rerun-if-changed=libtorch_link.rs");
    println!("cargo:rerun-if-env-changed=ELECTRA_CUDA_INCLUDE");
    println!("cargo:rerun-if-env-changed=ELECTRA_NO_NCCL");
    for file in [
        "dist_shim.h",
        "dist_common.h",
        "dist_store.cpp",
        "dist_nccl.cpp",
        "device.cpp",
    ] {
        println!("cargo:rerun-if-changed=csrc/{file}");
    }
    let (lib, has_cuda) = link_libtorch();

    let torch_root = lib.parent().unwrap_or(&lib).to_path_buf();
    let torch_include = vec![
        torch_root.join("include"),
        torch_root.join("include/torch/csrc/api/include"),
    ];
    build_shim(
        "electra_dist_store",
        &["csrc/dist_store.cpp", "csrc/device.cpp"],
        &torch_include,
        &[],
    );

    if !has_cuda || std::env::var_os("ELECTRA_NO_NCCL").is_some() {
        return;
    }
    match cuda_includes(&torch_root) {
        Ok(cuda) => {
            let includes: Vec<PathBuf> = torch_include.iter().chain(&cuda).cloned().collect();
            build_shim(
                "electra_dist_nccl",
                &["csrc/dist_nccl.cpp"],
                &includes,
                &["USE_C10D_NCCL", "USE_CUDA"],
            );
            println!("cargo:rustc-link-lib=dylib=c10_cuda");
            println!("cargo:rustc-cfg=electra_nccl");
        }
        Err(missing) => println!(
            "cargo:warning=libtorch has CUDA but {missing} was not found: building without \
             the NCCL backend (install nvidia-cuda-cccl and nvidia-cuda-crt, or set \
             ELECTRA_CUDA_INCLUDE)"
        ),
    }
}

/// Compiles C++ files against libtorch's headers as the torch wheels are built (C++17, the
/// new libstdc++ ABI).
fn build_shim(name: &str, files: &[&str], includes: &[PathBuf], defines: &[&str]) {
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .std("c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("GLOG_USE_GLOG_EXPORT", None)
        .includes(includes)
        .files(files);
    for define in defines {
        build.define(define, None);
    }
    build.compile(name);
}

/// The folders holding `nccl.h`, `cuda_runtime_api.h`, `crt/host_config.h` and
/// `nv/target`, or the first header that none of the candidates has.
fn cuda_includes(torch_root: &Path) -> Result<Vec<PathBuf>, &'static str> {
    let mut candidates: Vec<PathBuf> = std::env::var("ELECTRA_CUDA_INCLUDE")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    if let Some(site) = torch_root.parent() {
        let nvidia = site.join("nvidia");
        candidates.push(nvidia.join("nccl/include"));
        candidates.push(nvidia.join("cu13/include"));
        candidates.push(nvidia.join("cu13/include/cccl"));
        candidates.push(nvidia.join("cuda_runtime/include"));
        candidates.push(nvidia.join("cuda_cccl/include"));
    }
    candidates.push(PathBuf::from("/usr/local/cuda/include"));
    let mut found = Vec::new();
    for header in [
        "nccl.h",
        "cuda_runtime_api.h",
        "crt/host_config.h",
        "nv/target",
    ] {
        let dir = candidates
            .iter()
            .find(|dir| dir.join(header).exists())
            .ok_or(header)?;
        if !found.contains(dir) {
            found.push(dir.clone());
        }
    }
    Ok(found)
}
