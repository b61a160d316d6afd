// Linking against the libtorch that `torch-sys` found, shared by the build scripts of the
// crates whose binaries and tests link tch (`trainer`, `cli`, `tests`): each one
// `include!`s this file and calls `link_libtorch()`.

/// Adds libtorch's folder to the link search path and, as an rpath, to every binary and
/// test of the crate (so they run without `LD_LIBRARY_PATH`), and keeps `libtorch_cuda`
/// linked when libtorch has CUDA (the linker would drop it as unused, and CUDA kernels would
/// never register). Returns the folder and whether it has CUDA.
fn link_libtorch() -> (std::path::PathBuf, bool) {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let lib = libtorch_lib();
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    let has_cuda = lib.join("libtorch_cuda.so").exists();
    if has_cuda {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
    (lib, has_cuda)
}

/// `DEP_TCH_LIBTORCH_LIB` (torch-sys's libtorch), or, when that folder is gone (a target
/// folder shared with a deleted checkout keeps torch-sys's old answer), the torch of
/// `$PYTHON` (default `python3` on PATH, the project's `.venv` under `make`).
fn libtorch_lib() -> std::path::PathBuf {
    println!("cargo:rerun-if-env-changed=PYTHON");
    let from_torch_sys = std::env::var("DEP_TCH_LIBTORCH_LIB").map(std::path::PathBuf::from);
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
        .map(|out| std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("lib"))
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
