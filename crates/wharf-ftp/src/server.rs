//! The FTP/FTPS server: the accept loop, and what one control connection
//! needs from the server.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use wharf_identity::Protocol;
use wharf_listen::{Admitted, ProxyProtocol};
use wharf_session::{ConnInfo, Gateway};

use crate::control::Control;
use crate::session::{Endpoint, FtpSession};
use crate::tls::{TlsConfig, TlsMaterial};

/// What the binary configures for `[protocols.ftps]` (with `tls`) or
/// `[protocols.ftp]` (without).
#[derive(Debug)]
pub struct FtpConfig {
    /// `None` = plain FTP.
    pub tls: Option<TlsConfig>,
    pub passive_ports: RangeInclusive<u16>,
    /// Announced in PASV replies: an IPv4 address or a DNS name; `None` =
    /// the control connection's local address.
    pub passive_address: Option<String>,
    pub idle_timeout: Duration,
    /// The 220 greeting.
    pub banner: Option<String>,
}

const DEFAULT_GREETING: &str = "Service ready for new user.";

/// The address PASV announces.
#[derive(Debug, Clone)]
pub(crate) enum PassiveHost {
    FromConnection,
    Ip(Ipv4Addr),
    /// Resolved at each PASV (a load balancer's name).
    Dns(String),
}

/// What every control connection of a server shares.
pub(crate) struct Shared {
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) tls: Option<TlsMaterial>,
    pub(crate) passive_ports: RangeInclusive<u16>,
    pub(crate) passive_host: PassiveHost,
    pub(crate) idle_timeout: Duration,
    pub(crate) greeting: String,
}

/// An FTP or FTPS server over a gateway. Cheap to clone.
#[derive(Clone)]
pub struct FtpServer {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for FtpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FtpServer")
            .field("ftps", &self.inner.tls.is_some())
            .field("passive_ports", &self.inner.passive_ports)
            .finish_non_exhaustive()
    }
}

/// A checked FTP or FTPS configuration: the TLS material parsed (the key
/// matches the certificate), the passive ports and address checked. What
/// [`FtpServer::new`] builds before it needs a gateway; `wharf check-config`
/// builds it the same way.
pub struct FtpSettings {
    tls: Option<TlsMaterial>,
    passive_ports: RangeInclusive<u16>,
    passive_host: PassiveHost,
    idle_timeout: Duration,
    greeting: String,
}

impl std::fmt::Debug for FtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FtpSettings")
            .field("ftps", &self.tls.is_some())
            .field("passive_ports", &self.passive_ports)
            .finish_non_exhaustive()
    }
}

impl FtpSettings {
    pub fn new(config: FtpConfig) -> Result<FtpSettings, String> {
        let ports = config.passive_ports;
        if *ports.start() == 0 || ports.start() > ports.end() {
            return Err(format!(
                "passive_ports: {}-{} is not a range of ports",
                ports.start(),
                ports.end()
            ));
        }
        let passive_host = match config.passive_address.as_deref().map(str::trim) {
            None | Some("") => PassiveHost::FromConnection,
            Some(text) => match text.parse::<IpAddr>() {
                Ok(IpAddr::V4(ip)) => PassiveHost::Ip(ip),
                Ok(IpAddr::V6(_)) => {
                    return Err(format!(
                        "passive_address: {text} is IPv6; PASV announces IPv4 addresses or DNS names only"
                    ));
                }
                Err(_) => PassiveHost::Dns(text.to_owned()),
            },
        };
        let tls = match config.tls {
            Some(tls) => Some(TlsMaterial::new(tls).map_err(|e| format!("tls: {e}"))?),
            None => None,
        };
        let greeting = match config.banner.filter(|b| !b.trim().is_empty()) {
            Some(banner) => banner.replace(['\r', '\n'], " "),
            None => DEFAULT_GREETING.to_owned(),
        };
        Ok(FtpSettings {
            tls,
            passive_ports: ports,
            passive_host,
            idle_timeout: config.idle_timeout.max(Duration::from_secs(1)),
            greeting,
        })
    }
}

impl FtpServer {
    pub fn new(config: FtpConfig, gateway: Arc<Gateway>) -> Result<FtpServer, String> {
        Ok(FtpServer::with_settings(FtpSettings::new(config)?, gateway))
    }

    pub fn with_settings(settings: FtpSettings, gateway: Arc<Gateway>) -> FtpServer {
        FtpServer {
            inner: Arc::new(Shared {
                gateway,
                tls: settings.tls,
                passive_ports: settings.passive_ports,
                passive_host: settings.passive_host,
                idle_timeout: settings.idle_timeout,
                greeting: settings.greeting,
            }),
        }
    }

    /// Whether this server speaks FTPS (explicit AUTH TLS).
    pub fn is_ftps(&self) -> bool {
        self.inner.tls.is_some()
    }

    /// Serves one connection from the accept loop (`wharf_listen::serve`)
    /// until it ends: it must log in within `login_grace_time`; when the
    /// server drains, it is closed between commands (421), a running
    /// transfer finishing first. Dropping the future ends the session:
    /// transfers are aborted and the control connection closed.
    pub async fn serve_connection(&self, accepted: wharf_listen::Accepted) {
        let wharf_listen::Accepted {
            stream,
            peer,
            local: dialed,
            admitted,
            drain,
            proxy,
        } = accepted;
        self.run(stream, (peer, dialed), drain, admitted, proxy)
            .await;
    }

    /// `peer` is the client's address and `dialed` the address it connected
    /// to (with the PROXY protocol, those its header carried); `proxy`: the
    /// listener's PROXY protocol rule, which the data connections follow
    /// too.
    async fn run(
        &self,
        stream: TcpStream,
        (peer, dialed): (SocketAddr, SocketAddr),
        drain: CancellationToken,
        admitted: Admitted,
        proxy: Option<Arc<ProxyProtocol>>,
    ) {
        let _ = stream.set_nodelay(true);
        // ABOR may come as urgent data (ftplib sends it with MSG_OOB): keep
        // the urgent byte in the stream.
        let _ = socket2::SockRef::from(&stream).set_out_of_band_inline(true);
        let local = match stream.local_addr() {
            Ok(own) => Endpoint { own, dialed },
            Err(error) => {
                tracing::warn!(%peer, "ftp connection setup failed: {error}");
                return;
            }
        };
        let tls = match &self.inner.tls {
            Some(material) => match material.for_connection(peer.ip()) {
                Ok(tls) => Some(tls),
                Err(error) => {
                    tracing::error!(%peer, "cannot set up TLS for an FTPS session: {error}");
                    return;
                }
            },
            None => None,
        };
        let protocol = if tls.is_some() {
            Protocol::Ftps
        } else {
            Protocol::Ftp
        };
        let info = ConnInfo {
            session_id: format!("{:016x}", rand::random::<u64>()),
            source_ip: peer.ip(),
            protocol,
            client: None,
            secure_transport: false,
        };
        let mut session = FtpSession::new(
            self.inner.clone(),
            Control::new(stream),
            info,
            local,
            tls,
            admitted,
            proxy,
        );
        session.run(drain).await;
    }
}
