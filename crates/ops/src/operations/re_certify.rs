//! Re-certify (KMIP 1.4 §4.8, 2.1 §6.1.39): a new certificate, issued by the server's issuing
//! CA (`issuing.rs`), replaces an existing certificate of the same public key.
//!
//! The request names the existing Certificate (Unique Identifier, else the ID Placeholder).
//! The key certified is the one its Public Key Link names (a registered certificate without
//! one: the key inside the certificate); a Certificate Request, when given, is checked as for
//! Certify (`certify.rs`) and gives the subject, else the existing certificate's subject is
//! kept. The Key Usage follows the request's Cryptographic Usage Mask, else the existing
//! certificate's.
//!
//! Attributes (Table 187 / 2.1 Table 299): the new certificate's are the existing one's (as
//! Re-Key copies them, `objects/rekey.rs`: not its dates of the past, identity, state, digest,
//! links), with the Activation and Deactivation Dates moved by the Offset when one is given,
//! those derived from the new certificate itself (issuer, serial, length, ...: recomputed), the
//! request's, and the existing certificate's Names followed by the request's (the existing
//! certificate loses its Names). Links: the new certificate gets a Replaced Object Link to the
//! existing one and the Public Key Link; the existing one a Replacement Object Link; the public
//! key's Certificate Link now names the new certificate. The new certificate belongs to the
//! existing one's owner and its Unique Identifier becomes the ID Placeholder. Access and audit
//! as for Certify.

use kmipd_proto::attributes::{AttrName, Attributes};
use kmipd_proto::enums::{
    certificate_type, link_type, object_type as ot, unique_identifier as uid_kind,
};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::{Ttlv, Value};
use openssl::x509::X509;

use crate::context::Ctx;
use crate::crypto::ossl;
use crate::error::{Error, Result};
use crate::object::{attr_int, resolve_uid, touch, uid_payload};
use crate::objects::{cert, rekey};
use crate::operations::certify::{issuing_ca, link, new_certificate, public_key, requested};

/// Handles Re-certify.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let ca = issuing_ca(ctx)?;
    let old_uid = resolve_uid(ctx, &r)?;
    let old = rekey::existing(ctx, &old_uid, ot::CERTIFICATE)?;
    let old_der = certificate_der(&old)?;
    let old_cert = X509::from_der(&old_der).map_err(|_| Error::InvalidField("Certificate"))?;
    let key_uid = rekey::linked(&old, link_type::PUBLIC_KEY_LINK);
    let public = match &key_uid {
        Some(k) => public_key(ctx, &rekey::existing(ctx, k, ot::PUBLIC_KEY)?)?,
        None => old_cert.public_key().map_err(ossl)?,
    };
    let (requested, subject) = requested(ctx, &r, &public, || {
        old_cert.subject_name().to_owned().map_err(ossl)
    })?;
    let usage = attr_int(&requested, tag::CRYPTOGRAPHIC_USAGE_MASK)
        .or_else(|| attr_int(&old.attributes, tag::CRYPTOGRAPHIC_USAGE_MASK));
    let der = ca.issue(&public, &subject, ctx.now, usage)?;
    let offset = r.interval(tag::OFFSET)?;
    let mut attrs = rekey::replacement_attributes(ctx, &old, offset, requested);
    // The existing certificate's own fields are not the new one's.
    let derived = cert::attributes(ctx, certificate_type::X_509, &old_der)?;
    for name in derived.iter().map(|a| a.name.clone()) {
        attrs.remove_all(&name);
    }
    // The Names move: off the existing certificate before the new one takes them.
    rekey::strip_names(ctx, &old_uid)?;
    let mut new = new_certificate(ctx, der, attrs, &old.owner)?;
    new.attributes.add(rekey::replaced_link(&old_uid));
    if let Some(k) = &key_uid {
        new.attributes.add(link(link_type::PUBLIC_KEY_LINK, k));
    }
    let new_uid = new.uid.clone();
    ctx.tx.put(new);
    rekey::retire(ctx, &old_uid, &new_uid)?;
    if let Some(k) = &key_uid {
        let mut key = ctx.load(k)?;
        point_certificate_link(&mut key.attributes, &old_uid, &new_uid);
        touch(ctx, &mut key);
        ctx.tx.put(key);
    }
    ctx.set_placeholder(&new_uid);
    ctx.produced(uid_kind::RE_CERTIFY, &new_uid);
    Ok(Some(uid_payload(&new_uid)))
}

/// The X.509 bytes of a stored certificate.
fn certificate_der(obj: &ManagedObject) -> Result<Vec<u8>> {
    let body = obj.object.as_ref().ok_or(Error::Destroyed)?;
    let r = StructReader::any(body)?;
    if r.req_enum(tag::CERTIFICATE_TYPE)? != certificate_type::X_509 {
        return Err(Error::FeatureNotSupported("certificates other than X.509"));
    }
    Ok(r.req_bytes(tag::CERTIFICATE_VALUE)?.to_vec())
}

/// The public key's Certificate Link to `old` now names `new` (in place, keeping its index);
/// a key without one gets one.
fn point_certificate_link(attrs: &mut Attributes, old: &str, new: &str) {
    let name = AttrName::Std(tag::LINK);
    let is_old = |v: &Value| match v {
        Value::Structure(items) => {
            items.iter().any(|i| {
                i.tag == tag::LINK_TYPE
                    && i.value == Value::Enumeration(link_type::CERTIFICATE_LINK)
            }) && items.iter().any(|i| {
                i.tag == tag::LINKED_OBJECT_IDENTIFIER && i.value == Value::TextString(old.into())
            })
        }
        _ => false,
    };
    let index = attrs.all(&name).position(is_old);
    match index.and_then(|i| attrs.instance_mut(&name, i)) {
        Some(v) => *v = link(link_type::CERTIFICATE_LINK, new).value,
        None => {
            attrs.add(link(link_type::CERTIFICATE_LINK, new));
        }
    }
}
