use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::*;

fn addr(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn granted(entry: Entry) -> Slot {
    match entry {
        Entry::Granted(slot) => slot,
        other => panic!("expected a slot, got {other:?}"),
    }
}

fn queued(entry: Entry) -> Ticket {
    match entry {
        Entry::Queued(ticket) => ticket,
        other => panic!("expected a place in the queue, got {other:?}"),
    }
}

#[test]
fn waiting_checks_are_served_one_address_at_a_time() {
    let queue = HashQueue::new(1, 100, Duration::from_secs(5));
    let running = granted(queue.enter(addr(1)));
    // Address 1 queues three guesses, then address 2 one login.
    let mut a: Vec<Ticket> = (0..3).map(|_| queued(queue.enter(addr(1)))).collect();
    let mut b = queued(queue.enter(addr(2)));
    assert_eq!(queue.load(), (1, 4));

    drop(running);
    let first = a[0].try_take().expect("address 1's oldest check runs next");
    assert!(b.try_take().is_none());
    drop(first);
    // Address 2 is served before address 1's second guess.
    let second = b.try_take().expect("address 2 is served after one check");
    assert!(a[1].try_take().is_none());
    drop(second);
    let third = a[1].try_take().expect("then address 1 again");
    assert!(a[2].try_take().is_none());
    drop(third);
    drop(a.pop().expect("three tickets").try_take());
    assert_eq!(queue.load(), (0, 0));
    assert_eq!(queue.peak_running(), 1);
}

#[test]
fn a_full_queue_refuses_at_once() {
    let queue = HashQueue::new(1, 2, Duration::from_secs(5));
    let _running = granted(queue.enter(addr(1)));
    let _one = queued(queue.enter(addr(1)));
    let _two = queued(queue.enter(addr(2)));
    assert!(matches!(queue.enter(addr(3)), Entry::Busy));
}

#[test]
fn a_ticket_given_up_leaves_the_queue_and_its_slot_goes_on() {
    let queue = HashQueue::new(1, 10, Duration::from_secs(5));
    let running = granted(queue.enter(addr(1)));
    let gone = queued(queue.enter(addr(1)));
    let mut next = queued(queue.enter(addr(2)));
    drop(gone);
    assert_eq!(queue.load(), (1, 1));
    drop(running);
    let slot = next.try_take().expect("the slot skips the ticket given up");
    drop(slot);
    assert_eq!(queue.load(), (0, 0));

    // A ticket granted and then dropped unused passes the slot on.
    let running = granted(queue.enter(addr(1)));
    let granted_unused = queued(queue.enter(addr(1)));
    let mut after = queued(queue.enter(addr(3)));
    drop(running);
    drop(granted_unused);
    let slot = after.try_take().expect("an unused slot is handed on");
    drop(slot);
    assert_eq!(queue.load(), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_check_that_waits_too_long_is_busy_and_frees_its_place() {
    let queue = HashQueue::new(1, 10, Duration::from_secs(5));
    let running = granted(queue.enter(addr(1)));
    let verdict = queue.verify(addr(2), "guess", "$argon2id$whatever").await;
    assert_eq!(verdict, Verdict::Busy);
    assert_eq!(queue.load(), (1, 0));
    drop(running);
    assert_eq!(queue.load(), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_never_exceed_the_slots_and_all_finish() {
    let hash = crate::password::hash_password("right").unwrap_or_default();
    let queue = HashQueue::new(2, 100, Duration::from_secs(60));
    let mut checks = tokio::task::JoinSet::new();
    for i in 0..12u8 {
        let (queue, hash) = (Arc::clone(&queue), hash.clone());
        checks.spawn(async move {
            let password = if i == 7 { "right" } else { "wrong" };
            (i, queue.verify(addr(i % 3), password, &hash).await)
        });
    }
    let mut verdicts = Vec::new();
    while let Some(done) = checks.join_next().await {
        verdicts.push(done.unwrap_or((255, Verdict::Busy)));
    }
    verdicts.sort_by_key(|(i, _)| *i);
    for (i, verdict) in verdicts {
        let expected = if i == 7 {
            Verdict::Match
        } else {
            Verdict::Mismatch
        };
        assert_eq!(verdict, expected, "check {i}");
    }
    assert!(
        queue.peak_running() <= 2,
        "{} checks ran at once",
        queue.peak_running()
    );
    assert_eq!(queue.load(), (0, 0));
}

#[tokio::test]
async fn one_queue_checks_every_scheme() {
    let queue = HashQueue::new(1, 10, Duration::from_secs(5));
    // Published vectors (glibc, OpenBSD bcrypt, passlib).
    for (password, hash) in [
        (
            "Hello world!",
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
        ),
        (
            "U*U",
            "$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
        ),
        (
            "password",
            "$pbkdf2-sha256$1212$4vjV83LKPjQzk31VI4E0Vw$hsYF68OiOUPdDZ1Fg.fJPeq1h/gXXY7acBp9/6c.tmQ",
        ),
    ] {
        assert_eq!(
            queue.verify(addr(1), password, hash).await,
            Verdict::Match,
            "{hash}"
        );
        assert_eq!(
            queue.verify(addr(1), "wrong", hash).await,
            Verdict::Mismatch,
            "{hash}"
        );
    }
    // An unusable hash is a mismatch, never an error.
    assert_eq!(
        queue
            .verify(addr(1), "x", "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/")
            .await,
        Verdict::Mismatch
    );
    assert_eq!(queue.load(), (0, 0));
}
