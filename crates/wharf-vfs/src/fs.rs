//! `UserFs`: the operations front-ends call, authorized and logged.
//!
//! This module holds the session's filesystem itself (what every operation
//! shares: the namespace, the authorizer, the log, the handle quota) and
//! the types its operations report. The operations are grouped by concern:
//! - `stat`: `stat` and `set_modified` (STAT, SETSTAT);
//! - `list`: directory listings, page by page ([`DirListing`]);
//! - `read`: `open_read` and the [`FileReader`] handle;
//! - `write`: [`OpenOptions`], `open_write` and the [`FileWriter`] handle;
//! - `change`: `remove`, `mkdir`, `rmdir` and `rename`;
//! - `access`: what they share before a store is touched (resolution to a
//!   writable key, the authorizer's decision, object tags, handle units);
//! - `log`: the activity lines they write.

mod access;
mod change;
mod list;
mod log;
mod read;
mod stat;
mod write;

use std::sync::Arc;
use std::time::SystemTime;

use wharf_audit::{Activity, AuditLog, Event, SessionFields};
use wharf_storage::{Kind, Meta};

pub use self::change::MAX_RENAME_ENTRIES;
pub use self::list::{DirEntry, DirListing};
pub use self::read::FileReader;
pub use self::write::{FileWriter, MAX_OBJECT_BYTES, OpenOptions};
use crate::authorize::Authorizer;
use crate::error::{Error, ErrorKind, Result};
use crate::namespace::{Namespace, Resolved};
use crate::path::VirtualPath;
use crate::quota::Quota;

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
}

#[cfg(test)]
mod tests;
