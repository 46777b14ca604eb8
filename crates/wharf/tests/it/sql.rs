//! The sql identity provider and service-managed users on PostgreSQL,
//! through the binary, against one real PostgreSQL server: a migrated user
//! table with bcrypt hashes made by Python's `bcrypt`, OpenSSH logins,
//! `test-idp`; and `wharf user` on one "node" changing what another node's
//! `serve` lets in at the next login.

use std::process::{Command, Stdio};

use wharf_test_support::postgres::Postgres;
use wharf_test_support::tools::venv_python;

use crate::*;

/// A bcrypt hash of `password` by the reference implementation.
fn bcrypt(password: &str) -> String {
    let out = Command::new(venv_python())
        .args([
            "-c",
            "import sys, bcrypt; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(rounds=6)).decode())",
            password,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_owned()
}

#[test]
fn a_user_table_and_postgres_backed_users_serve_logins() {
    let postgres = Postgres::start();

    // 1. The sql provider over a table migrated from a Lambda's store.
    let table = postgres.create_database("partners");
    postgres.psql(
        "partners",
        &format!(
            "CREATE TABLE accounts (login text PRIMARY KEY, pw_hash text, home text, tags jsonb);
             INSERT INTO accounts VALUES
               ('acme', '{}', '/default/acme', '{{\"tier\": \"gold\"}}');",
            bcrypt("acme-Pass-9")
        ),
    );
    let wharf = prepare(&format!(
        r#"[identity_provider]
type = "sql"
database = "{table}"
query = 'SELECT pw_hash, home AS "HomeDirectory", tags AS "SessionTags" FROM accounts WHERE login = $1'
password_hash_column = "pw_hash"
timeout = "3s"
"#
    ));
    let check = wharf.cli(&["check-config"], None);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    let wharf = wharf.start();
    let dir = wharf.dir.path();
    std::fs::write(dir.join("f.txt"), b"from the table").unwrap();
    let login = |user: &str, password: &str| {
        sftp_batch(
            wharf.sftp_port(),
            user,
            &Login::Password(password.into()),
            "put f.txt\n",
            dir,
            &[],
        )
        .status
        .success()
    };
    assert!(login("acme", "acme-Pass-9"));
    assert_eq!(
        std::fs::read(wharf.path("files/acme/f.txt")).unwrap(),
        b"from the table"
    );
    assert!(!login("acme", "wrong"));
    assert!(!login("nobody", "acme-Pass-9"));
    let answer = wharf.cli(
        &["test-idp", "--user", "acme", "--password-stdin"],
        Some("acme-Pass-9\n"),
    );
    assert_eq!(answer.status.code(), Some(0), "{}", stdout(&answer));
    let answer: serde_json::Value = serde_json::from_slice(&answer.stdout).unwrap();
    assert_eq!(answer["Session"]["SessionTags"]["tier"], "gold");
    let log = std::fs::read_to_string(wharf.path("audit.log")).unwrap();
    assert!(!log.contains("$2b$") && !log.contains("acme-Pass-9"));
    drop(wharf);

    // 2. Service-managed users in PostgreSQL: `wharf user` with node A's
    // configuration, logins on node B, no restart.
    let users = postgres.create_database("users");
    let provider = format!("[identity_provider]\ndatabase = \"{users}\"\n");
    let node_a = prepare(&provider);
    let node_b = prepare(&provider).start();
    let add = node_a.cli(
        &[
            "user",
            "add",
            "bob",
            "--password-stdin",
            "--home-directory-mapping",
            "/=/default/bob",
        ],
        Some("bob-Pass-1\n"),
    );
    assert_eq!(add.status.code(), Some(0), "{}", stderr(&add));
    let dir = node_b.dir.path();
    std::fs::write(dir.join("f.txt"), b"to node b").unwrap();
    let login_b = |password: &str| {
        sftp_batch(
            node_b.sftp_port(),
            "bob",
            &Login::Password(password.into()),
            "put f.txt\n",
            dir,
            &[],
        )
        .status
        .success()
    };
    assert!(login_b("bob-Pass-1"));
    assert_eq!(
        std::fs::read(node_b.path("files/bob/f.txt")).unwrap(),
        b"to node b"
    );
    let changed = node_a.cli(
        &["user", "set-password", "bob", "--password-stdin"],
        Some("bob-Pass-2\n"),
    );
    assert_eq!(changed.status.code(), Some(0), "{}", stderr(&changed));
    assert!(!login_b("bob-Pass-1"));
    assert!(login_b("bob-Pass-2"));
    let shown = node_a.cli(&["user", "show", "bob"], None);
    assert_eq!(shown.status.code(), Some(0), "{}", stderr(&shown));
    assert!(!stdout(&shown).contains("argon2"), "{}", stdout(&shown));
    let removed = node_a.cli(&["user", "remove", "bob"], None);
    assert_eq!(removed.status.code(), Some(0), "{}", stderr(&removed));
    assert!(!login_b("bob-Pass-2"));
}
