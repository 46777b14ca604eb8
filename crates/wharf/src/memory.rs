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

/// Buffer bursts worth a trim: a peak of at least this many bytes.
const BUFFERS_WORTH_IT: u64 = 16 << 20;
/// Connection bursts worth a trim: at least this many fewer connections
/// than the most seen since the last trim. An idle SFTP session costs tens
/// of KiB of small allocations (its SSH session, channel, dispatcher tasks
/// and their queues), so 256 of them are several MiB.
const CONNECTIONS_WORTH_IT: usize = 256;
/// Looks in a row with fewer connections each time after which the heap is
/// trimmed even though connections are still ending.
const FALLING_AT_MOST: u32 = 10;

/// When to trim, from what is seen at each look.
///
/// Two kinds of burst leave freed memory in glibc's arenas: buffer memory
/// (stuck downloads, uploads: large blocks charged to the quotas) and
/// connections themselves. Idle sessions hold no buffer memory at all, so
/// watching buffers alone never trimmed after a burst of logins: 1,500
/// idle SFTP sessions left RSS at 140 MiB once they had all closed (from
/// 41 MiB before them), where one `malloc_trim(0)` brought it to 29 MiB.
#[derive(Debug, Default)]
struct Watch {
    /// The most buffer memory in use since the last trim, bytes.
    buffers_peak: u64,
    /// The most connections open at a look since the last trim.
    connections_peak: usize,
    /// Connections open at the last look.
    connections_last: usize,
    /// Looks in a row at which connections had ended since the one before.
    falling: u32,
}

impl Watch {
    /// One look: `buffers_peak` is the peak since the previous look,
    /// `buffers` and `connections` what is in use now. True when a burst is
    /// over: buffer memory fell below a quarter of a peak worth it, or
    /// [`CONNECTIONS_WORTH_IT`] connections or more have ended. What is in
    /// use now becomes the new reference.
    fn look(&mut self, buffers_peak: u64, buffers: u64, connections: usize) -> bool {
        self.buffers_peak = self.buffers_peak.max(buffers_peak).max(buffers);
        self.connections_peak = self.connections_peak.max(connections);
        self.falling = if connections < self.connections_last {
            self.falling + 1
        } else {
            0
        };
        self.connections_last = connections;
        let buffers_over = self.buffers_peak >= BUFFERS_WORTH_IT && buffers < self.buffers_peak / 4;
        // Over once connections stop ending (what a session frees as it
        // ends, it frees in several tasks, some after the connection's),
        // or after a long decline.
        let connections_over = self.connections_peak - connections >= CONNECTIONS_WORTH_IT
            && (self.falling == 0 || self.falling >= FALLING_AT_MOST);
        if buffers_over || connections_over {
            self.buffers_peak = buffers;
            self.connections_peak = connections;
            self.falling = 0;
        }
        buffers_over || connections_over
    }
}

/// Watches the sessions' buffer memory (`in_use` and `peak`, bytes; `peak`
/// is the most in use since it was last called) and the connections open
/// (`connections`), once a second, and trims the heap once a burst of
/// either is over ([`Watch::look`]).
pub async fn return_freed(
    in_use: impl Fn() -> u64,
    peak: impl Fn() -> u64,
    connections: impl Fn() -> usize,
) {
    let mut watch = Watch::default();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        if watch.look(peak(), in_use(), connections()) {
            tokio::task::spawn_blocking(trim).await.ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Each case: looks of (buffers peak, buffers now, connections now),
    /// and whether each one trims.
    fn check(looks: &[(u64, u64, usize, bool)]) {
        let mut watch = Watch::default();
        for (i, &(peak, now, connections, trims)) in looks.iter().enumerate() {
            assert_eq!(
                watch.look(peak, now, connections),
                trims,
                "look {i} of {looks:?}"
            );
        }
    }

    #[test]
    fn a_trim_follows_the_end_of_a_burst_only() {
        // Buffers: a 64 MiB burst, over once below a quarter of it.
        check(&[
            (64 * MIB, 60 * MIB, 0, false),
            (0, 20 * MIB, 0, false),
            (0, 10 * MIB, 0, true),
        ]);
        // Too small to be worth it.
        check(&[(8 * MIB, 8 * MIB, 0, false), (0, 0, 0, false)]);
        // Connections: 10,000 logins, then they leave; over once they
        // stop leaving.
        check(&[
            (0, 0, 5_000, false),
            (0, 0, 10_000, false),
            (0, 0, 9_800, false),
            (0, 0, 6_000, false),
            (0, 0, 0, false),
            (0, 0, 0, true),
            (0, 0, 0, false),
        ]);
        // Leaving slowly: trimmed every FALLING_AT_MOST looks at most.
        let mut looks = vec![(0, 0, 10_000, false)];
        looks.extend((1..=10).map(|i| (0, 0, 10_000 - 100 * i, i == 10)));
        looks.extend((1..=3).map(|i| (0, 0, 9_000 - 100 * i, false)));
        check(&looks);
        // Steady churn at a constant level never trims.
        check(&[
            (0, 0, 3_000, false),
            (0, 0, 3_100, false),
            (0, 0, 2_950, false),
            (0, 0, 3_000, false),
        ]);
        // A new burst after a trim is measured from the level after it.
        check(&[
            (0, 0, 1_000, false),
            (0, 0, 0, false),
            (0, 0, 0, true),
            (0, 0, 200, false),
            (0, 0, 0, false),
            (0, 0, 0, false),
            (0, 0, 300, false),
            (0, 0, 40, false),
            (0, 0, 40, true),
        ]);
    }
}
