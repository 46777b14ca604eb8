#![allow(clippy::unwrap_used)]
use super::*;

const WAIT: Duration = Duration::from_secs(5);

fn issued() -> Arc<Issued> {
    Arc::new(Issued {
        tickets: rustls::crypto::aws_lc_rs::Ticketer::new().unwrap(),
        sessions: Arc::new(SessionCache::default()),
    })
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// (members, closed members)
fn count(registry: &Registry) -> (usize, usize) {
    let state = registry.state.lock();
    let members = state.addresses.values().map(Vec::len).sum();
    (members, state.closed)
}

fn logged_in(registry: &Arc<Registry>, user: &str, at: &str) -> (Arc<Issued>, Membership) {
    let (keys, member, _) = logged_in_with_sessions(registry, user, at);
    (keys, member)
}

fn logged_in_with_sessions(
    registry: &Arc<Registry>,
    user: &str,
    at: &str,
) -> (Arc<Issued>, Membership, UserSessions) {
    let keys = issued();
    let member = registry.join(ip(at), keys.clone());
    let sessions = member.logged_in(user);
    (keys, member, sessions)
}

#[test]
fn session_cache_is_bounded_and_keeps_taken_sessions() {
    let cache = SessionCache::default();
    for i in 0..40u8 {
        cache.put(vec![i], vec![i]);
    }
    assert_eq!(cache.entries.lock().len(), SESSION_CACHE_ENTRIES);
    assert_eq!(cache.take(&[39]), Some(vec![39]));
    assert_eq!(cache.get(&[39]), Some(vec![39]));
    assert_eq!(cache.get(&[0]), None);
}

#[tokio::test]
async fn data_connections_resume_their_users_sessions_only() {
    let registry = Arc::new(Registry::default());
    let (a1, m1) = logged_in(&registry, "alice", "127.0.0.1");
    let (_, _m2, m2) = logged_in_with_sessions(&registry, "alice", "127.0.0.1");
    let (b, _mb) = logged_in(&registry, "bob", "127.0.0.1");
    let (elsewhere, _me) = logged_in(&registry, "alice", "127.0.0.2");
    let ticket_a1 = a1.tickets.encrypt(b"a1").unwrap();
    let ticket_b = b.tickets.encrypt(b"b").unwrap();
    let ticket_elsewhere = elsewhere.tickets.encrypt(b"e").unwrap();
    a1.sessions.put(b"id-a1".to_vec(), b"a1".to_vec());
    b.sessions.put(b"id-b".to_vec(), b"b".to_vec());

    // Data connections of alice's second control connection.
    let data = || m2.data_sessions(60, false);
    let d = data();
    assert_eq!(d.decrypt(&ticket_a1).as_deref(), Some(&b"a1"[..]));
    assert!(d.verdict(WAIT).await);
    let d = data();
    assert_eq!(d.get(b"id-a1").as_deref(), Some(&b"a1"[..]));
    assert!(d.verdict(WAIT).await);
    let d = data();
    assert_eq!(d.decrypt(&ticket_b), None);
    assert_eq!(d.get(b"id-b"), None);
    assert_eq!(d.decrypt(&ticket_elsewhere), None);
    assert_eq!(d.decrypt(b"garbage"), None);
    assert!(!d.verdict(WAIT).await, "nothing resumed");
    // They issue nothing.
    assert_eq!(d.encrypt(b"x"), None);
    assert!(!d.put(b"new".to_vec(), b"x".to_vec()));
    assert!(!d.can_cache());

    // A closed member stays valid for a while.
    drop(m1);
    assert_eq!(count(&registry), (4, 1));
    let d = data();
    assert_eq!(d.decrypt(&ticket_a1).as_deref(), Some(&b"a1"[..]));
    assert!(d.verdict(WAIT).await);
}

#[tokio::test]
async fn a_pending_members_session_waits_for_its_login() {
    let registry = Arc::new(Registry::default());
    let (_, _alice, alice) = logged_in_with_sessions(&registry, "alice", "127.0.0.1");
    // Three new control connections, not logged in yet.
    let keys: Vec<Arc<Issued>> = (0..3).map(|_| issued()).collect();
    let mut pending: Vec<Membership> = keys
        .iter()
        .map(|k| registry.join(ip("127.0.0.1"), k.clone()))
        .collect();
    let tickets: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| k.tickets.encrypt(b"p").unwrap())
        .collect();
    let resume = |i: usize| {
        let d = alice.data_sessions(60, false);
        assert!(d.decrypt(&tickets[i]).is_some());
        d
    };
    // Logs in as alice: accepted.
    let first = resume(0);
    let verdict = tokio::spawn(async move { first.verdict(WAIT).await });
    pending[0].logged_in("alice");
    assert!(verdict.await.unwrap());
    // Logs in as bob: refused.
    let second = resume(1);
    let verdict = tokio::spawn(async move { second.verdict(WAIT).await });
    pending[1].logged_in("bob");
    assert!(!verdict.await.unwrap());
    // Goes away without logging in: refused, and gone.
    let third = resume(2);
    let verdict = tokio::spawn(async move { third.verdict(WAIT).await });
    drop(pending.pop());
    assert!(!verdict.await.unwrap());
    let d = alice.data_sessions(60, false);
    assert_eq!(d.decrypt(&tickets[2]), None);
    // Still pending after the wait: refused.
    let keys = issued();
    let _idle = registry.join(ip("127.0.0.1"), keys.clone());
    let d = alice.data_sessions(60, false);
    assert!(d.decrypt(&keys.tickets.encrypt(b"p").unwrap()).is_some());
    assert!(!d.verdict(Duration::from_millis(1)).await);
    // Bob's member, once logged in, is no candidate for alice.
    let d = alice.data_sessions(60, false);
    assert_eq!(d.decrypt(&tickets[1]), None);
}

#[test]
fn closed_members_expire_unless_resumed() {
    let registry = Arc::new(Registry::default());
    let at = ip("127.0.0.1");
    let (_, m1) = logged_in(&registry, "alice", "127.0.0.1");
    let (_, _m2) = logged_in(&registry, "alice", "127.0.0.1");
    let id1 = m1.id;
    // Closed by hand, at `start` (dropping `m1` later changes nothing
    // once it is gone).
    let start = Instant::now();
    registry.close(at, id1, start);
    let ids = |now| -> Vec<u64> {
        registry
            .candidates(at, "alice", now)
            .iter()
            .map(|m| m.0)
            .collect()
    };
    assert!(ids(start + RETAIN / 2).contains(&id1));
    // Resumed halfway: valid for RETAIN from then.
    assert!(registry.resumed(at, id1, start + RETAIN / 2).is_some());
    assert!(ids(start + RETAIN + RETAIN / 4).contains(&id1));
    assert!(!ids(start + 2 * RETAIN).contains(&id1));
    assert_eq!(count(&registry), (1, 0));
    // An open member never expires.
    assert_eq!(ids(start + 100 * RETAIN).len(), 1);
    drop(m1);
    assert_eq!(count(&registry), (1, 0));
}

#[test]
fn closed_members_are_bounded_per_group_and_in_total() {
    let registry = Arc::new(Registry::default());
    let (_, keep_open) = logged_in(&registry, "alice", "127.0.0.1");
    for _ in 0..3 * MAX_CLOSED_PER_GROUP {
        drop(logged_in(&registry, "alice", "127.0.0.1"));
    }
    // Bob's closed members at the same address are counted apart.
    for _ in 0..3 {
        drop(logged_in(&registry, "bob", "127.0.0.1"));
    }
    assert_eq!(
        count(&registry),
        (MAX_CLOSED_PER_GROUP + 4, MAX_CLOSED_PER_GROUP + 3)
    );
    // Connections that never logged in leave nothing behind.
    for _ in 0..10 {
        drop(registry.join(ip("127.0.0.1"), issued()));
    }
    assert_eq!(
        count(&registry),
        (MAX_CLOSED_PER_GROUP + 4, MAX_CLOSED_PER_GROUP + 3)
    );
    // The open member is never evicted.
    let shared = issued();
    for i in 0..MAX_CLOSED + 100 {
        let at = IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
        let member = registry.join(at, shared.clone());
        member.logged_in("carol");
    }
    let (members, closed) = count(&registry);
    assert_eq!(closed, MAX_CLOSED);
    assert_eq!(members, MAX_CLOSED + 1);
    assert!(
        registry
            .candidates(ip("127.0.0.1"), "alice", Instant::now())
            .iter()
            .any(|(id, _)| *id == keep_open.id)
    );
    drop(keep_open);
    assert_eq!(count(&registry), (MAX_CLOSED, MAX_CLOSED));
}
