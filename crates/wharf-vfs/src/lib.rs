//! The virtual filesystem of one authenticated session.
//!
//! [`UserFs`] is the only road from a front-end to bytes. It turns client
//! paths into [`VirtualPath`]s, maps them through the session's home
//! directory ([`Namespace`]) to store keys, asks the session's
//! [`Authorizer`] about every operation before any store is touched, and
//! writes the activity log lines (OPEN, CLOSE, MKDIR, ...) for every
//! protocol alike.
//!
//! Architecture invariants:
//! - No protocol vocabulary here: operations are `stat`, `list`,
//!   `open_read`, `open_write`, `remove`, `mkdir`, `rmdir`, `rename`,
//!   `set_modified`; errors are [`ErrorKind`]s that front-ends map to wire
//!   codes.
//! - A `UserFs` cannot be built without an [`Authorizer`]; no configuration
//!   turns authorization off.
//! - [`VirtualPath`] and [`Namespace`] do no I/O.

mod authorize;
mod display;
mod error;
mod fs;
/// Fuzz target bodies (`fuzz/`), built for its tests and with the
/// `fuzzing` feature only.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod namespace;
mod path;
mod quota;

pub use authorize::{AccessRequest, Action, Authorizer, Denied, Target};
pub use display::{display_name, ls_line};
pub use error::{Error, ErrorKind, Result};
pub use fs::{
    AuditContext, DirEntry, DirListing, FileReader, FileWriter, MAX_OBJECT_BYTES,
    MAX_RENAME_ENTRIES, Metadata, OpenOptions, UserFs,
};
pub use namespace::{Mount, MountKind, Namespace, Resolved, StoreHandle};
pub use path::{MAX_PATH_BYTES, MAX_SEGMENT_BYTES, PathError, VirtualPath};
pub use quota::{MEMORY_UNIT, PerUser, Quota, Taken};
pub use wharf_storage::Kind;
