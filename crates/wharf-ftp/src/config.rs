//! `[protocols.ftps]` and `[protocols.ftp]`.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};
use wharf_config::{Problems, values};

use crate::Resumption;

/// `[protocols.ftps]`: explicit TLS (AUTH TLS).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FtpsSection {
    #[serde(with = "values::address")]
    pub listen: SocketAddr,
    /// Both or neither; neither: self-signed, generated once in `data_dir`.
    #[serde(deserialize_with = "values::optional_path::deserialize")]
    pub certificate: Option<PathBuf>,
    #[serde(deserialize_with = "values::optional_path::deserialize")]
    pub private_key: Option<PathBuf>,
    #[serde(with = "values::ports")]
    pub passive_ports: RangeInclusive<u16>,
    /// Announced in PASV/EPSV replies; `None`: the address the client
    /// connected to (the control connection's local address, or behind a
    /// balancer the destination its PROXY header carried).
    #[serde(deserialize_with = "values::optional_string::deserialize")]
    pub passive_address: Option<String>,
    #[serde(deserialize_with = "resumption")]
    pub tls_session_resumption: Resumption,
}

impl Default for FtpsSection {
    fn default() -> FtpsSection {
        FtpsSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 2121)),
            certificate: None,
            private_key: None,
            passive_ports: 50000..=50100,
            passive_address: None,
            tls_session_resumption: Resumption::Enforced,
        }
    }
}

impl FtpsSection {
    pub fn validate(&self, path: &str, problems: &mut Problems) {
        if self.certificate.is_some() != self.private_key.is_some() {
            problems.push(path, "certificate and private_key go together");
        }
    }
}

/// `[protocols.ftp]`: plain FTP, off unless present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FtpSection {
    #[serde(with = "values::address")]
    pub listen: SocketAddr,
    #[serde(with = "values::ports")]
    pub passive_ports: RangeInclusive<u16>,
}

impl Default for FtpSection {
    fn default() -> FtpSection {
        FtpSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 2021)),
            passive_ports: 50101..=50200,
        }
    }
}

fn resumption<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Resumption, D::Error> {
    let name = String::deserialize(deserializer)?;
    Resumption::parse(&name).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "{name:?} is not \"enforced\", \"enabled\" or \"disabled\""
        ))
    })
}
