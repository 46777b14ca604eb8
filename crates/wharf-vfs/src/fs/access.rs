//! What the operations of [`UserFs`] share before any store is touched:
//! the key of a path that may be written, the authorizer's decision (a
//! denial logged as ACCESS_DENIED), the object tags it may need, and the
//! unit of the handle quota an open file or listing holds.

use wharf_audit::{Activity, Event};
use wharf_storage::Key;

use super::UserFs;
use crate::authorize::{AccessRequest, Action};
use crate::error::{Error, ErrorKind, Result};
use crate::namespace::{Mount, Resolved};
use crate::path::VirtualPath;
use crate::quota::Taken;

/// The key as a directory for policy purposes: `dir/`, or "" for the root.
pub(super) fn dir_key(key: &Key) -> String {
    if key.is_root() {
        String::new()
    } else {
        format!("{}/", key.as_str())
    }
}

impl UserFs {
    /// One unit of the handle quota for a file or listing about to be
    /// opened; refused at once when the session's user or the server has
    /// too many open.
    pub(super) fn take_handle(&self, path: &VirtualPath, operation: &str) -> Result<Taken> {
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

    /// Whether `path` is a directory above the home (PATH homes: `/STORE`,
    /// `/STORE/home` for `/STORE/home/alice`). SPEC section 3: these are
    /// always traversable, whatever the policies say.
    pub(super) fn is_above_home(&self, path: &VirtualPath) -> bool {
        self.home().starts_with(path) && path != self.home()
    }

    /// A name for something new (upload, mkdir, rename target) must hold no
    /// control character (SPEC section 5).
    pub(super) fn check_new_name(path: &VirtualPath) -> Result<()> {
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
    pub(super) fn writable<'a>(
        &'a self,
        path: &VirtualPath,
        operation: &str,
    ) -> Result<(&'a Mount, Key)> {
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
            } if !mount.is_directory_entry(is_mount_point) => Ok((mount, key)),
            Resolved::Object { .. } => Err(Error::new(
                ErrorKind::IsADirectory,
                format!("{path}: is a mapped directory"),
            )),
        }
    }

    /// The object's tags when the authorizer tests them, else none. A
    /// missing object has none: the authorization then decides as for an
    /// untagged object, so a denied user cannot learn whether it exists.
    pub(super) async fn object_tags(
        &self,
        mount: &Mount,
        key: &Key,
    ) -> Result<Vec<(String, String)>> {
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
    pub(super) fn authorize(
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
}
