//! What the provider test files share: login requests, the validation
//! context of the tests' server, keys, and a bound on each step. Each test
//! file uses part of it.

#![allow(dead_code, clippy::unwrap_used)]

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use wharf_identity::{
    Credential, LoginRequest, Password, Protocol, ValidationContext, parse_public_key,
};

pub const ROLE_ARN: &str = "arn:aws:iam::000000000000:role/transfer-users";
pub const CAROL_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG7SmEUZC9EGIHNN3JgWN0qF7lwqtWPhN8S+T04UqtJ5 carol@example";
pub const OTHER_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl other";
/// The server id every request carries.
pub const SERVER_ID: &str = "s-0123456789abcdef0";

/// A login of `username` over SFTP from 192.0.2.10 to [`SERVER_ID`].
pub fn login(username: &str, credential: Credential) -> LoginRequest {
    LoginRequest {
        username: username.into(),
        credential,
        protocol: Protocol::Sftp,
        source_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        server_id: SERVER_ID.into(),
    }
}

pub fn password(username: &str, password: &str) -> LoginRequest {
    login(username, Credential::Password(Password::new(password)))
}

pub fn key(username: &str, line: &str) -> LoginRequest {
    login(
        username,
        Credential::PublicKey(parse_public_key(line).unwrap()),
    )
}

/// The tests' server: `stores`, the role `transfer-users` ([`ROLE_ARN`]),
/// and session policies checked by the policy crate when `check_policies`.
pub fn context(stores: &[&str], check_policies: bool) -> ValidationContext {
    ValidationContext {
        stores: stores.iter().map(|s| s.to_string()).collect(),
        roles: [("transfer-users".to_owned(), ROLE_ARN.to_owned())]
            .into_iter()
            .collect(),
        check_policy: check_policies.then(|| {
            Arc::new(|policy: &Value| {
                wharf_policy::Policy::from_value(
                    "Policy",
                    policy,
                    wharf_policy::PolicyKind::Session,
                )
                .map(drop)
                .map_err(|e| e.to_string())
            }) as _
        }),
    }
}

/// `future`, or a panic naming `what` after `bound`.
pub async fn within<T>(bound: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(bound, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} took longer than {bound:?}"),
    }
}
