//! How entries are shown to clients, the same on every protocol: default
//! permissions, the `ls -l` line (SFTP `longname`, FTP `LIST`), and names
//! that hold control characters.

use std::borrow::Cow;
use std::fmt::Write;
use std::time::SystemTime;

use time::OffsetDateTime;
use time::macros::format_description;

use crate::fs::Metadata;

/// Entries more than this far in the past show their year instead of
/// their time in `ls -l` lines (as `ls` does).
const SIX_MONTHS_SECS: u64 = 182 * 24 * 3600;

impl Metadata {
    /// Unix permission bits: the store's where it keeps them, else
    /// `0755` for directories and `0644` for files.
    pub fn permissions(&self) -> u32 {
        self.mode
            .unwrap_or(if self.is_dir() { 0o755 } else { 0o644 })
            & 0o7777
    }
}

/// Whether a name may be given to a new file or directory: no control
/// characters (0x01-0x1F, 0x7F), which would forge lines in FTP listings
/// and terminals (SPEC section 5; NUL never gets this far).
pub(crate) fn is_acceptable_name(name: &str) -> bool {
    !name.chars().any(|c| c.is_ascii_control())
}

/// A stored name as it is listed: control characters (which only names
/// made outside wharf can hold) escaped as `\xNN`, so no listing line can
/// be forged by a name.
pub fn display_name(name: &str) -> Cow<'_, str> {
    if !name.chars().any(|c| c.is_ascii_control()) {
        return Cow::Borrowed(name);
    }
    let mut shown = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        if c.is_ascii_control() {
            let _ = write!(shown, "\\x{:02x}", c as u32);
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

/// An `ls -l` line without a line ending, as OpenSSH's sftp-server writes
/// it and FTP clients (lftp, curl, FileZilla, WinSCP) parse it:
/// `-rw-r--r--    1 alice    alice        1234 Jan  2 15:04 name`, with the
/// year instead of the time for dates more than six months ago (or more
/// than an hour ahead).
pub fn ls_line(name: &str, meta: &Metadata, owner: &str, now: SystemTime) -> String {
    let mode = meta.permissions();
    let mut perms = String::with_capacity(10);
    perms.push(if meta.is_dir() { 'd' } else { '-' });
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        perms.push(if bits & 4 != 0 { 'r' } else { '-' });
        perms.push(if bits & 2 != 0 { 'w' } else { '-' });
        perms.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    let modified = meta.modified.unwrap_or(SystemTime::UNIX_EPOCH);
    let recent = match now.duration_since(modified) {
        Ok(age) => age.as_secs() < SIX_MONTHS_SECS,
        Err(ahead) => ahead.duration().as_secs() < 3600,
    };
    let date = OffsetDateTime::from(modified);
    let when = if recent {
        date.format(format_description!(
            "[month repr:short] [day padding:space] [hour]:[minute]"
        ))
    } else {
        date.format(format_description!(
            "[month repr:short] [day padding:space]  [year]"
        ))
    }
    .unwrap_or_default();
    format!(
        "{perms}    1 {owner:<8} {owner:<8} {size:>8} {when} {name}",
        size = meta.size,
        name = display_name(name),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Kind;

    fn meta(kind: Kind, size: u64, modified: SystemTime) -> Metadata {
        Metadata {
            kind,
            size,
            modified: Some(modified),
            mode: None,
        }
    }

    #[track_caller]
    fn check(name: &str, meta: &Metadata, now: SystemTime, expected: &str) {
        assert_eq!(ls_line(name, meta, "alice", now), expected);
    }

    #[test]
    fn ls_lines() {
        // 2026-01-02 15:04:05 UTC
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_366_245);
        let day = Duration::from_secs(24 * 3600);
        check(
            "a b.txt",
            &meta(Kind::File, 1234, when),
            when + day,
            "-rw-r--r--    1 alice    alice        1234 Jan  2 15:04 a b.txt",
        );
        check(
            "dir",
            &meta(Kind::Directory, 0, when),
            when + 200 * day,
            "drwxr-xr-x    1 alice    alice           0 Jan  2  2026 dir",
        );
        // Slightly in the future (clock skew): the time; far ahead: the year.
        check(
            "f",
            &meta(Kind::File, 1, when + Duration::from_secs(60)),
            when,
            "-rw-r--r--    1 alice    alice           1 Jan  2 15:05 f",
        );
        check(
            "f",
            &meta(Kind::File, 1, when + 30 * day),
            when,
            "-rw-r--r--    1 alice    alice           1 Feb  1  2026 f",
        );
        let mut executable = meta(Kind::File, 0, when);
        executable.mode = Some(0o100750);
        assert!(ls_line("x", &executable, "a", when).starts_with("-rwxr-x---"));
    }

    #[test]
    fn control_characters_are_escaped_never_listed_raw() {
        assert_eq!(display_name("plain name"), "plain name");
        assert_eq!(display_name("résumé 日本"), "résumé 日本");
        assert_eq!(display_name("a\r\nb\x7f"), "a\\x0d\\x0ab\\x7f");
        let line = ls_line(
            "evil\r\n-rw-r--r-- 1 x x 1 Jan 1 00:00 forged",
            &meta(Kind::File, 1, SystemTime::UNIX_EPOCH),
            "a",
            SystemTime::UNIX_EPOCH,
        );
        assert!(!line.contains('\r') && !line.contains('\n'), "{line}");
        assert!(is_acceptable_name("ok name.txt"));
        assert!(!is_acceptable_name("bad\tname"));
        assert!(!is_acceptable_name("bad\x7f"));
    }
}
