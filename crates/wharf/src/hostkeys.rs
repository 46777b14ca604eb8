//! SSH host keys: loaded from `server.host_keys`, or generated once
//! (ed25519 and rsa-3072) into `data_dir` and reused after.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::{KeypairData, RsaKeypair};
use russh::keys::{Algorithm, PrivateKey};

use crate::Failure;
use crate::config::ServerConfig;

fn load(path: &Path) -> Result<PrivateKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    russh::keys::decode_secret_key(&text, None)
        .map_err(|e| format!("{} is not a usable private key: {e}", path.display()))
}

fn generate(algorithm: &str) -> Result<PrivateKey, Failure> {
    let mut rng = rand_keys::rng();
    let key = match algorithm {
        "ed25519" => PrivateKey::random(&mut rng, Algorithm::Ed25519),
        _ => RsaKeypair::random(&mut rng, 3072)
            .and_then(|pair| PrivateKey::new(KeypairData::from(pair), "wharf host key")),
    };
    key.map_err(|e| Failure::Internal(format!("cannot generate a host key: {e}")))
}

fn save(path: &Path, key: &PrivateKey) -> Result<(), Failure> {
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| Failure::Internal(format!("cannot encode a host key: {e}")))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::User(format!("cannot create {}: {e}", parent.display())))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Failure::User(format!("cannot write host key {}: {e}", path.display())))?;
    file.write_all(text.as_bytes())
        .map_err(|e| Failure::User(format!("cannot write host key {}: {e}", path.display())))
}

/// The generated keys' paths in `data_dir`.
pub fn generated_paths(data_dir: &Path) -> [(PathBuf, &'static str); 2] {
    let dir = data_dir.join("host_keys");
    [
        (dir.join("ssh_host_ed25519_key"), "ed25519"),
        (dir.join("ssh_host_rsa_key"), "rsa"),
    ]
}

/// The algorithm of a key `generate` makes.
pub fn algorithm(kind: &str) -> Algorithm {
    match kind {
        "ed25519" => Algorithm::Ed25519,
        _ => Algorithm::Rsa { hash: None },
    }
}

/// The configured keys; or the generated ones that exist, and the ones
/// still to generate (with their paths). Reads, never writes; every problem
/// named by its key path.
#[allow(clippy::type_complexity)]
pub fn plan(
    server: &ServerConfig,
) -> Result<(Vec<PrivateKey>, Vec<(PathBuf, &'static str)>), Vec<String>> {
    let mut keys = Vec::new();
    let mut problems = Vec::new();
    if !server.host_keys.is_empty() {
        for (i, path) in server.host_keys.iter().enumerate() {
            match load(path) {
                Ok(key) => keys.push(key),
                Err(e) => problems.push(format!("server.host_keys[{i}]: {e}")),
            }
        }
        return if problems.is_empty() {
            Ok((keys, Vec::new()))
        } else {
            Err(problems)
        };
    }
    let mut generate = Vec::new();
    for (path, algorithm) in generated_paths(&server.data_dir) {
        if path.exists() {
            match load(&path) {
                Ok(key) => keys.push(key),
                Err(e) => problems.push(format!("server.data_dir: host key {e}")),
            }
        } else {
            generate.push((path, algorithm));
        }
    }
    if problems.is_empty() {
        Ok((keys, generate))
    } else {
        Err(problems)
    }
}

/// Generates a host key of `kind` and writes it to `path` (owner-only).
pub fn generate_into(path: &Path, kind: &str) -> Result<PrivateKey, Failure> {
    let key = generate(kind)?;
    save(path, &key)?;
    eprintln!("wharf: generated {kind} host key {}", path.display());
    Ok(key)
}
