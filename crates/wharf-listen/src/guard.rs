//! The defences of an internet-facing listener (SPEC section 8, and the
//! OpenSSH-style admission of connections that have not logged in yet).
//!
//! - **Bans**: an address (IPv4 /32, IPv6 /64) with `ban_after_failures`
//!   failed logins or protocol violations within `ban_window` is refused at
//!   accept, before any key exchange or TLS, for `ban_time`, doubling on
//!   each repeat up to 24 hours. `ban_exempt` addresses never are.
//! - **Password spraying**: a user whose password fails `ban_after_failures`
//!   times within `ban_window`, from any addresses, gets a growing delay on
//!   password logins (at most 10 s), never a lockout.
//! - **Connections that have not logged in**: at most
//!   [`MAX_PENDING_PER_ADDRESS`] per address; beyond [`PENDING_START`] in
//!   all, new ones from an address that already has one waiting are dropped
//!   at random with a probability that grows to 1 at [`PENDING_FULL`]
//!   (OpenSSH's `MaxStartups 100:30:1000`); each must log in within
//!   `login_grace_time`. Unlike OpenSSH, a connection from an address with
//!   none waiting is always admitted, and at [`PENDING_FULL`] it evicts the
//!   oldest waiting connection of the address with the most waiting: silent
//!   connections from many addresses (a botnet) cannot lock real users out,
//!   whose one connection is never the heaviest address's.
//!
//! Every table is bounded ([`MAX_ENTRIES`]) whatever the number of
//! addresses or user names: when full, the entries least worth keeping
//! (not banned, oldest failure) go first. Failures are counted with a
//! sliding-window estimate (this window's count plus the last window's,
//! weighted by how much of it still overlaps), so memory per entry is fixed
//! whatever `ban_after_failures` is.
//!
//! Several nodes share their bans (SPEC section 8: every node applies a
//! ban within a second): a guard given [`SharedBans`] publishes each ban it
//! decides there, and applies the others' with [`Guard::apply_ban`]; the
//! listeners and the gateway do not know.
//!
//! Here: the guard, its settings and the state its tables share. The
//! defences themselves are beside it: `admission` (accept: bans and the
//! pending limits, [`Admitted`] until login), `bans` (failures, bans, the
//! password delay), `table` (bounded tables and sliding-window counts),
//! `metrics` (what the guard counts and reports).

mod admission;
mod bans;
mod metrics;
mod table;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use parking_lot::Mutex;

use self::admission::Waiting;
pub use self::admission::{Admitted, LoginExpired, Refusal};
pub use self::bans::{Ban, SharedBans};
pub use self::metrics::GuardCounters;
use self::table::{Table, Window};

/// Entries kept per table (addresses, user names).
pub const MAX_ENTRIES: usize = 65_536;
/// Connections from one address that have not logged in yet.
pub const MAX_PENDING_PER_ADDRESS: usize = 32;
/// Connections that have not logged in yet, in all, before random drops.
pub const PENDING_START: usize = 100;
/// ... and the number at which every new one is dropped.
pub const PENDING_FULL: usize = 1000;

/// The brute-force settings (`[server] ban_*`, `login_grace_time`).
#[derive(Debug, Clone)]
pub struct GuardConfig {
    pub ban_after_failures: u32,
    pub ban_window: Duration,
    pub ban_time: Duration,
    pub ban_exempt: Vec<IpNet>,
    pub login_grace_time: Duration,
}

impl Default for GuardConfig {
    /// SPEC's defaults.
    fn default() -> GuardConfig {
        GuardConfig {
            ban_after_failures: 20,
            ban_window: Duration::from_secs(300),
            ban_time: Duration::from_secs(900),
            ban_exempt: Vec::new(),
            login_grace_time: Duration::from_secs(60),
        }
    }
}

/// The defences of every listener of a process (shared by the listeners,
/// which admit connections, and the gateway, which reports failures).
pub struct Guard {
    config: GuardConfig,
    state: Mutex<State>,
    /// Where bans go for the other nodes, in a cluster.
    shared: OnceLock<Arc<dyn SharedBans>>,
    pub counters: GuardCounters,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Guard {
    pub fn new(config: GuardConfig) -> Guard {
        Guard::with_capacity(config, MAX_ENTRIES)
    }

    /// A guard whose tables hold at most `max` entries each (tests).
    pub fn with_capacity(config: GuardConfig, max: usize) -> Guard {
        Guard {
            config,
            state: Mutex::new(State {
                addresses: Table::new(max),
                users: Table::new(max),
                pending_total: 0,
                waiting: HashMap::new(),
                next_id: 0,
            }),
            shared: OnceLock::new(),
            counters: GuardCounters::default(),
        }
    }

    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        let ip = unmapped(ip);
        self.config.ban_exempt.iter().any(|net| net.contains(&ip))
    }
}

/// Everything the guard remembers, behind its one lock.
struct State {
    addresses: Table<IpAddr, Address>,
    users: Table<String, User>,
    pending_total: usize,
    /// Connections that have not logged in and may be evicted, by address
    /// (oldest first). Exempt addresses are never evicted, so not here. At
    /// most [`MAX_PENDING_PER_ADDRESS`] per address and, with evictions,
    /// about [`PENDING_FULL`] in all.
    waiting: HashMap<IpAddr, VecDeque<Waiting>>,
    next_id: u64,
}

/// What the guard remembers of one address (IPv4 /32, IPv6 /64).
#[derive(Debug)]
struct Address {
    failures: Window,
    banned_until: Option<Instant>,
    /// Bans so far (for the doubling), and when the last one ended.
    bans: u32,
    last_ban_end: Option<Instant>,
    /// Connections that have not logged in yet.
    pending: usize,
    last_seen: Instant,
}

impl Address {
    fn new(now: Instant) -> Address {
        Address {
            failures: Window::new(now),
            banned_until: None,
            bans: 0,
            last_ban_end: None,
            pending: 0,
            last_seen: now,
        }
    }
}

/// What the guard remembers of one user name.
#[derive(Debug)]
struct User {
    failures: Window,
    last_seen: Instant,
}

/// Which addresses a full table keeps: banned or waiting ones first, then
/// the most recently seen.
fn address_worth(a: &Address) -> (bool, Instant) {
    (a.banned_until.is_some() || a.pending > 0, a.last_seen)
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it is.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests;
