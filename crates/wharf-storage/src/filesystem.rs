//! The `filesystem` store: a directory on local disk.
//!
//! Every path is resolved with `openat2(RESOLVE_BENEATH)` from a directory
//! descriptor, first of the store root (to find the key's anchor) and then of
//! the anchor (for the rest of the key). A symbolic link may therefore point
//! anywhere inside the anchor, and never outside it: the kernel refuses, so
//! there is no check-then-use race.
//!
//! Uploads are written to an unnamed `O_TMPFILE` in the destination directory
//! and linked into place when finished, so a reader never sees a half-written
//! file under its final name, and a dropped connection or a crash leaves
//! nothing. (Where a filesystem lacks `O_TMPFILE` a hidden named temporary is
//! used and removed on abort.)
//!
//! Here: the store and its [`Store`] operations. Below it: `beneath`
//! (resolving keys from directory descriptors), `error` (errno and I/O
//! errors as store errors), `lister`, `reader` and `writer` (the handles
//! that operations return).

mod beneath;
mod error;
mod lister;
mod reader;
mod writer;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::BytesMut;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};

use self::beneath::Fs;
use self::error::{errno, io_error};
use self::lister::FsLister;
use self::reader::FsReader;
use self::writer::{FsWriter, set_times};
use crate::{Capabilities, Error, ErrorKind, Key, Lister, Meta, Reader, Result, Store, Writer};

/// Names that uploads in progress may briefly carry (only where `O_TMPFILE`
/// is unavailable, or between link and rename). Listings hide them.
const TEMP_PREFIX: &str = ".wharf-upload-";

/// Sequential writes are gathered up to this size before one `pwritev`.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// A store rooted at a local directory.
pub struct FilesystemStore {
    root: Arc<OwnedFd>,
    root_path: PathBuf,
}

impl std::fmt::Debug for FilesystemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilesystemStore")
            .field("root", &self.root_path)
            .finish()
    }
}

impl FilesystemStore {
    /// Opens (creating it if missing) the directory `root`.
    pub fn open(root: &Path) -> Result<FilesystemStore> {
        std::fs::create_dir_all(root)
            .map_err(|e| io_error(e, &format!("cannot create store root {}", root.display())))?;
        let fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            io_error(
                e.into(),
                &format!("cannot open store root {}", root.display()),
            )
        })?;
        Ok(FilesystemStore {
            root: Arc::new(fd),
            root_path: root.to_owned(),
        })
    }

    /// The directory this store serves.
    pub fn root_path(&self) -> &Path {
        &self.root_path
    }

    /// The store's root, for blocking work on another thread.
    fn fs(&self) -> Fs {
        Fs {
            root: self.root.clone(),
        }
    }
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::internal(format!("filesystem task failed: {e}")))?
}

#[async_trait]
impl Store for FilesystemStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            random_write: true,
            rename_directory: true,
            set_times: true,
        }
    }

    async fn head(&self, key: &Key) -> Result<Option<Meta>> {
        let fs = self.fs();
        let key = key.clone();
        blocking(move || fs.head(&key)).await
    }

    async fn list(&self, dir: &Key) -> Result<Box<dyn Lister>> {
        let fs = self.fs();
        let key = dir.clone();
        blocking(move || Ok(Box::new(FsLister::open(&fs, &key)?) as Box<dyn Lister>)).await
    }

    async fn open_read(&self, key: &Key) -> Result<Box<dyn Reader>> {
        let fs = self.fs();
        let key = key.clone();
        blocking(move || Ok(Box::new(FsReader::open(&fs, &key)?) as Box<dyn Reader>)).await
    }

    async fn open_write(&self, key: &Key) -> Result<Box<dyn Writer>> {
        let fs = self.fs();
        let key = key.clone();
        blocking(move || Ok(Box::new(FsWriter::create(&fs, &key)?) as Box<dyn Writer>)).await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let fs = self.fs();
        let key = key.clone();
        blocking(move || {
            let (parent, name) = fs.parent(&key, false)?;
            match rustix::fs::statat(&parent, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
                    return Err(Error::new(
                        ErrorKind::IsADirectory,
                        format!("{key}: is a directory"),
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(errno(e, &format!("cannot delete {key}"))),
            }
            rustix::fs::unlinkat(&parent, name.as_str(), AtFlags::empty())
                .map_err(|e| errno(e, &format!("cannot delete {key}")))
        })
        .await
    }

    async fn create_dir(&self, key: &Key) -> Result<()> {
        let fs = self.fs();
        let key = key.clone();
        blocking(move || {
            let (parent, name) = fs.parent(&key, true)?;
            rustix::fs::mkdirat(&parent, name.as_str(), Mode::from_raw_mode(0o777))
                .map_err(|e| errno(e, &format!("cannot create directory {key}")))
        })
        .await
    }

    async fn delete_dir(&self, key: &Key) -> Result<()> {
        let fs = self.fs();
        let key = key.clone();
        blocking(move || {
            let (parent, name) = fs.parent(&key, false)?;
            rustix::fs::unlinkat(&parent, name.as_str(), AtFlags::REMOVEDIR)
                .map_err(|e| errno(e, &format!("cannot remove directory {key}")))
        })
        .await
    }

    async fn copy(&self, from: &Key, to: &Key) -> Result<()> {
        let reader = self.open_read(from).await?;
        let mut writer = self.open_write(to).await?;
        let mut offset = 0u64;
        let size = reader.size();
        while offset < size {
            let chunk = reader
                .read_at(offset, WRITE_BUFFER_BYTES, BytesMut::new())
                .await?;
            if chunk.is_empty() {
                break;
            }
            let len = chunk.len() as u64;
            if let Err(error) = writer.write_at(offset, chunk.freeze()).await {
                let _ = writer.abort().await;
                return Err(error);
            }
            offset += len;
        }
        writer.finish().await.map(|_| ())
    }

    async fn rename(&self, from: &Key, to: &Key, replace: bool) -> Result<()> {
        let fs = self.fs();
        let (from, to) = (from.clone(), to.clone());
        blocking(move || {
            let (from_parent, from_name) = fs.parent(&from, false)?;
            let (to_parent, to_name) = fs.parent(&to, true)?;
            let flags = if replace {
                RenameFlags::empty()
            } else {
                RenameFlags::NOREPLACE
            };
            rustix::fs::renameat_with(
                &from_parent,
                from_name.as_str(),
                &to_parent,
                to_name.as_str(),
                flags,
            )
            .map_err(|e| errno(e, &format!("cannot rename {from} to {to}")))
        })
        .await
    }

    async fn set_modified(&self, key: &Key, modified: SystemTime) -> Result<()> {
        let fs = self.fs();
        let key = key.clone();
        blocking(move || {
            let fd = fs.open_file(&key)?;
            set_times(&fd, modified).map_err(|e| errno(e, &format!("cannot set times of {key}")))
        })
        .await
    }
}

#[cfg(test)]
mod tests;
