//! `api_gateway`: `GET {url}/servers/{serverId}/users/{username}/config
//! ?protocol=..&sourceIp=..`, the password in header `Password` or
//! `PasswordBase64` (none for key logins), as AWS Transfer Family calls an
//! API Gateway identity provider.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Url;
use reqwest::header::{ACCEPT, HeaderValue};

use super::http::{self, HttpClient};
use super::{BACKSTOP_GRACE, ProviderConfigError, check_timeout};
use crate::{Answer, Credential, IdentityProvider, LoginRequest};

/// Everything but RFC 3986 unreserved characters is encoded in a path
/// segment: `@` becomes `%40` and `/` `%2F`, as API Gateway expects.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Which header carries the password (`password_header`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub enum PasswordHeader {
    /// `Password: <password>`, the classic AWS template.
    #[default]
    Password,
    /// `PasswordBase64: <base64 of the UTF-8 password>`, the newer template;
    /// it carries any password, control characters included.
    PasswordBase64,
}

impl PasswordHeader {
    pub fn as_str(self) -> &'static str {
        match self {
            PasswordHeader::Password => "Password",
            PasswordHeader::PasswordBase64 => "PasswordBase64",
        }
    }
}

impl fmt::Display for PasswordHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[identity_provider]` with `type = "api_gateway"`.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiGatewayConfig {
    /// The API's base URL (a stage URL such as `https://ID.execute-api.REGION.amazonaws.com/prod`);
    /// a trailing `/` is fine.
    pub url: String,
    #[serde(default)]
    pub password_header: PasswordHeader,
}

/// The `api_gateway` identity provider.
#[derive(Clone)]
pub struct ApiGatewayProvider {
    base: Url,
    shown: String,
    password_header: PasswordHeader,
    timeout: Duration,
    http: HttpClient,
}

// By hand: a URL may carry credentials (`https://user:secret@host/`).
impl fmt::Debug for ApiGatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiGatewayConfig")
            .field("url", &http::redacted(&self.url))
            .field("password_header", &self.password_header)
            .finish()
    }
}

impl fmt::Debug for ApiGatewayProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiGatewayProvider")
            .field("url", &self.shown)
            .field("timeout", &self.timeout)
            .field("password_header", &self.password_header)
            .finish_non_exhaustive()
    }
}

impl ApiGatewayProvider {
    /// `timeout`: total time for one query (connect, send, answer).
    pub fn new(
        config: ApiGatewayConfig,
        timeout: Duration,
    ) -> Result<ApiGatewayProvider, ProviderConfigError> {
        check_timeout(timeout)?;
        let base = http::endpoint(&config.url)?;
        if base.query().is_some() {
            return Err(ProviderConfigError(format!(
                "url {:?} must not have a ?query: wharf adds protocol and sourceIp",
                config.url
            )));
        }
        Ok(ApiGatewayProvider {
            shown: http::display(&base),
            base,
            password_header: config.password_header,
            timeout,
            http: HttpClient::new(timeout)?,
        })
    }

    /// The URL one login asks.
    pub fn url_for(&self, request: &LoginRequest) -> Url {
        let mut url = self.base.clone();
        let path = format!(
            "{}/servers/{}/users/{}/config",
            self.base.path().trim_end_matches('/'),
            utf8_percent_encode(&request.server_id, SEGMENT),
            utf8_percent_encode(&request.username, SEGMENT),
        );
        url.set_path(&path);
        url.query_pairs_mut()
            .append_pair("protocol", request.protocol.as_str())
            .append_pair("sourceIp", &request.source_ip.to_string());
        url
    }
}

#[async_trait]
impl IdentityProvider for ApiGatewayProvider {
    fn kind(&self) -> &'static str {
        "api_gateway"
    }

    fn timeout(&self) -> Duration {
        self.timeout + BACKSTOP_GRACE
    }

    async fn query(&self, request: &LoginRequest) -> Answer {
        let mut get = self
            .http
            .client()
            .get(self.url_for(request))
            .header(ACCEPT, "application/json");
        if let Credential::Password(password) = &request.credential {
            let value = match self.password_header {
                PasswordHeader::Password => HeaderValue::from_bytes(password.expose().as_bytes()),
                PasswordHeader::PasswordBase64 => HeaderValue::from_bytes(
                    base64::engine::general_purpose::STANDARD
                        .encode(password.expose().as_bytes())
                        .as_bytes(),
                ),
            };
            let Ok(mut value) = value else {
                return Answer::denied(
                    400,
                    "the password holds a character that an HTTP header cannot carry; \
                     set password_header = \"PasswordBase64\"",
                );
            };
            value.set_sensitive(true);
            get = get.header(self.password_header.as_str(), value);
        }
        self.http
            .answer(self.kind(), &self.shown, get, &request.credential)
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{Password, Protocol};
    use std::net::{IpAddr, Ipv4Addr};

    fn provider(url: &str) -> ApiGatewayProvider {
        ApiGatewayProvider::new(
            ApiGatewayConfig {
                url: url.into(),
                password_header: PasswordHeader::Password,
            },
            Duration::from_secs(1),
        )
        .unwrap()
    }

    fn request(username: &str) -> LoginRequest {
        LoginRequest {
            username: username.into(),
            credential: Credential::Password(Password::new("pw")),
            protocol: Protocol::Sftp,
            source_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            server_id: "s-0123".into(),
        }
    }

    #[test]
    fn urls_follow_the_aws_contract() {
        let expected = "https://api.example.com/prod/servers/s-0123/users/user%40example.com/config?protocol=SFTP&sourceIp=192.0.2.7";
        for base in [
            "https://api.example.com/prod",
            "https://api.example.com/prod/",
            " https://api.example.com/prod// ",
        ] {
            assert_eq!(
                provider(base)
                    .url_for(&request("user@example.com"))
                    .as_str(),
                expected
            );
        }
        assert_eq!(
            provider("http://127.0.0.1:9")
                .url_for(&request("a/b c"))
                .as_str(),
            "http://127.0.0.1:9/servers/s-0123/users/a%2Fb%20c/config?protocol=SFTP&sourceIp=192.0.2.7"
        );
    }

    #[test]
    fn bad_configurations_are_refused() {
        let config = |url: &str| ApiGatewayConfig {
            url: url.into(),
            password_header: PasswordHeader::Password,
        };
        let one = Duration::from_secs(1);
        for (url, timeout, part) in [
            ("ftp://x", one, "http://"),
            ("not a url", one, "not a URL"),
            ("https://x/prod?stage=1", one, "?query"),
            ("https://x/prod#f", one, "#fragment"),
            ("https://x", Duration::ZERO, "longer than 0s"),
        ] {
            let error = ApiGatewayProvider::new(config(url), timeout).unwrap_err();
            assert!(error.0.contains(part), "{error} lacks {part}");
        }
    }

    #[test]
    fn debug_hides_url_credentials() {
        let config = ApiGatewayConfig {
            url: "https://idp:s3cret@api.example.com/prod".into(),
            password_header: PasswordHeader::Password,
        };
        let one = Duration::from_secs(1);
        let provider = ApiGatewayProvider::new(config.clone(), one).unwrap();
        let lambda = crate::LambdaConfig {
            url: config.url.clone(),
        };
        let lambda_provider = crate::LambdaProvider::new(lambda.clone(), one).unwrap();
        for shown in [
            format!("{config:?}"),
            format!("{provider:?}"),
            format!("{lambda:?}"),
            format!("{lambda_provider:?}"),
        ] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("api.example.com/prod"), "{shown}");
        }
    }
}
