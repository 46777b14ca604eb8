//! Signed S3 requests that opendal does not let us make: the object PUT and
//! the multipart upload (create, parts, complete, abort) of our writer, whose
//! upload id we must own so that a dropped or failed upload can be aborted
//! later and, if the endpoint stays down, logged for an operator.
//!
//! Requests are signed with reqsign (the signer opendal uses too) and sent
//! with the store's one reqwest client. Every attempt has a timeout;
//! transient failures (connection errors, timeouts, 5xx, 429, SlowDown,
//! RequestTimeout) are retried with exponential backoff and jitter.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use reqsign_aws_v4::Credential;
use reqsign_core::Signer;
use serde::Deserialize;

use super::Sse;
use super::stats::Stats;
use crate::{Error, ErrorKind, Result};

/// The first pause between attempts; it doubles up to [`MAX_BACKOFF`].
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(100);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// S3 allows at most this many parts in one upload.
pub(crate) const MAX_PARTS: u32 = 10_000;
/// Attempts at AbortMultipartUpload before an upload is left to an operator.
pub(crate) const ABORT_ATTEMPTS: u32 = 4;
const ABORT_FIRST_DELAY: Duration = Duration::from_millis(500);

pub(crate) struct Raw {
    client: reqwest::Client,
    signer: Signer<Credential>,
    /// `scheme://host[:port][/path]` of the bucket: with path style this ends
    /// in `/BUCKET`; otherwise the host starts with `BUCKET.`.
    bucket_url: String,
    bucket: String,
    sse: Option<Sse>,
    timeout: Duration,
    retries: usize,
    stats: Arc<Stats>,
}

pub(crate) struct RawConfig {
    pub(crate) client: reqwest::Client,
    pub(crate) signer: Signer<Credential>,
    pub(crate) bucket_url: String,
    pub(crate) bucket: String,
    pub(crate) sse: Option<Sse>,
    pub(crate) timeout: Duration,
    pub(crate) retries: usize,
    pub(crate) stats: Arc<Stats>,
}

struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// An error and whether another attempt may succeed.
struct Attempt {
    error: Error,
    retryable: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InitiateResult {
    upload_id: String,
}

#[derive(Debug, Deserialize)]
struct CopyPartResult {
    #[serde(rename = "ETag", default)]
    etag: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tagging {
    #[serde(default)]
    tag_set: TagSet,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagSet {
    #[serde(default)]
    tag: Vec<Tag>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    key: String,
    #[serde(default)]
    value: String,
}

/// The tags of a GetObjectTagging response body.
pub(crate) fn parse_tagging(body: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).ok()?;
    let tagging = quick_xml::de::from_str::<Tagging>(text).ok()?;
    Some(
        tagging
            .tag_set
            .tag
            .into_iter()
            .map(|tag| (tag.key, tag.value))
            .collect(),
    )
}

/// A part that has been uploaded.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub(crate) number: u32,
    pub(crate) etag: String,
}

/// Percent-encodes everything but RFC 3986 unreserved characters (and `/`
/// when `keep_slash`), the way SigV4 canonicalizes S3 paths and queries.
pub(crate) fn encode(value: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[usize::from(byte >> 4)] as char);
                out.push(HEX[usize::from(byte & 15)] as char);
            }
        }
    }
    out
}

fn xml_escape(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Builds the body of CompleteMultipartUpload.
pub(crate) fn complete_body(parts: &[Part]) -> String {
    let mut body = String::from("<CompleteMultipartUpload>");
    for part in parts {
        body.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
            part.number,
            xml_escape(&part.etag)
        ));
    }
    body.push_str("</CompleteMultipartUpload>");
    body
}

/// The S3 error code and message of an error response body, if it is one.
fn error_body(body: &[u8]) -> ErrorBody {
    std::str::from_utf8(body)
        .ok()
        .filter(|text| text.contains("<Error"))
        .and_then(|text| quick_xml::de::from_str::<ErrorBody>(text).ok())
        .unwrap_or_default()
}

pub(crate) fn parse_upload_id(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    quick_xml::de::from_str::<InitiateResult>(text)
        .ok()
        .map(|r| r.upload_id)
        .filter(|id| !id.is_empty())
}

pub(crate) fn parse_copy_etag(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    quick_xml::de::from_str::<CopyPartResult>(text)
        .ok()
        .map(|r| r.etag)
        .filter(|etag| !etag.is_empty())
}

/// The message of an error and of its sources, without URLs (they carry no
/// credentials, but they are long and repeat the key).
fn chain(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Statuses worth another attempt.
pub(crate) fn retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 499 | 500 | 502 | 503 | 504)
}

/// Classifies an S3 error response.
pub(crate) fn classify(status: StatusCode, code: &str) -> (ErrorKind, bool) {
    match (status.as_u16(), code) {
        (_, "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable") => {
            (ErrorKind::Unavailable, true)
        }
        // A missing bucket is a configuration problem, not a missing key.
        (_, "NoSuchBucket") => (ErrorKind::Internal, false),
        (404, _) => (ErrorKind::NotFound, false),
        (403, _) => (ErrorKind::PermissionDenied, false),
        _ if retryable_status(status) => (ErrorKind::Unavailable, true),
        _ => (ErrorKind::Internal, false),
    }
}

impl Raw {
    pub(crate) fn new(config: RawConfig) -> Raw {
        Raw {
            client: config.client,
            signer: config.signer,
            bucket_url: config.bucket_url,
            bucket: config.bucket,
            sse: config.sse,
            timeout: config.timeout,
            retries: config.retries,
            stats: config.stats,
        }
    }

    pub(crate) fn bucket(&self) -> &str {
        &self.bucket
    }

    fn url(&self, key: &str, query: &str) -> String {
        let mut url = format!("{}/{}", self.bucket_url, encode(key, true));
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    fn sse_headers(&self, headers: &mut HeaderMap) -> Result<()> {
        let Some(sse) = &self.sse else {
            return Ok(());
        };
        let (algorithm, key_id) = match sse {
            Sse::Aes256 => ("AES256", None),
            Sse::Kms { kms_key_id } => ("aws:kms", kms_key_id.as_deref()),
        };
        headers.insert(
            HeaderName::from_static("x-amz-server-side-encryption"),
            HeaderValue::from_static(algorithm),
        );
        if let Some(key_id) = key_id {
            let mut value = HeaderValue::from_str(key_id)
                .map_err(|_| Error::internal("kms_key_id is not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(
                HeaderName::from_static("x-amz-server-side-encryption-aws-kms-key-id"),
                value,
            );
        }
        Ok(())
    }

    async fn attempt(
        &self,
        operation: &'static str,
        key: &str,
        method: &Method,
        url: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> std::result::Result<Response, Attempt> {
        let context = || format!("{operation} s3://{}/{key}", self.bucket);
        let request = http::Request::builder()
            .method(method.clone())
            .uri(url)
            .body(())
            .map_err(|e| Attempt {
                error: Error::internal(format!("{}: bad request: {e}", context())),
                retryable: false,
            })?;
        let (mut parts, ()) = request.into_parts();
        parts.headers = headers.clone();
        if let Err(e) = self.signer.sign(&mut parts, None).await {
            let retryable = e.is_retryable();
            return Err(Attempt {
                error: Error::new(
                    if retryable {
                        ErrorKind::Unavailable
                    } else {
                        ErrorKind::PermissionDenied
                    },
                    format!("{}: cannot sign the request: {e}", context()),
                ),
                retryable,
            });
        }
        // reqwest sets Host from the URL itself.
        parts.headers.remove(http::header::HOST);
        self.stats.request(operation);
        let sent = self
            .client
            .request(parts.method, url)
            .headers(parts.headers)
            .timeout(self.timeout)
            .body(body.clone())
            .send()
            .await;
        let transport = |e: reqwest::Error| Attempt {
            retryable: !e.is_builder(),
            error: Error::new(
                if e.is_builder() {
                    ErrorKind::Internal
                } else {
                    ErrorKind::Unavailable
                },
                format!("{}: {}", context(), chain(&e.without_url())),
            ),
        };
        let response = sent.map_err(transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            return Ok(Response {
                status,
                headers,
                body,
            });
        }
        let parsed = error_body(&body);
        let (kind, retryable) = classify(status, &parsed.code);
        let detail = if parsed.code.is_empty() {
            status.to_string()
        } else {
            format!("{status} {}: {}", parsed.code, parsed.message)
        };
        Err(Attempt {
            error: Error::new(kind, format!("{}: {detail}", context())),
            retryable,
        })
    }

    /// Sends a request, retrying transient failures up to `retries` times.
    async fn send(
        &self,
        operation: &'static str,
        key: &str,
        method: Method,
        url: String,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response> {
        let retries = self.retries;
        let mut delay = MIN_BACKOFF;
        let mut attempt = 0;
        loop {
            match self
                .attempt(operation, key, &method, &url, &headers, &body)
                .await
            {
                Ok(response) => return Ok(response),
                Err(failure) if failure.retryable && attempt < retries => {
                    attempt += 1;
                    tracing::debug!(operation, attempt, error = %failure.error, "retrying S3 request");
                    tokio::time::sleep(jitter(delay)).await;
                    delay = (delay * 2).min(MAX_BACKOFF);
                }
                Err(failure) if failure.retryable && attempt > 0 => {
                    return Err(Error::new(
                        failure.error.kind,
                        format!("{} (after {} attempts)", failure.error.message, attempt + 1),
                    ));
                }
                Err(failure) => return Err(failure.error),
            }
        }
    }

    /// PutObject of a whole (small) object.
    pub(crate) async fn put_object(&self, key: &str, body: Bytes) -> Result<()> {
        let mut headers = HeaderMap::new();
        self.sse_headers(&mut headers)?;
        self.send(
            "PutObject",
            key,
            Method::PUT,
            self.url(key, ""),
            headers,
            body,
        )
        .await
        .map(|_| ())
    }

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
        let mut delay = MIN_BACKOFF;
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
            let parsed = error_body(&response.body);
            if parsed.code.is_empty() {
                return Ok(());
            }
            let (kind, retryable) = classify(StatusCode::INTERNAL_SERVER_ERROR, &parsed.code);
            let error = Error::new(
                kind,
                format!(
                    "CompleteMultipartUpload s3://{}/{key}: {}: {}",
                    self.bucket, parsed.code, parsed.message
                ),
            );
            if !retryable || attempt >= self.retries {
                return Err(error);
            }
            attempt += 1;
            tokio::time::sleep(jitter(delay)).await;
            delay = (delay * 2).min(MAX_BACKOFF);
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

    /// GetObjectTagging: the object's tags as (key, value) pairs.
    pub(crate) async fn get_object_tagging(&self, key: &str) -> Result<Vec<(String, String)>> {
        let response = self
            .send(
                "GetObjectTagging",
                key,
                Method::GET,
                self.url(key, "tagging"),
                HeaderMap::new(),
                Bytes::new(),
            )
            .await?;
        parse_tagging(&response.body).ok_or_else(|| {
            Error::internal(format!(
                "GetObjectTagging s3://{}/{key}: the response is not a Tagging document",
                self.bucket
            ))
        })
    }
}

impl Raw {
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
        let parsed = error_body(&response.body);
        if !parsed.code.is_empty() {
            let (kind, _) = classify(StatusCode::INTERNAL_SERVER_ERROR, &parsed.code);
            return Err(Error::new(
                kind,
                format!(
                    "UploadPartCopy s3://{}/{key}: {}: {}",
                    self.bucket, parsed.code, parsed.message
                ),
            ));
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
}

/// A delay between `delay / 2` and `delay`.
pub(crate) fn jitter(delay: Duration) -> Duration {
    let half = delay / 2;
    half + half.mul_f64(rand::random::<f64>())
}
