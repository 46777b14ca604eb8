//! Uploads: one PutObject for an object smaller than a part, otherwise a
//! multipart upload with a bounded number of parts in flight.
//!
//! Memory per upload stays within `part_size * concurrency` (SPEC: "part size
//! x upload_concurrency plus a little"): the part being filled counts as one
//! of the `concurrency` parts, so a new part starts filling only when at most
//! `concurrency - 1` are in flight. The multipart upload is created in the
//! background together with the first part, so no write waits for it.
//!
//! Nothing is visible until `finish` completes the upload. A failed, aborted
//! or dropped writer aborts it: in-flight parts are cancelled first, then
//! AbortMultipartUpload is retried with backoff in the background; if the
//! endpoint stays down the bucket, key and upload id are logged so an
//! operator (or a lifecycle rule) can remove the parts.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::raw::{ABORT_ATTEMPTS, MAX_PARTS, Part, Raw};
use super::stats::{Pool, Reservation, Stats};
use crate::{Error, ErrorKind, Kind, Meta, Result, Writer};

/// The first buffer of an upload grows from this size, so that a small file
/// does not allocate a whole part.
const FIRST_BUFFER: usize = 64 << 10;

type UploadId = Shared<BoxFuture<'static, Result<String>>>;

fn join_error(error: tokio::task::JoinError) -> Error {
    Error::internal(format!("an upload task failed: {error}"))
}

/// A multipart upload in progress.
struct Upload {
    /// Resolves to the upload id once CreateMultipartUpload has answered.
    id: UploadId,
    next_part: u32,
    in_flight: Vec<JoinHandle<Result<Part>>>,
    done: Vec<Part>,
}

pub(crate) struct S3Writer {
    raw: Arc<Raw>,
    key: String,
    part_size: usize,
    concurrency: usize,
    runtime: Handle,
    stats: Arc<Stats>,
    buffer: BytesMut,
    /// Counts `buffer.len()` against the upload gauge.
    buffered: Reservation,
    written: u64,
    upload: Option<Upload>,
    /// The first error; every later call reports it.
    failed: Option<Error>,
    /// Set while a call is in progress: if that call's future is dropped
    /// half-way, the writer's state is unknown and it counts as failed.
    busy: bool,
    /// The store's background tasks: aborts run there, and this writer
    /// counts as one of them (its token) until it is dropped, so that
    /// `Store::quiesce` waits for it and for the abort it leaves behind.
    background: TaskTracker,
    _alive: TaskTrackerToken,
}

impl S3Writer {
    pub(crate) fn new(
        raw: Arc<Raw>,
        key: String,
        part_size: usize,
        concurrency: usize,
        runtime: Handle,
        stats: Arc<Stats>,
        background: TaskTracker,
    ) -> S3Writer {
        let buffered = Reservation::new(&stats, Pool::Upload, 0);
        S3Writer {
            _alive: background.token(),
            background,
            raw,
            key,
            part_size,
            concurrency: concurrency.max(1),
            runtime,
            stats,
            buffer: BytesMut::new(),
            buffered,
            written: 0,
            upload: None,
            failed: None,
            busy: false,
        }
    }

    fn check(&mut self) -> Result<()> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.busy {
            return Err(self.fail(Error::internal(
                "an earlier write to this upload was interrupted",
            )));
        }
        Ok(())
    }

    /// Marks the writer failed, releases its buffer and aborts the upload in
    /// the background. Returns the error for the caller.
    fn fail(&mut self, error: Error) -> Error {
        if self.failed.is_none() {
            self.failed = Some(error.clone());
        }
        self.buffer = BytesMut::new();
        self.buffered = Reservation::new(&self.stats, Pool::Upload, 0);
        if let Some(upload) = self.upload.take() {
            self.spawn_abort(upload);
        }
        error
    }

    fn spawn_abort(&self, upload: Upload) {
        let raw = self.raw.clone();
        let key = self.key.clone();
        self.background.spawn_on(
            async move {
                if let Some(upload_id) = cancel(upload).await {
                    raw.abort_with_retries(&key, &upload_id, ABORT_ATTEMPTS)
                        .await;
                }
            },
            &self.runtime,
        );
    }

    /// Makes room for `extra` more bytes in the buffer without ever holding
    /// more than one part's worth of capacity.
    fn reserve(&mut self, extra: usize) {
        let needed = self.buffer.len() + extra;
        if needed <= self.buffer.capacity() {
            return;
        }
        let capacity = if self.upload.is_none() && needed < self.part_size {
            needed
                .max(FIRST_BUFFER)
                .max(self.buffer.capacity() * 2)
                .min(self.part_size)
        } else {
            self.part_size
        };
        let mut grown = BytesMut::with_capacity(capacity);
        grown.extend_from_slice(&self.buffer);
        self.buffer = grown;
    }

    async fn write_data(&mut self, mut data: Bytes) -> Result<()> {
        self.reap().await?;
        while !data.is_empty() {
            if self.buffer.is_empty() && data.len() >= self.part_size {
                // A whole part straight from the caller's buffer, no copy.
                let part = data.split_to(self.part_size);
                self.written += part.len() as u64;
                let reservation = Reservation::new(&self.stats, Pool::Upload, part.len() as u64);
                self.submit(part, reservation).await?;
                continue;
            }
            if self.buffer.is_empty() {
                // The part about to fill takes one of the slots.
                self.wait_for_a_free_slot().await?;
            }
            let take = (self.part_size - self.buffer.len()).min(data.len());
            self.reserve(take);
            self.buffer.extend_from_slice(&data[..take]);
            data.advance(take);
            self.buffered.grow(take as u64);
            self.written += take as u64;
            if self.buffer.len() == self.part_size {
                let part = self.buffer.split().freeze();
                let reservation = self.buffered.split(part.len() as u64);
                self.submit(part, reservation).await?;
            }
        }
        Ok(())
    }

    /// Collects parts that have finished, reporting the first failure.
    async fn reap(&mut self) -> Result<()> {
        let Some(upload) = self.upload.as_mut() else {
            return Ok(());
        };
        let mut i = 0;
        while i < upload.in_flight.len() {
            if upload.in_flight[i].is_finished() {
                let handle = upload.in_flight.swap_remove(i);
                let part = handle.await.map_err(join_error)??;
                upload.done.push(part);
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// Waits until fewer than `concurrency` parts are in flight.
    async fn wait_for_a_free_slot(&mut self) -> Result<()> {
        let concurrency = self.concurrency;
        let Some(upload) = self.upload.as_mut() else {
            return Ok(());
        };
        while upload.in_flight.len() >= concurrency {
            // Handles stay in the list while awaited, so a cancelled write
            // leaves them for the abort to cancel.
            let (result, index, _) = futures::future::select_all(upload.in_flight.iter_mut()).await;
            drop(upload.in_flight.swap_remove(index));
            upload.done.push(result.map_err(join_error)??);
        }
        Ok(())
    }

    /// Starts uploading one part (creating the multipart upload first if
    /// needed), after waiting for a free slot.
    async fn submit(&mut self, part: Bytes, reservation: Reservation) -> Result<()> {
        if self.upload.is_none() {
            let raw = self.raw.clone();
            let key = self.key.clone();
            let task = self
                .runtime
                .spawn(async move { raw.create_multipart(&key).await });
            let id: UploadId = async move { task.await.map_err(join_error)? }
                .boxed()
                .shared();
            self.upload = Some(Upload {
                id,
                next_part: 1,
                in_flight: Vec::new(),
                done: Vec::new(),
            });
        }
        self.wait_for_a_free_slot().await?;
        let Some(upload) = self.upload.as_mut() else {
            return Err(Error::internal("no upload"));
        };
        if upload.next_part > MAX_PARTS {
            return Err(Error::new(
                ErrorKind::NoSpace,
                format!(
                    "the object would need more than {MAX_PARTS} parts of {} bytes; \
                     raise upload_part_size",
                    self.part_size
                ),
            ));
        }
        let number = upload.next_part;
        upload.next_part += 1;
        let raw = self.raw.clone();
        let key = self.key.clone();
        let id = upload.id.clone();
        upload.in_flight.push(self.runtime.spawn(async move {
            let upload_id = id.await?;
            let result = raw.upload_part(&key, &upload_id, number, part).await;
            drop(reservation);
            result
        }));
        Ok(())
    }

    async fn finish_upload(&mut self) -> Result<()> {
        if self.upload.is_none() {
            let body = self.buffer.split().freeze();
            self.raw.put_object(&self.key, body).await?;
            self.buffered = Reservation::new(&self.stats, Pool::Upload, 0);
            return Ok(());
        }
        if !self.buffer.is_empty() {
            let part = self.buffer.split().freeze();
            let reservation = self.buffered.split(part.len() as u64);
            self.submit(part, reservation).await?;
        }
        let Some(upload) = self.upload.as_mut() else {
            return Err(Error::internal("no upload"));
        };
        while !upload.in_flight.is_empty() {
            let (result, index, _) = futures::future::select_all(upload.in_flight.iter_mut()).await;
            drop(upload.in_flight.swap_remove(index));
            upload.done.push(result.map_err(join_error)??);
        }
        let upload_id = upload.id.clone().await?;
        upload.done.sort_by_key(|part| part.number);
        self.raw
            .complete(&self.key, &upload_id, &upload.done)
            .await?;
        self.upload = None;
        Ok(())
    }
}

/// Cancels an upload's parts in flight and waits for them to stop. Returns
/// the upload id, if the upload was created.
async fn cancel(upload: Upload) -> Option<String> {
    for handle in &upload.in_flight {
        handle.abort();
    }
    for handle in upload.in_flight {
        let _ = handle.await;
    }
    upload.id.await.ok()
}

#[async_trait]
impl Writer for S3Writer {
    async fn write_at(&mut self, offset: u64, data: Bytes) -> Result<()> {
        self.check()?;
        if offset != self.written {
            let error = Error::unsupported(format!(
                "non-sequential write at offset {offset} (expected {}): S3 objects are \
                 written sequentially; append and resume are not supported yet",
                self.written
            ));
            return Err(self.fail(error));
        }
        if data.is_empty() {
            return Ok(());
        }
        self.busy = true;
        let result = self.write_data(data).await;
        self.busy = false;
        result.map_err(|error| self.fail(error))
    }

    async fn finish(mut self: Box<Self>) -> Result<Meta> {
        self.check()?;
        self.busy = true;
        let result = self.finish_upload().await;
        self.busy = false;
        match result {
            Ok(()) => Ok(Meta {
                kind: Kind::File,
                size: self.written,
                modified: Some(SystemTime::now()),
                mode: None,
            }),
            Err(error) => Err(self.fail(error)),
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.buffer = BytesMut::new();
        self.buffered = Reservation::new(&self.stats, Pool::Upload, 0);
        let Some(upload) = self.upload.take() else {
            return Ok(());
        };
        // In a task of its own, so that the abort goes on even if the caller
        // stops waiting for it.
        let raw = self.raw.clone();
        let key = self.key.clone();
        let background = self.background.clone();
        let task = self.background.spawn_on(
            async move {
                let Some(upload_id) = cancel(upload).await else {
                    return Ok(());
                };
                match raw.abort(&key, &upload_id).await {
                    Ok(()) => Ok(()),
                    Err(error) => {
                        // Keep trying in the background; nothing becomes visible
                        // either way, only the parts stay stored.
                        let message = format!(
                            "{}; the abort of upload {upload_id} is retried in the background",
                            error.message
                        );
                        background.spawn(async move {
                            raw.abort_with_retries(&key, &upload_id, ABORT_ATTEMPTS - 1)
                                .await;
                        });
                        Err(Error::new(error.kind, message))
                    }
                }
            },
            &self.runtime,
        );
        task.await.map_err(join_error)?
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take() {
            self.spawn_abort(upload);
        }
    }
}
