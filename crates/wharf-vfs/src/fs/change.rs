//! Operations that change names: `remove`, `mkdir`, `rmdir` and
//! `rename`, where a directory rename is authorized object by object over
//! the whole tree it moves.

use std::sync::Arc;

use wharf_audit::{Activity, Event};
use wharf_storage::{Key, Kind};

use super::UserFs;
use super::access::dir_key;
use super::log::store_path;
use crate::authorize::{AccessRequest, Action};
use crate::error::{Error, ErrorKind, Result};
use crate::namespace::{Mount, MountKind, Resolved};
use crate::path::VirtualPath;

/// The most entries (files and directories, at every depth) a directory
/// rename checks; a larger tree is refused as too large to check.
pub const MAX_RENAME_ENTRIES: usize = 10_000;

impl UserFs {
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
            AccessRequest::new(Action::DeleteObject, &mount.store.name, key.as_str()),
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
            AccessRequest::new(Action::PutObject, &mount.store.name, &marker),
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
            AccessRequest::new(Action::DeleteObject, &mount.store.name, &marker),
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
                AccessRequest::new(action, &store.name, key).with_tags(
                    if action == Action::GetObject {
                        &source_tags
                    } else {
                        &[]
                    },
                ),
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
            AccessRequest::new(Action::ListBucket, &store.name, &from_prefix),
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
                            AccessRequest::new(action, &store.name, key).with_tags(tags),
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}
