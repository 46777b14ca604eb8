//! The worker behind a write handle: it owns the file's writer and applies
//! the handle's operations (WRITE, FSTAT, FSETSTAT, fsync, CLOSE) one at a
//! time, in request order. After a failed WRITE, the handle's later WRITEs
//! and its CLOSE answer that error and the upload is discarded.

use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::mpsc;
use wharf_vfs::{Error, FileWriter, Kind, Metadata, Taken};

use super::attrs;
use super::replies::Replies;
use crate::codec;

/// Queued operations per write handle.
const QUEUE: usize = 256;

/// An operation waiting for its write handle's worker.
pub(super) enum WriteOp {
    Write {
        id: u32,
        offset: u64,
        data: Bytes,
        permit: Taken,
        /// Write budget, given back once the store has taken the data.
        unapplied: Taken,
    },
    Fstat {
        id: u32,
        permit: Taken,
    },
    SetTimes {
        id: u32,
        modified: Option<SystemTime>,
        permit: Taken,
    },
    Sync {
        id: u32,
        permit: Taken,
    },
    Close {
        id: u32,
        permit: Taken,
    },
}

impl WriteOp {
    /// The budget its request holds, to answer an operation the worker
    /// will never see.
    pub(super) fn into_permit(self) -> Taken {
        match self {
            WriteOp::Write { permit, .. }
            | WriteOp::Fstat { permit, .. }
            | WriteOp::SetTimes { permit, .. }
            | WriteOp::Sync { permit, .. }
            | WriteOp::Close { permit, .. } => permit,
        }
    }
}

/// A write handle's queue: the handle keeps the sender, the worker the
/// receiver.
pub(super) fn queue() -> (mpsc::Sender<WriteOp>, mpsc::Receiver<WriteOp>) {
    mpsc::channel(QUEUE)
}

/// Applies one write handle's operations in order, until CLOSE or until
/// its queue closes (the session ended: dropping the writer discards the
/// upload).
pub(super) async fn run(
    mut writer: FileWriter,
    mut ops: mpsc::Receiver<WriteOp>,
    replies: Replies,
) {
    let mut failed: Option<Error> = None;
    let mut size = 0u64;
    while let Some(op) = ops.recv().await {
        match op {
            WriteOp::Write {
                id,
                offset,
                data,
                permit,
                unapplied,
            } => {
                if let Some(error) = &failed {
                    drop((data, unapplied));
                    replies.error(id, error, permit).await;
                    continue;
                }
                let end = offset + data.len() as u64;
                let written = writer.write_at(offset, data).await;
                drop(unapplied);
                match written {
                    Ok(()) => {
                        size = size.max(end);
                        replies.ok(id, permit).await;
                    }
                    Err(error) => {
                        replies.error(id, &error, permit).await;
                        failed = Some(error);
                    }
                }
            }
            WriteOp::Fstat { id, permit } => {
                let meta = Metadata {
                    kind: Kind::File,
                    size,
                    modified: None,
                    mode: None,
                };
                replies
                    .send(codec::attrs(id, &attrs::of(&meta)), permit)
                    .await;
            }
            WriteOp::Sync { id, permit } => replies.ok(id, permit).await,
            WriteOp::SetTimes {
                id,
                modified,
                permit,
            } => {
                if let Some(modified) = modified {
                    writer.set_modified(modified);
                }
                replies.ok(id, permit).await;
            }
            WriteOp::Close { id, permit } => {
                close(writer, failed, id, permit, &replies).await;
                return;
            }
        }
    }
}

/// CLOSE: the upload becomes visible, unless a WRITE failed.
async fn close(
    writer: FileWriter,
    failed: Option<Error>,
    id: u32,
    permit: Taken,
    replies: &Replies,
) {
    if let Some(error) = failed {
        writer.abort().await;
        replies.error(id, &error, permit).await;
        return;
    }
    match writer.close().await {
        Ok(()) => replies.ok(id, permit).await,
        Err(error) => replies.error(id, &error, permit).await,
    }
}
