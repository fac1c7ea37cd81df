//! Public-key operations with OpenSSL: RSA encryption (OAEP with any hash, MGF1 hash and label;
//! PKCS#1 v1.5), RSA signatures (PSS with any salt length; PKCS#1 v1.5) and ECDSA.
//!
//! RSA private-key operations must not leak through timing (the Marvin attack,
//! RUSTSEC-2023-0071, is why the `rsa` crate is not used for them): OpenSSL blinds every RSA
//! private-key operation and checks OAEP padding in constant time. OpenSSL is also the library
//! that takes every parameter combination the OASIS cases use (OAEP with SHA-384 and MGF1
//! SHA-256, PSS salt length 222, SHA-1, 1024-bit keys), which aws-lc-rs refuses (see
//! `docs/crypto.md`).
//!
//! Signing and verification work on a digest: the data is hashed here (or the client sends
//! Digested Data), then signed with the digest's algorithm named, so both forms give the same
//! signature. Digested Data whose hash the request does not name (no Digital Signature or
//! Hashing Algorithm) and whose length is not the default SHA-256's is signed as given: RSA
//! PKCS#1 v1.5 padding without a DigestInfo (as PKCS#11's CKM_RSA_PKCS) and ECDSA over the bytes
//! (FIPS 186-4 §6.4 takes the leftmost bits of any hash); RSA-PSS needs its hash and refuses
//! it. The 1.4 and 2.x cases TC-RSA-SIGN-DIGESTEDDATA-1 and TC-ECDSA-SIGN-DIGESTEDDATA-1 sign
//! 16 bytes so.

use kmipd_proto::enums::{
    cryptographic_algorithm as alg, digital_signature_algorithm as dsa, hashing_algorithm as ha,
    padding_method as pm,
};
use openssl::hash::MessageDigest;
use openssl::md::Md;
use openssl::md::MdRef;
use openssl::pkey::{HasPublic, Id, PKey};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::sign::RsaPssSaltlen;
use zeroize::Zeroizing;

use super::key_cache;
use super::keygen::{parse_private, parse_public};
use super::ossl;
use super::params::Params;
use crate::error::{Error, Result};

/// The OpenSSL digest of a KMIP Hashing Algorithm.
pub(crate) fn md(hashing: u32) -> Result<&'static MdRef> {
    Ok(match hashing {
        ha::SHA_1 => Md::sha1(),
        ha::SHA_224 => Md::sha224(),
        ha::SHA_256 => Md::sha256(),
        ha::SHA_384 => Md::sha384(),
        ha::SHA_512 => Md::sha512(),
        ha::SHA3_224 => Md::sha3_224(),
        ha::SHA3_256 => Md::sha3_256(),
        ha::SHA3_384 => Md::sha3_384(),
        ha::SHA3_512 => Md::sha3_512(),
        _ => {
            return Err(Error::BadCryptographicParameters(
                "unsupported Hashing Algorithm",
            ));
        }
    })
}

fn digest_of(hashing: u32, data: &[u8]) -> Result<Vec<u8>> {
    let m = md(hashing)?;
    let nid = m.type_();
    let mdg = MessageDigest::from_nid(nid).ok_or(Error::Internal("digest without NID"))?;
    Ok(openssl::hash::hash(mdg, data).map_err(ossl)?.to_vec())
}

/// The RSA encryption padding of the parameters (OAEP unless PKCS#1 v1.5 is asked for).
fn rsa_enc_padding(p: &Params) -> Result<Padding> {
    match p.padding_method {
        None | Some(pm::OAEP) => Ok(Padding::PKCS1_OAEP),
        Some(pm::PKCS1_V1_5) => Ok(Padding::PKCS1),
        Some(_) => Err(Error::BadCryptographicParameters(
            "Padding Method unsupported for RSA encryption",
        )),
    }
}

fn oaep_setup<T>(ctx: &mut PkeyCtx<T>, p: &Params) -> Result<()> {
    let padding = rsa_enc_padding(p)?;
    ctx.set_rsa_padding(padding).map_err(ossl)?;
    if padding == Padding::PKCS1_OAEP {
        let hash = p.hashing_algorithm.unwrap_or(ha::SHA_1);
        let mgf = p.mask_generator_hashing_algorithm.unwrap_or(hash);
        ctx.set_rsa_oaep_md(md(hash)?).map_err(ossl)?;
        ctx.set_rsa_mgf1_md(md(mgf)?).map_err(ossl)?;
        if let Some(label) = p.p_source.as_deref().filter(|l| !l.is_empty()) {
            ctx.set_rsa_oaep_label(label).map_err(ossl)?;
        }
    }
    Ok(())
}

/// RSA encryption with a public key (SubjectPublicKeyInfo or PKCS#1 DER; a private key's DER
/// is accepted too).
pub(crate) fn rsa_encrypt(key_der: &[u8], p: &Params, data: &[u8]) -> Result<Vec<u8>> {
    let pkey = match parse_public(key_der) {
        Ok(k) => k,
        Err(_) => public_of(key_der)?,
    };
    if pkey.id() != Id::RSA {
        return Err(Error::BadCryptographicParameters("not an RSA key"));
    }
    let mut ctx = PkeyCtx::new(&pkey).map_err(ossl)?;
    ctx.encrypt_init().map_err(ossl)?;
    oaep_setup(&mut ctx, p)?;
    let mut out = Vec::new();
    ctx.encrypt_to_vec(data, &mut out)
        .map_err(|_| Error::CryptographicFailure("RSA encryption failed (data too long?)"))?;
    Ok(out)
}

fn public_of(der: &[u8]) -> Result<PKey<openssl::pkey::Public>> {
    let spki = parse_private(der)?.public_key_to_der().map_err(ossl)?;
    PKey::public_key_from_der(&spki).map_err(ossl)
}

/// RSA decryption with a private key (PKCS#1 or PKCS#8 DER), in constant time.
pub(crate) fn rsa_decrypt(key_der: &[u8], p: &Params, data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let pkey = parse_private(key_der)?;
    if pkey.id() != Id::RSA {
        return Err(Error::BadCryptographicParameters("not an RSA key"));
    }
    let mut ctx = PkeyCtx::new(&pkey).map_err(ossl)?;
    ctx.decrypt_init().map_err(ossl)?;
    oaep_setup(&mut ctx, p)?;
    let mut out = Zeroizing::new(Vec::new());
    ctx.decrypt_to_vec(data, &mut out)
        .map_err(|_| Error::CryptographicFailure("decryption failed"))?;
    Ok(out)
}

/// A signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scheme {
    /// RSA (true) or ECDSA (false).
    pub(crate) rsa: bool,
    /// PSS (RSA only).
    pub(crate) pss: bool,
    /// The Hashing Algorithm.
    pub(crate) hash: u32,
    /// Whether the request named the hash (Digital Signature Algorithm or Hashing Algorithm)
    /// rather than `hash` being the default.
    pub(crate) named: bool,
}

/// The signature scheme of the parameters: the Digital Signature Algorithm when given, else
/// the Cryptographic Algorithm (or the key's) with the Padding Method and Hashing Algorithm
/// (SHA-256 and PKCS#1 v1.5 by default).
pub(crate) fn scheme(p: &Params, key_algorithm: Option<u32>) -> Result<Scheme> {
    let named = p.digital_signature_algorithm.is_some() || p.hashing_algorithm.is_some();
    let rsa = |pss, hash| Scheme {
        rsa: true,
        pss,
        hash,
        named,
    };
    let ec = |hash| Scheme {
        rsa: false,
        pss: false,
        hash,
        named,
    };
    if let Some(d) = p.digital_signature_algorithm {
        return Ok(match d {
            dsa::SHA_1_WITH_RSA_ENCRYPTION => rsa(false, ha::SHA_1),
            dsa::SHA_224_WITH_RSA_ENCRYPTION => rsa(false, ha::SHA_224),
            dsa::SHA_256_WITH_RSA_ENCRYPTION => rsa(false, ha::SHA_256),
            dsa::SHA_384_WITH_RSA_ENCRYPTION => rsa(false, ha::SHA_384),
            dsa::SHA_512_WITH_RSA_ENCRYPTION => rsa(false, ha::SHA_512),
            dsa::SHA3_256_WITH_RSA_ENCRYPTION => rsa(false, ha::SHA3_256),
            dsa::SHA3_384_WITH_RSA_ENCRYPTION => rsa(false, ha::SHA3_384),
            dsa::SHA3_512_WITH_RSA_ENCRYPTION => rsa(false, ha::SHA3_512),
            dsa::RSASSA_PSS => rsa(true, p.hashing_algorithm.unwrap_or(ha::SHA_256)),
            dsa::ECDSA_WITH_SHA_1 => ec(ha::SHA_1),
            dsa::ECDSA_WITH_SHA224 => ec(ha::SHA_224),
            dsa::ECDSA_WITH_SHA256 => ec(ha::SHA_256),
            dsa::ECDSA_WITH_SHA384 => ec(ha::SHA_384),
            dsa::ECDSA_WITH_SHA512 => ec(ha::SHA_512),
            _ => {
                return Err(Error::BadCryptographicParameters(
                    "unsupported Digital Signature Algorithm",
                ));
            }
        });
    }
    let hash = p.hashing_algorithm.unwrap_or(ha::SHA_256);
    // An EC key signs with ECDSA whatever RSA parameters come with the request (the 1.3 case
    // CS-AC-M-3-ECC verifies an ECDSA signature with RSA/PSS parameters and expects Valid).
    let ec_key = key_algorithm.filter(|a| matches!(*a, alg::EC | alg::ECDSA));
    match ec_key.or(p.cryptographic_algorithm).or(key_algorithm) {
        Some(alg::RSA) => match p.padding_method {
            Some(pm::PSS) => Ok(rsa(true, hash)),
            None | Some(pm::PKCS1_V1_5) => Ok(rsa(false, hash)),
            Some(_) => Err(Error::BadCryptographicParameters(
                "Padding Method unsupported for RSA signatures",
            )),
        },
        Some(alg::ECDSA | alg::EC) => Ok(ec(hash)),
        _ => Err(Error::BadCryptographicParameters(
            "no signature algorithm for this key",
        )),
    }
}

/// The digest a signature covers, and the hash to name in it (`None`: the bytes as given, see
/// the module doc).
fn to_sign(s: Scheme, input: Input<'_>) -> Result<(Vec<u8>, Option<u32>)> {
    match input {
        Input::Data(d) => Ok((digest_of(s.hash, d)?, Some(s.hash))),
        Input::Digest(d) if s.named || d.len() == md(s.hash)?.size() => {
            Ok((d.to_vec(), Some(s.hash)))
        }
        Input::Digest(_) if s.pss => Err(Error::BadCryptographicParameters(
            "RSA-PSS over Digested Data needs its Hashing Algorithm",
        )),
        Input::Digest(d) => Ok((d.to_vec(), None)),
    }
}

fn sig_setup<T>(
    ctx: &mut PkeyCtx<T>,
    s: Scheme,
    hash: Option<u32>,
    p: &Params,
    verify: bool,
) -> Result<()> {
    if s.rsa {
        if s.pss {
            ctx.set_rsa_padding(Padding::PKCS1_PSS).map_err(ossl)?;
            let salt = match p.salt_length {
                Some(n) => RsaPssSaltlen::custom(n),
                // RSA_PSS_SALTLEN_AUTO: the verifier reads the salt length from the signature.
                None if verify => RsaPssSaltlen::custom(-2),
                None => RsaPssSaltlen::DIGEST_LENGTH,
            };
            ctx.set_rsa_pss_saltlen(salt).map_err(ossl)?;
            let mgf = p.mask_generator_hashing_algorithm.unwrap_or(s.hash);
            ctx.set_rsa_mgf1_md(md(mgf)?).map_err(ossl)?;
        } else {
            ctx.set_rsa_padding(Padding::PKCS1).map_err(ossl)?;
        }
    }
    if let Some(hash) = hash {
        ctx.set_signature_md(md(hash)?).map_err(ossl)?;
    }
    Ok(())
}

fn check_family<T>(pkey: &PKey<T>, s: Scheme) -> Result<()> {
    match (pkey.id(), s.rsa) {
        (Id::RSA, true) | (Id::EC, false) => Ok(()),
        _ => Err(Error::BadCryptographicParameters(
            "the signature algorithm does not match the key",
        )),
    }
}

/// What is signed or verified: the data, or its digest computed by the client.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Input<'a> {
    /// Data, hashed here.
    Data(&'a [u8]),
    /// A digest (Digested Data).
    Digest(&'a [u8]),
}

/// Signs with the private key (PKCS#1, PKCS#8 or SEC1 DER) of object `uid`, parsed once and
/// then taken from the key cache (`key_cache.rs`).
pub(crate) fn sign(
    uid: &str,
    key_der: &[u8],
    s: Scheme,
    p: &Params,
    input: Input<'_>,
) -> Result<Vec<u8>> {
    let pkey = key_cache::private(uid, key_der)?;
    check_family(&pkey, s)?;
    let (digest, hash) = to_sign(s, input)?;
    let mut ctx = PkeyCtx::new(&pkey).map_err(ossl)?;
    ctx.sign_init().map_err(ossl)?;
    sig_setup(&mut ctx, s, hash, p, false)?;
    let mut sig = Vec::new();
    ctx.sign_to_vec(&digest, &mut sig)
        .map_err(|_| Error::CryptographicFailure("signing failed"))?;
    Ok(sig)
}

fn verify_with<T: HasPublic>(
    pkey: &PKey<T>,
    s: Scheme,
    p: &Params,
    (digest, hash): (&[u8], Option<u32>),
    sig: &[u8],
) -> Result<bool> {
    check_family(pkey, s)?;
    let mut ctx = PkeyCtx::new(pkey).map_err(ossl)?;
    ctx.verify_init().map_err(ossl)?;
    sig_setup(&mut ctx, s, hash, p, true)?;
    // A malformed signature is an invalid one, not an error.
    Ok(ctx.verify(digest, sig).unwrap_or(false))
}

/// Verifies with the key of object `uid`: a public key (SubjectPublicKeyInfo or PKCS#1 DER) or
/// a private key's DER, parsed once and then taken from the key cache (`key_cache.rs`).
pub(crate) fn verify(
    uid: &str,
    key_der: &[u8],
    s: Scheme,
    p: &Params,
    input: Input<'_>,
    sig: &[u8],
) -> Result<bool> {
    let (digest, hash) = to_sign(s, input)?;
    match key_cache::verifying(uid, key_der)? {
        key_cache::Parsed::Public(k) => verify_with(&k, s, p, (&digest, hash), sig),
        key_cache::Parsed::Private(k) => verify_with(&k, s, p, (&digest, hash), sig),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keygen;
    use kmipd_proto::enums::recommended_curve;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn oaep_round_trips_with_every_hash_pair_and_label() {
        let pair = keygen::rsa(2048).unwrap();
        for (hash, mgf) in [
            (ha::SHA_1, ha::SHA_1),
            (ha::SHA_256, ha::SHA_256),
            (ha::SHA_384, ha::SHA_256),
            (ha::SHA_512, ha::SHA_512),
        ] {
            let p = Params {
                padding_method: Some(pm::OAEP),
                hashing_algorithm: Some(hash),
                mask_generator_hashing_algorithm: Some(mgf),
                p_source: Some(b"label".to_vec()),
                ..Params::default()
            };
            let ct = rsa_encrypt(&pair.public_pkcs1, &p, b"secret").unwrap();
            assert_eq!(ct.len(), 256);
            assert_eq!(
                *rsa_decrypt(&pair.private_pkcs1, &p, &ct).unwrap(),
                b"secret"
            );
            // Another MGF1 hash or label does not decrypt.
            let other = Params {
                mask_generator_hashing_algorithm: Some(ha::SHA_224),
                ..p.clone()
            };
            assert!(matches!(
                rsa_decrypt(&pair.private_pkcs1, &other, &ct),
                Err(Error::CryptographicFailure(_))
            ));
        }
        let v15 = Params {
            padding_method: Some(pm::PKCS1_V1_5),
            ..Params::default()
        };
        let ct = rsa_encrypt(&pair.public_pkcs1, &v15, b"x").unwrap();
        assert_eq!(*rsa_decrypt(&pair.private_pkcs1, &v15, &ct).unwrap(), b"x");
    }

    #[test]
    fn pkcs1_v15_sha256_signature_is_deterministic_and_verifies() {
        let pair = keygen::rsa(1024).unwrap();
        let p = Params {
            cryptographic_algorithm: Some(alg::RSA),
            ..Params::default()
        };
        let s = scheme(&p, None).unwrap();
        assert_eq!(
            s,
            Scheme {
                rsa: true,
                pss: false,
                hash: ha::SHA_256,
                named: false,
            }
        );
        let a = sign("t", &pair.private_pkcs1, s, &p, Input::Data(b"abc")).unwrap();
        let b = sign("t", &pair.private_pkcs1, s, &p, Input::Data(b"abc")).unwrap();
        assert_eq!(a, b);
        // Digested Data gives the same signature as Data.
        let d = h("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(
            sign("t", &pair.private_pkcs1, s, &p, Input::Digest(&d)).unwrap(),
            a
        );
        assert!(verify("t", &pair.public_pkcs1, s, &p, Input::Data(b"abc"), &a).unwrap());
        assert!(!verify("t", &pair.public_pkcs1, s, &p, Input::Data(b"abd"), &a).unwrap());
    }

    #[test]
    fn digested_data_of_an_unnamed_hash_is_signed_as_given() {
        let digest = h("01020304050607080910111213141516");
        let rsa = keygen::rsa(1024).unwrap();
        let p = Params {
            cryptographic_algorithm: Some(alg::RSA),
            ..Params::default()
        };
        let s = scheme(&p, None).unwrap();
        let sig = sign("t", &rsa.private_pkcs1, s, &p, Input::Digest(&digest)).unwrap();
        // PKCS#1 v1.5 without DigestInfo: the public key recovers exactly the 16 bytes.
        let public = openssl::rsa::Rsa::public_key_from_der_pkcs1(&rsa.public_pkcs1).unwrap();
        let mut out = vec![0u8; 128];
        let n = public
            .public_decrypt(&sig, &mut out, Padding::PKCS1)
            .unwrap();
        assert_eq!(&out[..n], digest.as_slice());
        let sig_ok =
            |d: &[u8]| verify("t", &rsa.public_pkcs1, s, &p, Input::Digest(d), &sig).unwrap();
        assert!(sig_ok(&digest));
        assert!(!sig_ok(&h("01020304050607080910111213141517")));
        // Named SHA-256, the same 16 bytes are refused (not a SHA-256 digest).
        let named = Params {
            hashing_algorithm: Some(ha::SHA_256),
            ..p.clone()
        };
        let ns = scheme(&named, None).unwrap();
        assert!(sign("t", &rsa.private_pkcs1, ns, &named, Input::Digest(&digest)).is_err());
        // PSS cannot sign without knowing the hash.
        let pss = Params {
            padding_method: Some(pm::PSS),
            ..p.clone()
        };
        let ps = scheme(&pss, None).unwrap();
        assert!(sign("t", &rsa.private_pkcs1, ps, &pss, Input::Digest(&digest)).is_err());

        let ec = keygen::ec(recommended_curve::P_256).unwrap();
        let e = Params::default();
        let es = scheme(&e, Some(alg::EC)).unwrap();
        let sig = sign("t", &ec.private_pkcs8, es, &e, Input::Digest(&digest)).unwrap();
        assert!(verify("t", &ec.public_spki, es, &e, Input::Digest(&digest), &sig).unwrap());
        let other = h("01020304050607080910111213141517");
        assert!(!verify("t", &ec.public_spki, es, &e, Input::Digest(&other), &sig).unwrap());
    }

    #[test]
    fn pss_with_maximum_salt_and_auto_detecting_verifier() {
        let pair = keygen::rsa(2048).unwrap();
        let p = Params {
            cryptographic_algorithm: Some(alg::RSA),
            padding_method: Some(pm::PSS),
            hashing_algorithm: Some(ha::SHA_256),
            salt_length: Some(222),
            ..Params::default()
        };
        let s = scheme(&p, None).unwrap();
        let sig = sign("t", &pair.private_pkcs1, s, &p, Input::Data(b"m")).unwrap();
        assert_ne!(
            sig,
            sign("t", &pair.private_pkcs1, s, &p, Input::Data(b"m")).unwrap()
        );
        let auto = Params {
            salt_length: None,
            ..p.clone()
        };
        assert!(verify("t", &pair.public_pkcs1, s, &auto, Input::Data(b"m"), &sig).unwrap());
        assert!(verify("t", &pair.public_pkcs1, s, &p, Input::Data(b"m"), &sig).unwrap());
        let wrong = Params {
            salt_length: Some(32),
            ..p.clone()
        };
        assert!(!verify("t", &pair.public_pkcs1, s, &wrong, Input::Data(b"m"), &sig).unwrap());
    }

    #[test]
    fn ecdsa_p256_and_p384() {
        for (curve, d) in [
            (recommended_curve::P_256, dsa::ECDSA_WITH_SHA256),
            (recommended_curve::P_384, dsa::ECDSA_WITH_SHA384),
        ] {
            let pair = keygen::ec(curve).unwrap();
            let p = Params {
                digital_signature_algorithm: Some(d),
                ..Params::default()
            };
            let s = scheme(&p, None).unwrap();
            let sig = sign("t", &pair.private_pkcs8, s, &p, Input::Data(b"m")).unwrap();
            assert!(verify("t", &pair.public_spki, s, &p, Input::Data(b"m"), &sig).unwrap());
            assert!(!verify("t", &pair.public_spki, s, &p, Input::Data(b"n"), &sig).unwrap());
            // An RSA scheme on an EC key is refused.
            let rsa = Params {
                digital_signature_algorithm: Some(dsa::SHA_256_WITH_RSA_ENCRYPTION),
                ..Params::default()
            };
            let rs = scheme(&rsa, None).unwrap();
            assert!(sign("t", &pair.private_pkcs8, rs, &rsa, Input::Data(b"m")).is_err());
        }
    }
}
