//! Listings: LIST, NLST and MLSD over a data connection, STAT of a path
//! over the control connection (both page by page), MLST of one path.

use std::io;

use wharf_vfs::{Error, ErrorKind, UserFs};

use super::passive::Direction;
use super::{FtpSession, Next, User};
use crate::data::send_listing;
use crate::listing::{self, ListFormat, ListSource, Pages};
use crate::reply::{self, Code};

impl FtpSession {
    /// LIST, NLST or MLSD (`operation`), in `format`.
    pub(super) async fn list(
        &mut self,
        user: &User,
        arg: &str,
        format: ListFormat,
        operation: &str,
    ) -> io::Result<Next> {
        let fs = &user.fs;
        if self.data_protection_missing(fs, operation).await? {
            return Ok(Next::Continue);
        }
        let source = match self.list_source(fs, arg, format).await {
            Ok(source) => source,
            Err(error) => return self.fail(&error).await,
        };
        let shown = self
            .path(fs, strip_list_options(arg))
            .map(|p| p.to_string())
            .unwrap_or_default();
        let Some(mut data) = self
            .data_connection(user, operation, &shown, Direction::ToClient)
            .await?
        else {
            return Ok(Next::Continue);
        };
        let outcome = self
            .control
            .watch(send_listing(source, format, &mut data))
            .await;
        drop(data);
        self.finish(outcome, "Directory send OK.").await
    }

    /// MLST: the facts of one path (the working directory without one).
    pub(super) async fn mlst(&mut self, fs: &UserFs, arg: &str) -> io::Result<Next> {
        let arg = if arg.is_empty() { "." } else { arg };
        match self.stat_of(fs, arg).await {
            Ok((path, meta)) => {
                let mut facts = String::new();
                listing::facts_line(&mut facts, path.as_str(), &meta);
                let text = format!("Listing {}\n{}\nEnd", path, facts.trim_end());
                self.reply(Code::FileActionOk, text).await
            }
            Err(error) => self.fail(&error).await,
        }
    }

    /// STAT of a path: its listing over the control connection, streamed
    /// page by page like LIST.
    pub(super) async fn stat(&mut self, fs: &UserFs, arg: &str) -> io::Result<Next> {
        let source = match self.list_source(fs, arg, ListFormat::Long).await {
            Ok(source) => source,
            Err(error) => return self.fail(&error).await,
        };
        let first = format!("Status of {}:", strip_list_options(arg));
        self.control
            .send(&reply::first_line(Code::FileStatus, &first))
            .await?;
        let mut pages = Pages::new(source, ListFormat::Long);
        let listed = loop {
            match pages.next().await {
                Ok(Some((text, _))) => self.control.send(&reply::middle_lines(&text)).await?,
                Ok(None) => break Ok(()),
                Err(error) => break Err(error),
            }
        };
        match listed {
            Ok(()) => self.reply(Code::FileStatus, "End of status.").await,
            Err(error) => self.fail(&error).await,
        }
    }

    /// What LIST, NLST, MLSD and STAT list: the directory's entries, or a
    /// file as itself (except for MLSD, whose `Facts` are of directories
    /// only).
    async fn list_source(
        &self,
        fs: &UserFs,
        arg: &str,
        format: ListFormat,
    ) -> Result<ListSource, Error> {
        let target = strip_list_options(arg);
        let path = self.path(fs, if target.is_empty() { "." } else { target })?;
        match fs.list(&path).await {
            Ok(pages) => Ok(ListSource::Directory(pages)),
            Err(error) if error.kind == ErrorKind::NotADirectory && format != ListFormat::Facts => {
                let meta = fs.stat(&path).await?;
                if meta.is_dir() {
                    return Err(error);
                }
                Ok(ListSource::File(path.file_name().to_owned(), meta))
            }
            Err(error) => Err(error),
        }
    }
}

/// LIST arguments may start with `ls` options (`LIST -la`, `LIST -a dir`):
/// they are dropped; the rest is the path.
fn strip_list_options(arg: &str) -> &str {
    let mut rest = arg.trim_start();
    while rest.starts_with('-') {
        match rest.split_once(' ') {
            Some((_, after)) => rest = after.trim_start(),
            None => return "",
        }
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_options() {
        assert_eq!(strip_list_options("-la"), "");
        assert_eq!(strip_list_options("-a -l dir name"), "dir name");
        assert_eq!(strip_list_options("dir"), "dir");
        assert_eq!(strip_list_options(""), "");
    }
}
