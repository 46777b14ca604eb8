//! Directories: OPENDIR and READDIR (a listing read one store page at a
//! time, never whole), MKDIR and RMDIR.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use wharf_vfs::{DirListing, Error};

use super::handles::Handle;
use super::replies::{invalid_handle, ok, too_many_handles};
use super::{Shared, attrs};
use crate::codec::{self, Reply, StatusCode};

/// Entries per READDIR reply.
const READDIR_PAGE: usize = 100;

/// What a directory handle holds.
pub(super) struct Listing {
    entries: DirListing,
    /// The last page has been sent.
    done: bool,
}

/// OPENDIR: a handle whose READDIRs page through the listing.
pub(super) async fn open(shared: &Shared, id: u32, input: &str) -> Result<Bytes, Error> {
    let path = shared.path(input)?;
    let entries = shared.fs.list(&path).await?;
    let listing = Arc::new(tokio::sync::Mutex::new(Listing {
        entries,
        done: false,
    }));
    match shared.handles.insert(Handle::Dir { listing, path }) {
        Some(handle) => Ok(codec::handle(id, &handle)),
        None => Ok(too_many_handles(id)),
    }
}

/// READDIR: the next page of the listing, as `ls -l` lines too.
pub(super) async fn read(shared: &Shared, id: u32, handle: &[u8]) -> Result<Bytes, Error> {
    let listing = shared.handles.with(handle, |open| match open {
        Handle::Dir { listing, .. } => Some(listing.clone()),
        _ => None,
    });
    let Some(listing) = listing.flatten() else {
        return Ok(invalid_handle(id));
    };
    let mut listing = listing.lock().await;
    if listing.done {
        return Ok(end_of_directory(id));
    }
    let Some(entries) = listing.entries.next_page(READDIR_PAGE).await? else {
        listing.done = true;
        return Ok(end_of_directory(id));
    };
    let now = SystemTime::now();
    let mut reply = Reply::new(codec::SSH_FXP_NAME, id, entries.len() * 128);
    reply.u32(u32::try_from(entries.len()).unwrap_or(0));
    for entry in &entries {
        let long_name = wharf_vfs::ls_line(&entry.name, &entry.meta, &shared.owner, now);
        reply
            .string(entry.name.as_bytes())
            .string(long_name.as_bytes())
            .attrs(&attrs::of(&entry.meta));
    }
    Ok(reply.finish())
}

fn end_of_directory(id: u32) -> Bytes {
    codec::status(id, StatusCode::Eof, "End of directory")
}

/// MKDIR (the attributes are ignored).
pub(super) async fn make(shared: &Shared, id: u32, input: &str) -> Result<Bytes, Error> {
    shared.fs.mkdir(&shared.path(input)?).await?;
    Ok(ok(id))
}

/// RMDIR.
pub(super) async fn remove(shared: &Shared, id: u32, input: &str) -> Result<Bytes, Error> {
    shared.fs.rmdir(&shared.path(input)?).await?;
    Ok(ok(id))
}
