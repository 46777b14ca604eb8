//! The `sql` provider and the PostgreSQL user store against real databases:
//! a PostgreSQL server started here (wharf_test_support::postgres) and
//! SQLite files. Password hashes are made at test time by the reference
//! implementations (Python passlib, argon2-cffi, bcrypt, hashlib), never
//! by the code under test.
//!
//! Each PostgreSQL start costs about a second, so each test function
//! starts at most one server and covers many cases with it. No fixed
//! ports, no sleeps to synchronise, every wait bounded.

#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _};

use common::{CAROL_KEY, OTHER_KEY, ROLE_ARN, key, password};
use wharf_identity::service_managed::{NewUser, ServiceManaged, UserStore};
use wharf_identity::{
    Answer, AuthorizedKey, Denial, Home, Identity, IdentityProvider, LoginRequest, Password,
    SqlConfig, SqlProvider, ValidationContext, authenticate,
};
use wharf_test_support::postgres::{self, Postgres};
use wharf_test_support::tools::venv_python;

/// The salt of the salted-digest table: a secret, never to be shown.
const SALT: &str = "s4lt-of-the-legacy-table";
/// The longest any single test step may take before the test fails.
const BOUND: Duration = Duration::from_secs(60);
/// The provider timeout of the tests that do not test timeouts.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The provider timeout of the tests that do.
const SHORT: Duration = Duration::from_secs(1);
/// What a denial may take beyond the provider's timeout.
const SLACK: Duration = Duration::from_millis(1500);

/// The schemes checked, as the Python helper names them.
const SCHEMES: [&str; 7] = [
    "argon2id",
    "bcrypt-2b",
    "bcrypt-2a",
    "bcrypt-2y",
    "sha512-crypt",
    "sha512-crypt-rounds",
    "pbkdf2-sha256",
];

// ---------------------------------------------------------------- helpers

/// The tests' server: stores `default` and `reports`, session policies
/// checked.
fn context() -> ValidationContext {
    common::context(&["default", "reports"], true)
}

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    common::within(BOUND, what, future).await
}

type Outcome = (Option<Answer>, Result<Identity, Denial>);

async fn run(provider: &dyn IdentityProvider, request: &LoginRequest) -> Outcome {
    bounded("a login", authenticate(provider, request, &context())).await
}

#[track_caller]
fn assert_ok(outcome: &Outcome) -> &Identity {
    match &outcome.1 {
        Ok(identity) => identity,
        Err(denial) => panic!("login denied: {denial} ({:?})", outcome.0),
    }
}

#[track_caller]
fn assert_denied(outcome: &Outcome, status: u16, part: &str) {
    let (answer, identity) = outcome;
    let answer = answer.as_ref().expect("the provider was asked");
    let denial = identity.as_ref().expect_err("the login must be denied");
    assert_eq!(answer.status_code, status, "{answer:?}");
    assert!(
        denial.reason.contains(part),
        "reason {:?} lacks {part:?}",
        denial.reason
    );
}

/// Nothing secret in what a login tells the log (the reason) or
/// `wharf test-idp` (the answer).
#[track_caller]
fn assert_no_secret(outcome: &Outcome, secrets: &[String]) {
    let mut shown = format!("{:?}", outcome.0);
    if let Err(denial) = &outcome.1 {
        shown.push_str(&denial.reason);
    }
    for secret in secrets {
        assert!(
            !shown.contains(secret.as_str()),
            "a secret shows in {shown:?}"
        );
    }
}

/// Hashes made by the reference implementations, one Python run for all:
/// `{"scheme", "password", "username"?}` -> hash.
fn reference_hashes(items: &[Value]) -> Vec<String> {
    const SCRIPT: &str = r#"
import hashlib, json, sys
import argon2, bcrypt
from passlib.hash import pbkdf2_sha256, sha512_crypt
out = []
for item in json.load(sys.stdin):
    scheme, pw = item["scheme"], item["password"]
    if scheme == "argon2id":
        h = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(pw)
    elif scheme == "argon2id-default":
        h = argon2.PasswordHasher().hash(pw)
    elif scheme == "bcrypt-2b":
        h = bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()
    elif scheme == "bcrypt-2a":
        h = bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4, prefix=b"2a")).decode()
    elif scheme == "bcrypt-2y":
        # PHP's $2y$ is the $2b$ algorithm under another name.
        h = "$2y$" + bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()[4:]
    elif scheme == "sha512-crypt":
        h = sha512_crypt.using(rounds=5000).hash(pw)
    elif scheme == "sha512-crypt-rounds":
        h = sha512_crypt.using(rounds=20000).hash(pw)
    elif scheme == "pbkdf2-sha256":
        h = pbkdf2_sha256.using(rounds=2000).hash(pw)
    elif scheme == "salted-sha256":
        h = hashlib.sha256((item["salt"] + pw + item["username"]).encode()).hexdigest()
    else:
        raise SystemExit("unknown scheme " + scheme)
    out.append(h)
json.dump(out, sys.stdout)
"#;
    let mut child = std::process::Command::new(venv_python())
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(Value::Array(items.to_vec()).to_string().as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the reference hashing failed (run scripts/setup-test-env for passlib, argon2-cffi, \
         bcrypt): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hashes: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hashes.len(), items.len());
    hashes
}

/// An SQL string literal (both dialects: quotes doubled, no escapes).
fn literal(value: Option<&str>) -> String {
    match value {
        None => "NULL".to_owned(),
        Some(text) => format!("'{}'", text.replace('\'', "''")),
    }
}

/// One row of the `accounts` table.
#[derive(Default)]
struct Account {
    username: String,
    hash: Option<String>,
    role: Option<String>,
    home: Option<String>,
    home_type: Option<String>,
    details: Option<String>,
    policy: Option<String>,
    keys: Option<String>,
    posix: Option<String>,
    tags: Option<String>,
    note: Option<String>,
}

/// A user with a password hashed by the reference implementation.
struct Hashed {
    username: String,
    scheme: &'static str,
    password: String,
    hash: String,
}

/// The fixture data, the same on PostgreSQL and SQLite.
struct Fixture {
    hashed: Vec<Hashed>,
    logical_password: String,
    /// (username, password) of the salted-digest table.
    legacy: Vec<(String, String)>,
    /// Every hash and digest: none may ever show.
    secrets: Vec<String>,
    sql: String,
}

fn fixture(extra_schemes: &[&'static str]) -> Fixture {
    let mut items = Vec::new();
    let schemes: Vec<&'static str> = SCHEMES.iter().chain(extra_schemes).copied().collect();
    for scheme in &schemes {
        items.push(json!({"scheme": scheme, "password": format!("pässwörd ✓ {scheme}")}));
    }
    let logical_password = "logical-p4ss".to_owned();
    items.push(json!({"scheme": "pbkdf2-sha256", "password": logical_password}));
    let legacy = vec![
        ("legacy-ann".to_owned(), "ann's pässword".to_owned()),
        ("legacy-bob@example.com".to_owned(), "b0b".to_owned()),
    ];
    for (username, pw) in &legacy {
        items.push(
            json!({"scheme": "salted-sha256", "password": pw, "username": username,
            "salt": SALT}),
        );
    }
    let hashes = reference_hashes(&items);
    let mut hashes = hashes.into_iter();
    let hashed: Vec<Hashed> = schemes
        .iter()
        .map(|scheme| Hashed {
            username: format!("u-{scheme}"),
            scheme,
            password: format!("pässwörd ✓ {scheme}"),
            hash: hashes.next().unwrap(),
        })
        .collect();
    let logical_hash = hashes.next().unwrap();
    let digests: Vec<String> = hashes.collect();

    let mut accounts: Vec<Account> = hashed
        .iter()
        .map(|h| Account {
            username: h.username.clone(),
            hash: Some(h.hash.clone()),
            home: Some(format!("/default/{}", h.username)),
            ..Account::default()
        })
        .collect();
    let plain = |username: &str, hash: Option<&str>| Account {
        username: username.into(),
        hash: hash.map(str::to_owned),
        home: Some("/default/x".into()),
        ..Account::default()
    };
    accounts.push(plain("u-nohash", None));
    accounts.push(plain("u-emptyhash", Some("")));
    accounts.push(plain("u-md5", Some("$1$saltsalt$qjXMvbEw8oaL.CzflDugX/")));
    accounts.push(plain("u-plain", Some("hunter2-plaintext")));
    accounts.push(plain("u-twin", Some(&hashed[0].hash)));
    accounts.push(plain("u-twin", Some(&hashed[1].hash)));
    accounts.push(Account {
        username: "u-keys".into(),
        role: Some("transfer-users".into()),
        home: Some("/reports/carol".into()),
        keys: Some(format!("# carol's laptop\n{CAROL_KEY}\n\n")),
        note: Some("not a response field".into()),
        ..Account::default()
    });
    accounts.push(Account {
        username: "u-logical".into(),
        hash: Some(logical_hash.clone()),
        role: Some(ROLE_ARN.into()),
        home_type: Some("LOGICAL".into()),
        details: Some(
            r#"[{"Entry": "/", "Target": "/default/logical"},
                {"Entry": "/reports", "Target": "/reports/${transfer:UserName}"}]"#
                .into(),
        ),
        policy: Some(
            r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Action": "s3:GetObject", "Resource": "arn:aws:s3:::reports/*"}]}"#
                .into(),
        ),
        keys: Some(json!([CAROL_KEY]).to_string()),
        posix: Some(r#"{"Uid": 1000, "Gid": 1001, "SecondaryGids": [5]}"#.into()),
        tags: Some(r#"{"team": "blue", "cost-center": "42"}"#.into()),
        ..Account::default()
    });

    let mut sql = String::from(
        "CREATE TABLE accounts (username TEXT NOT NULL, pw_hash TEXT, role TEXT, home TEXT, \
         home_type TEXT, details TEXT, policy TEXT, keys TEXT, posix TEXT, tags TEXT, \
         note TEXT);\n",
    );
    for a in &accounts {
        sql.push_str(&format!(
            "INSERT INTO accounts VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {});\n",
            literal(Some(&a.username)),
            literal(a.hash.as_deref()),
            literal(a.role.as_deref()),
            literal(a.home.as_deref()),
            literal(a.home_type.as_deref()),
            literal(a.details.as_deref()),
            literal(a.policy.as_deref()),
            literal(a.keys.as_deref()),
            literal(a.posix.as_deref()),
            literal(a.tags.as_deref()),
            literal(a.note.as_deref()),
        ));
    }
    sql.push_str("CREATE TABLE legacy (user_name TEXT NOT NULL, digest TEXT NOT NULL, home TEXT, keys TEXT);\n");
    for ((username, _), digest) in legacy.iter().zip(&digests) {
        sql.push_str(&format!(
            "INSERT INTO legacy VALUES ({}, {}, {}, {});\n",
            literal(Some(username)),
            literal(Some(digest)),
            literal(Some("/default/legacy")),
            literal(Some(CAROL_KEY)),
        ));
    }
    let mut secrets: Vec<String> = hashed.iter().map(|h| h.hash.clone()).collect();
    secrets.push(logical_hash);
    secrets.extend(digests);
    secrets.push(SALT.to_owned());
    secrets.push(postgres::PASSWORD.to_owned());
    secrets.push("hunter2-plaintext".to_owned());
    secrets.push("qjXMvbEw8oaL".to_owned());
    Fixture {
        hashed,
        logical_password,
        legacy,
        secrets,
        sql,
    }
}

const ACCOUNTS_QUERY: &str = "SELECT username, pw_hash, role AS \"Role\", home AS \"HomeDirectory\", \
     home_type AS homedirectorytype, details AS \"HomeDirectoryDetails\", policy AS \"Policy\", \
     keys AS \"PublicKeys\", posix AS \"PosixProfile\", tags AS \"SessionTags\", note \
     FROM accounts WHERE username = $1";

fn sql_provider(
    database: &str,
    query: &str,
    hash_column: &str,
    salt: &str,
    timeout: Duration,
) -> SqlProvider {
    SqlProvider::new(
        SqlConfig {
            database: database.into(),
            query: query.into(),
            password_hash_column: hash_column.into(),
            password_salt: salt.into(),
        },
        timeout,
    )
    .unwrap()
}

/// Every case of the portable fixture against one database.
async fn check_portable_cases(database: &str, fixture: &Fixture) {
    let secrets = &fixture.secrets;
    let accounts = sql_provider(database, ACCOUNTS_QUERY, "pw_hash", "", TIMEOUT);
    let checked = |outcome: Outcome| {
        assert_no_secret(&outcome, secrets);
        outcome
    };

    // Every scheme: the right password, a wrong one, an empty one.
    for user in &fixture.hashed {
        let started = Instant::now();
        let ok = checked(run(&accounts, &password(&user.username, &user.password)).await);
        let identity = assert_ok(&ok);
        assert_eq!(
            identity.home,
            Home::Path {
                store: "default".into(),
                prefix: user.username.clone()
            },
            "{}",
            user.scheme
        );
        assert!(identity.role.is_none());
        eprintln!("{}: login in {:?}", user.scheme, started.elapsed());
        let wrong = checked(run(&accounts, &password(&user.username, "pässwörd ✓")).await);
        assert_denied(&wrong, 401, "wrong password");
        // A password one character longer.
        let longer = format!("{}x", user.password);
        let wrong = checked(run(&accounts, &password(&user.username, &longer)).await);
        assert_denied(&wrong, 401, "wrong password");
        let empty = checked(run(&accounts, &password(&user.username, "")).await);
        assert_denied(&empty, 401, "empty password");
    }

    // Rows without a usable hash.
    for (username, status, part) in [
        ("u-nohash", 401, "has no password"),
        ("u-emptyhash", 401, "has no password"),
        ("u-md5", 500, "no known scheme prefix"),
        ("u-plain", 500, "no known scheme prefix"),
        ("u-keys", 401, "has no password"),
    ] {
        let outcome = checked(run(&accounts, &password(username, "hunter2-plaintext")).await);
        assert_denied(&outcome, status, part);
    }
    // No row, two rows.
    let nobody = checked(run(&accounts, &password("u-nobody", "x")).await);
    assert_denied(&nobody, 404, "no row for user \"u-nobody\"");
    let nobody = checked(run(&accounts, &key("u-nobody", CAROL_KEY)).await);
    assert_denied(&nobody, 404, "no row for user");
    let twin = checked(run(&accounts, &password("u-twin", &fixture.hashed[0].password)).await);
    assert_denied(&twin, 500, "more than one row");

    // Key logins: no password, the row's PublicKeys.
    let by_key = checked(run(&accounts, &key("u-keys", CAROL_KEY)).await);
    let identity = assert_ok(&by_key);
    assert_eq!(identity.role.as_deref(), Some("transfer-users"));
    assert_eq!(
        identity.home,
        Home::Path {
            store: "reports".into(),
            prefix: "carol".into()
        }
    );
    assert_eq!(identity.public_keys.len(), 1);
    // The hash column and the non-field column are not in the response.
    let response = by_key.0.as_ref().unwrap().response.clone().unwrap();
    assert!(response.get("pw_hash").is_none() && response.get("note").is_none());
    let other = checked(run(&accounts, &key("u-keys", OTHER_KEY)).await);
    assert_denied(&other, 200, "is not one of the user's PublicKeys");
    let no_keys = checked(run(&accounts, &key(&fixture.hashed[0].username, CAROL_KEY)).await);
    assert_denied(&no_keys, 200, "no PublicKeys");

    // A LOGICAL home and everything else mapped from text columns.
    let logical = checked(run(&accounts, &password("u-logical", &fixture.logical_password)).await);
    let identity = assert_ok(&logical);
    let Home::Logical(entries) = &identity.home else {
        panic!("not LOGICAL: {:?}", identity.home);
    };
    let entries: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| (e.entry.as_str(), e.store.as_str(), e.prefix.as_str()))
        .collect();
    assert_eq!(
        entries,
        [
            ("/", "default", "logical"),
            ("/reports", "reports", "u-logical")
        ]
    );
    assert_eq!(identity.role.as_deref(), Some("transfer-users"));
    assert_eq!(identity.session_tags["team"], "blue");
    assert_eq!(identity.session_tags["cost-center"], "42");
    let posix = identity.posix_profile.as_ref().unwrap();
    assert_eq!(
        (posix.uid, posix.gid, posix.secondary_gids.clone()),
        (1000, 1001, vec![5])
    );
    assert_eq!(
        identity.policy.as_ref().unwrap()["Statement"][0]["Action"],
        "s3:GetObject"
    );
    let by_key = checked(run(&accounts, &key("u-logical", CAROL_KEY)).await);
    assert_ok(&by_key);

    // A key-only provider: password logins are refused, keys work.
    let keys_only = sql_provider(database, ACCOUNTS_QUERY, "", "", TIMEOUT);
    let refused = checked(
        run(
            &keys_only,
            &password("u-logical", &fixture.logical_password),
        )
        .await,
    );
    assert_denied(&refused, 401, "password logins are off");
    assert_ok(&checked(run(&keys_only, &key("u-keys", CAROL_KEY)).await));

    // A query that fails denies with the database's reason.
    let broken = sql_provider(
        database,
        "SELECT home AS \"HomeDirectory\" FROM no_such_table WHERE username = $1",
        "",
        "",
        TIMEOUT,
    );
    let failed = checked(run(&broken, &key("u-keys", CAROL_KEY)).await);
    assert_denied(&failed, 502, "query failed");
    assert!(failed.1.unwrap_err().reason.contains("no_such_table"));

    // The salted-digest table: $2 = hex(sha256(salt + password + username)).
    let salted = sql_provider(
        database,
        "SELECT home AS \"HomeDirectory\", keys AS \"PublicKeys\" FROM legacy \
         WHERE user_name = $1 AND ($2 IS NULL OR digest = $2)",
        "",
        SALT,
        TIMEOUT,
    );
    for (username, pw) in &fixture.legacy {
        let ok = checked(run(&salted, &password(username, pw)).await);
        assert_eq!(
            assert_ok(&ok).home,
            Home::Path {
                store: "default".into(),
                prefix: "legacy".into()
            }
        );
        let wrong = checked(run(&salted, &password(username, &format!("{pw} "))).await);
        assert_denied(&wrong, 401, "salted digest of this password");
        let empty = checked(run(&salted, &password(username, "")).await);
        assert_denied(&empty, 401, "empty password");
        assert_ok(&checked(run(&salted, &key(username, CAROL_KEY)).await));
    }
    // Another user's password does not open this account.
    let (ann, _) = &fixture.legacy[0];
    let (_, bob_password) = &fixture.legacy[1];
    let crossed = checked(run(&salted, &password(ann, bob_password)).await);
    assert_denied(&crossed, 401, "salted digest");
    // Nor does the right password with another salt.
    let other_salt = sql_provider(
        database,
        "SELECT home AS \"HomeDirectory\" FROM legacy WHERE user_name = $1 AND digest = $2",
        "",
        "another salt",
        TIMEOUT,
    );
    let (ann, ann_password) = &fixture.legacy[0];
    assert_denied(
        &checked(run(&other_salt, &password(ann, ann_password)).await),
        401,
        "salted digest",
    );
    // `digest = $2` alone: $2 is NULL for a key login, so no row.
    assert_denied(
        &checked(run(&other_salt, &key(ann, CAROL_KEY)).await),
        404,
        "no row",
    );

    // Nothing secret in Debug.
    for provider in [&accounts, &salted] {
        let shown = format!("{provider:?}");
        for secret in secrets {
            assert!(!shown.contains(secret.as_str()), "{shown}");
        }
    }
}

/// A TCP listener that accepts connections and never answers: a database
/// that hangs before the first byte.
async fn black_hole() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (port, task)
}

#[track_caller]
fn assert_within(started: Instant, limit: Duration) {
    let took = started.elapsed();
    assert!(took <= limit, "took {took:?}, more than {limit:?}");
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_provider_against_postgresql() {
    let started = Instant::now();
    let mut server = Postgres::start();
    eprintln!("PostgreSQL up in {:?}", started.elapsed());
    let database = server.create_database("idp");
    let fixture = fixture(&["argon2id-default"]);
    server.psql("idp", &fixture.sql);
    check_portable_cases(&database, &fixture).await;

    // PostgreSQL's own types: jsonb, text[], integers; an unreadable type.
    server.psql(
        "idp",
        &format!(
            "CREATE TABLE typed (username text PRIMARY KEY, details jsonb, tags jsonb, \
             posix jsonb, keys text[], policy json, uid int4);
             INSERT INTO typed VALUES ('t-user',
               '[{{\"Entry\": \"/\", \"Target\": \"/default/typed\"}}]',
               '{{\"team\": \"red\"}}', '{{\"Uid\": 7, \"Gid\": 8}}',
               ARRAY[{}, {}],
               '{{\"Version\": \"2012-10-17\", \"Statement\": [{{\"Effect\": \"Deny\",
                 \"Action\": \"s3:DeleteObject\", \"Resource\": \"*\"}}]}}', 42);",
            literal(Some(OTHER_KEY)),
            literal(Some(CAROL_KEY)),
        ),
    );
    let typed = sql_provider(
        &database,
        "SELECT 'LOGICAL' AS \"HomeDirectoryType\", details AS \"HomeDirectoryDetails\", \
         tags AS \"SessionTags\", posix AS \"PosixProfile\", keys AS \"PublicKeys\", \
         policy AS \"Policy\", uid FROM typed WHERE username = $1",
        "",
        "",
        TIMEOUT,
    );
    let outcome = run(&typed, &key("t-user", CAROL_KEY)).await;
    let identity = assert_ok(&outcome);
    assert_eq!(identity.session_tags["team"], "red");
    assert_eq!(identity.posix_profile.as_ref().unwrap().uid, 7);
    assert_eq!(identity.public_keys.len(), 2);
    assert!(matches!(&identity.home, Home::Logical(entries) if entries[0].prefix == "typed"));
    let unreadable = sql_provider(
        &database,
        "SELECT now() AS \"HomeDirectory\" FROM typed WHERE username = $1",
        "",
        "",
        TIMEOUT,
    );
    assert_denied(
        &run(&unreadable, &key("t-user", CAROL_KEY)).await,
        502,
        "which wharf does not read",
    );
    // The password in the URL is checked: a wrong one denies at once.
    let wrong_password = sql_provider(
        &database.replace(postgres::PASSWORD, "not-the-password"),
        ACCOUNTS_QUERY,
        "pw_hash",
        "",
        TIMEOUT,
    );
    let outcome = run(&wrong_password, &key("u-keys", CAROL_KEY)).await;
    assert_denied(&outcome, 503, "password authentication failed");

    // A database that accepts connections and never answers: every login
    // is denied within the timeout, more logins than connections too,
    // while logins against the real database go on unaffected.
    let (port, hole) = black_hole().await;
    let hanging = Arc::new(sql_provider(
        &format!(
            "postgres://wharf:{}@127.0.0.1:{port}/idp",
            postgres::PASSWORD
        ),
        ACCOUNTS_QUERY,
        "pw_hash",
        "",
        SHORT,
    ));
    let live = Arc::new(sql_provider(
        &database,
        ACCOUNTS_QUERY,
        "pw_hash",
        "",
        SHORT,
    ));
    let user = &fixture.hashed[1];
    let hung_started = Instant::now();
    let mut hung = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (hanging, request) = (
            Arc::clone(&hanging),
            password(&user.username, &user.password),
        );
        hung.spawn(async move { run(hanging.as_ref(), &request).await });
    }
    let live_started = Instant::now();
    assert_ok(&run(live.as_ref(), &password(&user.username, &user.password)).await);
    let live_took = live_started.elapsed();
    let (mut connecting, mut waiting) = (0, 0);
    while let Some(outcome) = hung.join_next().await {
        let outcome = outcome.unwrap();
        assert_denied(&outcome, 504, "did not answer within 1s (");
        let reason = outcome.1.unwrap_err().reason;
        if reason.contains("(while connecting)") {
            connecting += 1;
        } else if reason.contains("(while waiting for a free connection (all 8 in use))") {
            waiting += 1;
        }
    }
    // Each was connecting, or waiting for one of the 8 connections (those
    // that got one as the first ones gave up say "connecting").
    assert_eq!(connecting + waiting, 12, "{connecting} + {waiting}");
    assert!(connecting >= 8, "{connecting} + {waiting}");
    assert_within(hung_started, SHORT + SLACK);
    assert!(
        live_took < SHORT,
        "a live login waited {live_took:?} behind hung ones"
    );
    hole.abort();

    // The real server hangs (every process frozen): denied within the
    // timeout; thawed: the next login works.
    assert_ok(&run(live.as_ref(), &key("u-keys", CAROL_KEY)).await);
    server.pause();
    let paused = Instant::now();
    assert_denied(
        &run(live.as_ref(), &key("u-keys", CAROL_KEY)).await,
        504,
        "did not answer within 1s (to the query)",
    );
    assert_within(paused, SHORT + SLACK);
    server.resume();
    assert_ok(&run(live.as_ref(), &key("u-keys", CAROL_KEY)).await);

    // The server stops: denied (refused at once) within the timeout; it
    // starts again: logins recover by themselves (the idle connection from
    // before is stale and replaced).
    server.stop();
    let stopped = Instant::now();
    let down = run(live.as_ref(), &password(&user.username, &user.password)).await;
    assert_denied(&down, 503, "cannot connect");
    assert_no_secret(&down, &fixture.secrets);
    assert_within(stopped, SHORT + SLACK);
    server.restart();
    let back = run(live.as_ref(), &password(&user.username, &user.password)).await;
    assert_ok(&back);
    eprintln!("whole test in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_provider_against_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.db");
    let fixture = fixture(&[]);
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&file)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(AssertSqlSafe(fixture.sql.clone()))
        .execute(&mut conn)
        .await
        .unwrap();
    // SQLite types by value: integer and real columns are read too.
    sqlx::raw_sql(
        "CREATE TABLE numbers (username TEXT, uid INTEGER, ratio REAL, blob BLOB);
         INSERT INTO numbers VALUES ('n-user', 1000, 0.5, x'00ff');",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let database = format!("sqlite://{}", file.display());
    check_portable_cases(&database, &fixture).await;

    let numbers = sql_provider(
        &database,
        "SELECT '/default/n' AS HomeDirectory, json_object('Uid', uid, 'Gid', uid) AS \
         posixprofile, ratio FROM numbers WHERE username = $1",
        "",
        "",
        TIMEOUT,
    );
    let outcome = run(&numbers, &key("n-user", CAROL_KEY)).await;
    assert_denied(&outcome, 200, "no PublicKeys");
    let response = outcome.0.unwrap().response.unwrap();
    assert_eq!(
        response,
        json!({"HomeDirectory": "/default/n", "PosixProfile": {"Uid": 1000, "Gid": 1000}})
    );
    let blob = sql_provider(
        &database,
        "SELECT blob AS HomeDirectory FROM numbers WHERE username = $1",
        "",
        "",
        TIMEOUT,
    );
    assert_denied(
        &run(&blob, &key("n-user", CAROL_KEY)).await,
        502,
        "type BLOB",
    );

    // A missing file is not created: every login is denied with the reason.
    let missing = sql_provider(
        &format!("sqlite://{}", dir.path().join("missing.db").display()),
        ACCOUNTS_QUERY,
        "pw_hash",
        "",
        TIMEOUT,
    );
    assert_denied(
        &run(&missing, &key("u-keys", CAROL_KEY)).await,
        503,
        "cannot connect",
    );
    assert!(!dir.path().join("missing.db").exists());
}

fn new_user(name: &str, password: Option<&str>, keys: &[&str]) -> NewUser {
    NewUser {
        username: name.into(),
        password: password.map(Password::new),
        public_keys: keys
            .iter()
            .map(|k| AuthorizedKey::parse(k).unwrap())
            .collect(),
        home_directory_type: "LOGICAL".into(),
        home_directory_details: Some(json!([{"Entry": "/", "Target": format!("/default/{name}")}])),
        role: Some("transfer-users".into()),
        policy: Some(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": "s3:GetObject", "Resource": "arn:aws:s3:::default/*"}]}),
        ),
        session_tags: [("team".to_owned(), "blue".to_owned())]
            .into_iter()
            .collect(),
        ..NewUser::default()
    }
}

/// Every `UserStore` operation through `a`, seen through `b` (another
/// store on the same database, as another process would have).
async fn check_store_operations(a: &UserStore, b: &UserStore) {
    let provider = ServiceManaged::new(b.clone(), TIMEOUT);
    assert_eq!(a.count().await.unwrap(), 0);
    a.add(&new_user("alice", Some("first pässword"), &[CAROL_KEY]))
        .await
        .unwrap();
    a.add(&new_user("bob", None, &[])).await.unwrap();
    let again = a.add(&new_user("alice", None, &[])).await.unwrap_err();
    assert!(again.0.contains("already exists"), "{again}");
    assert_eq!(b.count().await.unwrap(), 2);
    let names: Vec<String> = b
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice", "bob"]);

    let shown = b.get("alice").await.unwrap().unwrap();
    assert!(shown.has_password);
    assert_eq!(shown.session_tags["team"], "blue");
    assert_eq!(shown.role.as_deref(), Some("transfer-users"));
    assert_eq!(shown.public_keys.len(), 1);
    let text = shown.to_json().to_string();
    assert!(!text.contains("argon2"), "show prints a hash: {text}");
    assert!(!b.get("bob").await.unwrap().unwrap().has_password);
    assert!(b.get("carol").await.unwrap().is_none());

    // Logins through the other store see every change at once.
    let ok = |outcome: &Outcome| outcome.1.is_ok();
    assert!(ok(
        &run(&provider, &password("alice", "first pässword")).await
    ));
    assert!(
        a.set_password("alice", &Password::new("second"))
            .await
            .unwrap()
    );
    assert!(!a.set_password("nobody", &Password::new("x")).await.unwrap());
    assert_denied(
        &run(&provider, &password("alice", "first pässword")).await,
        401,
        "wrong password",
    );
    assert!(ok(&run(&provider, &password("alice", "second")).await));
    assert!(ok(&run(&provider, &key("alice", CAROL_KEY)).await));

    let fp = b.get("alice").await.unwrap().unwrap().public_keys[0]
        .0
        .clone();
    assert!(a.remove_key("alice", &fp).await.unwrap());
    assert!(!a.remove_key("alice", &fp).await.unwrap());
    assert_denied(
        &run(&provider, &key("alice", CAROL_KEY)).await,
        200,
        "no PublicKeys",
    );
    let other = AuthorizedKey::parse(OTHER_KEY).unwrap();
    let added = a.add_key("alice", &other).await.unwrap();
    assert!(added.starts_with("SHA256:"));
    let twice = a.add_key("alice", &other).await.unwrap_err();
    assert!(twice.0.contains("already has key"), "{twice}");
    let nobody = a.add_key("nobody", &other).await.unwrap_err();
    assert!(nobody.0.contains("no user"), "{nobody}");
    assert!(ok(&run(&provider, &key("alice", OTHER_KEY)).await));
    assert_eq!(b.get("alice").await.unwrap().unwrap().public_keys.len(), 1);

    assert!(a.remove("alice").await.unwrap());
    assert!(!a.remove("alice").await.unwrap());
    assert_denied(
        &run(&provider, &password("alice", "second")).await,
        404,
        "no service-managed user",
    );
    // Its keys went with it: a new alice starts with none.
    a.add(&new_user("alice", None, &[])).await.unwrap();
    assert!(
        b.get("alice")
            .await
            .unwrap()
            .unwrap()
            .public_keys
            .is_empty()
    );
    assert_eq!(b.count().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_store_against_postgresql() {
    let server = Postgres::start();
    let url = server.create_database("users");
    // Two stores opened at once, as two nodes starting together: both
    // migrate, neither fails.
    let (a, b) = tokio::join!(UserStore::open(&url), UserStore::open(&url));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.backend(), "postgres");
    let shown = format!("{a:?}");
    assert!(!shown.contains(postgres::PASSWORD), "{shown}");
    check_store_operations(&a, &b).await;
    // A third opening of a migrated database changes nothing.
    let c = UserStore::open(&url).await.unwrap();
    assert_eq!(c.count().await.unwrap(), 2);
    // The migrations are recorded in wharf's own table, not sqlx's default
    // one, which another migrator of a shared database may own.
    let tables = server.psql(
        "users",
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables \
         WHERE schemaname = 'public'",
    );
    assert_eq!(tables.trim(), "_wharf_users_migrations,user_keys,users");
    // A wrong password fails at once, without showing any password.
    let wrong = url.replace(postgres::PASSWORD, "wrong-pw");
    let error = bounded("a refused open", UserStore::open(&wrong))
        .await
        .unwrap_err();
    assert!(
        error.0.contains("password authentication failed"),
        "{error}"
    );
    assert!(!error.0.contains("wrong-pw"), "{error}");
    for store in [a, b, c] {
        store.close().await;
    }
}

#[tokio::test]
async fn user_store_on_sqlite_by_url_and_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/users.db");
    let by_url = UserStore::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let by_path = UserStore::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(by_url.backend(), "sqlite");
    check_store_operations(&by_url, &by_path).await;
    // The file the old constructor opens is the same database.
    let old = UserStore::open_sqlite(&path).await.unwrap();
    assert_eq!(old.count().await.unwrap(), 2);
    for (value, part) in [
        (
            "mysql://u:pw@db/x",
            "database: \"mysql://u:***@db/x\" must be a path",
        ),
        ("", "database: is empty"),
    ] {
        let error = UserStore::check_database(value).unwrap_err();
        assert!(error.0.starts_with(part), "{error}");
    }
    UserStore::check_database("postgres://u:pw@db/x").unwrap();
    UserStore::check_database("wharf-data/users.db").unwrap();
}
