//! Shared bans against a real PostgreSQL: a ban published by one node
//! reaches the others within a second, with what is left of it; a node
//! that starts later gets the bans still running; a node never gets its
//! own bans back; a longer ban is not shortened by a shorter one.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use wharf_cluster::{Bans, Database, RemoteBan};
use wharf_test_support::postgres::Postgres;

/// A node's shared bans on `url`, and what it applies.
async fn node(url: &str, id: &str) -> (Arc<Bans>, mpsc::UnboundedReceiver<RemoteBan>) {
    let database = Database::connect(url, Duration::from_secs(3))
        .await
        .unwrap();
    let (sender, received) = mpsc::unbounded_channel();
    let bans = Bans::start(&database, id, Bans::POLL_EVERY, move |ban| {
        let _ = sender.send(ban);
    })
    .await
    .unwrap();
    (bans, received)
}

/// The next ban applied, within `limit`.
async fn next(received: &mut mpsc::UnboundedReceiver<RemoteBan>, limit: Duration) -> RemoteBan {
    tokio::time::timeout(limit, received.recv())
        .await
        .expect("no ban arrived in time")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_reaches_every_other_node_within_a_second() {
    let postgres = Postgres::start();
    let url = postgres.create_database("cluster");
    let (a, mut from_a) = node(&url, "node-a").await;
    let (_b, mut from_b) = node(&url, "node-b").await;
    let address: IpAddr = "192.0.2.10".parse().unwrap();

    let published = Instant::now();
    a.publish(address, Duration::from_secs(900), 1);
    let ban = next(&mut from_b, Duration::from_secs(5)).await;
    let took = published.elapsed();
    // SPEC: within a second (reads every 250 ms); a loaded 2-core CI
    // machine is given twice that.
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(ban.address, address);
    assert_eq!(ban.repeat, 1);
    assert_eq!(ban.node_id, "node-a");
    assert!(ban.remaining > Duration::from_secs(890) && ban.remaining <= Duration::from_secs(900));

    // A shorter ban of the same address (a node that banned it before
    // hearing of the first) does not shorten it; a repeat is kept.
    let (c, _from_c) = node(&url, "node-c").await;
    c.publish(address, Duration::from_secs(60), 2);
    loop {
        let again = next(&mut from_b, Duration::from_secs(5)).await;
        if again.node_id == "node-c" {
            assert!(again.remaining > Duration::from_secs(800), "{again:?}");
            assert_eq!(again.repeat, 2);
            break;
        }
    }

    // A node that starts now gets the running ban at its first read.
    let (_d, mut from_d) = node(&url, "node-d").await;
    let ban = next(&mut from_d, Duration::from_secs(5)).await;
    assert_eq!(ban.address, address);

    // A ban that has ended is not handed to anyone.
    let short: IpAddr = "2001:db8::".parse().unwrap();
    a.publish(short, Duration::ZERO, 1);
    // Written before the marker: once the marker arrives, the ended one
    // would have too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while postgres
        .psql(
            "cluster",
            "SELECT count(*) FROM wharf_bans WHERE address = '2001:db8::'",
        )
        .trim()
        != "1"
    {
        assert!(Instant::now() < deadline, "the ended ban was not written");
        tokio::task::yield_now().await;
    }
    let marker: IpAddr = "192.0.2.99".parse().unwrap();
    a.publish(marker, Duration::from_secs(60), 1);
    loop {
        let ban = next(&mut from_d, Duration::from_secs(5)).await;
        assert_ne!(ban.address, short, "an ended ban was applied");
        if ban.address == marker {
            break;
        }
    }

    // A node never gets its own bans back.
    while let Ok(ban) = from_a.try_recv() {
        assert_ne!(ban.node_id, "node-a", "{ban:?}");
    }
}
