//! The cryptographic state a stream keeps between its requests (the table and its bounds:
//! `crate::streams`): a running cipher, or a running digest.
//!
//! - Encrypt/Decrypt keep the OpenSSL cipher context ([`sym::Running`]): each step returns the
//!   output its input completes (whole blocks in ECB/CBC, every byte in CTR, GCM and ChaCha20),
//!   the final step the rest (padding, the tag). An AEAD decryption holds its plaintext back
//!   until the final step has checked the tag, so no unauthenticated plaintext leaves the
//!   server (at most `streams::MAX_HELD_BYTES`).
//! - Hash, Sign and Signature Verify keep a digest of the data so far (OpenSSL); Sign and
//!   Signature Verify then sign or check that digest as the single-part operation would the
//!   data.
//! - MAC and MAC Verify keep HMAC's inner digest, begun with the key XOR ipad (RFC 2104); the
//!   final step completes it with the key, loaded again, XOR opad.
//!
//! OpenSSL cleanses its cipher and digest contexts when they are freed; held bytes are
//! `Zeroizing`.

use kmipd_proto::enums::cryptographic_algorithm as alg;
use kmipd_proto::enums::hashing_algorithm as ha;
use openssl::hash::{Hasher, MessageDigest};
use zeroize::Zeroizing;

use super::ossl;
use super::params::Params;
use super::sym::Running;
use crate::error::{Error, Result};

/// The state of one stream.
pub(crate) struct State {
    /// What runs.
    pub(crate) engine: Engine,
    /// The parameters of the first request (later requests may not change them).
    pub(crate) params: Params,
    /// What the final step checks (Signature Data, MAC Data, an AEAD decryption's tag), when
    /// given before it.
    pub(crate) expected: Option<Vec<u8>>,
    /// Output held back until the final step (AEAD decryption).
    pub(crate) held: Zeroizing<Vec<u8>>,
}

/// The running computation.
pub(crate) enum Engine {
    /// A cipher (Encrypt, Decrypt).
    Cipher(Running),
    /// A digest of the data (Hash, Sign, Signature Verify; HMAC's inner digest for MAC and
    /// MAC Verify).
    Digest(Hasher),
}

impl State {
    /// A state around `engine`.
    pub(crate) fn new(engine: Engine, params: Params) -> State {
        State {
            engine,
            params,
            expected: None,
            held: Zeroizing::new(Vec::new()),
        }
    }

    /// A copy, to advance by one step.
    pub(crate) fn duplicate(&self) -> Result<State> {
        let engine = match &self.engine {
            Engine::Cipher(c) => Engine::Cipher(c.duplicate()?),
            Engine::Digest(h) => Engine::Digest(h.clone()),
        };
        Ok(State {
            engine,
            params: self.params.clone(),
            expected: self.expected.clone(),
            held: self.held.clone(),
        })
    }
}

/// The OpenSSL digest of a KMIP Hashing Algorithm.
pub(crate) fn message_digest(hashing: u32) -> Result<MessageDigest> {
    let md = super::asym::md(hashing)?;
    MessageDigest::from_nid(md.type_()).ok_or(Error::Internal("digest without NID"))
}

/// A digest of `hashing` under way.
pub(crate) fn digest(hashing: u32) -> Result<Hasher> {
    Hasher::new(message_digest(hashing)?).map_err(ossl)
}

/// The hash of an HMAC Cryptographic Algorithm.
fn hmac_hash(algorithm: u32) -> Result<u32> {
    match algorithm {
        alg::HMAC_SHA1 => Ok(ha::SHA_1),
        alg::HMAC_SHA224 => Ok(ha::SHA_224),
        alg::HMAC_SHA256 => Ok(ha::SHA_256),
        alg::HMAC_SHA384 => Ok(ha::SHA_384),
        alg::HMAC_SHA512 => Ok(ha::SHA_512),
        _ => Err(Error::BadCryptographicParameters(
            "unsupported MAC algorithm",
        )),
    }
}

/// HMAC's key block: the key (hashed when longer than a block), zero-padded, XOR `pad`.
fn key_block(md: MessageDigest, key: &[u8], pad: u8) -> Result<Zeroizing<Vec<u8>>> {
    let block = md.block_size();
    let mut k = Zeroizing::new(if key.len() > block {
        openssl::hash::hash(md, key).map_err(ossl)?.to_vec()
    } else {
        key.to_vec()
    });
    k.resize(block, 0);
    for b in k.iter_mut() {
        *b ^= pad;
    }
    Ok(k)
}

/// HMAC (RFC 2104) begun: the inner digest after the key XOR ipad.
pub(crate) fn hmac_start(algorithm: u32, key: &[u8]) -> Result<Hasher> {
    let md = message_digest(hmac_hash(algorithm)?)?;
    let mut h = Hasher::new(md).map_err(ossl)?;
    h.update(&key_block(md, key, 0x36)?).map_err(ossl)?;
    Ok(h)
}

/// Checks `mac` against `expected` in constant time (a wrong length is a mismatch).
pub(crate) fn same_mac(mac: &[u8], expected: &[u8]) -> bool {
    mac.len() == expected.len() && openssl::memcmp::eq(mac, expected)
}

/// HMAC completed: the outer digest of the key XOR opad and the inner digest.
pub(crate) fn hmac_finish(algorithm: u32, key: &[u8], inner: &mut Hasher) -> Result<Vec<u8>> {
    let md = message_digest(hmac_hash(algorithm)?)?;
    let inner = inner.finish().map_err(ossl)?;
    let mut outer = Hasher::new(md).map_err(ossl)?;
    outer.update(&key_block(md, key, 0x5c)?).map_err(ossl)?;
    outer.update(&inner).map_err(ossl)?;
    Ok(outer.finish().map_err(ossl)?.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::digest;

    #[test]
    fn hmac_in_parts_equals_hmac_in_one() {
        // Short, block-sized and long (hashed) keys; every HMAC algorithm.
        for key_len in [16usize, 64, 200] {
            let key: Vec<u8> = (0..key_len)
                .map(|i| u8::try_from(i % 251).unwrap())
                .collect();
            for a in [
                alg::HMAC_SHA1,
                alg::HMAC_SHA224,
                alg::HMAC_SHA256,
                alg::HMAC_SHA384,
                alg::HMAC_SHA512,
            ] {
                let data = b"the quick brown fox jumps over the lazy dog";
                let mut h = hmac_start(a, &key).unwrap();
                for part in data.chunks(7) {
                    h.update(part).unwrap();
                }
                let streamed = hmac_finish(a, &key, &mut h).unwrap();
                assert_eq!(
                    streamed,
                    digest::hmac(a, &key, data).unwrap(),
                    "{a} {key_len}"
                );
            }
        }
    }

    #[test]
    fn a_duplicate_advances_apart_from_its_original() {
        let mut h = digest(ha::SHA_256).unwrap();
        h.update(b"ab").unwrap();
        let original = State::new(Engine::Digest(h), Params::default());
        let mut copy = original.duplicate().unwrap();
        let Engine::Digest(c) = &mut copy.engine else {
            panic!("digest")
        };
        c.update(b"c").unwrap();
        let copied = c.finish().unwrap().to_vec();
        let Engine::Digest(mut o) = original.engine else {
            panic!("digest")
        };
        let kept = o.finish().unwrap().to_vec();
        assert_eq!(copied, digest::hash(ha::SHA_256, b"abc").unwrap());
        assert_eq!(kept, digest::hash(ha::SHA_256, b"ab").unwrap());
    }
}
