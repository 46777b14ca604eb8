//! Learns the negotiated cipher and key exchange for the log lines.
//!
//! russh does not expose them, but they follow from the client's KEXINIT
//! (sent in the clear before any key exchange) and our own preference lists:
//! RFC 4253 section 7.1 picks the first client algorithm the server also
//! supports. [`SniffStream`] passes the connection through untouched and
//! parses the client's identification line and first packet as they go by.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use russh::Preferred;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The algorithms of one connection, as AWS Transfer Family logs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// `client-to-server,server-to-client` ciphers.
    pub ciphers: String,
    pub kex: String,
}

/// The most bytes looked at before giving up (a KEXINIT is a few KiB).
const SNIFF_LIMIT: usize = 64 * 1024;

pub struct SniffStream<S> {
    inner: S,
    seen: Vec<u8>,
    done: bool,
    result: Arc<OnceLock<Negotiated>>,
    preferred: Preferred,
}

impl<S> SniffStream<S> {
    pub fn new(
        inner: S,
        result: Arc<OnceLock<Negotiated>>,
        preferred: Preferred,
    ) -> SniffStream<S> {
        SniffStream {
            inner,
            seen: Vec::new(),
            done: false,
            result,
            preferred,
        }
    }

    fn observe(&mut self, bytes: &[u8]) {
        self.seen.extend_from_slice(bytes);
        match parse_client_kexinit(&self.seen) {
            Parse::Incomplete if self.seen.len() < SNIFF_LIMIT => {}
            Parse::Incomplete | Parse::Invalid => self.finish(),
            Parse::Done(lists) => {
                let _ = self.result.set(negotiate(&lists, &self.preferred));
                self.finish();
            }
        }
    }

    fn finish(&mut self) {
        self.done = true;
        self.seen = Vec::new();
    }
}

struct ClientLists {
    kex: Vec<String>,
    cipher_c2s: Vec<String>,
    cipher_s2c: Vec<String>,
}

enum Parse {
    Incomplete,
    Invalid,
    Done(ClientLists),
}

fn name_list(buf: &mut &[u8]) -> Option<Vec<String>> {
    if buf.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let list = buf.get(4..4 + len)?;
    *buf = &buf[4 + len..];
    Some(
        String::from_utf8_lossy(list)
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

fn parse_client_kexinit(seen: &[u8]) -> Parse {
    // The identification line (other lines may precede it, RFC 4253 4.2).
    let mut offset = 0;
    loop {
        let Some(end) = seen[offset..].iter().position(|&b| b == b'\n') else {
            return Parse::Incomplete;
        };
        let line = &seen[offset..offset + end];
        offset += end + 1;
        if line.starts_with(b"SSH-") {
            break;
        }
    }
    let packet = &seen[offset..];
    if packet.len() < 6 {
        return Parse::Incomplete;
    }
    let len = u32::from_be_bytes([packet[0], packet[1], packet[2], packet[3]]) as usize;
    if len > 35_000 {
        return Parse::Invalid;
    }
    if packet.len() < 4 + len {
        return Parse::Incomplete;
    }
    let padding = packet[4] as usize;
    let Some(payload) = packet.get(5..(4 + len).saturating_sub(padding)) else {
        return Parse::Invalid;
    };
    // SSH_MSG_KEXINIT = 20, then a 16-byte cookie.
    if payload.first() != Some(&20) || payload.len() < 17 {
        return Parse::Invalid;
    }
    let mut rest = &payload[17..];
    let (Some(kex), Some(_host_key), Some(cipher_c2s), Some(cipher_s2c)) = (
        name_list(&mut rest),
        name_list(&mut rest),
        name_list(&mut rest),
        name_list(&mut rest),
    ) else {
        return Parse::Invalid;
    };
    Parse::Done(ClientLists {
        kex,
        cipher_c2s,
        cipher_s2c,
    })
}

fn first_common<'a, T: AsRef<str>>(client: &'a [String], server: &[T]) -> Option<&'a str> {
    client
        .iter()
        .find(|c| server.iter().any(|s| s.as_ref() == c.as_str()))
        .map(String::as_str)
}

fn negotiate(lists: &ClientLists, preferred: &Preferred) -> Negotiated {
    let kex_names: Vec<&str> = preferred
        .kex
        .iter()
        .map(|k| k.as_ref())
        .filter(|k| !k.starts_with("ext-info-") && !k.starts_with("kex-strict-"))
        .collect();
    let kex = lists
        .kex
        .iter()
        .find(|c| kex_names.contains(&c.as_str()))
        .cloned()
        .unwrap_or_default();
    let c2s = first_common(&lists.cipher_c2s, &preferred.cipher).unwrap_or("");
    let s2c = first_common(&lists.cipher_s2c, &preferred.cipher).unwrap_or("");
    Negotiated {
        ciphers: format!("{c2s},{s2c}"),
        kex,
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SniffStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if !this.done
            && let Poll::Ready(Ok(())) = &poll
        {
            let new = buf.filled()[before..].to_vec();
            if new.is_empty() {
                this.finish();
            } else {
                this.observe(&new);
            }
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SniffStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kexinit(kex: &str, ciphers: &str) -> Vec<u8> {
        let mut payload = vec![20u8];
        payload.extend_from_slice(&[0u8; 16]);
        for list in [kex, "ssh-ed25519", ciphers, ciphers, "", "", "", "", "", ""] {
            payload.extend_from_slice(&(list.len() as u32).to_be_bytes());
            payload.extend_from_slice(list.as_bytes());
        }
        payload.push(0);
        payload.extend_from_slice(&0u32.to_be_bytes());
        let padding = 8 - (payload.len() + 5) % 8 + 4;
        let mut packet = Vec::new();
        packet.extend_from_slice(&((payload.len() + padding + 1) as u32).to_be_bytes());
        packet.push(padding as u8);
        packet.extend_from_slice(&payload);
        packet.extend(std::iter::repeat_n(0u8, padding));
        let mut all = b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n".to_vec();
        all.extend_from_slice(&packet);
        all
    }

    #[test]
    fn finds_what_will_be_negotiated() {
        let bytes = kexinit(
            "sntrup761x25519-sha512@openssh.com,curve25519-sha256,ext-info-c",
            "chacha20-poly1305@openssh.com,aes128-gcm@openssh.com",
        );
        let preferred = crate::server::SecurityPolicy::Wharf2025_11.preferred();
        for split in [1, 10, 40, bytes.len() - 1] {
            let mut partial = parse_client_kexinit(&bytes[..split]);
            assert!(matches!(partial, Parse::Incomplete), "split {split}");
            partial = parse_client_kexinit(&bytes);
            let Parse::Done(lists) = partial else {
                panic!("not parsed")
            };
            let negotiated = negotiate(&lists, &preferred);
            // OpenSSH 8.5-9.8 get post-quantum key exchange.
            assert_eq!(negotiated.kex, "sntrup761x25519-sha512@openssh.com");
            assert_eq!(
                negotiated.ciphers,
                "chacha20-poly1305@openssh.com,chacha20-poly1305@openssh.com"
            );
        }
        let classic = kexinit("curve25519-sha256,ext-info-c", "aes128-ctr");
        let Parse::Done(lists) = parse_client_kexinit(&classic) else {
            panic!("not parsed")
        };
        assert_eq!(negotiate(&lists, &preferred).kex, "curve25519-sha256");
        assert!(matches!(
            parse_client_kexinit(b"SSH-2.0-x\r\n\0\0\0\x10\x04\x15"),
            Parse::Incomplete
        ));
        let mut garbage = b"SSH-2.0-x\r\n".to_vec();
        garbage.extend_from_slice(&[0, 0, 0, 12, 4, 99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(parse_client_kexinit(&garbage), Parse::Invalid));
    }
}
