//! How entries are written in LIST, NLST, MLSD/MLST, SIZE and MDTM.
//! Pure functions: one entry in, one line out, so listings stream page by
//! page and never sit whole in memory.

use std::fmt::Write;
use std::time::SystemTime;

use time::OffsetDateTime;
use time::macros::format_description;
use wharf_vfs::{Kind, Metadata};

/// An `ls -l` line ([`wharf_vfs::ls_line`], the same as SFTP's), owned by
/// `ftp` as vsftpd shows it.
pub(crate) fn list_line(out: &mut String, name: &str, meta: &Metadata, now: SystemTime) {
    out.push_str(&wharf_vfs::ls_line(name, meta, "ftp", now));
    out.push_str("\r\n");
}

/// An NLST line: the name.
pub(crate) fn name_line(out: &mut String, name: &str) {
    out.push_str(name);
    out.push_str("\r\n");
}

/// MLSD/MLST facts (RFC 3659): `type=file;size=5;modify=...;perm=...; `
/// followed by the name.
pub(crate) fn facts_line(out: &mut String, name: &str, meta: &Metadata) {
    let _ = match meta.kind {
        Kind::Directory => write!(out, "type=dir;"),
        Kind::File => write!(out, "type=file;size={};", meta.size),
    };
    if let Some(modified) = meta.modified {
        let _ = write!(out, "modify={};", timestamp(modified));
    }
    let perm = match meta.kind {
        Kind::Directory => "elcmpfd",
        Kind::File => "radfw",
    };
    let _ = write!(out, "perm={perm}; {name}\r\n");
}

/// `YYYYMMDDHHMMSS` in UTC, as MDTM and MLSx `modify` want.
pub(crate) fn timestamp(when: SystemTime) -> String {
    OffsetDateTime::from(when)
        .format(format_description!(
            "[year][month][day][hour][minute][second]"
        ))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn meta(kind: Kind, size: u64, secs: u64) -> Metadata {
        Metadata {
            kind,
            size,
            modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
            mode: None,
        }
    }

    // 2024-01-02 15:04:05 UTC
    const T: u64 = 1_704_207_845;

    #[test]
    fn ls_lines() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(T + 60);
        let mut out = String::new();
        list_line(&mut out, "a.txt", &meta(Kind::File, 5, T), now);
        assert_eq!(
            out,
            "-rw-r--r--    1 ftp      ftp             5 Jan  2 15:04 a.txt\r\n"
        );
        out.clear();
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(T + 400 * 86400);
        list_line(&mut out, "my dir", &meta(Kind::Directory, 0, T), old);
        assert_eq!(
            out,
            "drwxr-xr-x    1 ftp      ftp             0 Jan  2  2024 my dir\r\n"
        );
    }

    #[test]
    fn facts_and_timestamps() {
        let mut out = String::new();
        facts_line(&mut out, "a.txt", &meta(Kind::File, 5, T));
        assert_eq!(
            out,
            "type=file;size=5;modify=20240102150405;perm=radfw; a.txt\r\n"
        );
        out.clear();
        let dir = Metadata {
            modified: None,
            ..meta(Kind::Directory, 0, 0)
        };
        facts_line(&mut out, "d", &dir);
        assert_eq!(out, "type=dir;perm=elcmpfd; d\r\n");
        assert_eq!(
            timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(T)),
            "20240102150405"
        );
    }
}
