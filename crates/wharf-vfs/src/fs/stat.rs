//! Metadata: `stat` (authorized as a one-key listing or a HeadObject)
//! and `set_modified` (SETSTAT, authorized as a PutObject).

use std::time::SystemTime;

use wharf_audit::{Activity, Event};
use wharf_storage::Key;

use super::log::store_path;
use super::{Metadata, UserFs};
use crate::authorize::{AccessRequest, Action};
use crate::error::{Error, Result};
use crate::namespace::{Mount, Resolved};
use crate::path::VirtualPath;

impl UserFs {
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
                    None if mount.is_directory_entry(is_mount_point) || path == self.home() => {
                        Ok(Metadata::directory())
                    }
                    None => Err(Error::not_found(path)),
                }
            }
        }
    }

    /// `stat`'s decision: a one-key listing, else a HeadObject.
    async fn authorize_stat(&self, path: &VirtualPath, mount: &Mount, key: &Key) -> Result<()> {
        let listing = AccessRequest::new(Action::ListBucket, &mount.store.name, key.as_str());
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
            AccessRequest::new(Action::PutObject, &mount.store.name, key.as_str()),
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
}
