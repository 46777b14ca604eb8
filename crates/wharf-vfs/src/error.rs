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
    /// A limit of the session, the user or the server (open files): a
    /// retry after closing something may work.
    LimitReached,
    Internal,
}

impl ErrorKind {
    /// What a client is told about an error of this kind, whatever the
    /// protocol (FTP adds the final full stop). Fixed text: the details,
    /// which may name a store key or an S3 URL, go only to the log.
    pub fn client_text(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "No such file or directory",
            ErrorKind::AlreadyExists => "File exists",
            ErrorKind::NotADirectory => "Not a directory",
            ErrorKind::IsADirectory => "Is a directory",
            ErrorKind::DirectoryNotEmpty => "Directory not empty",
            ErrorKind::PermissionDenied => "Permission denied",
            ErrorKind::InvalidPath => "Invalid file name",
            ErrorKind::Unsupported => "Operation not supported",
            ErrorKind::NoSpace => "No space left on the store",
            ErrorKind::Unavailable => "Storage is temporarily unavailable, try again",
            ErrorKind::LimitReached => "Too many open files",
            ErrorKind::Internal => "Internal error",
        }
    }
}

/// A virtual filesystem error. `message` is for the log (it may hold store
/// keys); what a client sees is [`Error::client_message`].
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// Our own words about the request, safe to show the client (why an
    /// append or a rename is refused); `None` for everything that came
    /// from a store.
    public: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error whose message goes only to the log.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            public: None,
        }
    }

    /// An error whose message is about the request only, and may be shown
    /// to the client as it is (it names no store, key or URL).
    pub fn public(kind: ErrorKind, message: impl Into<String>) -> Error {
        let message = message.into();
        Error {
            kind,
            public: Some(message.clone()),
            message,
        }
    }

    /// What the client is told: our own words about the request where we
    /// have them, else the fixed text of the kind.
    pub fn client_message(&self) -> &str {
        self.public
            .as_deref()
            .unwrap_or_else(|| self.kind.client_text())
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
    /// About the client's own path: the client may see why.
    fn from(error: PathError) -> Error {
        Error::public(ErrorKind::InvalidPath, error.to_string())
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
        Error::new(kind, error.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_messages_never_reach_the_client() {
        let from_store = Error::from(wharf_storage::Error::new(
            wharf_storage::ErrorKind::Unsupported,
            "s3://bucket/secret/key: not supported",
        ));
        assert_eq!(from_store.client_message(), "Operation not supported");
        assert!(from_store.message.contains("secret"));
        let ours = Error::public(ErrorKind::Unsupported, "appending is not supported");
        assert_eq!(ours.client_message(), "appending is not supported");
        let path: Error = PathError::TooLong { bytes: 2000 }.into();
        assert_eq!(path.kind, ErrorKind::InvalidPath);
        assert!(path.client_message().contains("2000 bytes"));
    }
}
