//! The one place where virtual filesystem errors become SFTP status codes.

use wharf_vfs::{Error, ErrorKind};

use crate::codec::StatusCode;

/// The status code and the message the client sees. Messages never include
/// store keys (under LOGICAL mappings those would reveal the real layout),
/// except where the message is ours and about the request itself.
pub fn for_error(error: &Error) -> (StatusCode, String) {
    match error.kind {
        ErrorKind::NotFound => (StatusCode::NoSuchFile, "No such file".into()),
        ErrorKind::NotADirectory => (StatusCode::NoSuchFile, "Not a directory".into()),
        ErrorKind::PermissionDenied => (StatusCode::PermissionDenied, "Permission denied".into()),
        ErrorKind::AlreadyExists => (StatusCode::Failure, "File exists".into()),
        ErrorKind::IsADirectory => (StatusCode::Failure, "Is a directory".into()),
        ErrorKind::DirectoryNotEmpty => (StatusCode::Failure, "Directory not empty".into()),
        ErrorKind::InvalidPath => (
            StatusCode::BadMessage,
            format!("Invalid path: {}", error.message),
        ),
        ErrorKind::Unsupported => (StatusCode::OpUnsupported, error.message.clone()),
        ErrorKind::NoSpace => (StatusCode::Failure, "No space left on the store".into()),
        ErrorKind::Unavailable => (
            StatusCode::Failure,
            "Storage is temporarily unavailable".into(),
        ),
        ErrorKind::Internal => (StatusCode::Failure, "Failure".into()),
    }
}
