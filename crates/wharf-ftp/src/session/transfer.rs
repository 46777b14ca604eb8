//! File transfers and their parameters: TYPE, MODE, STRU, REST, RETR, STOR
//! and APPE. The data connection is opened in `passive.rs`; the bytes move
//! in `data.rs`.

use std::io;

use wharf_vfs::{OpenOptions, UserFs, VirtualPath};

use super::passive::Direction;
use super::{FtpSession, Next, User};
use crate::command::DataType;
use crate::data::{receive_file, send_file};
use crate::reply::Code;

impl FtpSession {
    /// TYPE; `None`: a type not supported. Bytes go through unchanged in
    /// every type, as most servers do.
    pub(super) async fn data_type(&mut self, data_type: Option<DataType>) -> io::Result<Next> {
        match data_type {
            Some(DataType::Image) => self.reply(Code::Ok, "Type set to I.").await,
            Some(DataType::Ascii) => self.reply(Code::Ok, "Type set to A.").await,
            None => self.reply(Code::BadParameter, "Type not supported.").await,
        }
    }

    /// MODE; `stream`: MODE S.
    pub(super) async fn mode(&mut self, stream: bool) -> io::Result<Next> {
        if stream {
            self.reply(Code::Ok, "Mode set to S.").await
        } else {
            self.reply(Code::BadParameter, "Only stream mode is supported.")
                .await
        }
    }

    /// STRU; `file`: STRU F.
    pub(super) async fn structure(&mut self, file: bool) -> io::Result<Next> {
        if file {
            self.reply(Code::Ok, "Structure set to F.").await
        } else {
            self.reply(Code::BadParameter, "Only file structure is supported.")
                .await
        }
    }

    /// REST; `None`: not a byte offset (the REST before is dropped all the
    /// same, as in vsftpd). The offset is for the next RETR, STOR or APPE
    /// only (see `session.rs`).
    pub(super) async fn rest(&mut self, offset: Option<u64>) -> io::Result<Next> {
        self.restart = 0;
        match offset {
            Some(offset) => {
                self.restart = offset;
                self.reply(
                    Code::Pending,
                    format!("Restarting at {offset}. Send RETR to start."),
                )
                .await
            }
            None => {
                self.reply(Code::BadArgument, "REST needs a byte offset.")
                    .await
            }
        }
    }

    pub(super) async fn retr(&mut self, user: &User, arg: &str) -> io::Result<Next> {
        let fs = &user.fs;
        let start = std::mem::take(&mut self.restart);
        let Some(path) = self.transfer_target(fs, "RETR", arg).await? else {
            return Ok(Next::Continue);
        };
        let reader = match fs.open_read(&path).await {
            Ok(reader) => reader,
            Err(error) => return self.fail(&error).await,
        };
        let Some(mut data) = self
            .data_connection(user, "RETR", path.as_str(), Direction::ToClient)
            .await?
        else {
            // The reader is dropped unclosed: PARTIAL_CLOSE.
            return Ok(Next::Continue);
        };
        let outcome = self
            .control
            .watch(send_file(reader, start, &mut data))
            .await;
        drop(data);
        self.finish(outcome, "Transfer complete.").await
    }

    /// STOR, or APPE when `append`.
    pub(super) async fn stor(&mut self, user: &User, arg: &str, append: bool) -> io::Result<Next> {
        let fs = &user.fs;
        let restart = std::mem::take(&mut self.restart);
        let operation = if append { "APPE" } else { "STOR" };
        let Some(path) = self.transfer_target(fs, operation, arg).await? else {
            return Ok(Next::Continue);
        };
        // STOR replaces; APPE appends; REST n + STOR resumes at n. What
        // each means on an existing file is UserFs's decision, the same as
        // for an SFTP OPEN with the equivalent flags.
        let options = OpenOptions {
            create: true,
            truncate: !append && restart == 0,
            append,
            offset: restart,
            ..OpenOptions::default()
        };
        let writer = match fs.open_write(&path, options).await {
            Ok(writer) => writer,
            Err(error) => return self.fail(&error).await,
        };
        let Some(mut data) = self
            .data_connection(user, operation, path.as_str(), Direction::FromClient)
            .await?
        else {
            // The writer is dropped unclosed: nothing is left behind.
            return Ok(Next::Continue);
        };
        let outcome = self.control.watch(receive_file(writer, &mut data)).await;
        drop(data);
        self.finish(outcome, "Transfer complete.").await
    }

    /// The path of a file transfer, once PROT P is checked; `None` when it
    /// is refused (the reply has been sent).
    async fn transfer_target(
        &mut self,
        fs: &UserFs,
        operation: &str,
        arg: &str,
    ) -> io::Result<Option<VirtualPath>> {
        if self.data_protection_missing(fs, operation).await? {
            return Ok(None);
        }
        match self.path(fs, arg) {
            Ok(path) => Ok(Some(path)),
            Err(error) => {
                self.fail(&error).await?;
                Ok(None)
            }
        }
    }
}
