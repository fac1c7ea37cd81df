//! Create Key Pair (KMIP 1.4 §4.2, 2.1 §6.1.13): the server generates an RSA (1024..4096
//! bits) or EC (P-256, P-384, P-521; algorithm EC, ECDSA, ECDH or ECMQV) key pair. The
//! attributes are the Common ones plus the Private Key or Public Key ones (those win); the
//! private key is stored as PKCS#1 (RSA) or PKCS#8 (EC), the public key as PKCS#1 (RSA) or
//! X.509 SubjectPublicKeyInfo (EC). Each key links to the other. The Private Key Unique
//! Identifier becomes the ID Placeholder.
//!
//! Result reasons: Invalid Field (1.x) / Missing Data (2.x) without an algorithm; Invalid Field
//! for an algorithm or length that makes no key pair; 2.x Non-Unique Name Attribute.

use kmipd_proto::attributes::{Attribute, Attributes};
use kmipd_proto::build;
use kmipd_proto::enums::{link_type, object_type as ot, unique_identifier as uid_kind};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::{Tag, Ttlv, Value};

use crate::attrs;
use crate::context::Ctx;
use crate::error::Result;
use crate::object::new_object;
use crate::objects::{self, keys, template};

/// The three attribute sets of a key-pair request.
pub(crate) struct PairAttributes {
    pub(crate) private: Attributes,
    pub(crate) public: Attributes,
}

/// Reads Common/Private/Public attributes (1.x Template-Attributes, 2.x Attributes) and merges
/// them: the specific set first, then the common attributes it does not override.
pub(crate) fn pair_attributes(ctx: &Ctx<'_>, r: &StructReader<'_>) -> Result<PairAttributes> {
    let common = objects::request_attributes(
        ctx,
        r,
        tag::COMMON_TEMPLATE_ATTRIBUTE,
        tag::COMMON_ATTRIBUTES,
    )?;
    let mut private = objects::request_attributes(
        ctx,
        r,
        tag::PRIVATE_KEY_TEMPLATE_ATTRIBUTE,
        tag::PRIVATE_KEY_ATTRIBUTES,
    )?;
    let mut public = objects::request_attributes(
        ctx,
        r,
        tag::PUBLIC_KEY_TEMPLATE_ATTRIBUTE,
        tag::PUBLIC_KEY_ATTRIBUTES,
    )?;
    objects::merge_missing(&mut private, common.clone());
    objects::merge_missing(&mut public, common);
    Ok(PairAttributes { private, public })
}

/// A Link attribute value.
pub(crate) fn link(kind: u32, uid: &str) -> Value {
    Value::Structure(vec![
        build::enumeration(tag::LINK_TYPE, kind),
        build::text(tag::LINKED_OBJECT_IDENTIFIER, uid),
    ])
}

/// Generates a pair per the attributes and stores both objects, linked; returns (private
/// uid, public uid). `extra` adds attributes to both before they are stored (Re-Key Key
/// Pair's links).
pub(crate) fn make_pair(
    ctx: &mut Ctx<'_>,
    mut attrs: PairAttributes,
    extra_private: Vec<Attribute>,
    extra_public: Vec<Attribute>,
) -> Result<(String, String)> {
    let (algorithm, _) = keys::algorithm_and_length(&attrs.private)?;
    let pair = keys::new_pair(algorithm, &attrs.private)?;
    for set in [&mut attrs.private, &mut attrs.public] {
        if !keys::has(set, tag::CRYPTOGRAPHIC_ALGORITHM) {
            set.set(tag::CRYPTOGRAPHIC_ALGORITHM, Value::Enumeration(algorithm));
        }
        set.set(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(pair.bits));
        if let Some(c) = pair.curve
            && !keys::has(set, tag::CRYPTOGRAPHIC_DOMAIN_PARAMETERS)
            && !keys::has(set, tag::RECOMMENDED_CURVE)
        {
            set.set(
                tag::CRYPTOGRAPHIC_DOMAIN_PARAMETERS,
                Value::Structure(vec![build::enumeration(tag::RECOMMENDED_CURVE, c)]),
            );
        }
    }
    attrs::check_names_free(
        ctx,
        attrs
            .private
            .name_values()
            .chain(attrs.public.name_values()),
    )?;
    check_distinct_names(&attrs)?;

    template::server_defaults(&mut attrs.private, ot::PRIVATE_KEY, &pair.private, true);
    template::server_defaults(&mut attrs.public, ot::PUBLIC_KEY, &pair.public, true);
    let mut private = new_object(ctx, ot::PRIVATE_KEY, Some(pair.private), attrs.private)?;
    let mut public = new_object(ctx, ot::PUBLIC_KEY, Some(pair.public), attrs.public)?;
    private.attributes.add(Attribute::std(
        tag::LINK,
        link(link_type::PUBLIC_KEY_LINK, &public.uid),
    ));
    public.attributes.add(Attribute::std(
        tag::LINK,
        link(link_type::PRIVATE_KEY_LINK, &private.uid),
    ));
    for a in extra_private {
        private.attributes.add(a);
    }
    for a in extra_public {
        public.attributes.add(a);
    }
    template::finish(ctx, &mut private)?;
    template::finish(ctx, &mut public)?;
    let ids = (private.uid.clone(), public.uid.clone());
    ctx.tx.put(private);
    ctx.tx.put(public);
    Ok(ids)
}

/// 2.x: the two keys of one pair cannot share a Name either.
fn check_distinct_names(attrs: &PairAttributes) -> Result<()> {
    let private: Vec<&str> = attrs.private.name_values().collect();
    if attrs.public.name_values().any(|n| private.contains(&n)) {
        return Err(crate::error::Error::NonUniqueName);
    }
    Ok(())
}

/// The response payload of a pair operation.
pub(crate) fn pair_response(private: &str, public: &str) -> Ttlv {
    let t = |t: Tag, v: &str| build::text(t, v);
    build::structure(
        tag::RESPONSE_PAYLOAD,
        vec![
            t(tag::PRIVATE_KEY_UNIQUE_IDENTIFIER, private),
            t(tag::PUBLIC_KEY_UNIQUE_IDENTIFIER, public),
        ],
    )
}

/// Handles Create Key Pair.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let attrs = pair_attributes(ctx, &r)?;
    let (private, public) = make_pair(ctx, attrs, Vec::new(), Vec::new())?;
    ctx.set_placeholder(&private);
    ctx.produced(uid_kind::CREATE_KEY_PAIR, &private);
    ctx.produced(uid_kind::CREATE_KEY_PAIR_PRIVATE_KEY, &private);
    ctx.produced(uid_kind::CREATE_KEY_PAIR_PUBLIC_KEY, &public);
    Ok(Some(pair_response(&private, &public)))
}
