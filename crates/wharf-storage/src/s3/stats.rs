//! Counters that make the s3 backend's resource use visible: bytes held by
//! uploads and read-ahead (current and peak) and HTTP requests by S3
//! operation. Tests assert memory bounds and request counts with them; the
//! binary may export them as metrics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A snapshot of an [`S3Store`](super::S3Store)'s counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Stats {
    /// Bytes that uploads hold now: parts being filled plus parts in flight.
    pub upload_buffered: u64,
    /// The most `upload_buffered` has been since the store was created (or
    /// since [`S3Store::reset_peaks`](super::S3Store::reset_peaks)).
    pub upload_buffered_peak: u64,
    /// Bytes that readers hold in read-ahead chunks now (fetched or in flight).
    pub read_ahead_buffered: u64,
    /// The most `read_ahead_buffered` has been.
    pub read_ahead_peak: u64,
    /// HTTP requests sent (every attempt, retries included), by S3 operation
    /// name (`GetObject`, `ListObjectsV2`, `UploadPart`, ...).
    pub requests: BTreeMap<String, u64>,
}

impl S3Stats {
    /// Requests sent for one S3 operation.
    pub fn requests(&self, operation: &str) -> u64 {
        self.requests.get(operation).copied().unwrap_or(0)
    }
}

/// A level with a high-water mark.
#[derive(Debug, Default)]
pub(crate) struct Gauge {
    current: AtomicU64,
    peak: AtomicU64,
}

impl Gauge {
    fn add(&self, n: u64) {
        let now = self.current.fetch_add(n, Ordering::AcqRel) + n;
        self.peak.fetch_max(now, Ordering::AcqRel);
    }

    fn sub(&self, n: u64) {
        self.current.fetch_sub(n, Ordering::AcqRel);
    }

    fn get(&self) -> (u64, u64) {
        (
            self.current.load(Ordering::Acquire),
            self.peak.load(Ordering::Acquire),
        )
    }

    fn reset_peak(&self) {
        self.peak
            .store(self.current.load(Ordering::Acquire), Ordering::Release);
    }
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) upload: Gauge,
    pub(crate) read_ahead: Gauge,
    requests: Mutex<BTreeMap<&'static str, u64>>,
}

impl Stats {
    pub(crate) fn request(&self, operation: &'static str) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *requests.entry(operation).or_insert(0) += 1;
    }

    pub(crate) fn snapshot(&self) -> S3Stats {
        let (upload_buffered, upload_buffered_peak) = self.upload.get();
        let (read_ahead_buffered, read_ahead_peak) = self.read_ahead.get();
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect();
        S3Stats {
            upload_buffered,
            upload_buffered_peak,
            read_ahead_buffered,
            read_ahead_peak,
            requests,
        }
    }

    pub(crate) fn reset_peaks(&self) {
        self.upload.reset_peak();
        self.read_ahead.reset_peak();
    }
}

/// Which gauge a [`Reservation`] counts against.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pool {
    Upload,
    ReadAhead,
}

/// Bytes counted against a gauge for as long as the reservation lives.
#[derive(Debug)]
pub(crate) struct Reservation {
    stats: Arc<Stats>,
    pool: Pool,
    bytes: u64,
}

impl Reservation {
    pub(crate) fn new(stats: &Arc<Stats>, pool: Pool, bytes: u64) -> Reservation {
        let mut reservation = Reservation {
            stats: stats.clone(),
            pool,
            bytes: 0,
        };
        reservation.grow(bytes);
        reservation
    }

    fn gauge(&self) -> &Gauge {
        match self.pool {
            Pool::Upload => &self.stats.upload,
            Pool::ReadAhead => &self.stats.read_ahead,
        }
    }

    pub(crate) fn grow(&mut self, bytes: u64) {
        if bytes > 0 {
            self.gauge().add(bytes);
            self.bytes += bytes;
        }
    }

    /// Moves `bytes` of this reservation into a new one (for a buffer that
    /// becomes a part in flight).
    pub(crate) fn split(&mut self, bytes: u64) -> Reservation {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        Reservation {
            stats: self.stats.clone(),
            pool: self.pool,
            bytes,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.gauge().sub(self.bytes);
        }
    }
}
