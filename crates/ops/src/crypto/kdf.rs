//! The key-derivation primitives behind Derive Key (KMIP 1.4 §4.6, 2.1 §6.1.14): PBKDF2
//! (PKCS#5 / RFC 8018), HKDF (RFC 5869), HASH (a truncated digest), HMAC (a truncated MAC),
//! ENCRYPT (a truncated ciphertext) and the raw ECDH shared secret of the Asymmetric Key
//! method.
//!
//! Every function gives exactly `out_len` bytes or fails: KMIP says a requested length that
//! exceeds what the method produces is an error, so nothing is padded or stretched here. The
//! digests are RustCrypto's (`sha1`, `sha2`, `hmac`, `pbkdf2`, `hkdf`: pure Rust, no state);
//! ENCRYPT reuses the OpenSSL ciphers of Encrypt ([`super::sym`]); ECDH is OpenSSL's.
//!
//! PBKDF2 costs `iterations` HMACs per output block of the PRF, so the work a request may ask
//! for is bounded ([`MAX_ITERATIONS`], [`MAX_PBKDF2_WORK`]): a Derive Key request must not be a
//! way to occupy the server for minutes.

use kmipd_proto::enums::{cryptographic_algorithm as alg, hashing_algorithm as ha};
use openssl::derive::Deriver;
use sha1::Sha1;
use sha2::{Sha224, Sha256, Sha384, Sha512};
use zeroize::Zeroizing;

use super::ossl;
use super::params::Params;
use super::sym::{self, Dir, Job, Kind};
use crate::error::{Error, Result};

/// The largest Iteration Count accepted for PBKDF2.
pub(crate) const MAX_ITERATIONS: u32 = 10_000_000;

/// The largest PBKDF2 cost accepted: iterations times output blocks of the PRF.
pub(crate) const MAX_PBKDF2_WORK: u64 = 64_000_000;

/// The output length in bytes of a KMIP Hashing Algorithm this module supports.
pub(crate) fn digest_len(hashing: u32) -> Result<usize> {
    match hashing {
        ha::SHA_1 => Ok(20),
        ha::SHA_224 => Ok(28),
        ha::SHA_256 => Ok(32),
        ha::SHA_384 => Ok(48),
        ha::SHA_512 => Ok(64),
        _ => Err(Error::BadCryptographicParameters(
            "unsupported Hashing Algorithm",
        )),
    }
}

/// The Hashing Algorithm behind an HMAC Cryptographic Algorithm (HMAC-SHA1 .. HMAC-SHA512).
pub(crate) fn hmac_hash(algorithm: u32) -> Option<u32> {
    match algorithm {
        alg::HMAC_SHA1 => Some(ha::SHA_1),
        alg::HMAC_SHA224 => Some(ha::SHA_224),
        alg::HMAC_SHA256 => Some(ha::SHA_256),
        alg::HMAC_SHA384 => Some(ha::SHA_384),
        alg::HMAC_SHA512 => Some(ha::SHA_512),
        _ => None,
    }
}

/// The HMAC Cryptographic Algorithm over a Hashing Algorithm.
fn hmac_of(hashing: u32) -> Result<u32> {
    match hashing {
        ha::SHA_1 => Ok(alg::HMAC_SHA1),
        ha::SHA_224 => Ok(alg::HMAC_SHA224),
        ha::SHA_256 => Ok(alg::HMAC_SHA256),
        ha::SHA_384 => Ok(alg::HMAC_SHA384),
        ha::SHA_512 => Ok(alg::HMAC_SHA512),
        _ => Err(Error::BadCryptographicParameters(
            "unsupported Hashing Algorithm",
        )),
    }
}

/// The first `out_len` bytes of `full`, or an error when it is shorter.
fn truncated(full: &[u8], out_len: usize) -> Result<Zeroizing<Vec<u8>>> {
    full.get(..out_len)
        .map(|b| Zeroizing::new(b.to_vec()))
        .ok_or(Error::InvalidField(
            "the Cryptographic Length exceeds the output of the derivation method",
        ))
}

/// HASH: the first `out_len` bytes of the digest of `input`.
pub(crate) fn hash(hashing: u32, input: &[u8], out_len: usize) -> Result<Zeroizing<Vec<u8>>> {
    let full = Zeroizing::new(super::digest::hash(hashing, input)?);
    truncated(&full, out_len)
}

/// HMAC: the first `out_len` bytes of HMAC-`hashing`(`key`, `data`).
pub(crate) fn hmac(
    hashing: u32,
    key: &[u8],
    data: &[u8],
    out_len: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    let full = Zeroizing::new(super::digest::hmac(hmac_of(hashing)?, key, data)?);
    truncated(&full, out_len)
}

/// PBKDF2 (RFC 8018 §5.2) with HMAC-`hashing` as the PRF.
pub(crate) fn pbkdf2(
    hashing: u32,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    out_len: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    if iterations == 0 || iterations > MAX_ITERATIONS {
        return Err(Error::InvalidField("Iteration Count"));
    }
    let blocks = out_len.div_ceil(digest_len(hashing)?);
    let work = u64::try_from(blocks)
        .map_err(|_| Error::InvalidField("Cryptographic Length"))?
        .saturating_mul(u64::from(iterations));
    if work > MAX_PBKDF2_WORK {
        return Err(Error::InvalidField(
            "Iteration Count too large for this Cryptographic Length",
        ));
    }
    let mut out = Zeroizing::new(vec![0u8; out_len]);
    match hashing {
        ha::SHA_1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out),
        ha::SHA_224 => pbkdf2::pbkdf2_hmac::<Sha224>(password, salt, iterations, &mut out),
        ha::SHA_256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
        ha::SHA_384 => pbkdf2::pbkdf2_hmac::<Sha384>(password, salt, iterations, &mut out),
        ha::SHA_512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out),
        _ => {
            return Err(Error::BadCryptographicParameters(
                "unsupported Hashing Algorithm",
            ));
        }
    }
    Ok(out)
}

/// One HKDF extract-and-expand with the RustCrypto hash `$h`.
macro_rules! hkdf_with {
    ($h:ty, $ikm:expr, $salt:expr, $info:expr, $out:expr) => {
        hkdf::Hkdf::<$h>::new($salt, $ikm)
            .expand($info, $out)
            .map_err(|_| {
                Error::InvalidField(
                    "the Cryptographic Length exceeds the output of the derivation method",
                )
            })
    };
}

/// HKDF (RFC 5869) with HMAC-`hashing`: extract with `salt` (absent: zeros), expand with
/// `info` to `out_len` bytes (at most 255 digest lengths).
pub(crate) fn hkdf(
    hashing: u32,
    ikm: &[u8],
    salt: Option<&[u8]>,
    info: &[u8],
    out_len: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(vec![0u8; out_len]);
    match hashing {
        ha::SHA_1 => hkdf_with!(Sha1, ikm, salt, info, &mut out)?,
        ha::SHA_224 => hkdf_with!(Sha224, ikm, salt, info, &mut out)?,
        ha::SHA_256 => hkdf_with!(Sha256, ikm, salt, info, &mut out)?,
        ha::SHA_384 => hkdf_with!(Sha384, ikm, salt, info, &mut out)?,
        ha::SHA_512 => hkdf_with!(Sha512, ikm, salt, info, &mut out)?,
        _ => {
            return Err(Error::BadCryptographicParameters(
                "unsupported Hashing Algorithm",
            ));
        }
    }
    Ok(out)
}

/// ENCRYPT: the first `out_len` bytes of `data` encrypted under `key` (a key of
/// `algorithm`) with the parameters' cipher mode and padding; `iv` absent is an all-zero IV
/// ("an empty IV is assumed"). Only the block modes ECB and CBC are accepted: there the output
/// is a pseudorandom permutation of the data. A stream mode (CTR, ChaCha20, GCM) under a fixed
/// IV would XOR every derivation data with one keystream, so one derived key and its data
/// would give away every other key derived from the same base key.
pub(crate) fn encrypt(
    algorithm: u32,
    key: &[u8],
    p: &Params,
    iv: Option<&[u8]>,
    data: &[u8],
    out_len: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    let (kind, cipher) = sym::select(algorithm, key.len(), p)?;
    if !matches!(kind, Kind::Ecb | Kind::Cbc | Kind::Des3Ecb | Kind::Des3Cbc) {
        return Err(Error::BadCryptographicParameters(
            "ENCRYPT derivation takes ECB or CBC only",
        ));
    }
    let zero_iv;
    let iv = match (iv, cipher.iv_len()) {
        (Some(iv), _) => Some(iv),
        (None, Some(n)) if n > 0 => {
            zero_iv = vec![0u8; n];
            Some(zero_iv.as_slice())
        }
        (None, _) => None,
    };
    let job = Job {
        dir: Dir::Encrypt,
        kind,
        cipher,
        pad: sym::wants_padding(p)?,
        iv,
        aad: &[],
        tag_len: 0,
        tag: None,
    };
    let out = sym::run(&job, key, data, true)?;
    truncated(&out.data, out_len)
}

/// The Asymmetric Key method with ECDH: the raw shared secret (the x-coordinate, RFC 5903 /
/// SEC 1 §3.3.1) of `private_der` (PKCS#8, PKCS#1 or SEC1) and `public_der`
/// (SubjectPublicKeyInfo), first `out_len` bytes.
pub(crate) fn ecdh(
    private_der: &[u8],
    public_der: &[u8],
    out_len: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    let private = super::keygen::parse_private(private_der)?;
    let public = super::keygen::parse_public(public_der)?;
    if private.ec_key().is_err() || public.ec_key().is_err() {
        return Err(Error::InvalidField(
            "ECDH needs an EC private and public key",
        ));
    }
    let mut deriver = Deriver::new(&private).map_err(ossl)?;
    deriver.set_peer(&public).map_err(ossl)?;
    let secret = Zeroizing::new(deriver.derive_to_vec().map_err(ossl)?);
    truncated(&secret, out_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn pbkdf2_rfc6070_hmac_sha1() {
        let cases = [
            (
                &b"password"[..],
                &b"salt"[..],
                1,
                "0c60c80f961f0e71f3a9b524af6012062fe037a6",
            ),
            (
                b"password",
                b"salt",
                2,
                "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957",
            ),
            (
                b"password",
                b"salt",
                4096,
                "4b007901b765489abead49d926f721d065a429c1",
            ),
            (
                b"passwordPASSWORDpassword",
                b"saltSALTsaltSALTsaltSALTsaltSALTsalt",
                4096,
                "3d2eec4fe41c849b80c8d83662c0e44a8b291a964cf2f07038",
            ),
            (
                b"pass\0word",
                b"sa\0lt",
                4096,
                "56fa6aa75548099dcc37d7f03425e0c3",
            ),
        ];
        for (p, s, c, dk) in cases {
            let want = h(dk);
            assert_eq!(*pbkdf2(ha::SHA_1, p, s, c, want.len()).unwrap(), want);
        }
    }

    #[test]
    fn pbkdf2_hmac_sha256_rfc7914() {
        // RFC 7914 §11.
        let dk = h(
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc\
             49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783",
        );
        assert_eq!(*pbkdf2(ha::SHA_256, b"passwd", b"salt", 1, 64).unwrap(), dk);
        // The value TC-DERIVEKEY-5 expects (also in the widely used PBKDF2-HMAC-SHA256 lists).
        assert_eq!(
            *pbkdf2(ha::SHA_256, b"password", b"salt", 4096, 32).unwrap(),
            h("c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a")
        );
    }

    #[test]
    fn pbkdf2_refuses_zero_and_excessive_work() {
        assert!(pbkdf2(ha::SHA_1, b"p", b"s", 0, 16).is_err());
        assert!(pbkdf2(ha::SHA_1, b"p", b"s", MAX_ITERATIONS + 1, 16).is_err());
        // 10M iterations x 52 SHA-1 blocks is far beyond the work bound.
        assert!(pbkdf2(ha::SHA_1, b"p", b"s", MAX_ITERATIONS, 1024).is_err());
        assert!(pbkdf2(ha::MD5, b"p", b"s", 1, 16).is_err());
    }

    #[test]
    fn hkdf_rfc5869_cases_1_and_3() {
        let ikm = [0x0bu8; 22];
        let okm = hkdf(
            ha::SHA_256,
            &ikm,
            Some(&h("000102030405060708090a0b0c")),
            &h("f0f1f2f3f4f5f6f7f8f9"),
            42,
        )
        .unwrap();
        assert_eq!(
            *okm,
            h(
                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
            )
        );
        // Test case 3: no salt, no info.
        let okm = hkdf(ha::SHA_256, &ikm, None, &[], 42).unwrap();
        assert_eq!(
            *okm,
            h(
                "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
            )
        );
        // Test case 4 (SHA-1).
        let okm = hkdf(
            ha::SHA_1,
            &[0x0bu8; 11],
            Some(&h("000102030405060708090a0b0c")),
            &h("f0f1f2f3f4f5f6f7f8f9"),
            42,
        )
        .unwrap();
        assert_eq!(
            *okm,
            h(
                "085a01ea1b10f36933068b56efa5ad81a4f14b822f5b091568a9cdd4f155fda2c22e422478d305f3f896"
            )
        );
        assert!(hkdf(ha::SHA_256, &ikm, None, &[], 255 * 32 + 1).is_err());
    }

    #[test]
    fn hash_and_hmac_truncate_and_refuse_longer_outputs() {
        let key = h("00112233445566778899aabbccddeeff");
        // TC-DERIVEKEY-1 and -2 (checked with python hashlib/hmac).
        assert_eq!(
            *hash(ha::SHA_256, &key, 16).unwrap(),
            h("a8faed6abbf35c12a4b26e40f6feb19d")
        );
        assert_eq!(
            *hmac(ha::SHA_256, &key, &[1, 2], 16).unwrap(),
            h("1e15c1f1da233629f770fb0a04a5020e")
        );
        assert!(hash(ha::SHA_256, &key, 33).is_err());
        assert!(hmac(ha::SHA_1, &key, &[1, 2], 21).is_err());
        // RFC 4231 test case 2, full length.
        assert_eq!(
            *hmac(ha::SHA_256, b"Jefe", b"what do ya want for nothing?", 32).unwrap(),
            h("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
    }

    #[test]
    fn encrypt_is_sp800_38a_aes_ecb_and_cbc() {
        use kmipd_proto::enums::block_cipher_mode as bcm;
        let key = h("2b7e151628aed2a6abf7158809cf4f3c");
        let pt = h("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51");
        let ecb = Params {
            block_cipher_mode: Some(bcm::ECB),
            ..Params::default()
        };
        assert_eq!(
            *encrypt(alg::AES, &key, &ecb, None, &pt, 16).unwrap(),
            h("3ad77bb40d7a3660a89ecaf32466ef97")
        );
        let cbc = Params {
            block_cipher_mode: Some(bcm::CBC),
            ..Params::default()
        };
        let iv = h("000102030405060708090a0b0c0d0e0f");
        assert_eq!(
            *encrypt(alg::AES, &key, &cbc, Some(&iv), &pt, 32).unwrap(),
            h("7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2")
        );
        assert!(encrypt(alg::AES, &key, &ecb, None, &pt, 33).is_err());
        for mode in [bcm::GCM, bcm::CTR] {
            let p = Params {
                block_cipher_mode: Some(mode),
                ..Params::default()
            };
            assert!(encrypt(alg::AES, &key, &p, None, &pt, 16).is_err());
        }
    }

    #[test]
    fn ecdh_agrees_both_ways() {
        use kmipd_proto::enums::recommended_curve;
        let a = super::super::keygen::ec(recommended_curve::P_256).unwrap();
        let b = super::super::keygen::ec(recommended_curve::P_256).unwrap();
        let ab = ecdh(&a.private_pkcs8, &b.public_spki, 32).unwrap();
        let ba = ecdh(&b.private_pkcs8, &a.public_spki, 32).unwrap();
        assert_eq!(*ab, *ba);
        assert!(ecdh(&a.private_pkcs8, &b.public_spki, 33).is_err());
    }
}
