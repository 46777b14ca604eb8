//! Reading: `open_read` (authorized as a GetObject, with the object's
//! tags where policies test them) and the [`FileReader`] handle, which
//! logs CLOSE, or PARTIAL_CLOSE when it is dropped unclosed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use bytes::BytesMut;
use wharf_audit::{Activity, Event};
use wharf_storage::{Kind, Reader};

use super::log::{elapsed_ms, store_path};
use super::{Metadata, UserFs};
use crate::authorize::{AccessRequest, Action};
use crate::error::{Error, ErrorKind, Result};
use crate::namespace::Resolved;
use crate::path::VirtualPath;
use crate::quota::Taken;

impl UserFs {
    /// Opens a file for reading. `OPEN` is logged; `CLOSE` when the reader
    /// is closed (`PARTIAL_CLOSE` if it is dropped unclosed).
    pub async fn open_read(&self, path: &VirtualPath) -> Result<FileReader> {
        let (mount, key) = match self.resolve(path)? {
            Resolved::Unmapped => return Err(Error::not_found(path)),
            Resolved::Object {
                mount,
                key,
                is_mount_point,
            } if !mount.is_directory_entry(is_mount_point) => (mount, key),
            // A directory that exists for what lies below it, or a
            // directory mapping's own entry.
            Resolved::Virtual | Resolved::Object { .. } => {
                return Err(Error::new(
                    ErrorKind::IsADirectory,
                    format!("{path}: is a directory"),
                ));
            }
        };
        let object_tags = self.object_tags(mount, &key).await?;
        self.authorize(
            "OPEN",
            path,
            AccessRequest::new(Action::GetObject, &mount.store.name, key.as_str())
                .with_tags(&object_tags),
        )?;
        let handle = self.take_handle(path, "OPEN")?;
        let log_path = store_path(mount, &key);
        let reader = match mount.store.store.open_read(&key).await {
            Ok(reader) => reader,
            Err(error) => {
                let error = Error::from(error);
                if error.kind != ErrorKind::NotFound && error.kind != ErrorKind::IsADirectory {
                    self.log_error("OPEN", &log_path, &error);
                }
                return Err(error);
            }
        };
        self.log_open(&log_path, "READ");
        Ok(FileReader {
            reader,
            handle: parking_lot::Mutex::new(Some(handle)),
            fs: self.clone(),
            log_path,
            opened: Instant::now(),
            bytes_out: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        })
    }
}

/// A file open for reading.
pub struct FileReader {
    reader: Box<dyn Reader>,
    /// Its unit of the handle quota, given back at close (reads still in
    /// flight on other clones may finish).
    handle: parking_lot::Mutex<Option<Taken>>,
    fs: UserFs,
    log_path: String,
    opened: Instant,
    bytes_out: AtomicU64,
    closed: AtomicBool,
}

impl FileReader {
    /// The size when opened.
    pub fn size(&self) -> u64 {
        self.reader.size()
    }

    /// The file's metadata when it was opened (`fstat`: an open handle
    /// needs no new authorization).
    pub fn metadata(&self) -> Metadata {
        Metadata {
            kind: Kind::File,
            size: self.reader.size(),
            modified: self.reader.modified(),
            mode: None,
        }
    }

    /// Appends up to `len` bytes at `offset` to `buf`; fewer only at the end.
    pub async fn read_at(&self, offset: u64, len: usize, buf: BytesMut) -> Result<BytesMut> {
        let before = buf.len();
        let buf = self.reader.read_at(offset, len, buf).await?;
        self.bytes_out
            .fetch_add((buf.len() - before) as u64, Ordering::Relaxed);
        Ok(buf)
    }

    /// Closes the file and logs `CLOSE`. Reads still in flight on other
    /// clones of an `Arc<FileReader>` may finish.
    pub fn close(&self) {
        self.handle.lock().take();
        self.finish_log(Activity::Close);
    }

    fn finish_log(&self, activity: Activity) {
        if self.closed.swap(true, Ordering::Relaxed) {
            return;
        }
        self.fs.inner.audit.record(
            activity,
            &Event {
                path: Some(&self.log_path),
                bytes_out: Some(self.bytes_out.load(Ordering::Relaxed)),
                duration_ms: Some(elapsed_ms(self.opened)),
                ..Event::default()
            },
        );
    }
}

impl Drop for FileReader {
    fn drop(&mut self) {
        self.finish_log(Activity::PartialClose);
    }
}
