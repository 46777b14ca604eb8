//! `[identity_provider]`: the keys every provider has ([`ProviderCommon`])
//! and, chosen by `type`, one provider's own ([`ProviderConfig`]). Adding a
//! provider is its module (a `Deserialize` settings struct that implements
//! [`ProviderSection`]) plus its line in [`ProviderConfig`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use wharf_config::values;
use wharf_config::{Problems, Tagged as _};

use crate::IdentityProvider;
use crate::providers::{
    ApiGatewayConfig, ApiGatewayProvider, CommandConfig, CommandProvider, LambdaConfig,
    LambdaProvider, LdapConfig, LdapProvider, ProviderConfigError, SqlConfig, SqlProvider,
    with_cache,
};
use crate::service_managed::{ServiceManaged, UserStore};

/// Which credentials an SFTP login must present
/// (`sftp_authentication_methods`, as AWS Transfer Family names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SftpAuthenticationMethods {
    Password,
    PublicKey,
    #[default]
    PublicKeyOrPassword,
    PublicKeyAndPassword,
}

/// The keys of `[identity_provider]` that every provider has.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderCommon {
    /// The longest one query may take.
    #[serde(with = "values::duration")]
    pub timeout: Duration,
    /// How long successful answers may be reused (never failures).
    #[serde(with = "values::duration")]
    pub cache_ttl: Duration,
    pub sftp_authentication_methods: SftpAuthenticationMethods,
}

impl Default for ProviderCommon {
    fn default() -> ProviderCommon {
        ProviderCommon {
            timeout: Duration::from_secs(5),
            cache_ttl: Duration::ZERO,
            sftp_authentication_methods: SftpAuthenticationMethods::default(),
        }
    }
}

/// What a provider needs from the rest of the configuration.
#[derive(Debug, Clone, Copy)]
pub struct PlanContext<'a> {
    pub timeout: Duration,
    pub cache_ttl: Duration,
    /// `server.data_dir`: where the default user database lives.
    pub data_dir: &'a Path,
    /// `[cluster] database`: where service-managed users live when
    /// `identity_provider.database` is empty (SPEC section 2).
    pub cluster_database: Option<&'a str>,
}

/// A provider as `serve` will run it.
pub enum ProviderPlan {
    /// Built, without I/O.
    Ready(Arc<dyn IdentityProvider>),
    /// Service-managed users: the database is opened (and created when
    /// missing) by `serve` only ([`ProviderPlan::open`]).
    ServiceManaged { database: String, timeout: Duration },
}

impl ProviderPlan {
    /// The provider, opening the user database of service-managed users
    /// (returned too: `serve` creates the demo user in it).
    pub async fn open(self) -> Result<(Arc<dyn IdentityProvider>, Option<UserStore>), String> {
        match self {
            ProviderPlan::Ready(provider) => Ok((provider, None)),
            ProviderPlan::ServiceManaged { database, timeout } => {
                let users = open_users(&database).await?;
                Ok((
                    Arc::new(ServiceManaged::new(users.clone(), timeout)),
                    Some(users),
                ))
            }
        }
    }
}

/// Opens the user database (creating and migrating it when needed).
pub async fn open_users(database: &str) -> Result<UserStore, String> {
    UserStore::open(database)
        .await
        .map_err(|e| format!("identity_provider.{}", e.0))
}

/// One provider's settings: builds the provider with the constructor
/// `serve` uses, doing no I/O (`check-config` calls it too).
pub trait ProviderSection {
    fn plan(&self, context: &PlanContext<'_>) -> Result<ProviderPlan, ProviderConfigError>;
}

wharf_config::tagged! {
    /// The identity provider, by `type`: one line per provider.
    #[derive(Debug, Clone)]
    pub enum ProviderConfig (tag = "type", dyn ProviderSection) {
        "service_managed" => ServiceManaged(ServiceManagedConfig),
        "lambda" => Lambda(LambdaConfig),
        "api_gateway" => ApiGateway(ApiGatewayConfig),
        "command" => Command(CommandConfig),
        "ldap" => Ldap(LdapConfig),
        "sql" => Sql(SqlConfig),
    }
}

/// The whole `[identity_provider]` section.
#[derive(Debug, Clone)]
pub struct IdentityProviderConfig {
    pub common: ProviderCommon,
    pub provider: ProviderConfig,
}

impl Default for IdentityProviderConfig {
    fn default() -> IdentityProviderConfig {
        IdentityProviderConfig {
            common: ProviderCommon::default(),
            provider: ProviderConfig::ServiceManaged(ServiceManagedConfig::default()),
        }
    }
}

impl IdentityProviderConfig {
    /// Reads `[identity_provider]` (absent: service-managed users).
    pub fn read(
        value: Option<wharf_config::toml::Value>,
        path: &str,
        problems: &mut Problems,
    ) -> Option<IdentityProviderConfig> {
        let Some(value) = value else {
            return Some(IdentityProviderConfig::default());
        };
        let (common, provider) =
            wharf_config::tagged_section(value, path, Some("service_managed"), problems)?;
        Some(IdentityProviderConfig { common, provider })
    }

    /// The `type` value.
    pub fn kind(&self) -> &'static str {
        self.provider.name()
    }

    /// What the types cannot say.
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        if self.common.timeout.is_zero() {
            problems.push(&format!("{path}.timeout"), "must be longer than 0s");
        }
    }

    /// The provider, built without I/O; `Err` names the key.
    pub fn plan(
        &self,
        path: &str,
        data_dir: &Path,
        cluster_database: Option<&str>,
    ) -> Result<ProviderPlan, String> {
        let context = PlanContext {
            timeout: self.common.timeout,
            cache_ttl: self.common.cache_ttl,
            data_dir,
            cluster_database,
        };
        self.provider
            .as_dyn()
            .plan(&context)
            .map_err(|e| format!("{path}: {}", e.0))
    }
}

/// A provider built without I/O, behind the login cache.
pub fn ready(
    provider: impl IdentityProvider,
    context: &PlanContext<'_>,
) -> Result<ProviderPlan, ProviderConfigError> {
    Ok(ProviderPlan::Ready(with_cache(
        Arc::new(provider),
        context.cache_ttl,
    )))
}

/// `type = "service_managed"`.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceManagedConfig {
    /// Empty: SQLite in `data_dir`; or `sqlite://PATH`, a path, or
    /// `postgres://...`.
    #[serde(deserialize_with = "values::database::deserialize")]
    pub database: String,
}

// By hand: the URL may carry the database password.
impl std::fmt::Debug for ServiceManagedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceManagedConfig")
            .field("database", &crate::database::redacted(&self.database))
            .finish()
    }
}

impl ServiceManagedConfig {
    /// Where the users are: the configured database, else the cluster's,
    /// else `users.db` in `data_dir`.
    pub fn database(&self, data_dir: &Path, cluster_database: Option<&str>) -> String {
        match (self.database.as_str(), cluster_database) {
            ("", Some(cluster)) => cluster.to_owned(),
            ("", None) => data_dir.join("users.db").display().to_string(),
            (database, _) => database.to_owned(),
        }
    }
}

impl ProviderSection for ServiceManagedConfig {
    fn plan(&self, context: &PlanContext<'_>) -> Result<ProviderPlan, ProviderConfigError> {
        let database = self.database(context.data_dir, context.cluster_database);
        UserStore::check_database(&database).map_err(|e| ProviderConfigError(e.0))?;
        if let Some(path) = crate::database::sqlite_file(&database) {
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => {
                    return Err(ProviderConfigError(format!(
                        "database: {} is a directory",
                        path.display()
                    )));
                }
                Ok(_) => {}
                Err(_) => wharf_config::creatable(&path)
                    .map_err(|e| ProviderConfigError(format!("database: {e}")))?,
            }
        }
        Ok(ProviderPlan::ServiceManaged {
            database,
            timeout: context.timeout,
        })
    }
}

impl ProviderSection for LambdaConfig {
    fn plan(&self, context: &PlanContext<'_>) -> Result<ProviderPlan, ProviderConfigError> {
        ready(LambdaProvider::new(self.clone(), context.timeout)?, context)
    }
}

impl ProviderSection for ApiGatewayConfig {
    fn plan(&self, context: &PlanContext<'_>) -> Result<ProviderPlan, ProviderConfigError> {
        ready(
            ApiGatewayProvider::new(self.clone(), context.timeout)?,
            context,
        )
    }
}

impl ProviderSection for CommandConfig {
    fn plan(&self, context: &PlanContext<'_>) -> Result<ProviderPlan, ProviderConfigError> {
        ready(
            CommandProvider::new(self.clone(), context.timeout)?,
            context,
        )
    }
}

impl ProviderSection for LdapConfig {
    fn plan(&self, context: &PlanContext<'_>) -> Result<ProviderPlan, ProviderConfigError> {
        ready(LdapProvider::new(self.clone(), context.timeout)?, context)
    }
}

impl ProviderSection for SqlConfig {
    fn plan(&self, context: &PlanContext<'_>) -> Result<ProviderPlan, ProviderConfigError> {
        ready(SqlProvider::new(self.clone(), context.timeout)?, context)
    }
}
