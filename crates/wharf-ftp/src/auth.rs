//! USER/PASS logins through the gateway.

use wharf_identity::{Credential, Password};
use wharf_session::{ConnInfo, Gateway, Session};

/// Asks the identity provider about `username`/`password` and opens the
/// session. Every failure is logged (AUTH_FAILURE with the reason) by the
/// gateway; the caller only learns that the login failed, and so
/// does the client ("530").
pub(crate) async fn login(
    gateway: &Gateway,
    info: &ConnInfo,
    username: &str,
    password: &str,
) -> Option<Session> {
    let fields = gateway.session_fields(info);
    let credential = Credential::Password(Password::new(password));
    let identity = gateway
        .authenticate(&fields, info, username, credential, "password")
        .await
        .ok()?;
    // A denial here is logged by the gateway too.
    let session = gateway
        .open_session(&fields, info, identity, "password", None)
        .await
        .ok()?;
    session.connected(|_| {});
    Some(session)
}
