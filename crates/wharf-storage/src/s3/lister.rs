//! Listing one directory level: ListObjectsV2 with `delimiter=/`, one page
//! of at most `page_size` keys fetched at a time (opendal's lister is lazy),
//! so memory stays bounded by a page however large the directory.

use std::collections::{HashSet, VecDeque};

use async_trait::async_trait;
use futures::StreamExt;
use opendal::EntryMode;

use super::error::from_opendal;
use crate::{Entry, Kind, Lister, Meta, Result};

pub(crate) struct S3Lister {
    inner: Option<opendal::Lister>,
    bucket: String,
    /// `dir/`, or "" for the root.
    prefix: String,
    seen: SeenDirs,
}

/// Which listed key of the directory `prefix` is which child: the name and
/// whether it is a directory (`x/`, a common prefix or a marker), or `None`
/// for keys that are not children (the directory's own marker, names that
/// cannot be keys).
pub(crate) fn child<'a>(prefix: &str, path: &'a str, is_dir: bool) -> Option<(&'a str, bool)> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let rest = path.strip_prefix(prefix)?;
    let (name, is_dir) = match rest.strip_suffix('/') {
        Some(name) => (name, true),
        None => (rest, is_dir),
    };
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return None;
    }
    Some((name, is_dir))
}

/// Directory names already listed, so that a `x/` marker that is also a
/// common prefix lists once. Bounded: a duplicate comes from the same server
/// page, so remembering a page's worth of names is enough.
pub(crate) struct SeenDirs {
    names: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
}

impl SeenDirs {
    pub(crate) fn new(capacity: usize) -> SeenDirs {
        SeenDirs {
            names: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Whether `name` is new (and remembers it).
    pub(crate) fn first_time(&mut self, name: &str) -> bool {
        if self.names.contains(name) {
            return false;
        }
        self.names.insert(name.to_owned());
        self.order.push_back(name.to_owned());
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.names.remove(&old);
        }
        true
    }
}

impl S3Lister {
    pub(crate) fn new(
        inner: opendal::Lister,
        bucket: String,
        prefix: String,
        page_size: usize,
    ) -> S3Lister {
        S3Lister {
            inner: Some(inner),
            bucket,
            prefix,
            seen: SeenDirs::new(page_size),
        }
    }

    fn entry(&mut self, entry: opendal::Entry) -> Option<Entry> {
        let meta = entry.metadata();
        let (name, is_dir) = child(&self.prefix, entry.path(), meta.mode() == EntryMode::DIR)?;
        if is_dir {
            return self.seen.first_time(name).then(|| Entry {
                name: name.to_owned(),
                meta: Meta::directory(),
            });
        }
        Some(Entry {
            name: name.to_owned(),
            meta: Meta {
                kind: Kind::File,
                size: meta.content_length(),
                modified: meta.last_modified().map(Into::into),
                mode: None,
            },
        })
    }
}

#[async_trait]
impl Lister for S3Lister {
    async fn next_page(&mut self, limit: usize) -> Result<Option<Vec<Entry>>> {
        let limit = limit.max(1);
        let mut page = Vec::new();
        while page.len() < limit {
            let Some(inner) = self.inner.as_mut() else {
                break;
            };
            match inner.next().await {
                Some(Ok(entry)) => {
                    if let Some(entry) = self.entry(entry) {
                        page.push(entry);
                    }
                }
                Some(Err(error)) => {
                    return Err(from_opendal(
                        error,
                        &self.bucket,
                        "ListObjectsV2",
                        &self.prefix,
                    ));
                }
                None => self.inner = None,
            }
        }
        if page.is_empty() {
            Ok(None)
        } else {
            Ok(Some(page))
        }
    }
}
