use std::fmt;

use crate::path::PathError;

/// What went wrong, in terms every front-end maps to its wire code with an
/// exhaustive `match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    NotADirectory,
    IsADirectory,
    DirectoryNotEmpty,
    /// Denied by the policy, outside the mappings, or refused by the backend.
    PermissionDenied,
    /// The client's path is unusable (NUL, too long).
    InvalidPath,
    /// Not possible on this store (for now): a non-sequential write to S3,
    /// renaming a directory on S3, renaming across stores.
    Unsupported,
    NoSpace,
    /// The store is unreachable; a retry may work.
    Unavailable,
    Internal,
}

/// A virtual filesystem error. `message` is for logs; front-ends may pass it
/// to the client, since it never holds more than the client already knows.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn denied(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::PermissionDenied, message)
    }

    pub(crate) fn not_found(path: &impl fmt::Display) -> Error {
        Error::new(
            ErrorKind::NotFound,
            format!("{path}: no such file or directory"),
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<PathError> for Error {
    fn from(error: PathError) -> Error {
        Error::new(ErrorKind::InvalidPath, error.to_string())
    }
}

impl From<wharf_storage::Error> for Error {
    fn from(error: wharf_storage::Error) -> Error {
        use wharf_storage::ErrorKind as S;
        let kind = match error.kind {
            S::NotFound => ErrorKind::NotFound,
            S::AlreadyExists => ErrorKind::AlreadyExists,
            S::NotADirectory => ErrorKind::NotADirectory,
            S::IsADirectory => ErrorKind::IsADirectory,
            S::DirectoryNotEmpty => ErrorKind::DirectoryNotEmpty,
            S::PermissionDenied => ErrorKind::PermissionDenied,
            S::InvalidKey => ErrorKind::InvalidPath,
            S::Unsupported => ErrorKind::Unsupported,
            S::NoSpace => ErrorKind::NoSpace,
            S::Unavailable => ErrorKind::Unavailable,
            S::Internal => ErrorKind::Internal,
        };
        Error {
            kind,
            message: error.message,
        }
    }
}
