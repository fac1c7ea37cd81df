//! The algorithm and length of a key file, read from its DER (PKCS#8, SubjectPublicKeyInfo,
//! PKCS#1, SEC1), so that `register` can put them in the Key Block without flags: servers
//! (kmipd's `[policy]` among them) may refuse a key without them. Only the few fields needed
//! are read; anything unexpected gives `None` and the flags are then required.

use kmipd_proto::enums::{cryptographic_algorithm as alg, key_format_type as kft};

const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;

/// One DER item: (tag, contents, what follows).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(n)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

/// The contents of an item with this tag, and what follows.
fn expect(b: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (tag, contents, rest) = tlv(b)?;
    (tag == want).then_some((contents, rest))
}

/// The number of bits of a positive INTEGER's contents.
fn integer_bits(contents: &[u8]) -> Option<i32> {
    let start = contents.iter().position(|b| *b != 0)?;
    let significant = contents.get(start..)?;
    let first = significant.first()?;
    let bytes = i32::try_from(significant.len()).ok()?;
    let unused = i32::try_from(first.leading_zeros()).ok()?;
    bytes.checked_mul(8)?.checked_sub(unused)
}

fn curve_bits(oid: &[u8]) -> Option<i32> {
    match oid {
        P256 => Some(256),
        P384 => Some(384),
        P521 => Some(521),
        _ => None,
    }
}

/// The modulus size of PKCS#1 RSAPrivateKey (`private`) or RSAPublicKey contents.
fn rsa_bits(der: &[u8], private: bool) -> Option<i32> {
    let (seq, _) = expect(der, SEQUENCE)?;
    let rest = if private {
        expect(seq, INTEGER)?.1
    } else {
        seq
    };
    let (modulus, _) = expect(rest, INTEGER)?;
    integer_bits(modulus)
}

/// Algorithm and length from an AlgorithmIdentifier and the key it describes.
fn from_algorithm_id(algid: &[u8], key: &[u8], private: bool) -> Option<(u32, i32)> {
    let (oid, params) = expect(algid, OID)?;
    match oid {
        RSA_ENCRYPTION => Some((alg::RSA, rsa_bits(key, private)?)),
        EC_PUBLIC_KEY => Some((alg::EC, curve_bits(expect(params, OID)?.0)?)),
        ED25519 => Some((alg::ED25519, 256)),
        _ => None,
    }
}

/// (Cryptographic Algorithm, Cryptographic Length) of a key in this Key Format Type.
pub(crate) fn key_algorithm(format: u32, der: &[u8], private: bool) -> Option<(u32, i32)> {
    match format {
        kft::PKCS_8 => {
            let (seq, _) = expect(der, SEQUENCE)?;
            let (_, rest) = expect(seq, INTEGER)?;
            let (algid, rest) = expect(rest, SEQUENCE)?;
            let (key, _) = expect(rest, OCTET_STRING)?;
            from_algorithm_id(algid, key, true)
        }
        kft::X_509 => {
            let (seq, _) = expect(der, SEQUENCE)?;
            let (algid, rest) = expect(seq, SEQUENCE)?;
            let (bits, _) = expect(rest, BIT_STRING)?;
            let (_, key) = bits.split_first()?;
            from_algorithm_id(algid, key, false)
        }
        kft::PKCS_1 => Some((alg::RSA, rsa_bits(der, private)?)),
        kft::ECPRIVATE_KEY => {
            // ECPrivateKey: version, privateKey, [0] parameters (the curve's OID).
            let (seq, _) = expect(der, SEQUENCE)?;
            let (_, rest) = expect(seq, INTEGER)?;
            let (_, rest) = expect(rest, OCTET_STRING)?;
            let (params, _) = expect(rest, 0xa0)?;
            Some((alg::EC, curve_bits(expect(params, OID)?.0)?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_of_integers_and_unknown_input() {
        assert_eq!(integer_bits(&[0x00, 0x80, 0x00]), Some(16));
        assert_eq!(integer_bits(&[0x01, 0x00]), Some(9));
        assert_eq!(integer_bits(&[0x00]), None);
        assert_eq!(key_algorithm(kft::PKCS_8, b"not der", true), None);
        assert_eq!(key_algorithm(kft::RAW, &[0x30, 0x00], true), None);
    }
}
