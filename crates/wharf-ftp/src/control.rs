//! The control connection: a byte stream that AUTH TLS turns into TLS,
//! read line by line (cancel-safe, bounded; lines cleaned of their line end
//! and Telnet commands, then parsed in `command.rs`) and written reply by
//! reply.

use std::future::Future;
use std::io;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::command;
use crate::reply::Reply;

/// The longest command line accepted (RFC 959 sets no limit; paths are at
/// most 1024 bytes here, and clients send far less).
pub(crate) const MAX_LINE: usize = 8192;

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Between the two, during AUTH TLS, or after a failed handshake.
    Closed,
}

/// Why no line came.
#[derive(Debug)]
pub(crate) enum LineError {
    /// The client closed the connection (or it broke).
    Closed,
    /// A line longer than [`MAX_LINE`].
    TooLong,
}

pub(crate) struct Control {
    stream: Stream,
    input: BytesMut,
    output: Vec<u8>,
}

impl Control {
    pub(crate) fn new(stream: TcpStream) -> Control {
        Control {
            stream: Stream::Plain(stream),
            input: BytesMut::with_capacity(1024),
            output: Vec::with_capacity(1024),
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// Reads more input. Cancel-safe: what was read stays in `input`.
    async fn fill(&mut self) -> io::Result<usize> {
        match &mut self.stream {
            Stream::Plain(s) => s.read_buf(&mut self.input).await,
            Stream::Tls(s) => s.read_buf(&mut self.input).await,
            Stream::Closed => Ok(0),
        }
    }

    /// Whether a whole line is waiting, or so much that it cannot be one.
    fn line_ready(&self) -> bool {
        self.input.contains(&b'\n') || self.input.len() > MAX_LINE
    }

    /// The next command line, without its line end and Telnet commands.
    /// Cancel-safe.
    pub(crate) async fn line(&mut self) -> Result<String, LineError> {
        while !self.line_ready() {
            match self.fill().await {
                Ok(0) | Err(_) => return Err(LineError::Closed),
                Ok(_) => {}
            }
        }
        let Some(end) = self.input.iter().position(|&b| b == b'\n') else {
            return Err(LineError::TooLong);
        };
        if end > MAX_LINE {
            return Err(LineError::TooLong);
        }
        let raw = self.input.split_to(end + 1);
        Ok(clean_line(&raw[..end]))
    }

    /// Whether the next waiting line is ABOR (consumed if so).
    fn take_abort(&mut self) -> bool {
        let Some(end) = self.input.iter().position(|&b| b == b'\n') else {
            return false;
        };
        if command::is_abort(&clean_line(&self.input[..end])) {
            self.input.advance(end + 1);
            return true;
        }
        false
    }

    /// Runs `transfer` while watching the control connection for ABOR.
    /// `None` when the client aborted (or closed the control connection):
    /// the transfer was dropped, which discards an upload. Other commands
    /// sent meanwhile wait until the transfer is done.
    pub(crate) async fn watch<T>(&mut self, transfer: impl Future<Output = T>) -> Option<T> {
        tokio::pin!(transfer);
        loop {
            if self.take_abort() {
                return None;
            }
            if self.line_ready() {
                return Some(transfer.await);
            }
            tokio::select! {
                done = &mut transfer => return Some(done),
                read = self.fill() => match read {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                },
            }
        }
    }

    /// Sends a reply.
    pub(crate) async fn reply(&mut self, reply: &Reply) -> io::Result<()> {
        self.output.clear();
        reply.encode(&mut self.output);
        let output = std::mem::take(&mut self.output);
        let result = self.send(&output).await;
        self.output = output;
        result
    }

    /// Sends raw reply bytes (a multi-line reply built by the caller).
    pub(crate) async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.stream {
            Stream::Plain(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Stream::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Stream::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// AUTH TLS, after its 234 reply: the TLS handshake. Input already
    /// waiting behind the AUTH line would have been sent in the clear and
    /// is refused (the STARTTLS command injection of CVE-2011-0411).
    pub(crate) async fn start_tls(&mut self, config: Arc<ServerConfig>) -> Result<(), String> {
        if !self.input.is_empty() {
            self.stream = Stream::Closed;
            return Err("commands pipelined behind AUTH TLS".to_owned());
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Closed) else {
            return Err("the control connection is not plain".to_owned());
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        match tokio::time::timeout(std::time::Duration::from_secs(30), acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                self.stream = Stream::Tls(Box::new(tls));
                Ok(())
            }
            Ok(Err(error)) => Err(format!("TLS handshake failed: {error}")),
            Err(_) => Err("TLS handshake timed out".to_owned()),
        }
    }

    /// Ends the connection: TLS close_notify, then FIN.
    pub(crate) async fn close(&mut self) {
        match &mut self.stream {
            Stream::Plain(s) => {
                let _ = s.shutdown().await;
            }
            Stream::Tls(s) => {
                let _ = s.shutdown().await;
            }
            Stream::Closed => {}
        }
        self.stream = Stream::Closed;
    }
}

/// A command line as text: line end and Telnet commands (IAC IP, IAC DM,
/// sent before ABOR) removed, IAC IAC kept as one byte; invalid UTF-8
/// replaced (such a path then fails as a path).
pub(crate) fn clean_line(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == 0xff {
            if raw.get(i + 1) == Some(&0xff) {
                bytes.push(0xff);
            }
            i += 2;
            continue;
        }
        bytes.push(raw[i]);
        i += 1;
    }
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lines_lose_line_ends_and_telnet_commands() {
        assert_eq!(clean_line(b"USER alice\r"), "USER alice");
        assert_eq!(clean_line(b"NOOP"), "NOOP");
        assert_eq!(clean_line(b"\xff\xf4\xff\xf2ABOR\r"), "ABOR");
        assert_eq!(clean_line(b"RETR caf\xc3\xa9"), "RETR café");
        assert_eq!(clean_line(b"RETR \xfe"), "RETR \u{fffd}");
    }

    #[tokio::test]
    async fn long_lines_are_refused_and_lines_survive_cancellation() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"NO").await.unwrap();
            s.flush().await.unwrap();
            s
        });
        let (server, _) = listener.accept().await.unwrap();
        let mut control = Control::new(server);
        let mut client = client.await.unwrap();
        // A read cancelled half-way keeps what it read.
        let half = tokio::time::timeout(std::time::Duration::from_millis(50), control.line()).await;
        assert!(half.is_err());
        client.write_all(b"OP\r\n").await.unwrap();
        assert_eq!(control.line().await.ok().as_deref(), Some("NOOP"));
        client.write_all(&vec![b'x'; MAX_LINE + 10]).await.unwrap();
        assert!(matches!(control.line().await, Err(LineError::TooLong)));
    }
}
