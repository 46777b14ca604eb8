//! The SFTP front-end: SSH via russh and our own SFTP v3 server.
//!
//! This is the only crate that knows SSH and SFTP. It reaches bytes only
//! through the [`wharf_vfs::UserFs`] of a session the gateway opened after a
//! successful login, and maps `wharf_vfs::Error` to `SSH_FX_*` codes in one
//! place (`status.rs`).
//!
//! Architecture invariant: no dependency on `wharf-storage` or
//! `wharf-policy`.

pub mod codec;
pub mod config;
pub mod dispatch;
/// Fuzz target bodies (`fuzz/`), built for its tests and with the
/// `fuzzing` feature only.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod pipe;
mod server;
mod sniff;
mod status;

pub use server::{AuthMethods, SecurityPolicy, SftpConfig, SftpServer};
