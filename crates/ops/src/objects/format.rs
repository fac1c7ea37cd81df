//! Key Format Type conversion for Get: the stored Key Block in the format a client asks for.
//!
//! Symmetric keys: Raw <-> Transparent Symmetric Key. Private keys: PKCS#1 (RSA), PKCS#8,
//! SEC1 ECPrivateKey, Transparent RSA/EC/ECDSA/ECDH Private Key, each to any other that fits
//! the key. Public keys: PKCS#1 (RSA), X.509 SubjectPublicKeyInfo, Transparent RSA/EC/ECDSA/
//! ECDH Public Key. Other conversions are Key Format Type Not Supported. A Key Compression Type is refused unless it is the uncompressed EC point
//! form a key already has.

use kmipd_proto::build;
use kmipd_proto::enums::{key_format_type as kft, object_type as ot};
use kmipd_proto::reader::{self, ProtoError, StructReader};
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::{BigInteger, Ttlv, Value};
use zeroize::Zeroizing;

use crate::context::Ctx;
use crate::crypto::keygen;
use crate::error::{Error, Result};
use crate::objects::with_child;

/// EC Public Key Type Uncompressed (Key Compression Type 1).
const EC_UNCOMPRESSED: u32 = 1;

/// The object structure `body` of `obj` with its Key Block in format `wanted`.
pub(crate) fn convert(
    ctx: &Ctx<'_>,
    obj: &ManagedObject,
    body: &Ttlv,
    wanted: Option<u32>,
    compression: Option<u32>,
) -> Result<Ttlv> {
    let r = StructReader::any(body)?;
    let Some(kb_item) = r.optional(tag::KEY_BLOCK) else {
        // Certificates, opaque objects: no key format to speak of.
        if wanted.is_some() {
            return Err(Error::KeyFormatTypeNotSupported);
        }
        if compression.is_some() {
            return Err(Error::KeyCompressionTypeNotSupported);
        }
        return Ok(body.clone());
    };
    let kb = StructReader::new(kb_item, tag::KEY_BLOCK)?;
    let stored = kb.req_enum(tag::KEY_FORMAT_TYPE)?;
    if let Some(c) = compression
        && c != EC_UNCOMPRESSED
    {
        return Err(Error::KeyCompressionTypeNotSupported);
    }
    let Some(wanted) = wanted.filter(|w| *w != stored) else {
        return Ok(body.clone());
    };
    if kb.optional(tag::KEY_WRAPPING_DATA).is_some() {
        return Err(Error::KeyFormatTypeNotSupported);
    }
    let value = StructReader::new(kb.required(tag::KEY_VALUE)?, tag::KEY_VALUE)?;
    let material = value.required(tag::KEY_MATERIAL)?;
    if wanted == kft::PKCS_12 {
        let der = private_der(stored, material)?;
        return crate::objects::pkcs12::object(ctx, obj, body, &der);
    }
    let new_material = convert_material(obj.object_type, stored, wanted, material)?;
    let items = with_child(
        &with_child(
            kb.items(),
            &build::enumeration(tag::KEY_FORMAT_TYPE, wanted),
        ),
        &build::structure(tag::KEY_VALUE, vec![new_material]),
    );
    let new_kb = build::structure(tag::KEY_BLOCK, items);
    Ok(build::structure(body.tag, with_child(r.items(), &new_kb)))
}

/// The Key Material item in another format.
fn convert_material(object_type: u32, stored: u32, wanted: u32, material: &Ttlv) -> Result<Ttlv> {
    match (stored, wanted) {
        (kft::RAW, kft::TRANSPARENT_SYMMETRIC_KEY) => {
            let key = reader::as_bytes(material)?;
            return Ok(build::structure(
                tag::KEY_MATERIAL,
                vec![build::bytes(tag::KEY, key.to_vec())],
            ));
        }
        (kft::TRANSPARENT_SYMMETRIC_KEY, kft::RAW) => {
            let key = StructReader::any(material)?.req_bytes(tag::KEY)?;
            return Ok(Ttlv::new(tag::KEY_MATERIAL, Value::bytes(key.to_vec())));
        }
        _ => {}
    }
    match object_type {
        ot::PRIVATE_KEY => {
            let der = private_der(stored, material)?;
            private_from_der(wanted, &der)
        }
        ot::PUBLIC_KEY => {
            let der = public_der(stored, material)?;
            public_from_der(wanted, &der)
        }
        _ => Err(Error::KeyFormatTypeNotSupported),
    }
}

fn big(item: &StructReader<'_>, t: kmipd_ttlv::Tag) -> Result<Zeroizing<Vec<u8>>> {
    let b = item.big(t)?.ok_or(ProtoError::Missing(t))?;
    Ok(Zeroizing::new(b.as_bytes().to_vec()))
}

fn big_item(t: kmipd_ttlv::Tag, bytes: &[u8]) -> Ttlv {
    Ttlv::new(t, Value::BigInteger(BigInteger::from_unsigned(bytes)))
}

/// A private key's DER (PKCS#1, PKCS#8 or SEC1) from its stored Key Material.
pub(crate) fn private_der(format: u32, material: &Ttlv) -> Result<Zeroizing<Vec<u8>>> {
    match format {
        kft::PKCS_1 | kft::PKCS_8 | kft::ECPRIVATE_KEY => {
            Ok(Zeroizing::new(reader::as_bytes(material)?.to_vec()))
        }
        kft::TRANSPARENT_RSA_PRIVATE_KEY => {
            let r = StructReader::any(material)?;
            let opt = |t| -> Result<Option<Zeroizing<Vec<u8>>>> {
                Ok(r.big(t)?.map(|b| Zeroizing::new(b.as_bytes().to_vec())))
            };
            let c = keygen::RsaComponents {
                n: big(&r, tag::MODULUS)?.to_vec(),
                e: big(&r, tag::PUBLIC_EXPONENT)?.to_vec(),
                d: opt(tag::PRIVATE_EXPONENT)?,
                p: opt(tag::P)?,
                q: opt(tag::Q)?,
                dp: opt(tag::PRIME_EXPONENT_P)?,
                dq: opt(tag::PRIME_EXPONENT_Q)?,
                qinv: opt(tag::CRT_COEFFICIENT)?,
            };
            keygen::rsa_private_from_components(&c)
        }
        kft::TRANSPARENT_EC_PRIVATE_KEY
        | kft::TRANSPARENT_ECDSA_PRIVATE_KEY
        | kft::TRANSPARENT_ECDH_PRIVATE_KEY => {
            let r = StructReader::any(material)?;
            let curve = r.req_enum(tag::RECOMMENDED_CURVE)?;
            keygen::ec_private_from_scalar(curve, &big(&r, tag::D)?)
        }
        _ => Err(Error::KeyFormatTypeNotSupported),
    }
}

/// A public key's DER (SubjectPublicKeyInfo or PKCS#1) from its stored Key Material.
fn public_der(format: u32, material: &Ttlv) -> Result<Vec<u8>> {
    match format {
        kft::PKCS_1 | kft::X_509 => Ok(reader::as_bytes(material)?.to_vec()),
        kft::TRANSPARENT_RSA_PUBLIC_KEY => {
            let r = StructReader::any(material)?;
            keygen::rsa_public_from_components(
                &big(&r, tag::MODULUS)?,
                &big(&r, tag::PUBLIC_EXPONENT)?,
            )
        }
        kft::TRANSPARENT_EC_PUBLIC_KEY
        | kft::TRANSPARENT_ECDSA_PUBLIC_KEY
        | kft::TRANSPARENT_ECDH_PUBLIC_KEY => {
            let r = StructReader::any(material)?;
            let curve = r.req_enum(tag::RECOMMENDED_CURVE)?;
            keygen::ec_public_from_point(curve, r.req_bytes(tag::Q_STRING)?)
        }
        _ => Err(Error::KeyFormatTypeNotSupported),
    }
}

fn bytes_material(b: &[u8]) -> Ttlv {
    Ttlv::new(tag::KEY_MATERIAL, Value::bytes(b.to_vec()))
}

/// A private key's Key Material in format `wanted`.
fn private_from_der(wanted: u32, der: &[u8]) -> Result<Ttlv> {
    let unsupported = |_| Error::KeyFormatTypeNotSupported;
    match wanted {
        kft::PKCS_1 => Ok(bytes_material(
            &keygen::rsa_private_to_pkcs1(der).map_err(unsupported)?,
        )),
        kft::PKCS_8 => Ok(bytes_material(&keygen::private_to_pkcs8(der)?)),
        kft::ECPRIVATE_KEY => Ok(bytes_material(
            &keygen::ec_private_to_sec1(der).map_err(unsupported)?,
        )),
        kft::TRANSPARENT_RSA_PRIVATE_KEY => {
            let c = keygen::rsa_private_components(der).map_err(unsupported)?;
            let mut items = vec![big_item(tag::MODULUS, &c.n)];
            if let Some(d) = &c.d {
                items.push(big_item(tag::PRIVATE_EXPONENT, d));
            }
            items.push(big_item(tag::PUBLIC_EXPONENT, &c.e));
            for (t, v) in [
                (tag::P, &c.p),
                (tag::Q, &c.q),
                (tag::PRIME_EXPONENT_P, &c.dp),
                (tag::PRIME_EXPONENT_Q, &c.dq),
                (tag::CRT_COEFFICIENT, &c.qinv),
            ] {
                if let Some(v) = v {
                    items.push(big_item(t, v));
                }
            }
            Ok(build::structure(tag::KEY_MATERIAL, items))
        }
        kft::TRANSPARENT_EC_PRIVATE_KEY
        | kft::TRANSPARENT_ECDSA_PRIVATE_KEY
        | kft::TRANSPARENT_ECDH_PRIVATE_KEY => {
            let (curve, d, _) = keygen::ec_private_parts(der).map_err(unsupported)?;
            Ok(build::structure(
                tag::KEY_MATERIAL,
                vec![
                    build::enumeration(tag::RECOMMENDED_CURVE, curve),
                    big_item(tag::D, &d),
                ],
            ))
        }
        _ => Err(Error::KeyFormatTypeNotSupported),
    }
}

/// A public key's Key Material in format `wanted`.
fn public_from_der(wanted: u32, der: &[u8]) -> Result<Ttlv> {
    let unsupported = |_| Error::KeyFormatTypeNotSupported;
    match wanted {
        kft::PKCS_1 => Ok(bytes_material(
            &keygen::rsa_public_to_pkcs1(der).map_err(unsupported)?,
        )),
        kft::X_509 => Ok(bytes_material(&keygen::public_to_spki(der)?)),
        kft::TRANSPARENT_RSA_PUBLIC_KEY => {
            let (n, e) = keygen::rsa_public_components(der).map_err(unsupported)?;
            Ok(build::structure(
                tag::KEY_MATERIAL,
                vec![
                    big_item(tag::MODULUS, &n),
                    big_item(tag::PUBLIC_EXPONENT, &e),
                ],
            ))
        }
        kft::TRANSPARENT_EC_PUBLIC_KEY
        | kft::TRANSPARENT_ECDSA_PUBLIC_KEY
        | kft::TRANSPARENT_ECDH_PUBLIC_KEY => {
            let spki = keygen::public_to_spki(der)?;
            let (curve, q) = keygen::ec_public_parts(&spki).map_err(unsupported)?;
            Ok(build::structure(
                tag::KEY_MATERIAL,
                vec![
                    build::enumeration(tag::RECOMMENDED_CURVE, curve),
                    build::bytes(tag::Q_STRING, q),
                ],
            ))
        }
        _ => Err(Error::KeyFormatTypeNotSupported),
    }
}
