//! The working directory and directories: PWD, CWD (CDUP is `CWD ..`), MKD
//! and RMD.

use std::io;

use wharf_vfs::{Error, ErrorKind, UserFs, VirtualPath};

use super::{FtpSession, Next};
use crate::reply::Code;

impl FtpSession {
    pub(super) async fn pwd(&mut self) -> io::Result<Next> {
        let text = format!("{} is the current directory.", quote(self.cwd.as_str()));
        self.reply(Code::Path, text).await
    }

    /// CWD; without a path, to the home directory.
    pub(super) async fn cwd(&mut self, fs: &UserFs, arg: &str) -> io::Result<Next> {
        match self.directory(fs, arg).await {
            Ok(target) => {
                let text = format!("Directory changed to {}.", quote(target.as_str()));
                self.cwd = target;
                self.reply(Code::FileActionOk, text).await
            }
            Err(error) => self.fail(&error).await,
        }
    }

    /// Where CWD goes: the directory `arg` names (the home directory when
    /// it names none).
    async fn directory(&self, fs: &UserFs, arg: &str) -> Result<VirtualPath, Error> {
        let target = if arg.is_empty() {
            fs.home().clone()
        } else {
            self.path(fs, arg)?
        };
        if !fs.stat(&target).await?.is_dir() {
            return Err(Error::new(
                ErrorKind::NotADirectory,
                format!("{target}: not a directory"),
            ));
        }
        Ok(target)
    }

    pub(super) async fn mkd(&mut self, fs: &UserFs, arg: &str) -> io::Result<Next> {
        let made = async {
            let path = self.path(fs, arg)?;
            fs.mkdir(&path).await.map(|()| path)
        }
        .await;
        match made {
            Ok(path) => {
                self.reply(Code::Path, format!("{} created.", quote(path.as_str())))
                    .await
            }
            Err(error) => self.fail(&error).await,
        }
    }

    pub(super) async fn rmd(&mut self, fs: &UserFs, arg: &str) -> io::Result<Next> {
        match async { fs.rmdir(&self.path(fs, arg)?).await }.await {
            Ok(()) => self.reply(Code::FileActionOk, "Directory removed.").await,
            Err(error) => self.fail(&error).await,
        }
    }
}

/// A path in double quotes, inner quotes doubled (RFC 959 257 replies).
fn quote(path: &str) -> String {
    format!("\"{}\"", path.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("/a\"b"), "\"/a\"\"b\"");
    }
}
