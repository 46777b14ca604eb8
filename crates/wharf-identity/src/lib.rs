//! Identity providers: who a user is and what their session looks like.
//!
//! Every provider answers a [`LoginRequest`] the way an AWS Transfer Family
//! custom identity provider does: with the response object (`Role`, `Policy`,
//! `HomeDirectoryType`, `HomeDirectory`, `HomeDirectoryDetails`, `PublicKeys`,
//! `PosixProfile`, plus wharf's `SessionTags`), or with a denial. One shared
//! path, [`authenticate`], then validates that response into an [`Identity`]
//! and checks public keys, so every provider obeys the same rules.
//!
//! Architecture invariant: this crate knows no protocol beyond the name that
//! goes into the request (`SFTP`, `FTPS`, `FTP`), no store and no policy
//! semantics; the caller passes what validation needs in a
//! [`ValidationContext`].

pub mod config;
mod database;
pub mod hashing;
mod keys;
mod password;
pub mod providers;
mod response;
pub mod service_managed;
mod username;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
pub use russh::keys::PublicKey;
use russh::keys::ssh_key::HashAlg;

pub use keys::AuthorizedKey;
pub use password::{
    HashProblem, HashScheme, hash_password, limits as hash_limits, verify_password,
};
pub use providers::{
    ApiGatewayConfig, ApiGatewayProvider, CachingProvider, CommandConfig, CommandProvider,
    LambdaConfig, LambdaProvider, PasswordHeader, ProviderConfigError, request_event, with_cache,
};
pub use providers::{
    AttributeSource as LdapAttributeSource, DEFAULT_USER_FILTER as LDAP_DEFAULT_USER_FILTER,
    LdapConfig, LdapProvider,
};
pub use providers::{SqlConfig, SqlProvider};
pub use response::validate_response;
pub use username::{UsernameError, check_username};

/// The protocol a login arrives on, as AWS names it in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Sftp,
    Ftps,
    Ftp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Sftp => "SFTP",
            Protocol::Ftps => "FTPS",
            Protocol::Ftp => "FTP",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A password. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(password: impl Into<String>) -> Password {
        Password(password.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// What the client proved.
#[derive(Debug, Clone)]
pub enum Credential {
    Password(Password),
    /// A key whose signature the SSH layer has verified.
    PublicKey(PublicKey),
}

/// One login attempt, as the provider is asked about it.
#[derive(Debug, Clone)]
pub struct LoginRequest {
    pub username: String,
    pub credential: Credential,
    pub protocol: Protocol,
    pub source_ip: IpAddr,
    pub server_id: String,
}

/// A provider's raw answer: what `wharf test-idp` prints as `StatusCode`,
/// `Message` and `Response`.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status_code: u16,
    pub message: String,
    /// The response object; `None` means denied (the message says why).
    pub response: Option<serde_json::Value>,
}

impl Answer {
    pub fn denied(status_code: u16, message: impl Into<String>) -> Answer {
        Answer {
            status_code,
            message: message.into(),
            response: None,
        }
    }
}

/// A source of user session descriptions.
#[async_trait]
pub trait IdentityProvider: Send + Sync + 'static {
    /// The `identity_provider.type` this implements.
    fn kind(&self) -> &'static str;

    /// The longest a query may take; past it the login is denied.
    fn timeout(&self) -> Duration;

    /// Asks about one login. Failures of the provider itself are answers
    /// too (denials with a reason), never panics or hangs.
    async fn query(&self, request: &LoginRequest) -> Answer;
}

/// One LOGICAL home directory entry after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalEntry {
    /// Normalised absolute visible path (`/` or `/a/b`).
    pub entry: String,
    pub store: String,
    /// Key prefix in the store, "" for its root.
    pub prefix: String,
    pub is_file: bool,
}

/// Where the user's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Home {
    /// HomeDirectoryType PATH: real paths `/STORE/prefix`, starting here.
    Path { store: String, prefix: String },
    /// HomeDirectoryType LOGICAL: chrooted to the union of the entries.
    Logical(Vec<LogicalEntry>),
}

impl Home {
    /// The `home-dir` log field: `/STORE/prefix`, or `/` for LOGICAL.
    pub fn display(&self) -> String {
        match self {
            Home::Path { store, prefix } if prefix.is_empty() => format!("/{store}"),
            Home::Path { store, prefix } => format!("/{store}/{prefix}"),
            Home::Logical(_) => "/".to_owned(),
        }
    }
}

/// POSIX ownership for filesystem stores.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PosixProfile {
    #[serde(rename = "Uid")]
    pub uid: u32,
    #[serde(rename = "Gid")]
    pub gid: u32,
    #[serde(rename = "SecondaryGids")]
    pub secondary_gids: Vec<u32>,
}

/// A validated user session description.
#[derive(Debug, Clone)]
pub struct Identity {
    pub username: String,
    /// The `[roles]` NAME, or `None` for the built-in default role.
    pub role: Option<String>,
    /// The session (scope-down) policy, as JSON.
    pub policy: Option<serde_json::Value>,
    pub home: Home,
    /// `PublicKeys`, with the authorized_keys options that restrict them.
    pub public_keys: Vec<AuthorizedKey>,
    pub posix_profile: Option<PosixProfile>,
    pub session_tags: BTreeMap<String, String>,
    /// Response fields wharf does not know (logged, ignored).
    pub unknown_fields: Vec<String>,
}

/// A check that a session policy parses, supplied by the caller.
pub type PolicyCheck = Arc<dyn Fn(&serde_json::Value) -> Result<(), String> + Send + Sync>;

/// What response validation needs to know about the configuration.
#[derive(Clone, Default)]
pub struct ValidationContext {
    /// Configured store NAMEs.
    pub stores: BTreeSet<String>,
    /// Configured roles: NAME -> ARN.
    pub roles: BTreeMap<String, String>,
    /// Checks that a session policy parses (the policy engine's parser).
    pub check_policy: Option<PolicyCheck>,
}

impl fmt::Debug for ValidationContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidationContext")
            .field("stores", &self.stores)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// A denied login: the client learns only "denied"; `reason` goes to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: String,
}

impl Denial {
    pub fn new(reason: impl Into<String>) -> Denial {
        Denial {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// `SHA256:...`, as OpenSSH and AWS print key fingerprints.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Whether two keys are the same key (comments aside).
pub fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

/// Parses one OpenSSH public key line (`ssh-ed25519 AAAA... comment`), as
/// a `.pub` file holds it: options are refused here (see [`AuthorizedKey`]
/// where they are allowed).
pub fn parse_public_key(line: &str) -> Result<PublicKey, String> {
    let key = AuthorizedKey::parse(line)?;
    if !key.options().is_empty() {
        return Err("authorized_keys options are not allowed here".to_owned());
    }
    Ok(key.key)
}

/// The full login: username rules, the provider's answer, response
/// validation and, for key logins, the key check. Returns the answer too,
/// for `wharf test-idp`.
pub async fn authenticate(
    provider: &dyn IdentityProvider,
    request: &LoginRequest,
    context: &ValidationContext,
) -> (Option<Answer>, Result<Identity, Denial>) {
    if let Err(error) = check_username(&request.username) {
        return (None, Err(Denial::new(error.to_string())));
    }
    let answer = match tokio::time::timeout(provider.timeout(), provider.query(request)).await {
        Ok(answer) => answer,
        Err(_) => Answer::denied(
            504,
            format!(
                "the {} identity provider did not answer within {:?}",
                provider.kind(),
                provider.timeout()
            ),
        ),
    };
    let result = identity_from(&answer, request, context);
    (Some(answer), result)
}

/// Asks the provider about a user the way a key login does (no password),
/// and validates the response without checking any key: what a user's
/// session would look like, for `wharf policy simulate`. Providers never
/// see the client's key (the AWS contract does not send it), so a stand-in
/// key is used.
pub async fn lookup(
    provider: &dyn IdentityProvider,
    username: &str,
    protocol: Protocol,
    source_ip: IpAddr,
    server_id: &str,
    context: &ValidationContext,
) -> (Option<Answer>, Result<Identity, Denial>) {
    const STAND_IN: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    let key = match PublicKey::from_openssh(STAND_IN) {
        Ok(key) => key,
        Err(e) => return (None, Err(Denial::new(format!("internal: {e}")))),
    };
    if let Err(error) = check_username(username) {
        return (None, Err(Denial::new(error.to_string())));
    }
    let request = LoginRequest {
        username: username.to_owned(),
        credential: Credential::PublicKey(key),
        protocol,
        source_ip,
        server_id: server_id.to_owned(),
    };
    let answer = match tokio::time::timeout(provider.timeout(), provider.query(&request)).await {
        Ok(answer) => answer,
        Err(_) => Answer::denied(504, "the identity provider did not answer in time"),
    };
    let result = match &answer.response {
        None => Err(Denial::new(answer.message.clone())),
        Some(response) => validate_response(response, username, context).map_err(Denial::new),
    };
    (Some(answer), result)
}

fn identity_from(
    answer: &Answer,
    request: &LoginRequest,
    context: &ValidationContext,
) -> Result<Identity, Denial> {
    let Some(response) = &answer.response else {
        return Err(Denial::new(answer.message.clone()));
    };
    let identity = validate_response(response, &request.username, context).map_err(Denial::new)?;
    if let Credential::PublicKey(key) = &request.credential {
        if identity.public_keys.is_empty() {
            return Err(Denial::new(
                "the response has no PublicKeys, so key authentication is not possible",
            ));
        }
        let mut entries = identity
            .public_keys
            .iter()
            .filter(|k| same_key(&k.key, key))
            .peekable();
        if entries.peek().is_none() {
            return Err(Denial::new(format!(
                "the client's key {} is not one of the user's PublicKeys",
                fingerprint(key)
            )));
        }
        // The same key may be listed more than once, with other options:
        // any entry that permits this login lets it in.
        let now = time::OffsetDateTime::now_utc();
        let mut refusal = None;
        for entry in entries {
            match entry.permits(request.source_ip, now) {
                Ok(()) => return Ok(identity),
                Err(reason) => refusal = refusal.or(Some(reason)),
            }
        }
        return Err(Denial::new(format!(
            "the client's key {} is refused by its options: {}",
            fingerprint(key),
            refusal.unwrap_or_default()
        )));
    }
    Ok(identity)
}
