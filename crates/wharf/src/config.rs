//! `wharf.toml`: loading, environment overrides, and validation that
//! reports every problem by its dotted key path.
//!
//! The file is read into a TOML tree and `WHARF__SECTION__KEY` variables
//! are applied to it ([`wharf_config::Document`]); then each section is
//! read into the type of the crate that uses it (`[storage.NAME]`:
//! `wharf_storage::config`, `[identity_provider]`: `wharf_identity::config`,
//! `[protocols.*]`: the front-ends' `config` modules; `[server]`, `[roles]`
//! and `[cluster]` here), every problem collected with its key path; and a
//! semantic pass ([`Config::validate`]) checks what the types cannot say.
//! Unknown keys are errors. Relative paths are relative to the config
//! file's directory. What the parts are built from the result is
//! `wiring.rs`, shared by `check-config` and `serve`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use wharf_config::values;
use wharf_config::{Document, Problems, section};
use wharf_ftp::config::{FtpSection, FtpsSection};
use wharf_identity::config::{IdentityProviderConfig, ProviderConfig};
use wharf_sftp::SecurityPolicy;
use wharf_sftp::config::SftpSection;
use wharf_storage::config::StoreConfig;

/// The embedded default of SPEC section 7.
pub const EMBEDDED_DEFAULT: &str = r#"
[server]
data_dir = "wharf-data"

[protocols.sftp]
listen = "127.0.0.1:2222"

[protocols.ftps]
listen = "127.0.0.1:2121"

[storage.default]
kind = "filesystem"
root = "wharf-data/storage/default"

[identity_provider]
type = "service_managed"
"#;

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Sent to identity providers as `serverId`; `None`: one generated once
    /// and kept in `data_dir`.
    #[serde(deserialize_with = "values::optional_string::deserialize")]
    pub server_id: Option<String>,
    #[serde(deserialize_with = "values::path::deserialize")]
    pub data_dir: PathBuf,
    #[serde(deserialize_with = "values::paths::deserialize")]
    pub host_keys: Vec<PathBuf>,
    pub banner: String,
    #[serde(deserialize_with = "wharf_sftp::config::security_policy")]
    pub security_policy: SecurityPolicy,
    pub max_sessions_per_user: usize,
    #[serde(with = "values::size")]
    pub max_memory_per_user: u64,
    #[serde(with = "values::size")]
    pub max_memory: u64,
    pub max_handles_per_user: u32,
    #[serde(with = "values::duration")]
    pub idle_timeout: Duration,
    #[serde(with = "values::duration")]
    pub login_grace_time: Duration,
    pub proxy_protocol: bool,
    #[serde(with = "values::cidrs")]
    pub proxy_trusted: Vec<ipnet::IpNet>,
    pub ban_after_failures: u32,
    #[serde(with = "values::duration")]
    pub ban_window: Duration,
    #[serde(with = "values::duration")]
    pub ban_time: Duration,
    #[serde(with = "values::cidrs")]
    pub ban_exempt: Vec<ipnet::IpNet>,
    #[serde(with = "values::duration")]
    pub shutdown_grace: Duration,
    #[serde(with = "values::optional_address")]
    pub admin_listen: Option<SocketAddr>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        ServerConfig {
            server_id: None,
            data_dir: PathBuf::from("wharf-data"),
            host_keys: Vec::new(),
            banner: String::new(),
            security_policy: SecurityPolicy::Wharf2025_11,
            max_sessions_per_user: 0,
            max_memory_per_user: 128 << 20,
            max_memory: 1 << 30,
            max_handles_per_user: 1024,
            idle_timeout: minutes(15),
            login_grace_time: Duration::from_secs(60),
            proxy_protocol: false,
            proxy_trusted: Vec::new(),
            ban_after_failures: 20,
            ban_window: minutes(5),
            ban_time: minutes(15),
            ban_exempt: Vec::new(),
            shutdown_grace: Duration::from_secs(30),
            admin_listen: None,
        }
    }
}

/// `[protocols]`: a protocol runs if and only if its section is present.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Protocols {
    pub sftp: Option<SftpSection>,
    pub ftps: Option<FtpsSection>,
    pub ftp: Option<FtpSection>,
}

/// `[roles.NAME]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoleConfig {
    /// Empty: `arn:aws:iam::000000000000:role/NAME`.
    pub arn: String,
    #[serde(deserialize_with = "values::paths::deserialize")]
    pub policies: Vec<PathBuf>,
    pub tags: BTreeMap<String, String>,
}

/// `[cluster]`: several nodes as one service (SPEC section 8).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    #[serde(deserialize_with = "values::database::deserialize")]
    pub database: String,
    #[serde(deserialize_with = "values::optional_string::deserialize")]
    pub node_id: Option<String>,
}

/// A loaded and validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, `None` for the embedded default.
    pub file: Option<PathBuf>,
    pub server: ServerConfig,
    pub sftp: Option<SftpSection>,
    pub ftps: Option<FtpsSection>,
    pub ftp: Option<FtpSection>,
    pub storage: BTreeMap<String, StoreConfig>,
    pub roles: BTreeMap<String, RoleConfig>,
    pub identity: IdentityProviderConfig,
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    pub fn is_embedded(&self) -> bool {
        self.file.is_none()
    }

    /// Where `wharf user` finds service-managed users: the configured
    /// database, else `users.db` in `data_dir`.
    pub fn user_database(&self) -> String {
        match &self.identity.provider {
            ProviderConfig::ServiceManaged(users) => {
                users.database(&self.server.data_dir, self.cluster_database())
            }
            _ => self.server.data_dir.join("users.db").display().to_string(),
        }
    }

    /// What a node of a cluster generates for itself although every node
    /// must share it (SPEC 8: host keys and certificate by path, the same
    /// `server_id`): one warning each, for `check-config` and `serve`.
    /// Not errors: one node with a cluster database is a valid setup.
    pub fn cluster_warnings(&self) -> Vec<String> {
        if self.cluster_database().is_none() {
            return Vec::new();
        }
        let mut warnings = Vec::new();
        if self.server.server_id.is_none() {
            warnings.push(
                "[cluster]: server.server_id is not set, so each node generates its own and identity providers see a different serverId per node".to_owned(),
            );
        }
        if self.sftp.is_some() && self.server.host_keys.is_empty() {
            warnings.push(
                "[cluster]: server.host_keys is not set, so each node generates its own SSH host keys and clients see the host key change with the node they land on".to_owned(),
            );
        }
        if self
            .ftps
            .as_ref()
            .is_some_and(|ftps| ftps.certificate.is_none())
        {
            warnings.push(
                "[cluster]: protocols.ftps.certificate is not set, so each node generates its own self-signed certificate".to_owned(),
            );
        }
        warnings
    }

    /// `[cluster] database`, when set.
    pub fn cluster_database(&self) -> Option<&str> {
        self.cluster
            .as_ref()
            .map(|c| c.database.as_str())
            .filter(|d| !d.is_empty())
    }
}

impl ServerConfig {
    fn validate(&self, problems: &mut Problems) {
        let mut check = |ok: bool, key: &str, message: &str| {
            if !ok {
                problems.push(&format!("server.{key}"), message);
            }
        };
        if let Some(id) = &self.server_id {
            check(
                id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "server_id",
                "use letters, digits and '-' (at most 64)",
            );
        }
        for (key, value) in [
            ("max_memory_per_user", self.max_memory_per_user),
            ("max_memory", self.max_memory),
        ] {
            check(
                (4 << 20..=1 << 40).contains(&value),
                key,
                "must be between 4MiB and 1TiB",
            );
        }
        check(
            self.max_sessions_per_user <= 1_000_000,
            "max_sessions_per_user",
            "must be at most 1000000",
        );
        check(
            (1..=1_000_000).contains(&self.max_handles_per_user),
            "max_handles_per_user",
            "must be between 1 and 1000000",
        );
        check(
            !self.login_grace_time.is_zero(),
            "login_grace_time",
            "must be more than 0s",
        );
        check(
            (10..=1_000_000).contains(&self.ban_after_failures),
            "ban_after_failures",
            "must be between 10 and 1000000 (SPEC: never fewer than 10 failures)",
        );
        check(
            !self.ban_window.is_zero(),
            "ban_window",
            "must be more than 0s",
        );
        check(!self.ban_time.is_zero(), "ban_time", "must be more than 0s");
        // With the PROXY protocol, a header is believed only from these
        // peers: none would refuse every connection.
        check(
            !self.proxy_protocol || !self.proxy_trusted.is_empty(),
            "proxy_trusted",
            "required with proxy_protocol = true: the CIDRs of the load balancers allowed to send PROXY headers",
        );
    }

    /// The PROXY protocol rule of every listener, when it is on.
    pub fn proxy(&self) -> Option<wharf_listen::ProxyProtocol> {
        if !self.proxy_protocol {
            return None;
        }
        wharf_listen::ProxyProtocol::new(self.proxy_trusted.clone())
    }
}

/// Which configuration to read: `--config FILE`, else `./wharf.toml`, else
/// the embedded default.
pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(path) => Some(path.to_owned()),
        None => {
            let local = PathBuf::from("wharf.toml");
            local.exists().then_some(local)
        }
    }
}

/// Reads, overrides and validates. `Err` holds every problem found.
pub fn load(file: Option<&Path>, env: &[(String, String)]) -> Result<Config, Vec<String>> {
    let document = match file {
        Some(path) => Document::read(path, env),
        None => Document::parse(EMBEDDED_DEFAULT, None, PathBuf::from("."), env),
    }
    .map_err(Problems::into_vec)?;
    let mut problems = Problems::default();
    let config = document.read_sections(|| read(document.clone(), &mut problems));
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(problems.into_vec()),
    }
}

/// Every section into its type, each checked as soon as it is read, so
/// that one run names every problem (`None` after recording any).
fn read(mut document: Document, problems: &mut Problems) -> Option<Config> {
    let base = document.base.clone();
    let file = document.file.clone();
    let server = read_section::<ServerConfig>(&mut document, "server", problems);
    if let Some(server) = &server {
        server.validate(problems);
    }
    let protocols = read_section::<Protocols>(&mut document, "protocols", problems);
    if let Some(ftps) = protocols.as_ref().and_then(|p| p.ftps.as_ref()) {
        ftps.validate("protocols.ftps", problems);
    }
    let roles = read_section::<BTreeMap<String, RoleConfig>>(&mut document, "roles", problems);
    for (name, role) in roles.iter().flatten() {
        if !role.arn.is_empty() && !role.arn.starts_with("arn:") {
            problems.push(
                &format!("roles.{name}.arn"),
                format!("{:?} is not an ARN", role.arn),
            );
        }
    }
    let cluster = match document.take("cluster") {
        None => Some(None),
        Some(value) => section::<ClusterConfig>(value, "cluster", problems).map(Some),
    };
    if let Some(Some(cluster)) = &cluster
        && !cluster.database.is_empty()
    {
        let lower = cluster.database.to_ascii_lowercase();
        if !lower.starts_with("postgres://") && !lower.starts_with("postgresql://") {
            problems.push("cluster.database", "must be a postgres:// URL");
        }
    }
    let storage = read_storage(document.take("storage"), problems);
    if storage.as_ref().is_some_and(BTreeMap::is_empty) {
        problems.push("storage", "at least one [storage.NAME] section is needed");
    }
    let identity = IdentityProviderConfig::read(
        document.take("identity_provider"),
        "identity_provider",
        problems,
    );
    if let Some(identity) = &identity {
        identity.validate("identity_provider", problems);
    }
    if let wharf_config::toml::Value::Table(rest) = document.into_value() {
        for key in rest.keys() {
            problems.push(key, "unknown key");
        }
    }
    let (mut server, protocols, roles, cluster, storage, identity) =
        (server?, protocols?, roles?, cluster?, storage?, identity?);
    if server.data_dir.is_relative() {
        // The default, like a configured path, is relative to the file.
        server.data_dir = base.join(&server.data_dir);
    }
    let roles = roles
        .into_iter()
        .map(|(name, mut role)| {
            if role.arn.is_empty() {
                role.arn = format!("arn:aws:iam::000000000000:role/{name}");
            }
            (name, role)
        })
        .collect();
    Some(Config {
        file,
        server,
        sftp: protocols.sftp,
        ftps: protocols.ftps,
        ftp: protocols.ftp,
        storage,
        roles,
        identity,
        cluster,
    })
}

/// The section `key` (its defaults when absent), taken out of `document`.
fn read_section<T: serde::de::DeserializeOwned + Default>(
    document: &mut Document,
    key: &str,
    problems: &mut Problems,
) -> Option<T> {
    match document.take(key) {
        None => Some(T::default()),
        Some(value) => section(value, key, problems),
    }
}

/// `[storage.NAME]` sections, each by its `kind`.
fn read_storage(
    value: Option<wharf_config::toml::Value>,
    problems: &mut Problems,
) -> Option<BTreeMap<String, StoreConfig>> {
    let stores = match value {
        None => return Some(BTreeMap::new()),
        Some(wharf_config::toml::Value::Table(stores)) => stores,
        Some(_) => {
            problems.push("storage", "expected a section of [storage.NAME] sections");
            return None;
        }
    };
    let before = problems.len();
    let mut storage = BTreeMap::new();
    for (name, value) in stores {
        let path = format!("storage.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            problems.push(
                &path,
                "a store NAME may use letters, digits, '-', '_' and '.'",
            );
            continue;
        }
        if let Some(store) = StoreConfig::read(value, &path, problems) {
            store.validate(&path, problems);
            storage.insert(name, store);
        }
    }
    (problems.len() == before).then_some(storage)
}

#[cfg(test)]
mod tests;
