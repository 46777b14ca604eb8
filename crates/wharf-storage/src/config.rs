//! `[storage.NAME]`: the file's terms for a store, read by
//! `wharf_config`, checked by [`StoreConfig::validate`] and opened by
//! [`StoreConfig::open`] (the one constructor `check-config` and `serve`
//! share).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use wharf_config::values;
use wharf_config::{Problems, Tagged as _};

use crate::Store;
use crate::filesystem::FilesystemStore;
use crate::s3::{MIN_PART_SIZE, S3Config, S3Store, Sse};

/// The keys every kind of store has.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreCommon {
    /// An IAM bucket policy (JSON), evaluated like S3 does.
    #[serde(deserialize_with = "values::optional_path::deserialize")]
    pub bucket_policy: Option<PathBuf>,
}

wharf_config::tagged! {
    /// The kind of a store, by `kind`: one line per backend.
    #[derive(Debug, Clone)]
    pub enum StoreKind (tag = "kind") {
        "filesystem" => Filesystem(FilesystemSection),
        "s3" => S3(S3Section),
    }
}

/// `kind = "filesystem"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemSection {
    #[serde(deserialize_with = "values::path::deserialize")]
    pub root: PathBuf,
}

/// `server_side_encryption`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SseName {
    #[serde(rename = "")]
    None,
    #[serde(rename = "AES256")]
    Aes256,
    #[serde(rename = "aws:kms")]
    Kms,
}

/// `kind = "s3"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Section {
    /// Defaults to the store's NAME.
    #[serde(deserialize_with = "values::optional_string::deserialize")]
    pub bucket: Option<String>,
    /// Empty: AWS.
    #[serde(deserialize_with = "values::optional_string::deserialize")]
    pub endpoint: Option<String>,
    pub region: String,
    pub path_style: bool,
    #[serde(deserialize_with = "values::optional_string::deserialize")]
    pub access_key_id: Option<String>,
    #[serde(deserialize_with = "values::optional_string::deserialize")]
    pub secret_access_key: Option<String>,
    pub server_side_encryption: SseName,
    #[serde(deserialize_with = "values::optional_string::deserialize")]
    pub kms_key_id: Option<String>,
    #[serde(deserialize_with = "values::size::deserialize")]
    pub upload_part_size: u64,
    pub upload_concurrency: usize,
}

impl Default for S3Section {
    fn default() -> S3Section {
        S3Section {
            bucket: None,
            endpoint: None,
            region: "us-east-1".to_owned(),
            path_style: true,
            access_key_id: None,
            secret_access_key: None,
            server_side_encryption: SseName::None,
            kms_key_id: None,
            upload_part_size: 8 << 20,
            upload_concurrency: 4,
        }
    }
}

// By hand: never print the secret key.
impl std::fmt::Debug for S3Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Section")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// One `[storage.NAME]` section.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub common: StoreCommon,
    pub kind: StoreKind,
}

/// A store as `serve` will open it.
pub enum StorePlan {
    Ready(Arc<dyn Store>),
    /// A filesystem store whose root does not exist yet: `serve` creates it
    /// ([`StorePlan::open`]); `check-config` only checks that it could.
    CreateRoot(PathBuf),
}

impl StorePlan {
    /// The store, creating a filesystem root that does not exist yet.
    pub fn open(self) -> Result<Arc<dyn Store>, String> {
        match self {
            StorePlan::Ready(store) => Ok(store),
            StorePlan::CreateRoot(root) => FilesystemStore::open(&root)
                .map(|store| Arc::new(store) as Arc<dyn Store>)
                .map_err(|e| format!("root: {}", e.message)),
        }
    }
}

impl StoreConfig {
    /// Reads `[storage.NAME]` at `path`.
    pub fn read(
        value: wharf_config::toml::Value,
        path: &str,
        problems: &mut Problems,
    ) -> Option<StoreConfig> {
        let (common, kind) = wharf_config::tagged_section(value, path, None, problems)?;
        Some(StoreConfig { common, kind })
    }

    /// The kind's name, `filesystem` or `s3`.
    pub fn kind_name(&self) -> &'static str {
        self.kind.name()
    }

    /// What the types cannot say: keys that go together, limits.
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        let StoreKind::S3(s3) = &self.kind else {
            return;
        };
        if let Some(endpoint) = &s3.endpoint
            && !is_http_url(endpoint)
        {
            problems.push(
                &format!("{path}.endpoint"),
                format!("{endpoint:?} is not an absolute http(s) URL"),
            );
        }
        if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
            problems.push(path, "access_key_id and secret_access_key go together");
        }
        if s3.kms_key_id.is_some() && s3.server_side_encryption != SseName::Kms {
            problems.push(
                &format!("{path}.kms_key_id"),
                "needs server_side_encryption = \"aws:kms\"",
            );
        }
        if !(MIN_PART_SIZE as u64..=5 << 30).contains(&s3.upload_part_size) {
            problems.push(
                &format!("{path}.upload_part_size"),
                "must be between 5MiB and 5GiB",
            );
        }
        if !(1..=64).contains(&s3.upload_concurrency) {
            problems.push(
                &format!("{path}.upload_concurrency"),
                "must be between 1 and 64",
            );
        }
    }

    /// The store, built with the constructor `serve` uses, without creating
    /// anything; `Err` is a message for the key at `path`.
    pub fn plan(&self, name: &str, path: &str) -> Result<StorePlan, String> {
        match &self.kind {
            StoreKind::Filesystem(fs) => {
                if !fs.root.exists() {
                    wharf_config::creatable(&fs.root).map_err(|e| format!("{path}.root: {e}"))?;
                    return Ok(StorePlan::CreateRoot(fs.root.clone()));
                }
                FilesystemStore::open(&fs.root)
                    .map(|store| StorePlan::Ready(Arc::new(store)))
                    .map_err(|e| format!("{path}.root: {}", e.message))
            }
            StoreKind::S3(s3) => {
                let config = s3.s3_config(name);
                if let Some(endpoint) = &config.endpoint {
                    // The endpoint alone first, so that a bad one is named
                    // by its key.
                    let mut probe = S3Config::new(config.bucket.clone());
                    probe.endpoint = Some(endpoint.clone());
                    if let Err(e) = S3Store::new(probe) {
                        let message = e.message.strip_prefix("s3 store: ").unwrap_or(&e.message);
                        return Err(format!("{path}.endpoint: {message}"));
                    }
                }
                S3Store::new(config)
                    .map(|store| StorePlan::Ready(Arc::new(store)))
                    .map_err(|e| format!("{path}: {}", e.message))
            }
        }
    }
}

impl S3Section {
    /// The backend's configuration for the store NAME.
    pub fn s3_config(&self, name: &str) -> S3Config {
        let mut config = S3Config::new(self.bucket.clone().unwrap_or_else(|| name.to_owned()));
        config.endpoint = self.endpoint.clone();
        config.region = self.region.clone();
        config.path_style = self.path_style;
        config.access_key_id = self.access_key_id.clone();
        config.secret_access_key = self.secret_access_key.clone();
        config.server_side_encryption = match self.server_side_encryption {
            SseName::None => None,
            SseName::Aes256 => Some(Sse::Aes256),
            SseName::Kms => Some(Sse::Kms {
                kms_key_id: self.kms_key_id.clone(),
            }),
        };
        config.upload_part_size = usize::try_from(self.upload_part_size).unwrap_or(usize::MAX);
        config.upload_concurrency = self.upload_concurrency;
        config
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
