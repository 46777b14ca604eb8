//! `LdapConfig` and its validation into an [`LdapProvider`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use super::conn::{self, Endpoint, Pool, PoolIdentity};
use super::escape;
use super::groups::AllowedGroups;
use super::mapping::{self, AttributeSource};
use super::{LdapProvider, Locate};
use crate::providers::{ProviderConfigError, check_timeout};

/// The default `user_filter`.
pub const DEFAULT_USER_FILTER: &str = "(&(objectClass=posixAccount)(uid={username}))";

/// The placeholder in `user_filter` and `bind_dn_template`.
pub(super) const USERNAME: &str = "{username}";

fn default_user_filter() -> String {
    DEFAULT_USER_FILTER.to_owned()
}

/// `[identity_provider]` with `type = "ldap"`: the ldap keys of SPEC
/// section 2, plus `ca_file`. The common keys (`type`, `timeout`,
/// `cache_ttl`) are the loader's; the timeout is passed to
/// [`LdapProvider::new`].
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://host[:port]` or `ldaps://host[:port]`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    #[serde(default)]
    pub start_tls: bool,
    /// The account that searches for users, reads entries for key logins
    /// and checks `allowed_groups`; empty = anonymously. With
    /// `bind_dn_template` it is optional: a password login then reads the
    /// entry as the user (and checks the groups as the user when there is
    /// no service account), a key login reads it as this account (or
    /// anonymously).
    #[serde(default)]
    pub service_bind_dn: String,
    #[serde(default)]
    pub service_bind_password: String,
    /// Bind directly, e.g. `uid={username},ou=people,dc=example,dc=com`,
    /// instead of searching.
    #[serde(default)]
    pub bind_dn_template: String,
    /// Where the user search looks (subtree).
    #[serde(default)]
    pub search_base: String,
    /// `{username}` is replaced by the RFC 4515-escaped username.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// Group DNs; when not empty the user must be a member of one.
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// Response field -> directory attribute.
    #[serde(default)]
    pub attributes: BTreeMap<String, AttributeSource>,
    /// PEM file of CA certificates trusted in addition to the system's
    /// (wharf addition to SPEC).
    #[serde(
        default,
        deserialize_with = "wharf_config::values::optional_path::deserialize"
    )]
    pub ca_file: Option<PathBuf>,
}

impl Default for LdapConfig {
    fn default() -> LdapConfig {
        LdapConfig {
            url: String::new(),
            start_tls: false,
            service_bind_dn: String::new(),
            service_bind_password: String::new(),
            bind_dn_template: String::new(),
            search_base: String::new(),
            user_filter: default_user_filter(),
            allowed_groups: Vec::new(),
            attributes: BTreeMap::new(),
            ca_file: None,
        }
    }
}

// By hand: never the service account's password.
impl fmt::Debug for LdapConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = if self.service_bind_password.is_empty() {
            ""
        } else {
            "***"
        };
        f.debug_struct("LdapConfig")
            .field("url", &self.url)
            .field("start_tls", &self.start_tls)
            .field("service_bind_dn", &self.service_bind_dn)
            .field("service_bind_password", &password)
            .field("bind_dn_template", &self.bind_dn_template)
            .field("search_base", &self.search_base)
            .field("user_filter", &self.user_filter)
            .field("allowed_groups", &self.allowed_groups)
            .field("attributes", &self.attributes)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

fn invalid(message: String) -> ProviderConfigError {
    ProviderConfigError(message)
}

/// `ldap://host:port` from a checked `url`.
fn endpoint_url(config: &LdapConfig) -> Result<(String, bool), ProviderConfigError> {
    let raw = config.url.trim();
    if raw.is_empty() {
        return Err(invalid(
            "url: required: ldap://HOST[:PORT] or ldaps://HOST[:PORT]".to_owned(),
        ));
    }
    let url = url::Url::parse(raw).map_err(|e| invalid(format!("url: {raw:?}: {e}")))?;
    let tls = match url.scheme() {
        "ldap" => false,
        "ldaps" => true,
        other => {
            return Err(invalid(format!(
                "url: scheme {other:?} is not ldap:// or ldaps://"
            )));
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "url: must not hold credentials (use service_bind_dn and service_bind_password)"
                .to_owned(),
        ));
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err(invalid(format!("url: {raw:?} names no host")));
    };
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(format!(
            "url: {raw:?}: only ldap[s]://HOST[:PORT]; the base DN is search_base"
        )));
    }
    let port = url.port().unwrap_or(if tls { 636 } else { 389 });
    Ok((format!("{}://{host}:{port}", url.scheme()), tls))
}

fn check_dn(key: &str, dn: &str) -> Result<String, ProviderConfigError> {
    match escape::normalize_dn(dn) {
        Some(normalized) if !normalized.is_empty() => Ok(normalized),
        _ => Err(invalid(format!(
            "{key}: {dn:?} is not a DN (cn=...,dc=...)"
        ))),
    }
}

impl LdapProvider {
    /// Checks the configuration and sets the provider up. No network I/O
    /// (`wharf check-config` calls it); it reads `ca_file` and the
    /// system's trusted certificates when TLS is used. Errors start with
    /// the key they are about (`url: ...`); the caller adds the
    /// `identity_provider.` prefix.
    pub fn new(config: LdapConfig, timeout: Duration) -> Result<LdapProvider, ProviderConfigError> {
        check_timeout(timeout)?;
        let (url, ldaps) = endpoint_url(&config)?;
        if ldaps && config.start_tls {
            return Err(invalid(
                "start_tls: not with an ldaps:// url, which is TLS from the start".to_owned(),
            ));
        }
        let ca_file = config
            .ca_file
            .as_ref()
            .filter(|path| !path.as_os_str().is_empty());
        let tls = if ldaps || config.start_tls {
            Some(conn::tls_config(ca_file.map(PathBuf::as_path))?)
        } else {
            if ca_file.is_some() {
                return Err(invalid(
                    "ca_file: only used with an ldaps:// url or start_tls = true".to_owned(),
                ));
            }
            None
        };

        let identity = match (
            config.service_bind_dn.trim().is_empty(),
            config.service_bind_password.is_empty(),
        ) {
            (true, true) => PoolIdentity::Anonymous,
            (true, false) => {
                return Err(invalid(
                    "service_bind_password: set, but service_bind_dn is empty".to_owned(),
                ));
            }
            (false, true) => {
                return Err(invalid(
                    "service_bind_password: empty while service_bind_dn is set (an empty \
                     password is an anonymous bind on most servers)"
                        .to_owned(),
                ));
            }
            (false, false) => {
                check_dn("service_bind_dn", &config.service_bind_dn)?;
                PoolIdentity::Service {
                    dn: config.service_bind_dn.trim().to_owned(),
                    password: config.service_bind_password.clone(),
                }
            }
        };
        let has_service_account = matches!(identity, PoolIdentity::Service { .. });

        let template = config.bind_dn_template.trim();
        let search_base = config.search_base.trim();
        let locate = match (template.is_empty(), search_base.is_empty()) {
            (true, true) => {
                return Err(invalid(
                    "search_base: set search_base (search for the user, then bind as the \
                     entry found) or bind_dn_template (bind directly)"
                        .to_owned(),
                ));
            }
            (false, false) => {
                return Err(invalid(
                    "bind_dn_template: set either bind_dn_template or search_base, not both"
                        .to_owned(),
                ));
            }
            (false, true) => {
                if !template.contains(USERNAME) {
                    return Err(invalid(format!(
                        "bind_dn_template: {template:?} must contain {USERNAME}"
                    )));
                }
                check_dn(
                    "bind_dn_template",
                    &template.replace(USERNAME, "wharf-check"),
                )?;
                if config.user_filter != DEFAULT_USER_FILTER {
                    return Err(invalid(
                        "user_filter: only used with search_base, not with bind_dn_template"
                            .to_owned(),
                    ));
                }
                Locate::Template(template.to_owned())
            }
            (true, false) => {
                check_dn("search_base", search_base)?;
                let filter = config.user_filter.trim();
                if !filter.contains(USERNAME) {
                    return Err(invalid(format!(
                        "user_filter: {filter:?} must contain {USERNAME}"
                    )));
                }
                if !filter.starts_with('(')
                    || ldap3::parse_filter(filter.replace(USERNAME, "wharf-check")).is_err()
                {
                    return Err(invalid(format!(
                        "user_filter: {filter:?} is not an LDAP filter (RFC 4515), e.g. \
                         {DEFAULT_USER_FILTER}"
                    )));
                }
                Locate::Search {
                    base: search_base.to_owned(),
                    filter: filter.to_owned(),
                }
            }
        };

        let mut normalized = BTreeSet::new();
        for (i, group) in config.allowed_groups.iter().enumerate() {
            normalized.insert(check_dn(&format!("allowed_groups[{i}]"), group)?);
        }
        let allowed = AllowedGroups {
            shown: config
                .allowed_groups
                .iter()
                .map(|g| g.trim().to_owned())
                .collect(),
            normalized,
        };

        let mapping = mapping::Mapping::new(&config.attributes)?;
        let mut requested = mapping.requested();
        if !allowed.is_empty() {
            requested.push("memberOf".to_owned());
        }
        let pool = Pool::new(
            Endpoint {
                url,
                start_tls: config.start_tls,
                tls,
            },
            identity,
        );
        Ok(LdapProvider {
            locate,
            has_service_account,
            mapping,
            requested,
            allowed,
            pool,
            timeout,
            server_info: Mutex::new(None),
        })
    }
}
