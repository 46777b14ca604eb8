//! The dispatcher's output: replies on their way to the channel, each with
//! the budget its request holds until the reply has been handed over, and
//! the task that hands them over, batched. Also the replies that several
//! operations give.

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wharf_vfs::{Error, Taken};

use super::Output;
use crate::codec::{self, StatusCode};
use crate::status::for_error;

/// Replies waiting for the channel.
const QUEUE: usize = 1024;
/// Replies waiting together are gathered into channel writes of about this size.
const BATCH_BYTES: usize = 256 * 1024;

/// A reply on its way to the channel, with the budget it holds.
struct Outgoing {
    data: Bytes,
    _permit: Option<Taken>,
}

/// Where requests and workers send their replies.
#[derive(Clone)]
pub(super) struct Replies {
    tx: mpsc::Sender<Outgoing>,
}

/// Starts the task that writes replies to `output`; it ends when every
/// [`Replies`] is dropped or the client is gone.
pub(super) fn start<O: Output>(output: O) -> (Replies, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (Replies { tx }, tokio::spawn(write(rx, output)))
}

/// Replies waiting together are sent as one channel write: SSH then cuts
/// full-size packets instead of one packet plus a small spill per reply (a
/// 32 KiB DATA reply is 32 KiB + 13 bytes). A reply's budget is given back
/// once it has been handed to the channel.
async fn write<O: Output>(mut rx: mpsc::Receiver<Outgoing>, mut output: O) {
    let mut batch = BytesMut::new();
    while let Some(first) = rx.recv().await {
        let Ok(next) = rx.try_recv() else {
            if output.send(first.data).await.is_err() {
                return;
            }
            continue;
        };
        batch.reserve(first.data.len() + next.data.len());
        batch.extend_from_slice(&first.data);
        batch.extend_from_slice(&next.data);
        drop((first, next));
        while batch.len() < BATCH_BYTES {
            match rx.try_recv() {
                Ok(more) => batch.extend_from_slice(&more.data),
                Err(_) => break,
            }
        }
        if output.send(batch.split().freeze()).await.is_err() {
            return;
        }
    }
}

impl Replies {
    /// Sends a reply; its request's budget is held until the channel has it.
    pub(super) async fn send(&self, data: Bytes, permit: Taken) {
        self.queue(data, Some(permit)).await;
    }

    /// Sends the one reply that holds no budget: VERSION.
    pub(super) async fn send_version(&self, data: Bytes) {
        self.queue(data, None).await;
    }

    async fn queue(&self, data: Bytes, permit: Option<Taken>) {
        // A closed writer means the client is gone; nothing to do.
        let _ = self
            .tx
            .send(Outgoing {
                data,
                _permit: permit,
            })
            .await;
    }

    pub(super) async fn status(&self, id: u32, code: StatusCode, message: &str, permit: Taken) {
        self.send(codec::status(id, code, message), permit).await;
    }

    pub(super) async fn ok(&self, id: u32, permit: Taken) {
        self.send(ok(id), permit).await;
    }

    pub(super) async fn error(&self, id: u32, error: &Error, permit: Taken) {
        self.send(error_status(id, error), permit).await;
    }

    /// Sends what an operation answered, or the status of its error.
    pub(super) async fn answer(&self, id: u32, answer: Result<Bytes, Error>, permit: Taken) {
        match answer {
            Ok(reply) => self.send(reply, permit).await,
            Err(error) => self.error(id, &error, permit).await,
        }
    }
}

/// `STATUS` OK.
pub(super) fn ok(id: u32) -> Bytes {
    codec::status(id, StatusCode::Ok, "Success")
}

/// The `STATUS` of a failed operation.
pub(super) fn error_status(id: u32, error: &Error) -> Bytes {
    let (code, message) = for_error(error);
    codec::status(id, code, &message)
}

/// The `STATUS` for a handle that is not open.
pub(super) fn invalid_handle(id: u32) -> Bytes {
    codec::status(id, StatusCode::Failure, "invalid handle")
}

/// The `STATUS` when [`super::MAX_HANDLES`] are open.
pub(super) fn too_many_handles(id: u32) -> Bytes {
    codec::status(id, StatusCode::Failure, "too many open handles")
}
