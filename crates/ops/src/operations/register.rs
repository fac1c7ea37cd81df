//! Register (KMIP 1.4 §4.3, 2.1 §6.1.43): the client gives an object (a key, a certificate,
//! secret data, an opaque object; in 1.x also a template) and its attributes; the server stores
//! it, Pre-Active unless an Activation Date in the past was given, and answers its Unique
//! Identifier, which becomes the ID Placeholder.
//!
//! Attributes come from the Template-Attribute (1.x) or Attributes (2.x) field, from the Key
//! Value (1.x Attribute list / 2.x Attributes), from the Key Block (Cryptographic Algorithm and
//! Length) and, for certificates, from the certificate itself; those of the request win.
//!
//! A private key in PKCS#12 format is unpacked (`objects::pkcs12`): the key is stored as
//! PKCS#8, each certificate of the PFX as a Certificate object linked to it; the password
//! object must be Active.
//!
//! Result reasons: Invalid Field / Missing Data for a malformed object; Feature Not Supported
//! for Certificate Request objects (and Template in 2.x); 2.x Non-Unique
//! Name Attribute when the Name is taken.

use kmipd_proto::enums::unique_identifier as uid_kind;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

use crate::attrs;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::object::{new_object, uid_payload};
use crate::objects::{self, template};

/// Handles Register.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let object_type = r.req_enum(tag::OBJECT_TYPE)?;
    let object_tag = objects::object_tag(object_type).ok_or(Error::InvalidField("Object Type"))?;
    let mut attrs = objects::request_attributes_keeping(
        ctx,
        &r,
        tag::TEMPLATE_ATTRIBUTE,
        tag::ATTRIBUTES,
        &[tag::RANDOM_NUMBER_GENERATOR, tag::ORIGINAL_CREATION_DATE],
    )?;
    let item = r
        .optional(object_tag)
        .ok_or(Error::MissingData("the object to register"))?;
    if object_type == kmipd_proto::enums::object_type::PRIVATE_KEY && objects::pkcs12::is_pfx(item)
    {
        let uid = objects::pkcs12::register(ctx, attrs, item)?;
        ctx.set_placeholder(&uid);
        ctx.produced(uid_kind::REGISTER, &uid);
        return Ok(Some(uid_payload(&uid)));
    }
    let parsed = objects::parse_object(ctx, object_type, item)?;
    objects::merge_missing(&mut attrs, parsed.attributes);
    attrs::check_names_free(ctx, attrs.name_values())?;
    template::server_defaults(&mut attrs, object_type, &parsed.object, false);
    // "The Original Creation Date MAY be set by the client during a Register operation"
    // (KMIP 1.4 §3.43): the date the object was made elsewhere; otherwise it is now (as for
    // objects the server makes, whose Original Creation Date `new_object` always sets). A
    // client's Random Number Generator (§3.44) is kept the same way, as an attribute.
    let original = attrs.get(tag::ORIGINAL_CREATION_DATE).cloned();
    let mut obj = new_object(ctx, object_type, Some(parsed.object), attrs)?;
    if let Some(date @ (Value::DateTime(_) | Value::DateTimeExtended(_))) = original {
        obj.attributes.set(tag::ORIGINAL_CREATION_DATE, date);
    }
    template::finish(ctx, &mut obj)?;
    let uid = obj.uid.clone();
    ctx.tx.put(obj);
    ctx.set_placeholder(&uid);
    ctx.produced(uid_kind::REGISTER, &uid);
    Ok(Some(uid_payload(&uid)))
}

#[cfg(test)]
mod tests {
    use kmipd_proto::attributes::{AttrName, Attribute};
    use kmipd_proto::build;
    use kmipd_proto::enums::{key_format_type, object_type, operation, result_status};
    use kmipd_proto::reader::StructReader;
    use kmipd_proto::tag;
    use kmipd_ttlv::{Ttlv, Value};

    use crate::Engine;
    use crate::engine::testing::call;

    fn symmetric_key(with_attr: bool) -> Ttlv {
        let mut kv = vec![build::bytes(tag::KEY_MATERIAL, vec![7u8; 16])];
        if with_attr {
            kv.push(Attribute::std(tag::CRYPTOGRAPHIC_USAGE_MASK, Value::Integer(4)).to_v1(None));
        }
        build::structure(
            tag::SYMMETRIC_KEY,
            vec![build::structure(
                tag::KEY_BLOCK,
                vec![
                    build::enumeration(tag::KEY_FORMAT_TYPE, key_format_type::RAW),
                    build::structure(tag::KEY_VALUE, kv),
                    build::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, 3),
                    build::int(tag::CRYPTOGRAPHIC_LENGTH, 128),
                ],
            )],
        )
    }

    #[test]
    fn register_then_get_attributes_has_key_value_attributes_and_pre_active_state() {
        let engine = Engine::in_memory();
        let (status, _, payload) = call(
            &engine,
            (1, 4),
            operation::REGISTER,
            vec![
                build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
                build::structure(tag::TEMPLATE_ATTRIBUTE, vec![]),
                symmetric_key(true),
            ],
        );
        assert_eq!(status, result_status::SUCCESS);
        let payload = payload.unwrap();
        let uid = StructReader::any(&payload)
            .unwrap()
            .req_text(tag::UNIQUE_IDENTIFIER)
            .unwrap()
            .to_owned();
        let (status, _, payload) = call(
            &engine,
            (1, 4),
            operation::GET,
            vec![build::unique_identifier(uid)],
        );
        assert_eq!(status, result_status::SUCCESS);
        // The Key Value carries Key Material only.
        let payload = payload.unwrap();
        let key = StructReader::any(&payload)
            .unwrap()
            .required(tag::SYMMETRIC_KEY)
            .unwrap()
            .clone();
        let kb = StructReader::any(&key)
            .unwrap()
            .required(tag::KEY_BLOCK)
            .unwrap()
            .clone();
        let kv = StructReader::any(&kb)
            .unwrap()
            .required(tag::KEY_VALUE)
            .unwrap()
            .clone();
        assert_eq!(StructReader::any(&kv).unwrap().items().len(), 1);
        let _ = AttrName::Std(tag::NAME);
    }

    #[test]
    fn unsupported_or_empty_objects_are_refused_and_missing_object_is_missing_data() {
        use kmipd_proto::enums::result_reason;
        let engine = Engine::in_memory();
        // The object type, its object (None: no object at all), and the Result Reason (None:
        // any failure).
        let cases = [
            (
                object_type::CERTIFICATE_REQUEST,
                Some(tag::CERTIFICATE_REQUEST),
                Some(result_reason::FEATURE_NOT_SUPPORTED),
            ),
            // A PGP Key without its fields.
            (
                object_type::PGP_KEY,
                Some(tag::PGP_KEY),
                Some(result_reason::MISSING_DATA),
            ),
            // A Split Key without its fields.
            (object_type::SPLIT_KEY, Some(tag::SPLIT_KEY), None),
            (
                object_type::SYMMETRIC_KEY,
                None,
                Some(result_reason::MISSING_DATA),
            ),
        ];
        for (kind, object, expected) in cases {
            let mut payload = vec![build::enumeration(tag::OBJECT_TYPE, kind)];
            payload.extend(object.map(|t| build::structure(t, vec![])));
            let (status, reason, _) = call(&engine, (2, 1), operation::REGISTER, payload);
            assert_eq!(status, result_status::OPERATION_FAILED, "{kind}");
            if expected.is_some() {
                assert_eq!(reason, expected, "{kind}");
            }
        }
    }

    #[test]
    fn a_pgp_key_is_registered_and_returned_as_given() {
        let engine = Engine::in_memory();
        let armored = b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBF...\n-----END PGP PUBLIC KEY BLOCK-----\n".to_vec();
        let pgp = build::structure(
            tag::PGP_KEY,
            vec![
                build::int(tag::PGP_KEY_VERSION, 4),
                build::structure(
                    tag::KEY_BLOCK,
                    vec![
                        build::enumeration(tag::KEY_FORMAT_TYPE, key_format_type::RAW),
                        build::structure(
                            tag::KEY_VALUE,
                            vec![build::bytes(tag::KEY_MATERIAL, armored)],
                        ),
                        build::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, 4),
                        build::int(tag::CRYPTOGRAPHIC_LENGTH, 2048),
                    ],
                ),
            ],
        );
        for version in [(1, 2), (2, 0)] {
            let (status, _, payload) = call(
                &engine,
                version,
                operation::REGISTER,
                vec![
                    build::enumeration(tag::OBJECT_TYPE, object_type::PGP_KEY),
                    if version.0 == 1 {
                        build::structure(tag::TEMPLATE_ATTRIBUTE, vec![])
                    } else {
                        build::structure(tag::ATTRIBUTES, vec![])
                    },
                    pgp.clone(),
                ],
            );
            assert_eq!(status, result_status::SUCCESS);
            let uid = StructReader::any(&payload.unwrap())
                .unwrap()
                .req_text(tag::UNIQUE_IDENTIFIER)
                .unwrap()
                .to_owned();
            let (status, _, payload) = call(
                &engine,
                version,
                operation::GET,
                vec![build::unique_identifier(uid)],
            );
            assert_eq!(status, result_status::SUCCESS);
            let payload = payload.unwrap();
            let r = StructReader::any(&payload).unwrap();
            assert_eq!(r.req_enum(tag::OBJECT_TYPE).unwrap(), object_type::PGP_KEY);
            assert_eq!(r.required(tag::PGP_KEY).unwrap(), &pgp);
        }
    }

    #[test]
    fn a_second_register_with_the_same_name_is_refused_in_2x() {
        let engine = Engine::in_memory();
        let register = || {
            call(
                &engine,
                (2, 1),
                operation::REGISTER,
                vec![
                    build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
                    build::structure(
                        tag::ATTRIBUTES,
                        vec![Ttlv::new(tag::NAME, build::name("n"))],
                    ),
                    symmetric_key(false),
                ],
            )
        };
        assert_eq!(register().0, result_status::SUCCESS);
        let (status, reason, _) = register();
        assert_eq!(status, result_status::OPERATION_FAILED);
        assert_eq!(
            reason,
            Some(kmipd_proto::enums::result_reason::NON_UNIQUE_NAME_ATTRIBUTE)
        );
    }
}
