//! Certify (KMIP 1.4 §4.7, 2.1 §6.1.8): the server issues an X.509 certificate for a public key
//! it holds, with its issuing CA (`issuing.rs`; none configured: Feature Not Supported).
//!
//! The request names the Public Key (Unique Identifier, else the ID Placeholder) and may carry a
//! Certificate Request (Certificate Request Type PKCS#10 or PEM; 1.x Certificate Request, 2.x
//! Certificate Request Value): its signature must verify and its key must be the public key's
//! (else Invalid Field); its subject becomes the certificate's ("the information in the
//! Certificate Request takes precedence"). Without one the subject is
//! `CN=<the public key's Unique Identifier>`. CRMF requests and 2.x Certificate Request Unique
//! Identifiers (kmipd stores no Certificate Request objects) are Feature Not Supported.
//!
//! The new Certificate object gets the attributes a registered certificate gets
//! (`objects/cert.rs`: Certificate Type, Length, Identifier/Subject/Issuer in both the 1.x
//! text and 1.2+ DER forms, Digital Signature Algorithm, ...), the request's Template-Attribute
//! (1.x) or Attributes (2.x), a Public Key Link to the key; the key gets a Certificate Link to
//! it (§4.7: "For the public key, the server SHALL create a Link attribute of Link Type
//! Certificate"). Its Unique Identifier becomes the ID Placeholder. The caller needs Certify on
//! the public key (its owner, an administrator, or a grantee, `access.rs`); the certificate is
//! the key owner's. Audited as every operation (the engine's audit of each batch item).

use std::sync::Arc;

use kmipd_proto::attributes::{AttrName, Attribute, Attributes};
use kmipd_proto::build;
use kmipd_proto::enums::{
    certificate_request_type as crt, certificate_type, key_format_type as kft, link_type,
    object_type as ot, unique_identifier as uid_kind,
};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::{Ttlv, Value};
use openssl::pkey::{PKey, Public};
use openssl::x509::{X509Name, X509Req};

use crate::context::Ctx;
use crate::crypto::ossl;
use crate::error::{Error, Result};
use crate::issuing::IssuingCa;
use crate::object::{attr_int, new_object, resolve_uid, touch, uid_payload};
use crate::objects::{self, format, rekey, template};
use crate::{attrs, keyblock};

/// Handles Certify.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let ca = issuing_ca(ctx)?;
    let key_uid = resolve_uid(ctx, &r)?;
    let key = rekey::existing(ctx, &key_uid, ot::PUBLIC_KEY)?;
    let public = public_key(ctx, &key)?;
    let (requested, subject) = requested(ctx, &r, &public, || uid_subject(&key_uid))?;
    let der = ca.issue(
        &public,
        &subject,
        ctx.now,
        attr_int(&requested, tag::CRYPTOGRAPHIC_USAGE_MASK),
    )?;
    let mut cert = new_certificate(ctx, der, requested, &key.owner)?;
    cert.attributes
        .add(link(link_type::PUBLIC_KEY_LINK, &key_uid));
    let uid = cert.uid.clone();
    ctx.tx.put(cert);
    let mut key = ctx.load(&key_uid)?;
    key.attributes.add(link(link_type::CERTIFICATE_LINK, &uid));
    touch(ctx, &mut key);
    ctx.tx.put(key);
    ctx.set_placeholder(&uid);
    ctx.produced(uid_kind::CERTIFY, &uid);
    Ok(Some(uid_payload(&uid)))
}

/// The issuing CA of Certify and Re-certify (none configured: Feature Not Supported).
pub(crate) fn issuing_ca(ctx: &Ctx<'_>) -> Result<Arc<IssuingCa>> {
    ctx.config
        .issuing_ca
        .clone()
        .ok_or(Error::FeatureNotSupported("no issuing CA is configured"))
}

/// What a Certify or Re-certify request asks for, once its public key is known: its attributes
/// (Template-Attribute or Attributes; X.509 only) and the subject, its Certificate Request's
/// (checked against `public`), else `default_subject`'s.
pub(crate) fn requested(
    ctx: &Ctx<'_>,
    r: &StructReader<'_>,
    public: &PKey<Public>,
    default_subject: impl FnOnce() -> Result<X509Name>,
) -> Result<(Attributes, X509Name)> {
    let request = certificate_request(ctx, r, public)?;
    let requested = objects::request_attributes(ctx, r, tag::TEMPLATE_ATTRIBUTE, tag::ATTRIBUTES)?;
    check_certificate_type(&requested)?;
    let subject = match &request {
        Some(req) => req.subject_name().to_owned().map_err(ossl)?,
        None => default_subject()?,
    };
    Ok((requested, subject))
}

/// A Certificate object for `der` with the attributes derived from it, then `requested` (the
/// request's win, except those the certificate fixes), owned by `owner`, through the policy.
pub(crate) fn new_certificate(
    ctx: &Ctx<'_>,
    der: Vec<u8>,
    requested: Attributes,
    owner: &str,
) -> Result<ManagedObject> {
    let item = build::structure(
        tag::CERTIFICATE,
        vec![
            build::enumeration(tag::CERTIFICATE_TYPE, certificate_type::X_509),
            build::bytes(tag::CERTIFICATE_VALUE, der),
        ],
    );
    let parsed = objects::parse_object(ctx, ot::CERTIFICATE, &item)?;
    let mut attrs = requested;
    // What the certificate says wins over the template ("the information in the Certificate
    // Request takes precedence", and the server sets these from the certificate it made).
    for name in parsed.attributes.iter().map(|a| a.name.clone()) {
        attrs.remove_all(&name);
    }
    attrs.0.extend(parsed.attributes.0);
    attrs::check_names_free(ctx, attrs.name_values())?;
    template::server_defaults(&mut attrs, ot::CERTIFICATE, &parsed.object, false);
    let mut obj = new_object(ctx, ot::CERTIFICATE, Some(parsed.object), attrs)?;
    owner.clone_into(&mut obj.owner);
    template::finish(ctx, &mut obj)?;
    Ok(obj)
}

/// The stored public key as OpenSSL's (converted to a SubjectPublicKeyInfo whatever its
/// stored format).
pub(crate) fn public_key(ctx: &Ctx<'_>, key: &ManagedObject) -> Result<PKey<Public>> {
    let body = keyblock::object_body(key)?;
    let spki = format::convert(ctx, key, body, Some(kft::X_509), None)?;
    let kb = keyblock::key_block(&spki)?;
    if kb.wrapped {
        return Err(Error::IllegalOperation("the public key is wrapped"));
    }
    let der = kb.bytes()?;
    PKey::public_key_from_der(&der).map_err(|_| Error::InvalidField("Public Key"))
}

/// The request's Certificate Request, checked: a PKCS#10 (DER) or PEM request whose signature
/// verifies and whose key is `public`.
pub(crate) fn certificate_request(
    ctx: &Ctx<'_>,
    r: &StructReader<'_>,
    public: &PKey<Public>,
) -> Result<Option<X509Req>> {
    if r.optional(tag::CERTIFICATE_REQUEST_UNIQUE_IDENTIFIER)
        .is_some()
    {
        return Err(Error::FeatureNotSupported(
            "Certificate Request objects are not stored by this server",
        ));
    }
    let value_tag = if ctx.v2() {
        tag::CERTIFICATE_REQUEST_VALUE
    } else {
        tag::CERTIFICATE_REQUEST
    };
    let Some(bytes) = r.bytes(value_tag)? else {
        return Ok(None);
    };
    let req = match r.enumeration(tag::CERTIFICATE_REQUEST_TYPE)? {
        Some(crt::PKCS_10) => X509Req::from_der(bytes),
        Some(crt::PEM) => X509Req::from_pem(bytes),
        Some(_) => {
            return Err(Error::FeatureNotSupported(
                "Certificate Request Type other than PKCS#10 and PEM",
            ));
        }
        None => return Err(Error::MissingData("Certificate Request Type")),
    }
    .map_err(|_| Error::InvalidField("Certificate Request"))?;
    let own_key = req
        .public_key()
        .map_err(|_| Error::InvalidField("Certificate Request"))?;
    if !req.verify(&own_key).unwrap_or(false) {
        return Err(Error::InvalidField("Certificate Request"));
    }
    if !own_key.public_eq(public) {
        return Err(Error::InvalidField(
            "the Certificate Request is not for this public key",
        ));
    }
    Ok(Some(req))
}

/// Certificate Type, when the request gives one, must be X.509 (the only type issued).
pub(crate) fn check_certificate_type(requested: &Attributes) -> Result<()> {
    match requested.get(tag::CERTIFICATE_TYPE) {
        None | Some(Value::Enumeration(certificate_type::X_509)) => Ok(()),
        Some(_) => Err(Error::FeatureNotSupported("certificates other than X.509")),
    }
}

/// `CN=<uid>`.
fn uid_subject(uid: &str) -> Result<X509Name> {
    let mut b = X509Name::builder().map_err(ossl)?;
    b.append_entry_by_text("CN", uid)
        .map_err(|_| Error::InvalidField("Unique Identifier"))?;
    Ok(b.build())
}

/// A Link attribute.
pub(crate) fn link(kind: u32, uid: &str) -> Attribute {
    Attribute {
        name: AttrName::Std(tag::LINK),
        value: Value::Structure(vec![
            build::enumeration(tag::LINK_TYPE, kind),
            build::text(tag::LINKED_OBJECT_IDENTIFIER, uid),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kmipd_proto::attributes::Attribute;
    use kmipd_proto::build;
    use kmipd_proto::enums::{
        certificate_request_type as crt, cryptographic_algorithm as alg, key_format_type as kft,
        link_type, object_type as ot, operation, result_reason, result_status,
    };
    use kmipd_proto::message::ProtocolVersion;
    use kmipd_proto::reader::StructReader;
    use kmipd_proto::tag;
    use kmipd_store::MemoryStore;
    use kmipd_ttlv::Ttlv;
    use openssl::hash::MessageDigest;
    use openssl::pkey::{PKey, Private};
    use openssl::x509::{X509, X509Name, X509ReqBuilder};

    use crate::engine::testing::{first_item, request};
    use crate::issuing::{IssuingCa, generate_rsa};
    use crate::{Engine, EngineConfig, Principal};

    type Answer = (u32, Option<u32>, Option<Ttlv>);

    fn engine(ca: Option<Arc<IssuingCa>>) -> Engine {
        Engine::new(
            Arc::new(MemoryStore::new()),
            EngineConfig {
                issuing_ca: ca,
                ..EngineConfig::default()
            },
        )
    }

    fn call_as(e: &Engine, who: &str, v: (i32, i32), op: u32, payload: Vec<Ttlv>) -> Answer {
        first_item(&e.handle_message(&Principal::new(who), &request(v.0, v.1, op, payload)))
    }

    /// `op` as `who`, which must succeed: the Unique Identifier it answers.
    fn ok_uid(e: &Engine, who: &str, v: (i32, i32), op: u32, payload: Vec<Ttlv>) -> String {
        let (status, _, payload) = call_as(e, who, v, op, payload);
        assert_eq!(status, result_status::SUCCESS);
        uid_of(&payload)
    }

    /// `op` as `who`, which must fail: its Result Reason.
    fn refused(e: &Engine, who: &str, v: (i32, i32), op: u32, payload: Vec<Ttlv>) -> Option<u32> {
        let (status, reason, _) = call_as(e, who, v, op, payload);
        assert_eq!(status, result_status::OPERATION_FAILED);
        reason
    }

    /// The field `t` of the answer to a 2.1 `op` (which must succeed) on `uid` as `a`.
    fn answered(e: &Engine, op: u32, uid: &str, t: kmipd_ttlv::Tag) -> Ttlv {
        let (status, _, payload) = call_as(e, "a", (2, 1), op, vec![build::unique_identifier(uid)]);
        assert_eq!(status, result_status::SUCCESS);
        StructReader::any(&payload.unwrap())
            .unwrap()
            .required(t)
            .unwrap()
            .clone()
    }

    fn uid_of(payload: &Option<Ttlv>) -> String {
        StructReader::any(payload.as_ref().unwrap())
            .unwrap()
            .req_text(tag::UNIQUE_IDENTIFIER)
            .unwrap()
            .to_owned()
    }

    fn rsa_key() -> PKey<Private> {
        PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap()
    }

    /// Registers `key`'s public half (SubjectPublicKeyInfo) as principal `who`.
    fn register_public(e: &Engine, who: &str, v: (i32, i32), key: &PKey<Private>) -> String {
        let spki = key.public_key_to_der().unwrap();
        let attrs = build::attributes(
            ProtocolVersion::new(v.0, v.1),
            tag::TEMPLATE_ATTRIBUTE,
            tag::ATTRIBUTES,
            &[build::usage_mask_attr(2)],
        );
        ok_uid(
            e,
            who,
            v,
            operation::REGISTER,
            vec![
                build::enumeration(tag::OBJECT_TYPE, ot::PUBLIC_KEY),
                attrs,
                build::structure(
                    tag::PUBLIC_KEY,
                    vec![build::byte_key_block(
                        kft::X_509,
                        spki,
                        Some((alg::RSA, 2048)),
                    )],
                ),
            ],
        )
    }

    fn csr(key: &PKey<Private>, cn: &str) -> Vec<u8> {
        let mut name = X509Name::builder().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let mut b = X509ReqBuilder::new().unwrap();
        b.set_subject_name(&name.build()).unwrap();
        b.set_pubkey(key).unwrap();
        b.sign(key, MessageDigest::sha256()).unwrap();
        b.build().to_der().unwrap()
    }

    /// The payload of a 1.4 Certify or Re-certify of `uid` with a PKCS#10 request and a Name.
    fn v1_payload(uid: &str, csr: Option<Vec<u8>>, name: &str) -> Vec<Ttlv> {
        let mut p = vec![build::unique_identifier(uid)];
        if let Some(csr) = csr {
            p.push(build::enumeration(
                tag::CERTIFICATE_REQUEST_TYPE,
                crt::PKCS_10,
            ));
            p.push(build::bytes(tag::CERTIFICATE_REQUEST, csr));
        }
        p.push(build::structure(
            tag::TEMPLATE_ATTRIBUTE,
            vec![build::name_attr(name).to_v1(None)],
        ));
        p
    }

    fn certificate(e: &Engine, uid: &str) -> X509 {
        let cert = answered(e, operation::GET, uid, tag::CERTIFICATE);
        let der = StructReader::any(&cert)
            .unwrap()
            .req_bytes(tag::CERTIFICATE_VALUE)
            .unwrap()
            .to_vec();
        // Also well-formed for an independent parser.
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(parsed.version(), x509_parser::x509::X509Version::V3);
        X509::from_der(&der).unwrap()
    }

    /// The (Link Type, Linked Object Identifier) of an object's Links, and its Names, in order.
    fn links_and_names(e: &Engine, uid: &str) -> (Vec<(u32, String)>, Vec<String>) {
        let attrs = answered(e, operation::GET_ATTRIBUTES, uid, tag::ATTRIBUTES);
        let mut links = Vec::new();
        let mut names = Vec::new();
        for a in StructReader::any(&attrs).unwrap().items() {
            let r = || StructReader::any(a).unwrap();
            if a.tag == tag::LINK {
                links.push((
                    r().req_enum(tag::LINK_TYPE).unwrap(),
                    r().req_text(tag::LINKED_OBJECT_IDENTIFIER)
                        .unwrap()
                        .to_owned(),
                ));
            } else if a.tag == tag::NAME {
                names.push(r().req_text(tag::NAME_VALUE).unwrap().to_owned());
            }
        }
        (links, names)
    }

    fn subject_cn(cert: &X509) -> String {
        let entry = cert
            .subject_name()
            .entries_by_nid(openssl::nid::Nid::COMMONNAME)
            .next()
            .unwrap();
        String::from_utf8_lossy(entry.data().as_slice()).into_owned()
    }

    /// `cert` is signed by `ca` under its name, for `key`, with subject `CN=cn`.
    fn check_issued(cert: &X509, ca: &X509, key: &PKey<Private>, cn: &str) {
        assert!(cert.verify(&ca.public_key().unwrap()).unwrap());
        assert_eq!(
            cert.issuer_name().to_der().unwrap(),
            ca.subject_name().to_der().unwrap()
        );
        assert!(cert.public_key().unwrap().public_eq(key));
        assert_eq!(subject_cn(cert), cn);
    }

    #[test]
    fn certify_then_re_certify_issue_signed_certificates_and_move_links_and_names() {
        let ca = generate_rsa("kmipd test issuing CA").unwrap();
        let ca_cert = X509::from_der(&ca.certificate_der()).unwrap();
        let e = engine(Some(Arc::clone(&ca)));
        let key = rsa_key();
        let pk = register_public(&e, "a", (1, 4), &key);

        let c1 = ok_uid(
            &e,
            "a",
            (1, 4),
            operation::CERTIFY,
            v1_payload(&pk, Some(csr(&key, "device-1")), "cert-1"),
        );
        let cert1 = certificate(&e, &c1);
        check_issued(&cert1, &ca_cert, &key, "device-1");
        assert_eq!(
            links_and_names(&e, &pk).0,
            vec![(link_type::CERTIFICATE_LINK, c1.clone())]
        );
        assert_eq!(
            links_and_names(&e, &c1),
            (
                vec![(link_type::PUBLIC_KEY_LINK, pk.clone())],
                vec!["cert-1".to_owned()]
            )
        );

        // Re-certify without a request: the subject and the key stay, the names move.
        let c2 = ok_uid(
            &e,
            "a",
            (1, 4),
            operation::RE_CERTIFY,
            v1_payload(&c1, None, "cert-2"),
        );
        assert_ne!(c1, c2);
        let cert2 = certificate(&e, &c2);
        check_issued(&cert2, &ca_cert, &key, "device-1");
        assert_ne!(
            cert1.serial_number().to_bn().unwrap(),
            cert2.serial_number().to_bn().unwrap()
        );
        assert_eq!(
            links_and_names(&e, &pk).0,
            vec![(link_type::CERTIFICATE_LINK, c2.clone())]
        );
        assert_eq!(
            links_and_names(&e, &c1),
            (
                vec![
                    (link_type::PUBLIC_KEY_LINK, pk.clone()),
                    (link_type::REPLACEMENT_OBJECT_LINK, c2.clone())
                ],
                vec![]
            )
        );
        assert_eq!(
            links_and_names(&e, &c2),
            (
                vec![
                    (link_type::REPLACED_OBJECT_LINK, c1.clone()),
                    (link_type::PUBLIC_KEY_LINK, pk.clone())
                ],
                vec!["cert-1".to_owned(), "cert-2".to_owned()]
            )
        );
    }

    #[test]
    fn certify_in_2x_form_without_request_names_the_key_and_keeps_the_attributes() {
        let e = engine(Some(generate_rsa("ca").unwrap()));
        let key = rsa_key();
        let pk = register_public(&e, "a", (2, 1), &key);
        let c = ok_uid(
            &e,
            "a",
            (2, 1),
            operation::CERTIFY,
            vec![
                build::unique_identifier(&pk),
                build::structure(
                    tag::ATTRIBUTES,
                    vec![Attribute::std(tag::CRYPTOGRAPHIC_USAGE_MASK, build::mask(3)).to_v2()],
                ),
            ],
        );
        assert_eq!(subject_cn(&certificate(&e, &c)), pk);
        // A 2.x request is read from Certificate Request Value.
        let with_type = |kind: u32, value: Vec<u8>| {
            vec![
                build::unique_identifier(&pk),
                build::enumeration(tag::CERTIFICATE_REQUEST_TYPE, kind),
                build::bytes(tag::CERTIFICATE_REQUEST_VALUE, value),
            ]
        };
        let other = rsa_key();
        assert_eq!(
            refused(
                &e,
                "a",
                (2, 1),
                operation::CERTIFY,
                with_type(crt::PKCS_10, csr(&other, "x"))
            ),
            Some(result_reason::INVALID_FIELD)
        );
        let c = ok_uid(
            &e,
            "a",
            (2, 1),
            operation::CERTIFY,
            with_type(crt::PKCS_10, csr(&key, "from-csr")),
        );
        assert_eq!(subject_cn(&certificate(&e, &c)), "from-csr");
        // The PEM form of the request; CRMF is not supported.
        let pem = openssl::x509::X509Req::from_der(&csr(&key, "from-pem"))
            .unwrap()
            .to_pem()
            .unwrap();
        let c = ok_uid(
            &e,
            "a",
            (2, 1),
            operation::CERTIFY,
            with_type(crt::PEM, pem.clone()),
        );
        assert_eq!(subject_cn(&certificate(&e, &c)), "from-pem");
        assert_eq!(
            refused(
                &e,
                "a",
                (2, 1),
                operation::CERTIFY,
                with_type(crt::CRMF, pem)
            ),
            Some(result_reason::FEATURE_NOT_SUPPORTED)
        );
    }

    #[test]
    fn certify_is_refused_without_a_ca_for_others_keys_and_for_non_public_keys() {
        let key = rsa_key();
        let none = engine(None);
        let pk = register_public(&none, "a", (1, 4), &key);
        assert_eq!(
            refused(
                &none,
                "a",
                (1, 4),
                operation::CERTIFY,
                v1_payload(&pk, None, "n"),
            ),
            Some(result_reason::FEATURE_NOT_SUPPORTED)
        );
        let e = engine(Some(generate_rsa("ca").unwrap()));
        let pk = register_public(&e, "a", (1, 4), &key);
        // Another client cannot see the key.
        assert_eq!(
            refused(
                &e,
                "b",
                (1, 4),
                operation::CERTIFY,
                v1_payload(&pk, None, "n"),
            ),
            Some(result_reason::ITEM_NOT_FOUND)
        );
        // A certificate is not a public key; Re-certify of a key is not a certificate.
        let c = ok_uid(
            &e,
            "a",
            (1, 4),
            operation::CERTIFY,
            v1_payload(&pk, None, "c"),
        );
        for (op, uid) in [(operation::CERTIFY, &c), (operation::RE_CERTIFY, &pk)] {
            assert_eq!(
                refused(&e, "a", (1, 4), op, v1_payload(uid, None, "z")),
                Some(result_reason::ILLEGAL_OPERATION)
            );
        }
    }

    /// The Activation Date of the certificate `uid` minus its Initial Date, and its State.
    /// (Activation Date − Initial Date, Activation Date, State) of `uid`.
    fn activation_offset(e: &Engine, uid: &str) -> (Option<i64>, Option<i64>, u32) {
        let attrs = answered(e, operation::GET_ATTRIBUTES, uid, tag::ATTRIBUTES);
        let r = StructReader::any(&attrs).unwrap();
        let date = |t| match r.optional(t).map(|i| &i.value) {
            Some(kmipd_ttlv::Value::DateTime(d)) => Some(*d),
            _ => None,
        };
        let activation = date(tag::ACTIVATION_DATE);
        let offset = activation.map(|a| a - date(tag::INITIAL_DATE).unwrap());
        (offset, activation, r.req_enum(tag::STATE).unwrap())
    }

    #[test]
    fn re_certify_with_an_offset_activates_the_new_certificate_that_much_later() {
        use kmipd_proto::enums::state;
        let e = engine(Some(generate_rsa("ca").unwrap()));
        let key = rsa_key();
        let pk = register_public(&e, "a", (1, 4), &key);
        let c1 = ok_uid(
            &e,
            "a",
            (1, 4),
            operation::CERTIFY,
            v1_payload(&pk, None, "c"),
        );
        ok_uid(
            &e,
            "a",
            (1, 4),
            operation::ACTIVATE,
            vec![build::unique_identifier(&c1)],
        );
        let mut payload = v1_payload(&c1, None, "c-next");
        payload.insert(
            1,
            Ttlv::new(tag::OFFSET, kmipd_ttlv::Value::Interval(86_400)),
        );
        let c2 = ok_uid(&e, "a", (1, 4), operation::RE_CERTIFY, payload);
        let (offset2, activation2, state2) = activation_offset(&e, &c2);
        assert_eq!((offset2, state2), (Some(86_400), state::PRE_ACTIVE));
        // Without an Offset, the existing certificate's Activation Date is copied as it is
        // (KMIP 1.4 §4.8), so the new certificate is pre-active until that same instant. Its
        // own Initial Date may fall in a later second, so compare dates, not offsets.
        let c3 = ok_uid(
            &e,
            "a",
            (1, 4),
            operation::RE_CERTIFY,
            v1_payload(&c2, None, "c-third"),
        );
        let (_, activation3, state3) = activation_offset(&e, &c3);
        assert_eq!(state3, state::PRE_ACTIVE);
        assert_eq!(activation3, activation2);
    }
}
