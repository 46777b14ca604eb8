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

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags, Timespec, Timestamps,
};

use crate::{
    Capabilities, Entry, Error, ErrorKind, Key, Kind, Lister, Meta, Reader, Result, Store, Writer,
};

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
}

fn beneath() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS
}

fn io_error(error: io::Error, context: &str) -> Error {
    let kind = match error.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        io::ErrorKind::NotADirectory => ErrorKind::NotADirectory,
        io::ErrorKind::IsADirectory => ErrorKind::IsADirectory,
        io::ErrorKind::DirectoryNotEmpty => ErrorKind::DirectoryNotEmpty,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => ErrorKind::NoSpace,
        io::ErrorKind::InvalidFilename => ErrorKind::InvalidKey,
        io::ErrorKind::CrossesDevices => ErrorKind::PermissionDenied,
        _ => match rustix::io::Errno::from_io_error(&error) {
            // RESOLVE_BENEATH refuses with EXDEV, magic links with ELOOP.
            Some(rustix::io::Errno::XDEV) | Some(rustix::io::Errno::LOOP) => {
                ErrorKind::PermissionDenied
            }
            Some(rustix::io::Errno::PERM) => ErrorKind::PermissionDenied,
            _ => ErrorKind::Internal,
        },
    };
    let detail = if kind == ErrorKind::PermissionDenied
        && matches!(
            rustix::io::Errno::from_io_error(&error),
            Some(rustix::io::Errno::XDEV)
        ) {
        "a symbolic link leads outside the mapping target".to_owned()
    } else {
        error.to_string()
    };
    Error::new(kind, format!("{context}: {detail}"))
}

fn errno(error: rustix::io::Errno, context: &str) -> Error {
    io_error(error.into(), context)
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::internal(format!("filesystem task failed: {e}")))?
}

fn meta_of(stat: &rustix::fs::Stat) -> Meta {
    let kind = if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
        Kind::Directory
    } else {
        Kind::File
    };
    let modified = u64::try_from(stat.st_mtime).ok().map(|secs| {
        UNIX_EPOCH + Duration::new(secs, u32::try_from(stat.st_mtime_nsec).unwrap_or(0))
    });
    Meta {
        kind,
        size: if kind == Kind::File {
            u64::try_from(stat.st_size).unwrap_or(0)
        } else {
            0
        },
        modified,
        mode: Some(stat.st_mode & 0o7777),
    }
}

/// Splits `a/b/c` into `("a/b", "c")` and `c` into `("", "c")`.
fn split_parent(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((parent, name)) => (parent, name),
        None => ("", path),
    }
}

/// Where a key is resolved from: a directory descriptor and a path below it.
struct Resolved {
    base: OwnedFd,
    /// Relative to `base`; empty for `base` itself.
    path: String,
}

struct Fs {
    root: Arc<OwnedFd>,
}

impl Fs {
    fn open_beneath(
        base: BorrowedFd<'_>,
        path: &str,
        flags: OFlags,
    ) -> rustix::io::Result<OwnedFd> {
        // openat2 insists on a zero mode unless a file may be created (O_TMPFILE
        // includes the O_DIRECTORY bit, hence `contains`).
        let mode = if flags.contains(OFlags::CREATE) || flags.contains(OFlags::TMPFILE) {
            Mode::from_raw_mode(0o666)
        } else {
            Mode::empty()
        };
        rustix::fs::openat2(
            base,
            if path.is_empty() { "." } else { path },
            flags | OFlags::CLOEXEC,
            mode,
            beneath(),
        )
    }

    /// Creates `path` and its missing parents below `base`, each step resolved
    /// beneath `base`.
    fn create_dirs(base: BorrowedFd<'_>, path: &str) -> Result<()> {
        if path.is_empty() {
            return Ok(());
        }
        let mut dir = Self::open_beneath(base, "", OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| errno(e, "cannot open directory"))?;
        for segment in path.split('/') {
            match rustix::fs::mkdirat(&dir, segment, Mode::from_raw_mode(0o777)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(errno(e, &format!("cannot create directory {path}"))),
            }
            dir = Self::open_beneath(dir.as_fd(), segment, OFlags::PATH | OFlags::DIRECTORY)
                .map_err(|e| errno(e, &format!("cannot open directory {path}")))?;
        }
        Ok(())
    }

    /// Finds the descriptor of the key's anchor and the path below it. With
    /// `create`, a missing anchor directory is created (a mapping target that
    /// does not exist yet is created by the first write).
    fn resolve(&self, key: &Key, create: bool) -> Result<Option<Resolved>> {
        // Uploads in progress may carry these names: no client may name one
        // (to read, write or remove it), so they never show either.
        if key.as_str().split('/').any(|s| s.starts_with(TEMP_PREFIX)) {
            return Err(Error::new(
                ErrorKind::InvalidKey,
                format!("names beginning {TEMP_PREFIX} are reserved"),
            ));
        }
        let anchor = key.anchor();
        if anchor.is_empty() {
            let base = rustix::io::dup(self.root.as_fd()).map_err(|e| errno(e, "dup"))?;
            return Ok(Some(Resolved {
                base,
                path: key.rest().to_owned(),
            }));
        }
        let flags = OFlags::PATH | OFlags::DIRECTORY;
        let base = match Self::open_beneath(self.root.as_fd(), anchor, flags) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) if create => {
                Self::create_dirs(self.root.as_fd(), anchor)?;
                Self::open_beneath(self.root.as_fd(), anchor, flags)
                    .map_err(|e| errno(e, &format!("cannot open {anchor}")))?
            }
            Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => return Ok(None),
            Err(e) => return Err(errno(e, &format!("cannot open {anchor}"))),
        };
        Ok(Some(Resolved {
            base,
            path: key.rest().to_owned(),
        }))
    }

    /// The parent directory of the key (created with `create`) and its name.
    fn parent(&self, key: &Key, create: bool) -> Result<Option<(OwnedFd, String)>> {
        let resolved = if key.rest().is_empty() && !key.anchor().is_empty() {
            // The anchor itself (rmdir or rename of a mapping target): its
            // parent lies above the anchor, so resolve it from the root.
            Resolved {
                base: rustix::io::dup(self.root.as_fd()).map_err(|e| errno(e, "dup"))?,
                path: key.anchor().to_owned(),
            }
        } else {
            match self.resolve(key, create)? {
                Some(resolved) => resolved,
                None => return Ok(None),
            }
        };
        let (parent, name) = split_parent(&resolved.path);
        if name.is_empty() {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "the store root cannot be changed",
            ));
        }
        let flags = OFlags::PATH | OFlags::DIRECTORY;
        let fd = match Self::open_beneath(resolved.base.as_fd(), parent, flags) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) if create => {
                Self::create_dirs(resolved.base.as_fd(), parent)?;
                Self::open_beneath(resolved.base.as_fd(), parent, flags)
                    .map_err(|e| errno(e, &format!("cannot open the parent of {key}")))?
            }
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(rustix::io::Errno::NOTDIR) => {
                return Err(Error::new(
                    ErrorKind::NotADirectory,
                    format!("a parent of {key} is a file"),
                ));
            }
            Err(e) => return Err(errno(e, &format!("cannot open the parent of {key}"))),
        };
        Ok(Some((fd, name.to_owned())))
    }

    fn head(&self, key: &Key) -> Result<Option<Meta>> {
        let Some(resolved) = self.resolve(key, false)? else {
            return Ok(None);
        };
        match Self::open_beneath(resolved.base.as_fd(), &resolved.path, OFlags::PATH) {
            Ok(fd) => {
                let stat = rustix::fs::fstat(&fd).map_err(|e| errno(e, "stat"))?;
                Ok(Some(meta_of(&stat)))
            }
            Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => Ok(None),
            Err(e) => Err(errno(e, &format!("cannot stat {key}"))),
        }
    }
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
        let fs = Fs {
            root: self.root.clone(),
        };
        let key = key.clone();
        blocking(move || fs.head(&key)).await
    }

    async fn list(&self, dir: &Key) -> Result<Box<dyn Lister>> {
        let fs = Fs {
            root: self.root.clone(),
        };
        let key = dir.clone();
        blocking(move || {
            let Some(resolved) = fs.resolve(&key, false)? else {
                return Ok(Box::new(FsLister::empty()) as Box<dyn Lister>);
            };
            let dir_fd = match Fs::open_beneath(
                resolved.base.as_fd(),
                &resolved.path,
                OFlags::RDONLY | OFlags::DIRECTORY,
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => {
                    return Ok(Box::new(FsLister::empty()) as Box<dyn Lister>);
                }
                Err(e) => return Err(errno(e, &format!("cannot list {key}"))),
            };
            let entries = rustix::fs::Dir::read_from(&dir_fd)
                .map_err(|e| errno(e, &format!("cannot list {key}")))?;
            Ok(Box::new(FsLister {
                state: Some(ListState {
                    base: resolved.base,
                    path: resolved.path,
                    entries,
                }),
            }) as Box<dyn Lister>)
        })
        .await
    }

    async fn open_read(&self, key: &Key) -> Result<Box<dyn Reader>> {
        let fs = Fs {
            root: self.root.clone(),
        };
        let key = key.clone();
        blocking(move || {
            let resolved = fs
                .resolve(&key, false)?
                .ok_or_else(|| Error::not_found(&key))?;
            let fd = Fs::open_beneath(resolved.base.as_fd(), &resolved.path, OFlags::RDONLY)
                .map_err(|e| errno(e, &format!("cannot open {key}")))?;
            let stat = rustix::fs::fstat(&fd).map_err(|e| errno(e, "stat"))?;
            if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
                return Err(Error::new(
                    ErrorKind::IsADirectory,
                    format!("{key}: is a directory"),
                ));
            }
            Ok(Box::new(FsReader {
                file: Arc::new(File::from(fd)),
                size: u64::try_from(stat.st_size).unwrap_or(0),
                modified: meta_of(&stat).modified,
            }) as Box<dyn Reader>)
        })
        .await
    }

    async fn open_write(&self, key: &Key) -> Result<Box<dyn Writer>> {
        let fs = Fs {
            root: self.root.clone(),
        };
        let key = key.clone();
        blocking(move || {
            let (parent, name) = fs
                .parent(&key, true)?
                .ok_or_else(|| Error::not_found(&key))?;
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
                        let temp = format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>());
                        let fd = Fs::open_beneath(
                            parent.as_fd(),
                            &temp,
                            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR,
                        )
                        .map_err(|e| {
                            errno(e, &format!("cannot create a temporary file for {key}"))
                        })?;
                        (File::from(fd), Some(temp))
                    }
                    Err(e) => {
                        return Err(errno(
                            e,
                            &format!("cannot create a temporary file for {key}"),
                        ));
                    }
                };
            Ok(Box::new(FsWriter {
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
            }) as Box<dyn Writer>)
        })
        .await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let fs = Fs {
            root: self.root.clone(),
        };
        let key = key.clone();
        blocking(move || {
            let (parent, name) = fs
                .parent(&key, false)?
                .ok_or_else(|| Error::not_found(&key))?;
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
        let fs = Fs {
            root: self.root.clone(),
        };
        let key = key.clone();
        blocking(move || {
            let (parent, name) = fs
                .parent(&key, true)?
                .ok_or_else(|| Error::not_found(&key))?;
            rustix::fs::mkdirat(&parent, name.as_str(), Mode::from_raw_mode(0o777))
                .map_err(|e| errno(e, &format!("cannot create directory {key}")))
        })
        .await
    }

    async fn delete_dir(&self, key: &Key) -> Result<()> {
        let fs = Fs {
            root: self.root.clone(),
        };
        let key = key.clone();
        blocking(move || {
            let (parent, name) = fs
                .parent(&key, false)?
                .ok_or_else(|| Error::not_found(&key))?;
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
        let fs = Fs {
            root: self.root.clone(),
        };
        let (from, to) = (from.clone(), to.clone());
        blocking(move || {
            let (from_parent, from_name) = fs
                .parent(&from, false)?
                .ok_or_else(|| Error::not_found(&from))?;
            let (to_parent, to_name) =
                fs.parent(&to, true)?.ok_or_else(|| Error::not_found(&to))?;
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
        let fs = Fs {
            root: self.root.clone(),
        };
        let key = key.clone();
        blocking(move || {
            let resolved = fs
                .resolve(&key, false)?
                .ok_or_else(|| Error::not_found(&key))?;
            let fd = Fs::open_beneath(resolved.base.as_fd(), &resolved.path, OFlags::RDONLY)
                .map_err(|e| errno(e, &format!("cannot open {key}")))?;
            set_times(&fd, modified).map_err(|e| errno(e, &format!("cannot set times of {key}")))
        })
        .await
    }
}

fn set_times(fd: impl AsFd, modified: SystemTime) -> rustix::io::Result<()> {
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

struct ListState {
    base: OwnedFd,
    path: String,
    entries: rustix::fs::Dir,
}

struct FsLister {
    state: Option<ListState>,
}

impl FsLister {
    fn empty() -> FsLister {
        FsLister { state: None }
    }
}

impl ListState {
    /// Reads up to `limit` entries; `None` when the directory is exhausted.
    fn read(&mut self, limit: usize) -> Result<Option<Vec<Entry>>> {
        let mut page = Vec::new();
        while page.len() < limit {
            let Some(entry) = self.entries.read() else {
                break;
            };
            let entry = entry.map_err(|e| errno(e, "cannot read directory"))?;
            let Ok(name) = entry.file_name().to_str() else {
                continue; // names that are not UTF-8 cannot be keys
            };
            if name == "." || name == ".." || name.starts_with(TEMP_PREFIX) || name.is_empty() {
                continue;
            }
            let child = if self.path.is_empty() {
                name.to_owned()
            } else {
                format!("{}/{name}", self.path)
            };
            // Stat through the anchor, so a symlink is followed only while it
            // stays beneath it; entries that escape are not listed.
            let Ok(fd) = Fs::open_beneath(self.base.as_fd(), &child, OFlags::PATH) else {
                continue;
            };
            let Ok(stat) = rustix::fs::fstat(&fd) else {
                continue;
            };
            page.push(Entry {
                name: name.to_owned(),
                meta: meta_of(&stat),
            });
        }
        if page.is_empty() {
            Ok(None)
        } else {
            Ok(Some(page))
        }
    }
}

#[async_trait]
impl Lister for FsLister {
    async fn next_page(&mut self, limit: usize) -> Result<Option<Vec<Entry>>> {
        let Some(mut state) = self.state.take() else {
            return Ok(None);
        };
        let limit = limit.max(1);
        let (state, page) = blocking(move || {
            let page = state.read(limit);
            Ok((state, page))
        })
        .await?;
        let page = page?;
        if page.is_some() {
            self.state = Some(state);
        }
        Ok(page)
    }
}

struct FsReader {
    file: Arc<File>,
    size: u64,
    modified: Option<SystemTime>,
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

struct FsWriter {
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
                    let temp = format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>());
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

#[cfg(test)]
mod tests;
