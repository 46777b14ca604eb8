//! Errors of the filesystem store: an `io::Error` or an errno, with the
//! context of what was being done, as a store [`Error`] of the right kind.

use std::io;

use crate::{Error, ErrorKind};

pub(super) fn io_error(error: io::Error, context: &str) -> Error {
    let kind = match error.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        io::ErrorKind::NotADirectory => ErrorKind::NotADirectory,
        io::ErrorKind::IsADirectory => ErrorKind::IsADirectory,
        io::ErrorKind::DirectoryNotEmpty => ErrorKind::DirectoryNotEmpty,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => ErrorKind::NoSpace,
        io::ErrorKind::InvalidFilename => ErrorKind::InvalidKey,
        io::ErrorKind::CrossesDevices => ErrorKind::PermissionDenied,
        _ => match rustix::io::Errno::from_io_error(&error) {
            // RESOLVE_BENEATH refuses with EXDEV, magic links with ELOOP.
            Some(rustix::io::Errno::XDEV) | Some(rustix::io::Errno::LOOP) => {
                ErrorKind::PermissionDenied
            }
            Some(rustix::io::Errno::PERM) => ErrorKind::PermissionDenied,
            _ => ErrorKind::Internal,
        },
    };
    let detail = if kind == ErrorKind::PermissionDenied
        && matches!(
            rustix::io::Errno::from_io_error(&error),
            Some(rustix::io::Errno::XDEV)
        ) {
        "a symbolic link leads outside the mapping target".to_owned()
    } else {
        error.to_string()
    };
    Error::new(kind, format!("{context}: {detail}"))
}

pub(super) fn errno(error: rustix::io::Errno, context: &str) -> Error {
    io_error(error.into(), context)
}
