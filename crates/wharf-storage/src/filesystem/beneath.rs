//! Keys resolved from directory descriptors: every path is opened with
//! `openat2(RESOLVE_BENEATH)` from the store root (for the key's anchor)
//! and then from the anchor (for the rest), so a symbolic link never leads
//! outside the anchor. Also the metadata of what is found.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

use super::TEMP_PREFIX;
use super::error::errno;
use crate::{Error, ErrorKind, Key, Kind, Meta, Result};

fn beneath() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS
}

pub(super) fn meta_of(stat: &rustix::fs::Stat) -> Meta {
    let kind = if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
        Kind::Directory
    } else {
        Kind::File
    };
    let modified = u64::try_from(stat.st_mtime).ok().map(|secs| {
        UNIX_EPOCH + Duration::new(secs, u32::try_from(stat.st_mtime_nsec).unwrap_or(0))
    });
    Meta {
        kind,
        size: if kind == Kind::File {
            u64::try_from(stat.st_size).unwrap_or(0)
        } else {
            0
        },
        modified,
        mode: Some(stat.st_mode & 0o7777),
    }
}

/// Splits `a/b/c` into `("a/b", "c")` and `c` into `("", "c")`.
fn split_parent(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((parent, name)) => (parent, name),
        None => ("", path),
    }
}

/// Where a key is resolved from: a directory descriptor and a path below it.
pub(super) struct Resolved {
    pub(super) base: OwnedFd,
    /// Relative to `base`; empty for `base` itself.
    pub(super) path: String,
}

pub(super) struct Fs {
    pub(super) root: Arc<OwnedFd>,
}

impl Fs {
    pub(super) fn open_beneath(
        base: BorrowedFd<'_>,
        path: &str,
        flags: OFlags,
    ) -> rustix::io::Result<OwnedFd> {
        // openat2 insists on a zero mode unless a file may be created (O_TMPFILE
        // includes the O_DIRECTORY bit, hence `contains`).
        let mode = if flags.contains(OFlags::CREATE) || flags.contains(OFlags::TMPFILE) {
            Mode::from_raw_mode(0o666)
        } else {
            Mode::empty()
        };
        rustix::fs::openat2(
            base,
            if path.is_empty() { "." } else { path },
            flags | OFlags::CLOEXEC,
            mode,
            beneath(),
        )
    }

    /// Creates `path` and its missing parents below `base`, each step resolved
    /// beneath `base`.
    fn create_dirs(base: BorrowedFd<'_>, path: &str) -> Result<()> {
        if path.is_empty() {
            return Ok(());
        }
        let mut dir = Self::open_beneath(base, "", OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| errno(e, "cannot open directory"))?;
        for segment in path.split('/') {
            match rustix::fs::mkdirat(&dir, segment, Mode::from_raw_mode(0o777)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(errno(e, &format!("cannot create directory {path}"))),
            }
            dir = Self::open_beneath(dir.as_fd(), segment, OFlags::PATH | OFlags::DIRECTORY)
                .map_err(|e| errno(e, &format!("cannot open directory {path}")))?;
        }
        Ok(())
    }

    /// Finds the descriptor of the key's anchor and the path below it. With
    /// `create`, a missing anchor directory is created (a mapping target that
    /// does not exist yet is created by the first write).
    pub(super) fn resolve(&self, key: &Key, create: bool) -> Result<Option<Resolved>> {
        // Uploads in progress may carry these names: no client may name one
        // (to read, write or remove it), so they never show either.
        if key.as_str().split('/').any(|s| s.starts_with(TEMP_PREFIX)) {
            return Err(Error::new(
                ErrorKind::InvalidKey,
                format!("names beginning {TEMP_PREFIX} are reserved"),
            ));
        }
        let anchor = key.anchor();
        if anchor.is_empty() {
            let base = rustix::io::dup(self.root.as_fd()).map_err(|e| errno(e, "dup"))?;
            return Ok(Some(Resolved {
                base,
                path: key.rest().to_owned(),
            }));
        }
        let flags = OFlags::PATH | OFlags::DIRECTORY;
        let base = match Self::open_beneath(self.root.as_fd(), anchor, flags) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) if create => {
                Self::create_dirs(self.root.as_fd(), anchor)?;
                Self::open_beneath(self.root.as_fd(), anchor, flags)
                    .map_err(|e| errno(e, &format!("cannot open {anchor}")))?
            }
            Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => return Ok(None),
            Err(e) => return Err(errno(e, &format!("cannot open {anchor}"))),
        };
        Ok(Some(Resolved {
            base,
            path: key.rest().to_owned(),
        }))
    }

    /// The parent directory of the key (created with `create`) and its name;
    /// a missing parent is [`ErrorKind::NotFound`] for the key.
    pub(super) fn parent(&self, key: &Key, create: bool) -> Result<(OwnedFd, String)> {
        let resolved = if key.rest().is_empty() && !key.anchor().is_empty() {
            // The anchor itself (rmdir or rename of a mapping target): its
            // parent lies above the anchor, so resolve it from the root.
            Resolved {
                base: rustix::io::dup(self.root.as_fd()).map_err(|e| errno(e, "dup"))?,
                path: key.anchor().to_owned(),
            }
        } else {
            match self.resolve(key, create)? {
                Some(resolved) => resolved,
                None => return Err(Error::not_found(key)),
            }
        };
        let (parent, name) = split_parent(&resolved.path);
        if name.is_empty() {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "the store root cannot be changed",
            ));
        }
        let flags = OFlags::PATH | OFlags::DIRECTORY;
        let fd = match Self::open_beneath(resolved.base.as_fd(), parent, flags) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) if create => {
                Self::create_dirs(resolved.base.as_fd(), parent)?;
                Self::open_beneath(resolved.base.as_fd(), parent, flags)
                    .map_err(|e| errno(e, &format!("cannot open the parent of {key}")))?
            }
            Err(rustix::io::Errno::NOENT) => return Err(Error::not_found(key)),
            Err(rustix::io::Errno::NOTDIR) => {
                return Err(Error::new(
                    ErrorKind::NotADirectory,
                    format!("a parent of {key} is a file"),
                ));
            }
            Err(e) => return Err(errno(e, &format!("cannot open the parent of {key}"))),
        };
        Ok((fd, name.to_owned()))
    }

    pub(super) fn head(&self, key: &Key) -> Result<Option<Meta>> {
        let Some(resolved) = self.resolve(key, false)? else {
            return Ok(None);
        };
        match Self::open_beneath(resolved.base.as_fd(), &resolved.path, OFlags::PATH) {
            Ok(fd) => {
                let stat = rustix::fs::fstat(&fd).map_err(|e| errno(e, "stat"))?;
                Ok(Some(meta_of(&stat)))
            }
            Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => Ok(None),
            Err(e) => Err(errno(e, &format!("cannot stat {key}"))),
        }
    }

    /// The descriptor of an existing key, opened for reading.
    pub(super) fn open_file(&self, key: &Key) -> Result<OwnedFd> {
        let resolved = self
            .resolve(key, false)?
            .ok_or_else(|| Error::not_found(key))?;
        Fs::open_beneath(resolved.base.as_fd(), &resolved.path, OFlags::RDONLY)
            .map_err(|e| errno(e, &format!("cannot open {key}")))
    }
}
