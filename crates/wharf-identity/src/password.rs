//! Password hashes: wharf makes argon2id ones (service-managed users) and
//! checks the schemes a migrated user table holds (the `sql` provider),
//! chosen by the hash's prefix:
//!
//! | prefix | scheme |
//! |---|---|
//! | `$argon2id$`, `$argon2i$` | argon2 (PHC string) |
//! | `$2a$`, `$2b$`, `$2y$` | bcrypt (the password's first 72 bytes, as every bcrypt) |
//! | `$6$` | sha512-crypt (glibc `crypt`, with or without `rounds=`) |
//! | `$pbkdf2-sha256$` | PBKDF2-HMAC-SHA256 in passlib's format: `$pbkdf2-sha256$ROUNDS$SALT$HASH`, salt and hash in passlib's adapted base64 (`.` for `+`, no padding) |
//!
//! A hash's cost comes from the hash itself, that is from whoever wrote the
//! table; so it is checked against [`limits`] before any work: a hash that
//! would take seconds of a core or gigabytes of memory per login is refused
//! as unusable rather than computed. No message here ever holds a hash or
//! a password.

use std::fmt;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use subtle::ConstantTimeEq as _;

/// The most costly hashes wharf computes; a costlier stored hash is refused
/// unchecked ([`HashProblem::TooCostly`]). Each is above the published
/// defaults and recommendations of its scheme (OWASP 2023, passlib,
/// argon2-cffi) with room to spare.
pub mod limits {
    /// argon2 memory per check, KiB (256 MiB; argon2-cffi's default is 64 MiB).
    pub const ARGON2_MEMORY_KIB: u32 = 256 * 1024;
    /// argon2 passes.
    pub const ARGON2_TIME: u32 = 16;
    /// argon2 lanes.
    pub const ARGON2_LANES: u32 = 16;
    /// bcrypt cost (log2 of the rounds; 12 is common, 16 is about 16 times that).
    pub const BCRYPT_COST: u32 = 16;
    /// sha512-crypt rounds (passlib's default is 656,000).
    pub const SHA512_CRYPT_ROUNDS: u32 = 2_000_000;
    /// PBKDF2-HMAC-SHA256 iterations (OWASP recommends 600,000).
    pub const PBKDF2_ROUNDS: u32 = 2_000_000;
}

/// A password hash scheme wharf can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashScheme {
    Argon2,
    Bcrypt,
    Sha512Crypt,
    Pbkdf2Sha256,
}

impl HashScheme {
    pub fn name(self) -> &'static str {
        match self {
            HashScheme::Argon2 => "argon2",
            HashScheme::Bcrypt => "bcrypt",
            HashScheme::Sha512Crypt => "sha512-crypt",
            HashScheme::Pbkdf2Sha256 => "pbkdf2-sha256",
        }
    }

    /// The scheme of a stored hash, its format and cost checked (cheaply,
    /// without computing anything).
    pub fn of(hash: &str) -> Result<HashScheme, HashProblem> {
        let scheme = if hash.is_empty() {
            return Err(HashProblem::Empty);
        } else if hash.starts_with("$argon2id$") || hash.starts_with("$argon2i$") {
            HashScheme::Argon2
        } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            HashScheme::Bcrypt
        } else if hash.starts_with("$6$") {
            HashScheme::Sha512Crypt
        } else if hash.starts_with("$pbkdf2-sha256$") {
            HashScheme::Pbkdf2Sha256
        } else {
            return Err(HashProblem::UnknownScheme);
        };
        let cost = match scheme {
            HashScheme::Argon2 => argon2_cost(hash),
            HashScheme::Bcrypt => bcrypt_cost(hash),
            HashScheme::Sha512Crypt => sha512_crypt_cost(hash),
            HashScheme::Pbkdf2Sha256 => Pbkdf2Hash::parse(hash).map(drop),
        };
        cost.map(|()| scheme)
    }
}

impl fmt::Display for HashScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a stored hash cannot be checked. Never shows the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashProblem {
    Empty,
    /// No known prefix (plain text, md5-crypt, a scheme wharf lacks...).
    UnknownScheme,
    Malformed(HashScheme),
    /// Costlier than [`limits`] allow.
    TooCostly(HashScheme, String),
}

impl fmt::Display for HashProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashProblem::Empty => f.write_str("the stored password hash is empty"),
            HashProblem::UnknownScheme => f.write_str(
                "the stored password hash has no known scheme prefix \
                 ($argon2id$, $2a$/$2b$/$2y$, $6$ or $pbkdf2-sha256$)",
            ),
            HashProblem::Malformed(scheme) => {
                write!(f, "the stored {scheme} password hash is malformed")
            }
            HashProblem::TooCostly(scheme, detail) => write!(
                f,
                "the stored {scheme} password hash costs more than wharf computes per login \
                 ({detail})"
            ),
        }
    }
}

fn argon2_cost(hash: &str) -> Result<(), HashProblem> {
    let malformed = || HashProblem::Malformed(HashScheme::Argon2);
    let parsed = PasswordHash::new(hash).map_err(|_| malformed())?;
    let params = argon2::Params::try_from(&parsed).map_err(|_| malformed())?;
    let too = |detail: String| Err(HashProblem::TooCostly(HashScheme::Argon2, detail));
    if params.m_cost() > limits::ARGON2_MEMORY_KIB {
        return too(format!(
            "m={} KiB > {}",
            params.m_cost(),
            limits::ARGON2_MEMORY_KIB
        ));
    }
    if params.t_cost() > limits::ARGON2_TIME {
        return too(format!("t={} > {}", params.t_cost(), limits::ARGON2_TIME));
    }
    if params.p_cost() > limits::ARGON2_LANES {
        return too(format!("p={} > {}", params.p_cost(), limits::ARGON2_LANES));
    }
    Ok(())
}

fn bcrypt_cost(hash: &str) -> Result<(), HashProblem> {
    let parts: bcrypt::HashParts = hash
        .parse()
        .map_err(|_| HashProblem::Malformed(HashScheme::Bcrypt))?;
    if parts.get_cost() > limits::BCRYPT_COST {
        return Err(HashProblem::TooCostly(
            HashScheme::Bcrypt,
            format!("cost {} > {}", parts.get_cost(), limits::BCRYPT_COST),
        ));
    }
    Ok(())
}

fn sha512_crypt_cost(hash: &str) -> Result<(), HashProblem> {
    let rest = &hash["$6$".len()..];
    let Some(rounds) = rest.strip_prefix("rounds=") else {
        // The default, 5000 rounds.
        return Ok(());
    };
    let digits = rounds.split('$').next().unwrap_or("");
    let rounds: u64 = digits
        .parse()
        .map_err(|_| HashProblem::Malformed(HashScheme::Sha512Crypt))?;
    if rounds > u64::from(limits::SHA512_CRYPT_ROUNDS) {
        return Err(HashProblem::TooCostly(
            HashScheme::Sha512Crypt,
            format!("rounds={rounds} > {}", limits::SHA512_CRYPT_ROUNDS),
        ));
    }
    Ok(())
}

/// `$pbkdf2-sha256$ROUNDS$SALT$HASH`, as passlib writes it.
struct Pbkdf2Hash {
    rounds: u32,
    salt: Vec<u8>,
    checksum: Vec<u8>,
}

impl Pbkdf2Hash {
    fn parse(hash: &str) -> Result<Pbkdf2Hash, HashProblem> {
        let malformed = || HashProblem::Malformed(HashScheme::Pbkdf2Sha256);
        let rest = hash.strip_prefix("$pbkdf2-sha256$").ok_or_else(malformed)?;
        let mut fields = rest.split('$');
        let (Some(rounds), Some(salt), Some(checksum), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(malformed());
        };
        let rounds: u64 = rounds.parse().map_err(|_| malformed())?;
        if rounds == 0 {
            return Err(malformed());
        }
        if rounds > u64::from(limits::PBKDF2_ROUNDS) {
            return Err(HashProblem::TooCostly(
                HashScheme::Pbkdf2Sha256,
                format!("{rounds} rounds > {}", limits::PBKDF2_ROUNDS),
            ));
        }
        let salt = adapted_base64(salt).ok_or_else(malformed)?;
        let checksum = adapted_base64(checksum).ok_or_else(malformed)?;
        // passlib's pbkdf2_sha256 digest is the SHA-256 size.
        if checksum.len() != 32 {
            return Err(malformed());
        }
        Ok(Pbkdf2Hash {
            rounds: u32::try_from(rounds).map_err(|_| malformed())?,
            salt,
            checksum,
        })
    }

    fn verify(&self, password: &str) -> bool {
        let mut computed = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
            password.as_bytes(),
            &self.salt,
            self.rounds,
            &mut computed,
        );
        bool::from(computed.ct_eq(self.checksum.as_slice()))
    }
}

/// passlib's "adapted base64" (`ab64`): the standard alphabet with `.` for
/// `+`, without padding.
fn adapted_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const AB64: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    if text.is_empty() || text.contains('+') {
        return None;
    }
    AB64.decode(text.replace('.', "+")).ok()
}

/// Hashes a password as an argon2id PHC string (`$argon2id$v=19$...`).
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Checks a password against a stored hash of any scheme wharf knows
/// ([`HashScheme`]). Any doubt (an unparsable hash, an unknown scheme, a
/// cost above [`limits`]) is a mismatch. Slow by design: run it where a
/// blocking computation belongs ([`crate::hashing::HashQueue`]).
pub fn verify_password(password: &str, hash: &str) -> bool {
    let Ok(scheme) = HashScheme::of(hash) else {
        return false;
    };
    match scheme {
        HashScheme::Argon2 => match PasswordHash::new(hash) {
            Ok(parsed) => Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        },
        HashScheme::Bcrypt => bcrypt::verify(password, hash).unwrap_or(false),
        HashScheme::Sha512Crypt => sha_crypt::ShaCrypt::SHA512
            .verify_password(password.as_bytes(), hash)
            .is_ok(),
        HashScheme::Pbkdf2Sha256 => {
            Pbkdf2Hash::parse(hash).is_ok_and(|parsed| parsed.verify(password))
        }
    }
}

/// A hash of nothing in particular, checked when a user does not exist, so
/// that unknown users and wrong passwords take the same time.
pub(crate) fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("wharf timing equaliser").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_fail_closed() {
        let hash = hash_password("s3cret").unwrap_or_default();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("s3cret", &hash));
        assert!(!verify_password("s3cret ", &hash));
        assert!(!verify_password("", &hash));
        assert!(!verify_password("s3cret", "not a hash"));
        assert!(!verify_password("s3cret", ""));
        assert!(!verify_password("x", dummy_hash()));
    }

    /// Published test vectors, so that the schemes are checked without
    /// Python too (tests/sql.rs checks hashes made by reference
    /// implementations at test time).
    #[test]
    fn known_vectors_of_every_scheme() {
        // glibc crypt(3) documentation / Ulrich Drepper's specification.
        let sha512 = "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJu\
                      esI68u4OTLiBFdcbYEdFCoEOfaS35inz1";
        assert!(verify_password("Hello world!", sha512));
        assert!(!verify_password("Hello world", sha512));
        let sha512_rounds = "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.";
        assert!(verify_password("Hello world!", sha512_rounds));
        // The OpenBSD bcrypt test vectors.
        let bcrypt = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
        assert!(verify_password("U*U", bcrypt));
        assert!(!verify_password("U*U*", bcrypt));
        assert!(verify_password("U*U", &bcrypt.replace("$2a$", "$2b$")));
        assert!(verify_password("U*U", &bcrypt.replace("$2a$", "$2y$")));
        // passlib's own pbkdf2_sha256 test vector.
        let pbkdf2 = "$pbkdf2-sha256$1212$4vjV83LKPjQzk31VI4E0Vw$hsYF68OiOUPdDZ1Fg.fJPeq1h/gXXY7acBp9/6c.tmQ";
        assert!(verify_password("password", pbkdf2));
        assert!(!verify_password("Password", pbkdf2));
    }

    #[track_caller]
    fn problem(hash: &str, expected: &str) {
        let problem = HashScheme::of(hash).expect_err("must be refused");
        let text = problem.to_string();
        assert!(text.contains(expected), "{text:?} lacks {expected:?}");
        assert!(!verify_password("x", hash));
        // Never the hash itself (its salt or checksum part).
        if let Some(tail) = hash.rsplit('$').next().filter(|t| t.len() > 8) {
            assert!(!text.contains(tail), "{text:?} shows the hash");
        }
    }

    #[test]
    fn unusable_hashes_are_named_without_showing_them() {
        problem("", "empty");
        problem("plaintext-password", "no known scheme");
        problem("$1$saltsalt$qjXMvbEw8oaL.CzflDugX/", "no known scheme");
        problem(
            "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZF",
            "no known scheme",
        );
        problem(
            "$2x$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            "no known scheme",
        );
        problem(
            "$2b$31$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            "cost 31 > 16",
        );
        problem("$2b$xx$garbage", "bcrypt password hash is malformed");
        problem(
            "$6$rounds=999999999$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl",
            "rounds=999999999",
        );
        problem(
            "$6$rounds=lots$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl",
            "malformed",
        );
        problem(
            "$pbkdf2-sha256$99999999$4vjV83LKPjQzk31VI4E0Vw$hsYF68OiOUPdDZ1Fg.fJPeq1h/gXXY7acBp9/6c.tmQ",
            "99999999 rounds",
        );
        problem("$pbkdf2-sha256$1212$4vjV83LKPjQzk31VI4E0Vw", "malformed");
        problem(
            "$pbkdf2-sha256$1212$4vjV83LKPjQzk31VI4E0Vw$c2hvcnQ",
            "malformed",
        );
        problem(
            "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHQ$iWh06vD8Fy27wf9npn6FXWiCX4K6pW6Ue1Bnzz07Z8A",
            "m=4194304 KiB",
        );
        problem(
            "$argon2id$v=19$m=65536,t=3,p=4$not base64!$x",
            "argon2 password hash is malformed",
        );
    }
}
