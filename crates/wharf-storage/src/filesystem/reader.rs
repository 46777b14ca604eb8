//! Reads: positioned reads of an open file on a blocking thread.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::BytesMut;
use rustix::fs::FileType;

use super::beneath::{Fs, meta_of};
use super::blocking;
use super::error::{errno, io_error};
use crate::{Error, ErrorKind, Key, Reader, Result};

pub(super) struct FsReader {
    file: Arc<File>,
    size: u64,
    modified: Option<SystemTime>,
}

impl FsReader {
    /// Opens the file `key` (a directory is an error). Blocking.
    pub(super) fn open(fs: &Fs, key: &Key) -> Result<FsReader> {
        let fd = fs.open_file(key)?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| errno(e, "stat"))?;
        if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            return Err(Error::new(
                ErrorKind::IsADirectory,
                format!("{key}: is a directory"),
            ));
        }
        Ok(FsReader {
            file: Arc::new(File::from(fd)),
            size: u64::try_from(stat.st_size).unwrap_or(0),
            modified: meta_of(&stat).modified,
        })
    }
}

#[async_trait]
impl Reader for FsReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn modified(&self) -> Option<SystemTime> {
        self.modified
    }

    async fn read_at(&self, offset: u64, len: usize, mut buf: BytesMut) -> Result<BytesMut> {
        let file = self.file.clone();
        blocking(move || {
            let start = buf.len();
            buf.resize(start + len, 0);
            let mut filled = 0;
            while filled < len {
                match file.read_at(&mut buf[start + filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_error(e, "read failed")),
                }
            }
            buf.truncate(start + filled);
            Ok(buf)
        })
        .await
    }
}
