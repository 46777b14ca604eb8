//! The `s3` store: a bucket of an S3-compatible object store, with AWS
//! Transfer Family semantics.
//!
//! * A directory is a common prefix `a/` or a zero-byte marker object `a/`;
//!   `create_dir` writes the marker, `delete_dir` removes it once nothing
//!   else is under the prefix.
//! * Listings are ListObjectsV2 with `delimiter=/`, fetched one page at a
//!   time; a marker that is also a common prefix lists once, and the listed
//!   directory's own marker is not an entry.
//! * Uploads become visible only when finished: one PutObject below a part
//!   size, else a multipart upload with bounded memory (see `writer`). A
//!   failed, aborted or dropped upload is aborted, so nothing is left.
//! * Downloads are ranged GETs with read-ahead for sequential readers (see
//!   `reader`).
//! * Copy is server-side: CopyObject, or above 5 GiB a multipart upload of
//!   UploadPartCopy ranges (see `copy`); rename is copy then delete, and
//!   directories cannot be renamed.
//! * `server_side_encryption` is sent on every write: PutObject,
//!   CreateMultipartUpload and CopyObject.
//!
//! Most requests go through opendal; the writer signs its own requests
//! (reqsign, the signer opendal uses) because it needs the multipart upload
//! id, which opendal keeps private, to abort an upload after a failure and to
//! tell an operator about one it could not abort. No opendal or reqwest type
//! appears in this module's public API.
//!
//! Here: [`S3Store`] and its [`Store`] operations. Beside it: `config`
//! ([`S3Config`] and its checks), `transport` (opendal's HTTP client),
//! `raw` (our own signed requests), `lister`, `reader`, `writer` and
//! `copy` (what the operations hand out or run), `error` and `stats`.

mod config;
mod copy;
mod error;
mod lister;
mod raw;
mod reader;
mod stats;
mod transport;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use opendal::Operator;
use opendal::options::ListOptions;
use reqsign_aws_v4::RequestSigner;
use reqsign_core::{Context, OsEnv, Signer};

pub use self::config::{S3Config, Sse};
use self::error::from_opendal;
use self::raw::{Raw, RawConfig};
pub use self::stats::S3Stats;
use self::stats::Stats;
use self::transport::Transport;
use crate::{
    Capabilities, Error, ErrorKind, Key, Kind, Lister, Meta, Reader, Result, Store, Writer,
};

/// The smallest part S3 accepts (except for an upload's last part).
pub const MIN_PART_SIZE: usize = 5 << 20;
/// The largest part S3 accepts.
pub const MAX_PART_SIZE: usize = 5 << 30;

struct Inner {
    op: Operator,
    raw: Arc<Raw>,
    config: S3Config,
    stats: Arc<Stats>,
    /// Every live upload writer (as a token) and every abort it started.
    background: tokio_util::task::TaskTracker,
}

/// A store in one S3 bucket.
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.inner.config.bucket)
            .field("endpoint", &self.inner.config.endpoint())
            .finish()
    }
}

impl S3Store {
    /// Checks the configuration and prepares the clients. Makes no request:
    /// an unreachable endpoint or bad credentials show at the first operation.
    pub fn new(config: S3Config) -> Result<S3Store> {
        config.validate()?;
        let stats = Arc::new(Stats::default());
        let client = reqwest::Client::builder()
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(50))
            .build()
            .map_err(|e| Error::internal(format!("s3 store: cannot build the HTTP client: {e}")))?;
        let transport = opendal::HttpTransporter::new(Transport {
            inner: opendal_http_transport_reqwest::ReqwestTransport::new(client.clone()),
            stats: stats.clone(),
            timeout: config.request_timeout,
            retries: config.retries,
        });

        let endpoint = config.endpoint();
        let mut builder = opendal::services::S3::default()
            .bucket(&config.bucket)
            .endpoint(&endpoint)
            .region(&config.region)
            .root("/")
            .credential_provider_chain(config.credentials());
        if !config.path_style {
            builder = builder.enable_virtual_host_style();
        }
        match &config.server_side_encryption {
            None => {}
            Some(Sse::Aes256) => builder = builder.server_side_encryption_with_s3_key(),
            Some(Sse::Kms { kms_key_id: None }) => {
                builder = builder.server_side_encryption_with_aws_managed_kms_key();
            }
            Some(Sse::Kms {
                kms_key_id: Some(id),
            }) => builder = builder.server_side_encryption_with_customer_managed_kms_key(id),
        }
        // A whole operation may take every attempt and the pauses between.
        let attempts = u32::try_from(config.retries + 1).unwrap_or(u32::MAX);
        let timeout = opendal::layers::TimeoutLayer::new()
            .with_timeout(
                config.request_timeout.saturating_mul(attempts)
                    + raw::MAX_BACKOFF.saturating_mul(attempts - 1),
            )
            .with_io_timeout(config.request_timeout);
        let op = Operator::new(builder)
            .map_err(|e| Error::internal(format!("s3 store: {e}")))?
            .layer(timeout)
            .with_context(opendal::OperationContext::new().with_http_transport(transport.clone()));

        let signer = Signer::new(
            Context::new()
                .with_file_read(reqsign_file_read_tokio::TokioFileRead)
                .with_http_send(transport)
                .with_env(OsEnv),
            config.credentials(),
            RequestSigner::new("s3", &config.region),
        );
        let raw = Arc::new(Raw::new(RawConfig {
            client,
            signer,
            bucket_url: config.bucket_url()?,
            bucket: config.bucket.clone(),
            sse: config.server_side_encryption.clone(),
            timeout: config.request_timeout,
            retries: config.retries,
            stats: stats.clone(),
        }));
        Ok(S3Store {
            inner: Arc::new(Inner {
                op,
                raw,
                config,
                stats,
                background: tokio_util::task::TaskTracker::new(),
            }),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.inner.config.bucket
    }

    /// Memory held by uploads and read-ahead, and requests sent so far.
    pub fn stats(&self) -> S3Stats {
        self.inner.stats.snapshot()
    }

    /// Restarts the peaks of [`S3Stats`] from the current levels.
    pub fn reset_peaks(&self) {
        self.inner.stats.reset_peaks();
    }

    /// HeadObject: the object at `key` and its ETag, if there is one.
    async fn head_object(&self, key: &str) -> Result<Option<(Meta, Option<String>)>> {
        match self.inner.op.stat(key).await {
            Ok(meta) => Ok(Some((
                Meta {
                    kind: Kind::File,
                    size: meta.content_length(),
                    modified: meta.last_modified().map(Into::into),
                    mode: None,
                },
                meta.etag().map(str::to_owned),
            ))),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(from_opendal(e, self.bucket(), "HeadObject", key)),
        }
    }

    /// Up to `limit` keys under `key/` (its own marker included), in order.
    async fn keys_under(&self, key: &str, limit: usize) -> Result<Vec<String>> {
        let prefix = format!("{key}/");
        let options = ListOptions {
            limit: Some(limit),
            recursive: true,
            ..Default::default()
        };
        let mut lister = self
            .inner
            .op
            .lister_options(&prefix, options)
            .await
            .map_err(|e| from_opendal(e, self.bucket(), "ListObjectsV2", &prefix))?;
        let mut keys = Vec::new();
        while keys.len() < limit {
            match lister.next().await {
                Some(Ok(entry)) => keys.push(entry.path().trim_start_matches('/').to_owned()),
                Some(Err(e)) => {
                    return Err(from_opendal(e, self.bucket(), "ListObjectsV2", &prefix));
                }
                None => break,
            }
        }
        Ok(keys)
    }

    /// Whether `key` is a directory: its `key/` marker or anything under it.
    /// After the last object of a directory that has no marker is deleted
    /// (or renamed away), writes the marker: on a filesystem the directory
    /// stays until it is removed, and clients that delete a tree file by
    /// file and then `rmdir` each directory (curl, lftp) rely on that. Best
    /// effort: the delete itself already happened.
    async fn keep_parent(&self, key: &str) {
        let Some((parent, _)) = key.rsplit_once('/') else {
            return;
        };
        match self.keys_under(parent, 1).await {
            Ok(keys) if keys.is_empty() => {
                let marker = format!("{parent}/");
                if let Err(e) = self.inner.op.create_dir(&marker).await {
                    let e = from_opendal(e, self.bucket(), "PutObject", &marker);
                    tracing::warn!("could not keep directory {parent:?}: {}", e.message);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("could not check directory {parent:?}: {}", e.message),
        }
    }

    async fn is_dir(&self, key: &str) -> Result<bool> {
        Ok(!self.keys_under(key, 1).await?.is_empty())
    }

    fn is_a_directory(key: &Key) -> Error {
        Error::new(
            ErrorKind::IsADirectory,
            format!("{}: is a directory", shown(key)),
        )
    }

    /// The error for a key that is no object: "is a directory" when there
    /// are objects under it, else "not found".
    async fn no_object(&self, key: &Key) -> Error {
        match self.is_dir(key.as_str()).await {
            Ok(true) => Self::is_a_directory(key),
            Ok(false) => Error::not_found(shown(key)),
            Err(error) => error,
        }
    }
}

fn shown(key: &Key) -> &str {
    if key.is_root() { "/" } else { key.as_str() }
}

#[async_trait]
impl Store for S3Store {
    async fn quiesce(&self) {
        let background = &self.inner.background;
        background.close();
        background.wait().await;
        // Uploads may still start later (quiesce is not shutdown itself).
        background.reopen();
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            random_write: false,
            rename_directory: false,
            set_times: false,
        }
    }

    async fn head(&self, key: &Key) -> Result<Option<Meta>> {
        if key.is_root() {
            return Ok(Some(Meta::directory()));
        }
        if let Some((meta, _)) = self.head_object(key.as_str()).await? {
            return Ok(Some(meta));
        }
        Ok(self.is_dir(key.as_str()).await?.then(Meta::directory))
    }

    async fn list(&self, dir: &Key) -> Result<Box<dyn Lister>> {
        let (path, prefix) = if dir.is_root() {
            ("/".to_owned(), String::new())
        } else {
            let prefix = format!("{}/", dir.as_str());
            (prefix.clone(), prefix)
        };
        let page_size = self.inner.config.list_page_size;
        let options = ListOptions {
            limit: Some(page_size),
            recursive: false,
            ..Default::default()
        };
        let lister = self
            .inner
            .op
            .lister_options(&path, options)
            .await
            .map_err(|e| from_opendal(e, self.bucket(), "ListObjectsV2", &path))?;
        Ok(Box::new(lister::S3Lister::new(
            lister,
            self.bucket().to_owned(),
            prefix,
            page_size,
        )))
    }

    async fn open_read(&self, key: &Key) -> Result<Box<dyn Reader>> {
        if key.is_root() {
            return Err(Self::is_a_directory(key));
        }
        let Some((meta, _)) = self.head_object(key.as_str()).await? else {
            return Err(self.no_object(key).await);
        };
        let config = &self.inner.config;
        Ok(Box::new(reader::S3Reader::new(
            self.inner.op.clone(),
            self.bucket().to_owned(),
            key.as_str().to_owned(),
            &meta,
            config.read_chunk_size as u64,
            config.read_ahead as u64,
            self.inner.stats.clone(),
        )))
    }

    async fn open_write(&self, key: &Key) -> Result<Box<dyn Writer>> {
        if key.is_root() || self.is_dir(key.as_str()).await? {
            return Err(Self::is_a_directory(key));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| Error::internal(format!("s3 uploads need a tokio runtime: {e}")))?;
        let config = &self.inner.config;
        Ok(Box::new(writer::S3Writer::new(
            self.inner.raw.clone(),
            key.as_str().to_owned(),
            config.upload_part_size,
            config.upload_concurrency,
            runtime,
            self.inner.stats.clone(),
            self.inner.background.clone(),
        )))
    }

    async fn tags(&self, key: &Key) -> Result<Vec<(String, String)>> {
        if key.is_root() {
            return Err(Self::is_a_directory(key));
        }
        self.inner.raw.get_object_tagging(key.as_str()).await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        if key.is_root() {
            return Err(Self::is_a_directory(key));
        }
        if self.head_object(key.as_str()).await?.is_none() {
            return Err(self.no_object(key).await);
        }
        self.inner
            .op
            .delete(key.as_str())
            .await
            .map_err(|e| from_opendal(e, self.bucket(), "DeleteObject", key.as_str()))?;
        self.keep_parent(key.as_str()).await;
        Ok(())
    }

    async fn create_dir(&self, key: &Key) -> Result<()> {
        if self.head(key).await?.is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("{}: already exists", shown(key)),
            ));
        }
        let marker = format!("{}/", key.as_str());
        self.inner
            .op
            .create_dir(&marker)
            .await
            .map_err(|e| from_opendal(e, self.bucket(), "PutObject", &marker))
    }

    async fn delete_dir(&self, key: &Key) -> Result<()> {
        if key.is_root() {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "the store root cannot be removed",
            ));
        }
        let marker = format!("{}/", key.as_str());
        // The marker sorts before every other key under it, so two keys tell
        // "only the marker" from "something else too".
        let keys = self.keys_under(key.as_str(), 2).await?;
        if keys.iter().any(|k| *k != marker) {
            return Err(Error::new(
                ErrorKind::DirectoryNotEmpty,
                format!("{}: directory not empty", shown(key)),
            ));
        }
        if keys.is_empty() {
            if self.head_object(key.as_str()).await?.is_some() {
                return Err(Error::new(
                    ErrorKind::NotADirectory,
                    format!("{}: not a directory", shown(key)),
                ));
            }
            return Err(Error::not_found(shown(key)));
        }
        self.inner
            .op
            .delete(&marker)
            .await
            .map_err(|e| from_opendal(e, self.bucket(), "DeleteObject", &marker))?;
        self.keep_parent(key.as_str()).await;
        Ok(())
    }

    async fn copy(&self, from: &Key, to: &Key) -> Result<()> {
        if from.is_root() {
            return Err(Self::is_a_directory(from));
        }
        let Some((meta, etag)) = self.head_object(from.as_str()).await? else {
            return Err(self.no_object(from).await);
        };
        if to.is_root() || self.is_dir(to.as_str()).await? {
            return Err(Self::is_a_directory(to));
        }
        let config = &self.inner.config;
        if meta.size > config.multipart_copy_threshold {
            return copy::multipart_copy(
                &self.inner.raw,
                from.as_str(),
                to.as_str(),
                meta.size,
                etag.as_deref(),
                config.copy_part_size,
                config.upload_concurrency,
            )
            .await;
        }
        self.inner
            .op
            .copy(from.as_str(), to.as_str())
            .await
            .map(|_| ())
            .map_err(|e| from_opendal(e, self.bucket(), "CopyObject", &format!("{from} (to {to})")))
    }
}
