//! The SFTP v3 server: a concurrent dispatcher over one channel.
//!
//! Unlike a read-handle-reply loop, many requests are in flight at once:
//! every request runs as its own task and replies as soon as it is done, in
//! whatever order the protocol allows. Writes to one handle go through that
//! handle's worker, so they are applied in order; reads of one handle run
//! concurrently. Memory is bounded by a per-session budget that every
//! request holds from decoding until its reply has been handed to the SSH
//! channel: a client that sends too much simply stops being read, and the
//! SSH window pushes back. WRITE data also holds a smaller write budget
//! until the store has taken it, which bounds what an upload keeps here.
//!
//! Transport-agnostic: the dispatcher reads [`Input`] and writes [`Output`];
//! `server.rs` connects them to a russh channel, tests to memory.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use wharf_vfs::{
    DirListing, Error, FileReader, FileWriter, Metadata, OpenOptions, UserFs, VirtualPath,
};
use wharf_vfs::{Quota, Taken};

use crate::codec::{
    self, Attrs, Reply, Request, SSH_FXF_APPEND, SSH_FXF_CREAT, SSH_FXF_EXCL, SSH_FXF_READ,
    SSH_FXF_TRUNC, SSH_FXF_WRITE, StatusCode,
};
use crate::status::for_error;

/// The largest READ we serve, and the largest WRITE we accept.
pub const MAX_IO_BYTES: usize = 261_120;
/// Open handles per session.
pub const MAX_HANDLES: usize = 256;
/// Entries per READDIR reply.
const READDIR_PAGE: usize = 100;
/// Bytes of requests (and of the replies to requests other than READ) one
/// channel may hold at once. Requests are small but for WRITE, whose data
/// also needs the write budget before the next request is taken.
const BUDGET_BYTES: usize = 8 << 20;
/// READ replies one channel may hold at once (also counted against its
/// user's and the process's memory).
const BULK_BYTES: usize = 32 << 20;
/// WRITE data a session may hold before its store has taken it (part of
/// [`BUDGET_BYTES`]). The OpenSSH client keeps 64 WRITEs of 255 KiB in
/// flight (16 MiB); held whole, those alone were a third of the memory SPEC
/// allows one upload (part size x concurrency + 16 MiB). A few MiB keep the
/// store busy just as well: the rest waits in the client and in TCP.
const WRITE_BUDGET_BYTES: usize = 4 << 20;
/// Queued operations per write handle.
const WRITE_QUEUE: usize = 256;
/// Queued READs per read handle.
const READ_QUEUE: usize = 256;
/// READs of one handle served at once.
const READ_PARALLEL: usize = 64;
/// Replies waiting together are gathered into channel writes of about this size.
const BATCH_BYTES: usize = 256 * 1024;

/// Where the client's bytes come from.
pub trait Input: Send {
    /// The next chunk of bytes, or `None` at end of stream.
    fn next(&mut self) -> impl Future<Output = Option<Bytes>> + Send;

    /// The dispatcher is done with `bytes` bytes of input (they were framed
    /// and their requests started): the client may send that much more.
    /// This is the only backpressure on a client: the SSH connection itself
    /// is never made to wait.
    fn consumed(&mut self, bytes: usize) -> impl Future<Output = ()> + Send;

    /// Resolves once the client is gone or has closed its side (bytes may
    /// still be buffered). Lets a dispatcher that waits for budget notice
    /// a disconnect.
    fn closed(&self) -> impl Future<Output = ()> + Send;
}

/// Where reply bytes go.
pub trait Output: Send + 'static {
    /// Sends bytes; an error means the peer is gone.
    fn send(&mut self, data: Bytes) -> impl Future<Output = Result<(), ()>> + Send;
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The client closed the channel.
    Eof,
    /// The client broke the protocol; the channel is closed.
    Protocol(String),
}

/// A reply on its way to the channel, with the budget it holds.
struct Outgoing {
    data: Bytes,
    _permit: Option<Taken>,
}

#[derive(Clone)]
struct Replies {
    tx: mpsc::Sender<Outgoing>,
}

impl Replies {
    async fn send(&self, data: Bytes, permit: Option<Taken>) {
        // A closed writer means the client is gone; nothing to do.
        let _ = self
            .tx
            .send(Outgoing {
                data,
                _permit: permit,
            })
            .await;
    }

    async fn status(&self, id: u32, code: StatusCode, message: &str, permit: Option<Taken>) {
        self.send(codec::status(id, code, message), permit).await;
    }

    async fn ok(&self, id: u32, permit: Option<Taken>) {
        self.status(id, StatusCode::Ok, "Success", permit).await;
    }

    async fn error(&self, id: u32, error: &Error, permit: Option<Taken>) {
        let (code, message) = for_error(error);
        self.status(id, code, &message, permit).await;
    }
}

enum WriteOp {
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

/// A READ waiting for its handle's worker.
struct ReadOp {
    id: u32,
    offset: u64,
    len: u32,
    permit: Taken,
}

struct DirState {
    listing: DirListing,
    done: bool,
}

enum Handle {
    Read {
        reader: Arc<FileReader>,
        ops: mpsc::Sender<ReadOp>,
        path: VirtualPath,
    },
    Write {
        ops: mpsc::Sender<WriteOp>,
        path: VirtualPath,
    },
    Dir {
        state: Arc<tokio::sync::Mutex<DirState>>,
        path: VirtualPath,
    },
}

#[derive(Clone, Copy)]
enum HandleKind {
    Read,
    Write,
    Dir,
}

struct Shared {
    fs: UserFs,
    replies: Replies,
    handles: Mutex<Handles>,
    /// Owner and group shown in `ls -l` listings.
    owner: String,
    /// Request and reply bytes this channel may hold. Every request takes
    /// from it, so that small requests (OPEN, STAT) always progress even
    /// when its user's share is spent.
    budget: Quota,
    /// The large buffers, READ replies, taken from this channel's budget
    /// of bulk data and from its user's and the process's shares
    /// (`max_memory_per_user`, `max_memory`).
    bulk: Quota,
    /// WRITE data not yet taken by the store, from this channel's write
    /// budget and from its user's and the process's shares.
    write_budget: Quota,
    /// The requests in hand and the handles' workers: the channel ends only
    /// after every one of them (and so every reader and writer, with its
    /// CLOSE or PARTIAL_CLOSE line) is gone.
    workers: Mutex<tokio::task::JoinSet<()>>,
}

struct Handles {
    table: HashMap<u32, Handle>,
    next: u32,
}

impl Shared {
    /// Runs a request or a handle's worker, forgetting those that have
    /// finished.
    fn spawn_worker(&self, worker: impl Future<Output = ()> + Send + 'static) {
        let mut workers = self.workers.lock();
        while workers.try_join_next().is_some() {}
        workers.spawn(worker);
    }

    fn insert(&self, handle: Handle) -> Option<[u8; 4]> {
        let mut handles = self.handles.lock();
        if handles.table.len() >= MAX_HANDLES {
            return None;
        }
        loop {
            let id = handles.next;
            handles.next = handles.next.wrapping_add(1);
            if let std::collections::hash_map::Entry::Vacant(e) = handles.table.entry(id) {
                e.insert(handle);
                return Some(id.to_be_bytes());
            }
        }
    }
}

fn handle_id(handle: &Bytes) -> Option<u32> {
    let bytes: [u8; 4] = handle.as_ref().try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

fn budget_units(bytes: usize) -> u32 {
    Quota::units_for(bytes)
}

/// Runs one SFTP session until the client closes the channel or breaks the
/// protocol. Uploads still open at the end are discarded. Its buffers are
/// charged to `memory` (the session's share of its user's and the
/// process's), within a budget of its own.
pub async fn run<I: Input, O: Output>(
    fs: UserFs,
    owner: String,
    memory: Quota,
    mut input: I,
    mut output: O,
) -> Ended {
    let (tx, mut rx) = mpsc::channel::<Outgoing>(1024);
    let writer = tokio::spawn(async move {
        // Replies waiting together are sent as one channel write: SSH then
        // cuts full-size packets instead of one packet plus a small spill
        // per reply (a 32 KiB DATA reply is 32 KiB + 13 bytes).
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
    });
    let shared = Arc::new(Shared {
        fs,
        replies: Replies { tx },
        handles: Mutex::new(Handles {
            table: HashMap::new(),
            next: 1,
        }),
        owner,
        budget: Quota::new(Quota::units_for(BUDGET_BYTES)),
        bulk: memory.within(Quota::units_for(BULK_BYTES)),
        write_budget: memory.within(Quota::units_for(WRITE_BUDGET_BYTES)),
        workers: Mutex::new(tokio::task::JoinSet::new()),
    });
    let budget = shared.budget.clone();
    let ended = read_loop(&shared, &budget, &mut input).await;
    // Dropping the handles discards unfinished uploads (their workers stop
    // when their queues close, after the operation in hand); a worker that
    // does not stop within the bound is aborted. Either way its reader or
    // writer is dropped before the channel ends, so PARTIAL_CLOSE is logged
    // before the session's DISCONNECTED.
    // Requests still in hand are waited for the same way (one may open a
    // handle as it finishes: the table is cleared again after each round).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        shared.handles.lock().table.clear();
        let mut workers = std::mem::take(&mut *shared.workers.lock());
        if workers.is_empty() {
            break;
        }
        let finished = tokio::time::timeout_at(deadline, async {
            while workers.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            workers.abort_all();
            while workers.join_next().await.is_some() {}
        }
    }
    drop(shared);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    ended
}

async fn read_loop<I: Input>(shared: &Arc<Shared>, budget: &Quota, input: &mut I) -> Ended {
    let mut framer = frame::Framer::default();
    let mut initialised = false;
    loop {
        let Some(chunk) = input.next().await else {
            return Ended::Eof;
        };
        let chunk_len = chunk.len();
        framer.push(chunk);
        loop {
            let packet = match framer.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) => break,
                Err(reason) => return Ended::Protocol(reason),
            };
            let len = packet.len();
            if !initialised {
                match codec::decode_init(packet) {
                    Ok(_version) => {
                        initialised = true;
                        let limits = [
                            ("posix-rename@openssh.com", "1"),
                            ("limits@openssh.com", "1"),
                            ("fsync@openssh.com", "1"),
                            ("expand-path@openssh.com", "1"),
                        ];
                        shared.replies.send(codec::version(&limits), None).await;
                        continue;
                    }
                    Err(e) => return Ended::Protocol(e.0.to_owned()),
                }
            }
            let units = budget_units(len);
            // Waiting for budget (or for room in a handle's queue, in
            // `dispatch`) is where a busy session holds back: input stays
            // unconsumed, so the client's window closes. A client that
            // disconnects meanwhile ends the session at once.
            let permit = tokio::select! {
                permit = budget.take(units) => match permit {
                    Some(permit) => permit,
                    None => return Ended::Eof,
                },
                () = input.closed() => return Ended::Eof,
            };
            let request = match codec::decode_request(packet) {
                Ok(request) => request,
                Err(e) => return Ended::Protocol(format!("malformed packet: {}", e.0)),
            };
            tokio::select! {
                () = dispatch(shared, request.0, request.1, permit) => {}
                () = input.closed() => return Ended::Eof,
            }
        }
        input.consumed(chunk_len).await;
    }
}

/// Starts one request. Only work that must be ordered (queueing to a write
/// handle) happens here; everything else runs in its own task.
async fn dispatch(shared: &Arc<Shared>, id: u32, request: Request, permit: Taken) {
    match request {
        Request::Write {
            handle,
            offset,
            data,
        } => {
            let target =
                handle_id(&handle).and_then(|h| match shared.handles.lock().table.get(&h) {
                    Some(Handle::Write { ops, .. }) => Some(Ok(ops.clone())),
                    Some(_) => Some(Err(())),
                    None => None,
                });
            match target {
                Some(Ok(ops)) => {
                    if data.len() > MAX_IO_BYTES + 1024 {
                        shared
                            .replies
                            .status(id, StatusCode::Failure, "write too large", Some(permit))
                            .await;
                        return;
                    }
                    // Awaiting here, for write budget and then for room in
                    // the handle's queue, is the backpressure on uploads.
                    let Some(unapplied) = shared.write_budget.take(budget_units(data.len())).await
                    else {
                        // The semaphore is never closed; answer anyway.
                        shared
                            .replies
                            .status(id, StatusCode::Failure, "session is ending", Some(permit))
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
                    if let Err(mpsc::error::SendError(op)) = ops.send(op).await {
                        let WriteOp::Write { permit, .. } = op else {
                            return;
                        };
                        shared
                            .replies
                            .status(id, StatusCode::Failure, "handle is closed", Some(permit))
                            .await;
                    }
                }
                Some(Err(())) => {
                    shared
                        .replies
                        .status(
                            id,
                            StatusCode::PermissionDenied,
                            "handle is not open for writing",
                            Some(permit),
                        )
                        .await;
                }
                None => bad_handle(shared, id, permit).await,
            }
        }
        Request::Read {
            handle,
            offset,
            len,
        } => {
            let target =
                handle_id(&handle).and_then(|h| match shared.handles.lock().table.get(&h) {
                    Some(Handle::Read { ops, .. }) => Some(Ok(ops.clone())),
                    Some(Handle::Dir { .. }) => Some(Err("handle is a directory")),
                    Some(Handle::Write { .. }) => Some(Err("handle is not open for reading")),
                    None => None,
                });
            match target {
                Some(Ok(ops)) => {
                    let op = ReadOp {
                        id,
                        offset,
                        len,
                        permit,
                    };
                    if let Err(mpsc::error::SendError(op)) = ops.send(op).await {
                        shared
                            .replies
                            .status(id, StatusCode::Failure, "handle is closed", Some(op.permit))
                            .await;
                    }
                }
                Some(Err(message)) => {
                    shared
                        .replies
                        .status(id, StatusCode::PermissionDenied, message, Some(permit))
                        .await;
                }
                None => bad_handle(shared, id, permit).await,
            }
        }
        Request::Close { handle } => {
            let removed = handle_id(&handle).and_then(|h| shared.handles.lock().table.remove(&h));
            match removed {
                Some(Handle::Write { ops, .. }) => {
                    if let Err(mpsc::error::SendError(WriteOp::Close { permit, .. })) =
                        ops.send(WriteOp::Close { id, permit }).await
                    {
                        shared
                            .replies
                            .status(id, StatusCode::Failure, "upload failed", Some(permit))
                            .await;
                    }
                }
                Some(Handle::Read { reader, .. }) => {
                    reader.close();
                    shared.replies.ok(id, Some(permit)).await;
                }
                Some(Handle::Dir { .. }) => shared.replies.ok(id, Some(permit)).await,
                None => bad_handle(shared, id, permit).await,
            }
        }
        Request::Fstat { handle } if write_ops(shared, &handle).is_some() => {
            if let Some(ops) = write_ops(shared, &handle) {
                let _ = ops.send(WriteOp::Fstat { id, permit }).await;
            }
        }
        Request::Fsetstat { handle, attrs } if write_ops(shared, &handle).is_some() => {
            if let Some(ops) = write_ops(shared, &handle) {
                let modified = times_of(&attrs);
                let _ = ops
                    .send(WriteOp::SetTimes {
                        id,
                        modified,
                        permit,
                    })
                    .await;
            }
        }
        Request::Fsync { handle } if write_ops(shared, &handle).is_some() => {
            if let Some(ops) = write_ops(shared, &handle) {
                let _ = ops.send(WriteOp::Sync { id, permit }).await;
            }
        }
        other => {
            let task = shared.clone();
            shared.spawn_worker(async move {
                serve(&task, id, other, permit).await;
            });
        }
    }
}

/// The operation queue of a write handle.
fn write_ops(shared: &Shared, handle: &Bytes) -> Option<mpsc::Sender<WriteOp>> {
    let id = handle_id(handle)?;
    match shared.handles.lock().table.get(&id) {
        Some(Handle::Write { ops, .. }) => Some(ops.clone()),
        _ => None,
    }
}

async fn bad_handle(shared: &Shared, id: u32, permit: Taken) {
    shared
        .replies
        .status(id, StatusCode::Failure, "invalid handle", Some(permit))
        .await;
}

fn unix_time(time: Option<SystemTime>) -> u32 {
    time.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

fn attrs_of(meta: &Metadata) -> Attrs {
    let kind_bits = if meta.is_dir() { 0o040000 } else { 0o100000 };
    let mtime = unix_time(meta.modified);
    Attrs {
        size: Some(meta.size),
        uid_gid: None,
        permissions: Some(kind_bits | meta.permissions()),
        times: meta.modified.map(|_| (mtime, mtime)),
    }
}

fn times_of(attrs: &Attrs) -> Option<SystemTime> {
    attrs
        .times
        .map(|(_, mtime)| UNIX_EPOCH + Duration::from_secs(u64::from(mtime)))
}

impl Shared {
    fn path(&self, input: &str) -> Result<VirtualPath, Error> {
        self.fs.path(self.fs.home(), input)
    }

    fn handle_path(
        &self,
        handle: &Bytes,
    ) -> Option<(HandleKind, VirtualPath, Option<Arc<FileReader>>)> {
        let id = handle_id(handle)?;
        self.handles.lock().table.get(&id).map(|h| match h {
            Handle::Read { reader, path, .. } => {
                (HandleKind::Read, path.clone(), Some(reader.clone()))
            }
            Handle::Write { path, .. } => (HandleKind::Write, path.clone(), None),
            Handle::Dir { path, .. } => (HandleKind::Dir, path.clone(), None),
        })
    }

    fn name_reply(&self, id: u32, path: &VirtualPath) -> Bytes {
        let mut reply = Reply::new(codec::SSH_FXP_NAME, id, 16 + 2 * path.as_str().len());
        reply
            .u32(1)
            .string(path.as_str().as_bytes())
            .string(path.as_str().as_bytes())
            .attrs(&Attrs::default());
        reply.finish()
    }
}

/// Serves a request that needs no ordering.
async fn serve(shared: &Arc<Shared>, id: u32, request: Request, permit: Taken) {
    let replies = &shared.replies;
    let fs = &shared.fs;
    let result: Result<Option<Bytes>, Error> = async {
        match request {
            Request::Open { path, flags, attrs } => {
                open(shared, id, &path, flags, &attrs).await.map(Some)
            }
            Request::Opendir { path } => {
                let path = shared.path(&path)?;
                let listing = fs.list(&path).await?;
                let state = Arc::new(tokio::sync::Mutex::new(DirState {
                    listing,
                    done: false,
                }));
                match shared.insert(Handle::Dir { state, path }) {
                    Some(handle) => Ok(Some(codec::handle(id, &handle))),
                    None => Ok(Some(codec::status(
                        id,
                        StatusCode::Failure,
                        "too many open handles",
                    ))),
                }
            }
            Request::Readdir { handle } => {
                let state =
                    handle_id(&handle).and_then(|h| match shared.handles.lock().table.get(&h) {
                        Some(Handle::Dir { state, .. }) => Some(state.clone()),
                        _ => None,
                    });
                let Some(state) = state else {
                    return Ok(Some(codec::status(
                        id,
                        StatusCode::Failure,
                        "invalid handle",
                    )));
                };
                let mut state = state.lock().await;
                if state.done {
                    return Ok(Some(codec::status(id, StatusCode::Eof, "End of directory")));
                }
                match state.listing.next_page(READDIR_PAGE).await? {
                    None => {
                        state.done = true;
                        Ok(Some(codec::status(id, StatusCode::Eof, "End of directory")))
                    }
                    Some(entries) => {
                        let now = SystemTime::now();
                        let mut reply = Reply::new(codec::SSH_FXP_NAME, id, entries.len() * 128);
                        reply.u32(u32::try_from(entries.len()).unwrap_or(0));
                        for entry in &entries {
                            reply
                                .string(entry.name.as_bytes())
                                .string(
                                    wharf_vfs::ls_line(
                                        &entry.name,
                                        &entry.meta,
                                        &shared.owner,
                                        now,
                                    )
                                    .as_bytes(),
                                )
                                .attrs(&attrs_of(&entry.meta));
                        }
                        Ok(Some(reply.finish()))
                    }
                }
            }
            Request::Fstat { handle } => {
                // An open handle needs no new authorization (SPEC 4): a
                // user who may read a file but not list it can still fstat
                // what it opened. (Write handles answer from their worker.)
                match shared.handle_path(&handle) {
                    Some((_, _, Some(reader))) => {
                        Ok(Some(codec::attrs(id, &attrs_of(&reader.metadata()))))
                    }
                    Some((HandleKind::Dir, ..)) => {
                        Ok(Some(codec::attrs(id, &attrs_of(&Metadata::directory()))))
                    }
                    _ => Ok(Some(codec::status(
                        id,
                        StatusCode::Failure,
                        "invalid handle",
                    ))),
                }
            }
            Request::Fsetstat { handle, attrs } => {
                let Some((_, path, _)) = shared.handle_path(&handle) else {
                    return Ok(Some(codec::status(
                        id,
                        StatusCode::Failure,
                        "invalid handle",
                    )));
                };
                setstat(shared, id, &path, &attrs).await.map(Some)
            }
            Request::Fsync { handle } => match shared.handle_path(&handle) {
                Some(_) => Ok(Some(codec::status(id, StatusCode::Ok, "Success"))),
                None => Ok(Some(codec::status(
                    id,
                    StatusCode::Failure,
                    "invalid handle",
                ))),
            },
            Request::Stat { path } | Request::Lstat { path } => {
                let path = shared.path(&path)?;
                Ok(Some(codec::attrs(id, &attrs_of(&fs.stat(&path).await?))))
            }
            Request::Setstat { path, attrs } => {
                let path = shared.path(&path)?;
                setstat(shared, id, &path, &attrs).await.map(Some)
            }
            Request::Remove { path } => {
                fs.remove(&shared.path(&path)?).await?;
                Ok(None)
            }
            Request::Mkdir { path, .. } => {
                fs.mkdir(&shared.path(&path)?).await?;
                Ok(None)
            }
            Request::Rmdir { path } => {
                fs.rmdir(&shared.path(&path)?).await?;
                Ok(None)
            }
            Request::Rename { from, to } => {
                fs.rename(&shared.path(&from)?, &shared.path(&to)?, false)
                    .await?;
                Ok(None)
            }
            Request::PosixRename { from, to } => {
                fs.rename(&shared.path(&from)?, &shared.path(&to)?, true)
                    .await?;
                Ok(None)
            }
            Request::Realpath { path } => {
                let path = shared.path(&path)?;
                Ok(Some(shared.name_reply(id, &path)))
            }
            Request::ExpandPath { path } => {
                let expanded = if path == "~" {
                    String::new()
                } else if let Some(rest) = path.strip_prefix("~/") {
                    rest.to_owned()
                } else {
                    path
                };
                let path = shared.path(&expanded)?;
                Ok(Some(shared.name_reply(id, &path)))
            }
            Request::Limits => {
                let mut reply = Reply::new(codec::SSH_FXP_EXTENDED_REPLY, id, 32);
                reply
                    .u64(256 * 1024)
                    .u64(MAX_IO_BYTES as u64)
                    .u64(MAX_IO_BYTES as u64)
                    .u64(MAX_HANDLES as u64);
                Ok(Some(reply.finish()))
            }
            Request::Readlink { .. } | Request::Symlink { .. } => Ok(Some(codec::status(
                id,
                StatusCode::OpUnsupported,
                "symbolic links are not supported",
            ))),
            Request::Extended { name } => Ok(Some(codec::status(
                id,
                StatusCode::OpUnsupported,
                &format!("extension {name} is not supported"),
            ))),
            Request::Unknown { kind } => Ok(Some(codec::status(
                id,
                StatusCode::OpUnsupported,
                &format!("request type {kind} is not supported"),
            ))),
            Request::NotUtf8 => Ok(Some(codec::status(
                id,
                StatusCode::BadMessage,
                "file names must be UTF-8",
            ))),
            // Routed in `dispatch`.
            Request::Read { .. } | Request::Write { .. } | Request::Close { .. } => Ok(Some(
                codec::status(id, StatusCode::Failure, "internal routing error"),
            )),
        }
    }
    .await;
    match result {
        Ok(Some(reply)) => replies.send(reply, Some(permit)).await,
        Ok(None) => replies.ok(id, Some(permit)).await,
        Err(error) => replies.error(id, &error, Some(permit)).await,
    }
}

async fn setstat(
    shared: &Shared,
    id: u32,
    path: &VirtualPath,
    attrs: &Attrs,
) -> Result<Bytes, Error> {
    if let Some(size) = attrs.size {
        let meta = shared.fs.stat(path).await?;
        if meta.size != size && !meta.is_dir() {
            return Ok(codec::status(
                id,
                StatusCode::OpUnsupported,
                "changing a file's size (truncate) is not supported",
            ));
        }
    }
    // Permissions and ownership are accepted and ignored, as AWS Transfer
    // Family's ENABLE_NO_OP does; times are applied where the store keeps them.
    shared.fs.set_modified(path, times_of(attrs)).await?;
    Ok(codec::status(id, StatusCode::Ok, "Success"))
}

async fn open(
    shared: &Arc<Shared>,
    id: u32,
    input: &str,
    flags: u32,
    attrs: &Attrs,
) -> Result<Bytes, Error> {
    let path = shared.path(input)?;
    let fs = &shared.fs;
    if flags & SSH_FXF_WRITE == 0 {
        if flags & SSH_FXF_READ == 0 {
            return Ok(codec::status(
                id,
                StatusCode::BadMessage,
                "open needs READ or WRITE",
            ));
        }
        let reader = Arc::new(fs.open_read(&path).await?);
        let (ops_tx, ops_rx) = mpsc::channel(READ_QUEUE);
        let inserted = shared.insert(Handle::Read {
            reader: reader.clone(),
            ops: ops_tx,
            path,
        });
        return Ok(match inserted {
            Some(handle) => {
                shared.spawn_worker(read_worker(
                    reader,
                    ops_rx,
                    shared.replies.clone(),
                    shared.bulk.clone(),
                ));
                codec::handle(id, &handle)
            }
            None => codec::status(id, StatusCode::Failure, "too many open handles"),
        });
    }
    let options = OpenOptions {
        create: flags & SSH_FXF_CREAT != 0,
        truncate: flags & SSH_FXF_TRUNC != 0,
        exclusive: flags & SSH_FXF_CREAT != 0 && flags & SSH_FXF_EXCL != 0,
        append: flags & SSH_FXF_APPEND != 0,
        read: flags & SSH_FXF_READ != 0,
        offset: 0,
    };
    let mut writer = fs.open_write(&path, options).await?;
    if let Some(modified) = times_of(attrs) {
        writer.set_modified(modified);
    }
    let (ops_tx, ops_rx) = mpsc::channel(WRITE_QUEUE);
    let Some(handle) = shared.insert(Handle::Write {
        ops: ops_tx,
        path: path.clone(),
    }) else {
        writer.abort().await;
        return Ok(codec::status(
            id,
            StatusCode::Failure,
            "too many open handles",
        ));
    };
    shared.spawn_worker(write_worker(writer, ops_rx, shared.replies.clone()));
    Ok(codec::handle(id, &handle))
}

/// Serves one read handle: up to [`READ_PARALLEL`] reads run at once, and
/// their replies go out in request order. (The OpenSSH client, in scp and
/// in-place downloads, truncates the file at the last in-order reply, so
/// reordering replies of one handle would lose data.)
async fn read_worker(
    reader: Arc<FileReader>,
    mut ops: mpsc::Receiver<ReadOp>,
    replies: Replies,
    budget: Quota,
) {
    let mut inflight = futures::stream::FuturesOrdered::new();
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            Some((reply, permit)) = futures::StreamExt::next(&mut inflight), if !inflight.is_empty() => {
                replies.send(reply, Some(permit)).await;
            }
            op = ops.recv(), if open && inflight.len() < READ_PARALLEL => match op {
                Some(op) => inflight.push_back(read_one(reader.clone(), op, budget.clone())),
                None => open = false,
            },
            else => break,
        }
    }
}

/// One READ: the DATA reply is read straight into its packet buffer.
async fn read_one(reader: Arc<FileReader>, op: ReadOp, budget: Quota) -> (Bytes, Taken) {
    let ReadOp {
        id,
        offset,
        len,
        mut permit,
    } = op;
    let len = (len as usize).min(MAX_IO_BYTES);
    // The reply is larger than the request: hold budget for it too.
    if let Some(extra) = budget.take(Quota::units_for(len)).await {
        permit.merge(extra);
    }
    let mut buf = BytesMut::with_capacity(13 + len);
    buf.put_u32(0);
    buf.put_u8(codec::SSH_FXP_DATA);
    buf.put_u32(id);
    buf.put_u32(0);
    let reply = match reader.read_at(offset, len, buf).await {
        Ok(mut buf) => {
            let n = buf.len() - 13;
            if n == 0 {
                codec::status(id, StatusCode::Eof, "End of file")
            } else {
                let total = u32::try_from(buf.len() - 4).unwrap_or(u32::MAX);
                buf[0..4].copy_from_slice(&total.to_be_bytes());
                buf[9..13].copy_from_slice(&u32::try_from(n).unwrap_or(0).to_be_bytes());
                buf.freeze()
            }
        }
        Err(error) => {
            let (code, message) = for_error(&error);
            codec::status(id, code, &message)
        }
    };
    (reply, permit)
}

/// Applies one write handle's operations in order.
async fn write_worker(mut writer: FileWriter, mut ops: mpsc::Receiver<WriteOp>, replies: Replies) {
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
                    replies.error(id, error, Some(permit)).await;
                    continue;
                }
                let end = offset + data.len() as u64;
                let written = writer.write_at(offset, data).await;
                drop(unapplied);
                match written {
                    Ok(()) => {
                        size = size.max(end);
                        replies.ok(id, Some(permit)).await;
                    }
                    Err(error) => {
                        replies.error(id, &error, Some(permit)).await;
                        failed = Some(error);
                    }
                }
            }
            WriteOp::Fstat { id, permit } => {
                let meta = Metadata {
                    kind: wharf_vfs::Kind::File,
                    size,
                    modified: None,
                    mode: None,
                };
                replies
                    .send(codec::attrs(id, &attrs_of(&meta)), Some(permit))
                    .await;
            }
            WriteOp::Sync { id, permit } => replies.ok(id, Some(permit)).await,
            WriteOp::SetTimes {
                id,
                modified,
                permit,
            } => {
                if let Some(modified) = modified {
                    writer.set_modified(modified);
                }
                replies.ok(id, Some(permit)).await;
            }
            WriteOp::Close { id, permit } => {
                if let Some(error) = failed.take() {
                    writer.abort().await;
                    replies.error(id, &error, Some(permit)).await;
                } else {
                    match writer.close().await {
                        Ok(()) => replies.ok(id, Some(permit)).await,
                        Err(error) => replies.error(id, &error, Some(permit)).await,
                    }
                }
                return;
            }
        }
    }
    // The session ended without CLOSE: dropping the writer discards the upload.
}

pub(crate) mod frame;

#[cfg(test)]
mod tests;
