//! Connections to the directory: TLS settings (rustls with aws-lc-rs,
//! verification always on) and a bounded pool of connections bound as the
//! pool's identity (the service account, or anonymous without one).
//!
//! A connection leaves the pool as a [`Lease`]. Only [`Lease::release`]
//! puts it back, and only while it is still bound as the pool's identity:
//! after a user bind (successful or not) the lease must be rebound with
//! [`Lease::rebind`] first, which discards the connection if that fails.
//! A lease dropped any other way (a timeout, an error, a query abandoned)
//! closes its connection, so a connection in an unknown state is never
//! reused.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Failure;
use crate::providers::ProviderConfigError;

/// The most connections one provider keeps open (idle and in use); a login
/// that finds them all busy waits for one, within its own timeout.
pub(super) const POOL_SIZE: usize = 8;

/// An idle connection older than this is closed rather than reused (a
/// firewall may have dropped it without telling either end).
const MAX_IDLE: Duration = Duration::from_secs(60);

/// Who pooled connections are bound as.
#[derive(Clone)]
pub(super) enum PoolIdentity {
    Anonymous,
    Service { dn: String, password: String },
}

impl fmt::Debug for PoolIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolIdentity::Anonymous => f.write_str("Anonymous"),
            PoolIdentity::Service { dn, .. } => f
                .debug_struct("Service")
                .field("dn", dn)
                .field("password", &"***")
                .finish(),
        }
    }
}

/// How to reach the directory.
#[derive(Clone)]
pub(super) struct Endpoint {
    /// `ldap://host:port` or `ldaps://host:port`, no path.
    pub(super) url: String,
    pub(super) start_tls: bool,
    /// Present for `ldaps://` and StartTLS.
    pub(super) tls: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("start_tls", &self.start_tls)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// The TLS client settings: the system's trusted roots plus, when given,
/// the certificates of `ca_file` (PEM). Verification is never turned off.
pub(super) fn tls_config(
    ca_file: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, ProviderConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    // The system store may hold certificates rustls refuses; the usable
    // ones are enough.
    let native = rustls_native_certs::load_native_certs();
    let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let shown = path.display();
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| ProviderConfigError(format!("ca_file: cannot read {shown}: {e}")))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ProviderConfigError(format!("ca_file: {shown}: {e}")))?;
        if certs.is_empty() {
            return Err(ProviderConfigError(format!(
                "ca_file: {shown} holds no PEM certificate"
            )));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| {
                ProviderConfigError(format!("ca_file: {shown}: unusable certificate: {e}"))
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ProviderConfigError(format!("url: cannot set up TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

struct Idle {
    ldap: Ldap,
    since: Instant,
}

/// A bounded set of connections bound as one identity.
pub(super) struct Pool {
    endpoint: Endpoint,
    identity: PoolIdentity,
    idle: Mutex<Vec<Idle>>,
    permits: Arc<Semaphore>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("endpoint", &self.endpoint)
            .field("identity", &self.identity)
            .field("size", &POOL_SIZE)
            .finish_non_exhaustive()
    }
}

/// One connection taken from the pool, with its place in it.
pub(super) struct Lease {
    pub(super) ldap: Ldap,
    /// Whether it came from the idle list (it may have died meanwhile).
    pub(super) reused: bool,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    pub(super) fn new(endpoint: Endpoint, identity: PoolIdentity) -> Pool {
        Pool {
            endpoint,
            identity,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(POOL_SIZE)),
        }
    }

    pub(super) fn url(&self) -> &str {
        &self.endpoint.url
    }

    /// A connection bound as the pool's identity: an idle one unless
    /// `fresh`, else a new one. Waits for a free place (the caller bounds
    /// the wait with its timeout).
    pub(super) async fn get(&self, fresh: bool) -> Result<Lease, Failure> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Failure::internal("the LDAP connection pool is closed"))?;
        if !fresh && let Some(ldap) = self.take_idle() {
            return Ok(Lease {
                ldap,
                reused: true,
                _permit: permit,
            });
        }
        let ldap = self.connect().await?;
        Ok(Lease {
            ldap,
            reused: false,
            _permit: permit,
        })
    }

    fn take_idle(&self) -> Option<Ldap> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(mut candidate) = idle.pop() {
            if candidate.since.elapsed() < MAX_IDLE && !candidate.ldap.is_closed() {
                return Some(candidate.ldap);
            }
        }
        None
    }

    /// Returns a connection that is bound as the pool's identity.
    pub(super) fn release(&self, lease: Lease) {
        let Lease {
            mut ldap, _permit, ..
        } = lease;
        if ldap.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|c| c.since.elapsed() < MAX_IDLE);
        idle.push(Idle {
            ldap,
            since: Instant::now(),
        });
        // The permit drops after the push: a waiter finds the connection.
    }

    /// Binds the lease back to the pool's identity after a user bind, or
    /// closes it (by dropping it) when that fails.
    pub(super) async fn rebind(&self, mut lease: Lease) -> Option<Lease> {
        match self.bind_identity(&mut lease.ldap).await {
            Ok(()) => Some(lease),
            Err(failure) => {
                tracing::debug!(
                    "LDAP connection to {} discarded: rebinding failed: {}",
                    self.endpoint.url,
                    failure.reason
                );
                None
            }
        }
    }

    async fn connect(&self) -> Result<Ldap, Failure> {
        let url = &self.endpoint.url;
        let mut settings = LdapConnSettings::new().set_starttls(self.endpoint.start_tls);
        if let Some(tls) = &self.endpoint.tls {
            settings = settings.set_config(Arc::clone(tls));
        }
        let how = if self.endpoint.start_tls {
            " (StartTLS)"
        } else {
            ""
        };
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, url)
            .await
            .map_err(|e| {
                Failure::unavailable(format!(
                    "cannot connect to the LDAP directory at {url}{how}: {}",
                    describe(&e)
                ))
            })?;
        let shown = url.clone();
        tokio::spawn(async move {
            if let Err(error) = conn.drive().await {
                tracing::debug!("LDAP connection to {shown} ended: {}", describe(&error));
            }
        });
        self.bind_identity(&mut ldap).await?;
        Ok(ldap)
    }

    async fn bind_identity(&self, ldap: &mut Ldap) -> Result<(), Failure> {
        let url = &self.endpoint.url;
        match &self.identity {
            PoolIdentity::Anonymous => {
                // An anonymous simple bind resets a connection that a user
                // bound to the anonymous state.
                let result = ldap
                    .simple_bind("", "")
                    .await
                    .map_err(|e| Failure::transport(url, "binding anonymously", &e))?;
                if result.rc != 0 {
                    return Err(Failure::directory(format!(
                        "the LDAP directory at {url} refused an anonymous bind: {}",
                        result_text(&result)
                    )));
                }
            }
            PoolIdentity::Service { dn, password } => {
                let result = ldap
                    .simple_bind(dn, password)
                    .await
                    .map_err(|e| Failure::transport(url, "binding as service_bind_dn", &e))?;
                if result.rc != 0 {
                    return Err(Failure::directory(format!(
                        "the LDAP directory at {url} refused the bind as service_bind_dn \
                         {dn:?}: {}",
                        result_text(&result)
                    )));
                }
            }
        }
        Ok(())
    }
}

/// An LDAP result code and the server's diagnostic text, for a reason.
pub(super) fn result_text(result: &LdapResult) -> String {
    let name = match result.rc {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        13 => "confidentialityRequired",
        16 => "noSuchAttribute",
        19 => "constraintViolation",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        80 => "other",
        _ => "error",
    };
    let text = result.text.trim();
    if text.is_empty() {
        format!("result {} ({name})", result.rc)
    } else {
        // The server's text is quoted, bounded, on one line.
        let text: String = text
            .chars()
            .take(200)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        format!("result {} ({name}): {text:?}", result.rc)
    }
}

/// An `ldap3` error as one line (the TLS and I/O causes included).
pub(super) fn describe(error: &LdapError) -> String {
    use std::error::Error as _;
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
