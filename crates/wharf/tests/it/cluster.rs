//! Two `wharf serve` nodes over one PostgreSQL (`[cluster] database`): the
//! service-managed users live there (no `identity_provider.database`), a
//! user added with one node's configuration logs in on the other, and
//! `max_sessions_per_user` counts the user's sessions on both nodes.

use std::time::{Duration, Instant};

use wharf_test_support::postgres::Postgres;
use wharf_test_support::wharf::sftp_session;

use crate::*;

#[test]
fn the_session_limit_counts_sessions_on_every_node() {
    let postgres = Postgres::start();
    let url = postgres.create_database("cluster");
    let (key, public) = ssh_key("client_alice");
    let node = |id: &str| {
        prepare(&format!(
            "[cluster]\ndatabase = \"{url}\"\nnode_id = \"{id}\"\n"
        ))
    };
    // `max_sessions_per_user` belongs to [server], which basic_config
    // writes: add it there.
    let set_limit = |wharf: &Wharf| {
        let config = std::fs::read_to_string(wharf.config_path()).unwrap();
        let config = config.replacen("[server]\n", "[server]\nmax_sessions_per_user = 2\n", 1);
        std::fs::write(wharf.config_path(), config).unwrap();
    };
    let a = node("node-a");
    let b = node("node-b");
    set_limit(&a);
    set_limit(&b);
    // Added with node a's configuration: into the cluster database.
    a.add_user(
        "alice",
        None,
        &[
            "--ssh-key",
            &public,
            "--home-directory-mapping",
            "/=/default/alice",
        ],
    );
    let a = a.start();
    let b = b.start();
    let dir = a.dir.path();
    let login = Login::Key(key);

    let mut held = vec![
        sftp_session(a.sftp_port(), "alice", &login, dir),
        sftp_session(b.sftp_port(), "alice", &login, dir),
    ];
    for node in [&a, &b] {
        node.wait_for_log("alice connected", |l| {
            l["activity-type"] == "CONNECTED" && l["user"] == "alice"
        });
    }
    // A third session, on either node, is refused.
    for node in [&a, &b] {
        let out = sftp_batch(node.sftp_port(), "alice", &login, "ls\n", dir, &[]);
        assert!(!out.status.success(), "a third session was admitted");
    }
    b.wait_for_auth_failure("alice", "sessions on the cluster");
    // One ends (on node a): its lease goes, and a new session is admitted
    // on node b.
    let mut first = held.remove(0);
    drop(first.stdin.take());
    first.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = sftp_batch(b.sftp_port(), "alice", &login, "ls\n", dir, &[]);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lease of the ended session was not released"
        );
    }
    for mut child in held {
        drop(child.stdin.take());
        child.wait().unwrap();
    }
}

/// SPEC 8: "bans apply on every node within a second". An address banned
/// on node a is refused at accept by node b, which never saw it fail;
/// other addresses are not affected.
#[test]
fn a_ban_on_one_node_is_applied_by_the_others() {
    let postgres = Postgres::start();
    let url = postgres.create_database("cluster");
    let node = |id: &str| {
        let ports = wharf_test_support::tools::free_port_range(10);
        let wharf = prepare(&format!(
            "[cluster]\ndatabase = \"{url}\"\nnode_id = \"{id}\"\n\
             [protocols.ftp]\nlisten = \"127.0.0.1:0\"\npassive_ports = \"{ports}\"\n"
        ));
        wharf.add_server_keys("ban_after_failures = 10");
        wharf
    };
    let a = node("node-a");
    let b = node("node-b");
    a.add_user(
        "alice",
        Some("alice-pw"),
        &["--home-directory-mapping", "/=/default/alice"],
    );
    let a = a.start();
    let b = b.start();
    let ftp = |node: &Wharf| node.ftp.unwrap().port().to_string();
    let login = |node: &Wharf, bind: &str| {
        stdout(&crate::defences::defences(&[
            "ftp-login",
            &ftp(node),
            "alice",
            "alice-pw",
            bind,
        ]))
        .trim()
        .to_owned()
    };
    assert_eq!(login(&b, "127.0.0.2"), "ok");

    // Ten wrong passwords from 127.0.0.2 on node a: banned there.
    let out = crate::defences::defences(&["ftp-guess", &ftp(&a), "alice", "20", "127.0.0.2"]);
    assert!(
        stdout(&out).starts_with("refused-at 11 "),
        "{}",
        stdout(&out)
    );
    let banned = Instant::now();
    // Node b refuses it at accept as soon as it has read the ban.
    let deadline = banned + Duration::from_secs(10);
    loop {
        match login(&b, "127.0.0.2").as_str() {
            "refused" => break,
            "ok" => assert!(Instant::now() < deadline, "node b never applied the ban"),
            other => panic!("unexpected {other}"),
        }
    }
    let took = banned.elapsed();
    eprintln!("node b refused the address banned on node a after {took:?}");
    // SPEC says within a second (nodes read every 250 ms); a loaded
    // 2-core machine is given twice that.
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let refused = b.wait_for_refusal_at_accept("127.0.0.2");
    assert!(
        refused["reason"].as_str().unwrap().contains("banned"),
        "{refused}"
    );
    // Node b counted no failure of its own for it, and other addresses
    // still log in there.
    assert!(
        b.activities("AUTH_FAILURE")
            .iter()
            .all(|l| l["message"] != "address banned"),
        "node b decided a ban itself"
    );
    assert_eq!(login(&b, "127.0.0.3"), "ok");
}

/// SPEC 8: every node shares the host keys, the certificate and the server
/// id. A node of a cluster that would generate its own is warned about, by
/// `check-config` as by `serve`; the configuration stays valid (one node
/// with a cluster database is a real setup).
#[test]
fn a_node_that_would_generate_what_nodes_share_is_warned() {
    let cluster = "[cluster]\ndatabase = \"postgres://wharf@127.0.0.1:1/cluster\"\n";
    let wharf = prepare(&format!(
        "{cluster}[protocols.ftps]\nlisten = \"127.0.0.1:0\"\n"
    ));
    // basic_config sets host_keys: take them out.
    let config = std::fs::read_to_string(wharf.config_path()).unwrap();
    let without_keys: String = config
        .lines()
        .filter(|l| !l.starts_with("host_keys"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(wharf.config_path(), &without_keys).unwrap();
    let out = wharf.cli(&["check-config"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let warnings = stderr(&out);
    for key in [
        "server.server_id is not set",
        "server.host_keys is not set",
        "protocols.ftps.certificate is not set",
    ] {
        assert!(warnings.contains(key), "{warnings}");
    }
    // With them shared by path (SFTP only here), nothing to say.
    let shared = prepare(cluster);
    shared.add_server_keys("server_id = \"s-1234\"");
    let out = shared.cli(&["check-config"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    // Nor without a cluster, whatever is generated.
    let alone = prepare("");
    std::fs::write(
        alone.config_path(),
        std::fs::read_to_string(alone.config_path())
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("host_keys"))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let out = alone.cli(&["check-config"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

/// A cluster database that cannot be reached stops `serve` at start with
/// the reason (not the pool's "timed out"), and never shows the password.
#[test]
fn an_unreachable_cluster_database_stops_serve_with_the_reason() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let wharf = prepare(&format!(
        "[cluster]\ndatabase = \"postgres://wharf:s3cret-PW@127.0.0.1:{port}/cluster\"\n"
    ));
    wharf.add_server_keys("server_id = \"s-1234\"");
    let out = wharf.cli(&["serve"], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains("cluster.database: cannot reach the cluster database")
            && text.to_lowercase().contains("refused"),
        "{text}"
    );
    assert!(!text.contains("s3cret-PW"), "{text}");
}
