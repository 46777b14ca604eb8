//! One file over the control connection: its facts (SIZE, MDTM), renaming
//! (RNFR then RNTO) and deletion (DELE).

use std::io;

use wharf_vfs::{Error, ErrorKind, Kind, UserFs};

use super::{FtpSession, Next};
use crate::listing;
use crate::reply::Code;

impl FtpSession {
    pub(super) async fn size(&mut self, fs: &UserFs, arg: &str) -> io::Result<Next> {
        match self.stat_of(fs, arg).await {
            Ok((_, meta)) if meta.kind == Kind::File => {
                self.reply(Code::FileStatus, meta.size.to_string()).await
            }
            Ok((path, _)) => {
                self.fail(&Error::new(
                    ErrorKind::IsADirectory,
                    format!("{path}: a directory"),
                ))
                .await
            }
            Err(error) => self.fail(&error).await,
        }
    }

    pub(super) async fn mdtm(&mut self, fs: &UserFs, arg: &str) -> io::Result<Next> {
        match self.stat_of(fs, arg).await {
            Ok((_, meta)) => match meta.modified {
                Some(when) => self.reply(Code::FileStatus, listing::timestamp(when)).await,
                None => {
                    self.reply(Code::Unavailable, "No modification time known.")
                        .await
                }
            },
            Err(error) => self.fail(&error).await,
        }
    }

    pub(super) async fn dele(&mut self, fs: &UserFs, arg: &str) -> io::Result<Next> {
        match async { fs.remove(&self.path(fs, arg)?).await }.await {
            Ok(()) => self.reply(Code::FileActionOk, "File deleted.").await,
            Err(error) => self.fail(&error).await,
        }
    }

    /// RNFR: what exists is remembered for the RNTO that must follow.
    pub(super) async fn rnfr(&mut self, fs: &UserFs, arg: &str) -> io::Result<Next> {
        match self.stat_of(fs, arg).await {
            Ok((path, _)) => {
                self.rename_from = Some(path);
                self.reply(Code::Pending, "Ready for RNTO.").await
            }
            Err(error) => self.fail(&error).await,
        }
    }

    pub(super) async fn rnto(&mut self, fs: &UserFs, arg: &str) -> io::Result<Next> {
        let Some(from) = self.rename_from.take() else {
            return self.reply(Code::BadSequence, "Send RNFR first.").await;
        };
        // Like rename(2) and other FTP servers: the target is replaced.
        match async { fs.rename(&from, &self.path(fs, arg)?, true).await }.await {
            Ok(()) => self.reply(Code::FileActionOk, "Renamed.").await,
            Err(error) => self.fail(&error).await,
        }
    }
}
