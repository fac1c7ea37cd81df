//! Hashes and HMAC with RustCrypto (`sha1`, `sha2`, `hmac`): pure Rust, no state kept, and the
//! HMAC check compares in constant time.

use hmac::{Hmac, Mac};
use kmipd_proto::enums::{cryptographic_algorithm as alg, hashing_algorithm as ha};
use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use crate::error::{Error, Result};

/// The digest of `data` with a KMIP Hashing Algorithm (SHA-1, SHA-224/256/384/512).
pub(crate) fn hash(hashing: u32, data: &[u8]) -> Result<Vec<u8>> {
    Ok(match hashing {
        ha::SHA_1 => Sha1::digest(data).to_vec(),
        ha::SHA_224 => Sha224::digest(data).to_vec(),
        ha::SHA_256 => Sha256::digest(data).to_vec(),
        ha::SHA_384 => Sha384::digest(data).to_vec(),
        ha::SHA_512 => Sha512::digest(data).to_vec(),
        _ => {
            return Err(Error::BadCryptographicParameters(
                "unsupported Hashing Algorithm",
            ));
        }
    })
}

fn keyed<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Result<M> {
    let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
        .map_err(|_| Error::CryptographicFailure("bad MAC key"))?;
    m.update(data);
    Ok(m)
}

/// The HMAC of `data` with a KMIP Cryptographic Algorithm (HMAC-SHA1, -SHA224..-SHA512).
pub(crate) fn hmac(algorithm: u32, key: &[u8], data: &[u8]) -> Result<Vec<u8>> {
    Ok(match algorithm {
        alg::HMAC_SHA1 => keyed::<Hmac<Sha1>>(key, data)?
            .finalize()
            .into_bytes()
            .to_vec(),
        alg::HMAC_SHA224 => keyed::<Hmac<Sha224>>(key, data)?
            .finalize()
            .into_bytes()
            .to_vec(),
        alg::HMAC_SHA256 => keyed::<Hmac<Sha256>>(key, data)?
            .finalize()
            .into_bytes()
            .to_vec(),
        alg::HMAC_SHA384 => keyed::<Hmac<Sha384>>(key, data)?
            .finalize()
            .into_bytes()
            .to_vec(),
        alg::HMAC_SHA512 => keyed::<Hmac<Sha512>>(key, data)?
            .finalize()
            .into_bytes()
            .to_vec(),
        _ => {
            return Err(Error::BadCryptographicParameters(
                "unsupported MAC algorithm",
            ));
        }
    })
}

/// Whether `mac` is the HMAC of `data` (constant-time comparison; a truncated MAC is
/// compared on its length).
pub(crate) fn hmac_verify(algorithm: u32, key: &[u8], data: &[u8], mac: &[u8]) -> Result<bool> {
    Ok(match algorithm {
        alg::HMAC_SHA1 => keyed::<Hmac<Sha1>>(key, data)?
            .verify_truncated_left(mac)
            .is_ok(),
        alg::HMAC_SHA224 => keyed::<Hmac<Sha224>>(key, data)?
            .verify_truncated_left(mac)
            .is_ok(),
        alg::HMAC_SHA256 => keyed::<Hmac<Sha256>>(key, data)?
            .verify_truncated_left(mac)
            .is_ok(),
        alg::HMAC_SHA384 => keyed::<Hmac<Sha384>>(key, data)?
            .verify_truncated_left(mac)
            .is_ok(),
        alg::HMAC_SHA512 => keyed::<Hmac<Sha512>>(key, data)?
            .verify_truncated_left(mac)
            .is_ok(),
        _ => {
            return Err(Error::BadCryptographicParameters(
                "unsupported MAC algorithm",
            ));
        }
    } && !mac.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn fips_180_abc() {
        assert_eq!(
            hash(ha::SHA_1, b"abc").unwrap(),
            h("a9993e364706816aba3e25717850c26c9cd0d89d")
        );
        assert_eq!(
            hash(ha::SHA_256, b"abc").unwrap(),
            h("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            hash(ha::SHA_224, b"abc").unwrap(),
            h("23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7")
        );
        assert_eq!(hash(ha::SHA_384, b"abc").unwrap().len(), 48);
        assert_eq!(
            hash(ha::SHA_512, b"abc").unwrap().get(..8),
            Some(&h("ddaf35a193617aba")[..])
        );
        assert!(hash(ha::MD5, b"abc").is_err());
    }

    #[test]
    fn rfc4231_test_case_2() {
        let key = b"Jefe";
        let data = b"what do ya want for nothing?";
        let m256 = h("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        assert_eq!(hmac(alg::HMAC_SHA256, key, data).unwrap(), m256);
        assert_eq!(
            hmac(alg::HMAC_SHA224, key, data).unwrap(),
            h("a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44")
        );
        assert_eq!(
            hmac(alg::HMAC_SHA512, key, data).unwrap().get(..8),
            Some(&h("164b7a7bfcf819e2")[..])
        );
        assert!(hmac_verify(alg::HMAC_SHA256, key, data, &m256).unwrap());
        let mut bad = m256.clone();
        bad[31] ^= 1;
        assert!(!hmac_verify(alg::HMAC_SHA256, key, data, &bad).unwrap());
        assert!(!hmac_verify(alg::HMAC_SHA256, key, data, &[]).unwrap());
    }
}
