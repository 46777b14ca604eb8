//! Stores: where bytes live, in object terms.
//!
//! A [`Store`] holds objects under [`Key`]s (`reports/alice/a.csv`) and knows
//! directories only the way object storage does: a key prefix that has
//! children, or an explicit directory marker. Operations are the ones S3 has:
//! head, a paged list of one directory level, ranged reads, streamed writes
//! that become visible only when finished, delete and copy.
//!
//! Architecture invariant: this crate knows nothing of users, policies, home
//! directories or protocols. It never decides *whether* an operation is
//! allowed (that is `wharf-vfs` with the policy engine); it only does it.

pub mod config;
pub mod filesystem;
pub mod s3;

use std::fmt;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

/// The longest key a store accepts, in bytes (S3's limit).
pub const MAX_KEY_BYTES: usize = 1024;
/// The longest single path segment, in bytes (the common filesystem limit).
pub const MAX_SEGMENT_BYTES: usize = 255;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms every backend can produce and every front-end
/// can map to its wire code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    NotADirectory,
    IsADirectory,
    DirectoryNotEmpty,
    /// The backend itself refused (file permissions, S3 403, a symlink that
    /// leads outside its anchor).
    PermissionDenied,
    InvalidKey,
    /// The backend cannot do this (for example a non-sequential write to S3).
    Unsupported,
    NoSpace,
    /// The backend is unreachable or timed out; the operation may succeed later.
    Unavailable,
    Internal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::NotADirectory => "not a directory",
            ErrorKind::IsADirectory => "is a directory",
            ErrorKind::DirectoryNotEmpty => "directory not empty",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::InvalidKey => "invalid key",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::NoSpace => "no space left",
            ErrorKind::Unavailable => "storage unavailable",
            ErrorKind::Internal => "internal storage error",
        })
    }
}

/// A storage error: a kind for the front-ends and a message for the logs.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    pub fn not_found(what: impl fmt::Display) -> Self {
        Error::new(ErrorKind::NotFound, format!("{what}: not found"))
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unsupported, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

/// A validated object key: `/`-separated UTF-8 segments, none empty, `.` or
/// `..`, no NUL, at most [`MAX_KEY_BYTES`] in all and [`MAX_SEGMENT_BYTES`]
/// per segment. The empty key is the store's root.
///
/// The key carries an *anchor*, a prefix of itself (on segment boundaries):
/// backends that have symbolic links (the filesystem) resolve them without
/// ever leaving the anchor. The virtual filesystem anchors each key at the
/// target of the home-directory mapping it came through.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key {
    path: String,
    anchor_len: usize,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?} anchored at {:?})", self.path, self.anchor())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

fn check_key(path: &str) -> Result<()> {
    if path.is_empty() {
        return Ok(());
    }
    if path.len() > MAX_KEY_BYTES {
        return Err(Error::new(
            ErrorKind::InvalidKey,
            format!("key is {} bytes, more than {MAX_KEY_BYTES}", path.len()),
        ));
    }
    if path.contains('\0') {
        return Err(Error::new(ErrorKind::InvalidKey, "key contains a NUL byte"));
    }
    for segment in path.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(Error::new(
                ErrorKind::InvalidKey,
                format!("key {path:?} has an empty, \".\" or \"..\" segment"),
            ));
        }
        if segment.len() > MAX_SEGMENT_BYTES {
            return Err(Error::new(
                ErrorKind::InvalidKey,
                format!("a key segment is longer than {MAX_SEGMENT_BYTES} bytes"),
            ));
        }
    }
    Ok(())
}

impl Key {
    /// The store root.
    pub fn root() -> Key {
        Key {
            path: String::new(),
            anchor_len: 0,
        }
    }

    /// A key anchored at the store root.
    pub fn new(path: impl Into<String>) -> Result<Key> {
        let path = path.into();
        check_key(&path)?;
        Ok(Key {
            path,
            anchor_len: 0,
        })
    }

    /// `anchor/rest`, anchored at `anchor`. Either part may be empty.
    pub fn anchored(anchor: &str, rest: &str) -> Result<Key> {
        let path = match (anchor.is_empty(), rest.is_empty()) {
            (true, _) => rest.to_owned(),
            (false, true) => anchor.to_owned(),
            (false, false) => format!("{anchor}/{rest}"),
        };
        check_key(&path)?;
        check_key(anchor)?;
        Ok(Key {
            path,
            anchor_len: anchor.len(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.path
    }

    pub fn is_root(&self) -> bool {
        self.path.is_empty()
    }

    /// The part of the key that symlinks may not leave.
    pub fn anchor(&self) -> &str {
        &self.path[..self.anchor_len]
    }

    /// The key below its anchor (empty when the key is its anchor).
    pub fn rest(&self) -> &str {
        let rest = &self.path[self.anchor_len..];
        rest.strip_prefix('/').unwrap_or(rest)
    }

    /// The last segment, or "" for the root.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or("")
    }

    /// This key followed by `name`, with the same anchor.
    pub fn child(&self, name: &str) -> Result<Key> {
        let path = if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.path)
        };
        check_key(&path)?;
        Ok(Key {
            path,
            anchor_len: self.anchor_len,
        })
    }
}

/// Files and directories; the only two kinds clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
}

/// What `head` and `list` know about an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub size: u64,
    pub modified: Option<SystemTime>,
    /// Unix permission bits, where the backend has them.
    pub mode: Option<u32>,
}

impl Meta {
    /// A directory with no further metadata (an S3 common prefix).
    pub fn directory() -> Meta {
        Meta {
            kind: Kind::Directory,
            size: 0,
            modified: None,
            mode: None,
        }
    }
}

/// One child in a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub meta: Meta,
}

/// What a backend can do beyond the common set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Writes at any offset (else only sequential writes from offset 0).
    pub random_write: bool,
    /// Directories can be renamed.
    pub rename_directory: bool,
    /// Modification times can be set.
    pub set_times: bool,
}

/// A store: one backend root (a directory, a bucket).
///
/// Every method takes a validated [`Key`]; none decides authorization.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;

    /// The object or directory at `key`, or `None` when neither exists.
    /// The root always exists.
    async fn head(&self, key: &Key) -> Result<Option<Meta>>;

    /// Lists the direct children of the directory `dir`, page by page.
    /// A directory that does not exist lists as empty: object stores cannot
    /// tell the two apart, and callers check with [`Store::head`] when it matters.
    async fn list(&self, dir: &Key) -> Result<Box<dyn Lister>>;

    /// Opens the object at `key` for ranged reads.
    async fn open_read(&self, key: &Key) -> Result<Box<dyn Reader>>;

    /// Starts writing the object at `key`. Nothing is visible under `key`
    /// until [`Writer::finish`] succeeds; an aborted or dropped writer leaves
    /// nothing behind. Missing parent directories are implied (as on S3).
    async fn open_write(&self, key: &Key) -> Result<Box<dyn Writer>>;

    /// Deletes the object (not a directory) at `key`.
    async fn delete(&self, key: &Key) -> Result<()>;

    /// Creates the directory `key` (and any missing parents).
    async fn create_dir(&self, key: &Key) -> Result<()>;

    /// Deletes the directory `key`, only when nothing is under it.
    async fn delete_dir(&self, key: &Key) -> Result<()>;

    /// Copies the object `from` to `to`, replacing `to`.
    async fn copy(&self, from: &Key, to: &Key) -> Result<()>;

    /// Waits until nothing of this store runs in the background any more:
    /// every upload writer is gone and the cleanup of unfinished uploads
    /// (S3: AbortMultipartUpload) is done. `wharf serve` calls it on its way
    /// out, after the grace period, so that no multipart upload is left
    /// behind (SPEC 2, `shutdown_grace`); callers bound it with a timeout.
    async fn quiesce(&self) {}

    /// Renames the object (or, with [`Capabilities::rename_directory`], the
    /// directory) `from` to `to`. With `replace` false an existing `to` is an
    /// [`ErrorKind::AlreadyExists`] error. The default copies then deletes.
    async fn rename(&self, from: &Key, to: &Key, replace: bool) -> Result<()> {
        if !replace && self.head(to).await?.is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{to}: already exists"),
            ));
        }
        match self.head(from).await? {
            None => return Err(Error::not_found(from)),
            Some(meta) if meta.kind == Kind::Directory => {
                return Err(Error::unsupported(
                    "renaming a directory is not supported on this store",
                ));
            }
            Some(_) => {}
        }
        self.copy(from, to).await?;
        self.delete(from).await
    }

    /// The object's tags (S3 object tagging), for policies that test
    /// `s3:ExistingObjectTag/KEY`. Stores without tags have none.
    async fn tags(&self, key: &Key) -> Result<Vec<(String, String)>> {
        let _ = key;
        Ok(Vec::new())
    }

    /// Sets the modification time, where [`Capabilities::set_times`] says the
    /// backend has one. The default accepts and ignores it.
    async fn set_modified(&self, key: &Key, modified: SystemTime) -> Result<()> {
        let _ = (key, modified);
        Ok(())
    }
}

/// A paged directory listing. Memory stays bounded by one page.
#[async_trait]
pub trait Lister: Send {
    /// The next at most `limit` entries, or `None` when the listing is done.
    async fn next_page(&mut self, limit: usize) -> Result<Option<Vec<Entry>>>;
}

/// An object opened for ranged reads. Reads may run concurrently.
#[async_trait]
pub trait Reader: Send + Sync {
    /// The object's size when it was opened.
    fn size(&self) -> u64;

    /// The object's modification time when it was opened, where known.
    fn modified(&self) -> Option<SystemTime> {
        None
    }

    /// Appends up to `len` bytes read at `offset` to `buf` and returns it;
    /// fewer bytes only at the end of the object (none past it).
    async fn read_at(&self, offset: u64, len: usize, buf: BytesMut) -> Result<BytesMut>;
}

/// An object being written.
#[async_trait]
pub trait Writer: Send {
    /// Writes `data` at `offset`. Without [`Capabilities::random_write`] only
    /// `offset == bytes written so far` is accepted. An error may belong to an
    /// earlier write (writes are buffered); after one, the writer is failed.
    async fn write_at(&mut self, offset: u64, data: Bytes) -> Result<()>;

    /// Applies a modification time to the object when it is finished.
    fn set_modified(&mut self, modified: SystemTime) {
        let _ = modified;
    }

    /// Makes the object visible under its key and returns its metadata.
    async fn finish(self: Box<Self>) -> Result<Meta>;

    /// Discards everything; nothing becomes visible.
    async fn abort(self: Box<Self>) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        assert!(Key::new("a/b/c").is_ok());
        assert!(Key::new("").is_ok());
        for bad in ["/a", "a/", "a//b", "a/./b", "a/../b", "..", "a\0b"] {
            assert_eq!(
                Key::new(bad).map_err(|e| e.kind).err(),
                Some(ErrorKind::InvalidKey),
                "{bad:?}"
            );
        }
        assert!(Key::new("x".repeat(MAX_SEGMENT_BYTES)).is_ok());
        assert!(Key::new("x".repeat(MAX_SEGMENT_BYTES + 1)).is_err());
        let long = vec!["x".repeat(200); 6].join("/");
        assert!(Key::new(long).is_err());
    }

    #[test]
    fn anchored_keys_split_into_anchor_and_rest() {
        let key = Key::anchored("reports/alice", "docs/a.txt").unwrap_or_else(|_| Key::root());
        assert_eq!(key.as_str(), "reports/alice/docs/a.txt");
        assert_eq!(key.anchor(), "reports/alice");
        assert_eq!(key.rest(), "docs/a.txt");
        assert_eq!(key.name(), "a.txt");
        let top = Key::anchored("reports/alice", "").unwrap_or_else(|_| Key::root());
        assert_eq!(top.rest(), "");
        let child = top.child("x").unwrap_or_else(|_| Key::root());
        assert_eq!(child.as_str(), "reports/alice/x");
        assert_eq!(child.anchor(), "reports/alice");
    }
}
