//! opendal errors in our terms. No credential ever reaches a message: the
//! requests are signed in headers that are never reported, and only
//! opendal's message and the chain of causes are kept (not its context,
//! which repeats URLs and response headers).

use crate::{Error, ErrorKind};

pub(crate) fn from_opendal(
    error: opendal::Error,
    bucket: &str,
    operation: &str,
    key: &str,
) -> Error {
    use opendal::ErrorKind as O;
    let kind = match error.kind() {
        O::NotFound => ErrorKind::NotFound,
        O::PermissionDenied => ErrorKind::PermissionDenied,
        O::IsADirectory => ErrorKind::IsADirectory,
        O::NotADirectory => ErrorKind::NotADirectory,
        O::AlreadyExists => ErrorKind::AlreadyExists,
        O::Unsupported => ErrorKind::Unsupported,
        O::RateLimited => ErrorKind::Unavailable,
        // NoSuchBucket: the store is misconfigured.
        O::ConfigInvalid => ErrorKind::Internal,
        // Timeouts, connection failures and 5xx, after our transport's retries.
        _ if error.is_temporary() => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    };
    let mut kind = kind;
    let mut message = format!("{operation} s3://{bucket}/{key}: {}", error.message());
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        // No usable credentials: the request could not be signed.
        if let Some(signing) = cause.downcast_ref::<reqsign_core::Error>() {
            kind = if signing.is_retryable() {
                ErrorKind::Unavailable
            } else {
                ErrorKind::PermissionDenied
            };
        }
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    Error::new(kind, message)
}
