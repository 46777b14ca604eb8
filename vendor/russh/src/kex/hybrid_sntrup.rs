//! wharf patch: `sntrup761x25519-sha512` (and its original name
//! `sntrup761x25519-sha512@openssh.com`), the post-quantum hybrid key
//! exchange of OpenSSH 8.5 to 9.8 (draft-ietf-sshm-ntruprime-ssh).
//!
//! The client sends `Q_C = sntrup761 public key (1158) || X25519 public key (32)`
//! in KEX_ECDH_INIT; the server answers `Q_S = sntrup761 ciphertext (1039) ||
//! X25519 public key (32)` in KEX_ECDH_REPLY. The shared secret is
//! `K = string(SHA-512(k_sntrup || k_x25519))`; the exchange hash and the
//! key derivation use SHA-512.

use byteorder::{BigEndian, ByteOrder};
use curve25519_dalek::montgomery::MontgomeryPoint;
use log::debug;
use sha2::Digest;
use ssh_encoding::{Encode, Writer};

use super::{KexAlgorithm, KexAlgorithmImplementor, KexType, SharedSecret, compute_keys};
use crate::mac;
use crate::session::Exchange;
use crate::{CryptoVec, Error, cipher, msg};

const X25519_SIZE: usize = 32;

pub struct Sntrup761X25519KexType {}

impl KexType for Sntrup761X25519KexType {
    fn make(&self) -> KexAlgorithm {
        Sntrup761X25519Kex::default().into()
    }
}

#[doc(hidden)]
#[derive(Default)]
pub struct Sntrup761X25519Kex {
    sntrup_secret: Option<Box<sntrup761::DecapsulationKey>>,
    x25519_secret: Option<[u8; 32]>,
    /// SHA-512(k_sntrup || k_x25519), once known.
    shared: Option<[u8; 64]>,
}

impl std::fmt::Debug for Sntrup761X25519Kex {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "Sntrup761X25519Kex {{ [hidden] }}")
    }
}

fn combine(k_pq: &[u8], k_cl: &MontgomeryPoint) -> [u8; 64] {
    let mut hasher = sha2::Sha512::new();
    hasher.update(k_pq);
    hasher.update(k_cl.0);
    hasher.finalize().into()
}

impl KexAlgorithmImplementor for Sntrup761X25519Kex {
    fn skip_exchange(&self) -> bool {
        false
    }

    fn server_dh(&mut self, exchange: &mut Exchange, payload: &[u8]) -> Result<(), Error> {
        debug!("server_dh (sntrup761x25519)");
        if payload.first() != Some(&msg::KEX_ECDH_INIT) || payload.len() < 5 {
            return Err(Error::Inconsistent);
        }
        #[allow(clippy::indexing_slicing)] // length checked
        let len = BigEndian::read_u32(&payload[1..5]) as usize;
        if len != sntrup761::PUBLIC_KEY_SIZE + X25519_SIZE {
            return Err(Error::Kex);
        }
        let Some(q_c) = payload.get(5..5 + len) else {
            return Err(Error::Inconsistent);
        };
        let (pq_public, cl_public) = q_c.split_at(sntrup761::PUBLIC_KEY_SIZE);
        let pq_public =
            sntrup761::EncapsulationKey::try_from(pq_public).map_err(|_| Error::Kex)?;
        let mut client_x25519 = MontgomeryPoint([0; 32]);
        client_x25519.0.copy_from_slice(cl_public);

        let (ciphertext, k_pq) = pq_public.encapsulate(rand::rng());
        let server_secret = rand::random::<[u8; 32]>();
        let server_x25519 = MontgomeryPoint::mul_base_clamped(server_secret);
        let k_cl = client_x25519.mul_clamped(server_secret);
        if k_cl.0 == [0u8; 32] {
            debug!("client sent a low-order curve25519 pubkey");
            return Err(Error::Kex);
        }

        exchange.server_ephemeral.clear();
        exchange
            .server_ephemeral
            .extend_from_slice(ciphertext.as_ref());
        exchange.server_ephemeral.extend_from_slice(&server_x25519.0);
        self.shared = Some(combine(k_pq.as_ref(), &k_cl));
        Ok(())
    }

    fn client_dh(
        &mut self,
        client_ephemeral: &mut Vec<u8>,
        writer: &mut impl Writer,
    ) -> Result<(), Error> {
        let (pq_public, pq_secret) = sntrup761::generate_key(rand::rng());
        let x25519_secret = rand::random::<[u8; 32]>();
        let x25519_public = MontgomeryPoint::mul_base_clamped(x25519_secret);

        client_ephemeral.clear();
        client_ephemeral.extend_from_slice(pq_public.as_ref());
        client_ephemeral.extend_from_slice(&x25519_public.0);

        msg::KEX_ECDH_INIT.encode(writer)?;
        client_ephemeral.as_slice().encode(writer)?;

        self.sntrup_secret = Some(Box::new(pq_secret));
        self.x25519_secret = Some(x25519_secret);
        Ok(())
    }

    fn compute_shared_secret(&mut self, remote: &[u8]) -> Result<(), Error> {
        if remote.len() != sntrup761::CIPHERTEXT_SIZE + X25519_SIZE {
            return Err(Error::Kex);
        }
        let (ciphertext, server_x25519) = remote.split_at(sntrup761::CIPHERTEXT_SIZE);
        let ciphertext = sntrup761::Ciphertext::try_from(ciphertext).map_err(|_| Error::Kex)?;
        let pq_secret = self.sntrup_secret.take().ok_or(Error::KexInit)?;
        let k_pq = pq_secret.decapsulate(&ciphertext);
        let mut server_point = MontgomeryPoint([0; 32]);
        server_point.0.copy_from_slice(server_x25519);
        let x25519_secret = self.x25519_secret.take().ok_or(Error::KexInit)?;
        let k_cl = server_point.mul_clamped(x25519_secret);
        if k_cl.0 == [0u8; 32] {
            debug!("server sent a low-order curve25519 pubkey");
            return Err(Error::Kex);
        }
        self.shared = Some(combine(k_pq.as_ref(), &k_cl));
        Ok(())
    }

    fn shared_secret_bytes(&self) -> Option<&[u8]> {
        self.shared.as_ref().map(|s| s.as_slice())
    }

    fn compute_exchange_hash(
        &self,
        key: &[u8],
        exchange: &Exchange,
        buffer: &mut CryptoVec,
    ) -> Result<Vec<u8>, Error> {
        let shared = self.shared.as_ref().ok_or(Error::KexInit)?;
        buffer.clear();
        exchange.client_id.encode(buffer)?;
        exchange.server_id.encode(buffer)?;
        exchange.client_kex_init.encode(buffer)?;
        exchange.server_kex_init.encode(buffer)?;
        buffer.extend(key);
        exchange.client_ephemeral.encode(buffer)?;
        exchange.server_ephemeral.encode(buffer)?;
        shared.as_slice().encode(buffer)?;
        let mut hasher = sha2::Sha512::new();
        hasher.update(&buffer[..]);
        Ok(hasher.finalize().to_vec())
    }

    fn compute_keys(
        &self,
        session_id: &[u8],
        exchange_hash: &[u8],
        cipher: cipher::Name,
        remote_to_local_mac: mac::Name,
        local_to_remote_mac: mac::Name,
        is_server: bool,
    ) -> Result<super::cipher::CipherPair, Error> {
        let shared = self.shared.as_ref().ok_or(Error::KexInit)?;
        let shared_secret = SharedSecret::from_string(shared)?;
        compute_keys::<sha2::Sha512>(
            Some(&shared_secret),
            session_id,
            exchange_hash,
            cipher,
            remote_to_local_mac,
            local_to_remote_mac,
            is_server,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange_for(client: &mut Sntrup761X25519Kex) -> (Exchange, Vec<u8>) {
        let mut ephemeral = Vec::new();
        let mut init = Vec::new();
        client.client_dh(&mut ephemeral, &mut init).unwrap();
        let exchange = Exchange {
            client_id: b"SSH-2.0-client".to_vec(),
            server_id: b"SSH-2.0-server".to_vec(),
            client_kex_init: bytes::Bytes::from_static(b"client kexinit"),
            server_kex_init: bytes::Bytes::from_static(b"server kexinit"),
            client_ephemeral: ephemeral,
            server_ephemeral: Vec::new(),
            gex: None,
        };
        (exchange, init)
    }

    #[test]
    fn client_and_server_agree() {
        let mut client = Sntrup761X25519Kex::default();
        let mut server = Sntrup761X25519Kex::default();
        let (mut exchange, init) = exchange_for(&mut client);
        assert_eq!(init[0], msg::KEX_ECDH_INIT);
        server.server_dh(&mut exchange, &init).unwrap();
        assert_eq!(
            exchange.server_ephemeral.len(),
            sntrup761::CIPHERTEXT_SIZE + X25519_SIZE
        );
        client
            .compute_shared_secret(&exchange.server_ephemeral)
            .unwrap();
        assert_eq!(client.shared, server.shared);
        let mut buffer = CryptoVec::new();
        let a = client
            .compute_exchange_hash(b"host key", &exchange, &mut buffer)
            .unwrap();
        let b = server
            .compute_exchange_hash(b"host key", &exchange, &mut buffer)
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn hostile_client_values_are_errors_not_panics() {
        let mut server = Sntrup761X25519Kex::default();
        let mut exchange = Exchange::default();
        // Wrong length.
        let mut short = vec![msg::KEX_ECDH_INIT];
        short.extend_from_slice(&100u32.to_be_bytes());
        short.extend_from_slice(&[0u8; 100]);
        assert!(server.server_dh(&mut exchange, &short).is_err());
        // Truncated.
        let mut truncated = vec![msg::KEX_ECDH_INIT];
        truncated.extend_from_slice(&1190u32.to_be_bytes());
        truncated.extend_from_slice(&[7u8; 20]);
        assert!(server.server_dh(&mut exchange, &truncated).is_err());
        // A low-order X25519 point (all zero) after arbitrary key bytes.
        let mut zero_point = vec![msg::KEX_ECDH_INIT];
        zero_point.extend_from_slice(&1190u32.to_be_bytes());
        zero_point.extend_from_slice(&[0xa5u8; 1158]);
        zero_point.extend_from_slice(&[0u8; 32]);
        assert!(server.server_dh(&mut exchange, &zero_point).is_err());
        // Arbitrary public-key bytes with a valid point: no panic.
        for fill in [0u8, 0xff, 0x5a] {
            let mut any = vec![msg::KEX_ECDH_INIT];
            any.extend_from_slice(&1190u32.to_be_bytes());
            any.extend_from_slice(&[fill; 1158]);
            any.extend_from_slice(&MontgomeryPoint::mul_base_clamped([9u8; 32]).0);
            let _ = Sntrup761X25519Kex::default().server_dh(&mut exchange, &any);
        }
    }
}
