//! Acknowledging a client's handshake segments at once.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How many reads get an immediate acknowledgement: enough for an SSH key
/// exchange, authentication and the first channel requests.
const HANDSHAKE_READS: u8 = 16;

/// A TCP stream that acknowledges the peer's first segments immediately.
///
/// Clients that leave Nagle's algorithm on (OpenSSH's `sftp` and `scp` do for
/// non-interactive sessions) hold a small packet back until the previous one
/// is acknowledged. When the server has nothing to answer with, Linux delays
/// that acknowledgement by up to 40 ms, so an SSH login stalls once or twice
/// (KEXINIT then KEX_ECDH_INIT, NEWKEYS then SERVICE_REQUEST). Re-arming
/// `TCP_QUICKACK` after each of the first reads removes the stalls; after
/// the handshake the stream behaves like the plain socket.
pub struct PromptAcks {
    inner: TcpStream,
    reads_left: u8,
}

impl PromptAcks {
    pub fn new(inner: TcpStream) -> PromptAcks {
        PromptAcks {
            inner,
            reads_left: HANDSHAKE_READS,
        }
    }
}

impl AsyncRead for PromptAcks {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.reads_left > 0
            && matches!(result, Poll::Ready(Ok(())))
            && buf.filled().len() > before
        {
            self.reads_left -= 1;
            // Only a latency hint: a socket that refuses it works as before.
            let _ = rustix::net::sockopt::set_tcp_quickack(&self.inner, true);
        }
        result
    }
}

impl AsyncWrite for PromptAcks {
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
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn passes_bytes_through_both_ways_past_the_handshake() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = PromptAcks::new(stream);
            let mut total = 0usize;
            let mut buf = [0u8; 7];
            // More reads than the handshake count, each echoed back.
            loop {
                let n = stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                total += n;
                stream.write_all(&buf[..n]).await.unwrap();
            }
            stream.shutdown().await.unwrap();
            total
        });
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let message: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut echoed = Vec::new();
        for chunk in message.chunks(10) {
            client.write_all(chunk).await.unwrap();
            let mut part = vec![0u8; chunk.len()];
            client.read_exact(&mut part).await.unwrap();
            echoed.extend_from_slice(&part);
        }
        client.shutdown().await.unwrap();
        assert_eq!(client.read(&mut [0u8; 1]).await.unwrap(), 0);
        assert_eq!(echoed, message);
        assert_eq!(server.await.unwrap(), message.len());
    }
}
