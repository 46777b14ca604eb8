//! File descriptors: the process's limit raised to what the system allows,
//! and split between open files and connections so that one kind cannot
//! starve the other (a user opening thousands of files must not stop the
//! server from accepting connections and logins).

use std::sync::atomic::{AtomicU64, Ordering};

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// The soft limit after [`raise_descriptor_limit`] (0 before).
static DESCRIPTORS: AtomicU64 = AtomicU64::new(0);

/// Raises the soft RLIMIT_NOFILE to the hard limit (where that fails, the
/// soft limit stays) and remembers the result. Call once at startup.
pub fn raise_descriptor_limit() -> u64 {
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    let soft = if limit.current != limit.maximum && setrlimit(Resource::Nofile, raised).is_ok() {
        limit.maximum
    } else {
        limit.current
    };
    // "Unlimited" (None) is treated as a large finite number.
    let soft = soft.unwrap_or(1 << 20);
    DESCRIPTORS.store(soft, Ordering::Relaxed);
    soft
}

fn descriptors() -> u64 {
    match DESCRIPTORS.load(Ordering::Relaxed) {
        0 => raise_descriptor_limit(),
        known => known,
    }
}

/// Open files and listings of all sessions together: a quarter of the
/// descriptors.
pub fn max_handles() -> u32 {
    u32::try_from(descriptors() / 4).unwrap_or(u32::MAX).max(16)
}

/// Connections one of `listeners` listeners serves at once: half of the
/// descriptors shared between them, at most `cap`. A connection is one
/// descriptor (the files it opens come out of [`max_handles`]), so with
/// the 20,000 descriptors of a common hard limit a lone SFTP listener
/// reaches its 10,000 (AWS Transfer Family's quota per server); a third
/// split (a twelfth each) left it 1,666, and 5,461 with the 65,536 of the
/// deployment guide. The last quarter stays free for FTP data connections,
/// store connections and logs.
pub fn max_connections(listeners: usize, cap: usize) -> usize {
    let share = descriptors() / 2 / (listeners.max(1) as u64);
    usize::try_from(share).unwrap_or(usize::MAX).clamp(16, cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_raised_and_split() {
        let soft = raise_descriptor_limit();
        assert_eq!(getrlimit(Resource::Nofile).current.unwrap_or(1 << 20), soft);
        assert_eq!(u64::from(max_handles()), (soft / 4).max(16));
        assert!(max_connections(2, 10_000) <= 10_000);
        assert!(max_connections(2, 10_000) as u64 <= (soft / 4).max(16));
        // Connections, open files and the reserve never add up to more than
        // the limit (the floors aside).
        if soft >= 1024 {
            assert!(
                max_connections(1, usize::MAX) as u64 + u64::from(max_handles()) <= soft * 3 / 4
            );
        }
    }
}
