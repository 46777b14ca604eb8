//! The HTTP client the `lambda` and `api_gateway` providers share: rustls
//! (aws-lc-rs), a total timeout per request, no redirects, a capped body.

use std::error::Error as _;
use std::time::Duration;

use reqwest::{RequestBuilder, Response, Url, redirect};

use super::{MAX_RESPONSE_BYTES, ProviderConfigError, excerpt, interpret};
use crate::{Answer, Credential};

/// One provider's client (it pools connections to its endpoint).
#[derive(Debug, Clone)]
pub(super) struct HttpClient {
    client: reqwest::Client,
    timeout: Duration,
}

impl HttpClient {
    pub(super) fn new(timeout: Duration) -> Result<HttpClient, ProviderConfigError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(redirect::Policy::none())
            // A login is one small request: never let Nagle hold half of it.
            .tcp_nodelay(true)
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderConfigError(format!("cannot set up the HTTP client: {e}")))?;
        Ok(HttpClient { client, timeout })
    }

    pub(super) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends `request` and turns whatever happens into an [`Answer`].
    /// `target` names the endpoint in reasons (no credentials in it).
    pub(super) async fn answer(
        &self,
        kind: &str,
        target: &str,
        request: RequestBuilder,
        credential: &Credential,
    ) -> Answer {
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return self.transport_denial(kind, target, &error),
        };
        let status = response.status().as_u16();
        // The Lambda invoke API (and the runtime interface emulator) answer
        // 200 with this header when the function raised.
        let function_error = response
            .headers()
            .get("x-amz-function-error")
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let body = match read_capped(response).await {
            Ok(body) => body,
            Err(ReadError::TooLarge) => {
                return Answer::denied(
                    502,
                    format!(
                        "the {kind} identity provider at {target} answered more than \
                         {MAX_RESPONSE_BYTES} bytes"
                    ),
                );
            }
            Err(ReadError::Http(error)) => return self.transport_denial(kind, target, &error),
        };
        if let Some(function_error) = function_error {
            let function_error = excerpt(function_error.as_bytes(), credential, false);
            return Answer::denied(
                if (200..300).contains(&status) {
                    502
                } else {
                    status
                },
                format!(
                    "the {kind} function failed ({function_error}): {}",
                    function_error_text(&body, credential)
                ),
            );
        }
        interpret(kind, status, &body, credential)
    }

    fn transport_denial(&self, kind: &str, target: &str, error: &reqwest::Error) -> Answer {
        let mut causes = Vec::new();
        let mut source = error.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !causes.contains(&text) {
                causes.push(text);
            }
            source = cause.source();
        }
        let detail = if causes.is_empty() {
            String::new()
        } else {
            format!(" ({})", causes.join(": "))
        };
        if error.is_timeout() {
            Answer::denied(
                504,
                format!(
                    "the {kind} identity provider at {target} did not answer within {:?}{detail}",
                    self.timeout
                ),
            )
        } else if error.is_connect() {
            Answer::denied(
                502,
                format!("cannot connect to the {kind} identity provider at {target}{detail}"),
            )
        } else {
            Answer::denied(
                502,
                format!("the request to the {kind} identity provider at {target} failed{detail}"),
            )
        }
    }
}

/// `errorType: errorMessage` of a Lambda error body, else an excerpt.
fn function_error_text(body: &[u8], credential: &Credential) -> String {
    if let Ok(serde_json::Value::Object(error)) = serde_json::from_slice(body) {
        let field = |name: &str| error.get(name).and_then(|v| v.as_str()).unwrap_or("");
        let text = format!("{}: {}", field("errorType"), field("errorMessage"));
        if text != ": " {
            return excerpt(text.as_bytes(), credential, false);
        }
    }
    excerpt(body, credential, false)
}

enum ReadError {
    TooLarge,
    Http(reqwest::Error),
}

async fn read_capped(mut response: Response) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|length| length > MAX_RESPONSE_BYTES as u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Http)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses and checks an endpoint URL from the configuration.
pub(super) fn endpoint(url: &str) -> Result<Url, ProviderConfigError> {
    let parsed = Url::parse(url.trim())
        .map_err(|e| ProviderConfigError(format!("url {url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ProviderConfigError(format!(
            "url {url:?} must start with http:// or https://"
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ProviderConfigError(format!("url {url:?} has no host")));
    }
    if parsed.fragment().is_some() {
        return Err(ProviderConfigError(format!(
            "url {url:?} must not have a #fragment"
        )));
    }
    Ok(parsed)
}

/// A configured URL as `Debug` shows it: without any user or password.
pub(super) fn redacted(url: &str) -> String {
    match Url::parse(url.trim()) {
        Ok(parsed) => display(&parsed),
        Err(_) => "<not a URL>".to_owned(),
    }
}

/// The URL as reasons show it: without any user or password in it.
pub(super) fn display(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}
