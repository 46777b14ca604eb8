//! FTPS: certificates, the per-connection rustls configuration, and how a
//! data connection is checked against its control connection.
//!
//! libunftp uses one rustls `ServerConfig` for the control channel and for
//! every data channel of a session, and never tells the storage backend how
//! a data connection was secured. So each control connection gets its own
//! `ServerConfig` (sharing the parsed certificate and key), whose hooks count
//! what happens during its handshakes:
//!
//! - the certificate resolver runs on every handshake, full or resumed;
//! - the signing key signs only in a full handshake (a resumed one proves
//!   possession of the session secret instead).
//!
//! Each PASV/EPSV goes through our `Binder` (see `server.rs`), which takes a
//! snapshot of the counts; the passive listener accepts one connection, and
//! libunftp completes that connection's handshake before it calls the
//! backend for the transfer. So at the start of a transfer the backend can
//! tell whether its data connection was TLS at all (a handshake since the
//! PASV) and whether it resumed (no signature since the PASV). The session
//! cache and ticket keys are per control connection too, so "resumed" means
//! "resumed this control connection's session", not any session of the
//! server.
//!
//! Only the control connection issues session tickets. Data connections
//! resume with the control connection's ticket; a fresh TLS 1.3 ticket on a
//! data connection is a post-handshake message that an uploading client
//! never reads, and closing a socket with unread data sends a reset, which
//! makes the server's kernel drop the end of the upload (curl loses uploads
//! that way: curl/curl#6149). libunftp avoids it by turning TLS 1.3 off; this
//! keeps TLS 1.3.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, SubjectPublicKeyInfoDer};
use rustls::server::{
    ClientHello, NoServerSessionStorage, ProducesTickets, ResolvesServerCert, StoresServerSessions,
};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{ServerConfig, SignatureAlgorithm, SignatureScheme};

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
    chain: Vec<CertificateDer<'static>>,
    key: Arc<dyn SigningKey>,
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

impl TlsMaterial {
    pub(crate) fn new(config: TlsConfig) -> Result<TlsMaterial, String> {
        // aws-lc-rs only: the provider is named here rather than taken from
        // the process default, so a second provider elsewhere in the tree
        // cannot change what FTPS negotiates.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        if config.certificate_chain.is_empty() {
            return Err("the certificate chain is empty".to_owned());
        }
        let key = provider
            .key_provider
            .load_private_key(config.private_key)
            .map_err(|e| format!("unusable private key: {e}"))?;
        let certified = CertifiedKey::new(config.certificate_chain.clone(), key.clone());
        certified
            .keys_match()
            .map_err(|e| format!("the private key does not match the certificate: {e}"))?;
        Ok(TlsMaterial {
            provider,
            chain: config.certificate_chain,
            key,
            resumption: config.session_resumption,
        })
    }

    /// The rustls configuration of one control connection and its data
    /// connections, reporting its handshakes to `counters`.
    pub(crate) fn connection_config(
        &self,
        counters: Arc<HandshakeCounters>,
    ) -> Result<Arc<ServerConfig>, String> {
        let key: Arc<dyn SigningKey> = Arc::new(CountingKey {
            inner: self.key.clone(),
            counters: counters.clone(),
        });
        let resolver = Arc::new(CountingResolver {
            key: Arc::new(CertifiedKey::new(self.chain.clone(), key)),
            counters: counters.clone(),
        });
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        match self.resumption {
            Resumption::Enforced | Resumption::Enabled => {
                config.session_storage = Arc::new(SessionCache::default());
                config.ticketer = Arc::new(ControlTickets {
                    inner: rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| e.to_string())?,
                    counters: counters.clone(),
                });
            }
            Resumption::Disabled => {
                config.session_storage = Arc::new(NoServerSessionStorage {});
                config.send_tls13_tickets = 0;
            }
        }
        Ok(Arc::new(config))
    }
}

/// What the TLS hooks of one control connection have seen.
#[derive(Debug, Default)]
pub(crate) struct HandshakeCounters {
    /// Handshakes started (the certificate resolver runs in every one).
    handshakes: AtomicU64,
    /// Full handshakes (the server signed).
    full: AtomicU64,
    /// The counts at the last PASV/EPSV.
    passive: Mutex<(u64, u64)>,
    /// Set at the first PASV/EPSV: from then on handshakes are data
    /// connections.
    data_started: AtomicBool,
}

/// How the data connection of the transfer now starting was secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataChannel {
    Tls { resumed: bool },
    Plain,
}

impl HandshakeCounters {
    fn now(&self) -> (u64, u64) {
        (
            self.handshakes.load(Ordering::SeqCst),
            self.full.load(Ordering::SeqCst),
        )
    }

    /// A new passive data port: handshakes from now on are its connection's.
    pub(crate) fn mark_passive(&self) {
        self.data_started.store(true, Ordering::SeqCst);
        *self.passive.lock() = self.now();
    }

    /// How the data connection of the transfer now starting was secured.
    /// Each passive port serves one transfer, so asking also ends it.
    pub(crate) fn take_data_channel(&self) -> DataChannel {
        let now = self.now();
        let before = std::mem::replace(&mut *self.passive.lock(), now);
        if now.0 == before.0 {
            DataChannel::Plain
        } else {
            DataChannel::Tls {
                resumed: now.1 == before.1,
            }
        }
    }
}

#[derive(Debug)]
struct CountingResolver {
    key: Arc<CertifiedKey>,
    counters: Arc<HandshakeCounters>,
}

impl ResolvesServerCert for CountingResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.counters.handshakes.fetch_add(1, Ordering::SeqCst);
        Some(self.key.clone())
    }
}

#[derive(Debug)]
struct CountingKey {
    inner: Arc<dyn SigningKey>,
    counters: Arc<HandshakeCounters>,
}

impl SigningKey for CountingKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let inner = self.inner.choose_scheme(offered)?;
        Some(Box::new(CountingSigner {
            inner,
            counters: self.counters.clone(),
        }))
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        self.inner.public_key()
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.inner.algorithm()
    }
}

#[derive(Debug)]
struct CountingSigner {
    inner: Box<dyn Signer>,
    counters: Arc<HandshakeCounters>,
}

impl Signer for CountingSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.counters.full.fetch_add(1, Ordering::SeqCst);
        self.inner.sign(message)
    }

    fn scheme(&self) -> SignatureScheme {
        self.inner.scheme()
    }
}

/// The session tickets of one control connection: issued on the control
/// connection only (see the module docs), accepted on its data connections.
#[derive(Debug)]
struct ControlTickets {
    inner: Arc<dyn ProducesTickets>,
    counters: Arc<HandshakeCounters>,
}

impl ProducesTickets for ControlTickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.inner.lifetime()
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        // None: no ticket in TLS 1.3, an empty one in TLS 1.2 ("the server
        // changed its mind", RFC 5077 3.3; clients keep the one they have).
        if self.counters.data_started.load(Ordering::SeqCst) {
            return None;
        }
        self.inner.encrypt(plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.inner.decrypt(cipher)
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
        let material = TlsMaterial::new(tls).unwrap();
        material
            .connection_config(Arc::new(HandshakeCounters::default()))
            .unwrap();
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
    fn counters_tell_data_channels_apart() {
        let c = HandshakeCounters::default();
        let handshake = |full: bool| {
            c.handshakes.fetch_add(1, Ordering::SeqCst);
            if full {
                c.full.fetch_add(1, Ordering::SeqCst);
            }
        };
        // AUTH TLS: a full handshake.
        handshake(true);
        c.mark_passive();
        assert_eq!(c.take_data_channel(), DataChannel::Plain);
        c.mark_passive();
        handshake(false);
        assert_eq!(c.take_data_channel(), DataChannel::Tls { resumed: true });
        c.mark_passive();
        handshake(true);
        assert_eq!(c.take_data_channel(), DataChannel::Tls { resumed: false });
        // A handshake that never reached a transfer (it failed) does not
        // count for the next passive port.
        c.mark_passive();
        handshake(false);
        c.mark_passive();
        assert_eq!(c.take_data_channel(), DataChannel::Plain);
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
