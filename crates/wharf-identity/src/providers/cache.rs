//! `cache_ttl`: successful answers remembered for a while.
//!
//! The key is an HMAC-SHA256, under a random key made once per process, of
//! (server id, username, protocol, source IP, credential), where the
//! credential is the password or the public key's SHA256 fingerprint. So a
//! changed or wrong password never matches a cached success, the cache never
//! holds a password (nor anything a password could be guessed from offline
//! without the process key), and a key login is cached per key. Only
//! answers with a response object are cached; denials never are.
//!
//! The lock is held for map operations only, never across the provider's
//! query, so concurrent logins (identical ones included) each go their own
//! way; the last answer wins.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use crate::{Answer, Credential, IdentityProvider, LoginRequest, fingerprint};

/// How many answers a cache holds before it forgets the oldest.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

type Key = [u8; 32];

struct Entry {
    answer: Answer,
    expires: Instant,
    seq: u64,
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, Entry>,
    /// Insertion order; with one TTL for all, also expiry order.
    order: BTreeMap<u64, Key>,
    next_seq: u64,
}

impl State {
    fn get(&mut self, key: &Key, now: Instant) -> Option<Answer> {
        self.purge(now);
        self.entries.get(key).map(|entry| entry.answer.clone())
    }

    fn put(&mut self, key: Key, answer: Answer, expires: Instant, capacity: usize) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(old) = self.entries.insert(
            key,
            Entry {
                answer,
                expires,
                seq,
            },
        ) {
            self.order.remove(&old.seq);
        }
        self.order.insert(seq, key);
        while self.entries.len() > capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }

    /// Drops expired entries from the old end.
    fn purge(&mut self, now: Instant) {
        while let Some((&seq, key)) = self.order.first_key_value() {
            let expired = self
                .entries
                .get(key)
                .is_none_or(|entry| entry.expires <= now || entry.seq != seq);
            if !expired {
                break;
            }
            if let Some((_, key)) = self.order.pop_first()
                && self.entries.get(&key).is_some_and(|e| e.seq == seq)
            {
                self.entries.remove(&key);
            }
        }
    }
}

/// Wraps a provider and answers repeated successful logins from memory for
/// `ttl`. See the module documentation for what the key covers.
pub struct CachingProvider<P: ?Sized = dyn IdentityProvider> {
    inner: Arc<P>,
    ttl: Duration,
    capacity: usize,
    secret: [u8; 32],
    state: Mutex<State>,
}

impl<P: IdentityProvider + ?Sized> CachingProvider<P> {
    /// A cache of [`DEFAULT_CACHE_CAPACITY`] answers.
    pub fn new(inner: Arc<P>, ttl: Duration) -> CachingProvider<P> {
        CachingProvider::with_capacity(inner, ttl, DEFAULT_CACHE_CAPACITY)
    }

    pub fn with_capacity(inner: Arc<P>, ttl: Duration, capacity: usize) -> CachingProvider<P> {
        CachingProvider {
            inner,
            ttl,
            capacity: capacity.max(1),
            secret: rand::random(),
            state: Mutex::new(State::default()),
        }
    }

    pub fn inner(&self) -> &Arc<P> {
        &self.inner
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Answers held now (expired ones included until they are purged).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every answer.
    pub fn clear(&self) {
        *self.lock() = State::default();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent after every statement; a panic elsewhere
        // while holding the lock cannot leave it half-changed.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn key(&self, request: &LoginRequest) -> Key {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            // HMAC takes keys of any length; unreachable, but never panic.
            return [0; 32];
        };
        let mut field = |bytes: &[u8]| {
            mac.update(&(bytes.len() as u64).to_be_bytes());
            mac.update(bytes);
        };
        field(request.server_id.as_bytes());
        field(request.username.as_bytes());
        field(request.protocol.as_str().as_bytes());
        field(request.source_ip.to_string().as_bytes());
        match &request.credential {
            Credential::Password(password) => {
                field(b"password");
                field(password.expose().as_bytes());
            }
            Credential::PublicKey(key) => {
                field(b"publickey");
                field(fingerprint(key).as_bytes());
            }
        }
        mac.finalize().into_bytes().into()
    }
}

/// `provider` with a cache of `ttl` in front of it, or `provider` itself
/// when `ttl` is zero (`cache_ttl = "0s"`, the default).
pub fn with_cache(provider: Arc<dyn IdentityProvider>, ttl: Duration) -> Arc<dyn IdentityProvider> {
    if ttl.is_zero() {
        provider
    } else {
        Arc::new(CachingProvider::new(provider, ttl))
    }
}

impl<P: IdentityProvider + ?Sized> fmt::Debug for CachingProvider<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingProvider")
            .field("inner", &self.inner.kind())
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<P: IdentityProvider + ?Sized> IdentityProvider for CachingProvider<P> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn timeout(&self) -> Duration {
        self.inner.timeout()
    }

    async fn query(&self, request: &LoginRequest) -> Answer {
        let key = self.key(request);
        if let Some(mut answer) = self.lock().get(&key, Instant::now()) {
            answer.message = format!("{} (cached)", answer.message);
            return answer;
        }
        let answer = self.inner.query(request).await;
        if answer.response.is_some() && (200..300).contains(&answer.status_code) {
            let now = Instant::now();
            self.lock()
                .put(key, answer.clone(), now + self.ttl, self.capacity);
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{Password, Protocol, parse_public_key};
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Accepts password "good" (and any key), counting queries.
    struct Counting(AtomicUsize);

    #[async_trait]
    impl IdentityProvider for Counting {
        fn kind(&self) -> &'static str {
            "counting"
        }
        fn timeout(&self) -> Duration {
            Duration::from_secs(1)
        }
        async fn query(&self, request: &LoginRequest) -> Answer {
            self.0.fetch_add(1, Ordering::SeqCst);
            match &request.credential {
                Credential::Password(p) if p.expose() != "good" => Answer::denied(401, "wrong"),
                _ => Answer {
                    status_code: 200,
                    message: "ok".into(),
                    response: Some(serde_json::json!({"HomeDirectory": "/default"})),
                },
            }
        }
    }

    fn request(user: &str, password: &str) -> LoginRequest {
        LoginRequest {
            username: user.into(),
            credential: Credential::Password(Password::new(password)),
            protocol: Protocol::Sftp,
            source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            server_id: "s-1".into(),
        }
    }

    fn answer(n: u16) -> Answer {
        Answer::denied(n, "x")
    }

    #[tokio::test]
    async fn keys_separate_every_field_and_hold_no_password() {
        let cache = CachingProvider::new(
            Arc::new(Counting(AtomicUsize::new(0))),
            Duration::from_secs(60),
        );
        let base = request("alice", "good");
        let key = cache.key(&base);
        let mut variants = vec![request("alicf", "good"), request("alice", "goodx")];
        let mut other = base.clone();
        other.protocol = Protocol::Ftps;
        variants.push(other);
        let mut other = base.clone();
        other.source_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        variants.push(other);
        let mut other = base.clone();
        other.server_id = "s-2".into();
        variants.push(other);
        // Length prefixes: moving a byte between fields changes the key.
        variants.push(request("alic", "egood"));
        let mut other = base.clone();
        other.credential = Credential::PublicKey(
            parse_public_key(
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
            )
            .unwrap(),
        );
        variants.push(other);
        for variant in &variants {
            assert_ne!(cache.key(variant), key, "{variant:?}");
        }
        assert_eq!(cache.key(&base.clone()), key);
        // Another process (another secret) computes other keys.
        let other_cache = CachingProvider::new(
            Arc::new(Counting(AtomicUsize::new(0))),
            Duration::from_secs(60),
        );
        assert_ne!(other_cache.key(&base), key);
        assert!(!format!("{cache:?}").contains("good"));
    }

    #[tokio::test]
    async fn successes_are_cached_and_failures_are_not() {
        let inner = Arc::new(Counting(AtomicUsize::new(0)));
        let cache = CachingProvider::new(inner.clone(), Duration::from_secs(60));
        let first = cache.query(&request("alice", "good")).await;
        let second = cache.query(&request("alice", "good")).await;
        assert_eq!(inner.0.load(Ordering::SeqCst), 1);
        assert_eq!(second.response, first.response);
        assert_eq!(second.message, "ok (cached)");
        for _ in 0..2 {
            assert!(
                cache
                    .query(&request("alice", "bad"))
                    .await
                    .response
                    .is_none()
            );
        }
        assert_eq!(inner.0.load(Ordering::SeqCst), 3);
        assert_eq!(cache.len(), 1);
        cache.clear();
        cache.query(&request("alice", "good")).await;
        assert_eq!(inner.0.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn entries_expire_and_the_oldest_is_evicted() {
        let mut state = State::default();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        state.put([1; 32], answer(201), t0 + ttl, 2);
        state.put([2; 32], answer(202), t0 + Duration::from_secs(1) + ttl, 2);
        assert_eq!(state.get(&[1; 32], t0).map(|a| a.status_code), Some(201));
        // Re-inserting refreshes; the capacity drops the oldest, now [2].
        state.put([1; 32], answer(211), t0 + Duration::from_secs(2) + ttl, 2);
        state.put([3; 32], answer(203), t0 + Duration::from_secs(3) + ttl, 2);
        assert_eq!(state.entries.len(), 2);
        assert_eq!(state.order.len(), 2);
        assert!(state.get(&[2; 32], t0).is_none());
        assert_eq!(state.get(&[1; 32], t0).map(|a| a.status_code), Some(211));
        // Past [1]'s expiry, only [3] is left.
        let later = t0 + Duration::from_secs(12);
        assert!(state.get(&[1; 32], later).is_none());
        assert_eq!(state.get(&[3; 32], later).map(|a| a.status_code), Some(203));
        assert_eq!(state.entries.len(), 1);
        assert!(state.get(&[3; 32], t0 + Duration::from_secs(13)).is_none());
        assert!(state.entries.is_empty() && state.order.is_empty());
    }

    #[test]
    fn the_bound_holds_under_many_users() {
        let mut state = State::default();
        let t0 = Instant::now() + Duration::from_secs(60);
        for i in 0u32..1000 {
            let mut key = [0; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            state.put(key, answer(200), t0, 100);
        }
        assert_eq!(state.entries.len(), 100);
        assert_eq!(state.order.len(), 100);
    }
}
