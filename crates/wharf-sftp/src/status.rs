//! The one place where virtual filesystem errors become SFTP status codes.

use wharf_vfs::{Error, ErrorKind};

use crate::codec::StatusCode;

/// The status code and the message the client sees: the text is
/// [`Error::client_message`] (fixed per kind, or our own words about the
/// request), never a store's message, which may name keys or S3 URLs.
pub fn for_error(error: &Error) -> (StatusCode, String) {
    let code = match error.kind {
        ErrorKind::NotFound | ErrorKind::NotADirectory => StatusCode::NoSuchFile,
        ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
        ErrorKind::InvalidPath => StatusCode::BadMessage,
        ErrorKind::Unsupported => StatusCode::OpUnsupported,
        ErrorKind::AlreadyExists
        | ErrorKind::IsADirectory
        | ErrorKind::DirectoryNotEmpty
        | ErrorKind::NoSpace
        | ErrorKind::Unavailable
        | ErrorKind::LimitReached
        | ErrorKind::Internal => StatusCode::Failure,
    };
    (code, error.client_message().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_details_never_reach_the_client() {
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::AlreadyExists,
            ErrorKind::NotADirectory,
            ErrorKind::IsADirectory,
            ErrorKind::DirectoryNotEmpty,
            ErrorKind::PermissionDenied,
            ErrorKind::InvalidPath,
            ErrorKind::Unsupported,
            ErrorKind::NoSpace,
            ErrorKind::Unavailable,
            ErrorKind::LimitReached,
            ErrorKind::Internal,
        ] {
            let (_, text) = for_error(&Error::new(kind, "s3://bucket/alice/secret: boom"));
            assert!(
                !text.contains("s3://") && !text.contains("secret"),
                "{kind:?}: {text}"
            );
        }
    }
}
