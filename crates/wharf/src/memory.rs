//! Keeping large transfer buffers out of the malloc heap.
//!
//! glibc's malloc raises its mmap threshold whenever a mapped block is freed
//! (up to 32 MiB), so after the first S3 part has been sent, 8 MiB part
//! buffers come from the per-thread arenas instead, and the arenas keep them
//! after they are freed. RSS then grew by 86 MiB during one 1 GiB upload with
//! 8 MiB parts x 4 (the budget is 48 MiB). A fixed threshold turns that
//! adjustment off: blocks of [`MMAP_THRESHOLD`] and more are mapped and
//! unmapped on their own, while the smaller, hot ones (SFTP packets, batched
//! replies of at most 256 KiB) stay on the heap. With it, and with SFTP
//! packets assembled at their exact size and a 4 MiB write budget per
//! session (`wharf-sftp` dispatch), a 2 GiB upload grows RSS by 39-45 MiB on
//! S3 and 7-12 MiB on a filesystem store (`bench/upload_rss.py`).

/// Blocks of this size and more are mapped on their own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 512 * 1024;

/// Sets the allocator's tuning; call once at startup, before any thread.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_allocator() {
    // SAFETY: mallopt takes two integers and changes only malloc's tuning
    // parameters: no pointers, no preconditions, and glibc takes its own
    // arena lock. It is called once, before the runtime starts any thread.
    // A refusal (return value 0) leaves glibc's defaults, which are safe.
    #[allow(unsafe_code)]
    let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
}

/// Other allocators need no tuning.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator() {}
