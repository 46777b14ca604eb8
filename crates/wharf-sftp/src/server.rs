//! SSH via russh: logins through the gateway, the `sftp` subsystem, and
//! nothing else (no shell, exec or forwarding).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelWriteHalf, MethodKind, MethodSet, Preferred};
use tokio::io::{AsyncRead, AsyncWrite};
use wharf_audit::SessionFields;
use wharf_identity::{Credential, Identity, Password, Protocol, fingerprint};
use wharf_listen::Admitted;
use wharf_session::{ConnInfo, Gateway};

use crate::dispatch::{self, Ended, Output};
use crate::pipe::{ChannelInput, Pipe};
use crate::sniff::{Negotiated, SniffStream};

/// `sftp_authentication_methods`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethods {
    Password,
    PublicKey,
    PublicKeyOrPassword,
    PublicKeyAndPassword,
}

impl AuthMethods {
    pub fn parse(text: &str) -> Option<AuthMethods> {
        Some(match text {
            "PASSWORD" => AuthMethods::Password,
            "PUBLIC_KEY" => AuthMethods::PublicKey,
            "PUBLIC_KEY_OR_PASSWORD" => AuthMethods::PublicKeyOrPassword,
            "PUBLIC_KEY_AND_PASSWORD" => AuthMethods::PublicKeyAndPassword,
            _ => return None,
        })
    }

    fn allows_key(self) -> bool {
        !matches!(self, AuthMethods::Password)
    }

    fn first_methods(self) -> MethodSet {
        let kinds: &[MethodKind] = match self {
            AuthMethods::Password => &[MethodKind::Password],
            AuthMethods::PublicKey | AuthMethods::PublicKeyAndPassword => &[MethodKind::PublicKey],
            AuthMethods::PublicKeyOrPassword => &[MethodKind::PublicKey, MethodKind::Password],
        };
        MethodSet::from(kinds)
    }
}

/// A named set of SSH algorithms (`server.security_policy`, SPEC section 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityPolicy {
    /// Every client of SPEC section 9: post-quantum hybrid key exchange
    /// first (ML-KEM for OpenSSH 9.9+, sntrup761 for OpenSSH 8.5-9.8),
    /// AEAD ciphers first, and CTR with HMAC-SHA2 (encrypt-and-MAC too) for
    /// libssh2 1.10 (curl, PHP). No SHA-1, no CBC, no small DH groups, no
    /// DSA, no NIST curves; strict KEX against Terrapin.
    Wharf2025_11,
    /// Audited deployments: what `ssh-audit` passes without a warning
    /// (post-quantum hybrid key exchange only, encrypt-then-MAC only).
    /// Clients without ML-KEM or sntrup761 (libssh2, paramiko, OpenSSH
    /// before 8.5) cannot connect.
    WharfRestricted2025_11,
    /// FIPS 140-approved algorithms only: no ChaCha20, no Curve25519, no Ed25519.
    WharfFips2025_11,
}

impl SecurityPolicy {
    /// Every policy name, for error messages.
    pub const NAMES: [&str; 3] = [
        "wharf-2025-11",
        "wharf-restricted-2025-11",
        "wharf-fips-2025-11",
    ];

    pub fn parse(name: &str) -> Option<SecurityPolicy> {
        match name {
            "wharf-2025-11" => Some(SecurityPolicy::Wharf2025_11),
            "wharf-restricted-2025-11" => Some(SecurityPolicy::WharfRestricted2025_11),
            "wharf-fips-2025-11" => Some(SecurityPolicy::WharfFips2025_11),
            _ => None,
        }
    }

    /// The name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            SecurityPolicy::Wharf2025_11 => Self::NAMES[0],
            SecurityPolicy::WharfRestricted2025_11 => Self::NAMES[1],
            SecurityPolicy::WharfFips2025_11 => Self::NAMES[2],
        }
    }

    /// What [`SftpServer::new`] requires of the host keys (given by their
    /// algorithms, so that keys still to be generated can be checked): at
    /// least one, and one this policy offers.
    pub fn check_host_keys(self, algorithms: &[Algorithm]) -> Result<(), String> {
        if algorithms.is_empty() {
            return Err("no host keys".to_owned());
        }
        let preferred = self.preferred();
        let usable = algorithms.iter().any(|k| {
            preferred.key.iter().any(|a| match a {
                Algorithm::Rsa { .. } => matches!(k, Algorithm::Rsa { .. }),
                other => k == other,
            })
        });
        if !usable {
            return Err(format!(
                "no host key suits the security policy {} (it offers {})",
                self.name(),
                preferred
                    .key
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(())
    }

    pub fn preferred(self) -> Preferred {
        use russh::{cipher, kex, mac};
        let extensions = [
            kex::EXTENSION_SUPPORT_AS_SERVER,
            kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
        ];
        let rsa = [
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512),
            },
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha256),
            },
        ];
        let post_quantum_kex = [
            kex::MLKEM768X25519_SHA256,
            kex::SNTRUP761X25519_SHA512,
            kex::SNTRUP761X25519_SHA512_OPENSSH,
        ];
        let classical_kex = [
            kex::CURVE25519,
            kex::CURVE25519_PRE_RFC_8731,
            kex::DH_G16_SHA512,
            kex::DH_G18_SHA512,
        ];
        let modern_ciphers = &[
            cipher::AES_128_GCM,
            cipher::AES_256_GCM,
            cipher::CHACHA20_POLY1305,
            cipher::AES_256_CTR,
            cipher::AES_192_CTR,
            cipher::AES_128_CTR,
        ];
        let key = || {
            Cow::Owned(
                [Algorithm::Ed25519]
                    .into_iter()
                    .chain(rsa.clone())
                    .collect(),
            )
        };
        match self {
            SecurityPolicy::Wharf2025_11 => Preferred {
                kex: Cow::Owned(
                    post_quantum_kex
                        .into_iter()
                        .chain(classical_kex)
                        .chain(extensions)
                        .collect(),
                ),
                key: key(),
                host_key_certificates: Cow::Borrowed(&[]),
                cipher: Cow::Borrowed(modern_ciphers),
                mac: Cow::Borrowed(&[
                    mac::HMAC_SHA256_ETM,
                    mac::HMAC_SHA512_ETM,
                    // libssh2 1.10 knows no encrypt-then-MAC.
                    mac::HMAC_SHA256,
                    mac::HMAC_SHA512,
                ]),
                compression: Cow::Borrowed(&[russh::compression::NONE]),
            },
            SecurityPolicy::WharfRestricted2025_11 => Preferred {
                // Post-quantum hybrids only: ssh-audit warns about every
                // classical key exchange.
                kex: Cow::Owned(post_quantum_kex.into_iter().chain(extensions).collect()),
                key: key(),
                host_key_certificates: Cow::Borrowed(&[]),
                cipher: Cow::Borrowed(modern_ciphers),
                mac: Cow::Borrowed(&[mac::HMAC_SHA256_ETM, mac::HMAC_SHA512_ETM]),
                compression: Cow::Borrowed(&[russh::compression::NONE]),
            },
            SecurityPolicy::WharfFips2025_11 => Preferred {
                kex: Cow::Owned(
                    [
                        kex::ECDH_SHA2_NISTP256,
                        kex::ECDH_SHA2_NISTP384,
                        kex::DH_G16_SHA512,
                        kex::DH_G18_SHA512,
                    ]
                    .into_iter()
                    .chain(extensions)
                    .collect(),
                ),
                key: Cow::Owned(rsa.into_iter().collect()),
                host_key_certificates: Cow::Borrowed(&[]),
                cipher: Cow::Borrowed(&[
                    cipher::AES_128_GCM,
                    cipher::AES_256_GCM,
                    cipher::AES_256_CTR,
                    cipher::AES_128_CTR,
                ]),
                mac: Cow::Borrowed(&[mac::HMAC_SHA256_ETM, mac::HMAC_SHA512_ETM]),
                compression: Cow::Borrowed(&[russh::compression::NONE]),
            },
        }
    }
}

/// Everything the SFTP front-end is configured with.
#[derive(Debug)]
pub struct SftpConfig {
    pub host_keys: Vec<PrivateKey>,
    pub banner: Option<String>,
    pub idle_timeout: Duration,
    pub auth_methods: AuthMethods,
    pub security_policy: SecurityPolicy,
}

/// SFTP channels one connection may open (AWS Transfer Family allows 10).
const MAX_CHANNELS: usize = 10;
/// The SSH window of a channel: the most a client may send that the SFTP
/// dispatcher has not yet taken (see `pipe.rs`).
const CHANNEL_WINDOW: u32 = 4 << 20;

/// The SFTP server: one per listener, shared by its connections.
pub struct SftpServer {
    ssh: Arc<russh::server::Config>,
    gateway: Arc<Gateway>,
    auth_methods: AuthMethods,
    banner: Option<String>,
}

impl std::fmt::Debug for SftpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpServer").finish_non_exhaustive()
    }
}

impl SftpServer {
    pub fn new(config: SftpConfig, gateway: Arc<Gateway>) -> Result<SftpServer, String> {
        let algorithms: Vec<Algorithm> = config.host_keys.iter().map(|k| k.algorithm()).collect();
        config.security_policy.check_host_keys(&algorithms)?;
        let preferred = config.security_policy.preferred();
        let ssh = russh::server::Config {
            server_id: russh::SshId::Standard(Cow::Borrowed("SSH-2.0-wharf")),
            methods: config.auth_methods.first_methods(),
            auth_rejection_time: Duration::from_secs(1),
            // OpenSSH clients probe with "none" first; answering that at
            // once keeps logins fast without helping an attacker.
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: config.host_keys,
            // The window is reopened by the dispatcher as it takes the
            // bytes, never by russh as they arrive: what a client may have
            // sent and we not yet processed is at most one window, and the
            // connection's loop never waits on us (`pipe.rs`).
            window_size: CHANNEL_WINDOW,
            manual_window_adjust: true,
            maximum_packet_size: 65535,
            // Channel data reaches us through `Handler::data`, not through
            // the channel's queue (whose read half we drop).
            channel_buffer_size: 8,
            event_buffer_size: 64,
            preferred,
            max_auth_attempts: 6,
            inactivity_timeout: Some(config.idle_timeout),
            nodelay: true,
            ..russh::server::Config::default()
        };
        Ok(SftpServer {
            ssh: Arc::new(ssh),
            gateway,
            auth_methods: config.auth_methods,
            banner: config.banner.filter(|b| !b.is_empty()),
        })
    }

    /// Serves one connection from the accept loop until it ends: it must
    /// log in within `login_grace_time`, or it is closed.
    pub async fn serve(&self, accepted: wharf_listen::Accepted) {
        let wharf_listen::Accepted {
            stream,
            peer,
            admitted,
            drain: _,
        } = accepted;
        let admitted = Arc::new(admitted);
        self.serve_stream(wharf_listen::PromptAcks::new(stream), peer, admitted)
            .await;
    }

    /// Serves one connection over any stream (tests).
    pub async fn serve_stream<S>(&self, stream: S, peer: SocketAddr, admitted: Arc<Admitted>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let negotiated = Arc::new(OnceLock::new());
        let stream = SniffStream::new(stream, negotiated.clone(), self.ssh.preferred.clone());
        let conn = ConnInfo {
            session_id: format!("{:016x}", rand::random::<u64>()),
            source_ip: peer.ip(),
            protocol: Protocol::Sftp,
            client: None,
            secure_transport: true,
        };
        let fields = self.gateway.session_fields(&conn);
        let handler = Connection {
            gateway: self.gateway.clone(),
            auth_methods: self.auth_methods,
            banner: self.banner.clone(),
            conn,
            fields,
            session: None,
            key_step: None,
            offered: None,
            channels: HashMap::new(),
            inputs: HashMap::new(),
            sftp_channels: Arc::new(AtomicUsize::new(0)),
            negotiated,
            admitted: admitted.clone(),
        };
        let session = async {
            match russh::server::run_stream(self.ssh.clone(), stream, handler).await {
                Ok(running) => {
                    // russh runs the session in a task of its own: when this
                    // future is dropped (no login in time, shutdown after
                    // the grace period, the listener's abort), the session
                    // must end with it, or its uploads would never be
                    // aborted.
                    let _abort = AbortOnDrop(running.abort_handle());
                    if let Err(error) = running.await {
                        tracing::debug!(%peer, "ssh session ended: {error}");
                    }
                }
                Err(error) => tracing::debug!(%peer, "ssh handshake failed: {error}"),
            }
        };
        // The deadline covers the SSH handshake too (a client that sends
        // nothing at all).
        tokio::select! {
            () = session => {}
            why = admitted.login_expired() => {
                tracing::info!(%peer, "{why}; closing");
            }
        }
    }
}

/// Aborts a russh session task when dropped.
struct AbortOnDrop(futures::future::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Errors of one connection's handler.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(transparent)]
    Ssh(#[from] russh::Error),
}

struct Connection {
    gateway: Arc<Gateway>,
    auth_methods: AuthMethods,
    banner: Option<String>,
    conn: ConnInfo,
    /// Log fields before login; completed into the session's at login.
    fields: SessionFields,
    session: Option<Arc<wharf_session::Session>>,
    /// PUBLIC_KEY_AND_PASSWORD: the user whose key step passed.
    key_step: Option<String>,
    /// The identity found when a key was offered, reused once its
    /// signature is verified (so the provider is asked once per key).
    offered: Option<(String, PublicKey, Identity)>,
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// The input of each running SFTP channel.
    inputs: HashMap<ChannelId, Arc<Pipe>>,
    sftp_channels: Arc<AtomicUsize>,
    negotiated: Arc<OnceLock<Negotiated>>,
    /// The connection's admission: it stops counting as "not logged in"
    /// at login.
    admitted: Arc<Admitted>,
}

impl Connection {
    fn fields_now(&self) -> SessionFields {
        let mut fields = self.fields.clone();
        if let Some(negotiated) = self.negotiated.get() {
            fields.ciphers = Some(negotiated.ciphers.clone());
            fields.kex = Some(negotiated.kex.clone());
        }
        fields
    }

    fn reject(&self) -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(self.auth_methods.first_methods()),
            partial_success: false,
        }
    }

    /// Opens the session for an authenticated identity.
    fn establish(&mut self, identity: Identity, method: &str, key: Option<&PublicKey>) -> Auth {
        let fields = self.fields_now();
        let fingerprint = key.map(fingerprint);
        match self
            .gateway
            .open_session(&fields, &self.conn, identity, method, fingerprint)
        {
            Ok(session) => {
                self.session = Some(Arc::new(session));
                Auth::Accept
            }
            // The gateway logged AUTH_FAILURE with the reason.
            Err(_) => self.reject(),
        }
    }

    async fn check_key(&mut self, user: &str, key: &PublicKey) -> Option<Identity> {
        if let Some((offered_user, offered_key, identity)) = &self.offered
            && offered_user == user
            && wharf_identity::same_key(offered_key, key)
        {
            return Some(identity.clone());
        }
        let fields = self.fields_now();
        self.gateway
            .authenticate(
                &fields,
                &self.conn,
                user,
                Credential::PublicKey(key.clone()),
                "publickey",
            )
            .await
            .ok()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The connection is gone: every channel's dispatcher stops now.
        // (DISCONNECTED is logged by the session when its last channel
        // lets go of it.)
        for pipe in self.inputs.values() {
            pipe.gone();
        }
    }
}

impl russh::server::Handler for Connection {
    type Error = ConnectionError;

    async fn authentication_banner(&mut self) -> Result<Option<String>, Self::Error> {
        Ok(self.banner.clone())
    }

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(self.reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let allowed = match self.auth_methods {
            AuthMethods::PublicKey => false,
            AuthMethods::PublicKeyAndPassword => self.key_step.as_deref() == Some(user),
            AuthMethods::Password | AuthMethods::PublicKeyOrPassword => true,
        };
        if !allowed {
            return Ok(self.reject());
        }
        let fields = self.fields_now();
        let credential = Credential::Password(Password::new(password));
        match self
            .gateway
            .authenticate(&fields, &self.conn, user, credential, "password")
            .await
        {
            Ok(identity) => Ok(self.establish(identity, "password", None)),
            Err(_) => Ok(self.reject()),
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if !self.auth_methods.allows_key() {
            return Ok(self.reject());
        }
        let key = offer.public_key.clone();
        match self.check_key(user, &key).await {
            Some(identity) => {
                self.offered = Some((user.to_owned(), key, identity));
                Ok(Auth::Accept)
            }
            None => Ok(self.reject()),
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if !self.auth_methods.allows_key() {
            return Ok(self.reject());
        }
        let key = key.public_key.clone();
        let Some(identity) = self.check_key(user, &key).await else {
            return Ok(self.reject());
        };
        self.offered = None;
        if self.auth_methods == AuthMethods::PublicKeyAndPassword {
            self.key_step = Some(user.to_owned());
            return Ok(Auth::Reject {
                proceed_with_methods: Some(MethodSet::from(&[MethodKind::Password][..])),
                partial_success: true,
            });
        }
        Ok(self.establish(identity, "publickey", Some(&key)))
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        self.admitted.logged_in();
        let client = String::from_utf8_lossy(session.remote_sshid())
            .trim()
            .to_owned();
        if let Some(user_session) = &self.session {
            let negotiated = self.negotiated.get();
            user_session.connected(|fields| {
                fields.client = Some(client);
                if let Some(negotiated) = negotiated {
                    fields.ciphers = Some(negotiated.ciphers.clone());
                    fields.kex = Some(negotiated.kex.clone());
                }
            });
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.session.is_none()
            || self.channels.len() + self.sftp_channels.load(Ordering::Relaxed) >= MAX_CHANNELS
        {
            drop(reply);
            return Ok(());
        }
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(user_session), true) = (self.session.clone(), name == "sftp") else {
            session.channel_failure(channel_id)?;
            return Ok(());
        };
        let Some(channel) = self.channels.remove(&channel_id) else {
            session.channel_failure(channel_id)?;
            return Ok(());
        };
        session.channel_success(channel_id)?;
        // Data comes through `Handler::data` into the pipe; dropping the
        // read half makes russh's queue for this channel refuse at once
        // instead of filling.
        let (read, write) = channel.split();
        drop(read);
        let write = Arc::new(write);
        let pipe = Arc::new(Pipe::default());
        self.inputs.insert(channel_id, pipe.clone());
        let input = ChannelInput::new(pipe, write.clone(), CHANNEL_WINDOW);
        let counter = self.sftp_channels.clone();
        counter.fetch_add(1, Ordering::Relaxed);
        let (gateway, conn) = (self.gateway.clone(), self.conn.clone());
        tokio::spawn(async move {
            let owner = user_session.identity.username.clone();
            let ended = dispatch::run(
                user_session.fs.clone(),
                owner,
                user_session.memory.clone(),
                input,
                ChannelOutput(write.clone()),
            )
            .await;
            if let Ended::Protocol(reason) = &ended {
                // Logged as ERROR and counted against the address (SPEC 8).
                let audit = user_session.fs.audit();
                gateway.report_violation(
                    &audit.session,
                    &conn,
                    &format!("SFTP protocol error, channel closed: {reason}"),
                );
            }
            // scp in SFTP mode takes the subsystem's exit status as its own.
            let status = if ended == Ended::Eof { 0 } else { 1 };
            let _ = write.exit_status(status).await;
            let _ = write.eof().await;
            let _ = write.close().await;
            counter.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Never waits: bounded by the channel window (see `pipe.rs`).
        if let Some(pipe) = self.inputs.get(&channel) {
            pipe.push(data);
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(pipe) = self.inputs.get(&channel) {
            pipe.finish();
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        if let Some(pipe) = self.inputs.remove(&channel) {
            pipe.gone();
        }
        Ok(())
    }
}

struct ChannelOutput(Arc<ChannelWriteHalf<Msg>>);

impl Output for ChannelOutput {
    async fn send(&mut self, data: Bytes) -> Result<(), ()> {
        self.0.data_bytes(data).await.map_err(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys_must_suit_the_security_policy() {
        let ed25519 = [Algorithm::Ed25519];
        let rsa = [Algorithm::Rsa { hash: None }];
        assert_eq!(
            SecurityPolicy::Wharf2025_11.check_host_keys(&ed25519),
            Ok(())
        );
        assert_eq!(
            SecurityPolicy::WharfFips2025_11.check_host_keys(&rsa),
            Ok(())
        );
        let refused = SecurityPolicy::WharfFips2025_11.check_host_keys(&ed25519);
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("wharf-fips-2025-11") && e.contains("rsa-sha2-512")),
            "{refused:?}"
        );
        assert_eq!(
            SecurityPolicy::Wharf2025_11.check_host_keys(&[]),
            Err("no host keys".to_owned())
        );
        for name in SecurityPolicy::NAMES {
            assert_eq!(
                SecurityPolicy::parse(name).map(SecurityPolicy::name),
                Some(name)
            );
        }
    }
}
