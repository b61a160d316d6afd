//! Links test binaries and executables of this crate against the libtorch that `torch-sys`
//! found, with an rpath so they run without `LD_LIBRARY_PATH`, and keeps `libtorch_cuda`
//! linked (the linker would drop it as unused, and CUDA kernels would never register).
//!
//! Compiles the c10d shim (`csrc/`): the TCPStore part always, the ProcessGroupNCCL part when
//! libtorch has CUDA and the NCCL and CUDA headers are found (then `cfg(electra_nccl)`).
//! The headers come from the torch wheel's `nvidia/*` dependencies (`nvidia/nccl/include`,
//! `nvidia/cu13/include`, with `nvidia-cuda-cccl` and `nvidia-cuda-crt` installed), or from
//! `ELECTRA_CUDA_INCLUDE` (colon-separated folders) for a libtorch outside a wheel. Set
//! `ELECTRA_NO_NCCL=1` to build without it.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(electra_nccl)");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
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
    let lib = libtorch_lib();
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    let has_cuda = lib.join("libtorch_cuda.so").exists();
    if has_cuda {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }

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

/// `DEP_TCH_LIBTORCH_LIB` (torch-sys's libtorch), or, when that folder is gone (a target
/// folder shared with a deleted checkout keeps torch-sys's old answer), the torch of
/// `$PYTHON` (default `python3` on PATH, the project's `.venv` under `make`).
fn libtorch_lib() -> PathBuf {
    println!("cargo:rerun-if-env-changed=PYTHON");
    let from_torch_sys = std::env::var("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from);
    if let Ok(lib) = &from_torch_sys {
        if lib.join("libc10.so").exists() {
            return lib.clone();
        }
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let found = std::process::Command::new(&python)
        .args([
            "-c",
            "import os, torch; print(os.path.dirname(torch.__file__))",
        ])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("lib"))
        .filter(|lib| lib.join("libc10.so").exists());
    match found {
        Some(lib) => {
            println!(
                "cargo:warning=torch-sys's libtorch folder {:?} is gone; using {} (from {python})",
                from_torch_sys.ok(),
                lib.display()
            );
            lib
        }
        None => panic!(
            "no libtorch: DEP_TCH_LIBTORCH_LIB is {from_torch_sys:?} and {python} has no torch"
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
