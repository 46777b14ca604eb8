//! Server-side copies too large for one CopyObject (more than 5 GiB): a
//! multipart upload whose parts are UploadPartCopy ranges of the source.
//!
//! Signed by us rather than by opendal because opendal sends the
//! `x-amz-server-side-encryption` headers on UploadPartCopy and
//! CompleteMultipartUpload too, which AWS refuses ("header is not supported
//! for this operation"); here they go on CreateMultipartUpload only.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use super::raw::{ABORT_ATTEMPTS, MAX_PARTS, Part, Raw};
use crate::Result;

/// Aborts the upload when dropped, unless it completed: a failed copy, or
/// one whose future was dropped, leaves no parts behind.
struct AbortOnDrop {
    raw: Arc<Raw>,
    key: String,
    upload_id: Option<String>,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else {
            return;
        };
        let raw = self.raw.clone();
        let key = std::mem::take(&mut self.key);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    raw.abort_with_retries(&key, &upload_id, ABORT_ATTEMPTS)
                        .await;
                });
            }
            Err(_) => tracing::warn!(
                bucket = raw.bucket(),
                key,
                upload_id,
                "a failed copy left a multipart upload that could not be aborted"
            ),
        }
    }
}

/// The part ranges `(number, start, end)` for copying `size` bytes in parts
/// of about `part_size` (more when 10,000 parts would not be enough).
pub(crate) fn ranges(size: u64, part_size: u64) -> Vec<(u32, u64, u64)> {
    let part_size = part_size.max(size.div_ceil(u64::from(MAX_PARTS))).max(1);
    (0..size.div_ceil(part_size))
        .map(|i| {
            let start = i * part_size;
            (
                u32::try_from(i + 1).unwrap_or(MAX_PARTS),
                start,
                (start + part_size).min(size),
            )
        })
        .collect()
}

/// Copies `from` (of `size` bytes, while it has `etag`) to `to`.
pub(crate) async fn multipart_copy(
    raw: &Arc<Raw>,
    from: &str,
    to: &str,
    size: u64,
    etag: Option<&str>,
    part_size: u64,
    concurrency: usize,
) -> Result<()> {
    let upload_id = raw.create_multipart(to).await?;
    let mut guard = AbortOnDrop {
        raw: raw.clone(),
        key: to.to_owned(),
        upload_id: Some(upload_id.clone()),
    };
    let mut parts: Vec<Part> = futures::stream::iter(ranges(size, part_size))
        .map(|(number, start, end)| {
            raw.upload_part_copy(to, &upload_id, number, from, etag, start, end)
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    parts.sort_by_key(|part| part.number);
    raw.complete(to, &upload_id, &parts).await?;
    guard.upload_id = None;
    Ok(())
}
