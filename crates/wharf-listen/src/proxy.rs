//! The PROXY protocol, v1 and v2 (SPEC section 8): behind a TCP load
//! balancer, each connection starts with a header that carries the client's
//! address, which then replaces the peer's (the balancer's) everywhere.
//!
//! The order is what keeps it safe (sshpiper's CVE-2024-35175 trusted any
//! peer's header):
//!
//! 1. A peer outside `proxy_trusted` is refused **before a byte is read**:
//!    whatever it sent, including a header, stays unread.
//! 2. A trusted peer must send one complete v1 or v2 header within
//!    [`HEADER_TIMEOUT`] and [`MAX_HEADER_LEN`] bytes; nothing is ever
//!    guessed (no header = the connection is closed, never served as the
//!    balancer's).
//! 3. Exactly the header's bytes are consumed, never one more: what follows
//!    (SSH's version line, a TLS ClientHello) is the protocol's. The socket
//!    is peeked, and only what the header's own framing allows is read: v1
//!    up to its CRLF (at most 107 bytes), v2 its 16-byte prefix, then the
//!    length that prefix gives.
//!
//! The complete header is parsed by `ppp`. v2 TLVs are skipped. A v2
//! `LOCAL` (a balancer's health check), a v1 `UNKNOWN` and a v2 `PROXY`
//! with an unspecified address family carry no client: the connection is
//! served on its real addresses. A v2 header with UNIX addresses or for
//! datagrams is refused.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// How long a trusted peer has to send its complete header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest header accepted (a v2 header's TLVs included).
pub const MAX_HEADER_LEN: usize = 1024;
/// The longest v1 header (the protocol's own limit).
const V1_MAX_LEN: usize = 107;
/// The v2 signature, and the fixed part of a v2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V2_PREFIX_LEN: usize = 16;
const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// `[server] proxy_protocol = true` with its `proxy_trusted` peers.
#[derive(Debug, Clone)]
pub struct ProxyProtocol {
    trusted: Vec<IpNet>,
    timeout: Duration,
}

/// Why a connection that must start with a PROXY header is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyRefusal {
    /// The peer is not in `proxy_trusted`: closed before a byte was read.
    Untrusted,
    /// A trusted peer, but no usable header.
    Header(HeaderError),
}

impl std::fmt::Display for ProxyRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyRefusal::Untrusted => {
                f.write_str("untrusted proxy: the peer is not in proxy_trusted")
            }
            ProxyRefusal::Header(error) => write!(f, "no valid PROXY header: {error}"),
        }
    }
}

/// What was wrong with a trusted peer's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Not complete within the deadline.
    Timeout,
    /// Longer than allowed (v1: 107 bytes; v2: [`MAX_HEADER_LEN`]).
    TooLong,
    /// The peer closed the connection before the header ended.
    Closed,
    /// The peer closed the connection without sending a byte: a balancer's
    /// plain TCP health check (AWS NLB's, HAProxy's `check` without
    /// `check-send-proxy`), or a port scan. Not worth a log line.
    Silent,
    /// Not a PROXY header, or one that cannot be used.
    Invalid(String),
    /// The socket failed.
    Io(String),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::Timeout => f.write_str("no complete header within the deadline"),
            HeaderError::TooLong => f.write_str("the header is too long"),
            HeaderError::Closed => f.write_str("the connection closed before the header ended"),
            HeaderError::Silent => f.write_str("the connection closed without sending anything"),
            HeaderError::Invalid(why) => f.write_str(why),
            HeaderError::Io(error) => write!(f, "reading the header failed: {error}"),
        }
    }
}

/// What a header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    /// The client's address and port, and the address it connected to
    /// (the balancer's).
    Client {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// No client (a health check, v1 UNKNOWN): the real addresses apply.
    Local,
}

impl ProxyProtocol {
    /// `None` when `trusted` is empty: nobody could send a header, so every
    /// connection would be refused (the configuration refuses that first).
    pub fn new(trusted: Vec<IpNet>) -> Option<ProxyProtocol> {
        ProxyProtocol::with_timeout(trusted, HEADER_TIMEOUT)
    }

    /// With another header deadline (tests).
    pub fn with_timeout(trusted: Vec<IpNet>, timeout: Duration) -> Option<ProxyProtocol> {
        (!trusted.is_empty()).then_some(ProxyProtocol { trusted, timeout })
    }

    /// Whether `ip` may send PROXY headers (an IPv4-mapped IPv6 peer as its
    /// IPv4 address too).
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.trusted
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
    }

    /// The client's address of a connection from `peer`: an untrusted peer
    /// is refused before anything is read; a trusted one's header is read
    /// (exactly, within the deadline) and its source returned, or `peer`
    /// itself for a header that carries no client. The stream is left at
    /// the first byte after the header.
    pub async fn client(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
    ) -> Result<SocketAddr, ProxyRefusal> {
        if !self.trusts(peer.ip()) {
            return Err(ProxyRefusal::Untrusted);
        }
        Ok(self.header_addresses(stream, peer).await?.0)
    }

    /// The header of a peer already known to be trusted (see
    /// [`ProxyProtocol::client`]): the client's address, and the address it
    /// connected to when the header carries one.
    pub(crate) async fn header_addresses(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
    ) -> Result<(SocketAddr, Option<SocketAddr>), ProxyRefusal> {
        let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
        match tokio::time::timeout(self.timeout, read_header(stream)).await {
            Err(_) => Err(ProxyRefusal::Header(HeaderError::Timeout)),
            Ok(Err(error)) => Err(ProxyRefusal::Header(error)),
            Ok(Ok(Carried::Local)) => Ok((peer, None)),
            Ok(Ok(Carried::Client {
                source,
                destination,
            })) => Ok((canonical(source), Some(canonical(destination)))),
        }
    }
}

/// How much more of a header may be read.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// `buf` is one whole header.
    Complete,
    /// At most this many more bytes belong to the header (v1: the CRLF may
    /// come earlier; only up to it is read).
    More(usize),
}

/// Checks what has been read so far against the two framings.
fn frame(buf: &[u8]) -> Result<Frame, HeaderError> {
    let not_proxy = || HeaderError::Invalid("not a PROXY protocol header".to_owned());
    let Some(&first) = buf.first() else {
        return Ok(Frame::More(V2_PREFIX_LEN));
    };
    match first {
        b'P' => {
            let prefix = buf.len().min(V1_PREFIX.len());
            if buf[..prefix] != V1_PREFIX[..prefix] {
                return Err(not_proxy());
            }
            if buf.last() == Some(&b'\n') {
                return if buf.len() >= 2 && buf[buf.len() - 2] == b'\r' {
                    Ok(Frame::Complete)
                } else {
                    Err(HeaderError::Invalid(
                        "a v1 header must end with CRLF".to_owned(),
                    ))
                };
            }
            if buf.len() >= V1_MAX_LEN {
                return Err(HeaderError::TooLong);
            }
            Ok(Frame::More(V1_MAX_LEN - buf.len()))
        }
        b'\r' => {
            let signature = buf.len().min(V2_SIGNATURE.len());
            if buf[..signature] != V2_SIGNATURE[..signature] {
                return Err(not_proxy());
            }
            if buf.len() < V2_PREFIX_LEN {
                return Ok(Frame::More(V2_PREFIX_LEN - buf.len()));
            }
            let length = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
            let total = V2_PREFIX_LEN + length;
            if total > MAX_HEADER_LEN {
                return Err(HeaderError::TooLong);
            }
            Ok(match total - buf.len().min(total) {
                0 => Frame::Complete,
                more => Frame::More(more),
            })
        }
        _ => Err(not_proxy()),
    }
}

/// Reads one header, exactly: every read is preceded by a peek, and takes
/// only bytes the header's framing says are its own.
pub(crate) async fn read_header(stream: &mut TcpStream) -> Result<Carried, HeaderError> {
    let io = |e: io::Error| HeaderError::Io(e.to_string());
    let mut header = [0u8; MAX_HEADER_LEN];
    let mut len = 0;
    // What may be peeked next: first a v2 prefix (the shortest v1 header,
    // "PROXY UNKNOWN\r\n", is 15 bytes, and v1 is taken up to its LF only).
    let mut more = V2_PREFIX_LEN;
    loop {
        let window = &mut header[len..len + more.min(MAX_HEADER_LEN - len)];
        let seen = stream.peek(window).await.map_err(io)?;
        if seen == 0 {
            return Err(if len == 0 {
                HeaderError::Silent
            } else {
                HeaderError::Closed
            });
        }
        // A v1 header ends at its first LF: nothing after it is taken.
        let take = if header[0] == b'P' {
            header[len..len + seen]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(seen, |lf| lf + 1)
        } else {
            seen
        };
        // Checked while still only peeked: garbage, or a header too long,
        // is refused without being consumed.
        let framed = frame(&header[..len + take])?;
        stream
            .read_exact(&mut header[len..len + take])
            .await
            .map_err(io)?;
        len += take;
        match framed {
            Frame::Complete => break,
            Frame::More(next) => more = next,
        }
    }
    parse(&header[..len])
}

/// A complete header (framed by [`frame`]) into what it carries.
fn parse(bytes: &[u8]) -> Result<Carried, HeaderError> {
    let invalid = |why: String| HeaderError::Invalid(why);
    if bytes.first() == Some(&b'P') {
        let header = ppp::v1::Header::try_from(bytes)
            .map_err(|e| invalid(format!("invalid v1 header: {e}")))?;
        if header.header.len() != bytes.len() {
            return Err(invalid("invalid v1 header: a CR before its end".to_owned()));
        }
        return Ok(match header.addresses {
            ppp::v1::Addresses::Tcp4(a) => Carried::Client {
                source: SocketAddr::new(a.source_address.into(), a.source_port),
                destination: SocketAddr::new(a.destination_address.into(), a.destination_port),
            },
            ppp::v1::Addresses::Tcp6(a) => Carried::Client {
                source: SocketAddr::new(a.source_address.into(), a.source_port),
                destination: SocketAddr::new(a.destination_address.into(), a.destination_port),
            },
            ppp::v1::Addresses::Unknown => Carried::Local,
        });
    }
    let header =
        ppp::v2::Header::try_from(bytes).map_err(|e| invalid(format!("invalid v2 header: {e}")))?;
    if header.header.len() != bytes.len() {
        return Err(invalid("invalid v2 header: its length".to_owned()));
    }
    if header.command == ppp::v2::Command::Local {
        return Ok(Carried::Local);
    }
    if header.protocol == ppp::v2::Protocol::Datagram {
        return Err(invalid(
            "a v2 header for datagrams on a TCP connection".to_owned(),
        ));
    }
    // TLVs (after the addresses) are skipped.
    match header.addresses {
        ppp::v2::Addresses::IPv4(a) => Ok(Carried::Client {
            source: SocketAddr::new(a.source_address.into(), a.source_port),
            destination: SocketAddr::new(a.destination_address.into(), a.destination_port),
        }),
        ppp::v2::Addresses::IPv6(a) => Ok(Carried::Client {
            source: SocketAddr::new(a.source_address.into(), a.source_port),
            destination: SocketAddr::new(a.destination_address.into(), a.destination_port),
        }),
        ppp::v2::Addresses::Unspecified => Ok(Carried::Local),
        ppp::v2::Addresses::Unix(_) => Err(invalid(
            "a v2 header with UNIX socket addresses carries no client address".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests;
