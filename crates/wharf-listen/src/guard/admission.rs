//! Admission at accept: a banned address is refused, connections that have
//! not logged in are limited per address and dropped at random beyond
//! [`PENDING_START`] (an address with none waiting is always admitted and,
//! at [`PENDING_FULL`], evicts the oldest of the busiest address), and each
//! admitted connection is an [`Admitted`] until it logs in.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use super::bans::ban_key;
use super::{
    Address, Guard, MAX_PENDING_PER_ADDRESS, PENDING_FULL, PENDING_START, State, address_worth,
};

/// The probability of a drop at [`PENDING_START`] (then linear to 1).
const PENDING_RATE: f64 = 0.3;

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

/// [`Admitted`] states.
const PENDING: u8 = 0;
const LOGGED_IN: u8 = 1;
const EVICTED: u8 = 2;

pub(super) struct Waiting {
    id: u64,
    state: Arc<AtomicU8>,
    evict: Arc<tokio::sync::Notify>,
}

impl State {
    /// One connection of `key` no longer counts as waiting to log in.
    pub(super) fn forget_pending(&mut self, key: IpAddr) {
        self.pending_total = self.pending_total.saturating_sub(1);
        if let Some(address) = self.addresses.map.get_mut(&key) {
            address.pending = address.pending.saturating_sub(1);
        }
    }
}

impl Guard {
    /// At accept, before anything is read: refused (banned, too many
    /// pending), or admitted as a connection that has not logged in yet.
    pub fn admit(self: &Arc<Guard>, ip: IpAddr) -> Result<Admitted, Refusal> {
        self.admit_at(ip, Instant::now(), rand::random::<f64>())
    }

    pub(super) fn admit_at(
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

impl Guard {
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
}
