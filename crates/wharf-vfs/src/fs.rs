//! `UserFs`: the operations front-ends call, authorized and logged.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use wharf_audit::{Activity, AuditLog, Event, SessionFields};
use wharf_storage::{Key, Kind, Lister, Meta, Reader, Writer};

use crate::authorize::{AccessRequest, Action, Authorizer};
use crate::error::{Error, ErrorKind, Result};
use crate::namespace::{Mount, MountKind, Namespace, Resolved};
use crate::path::VirtualPath;
use crate::quota::{Quota, Taken};

/// Where a session's activity lines go, and the fields they all carry.
#[derive(Debug, Clone)]
pub struct AuditContext {
    pub log: AuditLog,
    pub session: Arc<SessionFields>,
}

impl AuditContext {
    fn record(&self, activity: Activity, event: &Event<'_>) {
        self.log.record(activity, &self.session, event);
    }
}

/// What `stat` and listings report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub kind: Kind,
    pub size: u64,
    pub modified: Option<SystemTime>,
    /// Unix permission bits where the store has them.
    pub mode: Option<u32>,
}

impl Metadata {
    /// A directory with no further metadata.
    pub fn directory() -> Metadata {
        Metadata {
            kind: Kind::Directory,
            size: 0,
            modified: None,
            mode: None,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Directory
    }
}

impl From<Meta> for Metadata {
    fn from(meta: Meta) -> Metadata {
        Metadata {
            kind: meta.kind,
            size: meta.size,
            modified: meta.modified,
            mode: meta.mode,
        }
    }
}

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

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub meta: Metadata,
}

struct Inner {
    namespace: Namespace,
    authorizer: Arc<dyn Authorizer>,
    audit: AuditContext,
    /// Open files and directory listings: one unit each, shared with the
    /// user's other sessions and the process (`max_handles_per_user`).
    handles: Quota,
}

/// The filesystem of one authenticated session. Cheap to clone; clones
/// share everything, so concurrent requests of a session can each hold one.
#[derive(Clone)]
pub struct UserFs {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for UserFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserFs")
            .field("home", self.home())
            .finish_non_exhaustive()
    }
}

/// `/STORE/key`, the path AWS Transfer Family writes in its log lines.
fn store_path(mount: &Mount, key: &Key) -> String {
    if key.is_root() {
        format!("/{}", mount.store.name)
    } else {
        format!("/{}/{}", mount.store.name, key.as_str())
    }
}

/// The key as a directory for policy purposes: `dir/`, or "" for the root.
fn dir_key(key: &Key) -> String {
    if key.is_root() {
        String::new()
    } else {
        format!("{}/", key.as_str())
    }
}

impl UserFs {
    pub fn new(
        namespace: Namespace,
        authorizer: Arc<dyn Authorizer>,
        audit: AuditContext,
        handles: Quota,
    ) -> UserFs {
        UserFs {
            inner: Arc::new(Inner {
                namespace,
                authorizer,
                audit,
                handles,
            }),
        }
    }

    /// One unit of the handle quota for a file or listing about to be
    /// opened; refused at once when the session's user or the server has
    /// too many open.
    fn take_handle(&self, path: &VirtualPath, operation: &str) -> Result<Taken> {
        self.inner.handles.try_take(1).map_err(|level| {
            let error = Error::new(
                ErrorKind::LimitReached,
                if level == 0 {
                    "too many open files for this user (max_handles_per_user)"
                } else {
                    "too many open files in the server"
                },
            );
            self.log_error(operation, path.as_str(), &error);
            error
        })
    }

    /// Where the session starts (the HomeDirectory, or `/` when LOGICAL).
    pub fn home(&self) -> &VirtualPath {
        self.inner.namespace.home()
    }

    /// The session's log context, for front-end lines (CONNECTED, ...).
    pub fn audit(&self) -> &AuditContext {
        &self.inner.audit
    }

    /// Resolves a client path against `base` (a relative path is relative to
    /// it), refusing hostile input.
    pub fn path(&self, base: &VirtualPath, input: &str) -> Result<VirtualPath> {
        Ok(base.join(input)?)
    }

    fn resolve(&self, path: &VirtualPath) -> Result<Resolved<'_>> {
        self.inner
            .namespace
            .resolve(path)
            .map_err(|e| Error::new(ErrorKind::InvalidPath, e.0))
    }

    /// The object's tags when the authorizer tests them, else none. A
    /// missing object has none: the authorization then decides as for an
    /// untagged object, so a denied user cannot learn whether it exists.
    async fn object_tags(&self, mount: &Mount, key: &Key) -> Result<Vec<(String, String)>> {
        if !self.inner.authorizer.wants_object_tags() {
            return Ok(Vec::new());
        }
        match mount.store.store.tags(key).await {
            Ok(tags) => Ok(tags),
            Err(error) if error.kind == wharf_storage::ErrorKind::NotFound => Ok(Vec::new()),
            Err(error) => Err(Error::from(error)),
        }
    }

    /// Asks the authorizer; a denial is logged as ACCESS_DENIED and becomes
    /// [`ErrorKind::PermissionDenied`].
    fn authorize(
        &self,
        operation: &str,
        path: &VirtualPath,
        request: AccessRequest<'_>,
    ) -> Result<()> {
        match self.inner.authorizer.authorize(&request) {
            Ok(()) => Ok(()),
            Err(denied) => {
                let message = match request.action {
                    Action::ListBucket => format!(
                        "{} on {} with s3:prefix {:?}",
                        request.action,
                        request.resource_arn(),
                        request.key
                    ),
                    _ => format!("{} on {}", request.action, request.resource_arn()),
                };
                self.inner.audit.record(
                    Activity::AccessDenied,
                    &Event {
                        path: Some(path.as_str()),
                        operation: Some(operation),
                        message: Some(&message),
                        reason: Some(&denied.reason),
                        ..Event::default()
                    },
                );
                Err(Error::denied(format!("{path}: permission denied")))
            }
        }
    }

    fn log_error(&self, operation: &str, path: &str, error: &Error) {
        self.inner.audit.record(
            Activity::Error,
            &Event {
                path: Some(path),
                operation: Some(operation),
                message: Some(&error.message),
                ..Event::default()
            },
        );
    }

    /// Whether `path` is a directory above the home (PATH homes: `/STORE`,
    /// `/STORE/home` for `/STORE/home/alice`). SPEC section 3: these are
    /// always traversable, whatever the policies say.
    fn is_above_home(&self, path: &VirtualPath) -> bool {
        self.home().starts_with(path) && path != self.home()
    }

    /// Metadata of a file or directory. Authorized as AWS Transfer Family
    /// does with HeadObject or a one-key listing: allowed when the policies
    /// allow `s3:ListBucket` with `s3:prefix` = the key, or `s3:GetObject`
    /// on the key (so read-only and write-only drop boxes work); a denied
    /// stat is "permission denied" whether or not the path exists.
    pub async fn stat(&self, path: &VirtualPath) -> Result<Metadata> {
        if self.is_above_home(path) {
            return Ok(Metadata::directory());
        }
        match self.resolve(path)? {
            Resolved::Virtual => Ok(Metadata::directory()),
            Resolved::Unmapped => Err(Error::not_found(path)),
            Resolved::Object {
                mount,
                key,
                is_mount_point,
            } => {
                self.authorize_stat(path, mount, &key).await?;
                match mount.store.store.head(&key).await? {
                    Some(meta) => Ok(meta.into()),
                    // A mapping target or a PATH home that does not exist
                    // yet is an empty directory.
                    None if (is_mount_point && mount.kind == MountKind::Directory)
                        || path == self.home() =>
                    {
                        Ok(Metadata::directory())
                    }
                    None => Err(Error::not_found(path)),
                }
            }
        }
    }

    /// `stat`'s decision: a one-key listing, else a HeadObject.
    async fn authorize_stat(&self, path: &VirtualPath, mount: &Mount, key: &Key) -> Result<()> {
        let listing = AccessRequest {
            action: Action::ListBucket,
            store: &mount.store.name,
            key: key.as_str(),
            delimiter: None,
            object_tags: &[],
        };
        if self.inner.authorizer.authorize(&listing).is_ok() {
            return Ok(());
        }
        let object_tags = self.object_tags(mount, key).await?;
        let head = AccessRequest {
            action: Action::GetObject,
            object_tags: &object_tags,
            ..listing
        };
        if self.inner.authorizer.authorize(&head).is_ok() {
            return Ok(());
        }
        // Logged as the listing that was denied (the usual grant for stat).
        self.authorize("STAT", path, listing)
    }

    /// Lists a directory, page by page.
    pub async fn list(&self, path: &VirtualPath) -> Result<DirListing> {
        if self.is_above_home(path)
            && let Resolved::Object { mount, key, .. } = self.resolve(path)?
        {
            return self.list_above_home(path, mount, &key).await;
        }
        let (store_lister, mapped_names) = match self.resolve(path)? {
            Resolved::Unmapped => return Err(Error::not_found(path)),
            Resolved::Virtual => (None, false),
            Resolved::Object {
                mount,
                key,
                is_mount_point,
            } => {
                if mount.kind == MountKind::File {
                    return Err(Error::new(
                        ErrorKind::NotADirectory,
                        format!("{path}: not a directory"),
                    ));
                }
                let prefix = dir_key(&key);
                self.authorize(
                    "LIST",
                    path,
                    AccessRequest {
                        action: Action::ListBucket,
                        store: &mount.store.name,
                        key: &prefix,
                        delimiter: Some("/"),
                        object_tags: &[],
                    },
                )?;
                let exists = if is_mount_point {
                    true
                } else {
                    match mount.store.store.head(&key).await? {
                        Some(meta) if meta.kind == Kind::Directory => true,
                        Some(_) => {
                            return Err(Error::new(
                                ErrorKind::NotADirectory,
                                format!("{path}: not a directory"),
                            ));
                        }
                        // A PATH home that does not exist yet lists as empty.
                        None if path == self.home() => false,
                        None => return Err(Error::not_found(path)),
                    }
                };
                let lister = if exists {
                    Some(mount.store.store.list(&key).await?)
                } else {
                    None
                };
                (lister, true)
            }
        };
        let mut virtual_entries = VecDeque::new();
        let mut shadowed = std::collections::HashSet::new();
        for (name, mount) in self.inner.namespace.virtual_children(path) {
            let meta = match mount {
                Some(mount) if mount.kind == MountKind::File => {
                    match self.file_mount_meta(mount).await {
                        Some(meta) => meta,
                        None => continue,
                    }
                }
                Some(mount) if !self.may_see(mount) => continue,
                _ => Metadata::directory(),
            };
            if mapped_names {
                shadowed.insert(name.clone());
            }
            virtual_entries.push_back(DirEntry { name, meta });
        }
        Ok(DirListing {
            virtual_entries,
            shadowed,
            store: store_lister,
            _handle: self.take_handle(path, "LIST")?,
        })
    }

    /// A directory above a PATH home: at least the next directory toward
    /// the home, plus what the policies let the user list there (a denied
    /// listing is not an error here, and not logged: it is the usual case).
    async fn list_above_home(
        &self,
        path: &VirtualPath,
        mount: &Mount,
        key: &Key,
    ) -> Result<DirListing> {
        let toward_home = self
            .home()
            .strip_prefix(path)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default()
            .to_owned();
        let prefix = dir_key(key);
        let allowed = self
            .inner
            .authorizer
            .authorize(&AccessRequest {
                action: Action::ListBucket,
                store: &mount.store.name,
                key: &prefix,
                delimiter: Some("/"),
                object_tags: &[],
            })
            .is_ok();
        let store = if allowed && mount.store.store.head(key).await?.is_some() {
            Some(mount.store.store.list(key).await?)
        } else {
            None
        };
        let mut virtual_entries = VecDeque::new();
        let mut shadowed = std::collections::HashSet::new();
        if !toward_home.is_empty() {
            shadowed.insert(toward_home.clone());
            virtual_entries.push_back(DirEntry {
                name: toward_home,
                meta: Metadata::directory(),
            });
        }
        Ok(DirListing {
            virtual_entries,
            shadowed,
            store,
            _handle: self.take_handle(path, "LIST")?,
        })
    }

    /// A mount point is listed when the user could list it or their home is in it.
    fn may_see(&self, mount: &Mount) -> bool {
        if self.home().starts_with(&mount.entry) {
            return true;
        }
        let prefix = if mount.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", mount.prefix)
        };
        self.inner
            .authorizer
            .authorize(&AccessRequest {
                action: Action::ListBucket,
                store: &mount.store.name,
                key: &prefix,
                delimiter: Some("/"),
                object_tags: &[],
            })
            .is_ok()
    }

    async fn file_mount_meta(&self, mount: &Mount) -> Option<Metadata> {
        let key = crate::namespace::file_key(&mount.prefix).ok()?;
        self.inner
            .authorizer
            .authorize(&AccessRequest {
                action: Action::ListBucket,
                store: &mount.store.name,
                key: key.as_str(),
                delimiter: None,
                object_tags: &[],
            })
            .ok()?;
        match mount.store.store.head(&key).await {
            Ok(Some(meta)) => Some(meta.into()),
            _ => None,
        }
    }

    /// Opens a file for reading. `OPEN` is logged; `CLOSE` when the reader
    /// is closed (`PARTIAL_CLOSE` if it is dropped unclosed).
    pub async fn open_read(&self, path: &VirtualPath) -> Result<FileReader> {
        let (mount, key) = match self.resolve(path)? {
            Resolved::Unmapped => return Err(Error::not_found(path)),
            Resolved::Virtual => {
                return Err(Error::new(
                    ErrorKind::IsADirectory,
                    format!("{path}: is a directory"),
                ));
            }
            Resolved::Object {
                mount,
                key,
                is_mount_point,
            } => {
                if is_mount_point && mount.kind == MountKind::Directory {
                    return Err(Error::new(
                        ErrorKind::IsADirectory,
                        format!("{path}: is a directory"),
                    ));
                }
                (mount, key)
            }
        };
        let object_tags = self.object_tags(mount, &key).await?;
        self.authorize(
            "OPEN",
            path,
            AccessRequest {
                action: Action::GetObject,
                store: &mount.store.name,
                key: key.as_str(),
                delimiter: None,
                object_tags: &object_tags,
            },
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
        self.inner.audit.record(
            Activity::Open,
            &Event {
                path: Some(&log_path),
                mode: Some("READ"),
                ..Event::default()
            },
        );
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
            AccessRequest {
                action: Action::PutObject,
                store: &mount.store.name,
                key: key.as_str(),
                delimiter: None,
                object_tags: &[],
            },
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
        self.inner.audit.record(
            Activity::Open,
            &Event {
                path: Some(&log_path),
                mode: Some(&options.mode_label()),
                ..Event::default()
            },
        );
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

    /// A name for something new (upload, mkdir, rename target) must hold no
    /// control character (SPEC section 5).
    fn check_new_name(path: &VirtualPath) -> Result<()> {
        if crate::display::is_acceptable_name(path.as_str()) {
            Ok(())
        } else {
            Err(Error::public(
                ErrorKind::InvalidPath,
                "file names may not contain control characters",
            ))
        }
    }

    /// The mount and key of a path that may be written or removed: inside a
    /// mapping, and not the mapping's entry itself.
    fn writable<'a>(&'a self, path: &VirtualPath, operation: &str) -> Result<(&'a Mount, Key)> {
        match self.resolve(path)? {
            Resolved::Unmapped => Err(Error::denied(format!(
                "{path}: {operation} is allowed only inside mapped directories"
            ))),
            Resolved::Virtual => Err(Error::denied(format!(
                "{path}: a mapped directory cannot be changed"
            ))),
            Resolved::Object {
                mount,
                key,
                is_mount_point,
            } => {
                if is_mount_point && mount.kind == MountKind::Directory {
                    return Err(Error::new(
                        ErrorKind::IsADirectory,
                        format!("{path}: is a mapped directory"),
                    ));
                }
                Ok((mount, key))
            }
        }
    }

    /// Deletes a file.
    pub async fn remove(&self, path: &VirtualPath) -> Result<()> {
        let (mount, key) = self.writable(path, "DELETE")?;
        if mount.kind == MountKind::File {
            return Err(Error::denied(format!(
                "{path}: a mapped file cannot be deleted"
            )));
        }
        self.authorize(
            "DELETE",
            path,
            AccessRequest {
                action: Action::DeleteObject,
                store: &mount.store.name,
                key: key.as_str(),
                delimiter: None,
                object_tags: &[],
            },
        )?;
        let log_path = store_path(mount, &key);
        self.logged(
            "DELETE",
            Activity::Delete,
            &log_path,
            mount.store.store.delete(&key).await,
        )
    }

    /// Creates a directory.
    pub async fn mkdir(&self, path: &VirtualPath) -> Result<()> {
        Self::check_new_name(path)?;
        let (mount, key) = match self.resolve(path)? {
            Resolved::Virtual => {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("{path}: already exists"),
                ));
            }
            Resolved::Object {
                is_mount_point: true,
                ..
            } => {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("{path}: already exists"),
                ));
            }
            _ => self.writable(path, "MKDIR")?,
        };
        let marker = dir_key(&key);
        self.authorize(
            "MKDIR",
            path,
            AccessRequest {
                action: Action::PutObject,
                store: &mount.store.name,
                key: &marker,
                delimiter: None,
                object_tags: &[],
            },
        )?;
        let log_path = store_path(mount, &key);
        self.logged(
            "MKDIR",
            Activity::Mkdir,
            &log_path,
            mount.store.store.create_dir(&key).await,
        )
    }

    /// Removes an empty directory (never the home or a directory above it).
    pub async fn rmdir(&self, path: &VirtualPath) -> Result<()> {
        if self.home().starts_with(path) {
            return Err(Error::public(
                ErrorKind::PermissionDenied,
                "the home directory cannot be removed",
            ));
        }
        let (mount, key) = match self.resolve(path)? {
            Resolved::Object {
                is_mount_point: true,
                ..
            }
            | Resolved::Virtual => {
                return Err(Error::denied(format!(
                    "{path}: a mapped directory cannot be removed"
                )));
            }
            _ => self.writable(path, "RMDIR")?,
        };
        let marker = dir_key(&key);
        self.authorize(
            "RMDIR",
            path,
            AccessRequest {
                action: Action::DeleteObject,
                store: &mount.store.name,
                key: &marker,
                delimiter: None,
                object_tags: &[],
            },
        )?;
        match mount.store.store.head(&key).await? {
            None => return Err(Error::not_found(path)),
            Some(meta) if meta.kind != Kind::Directory => {
                return Err(Error::new(
                    ErrorKind::NotADirectory,
                    format!("{path}: not a directory"),
                ));
            }
            Some(_) => {}
        }
        let log_path = store_path(mount, &key);
        self.logged(
            "RMDIR",
            Activity::Rmdir,
            &log_path,
            mount.store.store.delete_dir(&key).await,
        )
    }

    /// Renames a file (or a directory, where the store can). With `replace`
    /// false an existing destination is an error.
    pub async fn rename(&self, from: &VirtualPath, to: &VirtualPath, replace: bool) -> Result<()> {
        Self::check_new_name(to)?;
        let (from_mount, from_key) = self.writable(from, "RENAME")?;
        let (to_mount, to_key) = self.writable(to, "RENAME")?;
        if from_mount.kind == MountKind::File || to_mount.kind == MountKind::File {
            return Err(Error::denied("a mapped file cannot be renamed"));
        }
        if !Arc::ptr_eq(&from_mount.store, &to_mount.store) {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "renaming between different stores is not supported",
            ));
        }
        let store = &from_mount.store;
        let source = store
            .store
            .head(&from_key)
            .await?
            .ok_or_else(|| Error::not_found(from))?;
        let is_dir = source.kind == Kind::Directory;
        if is_dir && !store.store.capabilities().rename_directory {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("{from}: renaming a directory is not supported on this store"),
            ));
        }
        let (source_key, target_key) = if is_dir {
            (dir_key(&from_key), dir_key(&to_key))
        } else {
            (from_key.as_str().to_owned(), to_key.as_str().to_owned())
        };
        if is_dir {
            // Everything below moves too: each object must be movable.
            self.authorize_tree_move(from, (from_mount, &from_key), &to_key)
                .await?;
        }
        let source_tags = if is_dir {
            Vec::new()
        } else {
            self.object_tags(from_mount, &from_key).await?
        };
        for (action, key, path) in [
            (Action::GetObject, &source_key, from),
            (Action::PutObject, &target_key, to),
            (Action::DeleteObject, &source_key, from),
        ] {
            self.authorize(
                "RENAME",
                path,
                AccessRequest {
                    action,
                    store: &store.name,
                    key,
                    delimiter: None,
                    object_tags: if action == Action::GetObject {
                        &source_tags
                    } else {
                        &[]
                    },
                },
            )?;
        }
        let log_from = store_path(from_mount, &from_key);
        let log_to = store_path(to_mount, &to_key);
        match store.store.rename(&from_key, &to_key, replace).await {
            Ok(()) => {
                let message = format!("renamed to {log_to}");
                self.inner.audit.record(
                    Activity::Rename,
                    &Event {
                        path: Some(&log_from),
                        new_path: Some(&log_to),
                        message: Some(&message),
                        ..Event::default()
                    },
                );
                Ok(())
            }
            Err(error) => {
                let error = Error::from(error);
                self.log_error("RENAME", &log_from, &error);
                Err(error)
            }
        }
    }

    /// A directory rename moves every object below it, so it is allowed
    /// only when each of them could be moved on its own: read and deleted at
    /// its old key, written at its new key (SPEC 4; ENGINEERING 5). First
    /// the user must be allowed to list the whole tree (`s3:ListBucket`
    /// with `s3:prefix` = `dir/`, no delimiter): otherwise whether the
    /// rename works would tell them what the directory holds. Trees of more
    /// than [`MAX_RENAME_ENTRIES`] entries are refused as too large to
    /// check. Every denial is the same "permission denied"; the log says
    /// which object decided.
    async fn authorize_tree_move(
        &self,
        from: &VirtualPath,
        (mount, from_key): (&Mount, &Key),
        to_key: &Key,
    ) -> Result<()> {
        let store = &mount.store;
        let from_prefix = dir_key(from_key);
        let to_prefix = dir_key(to_key);
        self.authorize(
            "RENAME",
            from,
            AccessRequest {
                action: Action::ListBucket,
                store: &store.name,
                key: &from_prefix,
                delimiter: None,
                object_tags: &[],
            },
        )?;
        let mut pending = vec![from_key.clone()];
        let mut seen = 0usize;
        while let Some(dir) = pending.pop() {
            let mut lister = store.store.list(&dir).await?;
            while let Some(page) = lister.next_page(1000).await? {
                for entry in page {
                    seen += 1;
                    if seen > MAX_RENAME_ENTRIES {
                        return Err(Error::public(
                            ErrorKind::Unsupported,
                            format!(
                                "{from}: a directory with more than {MAX_RENAME_ENTRIES} entries cannot be renamed at once; move its contents in parts"
                            ),
                        ));
                    }
                    let child = dir.child(&entry.name).map_err(Error::from)?;
                    let is_dir = entry.meta.kind == Kind::Directory;
                    let (old_key, tags) = if is_dir {
                        pending.push(child.clone());
                        (dir_key(&child), Vec::new())
                    } else {
                        (
                            child.as_str().to_owned(),
                            self.object_tags(mount, &child).await?,
                        )
                    };
                    let below = &old_key[from_prefix.len()..];
                    let new_key = format!("{to_prefix}{below}");
                    for (action, key, tags) in [
                        (Action::GetObject, &old_key, &tags[..]),
                        (Action::DeleteObject, &old_key, &[][..]),
                        (Action::PutObject, &new_key, &[][..]),
                    ] {
                        self.authorize(
                            "RENAME",
                            from,
                            AccessRequest {
                                action,
                                store: &store.name,
                                key,
                                delimiter: None,
                                object_tags: tags,
                            },
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Sets the modification time (SETSTAT). Stores without times accept
    /// it as a no-op; the line is logged either way.
    pub async fn set_modified(
        &self,
        path: &VirtualPath,
        modified: Option<SystemTime>,
    ) -> Result<()> {
        let (mount, key) = match self.resolve(path)? {
            Resolved::Unmapped => return Err(Error::not_found(path)),
            Resolved::Virtual => {
                self.inner.audit.record(
                    Activity::Setstat,
                    &Event {
                        path: Some(path.as_str()),
                        message: Some("ignored on a mapped directory"),
                        ..Event::default()
                    },
                );
                return Ok(());
            }
            Resolved::Object { mount, key, .. } => (mount, key),
        };
        self.authorize(
            "SETSTAT",
            path,
            AccessRequest {
                action: Action::PutObject,
                store: &mount.store.name,
                key: key.as_str(),
                delimiter: None,
                object_tags: &[],
            },
        )?;
        let log_path = store_path(mount, &key);
        let store = &mount.store.store;
        let result = match modified {
            Some(time) if store.capabilities().set_times => {
                if store.head(&key).await?.is_none() {
                    return Err(Error::not_found(path));
                }
                store.set_modified(&key, time).await
            }
            _ => Ok(()),
        };
        self.logged("SETSTAT", Activity::Setstat, &log_path, result)
    }

    fn logged(
        &self,
        operation: &str,
        activity: Activity,
        log_path: &str,
        result: wharf_storage::Result<()>,
    ) -> Result<()> {
        match result {
            Ok(()) => {
                self.inner.audit.record(
                    activity,
                    &Event {
                        path: Some(log_path),
                        ..Event::default()
                    },
                );
                Ok(())
            }
            Err(error) => {
                let error = Error::from(error);
                self.log_error(operation, log_path, &error);
                Err(error)
            }
        }
    }
}

/// A directory listing in progress: the virtual entries first, then the
/// store's pages (without names a virtual entry shadows).
pub struct DirListing {
    virtual_entries: VecDeque<DirEntry>,
    shadowed: std::collections::HashSet<String>,
    store: Option<Box<dyn Lister>>,
    _handle: Taken,
}

impl DirListing {
    /// The next at most `limit` entries; `None` when done.
    pub async fn next_page(&mut self, limit: usize) -> Result<Option<Vec<DirEntry>>> {
        let limit = limit.max(1);
        if !self.virtual_entries.is_empty() {
            let n = limit.min(self.virtual_entries.len());
            return Ok(Some(self.virtual_entries.drain(..n).collect()));
        }
        loop {
            let Some(lister) = self.store.as_mut() else {
                return Ok(None);
            };
            match lister.next_page(limit).await? {
                None => {
                    self.store = None;
                    return Ok(None);
                }
                Some(page) => {
                    let entries: Vec<DirEntry> = page
                        .into_iter()
                        .filter(|e| !self.shadowed.contains(&e.name))
                        .map(|e| DirEntry {
                            // Never raw: a control character in a stored
                            // name would forge listing lines.
                            name: match crate::display_name(&e.name) {
                                std::borrow::Cow::Borrowed(_) => e.name,
                                std::borrow::Cow::Owned(shown) => shown,
                            },
                            meta: e.meta.into(),
                        })
                        .collect();
                    if !entries.is_empty() {
                        return Ok(Some(entries));
                    }
                }
            }
        }
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

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The most entries (files and directories, at every depth) a directory
/// rename checks; a larger tree is refused as too large to check.
pub const MAX_RENAME_ENTRIES: usize = 10_000;

/// The largest file anyone may write: S3's object size limit, for every
/// kind of store (a 1-byte write at 1 TiB would otherwise make a sparse
/// file the size of the offset, or wrap around near 2^64).
pub const MAX_OBJECT_BYTES: u64 = 5 << 40;

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

#[cfg(test)]
mod tests;
