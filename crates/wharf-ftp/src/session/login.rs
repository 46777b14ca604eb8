//! Login and protection: AUTH TLS (the control connection becomes TLS),
//! PROT (whether data connections must be TLS), USER and PASS (the login
//! through the gateway, at most [`MAX_FAILED_LOGINS`] failures).

use std::io;
use std::sync::Arc;

use wharf_session::ConnInfo;

use super::{Account, FtpSession, LOG_TARGET, Next};
use crate::auth;
use crate::command::Protection;
use crate::reply::{Code, Reply};

/// Failed PASS commands before the connection is closed.
const MAX_FAILED_LOGINS: u32 = 3;

impl FtpSession {
    /// AUTH; `tls`: the mechanism asked for is TLS.
    pub(super) async fn auth(&mut self, tls: bool) -> io::Result<Next> {
        let Some(connection_tls) = &self.tls else {
            return self
                .reply(Code::NotImplemented, "TLS is not configured on this port.")
                .await;
        };
        if self.control.is_tls() {
            return self
                .reply(Code::BadSequence, "TLS is already active.")
                .await;
        }
        if !tls {
            return self
                .reply(Code::BadParameter, "Only AUTH TLS is supported.")
                .await;
        }
        let config = connection_tls.control.clone();
        self.control
            .reply(&Reply::new(Code::AuthOk, "AUTH TLS successful."))
            .await?;
        if let Err(reason) = self.control.start_tls(config).await {
            tracing::info!(target: LOG_TARGET, session = %self.info.session_id, peer = %self.info.source_ip, "AUTH TLS: {reason}");
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        // RFC 4217: a new security state forgets the USER given before.
        self.pending_user = None;
        Ok(Next::Continue)
    }

    /// PROT; `None`: a level other than P and C.
    pub(super) async fn prot(&mut self, level: Option<Protection>) -> io::Result<Next> {
        match level {
            Some(Protection::Private) if self.tls.is_some() => {
                self.protect_data = true;
                self.reply(Code::Ok, "Protection level set to Private.")
                    .await
            }
            Some(Protection::Clear) => {
                self.protect_data = false;
                self.reply(Code::Ok, "Protection level set to Clear.").await
            }
            Some(Protection::Private) => {
                self.reply(
                    Code::ProtectionNotSupported,
                    "TLS is not configured on this port.",
                )
                .await
            }
            None => {
                self.reply(Code::BadParameter, "Only PROT P and PROT C are supported.")
                    .await
            }
        }
    }

    pub(super) async fn user(&mut self, name: &str) -> io::Result<Next> {
        if self.account.is_some() {
            return self.reply(Code::BadSequence, "Already logged in.").await;
        }
        if name.is_empty() {
            return self
                .reply(Code::BadArgument, "USER needs a user name.")
                .await;
        }
        self.pending_user = Some(name.to_owned());
        self.reply(Code::NeedPassword, "Password required.").await
    }

    pub(super) async fn pass(&mut self, password: &str) -> io::Result<Next> {
        if self.account.is_some() {
            return self.reply(Code::BadSequence, "Already logged in.").await;
        }
        let Some(username) = self.pending_user.take() else {
            return self.reply(Code::BadSequence, "Send USER first.").await;
        };
        let info = ConnInfo {
            // With FTPS the control connection is TLS by now (checked
            // before any login command) and data needs PROT P.
            secure_transport: self.control.is_tls(),
            ..self.info.clone()
        };
        match auth::login(&self.shared.gateway, &info, &username, password).await {
            Some(session) => {
                // From now on its data connections may resume the TLS
                // sessions of this user's control connections from this
                // address.
                let data_tls = match (&self.shared.tls, &self.tls) {
                    (Some(material), Some(tls)) => Some(Arc::new(
                        material.logged_in(tls, &session.identity.username),
                    )),
                    _ => None,
                };
                // PATH users start in their home directory; LOGICAL ones at
                // their root.
                self.cwd = session.fs.home().clone();
                self.account = Some(Account { session, data_tls });
                self.admitted.logged_in();
                self.reply(Code::LoggedIn, "User logged in.").await
            }
            None => {
                self.failed_logins += 1;
                self.control
                    .reply(&Reply::new(Code::NotLoggedIn, "Login incorrect."))
                    .await?;
                if self.failed_logins >= MAX_FAILED_LOGINS {
                    return Ok(Next::Quit);
                }
                Ok(Next::Continue)
            }
        }
    }
}
