//! A private key as PKCS#12 (Key Format Type PKCS#12, KMIP 1.4 §2.1.7 / 2.1 §11.26), for Get
//! and Export: a PFX holding the key, the certificate its PKCS#12 Certificate Link names and
//! the chain each certificate's own PKCS#12 Certificate Link continues (at most
//! [`MAX_CHAIN`] certificates), the key's PKCS#12 Friendly Name, all protected with the
//! password held by the Secret Data its PKCS#12 Password Link names. Built with OpenSSL's
//! PKCS#12 encoder (`PKCS12_create`: AES-256-CBC, PBKDF2, HMAC-SHA-256 MAC in OpenSSL 3).
//!
//! Rules: every linked object is read with the caller's rights for the operation (so only a
//! caller who may Get the certificates and the password gets the PFX); the password object
//! must be Active (a password in another state may not be used: Permission Denied, as a key
//! that is not Active may not encrypt); a key without a password link is Missing Data. The
//! Key Block answered has the Key Format Type and the PFX as Key Value (a Byte String), nothing
//! else: the PFX holds several objects, of different algorithms.

use kmipd_proto::build;
use kmipd_proto::enums::{key_format_type as kft, link_type, object_type as ot, state};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::{Ttlv, Value};

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::objects::rekey::linked;

/// The most certificates a PFX gets from the link chain.
const MAX_CHAIN: usize = 10;

/// The object structure of private key `obj` (its Key Material `der` as PKCS#1, PKCS#8 or
/// SEC1 DER) with a PKCS#12 Key Block.
pub(crate) fn object(ctx: &Ctx<'_>, obj: &ManagedObject, body: &Ttlv, der: &[u8]) -> Result<Ttlv> {
    if obj.object_type != ot::PRIVATE_KEY {
        return Err(Error::KeyFormatTypeNotSupported);
    }
    let ossl = |_| Error::CryptographicFailure("PKCS#12 encoding");
    let password = password(ctx, obj)?;
    let pkcs8 = crate::crypto::keygen::private_to_pkcs8(der)?;
    let key = openssl::pkey::PKey::private_key_from_pkcs8(&pkcs8)
        .map_err(|_| Error::InvalidField("private key"))?;
    let mut certs = Vec::new();
    let mut next = linked(obj, link_type::PKCS_12_CERTIFICATE_LINK);
    while let Some(uid) = next {
        if certs.len() >= MAX_CHAIN {
            break;
        }
        let cert = ctx.load(&uid)?;
        let value = cert
            .object
            .as_ref()
            .filter(|_| cert.object_type == ot::CERTIFICATE)
            .ok_or(Error::InvalidField("PKCS#12 Certificate Link"))?;
        let der = StructReader::any(value)?.req_bytes(tag::CERTIFICATE_VALUE)?;
        certs.push(
            openssl::x509::X509::from_der(der).map_err(|_| Error::InvalidField("certificate"))?,
        );
        next = linked(&cert, link_type::PKCS_12_CERTIFICATE_LINK).filter(|n| *n != uid);
    }
    let mut builder = openssl::pkcs12::Pkcs12::builder();
    builder.pkey(&key);
    if let Some(Value::TextString(name)) = obj.attributes.get(tag::PKCS_12_FRIENDLY_NAME) {
        builder.name(name);
    }
    let mut chain = certs.into_iter();
    if let Some(leaf) = chain.next() {
        builder.cert(&leaf);
        let mut cas = openssl::stack::Stack::new().map_err(ossl)?;
        for c in chain {
            cas.push(c).map_err(ossl)?;
        }
        builder.ca(cas);
    }
    let pfx = builder.build2(&password).map_err(ossl)?;
    Ok(with_block(ctx, body, pfx.to_der().map_err(ossl)?))
}

/// The password of the key's PKCS#12 Password Link (an Active Secret Data).
fn password(ctx: &Ctx<'_>, obj: &ManagedObject) -> Result<zeroize::Zeroizing<String>> {
    let uid = linked(obj, link_type::PKCS_12_PASSWORD_LINK)
        .ok_or(Error::MissingData("PKCS#12 Password Link"))?;
    let secret = ctx.load(&uid)?;
    if secret.object_type != ot::SECRET_DATA {
        return Err(Error::InvalidField("PKCS#12 Password Link"));
    }
    if crate::object::current_state(&secret) != Some(state::ACTIVE) {
        return Err(Error::PermissionDenied(
            "the PKCS#12 password is not Active",
        ));
    }
    let body = secret.object.as_ref().ok_or(Error::Destroyed)?;
    let bytes = crate::keyblock::key_block(body)?.bytes()?;
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::InvalidField("PKCS#12 password"))?;
    Ok(zeroize::Zeroizing::new(text.to_owned()))
}

/// The Key Block of a PFX: in 1.x the Key Value is the PFX itself, a Byte String (the form 1.x
/// gives a Key Value protected on its own, as the 1.4 PKCS#12 cases show in both directions);
/// in 2.x a Key Value with the PFX as its Key Material (the 2.0 cases).
fn with_block(ctx: &Ctx<'_>, body: &Ttlv, pfx: Vec<u8>) -> Ttlv {
    let value = if ctx.v2() {
        build::structure(tag::KEY_VALUE, vec![build::bytes(tag::KEY_MATERIAL, pfx)])
    } else {
        Ttlv::new(tag::KEY_VALUE, Value::bytes(pfx))
    };
    let kb = build::structure(
        tag::KEY_BLOCK,
        vec![
            build::enumeration(tag::KEY_FORMAT_TYPE, kft::PKCS_12),
            value,
        ],
    );
    build::structure(body.tag, vec![kb])
}

#[cfg(test)]
mod tests {
    use kmipd_proto::attributes::Attribute;
    use kmipd_proto::build;
    use kmipd_proto::enums::{
        key_format_type as kft, link_type, object_type as ot, operation as op, result_reason,
        result_status,
    };
    use kmipd_proto::reader::StructReader;
    use kmipd_proto::tag;
    use kmipd_ttlv::{Ttlv, Value};

    use crate::Engine;
    use crate::engine::testing::call;

    fn uid_of(payload: Option<Ttlv>) -> String {
        StructReader::any(&payload.unwrap())
            .unwrap()
            .req_text(tag::UNIQUE_IDENTIFIER)
            .unwrap()
            .to_owned()
    }

    fn register(engine: &Engine, object_type: u32, attrs: Vec<Attribute>, object: Ttlv) -> String {
        let (status, _, payload) = call(
            engine,
            (2, 0),
            op::REGISTER,
            vec![
                build::enumeration(tag::OBJECT_TYPE, object_type),
                build::structure(
                    tag::ATTRIBUTES,
                    attrs.iter().map(Attribute::to_v2).collect(),
                ),
                object,
            ],
        );
        assert_eq!(status, result_status::SUCCESS);
        uid_of(payload)
    }

    fn link(kind: u32, uid: &str) -> Attribute {
        Attribute::std(
            tag::LINK,
            Value::Structure(vec![
                build::enumeration(tag::LINK_TYPE, kind),
                build::text(tag::LINKED_OBJECT_IDENTIFIER, uid),
            ]),
        )
    }

    fn password(engine: &Engine, active: bool) -> String {
        let secret = build::structure(
            tag::SECRET_DATA,
            vec![
                build::enumeration(tag::SECRET_DATA_TYPE, 1),
                build::structure(
                    tag::KEY_BLOCK,
                    vec![
                        build::enumeration(tag::KEY_FORMAT_TYPE, kft::OPAQUE),
                        build::structure(
                            tag::KEY_VALUE,
                            vec![build::bytes(tag::KEY_MATERIAL, b"s3cret".to_vec())],
                        ),
                    ],
                ),
            ],
        );
        let uid = register(engine, ot::SECRET_DATA, vec![], secret);
        if active {
            let (status, _, _) = call(
                engine,
                (2, 0),
                op::ACTIVATE,
                vec![build::unique_identifier(uid.clone())],
            );
            assert_eq!(status, result_status::SUCCESS);
        }
        uid
    }

    #[test]
    fn a_private_key_comes_as_a_pfx_with_its_certificate_under_its_active_password() {
        let engine = Engine::in_memory();
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let key = openssl::pkey::PKey::from_rsa(rsa).unwrap();
        let mut name = openssl::x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "pfx test").unwrap();
        let name = name.build();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        let cert = b.build();
        let cert_uid = register(
            &engine,
            ot::CERTIFICATE,
            vec![],
            build::structure(
                tag::CERTIFICATE,
                vec![
                    build::enumeration(tag::CERTIFICATE_TYPE, 1),
                    build::bytes(tag::CERTIFICATE_VALUE, cert.to_der().unwrap()),
                ],
            ),
        );
        let private = |pw: &str| {
            register(
                &engine,
                ot::PRIVATE_KEY,
                vec![
                    link(link_type::PKCS_12_PASSWORD_LINK, pw),
                    link(link_type::PKCS_12_CERTIFICATE_LINK, &cert_uid),
                ],
                build::structure(
                    tag::PRIVATE_KEY,
                    vec![build::structure(
                        tag::KEY_BLOCK,
                        vec![
                            build::enumeration(tag::KEY_FORMAT_TYPE, kft::PKCS_8),
                            build::structure(
                                tag::KEY_VALUE,
                                vec![build::bytes(
                                    tag::KEY_MATERIAL,
                                    key.private_key_to_pkcs8().unwrap(),
                                )],
                            ),
                            build::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, 4),
                            build::int(tag::CRYPTOGRAPHIC_LENGTH, 2048),
                        ],
                    )],
                ),
            )
        };
        let get = |uid: String| {
            call(
                &engine,
                (2, 0),
                op::GET,
                vec![
                    build::unique_identifier(uid),
                    build::enumeration(tag::KEY_FORMAT_TYPE, kft::PKCS_12),
                ],
            )
        };
        let active = password(&engine, true);
        let (status, _, payload) = get(private(&active));
        assert_eq!(status, result_status::SUCCESS);
        let payload = payload.unwrap();
        let kb = StructReader::any(&payload)
            .unwrap()
            .structure(tag::PRIVATE_KEY)
            .unwrap()
            .unwrap()
            .structure(tag::KEY_BLOCK)
            .unwrap()
            .unwrap();
        assert_eq!(kb.req_enum(tag::KEY_FORMAT_TYPE).unwrap(), kft::PKCS_12);
        let der = kb
            .structure(tag::KEY_VALUE)
            .unwrap()
            .unwrap()
            .req_bytes(tag::KEY_MATERIAL)
            .unwrap()
            .to_vec();
        let parsed = openssl::pkcs12::Pkcs12::from_der(&der)
            .unwrap()
            .parse2("s3cret")
            .unwrap();
        assert!(parsed.pkey.unwrap().public_eq(&key));
        assert_eq!(
            parsed.cert.unwrap().to_der().unwrap(),
            cert.to_der().unwrap()
        );
        assert!(
            openssl::pkcs12::Pkcs12::from_der(&der)
                .unwrap()
                .parse2("wrong")
                .is_err()
        );
        // A password not yet Active may not protect anything.
        let pending = password(&engine, false);
        let (status, reason, _) = get(private(&pending));
        assert_eq!(
            (status, reason),
            (
                result_status::OPERATION_FAILED,
                Some(result_reason::PERMISSION_DENIED)
            )
        );
    }
}
