//! The channel's open handles (files being read or written, listings being
//! read), by the 4-byte handle the client was given. At most
//! [`MAX_HANDLES`] are open at once. Dropping a handle lets go of its file:
//! a write handle's queue closes, so its worker discards the upload.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use wharf_vfs::{FileReader, VirtualPath};

use super::MAX_HANDLES;
use super::directories::Listing;
use super::read_worker::ReadOp;
use super::write_worker::WriteOp;

/// What a handle is open for.
pub(super) enum Handle {
    Read {
        reader: Arc<FileReader>,
        /// Its worker's queue.
        ops: mpsc::Sender<ReadOp>,
        path: VirtualPath,
    },
    Write {
        /// Its worker's queue (the worker has the writer).
        ops: mpsc::Sender<WriteOp>,
        path: VirtualPath,
    },
    Dir {
        listing: Arc<tokio::sync::Mutex<Listing>>,
        path: VirtualPath,
    },
}

impl Handle {
    /// The path it was opened with.
    pub(super) fn path(&self) -> &VirtualPath {
        match self {
            Handle::Read { path, .. } | Handle::Write { path, .. } | Handle::Dir { path, .. } => {
                path
            }
        }
    }
}

/// The open handles of one channel.
pub(super) struct Handles(Mutex<Table>);

struct Table {
    open: HashMap<u32, Handle>,
    /// The number to try first for the next handle.
    next: u32,
}

impl Handles {
    pub(super) fn new() -> Handles {
        Handles(Mutex::new(Table {
            open: HashMap::new(),
            next: 1,
        }))
    }

    /// Opens `handle` and returns what the client calls it, or `None` when
    /// [`MAX_HANDLES`] are open.
    pub(super) fn insert(&self, handle: Handle) -> Option<[u8; 4]> {
        let mut table = self.0.lock();
        if table.open.len() >= MAX_HANDLES {
            return None;
        }
        loop {
            let number = table.next;
            table.next = table.next.wrapping_add(1);
            if let Entry::Vacant(e) = table.open.entry(number) {
                e.insert(handle);
                return Some(number.to_be_bytes());
            }
        }
    }

    /// What `look` finds in the handle the client calls `handle`, if it is
    /// open (the table is locked meanwhile).
    pub(super) fn with<T>(&self, handle: &[u8], look: impl FnOnce(&Handle) -> T) -> Option<T> {
        let number = number(handle)?;
        self.0.lock().open.get(&number).map(look)
    }

    /// The queue of a write handle's worker.
    pub(super) fn writer(&self, handle: &[u8]) -> Option<mpsc::Sender<WriteOp>> {
        self.with(handle, |open| match open {
            Handle::Write { ops, .. } => Some(ops.clone()),
            _ => None,
        })
        .flatten()
    }

    /// Closes a handle: it is the caller's now.
    pub(super) fn remove(&self, handle: &[u8]) -> Option<Handle> {
        let number = number(handle)?;
        self.0.lock().open.remove(&number)
    }

    /// Drops every handle.
    pub(super) fn clear(&self) {
        self.0.lock().open.clear();
    }
}

/// The number of a handle as the client sends it.
fn number(handle: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = handle.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}
