//! Sessions: from a login to an authenticated [`UserFs`].
//!
//! The [`Gateway`] is what every front-end holds. It asks the identity
//! provider, logs `AUTH_FAILURE` with the precise reason, enforces
//! `max_sessions_per_user`, and builds the session's namespace and
//! authorizer from the validated [`Identity`]. A front-end gets a
//! [`Session`], and with it a [`UserFs`], only through a successful login.
//!
//! Architecture invariant: no protocol vocabulary here; front-ends describe
//! the connection with a [`ConnInfo`].
//!
//! Here: the gateway, what it is built from and the connection facts that
//! front-ends give it. Its work is in modules of their own: `login`
//! (asking the provider, AUTH_FAILURE lines, failures reported to the
//! guard), `home` (the namespace and authorizer of an identity), `session`
//! ([`Session`], opened after a login, and its lifecycle lines), `limits`
//! (sessions, memory and open files per user and per process), `policy`
//! ([`PolicyAuthorizer`]).

mod home;
mod limits;
mod login;
mod policy;
mod session;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use wharf_audit::{Activity, AuditLog, Event, SessionFields};
use wharf_identity::{IdentityProvider, Protocol, ValidationContext};
use wharf_listen::Guard;
use wharf_policy::{Policy, PolicyKind};
use wharf_vfs::{PerUser, StoreHandle};

use self::limits::memory_units;
pub use self::limits::{Limits, SharedSessions};
pub use self::login::REFUSALS_LOGGED_PER_SECOND;
use self::login::RateLimit;
pub use self::policy::{
    DEFAULT_ROLE_ARN, PolicyAuthorizer, RolePolicies, SessionFacts, default_role_document,
};
pub use self::session::Session;

/// What a front-end knows about a connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub session_id: String,
    pub source_ip: IpAddr,
    pub protocol: Protocol,
    /// The client's software version, where the protocol tells it.
    pub client: Option<String>,
    /// Whether control and data are protected by TLS or SSH.
    pub secure_transport: bool,
}

/// Everything a gateway is built from.
pub struct GatewayConfig {
    pub server_id: String,
    pub provider: Arc<dyn IdentityProvider>,
    pub stores: BTreeMap<String, Arc<StoreHandle>>,
    /// `[roles.NAME]`, compiled.
    pub roles: BTreeMap<String, RolePolicies>,
    /// Store NAME -> its bucket policy.
    pub bucket_policies: BTreeMap<String, Arc<Policy>>,
    pub audit: AuditLog,
    pub limits: Limits,
    /// The brute-force defence, shared with the listeners: the gateway
    /// reports failed logins and protocol violations to it.
    pub guard: Arc<Guard>,
}

/// What identity-provider responses are validated against: the configured
/// store NAMEs and roles (NAME, ARN), and the session-policy parser.
pub fn validation_context(
    stores: impl IntoIterator<Item = String>,
    roles: impl IntoIterator<Item = (String, String)>,
) -> ValidationContext {
    ValidationContext {
        stores: stores.into_iter().collect(),
        roles: roles.into_iter().collect(),
        check_policy: Some(Arc::new(|policy: &serde_json::Value| {
            Policy::from_value("session policy", policy, PolicyKind::Session)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })),
    }
}

/// The login service shared by every front-end.
pub struct Gateway {
    server_id: String,
    resource_arn: String,
    provider: Arc<dyn IdentityProvider>,
    stores: BTreeMap<String, Arc<StoreHandle>>,
    roles: BTreeMap<String, RolePolicies>,
    bucket_policies: Arc<BTreeMap<String, Arc<Policy>>>,
    validation: ValidationContext,
    audit: AuditLog,
    max_sessions_per_user: usize,
    sessions: Arc<Mutex<HashMap<String, usize>>>,
    /// Sessions counted on every node (`[cluster] database`).
    shared_sessions: Option<Arc<dyn SharedSessions>>,
    /// Buffer memory, in [`wharf_vfs::MEMORY_UNIT`]s, per user and in all.
    memory: PerUser,
    /// Open files and listings, per user and in all.
    handles: PerUser,
    guard: Arc<Guard>,
    refusal_log: RateLimit,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("server_id", &self.server_id)
            .field("provider", &self.provider.kind())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    pub fn new(config: GatewayConfig) -> Gateway {
        let validation = validation_context(
            config.stores.keys().cloned(),
            config
                .roles
                .iter()
                .map(|(name, role)| (name.clone(), role.arn.clone())),
        );
        Gateway {
            resource_arn: format!("arn:wharf:transfer:::server/{}", config.server_id),
            server_id: config.server_id,
            provider: config.provider,
            stores: config.stores,
            roles: config.roles,
            bucket_policies: Arc::new(config.bucket_policies),
            validation,
            audit: config.audit,
            max_sessions_per_user: config.limits.max_sessions_per_user,
            sessions: Arc::new(Mutex::new(HashMap::new())),
            shared_sessions: None,
            memory: PerUser::new(
                memory_units(config.limits.max_memory),
                memory_units(config.limits.max_memory_per_user),
            ),
            handles: PerUser::new(
                config.limits.max_handles,
                config.limits.max_handles_per_user,
            ),
            guard: config.guard,
            refusal_log: RateLimit::new(REFUSALS_LOGGED_PER_SECOND),
        }
    }

    /// The brute-force defence (for the metrics).
    pub fn guard(&self) -> &Arc<Guard> {
        &self.guard
    }

    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// Waits until no store works in the background any more (every
    /// upload writer gone, every abort of an unfinished upload done): the
    /// last step of a shutdown, so that nothing is left half-written.
    pub async fn quiesce_stores(&self) {
        for store in self.stores.values() {
            store.quiesce().await;
        }
    }

    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    /// The log fields of a connection before login.
    pub fn session_fields(&self, conn: &ConnInfo) -> SessionFields {
        SessionFields {
            session_id: conn.session_id.clone(),
            resource_arn: self.resource_arn.clone(),
            protocol: conn.protocol.as_str(),
            source_ip: conn.source_ip.to_string(),
            client: conn.client.clone(),
            ..SessionFields::default()
        }
    }

    /// Writes one line with the given fields.
    pub fn record(&self, activity: Activity, fields: &SessionFields, event: &Event<'_>) {
        self.audit.record(activity, fields, event);
    }
}
