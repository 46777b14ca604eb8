//! Logins: libunftp's `Authenticator` and `UserDetailProvider` over the
//! gateway.
//!
//! libunftp authenticates in two steps: the authenticator returns a
//! `Principal` (a user name), then the user detail provider turns it into
//! the user type the backend receives. Both belong to one control
//! connection, so the authenticated [`Session`] passes from the first to the
//! second through the connection's state.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use unftp_core::auth::{
    AuthenticationError, Authenticator, ChannelEncryptionState, Credentials, Principal, UserDetail,
    UserDetailError, UserDetailProvider,
};
use wharf_audit::{Activity, Event, SessionFields};
use wharf_identity::{Credential, Password};
use wharf_session::{ConnInfo, Session};
use wharf_vfs::UserFs;

use crate::server::Conn;

/// The user of an FTP session: its authenticated wharf session.
pub struct FtpUser {
    session: Arc<Session>,
    home: std::path::PathBuf,
}

impl FtpUser {
    pub(crate) fn new(session: Session) -> FtpUser {
        let home = std::path::PathBuf::from(session.fs.home().as_str());
        FtpUser {
            session: Arc::new(session),
            home,
        }
    }

    pub(crate) fn fs(&self) -> &UserFs {
        &self.session.fs
    }
}

impl fmt::Display for FtpUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.session.identity.username)
    }
}

impl fmt::Debug for FtpUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FtpUser")
            .field("user", &self.session.identity.username)
            .finish_non_exhaustive()
    }
}

impl UserDetail for FtpUser {
    /// libunftp 0.24 declares this but never reads it (sessions start at
    /// `/`); it is the session's home should a later version use it.
    fn home(&self) -> Option<&Path> {
        Some(&self.home)
    }
}

/// Authenticates through the gateway; one per control connection.
pub(crate) struct GatewayAuthenticator {
    pub(crate) conn: Arc<Conn>,
}

impl fmt::Debug for GatewayAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GatewayAuthenticator")
    }
}

#[async_trait]
impl Authenticator for GatewayAuthenticator {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        let conn = &self.conn;
        // `source_ip` stays the address our accept loop was given (libunftp's
        // is the socket's peer, which a PROXY header would override).
        let info = ConnInfo {
            // TLS configured means the control channel is TLS (USER before
            // AUTH TLS is refused) and data needs PROT P.
            secure_transport: conn.tls.is_some()
                && creds.command_channel_security == ChannelEncryptionState::Tls,
            ..conn.info.clone()
        };
        let fields = conn.gateway.session_fields(&info);
        // The gateway logs AUTH_FAILURE with the reason; the client learns
        // only "530 Authentication failed".
        let Some(password) = creds.password.as_deref() else {
            return Err(AuthenticationError::BadPassword);
        };
        let credential = Credential::Password(Password::new(password));
        let identity = conn
            .gateway
            .authenticate(&fields, &info, username, credential, "password")
            .await
            .map_err(|_| AuthenticationError::BadPassword)?;
        let name = identity.username.clone();
        let session = match conn
            .gateway
            .open_session(&fields, &info, identity, "password", None)
        {
            Ok(session) => session,
            Err(denial) => {
                let failed = SessionFields {
                    user: Some(name),
                    method: Some("password".to_owned()),
                    ..fields
                };
                conn.gateway.record(
                    Activity::AuthFailure,
                    &failed,
                    &Event {
                        message: Some("authentication failed"),
                        reason: Some(&denial.reason),
                        ..Event::default()
                    },
                );
                return Err(AuthenticationError::BadPassword);
            }
        };
        let audit = session.fs.audit().clone();
        audit
            .log
            .record(Activity::Connected, &audit.session, &Event::default());
        conn.logged_in(audit, session);
        Ok(Principal { username: name })
    }
}

/// Hands the session the authenticator opened to libunftp.
pub(crate) struct SessionProvider {
    pub(crate) conn: Arc<Conn>,
}

impl fmt::Debug for SessionProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionProvider")
    }
}

#[async_trait]
impl UserDetailProvider for SessionProvider {
    type User = FtpUser;

    async fn provide_user_detail(&self, principal: &Principal) -> Result<FtpUser, UserDetailError> {
        let session = self
            .conn
            .take_session()
            .ok_or_else(|| UserDetailError::UserNotFound {
                username: principal.username.clone(),
            })?;
        Ok(FtpUser::new(session))
    }
}
