//! From a validated [`Config`] to running parts: stores, policies, the
//! identity provider and the gateway.

use std::collections::BTreeMap;
use std::sync::Arc;

use wharf_audit::AuditLog;
use wharf_identity::service_managed::{ServiceManaged, UserStore};
use wharf_identity::{
    ApiGatewayConfig, ApiGatewayProvider, CommandConfig, CommandProvider, IdentityProvider,
    LambdaConfig, LambdaProvider, with_cache,
};
use wharf_policy::{Policy, PolicyKind};
use wharf_session::{Gateway, GatewayConfig, RolePolicies};
use wharf_storage::Store;
use wharf_storage::filesystem::FilesystemStore;
use wharf_storage::s3::{S3Config, S3Store, Sse};
use wharf_vfs::StoreHandle;

use crate::config::{Config, StorageKind};
use crate::{CommandResult, Failure};

/// Opens every configured store (no network I/O).
pub fn stores(config: &Config) -> Result<BTreeMap<String, Arc<StoreHandle>>, Failure> {
    let mut stores = BTreeMap::new();
    for (name, store) in &config.storage {
        let backend: Arc<dyn Store> = match &store.kind {
            StorageKind::Filesystem { root } => Arc::new(
                FilesystemStore::open(root)
                    .map_err(|e| Failure::User(format!("storage.{name}.root: {}", e.message)))?,
            ),
            StorageKind::S3 {
                bucket,
                endpoint,
                region,
                path_style,
                access_key_id,
                secret_access_key,
                server_side_encryption,
                kms_key_id,
                upload_part_size,
                upload_concurrency,
            } => {
                let mut s3 = S3Config::new(bucket.clone());
                s3.endpoint = endpoint.clone();
                s3.region = region.clone();
                s3.path_style = *path_style;
                s3.access_key_id = access_key_id.clone();
                s3.secret_access_key = secret_access_key.clone();
                s3.server_side_encryption = match server_side_encryption.as_deref() {
                    Some("AES256") => Some(Sse::Aes256),
                    Some("aws:kms") => Some(Sse::Kms {
                        kms_key_id: kms_key_id.clone(),
                    }),
                    _ => None,
                };
                s3.upload_part_size = usize::try_from(*upload_part_size).unwrap_or(usize::MAX);
                s3.upload_concurrency = *upload_concurrency;
                Arc::new(
                    S3Store::new(s3)
                        .map_err(|e| Failure::User(format!("storage.{name}: {}", e.message)))?,
                )
            }
        };
        stores.insert(
            name.clone(),
            Arc::new(StoreHandle {
                name: name.clone(),
                store: backend,
            }),
        );
    }
    Ok(stores)
}

fn read_policy(path: &std::path::Path, key: &str, kind: PolicyKind) -> Result<Arc<Policy>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    Policy::parse(&name, &text, kind)
        .map(Arc::new)
        .map_err(|e| format!("{key}: {}: {e}", path.display()))
}

/// Compiled roles, and bucket policies by store NAME.
pub type Policies = (
    BTreeMap<String, RolePolicies>,
    BTreeMap<String, Arc<Policy>>,
);

/// Reads and compiles every role's policies and every bucket policy.
pub fn policies(config: &Config) -> Result<Policies, Vec<String>> {
    let mut errors = Vec::new();
    let mut roles = BTreeMap::new();
    for (name, role) in &config.roles {
        let mut policies = Vec::new();
        for (i, path) in role.policies.iter().enumerate() {
            match read_policy(
                path,
                &format!("roles.{name}.policies[{i}]"),
                PolicyKind::Identity,
            ) {
                Ok(policy) => policies.push(policy),
                Err(e) => errors.push(e),
            }
        }
        roles.insert(
            name.clone(),
            RolePolicies {
                arn: role.arn.clone(),
                policies,
                tags: role.tags.clone(),
            },
        );
    }
    let mut buckets = BTreeMap::new();
    for (name, store) in &config.storage {
        if let Some(path) = &store.bucket_policy {
            match read_policy(
                path,
                &format!("storage.{name}.bucket_policy"),
                PolicyKind::Resource,
            ) {
                Ok(policy) => {
                    buckets.insert(name.clone(), policy);
                }
                Err(e) => errors.push(e),
            }
        }
    }
    if errors.is_empty() {
        Ok((roles, buckets))
    } else {
        Err(errors)
    }
}

/// Opens the service-managed user database.
pub async fn user_store(config: &Config) -> Result<UserStore, Failure> {
    let path = config.user_database();
    UserStore::open_sqlite(&path)
        .await
        .map_err(|e| Failure::User(e.0))
}

/// The configured identity provider, and the user store when it is
/// service-managed.
pub async fn provider(
    config: &Config,
) -> Result<(Arc<dyn IdentityProvider>, Option<UserStore>), Failure> {
    let identity = &config.identity;
    let url = || identity.url.clone().unwrap_or_default();
    let invalid = |e: wharf_identity::ProviderConfigError| {
        Failure::User(format!("identity_provider: {}", e.0))
    };
    let provider: Arc<dyn IdentityProvider> = match identity.kind.as_str() {
        "service_managed" => {
            let users = user_store(config).await?;
            return Ok((
                Arc::new(ServiceManaged::new(users.clone(), identity.timeout)),
                Some(users),
            ));
        }
        "lambda" => Arc::new(
            LambdaProvider::new(LambdaConfig {
                url: url(),
                timeout: identity.timeout,
            })
            .map_err(invalid)?,
        ),
        "api_gateway" => Arc::new(
            ApiGatewayProvider::new(ApiGatewayConfig {
                url: url(),
                timeout: identity.timeout,
                password_header: identity.password_header.parse().unwrap_or_default(),
            })
            .map_err(invalid)?,
        ),
        "command" => Arc::new(
            CommandProvider::new(CommandConfig {
                argv: identity.command.clone(),
                timeout: identity.timeout,
            })
            .map_err(invalid)?,
        ),
        other => {
            return Err(Failure::User(format!(
                "identity_provider.type: {other:?} is not available in this build yet"
            )));
        }
    };
    Ok((with_cache(provider, identity.cache_ttl), None))
}

/// Everything a server needs to accept logins.
pub async fn gateway(
    config: &Config,
    audit: AuditLog,
) -> Result<(Arc<Gateway>, Option<UserStore>), Failure> {
    let stores = stores(config)?;
    let (roles, bucket_policies) = policies(config).map_err(Failure::Config)?;
    let (provider, users) = provider(config).await?;
    let server_id = server_id(config)?;
    let gateway = Gateway::new(GatewayConfig {
        server_id,
        provider,
        stores,
        roles,
        bucket_policies,
        audit,
        max_sessions_per_user: config.server.max_sessions_per_user,
    });
    Ok((Arc::new(gateway), users))
}

/// `server.server_id`, or one generated once and kept in `data_dir`.
pub fn server_id(config: &Config) -> Result<String, Failure> {
    if let Some(id) = &config.server.server_id {
        return Ok(id.clone());
    }
    let path = config.server.data_dir.join("server-id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim().to_owned();
        if !id.is_empty() {
            return Ok(id);
        }
    }
    let id = format!(
        "s-{:017x}",
        rand::random::<u64>() as u128 & 0xf_ffff_ffff_ffff_ffff
    );
    std::fs::create_dir_all(&config.server.data_dir)
        .and_then(|()| std::fs::write(&path, format!("{id}\n")))
        .map_err(|e| Failure::User(format!("cannot write {}: {e}", path.display())))?;
    Ok(id)
}

/// Builds the S3 stores (which does no I/O) to check their settings.
fn stores_without_side_effects(config: &Config) -> Result<(), String> {
    for (name, store) in &config.storage {
        if let StorageKind::S3 { .. } = &store.kind {
            let mut single = config.clone();
            single.storage.retain(|n, _| n == name);
            stores(&single).map_err(|f| match f {
                Failure::User(m) | Failure::Internal(m) => m,
                Failure::Config(m) => m.join("; "),
                Failure::No => String::new(),
            })?;
        }
    }
    Ok(())
}

/// The deeper checks of `wharf check-config`: files that must exist and
/// parse (policies, host keys, TLS material).
pub async fn check(config: &Config) -> CommandResult {
    let mut problems = Vec::new();
    if let Err(errors) = policies(config) {
        problems.extend(errors);
    }
    if let Err(problem) = stores_without_side_effects(config) {
        problems.push(problem);
    }
    for (i, path) in config.server.host_keys.iter().enumerate() {
        if let Ok(text) = std::fs::read_to_string(path) {
            if russh::keys::decode_secret_key(&text, None).is_err() {
                problems.push(format!(
                    "server.host_keys[{i}]: {} is not a private key",
                    path.display()
                ));
            }
        } else {
            problems.push(format!(
                "server.host_keys[{i}]: cannot read {}",
                path.display()
            ));
        }
    }
    if let Some(ftps) = &config.ftps {
        for (key, path) in [
            ("certificate", &ftps.certificate),
            ("private_key", &ftps.private_key),
        ] {
            if let Some(path) = path
                && !path.exists()
            {
                problems.push(format!(
                    "protocols.ftps.{key}: {} does not exist",
                    path.display()
                ));
            }
        }
    }
    for (name, store) in &config.storage {
        if let StorageKind::S3 { .. } = store.kind {
            problems.push(format!(
                "storage.{name}.kind: the s3 store is not available in this build yet"
            ));
        }
    }
    if !matches!(config.identity.kind.as_str(), "service_managed") {
        problems.push(format!(
            "identity_provider.type: {:?} is not available in this build yet",
            config.identity.kind
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::Config(problems))
    }
}
