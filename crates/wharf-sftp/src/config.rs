//! `[protocols.sftp]`, and the `[server]` values only SFTP reads.

use std::net::SocketAddr;

use serde::{Deserialize, Deserializer};
use wharf_config::values;

use crate::SecurityPolicy;

/// `[protocols.sftp]`: SFTP runs when the section is present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftpSection {
    #[serde(with = "values::address")]
    pub listen: SocketAddr,
}

impl Default for SftpSection {
    fn default() -> SftpSection {
        SftpSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 2222)),
        }
    }
}

/// `server.security_policy` (`deserialize_with`).
pub fn security_policy<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<SecurityPolicy, D::Error> {
    let name = String::deserialize(deserializer)?;
    SecurityPolicy::parse(&name).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "{name:?} is not a known policy ({})",
            SecurityPolicy::NAMES.join(", ")
        ))
    })
}
