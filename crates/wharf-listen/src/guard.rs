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
//! The state sits behind [`Guard`]'s methods only, so that several nodes can
//! later share bans through a store of their own (the cluster issue) without
//! the listeners or the gateway changing.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use parking_lot::Mutex;

/// Entries kept per table (addresses, user names).
pub const MAX_ENTRIES: usize = 65_536;
/// Connections from one address that have not logged in yet.
pub const MAX_PENDING_PER_ADDRESS: usize = 32;
/// Connections that have not logged in yet, in all, before random drops.
pub const PENDING_START: usize = 100;
/// ... and the number at which every new one is dropped.
pub const PENDING_FULL: usize = 1000;
/// The probability of a drop at [`PENDING_START`] (then linear to 1).
const PENDING_RATE: f64 = 0.3;
/// The longest ban.
const MAX_BAN: Duration = Duration::from_secs(24 * 3600);
/// The longest password delay for a sprayed user.
const MAX_DELAY: Duration = Duration::from_secs(10);
/// A ban is remembered this long after it ends, for the doubling.
const BAN_MEMORY: Duration = Duration::from_secs(24 * 3600);

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

/// Why a connection is refused at accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The address is banned until then.
    Banned { remaining: Duration },
    /// Too many connections from this address have not logged in.
    TooManyPending,
    /// Too many connections have not logged in (random early drop).
    Busy,
    /// With `proxy_protocol`: the peer is not in `proxy_trusted` (closed
    /// before a byte was read), or it sent no usable PROXY header.
    Proxy(crate::ProxyRefusal),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Banned { remaining } => write!(
                f,
                "address banned after repeated failed logins ({}s left)",
                remaining.as_secs()
            ),
            Refusal::TooManyPending => write!(
                f,
                "more than {MAX_PENDING_PER_ADDRESS} connections from this address have not logged in"
            ),
            Refusal::Busy => {
                f.write_str("too many connections have not logged in (dropped at random)")
            }
            Refusal::Proxy(refusal) => refusal.fmt(f),
        }
    }
}

/// A ban that a failure just started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ban {
    pub duration: Duration,
    /// 1 for the first ban of this address, 2 for the next, ...
    pub repeat: u32,
}

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
    pub failures: AtomicU64,
    pub login_timeouts: AtomicU64,
    /// Connections not logged in, closed to make room for one from an
    /// address with none waiting.
    pub evicted: AtomicU64,
    pub delayed_passwords: AtomicU64,
}

/// A sliding-window failure count.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    current: u32,
    previous: u32,
}

impl Window {
    fn new(now: Instant) -> Window {
        Window {
            start: now,
            current: 0,
            previous: 0,
        }
    }

    /// Moves the window to `now` and returns the estimated count of the last
    /// `length`.
    fn estimate(&mut self, now: Instant, length: Duration) -> f64 {
        let length = length.max(Duration::from_millis(1));
        let mut elapsed = now.saturating_duration_since(self.start);
        if elapsed >= length * 2 {
            *self = Window::new(now);
            elapsed = Duration::ZERO;
        } else if elapsed >= length {
            self.previous = self.current;
            self.current = 0;
            self.start += length;
            elapsed -= length;
        }
        let overlap = 1.0 - elapsed.as_secs_f64() / length.as_secs_f64();
        f64::from(self.current) + f64::from(self.previous) * overlap
    }

    fn add(&mut self, now: Instant, length: Duration) -> f64 {
        self.estimate(now, length);
        self.current = self.current.saturating_add(1);
        self.estimate(now, length)
    }
}

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

#[derive(Debug)]
struct User {
    failures: Window,
    last_seen: Instant,
}

/// A map bounded to [`MAX_ENTRIES`]: when full, an eighth of the entries,
/// those `keep` scores lowest, are dropped (amortised O(1) per insert).
struct Table<K, V> {
    map: HashMap<K, V>,
    max: usize,
}

impl<K: Eq + Hash + Clone, V> Table<K, V> {
    fn new(max: usize) -> Table<K, V> {
        Table {
            map: HashMap::new(),
            max: max.max(8),
        }
    }

    fn entry(
        &mut self,
        key: K,
        make: impl FnOnce() -> V,
        keep: impl Fn(&V) -> (bool, Instant),
    ) -> &mut V {
        if !self.map.contains_key(&key) && self.map.len() >= self.max {
            let mut scored: Vec<(K, (bool, Instant))> =
                self.map.iter().map(|(k, v)| (k.clone(), keep(v))).collect();
            scored.sort_by_key(|entry| entry.1);
            for (k, _) in scored.into_iter().take(self.max / 8) {
                self.map.remove(&k);
            }
        }
        self.map.entry(key).or_insert_with(make)
    }
}

/// The address a ban applies to: IPv4 /32, IPv6 /64.
fn ban_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let mut segments = v6.segments();
            for s in &mut segments[4..] {
                *s = 0;
            }
            IpAddr::V6(segments.into())
        }
    }
}

struct State {
    addresses: Table<IpAddr, Address>,
    users: Table<String, User>,
    pending_total: usize,
    /// Connections that have not logged in and may be evicted, by address
    /// (oldest first). Exempt addresses are never evicted, so not here. At
    /// most [`MAX_PENDING_PER_ADDRESS`] per address and, with evictions,
    /// about [`PENDING_FULL`] in all.
    waiting: HashMap<IpAddr, std::collections::VecDeque<Waiting>>,
    next_id: u64,
}

struct Waiting {
    id: u64,
    state: Arc<AtomicU8>,
    evict: Arc<tokio::sync::Notify>,
}

impl State {
    /// One connection of `key` no longer counts as waiting to log in.
    fn forget_pending(&mut self, key: IpAddr) {
        self.pending_total = self.pending_total.saturating_sub(1);
        if let Some(address) = self.addresses.map.get_mut(&key) {
            address.pending = address.pending.saturating_sub(1);
        }
    }
}

/// [`Admitted`] states.
const PENDING: u8 = 0;
const LOGGED_IN: u8 = 1;
const EVICTED: u8 = 2;

/// The defences of every listener of a process (shared by the listeners,
/// which admit connections, and the gateway, which reports failures).
pub struct Guard {
    config: GuardConfig,
    state: Mutex<State>,
    pub counters: GuardCounters,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn address_worth(a: &Address) -> (bool, Instant) {
    (a.banned_until.is_some() || a.pending > 0, a.last_seen)
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
            counters: GuardCounters::default(),
        }
    }

    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.config.ban_exempt.iter().any(|net| net.contains(&ip))
    }

    /// At accept, before anything is read: refused (banned, too many
    /// pending), or admitted as a connection that has not logged in yet.
    pub fn admit(self: &Arc<Guard>, ip: IpAddr) -> Result<Admitted, Refusal> {
        self.admit_at(ip, Instant::now(), rand::random::<f64>())
    }

    fn admit_at(
        self: &Arc<Guard>,
        ip: IpAddr,
        now: Instant,
        dice: f64,
    ) -> Result<Admitted, Refusal> {
        let key = ban_key(ip);
        let exempt = self.exempt(ip);
        let mut state = self.state.lock();
        let total = state.pending_total;
        let address = state
            .addresses
            .entry(key, || Address::new(now), address_worth);
        address.last_seen = now;
        if let Some(until) = address.banned_until {
            if until > now && !exempt {
                self.counters.refused_banned.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::Banned {
                    remaining: until - now,
                });
            }
            if until <= now {
                address.banned_until = None;
                address.last_ban_end = Some(until);
            }
        }
        let fresh = address.pending == 0;
        if !exempt {
            if address.pending >= MAX_PENDING_PER_ADDRESS {
                self.counters
                    .refused_pending
                    .fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::TooManyPending);
            }
            if total >= PENDING_START && !fresh {
                let rate = if total >= PENDING_FULL {
                    1.0
                } else {
                    PENDING_RATE
                        + (1.0 - PENDING_RATE) * (total - PENDING_START) as f64
                            / (PENDING_FULL - PENDING_START) as f64
                };
                if dice < rate {
                    self.counters.refused_busy.fetch_add(1, Ordering::Relaxed);
                    return Err(Refusal::Busy);
                }
            }
        }
        address.pending += 1;
        state.pending_total += 1;
        if !exempt && state.pending_total > PENDING_FULL {
            self.evict_one(&mut state);
        }
        let flag = Arc::new(AtomicU8::new(PENDING));
        let evict = Arc::new(tokio::sync::Notify::new());
        let id = state.next_id;
        state.next_id += 1;
        if !exempt {
            state.waiting.entry(key).or_default().push_back(Waiting {
                id,
                state: flag.clone(),
                evict: evict.clone(),
            });
        }
        Ok(Admitted {
            guard: self.clone(),
            key,
            id,
            state: flag,
            evict,
            deadline: now + self.config.login_grace_time,
        })
    }

    /// Evicts the oldest waiting connection of the address with the most
    /// waiting (the oldest such address on a tie).
    fn evict_one(&self, state: &mut State) {
        let victim = state
            .waiting
            .iter()
            .filter_map(|(key, queue)| Some((*key, queue.len(), queue.front()?.id)))
            .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)))
            .map(|(key, _, _)| key);
        let Some(key) = victim else {
            return;
        };
        let Some(queue) = state.waiting.get_mut(&key) else {
            return;
        };
        let Some(waiting) = queue.pop_front() else {
            return;
        };
        if queue.is_empty() {
            state.waiting.remove(&key);
        }
        if waiting
            .state
            .compare_exchange(PENDING, EVICTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            state.forget_pending(key);
            waiting.evict.notify_one();
            self.counters.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn release_pending(&self, key: IpAddr, id: u64) {
        let mut state = self.state.lock();
        state.forget_pending(key);
        if let Some(queue) = state.waiting.get_mut(&key) {
            queue.retain(|w| w.id != id);
            if queue.is_empty() {
                state.waiting.remove(&key);
            }
        }
    }

    /// A connection closed by the PROXY protocol rules, counted: the
    /// refusal to report.
    pub fn proxy_refused(&self, refusal: crate::ProxyRefusal) -> Refusal {
        let counter = match refusal {
            crate::ProxyRefusal::Untrusted => &self.counters.refused_untrusted_proxy,
            crate::ProxyRefusal::Header(_) => &self.counters.refused_proxy_header,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Refusal::Proxy(refusal)
    }

    /// A failed login or a protocol violation from `ip`; returns the ban it
    /// started, if any.
    pub fn failed(&self, ip: IpAddr) -> Option<Ban> {
        self.failed_at(ip, Instant::now())
    }

    fn failed_at(&self, ip: IpAddr, now: Instant) -> Option<Ban> {
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        if self.exempt(ip) {
            return None;
        }
        let config = &self.config;
        let mut state = self.state.lock();
        let address = state
            .addresses
            .entry(ban_key(ip), || Address::new(now), address_worth);
        address.last_seen = now;
        if address.banned_until.is_some_and(|until| until > now) {
            return None;
        }
        let count = address.failures.add(now, config.ban_window);
        if count < f64::from(config.ban_after_failures) {
            return None;
        }
        if address
            .last_ban_end
            .is_some_and(|end| now.saturating_duration_since(end) > BAN_MEMORY)
        {
            address.bans = 0;
        }
        address.bans = address.bans.saturating_add(1);
        let factor = 2u32.saturating_pow(address.bans.saturating_sub(1).min(20));
        let duration = config.ban_time.saturating_mul(factor).min(MAX_BAN);
        address.banned_until = Some(now + duration);
        address.failures = Window::new(now);
        self.counters.bans.fetch_add(1, Ordering::Relaxed);
        Some(Ban {
            duration,
            repeat: address.bans,
        })
    }

    /// How long a password login of `user` waits first: nothing, until the
    /// user's password has failed `ban_after_failures` times within
    /// `ban_window` (from any addresses); then 250 ms, doubling with each
    /// further failure, at most 10 s.
    pub fn password_delay(&self, user: &str) -> Duration {
        self.password_delay_at(user, Instant::now())
    }

    fn password_delay_at(&self, user: &str, now: Instant) -> Duration {
        let mut state = self.state.lock();
        let Some(entry) = state.users.map.get_mut(user) else {
            return Duration::ZERO;
        };
        let count = entry.failures.estimate(now, self.config.ban_window);
        let excess = count - f64::from(self.config.ban_after_failures);
        if excess < 0.0 {
            return Duration::ZERO;
        }
        self.counters
            .delayed_passwords
            .fetch_add(1, Ordering::Relaxed);
        let steps = excess.floor().min(16.0) as u32;
        Duration::from_millis(250)
            .saturating_mul(2u32.saturating_pow(steps))
            .min(MAX_DELAY)
    }

    /// A failed password of `user` (whatever the address).
    pub fn password_failed(&self, user: &str) {
        self.password_failed_at(user, Instant::now());
    }

    fn password_failed_at(&self, user: &str, now: Instant) {
        let window = self.config.ban_window;
        let mut state = self.state.lock();
        let entry = state.users.entry(
            user.to_owned(),
            || User {
                failures: Window::new(now),
                last_seen: now,
            },
            |u| (false, u.last_seen),
        );
        entry.last_seen = now;
        entry.failures.add(now, window);
    }

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

/// Why a connection that has not logged in must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginExpired {
    /// `login_grace_time` passed.
    Timeout,
    /// Closed to make room for a connection from an address with none
    /// waiting.
    Evicted,
}

impl std::fmt::Display for LoginExpired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LoginExpired::Timeout => "no login within login_grace_time",
            LoginExpired::Evicted => {
                "too many connections are waiting to log in; the oldest of the busiest address is closed"
            }
        })
    }
}

/// A connection admitted at accept that has not logged in yet: it counts
/// against the pending limits until [`Admitted::logged_in`] (or until it is
/// dropped or evicted), and must log in before its deadline.
#[derive(Debug)]
pub struct Admitted {
    guard: Arc<Guard>,
    key: IpAddr,
    id: u64,
    state: Arc<AtomicU8>,
    evict: Arc<tokio::sync::Notify>,
    deadline: Instant,
}

impl Admitted {
    /// The connection logged in: it no longer counts as pending.
    pub fn logged_in(&self) {
        if self
            .state
            .compare_exchange(PENDING, LOGGED_IN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.guard.release_pending(self.key, self.id);
        }
    }

    pub fn is_logged_in(&self) -> bool {
        self.state.load(Ordering::Acquire) == LOGGED_IN
    }

    /// Resolves at the login deadline if the connection has not logged in
    /// by then, or when it is evicted to make room, saying which; never,
    /// once it has logged in.
    pub async fn login_expired(&self) -> LoginExpired {
        let evicted = self.evict.notified();
        tokio::pin!(evicted);
        // Registered before the state is read, so a notification sent in
        // between is not missed.
        evicted.as_mut().enable();
        if self.state.load(Ordering::Acquire) == EVICTED {
            return LoginExpired::Evicted;
        }
        tokio::select! {
            () = tokio::time::sleep_until(self.deadline.into()) => {}
            () = evicted => return LoginExpired::Evicted,
        }
        if self.is_logged_in() {
            std::future::pending::<()>().await;
        }
        self.guard
            .counters
            .login_timeouts
            .fetch_add(1, Ordering::Relaxed);
        LoginExpired::Timeout
    }

    /// The guard, for reporting failures.
    pub fn guard(&self) -> &Arc<Guard> {
        &self.guard
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.logged_in();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn guard(failures: u32) -> Arc<Guard> {
        Arc::new(Guard::new(GuardConfig {
            ban_after_failures: failures,
            ban_window: Duration::from_secs(300),
            ban_time: Duration::from_secs(900),
            ban_exempt: vec!["10.0.0.0/8".parse().unwrap()],
            login_grace_time: Duration::from_secs(60),
        }))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_nth_failure_bans_and_bans_double_up_to_a_day() {
        let g = guard(20);
        let t0 = Instant::now();
        for i in 0..19 {
            assert_eq!(g.failed_at(ip("192.0.2.1"), t0), None, "failure {i}");
        }
        let ban = g.failed_at(ip("192.0.2.1"), t0).unwrap();
        assert_eq!(
            ban,
            Ban {
                duration: Duration::from_secs(900),
                repeat: 1
            }
        );
        assert!(matches!(
            g.admit_at(ip("192.0.2.1"), t0, 1.0),
            Err(Refusal::Banned { .. })
        ));
        // Another address is not affected.
        assert!(g.admit_at(ip("192.0.2.2"), t0, 1.0).is_ok());
        // After the ban, the next 20 failures ban for twice as long.
        let t1 = t0 + Duration::from_secs(901);
        assert!(g.admit_at(ip("192.0.2.1"), t1, 1.0).is_ok());
        for _ in 0..19 {
            assert_eq!(g.failed_at(ip("192.0.2.1"), t1), None);
        }
        let ban = g.failed_at(ip("192.0.2.1"), t1).unwrap();
        assert_eq!(ban.duration, Duration::from_secs(1800));
        assert_eq!(ban.repeat, 2);
        let mut t = t1;
        let mut last = ban;
        for _ in 0..10 {
            t += last.duration + Duration::from_secs(1);
            assert!(g.admit_at(ip("192.0.2.1"), t, 1.0).is_ok());
            for _ in 0..20 {
                if let Some(b) = g.failed_at(ip("192.0.2.1"), t) {
                    last = b;
                }
            }
        }
        assert_eq!(last.duration, MAX_BAN);
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_ban() {
        let g = guard(20);
        let mut t = Instant::now();
        for _ in 0..100 {
            assert_eq!(g.failed_at(ip("192.0.2.9"), t), None);
            t += Duration::from_secs(30); // 10 per window
        }
    }

    #[test]
    fn ipv6_addresses_are_banned_by_slash_64_and_exempt_ones_never() {
        let g = guard(10);
        let now = Instant::now();
        for i in 0..10 {
            g.failed_at(ip(&format!("2001:db8:1:2::{i:x}")), now);
        }
        assert!(matches!(
            g.admit_at(ip("2001:db8:1:2:ffff::1"), now, 1.0),
            Err(Refusal::Banned { .. })
        ));
        assert!(g.admit_at(ip("2001:db8:1:3::1"), now, 1.0).is_ok());
        for _ in 0..50 {
            assert_eq!(g.failed_at(ip("10.1.2.3"), now), None);
        }
        assert!(g.admit_at(ip("10.1.2.3"), now, 1.0).is_ok());
        assert!(g.admit_at(ip("::ffff:10.1.2.3"), now, 1.0).is_ok());
    }

    #[test]
    fn pending_connections_are_capped_per_address_and_dropped_at_random_in_all() {
        let g = guard(20);
        let now = Instant::now();
        let mut held = Vec::new();
        for _ in 0..MAX_PENDING_PER_ADDRESS {
            held.push(g.admit_at(ip("192.0.2.7"), now, 1.0).unwrap());
        }
        assert_eq!(
            g.admit_at(ip("192.0.2.7"), now, 1.0).unwrap_err(),
            Refusal::TooManyPending
        );
        // One logs in: room again.
        held.pop().unwrap().logged_in();
        assert!(g.admit_at(ip("192.0.2.7"), now, 1.0).is_ok());
        // Many addresses: random drops from PENDING_START, all at PENDING_FULL.
        let mut n = 0u32;
        while g.pending() < PENDING_START {
            n += 1;
            held.push(
                g.admit_at(IpAddr::from([198, 51, (n >> 8) as u8, n as u8]), now, 0.0)
                    .unwrap(),
            );
        }
        // An address with none waiting is admitted whatever the dice;
        // its second connection is subject to the drop.
        held.push(g.admit_at(ip("203.0.113.1"), now, 0.0).unwrap());
        assert_eq!(
            g.admit_at(ip("203.0.113.1"), now, 0.29).unwrap_err(),
            Refusal::Busy
        );
        assert!(g.admit_at(ip("203.0.113.1"), now, 0.31).is_ok());
        drop(held);
        assert_eq!(g.pending(), 0);
    }

    #[tokio::test]
    async fn at_the_limit_a_new_address_evicts_the_heaviest_address_s_oldest() {
        let g = guard(20);
        let now = Instant::now();
        // A botnet: 32 waiting connections from each of many addresses.
        let mut held = Vec::new();
        let mut n = 0u32;
        while g.pending() < PENDING_FULL {
            let address = IpAddr::from([198, 51, ((n / 32) >> 8) as u8, (n / 32) as u8]);
            n += 1;
            if let Ok(admitted) = g.admit_at(address, now, 1.0) {
                held.push((address, admitted));
            }
        }
        assert_eq!(g.pending(), PENDING_FULL);
        // More from the botnet's addresses are refused...
        let first = held[0].0;
        assert!(g.admit_at(first, now, 0.0).is_err());
        // ...but a real user's one connection gets in, and the oldest
        // connection of the heaviest address makes room.
        let user = g.admit_at(ip("203.0.113.50"), now, 1.0).unwrap();
        assert_eq!(g.pending(), PENDING_FULL);
        let (victim_address, victim) = &held[0];
        assert_eq!(*victim_address, first);
        let told = tokio::time::timeout(Duration::from_secs(5), victim.login_expired())
            .await
            .expect("the evicted connection is told at once");
        assert_eq!(told, LoginExpired::Evicted);
        assert!(!victim.is_logged_in());
        assert_eq!(g.counters.evicted.load(Ordering::Relaxed), 1);
        // The real user is never the victim while others wait more.
        for i in 0..50u8 {
            let another = g.admit_at(IpAddr::from([192, 0, 2, i]), now, 1.0).unwrap();
            held.push((ip("192.0.2.0"), another));
        }
        assert!(!user.is_logged_in());
        let quiet = tokio::time::timeout(Duration::from_millis(1), user.login_expired()).await;
        assert!(quiet.is_err(), "the real user was evicted");
        user.logged_in();
        assert_eq!(g.pending(), PENDING_FULL - 1);
        // Dropping an evicted connection does not count it twice.
        drop(held);
        assert_eq!(g.pending(), 0);
    }

    #[test]
    fn a_sprayed_user_is_slowed_never_locked_out() {
        let g = guard(20);
        let now = Instant::now();
        for _ in 0..19 {
            g.password_failed_at("alice", now);
        }
        assert_eq!(g.password_delay_at("alice", now), Duration::ZERO);
        g.password_failed_at("alice", now);
        assert_eq!(
            g.password_delay_at("alice", now),
            Duration::from_millis(250)
        );
        for _ in 0..30 {
            g.password_failed_at("alice", now);
        }
        assert_eq!(g.password_delay_at("alice", now), MAX_DELAY);
        assert_eq!(g.password_delay_at("bob", now), Duration::ZERO);
        // It wears off.
        assert_eq!(
            g.password_delay_at("alice", now + Duration::from_secs(601)),
            Duration::ZERO
        );
    }

    #[test]
    fn the_tables_stay_bounded_whatever_the_number_of_addresses() {
        let g = Arc::new(Guard::with_capacity(GuardConfig::default(), 1000));
        let now = Instant::now();
        for n in 0..100_000u32 {
            g.failed_at(IpAddr::from(n.to_be_bytes()), now);
            g.password_failed_at(&format!("user{n}"), now);
        }
        let (addresses, users) = g.tracked();
        assert!(addresses <= 1000 && users <= 1000, "{addresses} {users}");
    }
}
