//! The ldap provider against a real OpenLDAP slapd
//! (`wharf_test_support::ldap`): search-and-bind and DN-template logins,
//! key logins, allowed_groups with nesting, filter injection, LDAPS and
//! StartTLS, and a directory that is stopped, hangs and comes back.
//!
//! Each test function starts one slapd and covers many cases with it, so
//! the servers started stay few. No sleeps to synchronise, every wait
//! bounded.

#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::net::TcpListener;

use common::{OTHER_KEY, key, password};
use wharf_identity::{
    Answer, Denial, Home, Identity, IdentityProvider, LdapConfig, LdapProvider, LoginRequest,
    ValidationContext, authenticate,
};
use wharf_test_support::ldap::{SUFFIX, Slapd};

const ALICE_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG7SmEUZC9EGIHNN3JgWN0qF7lwqtWPhN8S+T04UqtJ5 alice@example";
const SERVICE_DN: &str = "cn=wharf,ou=services,dc=example,dc=com";
const SERVICE_PASSWORD: &str = "svc-Secret-77";
const ALICE_PASSWORD: &str = "alice-Pass-1";
const STAFF: &str = "cn=staff,ou=groups,dc=example,dc=com";
/// The longest any single test step may take before the test fails.
const BOUND: Duration = Duration::from_secs(30);
/// What a provider may take beyond its timeout to deny.
const SLACK: Duration = Duration::from_millis(1500);

/// Only the service account may read `employeeType` (the Role): a search
/// made on a connection still bound as a user would come back without it.
const ACCESS: &[&str] = &[
    "access to attrs=employeeType by dn.exact=\"cn=wharf,ou=services,dc=example,dc=com\" read by * none",
];

fn seed() -> String {
    format!(
        "dn: ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: people

dn: ou=contractors,ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: contractors

dn: ou=groups,{SUFFIX}
objectClass: organizationalUnit
ou: groups

dn: ou=services,{SUFFIX}
objectClass: organizationalUnit
ou: services

dn: {SERVICE_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: wharf
userPassword: {SERVICE_PASSWORD}

{alice}
{bob}
{carol}
{twin1}
{twin2}
dn: cn=team-a,ou=groups,{SUFFIX}
objectClass: groupOfNames
cn: team-a
member: uid=carol,ou=people,{SUFFIX}

dn: {STAFF}
objectClass: groupOfNames
cn: staff
member: uid=alice,ou=people,{SUFFIX}
member: cn=team-a,ou=groups,{SUFFIX}

dn: cn=others,ou=groups,{SUFFIX}
objectClass: groupOfNames
cn: others
member: uid=bob,ou=people,{SUFFIX}

{chain}
dn: cn=loop-a,ou=groups,{SUFFIX}
objectClass: groupOfNames
cn: loop-a
member: uid=bob,ou=people,{SUFFIX}

dn: cn=loop-b,ou=groups,{SUFFIX}
objectClass: groupOfNames
cn: loop-b
member: cn=loop-a,ou=groups,{SUFFIX}
",
        alice = person("alice", "ou=people", 1001, &[ALICE_KEY]),
        bob = person("bob", "ou=people", 1002, &[OTHER_KEY]),
        carol = person("carol", "ou=people", 1003, &[]),
        twin1 = person("twin", "ou=people", 1004, &[]),
        twin2 = person("twin", "ou=contractors,ou=people", 1005, &[]),
        chain = chain(),
    )
}

/// deep-1 holds carol, deep-N holds deep-(N-1), up to deep-12.
fn chain() -> String {
    (1..=12)
        .map(|n| {
            let member = if n == 1 {
                format!("uid=carol,ou=people,{SUFFIX}")
            } else {
                format!("cn=deep-{},ou=groups,{SUFFIX}", n - 1)
            };
            format!(
                "dn: cn=deep-{n},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: deep-{n}\n\
                 member: {member}\n\n"
            )
        })
        .collect()
}

/// loop-a holds bob and loop-b; loop-b holds loop-a.
fn close_the_loop() -> String {
    format!(
        "dn: cn=loop-a,ou=groups,{SUFFIX}\nchangetype: modify\nadd: member\n\
         member: cn=loop-b,ou=groups,{SUFFIX}\n"
    )
}

fn person(uid: &str, ou: &str, number: u32, keys: &[&str]) -> String {
    let number_text = number.to_string();
    wharf_test_support::ldap::person(
        uid,
        ou,
        number,
        keys,
        &[
            ("employeeType", "transfer-users"),
            ("departmentNumber", &number_text),
        ],
    )
}

/// The tests' server: store `default`.
fn context() -> ValidationContext {
    common::context(&["default"], false)
}

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    common::within(BOUND, what, future).await
}

fn attributes() -> Value {
    json!({
        "HomeDirectory": "homeDirectory",
        "Role": "employeeType",
        "PublicKeys": "sshPublicKey",
        "SessionTags": {"department": "departmentNumber"},
        "PosixProfile": {"Uid": "uidNumber", "Gid": "gidNumber"}
    })
}

fn config(fields: Value) -> LdapConfig {
    let mut value = json!({"attributes": attributes()});
    for (key, field) in fields.as_object().unwrap() {
        value[key] = field.clone();
    }
    serde_json::from_value(value).unwrap()
}

fn search_config(url: &str, extra: Value) -> LdapConfig {
    let mut fields = json!({
        "url": url,
        "service_bind_dn": SERVICE_DN,
        "service_bind_password": SERVICE_PASSWORD,
        "search_base": format!("ou=people,{SUFFIX}"),
    });
    for (key, field) in extra.as_object().unwrap() {
        fields[key] = field.clone();
    }
    config(fields)
}

fn provider(config: LdapConfig, timeout: Duration) -> LdapProvider {
    LdapProvider::new(config, timeout).unwrap()
}

async fn login(
    provider: &LdapProvider,
    request: &LoginRequest,
) -> (Option<Answer>, Result<Identity, Denial>) {
    bounded(
        &request.username,
        authenticate(provider, request, &context()),
    )
    .await
}

#[track_caller]
fn assert_no_secrets(text: &str) {
    for secret in [SERVICE_PASSWORD, ALICE_PASSWORD, "bob-Pass-1", "wrong-Pass"] {
        assert!(!text.contains(secret), "a password leaked: {text}");
    }
}

/// A login that must succeed; returns the identity.
async fn allowed(provider: &LdapProvider, request: &LoginRequest) -> Identity {
    let (answer, result) = login(provider, request).await;
    match result {
        Ok(identity) => identity,
        Err(denial) => panic!("{} denied: {denial} ({answer:?})", request.username),
    }
}

/// A login that must be denied with an answer whose status and message
/// are as given; returns the message.
async fn denied(
    provider: &LdapProvider,
    request: &LoginRequest,
    status: u16,
    part: &str,
) -> String {
    let (answer, result) = login(provider, request).await;
    let denial = result.expect_err(&format!("{} was allowed", request.username));
    assert_no_secrets(&denial.reason);
    assert!(
        denial.reason.contains(part),
        "{}: {:?} lacks {part:?}",
        request.username,
        denial.reason
    );
    if let Some(answer) = answer {
        assert_no_secrets(&format!("{answer:?}"));
        if answer.response.is_none() {
            assert_eq!(answer.status_code, status, "{answer:?}");
        }
    }
    denial.reason
}

#[track_caller]
fn assert_alice(identity: &Identity) {
    assert_eq!(
        identity.home,
        Home::Path {
            store: "default".into(),
            prefix: "alice".into()
        }
    );
    assert_eq!(identity.role.as_deref(), Some("transfer-users"));
    assert_eq!(identity.session_tags["department"], "1001");
    let posix = identity.posix_profile.as_ref().unwrap();
    assert_eq!((posix.uid, posix.gid), (1001, 100));
}

#[tokio::test]
async fn logins_against_openldap() {
    let slapd = Slapd::start_with_access(ACCESS);
    slapd.add(&seed());
    let url = slapd.ldap_url();
    let timeout = Duration::from_secs(5);

    // -- search as the service account, then bind as the entry found
    let ldap = provider(search_config(&url, json!({})), timeout);
    let alice = allowed(&ldap, &password("alice", ALICE_PASSWORD)).await;
    assert_alice(&alice);
    assert_eq!(alice.public_keys.len(), 1);
    let (answer, _) = login(&ldap, &password("alice", ALICE_PASSWORD)).await;
    let answer = answer.unwrap();
    assert_eq!(answer.status_code, 200);
    assert!(answer.message.contains("uid=alice,ou=people"), "{answer:?}");
    // The connection alice bound on went back to the pool rebound as the
    // service account: bob's search on it still reads the Role, which only
    // the service account may read.
    let bob = allowed(&ldap, &key("bob", OTHER_KEY)).await;
    assert_eq!(bob.role.as_deref(), Some("transfer-users"));

    denied(
        &ldap,
        &password("alice", "wrong-Pass"),
        401,
        "wrong password",
    )
    .await;
    let reason = denied(&ldap, &password("alice", ""), 401, "empty password").await;
    assert!(reason.contains("not asked"), "{reason}");
    denied(&ldap, &password("nobody", "x-Pass-1"), 404, "no entry").await;
    denied(
        &ldap,
        &password("twin", "twin-Pass-1"),
        409,
        "more than one entry",
    )
    .await;

    // -- key logins: search only, the key must be one of sshPublicKey
    let alice = allowed(&ldap, &key("alice", ALICE_KEY)).await;
    assert_alice(&alice);
    denied(
        &ldap,
        &key("alice", OTHER_KEY),
        200,
        "not one of the user's PublicKeys",
    )
    .await;
    denied(&ldap, &key("carol", ALICE_KEY), 200, "no PublicKeys").await;

    // -- filter injection: wharf's username rules refuse it first; asked
    // directly, the provider escapes it and matches nobody.
    for hostile in ["*)(uid=*", "*", "alice)(|(uid=*", "ali*"] {
        denied(&ldap, &password(hostile, ALICE_PASSWORD), 0, "").await;
        let answer = bounded(hostile, ldap.query(&password(hostile, ALICE_PASSWORD))).await;
        assert!(answer.response.is_none(), "{hostile}: {answer:?}");
        assert_eq!(answer.status_code, 404, "{hostile}: {answer:?}");
        let answer = bounded(hostile, ldap.query(&key(hostile, ALICE_KEY))).await;
        assert_eq!(answer.status_code, 404, "{hostile}: {answer:?}");
    }

    // -- allowed_groups: direct member, nested member, outsider
    let grouped = provider(
        search_config(&url, json!({"allowed_groups": [STAFF]})),
        timeout,
    );
    assert_alice(&allowed(&grouped, &password("alice", ALICE_PASSWORD)).await);
    allowed(&grouped, &password("carol", "carol-Pass-1")).await;
    denied(
        &grouped,
        &password("bob", "bob-Pass-1"),
        403,
        "not a member",
    )
    .await;
    denied(&grouped, &key("bob", OTHER_KEY), 403, "not a member").await;
    allowed(&grouped, &key("alice", ALICE_KEY)).await;
    // A group spelled differently (case, spaces) is the same group.
    let spelled = provider(
        search_config(
            &url,
            json!({"allowed_groups": ["CN=Team-A, OU=Groups, DC=Example, DC=Com"]}),
        ),
        timeout,
    );
    allowed(&spelled, &password("carol", "carol-Pass-1")).await;
    denied(
        &spelled,
        &password("alice", ALICE_PASSWORD),
        403,
        "not a member",
    )
    .await;
    // Nesting is followed to a bounded depth; cycles end the walk.
    let nested = |group: &str| {
        provider(
            search_config(
                &url,
                json!({"allowed_groups": [format!("cn={group},ou=groups,{SUFFIX}")]}),
            ),
            timeout,
        )
    };
    allowed(&nested("deep-8"), &password("carol", "carol-Pass-1")).await;
    denied(
        &nested("deep-12"),
        &password("carol", "carol-Pass-1"),
        403,
        "depth 8",
    )
    .await;
    slapd.modify(&close_the_loop());
    denied(
        &nested("deep-12"),
        &password("bob", "bob-Pass-1"),
        403,
        "not a member",
    )
    .await;
    allowed(&nested("loop-b"), &password("bob", "bob-Pass-1")).await;

    // -- a DN template, no service account: bind as the user, read the
    // entry as the user (who may not read employeeType: no Role).
    let template = provider(
        config(json!({
            "url": url,
            "bind_dn_template": format!("uid={{username}},ou=people,{SUFFIX}"),
            "allowed_groups": [STAFF],
        })),
        timeout,
    );
    let alice = allowed(&template, &password("alice", ALICE_PASSWORD)).await;
    assert_eq!(alice.role, None);
    assert_eq!(alice.session_tags["department"], "1001");
    allowed(&template, &password("carol", "carol-Pass-1")).await;
    denied(
        &template,
        &password("alice", "wrong-Pass"),
        401,
        "wrong password",
    )
    .await;
    denied(&template, &password("alice", ""), 401, "empty password").await;
    denied(
        &template,
        &password("bob", "bob-Pass-1"),
        403,
        "not a member",
    )
    .await;
    denied(&template, &password("nobody", "x-Pass-1"), 401, "").await;
    // Key logins read the entry anonymously here.
    allowed(&template, &key("alice", ALICE_KEY)).await;
    // A DN-breaking username is escaped into one RDN value.
    let answer = bounded(
        "dn",
        template.query(&password("alice,ou=people", ALICE_PASSWORD)),
    )
    .await;
    assert!(answer.response.is_none(), "{answer:?}");

    // -- LDAPS and StartTLS with the test CA; untrusted without it
    let ca = slapd.ca_file();
    let ldaps = provider(
        search_config(&slapd.ldaps_url(), json!({"ca_file": ca})),
        timeout,
    );
    assert_alice(&allowed(&ldaps, &password("alice", ALICE_PASSWORD)).await);
    allowed(&ldaps, &key("alice", ALICE_KEY)).await;
    let start_tls = provider(
        search_config(&url, json!({"start_tls": true, "ca_file": ca})),
        timeout,
    );
    assert_alice(&allowed(&start_tls, &password("alice", ALICE_PASSWORD)).await);
    let untrusted = provider(search_config(&slapd.ldaps_url(), json!({})), timeout);
    let reason = denied(
        &untrusted,
        &password("alice", ALICE_PASSWORD),
        503,
        "certificate",
    )
    .await;
    assert!(reason.contains("cannot connect"), "{reason}");
    let untrusted = provider(search_config(&url, json!({"start_tls": true})), timeout);
    denied(
        &untrusted,
        &password("alice", ALICE_PASSWORD),
        503,
        "certificate",
    )
    .await;
    // A wrong service password is the directory's problem, said as such.
    let bad_service = provider(
        search_config(&url, json!({"service_bind_password": "not-it"})),
        timeout,
    );
    let reason = denied(
        &bad_service,
        &password("alice", ALICE_PASSWORD),
        502,
        "service_bind_dn",
    )
    .await;
    assert!(!reason.contains("not-it"), "{reason}");
}

/// Accepts connections and never answers; keeps them open.
async fn silent_listener() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ldap://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (url, task)
}

#[tokio::test]
async fn directory_down_hanging_and_back() {
    let mut slapd = Slapd::start_with_access(ACCESS);
    slapd.add(&seed());
    let timeout = Duration::from_secs(1);
    let ldap = Arc::new(provider(
        search_config(&slapd.ldap_url(), json!({})),
        timeout,
    ));
    assert_alice(&allowed(&ldap, &password("alice", ALICE_PASSWORD)).await);
    allowed(&ldap, &key("alice", ALICE_KEY)).await;

    // -- stopped: refused at once, with the reason
    slapd.stop();
    for request in [password("alice", ALICE_PASSWORD), key("alice", ALICE_KEY)] {
        let started = Instant::now();
        let reason = denied(&ldap, &request, 503, "cannot connect").await;
        assert!(
            started.elapsed() < timeout + SLACK,
            "{:?}",
            started.elapsed()
        );
        assert!(reason.contains(&slapd.ldap_url()), "{reason}");
    }

    // -- back on the same port: the provider recovers by itself
    slapd.restart();
    assert_alice(&allowed(&ldap, &password("alice", ALICE_PASSWORD)).await);
    // Restarted under pooled connections that are now dead: still fine.
    slapd.restart();
    assert_alice(&allowed(&ldap, &password("alice", ALICE_PASSWORD)).await);
    allowed(&ldap, &key("alice", ALICE_KEY)).await;

    // -- hanging: more logins at once than the pool holds connections;
    // each is denied within its own timeout, and the real directory's
    // users meanwhile log in as usual.
    let (hang_url, hang_task) = silent_listener().await;
    let hanging = Arc::new(provider(search_config(&hang_url, json!({})), timeout));
    let started = Instant::now();
    let mut waiting = Vec::new();
    for i in 0..12 {
        let hanging = Arc::clone(&hanging);
        waiting.push(tokio::spawn(async move {
            let request = if i % 2 == 0 {
                password("alice", ALICE_PASSWORD)
            } else {
                key("alice", ALICE_KEY)
            };
            let (answer, result) = authenticate(hanging.as_ref(), &request, &context()).await;
            (answer, result, Instant::now())
        }));
    }
    assert_alice(&allowed(&ldap, &password("alice", ALICE_PASSWORD)).await);
    assert!(
        started.elapsed() < timeout,
        "a healthy directory's login waited for a hanging one: {:?}",
        started.elapsed()
    );
    for task in waiting {
        let (answer, result, at) = bounded("hanging login", task).await.unwrap();
        let denial = result.unwrap_err();
        assert!(at - started < timeout + SLACK, "{:?}", at - started);
        assert!(denial.reason.contains("did not answer within"), "{denial}");
        assert_eq!(answer.unwrap().status_code, 504);
        assert_no_secrets(&denial.reason);
    }
    hang_task.abort();
    // The hanging provider's pool is not stuck: with the listener gone,
    // it is refused at once.
    let _ = hang_task.await;
    let started = Instant::now();
    let (_, result) = login(&hanging, &password("alice", ALICE_PASSWORD)).await;
    assert!(result.is_err());
    assert!(
        started.elapsed() < timeout + SLACK,
        "{:?}",
        started.elapsed()
    );
}
