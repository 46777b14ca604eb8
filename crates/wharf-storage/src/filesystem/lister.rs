//! Listings: one directory read page by page on a blocking thread,
//! without the names of uploads in progress and without entries whose
//! symbolic link leads outside the anchor.

use std::os::fd::{AsFd, OwnedFd};

use async_trait::async_trait;
use rustix::fs::OFlags;

use super::beneath::{Fs, meta_of};
use super::error::errno;
use super::{TEMP_PREFIX, blocking};
use crate::{Entry, Key, Lister, Result};

struct ListState {
    base: OwnedFd,
    path: String,
    entries: rustix::fs::Dir,
}

pub(super) struct FsLister {
    state: Option<ListState>,
}

impl FsLister {
    fn empty() -> FsLister {
        FsLister { state: None }
    }
}

impl FsLister {
    /// Opens the directory `key` (missing: an empty listing). Blocking.
    pub(super) fn open(fs: &Fs, key: &Key) -> Result<FsLister> {
        let Some(resolved) = fs.resolve(key, false)? else {
            return Ok(FsLister::empty());
        };
        let dir_fd = match Fs::open_beneath(
            resolved.base.as_fd(),
            &resolved.path,
            OFlags::RDONLY | OFlags::DIRECTORY,
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => {
                return Ok(FsLister::empty());
            }
            Err(e) => return Err(errno(e, &format!("cannot list {key}"))),
        };
        let entries = rustix::fs::Dir::read_from(&dir_fd)
            .map_err(|e| errno(e, &format!("cannot list {key}")))?;
        Ok(FsLister {
            state: Some(ListState {
                base: resolved.base,
                path: resolved.path,
                entries,
            }),
        })
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
