#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::{Password, ValidationContext, authenticate, parse_public_key};

const KEY_A: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@test";

async fn store() -> (tempfile::TempDir, UserStore) {
    let dir = tempfile::tempdir().unwrap();
    let users = UserStore::open_sqlite(&dir.path().join("users.db"))
        .await
        .unwrap();
    (dir, users)
}

fn request(username: &str, credential: Credential) -> LoginRequest {
    LoginRequest {
        username: username.into(),
        credential,
        protocol: crate::Protocol::Sftp,
        source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        server_id: "s-test".into(),
    }
}

fn context() -> ValidationContext {
    ValidationContext {
        stores: ["default".to_owned()].into_iter().collect(),
        ..ValidationContext::default()
    }
}

fn alice() -> NewUser {
    NewUser {
        username: "alice".into(),
        password: Some(Password::new("correct horse")),
        public_keys: vec![AuthorizedKey::parse(KEY_A).unwrap()],
        home_directory_type: "LOGICAL".into(),
        home_directory_details: Some(json!([{"Entry": "/", "Target": "/default/alice"}])),
        session_tags: [("team".to_owned(), "blue".to_owned())]
            .into_iter()
            .collect(),
        ..NewUser::default()
    }
}

#[tokio::test]
async fn password_and_key_logins() {
    let (_dir, users) = store().await;
    users.add(&alice()).await.unwrap();
    let provider = ServiceManaged::new(users.clone(), Duration::from_secs(5));
    let ok = authenticate(
        &provider,
        &request(
            "alice",
            Credential::Password(Password::new("correct horse")),
        ),
        &context(),
    )
    .await
    .1
    .unwrap();
    assert_eq!(ok.session_tags["team"], "blue");
    let (answer, wrong) = authenticate(
        &provider,
        &request("alice", Credential::Password(Password::new("wrong"))),
        &context(),
    )
    .await;
    assert_eq!(wrong.unwrap_err().reason, "wrong password");
    assert_eq!(answer.unwrap().status_code, 401);
    let nobody = authenticate(
        &provider,
        &request("nobody", Credential::Password(Password::new("x"))),
        &context(),
    )
    .await
    .1;
    assert!(
        nobody
            .unwrap_err()
            .reason
            .contains("no service-managed user")
    );
    let key = parse_public_key(KEY_A).unwrap();
    assert!(
        authenticate(
            &provider,
            &request("alice", Credential::PublicKey(key)),
            &context()
        )
        .await
        .1
        .is_ok()
    );
    // A bad username is refused before the provider is asked.
    let (answer, bad) = authenticate(
        &provider,
        &request("../x", Credential::Password(Password::new("x"))),
        &context(),
    )
    .await;
    assert!(answer.is_none());
    assert!(bad.is_err());
}

#[tokio::test]
async fn changes_take_effect_at_the_next_login() {
    let (_dir, users) = store().await;
    users.add(&alice()).await.unwrap();
    let provider = ServiceManaged::new(users.clone(), Duration::from_secs(5));
    let login = |password: &str| {
        let request = request("alice", Credential::Password(Password::new(password)));
        let provider = provider.clone();
        async move {
            authenticate(&provider, &request, &context())
                .await
                .1
                .is_ok()
        }
    };
    assert!(login("correct horse").await);
    assert!(
        users
            .set_password("alice", &Password::new("new one"))
            .await
            .unwrap()
    );
    assert!(!login("correct horse").await);
    assert!(login("new one").await);
    let fp = users.get("alice").await.unwrap().unwrap().public_keys[0]
        .0
        .clone();
    assert!(fp.starts_with("SHA256:"));
    assert!(users.remove_key("alice", &fp).await.unwrap());
    let key = parse_public_key(KEY_A).unwrap();
    let by_key = authenticate(
        &provider,
        &request("alice", Credential::PublicKey(key.clone())),
        &context(),
    )
    .await
    .1;
    assert!(by_key.unwrap_err().reason.contains("no PublicKeys"));
    let entry = AuthorizedKey::plain(key.clone());
    users.add_key("alice", &entry).await.unwrap();
    assert!(users.add_key("alice", &entry).await.is_err());
    assert!(users.remove("alice").await.unwrap());
    assert!(!login("new one").await);
    assert!(!users.remove("alice").await.unwrap());
}

#[tokio::test]
async fn records_never_show_the_hash() {
    let (_dir, users) = store().await;
    users.add(&alice()).await.unwrap();
    assert!(
        users
            .add(&alice())
            .await
            .unwrap_err()
            .0
            .contains("already exists")
    );
    let shown = users
        .get("alice")
        .await
        .unwrap()
        .unwrap()
        .to_json()
        .to_string();
    assert!(!shown.contains("argon2"), "{shown}");
    assert!(shown.contains("\"HasPassword\":true"));
    assert_eq!(users.count().await.unwrap(), 1);
    assert_eq!(users.list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn key_options_are_stored_and_enforced_at_every_login() {
    let (_dir, users) = store().await;
    let restricted = format!("from=\"10.9.9.9,127.0.0.0/8\",restrict {KEY_A}");
    let user = NewUser {
        public_keys: vec![AuthorizedKey::parse(&restricted).unwrap()],
        ..alice()
    };
    users.add(&user).await.unwrap();
    let stored = users.get("alice").await.unwrap().unwrap();
    assert_eq!(stored.public_keys[0].1, restricted);
    let provider = ServiceManaged::new(users.clone(), Duration::from_secs(5));
    let key = parse_public_key(KEY_A).unwrap();
    let from = |ip: [u8; 4]| LoginRequest {
        source_ip: IpAddr::V4(Ipv4Addr::from(ip)),
        ..request("alice", Credential::PublicKey(key.clone()))
    };
    let inside = authenticate(&provider, &from([127, 0, 0, 1]), &context())
        .await
        .1;
    assert!(inside.is_ok(), "{inside:?}");
    let outside = authenticate(&provider, &from([192, 0, 2, 1]), &context())
        .await
        .1
        .unwrap_err();
    assert!(
        outside.reason.contains("does not include 192.0.2.1"),
        "{outside:?}"
    );

    // An expired key, from the review: refused wherever the client is.
    let expired = format!("from=\"10.9.9.9\",expiry-time=\"20000101\",restrict {KEY_A}");
    assert!(users.remove_key("alice", &fingerprint(&key)).await.unwrap());
    users
        .add_key("alice", &AuthorizedKey::parse(&expired).unwrap())
        .await
        .unwrap();
    let denial = authenticate(&provider, &from([10, 9, 9, 9]), &context())
        .await
        .1
        .unwrap_err();
    assert!(denial.reason.contains("expired"), "{denial:?}");
    // Passwords are not affected by key options.
    let by_password = authenticate(
        &provider,
        &request(
            "alice",
            Credential::Password(Password::new("correct horse")),
        ),
        &context(),
    )
    .await
    .1;
    assert!(by_password.is_ok());
}
