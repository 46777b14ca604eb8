//! The FTP/FTPS server: our accept loop, one libunftp server per control
//! connection, and the connection's shared state.
//!
//! libunftp only listens by address, so wharf accepts connections itself and
//! hands each to `Server::service` of a libunftp server built for that
//! connection. Building per connection is cheap (closures and `Arc`s) and
//! gives each connection its own rustls configuration, which is how data
//! connections are checked against their control connection (see
//! [`crate::tls`]).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use libunftp::options::{ActivePassiveMode, Binder, FtpsRequired, PassiveHost, SiteMd5};
use libunftp::{Server, ServerBuilder};
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wharf_audit::{Activity, Event};
use wharf_identity::Protocol;
use wharf_session::{ConnInfo, Gateway, Session};
use wharf_vfs::{AuditContext, VirtualPath};

use crate::auth::{FtpUser, GatewayAuthenticator, SessionProvider};
use crate::backend::Backend;
use crate::tls::{HandshakeCounters, Resumption, TlsConfig, TlsMaterial};

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

/// An FTP or FTPS server over a gateway. Cheap to clone.
#[derive(Clone)]
pub struct FtpServer {
    inner: Arc<Inner>,
}

struct Inner {
    gateway: Arc<Gateway>,
    tls: Option<Arc<TlsMaterial>>,
    passive_ports: RangeInclusive<u16>,
    passive_host: PassiveHost,
    idle_timeout_secs: u64,
    greeting: &'static str,
    logger: slog::Logger,
}

impl std::fmt::Debug for FtpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FtpServer")
            .field("ftps", &self.inner.tls.is_some())
            .field("passive_ports", &self.inner.passive_ports)
            .finish_non_exhaustive()
    }
}

impl FtpServer {
    pub fn new(config: FtpConfig, gateway: Arc<Gateway>) -> Result<FtpServer, String> {
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
            Some(tls) => Some(Arc::new(
                TlsMaterial::new(tls).map_err(|e| format!("tls: {e}"))?,
            )),
            None => None,
        };
        // libunftp wants a `&'static str`: one greeting per server, leaked.
        let greeting: &'static str = match config.banner.filter(|b| !b.trim().is_empty()) {
            Some(banner) => Box::leak(banner.replace(['\r', '\n'], " ").into_boxed_str()),
            None => DEFAULT_GREETING,
        };
        Ok(FtpServer {
            inner: Arc::new(Inner {
                gateway,
                tls,
                passive_ports: ports,
                passive_host,
                idle_timeout_secs: config.idle_timeout.as_secs().max(1),
                greeting,
                logger: crate::log::logger(),
            }),
        })
    }

    /// Whether this server speaks FTPS (explicit AUTH TLS).
    pub fn is_ftps(&self) -> bool {
        self.inner.tls.is_some()
    }

    /// Accepts connections on `listener` until `shutdown` is cancelled, then
    /// closes each session as soon as it has no transfer running and returns
    /// when all have ended. Dropping the future aborts what is left:
    /// transfers stop (unfinished uploads leave nothing) and control
    /// connections are closed.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let tasks = TaskTracker::new();
        let abort = CancellationToken::new();
        let _abort_when_dropped = abort.clone().drop_guard();
        let mut backoff = Duration::from_millis(5);
        loop {
            let accepted = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(5);
                    tasks.spawn(self.inner.clone().run(
                        stream,
                        peer,
                        shutdown.clone(),
                        abort.clone(),
                    ));
                }
                Err(error) => {
                    // Out of file descriptors and the like: wait, then retry.
                    tracing::warn!("ftp accept failed: {error}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        drop(listener);
        tasks.close();
        tasks.wait().await;
    }

    /// Serves one accepted connection until it ends (for an accept loop of
    /// the caller's, like `wharf_listen::serve`). Dropping the future ends
    /// the session: transfers are aborted and the control connection closed.
    pub async fn serve_connection(&self, stream: TcpStream, peer: SocketAddr) {
        self.inner
            .clone()
            .run(
                stream,
                peer,
                CancellationToken::new(),
                CancellationToken::new(),
            )
            .await;
    }
}

impl Inner {
    async fn run(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        drain: CancellationToken,
        abort: CancellationToken,
    ) {
        let _ = stream.set_nodelay(true);
        // A second handle on the control socket, to close it under libunftp
        // (which owns the stream and has no way to be told to stop).
        let (stream, control) = match stream
            .into_std()
            .and_then(|s| Ok((s.try_clone()?, s)))
            .and_then(|(control, s)| Ok((TcpStream::from_std(s)?, control)))
        {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%peer, "ftp connection setup failed: {error}");
                return;
            }
        };
        let conn = Arc::new(Conn::new(&self, peer));
        let guard = ConnGuard {
            conn: conn.clone(),
            control,
        };
        let server = match self.libunftp_server(conn.clone()) {
            Ok(server) => server,
            Err(error) => {
                tracing::error!(%peer, "cannot set up the FTP session: {error}");
                return;
            }
        };
        let service = server.service(stream);
        tokio::pin!(service);
        tokio::select! {
            _ = &mut service => {}
            () = async {
                drain.cancelled().await;
                conn.idle().await;
            } => {
                // Shutting down and no transfer running: end the session.
                guard.close_control();
                tokio::select! {
                    _ = &mut service => {}
                    () = abort.cancelled() => {}
                }
            }
            () = abort.cancelled() => {}
        }
        drop(guard);
    }

    fn libunftp_server(&self, conn: Arc<Conn>) -> Result<Server<Backend, FtpUser>, String> {
        let backend_conn = conn.clone();
        let mut builder = ServerBuilder::<Backend, FtpUser>::with_user_detail_provider(
            Box::new(move || Backend {
                conn: backend_conn.clone(),
            }),
            Arc::new(SessionProvider { conn: conn.clone() }),
        )
        .authenticator(Arc::new(GatewayAuthenticator { conn: conn.clone() }))
        .greeting(self.greeting)
        .passive_ports(self.passive_ports.clone())
        .passive_host(self.passive_host.clone())
        .active_passive_mode(ActivePassiveMode::PassiveOnly)
        .idle_session_timeout(self.idle_timeout_secs)
        .sitemd5(SiteMd5::None)
        .binder(PassiveBinder {
            counters: conn.tls.as_ref().map(|tls| tls.counters.clone()),
        })
        .logger(self.logger.clone());
        if let (Some(material), Some(tls)) = (&self.tls, &conn.tls) {
            let config = material.connection_config(tls.counters.clone())?;
            builder = builder
                .ftps_manual::<PathBuf>(config)
                .ftps_required(FtpsRequired::All, FtpsRequired::All);
        }
        builder.build().map_err(|e| e.to_string())
    }
}

/// Opens the passive data ports (PASV, EPSV) of one control connection, and
/// tells the TLS counters that a new data connection is coming.
#[derive(Debug)]
struct PassiveBinder {
    counters: Option<Arc<HandshakeCounters>>,
}

/// Ports tried per PASV before giving up (425).
const PASSIVE_BIND_ATTEMPTS: u32 = 64;

#[async_trait::async_trait]
impl Binder for PassiveBinder {
    async fn bind(&mut self, ip: IpAddr, ports: RangeInclusive<u16>) -> io::Result<TcpSocket> {
        if let Some(counters) = &self.counters {
            counters.mark_passive();
        }
        bind_passive(ip, ports)
    }
}

/// Binds a port of the range on the control connection's local address:
/// consecutive ports from a random one, so a busy range still finds the
/// free ports.
fn bind_passive(ip: IpAddr, ports: RangeInclusive<u16>) -> io::Result<TcpSocket> {
    let (start, end) = (u32::from(*ports.start()), u32::from(*ports.end()));
    let span = end - start + 1;
    let first = rand::random_range(0..span);
    let mut last_error = io::Error::new(io::ErrorKind::AddrInUse, "no passive port is free");
    for i in 0..span.min(PASSIVE_BIND_ATTEMPTS) {
        let Ok(port) = u16::try_from(start + (first + i) % span) else {
            continue;
        };
        let socket = match ip {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(SocketAddr::new(ip, port)) {
            Ok(()) => return Ok(socket),
            Err(error) => last_error = error,
        }
    }
    tracing::warn!(%ip, "no free passive port in {start}-{end}: {last_error}");
    Err(last_error)
}

/// Closes the control connection, aborts running transfers and logs
/// DISCONNECTED when the connection's task ends, however it ends.
struct ConnGuard {
    conn: Arc<Conn>,
    control: std::net::TcpStream,
}

impl ConnGuard {
    fn close_control(&self) {
        let _ = self.control.shutdown(std::net::Shutdown::Both);
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.conn.abort.cancel();
        self.close_control();
        self.conn.disconnected();
    }
}

/// FTPS state of one connection.
pub(crate) struct ConnTls {
    pub(crate) counters: Arc<HandshakeCounters>,
    pub(crate) resumption: Resumption,
}

/// What the authenticator, the user provider and the backend of one control
/// connection share.
pub(crate) struct Conn {
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) info: ConnInfo,
    pub(crate) tls: Option<ConnTls>,
    /// Cancelled when the connection ends: running transfers stop.
    pub(crate) abort: CancellationToken,
    transfers: watch::Sender<usize>,
    state: Mutex<ConnState>,
}

struct ConnState {
    /// Opened by the authenticator, taken by the user provider.
    pending: Option<Session>,
    /// Set at login, for DISCONNECTED.
    audit: Option<AuditContext>,
    /// The last directory CWD went to (libunftp keeps its own).
    cwd: VirtualPath,
}

impl Conn {
    fn new(server: &Inner, peer: SocketAddr) -> Conn {
        let protocol = if server.tls.is_some() {
            Protocol::Ftps
        } else {
            Protocol::Ftp
        };
        Conn {
            gateway: server.gateway.clone(),
            info: ConnInfo {
                session_id: format!("{:016x}", rand::random::<u64>()),
                source_ip: peer.ip(),
                protocol,
                client: None,
                secure_transport: false,
            },
            tls: server.tls.as_ref().map(|material| ConnTls {
                counters: Arc::new(HandshakeCounters::default()),
                resumption: material.resumption,
            }),
            abort: CancellationToken::new(),
            transfers: watch::Sender::new(0),
            state: Mutex::new(ConnState {
                pending: None,
                audit: None,
                cwd: VirtualPath::root(),
            }),
        }
    }

    pub(crate) fn logged_in(&self, audit: AuditContext, session: Session) {
        let mut state = self.state.lock();
        state.audit = Some(audit);
        state.pending = Some(session);
    }

    pub(crate) fn take_session(&self) -> Option<Session> {
        self.state.lock().pending.take()
    }

    pub(crate) fn cwd(&self) -> VirtualPath {
        self.state.lock().cwd.clone()
    }

    pub(crate) fn set_cwd(&self, path: VirtualPath) {
        self.state.lock().cwd = path;
    }

    /// Counts a running transfer until the guard is dropped.
    pub(crate) fn transfer(self: &Arc<Self>) -> TransferGuard {
        self.transfers.send_modify(|n| *n += 1);
        TransferGuard { conn: self.clone() }
    }

    async fn idle(&self) {
        let mut running = self.transfers.subscribe();
        let _ = running.wait_for(|n| *n == 0).await;
    }

    fn disconnected(&self) {
        let audit = self.state.lock().audit.take();
        if let Some(audit) = audit {
            audit
                .log
                .record(Activity::Disconnected, &audit.session, &Event::default());
        }
    }
}

pub(crate) struct TransferGuard {
    conn: Arc<Conn>,
}

impl Drop for TransferGuard {
    fn drop(&mut self) {
        self.conn
            .transfers
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}
