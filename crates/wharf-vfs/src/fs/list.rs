//! Directory listings: `list` authorizes and opens a listing, and
//! [`DirListing`] hands it out page by page, the virtual entries (mapped
//! directories and files, the way toward a PATH home) before the store's.

use std::collections::VecDeque;

use wharf_storage::{Key, Kind, Lister};

use super::access::dir_key;
use super::{Metadata, UserFs};
use crate::authorize::{AccessRequest, Action};
use crate::error::{Error, ErrorKind, Result};
use crate::namespace::{Mount, MountKind, Resolved};
use crate::path::VirtualPath;
use crate::quota::Taken;

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub meta: Metadata,
}

impl UserFs {
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
                    AccessRequest::new(Action::ListBucket, &mount.store.name, &prefix).listing(),
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
            .authorize(
                &AccessRequest::new(Action::ListBucket, &mount.store.name, &prefix).listing(),
            )
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
            .authorize(
                &AccessRequest::new(Action::ListBucket, &mount.store.name, &prefix).listing(),
            )
            .is_ok()
    }

    async fn file_mount_meta(&self, mount: &Mount) -> Option<Metadata> {
        let key = crate::namespace::file_key(&mount.prefix).ok()?;
        self.inner
            .authorizer
            .authorize(&AccessRequest::new(
                Action::ListBucket,
                &mount.store.name,
                key.as_str(),
            ))
            .ok()?;
        match mount.store.store.head(&key).await {
            Ok(Some(meta)) => Some(meta.into()),
            _ => None,
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
