//! The named sets of SSH algorithms a listener offers
//! (`server.security_policy`), and what they require of the host keys.

use std::borrow::Cow;

use russh::Preferred;
use russh::keys::{Algorithm, HashAlg};

/// A named set of SSH algorithms (`server.security_policy`, SPEC section 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityPolicy {
    /// Every client of SPEC section 9: post-quantum hybrid key exchange
    /// first (ML-KEM for OpenSSH 9.9+, sntrup761 for OpenSSH 8.5-9.8),
    /// AEAD ciphers first, and CTR with HMAC-SHA2 (encrypt-and-MAC too) for
    /// libssh2 1.10 (curl, PHP). No SHA-1, no CBC, no small DH groups, no
    /// DSA, no NIST curves; strict KEX against Terrapin.
    Wharf2025_11,
    /// Audited deployments: what `ssh-audit` passes without a warning
    /// (post-quantum hybrid key exchange only, encrypt-then-MAC only).
    /// Clients without ML-KEM or sntrup761 (libssh2, paramiko, OpenSSH
    /// before 8.5) cannot connect.
    WharfRestricted2025_11,
    /// FIPS 140-approved algorithms only: no ChaCha20, no Curve25519, no Ed25519.
    WharfFips2025_11,
}

impl SecurityPolicy {
    /// Every policy name, for error messages.
    pub const NAMES: [&str; 3] = [
        "wharf-2025-11",
        "wharf-restricted-2025-11",
        "wharf-fips-2025-11",
    ];

    pub fn parse(name: &str) -> Option<SecurityPolicy> {
        match name {
            "wharf-2025-11" => Some(SecurityPolicy::Wharf2025_11),
            "wharf-restricted-2025-11" => Some(SecurityPolicy::WharfRestricted2025_11),
            "wharf-fips-2025-11" => Some(SecurityPolicy::WharfFips2025_11),
            _ => None,
        }
    }

    /// The name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            SecurityPolicy::Wharf2025_11 => Self::NAMES[0],
            SecurityPolicy::WharfRestricted2025_11 => Self::NAMES[1],
            SecurityPolicy::WharfFips2025_11 => Self::NAMES[2],
        }
    }

    /// What [`super::SftpServer::new`] requires of the host keys (given by their
    /// algorithms, so that keys still to be generated can be checked): at
    /// least one, and one this policy offers.
    pub fn check_host_keys(self, algorithms: &[Algorithm]) -> Result<(), String> {
        if algorithms.is_empty() {
            return Err("no host keys".to_owned());
        }
        let preferred = self.preferred();
        let usable = algorithms.iter().any(|k| {
            preferred.key.iter().any(|a| match a {
                Algorithm::Rsa { .. } => matches!(k, Algorithm::Rsa { .. }),
                other => k == other,
            })
        });
        if !usable {
            return Err(format!(
                "no host key suits the security policy {} (it offers {})",
                self.name(),
                preferred
                    .key
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(())
    }

    pub fn preferred(self) -> Preferred {
        use russh::{cipher, kex, mac};
        let extensions = [
            kex::EXTENSION_SUPPORT_AS_SERVER,
            kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
        ];
        let rsa = [
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512),
            },
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha256),
            },
        ];
        let post_quantum_kex = [
            kex::MLKEM768X25519_SHA256,
            kex::SNTRUP761X25519_SHA512,
            kex::SNTRUP761X25519_SHA512_OPENSSH,
        ];
        let classical_kex = [
            kex::CURVE25519,
            kex::CURVE25519_PRE_RFC_8731,
            kex::DH_G16_SHA512,
            kex::DH_G18_SHA512,
        ];
        let modern_ciphers = &[
            cipher::AES_128_GCM,
            cipher::AES_256_GCM,
            cipher::CHACHA20_POLY1305,
            cipher::AES_256_CTR,
            cipher::AES_192_CTR,
            cipher::AES_128_CTR,
        ];
        let key = || {
            Cow::Owned(
                [Algorithm::Ed25519]
                    .into_iter()
                    .chain(rsa.clone())
                    .collect(),
            )
        };
        match self {
            SecurityPolicy::Wharf2025_11 => Preferred {
                kex: Cow::Owned(
                    post_quantum_kex
                        .into_iter()
                        .chain(classical_kex)
                        .chain(extensions)
                        .collect(),
                ),
                key: key(),
                host_key_certificates: Cow::Borrowed(&[]),
                cipher: Cow::Borrowed(modern_ciphers),
                mac: Cow::Borrowed(&[
                    mac::HMAC_SHA256_ETM,
                    mac::HMAC_SHA512_ETM,
                    // libssh2 1.10 knows no encrypt-then-MAC.
                    mac::HMAC_SHA256,
                    mac::HMAC_SHA512,
                ]),
                compression: Cow::Borrowed(&[russh::compression::NONE]),
            },
            SecurityPolicy::WharfRestricted2025_11 => Preferred {
                // Post-quantum hybrids only: ssh-audit warns about every
                // classical key exchange.
                kex: Cow::Owned(post_quantum_kex.into_iter().chain(extensions).collect()),
                key: key(),
                host_key_certificates: Cow::Borrowed(&[]),
                cipher: Cow::Borrowed(modern_ciphers),
                mac: Cow::Borrowed(&[mac::HMAC_SHA256_ETM, mac::HMAC_SHA512_ETM]),
                compression: Cow::Borrowed(&[russh::compression::NONE]),
            },
            SecurityPolicy::WharfFips2025_11 => Preferred {
                kex: Cow::Owned(
                    [
                        kex::ECDH_SHA2_NISTP256,
                        kex::ECDH_SHA2_NISTP384,
                        kex::DH_G16_SHA512,
                        kex::DH_G18_SHA512,
                    ]
                    .into_iter()
                    .chain(extensions)
                    .collect(),
                ),
                key: Cow::Owned(rsa.into_iter().collect()),
                host_key_certificates: Cow::Borrowed(&[]),
                cipher: Cow::Borrowed(&[
                    cipher::AES_128_GCM,
                    cipher::AES_256_GCM,
                    cipher::AES_256_CTR,
                    cipher::AES_128_CTR,
                ]),
                mac: Cow::Borrowed(&[mac::HMAC_SHA256_ETM, mac::HMAC_SHA512_ETM]),
                compression: Cow::Borrowed(&[russh::compression::NONE]),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys_must_suit_the_security_policy() {
        let ed25519 = [Algorithm::Ed25519];
        let rsa = [Algorithm::Rsa { hash: None }];
        assert_eq!(
            SecurityPolicy::Wharf2025_11.check_host_keys(&ed25519),
            Ok(())
        );
        assert_eq!(
            SecurityPolicy::WharfFips2025_11.check_host_keys(&rsa),
            Ok(())
        );
        let refused = SecurityPolicy::WharfFips2025_11.check_host_keys(&ed25519);
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("wharf-fips-2025-11") && e.contains("rsa-sha2-512")),
            "{refused:?}"
        );
        assert_eq!(
            SecurityPolicy::Wharf2025_11.check_host_keys(&[]),
            Err("no host keys".to_owned())
        );
        for name in SecurityPolicy::NAMES {
            assert_eq!(
                SecurityPolicy::parse(name).map(SecurityPolicy::name),
                Some(name)
            );
        }
    }
}
