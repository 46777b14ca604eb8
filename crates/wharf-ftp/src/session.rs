//! One control connection, from the greeting to QUIT: its state, the
//! command loop, and the dispatch of each [`Command`] (parsed once, in
//! `command.rs`) to the module of its family:
//!
//! - `login`: AUTH TLS, PROT, USER, PASS;
//! - `status`: FEAT, OPTS, STAT without an argument;
//! - `navigation`: PWD, CWD, CDUP, MKD, RMD;
//! - `files`: one file over the control connection (SIZE, MDTM, DELE,
//!   RNFR and RNTO);
//! - `transfer`: TYPE, MODE, STRU, REST, RETR, STOR, APPE;
//! - `list`: LIST, NLST, MLSD, MLST, STAT of a path;
//! - `passive`: PASV, EPSV, and the data connection of each transfer (the
//!   PROT P rule, 150, data TLS, the final reply).
//!
//! Commands with a fixed reply (SYST, NOOP, QUIT, ...) are answered here.
//! Commands run one at a time, in order. A transfer runs inside its command
//! while the control connection is watched for ABOR ([`Control::watch`]);
//! other commands sent meanwhile are answered after it.
//!
//! A transfer command (RETR, STOR, APPE, LIST, NLST, MLSD) ends, whatever
//! its outcome, with its passive port closed (a connection waiting on it
//! too: the next transfer needs a new PASV or EPSV) and the REST before it
//! spent; a listing over the control connection (STAT of a path) spends a
//! REST too. A REST so applies to the next RETR, STOR or APPE only (RFC 959
//! wants it right before them; commands that move no data, such as EPSV,
//! TYPE, SIZE or NOOP, leave it, as clients send them in between). Besides, a passive port lives until the next PASV or EPSV, an
//! ABOR, or the end of the connection: one at most per connection.

mod files;
mod list;
mod login;
mod navigation;
mod passive;
mod status;
mod transfer;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use wharf_listen::{Admitted, LoginExpired, ProxyProtocol};
use wharf_session::{ConnInfo, Session};
use wharf_vfs::{Error, Metadata, UserFs, VirtualPath};

use crate::command::{self, Anytime, Command, LoggedIn, Login};
use crate::control::{Control, LineError};
use crate::data::PassivePort;
use crate::listing::ListFormat;
use crate::reply::{Code, Reply, for_error};
use crate::server::Shared;
use crate::tls::{ConnectionTls, LoggedInTls};

/// The target of the log lines of this module and of its submodules: the
/// same for all, as it was before they were split (what log filters and
/// readers match).
const LOG_TARGET: &str = "wharf_ftp::session";

/// What a command handler asks of the loop.
enum Next {
    Continue,
    Quit,
}

/// A logged-in control connection: its session, and (FTPS) the TLS of its
/// data connections, which only a login gives.
struct Account {
    session: Session,
    data_tls: Option<Arc<LoggedInTls>>,
}

/// What the commands of a logged-in connection act through: its files, and
/// (FTPS) its data connections' TLS. Cloned per command.
#[derive(Clone)]
pub(super) struct User {
    fs: UserFs,
    /// `None` for plain FTP.
    data_tls: Option<Arc<LoggedInTls>>,
}

/// Where a control connection arrived.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Endpoint {
    /// This socket's own address: passive ports are bound on its IP.
    pub own: SocketAddr,
    /// The address the client connected to: the same, or behind a balancer
    /// the destination its PROXY header carried (the balancer's). PASV
    /// announces its IP when `passive_address` is not set.
    pub dialed: SocketAddr,
}

/// The state of one control connection.
pub(crate) struct FtpSession {
    shared: Arc<Shared>,
    control: Control,
    info: ConnInfo,
    local: Endpoint,
    tls: Option<ConnectionTls>,
    /// PROT P.
    protect_data: bool,
    /// The name given by USER, until PASS.
    pending_user: Option<String>,
    failed_logins: u32,
    /// The connection's admission: it must log in before its deadline.
    admitted: Admitted,
    account: Option<Account>,
    cwd: VirtualPath,
    /// REST: where the next RETR, STOR or APPE starts.
    restart: u64,
    rename_from: Option<VirtualPath>,
    passive: Option<PassivePort>,
    /// The listener's PROXY protocol rule: data connections carry their own
    /// header, whose source must be the control connection's.
    proxy: Option<Arc<ProxyProtocol>>,
}

impl FtpSession {
    pub(crate) fn new(
        shared: Arc<Shared>,
        control: Control,
        info: ConnInfo,
        local: Endpoint,
        tls: Option<ConnectionTls>,
        admitted: Admitted,
        proxy: Option<Arc<ProxyProtocol>>,
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
            account: None,
            cwd: VirtualPath::root(),
            restart: 0,
            rename_from: None,
            passive: None,
            proxy,
        }
    }

    /// Serves the connection until QUIT, the client leaves, an idle timeout
    /// or `drain` (then between commands: 421 and close).
    pub(crate) async fn run(&mut self, drain: tokio_util::sync::CancellationToken) {
        let greeting = Reply::new(Code::Ready, self.shared.greeting.clone());
        if self.control.reply(&greeting).await.is_err() {
            return;
        }
        loop {
            let line = tokio::select! {
                biased;
                () = drain.cancelled() => {
                    let _ = self.control.reply(&Reply::new(Code::Closing, "Server shutting down, closing control connection.")).await;
                    break;
                }
                why = self.admitted.login_expired() => {
                    let text = match why {
                        LoginExpired::Timeout => "Login timeout, closing control connection.",
                        LoginExpired::Evicted => "Too many connections waiting to log in, closing control connection.",
                    };
                    let _ = self.control.reply(&Reply::new(Code::Closing, text)).await;
                    break;
                }
                line = tokio::time::timeout(self.shared.idle_timeout, self.control.line()) => line,
            };
            let line = match line {
                Err(_) => {
                    let _ = self
                        .control
                        .reply(&Reply::new(
                            Code::Closing,
                            "Idle timeout, closing control connection.",
                        ))
                        .await;
                    break;
                }
                Ok(Err(LineError::Closed)) => return,
                Ok(Err(LineError::TooLong)) => {
                    let _ = self
                        .control
                        .reply(&Reply::new(Code::SyntaxError, "Command line too long."))
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

    /// Parses a command line and runs the command, if its class allows it
    /// now: with FTPS nothing but [`Anytime`] commands before AUTH TLS, and
    /// nothing but those and [`Login`] ones before login.
    async fn command(&mut self, line: &str) -> io::Result<Next> {
        let (verb, command) = command::parse(line);
        tracing::debug!(target: LOG_TARGET, session = %self.info.session_id, "ftp command {verb}");
        let command = match command {
            Command::Anytime(command) => return self.dispatch_anytime(command).await,
            _ if self.tls.is_some() && !self.control.is_tls() => {
                return self
                    .reply(
                        Code::PolicyRefused,
                        "This server requires AUTH TLS before anything else.",
                    )
                    .await;
            }
            Command::Login(command) => return self.dispatch_login(command).await,
            Command::LoggedIn(command) => command,
        };
        let Some(user) = self.account.as_ref().map(|account| User {
            fs: account.session.fs.clone(),
            data_tls: account.data_tls.clone(),
        }) else {
            return self
                .reply(Code::NotLoggedIn, "Please log in with USER and PASS.")
                .await;
        };
        // RNTO must follow its RNFR at once.
        if !matches!(command, LoggedIn::Rnto(_)) {
            self.rename_from = None;
        }
        let (transfer, listing) = (command.is_transfer(), command.is_listing());
        if listing {
            self.restart = 0;
        }
        let next = self.dispatch_logged_in(command, &user).await;
        if transfer {
            // Whatever happened, and however: no listener, nor a connection
            // waiting on it, outlives the command; nor does its REST.
            self.passive = None;
            self.restart = 0;
        }
        next
    }

    async fn dispatch_anytime(&mut self, command: Anytime) -> io::Result<Next> {
        match command {
            Anytime::Auth { tls } => self.auth(tls).await,
            Anytime::Ccc => {
                self.reply(
                    Code::PolicyRefused,
                    "The control connection stays protected.",
                )
                .await
            }
            Anytime::Feat => self.feat().await,
            Anytime::Help => {
                self.reply(Code::Help, "See FEAT for what this server supports.")
                    .await
            }
            Anytime::Noop => self.reply(Code::Ok, "NOOP ok.").await,
            Anytime::Opts(option) => self.opts(option).await,
            Anytime::Quit => {
                self.control
                    .reply(&Reply::new(Code::Goodbye, "Goodbye."))
                    .await?;
                Ok(Next::Quit)
            }
            Anytime::Syst => self.reply(Code::SystemType, "UNIX Type: L8").await,
        }
    }

    async fn dispatch_login(&mut self, command: Login<'_>) -> io::Result<Next> {
        match command {
            Login::User(name) => self.user(name).await,
            Login::Pass(password) => self.pass(password).await,
            Login::Pbsz => self.reply(Code::Ok, "PBSZ=0").await,
            Login::Prot(level) => self.prot(level).await,
        }
    }

    async fn dispatch_logged_in(&mut self, command: LoggedIn<'_>, user: &User) -> io::Result<Next> {
        let fs = &user.fs;
        match command {
            LoggedIn::Pwd => self.pwd().await,
            LoggedIn::Cwd(path) => self.cwd(fs, path).await,
            LoggedIn::Cdup => self.cwd(fs, "..").await,
            LoggedIn::Mkd(path) => self.mkd(fs, path).await,
            LoggedIn::Rmd(path) => self.rmd(fs, path).await,
            LoggedIn::Size(path) => self.size(fs, path).await,
            LoggedIn::Mdtm(path) => self.mdtm(fs, path).await,
            LoggedIn::Dele(path) => self.dele(fs, path).await,
            LoggedIn::Rnfr(path) => self.rnfr(fs, path).await,
            LoggedIn::Rnto(path) => self.rnto(fs, path).await,
            LoggedIn::Type(data_type) => self.data_type(data_type).await,
            LoggedIn::Mode { stream } => self.mode(stream).await,
            LoggedIn::Stru { file } => self.structure(file).await,
            LoggedIn::Allo => {
                self.reply(Code::Superfluous, "No storage allocation necessary.")
                    .await
            }
            LoggedIn::Rest(offset) => self.rest(offset).await,
            LoggedIn::Retr(path) => self.retr(user, path).await,
            LoggedIn::Stor(path) => self.stor(user, path, false).await,
            LoggedIn::Appe(path) => self.stor(user, path, true).await,
            LoggedIn::Abor => {
                // RFC 959: with no transfer running, ABOR closes the data
                // connection (here: the passive port) if there is one.
                self.passive = None;
                self.reply(Code::NoTransfer, "No transfer to abort.").await
            }
            LoggedIn::Pasv => self.pasv(fs).await,
            LoggedIn::Epsv { all } => self.epsv(fs, all).await,
            LoggedIn::Active => {
                self.reply(
                    Code::NotImplemented,
                    "Active mode is not supported: use PASV or EPSV.",
                )
                .await
            }
            LoggedIn::List(arg) => self.list(user, arg, ListFormat::Long, "LIST").await,
            LoggedIn::Nlst(arg) => self.list(user, arg, ListFormat::Names, "NLST").await,
            LoggedIn::Mlsd(arg) => self.list(user, arg, ListFormat::Facts, "MLSD").await,
            LoggedIn::Mlst(path) => self.mlst(fs, path).await,
            LoggedIn::Stat(arg) => self.stat(fs, arg).await,
            LoggedIn::Status => self.status().await,
            LoggedIn::MissingPath { .. } => {
                self.reply(
                    Code::BadArgument,
                    "Syntax error in parameters or arguments.",
                )
                .await
            }
            LoggedIn::Acct => self.reply(Code::Superfluous, "ACCT not needed.").await,
            LoggedIn::NotImplemented => {
                self.reply(Code::NotImplemented, "Command not implemented.")
                    .await
            }
            LoggedIn::Unknown => self.reply(Code::SyntaxError, "Unknown command.").await,
        }
    }

    async fn reply(&mut self, code: Code, text: impl Into<String>) -> io::Result<Next> {
        self.control.reply(&Reply::new(code, text)).await?;
        Ok(Next::Continue)
    }

    /// The reply to a failed file operation.
    async fn fail(&mut self, error: &Error) -> io::Result<Next> {
        self.control.reply(&for_error(error)).await?;
        Ok(Next::Continue)
    }

    /// Resolves a client path against the working directory.
    fn path(&self, fs: &UserFs, arg: &str) -> Result<VirtualPath, Error> {
        fs.path(&self.cwd, arg)
    }

    /// A client path, resolved, and what is there.
    async fn stat_of(&self, fs: &UserFs, arg: &str) -> Result<(VirtualPath, Metadata), Error> {
        let path = self.path(fs, arg)?;
        let meta = fs.stat(&path).await?;
        Ok((path, meta))
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
