//! Data connections: PASV and EPSV open a passive port (closing the one
//! before); each transfer then takes its connection from it
//! ([`FtpSession::data_connection`]: the PROT P rule of FTPS, 150, the data
//! TLS handshake and its resumption rule) and ends with its final reply
//! ([`FtpSession::finish`]). A transfer command closes the passive port
//! however it ends, used or not (`session.rs`).

use std::io;
use std::net::IpAddr;

use wharf_audit::{Activity, Event};
use wharf_vfs::UserFs;

use super::{FtpSession, LOG_TARGET, Next, User};
use crate::data::{DataError, DataStream, PassivePort, TransferError};
use crate::reply::{Code, Reply};
use crate::server::PassiveHost;
use crate::tls::Resumption;

/// Which way a transfer's bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    /// Downloads and listings: the client reads, and gets a fresh TLS
    /// ticket (see `tls.rs`).
    ToClient,
    /// Uploads.
    FromClient,
}

impl FtpSession {
    pub(super) async fn pasv(&mut self, fs: &UserFs) -> io::Result<Next> {
        // The port before goes, whatever becomes of this one.
        self.passive = None;
        if self.data_protection_missing(fs, "PASV").await? {
            return Ok(Next::Continue);
        }
        let announced = match &self.shared.passive_host {
            PassiveHost::FromConnection => match self.local.dialed.ip() {
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
                .reply(Code::CantOpenData, "PASV needs an IPv4 address: use EPSV.")
                .await;
        };
        let Ok(port) = self.open_passive() else {
            return self
                .reply(Code::CantOpenData, "No passive port is free.")
                .await;
        };
        let [a, b, c, d] = ip.octets();
        let text = format!(
            "Entering Passive Mode ({a},{b},{c},{d},{},{})",
            port >> 8,
            port & 0xff
        );
        self.reply(Code::Passive, text).await
    }

    /// EPSV; `all`: EPSV ALL.
    pub(super) async fn epsv(&mut self, fs: &UserFs, all: bool) -> io::Result<Next> {
        if all {
            return self.reply(Code::Ok, "EPSV ALL ok.").await;
        }
        // The port before goes, whatever becomes of this one.
        self.passive = None;
        if self.data_protection_missing(fs, "EPSV").await? {
            return Ok(Next::Continue);
        }
        let Ok(port) = self.open_passive() else {
            return self
                .reply(Code::CantOpenData, "No passive port is free.")
                .await;
        };
        self.reply(
            Code::ExtendedPassive,
            format!("Entering Extended Passive Mode (|||{port}|)"),
        )
        .await
    }

    /// A new passive port: its number.
    fn open_passive(&mut self) -> Result<u16, ()> {
        match PassivePort::bind(self.local.own.ip(), &self.shared.passive_ports) {
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

    /// With FTPS, data connections need PROT P: refused (and logged) here
    /// when it is missing.
    pub(super) async fn data_protection_missing(
        &mut self,
        fs: &UserFs,
        operation: &str,
    ) -> io::Result<bool> {
        if self.tls.is_none() || self.protect_data {
            return Ok(false);
        }
        log_refusal(
            fs,
            operation,
            "",
            "the data connection is not protected by TLS (PROT P is required)",
        );
        self.control
            .reply(&Reply::new(
                Code::PolicyRefused,
                "PROT P is required for data connections.",
            ))
            .await?;
        Ok(true)
    }

    /// The data connection of a transfer: accepted on the passive port,
    /// announced with 150, then (FTPS) secured and checked. `None` when it
    /// failed; the reply has been sent.
    pub(super) async fn data_connection(
        &mut self,
        user: &User,
        operation: &str,
        path: &str,
        direction: Direction,
    ) -> io::Result<Option<DataStream>> {
        let Some(port) = self.passive.take() else {
            self.control
                .reply(&Reply::new(Code::CantOpenData, "Use PASV or EPSV first."))
                .await?;
            return Ok(None);
        };
        let stream = match port
            .accept(
                self.info.source_ip,
                self.proxy.as_deref(),
                self.shared.gateway.guard(),
            )
            .await
        {
            Ok(stream) => stream,
            Err(error) => {
                tracing::info!(target: LOG_TARGET, session = %self.info.session_id, "{operation}: {error:?}");
                self.control
                    .reply(&Reply::new(
                        Code::CantOpenData,
                        "Can't open data connection.",
                    ))
                    .await?;
                return Ok(None);
            }
        };
        self.control
            .reply(&Reply::new(
                Code::OpeningData,
                "Opening BINARY mode data connection.",
            ))
            .await?;
        let Some(tls) = &user.data_tls else {
            return Ok(Some(DataStream::plain(stream, self.shared.idle_timeout)));
        };
        let enforce = tls.resumption == Resumption::Enforced;
        let data_tls = tls.data(direction == Direction::ToClient);
        match DataStream::tls(stream, data_tls, enforce, self.shared.idle_timeout).await {
            Ok(stream) => Ok(Some(stream)),
            Err(DataError::Connect(reason)) => {
                tracing::info!(target: LOG_TARGET, session = %self.info.session_id, "{operation}: {reason}");
                self.control
                    .reply(&Reply::new(
                        Code::CantOpenData,
                        "Can't open data connection: TLS handshake failed.",
                    ))
                    .await?;
                Ok(None)
            }
            Err(DataError::Refused(reason)) => {
                log_refusal(&user.fs, operation, path, reason);
                let text = format!("Data connection refused: {reason}.");
                self.control
                    .reply(&Reply::new(Code::Unavailable, text))
                    .await?;
                Ok(None)
            }
        }
    }

    /// The final reply of a transfer; `None`: it was aborted (ABOR, or the
    /// control connection closed).
    pub(super) async fn finish(
        &mut self,
        outcome: Option<Result<u64, TransferError>>,
        done: &str,
    ) -> io::Result<Next> {
        match outcome {
            Some(Ok(_)) => self.reply(Code::TransferDone, done.to_owned()).await,
            Some(Err(TransferError::Connection(error))) => {
                tracing::info!(target: LOG_TARGET, session = %self.info.session_id, "transfer: data connection failed: {error}");
                self.reply(
                    Code::TransferAborted,
                    "Connection closed; transfer aborted.",
                )
                .await
            }
            Some(Err(TransferError::Store(error))) => self.fail(&error).await,
            None => {
                self.control
                    .reply(&Reply::new(Code::TransferAborted, "Transfer aborted."))
                    .await?;
                self.reply(Code::TransferDone, "ABOR successful.").await
            }
        }
    }
}

/// A data connection refused by the FTPS rules: logged as ERROR "data
/// connection refused" (only logged-in connections get this far).
fn log_refusal(fs: &UserFs, operation: &str, path: &str, reason: &str) {
    let audit = fs.audit();
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
