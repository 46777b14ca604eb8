//! File metadata as SFTP attributes, and the modification time a client
//! asks for in attributes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wharf_vfs::Metadata;

use crate::codec::Attrs;

/// The attributes a client is shown: size, type and permission bits, and
/// the modification time (as access time too) where the store keeps one.
pub(super) fn of(meta: &Metadata) -> Attrs {
    let kind_bits = if meta.is_dir() { 0o040000 } else { 0o100000 };
    let mtime = unix_time(meta.modified);
    Attrs {
        size: Some(meta.size),
        uid_gid: None,
        permissions: Some(kind_bits | meta.permissions()),
        times: meta.modified.map(|_| (mtime, mtime)),
    }
}

/// The modification time set by `attrs`, if any.
pub(super) fn modified(attrs: &Attrs) -> Option<SystemTime> {
    attrs
        .times
        .map(|(_, mtime)| UNIX_EPOCH + Duration::from_secs(u64::from(mtime)))
}

fn unix_time(time: Option<SystemTime>) -> u32 {
    time.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}
