//! Uploads: written to an unnamed `O_TMPFILE` (or, where a filesystem
//! lacks it, a hidden named temporary) beside the destination, sequential
//! writes gathered into one `pwritev`, and linked into place only when
//! finished.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use rustix::fs::{AtFlags, FileType, OFlags, Timespec, Timestamps};

use super::beneath::{Fs, meta_of};
use super::error::{errno, io_error};
use super::{TEMP_PREFIX, WRITE_BUFFER_BYTES, blocking};
use crate::{Error, ErrorKind, Key, Meta, Result, Writer};

pub(super) struct FsWriter {
    /// `None` once finished or aborted.
    file: Option<Arc<File>>,
    parent: Arc<OwnedFd>,
    name: String,
    /// The visible temporary name, when `O_TMPFILE` was not available.
    temp_name: Option<String>,
    /// Contiguous writes not yet on disk, starting at `pending_offset`. They
    /// are written together with one `pwritev`, without copying them.
    pending: Vec<Bytes>,
    pending_len: usize,
    pending_offset: u64,
    size: u64,
    modified: Option<SystemTime>,
    /// The first write error; every later call reports it.
    failed: Option<Error>,
}

/// A fresh hidden name for an upload in progress.
fn hidden_name() -> String {
    format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>())
}

impl FsWriter {
    /// Starts the upload of `key`, creating missing parents (an existing
    /// directory is an error). Blocking.
    pub(super) fn create(fs: &Fs, key: &Key) -> Result<FsWriter> {
        let (parent, name) = fs.parent(key, true)?;
        match rustix::fs::statat(&parent, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
                return Err(Error::new(
                    ErrorKind::IsADirectory,
                    format!("{key}: is a directory"),
                ));
            }
            _ => {}
        }
        let (file, temp_name) =
            match Fs::open_beneath(parent.as_fd(), "", OFlags::TMPFILE | OFlags::RDWR) {
                Ok(fd) => (File::from(fd), None),
                Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::ISDIR) => {
                    let temp = hidden_name();
                    let fd = Fs::open_beneath(
                        parent.as_fd(),
                        &temp,
                        OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
                    )
                    .map_err(|e| errno(e, &format!("cannot create a temporary file for {key}")))?;
                    (File::from(fd), Some(temp))
                }
                Err(e) => {
                    return Err(errno(
                        e,
                        &format!("cannot create a temporary file for {key}"),
                    ));
                }
            };
        Ok(FsWriter {
            file: Some(Arc::new(file)),
            parent: Arc::new(parent),
            name,
            temp_name,
            pending: Vec::new(),
            pending_len: 0,
            pending_offset: 0,
            size: 0,
            modified: None,
            failed: None,
        })
    }
}

/// Writes all of `chunks` at `offset` with as few `pwritev` calls as the
/// kernel allows (it may write less than asked).
fn write_all_vectored(file: &File, chunks: &[Bytes], mut offset: u64) -> io::Result<()> {
    const IOV_MAX: usize = 1024;
    let mut index = 0;
    let mut skip = 0; // bytes of chunks[index] already written
    while index < chunks.len() {
        let slices: Vec<io::IoSlice<'_>> = chunks[index..]
            .iter()
            .take(IOV_MAX)
            .enumerate()
            .map(|(i, c)| io::IoSlice::new(if i == 0 { &c[skip..] } else { &c[..] }))
            .collect();
        let mut written = match rustix::io::pwritev(file, &slices, offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "pwritev wrote nothing",
                ));
            }
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        offset += written as u64;
        while written > 0 && index < chunks.len() {
            let left = chunks[index].len() - skip;
            if written >= left {
                written -= left;
                index += 1;
                skip = 0;
            } else {
                skip += written;
                written = 0;
            }
        }
    }
    Ok(())
}

impl FsWriter {
    async fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let file = self
            .file
            .clone()
            .ok_or_else(|| Error::internal("write after finish"))?;
        let chunks = std::mem::take(&mut self.pending);
        let offset = self.pending_offset;
        self.pending_offset += self.pending_len as u64;
        self.pending_len = 0;
        let result = blocking(move || {
            write_all_vectored(&file, &chunks, offset).map_err(|e| io_error(e, "write failed"))?;
            let mut chunks = chunks;
            chunks.clear();
            Ok(chunks)
        })
        .await;
        match result {
            Ok(chunks) => {
                // Keep the vector's capacity for the next batch.
                self.pending = chunks;
                Ok(())
            }
            Err(error) => {
                self.failed = Some(error.clone());
                Err(error)
            }
        }
    }
}

#[async_trait]
impl Writer for FsWriter {
    async fn write_at(&mut self, offset: u64, data: Bytes) -> Result<()> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if data.is_empty() {
            // A zero-length write is legal (SFTP) and changes nothing.
            return Ok(());
        }
        let contiguous = offset == self.pending_offset + self.pending_len as u64;
        if !contiguous || self.pending_len + data.len() > WRITE_BUFFER_BYTES {
            self.flush().await?;
        }
        if self.pending.is_empty() {
            self.pending_offset = offset;
        }
        let end = offset + data.len() as u64;
        self.pending_len += data.len();
        self.pending.push(data);
        if self.pending_len >= WRITE_BUFFER_BYTES {
            self.flush().await?;
        }
        self.size = self.size.max(end);
        Ok(())
    }

    fn set_modified(&mut self, modified: SystemTime) {
        self.modified = Some(modified);
    }

    async fn finish(mut self: Box<Self>) -> Result<Meta> {
        if let Some(error) = self.failed.take() {
            let _ = self.abort().await;
            return Err(error);
        }
        if let Err(error) = self.flush().await {
            let _ = self.abort().await;
            return Err(error);
        }
        let file = self
            .file
            .take()
            .ok_or_else(|| Error::internal("finish called twice"))?;
        let parent = self.parent.clone();
        let name = std::mem::take(&mut self.name);
        let temp_name = self.temp_name.take();
        let modified = self.modified;
        blocking(move || {
            if let Some(modified) = modified {
                set_times(file.as_fd(), modified).map_err(|e| errno(e, "cannot set times"))?;
            }
            let stat = rustix::fs::fstat(file.as_fd()).map_err(|e| errno(e, "stat"))?;
            let temp = match temp_name {
                Some(temp) => temp,
                None => {
                    // Give the unnamed file a hidden name, then move it over
                    // the destination in one atomic rename.
                    let temp = hidden_name();
                    let proc_path =
                        format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&*file));
                    rustix::fs::linkat(
                        rustix::fs::CWD,
                        proc_path.as_str(),
                        &*parent,
                        temp.as_str(),
                        AtFlags::SYMLINK_FOLLOW,
                    )
                    .map_err(|e| errno(e, &format!("cannot link the upload of {name}")))?;
                    temp
                }
            };
            if let Err(e) = rustix::fs::renameat(&*parent, temp.as_str(), &*parent, name.as_str()) {
                let _ = rustix::fs::unlinkat(&*parent, temp.as_str(), AtFlags::empty());
                return Err(errno(
                    e,
                    &format!("cannot move the upload into place as {name}"),
                ));
            }
            Ok(meta_of(&stat))
        })
        .await
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.file = None;
        if let Some(temp) = self.temp_name.take() {
            let parent = self.parent.clone();
            blocking(move || {
                rustix::fs::unlinkat(&*parent, temp.as_str(), AtFlags::empty())
                    .map_err(|e| errno(e, "cannot remove the temporary upload"))
            })
            .await?;
        }
        Ok(())
    }
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        // An O_TMPFILE upload vanishes with its descriptor; a named temporary
        // has to be removed.
        if let Some(temp) = self.temp_name.take() {
            let _ = rustix::fs::unlinkat(&*self.parent, temp.as_str(), AtFlags::empty());
        }
    }
}

pub(super) fn set_times(fd: impl AsFd, modified: SystemTime) -> rustix::io::Result<()> {
    let since = modified.duration_since(UNIX_EPOCH).unwrap_or_default();
    let spec = Timespec {
        tv_sec: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(since.subsec_nanos()),
    };
    rustix::fs::futimens(
        fd,
        &Timestamps {
            last_access: spec,
            last_modification: spec,
        },
    )
}
