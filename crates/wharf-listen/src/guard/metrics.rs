//! What the guard counts (refusals, bans, failures, evictions, delays) and
//! the levels it reports, for the metrics endpoint.

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use super::Guard;

/// What the guard has counted, for the metrics.
#[derive(Debug, Default)]
pub struct GuardCounters {
    pub refused_banned: AtomicU64,
    pub refused_pending: AtomicU64,
    pub refused_busy: AtomicU64,
    /// Peers outside `proxy_trusted` (with `proxy_protocol`).
    pub refused_untrusted_proxy: AtomicU64,
    /// Trusted peers without a usable PROXY header in time.
    pub refused_proxy_header: AtomicU64,
    pub bans: AtomicU64,
    /// Bans decided by other nodes and applied here.
    pub shared_bans: AtomicU64,
    pub failures: AtomicU64,
    pub login_timeouts: AtomicU64,
    /// Connections not logged in, closed to make room for one from an
    /// address with none waiting.
    pub evicted: AtomicU64,
    pub delayed_passwords: AtomicU64,
}

impl Guard {
    /// Connections that have not logged in yet (for the metrics).
    pub fn pending(&self) -> usize {
        self.state.lock().pending_total
    }

    /// Addresses banned now (for the metrics).
    pub fn banned(&self) -> usize {
        let now = Instant::now();
        self.state
            .lock()
            .addresses
            .map
            .values()
            .filter(|a| a.banned_until.is_some_and(|u| u > now))
            .count()
    }

    /// Tracked addresses and users (for tests of the bound).
    pub fn tracked(&self) -> (usize, usize) {
        let state = self.state.lock();
        (state.addresses.map.len(), state.users.map.len())
    }
}
