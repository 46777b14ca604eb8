//! The multipart upload our writer and server-side copies run:
//! CreateMultipartUpload, UploadPart and UploadPartCopy, then
//! CompleteMultipartUpload, or AbortMultipartUpload (retried, and left to
//! an operator with a log line when the endpoint stays down).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::wire::{Part, complete_body, encode, error_body, parse_copy_etag, parse_upload_id};
use super::{Backoff, Raw, classify, jitter};
use crate::{Error, ErrorKind, Result};

/// S3 allows at most this many parts in one upload.
pub(crate) const MAX_PARTS: u32 = 10_000;
/// Attempts at AbortMultipartUpload before an upload is left to an operator.
pub(crate) const ABORT_ATTEMPTS: u32 = 4;
const ABORT_FIRST_DELAY: Duration = Duration::from_millis(500);

impl Raw {
    /// CreateMultipartUpload; returns the upload id.
    pub(crate) async fn create_multipart(&self, key: &str) -> Result<String> {
        let mut headers = HeaderMap::new();
        self.sse_headers(&mut headers)?;
        let response = self
            .send(
                "CreateMultipartUpload",
                key,
                Method::POST,
                self.url(key, "uploads"),
                headers,
                Bytes::new(),
            )
            .await?;
        parse_upload_id(&response.body).ok_or_else(|| {
            Error::internal(format!(
                "CreateMultipartUpload s3://{}/{key}: no UploadId in the response",
                self.bucket
            ))
        })
    }

    /// UploadPart; returns the part's ETag.
    pub(crate) async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> Result<Part> {
        let query = format!("partNumber={number}&uploadId={}", encode(upload_id, false));
        let response = self
            .send(
                "UploadPart",
                key,
                Method::PUT,
                self.url(key, &query),
                HeaderMap::new(),
                body,
            )
            .await?;
        let etag = response
            .headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::internal(format!(
                    "UploadPart s3://{}/{key}: no ETag in the response ({})",
                    self.bucket, response.status
                ))
            })?;
        Ok(Part { number, etag })
    }

    /// CompleteMultipartUpload with the parts in order.
    pub(crate) async fn complete(&self, key: &str, upload_id: &str, parts: &[Part]) -> Result<()> {
        let query = format!("uploadId={}", encode(upload_id, false));
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        let body = Bytes::from(complete_body(parts));
        let mut backoff = Backoff::new();
        let mut attempt = 0;
        loop {
            let response = self
                .send(
                    "CompleteMultipartUpload",
                    key,
                    Method::POST,
                    self.url(key, &query),
                    headers.clone(),
                    body.clone(),
                )
                .await?;
            // S3 may answer 200 with an <Error> body: retry it when the code
            // says it is transient.
            let Some((error, retryable)) =
                self.error_in_success("CompleteMultipartUpload", key, &response.body)
            else {
                return Ok(());
            };
            if !retryable || attempt >= self.retries {
                return Err(error);
            }
            attempt += 1;
            backoff.pause().await;
        }
    }

    /// AbortMultipartUpload. An upload that is already gone counts as aborted.
    pub(crate) async fn abort(&self, key: &str, upload_id: &str) -> Result<()> {
        let query = format!("uploadId={}", encode(upload_id, false));
        match self
            .send(
                "AbortMultipartUpload",
                key,
                Method::DELETE,
                self.url(key, &query),
                HeaderMap::new(),
                Bytes::new(),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.kind == ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// UploadPartCopy of `source[start..end)` (an object of this bucket),
    /// only while the source still has `source_etag`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        source: &str,
        source_etag: Option<&str>,
        start: u64,
        end: u64,
    ) -> Result<Part> {
        let query = format!("partNumber={number}&uploadId={}", encode(upload_id, false));
        let mut headers = HeaderMap::new();
        let copy_source = format!("/{}/{}", self.bucket, encode(source, true));
        let header = |value: &str| {
            HeaderValue::from_str(value)
                .map_err(|_| Error::internal(format!("UploadPartCopy: bad header value {value:?}")))
        };
        headers.insert(
            HeaderName::from_static("x-amz-copy-source"),
            header(&copy_source)?,
        );
        headers.insert(
            HeaderName::from_static("x-amz-copy-source-range"),
            header(&format!("bytes={start}-{}", end - 1))?,
        );
        if let Some(etag) = source_etag {
            headers.insert(
                HeaderName::from_static("x-amz-copy-source-if-match"),
                header(etag)?,
            );
        }
        let response = self
            .send(
                "UploadPartCopy",
                key,
                Method::PUT,
                self.url(key, &query),
                headers,
                Bytes::new(),
            )
            .await?;
        // Like CompleteMultipartUpload, a 200 may carry an <Error>.
        if let Some((error, _)) = self.error_in_success("UploadPartCopy", key, &response.body) {
            return Err(error);
        }
        let etag = parse_copy_etag(&response.body).ok_or_else(|| {
            Error::internal(format!(
                "UploadPartCopy s3://{}/{key}: no ETag in the response",
                self.bucket
            ))
        })?;
        Ok(Part { number, etag })
    }

    /// Aborts a multipart upload, retrying with backoff while the endpoint
    /// is unavailable. When every attempt fails, logs what an operator needs
    /// to remove the parts by hand. Returns whether the upload is gone.
    pub(crate) async fn abort_with_retries(
        &self,
        key: &str,
        upload_id: &str,
        attempts: u32,
    ) -> bool {
        let mut delay = ABORT_FIRST_DELAY;
        for attempt in 1..=attempts {
            match self.abort(key, upload_id).await {
                Ok(()) => {
                    tracing::debug!(bucket = %self.bucket, key, upload_id, "aborted multipart upload");
                    return true;
                }
                Err(error) if attempt < attempts && error.kind == ErrorKind::Unavailable => {
                    tokio::time::sleep(jitter(delay)).await;
                    delay *= 2;
                }
                Err(error) => {
                    tracing::warn!(
                        bucket = %self.bucket,
                        key,
                        upload_id,
                        attempts = attempt,
                        error = %error,
                        "could not abort a multipart upload; its parts stay stored (and billed) \
                         until it is aborted (aws s3api abort-multipart-upload) or a lifecycle \
                         rule removes it"
                    );
                    return false;
                }
            }
        }
        false
    }

    /// The error of a 200 answer whose body is an `<Error>` (as
    /// CompleteMultipartUpload and UploadPartCopy may send), and whether
    /// another attempt may succeed; `None` for a real success.
    fn error_in_success(&self, operation: &str, key: &str, body: &[u8]) -> Option<(Error, bool)> {
        let parsed = error_body(body);
        if parsed.code.is_empty() {
            return None;
        }
        let (kind, retryable) = classify(StatusCode::INTERNAL_SERVER_ERROR, &parsed.code);
        let error = Error::new(
            kind,
            format!(
                "{operation} s3://{}/{key}: {}: {}",
                self.bucket, parsed.code, parsed.message
            ),
        );
        Some((error, retryable))
    }
}
