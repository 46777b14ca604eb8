//! Data connections: passive ports, the TLS rules of FTPS, and the three
//! kinds of transfer (a file out, a file in, a listing out).
//!
//! Passive only (PASV, EPSV), like AWS Transfer Family. A passive port
//! accepts one connection, from the control connection's address only (so
//! nobody else can steal the transfer); behind a load balancer with the
//! PROXY protocol, the address each connection's own header carries. With FTPS the connection must then
//! complete a TLS handshake (PROT P) and, with
//! `tls_session_resumption = "enforced"`, resume a session issued to a
//! control connection of the same user from the same address (see
//! [`crate::tls`] and [`crate::resume`]).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::server::TlsStream;
use wharf_listen::{Guard, ProxyProtocol};
use wharf_vfs::{FileReader, FileWriter};

use crate::listing::{ListFormat, ListSource, Pages};
use crate::tls::DataTls;

/// Bytes per read from, and per write to, the store.
const CHUNK: usize = 256 * 1024;
/// How long a passive port waits for its connection, and a data TLS
/// handshake may take.
const DATA_TIMEOUT: Duration = Duration::from_secs(30);
/// Ports tried per PASV before giving up (425).
const PASSIVE_BIND_ATTEMPTS: u32 = 64;

/// An open passive port.
pub(crate) struct PassivePort {
    listener: TcpListener,
}

impl PassivePort {
    /// Binds a port of `ports` on `ip` (the control connection's local
    /// address): consecutive ports from a random one, so a busy range still
    /// finds its free ports.
    pub(crate) fn bind(ip: IpAddr, ports: &RangeInclusive<u16>) -> io::Result<PassivePort> {
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
            if let Err(error) = socket.bind(SocketAddr::new(ip, port)) {
                last_error = error;
                continue;
            }
            match socket.listen(1) {
                Ok(listener) => return Ok(PassivePort { listener }),
                Err(error) => last_error = error,
            }
        }
        tracing::warn!(%ip, "no free passive port in {start}-{end}: {last_error}");
        Err(last_error)
    }

    pub(crate) fn port(&self) -> io::Result<u16> {
        Ok(self.listener.local_addr()?.port())
    }

    /// The data connection, from `client` only: a connection from any other
    /// address is closed and the wait goes on. With the PROXY protocol
    /// (`proxy`), the address is the one its own header carries (the peer
    /// must be trusted and send it in time, as on the control connection;
    /// a refusal is counted by `guard`, as the listeners' are): one check,
    /// whichever the address came from.
    pub(crate) async fn accept(
        self,
        client: IpAddr,
        proxy: Option<&ProxyProtocol>,
        guard: &Guard,
    ) -> Result<TcpStream, DataError> {
        let accept = async {
            loop {
                let (mut stream, peer) = self.listener.accept().await?;
                let source = match proxy {
                    None => peer,
                    Some(proxy) => match proxy.client(&mut stream, peer).await {
                        Ok(source) => source,
                        Err(refusal) => {
                            tracing::warn!(%peer, %client, "data connection refused: {refusal}");
                            guard.proxy_refused(refusal);
                            continue;
                        }
                    },
                };
                if source.ip().to_canonical() == client.to_canonical() {
                    return Ok::<TcpStream, io::Error>(stream);
                }
                tracing::warn!(%peer, %source, %client, "data connection from another address refused");
            }
        };
        match tokio::time::timeout(DATA_TIMEOUT, accept).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(stream)
            }
            Ok(Err(error)) => Err(DataError::Connect(error.to_string())),
            Err(_) => Err(DataError::Connect(
                "no data connection within 30 s".to_owned(),
            )),
        }
    }
}

/// Why a data connection could not be used.
#[derive(Debug)]
pub(crate) enum DataError {
    /// 425: it never came, or its TLS handshake failed.
    Connect(String),
    /// 550, logged as ERROR "data connection refused": it broke the FTPS
    /// rules.
    Refused(&'static str),
}

/// A data connection, plain or TLS, that fails with `TimedOut` when it
/// moves no bytes for `idle_timeout` (SPEC 2: a stalled transfer must not
/// hold its session and its slot forever; an upload cut that way leaves
/// nothing behind).
pub(crate) struct DataStream {
    io: DataIo,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

enum DataIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl DataStream {
    fn new(io: DataIo, idle: Duration) -> DataStream {
        DataStream {
            io,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }

    pub(crate) fn plain(stream: TcpStream, idle: Duration) -> DataStream {
        DataStream::new(DataIo::Plain(stream), idle)
    }

    /// Completes the TLS handshake of a data connection and checks the
    /// resumption rule: the session resumed must be one issued to a control
    /// connection of the same user from the same address (`resume.rs`).
    pub(crate) async fn tls(
        stream: TcpStream,
        data: DataTls,
        enforce_resumption: bool,
        idle: Duration,
    ) -> Result<DataStream, DataError> {
        let acceptor = tokio_rustls::TlsAcceptor::from(data.config);
        let tls = match tokio::time::timeout(DATA_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                return Err(DataError::Connect(format!(
                    "TLS handshake on the data connection failed: {error}"
                )));
            }
            Err(_) => {
                return Err(DataError::Connect(
                    "TLS handshake on the data connection timed out".to_owned(),
                ));
            }
        };
        let stream = DataStream::new(DataIo::Tls(Box::new(tls)), idle);
        if !enforce_resumption {
            return Ok(stream);
        }
        let DataIo::Tls(tls) = &stream.io else {
            return Ok(stream);
        };
        let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        // Whose session it was; a control connection that has not logged in
        // yet decides by its login.
        let ours = match &data.sessions {
            Some(sessions) if resumed => sessions.verdict(DATA_TIMEOUT).await,
            _ => false,
        };
        if !ours {
            return Err(DataError::Refused(
                "the data connection did not resume a TLS session of this user's control connections from this address (tls_session_resumption is enforced)",
            ));
        }
        Ok(stream)
    }

    /// Ends a download or listing: TLS close_notify, then FIN.
    async fn finish(&mut self) -> io::Result<()> {
        self.flush().await?;
        self.shutdown().await
    }

    /// Bytes moved: the idle timer starts over.
    fn moved(&mut self) {
        let deadline = tokio::time::Instant::now() + self.idle;
        self.timer.as_mut().reset(deadline);
    }

    /// While the connection waits: an error once it has waited too long.
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the data connection moved no bytes for {}s (idle_timeout)",
                    self.idle.as_secs()
                ),
            )),
            Poll::Pending => Poll::Pending,
        }
    }

    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
        progress: impl Fn(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(Ok(value)) => {
                if progress(&value) {
                    self.moved();
                }
                Poll::Ready(Ok(value))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => self.stalled(cx).map(Err),
        }
    }
}

impl AsyncRead for DataStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = match &mut this.io {
            DataIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            DataIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        let moved = buf.filled().len() > before;
        this.watch(cx, polled, |()| moved)
    }
}

impl AsyncWrite for DataStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = match &mut this.io {
            DataIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            DataIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        };
        this.watch(cx, polled, |n| *n > 0)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = match &mut this.io {
            DataIo::Plain(s) => Pin::new(s).poll_flush(cx),
            DataIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        };
        this.watch(cx, polled, |()| true)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = match &mut this.io {
            DataIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            DataIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        };
        this.watch(cx, polled, |()| true)
    }
}

/// Why a transfer failed.
#[derive(Debug)]
pub(crate) enum TransferError {
    /// 426: the data connection broke (a reset, TLS cut short).
    Connection(io::Error),
    /// The store failed: its own reply.
    Store(wharf_vfs::Error),
}

fn chunk_len(pos: u64, size: u64) -> usize {
    usize::try_from(size.saturating_sub(pos)).map_or(CHUNK, |left| left.min(CHUNK))
}

/// Sends a file from `start`, reading the next chunk while the previous one
/// is written; closes the file (CLOSE) when all was sent.
pub(crate) async fn send_file(
    reader: FileReader,
    start: u64,
    out: &mut DataStream,
) -> Result<u64, TransferError> {
    let size = reader.size();
    let mut pos = start;
    let mut sent = 0u64;
    let mut spare = BytesMut::with_capacity(CHUNK);
    let first = chunk_len(pos, size);
    let mut current = if first == 0 {
        BytesMut::new()
    } else {
        reader
            .read_at(pos, first, BytesMut::with_capacity(CHUNK))
            .await
            .map_err(TransferError::Store)?
    };
    while !current.is_empty() {
        pos += current.len() as u64;
        let next_len = chunk_len(pos, size);
        let mut buf = std::mem::take(&mut spare);
        buf.clear();
        let (written, next) = tokio::join!(out.write_all(&current), async {
            if next_len == 0 {
                Ok(buf)
            } else {
                reader.read_at(pos, next_len, buf).await
            }
        });
        written.map_err(TransferError::Connection)?;
        sent += current.len() as u64;
        spare = std::mem::replace(&mut current, next.map_err(TransferError::Store)?);
    }
    out.finish().await.map_err(TransferError::Connection)?;
    reader.close();
    Ok(sent)
}

/// Receives a file until the data connection ends cleanly (EOF; with TLS a
/// close_notify), then makes it visible. Any failure of the connection (a
/// reset, TLS without close_notify) or of the store discards the upload.
pub(crate) async fn receive_file(
    mut writer: FileWriter,
    input: &mut DataStream,
) -> Result<u64, TransferError> {
    let mut offset = 0u64;
    let result = loop {
        let mut buf = BytesMut::with_capacity(CHUNK);
        let mut eof = false;
        while buf.len() < CHUNK {
            match input.read_buf(&mut buf).await {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) => {}
                Err(error) => {
                    writer.abort().await;
                    return Err(TransferError::Connection(error));
                }
            }
        }
        if !buf.is_empty() {
            let len = buf.len() as u64;
            if let Err(error) = writer.write_at(offset, buf.freeze()).await {
                break Err(TransferError::Store(error));
            }
            offset += len;
        }
        if eof {
            break Ok(offset);
        }
    };
    match result {
        Ok(bytes) => {
            writer.close().await.map_err(TransferError::Store)?;
            // Our close_notify; the client may already be gone.
            let _ = input.shutdown().await;
            Ok(bytes)
        }
        Err(error) => {
            writer.abort().await;
            Err(error)
        }
    }
}

/// Streams a listing to the data connection. Returns the entries sent.
pub(crate) async fn send_listing(
    source: ListSource,
    format: ListFormat,
    out: &mut DataStream,
) -> Result<u64, TransferError> {
    let mut pages = Pages::new(source, format);
    let mut count = 0u64;
    while let Some((text, entries)) = pages.next().await.map_err(TransferError::Store)? {
        out.write_all(text.as_bytes())
            .await
            .map_err(TransferError::Connection)?;
        count += entries as u64;
    }
    out.finish().await.map_err(TransferError::Connection)?;
    Ok(count)
}
