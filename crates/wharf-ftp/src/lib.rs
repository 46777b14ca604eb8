//! The FTP and FTPS front-end: libunftp with our own `StorageBackend` and
//! `Authenticator`.
//!
//! A login goes through the [`Gateway`](wharf_session::Gateway) (protocol
//! FTPS or FTP, the client's real address); every file operation goes
//! through the session's `UserFs`, so authorization and the activity log
//! are the same as for SFTP. FTPS is explicit (AUTH TLS) only: with TLS
//! configured, USER before AUTH TLS is refused, data connections must be
//! TLS (PROT P) and, with [`Resumption::Enforced`], must resume the control
//! connection's TLS session. rustls runs on the aws-lc-rs provider only.
//!
//! Architecture invariants:
//! - No storage, no policy: the only road to bytes is `UserFs`.
//! - FTP reply vocabulary lives here, and `vfs::ErrorKind` becomes a reply
//!   in one exhaustive `match` (`reply.rs`).
//!
//! What libunftp 0.24 cannot do, and what this crate does about it, is in
//! the module docs of `server`, `tls` and `backend`: no listening on a
//! pre-bound socket (our accept loop, one libunftp server per connection),
//! no resumption enforcement (counted in rustls hooks), PROT P checked on
//! PASV only (checked again per transfer), listings as whole `Vec`s
//! (bounded at [`MAX_LISTING_ENTRIES`]), sessions always starting at `/`.

mod auth;
mod backend;
mod log;
mod reply;
mod server;
mod tls;

pub use backend::MAX_LISTING_ENTRIES;
pub use rustls::pki_types::{CertificateDer, PrivateKeyDer};
pub use server::{FtpConfig, FtpServer};
pub use tls::{Resumption, TlsConfig, load_pem, self_signed_certificate};
