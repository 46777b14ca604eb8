//! [`Session`]: what a successful login opens (its filesystem, its
//! identity, its memory share, its slot), and its lifecycle lines:
//! CONNECTED once, DISCONNECTED exactly once when the last holder drops it.

use std::sync::Arc;

use parking_lot::Mutex;
use wharf_audit::{Activity, Event, SessionFields};
use wharf_identity::{Denial, Identity};
use wharf_vfs::{AuditContext, Authorizer, Quota, UserFs};

use crate::limits::SessionSlot;
use crate::{ConnInfo, Gateway};

/// An authenticated session. Dropping it ends it (and frees its slot in
/// `max_sessions_per_user`).
///
/// Its lifecycle is logged here, never by a front-end: CONNECTED once by
/// [`Session::connected`], and DISCONNECTED exactly once when the session
/// is dropped (by its last holder, after every channel and transfer that
/// used it, so their PARTIAL_CLOSE lines come first), however it ends.
pub struct Session {
    pub fs: UserFs,
    pub identity: Arc<Identity>,
    /// The memory this session's buffers are charged to: its user's share
    /// and the process's. Front-ends add a level of their own per channel
    /// or transfer ([`Quota::within`]).
    pub memory: Quota,
    /// The fields CONNECTED was logged with (`None` before): DISCONNECTED
    /// repeats them.
    connected: Mutex<Option<SessionFields>>,
    _slot: SessionSlot,
}

impl Session {
    /// The client is in: logs CONNECTED, once, with what only the
    /// front-end knows added by `details` (the client's version, the
    /// negotiated algorithms). Later calls do nothing.
    pub fn connected(&self, details: impl FnOnce(&mut SessionFields)) {
        let mut connected = self.connected.lock();
        if connected.is_some() {
            return;
        }
        let audit = self.fs.audit();
        let mut fields = (*audit.session).clone();
        details(&mut fields);
        audit
            .log
            .record(Activity::Connected, &fields, &Event::default());
        *connected = Some(fields);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(fields) = self.connected.get_mut().take() {
            self.fs
                .audit()
                .log
                .record(Activity::Disconnected, &fields, &Event::default());
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.identity.username)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Opens the session of an authenticated identity: claims a slot in
    /// `max_sessions_per_user` and builds its filesystem. A denial (too many
    /// sessions, a home or role that cannot be built) is logged as
    /// AUTH_FAILURE with the reason, as `authenticate` logs its own.
    pub async fn open_session(
        &self,
        fields: &SessionFields,
        conn: &ConnInfo,
        identity: Identity,
        method: &str,
        fingerprint: Option<String>,
    ) -> Result<Session, Denial> {
        let username = identity.username.clone();
        self.build_session(fields, conn, identity, method, fingerprint.clone())
            .await
            .inspect_err(|denial| {
                self.log_auth_failure(fields, username, method, fingerprint, &denial.reason);
            })
    }

    async fn build_session(
        &self,
        fields: &SessionFields,
        conn: &ConnInfo,
        identity: Identity,
        method: &str,
        fingerprint: Option<String>,
    ) -> Result<Session, Denial> {
        let slot = self
            .claim_slot(&identity.username, &fields.session_id)
            .await?;
        let (namespace, _) = self.namespace(&identity)?;
        let authorizer: Arc<dyn Authorizer> = Arc::new(self.authorizer(&identity, conn)?);
        let session_fields = SessionFields {
            user: Some(identity.username.clone()),
            role: Some(self.role_arn(&identity).to_owned()),
            home_dir: Some(identity.home.display()),
            method: Some(method.to_owned()),
            ssh_public_key_fingerprint: fingerprint,
            ..fields.clone()
        };
        let fs = UserFs::new(
            namespace,
            authorizer,
            AuditContext {
                log: self.audit.clone(),
                session: Arc::new(session_fields),
            },
            self.handles.for_user(&identity.username),
        );
        Ok(Session {
            fs,
            memory: self.memory.for_user(&identity.username),
            identity: Arc::new(identity),
            connected: Mutex::new(None),
            _slot: slot,
        })
    }
}
