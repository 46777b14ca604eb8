//! How entries are written in LIST, NLST, MLSD/MLST, SIZE and MDTM, and
//! listings as text page by page. Entry lines are pure functions: one entry
//! in, one line out, so listings stream page by page and never sit whole in
//! memory.

use std::fmt::Write;
use std::time::SystemTime;

use time::OffsetDateTime;
use time::macros::format_description;
use wharf_vfs::{DirListing, Kind, Metadata};

/// Entries asked of the store per listing page, written before the next
/// page is asked for.
pub(crate) const LIST_PAGE: usize = 1000;

/// What a listing writes per entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListFormat {
    /// LIST (and STAT of a path): `ls -l` lines.
    Long,
    /// NLST: names.
    Names,
    /// MLSD: facts.
    Facts,
}

/// What is listed: a directory's pages, or one file as itself.
pub(crate) enum ListSource {
    Directory(DirListing),
    File(String, Metadata),
}

/// A listing's text, page by page: each page is asked of the store and
/// formatted when the caller asks for it, once it has written the one
/// before, so memory stays at one page whatever the directory's size.
pub(crate) struct Pages {
    /// `None` once all was given.
    source: Option<ListSource>,
    format: ListFormat,
    now: SystemTime,
}

impl Pages {
    pub(crate) fn new(source: ListSource, format: ListFormat) -> Pages {
        Pages {
            source: Some(source),
            format,
            now: SystemTime::now(),
        }
    }

    /// The next page: its text and how many entries it holds; `None` at
    /// the end.
    pub(crate) async fn next(&mut self) -> Result<Option<(String, usize)>, wharf_vfs::Error> {
        let mut text = String::new();
        match self.source.take() {
            None => Ok(None),
            Some(ListSource::File(name, meta)) => {
                self.entry(&mut text, &name, &meta);
                Ok(Some((text, 1)))
            }
            Some(ListSource::Directory(mut listing)) => {
                let Some(page) = listing.next_page(LIST_PAGE).await? else {
                    return Ok(None);
                };
                for entry in &page {
                    self.entry(&mut text, &entry.name, &entry.meta);
                }
                self.source = Some(ListSource::Directory(listing));
                Ok(Some((text, page.len())))
            }
        }
    }

    fn entry(&self, out: &mut String, name: &str, meta: &Metadata) {
        match self.format {
            ListFormat::Long => list_line(out, name, meta, self.now),
            ListFormat::Names => name_line(out, name),
            ListFormat::Facts => facts_line(out, name, meta),
        }
    }
}

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

    #[tokio::test]
    async fn a_file_lists_as_one_page() {
        let source = ListSource::File("a.txt".to_owned(), meta(Kind::File, 5, T));
        let mut pages = Pages::new(source, ListFormat::Names);
        assert_eq!(
            pages.next().await.ok().flatten(),
            Some(("a.txt\r\n".to_owned(), 1))
        );
        assert_eq!(pages.next().await.ok().flatten(), None);
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
