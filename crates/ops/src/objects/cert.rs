//! The attributes a server derives from a registered X.509 certificate: Certificate Type,
//! Certificate Length, Digital Signature Algorithm, the public key's algorithm and length, and
//! the subject/issuer/serial in the 1.0-1.1 text form (Certificate Identifier/Subject/Issuer,
//! `CN=..,O=..,C=..`) and the 1.1+ DER form (X.509 Certificate Identifier/Subject/Issuer).
//! Answers filter them by the request's version.

use kmipd_proto::attributes::{Attribute, Attributes};
use kmipd_proto::build;
use kmipd_proto::enums::digital_signature_algorithm as dsa;
use kmipd_proto::enums::{certificate_type, cryptographic_algorithm as alg};
use kmipd_proto::tag;
use kmipd_ttlv::{Tag, Value};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};
use x509_parser::public_key::PublicKey;

use crate::context::Ctx;
use crate::error::{Error, Result};

/// The attributes of a certificate of type `cert_type` with value `der`.
pub(crate) fn attributes(_ctx: &Ctx<'_>, cert_type: u32, der: &[u8]) -> Result<Attributes> {
    let mut attrs = Attributes::new();
    attrs.set(tag::CERTIFICATE_TYPE, Value::Enumeration(cert_type));
    if cert_type != certificate_type::X_509 {
        return Ok(attrs);
    }
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|_| Error::InvalidField("Certificate Value"))?;
    let tbs = &cert.tbs_certificate;
    let len = i32::try_from(der.len()).map_err(|_| Error::InvalidField("Certificate Value"))?;
    attrs.set(tag::CERTIFICATE_LENGTH, Value::Integer(len));
    if let Some(a) = signature_algorithm(&cert.signature_algorithm.algorithm.to_id_string()) {
        attrs.set(tag::DIGITAL_SIGNATURE_ALGORITHM, Value::Enumeration(a));
    }
    if let Ok(pk) = tbs.subject_pki.parsed() {
        let algorithm = match &pk {
            PublicKey::RSA(_) => Some(alg::RSA),
            PublicKey::EC(_) => Some(alg::ECDSA),
            PublicKey::DSA(_) => Some(alg::DSA),
            _ => None,
        };
        if let Some(a) = algorithm {
            attrs.set(tag::CRYPTOGRAPHIC_ALGORITHM, Value::Enumeration(a));
            if let Ok(bits) = i32::try_from(pk.key_size())
                && bits > 0
            {
                attrs.set(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(bits));
            }
        }
    }
    let serial = tbs.raw_serial();
    // 1.0/1.1 text forms.
    attrs.set(
        tag::CERTIFICATE_IDENTIFIER,
        Value::Structure(vec![
            build::text(tag::ISSUER, text_name(&tbs.issuer)),
            build::text(tag::SERIAL_NUMBER, hex_upper(serial)),
        ]),
    );
    attrs.set(
        tag::CERTIFICATE_SUBJECT,
        Value::Structure(vec![build::text(
            tag::CERTIFICATE_SUBJECT_DISTINGUISHED_NAME,
            text_name(&tbs.subject),
        )]),
    );
    attrs.set(
        tag::CERTIFICATE_ISSUER,
        Value::Structure(vec![build::text(
            tag::CERTIFICATE_ISSUER_DISTINGUISHED_NAME,
            text_name(&tbs.issuer),
        )]),
    );
    components(&mut attrs, &tbs.subject, true);
    components(&mut attrs, &tbs.issuer, false);
    // 1.2+ DER forms (the serial as a DER INTEGER, as the OASIS cases show it).
    attrs.set(
        tag::X_509_CERTIFICATE_IDENTIFIER,
        Value::Structure(vec![
            build::bytes(tag::ISSUER_DISTINGUISHED_NAME, tbs.issuer.as_raw().to_vec()),
            build::bytes(tag::CERTIFICATE_SERIAL_NUMBER, der_integer(serial)),
        ]),
    );
    attrs.set(
        tag::X_509_CERTIFICATE_ISSUER,
        Value::Structure(vec![build::bytes(
            tag::ISSUER_DISTINGUISHED_NAME,
            tbs.issuer.as_raw().to_vec(),
        )]),
    );
    attrs.set(
        tag::X_509_CERTIFICATE_SUBJECT,
        Value::Structure(vec![build::bytes(
            tag::SUBJECT_DISTINGUISHED_NAME,
            tbs.subject.as_raw().to_vec(),
        )]),
    );
    Ok(attrs)
}

/// The per-component text attributes (Certificate Subject CN, Certificate Issuer O, ...).
fn components(attrs: &mut Attributes, name: &X509Name<'_>, subject: bool) {
    for rdn in name.iter_rdn() {
        for atv in rdn.iter() {
            let Some((s, i)) = component_tags(&atv.attr_type().to_id_string()) else {
                continue;
            };
            let Ok(value) = atv.as_str() else {
                continue;
            };
            let t = if subject { s } else { i };
            attrs.add(Attribute::std(t, Value::TextString(value.to_owned())));
        }
    }
}

/// (subject tag, issuer tag) of a name component's OID.
fn component_tags(oid: &str) -> Option<(Tag, Tag)> {
    Some(match oid {
        "2.5.4.3" => (tag::CERTIFICATE_SUBJECT_CN, tag::CERTIFICATE_ISSUER_CN),
        "2.5.4.6" => (tag::CERTIFICATE_SUBJECT_C, tag::CERTIFICATE_ISSUER_C),
        "2.5.4.10" => (tag::CERTIFICATE_SUBJECT_O, tag::CERTIFICATE_ISSUER_O),
        "2.5.4.11" => (tag::CERTIFICATE_SUBJECT_OU, tag::CERTIFICATE_ISSUER_OU),
        "2.5.4.7" => (tag::CERTIFICATE_SUBJECT_L, tag::CERTIFICATE_ISSUER_L),
        "2.5.4.8" => (tag::CERTIFICATE_SUBJECT_ST, tag::CERTIFICATE_ISSUER_ST),
        "2.5.4.5" => (
            tag::CERTIFICATE_SUBJECT_SERIAL_NUMBER,
            tag::CERTIFICATE_ISSUER_SERIAL_NUMBER,
        ),
        "2.5.4.12" => (
            tag::CERTIFICATE_SUBJECT_TITLE,
            tag::CERTIFICATE_ISSUER_TITLE,
        ),
        "2.5.4.46" => (
            tag::CERTIFICATE_SUBJECT_DN_QUALIFIER,
            tag::CERTIFICATE_ISSUER_DN_QUALIFIER,
        ),
        "0.9.2342.19200300.100.1.25" => (tag::CERTIFICATE_SUBJECT_DC, tag::CERTIFICATE_ISSUER_DC),
        "0.9.2342.19200300.100.1.1" => (tag::CERTIFICATE_SUBJECT_UID, tag::CERTIFICATE_ISSUER_UID),
        "1.2.840.113549.1.9.1" => (
            tag::CERTIFICATE_SUBJECT_EMAIL,
            tag::CERTIFICATE_ISSUER_EMAIL,
        ),
        _ => return None,
    })
}

/// `CN=EE,O=Kmip Test,C=AU`: the RDNs last first (RFC 4514 order).
fn text_name(name: &X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let mut parts: Vec<String> = Vec::new();
    for rdn in name.iter_rdn() {
        let part: Vec<String> = rdn
            .iter()
            .map(|atv| {
                let key = x509_parser::objects::oid2abbrev(atv.attr_type(), registry)
                    .map_or_else(|_| atv.attr_type().to_id_string(), str::to_owned);
                let value = atv.as_str().map_or_else(|_| String::new(), str::to_owned);
                format!("{key}={value}")
            })
            .collect();
        parts.push(part.join("+"));
    }
    parts.reverse();
    parts.join(",")
}

/// Upper-case hex without leading zero bytes (`DADA16A58D2924D9`), as the 1.x cases show.
fn hex_upper(bytes: &[u8]) -> String {
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    bytes
        .get(start..)
        .unwrap_or_default()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// A DER INTEGER around the serial's content octets.
fn der_integer(content: &[u8]) -> Vec<u8> {
    let mut out = vec![0x02];
    let len = content.len();
    match u8::try_from(len) {
        Ok(l) if l < 0x80 => out.push(l),
        _ => {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            let rest = bytes.get(skip..).unwrap_or_default();
            let n = u8::try_from(rest.len()).unwrap_or(0);
            out.push(0x80 | n);
            out.extend_from_slice(rest);
        }
    }
    out.extend_from_slice(content);
    out
}

/// The Digital Signature Algorithm of a signature OID.
fn signature_algorithm(oid: &str) -> Option<u32> {
    Some(match oid {
        "1.2.840.113549.1.1.2" => dsa::MD2_WITH_RSA_ENCRYPTION,
        "1.2.840.113549.1.1.4" => dsa::MD5_WITH_RSA_ENCRYPTION,
        "1.2.840.113549.1.1.5" => dsa::SHA_1_WITH_RSA_ENCRYPTION,
        "1.2.840.113549.1.1.14" => dsa::SHA_224_WITH_RSA_ENCRYPTION,
        "1.2.840.113549.1.1.11" => dsa::SHA_256_WITH_RSA_ENCRYPTION,
        "1.2.840.113549.1.1.12" => dsa::SHA_384_WITH_RSA_ENCRYPTION,
        "1.2.840.113549.1.1.13" => dsa::SHA_512_WITH_RSA_ENCRYPTION,
        "1.2.840.113549.1.1.10" => dsa::RSASSA_PSS,
        "1.2.840.10040.4.3" => dsa::DSA_WITH_SHA_1,
        "2.16.840.1.101.3.4.3.1" => dsa::DSA_WITH_SHA224,
        "2.16.840.1.101.3.4.3.2" => dsa::DSA_WITH_SHA256,
        "1.2.840.10045.4.1" => dsa::ECDSA_WITH_SHA_1,
        "1.2.840.10045.4.3.1" => dsa::ECDSA_WITH_SHA224,
        "1.2.840.10045.4.3.2" => dsa::ECDSA_WITH_SHA256,
        "1.2.840.10045.4.3.3" => dsa::ECDSA_WITH_SHA384,
        "1.2.840.10045.4.3.4" => dsa::ECDSA_WITH_SHA512,
        _ => return None,
    })
}
