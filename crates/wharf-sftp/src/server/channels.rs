//! A logged-in connection's channels: session channels (at most
//! [`MAX_CHANNELS`]), the `sftp` subsystem on them (nothing else), and the
//! plumbing between a russh channel and the SFTP dispatcher: incoming data
//! into the channel's [`Pipe`], replies back through [`ChannelOutput`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use russh::server::{ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, ChannelWriteHalf};
use wharf_session::{ConnInfo, Gateway};

use super::Connection;
use crate::dispatch::{self, Ended, Output};
use crate::pipe::{ChannelInput, Pipe};

/// SFTP channels one connection may open (AWS Transfer Family allows 10).
const MAX_CHANNELS: usize = 10;
/// The SSH window of a channel: the most a client may send that the SFTP
/// dispatcher has not yet taken (see `pipe.rs`).
pub(super) const CHANNEL_WINDOW: u32 = 4 << 20;

impl Connection {
    /// A session channel: accepted once logged in, while fewer than
    /// [`MAX_CHANNELS`] are open or running SFTP.
    pub(super) async fn open_channel(&mut self, channel: Channel<Msg>, reply: ChannelOpenHandle) {
        if self.session.is_none()
            || self.channels.len() + self.sftp_channels.load(Ordering::Relaxed) >= MAX_CHANNELS
        {
            drop(reply);
            return;
        }
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
    }

    /// A subsystem request: `sftp` on an open channel starts its
    /// dispatcher; anything else is refused.
    pub(super) fn subsystem(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let (Some(user_session), true) = (self.session.clone(), name == "sftp") else {
            return session.channel_failure(channel_id);
        };
        let Some(channel) = self.channels.remove(&channel_id) else {
            return session.channel_failure(channel_id);
        };
        session.channel_success(channel_id)?;
        // Data comes through `Handler::data` into the pipe; dropping the
        // read half makes russh's queue for this channel refuse at once
        // instead of filling.
        let (read, write) = channel.split();
        drop(read);
        let write = Arc::new(write);
        let pipe = Arc::new(Pipe::default());
        self.inputs.insert(channel_id, pipe.clone());
        let input = ChannelInput::new(pipe, write.clone(), CHANNEL_WINDOW);
        let counter = self.sftp_channels.clone();
        counter.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(run_sftp(
            user_session,
            self.gateway.clone(),
            self.conn.clone(),
            input,
            write,
            counter,
        ));
        Ok(())
    }

    /// Channel data: into the channel's pipe. Never waits: bounded by the
    /// channel window (see `pipe.rs`).
    pub(super) fn push_input(&self, channel: ChannelId, data: &[u8]) {
        if let Some(pipe) = self.inputs.get(&channel) {
            pipe.push(data);
        }
    }

    /// The client sends no more on `channel` (but still reads replies).
    pub(super) fn finish_input(&self, channel: ChannelId) {
        if let Some(pipe) = self.inputs.get(&channel) {
            pipe.finish();
        }
    }

    /// `channel` is closed: its dispatcher stops now.
    pub(super) fn forget_channel(&mut self, channel: ChannelId) {
        self.channels.remove(&channel);
        if let Some(pipe) = self.inputs.remove(&channel) {
            pipe.gone();
        }
    }
}

/// Runs the SFTP dispatcher of one channel, then closes the channel with
/// the subsystem's exit status.
async fn run_sftp(
    user_session: Arc<wharf_session::Session>,
    gateway: Arc<Gateway>,
    conn: ConnInfo,
    input: ChannelInput,
    write: Arc<ChannelWriteHalf<Msg>>,
    counter: Arc<AtomicUsize>,
) {
    let owner = user_session.identity.username.clone();
    let ended = dispatch::run(
        user_session.fs.clone(),
        owner,
        user_session.memory.clone(),
        input,
        ChannelOutput(write.clone()),
    )
    .await;
    if let Ended::Protocol(reason) = &ended {
        // Logged as ERROR and counted against the address (SPEC 8).
        let audit = user_session.fs.audit();
        gateway.report_violation(
            &audit.session,
            &conn,
            &format!("SFTP protocol error, channel closed: {reason}"),
        );
    }
    // scp in SFTP mode takes the subsystem's exit status as its own.
    let status = if ended == Ended::Eof { 0 } else { 1 };
    let _ = write.exit_status(status).await;
    let _ = write.eof().await;
    let _ = write.close().await;
    counter.fetch_sub(1, Ordering::Relaxed);
}

/// The dispatcher's replies, as channel data.
struct ChannelOutput(Arc<ChannelWriteHalf<Msg>>);

impl Output for ChannelOutput {
    async fn send(&mut self, data: Bytes) -> Result<(), ()> {
        self.0.data_bytes(data).await.map_err(|_| ())
    }
}
