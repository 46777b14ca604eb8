//! The protocol extensions announced in VERSION and the answers that need
//! no file: `limits@openssh.com`, extensions we do not know, and request
//! types we do not know. (The other extensions are served with their
//! family: `posix-rename@openssh.com` and `expand-path@openssh.com` in
//! `paths`, `fsync@openssh.com` in `files`.)

use bytes::Bytes;

use super::{MAX_HANDLES, MAX_IO_BYTES};
use crate::codec::{self, Reply, StatusCode};

/// The extensions announced in VERSION, with their versions.
const ANNOUNCED: [(&str, &str); 4] = [
    ("posix-rename@openssh.com", "1"),
    ("limits@openssh.com", "1"),
    ("fsync@openssh.com", "1"),
    ("expand-path@openssh.com", "1"),
];

/// The answer to INIT.
pub(super) fn version() -> Bytes {
    codec::version(&ANNOUNCED)
}

/// `limits@openssh.com`: the largest packet, READ and WRITE, and how many
/// handles may be open.
pub(super) fn limits(id: u32) -> Bytes {
    let mut reply = Reply::new(codec::SSH_FXP_EXTENDED_REPLY, id, 32);
    reply
        .u64(256 * 1024)
        .u64(MAX_IO_BYTES as u64)
        .u64(MAX_IO_BYTES as u64)
        .u64(MAX_HANDLES as u64);
    reply.finish()
}

/// An extension we do not know.
pub(super) fn unsupported(id: u32, name: &str) -> Bytes {
    codec::status(
        id,
        StatusCode::OpUnsupported,
        &format!("extension {name} is not supported"),
    )
}

/// A request type we do not know.
pub(super) fn unknown(id: u32, kind: u8) -> Bytes {
    codec::status(
        id,
        StatusCode::OpUnsupported,
        &format!("request type {kind} is not supported"),
    )
}
