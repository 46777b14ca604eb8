#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ppp::v2::{Builder, Command, IPv4, IPv6, Protocol, Type, Version};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::*;
use crate::{Accepted, Admission, Guard, GuardConfig, Refusal, Shutdown, serve};

/// A connected pair: (client, server side, the server side's peer).
async fn pair() -> (TcpStream, TcpStream, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, peer) = listener.accept().await.unwrap();
    (client, server, peer)
}

fn trusting(net: &str) -> ProxyProtocol {
    ProxyProtocol::new(vec![net.parse().unwrap()]).unwrap()
}

fn quick(net: &str) -> ProxyProtocol {
    ProxyProtocol::with_timeout(vec![net.parse().unwrap()], Duration::from_millis(300)).unwrap()
}

/// What is left to read on `server`, without waiting for more than `len`.
async fn rest(server: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut rest = vec![0u8; len];
    tokio::time::timeout(Duration::from_secs(5), server.read_exact(&mut rest))
        .await
        .unwrap()
        .unwrap();
    rest
}

/// The bytes in `server`'s receive queue, unconsumed (peeked).
async fn unread(server: &TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let n = tokio::time::timeout_at(deadline, server.peek(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n >= len || n == 0 {
            buf.truncate(n);
            return buf;
        }
        // Not all there yet: wait for more (peek returns at once when
        // anything is queued).
        server.readable().await.unwrap();
        tokio::task::yield_now().await;
    }
}

fn v2(command: Command, addresses: impl Into<ppp::v2::Addresses>) -> Vec<u8> {
    Builder::with_addresses(Version::Two | command, Protocol::Stream, addresses)
        .build()
        .unwrap()
}

/// Sends `header` then `after` in one write, and checks the source read and
/// that exactly `after` is left for the protocol.
async fn through(proxy: &ProxyProtocol, header: &[u8], after: &[u8]) -> SocketAddr {
    let (mut client, mut server, peer) = pair().await;
    client.write_all(&[header, after].concat()).await.unwrap();
    let source = proxy.client(&mut server, peer).await.unwrap();
    assert_eq!(rest(&mut server, after.len()).await, after);
    source
}

#[tokio::test]
async fn v1_ipv4_and_ipv6_carry_the_client_and_leave_the_protocol_s_bytes() {
    let proxy = trusting("127.0.0.0/8");
    let source = through(
        &proxy,
        b"PROXY TCP4 192.0.2.1 198.51.100.1 51000 22\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n",
    )
    .await;
    assert_eq!(source, "192.0.2.1:51000".parse().unwrap());
    let source = through(
        &proxy,
        b"PROXY TCP6 2001:db8::1 2001:db8::2 51000 22\r\n",
        b"SSH-2.0-x\r\n",
    )
    .await;
    assert_eq!(source, "[2001:db8::1]:51000".parse().unwrap());
    // The longest TCP6 header (104 bytes).
    let longest = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(longest.len(), 104);
    let source = through(&proxy, longest, b"after").await;
    assert_eq!(source.port(), 65535);
    // IPv4-mapped sources are IPv4 addresses (bans, logs, policies).
    let source = through(&proxy, b"PROXY TCP6 ::ffff:192.0.2.9 ::1 1 2\r\n", b"x").await;
    assert_eq!(source, "192.0.2.9:1".parse().unwrap());
}

#[tokio::test]
async fn v1_unknown_and_v2_local_are_served_on_the_real_addresses() {
    let proxy = trusting("127.0.0.1/32");
    let (mut client, mut server, peer) = pair().await;
    client
        .write_all(b"PROXY UNKNOWN\r\nUSER x\r\n")
        .await
        .unwrap();
    assert_eq!(proxy.client(&mut server, peer).await.unwrap(), peer);
    assert_eq!(rest(&mut server, 8).await, b"USER x\r\n");
    // UNKNOWN may be followed by anything up to the CRLF.
    let (mut client, mut server, peer) = pair().await;
    client
        .write_all(b"PROXY UNKNOWN ffff:: ffff:: 1 2\r\nZ")
        .await
        .unwrap();
    assert_eq!(proxy.client(&mut server, peer).await.unwrap(), peer);
    assert_eq!(rest(&mut server, 1).await, b"Z");
    // v2 LOCAL: a health check, addresses or not.
    let local = Builder::new(Version::Two | Command::Local, 0)
        .build()
        .unwrap();
    assert_eq!(local.len(), 16);
    let (mut client, mut server, peer) = pair().await;
    client
        .write_all(&[&local[..], b"Q"].concat())
        .await
        .unwrap();
    assert_eq!(proxy.client(&mut server, peer).await.unwrap(), peer);
    assert_eq!(rest(&mut server, 1).await, b"Q");
    let local = v2(
        Command::Local,
        IPv4::new([192, 0, 2, 1], [192, 0, 2, 2], 1, 2),
    );
    let (mut client, mut server, peer) = pair().await;
    client
        .write_all(&[&local[..], b"Q"].concat())
        .await
        .unwrap();
    assert_eq!(proxy.client(&mut server, peer).await.unwrap(), peer);
    assert_eq!(rest(&mut server, 1).await, b"Q");
}

#[tokio::test]
async fn headers_carry_the_address_the_client_connected_to() {
    let proxy = trusting("127.0.0.1/32");
    for (header, destination) in [
        (
            b"PROXY TCP4 192.0.2.1 198.51.100.1 51000 21\r\n".to_vec(),
            "198.51.100.1:21",
        ),
        (
            v2(
                Command::Proxy,
                IPv6::new(
                    [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1],
                    [0, 0, 0, 0, 0, 0xffff, 0xcb00, 0x710a],
                    40000,
                    990,
                ),
            ),
            "203.0.113.10:990",
        ),
    ] {
        let (mut client, mut server, peer) = pair().await;
        client.write_all(&header).await.unwrap();
        let (_, carried) = proxy.header_addresses(&mut server, peer).await.unwrap();
        assert_eq!(carried, Some(destination.parse().unwrap()));
    }
    // A health check carries none: the real addresses apply.
    let (mut client, mut server, peer) = pair().await;
    client.write_all(b"PROXY UNKNOWN\r\n").await.unwrap();
    assert_eq!(
        proxy.header_addresses(&mut server, peer).await.unwrap(),
        (peer, None)
    );
}

#[tokio::test]
async fn v2_ipv4_ipv6_and_tlvs() {
    let proxy = trusting("127.0.0.1/32");
    let header = v2(
        Command::Proxy,
        IPv4::new([203, 0, 113, 7], [198, 51, 100, 1], 40000, 2222),
    );
    let source = through(&proxy, &header, b"\x16\x03\x01").await;
    assert_eq!(source, "203.0.113.7:40000".parse().unwrap());
    let header = v2(
        Command::Proxy,
        IPv6::new(
            "2001:db8::7".parse::<Ipv6Addr>().unwrap(),
            "2001:db8::1".parse::<Ipv6Addr>().unwrap(),
            40001,
            22,
        ),
    );
    let source = through(&proxy, &header, b"SSH-2.0-x\r\n").await;
    assert_eq!(source, "[2001:db8::7]:40001".parse().unwrap());
    // TLVs (HAProxy's unique id, ALPN, a NOOP) are skipped.
    let header = Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        IPv4::new([203, 0, 113, 8], [198, 51, 100, 1], 1, 2),
    )
    .write_tlv(Type::ALPN, b"h2")
    .unwrap()
    .write_tlv(Type::UniqueId, &[7u8; 64])
    .unwrap()
    .write_tlv(Type::NoOp, &[0u8; 200])
    .unwrap()
    .build()
    .unwrap();
    let source = through(&proxy, &header, b"SSH-2.0-x\r\n").await;
    assert_eq!(source, "203.0.113.8:1".parse().unwrap());
    // The largest header accepted: 1 KiB in all.
    let pad = MAX_HEADER_LEN - V2_PREFIX_LEN - 12 - 3;
    let header = Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        IPv4::new([203, 0, 113, 9], [198, 51, 100, 1], 1, 2),
    )
    .write_tlv(Type::NoOp, &vec![0u8; pad])
    .unwrap()
    .build()
    .unwrap();
    assert_eq!(header.len(), MAX_HEADER_LEN);
    let source = through(&proxy, &header, b"x").await;
    assert_eq!(source, "203.0.113.9:1".parse().unwrap());
}

#[tokio::test]
async fn a_header_split_into_one_byte_writes_is_read_exactly() {
    let proxy = trusting("127.0.0.1/32");
    let v2_header = v2(
        Command::Proxy,
        IPv4::new([203, 0, 113, 7], [198, 51, 100, 1], 40000, 2222),
    );
    for (header, expected) in [
        (
            b"PROXY TCP4 192.0.2.1 198.51.100.1 51000 22\r\n".to_vec(),
            "192.0.2.1:51000",
        ),
        (v2_header, "203.0.113.7:40000"),
    ] {
        let (mut client, mut server, peer) = pair().await;
        client.set_nodelay(true).unwrap();
        let writer = tokio::spawn(async move {
            // The last header byte and the protocol's first bytes go
            // together: the reader must stop between them.
            let (head, last) = header.split_at(header.len() - 1);
            for byte in head {
                client.write_all(&[*byte]).await.unwrap();
                // Pacing only, so that the bytes arrive as separate
                // segments; the test's outcome does not depend on it.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            client
                .write_all(&[last, b"SSH-2.0-x\r\n"].concat())
                .await
                .unwrap();
            client
        });
        let source = proxy.client(&mut server, peer).await.unwrap();
        assert_eq!(source, expected.parse().unwrap());
        assert_eq!(rest(&mut server, 11).await, b"SSH-2.0-x\r\n");
        drop(writer.await.unwrap());
    }
}

#[tokio::test]
async fn too_long_headers_are_refused_without_reading_past_the_limit() {
    let proxy = trusting("127.0.0.1/32");
    // v1 without a CRLF within 107 bytes.
    let (mut client, mut server, peer) = pair().await;
    let long = [&b"PROXY TCP4 "[..], &[b'1'; 200]].concat();
    client.write_all(&long).await.unwrap();
    assert_eq!(
        proxy.client(&mut server, peer).await,
        Err(ProxyRefusal::Header(HeaderError::TooLong))
    );
    // v2 announcing 65,535 bytes: refused on its 16-byte prefix, nothing
    // after it read.
    let (mut client, mut server, peer) = pair().await;
    let mut huge = v2(Command::Proxy, IPv4::new([1, 2, 3, 4], [5, 6, 7, 8], 1, 2));
    huge[14] = 0xff;
    huge[15] = 0xff;
    client.write_all(&huge).await.unwrap();
    assert_eq!(
        proxy.client(&mut server, peer).await,
        Err(ProxyRefusal::Header(HeaderError::TooLong))
    );
    assert_eq!(unread(&server, huge.len()).await, huge);
    // One byte over 1 KiB.
    let (mut client, mut server, peer) = pair().await;
    let over = Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        IPv4::new([203, 0, 113, 9], [198, 51, 100, 1], 1, 2),
    )
    .write_tlv(
        Type::NoOp,
        &vec![0u8; MAX_HEADER_LEN - V2_PREFIX_LEN - 12 - 3 + 1],
    )
    .unwrap()
    .build()
    .unwrap();
    client.write_all(&over).await.unwrap();
    assert_eq!(
        proxy.client(&mut server, peer).await,
        Err(ProxyRefusal::Header(HeaderError::TooLong))
    );
}

#[tokio::test]
async fn a_slow_or_silent_peer_times_out_and_one_that_leaves_is_closed() {
    assert_eq!(HEADER_TIMEOUT, Duration::from_secs(3));
    let proxy = quick("127.0.0.1/32");
    let (mut client, mut server, peer) = pair().await;
    client.write_all(b"PROXY TCP4 192.0.2.1 ").await.unwrap();
    assert_eq!(
        proxy.client(&mut server, peer).await,
        Err(ProxyRefusal::Header(HeaderError::Timeout))
    );
    let (client, mut server, peer) = pair().await;
    let started = std::time::Instant::now();
    assert_eq!(
        proxy.client(&mut server, peer).await,
        Err(ProxyRefusal::Header(HeaderError::Timeout))
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    drop(client);
    let (mut client, mut server, peer) = pair().await;
    client.write_all(b"\r\n\r\n\0\r\nQU").await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(
        proxy.client(&mut server, peer).await,
        Err(ProxyRefusal::Header(HeaderError::Closed))
    );
    // A plain TCP health check: connected, and left.
    let (client, mut server, peer) = pair().await;
    drop(client);
    assert_eq!(
        proxy.client(&mut server, peer).await,
        Err(ProxyRefusal::Header(HeaderError::Silent))
    );
}

#[tokio::test]
async fn garbage_is_refused_and_nothing_is_guessed() {
    let proxy = trusting("127.0.0.1/32");
    for garbage in [
        &b"SSH-2.0-OpenSSH_9.2\r\n"[..],
        b"\x16\x03\x01\x02\x00",
        b"PROXZ TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"\r\n\r\n\0\r\nQUIT\r",
        b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c1234567890ab",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r 2\r\n",
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY \xff\xfe\r\n",
        b"PROXY\r\n",
    ] {
        let (mut client, mut server, peer) = pair().await;
        client.write_all(garbage).await.unwrap();
        let result = proxy.client(&mut server, peer).await;
        assert!(
            matches!(result, Err(ProxyRefusal::Header(HeaderError::Invalid(_)))),
            "{:?}: {result:?}",
            String::from_utf8_lossy(garbage)
        );
    }
    // Not a PROXY header at all: refused on its first byte, nothing read.
    let (mut client, mut server, peer) = pair().await;
    client.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await.unwrap();
    assert!(proxy.client(&mut server, peer).await.is_err());
    assert_eq!(unread(&server, 21).await, b"SSH-2.0-OpenSSH_9.2\r\n");
    // v2 with UNIX addresses or for datagrams.
    let unix = Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        ppp::v2::Unix::new([1; 108], [2; 108]),
    )
    .build()
    .unwrap();
    let datagram = Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Datagram,
        IPv4::new([1, 2, 3, 4], [5, 6, 7, 8], 1, 2),
    )
    .build()
    .unwrap();
    for header in [unix, datagram] {
        let (mut client, mut server, peer) = pair().await;
        client.write_all(&header).await.unwrap();
        assert!(matches!(
            proxy.client(&mut server, peer).await,
            Err(ProxyRefusal::Header(HeaderError::Invalid(_)))
        ));
    }
    // A valid header followed by garbage: the header is the balancer's, the
    // garbage the protocol's problem, left to it untouched.
    let source = through(
        &proxy,
        b"PROXY TCP4 192.0.2.1 198.51.100.1 1 2\r\n",
        b"PROXY TCP4 10.0.0.1 10.0.0.1 1 2\r\n",
    )
    .await;
    assert_eq!(source.ip(), IpAddr::from(Ipv4Addr::new(192, 0, 2, 1)));
}

#[tokio::test]
async fn an_untrusted_peer_is_refused_before_a_byte_is_read() {
    // Trusting another address: even a valid header, even LOCAL, stays
    // unread.
    let proxy = trusting("127.0.0.9/32");
    let local = Builder::new(Version::Two | Command::Local, 0)
        .build()
        .unwrap();
    for header in [
        b"PROXY TCP4 192.0.2.1 198.51.100.1 51000 22\r\n".to_vec(),
        local,
    ] {
        let (mut client, mut server, peer) = pair().await;
        client.write_all(&header).await.unwrap();
        assert_eq!(
            proxy.client(&mut server, peer).await,
            Err(ProxyRefusal::Untrusted)
        );
        assert_eq!(unread(&server, header.len()).await, header);
    }
}

#[test]
fn trust_is_by_cidr_and_ipv4_mapped_peers_are_their_ipv4_address() {
    let proxy = ProxyProtocol::new(vec![
        "10.0.0.0/8".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ])
    .unwrap();
    assert!(proxy.trusts("10.1.2.3".parse().unwrap()));
    assert!(proxy.trusts("::ffff:10.1.2.3".parse().unwrap()));
    assert!(proxy.trusts("2001:db8::5".parse().unwrap()));
    assert!(!proxy.trusts("11.0.0.1".parse().unwrap()));
    assert!(!proxy.trusts("::ffff:11.0.0.1".parse().unwrap()));
    assert!(!proxy.trusts("2001:db9::5".parse().unwrap()));
    assert!(ProxyProtocol::new(Vec::new()).is_none());
}

/// The accept loop with the PROXY protocol on, trusting `net`: the refusals
/// it reports, and the addresses its handler was given.
struct Listener {
    address: SocketAddr,
    guard: Arc<Guard>,
    refused: Arc<parking_lot::Mutex<Vec<(SocketAddr, Refusal)>>>,
    /// Each connection served: its client, the address it connected to,
    /// and its first bytes.
    served: tokio::sync::mpsc::UnboundedReceiver<(SocketAddr, SocketAddr, Vec<u8>)>,
    shutdown: Shutdown,
}

impl Listener {
    async fn start(net: &str) -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let guard = Arc::new(Guard::new(GuardConfig {
            ban_after_failures: 10,
            ..GuardConfig::default()
        }));
        let shutdown = Shutdown::new();
        let refused = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let (tx, served) = tokio::sync::mpsc::unbounded_channel();
        let admission = Admission {
            max_connections: 10,
            guard: guard.clone(),
            proxy: Some(Arc::new(quick(net))),
        };
        let log = refused.clone();
        tokio::spawn(serve(
            listener,
            admission,
            shutdown.clone(),
            move |peer, refusal: &Refusal| log.lock().push((peer, refusal.clone())),
            move |accepted: Accepted| {
                let tx = tx.clone();
                async move {
                    let Accepted {
                        mut stream,
                        peer,
                        local,
                        admitted,
                        proxy,
                        drain: _,
                    } = accepted;
                    assert!(proxy.is_some());
                    // The protocol's first bytes, as the handler sees them.
                    let mut first = [0u8; 4];
                    let _ = stream.read_exact(&mut first).await;
                    let _ = tx.send((peer, local, first.to_vec()));
                    let _ = stream.write_all(b"hi").await;
                    // Not logged in, as long as it lasts.
                    std::future::pending::<()>().await;
                    drop(admitted);
                }
            },
        ));
        Listener {
            address,
            guard,
            refused,
            served,
            shutdown,
        }
    }

    /// Waits until `n` refusals have been reported.
    async fn refusals(&self, n: usize) -> Vec<(SocketAddr, Refusal)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let refused = self.refused.lock().clone();
            if refused.len() >= n {
                return refused;
            }
            assert!(tokio::time::Instant::now() < deadline, "{refused:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Reads until EOF or a reset; what was received.
async fn received(client: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut all))
        .await
        .unwrap();
    all
}

#[tokio::test]
async fn the_accept_loop_serves_the_carried_address_and_refuses_the_rest() {
    let mut listener = Listener::start("127.0.0.1/32").await;
    // Through the balancer: the handler sees the carried address, and the
    // protocol's bytes from their first.
    let mut client = TcpStream::connect(listener.address).await.unwrap();
    client
        .write_all(b"PROXY TCP4 192.0.2.1 198.51.100.1 51000 22\r\nSSH-")
        .await
        .unwrap();
    let (peer, local, first) = listener.served.recv().await.unwrap();
    assert_eq!(peer, "192.0.2.1:51000".parse().unwrap());
    // The address it connected to is the balancer's, from the header.
    assert_eq!(local, "198.51.100.1:22".parse().unwrap());
    assert_eq!(first, b"SSH-");
    let mut hi = [0u8; 2];
    client.read_exact(&mut hi).await.unwrap();
    // Admitted as the carried address: it counts as waiting to log in.
    assert_eq!(listener.guard.pending(), 1);

    // A plain TCP health check (connected, and left) is not a refusal.
    drop(TcpStream::connect(listener.address).await.unwrap());
    // No header: closed when the deadline passes, nothing sent, nothing
    // admitted meanwhile.
    let mut silent = TcpStream::connect(listener.address).await.unwrap();
    assert_eq!(listener.guard.pending(), 1);
    assert!(received(&mut silent).await.is_empty());
    let refused = listener.refusals(1).await;
    assert_eq!(
        refused[0].1,
        Refusal::Proxy(ProxyRefusal::Header(HeaderError::Timeout))
    );
    assert_eq!(refused[0].0.ip(), IpAddr::from(Ipv4Addr::LOCALHOST));

    // A banned client address is refused after its header, by that
    // address; the balancer itself is not banned.
    let banned: IpAddr = "192.0.2.66".parse().unwrap();
    for _ in 0..10 {
        listener.guard.failed(banned);
    }
    let mut client = TcpStream::connect(listener.address).await.unwrap();
    client
        .write_all(b"PROXY TCP4 192.0.2.66 198.51.100.1 1 22\r\n")
        .await
        .unwrap();
    assert!(received(&mut client).await.is_empty());
    let refused = listener.refusals(2).await;
    assert_eq!(refused[1].0, "192.0.2.66:1".parse().unwrap());
    assert!(matches!(refused[1].1, Refusal::Banned { .. }));
    let mut client = TcpStream::connect(listener.address).await.unwrap();
    client
        .write_all(b"PROXY TCP4 192.0.2.67 198.51.100.1 1 22\r\nSSH-")
        .await
        .unwrap();
    let (peer, _, _) = listener.served.recv().await.unwrap();
    assert_eq!(peer.ip(), IpAddr::from(Ipv4Addr::new(192, 0, 2, 67)));
    let counters = &listener.guard.counters;
    assert_eq!(counters.refused_proxy_header.load(Ordering::Relaxed), 1);
    assert_eq!(counters.refused_banned.load(Ordering::Relaxed), 1);
    listener.shutdown.abort.cancel();
    listener.shutdown.stop_accepting.cancel();
}

#[tokio::test]
async fn the_accept_loop_closes_an_untrusted_peer_without_a_word() {
    let listener = Listener::start("127.0.0.9/32").await;
    let mut client = TcpStream::connect(listener.address).await.unwrap();
    // Whatever it sends, a LOCAL command included, is never read: the
    // server closes with it unread (a reset) or before it arrives (EOF).
    let local = Builder::new(Version::Two | Command::Local, 0)
        .build()
        .unwrap();
    let _ = client.write_all(&local).await;
    let mut buf = [0u8; 16];
    let outcome = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(outcome, Ok(0) | Err(_)), "{outcome:?}");
    let refused = listener.refusals(1).await;
    assert_eq!(refused[0].1, Refusal::Proxy(ProxyRefusal::Untrusted));
    assert_eq!(
        listener
            .guard
            .counters
            .refused_untrusted_proxy
            .load(Ordering::Relaxed),
        1
    );
    assert_eq!(listener.guard.pending(), 0);
    listener.shutdown.stop_accepting.cancel();
}
