//! `lambda`: `POST url` with the AWS Lambda event as the body; the answer
//! body is the response object. This is the Lambda invocation shape, so
//! `url` may point at the AWS Lambda runtime interface emulator
//! (`http://HOST:PORT/2015-03-31/functions/function/invocations`) running
//! an unchanged Transfer Family handler.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use super::http::{self, HttpClient};
use super::{BACKSTOP_GRACE, ProviderConfigError, check_timeout, request_event};
use crate::{Answer, IdentityProvider, LoginRequest};

/// `[identity_provider]` with `type = "lambda"`.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaConfig {
    /// The invocation URL.
    pub url: String,
}

/// The `lambda` identity provider.
#[derive(Clone)]
pub struct LambdaProvider {
    url: Url,
    shown: String,
    timeout: Duration,
    http: HttpClient,
}

// By hand: a URL may carry credentials (`https://user:secret@host/`).
impl fmt::Debug for LambdaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LambdaConfig")
            .field("url", &http::redacted(&self.url))
            .finish()
    }
}

impl fmt::Debug for LambdaProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LambdaProvider")
            .field("url", &self.shown)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl LambdaProvider {
    /// `timeout`: total time for one query (connect, send, answer).
    pub fn new(
        config: LambdaConfig,
        timeout: Duration,
    ) -> Result<LambdaProvider, ProviderConfigError> {
        check_timeout(timeout)?;
        let url = http::endpoint(&config.url)?;
        Ok(LambdaProvider {
            shown: http::display(&url),
            url,
            timeout,
            http: HttpClient::new(timeout)?,
        })
    }
}

#[async_trait]
impl IdentityProvider for LambdaProvider {
    fn kind(&self) -> &'static str {
        "lambda"
    }

    fn timeout(&self) -> Duration {
        self.timeout + BACKSTOP_GRACE
    }

    async fn query(&self, request: &LoginRequest) -> Answer {
        let body = request_event(request).to_string();
        let post = self
            .http
            .client()
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(body);
        self.http
            .answer(self.kind(), &self.shown, post, &request.credential)
            .await
    }
}
