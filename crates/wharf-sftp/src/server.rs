//! SSH via russh: logins through the gateway, the `sftp` subsystem, and
//! nothing else (no shell, exec or forwarding).
//!
//! This module runs connections (the russh configuration, the login
//! deadline) and holds a connection's state, whose russh handler passes
//! each event to the module that owns it: `auth` (the login steps),
//! `channels` (channels, the SFTP subsystem and its data). The algorithms
//! offered are in `security_policy`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use russh::keys::{Algorithm, PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};
use tokio::io::{AsyncRead, AsyncWrite};
use wharf_audit::SessionFields;
use wharf_identity::{Identity, Protocol};
use wharf_listen::Admitted;
use wharf_session::{ConnInfo, Gateway};

use crate::pipe::Pipe;
use crate::sniff::{Negotiated, SniffStream};
pub use auth::AuthMethods;
use auth::Steps as _;
use channels::CHANNEL_WINDOW;
pub use security_policy::SecurityPolicy;

mod auth;
mod channels;
mod security_policy;

/// Everything the SFTP front-end is configured with.
#[derive(Debug)]
pub struct SftpConfig {
    pub host_keys: Vec<PrivateKey>,
    pub banner: Option<String>,
    pub idle_timeout: Duration,
    pub auth_methods: AuthMethods,
    pub security_policy: SecurityPolicy,
}

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
            local: _,
            proxy: _,
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
    /// The log fields so far, with the algorithms once negotiated.
    fn fields_now(&self) -> SessionFields {
        let mut fields = self.fields.clone();
        self.add_algorithms(&mut fields);
        fields
    }

    /// Adds the negotiated algorithms, once known, to log fields.
    fn add_algorithms(&self, fields: &mut SessionFields) {
        if let Some(negotiated) = self.negotiated.get() {
            fields.ciphers = Some(negotiated.ciphers.clone());
            fields.kex = Some(negotiated.kex.clone());
        }
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
        Ok(self.password(user, password).await)
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.key_offered(user, offer.public_key).await)
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.key_verified(user, key.public_key).await)
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        self.logged_in(session);
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.open_channel(channel, reply).await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        Ok(self.subsystem(channel_id, name, session)?)
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
        self.push_input(channel, data);
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.finish_input(channel);
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.forget_channel(channel);
        Ok(())
    }
}
