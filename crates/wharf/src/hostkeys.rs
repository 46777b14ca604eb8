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

fn load(path: &Path) -> Result<PrivateKey, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::User(format!("cannot read host key {}: {e}", path.display())))?;
    russh::keys::decode_secret_key(&text, None).map_err(|e| {
        Failure::User(format!(
            "host key {} is not a usable private key: {e}",
            path.display()
        ))
    })
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

/// The configured keys, or the generated ones (created on first use).
pub fn load_or_generate(server: &ServerConfig) -> Result<Vec<PrivateKey>, Failure> {
    if !server.host_keys.is_empty() {
        return server.host_keys.iter().map(|p| load(p)).collect();
    }
    let mut keys = Vec::new();
    for (path, algorithm) in generated_paths(&server.data_dir) {
        if path.exists() {
            keys.push(load(&path)?);
        } else {
            let key = generate(algorithm)?;
            save(&path, &key)?;
            eprintln!("wharf: generated {algorithm} host key {}", path.display());
            keys.push(key);
        }
    }
    Ok(keys)
}
