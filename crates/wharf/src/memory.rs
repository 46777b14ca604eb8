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

/// Gives freed heap memory back to the system. glibc keeps what sessions
/// freed in its arenas (a burst of stuck downloads leaves RSS at the burst's
/// peak long after the buffers are gone); `malloc_trim` returns the free
/// pages of every arena.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes an integer (the padding to keep), touches
    // only glibc's own free lists under its arena locks, and has no
    // preconditions; its return value only says whether memory was
    // released.
    #[allow(unsafe_code)]
    let _ = unsafe { libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

/// Watches the sessions' buffer memory and trims the heap once a burst is
/// over: when what is in use (`in_use`, bytes) has fallen below a quarter
/// of the peak since the last look (`peak`, bytes), and that peak was worth
/// it (16 MiB).
pub async fn return_freed(in_use: impl Fn() -> u64, peak: impl Fn() -> u64) {
    const WORTH_IT: u64 = 16 << 20;
    let mut since_trim = 0u64;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        since_trim = since_trim.max(peak());
        let now = in_use();
        if since_trim >= WORTH_IT && now < since_trim / 4 {
            tokio::task::spawn_blocking(trim).await.ok();
            since_trim = now;
        }
    }
}
