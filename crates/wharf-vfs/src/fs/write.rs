//! Writing: [`OpenOptions`] (what a front-end asks for), `open_write`
//! (which alone decides what each combination means, authorized as a
//! PutObject) and the [`FileWriter`] handle, whose upload becomes visible
//! only when it is closed.

use std::time::{Instant, SystemTime};

use bytes::Bytes;
use wharf_audit::{Activity, Event};
use wharf_storage::{Kind, Writer};

use super::UserFs;
use super::log::{elapsed_ms, store_path};
use crate::authorize::{AccessRequest, Action};
use crate::error::{Error, ErrorKind, Result};
use crate::path::VirtualPath;
use crate::quota::Taken;

/// How a file is opened for writing, in protocol-neutral terms: front-ends
/// translate their wire requests (SFTP OPEN flags, FTP STOR/APPE/REST) into
/// this, and [`UserFs::open_write`] alone decides what each combination
/// means, so the protocols cannot drift apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenOptions {
    /// A missing file is created (else it is an error).
    pub create: bool,
    /// An existing file is replaced (else only an empty one may be).
    pub truncate: bool,
    /// An existing file is an error.
    pub exclusive: bool,
    /// Writes go to the end of an existing file (SFTP APPEND, FTP APPE).
    pub append: bool,
    /// The file is also opened for reading (SFTP READ|WRITE); logged only.
    pub read: bool,
    /// Where the client will start writing (FTP REST before STOR).
    pub offset: u64,
}

impl OpenOptions {
    /// Create or replace (FTP STOR, SFTP CREAT|TRUNC).
    pub const REPLACE: OpenOptions = OpenOptions {
        create: true,
        truncate: true,
        exclusive: false,
        append: false,
        read: false,
        offset: 0,
    };

    /// The `mode` of the OPEN log line, in the order AWS Transfer Family
    /// writes it: `CREATE|TRUNCATE|WRITE`.
    pub fn mode_label(&self) -> String {
        let mut mode = String::new();
        for (set, name) in [
            (self.create, "CREATE"),
            (self.truncate, "TRUNCATE"),
            (self.exclusive, "EXCLUSIVE"),
            (self.append, "APPEND"),
            (self.read, "READ"),
        ] {
            if set {
                mode.push_str(name);
                mode.push('|');
            }
        }
        mode.push_str("WRITE");
        mode
    }
}

/// The largest file anyone may write: S3's object size limit, for every
/// kind of store (a 1-byte write at 1 TiB would otherwise make a sparse
/// file the size of the offset, or wrap around near 2^64).
pub const MAX_OBJECT_BYTES: u64 = 5 << 40;

impl UserFs {
    /// Opens a file for writing. Nothing is visible under `path` until
    /// [`FileWriter::close`] succeeds. The existence checks that `options`
    /// ask for are part of the write and need only `s3:PutObject`, as a
    /// conditional PUT would. What each combination of options means is
    /// decided here, for every protocol:
    /// - an existing directory: "is a directory";
    /// - `exclusive` and the file exists: "file exists";
    /// - a write that would keep existing data (no `truncate`, `append`, or
    ///   a start `offset`) on a non-empty file, or a start `offset` at all:
    ///   unsupported (in-place updates and resumed uploads are not built);
    ///   appending to a missing or empty file is an upload like any other;
    /// - no `create` and the file is missing: "no such file".
    pub async fn open_write(&self, path: &VirtualPath, options: OpenOptions) -> Result<FileWriter> {
        Self::check_new_name(path)?;
        let (mount, key) = self.writable(path, "OPEN")?;
        self.authorize(
            "OPEN",
            path,
            AccessRequest::new(Action::PutObject, &mount.store.name, key.as_str()),
        )?;
        match mount.store.store.head(&key).await? {
            Some(meta) if meta.kind == Kind::Directory => {
                return Err(Error::new(
                    ErrorKind::IsADirectory,
                    format!("{path}: is a directory"),
                ));
            }
            Some(_) if options.exclusive => {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("{path}: already exists"),
                ));
            }
            Some(meta) if (!options.truncate || options.append) && meta.size > 0 => {
                return Err(Error::public(
                    ErrorKind::Unsupported,
                    if options.append {
                        "appending to an existing file is not supported; upload the whole file instead"
                    } else {
                        "updating an existing file in place (resume) is not supported; replace it instead"
                    },
                ));
            }
            None if !options.create => return Err(Error::not_found(path)),
            _ => {}
        }
        if options.offset > 0 {
            return Err(Error::public(
                ErrorKind::Unsupported,
                "resuming an upload at an offset is not supported; upload the whole file instead",
            ));
        }
        let handle = self.take_handle(path, "OPEN")?;
        let log_path = store_path(mount, &key);
        let writer = match mount.store.store.open_write(&key).await {
            Ok(writer) => writer,
            Err(error) => {
                let error = Error::from(error);
                self.log_error("OPEN", &log_path, &error);
                return Err(error);
            }
        };
        self.log_open(&log_path, &options.mode_label());
        Ok(FileWriter {
            writer: Some(writer),
            _handle: handle,
            fs: self.clone(),
            log_path,
            opened: Instant::now(),
            bytes_in: 0,
            random_write: mount.store.store.capabilities().random_write,
        })
    }
}

/// A file being written. Dropping it unclosed discards the upload.
pub struct FileWriter {
    writer: Option<Box<dyn Writer>>,
    _handle: Taken,
    fs: UserFs,
    log_path: String,
    opened: Instant,
    bytes_in: u64,
    random_write: bool,
}

impl FileWriter {
    /// Whether writes may come at any offset (else only sequentially).
    pub fn random_write(&self) -> bool {
        self.random_write
    }

    /// Writes at `offset`. An error may belong to an earlier buffered write.
    /// Nothing may end beyond [`MAX_OBJECT_BYTES`].
    pub async fn write_at(&mut self, offset: u64, data: Bytes) -> Result<()> {
        let len = data.len() as u64;
        if offset
            .checked_add(len)
            .is_none_or(|end| end > MAX_OBJECT_BYTES)
        {
            return Err(Error::public(
                ErrorKind::NoSpace,
                "a file may not be larger than 5 TiB",
            ));
        }
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "write after close"))?;
        writer.write_at(offset, data).await?;
        self.bytes_in += len;
        Ok(())
    }

    /// Records a modification time to apply when the file is finished.
    pub fn set_modified(&mut self, modified: SystemTime) {
        if let Some(writer) = self.writer.as_mut() {
            writer.set_modified(modified);
        }
    }

    /// Makes the file visible under its name and logs `CLOSE`. On failure
    /// the upload is discarded, `ERROR` is logged and nothing is visible.
    pub async fn close(mut self) -> Result<()> {
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        match writer.finish().await {
            Ok(_) => {
                self.fs.inner.audit.record(
                    Activity::Close,
                    &Event {
                        path: Some(&self.log_path),
                        bytes_in: Some(self.bytes_in),
                        duration_ms: Some(elapsed_ms(self.opened)),
                        ..Event::default()
                    },
                );
                Ok(())
            }
            Err(error) => {
                let error = Error::from(error);
                self.fs.log_error("CLOSE", &self.log_path, &error);
                Err(error)
            }
        }
    }

    /// Discards the upload and logs `PARTIAL_CLOSE`.
    pub async fn abort(mut self) {
        if let Some(writer) = self.writer.take() {
            let _ = writer.abort().await;
            self.log_partial();
        }
    }

    fn log_partial(&self) {
        self.fs.inner.audit.record(
            Activity::PartialClose,
            &Event {
                path: Some(&self.log_path),
                bytes_in: Some(self.bytes_in),
                duration_ms: Some(elapsed_ms(self.opened)),
                ..Event::default()
            },
        );
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            // The store's writer cleans up when dropped.
            self.log_partial();
        }
    }
}
