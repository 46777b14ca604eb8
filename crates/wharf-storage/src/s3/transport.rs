//! opendal's HTTP transport: every opendal request goes through our
//! reqwest client with our per-attempt timeout, retries and request counts.

use std::sync::Arc;
use std::time::Duration;

use super::raw;
use super::stats::Stats;

/// opendal's HTTP transport: our reqwest client, with the same per-attempt
/// timeout and retries as our own requests, counting every attempt.
///
/// Retrying here rather than with opendal's RetryLayer keeps errors
/// classifiable: the RetryLayer marks every error it lets through as
/// "persistent", so a NoSuchBucket could not be told from an endpoint that
/// kept failing.
pub(super) struct Transport {
    pub(super) inner: opendal_http_transport_reqwest::ReqwestTransport,
    pub(super) stats: Arc<Stats>,
    pub(super) timeout: Duration,
    pub(super) retries: usize,
}

impl opendal::HttpTransport for Transport {
    async fn fetch(
        &self,
        req: http::Request<opendal::Buffer>,
    ) -> opendal::Result<http::Response<opendal::HttpBody>> {
        let operation = req
            .extensions()
            .get::<opendal::raw::ServiceOperation>()
            .map(|op| op.0)
            .unwrap_or("Other");
        let (parts, body) = req.into_parts();
        let mut backoff = raw::Backoff::new();
        let mut attempt = 0;
        loop {
            self.stats.request(operation);
            let request = http::Request::from_parts(parts.clone(), body.clone());
            let result = match tokio::time::timeout(self.timeout, self.inner.fetch(request)).await {
                Ok(result) => result,
                Err(_) => Err(opendal::Error::new(
                    opendal::ErrorKind::Unexpected,
                    format!("no response within {:?}", self.timeout),
                )
                .set_temporary()),
            };
            let retry = match &result {
                Ok(response) => raw::retryable_status(response.status()),
                Err(error) => error.is_temporary(),
            };
            if !retry || attempt >= self.retries {
                return result;
            }
            drop(result);
            attempt += 1;
            backoff.pause().await;
        }
    }
}
