//! Several `wharf serve` nodes behind a real HAProxy (SPEC section 8,
//! docs/deploy.md): two nodes, `node-a` and `node-b`, with the same
//! configuration file (what differs per node comes from `WHARF__...`
//! overrides), one PostgreSQL `[cluster] database` holding the
//! service-managed users and the session leases, and one moto S3 bucket as
//! their store. HAProxy sends `send-proxy-v2` headers; the nodes trust
//! 127.0.0.1 only, and the clients are bound to 127.0.0.2 or 127.0.0.9, so
//! their address can only reach a node through the header.
//!
//! What a peer that is not a trusted balancer gets (a connection straight to
//! a node's port without a header, or with a header from an untrusted peer)
//! does not depend on the number of nodes; it is covered once, in
//! `proxy::a_peer_that_is_not_a_trusted_balancer_gets_nothing`.

use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;
use wharf_test_support::haproxy::{Haproxy, Route};
use wharf_test_support::postgres::Postgres;
use wharf_test_support::s3::S3Server;
use wharf_test_support::wharf::{curl, host_key, sftp_session_with};

use crate::*;

const BUCKET: &str = "exchange";

/// The address clients of the single-node frontends are bound to.
const CLIENT: &str = "127.0.0.2";
/// The address clients of the round-robin frontend are bound to.
const OTHER_CLIENT: &str = "127.0.0.9";

/// The file every node reads: `server_extra` goes into `[server]`, `extra`
/// (more sections) at the end.
fn shared_config(moto: &S3Server, database: &str, server_extra: &str, extra: &str) -> String {
    format!(
        r#"[server]
server_id = "s-0123456789abcdef0"
data_dir = "data"
host_keys = ["{host_key}"]
proxy_protocol = true
proxy_trusted = ["127.0.0.1/32"]
{server_extra}

[protocols.sftp]
listen = "127.0.0.1:0"

[storage.{BUCKET}]
kind = "s3"
bucket = "{BUCKET}"
endpoint = "{endpoint}"
region = "us-east-1"
path_style = true
access_key_id = "test"
secret_access_key = "test-secret"
upload_part_size = "5MiB"
upload_concurrency = 2

[cluster]
database = "{database}"

{extra}
"#,
        host_key = host_key().display(),
        endpoint = moto.endpoint(),
    )
}

/// Two started nodes over one PostgreSQL and one moto bucket, with alice
/// (`alice-pw`, home `/exchange/alice`) added through node a's
/// configuration once both run.
struct Cluster {
    moto: S3Server,
    _postgres: Postgres,
    a: Wharf,
    b: Wharf,
}

impl Cluster {
    /// `env_a` and `env_b`: each node's own overrides, besides its
    /// `WHARF__CLUSTER__NODE_ID`.
    fn start(
        server_extra: &str,
        extra: &str,
        env_a: &[(&str, &str)],
        env_b: &[(&str, &str)],
    ) -> Cluster {
        // The two fixtures start in parallel; PostgreSQL on this thread
        // (it is stopped when the thread that started it ends).
        let (postgres, moto) = std::thread::scope(|scope| {
            let moto = scope.spawn(S3Server::start);
            let postgres = Postgres::start();
            (postgres, moto.join().unwrap())
        });
        moto.create_bucket(BUCKET);
        let database = postgres.create_database("cluster");
        let config = shared_config(&moto, &database, server_extra, extra);
        let node = |id: &str, env: &[(&str, &str)]| {
            let mut node = Wharf::prepare(binary(), &config);
            let mut env = env.to_vec();
            env.push(("WHARF__CLUSTER__NODE_ID", id));
            node.start_with_env(&env);
            node
        };
        // One after the other: the first creates the tables.
        let a = node("node-a", env_a);
        let b = node("node-b", env_b);
        // Added while both run, with node a's configuration: into the
        // cluster database, where node b finds alice at her first login.
        a.add_user(
            "alice",
            Some("alice-pw"),
            &["--home-directory-mapping", &format!("/=/{BUCKET}/alice")],
        );
        Cluster {
            moto,
            _postgres: postgres,
            a,
            b,
        }
    }
}

fn password() -> Login {
    Login::Password("alice-pw".into())
}

/// OpenSSH `sftp -b BATCH` as alice through `front`, bound to `from`.
fn sftp_via(front: SocketAddr, from: &str, batch: &str, dir: &Path) -> std::process::Output {
    sftp_batch(
        front.port(),
        "alice",
        &password(),
        batch,
        dir,
        &["-o", &format!("BindAddress={from}")],
    )
}

/// `sftp` as alice through `front` bound to `from`, with `extra` options,
/// running `batch` in the background (its stdin is closed after the batch,
/// so it exits when the batch is done).
fn sftp_child(front: SocketAddr, from: &str, batch: &str, dir: &Path, extra: &[&str]) -> Child {
    let bind = format!("BindAddress={from}");
    let mut args = vec!["-o", bind.as_str()];
    args.extend_from_slice(extra);
    let mut child = sftp_session_with(front.port(), "alice", &password(), dir, &args);
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, batch.as_bytes()).unwrap();
    child
}

/// A session held open as alice through `front` bound to `from`: its
/// stdin stays open until taken and dropped.
fn held_session(front: SocketAddr, from: &str, dir: &Path) -> Child {
    let bind = format!("BindAddress={from}");
    sftp_session_with(
        front.port(),
        "alice",
        &password(),
        dir,
        &["-o", bind.as_str()],
    )
}

fn write_random(path: &Path, len: usize, seed: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..len)
        .map(|i| ((i + seed).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(path, &data).unwrap();
    data
}

/// The CONNECTED lines of a node.
fn connected(node: &Wharf) -> Vec<Value> {
    node.activities("CONNECTED")
}

/// Every line of both nodes that names an address names a client's, never
/// the balancer's.
fn assert_no_balancer_address(nodes: [&Wharf; 2]) {
    for node in nodes {
        for line in node.log() {
            let ip = &line["source-ip"];
            assert!(ip.is_null() || ip == CLIENT || ip == OTHER_CLIENT, "{line}");
        }
    }
}

/// Polls `f` until it holds, for at most `limit`.
fn wait_until(what: &str, limit: Duration, f: impl FnMut() -> bool) {
    wharf_test_support::process::within(limit, || what.to_owned(), f);
}

#[test]
fn nodes_share_users_and_files_and_the_balancer_spreads_logins() {
    let cluster = Cluster::start("", "", &[], &[]);
    let (a, b) = (&cluster.a, &cluster.b);
    let (sftp_a, sftp_b) = (a.sftp.unwrap(), b.sftp.unwrap());
    let haproxy = Haproxy::start(&[
        Route::to(sftp_a),
        Route::to(sftp_b),
        Route::balance(&[sftp_a, sftp_b]),
    ]);
    eprintln!("haproxy.cfg:\n{}", haproxy.config());
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    // Larger than a part: a multipart upload.
    let data = write_random(&dir.join("shared.bin"), 7 * 1024 * 1024 + 3, 1);

    // Uploaded through node a only...
    let up = sftp_via(haproxy.frontend(0), CLIENT, "put shared.bin\n", dir);
    assert!(up.status.success(), "{}{}", stderr(&up), haproxy.log());
    // ...downloaded through node b only, where alice had never logged in.
    let down = sftp_via(
        haproxy.frontend(1),
        CLIENT,
        "get shared.bin back.bin\n",
        dir,
    );
    assert!(down.status.success(), "{}{}", stderr(&down), haproxy.log());
    assert!(std::fs::read(dir.join("back.bin")).unwrap() == data);
    assert_eq!(
        cluster
            .moto
            .head_object(BUCKET, "alice/shared.bin")
            .map(|h| h.size),
        Some(data.len() as u64)
    );
    for node in [a, b] {
        node.wait_for_log("alice's session from the client", |l| {
            l["activity-type"] == "CONNECTED" && l["user"] == "alice" && l["source-ip"] == CLIENT
        });
    }
    assert_eq!(connected(a).len(), 1, "{:#?}", a.log());
    assert_eq!(connected(b).len(), 1, "{:#?}", b.log());

    // Four logins through the round-robin frontend: both nodes get some.
    for _ in 0..4 {
        let out = sftp_via(haproxy.frontend(2), OTHER_CLIENT, "ls\n", dir);
        assert!(out.status.success(), "{}{}", stderr(&out), haproxy.log());
    }
    let spread = |node: &Wharf| {
        connected(node)
            .iter()
            .filter(|l| l["source-ip"] == OTHER_CLIENT)
            .count()
    };
    wait_until(
        "four round-robin logins logged",
        Duration::from_secs(20),
        || spread(a) + spread(b) == 4,
    );
    assert!(
        spread(a) >= 1 && spread(b) >= 1,
        "a: {:#?}\nb: {:#?}",
        a.log(),
        b.log()
    );
    assert_no_balancer_address([a, b]);
}

#[test]
fn the_session_limit_holds_across_nodes_behind_the_balancer() {
    let cluster = Cluster::start("max_sessions_per_user = 2", "", &[], &[]);
    let (a, b) = (&cluster.a, &cluster.b);
    let haproxy = Haproxy::start(&[Route::balance(&[a.sftp.unwrap(), b.sftp.unwrap()])]);
    let front = haproxy.frontend(0);
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let logged_in = || connected(a).len() + connected(b).len();

    // Two sessions held, one after the other: one on each node.
    let mut held = Vec::new();
    for count in 1..=2 {
        held.push(held_session(front, CLIENT, dir));
        wait_until(
            "the held session logged in",
            Duration::from_secs(20),
            || logged_in() == count,
        );
    }
    assert_eq!(connected(a).len(), 1, "{:#?}", a.log());
    assert_eq!(connected(b).len(), 1, "{:#?}", b.log());

    // A third, twice: whichever node it lands on, it is refused.
    for _ in 0..2 {
        let out = sftp_via(front, OTHER_CLIENT, "ls\n", dir);
        assert!(!out.status.success(), "a third session was admitted");
    }
    for node in [a, b] {
        let refused = node.wait_for_auth_failure("alice", "sessions on the cluster");
        assert_eq!(refused["source-ip"], OTHER_CLIENT);
    }
    assert_eq!(logged_in(), 2);
    assert_no_balancer_address([a, b]);
    for mut child in held {
        drop(child.stdin.take());
        child.wait().unwrap();
    }
}

#[test]
fn a_node_killed_mid_upload_leaves_no_object_and_disturbs_only_its_own_sessions() {
    let cluster = Cluster::start("", "", &[], &[]);
    let Cluster { moto, mut a, b, .. } = cluster;
    let sftp_a = a.sftp.unwrap();
    let haproxy = Haproxy::start(&[Route::to(sftp_a), Route::to(b.sftp.unwrap())]);
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    write_random(&dir.join("huge.bin"), 64 * 1024 * 1024, 2);
    let middle = write_random(&dir.join("middle.bin"), 12 * 1024 * 1024 + 5, 3);
    let small = write_random(&dir.join("small.bin"), 100_000, 4);

    // Both uploads limited to 16 Mbit/s (sftp -l), so that both are in
    // flight together: several parts each.
    let limit = ["-l", "16000"];
    let mut on_a = sftp_child(haproxy.frontend(0), CLIENT, "put huge.bin\n", dir, &limit);
    let mut on_b = sftp_child(haproxy.frontend(1), CLIENT, "put middle.bin\n", dir, &limit);
    // Both are in flight: each has begun its multipart upload.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let keys: Vec<String> = moto
            .multipart_uploads(BUCKET)
            .into_iter()
            .map(|u| u.key)
            .collect();
        if keys.contains(&"alice/huge.bin".to_owned())
            && keys.contains(&"alice/middle.bin".to_owned())
        {
            break;
        }
        assert!(Instant::now() < deadline, "uploads not in flight: {keys:?}");
        assert!(on_a.try_wait().unwrap().is_none(), "a's upload ended");
        assert!(on_b.try_wait().unwrap().is_none(), "b's upload ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = a.signal_and_wait("KILL");
    assert!(!status.success(), "{status:?}");

    // Node b's transfer completes, intact.
    let b_status = on_b.wait().unwrap();
    assert!(b_status.success(), "{b_status:?} {}", haproxy.log());
    assert!(moto.get_object(BUCKET, "alice/middle.bin").unwrap() == middle);
    // a's client loses its session.
    let a_status = on_a.wait().unwrap();
    assert!(!a_status.success(), "{a_status:?}");
    // No object for a's upload: S3 shows an object only once its multipart
    // upload completes, and a dead node completes nothing. Its multipart
    // upload stays (nothing aborted it) until the bucket's lifecycle rule
    // removes it (docs/deploy.md).
    assert_eq!(moto.head_object(BUCKET, "alice/huge.bin"), None);
    let keys = moto.list_keys(BUCKET, "alice/");
    assert_eq!(keys, ["alice/middle.bin"], "{keys:?}");
    let left: Vec<String> = moto
        .multipart_uploads(BUCKET)
        .into_iter()
        .map(|u| u.key)
        .collect();
    assert_eq!(left, ["alice/huge.bin"]);
    let closed = b.wait_for_log("b's upload closed", |l| {
        l["activity-type"] == "CLOSE" && l["path"] == "/exchange/alice/middle.bin"
    });
    assert_eq!(closed["bytes-in"], middle.len());

    // Node a again, with the same configuration (on the port the balancer
    // knows, as a restarted service would be): a new upload through it
    // works.
    let listen = sftp_a.to_string();
    a.start_with_env(&[
        ("WHARF__CLUSTER__NODE_ID", "node-a"),
        ("WHARF__PROTOCOLS__SFTP__LISTEN", listen.as_str()),
    ]);
    assert_eq!(a.sftp, Some(sftp_a));
    let up = sftp_via(haproxy.frontend(0), CLIENT, "put small.bin\n", dir);
    assert!(up.status.success(), "{}{}", stderr(&up), haproxy.log());
    assert!(moto.get_object(BUCKET, "alice/small.bin").unwrap() == small);
    a.wait_for_log("the new session on a", |l| {
        l["activity-type"] == "CONNECTED" && l["source-ip"] == CLIENT
    });
    assert_no_balancer_address([&a, &b]);
}

#[test]
fn ftps_through_the_balancer_to_two_nodes_with_their_own_passive_ranges() {
    // One run of free ports split in two: node a owns the first half, node
    // b the second. The nodes listen on 127.0.0.3 and 127.0.0.4 (HAProxy
    // holds the same passive ports on 127.0.0.1, the address the nodes
    // announce: the one the client connected to, from the PROXY header,
    // with no `passive_address` set).
    let range = wharf_test_support::tools::free_port_range(20);
    let (low, _) = range.split_once('-').unwrap();
    let low: u16 = low.parse().unwrap();
    let range_a = format!("{low}-{}", low + 9);
    let range_b = format!("{}-{}", low + 10, low + 19);
    let cluster = Cluster::start(
        "",
        "[protocols.ftps]\nlisten = \"127.0.0.3:0\"\n",
        &[("WHARF__PROTOCOLS__FTPS__PASSIVE_PORTS", range_a.as_str())],
        &[
            ("WHARF__PROTOCOLS__FTPS__PASSIVE_PORTS", range_b.as_str()),
            ("WHARF__PROTOCOLS__FTPS__LISTEN", "127.0.0.4:0"),
        ],
    );
    let (a, b) = (&cluster.a, &cluster.b);
    let haproxy = Haproxy::start(&[
        Route::balance(&[a.ftps.unwrap(), b.ftps.unwrap()]),
        Route::ports(&range_a, "127.0.0.3".parse().unwrap()),
        Route::ports(&range_b, "127.0.0.4".parse().unwrap()),
    ]);
    eprintln!("haproxy.cfg:\n{}", haproxy.config());
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let base = format!("ftp://127.0.0.1:{}/", haproxy.frontend(0).port());
    let login = ["--ssl-reqd", "-k", "--user", "alice:alice-pw"];
    // Twice (EPSV, then PASV): an upload, a listing and a download, each
    // its own control connection, so both nodes serve data connections.
    for (round, passive) in ["--ftp-pasv", "--disable-epsv"].into_iter().enumerate() {
        let name = format!("ftps-{round}.bin");
        let data = write_random(&dir.join(&name), 6 * 1024 * 1024 + round, round);
        let url = format!("{base}{name}");
        let mut args = vec!["--interface", CLIENT, passive];
        args.extend_from_slice(&login);
        let up = curl(
            &[&args[..], &["-T", name.as_str(), url.as_str()]].concat(),
            dir,
        );
        assert!(up.status.success(), "{}{}", stderr(&up), haproxy.log());
        let list = curl(&[&args[..], &[base.as_str()]].concat(), dir);
        assert!(list.status.success(), "{}", stderr(&list));
        assert!(stdout(&list).contains(&name), "{}", stdout(&list));
        let down = curl(
            &[&args[..], &["-o", "down.bin", url.as_str()]].concat(),
            dir,
        );
        assert!(down.status.success(), "{}", stderr(&down));
        assert!(std::fs::read(dir.join("down.bin")).unwrap() == data);
        assert!(
            cluster
                .moto
                .get_object(BUCKET, &format!("alice/{name}"))
                .unwrap()
                == data
        );
    }
    let from_client = |node: &Wharf| {
        connected(node)
            .into_iter()
            .filter(|l| l["source-ip"] == CLIENT && l["protocol"] == "FTPS")
            .count()
    };
    wait_until("six FTPS sessions logged", Duration::from_secs(20), || {
        from_client(a) + from_client(b) == 6
    });
    for node in [a, b] {
        assert!(from_client(node) >= 1, "{:#?}", node.log());
        // Each served data connections (an upload, a download or a listing
        // closes a transfer).
        assert!(
            node.activities("CLOSE")
                .iter()
                .any(|l| l["protocol"] == "FTPS"),
            "{:#?}",
            node.log()
        );
        assert!(
            node.activities("ERROR").is_empty(),
            "{:#?}",
            node.activities("ERROR")
        );
    }
    assert_no_balancer_address([a, b]);
    assert!(cluster.moto.multipart_uploads(BUCKET).is_empty());
}
