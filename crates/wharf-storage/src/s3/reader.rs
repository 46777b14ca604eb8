//! Downloads: ranged GETs with read-ahead.
//!
//! SFTP clients send many small pipelined reads (32-256 KiB at sequential
//! offsets, dozens in flight). One GET each would cost a round trip per
//! request, so a reader that sees sequential access serves reads from
//! aligned chunks (`chunk` bytes, one GET each) and keeps `ahead` chunks
//! downloading ahead of the reads. Random reads, and reads larger than a
//! chunk, are one ranged GET of exactly what was asked.
//!
//! Memory per reader is bounded: the chunks kept are the one the reads are
//! in, the one before (pipelined reads still finishing there) and `ahead`
//! after it, so at most `(ahead + 2) * chunk` bytes while the reads in
//! flight span at most one chunk (64 x 128 KiB against 8 MiB chunks). A
//! chunk left behind is only kept alive by reads still waiting for it, so a
//! client with a wider span of reads in flight adds at most that span.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use opendal::Operator;
use tokio::task::AbortHandle;

use super::error::from_opendal;
use super::stats::{Pool, Reservation, Stats};
use crate::{Error, Reader, Result};

struct Chunk {
    data: Bytes,
    _reservation: Reservation,
}

type ChunkFuture = Shared<BoxFuture<'static, Result<Arc<Chunk>>>>;

struct Slot {
    future: ChunkFuture,
    abort: AbortHandle,
}

#[derive(Default)]
struct Window {
    /// The chunk the sequential reads have reached.
    cursor: Option<u64>,
    /// Where the last read ended: a read starting here is sequential.
    next_offset: Option<u64>,
    chunks: BTreeMap<u64, Slot>,
}

pub(crate) struct S3Reader {
    op: Operator,
    bucket: Arc<str>,
    key: String,
    size: u64,
    modified: Option<std::time::SystemTime>,
    chunk: u64,
    ahead: u64,
    stats: Arc<Stats>,
    window: Mutex<Window>,
}

impl S3Reader {
    pub(crate) fn new(
        op: Operator,
        bucket: String,
        key: String,
        meta: &crate::Meta,
        chunk: u64,
        ahead: u64,
        stats: Arc<Stats>,
    ) -> S3Reader {
        S3Reader {
            op,
            bucket: bucket.into(),
            key,
            size: meta.size,
            modified: meta.modified,
            chunk: chunk.max(1),
            ahead,
            stats,
            window: Mutex::new(Window::default()),
        }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spawn_chunk(&self, index: u64) -> Slot {
        let start = index * self.chunk;
        let end = (start + self.chunk).min(self.size);
        let reservation = Reservation::new(&self.stats, Pool::ReadAhead, end - start);
        let op = self.op.clone();
        let bucket = self.bucket.clone();
        let key = self.key.clone();
        let task = tokio::spawn(async move {
            let options = opendal::options::ReadOptions {
                range: (start..end).into(),
                ..Default::default()
            };
            let buffer = op
                .read_options(&key, options)
                .await
                .map_err(|e| from_opendal(e, &bucket, "GetObject", &key))?;
            Ok(Arc::new(Chunk {
                data: buffer.to_bytes(),
                _reservation: reservation,
            }))
        });
        let abort = task.abort_handle();
        let future = async move {
            task.await
                .map_err(|e| Error::internal(format!("a read-ahead task failed: {e}")))?
        }
        .boxed()
        .shared();
        Slot { future, abort }
    }

    /// Decides how to serve `[offset, end)`: from chunks (returned in order,
    /// read-ahead started) or, for a random access, by one direct GET (`None`).
    fn plan(&self, offset: u64, end: u64) -> Option<Vec<(u64, ChunkFuture)>> {
        let first = offset / self.chunk;
        let last = (end - 1) / self.chunk;
        let mut window = self.window();
        let sequential_offset = window.next_offset == Some(offset);
        window.next_offset = Some(end);
        if last > first + 1 {
            return None;
        }
        let known = window.chunks.contains_key(&first);
        let sequential = known
            || sequential_offset
            || (window.cursor.is_none() && offset == 0)
            || window
                .cursor
                .is_some_and(|cursor| first == cursor || first == cursor + 1);
        if !sequential {
            return None;
        }
        if window.cursor.is_none_or(|cursor| first > cursor) {
            window.cursor = Some(first);
            // Drop chunks the reads have left behind (keeping one for
            // pipelined reads still in it); stop their downloads unless a
            // read is waiting for them.
            let keep_from = first.saturating_sub(1);
            let behind: Vec<u64> = window.chunks.range(..keep_from).map(|(i, _)| *i).collect();
            for index in behind {
                if let Some(slot) = window.chunks.remove(&index)
                    && slot.future.strong_count() == Some(1)
                {
                    slot.abort.abort();
                }
            }
        }
        let cursor = window.cursor.unwrap_or(first);
        let chunks_in_object = self.size.div_ceil(self.chunk);
        // Read ahead once the access has shown itself sequential (a single
        // read at offset 0, as `file` does, fetches only the first chunk).
        let ahead_to = if sequential_offset || known {
            cursor + self.ahead
        } else {
            cursor
        };
        let upto = ahead_to.max(last).min(chunks_in_object.saturating_sub(1));
        for index in first..=upto {
            if let Entry::Vacant(vacant) = window.chunks.entry(index) {
                vacant.insert(self.spawn_chunk(index));
            }
        }
        // Chunks far ahead of a window that jumped back are not needed.
        let beyond: Vec<u64> = window
            .chunks
            .range(cursor + self.ahead + 1..)
            .map(|(i, _)| *i)
            .collect();
        for index in beyond {
            if index > last
                && let Some(slot) = window.chunks.remove(&index)
                && slot.future.strong_count() == Some(1)
            {
                slot.abort.abort();
            }
        }
        Some(
            (first..=last)
                .filter_map(|index| {
                    window
                        .chunks
                        .get(&index)
                        .map(|slot| (index, slot.future.clone()))
                })
                .collect(),
        )
    }

    fn forget(&self, index: u64, future: &ChunkFuture) {
        let mut window = self.window();
        if window
            .chunks
            .get(&index)
            .is_some_and(|slot| slot.future.ptr_eq(future))
        {
            window.chunks.remove(&index);
        }
    }

    async fn read_direct(&self, offset: u64, end: u64, mut buf: BytesMut) -> Result<BytesMut> {
        let options = opendal::options::ReadOptions {
            range: (offset..end).into(),
            ..Default::default()
        };
        let data = self
            .op
            .read_options(&self.key, options)
            .await
            .map_err(|e| from_opendal(e, &self.bucket, "GetObject", &self.key))?;
        for piece in data {
            buf.extend_from_slice(&piece);
        }
        Ok(buf)
    }
}

#[async_trait]
impl Reader for S3Reader {
    fn size(&self) -> u64 {
        self.size
    }

    fn modified(&self) -> Option<std::time::SystemTime> {
        self.modified
    }

    async fn read_at(&self, offset: u64, len: usize, mut buf: BytesMut) -> Result<BytesMut> {
        if len == 0 || offset >= self.size {
            return Ok(buf);
        }
        let end = offset.saturating_add(len as u64).min(self.size);
        let Some(chunks) = self.plan(offset, end) else {
            return self.read_direct(offset, end, buf).await;
        };
        buf.reserve((end - offset) as usize);
        for (index, future) in chunks {
            let chunk = match future.clone().await {
                Ok(chunk) => chunk,
                Err(error) => {
                    // Let a later read try again.
                    self.forget(index, &future);
                    return Err(error);
                }
            };
            let chunk_start = index * self.chunk;
            let from = (offset.max(chunk_start) - chunk_start) as usize;
            let wanted_to = (end.min(chunk_start + self.chunk) - chunk_start) as usize;
            let to = wanted_to.min(chunk.data.len());
            if from < to {
                buf.extend_from_slice(&chunk.data[from..to]);
            }
            if to < wanted_to {
                break; // the object is shorter than when it was opened
            }
        }
        Ok(buf)
    }
}

impl Drop for S3Reader {
    fn drop(&mut self) {
        let window = self.window.get_mut().unwrap_or_else(|p| p.into_inner());
        for slot in window.chunks.values() {
            slot.abort.abort();
        }
    }
}
