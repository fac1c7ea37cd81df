//! Key generation for Create, Create Key Pair and Re-Key, and the key-format conversions that
//! Get and the cryptographic operations need.
//!
//! # Use
//! - Symmetric keys (AES, ChaCha20, HMAC keys, Secret Data), IVs and RNG Retrieve:
//!   [`symmetric`]`(len_bytes)` gives `len_bytes` bytes from OpenSSL's `RAND_bytes`, the
//!   public DRBG of OpenSSL 3's default provider: NIST SP 800-90A CTR_DRBG with AES-256
//!   (derivation function on), seeded and periodically reseeded from the operating system's
//!   entropy source, and reseeded in a forked child. OpenSSL also draws RSA primes and EC
//!   scalars from the same DRBG (its private instance), so every piece of key material the
//!   server makes comes from one kind of generator, the one Query (RNG Parameters) and the
//!   Random Number Generator attribute describe. Store them as Raw (or Transparent Symmetric
//!   Key).
//! - RSA: [`rsa`]`(bits)` for 1024..=4096 bits (a multiple of 8), public exponent 65537. The
//!   pair comes as DER: [`RsaPair::private_pkcs1`] (RFC 8017 `RSAPrivateKey`, Key Format Type
//!   PKCS#1) and [`RsaPair::public_pkcs1`] (`RSAPublicKey`, PKCS#1). These are the forms to
//!   store: the test cases register and expect PKCS#1.
//! - EC: [`ec`]`(recommended_curve)` for P-256 and P-384 (KMIP Recommended Curve values
//!   `enums::recommended_curve::{P_256, P_384}`). The pair comes as DER PKCS#8
//!   ([`EcPair::private_pkcs8`], Key Format Type PKCS#8) and SubjectPublicKeyInfo
//!   ([`EcPair::public_spki`], Key Format Type X.509), plus the raw forms of the Transparent
//!   EC formats: [`EcPair::d`] (the private scalar, big-endian, padded to the field size) and
//!   [`EcPair::q`] (the uncompressed SEC1 point `04 || X || Y`, the Q String). Store the DER
//!   forms.
//!
//! # Conversions (for Get with a Key Format Type, and for the operations)
//! Every private-key reader accepts PKCS#1, PKCS#8 and SEC1 `ECPrivateKey` DER alike
//! ([`private_to_pkcs8`], [`rsa_private_to_pkcs1`], [`private_to_public_spki`]); every
//! public-key reader accepts SubjectPublicKeyInfo and PKCS#1 `RSAPublicKey`
//! ([`public_to_spki`], [`rsa_public_to_pkcs1`]). [`rsa_private_components`] and
//! [`rsa_public_components`] give the Transparent RSA key fields; [`ec_private_parts`] gives
//! (curve, d, Q).

use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, PointConversionForm};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::Rsa;
use zeroize::Zeroizing;

use kmipd_proto::enums::recommended_curve;

use super::ossl;
use crate::error::{Error, Result};

/// `len_bytes` random bytes from OpenSSL's DRBG (`RAND_bytes`: SP 800-90A CTR_DRBG, AES-256,
/// seeded from the OS), for a new symmetric key, an IV or RNG Retrieve. Fails (rather than
/// falling back to another source) when the DRBG cannot produce output, e.g. when it could not
/// be seeded.
pub(crate) fn symmetric(len_bytes: usize) -> Result<Zeroizing<Vec<u8>>> {
    let mut key = Zeroizing::new(vec![0u8; len_bytes]);
    openssl::rand::rand_bytes(&mut key).map_err(ossl)?;
    Ok(key)
}

/// The fields of an RNG Parameters structure (KMIP 1.3+) describing [`symmetric`]'s generator:
/// RNG Algorithm DRBG, Cryptographic Algorithm AES, Cryptographic Length 256, DRBG Algorithm
/// CTR-DRBG, Prediction Resistance false (OpenSSL reseeds its DRBG periodically and after a
/// fork, not before every request). Query (RNG Parameters) and the Random Number Generator
/// attribute of generated objects both use it, so they cannot disagree.
pub(crate) fn rng_parameters() -> Vec<kmipd_ttlv::Ttlv> {
    use kmipd_proto::build;
    use kmipd_proto::enums::{cryptographic_algorithm, drbg_algorithm, rng_algorithm};
    use kmipd_proto::tag;
    vec![
        build::enumeration(tag::RNG_ALGORITHM, rng_algorithm::DRBG),
        build::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, cryptographic_algorithm::AES),
        build::int(tag::CRYPTOGRAPHIC_LENGTH, 256),
        build::enumeration(tag::DRBG_ALGORITHM, drbg_algorithm::CTR),
        build::boolean(tag::PREDICTION_RESISTANCE, false),
    ]
}

/// A new RSA key pair in PKCS#1 DER.
pub(crate) struct RsaPair {
    /// `RSAPrivateKey` (RFC 8017 A.1.2), DER.
    pub(crate) private_pkcs1: Zeroizing<Vec<u8>>,
    /// `RSAPublicKey` (RFC 8017 A.1.1), DER.
    pub(crate) public_pkcs1: Vec<u8>,
    /// The modulus length in bits.
    pub(crate) bits: u32,
}

impl std::fmt::Debug for RsaPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaPair")
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

/// A new RSA key pair of `bits` bits (1024..=4096, a multiple of 8), exponent 65537.
pub(crate) fn rsa(bits: u32) -> Result<RsaPair> {
    if !(1024..=4096).contains(&bits) || !bits.is_multiple_of(8) {
        return Err(Error::InvalidField("Cryptographic Length"));
    }
    let key = Rsa::generate(bits).map_err(ossl)?;
    Ok(RsaPair {
        private_pkcs1: Zeroizing::new(key.private_key_to_der().map_err(ossl)?),
        public_pkcs1: key.public_key_to_der_pkcs1().map_err(ossl)?,
        bits,
    })
}

/// A new EC key pair.
pub(crate) struct EcPair {
    /// The KMIP Recommended Curve.
    pub(crate) curve: u32,
    /// PKCS#8 `PrivateKeyInfo` (with the curve OID and the public point), DER.
    pub(crate) private_pkcs8: Zeroizing<Vec<u8>>,
    /// `SubjectPublicKeyInfo`, DER.
    pub(crate) public_spki: Vec<u8>,
    /// The field size in bits (256 or 384): the Cryptographic Length.
    pub(crate) bits: u32,
}

impl std::fmt::Debug for EcPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcPair")
            .field("curve", &self.curve)
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

/// The OpenSSL curve and field size of a KMIP Recommended Curve.
pub(crate) fn curve_nid(curve: u32) -> Result<(Nid, u32)> {
    match curve {
        recommended_curve::P_256 => Ok((Nid::X9_62_PRIME256V1, 256)),
        recommended_curve::P_384 => Ok((Nid::SECP384R1, 384)),
        recommended_curve::P_521 => Ok((Nid::SECP521R1, 521)),
        recommended_curve::SECP256_K1 => Ok((Nid::SECP256K1, 256)),
        _ => Err(Error::InvalidField("Recommended Curve")),
    }
}

/// The KMIP Recommended Curve of an OpenSSL curve.
fn curve_of(nid: Nid) -> Result<u32> {
    match nid {
        Nid::X9_62_PRIME256V1 => Ok(recommended_curve::P_256),
        Nid::SECP384R1 => Ok(recommended_curve::P_384),
        Nid::SECP521R1 => Ok(recommended_curve::P_521),
        Nid::SECP256K1 => Ok(recommended_curve::SECP256_K1),
        _ => Err(Error::FeatureNotSupported("elliptic curve")),
    }
}

/// A new EC key pair on `curve` (a KMIP Recommended Curve: P-256, P-384, P-521 or
/// secp256k1).
pub(crate) fn ec(curve: u32) -> Result<EcPair> {
    let (nid, bits) = curve_nid(curve)?;
    let group = EcGroup::from_curve_name(nid).map_err(ossl)?;
    let key = EcKey::generate(&group).map_err(ossl)?;
    let pkey = PKey::from_ec_key(key).map_err(ossl)?;
    Ok(EcPair {
        curve,
        private_pkcs8: Zeroizing::new(pkey.private_key_to_pkcs8().map_err(ossl)?),
        public_spki: pkey.public_key_to_der().map_err(ossl)?,
        bits,
    })
}

fn ec_parts(key: &EcKey<Private>) -> Result<(u32, Zeroizing<Vec<u8>>, Vec<u8>)> {
    let group = key.group();
    let nid = group
        .curve_name()
        .ok_or(Error::FeatureNotSupported("elliptic curve"))?;
    let curve = curve_of(nid)?;
    let len = group.degree().div_ceil(8);
    let len = i32::try_from(len).map_err(|_| Error::Internal("curve size"))?;
    let d = Zeroizing::new(key.private_key().to_vec_padded(len).map_err(ossl)?);
    let mut ctx = BigNumContext::new().map_err(ossl)?;
    let q = key
        .public_key()
        .to_bytes(group, PointConversionForm::UNCOMPRESSED, &mut ctx)
        .map_err(ossl)?;
    Ok((curve, d, q))
}

/// Parses a private key in PKCS#8, PKCS#1 (RSA) or SEC1 (EC) DER.
pub(crate) fn parse_private(der: &[u8]) -> Result<PKey<Private>> {
    if let Ok(k) = PKey::private_key_from_pkcs8(der) {
        return Ok(k);
    }
    if let Ok(r) = Rsa::private_key_from_der(der) {
        return PKey::from_rsa(r).map_err(ossl);
    }
    if let Ok(e) = EcKey::private_key_from_der(der) {
        return PKey::from_ec_key(e).map_err(ossl);
    }
    Err(Error::CryptographicFailure(
        "the key is not a private key in a known DER form",
    ))
}

/// Parses a public key in SubjectPublicKeyInfo or PKCS#1 `RSAPublicKey` DER.
pub(crate) fn parse_public(der: &[u8]) -> Result<PKey<Public>> {
    if let Ok(k) = PKey::public_key_from_der(der) {
        return Ok(k);
    }
    if let Ok(r) = Rsa::public_key_from_der_pkcs1(der) {
        return PKey::from_rsa(r).map_err(ossl);
    }
    Err(Error::CryptographicFailure(
        "the key is not a public key in a known DER form",
    ))
}

/// Any private key DER form to PKCS#8.
pub(crate) fn private_to_pkcs8(der: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    Ok(Zeroizing::new(
        parse_private(der)?.private_key_to_pkcs8().map_err(ossl)?,
    ))
}

/// An RSA private key (PKCS#1 or PKCS#8) to PKCS#1 `RSAPrivateKey`.
pub(crate) fn rsa_private_to_pkcs1(der: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let rsa = parse_private(der)?
        .rsa()
        .map_err(|_| Error::InvalidField("not an RSA key"))?;
    Ok(Zeroizing::new(rsa.private_key_to_der().map_err(ossl)?))
}

/// An EC private key (PKCS#8 or SEC1) to SEC1 `ECPrivateKey` DER (RFC 5915).
pub(crate) fn ec_private_to_sec1(der: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let ec = parse_private(der)?
        .ec_key()
        .map_err(|_| Error::InvalidField("not an EC key"))?;
    Ok(Zeroizing::new(ec.private_key_to_der().map_err(ossl)?))
}

/// Any public key DER form to SubjectPublicKeyInfo.
pub(crate) fn public_to_spki(der: &[u8]) -> Result<Vec<u8>> {
    parse_public(der)?.public_key_to_der().map_err(ossl)
}

/// An RSA public key (SubjectPublicKeyInfo or PKCS#1) to PKCS#1 `RSAPublicKey`.
pub(crate) fn rsa_public_to_pkcs1(der: &[u8]) -> Result<Vec<u8>> {
    let rsa = parse_public(der)?
        .rsa()
        .map_err(|_| Error::InvalidField("not an RSA key"))?;
    rsa.public_key_to_der_pkcs1().map_err(ossl)
}

/// The fields of a Transparent RSA Private Key, big-endian unsigned.
pub(crate) struct RsaComponents {
    /// Modulus.
    pub(crate) n: Vec<u8>,
    /// Public exponent.
    pub(crate) e: Vec<u8>,
    /// Private exponent (absent for a public key).
    pub(crate) d: Option<Zeroizing<Vec<u8>>>,
    /// Prime P.
    pub(crate) p: Option<Zeroizing<Vec<u8>>>,
    /// Prime Q.
    pub(crate) q: Option<Zeroizing<Vec<u8>>>,
    /// Prime Exponent P.
    pub(crate) dp: Option<Zeroizing<Vec<u8>>>,
    /// Prime Exponent Q.
    pub(crate) dq: Option<Zeroizing<Vec<u8>>>,
    /// CRT Coefficient.
    pub(crate) qinv: Option<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for RsaComponents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaComponents").finish_non_exhaustive()
    }
}

fn secret(b: Option<&openssl::bn::BigNumRef>) -> Option<Zeroizing<Vec<u8>>> {
    b.map(|b| Zeroizing::new(b.to_vec()))
}

/// The Transparent RSA Private Key fields of a private key (PKCS#1 or PKCS#8 DER).
pub(crate) fn rsa_private_components(der: &[u8]) -> Result<RsaComponents> {
    let rsa = parse_private(der)?
        .rsa()
        .map_err(|_| Error::InvalidField("not an RSA key"))?;
    Ok(RsaComponents {
        n: rsa.n().to_vec(),
        e: rsa.e().to_vec(),
        d: Some(Zeroizing::new(rsa.d().to_vec())),
        p: secret(rsa.p()),
        q: secret(rsa.q()),
        dp: secret(rsa.dmp1()),
        dq: secret(rsa.dmq1()),
        qinv: secret(rsa.iqmp()),
    })
}

/// The Transparent RSA Public Key fields (modulus, exponent) of a public key.
pub(crate) fn rsa_public_components(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let rsa = parse_public(der)?
        .rsa()
        .map_err(|_| Error::InvalidField("not an RSA key"))?;
    Ok((rsa.n().to_vec(), rsa.e().to_vec()))
}

/// An RSA private key (PKCS#1 DER) from Transparent RSA Private Key fields (n, e, d, p, q,
/// dp, dq, qinv; all big-endian unsigned).
pub(crate) fn rsa_private_from_components(c: &RsaComponents) -> Result<Zeroizing<Vec<u8>>> {
    let bn = |b: &[u8]| BigNum::from_slice(b).map_err(ossl);
    let need = |o: &Option<Zeroizing<Vec<u8>>>| -> Result<BigNum> {
        match o {
            Some(v) => bn(v),
            None => Err(Error::MissingData("RSA private key component")),
        }
    };
    let rsa = Rsa::from_private_components(
        bn(&c.n)?,
        bn(&c.e)?,
        need(&c.d)?,
        need(&c.p)?,
        need(&c.q)?,
        need(&c.dp)?,
        need(&c.dq)?,
        need(&c.qinv)?,
    )
    .map_err(ossl)?;
    Ok(Zeroizing::new(rsa.private_key_to_der().map_err(ossl)?))
}

/// An RSA public key (PKCS#1 DER) from its modulus and exponent.
pub(crate) fn rsa_public_from_components(n: &[u8], e: &[u8]) -> Result<Vec<u8>> {
    let rsa = Rsa::from_public_components(
        BigNum::from_slice(n).map_err(ossl)?,
        BigNum::from_slice(e).map_err(ossl)?,
    )
    .map_err(ossl)?;
    rsa.public_key_to_der_pkcs1().map_err(ossl)
}

/// (Recommended Curve, d, Q) of an EC private key in PKCS#8 or SEC1 DER.
pub(crate) fn ec_private_parts(der: &[u8]) -> Result<(u32, Zeroizing<Vec<u8>>, Vec<u8>)> {
    let ec = parse_private(der)?
        .ec_key()
        .map_err(|_| Error::InvalidField("not an EC key"))?;
    ec_parts(&ec)
}

/// (Recommended Curve, Q) of an EC public key in SubjectPublicKeyInfo DER.
pub(crate) fn ec_public_parts(der: &[u8]) -> Result<(u32, Vec<u8>)> {
    let ec = parse_public(der)?
        .ec_key()
        .map_err(|_| Error::InvalidField("not an EC key"))?;
    let group = ec.group();
    let nid = group
        .curve_name()
        .ok_or(Error::FeatureNotSupported("elliptic curve"))?;
    let mut ctx = BigNumContext::new().map_err(ossl)?;
    let q = ec
        .public_key()
        .to_bytes(group, PointConversionForm::UNCOMPRESSED, &mut ctx)
        .map_err(ossl)?;
    Ok((curve_of(nid)?, q))
}

/// An EC public key (SubjectPublicKeyInfo DER) from a curve and an encoded point (Q String).
pub(crate) fn ec_public_from_point(curve: u32, q: &[u8]) -> Result<Vec<u8>> {
    let (nid, _) = curve_nid(curve)?;
    let group = EcGroup::from_curve_name(nid).map_err(ossl)?;
    let mut ctx = BigNumContext::new().map_err(ossl)?;
    let point = openssl::ec::EcPoint::from_bytes(&group, q, &mut ctx).map_err(ossl)?;
    let key = EcKey::from_public_key(&group, &point).map_err(ossl)?;
    PKey::from_ec_key(key)
        .map_err(ossl)?
        .public_key_to_der()
        .map_err(ossl)
}

/// An EC private key (PKCS#8 DER) from a curve and its private scalar (Transparent EC Private
/// Key `D`); the public point is recomputed.
pub(crate) fn ec_private_from_scalar(curve: u32, d: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let (nid, _) = curve_nid(curve)?;
    let group = EcGroup::from_curve_name(nid).map_err(ossl)?;
    let mut ctx = BigNumContext::new().map_err(ossl)?;
    let d = BigNum::from_slice(d).map_err(ossl)?;
    let mut q = openssl::ec::EcPoint::new(&group).map_err(ossl)?;
    q.mul_generator2(&group, &d, &mut ctx).map_err(ossl)?;
    let key = EcKey::from_private_components(&group, &d, &q).map_err(ossl)?;
    key.check_key().map_err(ossl)?;
    Ok(Zeroizing::new(
        PKey::from_ec_key(key)
            .map_err(ossl)?
            .private_key_to_pkcs8()
            .map_err(ossl)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::pkey::Id;

    /// The public key (SubjectPublicKeyInfo DER) of a private key in any DER form.
    fn private_to_public_spki(der: &[u8]) -> Vec<u8> {
        parse_private(der).unwrap().public_key_to_der().unwrap()
    }

    /// The kind of key a DER private or public key is.
    fn key_id(der: &[u8]) -> Id {
        parse_private(der)
            .map(|k| k.id())
            .or_else(|_| parse_public(der).map(|k| k.id()))
            .unwrap()
    }

    #[test]
    fn symmetric_lengths_and_randomness() {
        assert_eq!(symmetric(16).unwrap().len(), 16);
        assert_eq!(symmetric(32).unwrap().len(), 32);
        assert_ne!(*symmetric(32).unwrap(), *symmetric(32).unwrap());
    }

    #[test]
    fn rsa_1024_and_2048_round_trip_through_every_form() {
        for bits in [1024, 2048] {
            let pair = rsa(bits).unwrap();
            let pkcs8 = private_to_pkcs8(&pair.private_pkcs1).unwrap();
            assert_eq!(*rsa_private_to_pkcs1(&pkcs8).unwrap(), *pair.private_pkcs1);
            let spki = public_to_spki(&pair.public_pkcs1).unwrap();
            assert_eq!(private_to_public_spki(&pair.private_pkcs1), spki);
            assert_eq!(rsa_public_to_pkcs1(&spki).unwrap(), pair.public_pkcs1);
            let c = rsa_private_components(&pair.private_pkcs1).unwrap();
            assert_eq!(c.n.len() * 8, usize::try_from(bits).unwrap());
            assert_eq!(c.e, vec![1, 0, 1]);
            assert_eq!(
                *rsa_private_from_components(&c).unwrap(),
                *pair.private_pkcs1
            );
            let (n, e) = rsa_public_components(&spki).unwrap();
            assert_eq!(
                rsa_public_from_components(&n, &e).unwrap(),
                pair.public_pkcs1
            );
            assert_eq!(key_id(&pair.private_pkcs1), Id::RSA);
        }
    }

    #[test]
    fn rsa_sizes_out_of_range_are_refused() {
        assert!(rsa(512).is_err());
        assert!(rsa(8192).is_err());
        assert!(rsa(1025).is_err());
    }

    #[test]
    fn ec_pairs_and_forms() {
        for (curve, bits, len) in [
            (recommended_curve::P_256, 256, 32),
            (recommended_curve::P_384, 384, 48),
        ] {
            let pair = ec(curve).unwrap();
            assert_eq!(pair.bits, bits);
            let (c, d, q) = ec_private_parts(&pair.private_pkcs8).unwrap();
            assert_eq!(c, curve);
            assert_eq!(d.len(), len);
            assert_eq!(q.len(), 2 * len + 1);
            assert_eq!(q.first(), Some(&4));
            assert_eq!(
                ec_public_parts(&pair.public_spki).unwrap(),
                (curve, q.clone())
            );
            assert_eq!(ec_public_from_point(curve, &q).unwrap(), pair.public_spki);
            assert_eq!(
                *ec_private_from_scalar(curve, &d).unwrap(),
                *pair.private_pkcs8
            );
            let sec1 = ec_private_to_sec1(&pair.private_pkcs8).unwrap();
            assert_eq!(*private_to_pkcs8(&sec1).unwrap(), *pair.private_pkcs8);
            assert_eq!(
                private_to_public_spki(&pair.private_pkcs8),
                pair.public_spki
            );
            assert_eq!(key_id(&pair.public_spki), Id::EC);
        }
        assert!(ec(recommended_curve::P_192).is_err());
    }
}
