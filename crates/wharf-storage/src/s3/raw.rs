//! Signed S3 requests that opendal does not let us make: the object PUT and
//! the multipart upload (create, parts, complete, abort) of our writer, whose
//! upload id we must own so that a dropped or failed upload can be aborted
//! later and, if the endpoint stays down, logged for an operator.
//!
//! Requests are signed with reqsign (the signer opendal uses too) and sent
//! with the store's one reqwest client. Every attempt has a timeout;
//! transient failures (connection errors, timeouts, 5xx, 429, SlowDown,
//! RequestTimeout) are retried with exponential backoff and jitter.
//!
//! Here: the client, one signed attempt and the retries around it, and the
//! single requests (PutObject, GetObjectTagging). The multipart upload and
//! its part copies are in `multipart`; the bodies S3 sends and expects in
//! `wire`.

mod multipart;
pub(super) mod wire;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use reqsign_aws_v4::Credential;
use reqsign_core::Signer;

pub(crate) use self::multipart::{ABORT_ATTEMPTS, MAX_PARTS};
pub(crate) use self::wire::Part;
use self::wire::{encode, error_body, parse_tagging};
use super::Sse;
use super::stats::Stats;
use crate::{Error, ErrorKind, Result};

/// The first pause between attempts; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);

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

/// The pauses between attempts at one request: from [`MIN_BACKOFF`],
/// doubling up to [`MAX_BACKOFF`], each shortened at random ([`jitter`]).
pub(crate) struct Backoff {
    delay: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff { delay: MIN_BACKOFF }
    }

    /// Sleeps before the next attempt.
    pub(crate) async fn pause(&mut self) {
        tokio::time::sleep(jitter(self.delay)).await;
        self.delay = (self.delay * 2).min(MAX_BACKOFF);
    }
}

/// A delay between `delay / 2` and `delay`.
pub(crate) fn jitter(delay: Duration) -> Duration {
    let half = delay / 2;
    half + half.mul_f64(rand::random::<f64>())
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
        let mut backoff = Backoff::new();
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
                    backoff.pause().await;
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
