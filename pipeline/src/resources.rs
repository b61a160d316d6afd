//! What this process uses: resident memory (`/proc/self/status`) and CPU time
//! (`getrusage`), for the benchmarks' and summaries' figures. Zero where unknown.

#![allow(unsafe_code)]

/// A `kB` field of `/proc/self/status`, in bytes; 0 where unknown.
fn proc_status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Peak resident memory of this process (`VmHWM`), in bytes; 0 where unknown.
pub fn peak_rss_bytes() -> u64 {
    proc_status_bytes("VmHWM:")
}

/// Current resident memory of this process (`VmRSS`), in bytes; 0 where unknown.
pub fn rss_bytes() -> u64 {
    proc_status_bytes("VmRSS:")
}

/// CPU time this process has used so far (user + system, all threads), in seconds; 0
/// where unknown.
pub fn process_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the plain C struct it is given, which outlives the call; an
    // all-zero rusage is a valid value too.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return 0.0;
        }
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_resident_memory_and_uses_cpu_time() {
        let before = process_cpu_seconds();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        assert!(process_cpu_seconds() > before);
        assert!(rss_bytes() > 0 && peak_rss_bytes() >= rss_bytes());
    }
}
