#![allow(clippy::unwrap_used)]

use super::*;
use crate::Protocol;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr};

const SECRET: &str = "service-secret-9f2c";

fn base() -> Value {
    json!({
        "url": "ldap://127.0.0.1:1",
        "service_bind_dn": "cn=svc,dc=example,dc=com",
        "service_bind_password": SECRET,
        "search_base": "ou=people,dc=example,dc=com",
        "attributes": {"HomeDirectory": "homeDirectory"}
    })
}

fn with(changes: Value) -> Value {
    let mut config = base();
    for (key, value) in changes.as_object().unwrap() {
        if value.is_null() {
            config.as_object_mut().unwrap().remove(key);
        } else {
            config[key] = value.clone();
        }
    }
    config
}

fn build(config: Value) -> Result<LdapProvider, String> {
    let config: LdapConfig = serde_json::from_value(config).map_err(|e| e.to_string())?;
    LdapProvider::new(config, Duration::from_secs(2)).map_err(|e| e.0)
}

#[track_caller]
fn check(config: Value, expected: Result<(), &str>) {
    match (build(config), expected) {
        (Ok(_), Ok(())) => {}
        (Err(reason), Err(start)) => {
            assert!(
                reason.starts_with(start),
                "{reason:?} does not start with {start:?}"
            );
            assert!(!reason.contains(SECRET), "{reason}");
        }
        (Ok(provider), Err(start)) => panic!("accepted {provider:?}, expected {start:?}"),
        (Err(reason), Ok(())) => panic!("refused: {reason}"),
    }
}

#[test]
fn configurations_are_validated() {
    check(base(), Ok(()));
    check(with(json!({"url": "ldap://ldap.example.com"})), Ok(()));
    check(with(json!({"url": "ldap://[::1]:3389/"})), Ok(()));
    check(with(json!({"url": "ldap://h", "start_tls": true})), Ok(()));
    check(with(json!({"url": "ldaps://h:636"})), Ok(()));
    check(
        with(json!({"service_bind_dn": null, "service_bind_password": null})),
        Ok(()),
    );
    check(
        with(json!({"search_base": null,
                    "bind_dn_template": "uid={username},ou=people,dc=example,dc=com"})),
        Ok(()),
    );
    check(
        with(json!({"allowed_groups": ["cn=staff,ou=groups,dc=example,dc=com"]})),
        Ok(()),
    );
    check(with(json!({"url": ""})), Err("url: required"));
    check(
        with(json!({"url": "http://h"})),
        Err("url: scheme \"http\""),
    );
    check(with(json!({"url": "ldap://"})), Err("url: "));
    check(
        with(json!({"url": "ldap://u:p@h"})),
        Err("url: must not hold credentials"),
    );
    check(with(json!({"url": "ldap://h/dc=example"})), Err("url: "));
    check(with(json!({"url": "ldap://h/?uid"})), Err("url: "));
    check(
        with(json!({"url": "ldaps://h", "start_tls": true})),
        Err("start_tls: "),
    );
    check(
        with(json!({"ca_file": "/nonexistent/ca.pem"})),
        Err("ca_file: only used with"),
    );
    check(
        with(json!({"url": "ldaps://h", "ca_file": "/nonexistent/ca.pem"})),
        Err("ca_file: cannot read"),
    );
    check(
        with(json!({"search_base": null})),
        Err("search_base: set search_base"),
    );
    check(
        with(json!({"bind_dn_template": "uid={username},dc=example,dc=com"})),
        Err("bind_dn_template: set either"),
    );
    check(
        with(json!({"search_base": null, "bind_dn_template": "uid=alice,dc=example,dc=com"})),
        Err("bind_dn_template: \"uid=alice,dc=example,dc=com\" must contain {username}"),
    );
    check(
        with(json!({"search_base": null, "bind_dn_template": "{username}"})),
        Err("bind_dn_template: "),
    );
    check(
        with(
            json!({"search_base": null, "bind_dn_template": "uid={username},dc=x",
                    "user_filter": "(uid={username})"}),
        ),
        Err("user_filter: only used with search_base"),
    );
    check(
        with(json!({"search_base": "example.com"})),
        Err("search_base: "),
    );
    check(
        with(json!({"user_filter": "(uid=alice)"})),
        Err("user_filter: "),
    );
    check(
        with(json!({"user_filter": "uid={username}"})),
        Err("user_filter: "),
    );
    check(
        with(json!({"user_filter": "(&(uid={username})"})),
        Err("user_filter: "),
    );
    check(
        with(json!({"service_bind_password": ""})),
        Err("service_bind_password: empty while service_bind_dn is set"),
    );
    check(
        with(json!({"service_bind_dn": ""})),
        Err("service_bind_password: set, but service_bind_dn is empty"),
    );
    check(
        with(json!({"service_bind_dn": "admin"})),
        Err("service_bind_dn: \"admin\" is not a DN"),
    );
    check(
        with(json!({"allowed_groups": ["cn=ok,dc=x", "staff"]})),
        Err("allowed_groups[1]: \"staff\" is not a DN"),
    );
    check(
        with(json!({"attributes": {"HomeDirectory": "h", "Home": "x"}})),
        Err("attributes: \"Home\" is not a response field"),
    );
    check(
        with(json!({"attributes": {}})),
        Err("attributes: map HomeDirectory"),
    );
    check(with(json!({"bogus": 1})), Err("unknown field `bogus`"));
    check(
        with(json!({"timeout": "5s"})),
        Err("unknown field `timeout`"),
    );
    let zero = LdapProvider::new(serde_json::from_value(base()).unwrap(), Duration::ZERO);
    assert!(zero.unwrap_err().0.starts_with("timeout"));
}

#[test]
fn defaults_follow_the_spec() {
    let config: LdapConfig = serde_json::from_value(json!({"url": "ldap://h"})).unwrap();
    assert_eq!(config.user_filter, DEFAULT_USER_FILTER);
    assert!(!config.start_tls && config.allowed_groups.is_empty() && config.ca_file.is_none());
    assert_eq!(LdapConfig::default().user_filter, DEFAULT_USER_FILTER);
}

#[test]
fn debug_never_shows_the_service_password() {
    let config: LdapConfig = serde_json::from_value(base()).unwrap();
    let shown = format!("{config:?}");
    assert!(!shown.contains(SECRET) && shown.contains("***"), "{shown}");
    let provider = LdapProvider::new(config, Duration::from_secs(1)).unwrap();
    let shown = format!("{provider:?}");
    assert!(
        !shown.contains(SECRET) && shown.contains("ldap://127.0.0.1:1"),
        "{shown}"
    );
}

#[tokio::test]
async fn an_empty_password_is_denied_without_asking() {
    // Nothing listens on port 1: asking would fail differently.
    let provider = build(base()).unwrap();
    let answer = provider
        .query(&LoginRequest {
            username: "alice".into(),
            credential: Credential::Password(Password::new("")),
            protocol: Protocol::Sftp,
            source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            server_id: "s-1".into(),
        })
        .await;
    assert_eq!(answer.status_code, 401, "{answer:?}");
    assert!(answer.response.is_none());
    assert!(answer.message.contains("empty password"), "{answer:?}");
}
