//! A channel's incoming bytes, from the SSH connection to the SFTP
//! dispatcher, without ever making the connection wait.
//!
//! russh runs one loop per connection: it reads a packet, hands it to us,
//! and only then reads the next one. If handing data over could block (a
//! full queue because the dispatcher's budgets are spent), that loop would
//! stop reading the socket, and with it the client's window adjustments and
//! keepalives: replies could no longer be sent, budgets never freed, and a
//! deep-pipelining client deadlocked (or, gone, leaked the session forever).
//!
//! So [`Pipe::push`] never blocks: it appends to a buffer. What bounds that
//! buffer is the SSH channel window, which our patched russh
//! (`manual_window_adjust`) reopens only when the dispatcher has taken the
//! bytes ([`ChannelInput::consumed`]): a client can have at most one window
//! of unprocessed input here, and one that sends beyond it is disconnected.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use russh::ChannelWriteHalf;
use russh::server::Msg;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::dispatch::Input;

#[derive(Default)]
struct State {
    buf: BytesMut,
    closed: bool,
}

/// The bytes a client sent on one channel, not yet taken by the dispatcher.
#[derive(Default)]
pub(crate) struct Pipe {
    state: Mutex<State>,
    ready: Notify,
    closed: CancellationToken,
}

impl Pipe {
    /// Appends bytes (called from the connection's loop; never waits).
    pub(crate) fn push(&self, data: &[u8]) {
        let mut state = self.state.lock();
        if !state.closed {
            state.buf.extend_from_slice(data);
        }
        drop(state);
        self.ready.notify_one();
    }

    /// The client sent EOF: no more bytes will come, but it still reads
    /// replies, so bytes already pushed are still delivered.
    pub(crate) fn finish(&self) {
        self.state.lock().closed = true;
        self.ready.notify_one();
    }

    /// The channel or the whole connection is gone: nobody reads replies,
    /// so what was not yet taken is dropped.
    pub(crate) fn gone(&self) {
        let mut state = self.state.lock();
        state.closed = true;
        state.buf = BytesMut::new();
        drop(state);
        self.closed.cancel();
        self.ready.notify_one();
    }

    /// Everything pushed so far, or `None` once closed and drained.
    pub(crate) async fn next(&self) -> Option<Bytes> {
        loop {
            {
                let mut state = self.state.lock();
                if !state.buf.is_empty() {
                    return Some(state.buf.split().freeze());
                }
                if state.closed {
                    return None;
                }
            }
            // `notify_one` keeps a permit when nobody waits, so a push
            // between the check above and this await is not missed.
            self.ready.notified().await;
        }
    }

    /// Resolves once the channel or connection is gone.
    pub(crate) async fn closed(&self) {
        self.closed.cancelled().await;
    }
}

/// The dispatcher's input: a [`Pipe`], and the channel whose window is
/// reopened as bytes are taken.
pub(crate) struct ChannelInput {
    pipe: Arc<Pipe>,
    channel: Arc<ChannelWriteHalf<Msg>>,
    /// Bytes taken but not yet given back as window.
    pending: usize,
    /// Window is given back in steps of at least this many bytes.
    grant_step: usize,
}

impl ChannelInput {
    pub(crate) fn new(
        pipe: Arc<Pipe>,
        channel: Arc<ChannelWriteHalf<Msg>>,
        window: u32,
    ) -> ChannelInput {
        ChannelInput {
            pipe,
            channel,
            pending: 0,
            // Smaller than the window, so a client that has used all of it
            // always gets some back once we have taken its bytes.
            grant_step: (window as usize / 8).max(1),
        }
    }
}

impl Input for ChannelInput {
    async fn next(&mut self) -> Option<Bytes> {
        self.pipe.next().await
    }

    async fn consumed(&mut self, bytes: usize) {
        self.pending += bytes;
        if self.pending >= self.grant_step {
            let amount = u32::try_from(self.pending).unwrap_or(u32::MAX);
            self.pending = 0;
            // An error means the connection is gone; the pipe closes too.
            let _ = self.channel.grant_window(amount).await;
        }
    }

    async fn closed(&self) {
        self.pipe.closed().await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_everything_pushed_then_ends() {
        let pipe = Arc::new(Pipe::default());
        pipe.push(b"ab");
        pipe.push(b"cd");
        assert_eq!(pipe.next().await.unwrap(), Bytes::from_static(b"abcd"));
        let reader = {
            let pipe = pipe.clone();
            tokio::spawn(async move { pipe.next().await })
        };
        pipe.push(b"e");
        assert_eq!(reader.await.unwrap().unwrap(), Bytes::from_static(b"e"));
        pipe.push(b"f");
        pipe.finish();
        pipe.push(b"ignored after EOF");
        assert_eq!(pipe.next().await.unwrap(), Bytes::from_static(b"f"));
        assert!(pipe.next().await.is_none());
    }

    #[tokio::test]
    async fn a_gone_channel_drops_what_is_buffered() {
        let pipe = Pipe::default();
        pipe.push(b"never read");
        pipe.gone();
        assert!(pipe.next().await.is_none());
        pipe.closed().await;
    }

    #[tokio::test]
    async fn closed_wakes_a_waiter() {
        let pipe = Arc::new(Pipe::default());
        let waiter = {
            let pipe = pipe.clone();
            tokio::spawn(async move { pipe.closed().await })
        };
        tokio::task::yield_now().await;
        pipe.finish();
        assert!(!waiter.is_finished());
        pipe.gone();
        waiter.await.unwrap();
        assert!(pipe.next().await.is_none());
    }
}
