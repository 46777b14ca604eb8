//! `wharf.toml`: loading, environment overrides, and validation that
//! reports every problem by its dotted key path.
//!
//! The file is read into a TOML tree, `WHARF__SECTION__KEY` variables are
//! applied to the tree, and then a walker converts it into plain structs,
//! collecting errors instead of stopping at the first. Unknown keys are
//! errors. Relative paths are relative to the config file's directory.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

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

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub server_id: Option<String>,
    pub data_dir: PathBuf,
    pub host_keys: Vec<PathBuf>,
    pub banner: String,
    pub security_policy: String,
    pub max_sessions_per_user: usize,
    pub max_memory_per_user: u64,
    pub max_memory: u64,
    pub max_handles_per_user: u32,
    pub idle_timeout: Duration,
    pub login_grace_time: Duration,
    pub proxy_protocol: bool,
    pub ban_after_failures: u32,
    pub ban_window: Duration,
    pub ban_time: Duration,
    pub ban_exempt: Vec<ipnet::IpNet>,
    pub shutdown_grace: Duration,
    pub admin_listen: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct SftpProtocol {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct FtpsProtocol {
    pub listen: SocketAddr,
    pub certificate: Option<PathBuf>,
    pub private_key: Option<PathBuf>,
    pub passive_ports: RangeInclusive<u16>,
    pub passive_address: Option<String>,
    pub tls_session_resumption: String,
}

#[derive(Debug, Clone)]
pub struct FtpProtocol {
    pub listen: SocketAddr,
    pub passive_ports: RangeInclusive<u16>,
}

#[derive(Debug, Clone)]
pub enum StorageKind {
    Filesystem {
        root: PathBuf,
    },
    S3 {
        bucket: String,
        endpoint: Option<String>,
        region: String,
        path_style: bool,
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
        server_side_encryption: Option<String>,
        kms_key_id: Option<String>,
        upload_part_size: u64,
        upload_concurrency: usize,
    },
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub kind: StorageKind,
    pub bucket_policy: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct RoleConfig {
    pub arn: String,
    pub policies: Vec<PathBuf>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub kind: String,
    pub database: Option<String>,
    pub url: Option<String>,
    pub command: Vec<String>,
    pub timeout: Duration,
    pub cache_ttl: Duration,
    pub password_header: String,
    pub sftp_authentication_methods: String,
}

/// A loaded and validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, `None` for the embedded default.
    pub file: Option<PathBuf>,
    pub server: ServerConfig,
    pub sftp: Option<SftpProtocol>,
    pub ftps: Option<FtpsProtocol>,
    pub ftp: Option<FtpProtocol>,
    pub storage: BTreeMap<String, StorageConfig>,
    pub roles: BTreeMap<String, RoleConfig>,
    pub identity: IdentityConfig,
}

impl Config {
    pub fn is_embedded(&self) -> bool {
        self.file.is_none()
    }

    pub fn user_database(&self) -> PathBuf {
        match &self.identity.database {
            Some(database) => PathBuf::from(database.strip_prefix("sqlite://").unwrap_or(database)),
            None => self.server.data_dir.join("users.db"),
        }
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
    let (text, base) = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
            let base = path
                .parent()
                .map(Path::to_owned)
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| PathBuf::from("."));
            (text, base)
        }
        None => (EMBEDDED_DEFAULT.to_owned(), PathBuf::from(".")),
    };
    let mut tree: Table = text.parse().map_err(|e: toml::de::Error| {
        let name = file
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "embedded default".into());
        vec![format!("{name}: {}", e.to_string().trim())]
    })?;
    let mut errors = Vec::new();
    apply_env(&mut tree, env, &mut errors);
    let config = convert(&tree, &base, file, &mut errors);
    if errors.is_empty() {
        config.ok_or_else(|| vec!["invalid configuration".to_owned()])
    } else {
        Err(errors)
    }
}

/// Applies `WHARF__SECTION__KEY=value` overrides. A value is read as TOML
/// when it parses as one (`5`, `true`, `["a"]`), else as a string. Names
/// match existing keys case-insensitively; new keys are lowercased.
fn apply_env(tree: &mut Table, env: &[(String, String)], errors: &mut Vec<String>) {
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("WHARF__") else {
            continue;
        };
        let parts: Vec<&str> = rest.split("__").collect();
        if parts.iter().any(|p| p.is_empty()) {
            errors.push(format!("{name}: malformed override (WHARF__SECTION__KEY)"));
            continue;
        }
        let parsed = format!("v = {value}")
            .parse::<Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| Value::String(value.clone()));
        let mut table = &mut *tree;
        for (i, part) in parts.iter().enumerate() {
            let key = table
                .keys()
                .find(|k| k.eq_ignore_ascii_case(part))
                .cloned()
                .unwrap_or_else(|| part.to_ascii_lowercase());
            if i == parts.len() - 1 {
                table.insert(key, parsed.clone());
                break;
            }
            let entry = table
                .entry(key.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            match entry {
                Value::Table(inner) => table = inner,
                _ => {
                    errors.push(format!("{name}: {key} is not a section"));
                    break;
                }
            }
        }
    }
}

/// Walks one table, recording what was read and every problem.
struct Section<'a> {
    path: String,
    table: &'a Table,
    used: BTreeSet<&'a str>,
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "a list",
        Value::Table(_) => "a table",
    }
}

impl<'a> Section<'a> {
    fn new(path: impl Into<String>, table: &'a Table) -> Section<'a> {
        Section {
            path: path.into(),
            table,
            used: BTreeSet::new(),
        }
    }

    fn key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&mut self, key: &'a str) -> Option<&'a Value> {
        self.used.insert(key);
        self.table.get(key)
    }

    fn string(&mut self, errors: &mut Vec<String>, key: &'a str, default: &str) -> String {
        match self.get(key) {
            None => default.to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                errors.push(format!(
                    "{}: expected a string, got {}",
                    self.key(key),
                    type_name(other)
                ));
                default.to_owned()
            }
        }
    }

    /// A string where "" means "not set".
    fn optional(&mut self, errors: &mut Vec<String>, key: &'a str) -> Option<String> {
        Some(self.string(errors, key, "")).filter(|s| !s.is_empty())
    }

    fn boolean(&mut self, errors: &mut Vec<String>, key: &'a str, default: bool) -> bool {
        match self.get(key) {
            None => default,
            Some(Value::Boolean(b)) => *b,
            Some(other) => {
                errors.push(format!(
                    "{}: expected true or false, got {}",
                    self.key(key),
                    type_name(other)
                ));
                default
            }
        }
    }

    fn integer(
        &mut self,
        errors: &mut Vec<String>,
        key: &'a str,
        default: i64,
        range: RangeInclusive<i64>,
    ) -> i64 {
        match self.get(key) {
            None => default,
            Some(Value::Integer(n)) if range.contains(n) => *n,
            Some(Value::Integer(n)) => {
                errors.push(format!(
                    "{}: {n} is out of range ({} to {})",
                    self.key(key),
                    range.start(),
                    range.end()
                ));
                default
            }
            Some(other) => {
                errors.push(format!(
                    "{}: expected an integer, got {}",
                    self.key(key),
                    type_name(other)
                ));
                default
            }
        }
    }

    fn duration(&mut self, errors: &mut Vec<String>, key: &'a str, default: &str) -> Duration {
        let text = self.string(errors, key, default);
        match parse_duration(&text) {
            Ok(d) => d,
            Err(e) => {
                errors.push(format!("{}: {e}", self.key(key)));
                parse_duration(default).unwrap_or_default()
            }
        }
    }

    fn size(&mut self, errors: &mut Vec<String>, key: &'a str, default: &str) -> u64 {
        let text = match self.get(key) {
            Some(Value::Integer(n)) if *n >= 0 => n.to_string(),
            _ => {
                self.used.remove(key);
                self.string(errors, key, default)
            }
        };
        match parse_size(&text) {
            Ok(n) => n,
            Err(e) => {
                errors.push(format!("{}: {e}", self.key(key)));
                parse_size(default).unwrap_or(0)
            }
        }
    }

    fn strings(&mut self, errors: &mut Vec<String>, key: &'a str) -> Vec<String> {
        match self.get(key) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item {
                    Value::String(s) => Some(s.clone()),
                    other => {
                        errors.push(format!(
                            "{}[{i}]: expected a string, got {}",
                            self.key(key),
                            type_name(other)
                        ));
                        None
                    }
                })
                .collect(),
            Some(other) => {
                errors.push(format!(
                    "{}: expected a list of strings, got {}",
                    self.key(key),
                    type_name(other)
                ));
                Vec::new()
            }
        }
    }

    fn string_map(&mut self, errors: &mut Vec<String>, key: &'a str) -> BTreeMap<String, String> {
        match self.get(key) {
            None => BTreeMap::new(),
            Some(Value::Table(table)) => table
                .iter()
                .filter_map(|(k, v)| match v {
                    Value::String(s) => Some((k.clone(), s.clone())),
                    other => {
                        errors.push(format!(
                            "{}.{k}: expected a string, got {}",
                            self.key(key),
                            type_name(other)
                        ));
                        None
                    }
                })
                .collect(),
            Some(other) => {
                errors.push(format!(
                    "{}: expected a table, got {}",
                    self.key(key),
                    type_name(other)
                ));
                BTreeMap::new()
            }
        }
    }

    fn table(&mut self, errors: &mut Vec<String>, key: &'a str) -> Option<&'a Table> {
        match self.get(key) {
            None => None,
            Some(Value::Table(table)) => Some(table),
            Some(other) => {
                errors.push(format!(
                    "{}: expected a section, got {}",
                    self.key(key),
                    type_name(other)
                ));
                None
            }
        }
    }

    fn address(
        &mut self,
        errors: &mut Vec<String>,
        key: &'a str,
        default: &str,
    ) -> Option<SocketAddr> {
        let text = self.string(errors, key, default);
        if text.is_empty() {
            return None;
        }
        match text.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                errors.push(format!(
                    "{}: {text:?} is not an address like 127.0.0.1:2222",
                    self.key(key)
                ));
                None
            }
        }
    }

    fn ports(
        &mut self,
        errors: &mut Vec<String>,
        key: &'a str,
        default: &str,
    ) -> RangeInclusive<u16> {
        let text = self.string(errors, key, default);
        let parsed = text.split_once('-').and_then(|(a, b)| {
            let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
            (a > 0 && a <= b).then_some(a..=b)
        });
        parsed.unwrap_or_else(|| {
            errors.push(format!(
                "{}: {text:?} is not a port range like 50000-50100",
                self.key(key)
            ));
            50000..=50100
        })
    }

    /// Reports keys that were never read.
    fn finish(self, errors: &mut Vec<String>) {
        for key in self.table.keys() {
            if !self.used.contains(key.as_str()) {
                errors.push(format!("{}: unknown key", self.key(key)));
            }
        }
    }
}

fn resolve(base: &Path, path: &str) -> PathBuf {
    let path = PathBuf::from(path);
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

/// `http://host[:port][/path]` or `https://...`: a scheme, `://` and a
/// host. (The s3 store's constructor parses it again, as a URL.)
fn is_http_url(text: &str) -> bool {
    let Some(rest) = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    !host.is_empty() && !host.starts_with(':') && !text.chars().any(char::is_whitespace)
}

/// `15m`, `30s`, `1h30m`, `500ms`, `0s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration like 30s, 15m or 1h");
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "d" => Duration::from_secs(number.saturating_mul(86400)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

/// `8MiB`, `5MB`, `1GiB`, `4096`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let bad = || format!("{text:?} is not a size like 8MiB");
    let number: u64 = text[..digits].parse().map_err(|_| bad())?;
    let factor: u64 = match text[digits..].trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(bad()),
    };
    number.checked_mul(factor).ok_or_else(bad)
}

fn convert(
    tree: &Table,
    base: &Path,
    file: Option<&Path>,
    errors: &mut Vec<String>,
) -> Option<Config> {
    let mut top = Section::new("", tree);
    let empty = Table::new();

    let server_table = top.table(errors, "server").unwrap_or(&empty);
    let mut s = Section::new("server", server_table);
    let server_id = s.optional(errors, "server_id");
    if let Some(id) = &server_id
        && (id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        errors.push("server.server_id: use letters, digits and '-' (at most 64)".to_owned());
    }
    let data_dir = resolve(base, &s.string(errors, "data_dir", "wharf-data"));
    let host_keys = s
        .strings(errors, "host_keys")
        .iter()
        .map(|p| resolve(base, p))
        .collect();
    let banner = s.string(errors, "banner", "");
    let security_policy = s.string(errors, "security_policy", "wharf-2025-11");
    if wharf_sftp::SecurityPolicy::parse(&security_policy).is_none() {
        errors.push(format!(
            "server.security_policy: {security_policy:?} is not a known policy ({})",
            wharf_sftp::SecurityPolicy::NAMES.join(", ")
        ));
    }
    let max_sessions_per_user =
        s.integer(errors, "max_sessions_per_user", 0, 0..=1_000_000) as usize;
    let max_memory_per_user = s.size(errors, "max_memory_per_user", "128MiB");
    let max_memory = s.size(errors, "max_memory", "1GiB");
    for (key, value) in [
        ("max_memory_per_user", max_memory_per_user),
        ("max_memory", max_memory),
    ] {
        if !(4 << 20..=1 << 40).contains(&value) {
            errors.push(format!("server.{key}: must be between 4MiB and 1TiB"));
        }
    }
    let max_handles_per_user =
        s.integer(errors, "max_handles_per_user", 1024, 1..=1_000_000) as u32;
    let idle_timeout = s.duration(errors, "idle_timeout", "15m");
    let login_grace_time = s.duration(errors, "login_grace_time", "60s");
    if login_grace_time.is_zero() {
        errors.push("server.login_grace_time: must be more than 0s".to_owned());
    }
    let proxy_protocol = s.boolean(errors, "proxy_protocol", false);
    let ban_after_failures = s.integer(errors, "ban_after_failures", 20, 10..=1_000_000) as u32;
    let ban_window = s.duration(errors, "ban_window", "5m");
    let ban_time = s.duration(errors, "ban_time", "15m");
    let ban_exempt = s.strings(errors, "ban_exempt");
    let shutdown_grace = s.duration(errors, "shutdown_grace", "30s");
    let admin_listen = s.address(errors, "admin_listen", "");
    // Fail closed on what is specified but not built yet: a PROXY header
    // ignored would make every client look like the load balancer.
    if proxy_protocol {
        errors.push(
            "server.proxy_protocol: PROXY protocol support is not available in this build yet"
                .to_owned(),
        );
    }
    let ban_exempt: Vec<ipnet::IpNet> = ban_exempt
        .iter()
        .enumerate()
        .filter_map(|(i, text)| {
            // A bare address is its own /32 or /128.
            let parsed = text.parse::<ipnet::IpNet>().or_else(|_| {
                text.parse::<std::net::IpAddr>()
                    .map(ipnet::IpNet::from)
            });
            match parsed {
                Ok(net) => Some(net),
                Err(_) => {
                    errors.push(format!(
                        "server.ban_exempt[{i}]: {text:?} is not an address or a CIDR like 10.0.0.0/8"
                    ));
                    None
                }
            }
        })
        .collect();
    if ban_window.is_zero() || ban_time.is_zero() {
        errors.push("server.ban_window, server.ban_time: must be more than 0s".to_owned());
    }
    s.finish(errors);
    let server = ServerConfig {
        server_id,
        data_dir,
        host_keys,
        banner,
        security_policy,
        max_sessions_per_user,
        max_memory_per_user,
        max_memory,
        max_handles_per_user,
        idle_timeout,
        login_grace_time,
        proxy_protocol,
        ban_after_failures,
        ban_window,
        ban_time,
        ban_exempt,
        shutdown_grace,
        admin_listen,
    };

    let protocols = top.table(errors, "protocols").unwrap_or(&empty);
    let mut p = Section::new("protocols", protocols);
    let sftp = p.table(errors, "sftp").map(|t| {
        let mut s = Section::new("protocols.sftp", t);
        let listen = s.address(errors, "listen", "127.0.0.1:2222");
        s.finish(errors);
        listen.map(|listen| SftpProtocol { listen })
    });
    let ftps = p.table(errors, "ftps").map(|t| {
        let mut s = Section::new("protocols.ftps", t);
        let listen = s.address(errors, "listen", "127.0.0.1:2121");
        let certificate = s.optional(errors, "certificate").map(|c| resolve(base, &c));
        let private_key = s.optional(errors, "private_key").map(|c| resolve(base, &c));
        if certificate.is_some() != private_key.is_some() {
            errors.push("protocols.ftps: certificate and private_key go together".to_owned());
        }
        let passive_ports = s.ports(errors, "passive_ports", "50000-50100");
        let passive_address = s.optional(errors, "passive_address");
        let tls_session_resumption = s.string(errors, "tls_session_resumption", "enforced");
        if !matches!(tls_session_resumption.as_str(), "enforced" | "enabled" | "disabled") {
            errors.push(format!(
                "protocols.ftps.tls_session_resumption: {tls_session_resumption:?} is not enforced, enabled or disabled"
            ));
        }
        s.finish(errors);
        listen.map(|listen| FtpsProtocol {
            listen,
            certificate,
            private_key,
            passive_ports,
            passive_address,
            tls_session_resumption,
        })
    });
    let ftp = p.table(errors, "ftp").map(|t| {
        let mut s = Section::new("protocols.ftp", t);
        let listen = s.address(errors, "listen", "127.0.0.1:2021");
        let passive_ports = s.ports(errors, "passive_ports", "50101-50200");
        s.finish(errors);
        listen.map(|listen| FtpProtocol {
            listen,
            passive_ports,
        })
    });
    p.finish(errors);

    let mut storage = BTreeMap::new();
    if let Some(stores) = top.table(errors, "storage") {
        for (name, value) in stores {
            let path = format!("storage.{name}");
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                || name.is_empty()
            {
                errors.push(format!(
                    "{path}: a store NAME may use letters, digits, '-', '_' and '.'"
                ));
                continue;
            }
            let Value::Table(table) = value else {
                errors.push(format!("{path}: expected a section"));
                continue;
            };
            let mut s = Section::new(path.clone(), table);
            let kind = s.string(errors, "kind", "");
            let bucket_policy = s
                .optional(errors, "bucket_policy")
                .map(|p| resolve(base, &p));
            let kind = match kind.as_str() {
                "filesystem" => {
                    let root = s.string(errors, "root", "");
                    if root.is_empty() {
                        errors.push(format!(
                            "{path}.root: a filesystem store needs a root directory"
                        ));
                    }
                    Some(StorageKind::Filesystem {
                        root: resolve(base, &root),
                    })
                }
                "s3" => {
                    let bucket = s.string(errors, "bucket", name);
                    let endpoint = s.optional(errors, "endpoint");
                    if let Some(endpoint) = &endpoint
                        && !is_http_url(endpoint)
                    {
                        errors.push(format!(
                            "{path}.endpoint: {endpoint:?} is not an absolute http(s) URL"
                        ));
                    }
                    let region = s.string(errors, "region", "us-east-1");
                    let path_style = s.boolean(errors, "path_style", true);
                    let access_key_id = s.optional(errors, "access_key_id");
                    let secret_access_key = s.optional(errors, "secret_access_key");
                    if access_key_id.is_some() != secret_access_key.is_some() {
                        errors.push(format!(
                            "{path}: access_key_id and secret_access_key go together"
                        ));
                    }
                    let server_side_encryption = s.optional(errors, "server_side_encryption");
                    if let Some(sse) = &server_side_encryption
                        && sse != "AES256"
                        && sse != "aws:kms"
                    {
                        errors.push(format!("{path}.server_side_encryption: {sse:?} is not \"AES256\" or \"aws:kms\""));
                    }
                    let kms_key_id = s.optional(errors, "kms_key_id");
                    if kms_key_id.is_some() && server_side_encryption.as_deref() != Some("aws:kms")
                    {
                        errors.push(format!(
                            "{path}.kms_key_id: needs server_side_encryption = \"aws:kms\""
                        ));
                    }
                    let upload_part_size = s.size(errors, "upload_part_size", "8MiB");
                    if !(5 << 20..=5 << 30).contains(&upload_part_size) {
                        errors.push(format!(
                            "{path}.upload_part_size: must be between 5MiB and 5GiB"
                        ));
                    }
                    let upload_concurrency =
                        s.integer(errors, "upload_concurrency", 4, 1..=64) as usize;
                    Some(StorageKind::S3 {
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
                    })
                }
                "" => {
                    errors.push(format!("{path}.kind: missing (\"filesystem\" or \"s3\")"));
                    None
                }
                other => {
                    errors.push(format!(
                        "{path}.kind: {other:?} is not \"filesystem\" or \"s3\""
                    ));
                    None
                }
            };
            // Keys of the other kind are unknown for this one.
            s.finish(errors);
            if let Some(kind) = kind {
                storage.insert(
                    name.clone(),
                    StorageConfig {
                        kind,
                        bucket_policy,
                    },
                );
            }
        }
    }

    let mut roles = BTreeMap::new();
    if let Some(table) = top.table(errors, "roles") {
        for (name, value) in table {
            let path = format!("roles.{name}");
            let Value::Table(table) = value else {
                errors.push(format!("{path}: expected a section"));
                continue;
            };
            let mut s = Section::new(path.clone(), table);
            let arn = s
                .optional(errors, "arn")
                .unwrap_or_else(|| format!("arn:aws:iam::000000000000:role/{name}"));
            if !arn.starts_with("arn:") {
                errors.push(format!("{path}.arn: {arn:?} is not an ARN"));
            }
            let policies = s
                .strings(errors, "policies")
                .iter()
                .map(|p| resolve(base, p))
                .collect();
            let tags = s.string_map(errors, "tags");
            s.finish(errors);
            roles.insert(
                name.clone(),
                RoleConfig {
                    arn,
                    policies,
                    tags,
                },
            );
        }
    }

    let idp_table = top.table(errors, "identity_provider").unwrap_or(&empty);
    let mut s = Section::new("identity_provider", idp_table);
    let kind = s.string(errors, "type", "service_managed");
    let database = s.optional(errors, "database");
    let url = s.optional(errors, "url");
    let command = s.strings(errors, "command");
    let timeout = s.duration(errors, "timeout", "5s");
    let cache_ttl = s.duration(errors, "cache_ttl", "0s");
    let password_header = s.string(errors, "password_header", "Password");
    if !matches!(password_header.as_str(), "Password" | "PasswordBase64") {
        errors.push(format!(
            "identity_provider.password_header: {password_header:?} is not Password or PasswordBase64"
        ));
    }
    let sftp_authentication_methods = s.string(
        errors,
        "sftp_authentication_methods",
        "PUBLIC_KEY_OR_PASSWORD",
    );
    if wharf_sftp::AuthMethods::parse(&sftp_authentication_methods).is_none() {
        errors.push(format!(
            "identity_provider.sftp_authentication_methods: {sftp_authentication_methods:?} is not PASSWORD, PUBLIC_KEY, PUBLIC_KEY_OR_PASSWORD or PUBLIC_KEY_AND_PASSWORD"
        ));
    }
    // LDAP and SQL keys are part of the contract; they are read so that a
    // file written for them is not rejected for unknown keys.
    for key in [
        "start_tls",
        "service_bind_dn",
        "service_bind_password",
        "bind_dn_template",
        "search_base",
        "user_filter",
        "allowed_groups",
        "query",
        "password_hash_column",
        "password_salt",
        "attributes",
    ] {
        s.get(key);
    }
    match kind.as_str() {
        "service_managed" => {
            if database
                .as_deref()
                .is_some_and(|d| d.starts_with("postgres://") || d.starts_with("postgresql://"))
            {
                errors.push(
                    "identity_provider.database: PostgreSQL is not available in this build yet"
                        .to_owned(),
                );
            }
        }
        "lambda" | "api_gateway" => {
            if url.is_none() {
                errors.push(format!("identity_provider.url: required for type {kind:?}"));
            }
        }
        "command" => {
            if command.is_empty() {
                errors.push("identity_provider.command: required for type \"command\" (argv list)".to_owned());
            }
        }
        "ldap" | "sql" => errors.push(format!(
            "identity_provider.type: {kind:?} is part of the contract but not available in this build yet"
        )),
        other => errors.push(format!(
            "identity_provider.type: {other:?} is not service_managed, api_gateway, lambda, command, ldap or sql"
        )),
    }
    s.finish(errors);
    top.finish(errors);

    if sftp.is_none() && ftps.is_none() && ftp.is_none() && errors.is_empty() {
        // Allowed (a config used only for `wharf user`), but serve will refuse.
    }
    if storage.is_empty() {
        errors.push("storage: at least one [storage.NAME] section is needed".to_owned());
    }
    Some(Config {
        file: file.map(Path::to_owned),
        server,
        sftp: sftp.flatten(),
        ftps: ftps.flatten(),
        ftp: ftp.flatten(),
        storage,
        roles,
        identity: IdentityConfig {
            kind,
            database,
            url,
            command,
            timeout,
            cache_ttl,
            password_header,
            sftp_authentication_methods,
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Config, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wharf.toml");
        std::fs::write(&path, text).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load(Some(&path), &env)
    }

    #[test]
    fn the_embedded_default_is_valid() {
        let config = load(None, &[]).unwrap();
        assert!(config.is_embedded());
        assert_eq!(config.sftp.unwrap().listen.to_string(), "127.0.0.1:2222");
        assert_eq!(config.ftps.unwrap().listen.to_string(), "127.0.0.1:2121");
        assert!(config.ftp.is_none());
        assert!(matches!(
            config.storage["default"].kind,
            StorageKind::Filesystem { .. }
        ));
        assert_eq!(config.server.idle_timeout, Duration::from_secs(900));
    }

    #[test]
    fn every_problem_is_named_by_its_key_path() {
        let errors = load_text(
            r#"
            bogus_top = 1
            [server]
            bogus_key = 1
            idle_timeout = "soon"
            max_sessions_per_user = "many"
            [protocols.sftp]
            listen = "nowhere"
            [storage.reports]
            kind = "s3"
            endpoint = 5
            root = "/x"
            [storage.files]
            kind = "tape"
            [identity_provider]
            type = "lambda"
            "#,
            &[],
        )
        .unwrap_err();
        for expected in [
            "bogus_top: unknown key",
            "server.bogus_key: unknown key",
            "server.idle_timeout: \"soon\" is not a duration",
            "server.max_sessions_per_user: expected an integer, got a string",
            "protocols.sftp.listen: \"nowhere\" is not an address",
            "storage.reports.endpoint: expected a string, got an integer",
            "storage.reports.root: unknown key",
            "storage.files.kind: \"tape\" is not",
            "identity_provider.url: required",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(expected)),
                "{expected:?} not in {errors:#?}"
            );
        }
    }

    #[test]
    fn environment_overrides_and_relative_paths() {
        let config = load_text(
            r#"
            [server]
            data_dir = "data"
            [protocols.sftp]
            [storage.Reports]
            kind = "filesystem"
            root = "files"
            "#,
            &[
                ("WHARF__SERVER__MAX_SESSIONS_PER_USER", "3"),
                ("WHARF__PROTOCOLS__SFTP__LISTEN", "127.0.0.1:0"),
                ("WHARF__SERVER__BANNER", "hello there"),
                ("WHARF__STORAGE__REPORTS__ROOT", "/abs/root"),
                ("OTHER", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(config.server.max_sessions_per_user, 3);
        assert_eq!(config.server.banner, "hello there");
        assert_eq!(config.sftp.unwrap().listen.port(), 0);
        assert!(config.server.data_dir.ends_with("data") && config.server.data_dir.is_absolute());
        let StorageKind::Filesystem { root } = &config.storage["Reports"].kind else {
            panic!()
        };
        assert_eq!(root, Path::new("/abs/root"));
        let errors = load_text(
            "[storage.a]\nkind='filesystem'\nroot='x'\n",
            &[("WHARF__SERVER__BOGUS", "1")],
        )
        .unwrap_err();
        assert_eq!(errors, ["server.bogus: unknown key"]);
    }

    #[test]
    fn what_is_not_built_yet_is_refused_not_ignored() {
        let base = "[storage.a]\nkind = \"filesystem\"\nroot = \"a\"\n";
        for (extra, expected) in [
            (
                "[server]\nproxy_protocol = true\n",
                "server.proxy_protocol: PROXY protocol support is not available",
            ),
            (
                "[identity_provider]\ntype = \"ldap\"\n",
                "identity_provider.type: \"ldap\" is part of the contract",
            ),
            (
                "[server]\nban_after_failures = 5\n",
                "server.ban_after_failures:",
            ),
            (
                "[server]\nban_exempt = [\"10.0.0.0/33\"]\n",
                "server.ban_exempt[0]: \"10.0.0.0/33\" is not an address or a CIDR",
            ),
            (
                "[identity_provider]\ndatabase = \"postgres://db/wharf\"\n",
                "identity_provider.database: PostgreSQL is not available",
            ),
        ] {
            let errors = load_text(&format!("{base}{extra}"), &[]).unwrap_err();
            assert!(
                errors.iter().any(|e| e.starts_with(expected)),
                "{expected:?} not in {errors:?}"
            );
        }
    }

    #[test]
    fn ban_keys_are_read() {
        let base = "[storage.a]\nkind = \"filesystem\"\nroot = \"a\"\n";
        let config = load_text(
            &format!("[server]\nban_exempt = [\"10.0.0.0/8\", \"192.0.2.7\"]\n{base}"),
            &[("WHARF__SERVER__BAN_TIME", "1h")],
        )
        .unwrap();
        assert_eq!(config.server.ban_time, Duration::from_secs(3600));
        assert_eq!(config.server.ban_after_failures, 20);
        assert_eq!(config.server.ban_exempt.len(), 2);
    }

    #[test]
    fn s3_endpoints_are_absolute_http_urls() {
        for (endpoint, ok) in [
            ("http://127.0.0.1:9000", true),
            ("https://s3.example.com", true),
            ("https://s3.example.com/prefix/", true),
            ("::not a url::", false),
            ("127.0.0.1:9000", false),
            ("ftp://example.com", false),
            ("http://", false),
            ("http://:9000", false),
            ("http://exa mple.com", false),
        ] {
            let text = format!("[storage.r]\nkind = \"s3\"\nendpoint = \"{endpoint}\"\n");
            match load_text(&text, &[]) {
                Ok(_) => assert!(ok, "{endpoint} was accepted"),
                Err(errors) => {
                    assert!(!ok, "{endpoint}: {errors:?}");
                    assert_eq!(
                        errors,
                        [format!(
                            "storage.r.endpoint: {endpoint:?} is not an absolute http(s) URL"
                        )]
                    );
                }
            }
        }
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "5", "m", "5x", "-5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("8 parsecs").is_err());
    }
}
