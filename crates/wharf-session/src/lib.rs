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

mod policy;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use wharf_audit::{Activity, AuditLog, Event, SessionFields};
use wharf_identity::{
    Answer, Credential, Denial, Home, Identity, IdentityProvider, LoginRequest, Protocol,
    ValidationContext,
};
use wharf_listen::Guard;
use wharf_policy::{Policy, PolicyKind};
use wharf_vfs::{
    AuditContext, Authorizer, Mount, MountKind, Namespace, PerUser, Quota, StoreHandle, Target,
    UserFs, VirtualPath,
};

pub use policy::{
    DEFAULT_ROLE_ARN, PolicyAuthorizer, RolePolicies, SessionFacts, default_role_document,
};

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

/// What one user and the whole process may hold (SPEC 2, `[server]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// 0 = unlimited.
    pub max_sessions_per_user: usize,
    /// Request and transfer buffers of all of a user's sessions, in bytes.
    pub max_memory_per_user: u64,
    /// The same for the whole process.
    pub max_memory: u64,
    /// Open files and listings of all of a user's sessions.
    pub max_handles_per_user: u32,
    /// The same for the whole process: what the file-descriptor limit
    /// leaves after a reserve for connections and logins.
    pub max_handles: u32,
}

impl Default for Limits {
    /// SPEC's defaults (and a process handle cap for 64 Ki descriptors).
    fn default() -> Limits {
        Limits {
            max_sessions_per_user: 0,
            max_memory_per_user: 128 << 20,
            max_memory: 1 << 30,
            max_handles_per_user: 1024,
            max_handles: 60_000,
        }
    }
}

fn memory_units(bytes: u64) -> u32 {
    u32::try_from(bytes / wharf_vfs::MEMORY_UNIT as u64).unwrap_or(u32::MAX)
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
    /// Buffer memory, in [`wharf_vfs::MEMORY_UNIT`]s, per user and in all.
    memory: PerUser,
    /// Open files and listings, per user and in all.
    handles: PerUser,
    guard: Arc<Guard>,
    refusal_log: RateLimit,
}

/// Refusals at accept logged per second at most.
pub const REFUSALS_LOGGED_PER_SECOND: u32 = 20;

/// At most N events a second; counts the rest.
#[derive(Debug)]
struct RateLimit {
    per_second: u32,
    state: Mutex<(std::time::Instant, u32, u64)>,
}

impl RateLimit {
    fn new(per_second: u32) -> RateLimit {
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

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("server_id", &self.server_id)
            .field("provider", &self.provider.kind())
            .finish_non_exhaustive()
    }
}

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

struct SessionSlot {
    user: String,
    sessions: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut sessions = self.sessions.lock();
        if let Some(count) = sessions.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                sessions.remove(&self.user);
            }
        }
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

    /// Buffer memory in use by every session, in bytes (for metrics).
    pub fn memory_in_use(&self) -> u64 {
        self.memory.process().in_use() * wharf_vfs::MEMORY_UNIT as u64
    }

    /// The most buffer memory in use at once since the last call, in bytes.
    pub fn memory_peak(&self) -> u64 {
        self.memory.process().take_peak() * wharf_vfs::MEMORY_UNIT as u64
    }

    /// Open files and listings of every session (for metrics).
    pub fn handles_in_use(&self) -> u64 {
        self.handles.process().in_use()
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
            let failed = SessionFields {
                user: Some(username.to_owned()),
                method: Some(method.to_owned()),
                ssh_public_key_fingerprint: fingerprint,
                ..fields.clone()
            };
            self.audit.record(
                Activity::AuthFailure,
                &failed,
                &Event {
                    message: Some("authentication failed"),
                    reason: Some(&denial.reason),
                    ..Event::default()
                },
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

    /// The session's namespace as text: home and mappings (`wharf test-idp`).
    pub fn describe_home(&self, identity: &Identity) -> serde_json::Value {
        match &identity.home {
            Home::Path { .. } => serde_json::json!({
                "HomeDirectoryType": "PATH",
                "HomeDirectory": identity.home.display(),
            }),
            Home::Logical(entries) => serde_json::json!({
                "HomeDirectoryType": "LOGICAL",
                "Mappings": entries.iter().map(|e| serde_json::json!({
                    "Entry": e.entry,
                    "Target": if e.prefix.is_empty() { format!("/{}", e.store) } else { format!("/{}/{}", e.store, e.prefix) },
                    "Type": if e.is_file { "FILE" } else { "DIRECTORY" },
                })).collect::<Vec<_>>(),
            }),
        }
    }

    /// The role ARN a session runs as.
    pub fn role_arn(&self, identity: &Identity) -> &str {
        identity
            .role
            .as_ref()
            .and_then(|name| self.roles.get(name))
            .map(|role| role.arn.as_str())
            .unwrap_or(DEFAULT_ROLE_ARN)
    }

    /// The authorizer of an identity's sessions (also `wharf policy simulate`).
    pub fn authorizer(
        &self,
        identity: &Identity,
        conn: &ConnInfo,
    ) -> Result<PolicyAuthorizer, Denial> {
        let (_, targets) = self.namespace(identity)?;
        let role = match &identity.role {
            None => None,
            Some(name) => Some(
                self.roles
                    .get(name)
                    .ok_or_else(|| Denial::new(format!("role {name:?} is not configured")))?,
            ),
        };
        let facts = SessionFacts {
            source_ip: conn.source_ip,
            secure_transport: conn.secure_transport,
            protocol: conn.protocol.as_str(),
        };
        PolicyAuthorizer::new(
            identity,
            role,
            &targets,
            self.bucket_policies.clone(),
            &facts,
        )
        .map_err(Denial::new)
    }

    /// Opens the session of an authenticated identity: claims a slot in
    /// `max_sessions_per_user` and builds its filesystem. A denial (too many
    /// sessions, a home or role that cannot be built) is logged as
    /// AUTH_FAILURE with the reason, as `authenticate` logs its own.
    pub fn open_session(
        &self,
        fields: &SessionFields,
        conn: &ConnInfo,
        identity: Identity,
        method: &str,
        fingerprint: Option<String>,
    ) -> Result<Session, Denial> {
        let username = identity.username.clone();
        self.build_session(fields, conn, identity, method, fingerprint.clone())
            .inspect_err(|denial| {
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
                        reason: Some(&denial.reason),
                        ..Event::default()
                    },
                );
            })
    }

    fn build_session(
        &self,
        fields: &SessionFields,
        conn: &ConnInfo,
        identity: Identity,
        method: &str,
        fingerprint: Option<String>,
    ) -> Result<Session, Denial> {
        let slot = self.claim_slot(&identity.username)?;
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

    fn claim_slot(&self, user: &str) -> Result<SessionSlot, Denial> {
        let mut sessions = self.sessions.lock();
        let count = sessions.entry(user.to_owned()).or_insert(0);
        if self.max_sessions_per_user > 0 && *count >= self.max_sessions_per_user {
            return Err(Denial::new(format!(
                "user {user:?} already has {} sessions (max_sessions_per_user)",
                *count
            )));
        }
        *count += 1;
        Ok(SessionSlot {
            user: user.to_owned(),
            sessions: self.sessions.clone(),
        })
    }

    fn store(&self, name: &str) -> Result<Arc<StoreHandle>, Denial> {
        self.stores
            .get(name)
            .cloned()
            .ok_or_else(|| Denial::new(format!("store {name:?} is not configured")))
    }

    /// The mounts and default-role targets of a home directory.
    fn namespace(&self, identity: &Identity) -> Result<(Namespace, Vec<Target>), Denial> {
        let path = |text: &str| {
            VirtualPath::parse(text).map_err(|e| Denial::new(format!("home directory: {e}")))
        };
        match &identity.home {
            Home::Path { store, prefix } => {
                // PATH: real paths; every store is reachable by name, the
                // policy decides what the user may do there.
                let mut mounts = Vec::with_capacity(self.stores.len());
                for (name, handle) in &self.stores {
                    mounts.push(Mount {
                        entry: path(&format!("/{name}"))?,
                        store: handle.clone(),
                        prefix: String::new(),
                        kind: MountKind::Directory,
                        inner_anchor: (name == store && !prefix.is_empty()).then(|| prefix.clone()),
                    });
                }
                let home = path(&identity.home.display())?;
                let targets = vec![Target {
                    store: store.clone(),
                    prefix: prefix.clone(),
                    is_file: false,
                }];
                Ok((Namespace::new(mounts, home), targets))
            }
            Home::Logical(entries) => {
                let mut mounts = Vec::with_capacity(entries.len());
                let mut targets = Vec::with_capacity(entries.len());
                for entry in entries {
                    mounts.push(Mount {
                        entry: path(&entry.entry)?,
                        store: self.store(&entry.store)?,
                        prefix: entry.prefix.clone(),
                        kind: if entry.is_file {
                            MountKind::File
                        } else {
                            MountKind::Directory
                        },
                        inner_anchor: None,
                    });
                    targets.push(Target {
                        store: entry.store.clone(),
                        prefix: entry.prefix.clone(),
                        is_file: entry.is_file,
                    });
                }
                Ok((Namespace::new(mounts, VirtualPath::root()), targets))
            }
        }
    }
}
