//! `ldap`: users of an LDAP directory (OpenLDAP, Active Directory, ...).
//!
//! Password logins either search for the user's entry as the service
//! account (`search_base` + `user_filter`, exactly one entry or denied) and
//! then bind as that entry with the password, or bind straight to
//! `bind_dn_template` and read the entry as the user. An empty password
//! is denied before the directory is asked: most servers take it as an
//! unauthenticated (anonymous) bind that succeeds. Key logins only read
//! the entry; its `PublicKeys` attribute (`sshPublicKey` by default) goes
//! into the response and [`crate::authenticate`] matches the client's key
//! against it like any provider's. `allowed_groups` applies to both
//! (see [`groups`]), and `attributes` maps the entry to the response
//! object (see [`mapping`]), which is validated like every provider's.
//!
//! The username goes into filters RFC 4515-escaped and into DNs RFC
//! 4514-escaped ([`escape`]), so it can never change their shape.
//!
//! Connections come from a bounded pool bound as the service account (or
//! anonymous), reused across logins; one used for a user bind is rebound
//! before it goes back, or closed ([`conn`]). TLS is rustls (aws-lc-rs),
//! with certificate verification always on: `ldaps://`, or `ldap://` with
//! `start_tls`; `ca_file` adds a private CA to the system's roots. Each
//! query has the provider's `timeout` as a deadline: a directory that is
//! down, refuses or hangs denies within it, with the reason, and only the
//! logins waiting for it; a dead pooled connection is replaced once, so the
//! provider recovers by itself when the directory comes back. Nothing
//! secret (the user's or the service account's password) ever appears in
//! a reason, a log line or `Debug` output.

mod conn;
mod escape;
mod groups;
mod mapping;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ldap3::{Ldap, LdapError, ResultEntry, Scope, SearchEntry, SearchOptions};
use serde_json::Value;

use super::{BACKSTOP_GRACE, ProviderConfigError, check_timeout};
use crate::{Answer, Credential, IdentityProvider, LoginRequest, Password};
use conn::{Endpoint, Lease, Pool, PoolIdentity};
use groups::{AllowedGroups, Membership, ServerInfo};

pub use mapping::{AttributeSource, DEFAULT_PUBLIC_KEYS_ATTRIBUTE};

/// The default `user_filter`.
pub const DEFAULT_USER_FILTER: &str = "(&(objectClass=posixAccount)(uid={username}))";

/// The placeholder in `user_filter` and `bind_dn_template`.
const USERNAME: &str = "{username}";

fn default_user_filter() -> String {
    DEFAULT_USER_FILTER.to_owned()
}

/// `[identity_provider]` with `type = "ldap"`: the ldap keys of SPEC
/// section 2, plus `ca_file`. The common keys (`type`, `timeout`,
/// `cache_ttl`) are the loader's; the timeout is passed to
/// [`LdapProvider::new`].
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://host[:port]` or `ldaps://host[:port]`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    #[serde(default)]
    pub start_tls: bool,
    /// The account that searches for users, reads entries for key logins
    /// and checks `allowed_groups`; empty = anonymously. With
    /// `bind_dn_template` it is optional: a password login then reads the
    /// entry as the user (and checks the groups as the user when there is
    /// no service account), a key login reads it as this account (or
    /// anonymously).
    #[serde(default)]
    pub service_bind_dn: String,
    #[serde(default)]
    pub service_bind_password: String,
    /// Bind directly, e.g. `uid={username},ou=people,dc=example,dc=com`,
    /// instead of searching.
    #[serde(default)]
    pub bind_dn_template: String,
    /// Where the user search looks (subtree).
    #[serde(default)]
    pub search_base: String,
    /// `{username}` is replaced by the RFC 4515-escaped username.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// Group DNs; when not empty the user must be a member of one.
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// Response field -> directory attribute.
    #[serde(default)]
    pub attributes: BTreeMap<String, AttributeSource>,
    /// PEM file of CA certificates trusted in addition to the system's
    /// (wharf addition to SPEC).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl Default for LdapConfig {
    fn default() -> LdapConfig {
        LdapConfig {
            url: String::new(),
            start_tls: false,
            service_bind_dn: String::new(),
            service_bind_password: String::new(),
            bind_dn_template: String::new(),
            search_base: String::new(),
            user_filter: default_user_filter(),
            allowed_groups: Vec::new(),
            attributes: BTreeMap::new(),
            ca_file: None,
        }
    }
}

// By hand: never the service account's password.
impl fmt::Debug for LdapConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = if self.service_bind_password.is_empty() {
            ""
        } else {
            "***"
        };
        f.debug_struct("LdapConfig")
            .field("url", &self.url)
            .field("start_tls", &self.start_tls)
            .field("service_bind_dn", &self.service_bind_dn)
            .field("service_bind_password", &password)
            .field("bind_dn_template", &self.bind_dn_template)
            .field("search_base", &self.search_base)
            .field("user_filter", &self.user_filter)
            .field("allowed_groups", &self.allowed_groups)
            .field("attributes", &self.attributes)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

fn invalid(message: String) -> ProviderConfigError {
    ProviderConfigError(message)
}

/// How the user's entry is found.
#[derive(Debug, Clone)]
enum Locate {
    Search { base: String, filter: String },
    Template(String),
}

/// Why a login is denied (or the directory failed), for the answer.
#[derive(Debug)]
pub(super) struct Failure {
    status: u16,
    reason: String,
    /// The connection is broken: a reused one is replaced and the login
    /// tried once more.
    transport: bool,
}

impl Failure {
    fn denied(status: u16, reason: impl Into<String>) -> Failure {
        Failure {
            status,
            reason: reason.into(),
            transport: false,
        }
    }

    pub(super) fn unavailable(reason: String) -> Failure {
        Failure {
            status: 503,
            reason,
            transport: true,
        }
    }

    pub(super) fn transport(url: &str, doing: &str, error: &LdapError) -> Failure {
        Failure {
            status: 502,
            reason: format!(
                "the LDAP directory at {url} failed while {doing}: {}",
                conn::describe(error)
            ),
            transport: true,
        }
    }

    pub(super) fn directory(reason: String) -> Failure {
        Failure::denied(502, reason)
    }

    pub(super) fn internal(reason: &str) -> Failure {
        Failure::denied(500, reason)
    }
}

/// A directory entry: its DN and its attributes, names lower-cased.
#[derive(Debug, Clone)]
pub(super) struct UserEntry {
    dn: String,
    text: HashMap<String, Vec<String>>,
    binary: BTreeSet<String>,
}

impl UserEntry {
    fn new(
        dn: String,
        attrs: HashMap<String, Vec<String>>,
        binary: HashMap<String, Vec<Vec<u8>>>,
    ) -> UserEntry {
        UserEntry {
            dn,
            text: attrs
                .into_iter()
                .map(|(name, values)| (name.to_ascii_lowercase(), values))
                .collect(),
            binary: binary
                .into_keys()
                .map(|name| name.to_ascii_lowercase())
                .collect(),
        }
    }

    /// The UTF-8 values of an attribute (none when absent).
    fn values(&self, name: &str) -> &[String] {
        self.text
            .get(&name.to_ascii_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    /// The values of an attribute mapped to `field`; an error when some
    /// are not UTF-8 text.
    fn text_values(&self, name: &str, field: &str) -> Result<&[String], String> {
        if self.binary.contains(&name.to_ascii_lowercase()) {
            return Err(format!(
                "attribute {name} ({field}) holds a value that is not UTF-8 text"
            ));
        }
        Ok(self.values(name))
    }
}

/// Parses search result entries; a malformed one is a directory failure,
/// not a panic.
pub(super) fn parse_entries(entries: Vec<ResultEntry>) -> Result<Vec<UserEntry>, Failure> {
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            SearchEntry::construct(entry)
        }))
        .map_err(|_| Failure::directory("the LDAP directory sent a malformed entry".to_owned()))?;
        out.push(UserEntry::new(parsed.dn, parsed.attrs, parsed.bin_attrs));
    }
    Ok(out)
}

/// What a query is waiting for, for the reason of a timeout.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Stage {
    Connecting = 0,
    Searching,
    Binding,
    Reading,
    Groups,
}

impl Stage {
    fn describe(value: u8) -> &'static str {
        match value {
            1 => "searching for the user",
            2 => "binding as the user",
            3 => "reading the user's entry",
            4 => "checking allowed_groups",
            _ => "connecting",
        }
    }
}

struct Progress(AtomicU8);

impl Progress {
    fn set(&self, stage: Stage) {
        self.0.store(stage as u8, Ordering::Relaxed);
    }
}

/// The `ldap` identity provider.
pub struct LdapProvider {
    locate: Locate,
    has_service_account: bool,
    mapping: mapping::Mapping,
    requested: Vec<String>,
    allowed: AllowedGroups,
    pool: Pool,
    timeout: Duration,
    server_info: Mutex<Option<Arc<ServerInfo>>>,
}

impl fmt::Debug for LdapProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapProvider")
            .field("locate", &self.locate)
            .field("pool", &self.pool)
            .field("allowed_groups", &self.allowed.shown)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `ldap://host:port` from a checked `url`.
fn endpoint_url(config: &LdapConfig) -> Result<(String, bool), ProviderConfigError> {
    let raw = config.url.trim();
    if raw.is_empty() {
        return Err(invalid(
            "url: required: ldap://HOST[:PORT] or ldaps://HOST[:PORT]".to_owned(),
        ));
    }
    let url = url::Url::parse(raw).map_err(|e| invalid(format!("url: {raw:?}: {e}")))?;
    let tls = match url.scheme() {
        "ldap" => false,
        "ldaps" => true,
        other => {
            return Err(invalid(format!(
                "url: scheme {other:?} is not ldap:// or ldaps://"
            )));
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "url: must not hold credentials (use service_bind_dn and service_bind_password)"
                .to_owned(),
        ));
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err(invalid(format!("url: {raw:?} names no host")));
    };
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(format!(
            "url: {raw:?}: only ldap[s]://HOST[:PORT]; the base DN is search_base"
        )));
    }
    let port = url.port().unwrap_or(if tls { 636 } else { 389 });
    Ok((format!("{}://{host}:{port}", url.scheme()), tls))
}

fn check_dn(key: &str, dn: &str) -> Result<String, ProviderConfigError> {
    match escape::normalize_dn(dn) {
        Some(normalized) if !normalized.is_empty() => Ok(normalized),
        _ => Err(invalid(format!(
            "{key}: {dn:?} is not a DN (cn=...,dc=...)"
        ))),
    }
}

impl LdapProvider {
    /// Checks the configuration and sets the provider up. No network I/O
    /// (`wharf check-config` calls it); it reads `ca_file` and the
    /// system's trusted certificates when TLS is used. Errors start with
    /// the key they are about (`url: ...`); the caller adds the
    /// `identity_provider.` prefix.
    pub fn new(config: LdapConfig, timeout: Duration) -> Result<LdapProvider, ProviderConfigError> {
        check_timeout(timeout)?;
        let (url, ldaps) = endpoint_url(&config)?;
        if ldaps && config.start_tls {
            return Err(invalid(
                "start_tls: not with an ldaps:// url, which is TLS from the start".to_owned(),
            ));
        }
        let ca_file = config
            .ca_file
            .as_ref()
            .filter(|path| !path.as_os_str().is_empty());
        let tls = if ldaps || config.start_tls {
            Some(conn::tls_config(ca_file.map(PathBuf::as_path))?)
        } else {
            if ca_file.is_some() {
                return Err(invalid(
                    "ca_file: only used with an ldaps:// url or start_tls = true".to_owned(),
                ));
            }
            None
        };

        let identity = match (
            config.service_bind_dn.trim().is_empty(),
            config.service_bind_password.is_empty(),
        ) {
            (true, true) => PoolIdentity::Anonymous,
            (true, false) => {
                return Err(invalid(
                    "service_bind_password: set, but service_bind_dn is empty".to_owned(),
                ));
            }
            (false, true) => {
                return Err(invalid(
                    "service_bind_password: empty while service_bind_dn is set (an empty \
                     password is an anonymous bind on most servers)"
                        .to_owned(),
                ));
            }
            (false, false) => {
                check_dn("service_bind_dn", &config.service_bind_dn)?;
                PoolIdentity::Service {
                    dn: config.service_bind_dn.trim().to_owned(),
                    password: config.service_bind_password.clone(),
                }
            }
        };
        let has_service_account = matches!(identity, PoolIdentity::Service { .. });

        let template = config.bind_dn_template.trim();
        let search_base = config.search_base.trim();
        let locate = match (template.is_empty(), search_base.is_empty()) {
            (true, true) => {
                return Err(invalid(
                    "search_base: set search_base (search for the user, then bind as the \
                     entry found) or bind_dn_template (bind directly)"
                        .to_owned(),
                ));
            }
            (false, false) => {
                return Err(invalid(
                    "bind_dn_template: set either bind_dn_template or search_base, not both"
                        .to_owned(),
                ));
            }
            (false, true) => {
                if !template.contains(USERNAME) {
                    return Err(invalid(format!(
                        "bind_dn_template: {template:?} must contain {USERNAME}"
                    )));
                }
                check_dn(
                    "bind_dn_template",
                    &template.replace(USERNAME, "wharf-check"),
                )?;
                if config.user_filter != DEFAULT_USER_FILTER {
                    return Err(invalid(
                        "user_filter: only used with search_base, not with bind_dn_template"
                            .to_owned(),
                    ));
                }
                Locate::Template(template.to_owned())
            }
            (true, false) => {
                check_dn("search_base", search_base)?;
                let filter = config.user_filter.trim();
                if !filter.contains(USERNAME) {
                    return Err(invalid(format!(
                        "user_filter: {filter:?} must contain {USERNAME}"
                    )));
                }
                if !filter.starts_with('(')
                    || ldap3::parse_filter(filter.replace(USERNAME, "wharf-check")).is_err()
                {
                    return Err(invalid(format!(
                        "user_filter: {filter:?} is not an LDAP filter (RFC 4515), e.g. \
                         {DEFAULT_USER_FILTER}"
                    )));
                }
                Locate::Search {
                    base: search_base.to_owned(),
                    filter: filter.to_owned(),
                }
            }
        };

        let mut normalized = BTreeSet::new();
        for (i, group) in config.allowed_groups.iter().enumerate() {
            normalized.insert(check_dn(&format!("allowed_groups[{i}]"), group)?);
        }
        let allowed = AllowedGroups {
            shown: config
                .allowed_groups
                .iter()
                .map(|g| g.trim().to_owned())
                .collect(),
            normalized,
        };

        let mapping = mapping::Mapping::new(&config.attributes)?;
        let mut requested = mapping.requested();
        if !allowed.is_empty() {
            requested.push("memberOf".to_owned());
        }
        let pool = Pool::new(
            Endpoint {
                url,
                start_tls: config.start_tls,
                tls,
            },
            identity,
        );
        Ok(LdapProvider {
            locate,
            has_service_account,
            mapping,
            requested,
            allowed,
            pool,
            timeout,
            server_info: Mutex::new(None),
        })
    }

    fn url(&self) -> &str {
        self.pool.url()
    }

    /// One login, with one more try on a fresh connection when a reused
    /// one turns out to be dead (the directory restarted meanwhile).
    async fn login(
        &self,
        request: &LoginRequest,
        progress: &Progress,
    ) -> Result<(Value, String), Failure> {
        let password = match &request.credential {
            Credential::Password(password) if password.expose().is_empty() => {
                return Err(Failure::denied(
                    401,
                    "empty password: never a bind (the directory was not asked)",
                ));
            }
            Credential::Password(password) => Some(password),
            Credential::PublicKey(_) => None,
        };
        progress.set(Stage::Connecting);
        let lease = self.pool.get(false).await?;
        let reused = lease.reused;
        match self.attempt(lease, request, password, progress).await {
            Err(failure) if failure.transport && reused => {
                tracing::debug!(
                    "a pooled LDAP connection to {} failed ({}); retrying on a new one",
                    self.url(),
                    failure.reason
                );
                progress.set(Stage::Connecting);
                let lease = self.pool.get(true).await?;
                self.attempt(lease, request, password, progress).await
            }
            other => other,
        }
    }

    async fn attempt(
        &self,
        mut lease: Lease,
        request: &LoginRequest,
        password: Option<&Password>,
        progress: &Progress,
    ) -> Result<(Value, String), Failure> {
        let username = request.username.as_str();
        let entry = match (&self.locate, password) {
            (Locate::Search { base, filter }, password) => {
                progress.set(Stage::Searching);
                let entry = self
                    .search_user(&mut lease.ldap, base, filter, username)
                    .await?;
                if let Some(password) = password {
                    progress.set(Stage::Binding);
                    if let Err(failure) = self.bind_user(&mut lease.ldap, &entry.dn, password).await
                    {
                        self.give_back(lease).await;
                        return Err(failure);
                    }
                    lease = self.rebound(lease).await?;
                }
                entry
            }
            (Locate::Template(template), Some(password)) => {
                let dn = template.replace(USERNAME, &escape::dn_value(username));
                progress.set(Stage::Binding);
                if let Err(failure) = self.bind_user(&mut lease.ldap, &dn, password).await {
                    self.give_back(lease).await;
                    return Err(failure);
                }
                // Bound as the user: an error from here on drops (closes)
                // the connection.
                progress.set(Stage::Reading);
                let entry = self.read_entry(&mut lease.ldap, &dn).await?;
                if !self.allowed.is_empty() && !self.has_service_account {
                    // No service account: the user checks their own groups.
                    progress.set(Stage::Groups);
                    self.check_groups(&mut lease.ldap, &entry, username).await?;
                    self.give_back(lease).await;
                    return self.answer(entry);
                }
                lease = self.rebound(lease).await?;
                entry
            }
            (Locate::Template(template), None) => {
                let dn = template.replace(USERNAME, &escape::dn_value(username));
                progress.set(Stage::Reading);
                self.read_entry(&mut lease.ldap, &dn).await?
            }
        };
        if !self.allowed.is_empty() {
            progress.set(Stage::Groups);
            self.check_groups(&mut lease.ldap, &entry, username).await?;
        }
        self.pool.release(lease);
        self.answer(entry)
    }

    fn answer(&self, entry: UserEntry) -> Result<(Value, String), Failure> {
        let response = self
            .mapping
            .response(&entry)
            .map_err(|reason| Failure::denied(502, format!("entry {:?}: {reason}", entry.dn)))?;
        Ok((response, entry.dn))
    }

    /// Back to the pool's identity after a user bind, then into the pool;
    /// a connection that cannot be rebound is closed.
    async fn give_back(&self, lease: Lease) {
        if let Some(lease) = self.pool.rebind(lease).await {
            self.pool.release(lease);
        }
    }

    /// Back to the pool's identity after a user bind, to go on with the
    /// login; a connection that cannot be rebound is replaced.
    async fn rebound(&self, lease: Lease) -> Result<Lease, Failure> {
        match self.pool.rebind(lease).await {
            Some(lease) => Ok(lease),
            None => self.pool.get(true).await,
        }
    }

    async fn search_user(
        &self,
        ldap: &mut Ldap,
        base: &str,
        filter: &str,
        username: &str,
    ) -> Result<UserEntry, Failure> {
        let url = self.url();
        let filter = filter.replace(USERNAME, &escape::filter_value(username));
        let result = ldap
            .with_search_options(SearchOptions::new().sizelimit(2))
            .search(base, Scope::Subtree, &filter, &self.requested)
            .await
            .map_err(|e| Failure::transport(url, "searching for the user", &e))?;
        let (entries, result) = (result.0, result.1);
        match result.rc {
            0 | 4 => {}
            32 => {
                return Err(Failure::directory(format!(
                    "search_base {base:?} does not exist in the LDAP directory at {url}"
                )));
            }
            _ => {
                return Err(Failure::directory(format!(
                    "the LDAP directory at {url} failed the user search {filter:?}: {}",
                    conn::result_text(&result)
                )));
            }
        }
        let mut entries = parse_entries(entries)?;
        if entries.len() > 1 || result.rc == 4 {
            return Err(Failure::denied(
                409,
                format!(
                    "more than one entry under {base:?} matches {filter:?}: the user must be \
                     exactly one entry"
                ),
            ));
        }
        match entries.pop() {
            Some(entry) if !entry.dn.is_empty() => Ok(entry),
            _ => Err(Failure::denied(
                404,
                format!("no entry under {base:?} matches {filter:?}"),
            )),
        }
    }

    async fn read_entry(&self, ldap: &mut Ldap, dn: &str) -> Result<UserEntry, Failure> {
        let url = self.url();
        let result = ldap
            .with_search_options(SearchOptions::new().sizelimit(1))
            .search(dn, Scope::Base, "(objectClass=*)", &self.requested)
            .await
            .map_err(|e| Failure::transport(url, "reading the user's entry", &e))?;
        match result.1.rc {
            0 => {}
            32 => return Err(Failure::denied(404, format!("no entry {dn:?}"))),
            _ => {
                return Err(Failure::directory(format!(
                    "the LDAP directory at {url} failed reading {dn:?}: {}",
                    conn::result_text(&result.1)
                )));
            }
        }
        parse_entries(result.0)?
            .pop()
            .ok_or_else(|| Failure::denied(404, format!("no entry {dn:?} (or it is not readable)")))
    }

    async fn bind_user(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        password: &Password,
    ) -> Result<(), Failure> {
        let url = self.url();
        let result = ldap
            .simple_bind(dn, password.expose())
            .await
            .map_err(|e| Failure::transport(url, "binding as the user", &e))?;
        match result.rc {
            0 => Ok(()),
            49 => Err(Failure::denied(
                401,
                format!("wrong password for {dn:?} ({})", conn::result_text(&result)),
            )),
            _ => Err(Failure::denied(
                401,
                format!(
                    "the LDAP directory at {url} refused the bind as {dn:?}: {}",
                    conn::result_text(&result)
                ),
            )),
        }
    }

    async fn check_groups(
        &self,
        ldap: &mut Ldap,
        entry: &UserEntry,
        username: &str,
    ) -> Result<(), Failure> {
        let url = self.url();
        let cached = self
            .server_info
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let info = match cached {
            Some(info) => info,
            None => {
                let info = Arc::new(groups::server_info(ldap, url).await?);
                *self.server_info.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(Arc::clone(&info));
                info
            }
        };
        match groups::check(ldap, url, &info, &self.allowed, entry, username).await? {
            Membership::Member(group) => {
                tracing::debug!("{:?} is allowed as a member of {group:?}", entry.dn);
                Ok(())
            }
            Membership::NotMember => Err(Failure::denied(
                403,
                format!("{:?} is not a member of any of allowed_groups", entry.dn),
            )),
            Membership::Unknown(why) => Err(Failure::denied(
                403,
                format!(
                    "{:?} is not a member of any of allowed_groups as far as checked: {why}",
                    entry.dn
                ),
            )),
        }
    }
}

#[async_trait]
impl IdentityProvider for LdapProvider {
    fn kind(&self) -> &'static str {
        "ldap"
    }

    fn timeout(&self) -> Duration {
        self.timeout + BACKSTOP_GRACE
    }

    async fn query(&self, request: &LoginRequest) -> Answer {
        let progress = Progress(AtomicU8::new(Stage::Connecting as u8));
        match tokio::time::timeout(self.timeout, self.login(request, &progress)).await {
            Ok(Ok((response, dn))) => Answer {
                status_code: 200,
                message: format!("authenticated by the ldap identity provider as {dn:?}"),
                response: Some(response),
            },
            Ok(Err(failure)) => Answer::denied(failure.status, failure.reason),
            Err(_elapsed) => Answer::denied(
                504,
                format!(
                    "the LDAP directory at {} did not answer within {:?} ({})",
                    self.url(),
                    self.timeout,
                    Stage::describe(progress.0.load(Ordering::Relaxed))
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests;
