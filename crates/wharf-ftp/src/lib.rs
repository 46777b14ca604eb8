//! The FTP and FTPS front-end: our own control and data channels over the
//! gateway.
//!
//! A login goes through the [`Gateway`](wharf_session::Gateway) (protocol
//! FTPS or FTP, the client's real address); every file operation goes
//! through the session's `UserFs`, so authorization and the activity log
//! are the same as for SFTP. FTPS is explicit (AUTH TLS) only: with TLS
//! configured, USER before AUTH TLS is refused, data connections must be
//! TLS (PROT P) and, with [`Resumption::Enforced`], must resume a TLS session
//! this server issued to a control connection of the same user from the
//! same client address. rustls runs on the aws-lc-rs provider only.
//!
//! Modules: `server` (accept loop), `control` (the control connection: its
//! line reader and AUTH TLS), `command` (a line parsed into a `Command`,
//! once), `session` (one control connection: its state, the command loop
//! and the dispatch to one module per family of commands under
//! `session/`), `data` (passive ports, data TLS, the transfers), `listing`
//! (LIST/MLSD lines, listings page by page), `reply` (reply codes, replies
//! on the wire, and `vfs::ErrorKind` to reply codes), `tls` (certificates
//! and per-connection rustls configurations), `resume` (which sessions a
//! data connection may resume), `auth` (logins).
//!
//! Architecture invariants:
//! - No storage, no policy: the only road to bytes is `UserFs`.
//! - FTP reply vocabulary lives here: the codes are named once (`reply::Code`),
//!   and `vfs::ErrorKind` becomes a reply in one exhaustive `match`
//!   (`reply.rs`).
//! - A command line is parsed in one place (`command.rs`, which the fuzz
//!   target exercises); handlers get typed arguments.
//! - Listings stream page by page (`listing::LIST_PAGE` entries at a time):
//!   memory does not grow with the size of a directory.

mod auth;
mod command;
pub mod config;
mod control;
mod data;
/// Fuzz target bodies (`fuzz/`), built for its tests and with the
/// `fuzzing` feature only.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod listing;
mod reply;
mod resume;
mod server;
mod session;
mod tls;

pub use rustls::pki_types::{CertificateDer, PrivateKeyDer};
pub use server::{FtpConfig, FtpServer, FtpSettings};
pub use tls::{Resumption, TlsConfig, load_pem, self_signed_certificate};
