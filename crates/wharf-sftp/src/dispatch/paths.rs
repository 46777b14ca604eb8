//! Requests on a path: STAT and LSTAT (alike: there are no links), SETSTAT,
//! REMOVE, RENAME and `posix-rename@openssh.com`, REALPATH and
//! `expand-path@openssh.com`; READLINK and SYMLINK are refused. Also the
//! answer to a path that is not UTF-8.

use bytes::Bytes;
use wharf_vfs::{Error, VirtualPath};

use super::replies::ok;
use super::{Shared, attrs};
use crate::codec::{self, Attrs, Reply, StatusCode};

/// STAT and LSTAT.
pub(super) async fn stat(shared: &Shared, id: u32, input: &str) -> Result<Bytes, Error> {
    let path = shared.path(input)?;
    Ok(codec::attrs(id, &attrs::of(&shared.fs.stat(&path).await?)))
}

/// SETSTAT.
pub(super) async fn setstat(
    shared: &Shared,
    id: u32,
    input: &str,
    attrs: &Attrs,
) -> Result<Bytes, Error> {
    let path = shared.path(input)?;
    set_attrs(shared, id, &path, attrs).await
}

/// SETSTAT, and FSETSTAT of a handle other than a write handle's.
/// Permissions and ownership are accepted and ignored, as AWS Transfer
/// Family's ENABLE_NO_OP does; times are applied where the store keeps
/// them; a size is refused unless it is the size the file has.
pub(super) async fn set_attrs(
    shared: &Shared,
    id: u32,
    path: &VirtualPath,
    attrs: &Attrs,
) -> Result<Bytes, Error> {
    if let Some(size) = attrs.size {
        let meta = shared.fs.stat(path).await?;
        if meta.size != size && !meta.is_dir() {
            return Ok(codec::status(
                id,
                StatusCode::OpUnsupported,
                "changing a file's size (truncate) is not supported",
            ));
        }
    }
    shared.fs.set_modified(path, attrs::modified(attrs)).await?;
    Ok(ok(id))
}

/// REMOVE.
pub(super) async fn remove(shared: &Shared, id: u32, input: &str) -> Result<Bytes, Error> {
    shared.fs.remove(&shared.path(input)?).await?;
    Ok(ok(id))
}

/// RENAME, for which an existing destination is an error, and
/// `posix-rename@openssh.com`, which replaces it (`replace`).
pub(super) async fn rename(
    shared: &Shared,
    id: u32,
    from: &str,
    to: &str,
    replace: bool,
) -> Result<Bytes, Error> {
    let from = shared.path(from)?;
    let to = shared.path(to)?;
    shared.fs.rename(&from, &to, replace).await?;
    Ok(ok(id))
}

/// REALPATH: the path normalised (against the home directory).
pub(super) fn realpath(shared: &Shared, id: u32, input: &str) -> Result<Bytes, Error> {
    Ok(name(id, &shared.path(input)?))
}

/// `expand-path@openssh.com`: REALPATH where `~` is the home directory.
pub(super) fn expand(shared: &Shared, id: u32, input: &str) -> Result<Bytes, Error> {
    let relative = if input == "~" {
        ""
    } else {
        input.strip_prefix("~/").unwrap_or(input)
    };
    realpath(shared, id, relative)
}

/// READLINK and SYMLINK.
pub(super) fn no_links(id: u32) -> Bytes {
    codec::status(
        id,
        StatusCode::OpUnsupported,
        "symbolic links are not supported",
    )
}

/// A request whose path is not UTF-8.
pub(super) fn not_utf8(id: u32) -> Bytes {
    codec::status(id, StatusCode::BadMessage, "file names must be UTF-8")
}

/// A NAME reply with one entry, `path`.
fn name(id: u32, path: &VirtualPath) -> Bytes {
    let mut reply = Reply::new(codec::SSH_FXP_NAME, id, 16 + 2 * path.as_str().len());
    reply
        .u32(1)
        .string(path.as_str().as_bytes())
        .string(path.as_str().as_bytes())
        .attrs(&Attrs::default());
    reply.finish()
}
