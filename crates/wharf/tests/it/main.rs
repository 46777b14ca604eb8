//! End-to-end tests: the real `wharf` binary driven by real clients
//! (OpenSSH `sftp` and `scp`, paramiko, raw sockets).

#![allow(clippy::unwrap_used)]

mod admin;
mod balancer;
mod cli;
mod cluster;
mod defences;
mod ftp_commands;
mod ftps;
mod hostile;
mod idp;
mod invariants;
mod ldap;
mod many_sessions;
mod paramiko;
mod policy;
mod proxy;
mod s3;
mod sftp;
mod sql;

use std::path::{Path, PathBuf};

pub use wharf_test_support::wharf::{Login, Wharf, basic_config, scp, sftp_batch, ssh_key};

pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_wharf"))
}

/// A prepared (not started) server with `basic_config(extra)`.
pub fn prepare(extra: &str) -> Wharf {
    Wharf::prepare(binary(), &basic_config(extra))
}

/// `prepare(extra)` with the user alice (password `alice-pw`, LOGICAL home
/// `/` -> `/default/alice`), started.
pub fn with_alice(extra: &str) -> Wharf {
    let wharf = prepare(extra);
    wharf.add_user(
        "alice",
        Some("alice-pw"),
        &["--home-directory-mapping", "/=/default/alice"],
    );
    wharf.start()
}

pub fn py(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/py")
        .join(name)
}

pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
