//! Logins: which methods a listener allows (`sftp_authentication_methods`)
//! and each step of an SSH login, checked by the gateway, up to the user's
//! session.

use russh::MethodKind;
use russh::MethodSet;
use russh::keys::PublicKey;
use russh::server::{Auth, Session};
use wharf_identity::{Credential, Identity, Password, fingerprint};

use super::Connection;

/// `sftp_authentication_methods`, read once with the identity provider's
/// settings.
pub use wharf_identity::config::SftpAuthenticationMethods as AuthMethods;

/// What each setting means to an SSH login.
pub(super) trait Steps {
    fn allows_key(self) -> bool;
    /// The methods offered before any step succeeded.
    fn first_methods(self) -> MethodSet;
}

impl Steps for AuthMethods {
    fn allows_key(self) -> bool {
        !matches!(self, AuthMethods::Password)
    }

    fn first_methods(self) -> MethodSet {
        let kinds: &[MethodKind] = match self {
            AuthMethods::Password => &[MethodKind::Password],
            AuthMethods::PublicKey | AuthMethods::PublicKeyAndPassword => &[MethodKind::PublicKey],
            AuthMethods::PublicKeyOrPassword => &[MethodKind::PublicKey, MethodKind::Password],
        };
        MethodSet::from(kinds)
    }
}

impl Connection {
    /// Refuses a login step; the client may try the first methods again.
    pub(super) fn reject(&self) -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(self.auth_methods.first_methods()),
            partial_success: false,
        }
    }

    /// A password: allowed alone, or after the user's key for
    /// PUBLIC_KEY_AND_PASSWORD.
    pub(super) async fn password(&mut self, user: &str, password: &str) -> Auth {
        let allowed = match self.auth_methods {
            AuthMethods::PublicKey => false,
            AuthMethods::PublicKeyAndPassword => self.key_step.as_deref() == Some(user),
            AuthMethods::Password | AuthMethods::PublicKeyOrPassword => true,
        };
        if !allowed {
            return self.reject();
        }
        let fields = self.fields_now();
        let credential = Credential::Password(Password::new(password));
        match self
            .gateway
            .authenticate(&fields, &self.conn, user, credential, "password")
            .await
        {
            Ok(identity) => self.establish(identity, "password", None).await,
            Err(_) => self.reject(),
        }
    }

    /// A key offered without a signature: would it do? The identity found
    /// is kept for the signed attempt.
    pub(super) async fn key_offered(&mut self, user: &str, key: &PublicKey) -> Auth {
        if !self.auth_methods.allows_key() {
            return self.reject();
        }
        match self.check_key(user, key).await {
            Some(identity) => {
                self.offered = Some((user.to_owned(), key.clone(), identity));
                Auth::Accept
            }
            None => self.reject(),
        }
    }

    /// A key whose signature russh verified: the login, or its first step
    /// for PUBLIC_KEY_AND_PASSWORD.
    pub(super) async fn key_verified(&mut self, user: &str, key: &PublicKey) -> Auth {
        if !self.auth_methods.allows_key() {
            return self.reject();
        }
        let Some(identity) = self.check_key(user, key).await else {
            return self.reject();
        };
        self.offered = None;
        if self.auth_methods == AuthMethods::PublicKeyAndPassword {
            self.key_step = Some(user.to_owned());
            return Auth::Reject {
                proceed_with_methods: Some(MethodSet::from(&[MethodKind::Password][..])),
                partial_success: true,
            };
        }
        self.establish(identity, "publickey", Some(key)).await
    }

    /// The login is complete: the connection counts as logged in and the
    /// session logs CONNECTED.
    pub(super) fn logged_in(&self, session: &Session) {
        self.admitted.logged_in();
        let client = String::from_utf8_lossy(session.remote_sshid())
            .trim()
            .to_owned();
        if let Some(user_session) = &self.session {
            user_session.connected(|fields| {
                fields.client = Some(client);
                self.add_algorithms(fields);
            });
        }
    }

    /// Opens the session for an authenticated identity.
    async fn establish(
        &mut self,
        identity: Identity,
        method: &str,
        key: Option<&PublicKey>,
    ) -> Auth {
        let fields = self.fields_now();
        let fingerprint = key.map(fingerprint);
        match self
            .gateway
            .open_session(&fields, &self.conn, identity, method, fingerprint)
            .await
        {
            Ok(session) => {
                self.session = Some(std::sync::Arc::new(session));
                Auth::Accept
            }
            // The gateway logged AUTH_FAILURE with the reason.
            Err(_) => self.reject(),
        }
    }

    /// The identity of `user` if `key` is theirs: the one found when the
    /// key was offered, or the gateway's answer.
    async fn check_key(&mut self, user: &str, key: &PublicKey) -> Option<Identity> {
        if let Some((offered_user, offered_key, identity)) = &self.offered
            && offered_user == user
            && wharf_identity::same_key(offered_key, key)
        {
            return Some(identity.clone());
        }
        let fields = self.fields_now();
        self.gateway
            .authenticate(
                &fields,
                &self.conn,
                user,
                Credential::PublicKey(key.clone()),
                "publickey",
            )
            .await
            .ok()
    }
}
