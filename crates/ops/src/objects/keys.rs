//! New key material for Create, Create Key Pair, Re-Key and Re-Key Key Pair, as stored object
//! structures. The generation itself is `crypto::keygen` (OS CSPRNG, OpenSSL); this module
//! decides what a request's attributes ask for and builds the Key Blocks.

use kmipd_proto::attributes::{AttrName, Attributes};
use kmipd_proto::build;
use kmipd_proto::enums::{
    cryptographic_algorithm as alg, key_format_type as kft, recommended_curve,
};
use kmipd_proto::reader::{self, ProtoError};
use kmipd_proto::tag;
use kmipd_ttlv::{Tag, Ttlv, Value};

use crate::crypto::keygen;
use crate::error::{Error, Result};
use crate::object::{attr_enum, attr_int};

/// The Cryptographic Algorithm and Length a new key needs (Missing Data in 2.x, Invalid Field
/// in 1.x when absent).
pub(crate) fn algorithm_and_length(attrs: &Attributes) -> Result<(u32, Option<i32>)> {
    let algorithm = attr_enum(attrs, tag::CRYPTOGRAPHIC_ALGORITHM)
        .ok_or(ProtoError::Missing(tag::CRYPTOGRAPHIC_ALGORITHM))?;
    Ok((algorithm, attr_int(attrs, tag::CRYPTOGRAPHIC_LENGTH)))
}

/// The key length in bytes of a new symmetric key of `algorithm` with `bits` bits.
pub(crate) fn symmetric_len(algorithm: u32, bits: Option<i32>) -> Result<usize> {
    let bits = bits.ok_or(ProtoError::Missing(tag::CRYPTOGRAPHIC_LENGTH))?;
    let ok = match algorithm {
        alg::AES | alg::CAMELLIA | alg::ARIA => matches!(bits, 128 | 192 | 256),
        alg::DES3 => matches!(bits, 112 | 128 | 168 | 192),
        alg::DES => matches!(bits, 56 | 64),
        alg::CHA_CHA20 | alg::CHA_CHA20_POLY1305 => bits == 256,
        alg::POLY1305 => bits == 256,
        alg::SEED | alg::SM4 => bits == 128,
        // SKIPJACK (FIPS 185) has an 80-bit key only.
        alg::SKIPJACK => bits == 80,
        alg::HMAC_SHA1
        | alg::HMAC_SHA224
        | alg::HMAC_SHA256
        | alg::HMAC_SHA384
        | alg::HMAC_SHA512
        | alg::HMAC_MD5
        | alg::HMAC_SHA3_224
        | alg::HMAC_SHA3_256
        | alg::HMAC_SHA3_384
        | alg::HMAC_SHA3_512
        | alg::BLOWFISH
        | alg::TWOFISH
        | alg::RC4
        | alg::IDEA
        | alg::CAST5 => (8..=4096).contains(&bits) && bits % 8 == 0,
        _ => return Err(Error::InvalidField("Cryptographic Algorithm")),
    };
    if !ok {
        return Err(Error::InvalidField("Cryptographic Length"));
    }
    let bytes = match (algorithm, bits) {
        // Two-key 3DES is 16 bytes, three-key 24 (parity bits included).
        (alg::DES3, 112 | 128) => 16,
        (alg::DES3, _) => 24,
        (alg::DES, _) => 8,
        _ => usize::try_from(bits / 8).map_err(|_| Error::InvalidField("Cryptographic Length"))?,
    };
    Ok(bytes)
}

/// A new Symmetric Key structure (Raw) for `algorithm` and `bits`.
pub(crate) fn new_symmetric(algorithm: u32, bits: Option<i32>) -> Result<(Ttlv, i32)> {
    let len = symmetric_len(algorithm, bits)?;
    let key = keygen::symmetric(len)?;
    let bits = bits.ok_or(ProtoError::Missing(tag::CRYPTOGRAPHIC_LENGTH))?;
    Ok((
        build::structure(
            tag::SYMMETRIC_KEY,
            vec![build::byte_key_block(
                kft::RAW,
                key.to_vec(),
                Some((algorithm, bits)),
            )],
        ),
        bits,
    ))
}

/// A new Secret Data structure (Opaque format) of `bits` bits (default 256).
pub(crate) fn new_secret_data(bits: Option<i32>, secret_type: u32) -> Result<Ttlv> {
    let bits = bits.unwrap_or(256);
    if bits <= 0 || bits % 8 != 0 || bits > 8192 {
        return Err(Error::InvalidField("Cryptographic Length"));
    }
    let len = usize::try_from(bits / 8).map_err(|_| Error::InvalidField("Cryptographic Length"))?;
    let key = keygen::symmetric(len)?;
    Ok(secret_data(secret_type, &key))
}

/// The Secret Data Type a new Secret Data gets: the request's attribute, else `default`.
pub(crate) fn secret_data_type(attrs: &Attributes, default: u32) -> u32 {
    attr_enum(attrs, tag::SECRET_DATA_TYPE).unwrap_or(default)
}

/// A Secret Data structure of `secret_type` holding `material` (Opaque format).
pub(crate) fn secret_data(secret_type: u32, material: &[u8]) -> Ttlv {
    build::structure(
        tag::SECRET_DATA,
        vec![
            build::enumeration(tag::SECRET_DATA_TYPE, secret_type),
            build::structure(
                tag::KEY_BLOCK,
                vec![
                    build::enumeration(tag::KEY_FORMAT_TYPE, kft::OPAQUE),
                    build::structure(
                        tag::KEY_VALUE,
                        vec![build::bytes(tag::KEY_MATERIAL, material.to_vec())],
                    ),
                ],
            ),
        ],
    )
}

/// A new key pair: the Private Key and Public Key structures and the key length in bits.
pub(crate) struct NewPair {
    pub(crate) private: Ttlv,
    pub(crate) public: Ttlv,
    pub(crate) bits: i32,
    /// The Recommended Curve, for EC keys.
    pub(crate) curve: Option<u32>,
}

/// The Recommended Curve an EC request names (Recommended Curve attribute, 1.x Cryptographic
/// Domain Parameters, or the length).
fn curve_of(attrs: &Attributes, bits: Option<i32>) -> Result<u32> {
    if let Some(c) = attr_enum(attrs, tag::RECOMMENDED_CURVE) {
        return Ok(c);
    }
    if let Some(Value::Structure(items)) = attrs.get(tag::CRYPTOGRAPHIC_DOMAIN_PARAMETERS)
        && let Some(c) = items.iter().find(|i| i.tag == tag::RECOMMENDED_CURVE)
    {
        return Ok(reader::as_enum(c)?);
    }
    match bits {
        Some(256) => Ok(recommended_curve::P_256),
        Some(384) => Ok(recommended_curve::P_384),
        Some(521) => Ok(recommended_curve::P_521),
        Some(_) => Err(Error::InvalidField("Cryptographic Length")),
        None => Err(ProtoError::Missing(tag::RECOMMENDED_CURVE).into()),
    }
}

/// A new key pair for `algorithm` (RSA, or EC/ECDSA/ECDH/ECMQV) per the attributes.
pub(crate) fn new_pair(algorithm: u32, attrs: &Attributes) -> Result<NewPair> {
    let bits = attr_int(attrs, tag::CRYPTOGRAPHIC_LENGTH);
    match algorithm {
        alg::RSA => {
            let bits = bits.ok_or(ProtoError::Missing(tag::CRYPTOGRAPHIC_LENGTH))?;
            let ubits =
                u32::try_from(bits).map_err(|_| Error::InvalidField("Cryptographic Length"))?;
            let pair = keygen::rsa(ubits)?;
            Ok(NewPair {
                private: build::structure(
                    tag::PRIVATE_KEY,
                    vec![build::byte_key_block(
                        kft::PKCS_1,
                        pair.private_pkcs1.to_vec(),
                        Some((algorithm, bits)),
                    )],
                ),
                public: build::structure(
                    tag::PUBLIC_KEY,
                    vec![build::byte_key_block(
                        kft::PKCS_1,
                        pair.public_pkcs1,
                        Some((algorithm, bits)),
                    )],
                ),
                bits,
                curve: None,
            })
        }
        alg::EC | alg::ECDSA | alg::ECDH | alg::ECMQV => {
            let curve = curve_of(attrs, bits)?;
            let pair = keygen::ec(curve)?;
            let bits = i32::try_from(pair.bits).map_err(|_| Error::Internal("curve size"))?;
            Ok(NewPair {
                private: build::structure(
                    tag::PRIVATE_KEY,
                    vec![build::byte_key_block(
                        kft::PKCS_8,
                        pair.private_pkcs8.to_vec(),
                        Some((algorithm, bits)),
                    )],
                ),
                public: build::structure(
                    tag::PUBLIC_KEY,
                    vec![build::byte_key_block(
                        kft::X_509,
                        pair.public_spki,
                        Some((algorithm, bits)),
                    )],
                ),
                bits,
                curve: Some(curve),
            })
        }
        _ => Err(Error::InvalidField("Cryptographic Algorithm")),
    }
}

/// True when an attribute list has a standard attribute.
pub(crate) fn has(attrs: &Attributes, t: Tag) -> bool {
    attrs.has(&AttrName::Std(t))
}

/// QuantumSafe (2.1): a request that insists on a quantum-safe key gets one only for symmetric
/// keys of 256 bits or more; anything else cannot be honoured.
pub(crate) fn check_quantum_safe(
    attrs: &Attributes,
    algorithm: u32,
    bits: Option<i32>,
) -> Result<()> {
    if !matches!(attrs.get(tag::QUANTUM_SAFE), Some(Value::Boolean(true))) {
        return Ok(());
    }
    let symmetric = !matches!(
        algorithm,
        alg::RSA | alg::DSA | alg::ECDSA | alg::DH | alg::ECDH | alg::ECMQV | alg::EC
    );
    if symmetric && bits.is_some_and(|b| b >= 256) {
        return Ok(());
    }
    Err(Error::Internal(
        "a quantum-safe key of this algorithm and length cannot be made",
    ))
}
