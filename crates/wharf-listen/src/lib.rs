//! Accepting connections: a bounded accept loop with graceful shutdown.
//!
//! Knows no protocol. Each accepted TCP stream is handed to a protocol's
//! handler in its own task. On shutdown the loop stops accepting at once;
//! running connections get a grace period, then are dropped (which aborts
//! their unfinished uploads: nothing partial is left behind).
//!
//! With the PROXY protocol (`proxy.rs`) the client's address is the one
//! its header carries: the loop reads the header, and from then on that
//! address is the connection's [`Accepted::peer`], for the guard and for
//! everything the handler does.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod guard;
mod prompt_acks;
mod proxy;
pub use guard::{
    Admitted, Ban, Guard, GuardConfig, GuardCounters, LoginExpired, MAX_PENDING_PER_ADDRESS,
    PENDING_FULL, PENDING_START, Refusal, SharedBans,
};
pub use prompt_acks::PromptAcks;
pub use proxy::{HEADER_TIMEOUT, HeaderError, MAX_HEADER_LEN, ProxyProtocol, ProxyRefusal};

/// Stops every listener of a process in two steps.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Cancelled when no new connections may start.
    pub stop_accepting: CancellationToken,
    /// Cancelled when running connections must end now.
    pub abort: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tasks: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Stops accepting, waits up to `grace` for connections to finish, then
    /// aborts the rest and waits for them to unwind.
    pub async fn run(&self, grace: Duration) {
        self.stop_accepting.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "shutdown grace period over; aborting {} connections",
                self.tasks.len()
            );
            self.abort.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.tasks.wait()).await;
        }
    }
}

/// What the accept loop hands each connection's handler.
pub struct Accepted {
    /// Positioned at the protocol's first byte (after a PROXY header).
    pub stream: TcpStream,
    /// The client's address: the TCP peer's, or with the PROXY protocol the
    /// source its header carried (the peer's own for a health check). The
    /// only client address a handler gets: logs, identity providers,
    /// policies and the guard all see this one.
    pub peer: SocketAddr,
    /// The address the client connected to: this socket's own, or with the
    /// PROXY protocol the destination its header carried (the balancer's
    /// address; this socket's own for a health check). FTP announces it for
    /// passive data connections when `passive_address` is not set.
    pub local: SocketAddr,
    /// The connection counts as not logged in (against the guard's pending
    /// limits) until the handler says it did; it carries the login deadline.
    pub admitted: Admitted,
    /// Cancelled when the server starts draining (SIGTERM): a handler lets
    /// what is running finish and takes nothing new.
    pub drain: CancellationToken,
    /// The listener's PROXY protocol rule, when on: a protocol's other
    /// connections (FTP data connections) follow it too.
    pub proxy: Option<Arc<ProxyProtocol>>,
}

/// How one listener admits connections.
#[derive(Debug, Clone)]
pub struct Admission {
    /// Connections served at once; more are closed on arrival.
    pub max_connections: usize,
    /// Bans and the limits on connections that have not logged in, shared
    /// by every listener of the process.
    pub guard: Arc<Guard>,
    /// `Some`: every connection must start with a PROXY header from a
    /// trusted peer (`[server] proxy_protocol`).
    pub proxy: Option<Arc<ProxyProtocol>>,
}

/// Serves `listener` until shutdown. Each accepted connection is first put
/// to the guard (refused before a byte is read when its address is banned
/// or has too many connections that have not logged in; `on_refused` is
/// told), then to the connection limit, then handed to `handler` in a task
/// of its own.
///
/// With the PROXY protocol, a peer outside `proxy_trusted` is refused
/// before a byte is read; a trusted one takes a connection slot, and its
/// task reads the header (at most [`HEADER_TIMEOUT`]) and only then puts
/// the carried address to the guard. Connections still sending their
/// header are bounded by the connection limit and the deadline, and never
/// count against the guard's per-address tables (whose address they do not
/// have yet).
pub async fn serve<H, F, R>(
    listener: TcpListener,
    admission: Admission,
    shutdown: Shutdown,
    on_refused: R,
    handler: H,
) where
    H: Fn(Accepted) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
    R: Fn(SocketAddr, &Refusal) + Send + Sync + 'static,
{
    let limit = Arc::new(Semaphore::new(admission.max_connections));
    let handler = Arc::new(handler);
    let on_refused = Arc::new(on_refused);
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.stop_accepting.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::from_millis(5);
                accepted
            }
            Err(error) => {
                // Out of file descriptors and the like: wait, then retry.
                tracing::warn!("accept failed: {error}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        // Without the PROXY protocol the peer is the client, put to the
        // guard at once; with it, only whether the peer may speak for one.
        let admit = match &admission.proxy {
            None => match admission.guard.admit(peer.ip()) {
                Ok(admitted) => Admit::Now(admitted),
                Err(refusal) => {
                    on_refused(peer, &refusal);
                    drop(stream);
                    continue;
                }
            },
            Some(proxy) if !proxy.trusts(peer.ip()) => {
                let refusal = admission.guard.proxy_refused(ProxyRefusal::Untrusted);
                on_refused(peer, &refusal);
                drop(stream);
                continue;
            }
            Some(proxy) => Admit::AfterHeader(proxy.clone()),
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let on_refused = on_refused.clone();
        let guard = admission.guard.clone();
        let proxy = admission.proxy.clone();
        let abort = shutdown.abort.clone();
        let drain = shutdown.stop_accepting.clone();
        shutdown.tasks.spawn(async move {
            let connection = async move {
                let Ok(own) = stream.local_addr() else {
                    return;
                };
                let (stream, peer, local, admitted) = match admit {
                    Admit::Now(admitted) => (stream, peer, own, admitted),
                    Admit::AfterHeader(proxy) => {
                        match proxied(stream, peer, &proxy, &guard).await {
                            Ok((stream, client, carried, admitted)) => {
                                (stream, client, carried.unwrap_or(own), admitted)
                            }
                            // Connected and left: nothing refused (as
                            // without the PROXY protocol).
                            Err((_, None)) => return,
                            Err((address, Some(refusal))) => {
                                on_refused(address, &refusal);
                                return;
                            }
                        }
                    }
                };
                let accepted = Accepted {
                    stream,
                    peer,
                    local,
                    admitted,
                    drain,
                    proxy,
                };
                handler(accepted).await;
            };
            tokio::select! {
                () = connection => {}
                () = abort.cancelled() => {}
            }
            drop(permit);
        });
    }
}

/// When a connection's client address is put to the guard.
enum Admit {
    /// Done at accept: the peer is the client.
    Now(Admitted),
    /// A trusted balancer's connection: once its header says who the client
    /// is.
    AfterHeader(Arc<ProxyProtocol>),
}

/// What a trusted peer's header said: the stream after it, the client's
/// address, the address the client connected to (when carried).
type Proxied = (TcpStream, SocketAddr, Option<SocketAddr>, Admitted);

/// A trusted peer's connection: its header read, then its client address
/// put to the guard. On refusal, the address to report it with (and no
/// refusal for a peer that left without sending anything).
async fn proxied(
    mut stream: TcpStream,
    peer: SocketAddr,
    proxy: &ProxyProtocol,
    guard: &Arc<Guard>,
) -> Result<Proxied, (SocketAddr, Option<Refusal>)> {
    let (client, destination) = match proxy.header_addresses(&mut stream, peer).await {
        Ok(client) => client,
        Err(ProxyRefusal::Header(HeaderError::Silent)) => return Err((peer, None)),
        Err(refusal) => return Err((peer, Some(guard.proxy_refused(refusal)))),
    };
    let admitted = guard
        .admit(client.ip())
        .map_err(|refusal| (client, Some(refusal)))?;
    Ok((stream, client, destination, admitted))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn serves_until_shutdown_and_aborts_stragglers() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let admission = Admission {
            max_connections: 10,
            guard: Arc::new(Guard::new(GuardConfig::default())),
            proxy: None,
        };
        let server = tokio::spawn(serve(
            listener,
            admission,
            shutdown.clone(),
            |_, _| {},
            |accepted: Accepted| async move {
                let mut stream = accepted.stream;
                let mut byte = [0u8; 1];
                // Echo one byte, then hang until aborted.
                if stream.read_exact(&mut byte).await.is_ok() {
                    let _ = stream.write_all(&byte).await;
                }
                std::future::pending::<()>().await;
            },
        ));
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"x").await.unwrap();
        let mut echoed = [0u8; 1];
        client.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"x");
        shutdown.run(Duration::from_millis(50)).await;
        server.await.unwrap();
        // The hanging connection was dropped: the client sees EOF.
        assert_eq!(client.read(&mut echoed).await.unwrap(), 0);
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
