//! The worker behind a read handle: it serves the handle's READs, up to
//! [`READ_PARALLEL`] at once, and sends their replies in request order.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use tokio::sync::mpsc;
use wharf_vfs::{FileReader, Taken};

use super::MAX_IO_BYTES;
use super::budget::Budget;
use super::replies::{Replies, error_status};
use crate::codec::{self, StatusCode};

/// Queued READs per read handle.
const QUEUE: usize = 256;
/// READs of one handle served at once.
const READ_PARALLEL: usize = 64;

/// A READ waiting for its handle's worker.
pub(super) struct ReadOp {
    pub(super) id: u32,
    pub(super) offset: u64,
    pub(super) len: u32,
    pub(super) permit: Taken,
}

/// A read handle's queue: the handle keeps the sender, the worker the
/// receiver.
pub(super) fn queue() -> (mpsc::Sender<ReadOp>, mpsc::Receiver<ReadOp>) {
    mpsc::channel(QUEUE)
}

/// Serves one read handle until its queue closes. Replies go out in
/// request order: the OpenSSH client, in scp and in-place downloads,
/// truncates the file at the last in-order reply, so reordering replies of
/// one handle would lose data. `budget` holds the replies.
pub(super) async fn run(
    reader: Arc<FileReader>,
    mut ops: mpsc::Receiver<ReadOp>,
    replies: Replies,
    budget: Budget,
) {
    let mut inflight = FuturesOrdered::new();
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            Some((reply, permit)) = inflight.next(), if !inflight.is_empty() => {
                replies.send(reply, permit).await;
            }
            op = ops.recv(), if open && inflight.len() < READ_PARALLEL => match op {
                Some(op) => inflight.push_back(read(reader.clone(), op, budget.clone())),
                None => open = false,
            },
            else => break,
        }
    }
}

/// One READ: the DATA reply is read straight into its packet buffer.
async fn read(reader: Arc<FileReader>, op: ReadOp, budget: Budget) -> (Bytes, Taken) {
    let ReadOp {
        id,
        offset,
        len,
        mut permit,
    } = op;
    let len = (len as usize).min(MAX_IO_BYTES);
    // The reply is larger than the request: hold budget for it too.
    if let Some(extra) = budget.take(len).await {
        permit.merge(extra);
    }
    let reply = match reader
        .read_at(offset, len, codec::start_data(id, len))
        .await
    {
        Ok(buf) => match codec::finish_data(buf) {
            Some(data) => data,
            None => codec::status(id, StatusCode::Eof, "End of file"),
        },
        Err(error) => error_status(id, &error),
    };
    (reply, permit)
}
