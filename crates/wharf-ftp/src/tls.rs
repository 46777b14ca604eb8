//! FTPS: certificates, and the rustls configurations of one control
//! connection and its data connections.
//!
//! Each control connection gets its own `ServerConfig` (sharing the parsed
//! certificate and key) that issues TLS sessions with keys of its own
//! ([`Issued`]). When it logs in, it joins the group of its user and client
//! address in the server's [`Registry`], and gets the `ServerConfig` of its
//! data connections, which resume the sessions of that group's members and
//! no others: a data connection whose handshake rustls reports as resumed
//! resumed a session this server issued to a control connection of the same
//! user from the same address. That is what
//! `tls_session_resumption = "enforced"` checks (see `data.rs` and
//! `resume.rs`).
//!
//! Tickets. Control connections issue them; data connections resume with
//! them. A TLS 1.3 client may use a ticket once only: OpenSSL (curl) keeps
//! the session of the data connection that resumed, which cannot be
//! resumed again, so its next data connection offers nothing and is
//! refused (curl/curl#4654: several downloads in one curl command). So a
//! data connection of a download or a listing issues one fresh ticket,
//! which the client reads before the data. An upload's does not: the
//! ticket is a post-handshake message that an uploading client never
//! reads, and closing a socket with unread data sends a reset, which makes
//! the client's kernel drop the end of the upload (curl/curl#6149). Two
//! uploads in a row in one curl command therefore need TLS 1.2 there
//! (`--tls-max 1.2`), as with vsftpd and ProFTPD; other clients resume
//! from the control connection's session each time. Data connections issue
//! no TLS 1.2 session IDs.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::resume::{DataSessions, Issued, Membership, Registry, SessionCache, UserSessions};

/// `tls_session_resumption`: what data connections must do about the
/// control connection's TLS session (AWS `TlsSessionResumptionMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resumption {
    /// Data connections must resume a session issued to a control
    /// connection of the same user from the same address (the AWS default);
    /// one that does not is refused.
    #[default]
    Enforced,
    /// Resumption is offered but not required.
    Enabled,
    /// No session IDs, no tickets: every data connection is a full handshake.
    Disabled,
}

impl Resumption {
    /// `"enforced" | "enabled" | "disabled"` (any case).
    pub fn parse(text: &str) -> Option<Resumption> {
        match text.to_ascii_lowercase().as_str() {
            "enforced" => Some(Resumption::Enforced),
            "enabled" => Some(Resumption::Enabled),
            "disabled" => Some(Resumption::Disabled),
            _ => None,
        }
    }
}

/// What FTPS needs: the certificate chain (leaf first), its private key and
/// the resumption rule.
pub struct TlsConfig {
    pub certificate_chain: Vec<CertificateDer<'static>>,
    pub private_key: PrivateKeyDer<'static>,
    pub session_resumption: Resumption,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("certificates", &self.certificate_chain.len())
            .field("session_resumption", &self.session_resumption)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Parses a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1
    /// or SEC1), with `Resumption::Enforced`.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<TlsConfig, String> {
        let certificate_chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("certificate: {e}"))?;
        if certificate_chain.is_empty() {
            return Err("certificate: no CERTIFICATE block found".to_owned());
        }
        let private_key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| format!("private key: {e}"))?;
        Ok(TlsConfig {
            certificate_chain,
            private_key,
            session_resumption: Resumption::Enforced,
        })
    }
}

/// Reads a PEM certificate chain and private key from files (see
/// [`TlsConfig::from_pem`]); set `session_resumption` afterwards.
pub fn load_pem(cert: &Path, key: &Path) -> Result<TlsConfig, String> {
    let cert_pem = std::fs::read_to_string(cert)
        .map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
    let key_pem =
        std::fs::read_to_string(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
    TlsConfig::from_pem(&cert_pem, &key_pem).map_err(|e| match e.split_once(": ") {
        Some(("certificate", rest)) => format!("{}: {rest}", cert.display()),
        Some((_, rest)) => format!("{}: {rest}", key.display()),
        None => e,
    })
}

/// A self-signed certificate (ECDSA P-256, via rcgen on aws-lc-rs) for the
/// given DNS names and IP addresses, as `(certificate PEM, private key PEM)`.
/// For the embedded default; clients must be told not to verify it.
pub fn self_signed_certificate(names: &[String]) -> Result<(String, String), String> {
    let names = if names.is_empty() {
        vec!["localhost".to_owned()]
    } else {
        names.to_vec()
    };
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "wharf");
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The server-wide part of FTPS: parsed once in `FtpServer::new`.
pub(crate) struct TlsMaterial {
    /// Certificate, key, protocol versions: what every connection's
    /// configuration starts from.
    base: ServerConfig,
    pub(crate) resumption: Resumption,
    registry: Arc<Registry>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("resumption", &self.resumption)
            .finish_non_exhaustive()
    }
}

/// The rustls configuration of one control connection.
pub(crate) struct ConnectionTls {
    pub(crate) control: Arc<ServerConfig>,
    /// Its place in the registry (`None` when resumption is disabled):
    /// pending from the start, its user's from the login on.
    membership: Option<Membership>,
    /// The lifetime of the control connection's tickets.
    lifetime: u32,
}

/// The TLS of a logged-in control connection's data connections: only a
/// login makes one ([`TlsMaterial::logged_in`]).
pub(crate) struct LoggedInTls {
    /// What every data connection's configuration starts from: it issues
    /// no session IDs and no tickets of its own.
    base: ServerConfig,
    pub(crate) resumption: Resumption,
    /// What they may resume (`None` when resumption is disabled).
    sessions: Option<UserSessions>,
    /// The lifetime of the tickets they issue (downloads and listings).
    lifetime: u32,
}

/// The configuration of one data connection, and what decides whether the
/// session it resumed may be resumed (`None` when resumption is disabled).
pub(crate) struct DataTls {
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) sessions: Option<Arc<DataSessions>>,
}

impl LoggedInTls {
    /// The configuration of one data connection. `reads` says whether the
    /// client will read on it (a download or a listing), which decides
    /// whether it gets a fresh ticket.
    pub(crate) fn data(&self, reads: bool) -> DataTls {
        let mut config = self.base.clone();
        let sessions = self.sessions.as_ref().map(|sessions| {
            let sessions = sessions.data_sessions(self.lifetime, reads);
            config.session_storage = sessions.clone();
            config.ticketer = sessions.clone();
            config.send_tls13_tickets = usize::from(reads);
            sessions
        });
        DataTls {
            config: Arc::new(config),
            sessions,
        }
    }
}

impl ConnectionTls {
    /// The control connection has ended: its sessions stay resumable for
    /// the retention period only if it logged in (see `resume.rs`).
    pub(crate) fn end(&mut self) {
        self.membership = None;
    }
}

impl TlsMaterial {
    pub(crate) fn new(config: TlsConfig) -> Result<TlsMaterial, String> {
        // aws-lc-rs only: the provider is named here rather than taken from
        // the process default, so a second provider elsewhere in the tree
        // cannot change what FTPS negotiates.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        if config.certificate_chain.is_empty() {
            return Err("the certificate chain is empty".to_owned());
        }
        let signing = provider
            .key_provider
            .load_private_key(config.private_key)
            .map_err(|e| format!("unusable private key: {e}"))?;
        let key = CertifiedKey::new(config.certificate_chain, signing);
        key.keys_match()
            .map_err(|e| format!("the private key does not match the certificate: {e}"))?;
        let base = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(OneCertificate(Arc::new(key))));
        Ok(TlsMaterial {
            base,
            resumption: config.session_resumption,
            registry: Arc::new(Registry::default()),
        })
    }

    /// The configuration of one new control connection from `ip`, which
    /// issues sessions with a session cache and ticket keys of its own, and
    /// is a (pending) member of the registry from now on.
    pub(crate) fn for_connection(&self, ip: IpAddr) -> Result<ConnectionTls, String> {
        let mut control = self.base.clone();
        let (membership, lifetime) = match self.resumption {
            Resumption::Enforced | Resumption::Enabled => {
                let issued = Arc::new(Issued {
                    tickets: rustls::crypto::aws_lc_rs::Ticketer::new()
                        .map_err(|e| e.to_string())?,
                    sessions: Arc::new(SessionCache::default()),
                });
                control.session_storage = issued.sessions.clone();
                control.ticketer = issued.tickets.clone();
                let lifetime = issued.tickets.lifetime();
                (Some(self.registry.join(ip, issued)), lifetime)
            }
            Resumption::Disabled => {
                control.session_storage = Arc::new(NoServerSessionStorage {});
                control.send_tls13_tickets = 0;
                (None, 0)
            }
        };
        Ok(ConnectionTls {
            control: Arc::new(control),
            membership,
            lifetime,
        })
    }

    /// After a successful login as `user`: the control connection's
    /// sessions count as `user`'s, and its data connections get their
    /// configuration (they resume sessions of `user`'s control connections
    /// from the same address, and issue none).
    pub(crate) fn logged_in(&self, tls: &ConnectionTls, user: &str) -> LoggedInTls {
        let mut base = self.base.clone();
        base.send_tls13_tickets = 0;
        base.session_storage = Arc::new(NoServerSessionStorage {});
        LoggedInTls {
            base,
            resumption: self.resumption,
            sessions: tls
                .membership
                .as_ref()
                .map(|membership| membership.logged_in(user)),
            lifetime: tls.lifetime,
        }
    }
}

#[derive(Debug)]
struct OneCertificate(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn self_signed_certificates_load() {
        let (cert, key) =
            self_signed_certificate(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        let tls = TlsConfig::from_pem(&cert, &key).unwrap();
        assert_eq!(tls.certificate_chain.len(), 1);
        TlsMaterial::new(tls).unwrap();
        for resumption in [
            Resumption::Enforced,
            Resumption::Enabled,
            Resumption::Disabled,
        ] {
            let material = TlsMaterial {
                resumption,
                ..TlsMaterial::new(TlsConfig::from_pem(&cert, &key).unwrap()).unwrap()
            };
            let tls = material
                .for_connection("127.0.0.1".parse().unwrap())
                .unwrap();
            assert_eq!(
                tls.control.send_tls13_tickets != 0,
                resumption != Resumption::Disabled
            );
            // Data connections need a login (the type says so).
            let data = material.logged_in(&tls, "alice").data(false);
            assert_eq!(data.config.send_tls13_tickets, 0);
            assert!(!data.config.session_storage.can_cache());
            assert_eq!(
                data.config.ticketer.enabled(),
                resumption != Resumption::Disabled
            );
            assert_eq!(data.sessions.is_some(), resumption != Resumption::Disabled);
        }
    }

    #[test]
    fn mismatched_key_is_refused() {
        let (cert, _) = self_signed_certificate(&[]).unwrap();
        let (_, other_key) = self_signed_certificate(&[]).unwrap();
        let error = TlsMaterial::new(TlsConfig::from_pem(&cert, &other_key).unwrap()).unwrap_err();
        assert!(error.contains("does not match"), "{error}");
        assert!(TlsConfig::from_pem("", &other_key).is_err());
        assert!(TlsConfig::from_pem(&cert, "nonsense").is_err());
    }

    #[test]
    fn resumption_parses() {
        assert_eq!(Resumption::parse("ENFORCED"), Some(Resumption::Enforced));
        assert_eq!(Resumption::parse("enabled"), Some(Resumption::Enabled));
        assert_eq!(Resumption::parse("disabled"), Some(Resumption::Disabled));
        assert_eq!(Resumption::parse("sometimes"), None);
    }
}
