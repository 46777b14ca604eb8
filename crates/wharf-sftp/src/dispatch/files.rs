//! Files: OPEN, and the requests on a file handle (READ, WRITE, CLOSE,
//! FSTAT, FSETSTAT, `fsync@openssh.com`).
//!
//! READ, WRITE and CLOSE are started in request order, in the read loop:
//! they go to the handle's worker (`read_worker`, `write_worker`) or, for
//! CLOSE of a read handle, are done at once. A write handle's FSTAT,
//! FSETSTAT and fsync go to its worker too (routed in `start`); the
//! functions here that return a reply serve the other handles.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc::error::SendError;
use wharf_vfs::{Error, Metadata, OpenOptions, Taken, VirtualPath};

use super::handles::Handle;
use super::read_worker::{self, ReadOp};
use super::replies::{invalid_handle, ok, too_many_handles};
use super::write_worker::{self, WriteOp};
use super::{MAX_IO_BYTES, Shared, attrs, paths};
use crate::codec::{
    self, Attrs, SSH_FXF_APPEND, SSH_FXF_CREAT, SSH_FXF_EXCL, SSH_FXF_READ, SSH_FXF_TRUNC,
    SSH_FXF_WRITE, StatusCode,
};

/// OPEN: a read handle (and its worker) without `SSH_FXF_WRITE`, else a
/// write handle.
pub(super) async fn open(
    shared: &Shared,
    id: u32,
    input: &str,
    flags: u32,
    attrs: &Attrs,
) -> Result<Bytes, Error> {
    let path = shared.path(input)?;
    if flags & SSH_FXF_WRITE != 0 {
        return open_write(shared, id, path, flags, attrs).await;
    }
    if flags & SSH_FXF_READ == 0 {
        return Ok(codec::status(
            id,
            StatusCode::BadMessage,
            "open needs READ or WRITE",
        ));
    }
    let reader = Arc::new(shared.fs.open_read(&path).await?);
    let (ops, queue) = read_worker::queue();
    let inserted = shared.handles.insert(Handle::Read {
        reader: reader.clone(),
        ops,
        path,
    });
    let Some(handle) = inserted else {
        return Ok(too_many_handles(id));
    };
    let budget = shared.budgets.reads.clone();
    shared.spawn(read_worker::run(
        reader,
        queue,
        shared.replies.clone(),
        budget,
    ));
    Ok(codec::handle(id, &handle))
}

/// OPEN for writing: a write handle, whose worker has the writer.
async fn open_write(
    shared: &Shared,
    id: u32,
    path: VirtualPath,
    flags: u32,
    attrs: &Attrs,
) -> Result<Bytes, Error> {
    let options = OpenOptions {
        create: flags & SSH_FXF_CREAT != 0,
        truncate: flags & SSH_FXF_TRUNC != 0,
        exclusive: flags & SSH_FXF_CREAT != 0 && flags & SSH_FXF_EXCL != 0,
        append: flags & SSH_FXF_APPEND != 0,
        read: flags & SSH_FXF_READ != 0,
        offset: 0,
    };
    let mut writer = shared.fs.open_write(&path, options).await?;
    if let Some(modified) = attrs::modified(attrs) {
        writer.set_modified(modified);
    }
    let (ops, queue) = write_worker::queue();
    let Some(handle) = shared.handles.insert(Handle::Write { ops, path }) else {
        writer.abort().await;
        return Ok(too_many_handles(id));
    };
    shared.spawn(write_worker::run(writer, queue, shared.replies.clone()));
    Ok(codec::handle(id, &handle))
}

/// READ: queued to the handle's worker, which answers.
pub(super) async fn read(
    shared: &Shared,
    id: u32,
    handle: &[u8],
    offset: u64,
    len: u32,
    permit: Taken,
) {
    let queue = worker_queue(shared, id, handle, permit, |open| match open {
        Handle::Read { ops, .. } => Ok(ops.clone()),
        Handle::Dir { .. } => Err("handle is a directory"),
        Handle::Write { .. } => Err("handle is not open for reading"),
    });
    let Some((ops, permit)) = queue.await else {
        return;
    };
    let op = ReadOp {
        id,
        offset,
        len,
        permit,
    };
    if let Err(SendError(op)) = ops.send(op).await {
        shared
            .replies
            .status(id, StatusCode::Failure, "handle is closed", op.permit)
            .await;
    }
}

/// WRITE: queued to the handle's worker, which answers once the store has
/// the data.
pub(super) async fn write(
    shared: &Shared,
    id: u32,
    handle: &[u8],
    offset: u64,
    data: Bytes,
    permit: Taken,
) {
    let queue = worker_queue(shared, id, handle, permit, |open| match open {
        Handle::Write { ops, .. } => Ok(ops.clone()),
        Handle::Read { .. } | Handle::Dir { .. } => Err("handle is not open for writing"),
    });
    let Some((ops, permit)) = queue.await else {
        return;
    };
    if data.len() > MAX_IO_BYTES + 1024 {
        shared
            .replies
            .status(id, StatusCode::Failure, "write too large", permit)
            .await;
        return;
    }
    // Awaiting here, for write budget and then for room in the handle's
    // queue, is the backpressure on uploads.
    let Some(unapplied) = shared.budgets.writes.take(data.len()).await else {
        // The budget is never closed; answer anyway.
        shared
            .replies
            .status(id, StatusCode::Failure, "session is ending", permit)
            .await;
        return;
    };
    let op = WriteOp::Write {
        id,
        offset,
        data,
        permit,
        unapplied,
    };
    if let Err(SendError(op)) = ops.send(op).await {
        shared
            .replies
            .status(
                id,
                StatusCode::Failure,
                "handle is closed",
                op.into_permit(),
            )
            .await;
    }
}

/// The queue `pick` finds in `handle`, with the request's budget back; or
/// `None` once the request has been answered: PERMISSION_DENIED with
/// `pick`'s refusal, or FAILURE if the handle is not open.
async fn worker_queue<T>(
    shared: &Shared,
    id: u32,
    handle: &[u8],
    permit: Taken,
    pick: impl FnOnce(&Handle) -> Result<T, &'static str>,
) -> Option<(T, Taken)> {
    match shared.handles.with(handle, pick) {
        Some(Ok(queue)) => Some((queue, permit)),
        Some(Err(refusal)) => {
            shared
                .replies
                .status(id, StatusCode::PermissionDenied, refusal, permit)
                .await;
            None
        }
        None => {
            shared.replies.send(invalid_handle(id), permit).await;
            None
        }
    }
}

/// CLOSE: a write handle's worker finishes the upload and answers; a read
/// or directory handle is closed at once.
pub(super) async fn close(shared: &Shared, id: u32, handle: &[u8], permit: Taken) {
    let removed = shared.handles.remove(handle);
    match removed {
        Some(Handle::Write { ops, .. }) => {
            if let Err(SendError(op)) = ops.send(WriteOp::Close { id, permit }).await {
                shared
                    .replies
                    .status(id, StatusCode::Failure, "upload failed", op.into_permit())
                    .await;
            }
        }
        Some(Handle::Read { reader, .. }) => {
            reader.close();
            shared.replies.ok(id, permit).await;
        }
        Some(Handle::Dir { .. }) => shared.replies.ok(id, permit).await,
        None => shared.replies.send(invalid_handle(id), permit).await,
    }
}

/// FSTAT of a read or directory handle. An open handle needs no new
/// authorization (SPEC 4): a user who may read a file but not list it can
/// still fstat what it opened.
pub(super) fn fstat(shared: &Shared, id: u32, handle: &[u8]) -> Bytes {
    let meta = shared.handles.with(handle, |open| match open {
        Handle::Read { reader, .. } => Some(reader.metadata()),
        Handle::Dir { .. } => Some(Metadata::directory()),
        Handle::Write { .. } => None,
    });
    match meta.flatten() {
        Some(meta) => codec::attrs(id, &attrs::of(&meta)),
        None => invalid_handle(id),
    }
}

/// FSETSTAT of a read or directory handle: SETSTAT of the path it was
/// opened with.
pub(super) async fn fsetstat(
    shared: &Shared,
    id: u32,
    handle: &[u8],
    attrs: &Attrs,
) -> Result<Bytes, Error> {
    let Some(path) = shared.handles.with(handle, |open| open.path().clone()) else {
        return Ok(invalid_handle(id));
    };
    paths::set_attrs(shared, id, &path, attrs).await
}

/// `fsync@openssh.com` of a read or directory handle: nothing to do.
pub(super) fn fsync(shared: &Shared, id: u32, handle: &[u8]) -> Bytes {
    match shared.handles.with(handle, |_| ()) {
        Some(()) => ok(id),
        None => invalid_handle(id),
    }
}
