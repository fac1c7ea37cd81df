//! The cryptography of the engine: key generation, key-format conversions, and the primitives
//! behind Encrypt/Decrypt, Sign/Signature Verify, MAC/MAC Verify, Hash, RNG Retrieve and Derive
//! Key. Everything here is pure computation on byte slices and KMIP enumeration values; the
//! operation files read requests and objects and call in here.
//!
//! Which library does what (and why) is in `docs/crypto.md`: OpenSSL (the `openssl` crate, the
//! system libssl) for RSA, EC and the block/stream ciphers, because it takes every parameter the
//! test cases use at run time (GCM IVs of 8, 12 and 60 bytes, tag lengths 12..16, OAEP with an
//! MGF1 hash different from the label hash, any PSS salt length, 1024-bit keys) and does RSA
//! private-key operations with blinding in constant time; RustCrypto for digests, HMAC and the
//! KDFs (pure Rust, small); OpenSSL's DRBG (`RAND_bytes`, SP 800-90A CTR_DRBG with AES-256,
//! seeded from the OS) for key material, IVs and RNG Retrieve.
//!
//! Secrets are returned in [`zeroize::Zeroizing`] containers.

pub(crate) mod asym;
pub(crate) mod cipher_op;
pub(crate) mod digest;
pub(crate) mod kdf;
pub(crate) mod key_cache;
pub(crate) mod keygen;
pub(crate) mod params;
pub(crate) mod split;
pub(crate) mod stream;
pub(crate) mod sym;
pub(crate) mod usage;

use crate::error::Error;

/// Maps an OpenSSL failure to the engine's error (never with OpenSSL's text: it may describe
/// key material).
pub(crate) fn ossl(_e: openssl::error::ErrorStack) -> Error {
    Error::CryptographicFailure("the cryptographic library refused the operation")
}
