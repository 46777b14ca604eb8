#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::bans::{MAX_BAN, MAX_DELAY};
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

/// What a guard published, for the tests of sharing.
#[derive(Default)]
struct Published(parking_lot::Mutex<Vec<(IpAddr, Duration, u32)>>);

impl SharedBans for Published {
    fn publish(&self, address: IpAddr, duration: Duration, repeat: u32) {
        self.0.lock().push((address, duration, repeat));
    }
}

#[test]
fn bans_are_published_and_applied_from_other_nodes() {
    // Node a decides a ban: it is published under its ban key (the /64).
    let a = guard(2);
    let published = Arc::new(Published::default());
    a.share_bans(published.clone());
    let t0 = Instant::now();
    assert_eq!(a.failed_at(ip("2001:db8::1"), t0), None);
    let ban = a.failed_at(ip("2001:db8::1"), t0).unwrap();
    assert_eq!(
        *published.0.lock(),
        vec![(ip("2001:db8::"), ban.duration, 1)]
    );
    // Failures that do not ban are not published.
    assert_eq!(a.failed_at(ip("192.0.2.9"), t0), None);
    assert_eq!(published.0.lock().len(), 1);

    // Node b applies it: refused at accept for what is left, from any
    // address of the /64.
    let b = guard(2);
    assert!(b.apply_ban_at(ip("2001:db8::"), Duration::from_secs(600), 1, t0));
    assert!(matches!(
        b.admit_at(ip("2001:db8::42"), t0, 1.0),
        Err(Refusal::Banned { .. })
    ));
    assert_eq!(b.counters.shared_bans.load(Ordering::Relaxed), 1);
    // Read again (the reads overlap): the same ban, not a new one.
    assert!(!b.apply_ban_at(
        ip("2001:db8::"),
        Duration::from_millis(599_700),
        1,
        t0 + Duration::from_millis(300)
    ));
    assert_eq!(b.counters.shared_bans.load(Ordering::Relaxed), 1);
    // Over when it ends.
    let after = t0 + Duration::from_secs(601);
    assert!(b.admit_at(ip("2001:db8::42"), after, 1.0).is_ok());
    // b's next ban of that address is the second: twice as long.
    assert_eq!(b.failed_at(ip("2001:db8::1"), after), None);
    let next = b.failed_at(ip("2001:db8::1"), after).unwrap();
    assert_eq!(next.repeat, 2);
    assert_eq!(next.duration, Duration::from_secs(1800));

    // Exempt addresses are never banned from elsewhere either; nothing is
    // longer than a day.
    assert!(!b.apply_ban_at(ip("10.1.2.3"), Duration::from_secs(60), 1, t0));
    assert!(b.admit_at(ip("10.1.2.3"), t0, 1.0).is_ok());
    assert!(b.apply_ban_at(ip("192.0.2.7"), Duration::from_secs(10 * 86_400), 9, t0));
    assert!(
        b.admit_at(ip("192.0.2.7"), t0 + MAX_BAN + Duration::from_secs(1), 1.0)
            .is_ok()
    );
}
