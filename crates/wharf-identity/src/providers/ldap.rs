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

mod config;
mod conn;
mod entry;
mod escape;
mod groups;
mod mapping;

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ldap3::{Ldap, LdapError, Scope, SearchOptions};
use serde_json::Value;

use super::BACKSTOP_GRACE;
use crate::{Answer, Credential, IdentityProvider, LoginRequest, Password};
use conn::{Lease, Pool};
use groups::{AllowedGroups, Membership, ServerInfo};

pub use config::{DEFAULT_USER_FILTER, LdapConfig};
pub use mapping::{AttributeSource, DEFAULT_PUBLIC_KEYS_ATTRIBUTE};

use config::USERNAME;
use entry::UserEntry;
use entry::parse_entries;

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

impl LdapProvider {
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
