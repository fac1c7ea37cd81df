//! Attributes that come from elsewhere than the request itself: the attributes the server sets
//! on every new object (Digest, Sensitive/Extractable and their history, Fresh, Lease Time,
//! Random Number Generator), and, in 1.x, those of a registered Template named by a request.
//!
//! Every attribute is stored whatever the request's version; answers filter them by version
//! (`object::attributes_out`), so a 1.0 client never sees a 1.1 attribute.

use kmipd_proto::attributes::{AttrName, Attributes, RequestAttributes, name_value};
use kmipd_proto::build;
use kmipd_proto::enums::{
    hashing_algorithm, key_format_type, object_type as ot, protection_storage_mask,
};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_store::{Filter, ManagedObject, Query};
use kmipd_ttlv::{Ttlv, Value};
use sha2::{Digest as _, Sha256};

use super::TEMPLATE;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::keyblock;

/// The lease the server grants (seconds), reported as Lease Time.
pub(crate) const LEASE_TIME: u32 = 3600;

/// Adds the server-set attributes of a new object of `object_type` whose structure is
/// `object`; `generated` is true when the server made the key material (Create, Create Key
/// Pair, ReKey), which adds Random Number Generator.
pub(crate) fn server_defaults(
    attrs: &mut Attributes,
    object_type: u32,
    object: &Ttlv,
    generated: bool,
) {
    if let Some(d) = digest(object_type, object) {
        attrs.set(tag::DIGEST, d);
        // An RSA private key given in the Transparent form also gets the Digest of its
        // standard encoding, PKCS#1 ("the server MAY store additional digests ... of other
        // formats": KMIP 1.4 §3.17, 2.1 §4.12; the 2.0 Import/Export case TC-IMPEXP-4 shows
        // both), so a copy of the key in either form can be matched against it.
        if let Some(extra) = pkcs1_digest(object_type, object) {
            attrs
                .0
                .push(kmipd_proto::attributes::Attribute::std(tag::DIGEST, extra));
        }
    }
    let sensitive = match attrs.get(tag::SENSITIVE) {
        Some(Value::Boolean(b)) => *b,
        _ => false,
    };
    let extractable = match attrs.get(tag::EXTRACTABLE) {
        Some(Value::Boolean(b)) => *b,
        _ => true,
    };
    let defaults = [
        (tag::SENSITIVE, Value::Boolean(sensitive)),
        (tag::EXTRACTABLE, Value::Boolean(extractable)),
        (tag::ALWAYS_SENSITIVE, Value::Boolean(sensitive)),
        (tag::NEVER_EXTRACTABLE, Value::Boolean(!extractable)),
        (tag::FRESH, Value::Boolean(true)),
        (tag::LEASE_TIME, Value::Interval(LEASE_TIME)),
        // 2.x: where the object is kept (in memory or on disk, by this software).
        (
            tag::PROTECTION_STORAGE_MASK,
            Value::Integer(storage_mask(protection_storage_mask::SOFTWARE)),
        ),
    ];
    for (t, v) in defaults {
        if !attrs.has(&AttrName::Std(t)) {
            attrs.set(t, v);
        }
    }
    if generated && !attrs.has(&AttrName::Std(tag::RANDOM_NUMBER_GENERATOR)) {
        // The generator behind every generated key (OpenSSL's CTR_DRBG, AES-256).
        attrs.set(
            tag::RANDOM_NUMBER_GENERATOR,
            Value::Structure(crate::crypto::keygen::rng_parameters()),
        );
    }
}

/// The last step of every new object: the server policy (`policy.rs`: refuses a key it does
/// not allow, adds the default usage mask and the crypto period's dates), then the attributes
/// that need the new object's identity (2.x): Short Unique Identifier (SHA-256 of the Unique
/// Identifier) and, for keys and certificates, the Key Format Type attribute. 1.x has neither (its Key Format
/// Type tag is a Key Block field, not an attribute), so they are set for 2.x requests only.
pub(crate) fn finish(ctx: &Ctx<'_>, obj: &mut ManagedObject) -> Result<()> {
    ctx.policy.apply(obj, ctx.now)?;
    crate::object::apply_dates(obj, ctx.now);
    crate::constraints::check_new(&ctx.tx, obj)?;
    if !ctx.v2() {
        return Ok(());
    }
    let short = Sha256::digest(obj.uid.as_bytes()).to_vec();
    obj.attributes
        .set(tag::SHORT_UNIQUE_IDENTIFIER, Value::bytes(short));
    if let Some(body) = &obj.object
        && let Ok(kb) = keyblock::key_block(body)
    {
        let format = kb.format;
        obj.attributes
            .set(tag::KEY_FORMAT_TYPE, Value::Enumeration(format));
    } else if obj.object_type == ot::CERTIFICATE {
        // "a required attribute of a Cryptographic Object" (2.1 §4.26), X.509 for a
        // Certificate (Table 81).
        obj.attributes.set(
            tag::KEY_FORMAT_TYPE,
            Value::Enumeration(key_format_type::X_509),
        );
    }
    Ok(())
}

fn storage_mask(bits: u32) -> i32 {
    i32::from_ne_bytes(bits.to_ne_bytes())
}

/// The Digest attribute (SHA-256 of the key material as stored, or of the certificate or
/// opaque bytes): `{Hashing Algorithm, Digest Value, Key Format Type}`.
pub(crate) fn digest(object_type: u32, object: &Ttlv) -> Option<Value> {
    let (bytes, format) = match object_type {
        // The Certificate Value as it is stored: an X.509 certificate, the default Key Format
        // Type of a Certificate (2.1 Table 81); the field is optional for certificates.
        ot::CERTIFICATE => {
            let r = StructReader::any(object).ok()?;
            (
                r.bytes(tag::CERTIFICATE_VALUE).ok()??.to_vec(),
                Some(key_format_type::X_509),
            )
        }
        ot::OPAQUE_OBJECT => {
            let r = StructReader::any(object).ok()?;
            (r.bytes(tag::OPAQUE_DATA_VALUE).ok()??.to_vec(), None)
        }
        TEMPLATE => return None,
        _ => {
            let kb = keyblock::key_block(object).ok()?;
            let bytes = match kb.bytes() {
                Ok(b) => b.to_vec(),
                Err(_) => kmipd_ttlv::encode_to_vec(kb.material).ok()?,
            };
            (bytes, Some(kb.format))
        }
    };
    let value = Sha256::digest(&bytes).to_vec();
    let mut items = vec![
        build::enumeration(tag::HASHING_ALGORITHM, hashing_algorithm::SHA_256),
        build::bytes(tag::DIGEST_VALUE, value),
    ];
    if let Some(f) = format {
        items.push(build::enumeration(tag::KEY_FORMAT_TYPE, f));
    }
    Some(Value::Structure(items))
}

/// The Digest of the PKCS#1 encoding of an RSA private key stored in the Transparent form.
fn pkcs1_digest(object_type: u32, object: &Ttlv) -> Option<Value> {
    if object_type != ot::PRIVATE_KEY {
        return None;
    }
    let kb = keyblock::key_block(object).ok()?;
    if kb.format != kmipd_proto::enums::key_format_type::TRANSPARENT_RSA_PRIVATE_KEY {
        return None;
    }
    let der = crate::objects::format::private_der(kb.format, kb.material).ok()?;
    let pkcs1 = crate::crypto::keygen::rsa_private_to_pkcs1(&der).ok()?;
    Some(Value::Structure(vec![
        build::enumeration(tag::HASHING_ALGORITHM, hashing_algorithm::SHA_256),
        build::bytes(tag::DIGEST_VALUE, Sha256::digest(&pkcs1).to_vec()),
        build::enumeration(
            tag::KEY_FORMAT_TYPE,
            kmipd_proto::enums::key_format_type::PKCS_1,
        ),
    ]))
}

/// 1.x: the attributes of the registered Template named by `name` (a Name structure), other
/// than its own Names. Unknown template: Item Not Found.
pub(crate) fn attributes_of(ctx: &Ctx<'_>, name: &Ttlv) -> Result<Attributes> {
    let wanted = name_value(&name.value).ok_or(Error::InvalidField("Name"))?;
    for o in ctx
        .tx
        .find(&Query::new(vec![Filter::Name(wanted.to_owned())]))?
    {
        if o.object_type != TEMPLATE || !ctx.principal.may_see(&o) {
            continue;
        }
        let Some(body) = &o.object else {
            continue;
        };
        let parsed = RequestAttributes::from_v1_template(body)?;
        let mut out = Attributes::new();
        for a in parsed.attributes.0 {
            if a.name != AttrName::Std(tag::NAME) {
                out.0.push(a);
            }
        }
        return Ok(out);
    }
    Err(Error::NotFound)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn a_transparent_rsa_private_key_also_gets_the_digest_of_its_pkcs1_form() {
        let rsa = openssl::rsa::Rsa::generate(1024).unwrap();
        let big = |t, b: &openssl::bn::BigNumRef| {
            Ttlv::new(
                t,
                Value::BigInteger(kmipd_ttlv::BigInteger::from_unsigned(&b.to_vec())),
            )
        };
        let material = build::structure(
            tag::KEY_MATERIAL,
            vec![
                big(tag::MODULUS, rsa.n()),
                big(tag::PRIVATE_EXPONENT, rsa.d()),
                big(tag::PUBLIC_EXPONENT, rsa.e()),
                big(tag::P, rsa.p().unwrap()),
                big(tag::Q, rsa.q().unwrap()),
                big(tag::PRIME_EXPONENT_P, rsa.dmp1().unwrap()),
                big(tag::PRIME_EXPONENT_Q, rsa.dmq1().unwrap()),
                big(tag::CRT_COEFFICIENT, rsa.iqmp().unwrap()),
            ],
        );
        let key = build::structure(
            tag::PRIVATE_KEY,
            vec![build::structure(
                tag::KEY_BLOCK,
                vec![
                    build::enumeration(
                        tag::KEY_FORMAT_TYPE,
                        key_format_type::TRANSPARENT_RSA_PRIVATE_KEY,
                    ),
                    build::structure(tag::KEY_VALUE, vec![material]),
                    build::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, 4),
                    build::int(tag::CRYPTOGRAPHIC_LENGTH, 1024),
                ],
            )],
        );
        let mut attrs = Attributes::new();
        server_defaults(&mut attrs, ot::PRIVATE_KEY, &key, false);
        let digests: Vec<&Value> = attrs.all(&AttrName::Std(tag::DIGEST)).collect();
        assert_eq!(digests.len(), 2);
        let Value::Structure(items) = digests[1] else {
            panic!("not a structure");
        };
        assert_eq!(
            items[1],
            build::bytes(
                tag::DIGEST_VALUE,
                Sha256::digest(rsa.private_key_to_der().unwrap()).to_vec()
            )
        );
        assert_eq!(
            items[2],
            build::enumeration(tag::KEY_FORMAT_TYPE, key_format_type::PKCS_1)
        );
        // A key in a DER form has its one digest.
        let mut attrs = Attributes::new();
        let pkcs1 = build::structure(
            tag::PRIVATE_KEY,
            vec![build::structure(
                tag::KEY_BLOCK,
                vec![
                    build::enumeration(tag::KEY_FORMAT_TYPE, key_format_type::PKCS_1),
                    build::structure(
                        tag::KEY_VALUE,
                        vec![build::bytes(
                            tag::KEY_MATERIAL,
                            rsa.private_key_to_der().unwrap(),
                        )],
                    ),
                ],
            )],
        );
        server_defaults(&mut attrs, ot::PRIVATE_KEY, &pkcs1, false);
        assert_eq!(attrs.all(&AttrName::Std(tag::DIGEST)).count(), 1);
    }

    #[test]
    fn a_certificate_digest_is_of_its_value_and_names_x509() {
        let der = vec![0x30u8, 0x03, 0x02, 0x01, 0x01];
        let cert = build::structure(
            tag::CERTIFICATE,
            vec![
                build::enumeration(tag::CERTIFICATE_TYPE, 1),
                build::bytes(tag::CERTIFICATE_VALUE, der.clone()),
            ],
        );
        let Some(Value::Structure(items)) = digest(ot::CERTIFICATE, &cert) else {
            panic!("no digest");
        };
        assert_eq!(
            items[1],
            build::bytes(tag::DIGEST_VALUE, Sha256::digest(&der).to_vec())
        );
        assert_eq!(
            items[2],
            build::enumeration(tag::KEY_FORMAT_TYPE, key_format_type::X_509)
        );
        // Opaque data has no key format.
        let opaque = build::structure(
            tag::OPAQUE_OBJECT,
            vec![
                build::enumeration(tag::OPAQUE_DATA_TYPE, 0x8000_0001),
                build::bytes(tag::OPAQUE_DATA_VALUE, der),
            ],
        );
        let Some(Value::Structure(items)) = digest(ot::OPAQUE_OBJECT, &opaque) else {
            panic!("no digest");
        };
        assert_eq!(items.len(), 2);
    }
}
