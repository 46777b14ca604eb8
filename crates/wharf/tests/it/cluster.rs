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
