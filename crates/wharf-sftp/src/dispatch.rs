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
//!
//! This module runs a channel (`run`) and routes each decoded request
//! (`start`, `serve`). The rest lives beside it:
//!
//! | module | owns |
//! |---|---|
//! | `read_loop` | the input: packets, INIT, budget per request, decoding |
//! | `frame` | cutting the input into packets |
//! | `replies` | the output: replies and the budget they hold, batching |
//! | `budget` | the channel's budgets and their sizes |
//! | `handles` | the table of open handles |
//! | `read_worker`, `write_worker` | what runs behind a file handle |
//! | `files` | OPEN, READ, WRITE, CLOSE, FSTAT, FSETSTAT, fsync |
//! | `directories` | OPENDIR, READDIR, MKDIR, RMDIR |
//! | `paths` | STAT, LSTAT, SETSTAT, REMOVE, RENAME, REALPATH, expand-path, links |
//! | `extensions` | the extensions announced in VERSION, limits, unknown requests |
//! | `attrs` | metadata as SFTP attributes, the time a client sets in them |

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::task::JoinSet;
use wharf_vfs::{Error, Quota, Taken, UserFs, VirtualPath};

use crate::codec::{self, Request, StatusCode};
use budget::Budgets;
use handles::Handles;
use replies::Replies;
use write_worker::WriteOp;

mod attrs;
mod budget;
mod directories;
mod extensions;
mod files;
pub(crate) mod frame;
mod handles;
mod paths;
mod read_loop;
mod read_worker;
mod replies;
mod write_worker;

/// The largest READ we serve, and the largest WRITE we accept.
pub const MAX_IO_BYTES: usize = 261_120;
/// Open handles per session.
pub const MAX_HANDLES: usize = 256;
/// How long the end of a channel waits for its requests and handle workers
/// (those still running are then aborted), and then for its last replies.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

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

/// What the requests of one channel share.
struct Shared {
    fs: UserFs,
    /// Owner and group shown in `ls -l` listings.
    owner: String,
    replies: Replies,
    handles: Handles,
    budgets: Budgets,
    /// The requests in hand and the handles' workers: the channel ends only
    /// after every one of them (and so every reader and writer, with its
    /// CLOSE or PARTIAL_CLOSE line) is gone.
    tasks: Mutex<JoinSet<()>>,
}

impl Shared {
    /// A client's path, relative to the user's home.
    fn path(&self, input: &str) -> Result<VirtualPath, Error> {
        self.fs.path(self.fs.home(), input)
    }

    /// Runs a request or a handle's worker, forgetting those that have
    /// finished.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock();
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Ends the channel's work. Dropping the handles discards unfinished
    /// uploads (their workers stop when their queues close, after the
    /// operation in hand); a worker that does not stop within
    /// [`STOP_TIMEOUT`] is aborted. Either way its reader or writer is
    /// dropped before the channel ends, so PARTIAL_CLOSE is logged before
    /// the session's DISCONNECTED. Requests still in hand are waited for the
    /// same way (one may open a handle as it finishes: the table is cleared
    /// again after each round).
    async fn stop(&self) {
        let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
        loop {
            self.handles.clear();
            let mut tasks = std::mem::take(&mut *self.tasks.lock());
            if tasks.is_empty() {
                return;
            }
            let finished = tokio::time::timeout_at(deadline, async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            if finished.is_err() {
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
            }
        }
    }
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
    output: O,
) -> Ended {
    let (replies, writer) = replies::start(output);
    let shared = Arc::new(Shared {
        fs,
        owner,
        replies,
        handles: Handles::new(),
        budgets: Budgets::new(&memory),
        tasks: Mutex::new(JoinSet::new()),
    });
    let ended = read_loop::run(&shared, &mut input).await;
    shared.stop().await;
    // The reply writer ends when the last `Replies` is gone (with `shared`:
    // every task has ended) and what they sent is out, or the client is.
    drop(shared);
    let _ = tokio::time::timeout(STOP_TIMEOUT, writer).await;
    ended
}

/// Starts one request, before the next is read. Only work that must be
/// ordered (queueing to a handle's worker, closing a handle) happens here;
/// everything else is served by [`serve`] in a task of its own.
async fn start(shared: &Arc<Shared>, id: u32, request: Request, permit: Taken) {
    match request {
        Request::Read {
            handle,
            offset,
            len,
        } => files::read(shared, id, &handle, offset, len, permit).await,
        Request::Write {
            handle,
            offset,
            data,
        } => files::write(shared, id, &handle, offset, data, permit).await,
        Request::Close { handle } => files::close(shared, id, &handle, permit).await,
        // A write handle's worker answers these after the writes before them.
        Request::Fstat { handle } => match shared.handles.writer(&handle) {
            Some(ops) => {
                let _ = ops.send(WriteOp::Fstat { id, permit }).await;
            }
            None => spawn_serve(shared, id, Request::Fstat { handle }, permit),
        },
        Request::Fsetstat { handle, attrs } => match shared.handles.writer(&handle) {
            Some(ops) => {
                let modified = attrs::modified(&attrs);
                let _ = ops
                    .send(WriteOp::SetTimes {
                        id,
                        modified,
                        permit,
                    })
                    .await;
            }
            None => spawn_serve(shared, id, Request::Fsetstat { handle, attrs }, permit),
        },
        Request::Fsync { handle } => match shared.handles.writer(&handle) {
            Some(ops) => {
                let _ = ops.send(WriteOp::Sync { id, permit }).await;
            }
            None => spawn_serve(shared, id, Request::Fsync { handle }, permit),
        },
        other => spawn_serve(shared, id, other, permit),
    }
}

/// Serves `request` in a task of its own, which replies when done.
fn spawn_serve(shared: &Arc<Shared>, id: u32, request: Request, permit: Taken) {
    let task = shared.clone();
    shared.spawn(async move {
        let answer = serve(&task, id, request).await;
        task.replies.answer(id, answer, permit).await;
    });
}

/// The reply to a request that needs no ordering.
async fn serve(shared: &Shared, id: u32, request: Request) -> Result<Bytes, Error> {
    match request {
        Request::Open { path, flags, attrs } => files::open(shared, id, &path, flags, &attrs).await,
        Request::Fstat { handle } => Ok(files::fstat(shared, id, &handle)),
        Request::Fsetstat { handle, attrs } => files::fsetstat(shared, id, &handle, &attrs).await,
        Request::Fsync { handle } => Ok(files::fsync(shared, id, &handle)),
        Request::Opendir { path } => directories::open(shared, id, &path).await,
        Request::Readdir { handle } => directories::read(shared, id, &handle).await,
        Request::Mkdir { path, .. } => directories::make(shared, id, &path).await,
        Request::Rmdir { path } => directories::remove(shared, id, &path).await,
        Request::Stat { path } | Request::Lstat { path } => paths::stat(shared, id, &path).await,
        Request::Setstat { path, attrs } => paths::setstat(shared, id, &path, &attrs).await,
        Request::Remove { path } => paths::remove(shared, id, &path).await,
        Request::Rename { from, to } => paths::rename(shared, id, &from, &to, false).await,
        Request::PosixRename { from, to } => paths::rename(shared, id, &from, &to, true).await,
        Request::Realpath { path } => paths::realpath(shared, id, &path),
        Request::ExpandPath { path } => paths::expand(shared, id, &path),
        Request::Readlink { .. } | Request::Symlink { .. } => Ok(paths::no_links(id)),
        Request::NotUtf8 => Ok(paths::not_utf8(id)),
        Request::Limits => Ok(extensions::limits(id)),
        Request::Extended { name } => Ok(extensions::unsupported(id, &name)),
        Request::Unknown { kind } => Ok(extensions::unknown(id, kind)),
        // Started in order by `start`.
        Request::Read { .. } | Request::Write { .. } | Request::Close { .. } => Ok(codec::status(
            id,
            StatusCode::Failure,
            "internal routing error",
        )),
    }
}

#[cfg(test)]
mod tests;
