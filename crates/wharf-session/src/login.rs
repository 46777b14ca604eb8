//! Logins: the provider asked and its answer validated, every refusal
//! logged as AUTH_FAILURE with the precise reason, and what the guard must
//! know (failed passwords, protocol violations, bans they start) reported
//! to it. Refusals at accept are logged here too, at a bounded rate.

use parking_lot::Mutex;
use wharf_audit::{Activity, Event, SessionFields};
use wharf_identity::{Answer, Credential, Denial, Identity, LoginRequest, Protocol};

use crate::{ConnInfo, Gateway};

/// Refusals at accept logged per second at most.
pub const REFUSALS_LOGGED_PER_SECOND: u32 = 20;

/// At most N events a second; counts the rest.
#[derive(Debug)]
pub(crate) struct RateLimit {
    per_second: u32,
    state: Mutex<(std::time::Instant, u32, u64)>,
}

impl RateLimit {
    pub(crate) fn new(per_second: u32) -> RateLimit {
        RateLimit {
            per_second,
            state: Mutex::new((std::time::Instant::now(), 0, 0)),
        }
    }

    /// `Some(n)`: go ahead, `n` events were dropped since the last one let
    /// through; `None`: drop this one.
    fn admit(&self) -> Option<u64> {
        let mut state = self.state.lock();
        let now = std::time::Instant::now();
        if now.duration_since(state.0) >= std::time::Duration::from_secs(1) {
            state.0 = now;
            state.1 = 0;
        }
        if state.1 >= self.per_second {
            state.2 += 1;
            return None;
        }
        state.1 += 1;
        Some(std::mem::take(&mut state.2))
    }
}

impl Gateway {
    /// Asks the identity provider about a login and validates its answer.
    /// A denial is logged as AUTH_FAILURE with the reason.
    pub async fn authenticate(
        &self,
        fields: &SessionFields,
        conn: &ConnInfo,
        username: &str,
        credential: Credential,
        method: &str,
    ) -> Result<Identity, Denial> {
        // A password under attack from many addresses waits first (never
        // refused for it: key logins and the right password still work).
        let is_password = matches!(credential, Credential::Password(_));
        if is_password {
            let delay = self.guard.password_delay(username);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
        let (answer, result) = self.ask(conn, username, credential.clone()).await;
        // A password the provider was too busy to check is not a guess.
        let unchecked = answer
            .as_ref()
            .is_some_and(|a| a.status_code == wharf_identity::service_managed::BUSY);
        if let Err(denial) = &result {
            let fingerprint = match &credential {
                Credential::PublicKey(key) => Some(wharf_identity::fingerprint(key)),
                Credential::Password(_) => None,
            };
            let failed = self.log_auth_failure(
                fields,
                username.to_owned(),
                method,
                fingerprint,
                &denial.reason,
            );
            // Passwords are what is guessed. A key a client merely offers
            // and we do not know is no attack (agents offer several).
            if is_password && !unchecked {
                self.guard.password_failed(username);
                self.note_failure(&failed, conn.source_ip);
            }
        }
        result
    }

    /// The provider's raw answer and its validation, without logging
    /// (`wharf test-idp`).
    pub async fn ask(
        &self,
        conn: &ConnInfo,
        username: &str,
        credential: Credential,
    ) -> (Option<Answer>, Result<Identity, Denial>) {
        let request = LoginRequest {
            username: username.to_owned(),
            credential,
            protocol: conn.protocol,
            source_ip: conn.source_ip,
            server_id: self.server_id.clone(),
        };
        let started = std::time::Instant::now();
        let (answer, result) =
            wharf_identity::authenticate(self.provider.as_ref(), &request, &self.validation).await;
        if let Some(answer) = &answer {
            // A denial is an answer; a timeout or a 5xx is not.
            self.audit
                .metrics()
                .observe_provider(started.elapsed(), answer.status_code < 500);
        }
        (answer, result)
    }

    /// What a user's session would be, asked as a key login would ask
    /// (`wharf policy simulate`).
    pub async fn lookup(
        &self,
        conn: &ConnInfo,
        username: &str,
    ) -> (Option<Answer>, Result<Identity, Denial>) {
        wharf_identity::lookup(
            self.provider.as_ref(),
            username,
            conn.protocol,
            conn.source_ip,
            &self.server_id,
            &self.validation,
        )
        .await
    }

    /// Logs a refused login as AUTH_FAILURE with the reason, and returns
    /// the fields it was logged with: the connection's, and who tried how.
    pub(crate) fn log_auth_failure(
        &self,
        fields: &SessionFields,
        username: String,
        method: &str,
        fingerprint: Option<String>,
        reason: &str,
    ) -> SessionFields {
        let failed = SessionFields {
            user: Some(username),
            method: Some(method.to_owned()),
            ssh_public_key_fingerprint: fingerprint,
            ..fields.clone()
        };
        self.audit.record(
            Activity::AuthFailure,
            &failed,
            &Event {
                message: Some("authentication failed"),
                reason: Some(reason),
                ..Event::default()
            },
        );
        failed
    }

    /// A failed login or a protocol violation from this connection's
    /// address: counted, and the ban it starts, if any, logged.
    fn note_failure(&self, fields: &SessionFields, ip: std::net::IpAddr) {
        if let Some(ban) = self.guard.failed(ip) {
            let reason = format!(
                "address banned for {}s after {} failed logins or protocol violations within {}s (ban {} in a row)",
                ban.duration.as_secs(),
                self.guard.config().ban_after_failures,
                self.guard.config().ban_window.as_secs(),
                ban.repeat
            );
            self.audit.record(
                Activity::AuthFailure,
                fields,
                &Event {
                    message: Some("address banned"),
                    reason: Some(&reason),
                    ..Event::default()
                },
            );
        }
    }

    /// A connection refused at accept (banned address, too many connections
    /// that have not logged in): an AUTH_FAILURE line with the reason. A
    /// flood of refusals is logged at most [`REFUSALS_LOGGED_PER_SECOND`]
    /// lines a second; the next line says how many were not (the metrics
    /// count them all).
    pub fn refused_at_accept(&self, protocol: Protocol, peer: std::net::SocketAddr, reason: &str) {
        let Some(unlogged) = self.refusal_log.admit() else {
            return;
        };
        let conn = ConnInfo {
            session_id: format!("{:016x}", rand::random::<u64>()),
            source_ip: peer.ip(),
            protocol,
            client: None,
            secure_transport: false,
        };
        let message = if unlogged > 0 {
            format!("connection refused at accept ({unlogged} more refusals were not logged)")
        } else {
            "connection refused at accept".to_owned()
        };
        self.audit.record(
            Activity::AuthFailure,
            &self.session_fields(&conn),
            &Event {
                message: Some(&message),
                reason: Some(reason),
                ..Event::default()
            },
        );
    }

    /// A client broke the protocol (malformed SFTP or FTP input): logged as
    /// ERROR, and counted as a failure of its address (SPEC 8).
    pub fn report_violation(&self, fields: &SessionFields, conn: &ConnInfo, reason: &str) {
        self.audit.record(
            Activity::Error,
            fields,
            &Event {
                message: Some("protocol violation"),
                reason: Some(reason),
                ..Event::default()
            },
        );
        self.note_failure(fields, conn.source_ip);
    }
}
