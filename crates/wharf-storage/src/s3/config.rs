//! [`S3Config`]: how to reach one bucket, its documented defaults, the
//! checks made before any request, and what the clients are built from
//! (the endpoint, the bucket's URL, the credential chain).

use std::fmt;
use std::time::Duration;

use reqsign_aws_v4::{Credential, DefaultCredentialProvider, StaticCredentialProvider};
use reqsign_core::ProvideCredentialChain;

use super::{MAX_PART_SIZE, MIN_PART_SIZE};
use crate::{Error, ErrorKind, Result};

/// Server-side encryption requested on every write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    /// `AES256`: keys managed by S3 (SSE-S3).
    Aes256,
    /// `aws:kms`: SSE-KMS with the given key (id, alias or ARN), or with the
    /// AWS-managed key `aws/s3` when `None`.
    Kms { kms_key_id: Option<String> },
}

/// How to reach one bucket. Plain data: the binary maps `[storage.NAME]`
/// onto it; [`S3Config::new`] gives the documented defaults.
#[derive(Clone)]
pub struct S3Config {
    pub bucket: String,
    /// `http(s)://host[:port]`; `None` is AWS (`https://s3.REGION.amazonaws.com`).
    pub endpoint: Option<String>,
    pub region: String,
    /// `endpoint/bucket/key` (true) or `bucket.endpoint/key` (false).
    pub path_style: bool,
    /// Static credentials. Without them the standard AWS chain is used:
    /// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, then the
    /// profile in `~/.aws/credentials` (`AWS_PROFILE`), then web identity,
    /// ECS and EC2 instance roles.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub server_side_encryption: Option<Sse>,
    /// Bytes per multipart part, at least [`MIN_PART_SIZE`]. Objects smaller
    /// than this are one PutObject.
    pub upload_part_size: usize,
    /// Parts held per upload, the one being filled included (so at most
    /// this many are in flight). Memory per upload stays within
    /// `upload_part_size * upload_concurrency`.
    pub upload_concurrency: usize,
    /// Time limit of one HTTP request attempt.
    pub request_timeout: Duration,
    /// Retries of a request that failed transiently (connection errors,
    /// timeouts, 5xx, throttling), with exponential backoff.
    pub retries: usize,
    /// Bytes per read-ahead GET of a sequential reader.
    pub read_chunk_size: usize,
    /// Chunks a sequential reader keeps downloading ahead of its reads;
    /// memory per reader stays within `read_chunk_size * (read_ahead + 2)`.
    pub read_ahead: usize,
    /// Keys per ListObjectsV2 page (at most 1000).
    pub list_page_size: usize,
    /// Objects larger than this (at most 5 GiB, CopyObject's limit) are
    /// copied with UploadPartCopy, in parts of `copy_part_size`.
    pub multipart_copy_threshold: u64,
    pub copy_part_size: u64,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("server_side_encryption", &self.server_side_encryption)
            .field("upload_part_size", &self.upload_part_size)
            .field("upload_concurrency", &self.upload_concurrency)
            .field("request_timeout", &self.request_timeout)
            .field("retries", &self.retries)
            .field("read_chunk_size", &self.read_chunk_size)
            .field("read_ahead", &self.read_ahead)
            .field("list_page_size", &self.list_page_size)
            .field("multipart_copy_threshold", &self.multipart_copy_threshold)
            .field("copy_part_size", &self.copy_part_size)
            .finish()
    }
}

impl S3Config {
    /// The bucket on AWS in `us-east-1`, path style, credentials from the
    /// standard chain, no SSE, 8 MiB parts x 4, 60 s per request, 3 retries,
    /// 8 MiB read-ahead chunks x 2, 1000 keys per listing page, multipart
    /// copies above 5 GiB in 512 MiB parts.
    pub fn new(bucket: impl Into<String>) -> S3Config {
        S3Config {
            bucket: bucket.into(),
            endpoint: None,
            region: "us-east-1".to_owned(),
            path_style: true,
            access_key_id: None,
            secret_access_key: None,
            server_side_encryption: None,
            upload_part_size: 8 << 20,
            upload_concurrency: 4,
            request_timeout: Duration::from_secs(60),
            retries: 3,
            read_chunk_size: 8 << 20,
            read_ahead: 2,
            list_page_size: 1000,
            multipart_copy_threshold: MAX_PART_SIZE as u64,
            copy_part_size: 512 << 20,
        }
    }

    pub(super) fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(Error::new(ErrorKind::Internal, message));
        if self.bucket.is_empty() {
            return invalid("s3 store: bucket is empty".to_owned());
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.upload_part_size) {
            return invalid(format!(
                "s3 store: upload_part_size must be between 5 MiB and 5 GiB, not {} bytes",
                self.upload_part_size
            ));
        }
        if self.upload_concurrency == 0 {
            return invalid("s3 store: upload_concurrency must be at least 1".to_owned());
        }
        if self.request_timeout.is_zero() {
            return invalid("s3 store: request_timeout must not be zero".to_owned());
        }
        if self.read_chunk_size == 0 {
            return invalid("s3 store: read_chunk_size must not be zero".to_owned());
        }
        if !(1..=1000).contains(&self.list_page_size) {
            return invalid(format!(
                "s3 store: list_page_size must be between 1 and 1000, not {}",
                self.list_page_size
            ));
        }
        let parts = MIN_PART_SIZE as u64..=MAX_PART_SIZE as u64;
        if !parts.contains(&self.multipart_copy_threshold) || !parts.contains(&self.copy_part_size)
        {
            return invalid(format!(
                "s3 store: multipart_copy_threshold and copy_part_size must be between 5 MiB \
                 and 5 GiB, not {} and {}",
                self.multipart_copy_threshold, self.copy_part_size
            ));
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return invalid(
                "s3 store: set both access_key_id and secret_access_key, or neither".to_owned(),
            );
        }
        if let Some(endpoint) = &self.endpoint {
            match reqwest::Url::parse(endpoint) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
                _ => {
                    return invalid(format!(
                        "s3 store: endpoint {endpoint:?} is not an http(s) URL"
                    ));
                }
            }
        }
        Ok(())
    }

    pub(super) fn endpoint(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.trim_end_matches('/').to_owned(),
            None => format!("https://s3.{}.amazonaws.com", self.region),
        }
    }

    /// The URL objects are under: `endpoint/bucket` or `bucket.endpoint`.
    pub(super) fn bucket_url(&self) -> Result<String> {
        let endpoint = self.endpoint();
        if self.path_style {
            return Ok(format!("{endpoint}/{}", self.bucket));
        }
        let url = reqwest::Url::parse(&endpoint)
            .map_err(|e| Error::internal(format!("s3 store: bad endpoint {endpoint:?}: {e}")))?;
        let host = url.host_str().ok_or_else(|| {
            Error::internal(format!("s3 store: endpoint {endpoint:?} has no host"))
        })?;
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let path = url.path().trim_end_matches('/');
        Ok(format!(
            "{}://{}.{host}{port}{path}",
            url.scheme(),
            self.bucket
        ))
    }

    pub(super) fn credentials(&self) -> ProvideCredentialChain<Credential> {
        match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(secret)) => {
                ProvideCredentialChain::new().push(StaticCredentialProvider::new(id, secret))
            }
            _ => ProvideCredentialChain::new().push(DefaultCredentialProvider::new()),
        }
    }
}
