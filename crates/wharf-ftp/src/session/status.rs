//! What the server says about itself and the connection: FEAT, OPTS, and
//! STAT without an argument.

use std::io;

use super::{FtpSession, Next};
use crate::command::Opt;
use crate::reply::Code;

impl FtpSession {
    pub(super) async fn feat(&mut self) -> io::Result<Next> {
        let mut text = String::from("Extensions supported:\n");
        if self.tls.is_some() {
            text.push_str("AUTH TLS\nPBSZ\nPROT\n");
        }
        text.push_str("EPSV\nMDTM\nMLST type*;size*;modify*;perm*;\nREST STREAM\nSIZE\nUTF8\nEnd");
        self.reply(Code::SystemStatus, text).await
    }

    /// OPTS; `None`: an option not understood.
    pub(super) async fn opts(&mut self, option: Option<Opt>) -> io::Result<Next> {
        match option {
            Some(Opt::Utf8) => self.reply(Code::Ok, "Always in UTF8 mode.").await,
            Some(Opt::Mlst) => {
                self.reply(Code::Ok, "MLST OPTS type;size;modify;perm;")
                    .await
            }
            None => {
                self.reply(Code::BadArgument, "Option not understood.")
                    .await
            }
        }
    }

    /// STAT without an argument: who is logged in, and what is protected.
    pub(super) async fn status(&mut self) -> io::Result<Next> {
        let user = self
            .account
            .as_ref()
            .map(|account| account.session.identity.username.clone())
            .unwrap_or_default();
        let text = format!(
            "wharf FTP server status:\nLogged in as {user}\nTLS: control {}, data {}\nEnd",
            if self.control.is_tls() {
                "protected"
            } else {
                "clear"
            },
            if self.protect_data {
                "protected"
            } else {
                "clear"
            },
        );
        self.reply(Code::SystemStatus, text).await
    }
}
