//! The one place where virtual filesystem errors become FTP replies.
//!
//! libunftp turns a storage error kind into a fixed reply (code and text):
//! the kinds chosen here decide what clients see. Our messages go to the
//! activity log, never to the client (under LOGICAL mappings they could name
//! store keys).

use unftp_core::storage::{Error as FtpError, ErrorKind as FtpKind};
use wharf_vfs::{Error, ErrorKind};

/// The libunftp error kind of a virtual filesystem error, and so its reply.
pub(crate) fn kind_for(kind: ErrorKind) -> FtpKind {
    match kind {
        // 550 File not found
        ErrorKind::NotFound => FtpKind::PermanentFileNotAvailable,
        // 550 File not found (MKD of an existing name, RNTO onto one)
        ErrorKind::AlreadyExists => FtpKind::PermanentFileNotAvailable,
        // 550 Directory not found
        ErrorKind::NotADirectory => FtpKind::PermanentDirectoryNotAvailable,
        // 550 File not found (RETR or DELE of a directory)
        ErrorKind::IsADirectory => FtpKind::PermanentFileNotAvailable,
        // 550 Directory not empty
        ErrorKind::DirectoryNotEmpty => FtpKind::PermanentDirectoryNotEmpty,
        // 550 Permission denied
        ErrorKind::PermissionDenied => FtpKind::PermissionDenied,
        // 553 File name not allowed
        ErrorKind::InvalidPath => FtpKind::FileNameNotAllowedError,
        // 502 Command not implemented (APPE, REST + STOR, ...)
        ErrorKind::Unsupported => FtpKind::CommandNotImplemented,
        // 452 Insufficient storage space
        ErrorKind::NoSpace => FtpKind::InsufficientStorageSpaceError,
        // 450: the store is unreachable, a retry may work
        ErrorKind::Unavailable => FtpKind::TransientFileNotAvailable,
        // 451 Local error
        ErrorKind::Internal => FtpKind::LocalError,
    }
}

/// A virtual filesystem error as libunftp's storage error.
pub(crate) fn to_ftp(error: Error) -> FtpError {
    FtpError::new(kind_for(error.kind), error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(kind: ErrorKind) -> String {
        kind_for(kind).to_string()[..3].to_owned()
    }

    #[test]
    fn reply_codes() {
        for (kind, expected) in [
            (ErrorKind::NotFound, "550"),
            (ErrorKind::AlreadyExists, "550"),
            (ErrorKind::NotADirectory, "550"),
            (ErrorKind::IsADirectory, "550"),
            (ErrorKind::DirectoryNotEmpty, "550"),
            (ErrorKind::PermissionDenied, "550"),
            (ErrorKind::InvalidPath, "553"),
            (ErrorKind::Unsupported, "502"),
            (ErrorKind::NoSpace, "452"),
            (ErrorKind::Unavailable, "450"),
            (ErrorKind::Internal, "451"),
        ] {
            assert_eq!(code(kind), expected, "{kind:?}");
        }
    }
}
