//! Identity providers that ask something outside wharf: an HTTP endpoint in
//! the AWS Lambda shape (`lambda`), one in the AWS API Gateway shape
//! (`api_gateway`), a local program (`command`), or a user table in
//! PostgreSQL or SQLite (`sql`); and [`CachingProvider`], which remembers
//! successful answers for `cache_ttl`.
//!
//! All three send the same request object, the AWS Transfer Family custom
//! identity provider event ([`request_event`]), and read the same response
//! object. Every failure of the provider (a non-2xx answer, invalid JSON,
//! `{}`, `null`, a refused connection, a timeout, a command that fails) is
//! an [`Answer`] that denies, with a precise reason for the log. No reason,
//! error or `Debug` output ever holds the password: text that comes back
//! from a provider (an error body, a command's stderr) has it redacted
//! before it is quoted.
//!
//! Limits: a provider's answer is read up to [`MAX_RESPONSE_BYTES`]; each
//! query is its own future with its own deadline, and nothing shared is
//! locked across an await, so one hanging provider call never delays
//! another user's login.

mod api_gateway;
mod cache;
mod command;
mod http;
mod lambda;
mod ldap;
pub mod sql;

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Map, Value};

pub use api_gateway::{ApiGatewayConfig, ApiGatewayProvider, PasswordHeader};
pub use cache::{CachingProvider, DEFAULT_CACHE_CAPACITY, with_cache};
pub use command::{CommandConfig, CommandProvider};
pub use lambda::{LambdaConfig, LambdaProvider};
pub use ldap::{
    AttributeSource, DEFAULT_PUBLIC_KEYS_ATTRIBUTE, DEFAULT_USER_FILTER, LdapConfig, LdapProvider,
};
pub use sql::{SqlConfig, SqlProvider};

use crate::{Answer, Credential, LoginRequest};

/// The most bytes of a provider's answer (HTTP body or command stdout) that
/// wharf reads; a longer answer denies.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// How much longer than the configured timeout [`IdentityProvider::timeout`]
/// reports, so that the provider's own deadline (which knows what it was
/// waiting for, and kills a command's processes) fires before the backstop
/// in [`crate::authenticate`].
///
/// [`IdentityProvider::timeout`]: crate::IdentityProvider::timeout
const BACKSTOP_GRACE: Duration = Duration::from_millis(250);

/// How many characters of provider output a reason quotes.
const EXCERPT_CHARS: usize = 240;

/// A provider configuration that cannot work, with a message for the
/// operator (the binary prefixes the key path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfigError(pub String);

impl fmt::Display for ProviderConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProviderConfigError {}

fn check_timeout(timeout: Duration) -> Result<(), ProviderConfigError> {
    if timeout.is_zero() {
        return Err(ProviderConfigError(
            "timeout must be longer than 0s".to_owned(),
        ));
    }
    Ok(())
}

/// The request object, exactly as AWS Transfer Family sends it to a Lambda
/// function: `{"username", "password", "protocol", "serverId", "sourceIp"}`,
/// with no `password` for a key login. `lambda` posts it, `command` writes
/// it to stdin.
pub fn request_event(request: &LoginRequest) -> Value {
    let mut event = Map::new();
    event.insert("username".into(), Value::from(request.username.as_str()));
    if let Credential::Password(password) = &request.credential {
        event.insert("password".into(), Value::from(password.expose()));
    }
    event.insert("protocol".into(), Value::from(request.protocol.as_str()));
    event.insert("serverId".into(), Value::from(request.server_id.as_str()));
    event.insert(
        "sourceIp".into(),
        Value::from(request.source_ip.to_string()),
    );
    Value::Object(event)
}

/// Removes every form in which a provider could echo the password (as sent,
/// JSON-escaped, base64) from `text`.
fn redact(text: &str, credential: &Credential) -> String {
    let Credential::Password(password) = credential else {
        return text.to_owned();
    };
    let raw = password.expose();
    if raw.is_empty() {
        return text.to_owned();
    }
    let mut forms = vec![raw.to_owned()];
    if let Ok(quoted) = serde_json::to_string(raw) {
        forms.push(quoted[1..quoted.len() - 1].to_owned());
    }
    forms.push(base64::engine::general_purpose::STANDARD.encode(raw.as_bytes()));
    // Longest first, so that a form containing another is removed whole.
    forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
    let mut out = text.to_owned();
    for form in forms {
        if !form.is_empty() {
            out = out.replace(&form, "***");
        }
    }
    out
}

/// A short one-line quote of provider output, password redacted first (so
/// truncation can never leave a piece of it), whitespace collapsed.
/// `from_end` keeps the end (a traceback's last line says the most).
fn excerpt(bytes: &[u8], credential: &Credential, from_end: bool) -> String {
    let text = redact(&String::from_utf8_lossy(bytes), credential);
    let mut words = String::with_capacity(text.len().min(4 * EXCERPT_CHARS));
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if !words.is_empty() {
            words.push(' ');
        }
        words.push_str(word);
    }
    let count = words.chars().count();
    if count <= EXCERPT_CHARS {
        return words;
    }
    if from_end {
        let tail: String = words.chars().skip(count - EXCERPT_CHARS).collect();
        format!("...{tail}")
    } else {
        let head: String = words.chars().take(EXCERPT_CHARS).collect();
        format!("{head}...")
    }
}

/// The response object from a provider's answer, or the reason it denies.
/// `status` is the HTTP status (200 for a command that exited 0).
fn interpret(kind: &str, status: u16, body: &[u8], credential: &Credential) -> Answer {
    let quote = |bytes: &[u8]| {
        let text = excerpt(bytes, credential, false);
        if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        }
    };
    if !(200..300).contains(&status) {
        return Answer::denied(
            status,
            format!(
                "the {kind} identity provider answered HTTP {status}{}",
                quote(body)
            ),
        );
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Answer::denied(
            status,
            format!("the {kind} identity provider answered with nothing (denied)"),
        );
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(error) => {
            return Answer::denied(
                status,
                format!(
                    "the {kind} identity provider answered with invalid JSON ({error}){}",
                    quote(body)
                ),
            );
        }
    };
    match value {
        Value::Object(object) if object.is_empty() => Answer::denied(
            status,
            format!("the {kind} identity provider answered {{}} (denied)"),
        ),
        Value::Object(object) => {
            // Once per provider answer (a cached answer is not a new one),
            // by name, never by value (SPEC section 3).
            if let Some(warning) = crate::response::unknown_fields_warning(kind, &object, |name| {
                redact(name, credential)
            }) {
                tracing::warn!("{warning}");
            }
            Answer {
                status_code: status,
                message: format!("authenticated by the {kind} identity provider"),
                response: Some(Value::Object(object)),
            }
        }
        Value::Null => Answer::denied(
            status,
            format!("the {kind} identity provider answered null (denied)"),
        ),
        other => Answer::denied(
            status,
            format!(
                "the {kind} identity provider answered a JSON {}, not the response object",
                json_type(&other)
            ),
        ),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{Password, Protocol};
    use std::net::{IpAddr, Ipv6Addr};

    fn password(p: &str) -> Credential {
        Credential::Password(Password::new(p))
    }

    #[test]
    fn the_event_has_the_aws_shape() {
        let mut request = LoginRequest {
            username: "user@example.com".into(),
            credential: password("pw \"quoted\""),
            protocol: Protocol::Ftps,
            source_ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
            server_id: "s-1".into(),
        };
        assert_eq!(
            request_event(&request),
            serde_json::json!({"username": "user@example.com", "password": "pw \"quoted\"",
                "protocol": "FTPS", "serverId": "s-1", "sourceIp": "::1"})
        );
        let key = crate::parse_public_key(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
        )
        .unwrap();
        request.credential = Credential::PublicKey(key);
        assert!(request_event(&request).get("password").is_none());
    }

    #[test]
    fn redaction_covers_every_echo() {
        let c = password("s3cr\"et");
        let text = r#"raw s3cr"et json s3cr\"et b64 czNjciJldA== end"#;
        let out = redact(text, &c);
        assert!(!out.contains("s3cr"), "{out}");
        assert!(!out.contains("czNjciJldA"), "{out}");
        assert_eq!(redact("anything", &password("")), "anything");
    }

    #[test]
    fn excerpts_are_short_single_lines_without_the_password() {
        let c = password("hunter2");
        let long = format!("{}hunter2\n\nend", "x ".repeat(500));
        let head = excerpt(long.as_bytes(), &c, false);
        let tail = excerpt(long.as_bytes(), &c, true);
        assert!(head.ends_with("...") && head.chars().count() <= EXCERPT_CHARS + 3);
        assert!(
            tail.starts_with("...") && tail.ends_with("*** end"),
            "{tail}"
        );
        assert!(!head.contains('\n') && !tail.contains("hunter2"));
    }

    #[track_caller]
    fn check(status: u16, body: &str, expected: Result<(), &str>) {
        let answer = interpret("lambda", status, body.as_bytes(), &password("pw-secret"));
        assert_eq!(answer.status_code, status);
        match expected {
            Ok(()) => assert!(answer.response.is_some(), "{answer:?}"),
            Err(part) => {
                assert!(answer.response.is_none(), "{answer:?}");
                assert!(
                    answer.message.contains(part),
                    "{:?} lacks {part:?}",
                    answer.message
                );
                assert!(!answer.message.contains("pw-secret"));
            }
        }
    }

    #[test]
    fn answers_are_interpreted() {
        check(200, r#"{"HomeDirectory": "/default"}"#, Ok(()));
        check(204, r#" {"Role": "x"} "#, Ok(()));
        check(200, "{}", Err("answered {} (denied)"));
        check(200, "null", Err("answered null"));
        check(200, "", Err("answered with nothing"));
        check(200, "  \n", Err("answered with nothing"));
        check(200, "[1]", Err("a JSON array"));
        check(200, "\"ok\"", Err("a JSON string"));
        check(200, "{not json pw-secret", Err("invalid JSON"));
        check(500, "boom pw-secret", Err("answered HTTP 500: boom ***"));
        check(403, "", Err("answered HTTP 403"));
        check(302, r#"{"HomeDirectory": "/default"}"#, Err("HTTP 302"));
    }
}
