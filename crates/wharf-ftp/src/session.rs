//! One control connection, from the greeting to QUIT: the command
//! interpreter.
//!
//! Commands run one at a time, in order. A transfer runs inside its command
//! while the control connection is watched for ABOR ([`Control::watch`]);
//! other commands sent meanwhile are answered after it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use wharf_audit::{Activity, Event};
use wharf_listen::{Admitted, LoginExpired};
use wharf_session::{ConnInfo, Session};
use wharf_vfs::{Error, ErrorKind, Kind, OpenOptions, UserFs, VirtualPath};

use crate::auth;
use crate::control::{Control, LineError, split_command};
use crate::data::{
    DataError, DataStream, LIST_PAGE, ListFormat, ListSource, PageWriter, PassivePort,
    TransferError, receive_file, send_file, send_listing,
};
use crate::listing;
use crate::reply::{Reply, for_error};
use crate::server::{PassiveHost, Shared};
use crate::tls::{ConnectionTls, Resumption};

/// Failed PASS commands before the connection is closed.
const MAX_FAILED_LOGINS: u32 = 3;

/// What a command handler asks of the loop.
enum Next {
    Continue,
    Quit,
}

/// The state of one control connection.
pub(crate) struct FtpSession {
    shared: Arc<Shared>,
    control: Control,
    info: ConnInfo,
    local: SocketAddr,
    tls: Option<ConnectionTls>,
    /// PROT P.
    protect_data: bool,
    /// The name given by USER, until PASS.
    pending_user: Option<String>,
    failed_logins: u32,
    /// The connection's admission: it must log in before its deadline.
    admitted: Admitted,
    session: Option<Session>,
    cwd: VirtualPath,
    /// REST: where the next RETR starts.
    restart: u64,
    rename_from: Option<VirtualPath>,
    passive: Option<PassivePort>,
}

impl FtpSession {
    pub(crate) fn new(
        shared: Arc<Shared>,
        control: Control,
        info: ConnInfo,
        local: SocketAddr,
        tls: Option<ConnectionTls>,
        admitted: Admitted,
    ) -> FtpSession {
        FtpSession {
            admitted,
            shared,
            control,
            info,
            local,
            tls,
            protect_data: false,
            pending_user: None,
            failed_logins: 0,
            session: None,
            cwd: VirtualPath::root(),
            restart: 0,
            rename_from: None,
            passive: None,
        }
    }

    /// Serves the connection until QUIT, the client leaves, an idle timeout
    /// or `drain` (then between commands: 421 and close).
    pub(crate) async fn run(&mut self, drain: tokio_util::sync::CancellationToken) {
        let greeting = Reply::new(220, self.shared.greeting.clone());
        if self.control.reply(&greeting).await.is_err() {
            return;
        }
        loop {
            let line = tokio::select! {
                biased;
                () = drain.cancelled() => {
                    let _ = self.control.reply(&Reply::new(421, "Server shutting down, closing control connection.")).await;
                    break;
                }
                why = self.admitted.login_expired() => {
                    let text = match why {
                        LoginExpired::Timeout => "Login timeout, closing control connection.",
                        LoginExpired::Evicted => "Too many connections waiting to log in, closing control connection.",
                    };
                    let _ = self.control.reply(&Reply::new(421, text)).await;
                    break;
                }
                line = tokio::time::timeout(self.shared.idle_timeout, self.control.line()) => line,
            };
            let line = match line {
                Err(_) => {
                    let _ = self
                        .control
                        .reply(&Reply::new(
                            421,
                            "Idle timeout, closing control connection.",
                        ))
                        .await;
                    break;
                }
                Ok(Err(LineError::Closed)) => return,
                Ok(Err(LineError::TooLong)) => {
                    let _ = self
                        .control
                        .reply(&Reply::new(500, "Command line too long."))
                        .await;
                    // Malformed input counts against the address (SPEC 8).
                    let fields = self.shared.gateway.session_fields(&self.info);
                    self.shared.gateway.report_violation(
                        &fields,
                        &self.info,
                        "FTP command line longer than allowed",
                    );
                    break;
                }
                Ok(Ok(line)) => line,
            };
            match self.command(&line).await {
                Ok(Next::Continue) => {}
                Ok(Next::Quit) => break,
                Err(_) => return,
            }
        }
        self.control.close().await;
    }

    async fn reply(&mut self, code: u16, text: impl Into<String>) -> std::io::Result<Next> {
        self.control.reply(&Reply::new(code, text)).await?;
        Ok(Next::Continue)
    }

    async fn command(&mut self, line: &str) -> std::io::Result<Next> {
        let (verb, arg) = split_command(line);
        let verb = verb.as_str();
        tracing::debug!(session = %self.info.session_id, "ftp command {verb}");
        // Before login only these; and with FTPS, nothing of the user's
        // before AUTH TLS.
        match verb {
            "AUTH" => return self.auth(arg).await,
            "FEAT" => return self.feat().await,
            "SYST" => return self.reply(215, "UNIX Type: L8").await,
            "NOOP" => return self.reply(200, "NOOP ok.").await,
            "QUIT" => {
                self.control.reply(&Reply::new(221, "Goodbye.")).await?;
                return Ok(Next::Quit);
            }
            "OPTS" => return self.opts(arg).await,
            "HELP" => {
                return self
                    .reply(214, "See FEAT for what this server supports.")
                    .await;
            }
            "CCC" => {
                return self
                    .reply(534, "The control connection stays protected.")
                    .await;
            }
            _ => {}
        }
        if self.tls.is_some() && !self.control.is_tls() {
            return self
                .reply(534, "This server requires AUTH TLS before anything else.")
                .await;
        }
        match verb {
            "USER" => return self.user(arg).await,
            "PASS" => return self.pass(arg).await,
            "PBSZ" => return self.reply(200, "PBSZ=0").await,
            "PROT" => return self.prot(arg).await,
            _ => {}
        }
        if self.session.is_none() {
            return self.reply(530, "Please log in with USER and PASS.").await;
        }
        if verb != "RNTO" {
            self.rename_from = None;
        }
        match verb {
            "PWD" | "XPWD" => {
                let text = format!("{} is the current directory.", quote(self.cwd.as_str()));
                self.reply(257, text).await
            }
            "CWD" | "XCWD" => self.cwd(arg).await,
            "CDUP" | "XCUP" => self.cwd("..").await,
            "TYPE" => self.type_(arg).await,
            "MODE" => match arg.trim().to_ascii_uppercase().as_str() {
                "S" => self.reply(200, "Mode set to S.").await,
                _ => self.reply(504, "Only stream mode is supported.").await,
            },
            "STRU" => match arg.trim().to_ascii_uppercase().as_str() {
                "F" => self.reply(200, "Structure set to F.").await,
                _ => self.reply(504, "Only file structure is supported.").await,
            },
            "ALLO" => self.reply(202, "No storage allocation necessary.").await,
            "PASV" => self.pasv().await,
            "EPSV" => self.epsv(arg).await,
            "PORT" | "EPRT" | "LPRT" => {
                self.reply(502, "Active mode is not supported: use PASV or EPSV.")
                    .await
            }
            "REST" => self.rest(arg).await,
            "RETR" => self.retr(arg).await,
            "STOR" => self.stor(arg, false).await,
            "APPE" => self.stor(arg, true).await,
            "LIST" => self.list(arg, ListFormat::Long, "LIST").await,
            "NLST" => self.list(arg, ListFormat::Names, "NLST").await,
            "MLSD" => self.list(arg, ListFormat::Facts, "MLSD").await,
            "MLST" => self.mlst(arg).await,
            "STAT" => self.stat(arg).await,
            "SIZE" => self.size(arg).await,
            "MDTM" => self.mdtm(arg).await,
            "DELE" => self.simple(arg, Op::Delete).await,
            "MKD" | "XMKD" => self.simple(arg, Op::Mkdir).await,
            "RMD" | "XRMD" => self.simple(arg, Op::Rmdir).await,
            "RNFR" => self.rnfr(arg).await,
            "RNTO" => self.rnto(arg).await,
            "ABOR" => self.reply(225, "No transfer to abort.").await,
            "ACCT" => self.reply(202, "ACCT not needed.").await,
            "STOU" | "SITE" | "SMNT" | "REIN" | "MFMT" | "MFCT" | "MFF" => {
                self.reply(502, "Command not implemented.").await
            }
            _ => self.reply(500, "Unknown command.").await,
        }
    }

    // ---- login and protection ----

    async fn auth(&mut self, arg: &str) -> std::io::Result<Next> {
        let Some(tls) = &self.tls else {
            return self.reply(502, "TLS is not configured on this port.").await;
        };
        if self.control.is_tls() {
            return self.reply(503, "TLS is already active.").await;
        }
        if !matches!(
            arg.trim().to_ascii_uppercase().as_str(),
            "TLS" | "TLS-C" | "SSL"
        ) {
            return self.reply(504, "Only AUTH TLS is supported.").await;
        }
        let config = tls.control.clone();
        self.control
            .reply(&Reply::new(234, "AUTH TLS successful."))
            .await?;
        if let Err(reason) = self.control.start_tls(config).await {
            tracing::info!(session = %self.info.session_id, peer = %self.info.source_ip, "AUTH TLS: {reason}");
            return Err(std::io::ErrorKind::ConnectionAborted.into());
        }
        // RFC 4217: a new security state forgets the USER given before.
        self.pending_user = None;
        Ok(Next::Continue)
    }

    async fn prot(&mut self, arg: &str) -> std::io::Result<Next> {
        match arg.trim().to_ascii_uppercase().as_str() {
            "P" if self.tls.is_some() => {
                self.protect_data = true;
                self.reply(200, "Protection level set to Private.").await
            }
            "C" => {
                self.protect_data = false;
                self.reply(200, "Protection level set to Clear.").await
            }
            "P" => self.reply(536, "TLS is not configured on this port.").await,
            _ => {
                self.reply(504, "Only PROT P and PROT C are supported.")
                    .await
            }
        }
    }

    async fn user(&mut self, arg: &str) -> std::io::Result<Next> {
        if self.session.is_some() {
            return self.reply(503, "Already logged in.").await;
        }
        let name = arg.trim();
        if name.is_empty() {
            return self.reply(501, "USER needs a user name.").await;
        }
        self.pending_user = Some(name.to_owned());
        self.reply(331, "Password required.").await
    }

    async fn pass(&mut self, arg: &str) -> std::io::Result<Next> {
        if self.session.is_some() {
            return self.reply(503, "Already logged in.").await;
        }
        let Some(username) = self.pending_user.take() else {
            return self.reply(503, "Send USER first.").await;
        };
        let info = ConnInfo {
            // With FTPS the control connection is TLS by now (checked in
            // `command`) and data needs PROT P.
            secure_transport: self.control.is_tls(),
            ..self.info.clone()
        };
        match auth::login(&self.shared.gateway, &info, &username, arg).await {
            Some(session) => {
                // From now on its data connections may resume the TLS
                // sessions of this user's control connections from this
                // address.
                if let (Some(material), Some(tls)) = (&self.shared.tls, &mut self.tls) {
                    material.logged_in(tls, &session.identity.username);
                }
                // PATH users start in their home directory; LOGICAL ones at
                // their root.
                self.cwd = session.fs.home().clone();
                self.session = Some(session);
                self.admitted.logged_in();
                self.reply(230, "User logged in.").await
            }
            None => {
                self.failed_logins += 1;
                self.control
                    .reply(&Reply::new(530, "Login incorrect."))
                    .await?;
                if self.failed_logins >= MAX_FAILED_LOGINS {
                    return Ok(Next::Quit);
                }
                Ok(Next::Continue)
            }
        }
    }

    async fn feat(&mut self) -> std::io::Result<Next> {
        let mut text = String::from("Extensions supported:\n");
        if self.tls.is_some() {
            text.push_str("AUTH TLS\nPBSZ\nPROT\n");
        }
        text.push_str("EPSV\nMDTM\nMLST type*;size*;modify*;perm*;\nREST STREAM\nSIZE\nUTF8\nEnd");
        self.reply(211, text).await
    }

    async fn opts(&mut self, arg: &str) -> std::io::Result<Next> {
        let upper = arg.trim().to_ascii_uppercase();
        if upper == "UTF8 ON" || upper == "UTF8" || upper == "UTF-8 ON" {
            return self.reply(200, "Always in UTF8 mode.").await;
        }
        if upper.starts_with("MLST") {
            return self.reply(200, "MLST OPTS type;size;modify;perm;").await;
        }
        self.reply(501, "Option not understood.").await
    }

    async fn type_(&mut self, arg: &str) -> std::io::Result<Next> {
        // Bytes go through unchanged in every type, as most servers do.
        match arg.trim().to_ascii_uppercase().as_str() {
            "I" | "L 8" => self.reply(200, "Type set to I.").await,
            "A" | "A N" => self.reply(200, "Type set to A.").await,
            _ => self.reply(504, "Type not supported.").await,
        }
    }

    // ---- paths and metadata ----

    fn fs(&self) -> Option<&UserFs> {
        self.session.as_ref().map(|s| &s.fs)
    }

    /// Resolves a client path against the working directory.
    fn path(&self, arg: &str) -> Result<VirtualPath, Error> {
        let fs = self
            .fs()
            .ok_or_else(|| Error::new(ErrorKind::PermissionDenied, "not logged in"))?;
        fs.path(&self.cwd, arg)
    }

    async fn fail(&mut self, error: &Error) -> std::io::Result<Next> {
        self.control.reply(&for_error(error)).await?;
        Ok(Next::Continue)
    }

    async fn cwd(&mut self, arg: &str) -> std::io::Result<Next> {
        let target = if arg.is_empty() {
            self.fs()
                .map_or_else(VirtualPath::root, |fs| fs.home().clone())
        } else {
            match self.path(arg) {
                Ok(path) => path,
                Err(error) => return self.fail(&error).await,
            }
        };
        let Some(fs) = self.fs() else {
            return self.reply(530, "Please log in with USER and PASS.").await;
        };
        match fs.stat(&target).await {
            Ok(meta) if meta.is_dir() => {
                let text = format!("Directory changed to {}.", quote(target.as_str()));
                self.cwd = target;
                self.reply(250, text).await
            }
            Ok(_) => {
                self.fail(&Error::new(
                    ErrorKind::NotADirectory,
                    format!("{target}: not a directory"),
                ))
                .await
            }
            Err(error) => self.fail(&error).await,
        }
    }

    async fn stat_of(&self, arg: &str) -> Result<(VirtualPath, wharf_vfs::Metadata), Error> {
        let path = self.path(arg)?;
        let fs = self
            .fs()
            .ok_or_else(|| Error::new(ErrorKind::PermissionDenied, "not logged in"))?;
        let meta = fs.stat(&path).await?;
        Ok((path, meta))
    }

    async fn size(&mut self, arg: &str) -> std::io::Result<Next> {
        match self.stat_of(arg).await {
            Ok((_, meta)) if meta.kind == Kind::File => {
                self.reply(213, meta.size.to_string()).await
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

    async fn mdtm(&mut self, arg: &str) -> std::io::Result<Next> {
        match self.stat_of(arg).await {
            Ok((_, meta)) => match meta.modified {
                Some(when) => self.reply(213, listing::timestamp(when)).await,
                None => self.reply(550, "No modification time known.").await,
            },
            Err(error) => self.fail(&error).await,
        }
    }

    async fn mlst(&mut self, arg: &str) -> std::io::Result<Next> {
        let arg = if arg.is_empty() { "." } else { arg };
        match self.stat_of(arg).await {
            Ok((path, meta)) => {
                let mut facts = String::new();
                listing::facts_line(&mut facts, path.as_str(), &meta);
                let text = format!("Listing {}\n{}\nEnd", path, facts.trim_end());
                self.reply(250, text).await
            }
            Err(error) => self.fail(&error).await,
        }
    }

    /// STAT: the connection's status, or a listing over the control
    /// connection (streamed page by page like LIST).
    async fn stat(&mut self, arg: &str) -> std::io::Result<Next> {
        if arg.trim().is_empty() {
            let user = self
                .session
                .as_ref()
                .map(|s| s.identity.username.clone())
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
            return self.reply(211, text).await;
        }
        let source = match self.list_source(arg, "STAT").await {
            Ok(source) => source,
            Err(error) => return self.fail(&error).await,
        };
        self.control
            .send(format!("213-Status of {}:\r\n", strip_list_options(arg)).as_bytes())
            .await?;
        let mut writer = PageWriter::new(ListFormat::Long);
        let result = match source {
            ListSource::File(name, meta) => {
                writer.entry(&name, &meta);
                self.control.send(&indent(&writer.take())).await?;
                Ok(())
            }
            ListSource::Directory(mut pages) => loop {
                match pages.next_page(LIST_PAGE).await {
                    Ok(Some(page)) => {
                        for entry in &page {
                            writer.entry(&entry.name, &entry.meta);
                        }
                        self.control.send(&indent(&writer.take())).await?;
                    }
                    Ok(None) => break Ok(()),
                    Err(error) => break Err(error),
                }
            },
        };
        match result {
            Ok(()) => self.reply(213, "End of status.").await,
            Err(error) => self.fail(&error).await,
        }
    }

    async fn simple(&mut self, arg: &str, op: Op) -> std::io::Result<Next> {
        let path = match self.path(arg) {
            Ok(path) => path,
            Err(error) => return self.fail(&error).await,
        };
        let Some(fs) = self.fs() else {
            return self.reply(530, "Please log in with USER and PASS.").await;
        };
        let result = match op {
            Op::Delete => fs.remove(&path).await,
            Op::Mkdir => fs.mkdir(&path).await,
            Op::Rmdir => fs.rmdir(&path).await,
        };
        match (result, op) {
            (Ok(()), Op::Delete) => self.reply(250, "File deleted.").await,
            (Ok(()), Op::Mkdir) => {
                self.reply(257, format!("{} created.", quote(path.as_str())))
                    .await
            }
            (Ok(()), Op::Rmdir) => self.reply(250, "Directory removed.").await,
            (Err(error), _) => self.fail(&error).await,
        }
    }

    async fn rnfr(&mut self, arg: &str) -> std::io::Result<Next> {
        match self.stat_of(arg).await {
            Ok((path, _)) => {
                self.rename_from = Some(path);
                self.reply(350, "Ready for RNTO.").await
            }
            Err(error) => self.fail(&error).await,
        }
    }

    async fn rnto(&mut self, arg: &str) -> std::io::Result<Next> {
        let Some(from) = self.rename_from.take() else {
            return self.reply(503, "Send RNFR first.").await;
        };
        let to = match self.path(arg) {
            Ok(path) => path,
            Err(error) => return self.fail(&error).await,
        };
        let Some(fs) = self.fs() else {
            return self.reply(530, "Please log in with USER and PASS.").await;
        };
        // Like rename(2) and other FTP servers: the target is replaced.
        match fs.rename(&from, &to, true).await {
            Ok(()) => self.reply(250, "Renamed.").await,
            Err(error) => self.fail(&error).await,
        }
    }

    async fn rest(&mut self, arg: &str) -> std::io::Result<Next> {
        match arg.trim().parse::<u64>() {
            Ok(offset) => {
                self.restart = offset;
                self.reply(350, format!("Restarting at {offset}. Send RETR to start."))
                    .await
            }
            Err(_) => self.reply(501, "REST needs a byte offset.").await,
        }
    }

    // ---- data connections ----

    /// With FTPS, data connections need PROT P: refused (and logged) here
    /// when it is missing.
    async fn data_protection_missing(&mut self, operation: &str) -> std::io::Result<bool> {
        if self.tls.is_none() || self.protect_data {
            return Ok(false);
        }
        self.log_refusal(
            operation,
            "",
            "the data connection is not protected by TLS (PROT P is required)",
        );
        self.control
            .reply(&Reply::new(534, "PROT P is required for data connections."))
            .await?;
        Ok(true)
    }

    fn log_refusal(&self, operation: &str, path: &str, reason: &str) {
        match &self.session {
            Some(session) => {
                let audit = session.fs.audit();
                audit.log.record(
                    Activity::Error,
                    &audit.session,
                    &Event {
                        path: (!path.is_empty()).then_some(path),
                        operation: Some(operation),
                        message: Some("data connection refused"),
                        reason: Some(reason),
                        ..Event::default()
                    },
                );
            }
            None => tracing::info!(session = %self.info.session_id, "{operation}: {reason}"),
        }
    }

    fn open_passive(&mut self) -> Result<u16, ()> {
        self.passive = None;
        match PassivePort::bind(self.local.ip(), &self.shared.passive_ports) {
            Ok(port) => match port.port() {
                Ok(number) => {
                    self.passive = Some(port);
                    Ok(number)
                }
                Err(_) => Err(()),
            },
            Err(_) => Err(()),
        }
    }

    async fn pasv(&mut self) -> std::io::Result<Next> {
        if self.data_protection_missing("PASV").await? {
            return Ok(Next::Continue);
        }
        let announced = match &self.shared.passive_host {
            PassiveHost::FromConnection => match self.local.ip() {
                IpAddr::V4(ip) => Some(ip),
                IpAddr::V6(ip) => ip.to_ipv4_mapped(),
            },
            PassiveHost::Ip(ip) => Some(*ip),
            PassiveHost::Dns(name) => tokio::net::lookup_host((name.as_str(), 0))
                .await
                .ok()
                .and_then(|mut addrs| {
                    addrs.find_map(|a| match a.ip() {
                        IpAddr::V4(ip) => Some(ip),
                        IpAddr::V6(_) => None,
                    })
                }),
        };
        let Some(ip) = announced else {
            return self
                .reply(425, "PASV needs an IPv4 address: use EPSV.")
                .await;
        };
        let Ok(port) = self.open_passive() else {
            return self.reply(425, "No passive port is free.").await;
        };
        let [a, b, c, d] = ip.octets();
        let text = format!(
            "Entering Passive Mode ({a},{b},{c},{d},{},{})",
            port >> 8,
            port & 0xff
        );
        self.reply(227, text).await
    }

    async fn epsv(&mut self, arg: &str) -> std::io::Result<Next> {
        if arg.trim().eq_ignore_ascii_case("ALL") {
            return self.reply(200, "EPSV ALL ok.").await;
        }
        if self.data_protection_missing("EPSV").await? {
            return Ok(Next::Continue);
        }
        let Ok(port) = self.open_passive() else {
            return self.reply(425, "No passive port is free.").await;
        };
        self.reply(229, format!("Entering Extended Passive Mode (|||{port}|)"))
            .await
    }

    /// The data connection of a transfer: accepted on the passive port,
    /// announced with 150, then (FTPS) secured and checked. `None` when it
    /// failed; the reply has been sent.
    async fn data_connection(
        &mut self,
        operation: &str,
        path: &str,
    ) -> std::io::Result<Option<DataStream>> {
        let Some(port) = self.passive.take() else {
            self.control
                .reply(&Reply::new(425, "Use PASV or EPSV first."))
                .await?;
            return Ok(None);
        };
        let stream = match port.accept(self.info.source_ip).await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::info!(session = %self.info.session_id, "{operation}: {error:?}");
                self.control
                    .reply(&Reply::new(425, "Can't open data connection."))
                    .await?;
                return Ok(None);
            }
        };
        self.control
            .reply(&Reply::new(150, "Opening BINARY mode data connection."))
            .await?;
        let Some(tls) = &self.tls else {
            return Ok(Some(DataStream::plain(stream, self.shared.idle_timeout)));
        };
        let enforce = tls.resumption == Resumption::Enforced;
        // Downloads and listings: the client reads, and gets a fresh ticket.
        let reads = !matches!(operation, "STOR" | "APPE");
        let Some(data_tls) = tls.data(reads) else {
            // Not logged in: cannot happen (transfers need a session).
            self.control
                .reply(&Reply::new(425, "Can't open data connection."))
                .await?;
            return Ok(None);
        };
        match DataStream::tls(stream, data_tls, enforce, self.shared.idle_timeout).await {
            Ok(stream) => Ok(Some(stream)),
            Err(DataError::Connect(reason)) => {
                tracing::info!(session = %self.info.session_id, "{operation}: {reason}");
                self.control
                    .reply(&Reply::new(
                        425,
                        "Can't open data connection: TLS handshake failed.",
                    ))
                    .await?;
                Ok(None)
            }
            Err(DataError::Refused(reason)) => {
                self.log_refusal(operation, path, reason);
                let text = format!("Data connection refused: {reason}.");
                self.control.reply(&Reply::new(550, text)).await?;
                Ok(None)
            }
        }
    }

    /// The final reply of a transfer.
    async fn finish(
        &mut self,
        outcome: Option<Result<u64, TransferError>>,
        done: &str,
    ) -> std::io::Result<Next> {
        match outcome {
            Some(Ok(_)) => self.reply(226, done.to_owned()).await,
            Some(Err(TransferError::Connection(error))) => {
                tracing::info!(session = %self.info.session_id, "transfer: data connection failed: {error}");
                self.reply(426, "Connection closed; transfer aborted.")
                    .await
            }
            Some(Err(TransferError::Store(error))) => self.fail(&error).await,
            None => {
                self.control
                    .reply(&Reply::new(426, "Transfer aborted."))
                    .await?;
                self.reply(226, "ABOR successful.").await
            }
        }
    }

    /// The path and filesystem of a file transfer, once PROT P is checked;
    /// `None` when it is refused (the reply has been sent).
    async fn transfer_target(
        &mut self,
        operation: &str,
        arg: &str,
    ) -> std::io::Result<Option<(VirtualPath, UserFs)>> {
        if self.data_protection_missing(operation).await? {
            return Ok(None);
        }
        let path = match self.path(arg) {
            Ok(path) => path,
            Err(error) => {
                self.fail(&error).await?;
                return Ok(None);
            }
        };
        let Some(fs) = self.fs().cloned() else {
            self.reply(530, "Please log in with USER and PASS.").await?;
            return Ok(None);
        };
        Ok(Some((path, fs)))
    }

    async fn retr(&mut self, arg: &str) -> std::io::Result<Next> {
        let start = std::mem::take(&mut self.restart);
        let Some((path, fs)) = self.transfer_target("RETR", arg).await? else {
            return Ok(Next::Continue);
        };
        let reader = match fs.open_read(&path).await {
            Ok(reader) => reader,
            Err(error) => return self.fail(&error).await,
        };
        let Some(mut data) = self.data_connection("RETR", path.as_str()).await? else {
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

    async fn stor(&mut self, arg: &str, append: bool) -> std::io::Result<Next> {
        let restart = std::mem::take(&mut self.restart);
        let operation = if append { "APPE" } else { "STOR" };
        let Some((path, fs)) = self.transfer_target(operation, arg).await? else {
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
        let Some(mut data) = self.data_connection(operation, path.as_str()).await? else {
            // The writer is dropped unclosed: nothing is left behind.
            return Ok(Next::Continue);
        };
        let outcome = self.control.watch(receive_file(writer, &mut data)).await;
        drop(data);
        self.finish(outcome, "Transfer complete.").await
    }

    /// What LIST, NLST, MLSD and STAT list: the directory's entries, or a
    /// file as itself.
    async fn list_source(&self, arg: &str, operation: &str) -> Result<ListSource, Error> {
        let target = strip_list_options(arg);
        let path = self.path(if target.is_empty() { "." } else { target })?;
        let fs = self
            .fs()
            .ok_or_else(|| Error::new(ErrorKind::PermissionDenied, "not logged in"))?;
        match fs.list(&path).await {
            Ok(pages) => Ok(ListSource::Directory(pages)),
            Err(error) if error.kind == ErrorKind::NotADirectory && operation != "MLSD" => {
                let meta = fs.stat(&path).await?;
                if meta.is_dir() {
                    return Err(error);
                }
                Ok(ListSource::File(path.file_name().to_owned(), meta))
            }
            Err(error) => Err(error),
        }
    }

    async fn list(
        &mut self,
        arg: &str,
        format: ListFormat,
        operation: &str,
    ) -> std::io::Result<Next> {
        if self.data_protection_missing(operation).await? {
            return Ok(Next::Continue);
        }
        let source = match self.list_source(arg, operation).await {
            Ok(source) => source,
            Err(error) => return self.fail(&error).await,
        };
        let shown = self
            .path(strip_list_options(arg))
            .map(|p| p.to_string())
            .unwrap_or_default();
        let Some(mut data) = self.data_connection(operation, &shown).await? else {
            return Ok(Next::Continue);
        };
        let outcome = self
            .control
            .watch(send_listing(source, format, &mut data))
            .await;
        drop(data);
        self.finish(outcome, "Directory send OK.").await
    }
}

impl Drop for FtpSession {
    fn drop(&mut self) {
        // Its TLS sessions' retention period starts before DISCONNECTED is
        // logged.
        if let Some(tls) = &mut self.tls {
            tls.end();
        }
        // DISCONNECTED: logged by the session as it is dropped, after this.
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Delete,
    Mkdir,
    Rmdir,
}

/// A path in double quotes, inner quotes doubled (RFC 959 257 replies).
fn quote(path: &str) -> String {
    format!("\"{}\"", path.replace('"', "\"\""))
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

/// Listing text as STAT reply lines: each line starts with a space.
fn indent(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 40);
    for line in text.split_terminator("\r\n") {
        out.push(b' ');
        out.extend(
            line.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_list_options() {
        assert_eq!(quote("/a\"b"), "\"/a\"\"b\"");
        assert_eq!(strip_list_options("-la"), "");
        assert_eq!(strip_list_options("-a -l dir name"), "dir name");
        assert_eq!(strip_list_options("dir"), "dir");
        assert_eq!(strip_list_options(""), "");
        assert_eq!(indent("a\r\nb\r\n"), b" a\r\n b\r\n");
    }
}
