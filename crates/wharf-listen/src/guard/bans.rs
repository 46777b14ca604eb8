//! Bans and the password-spray delay: failures counted per address (IPv4
//! /32, IPv6 /64) until a ban that doubles on each repeat, and failed
//! passwords counted per user name until password logins wait.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::table::Window;
use super::{Address, Guard, User, address_worth, unmapped};

/// The longest ban.
pub(super) const MAX_BAN: Duration = Duration::from_secs(24 * 3600);
/// The longest password delay for a sprayed user.
pub(super) const MAX_DELAY: Duration = Duration::from_secs(10);
/// A ban is remembered this long after it ends, for the doubling.
const BAN_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// A ban that a failure just started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ban {
    pub duration: Duration,
    /// 1 for the first ban of this address, 2 for the next, ...
    pub repeat: u32,
}

/// Where a guard's bans go so that other nodes apply them too (the
/// cluster's ban table); they come back through [`Guard::apply_ban`].
pub trait SharedBans: Send + Sync + 'static {
    /// A ban this node decided: `address` is the ban key (IPv4 /32, IPv6
    /// /64). Must not block.
    fn publish(&self, address: IpAddr, duration: Duration, repeat: u32);
}

/// A ban read back from elsewhere ends this close to one already running
/// at most: the same ban, not a new one.
const SAME_BAN: Duration = Duration::from_secs(1);

/// The address a ban applies to: IPv4 /32, IPv6 /64.
pub(super) fn ban_key(ip: IpAddr) -> IpAddr {
    match unmapped(ip) {
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            for s in &mut segments[4..] {
                *s = 0;
            }
            IpAddr::V6(segments.into())
        }
        v4 => v4,
    }
}

impl Guard {
    /// A failed login or a protocol violation from `ip`; returns the ban it
    /// started, if any.
    pub fn failed(&self, ip: IpAddr) -> Option<Ban> {
        self.failed_at(ip, Instant::now())
    }

    pub(super) fn failed_at(&self, ip: IpAddr, now: Instant) -> Option<Ban> {
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
        let ban = Ban {
            duration,
            repeat: address.bans,
        };
        drop(state);
        if let Some(shared) = self.shared.get() {
            shared.publish(ban_key(ip), ban.duration, ban.repeat);
        }
        Some(ban)
    }

    /// Sends every ban this guard decides from now on to `shared` (once;
    /// later calls are ignored).
    pub fn share_bans(&self, shared: Arc<dyn SharedBans>) {
        let _ = self.shared.set(shared);
    }

    /// A ban another node decided: `address` refused at accept for
    /// `remaining` (at most 24 hours), and `repeat` remembered so that the
    /// next ban here doubles from it. False when nothing changed (exempt,
    /// or the same ban already applied).
    pub fn apply_ban(&self, address: IpAddr, remaining: Duration, repeat: u32) -> bool {
        self.apply_ban_at(address, remaining, repeat, Instant::now())
    }

    pub(super) fn apply_ban_at(
        &self,
        ip: IpAddr,
        remaining: Duration,
        repeat: u32,
        now: Instant,
    ) -> bool {
        if self.exempt(ip) || remaining.is_zero() {
            return false;
        }
        let until = now + remaining.min(MAX_BAN);
        let mut state = self.state.lock();
        let address = state
            .addresses
            .entry(ban_key(ip), || Address::new(now), address_worth);
        address.last_seen = now;
        if address
            .banned_until
            .is_some_and(|current| current + SAME_BAN >= until)
        {
            address.bans = address.bans.max(repeat);
            return false;
        }
        address.banned_until = Some(until);
        address.bans = address.bans.max(repeat);
        address.failures = Window::new(now);
        self.counters.shared_bans.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// How long a password login of `user` waits first: nothing, until the
    /// user's password has failed `ban_after_failures` times within
    /// `ban_window` (from any addresses); then 250 ms, doubling with each
    /// further failure, at most 10 s.
    pub fn password_delay(&self, user: &str) -> Duration {
        self.password_delay_at(user, Instant::now())
    }

    pub(super) fn password_delay_at(&self, user: &str, now: Instant) -> Duration {
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

    pub(super) fn password_failed_at(&self, user: &str, now: Instant) {
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
}
