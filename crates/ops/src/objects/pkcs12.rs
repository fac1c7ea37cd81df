//! A private key as PKCS#12 (Key Format Type PKCS#12, KMIP 1.4 §2.1.7 / 2.1 §11.26), for Get
//! and Export: a PFX holding the key, the certificate its PKCS#12 Certificate Link names and
//! the chain each certificate's own PKCS#12 Certificate Link continues (at most
//! [`MAX_CHAIN`] certificates), the key's PKCS#12 Friendly Name, all protected with the
//! password held by the Secret Data its PKCS#12 Password Link names. Built with OpenSSL's
//! PKCS#12 encoder (`PKCS12_create`: AES-256-CBC, PBKDF2, HMAC-SHA-256 MAC in OpenSSL 3).
//!
//! Rules: every linked object is read with the caller's rights for the operation (so only a
//! caller who may Get the certificates and the password gets the PFX); the password object
//! must be Active (a password in another state may not be used, as a key that is not Active
//! may not encrypt: Wrong Key Lifecycle State in 2.x, Permission Denied in 1.x, as the 2.0 and
//! 1.4 TC-PKCS12-2 cases show); a key without a password link is Missing Data.
//!
//! **Register** of a private key in PKCS#12 format ([`register`]) reads the PFX with the
//! password of the request's PKCS#12 Password Link (the same rules), stores the private key
//! as PKCS#8 and each certificate of the PFX as a Certificate object of its own (the leaf
//! linked from the key, each certificate to the next by PKCS#12 Certificate Links, the
//! Friendly Name on each), all owned by the caller. The
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
    password_of(ctx, &uid)
}

/// The password held by Secret Data `uid` (which must be Active), read with the caller's
/// rights.
fn password_of(ctx: &Ctx<'_>, uid: &str) -> Result<zeroize::Zeroizing<String>> {
    let secret = ctx.load(uid)?;
    if secret.object_type != ot::SECRET_DATA {
        return Err(Error::InvalidField("PKCS#12 Password Link"));
    }
    if crate::object::current_state(&secret) != Some(state::ACTIVE) {
        return Err(Error::NotActive("the PKCS#12 password"));
    }
    let body = secret.object.as_ref().ok_or(Error::Destroyed)?;
    let bytes = crate::keyblock::key_block(body)?.bytes()?;
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::InvalidField("PKCS#12 password"))?;
    Ok(zeroize::Zeroizing::new(text.to_owned()))
}

/// True when `item` (a Private Key structure) carries a PKCS#12 Key Block.
pub(crate) fn is_pfx(item: &Ttlv) -> bool {
    StructReader::any(item)
        .ok()
        .and_then(|r| r.structure(tag::KEY_BLOCK).ok().flatten())
        .and_then(|kb| kb.enumeration(tag::KEY_FORMAT_TYPE).ok().flatten())
        == Some(kft::PKCS_12)
}

/// Register of a PKCS#12 private key (see the module doc): the key's Unique Identifier.
pub(crate) fn register(
    ctx: &mut Ctx<'_>,
    mut attrs: kmipd_proto::attributes::Attributes,
    item: &Ttlv,
) -> Result<String> {
    use kmipd_proto::attributes::{AttrName, Attribute};
    let ossl = |_| Error::InvalidField("PKCS#12 Key Value");
    let pw_uid = attrs
        .all(&AttrName::Std(tag::LINK))
        .find_map(|v| link_target(v, link_type::PKCS_12_PASSWORD_LINK))
        .ok_or(Error::MissingData("PKCS#12 Password Link"))?;
    let password = password_of(ctx, &pw_uid)?;
    let kb = StructReader::new(
        StructReader::any(item)?.required(tag::KEY_BLOCK)?,
        tag::KEY_BLOCK,
    )?;
    let value = kb.required(tag::KEY_VALUE)?;
    let der = match &value.value {
        Value::ByteString(b) => b.to_vec(),
        _ => StructReader::new(value, tag::KEY_VALUE)?
            .req_bytes(tag::KEY_MATERIAL)?
            .to_vec(),
    };
    let parsed = openssl::pkcs12::Pkcs12::from_der(&der)
        .map_err(ossl)?
        .parse2(&password)
        .map_err(|_| Error::InvalidField("PKCS#12 Key Value or its password"))?;
    let key = parsed
        .pkey
        .ok_or(Error::MissingData("a private key in the PKCS#12"))?;
    let algorithm = match key.id() {
        openssl::pkey::Id::RSA => kmipd_proto::enums::cryptographic_algorithm::RSA,
        openssl::pkey::Id::EC => kmipd_proto::enums::cryptographic_algorithm::EC,
        _ => return Err(Error::FeatureNotSupported("this PKCS#12 key type")),
    };
    let bits = i32::try_from(key.bits()).map_err(|_| Error::InvalidField("key length"))?;
    let pkcs8 = zeroize::Zeroizing::new(key.private_key_to_pkcs8().map_err(ossl)?);
    let private = build::structure(
        tag::PRIVATE_KEY,
        vec![build::structure(
            tag::KEY_BLOCK,
            vec![
                build::enumeration(tag::KEY_FORMAT_TYPE, kft::PKCS_8),
                build::structure(
                    tag::KEY_VALUE,
                    vec![build::bytes(tag::KEY_MATERIAL, pkcs8.to_vec())],
                ),
                build::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, algorithm),
                build::int(tag::CRYPTOGRAPHIC_LENGTH, bits),
            ],
        )],
    );
    let friendly = attrs.get(tag::PKCS_12_FRIENDLY_NAME).cloned();
    let mut chain: Vec<openssl::x509::X509> = parsed.cert.into_iter().collect();
    if let Some(cas) = parsed.ca {
        chain.extend(cas.into_iter().take(MAX_CHAIN));
    }
    // The certificates, last of the chain first, each linked to the next.
    let mut next: Option<String> = None;
    for cert in chain.iter().rev() {
        let body = build::structure(
            tag::CERTIFICATE,
            vec![
                build::enumeration(
                    tag::CERTIFICATE_TYPE,
                    kmipd_proto::enums::certificate_type::X_509,
                ),
                build::bytes(tag::CERTIFICATE_VALUE, cert.to_der().map_err(ossl)?),
            ],
        );
        let parsed_cert = crate::objects::parse_object(ctx, ot::CERTIFICATE, &body)?;
        let mut cert_attrs = parsed_cert.attributes;
        if let Some(f) = &friendly {
            cert_attrs.set(tag::PKCS_12_FRIENDLY_NAME, f.clone());
        }
        if let Some(n) = &next {
            cert_attrs.0.push(Attribute::std(
                tag::LINK,
                link_value(link_type::PKCS_12_CERTIFICATE_LINK, n),
            ));
        }
        crate::objects::template::server_defaults(
            &mut cert_attrs,
            ot::CERTIFICATE,
            &parsed_cert.object,
            false,
        );
        let mut obj =
            crate::object::new_object(ctx, ot::CERTIFICATE, Some(parsed_cert.object), cert_attrs)?;
        crate::objects::template::finish(ctx, &mut obj)?;
        next = Some(obj.uid.clone());
        ctx.tx.put(obj);
    }
    let parsed_key = crate::objects::parse_object(ctx, ot::PRIVATE_KEY, &private)?;
    crate::objects::merge_missing(&mut attrs, parsed_key.attributes);
    if let Some(leaf) = &next {
        attrs.0.push(Attribute::std(
            tag::LINK,
            link_value(link_type::PKCS_12_CERTIFICATE_LINK, leaf),
        ));
    }
    crate::attrs::check_names_free(ctx, attrs.name_values())?;
    crate::objects::template::server_defaults(
        &mut attrs,
        ot::PRIVATE_KEY,
        &parsed_key.object,
        false,
    );
    let mut obj = crate::object::new_object(ctx, ot::PRIVATE_KEY, Some(parsed_key.object), attrs)?;
    crate::objects::template::finish(ctx, &mut obj)?;
    let uid = obj.uid.clone();
    ctx.tx.put(obj);
    Ok(uid)
}

fn link_value(kind: u32, uid: &str) -> Value {
    Value::Structure(vec![
        build::enumeration(tag::LINK_TYPE, kind),
        build::text(tag::LINKED_OBJECT_IDENTIFIER, uid),
    ])
}

fn link_target(v: &Value, kind: u32) -> Option<String> {
    let Value::Structure(items) = v else {
        return None;
    };
    if !items
        .iter()
        .any(|i| i.tag == tag::LINK_TYPE && i.value == Value::Enumeration(kind))
    {
        return None;
    }
    items.iter().find_map(|i| match &i.value {
        Value::TextString(s) if i.tag == tag::LINKED_OBJECT_IDENTIFIER => Some(s.clone()),
        _ => None,
    })
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

    /// An RSA-2048 key and a certificate of it, self-signed, for `cn` (X.509 v3 when `v3`, else
    /// OpenSSL's default version).
    fn self_signed(
        cn: &str,
        v3: bool,
    ) -> (
        openssl::pkey::PKey<openssl::pkey::Private>,
        openssl::x509::X509,
    ) {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let key = openssl::pkey::PKey::from_rsa(rsa).unwrap();
        let mut name = openssl::x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let name = name.build();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        if v3 {
            b.set_version(2).unwrap();
        }
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        (key, b.build())
    }

    /// A Private Key object: its Key Block of this format and material, then `extra` fields.
    fn private_key(format: u32, material: Vec<u8>, extra: Vec<Ttlv>) -> Ttlv {
        let mut kb = vec![
            build::enumeration(tag::KEY_FORMAT_TYPE, format),
            build::structure(
                tag::KEY_VALUE,
                vec![build::bytes(tag::KEY_MATERIAL, material)],
            ),
        ];
        kb.extend(extra);
        build::structure(tag::PRIVATE_KEY, vec![build::structure(tag::KEY_BLOCK, kb)])
    }

    /// The Key Format Type and Key Material of the Private Key a successful Get answered.
    fn got_private_key(status: u32, payload: Option<Ttlv>) -> (u32, Vec<u8>) {
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
        let der = kb
            .structure(tag::KEY_VALUE)
            .unwrap()
            .unwrap()
            .req_bytes(tag::KEY_MATERIAL)
            .unwrap()
            .to_vec();
        (kb.req_enum(tag::KEY_FORMAT_TYPE).unwrap(), der)
    }

    fn password(engine: &Engine, active: bool) -> String {
        password_with(engine, b"s3cret", active)
    }

    /// A Password Secret Data holding `pw`, activated when `active`.
    fn password_with(engine: &Engine, pw: &[u8], active: bool) -> String {
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
                            vec![build::bytes(tag::KEY_MATERIAL, pw.to_vec())],
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
    fn a_pfx_registers_as_a_pkcs8_key_and_its_certificate_under_an_active_password() {
        let engine = Engine::in_memory();
        let (key, cert) = self_signed("pfx in", false);
        let mut pb = openssl::pkcs12::Pkcs12::builder();
        pb.pkey(&key);
        pb.cert(&cert);
        let pfx = pb.build2("s3cret").unwrap().to_der().unwrap();
        let register_pfx = |pw: &str| {
            call(
                &engine,
                (2, 0),
                op::REGISTER,
                vec![
                    build::enumeration(tag::OBJECT_TYPE, ot::PRIVATE_KEY),
                    build::structure(
                        tag::ATTRIBUTES,
                        vec![link(link_type::PKCS_12_PASSWORD_LINK, pw).to_v2()],
                    ),
                    private_key(kft::PKCS_12, pfx.clone(), vec![]),
                ],
            )
        };
        let pending = password(&engine, false);
        let (status, reason, _) = register_pfx(&pending);
        assert_eq!(
            (status, reason),
            (
                result_status::OPERATION_FAILED,
                Some(result_reason::WRONG_KEY_LIFECYCLE_STATE)
            )
        );
        let active = password(&engine, true);
        let (status, _, payload) = register_pfx(&active);
        assert_eq!(status, result_status::SUCCESS);
        let key_uid = uid_of(payload);
        let (status, _, payload) = call(
            &engine,
            (2, 0),
            op::GET,
            vec![build::unique_identifier(key_uid.clone())],
        );
        let (format, der) = got_private_key(status, payload);
        assert_eq!(format, kft::PKCS_8);
        assert!(
            openssl::pkey::PKey::private_key_from_pkcs8(&der)
                .unwrap()
                .public_eq(&key)
        );
        // The certificate is an object of its own, linked from the key.
        let (_, _, payload) = call(
            &engine,
            (2, 0),
            op::GET_ATTRIBUTES,
            vec![build::unique_identifier(key_uid)],
        );
        let payload = payload.unwrap();
        let attrs = StructReader::any(&payload)
            .unwrap()
            .structure(tag::ATTRIBUTES)
            .unwrap()
            .unwrap();
        let cert_uid = attrs
            .repeated(tag::LINK)
            .filter_map(|l| {
                let r = StructReader::any(l).ok()?;
                (r.enumeration(tag::LINK_TYPE).ok()?? == link_type::PKCS_12_CERTIFICATE_LINK).then(
                    || {
                        r.req_text(tag::LINKED_OBJECT_IDENTIFIER)
                            .ok()
                            .map(str::to_owned)
                    },
                )?
            })
            .next()
            .unwrap();
        let (_, _, payload) = call(
            &engine,
            (2, 0),
            op::GET,
            vec![build::unique_identifier(cert_uid)],
        );
        let payload = payload.unwrap();
        let got = StructReader::any(&payload)
            .unwrap()
            .structure(tag::CERTIFICATE)
            .unwrap()
            .unwrap()
            .req_bytes(tag::CERTIFICATE_VALUE)
            .unwrap()
            .to_vec();
        assert_eq!(got, cert.to_der().unwrap());
        // A wrong password (another Active secret) is refused.
        let (status, _, _) = register_pfx(&password_with(&engine, b"other", true));
        assert_eq!(status, result_status::OPERATION_FAILED);
    }

    #[test]
    fn a_private_key_comes_as_a_pfx_with_its_certificate_under_its_active_password() {
        let engine = Engine::in_memory();
        let (key, cert) = self_signed("pfx test", true);
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
                private_key(
                    kft::PKCS_8,
                    key.private_key_to_pkcs8().unwrap(),
                    vec![
                        build::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, 4),
                        build::int(tag::CRYPTOGRAPHIC_LENGTH, 2048),
                    ],
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
        let (format, der) = got_private_key(status, payload);
        assert_eq!(format, kft::PKCS_12);
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
                Some(result_reason::WRONG_KEY_LIFECYCLE_STATE)
            )
        );
    }
}
