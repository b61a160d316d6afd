//! Safe wrappers over the C++ shim (`trainer/csrc/`): c10d's TCPStore and, in builds with
//! `cfg(electra_nccl)`, ProcessGroupNCCL. The crate's other `unsafe` code is
//! in `device.rs` (autocast, CUDA memory statistics, `mallopt`, `getrusage`).
//! Errors are the shim's messages (C++ exceptions caught there); callers add the context.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr::NonNull;
use std::time::Duration;

use tch::Tensor;

#[repr(C)]
struct RawStore {
    _opaque: [u8; 0],
}

#[repr(C)]
struct RawBytes {
    _opaque: [u8; 0],
}

extern "C" {
    fn electra_dist_free(message: *mut c_char);
    fn electra_store_new(
        host: *const c_char,
        port: u16,
        is_server: c_int,
        world_size: u64,
        timeout_ms: i64,
        out: *mut *mut RawStore,
    ) -> *mut c_char;
    fn electra_store_free(store: *mut RawStore);
    fn electra_store_port(store: *const RawStore) -> u16;
    fn electra_store_set(
        store: *mut RawStore,
        key: *const c_char,
        data: *const u8,
        len: usize,
    ) -> *mut c_char;
    fn electra_store_get(
        store: *mut RawStore,
        key: *const c_char,
        out: *mut *mut RawBytes,
    ) -> *mut c_char;
    fn electra_store_wait(store: *mut RawStore, key: *const c_char) -> *mut c_char;
    fn electra_store_delete(store: *mut RawStore, key: *const c_char) -> *mut c_char;
    #[cfg(test)]
    fn electra_store_num_keys(store: *mut RawStore, out: *mut i64) -> *mut c_char;
    fn electra_bytes_data(bytes: *const RawBytes) -> *const u8;
    fn electra_bytes_len(bytes: *const RawBytes) -> usize;
    fn electra_bytes_free(bytes: *mut RawBytes);
    fn electra_tensor_set_grad(param: *mut c_void, grad: *mut c_void) -> *mut c_char;
}

/// The shim's error message, freed; `Ok` for a null pointer.
pub(crate) fn check(message: *mut c_char) -> Result<(), String> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null result is a NUL-terminated string malloc'd by the shim, ours to
    // free once.
    let text = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: as above; freed exactly once.
    unsafe { electra_dist_free(message) };
    Err(text)
}

fn c_string(text: &str) -> Result<CString, String> {
    CString::new(text).map_err(|_| format!("{text:?} contains a NUL byte"))
}

fn millis(timeout: Duration) -> i64 {
    i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX)
}

/// A `c10d::TCPStore`: the server on rank 0 (which also connects to itself as a client),
/// a client elsewhere. Every wait is bounded by the timeout given at connection.
pub(crate) struct Store {
    raw: NonNull<RawStore>,
}

// SAFETY: the TCPStore client is used by one thread at a time (`&mut self` or the owner's
// single-thread use); moving it between threads is fine.
unsafe impl Send for Store {}

impl Store {
    /// Serves (`is_server`) or connects to `host:port`; a client retries until `timeout`.
    pub(crate) fn connect(
        host: &str,
        port: u16,
        is_server: bool,
        world_size: usize,
        timeout: Duration,
    ) -> Result<Self, String> {
        let host = c_string(host)?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: valid C string; `raw` is written by the shim (null on failure).
        check(unsafe {
            electra_store_new(
                host.as_ptr(),
                port,
                c_int::from(is_server),
                world_size as u64,
                millis(timeout),
                &mut raw,
            )
        })?;
        NonNull::new(raw)
            .map(|raw| Self { raw })
            .ok_or_else(|| "the shim returned no store".to_string())
    }

    /// The port the server listens on (the real one when asked for port 0).
    pub(crate) fn port(&self) -> u16 {
        // SAFETY: a live store.
        unsafe { electra_store_port(self.raw.as_ptr()) }
    }

    pub(crate) fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        let key = c_string(key)?;
        // SAFETY: live store, valid key, `value` readable for its length.
        check(unsafe {
            electra_store_set(self.raw.as_ptr(), key.as_ptr(), value.as_ptr(), value.len())
        })
    }

    /// Waits for `key` (up to the timeout) and reads it.
    pub(crate) fn get(&self, key: &str) -> Result<Bytes, String> {
        let key = c_string(key)?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: live store, valid key; `raw` is written by the shim.
        check(unsafe { electra_store_get(self.raw.as_ptr(), key.as_ptr(), &mut raw) })?;
        NonNull::new(raw)
            .map(|raw| Bytes { raw })
            .ok_or_else(|| "the shim returned no value".to_string())
    }

    /// Waits for `key` (up to the timeout) without reading it.
    pub(crate) fn wait(&self, key: &str) -> Result<(), String> {
        let key = c_string(key)?;
        // SAFETY: live store, valid key.
        check(unsafe { electra_store_wait(self.raw.as_ptr(), key.as_ptr()) })
    }

    pub(crate) fn delete(&self, key: &str) -> Result<(), String> {
        let key = c_string(key)?;
        // SAFETY: live store, valid key.
        check(unsafe { electra_store_delete(self.raw.as_ptr(), key.as_ptr()) })
    }

    /// Number of keys the server holds.
    #[cfg(test)]
    pub(crate) fn num_keys(&self) -> Result<i64, String> {
        let mut out = 0;
        // SAFETY: live store; `out` is written by the shim.
        check(unsafe { electra_store_num_keys(self.raw.as_ptr(), &mut out) })?;
        Ok(out)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: created by electra_store_new, freed once.
        unsafe { electra_store_free(self.raw.as_ptr()) }
    }
}

/// A value read from the store, kept in the shim's buffer (no copy).
pub(crate) struct Bytes {
    raw: NonNull<RawBytes>,
}

impl Bytes {
    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: the shim's vector lives until `drop`; data/len describe it. An empty
        // vector may give a null pointer, which `from_raw_parts` does not accept.
        unsafe {
            let len = electra_bytes_len(self.raw.as_ptr());
            if len == 0 {
                return &[];
            }
            std::slice::from_raw_parts(electra_bytes_data(self.raw.as_ptr()), len)
        }
    }
}

impl Drop for Bytes {
    fn drop(&mut self) {
        // SAFETY: created by electra_store_get, freed once.
        unsafe { electra_bytes_free(self.raw.as_ptr()) }
    }
}

/// Sets `param`'s `.grad` to `grad` (tch has no setter).
pub(crate) fn set_grad(param: &Tensor, grad: &Tensor) -> Result<(), String> {
    // SAFETY: tch's C_tensor is a `torch::Tensor*`; both tensors outlive the call, and the
    // shim only assigns the gradient (reference-counted by libtorch).
    check(unsafe {
        electra_tensor_set_grad(param.as_ptr() as *mut c_void, grad.as_ptr() as *mut c_void)
    })
}

#[cfg(electra_nccl)]
pub(crate) use nccl::Nccl;

#[cfg(electra_nccl)]
mod nccl {
    use super::*;

    #[repr(C)]
    struct RawNccl {
        _opaque: [u8; 0],
    }

    extern "C" {
        fn electra_nccl_new(
            store: *mut RawStore,
            prefix: *const c_char,
            rank: c_int,
            world_size: c_int,
            device: c_int,
            timeout_ms: i64,
            out: *mut *mut RawNccl,
        ) -> *mut c_char;
        fn electra_nccl_free(group: *mut RawNccl, abort: c_int);
        fn electra_nccl_all_reduce_sum(group: *mut RawNccl, tensor: *mut c_void) -> *mut c_char;
        fn electra_nccl_broadcast(
            group: *mut RawNccl,
            tensor: *mut c_void,
            root: c_int,
        ) -> *mut c_char;
        fn electra_nccl_barrier(group: *mut RawNccl) -> *mut c_char;
    }

    fn int(value: usize, what: &str) -> Result<c_int, String> {
        c_int::try_from(value).map_err(|_| format!("{what} {value} does not fit a C int"))
    }

    /// A `c10d::ProcessGroupNCCL` over a `PrefixStore` on the job's TCPStore.
    pub(crate) struct Nccl {
        raw: NonNull<RawNccl>,
        /// Abort (do not wait for pending work) when dropped: set after a failure.
        pub(crate) abort_on_drop: std::cell::Cell<bool>,
    }

    // SAFETY: the process group is thread-safe in c10d; it is used by one thread at a time.
    unsafe impl Send for Nccl {}

    impl Nccl {
        pub(crate) fn new(
            store: &Store,
            prefix: &str,
            rank: usize,
            world_size: usize,
            device: usize,
            timeout: Duration,
        ) -> Result<Self, String> {
            let prefix = c_string(prefix)?;
            let mut raw = std::ptr::null_mut();
            // SAFETY: live store (the group keeps its own reference), valid prefix.
            check(unsafe {
                electra_nccl_new(
                    store.raw.as_ptr(),
                    prefix.as_ptr(),
                    int(rank, "rank")?,
                    int(world_size, "world size")?,
                    int(device, "device")?,
                    millis(timeout),
                    &mut raw,
                )
            })?;
            NonNull::new(raw)
                .map(|raw| Self {
                    raw,
                    abort_on_drop: std::cell::Cell::new(false),
                })
                .ok_or_else(|| "the shim returned no process group".to_string())
        }

        pub(crate) fn all_reduce_sum(&self, tensor: &Tensor) -> Result<(), String> {
            // SAFETY: live group; the tensor outlives the call (NCCL works on its storage,
            // which the caller keeps alive at least until the stream reaches the result).
            check(unsafe {
                electra_nccl_all_reduce_sum(self.raw.as_ptr(), tensor.as_ptr() as *mut c_void)
            })
        }

        pub(crate) fn broadcast(&self, tensor: &Tensor, root: usize) -> Result<(), String> {
            let root = int(root, "root")?;
            // SAFETY: as for all_reduce_sum.
            check(unsafe {
                electra_nccl_broadcast(self.raw.as_ptr(), tensor.as_ptr() as *mut c_void, root)
            })
        }

        pub(crate) fn barrier(&self) -> Result<(), String> {
            // SAFETY: live group.
            check(unsafe { electra_nccl_barrier(self.raw.as_ptr()) })
        }
    }

    impl Drop for Nccl {
        fn drop(&mut self) {
            // SAFETY: created by electra_nccl_new, freed once.
            unsafe { electra_nccl_free(self.raw.as_ptr(), c_int::from(self.abort_on_drop.get())) }
        }
    }
}
