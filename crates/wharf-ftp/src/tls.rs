//! FTPS: certificates, and the rustls configurations of one control
//! connection and its data connections.
//!
//! Each control connection gets two `ServerConfig`s (sharing the parsed
//! certificate and key): one for itself and one for its data connections.
//! Both share a session cache and ticket keys of their own, made for this
//! control connection, so a data connection whose handshake rustls reports
//! as resumed resumed *this* control connection's session, not any session
//! of the server: that is what `tls_session_resumption = "enforced"` checks
//! (see `data.rs`).
//!
//! Only the control connection issues session tickets. Data connections
//! resume with the control connection's ticket; a fresh TLS 1.3 ticket on a
//! data connection is a post-handshake message that an uploading client
//! never reads, and closing a socket with unread data sends a reset, which
//! makes the server's kernel drop the end of the upload (curl loses uploads
//! that way: curl/curl#6149). Other servers turn TLS 1.3 off for this; this
//! keeps TLS 1.3.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{
    ClientHello, NoServerSessionStorage, ProducesTickets, ResolvesServerCert, StoresServerSessions,
};
use rustls::sign::CertifiedKey;

/// `tls_session_resumption`: what data connections must do about the
/// control connection's TLS session (AWS `TlsSessionResumptionMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resumption {
    /// Data connections must resume the control connection's session (the
    /// AWS default); one that does not is refused.
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
    provider: Arc<CryptoProvider>,
    key: Arc<CertifiedKey>,
    pub(crate) resumption: Resumption,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("resumption", &self.resumption)
            .finish_non_exhaustive()
    }
}

/// Session IDs one control connection keeps for its data connections.
const SESSION_CACHE_ENTRIES: usize = 16;

/// The rustls configurations of one control connection.
pub(crate) struct ConnectionTls {
    pub(crate) control: Arc<ServerConfig>,
    pub(crate) data: Arc<ServerConfig>,
    pub(crate) resumption: Resumption,
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
        Ok(TlsMaterial {
            provider,
            key: Arc::new(key),
            resumption: config.session_resumption,
        })
    }

    /// The configurations of one new control connection and its data
    /// connections, with a session cache and ticket keys of their own.
    pub(crate) fn for_connection(&self) -> Result<ConnectionTls, String> {
        let builder = || -> Result<ServerConfig, String> {
            Ok(ServerConfig::builder_with_provider(self.provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(|e| e.to_string())?
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(OneCertificate(self.key.clone()))))
        };
        let mut control = builder()?;
        let mut data = builder()?;
        match self.resumption {
            Resumption::Enforced | Resumption::Enabled => {
                let sessions = Arc::new(SessionCache::default());
                let tickets: Arc<dyn ProducesTickets> =
                    rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| e.to_string())?;
                control.session_storage = sessions.clone();
                control.ticketer = tickets.clone();
                data.session_storage = sessions;
                data.ticketer = Arc::new(AcceptTicketsOnly(tickets));
                data.send_tls13_tickets = 0;
            }
            Resumption::Disabled => {
                for config in [&mut control, &mut data] {
                    config.session_storage = Arc::new(NoServerSessionStorage {});
                    config.send_tls13_tickets = 0;
                }
            }
        }
        Ok(ConnectionTls {
            control: Arc::new(control),
            data: Arc::new(data),
            resumption: self.resumption,
        })
    }
}

#[derive(Debug)]
struct OneCertificate(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The control connection's tickets on a data connection: accepted, never
/// issued (see the module docs).
#[derive(Debug)]
struct AcceptTicketsOnly(Arc<dyn ProducesTickets>);

impl ProducesTickets for AcceptTicketsOnly {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.0.lifetime()
    }

    fn encrypt(&self, _plain: &[u8]) -> Option<Vec<u8>> {
        // None: no ticket in TLS 1.3, an empty one in TLS 1.2 ("the server
        // changed its mind", RFC 5077 3.3; clients keep the one they have).
        None
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.0.decrypt(cipher)
    }
}

/// TLS 1.2 session IDs of one control connection. `take` does not remove:
/// clients (FileZilla among them) resume the same session for every data
/// connection.
#[derive(Debug, Default)]
struct SessionCache {
    entries: Mutex<VecDeque<(Vec<u8>, Vec<u8>)>>,
}

impl StoresServerSessions for SessionCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let mut entries = self.entries.lock();
        entries.retain(|(k, _)| *k != key);
        if entries.len() >= SESSION_CACHE_ENTRIES {
            entries.pop_front();
        }
        entries.push_back((key, value));
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.entries
            .lock()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get(key)
    }

    fn can_cache(&self) -> bool {
        true
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
            let tls = material.for_connection().unwrap();
            assert_eq!(tls.data.send_tls13_tickets, 0);
            assert_eq!(
                tls.control.send_tls13_tickets != 0,
                resumption != Resumption::Disabled
            );
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
    fn session_cache_is_bounded_and_keeps_taken_sessions() {
        let cache = SessionCache::default();
        for i in 0..40u8 {
            cache.put(vec![i], vec![i]);
        }
        assert_eq!(cache.entries.lock().len(), SESSION_CACHE_ENTRIES);
        assert_eq!(cache.take(&[39]), Some(vec![39]));
        assert_eq!(cache.get(&[39]), Some(vec![39]));
        assert_eq!(cache.get(&[0]), None);
    }

    #[test]
    fn resumption_parses() {
        assert_eq!(Resumption::parse("ENFORCED"), Some(Resumption::Enforced));
        assert_eq!(Resumption::parse("enabled"), Some(Resumption::Enabled));
        assert_eq!(Resumption::parse("disabled"), Some(Resumption::Disabled));
        assert_eq!(Resumption::parse("sometimes"), None);
    }
}
