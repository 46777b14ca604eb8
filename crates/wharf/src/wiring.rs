//! From a validated [`Config`] to running parts, in two steps that
//! `check-config` and `serve` share, so that what `check-config` accepts,
//! `serve` runs (SPEC section 1):
//!
//! 1. [`ServePlan::build`] constructs everything `serve` needs with the same
//!    constructors `serve` uses (the stores, the identity provider, the
//!    policies, the FTPS TLS material, the host keys, the front-ends'
//!    settings), reading files but writing nothing, and collects every
//!    problem with its key path. `check-config` stops here.
//! 2. [`GatewayPlan::realize`] and the `realize` steps of `serve.rs` do what
//!    only `serve` may: create store roots, open (and create) the user
//!    database, write what was generated (host keys, the self-signed FTPS
//!    certificate, the server id).
//!
//! `test-idp` and `policy simulate` build the gateway part only.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{Algorithm, PrivateKey};
use wharf_audit::AuditLog;
use wharf_config::creatable;
use wharf_ftp::config::FtpsSection;
use wharf_ftp::{FtpConfig, FtpSettings, TlsConfig, load_pem, self_signed_certificate};
use wharf_identity::config::ProviderPlan;
use wharf_identity::service_managed::UserStore;
use wharf_policy::{Policy, PolicyKind};
use wharf_session::{Gateway, GatewayConfig, RolePolicies};
use wharf_sftp::{AuthMethods, SecurityPolicy, SftpConfig};
use wharf_storage::config::StorePlan;
use wharf_vfs::StoreHandle;

use crate::config::Config;
use crate::{Failure, hostkeys};

/// Something generated in memory that `serve` writes before it uses it.
struct Pending {
    path: PathBuf,
    contents: String,
    /// Owner-only (a private key).
    private: bool,
}

impl Pending {
    /// Whether `serve` will be able to write it (see [`generated_in_data_dir`]).
    fn check(&self) -> Result<(), String> {
        generated_in_data_dir(&self.path)
    }

    fn write(&self) -> Result<(), Failure> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Failure::User(format!("cannot create {}: {e}", parent.display())))?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(if self.private { 0o600 } else { 0o644 })
            .open(&self.path)
            .and_then(|mut file| file.write_all(self.contents.as_bytes()))
            .map_err(|e| Failure::User(format!("cannot write {}: {e}", self.path.display())))
    }
}

/// What the gateway is built from: everything a login needs.
pub struct GatewayPlan {
    stores: Vec<(String, StorePlan)>,
    roles: BTreeMap<String, RolePolicies>,
    bucket_policies: BTreeMap<String, Arc<Policy>>,
    provider: ProviderPlan,
    server_id: String,
    /// The generated server id, to keep in `data_dir`.
    server_id_file: Option<Pending>,
    limits: wharf_session::Limits,
    guard: Arc<wharf_listen::Guard>,
}

/// SFTP as `serve` will run it.
pub struct SftpPlan {
    pub listen: SocketAddr,
    /// Host keys to use (configured, or generated earlier), and the ones
    /// still to generate (with where they go).
    keys: Vec<PrivateKey>,
    generate: Vec<(PathBuf, &'static str)>,
    banner: String,
    idle_timeout: Duration,
    auth_methods: AuthMethods,
    security_policy: SecurityPolicy,
}

/// FTPS or FTP as `serve` will run it.
pub struct FtpPlan {
    pub listen: SocketAddr,
    pub settings: FtpSettings,
    /// A self-signed certificate and key generated for FTPS, to keep.
    certificate_files: Vec<Pending>,
}

/// Everything `serve` runs.
pub struct ServePlan {
    pub gateway: GatewayPlan,
    pub sftp: Option<SftpPlan>,
    pub ftps: Option<FtpPlan>,
    pub ftp: Option<FtpPlan>,
    /// `[server] proxy_protocol`: every listener's (and FTP data
    /// connection's) PROXY header rule.
    pub proxy: Option<Arc<wharf_listen::ProxyProtocol>>,
}

/// A directory that exists, or that can be created.
fn directory_or_creatable(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(format!("{} is not a directory", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => creatable(path),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Whether `serve` will be able to write a file it generates in
/// `server.data_dir`: its directory exists or can be created.
fn generated_in_data_dir(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            directory_or_creatable(dir).map_err(|e| format!("server.data_dir: {e}"))
        }
        _ => Ok(()),
    }
}

fn read_policy(path: &Path, key: &str, kind: PolicyKind) -> Result<Arc<Policy>, String> {
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
type Policies = (
    BTreeMap<String, RolePolicies>,
    BTreeMap<String, Arc<Policy>>,
);

/// Reads and compiles every role's policies and every bucket policy.
fn policies(config: &Config, problems: &mut Vec<String>) -> Policies {
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
                Err(e) => problems.push(e),
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
        if let Some(path) = &store.common.bucket_policy {
            match read_policy(
                path,
                &format!("storage.{name}.bucket_policy"),
                PolicyKind::Resource,
            ) {
                Ok(policy) => {
                    buckets.insert(name.clone(), policy);
                }
                Err(e) => problems.push(e),
            }
        }
    }
    (roles, buckets)
}

/// Opens the service-managed user database (created when missing).
pub async fn user_store(config: &Config) -> Result<UserStore, Failure> {
    wharf_identity::config::open_users(&config.user_database())
        .await
        .map_err(Failure::User)
}

/// `server.server_id`, or the one kept in `data_dir`, or a new one (kept by
/// `serve`).
fn server_id(config: &Config) -> (String, Option<Pending>) {
    if let Some(id) = &config.server.server_id {
        return (id.clone(), None);
    }
    let path = config.server.data_dir.join("server-id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim().to_owned();
        if !id.is_empty() {
            return (id, None);
        }
    }
    let id = format!(
        "s-{:017x}",
        rand::random::<u64>() as u128 & 0xf_ffff_ffff_ffff_ffff
    );
    let contents = format!("{id}\n");
    (
        id,
        Some(Pending {
            path,
            contents,
            private: false,
        }),
    )
}

impl GatewayPlan {
    /// Everything a login needs, built without side effects; every problem
    /// is added to `problems` (then the plan is `None`).
    fn build(config: &Config, problems: &mut Vec<String>) -> Option<GatewayPlan> {
        let before = problems.len();
        let mut stores = Vec::new();
        for (name, store_config) in &config.storage {
            match store_config.plan(name, &format!("storage.{name}")) {
                Ok(plan) => stores.push((name.clone(), plan)),
                Err(e) => problems.push(e),
            }
        }
        let (roles, bucket_policies) = policies(config, problems);
        let provider = config
            .identity
            .plan(
                "identity_provider",
                &config.server.data_dir,
                config.cluster_database(),
            )
            .map_err(|e| problems.push(e))
            .ok();
        let (server_id, server_id_file) = server_id(config);
        if let Some(Err(e)) = server_id_file.as_ref().map(Pending::check) {
            problems.push(e);
        }
        let provider = provider?;
        (problems.len() == before).then_some(GatewayPlan {
            stores,
            roles,
            bucket_policies,
            provider,
            server_id,
            server_id_file,
            limits: wharf_session::Limits {
                max_sessions_per_user: config.server.max_sessions_per_user,
                max_memory_per_user: config.server.max_memory_per_user,
                max_memory: config.server.max_memory,
                max_handles_per_user: config.server.max_handles_per_user,
                max_handles: crate::limits::max_handles(),
            },
            guard: Arc::new(wharf_listen::Guard::new(wharf_listen::GuardConfig {
                ban_after_failures: config.server.ban_after_failures,
                ban_window: config.server.ban_window,
                ban_time: config.server.ban_time,
                ban_exempt: config.server.ban_exempt.clone(),
                login_grace_time: config.server.login_grace_time,
            })),
        })
    }

    /// Only the gateway (`test-idp`, `policy simulate`).
    pub fn for_logins(config: &Config) -> Result<GatewayPlan, Failure> {
        let mut problems = Vec::new();
        match GatewayPlan::build(config, &mut problems) {
            Some(plan) if problems.is_empty() => Ok(plan),
            _ => Err(Failure::Config(problems)),
        }
    }

    /// The side effects (store roots, the user database, the server id
    /// file), then the gateway; with the user store when service-managed.
    pub async fn realize(
        self,
        audit: AuditLog,
        shared_sessions: Option<Arc<dyn wharf_session::SharedSessions>>,
    ) -> Result<(Arc<Gateway>, Option<UserStore>), Failure> {
        let mut stores = BTreeMap::new();
        for (name, plan) in self.stores {
            let store = plan
                .open()
                .map_err(|e| Failure::User(format!("storage.{name}.{e}")))?;
            stores.insert(
                name.clone(),
                Arc::new(StoreHandle {
                    name: name.clone(),
                    store,
                }),
            );
        }
        let (provider, users) = self.provider.open().await.map_err(Failure::User)?;
        if let Some(file) = &self.server_id_file {
            file.write()?;
        }
        let gateway = Gateway::new(GatewayConfig {
            server_id: self.server_id,
            provider,
            stores,
            roles: self.roles,
            bucket_policies: self.bucket_policies,
            audit,
            limits: self.limits,
            guard: self.guard,
        });
        let gateway = match shared_sessions {
            Some(shared) => gateway.with_shared_sessions(shared),
            None => gateway,
        };
        Ok((Arc::new(gateway), users))
    }
}

/// The host keys of SFTP: loaded, or to be generated; checked against the
/// security policy as `SftpServer::new` checks them.
fn sftp_plan(config: &Config, listen: SocketAddr) -> Result<SftpPlan, Vec<String>> {
    let security_policy = config.server.security_policy;
    let (keys, generate) = hostkeys::plan(&config.server)?;
    for (path, _) in &generate {
        generated_in_data_dir(path).map_err(|e| vec![e])?;
    }
    let algorithms: Vec<Algorithm> = keys
        .iter()
        .map(PrivateKey::algorithm)
        .chain(generate.iter().map(|(_, kind)| hostkeys::algorithm(kind)))
        .collect();
    security_policy
        .check_host_keys(&algorithms)
        .map_err(|e| vec![format!("server.host_keys: {e}")])?;
    Ok(SftpPlan {
        listen,
        keys,
        generate,
        banner: config.server.banner.clone(),
        idle_timeout: config.server.idle_timeout,
        auth_methods: config.identity.common.sftp_authentication_methods,
        security_policy,
    })
}

impl SftpPlan {
    /// Generates and writes the missing host keys; the front-end's
    /// configuration.
    pub fn realize(self) -> Result<SftpConfig, Failure> {
        let mut host_keys = self.keys;
        for (path, kind) in &self.generate {
            host_keys.push(hostkeys::generate_into(path, kind)?);
        }
        Ok(SftpConfig {
            host_keys,
            banner: Some(self.banner),
            idle_timeout: self.idle_timeout,
            auth_methods: self.auth_methods,
            security_policy: self.security_policy,
        })
    }
}

/// The FTPS certificate: configured, or self-signed once in `data_dir`
/// (generated here in memory, written by `serve`).
fn ftps_tls(config: &Config, ftps: &FtpsSection) -> Result<(TlsConfig, Vec<Pending>), String> {
    let (mut tls, pending) = match (&ftps.certificate, &ftps.private_key) {
        (Some(cert), Some(key)) => (
            load_pem(cert, key).map_err(|e| format!("protocols.ftps.certificate: {e}"))?,
            Vec::new(),
        ),
        _ => {
            let dir = config.server.data_dir.join("ftps");
            let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            if cert.exists() && key.exists() {
                (
                    load_pem(&cert, &key)
                        .map_err(|e| format!("protocols.ftps.certificate: {e}"))?,
                    Vec::new(),
                )
            } else {
                let (cert_pem, key_pem) = self_signed_certificate(&[
                    "localhost".to_owned(),
                    ftps.listen.ip().to_string(),
                ])
                .map_err(|e| format!("protocols.ftps.certificate: {e}"))?;
                let tls = TlsConfig::from_pem(&cert_pem, &key_pem)
                    .map_err(|e| format!("protocols.ftps.certificate: {e}"))?;
                let files = vec![
                    Pending {
                        path: cert,
                        contents: cert_pem,
                        private: false,
                    },
                    Pending {
                        path: key,
                        contents: key_pem,
                        private: true,
                    },
                ];
                for file in &files {
                    file.check()?;
                }
                (tls, files)
            }
        }
    };
    tls.session_resumption = ftps.tls_session_resumption;
    Ok((tls, pending))
}

impl FtpPlan {
    /// Writes the generated certificate, if any.
    pub fn realize(&self) -> Result<(), Failure> {
        for file in &self.certificate_files {
            file.write()?;
        }
        if let Some(cert) = self.certificate_files.first() {
            eprintln!(
                "wharf: generated a self-signed FTPS certificate {}",
                cert.path.display()
            );
        }
        Ok(())
    }
}

impl ServePlan {
    /// Everything `serve` runs, built without side effects. `Err` holds
    /// every problem, each named by its key path: `check-config` prints
    /// them, `serve` refuses to start with them.
    pub fn build(config: &Config) -> Result<ServePlan, Vec<String>> {
        let mut problems = Vec::new();
        if config.sftp.is_none() && config.ftps.is_none() && config.ftp.is_none() {
            problems.push(
                "protocols: no protocol is enabled: add a [protocols.sftp] (or ftps, ftp) section"
                    .to_owned(),
            );
        }
        let gateway = GatewayPlan::build(config, &mut problems);
        let sftp = config.sftp.as_ref().and_then(|sftp| {
            sftp_plan(config, sftp.listen)
                .map_err(|e| problems.extend(e))
                .ok()
        });
        let banner = Some(config.server.banner.clone()).filter(|b| !b.is_empty());
        let ftps = config.ftps.as_ref().and_then(|ftps| {
            let (tls, certificate_files) =
                ftps_tls(config, ftps).map_err(|e| problems.push(e)).ok()?;
            let settings = FtpSettings::new(FtpConfig {
                tls: Some(tls),
                passive_ports: ftps.passive_ports.clone(),
                passive_address: ftps.passive_address.clone(),
                idle_timeout: config.server.idle_timeout,
                banner: banner.clone(),
            })
            .map_err(|e| problems.push(format!("protocols.ftps: {e}")))
            .ok()?;
            Some(FtpPlan {
                listen: ftps.listen,
                settings,
                certificate_files,
            })
        });
        let ftp = config.ftp.as_ref().and_then(|ftp| {
            let settings = FtpSettings::new(FtpConfig {
                tls: None,
                passive_ports: ftp.passive_ports.clone(),
                passive_address: None,
                idle_timeout: config.server.idle_timeout,
                banner: banner.clone(),
            })
            .map_err(|e| problems.push(format!("protocols.ftp: {e}")))
            .ok()?;
            Some(FtpPlan {
                listen: ftp.listen,
                settings,
                certificate_files: Vec::new(),
            })
        });
        match gateway {
            Some(gateway) if problems.is_empty() => Ok(ServePlan {
                gateway,
                sftp,
                ftps,
                ftp,
                proxy: config.server.proxy().map(Arc::new),
            }),
            _ => Err(problems),
        }
    }
}
