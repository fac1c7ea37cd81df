//! Derive Key and Obtain Lease through the Engine.
//!
//! The conformance runner counts Derive Key among the operations that generate key material,
//! so it does not compare the derived bytes of the TC-DERIVEKEY cases; these tests do: each
//! method must give the known answer (the TC-DERIVEKEY values, RFC 6070 / RFC 5869 / SP 800-38A
//! vectors), with the links both ways and the refusals the specification asks for.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use kmipd_ops::{Engine, Principal};
use kmipd_proto::enums::{link_type, result_reason as rr, result_status};
use kmipd_proto::reader::{StructReader, as_bytes, as_enum, as_text};
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

use engine::{batch_items, field, status, xml_request};
use kmipd_test_support::engine;

const PAST: &str = "2001-01-01T00:00:00+00:00";

fn send(e: &Engine, who: &str, v: (u8, u8), items: &str) -> Vec<Ttlv> {
    batch_items(&e.handle_message(&Principal::new(who), &xml_request(v, items)))
}

fn item(op: &str, payload: &str) -> String {
    format!(
        r#"<BatchItem><Operation type="Enumeration" value="{op}"/><RequestPayload>{payload}</RequestPayload></BatchItem>"#
    )
}

fn uid(it: &Ttlv) -> String {
    assert_eq!(status(it), (result_status::SUCCESS, None), "{it:?}");
    as_text(field(it, &[tag::RESPONSE_PAYLOAD, tag::UNIQUE_IDENTIFIER]).unwrap())
        .unwrap()
        .to_owned()
}

fn one(e: &Engine, v: (u8, u8), op: &str, payload: &str) -> Ttlv {
    send(e, "a", v, &item(op, payload)).remove(0)
}

/// Registers a key of `algorithm` with `material` and usage mask `usage`, Active.
fn register_key(e: &Engine, v: (u8, u8), algorithm: &str, material: &str, usage: &str) -> String {
    let bits = material.len() * 4;
    let key = format!(
        r#"<SymmetricKey><KeyBlock><KeyFormatType type="Enumeration" value="Raw"/>
<KeyValue><KeyMaterial type="ByteString" value="{material}"/></KeyValue>
<CryptographicAlgorithm type="Enumeration" value="{algorithm}"/>
<CryptographicLength type="Integer" value="{bits}"/></KeyBlock></SymmetricKey>"#
    );
    register(e, v, "SymmetricKey", &key, usage)
}

/// Registers Secret Data (a password or seed), Active, with usage mask `usage`.
fn register_secret(e: &Engine, v: (u8, u8), material: &str, usage: &str) -> String {
    let secret = format!(
        r#"<SecretData><SecretDataType type="Enumeration" value="Password"/>
<KeyBlock><KeyFormatType type="Enumeration" value="Opaque"/>
<KeyValue><KeyMaterial type="ByteString" value="{material}"/></KeyValue></KeyBlock></SecretData>"#
    );
    register(e, v, "SecretData", &secret, usage)
}

fn attrs(v: (u8, u8), list: &[(&str, &str, &str)]) -> String {
    if v.0 >= 2 {
        let inner: String = list
            .iter()
            .map(|(name, ty, value)| {
                format!(
                    r#"<{} type="{ty}" value="{value}"/>"#,
                    name.replace(' ', "")
                )
            })
            .collect();
        format!("<Attributes>{inner}</Attributes>")
    } else {
        let inner: String = list
            .iter()
            .map(|(name, ty, value)| {
                format!(
                    r#"<Attribute><AttributeName type="TextString" value="{name}"/><AttributeValue type="{ty}" value="{value}"/></Attribute>"#
                )
            })
            .collect();
        format!("<TemplateAttribute>{inner}</TemplateAttribute>")
    }
}

fn register(e: &Engine, v: (u8, u8), object_type: &str, object: &str, usage: &str) -> String {
    let a = attrs(
        v,
        &[
            ("Cryptographic Usage Mask", "Integer", usage),
            ("Activation Date", "DateTime", PAST),
        ],
    );
    uid(&one(
        e,
        v,
        "Register",
        &format!(r#"<ObjectType type="Enumeration" value="{object_type}"/>{a}{object}"#),
    ))
}

/// A Derive Key payload for a new AES key (or Secret Data when `algorithm` is None) of `bits`.
fn derive(
    v: (u8, u8),
    bases: &[&str],
    method: &str,
    params: &str,
    algorithm: Option<&str>,
    bits: u32,
) -> String {
    let uids: String = bases
        .iter()
        .map(|u| format!(r#"<UniqueIdentifier type="TextString" value="{u}"/>"#))
        .collect();
    let bits = bits.to_string();
    let (object_type, a) = match algorithm {
        Some(alg) => (
            "SymmetricKey",
            attrs(
                v,
                &[
                    ("Cryptographic Algorithm", "Enumeration", alg),
                    ("Cryptographic Length", "Integer", &bits),
                    ("Cryptographic Usage Mask", "Integer", "Encrypt Decrypt"),
                ],
            ),
        ),
        None => (
            "SecretData",
            attrs(v, &[("Cryptographic Length", "Integer", &bits)]),
        ),
    };
    format!(
        r#"<ObjectType type="Enumeration" value="{object_type}"/>{uids}
<DerivationMethod type="Enumeration" value="{method}"/>
<DerivationParameters>{params}</DerivationParameters>{a}"#
    )
}

/// Derives, then Gets the new object: its Key Material in hex.
fn derive_material(e: &Engine, v: (u8, u8), payload: &str) -> String {
    let new = uid(&one(e, v, "DeriveKey", payload));
    material(e, v, &new)
}

fn material(e: &Engine, v: (u8, u8), uid: &str) -> String {
    let got = one(
        e,
        v,
        "Get",
        &format!(r#"<UniqueIdentifier type="TextString" value="{uid}"/>"#),
    );
    assert_eq!(status(&got).0, result_status::SUCCESS, "{got:?}");
    let payload = field(&got, &[tag::RESPONSE_PAYLOAD]).unwrap();
    let object = StructReader::any(payload)
        .unwrap()
        .items()
        .iter()
        .find(|i| i.tag == tag::SYMMETRIC_KEY || i.tag == tag::SECRET_DATA)
        .unwrap()
        .clone();
    let m = field(
        &object,
        &[tag::KEY_BLOCK, tag::KEY_VALUE, tag::KEY_MATERIAL],
    )
    .unwrap();
    hex::encode(as_bytes(m).unwrap())
}

fn failure(e: &Engine, v: (u8, u8), payload: &str) -> u32 {
    let it = one(e, v, "DeriveKey", payload);
    let (s, r) = status(&it);
    assert_eq!(s, result_status::OPERATION_FAILED, "{it:?}");
    r.unwrap()
}

/// Every (Link Type, Linked Object Identifier) of an object (1.4 GetAttributes).
fn links(e: &Engine, uid: &str) -> Vec<(u32, String)> {
    let it = one(
        e,
        (1, 4),
        "GetAttributes",
        &format!(
            r#"<UniqueIdentifier type="TextString" value="{uid}"/><AttributeName type="TextString" value="Link"/>"#
        ),
    );
    let payload = field(&it, &[tag::RESPONSE_PAYLOAD]).unwrap();
    StructReader::any(payload)
        .unwrap()
        .repeated(tag::ATTRIBUTE)
        .map(|a| {
            let v = field(a, &[tag::ATTRIBUTE_VALUE]).unwrap();
            (
                as_enum(field(v, &[tag::LINK_TYPE]).unwrap()).unwrap(),
                as_text(field(v, &[tag::LINKED_OBJECT_IDENTIFIER]).unwrap())
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect()
}

const SHA256: &str = r#"<CryptographicParameters><HashingAlgorithm type="Enumeration" value="SHA_256"/></CryptographicParameters>"#;
const KEY: &str = "00112233445566778899aabbccddeeff";

#[test]
fn hash_derivation_gives_the_tc_derivekey_1_value_with_links_both_ways() {
    let e = Engine::in_memory();
    let v = (1, 4);
    let base = register_key(&e, v, "AES", KEY, "Encrypt Decrypt DeriveKey");
    let new = uid(&one(
        &e,
        v,
        "DeriveKey",
        &derive(v, &[&base], "HASH", SHA256, Some("AES"), 128),
    ));
    assert_eq!(material(&e, v, &new), "a8faed6abbf35c12a4b26e40f6feb19d");
    assert_eq!(
        links(&e, &new),
        vec![(link_type::DERIVATION_BASE_OBJECT_LINK, base.clone())]
    );
    assert_eq!(links(&e, &base), vec![(link_type::DERIVED_KEY_LINK, new)]);
}

#[test]
fn hmac_derivation_uses_the_parameters_hash_unless_the_key_is_an_hmac_key() {
    let e = Engine::in_memory();
    let v = (2, 1);
    let aes = register_key(&e, v, "AES", KEY, "Encrypt Decrypt DeriveKey");
    let data = r#"<DerivationData type="ByteString" value="0102"/>"#;
    assert_eq!(
        derive_material(
            &e,
            v,
            &derive(
                v,
                &[&aes],
                "HMAC",
                &format!("{SHA256}{data}"),
                Some("AES"),
                128
            )
        ),
        "1e15c1f1da233629f770fb0a04a5020e"
    );
    // An HMAC-SHA256 key: its algorithm wins over the parameters' SHA-1. RFC 4231 case 2.
    let jefe = register_key(&e, v, "HMAC_SHA256", "4a656665", "MACGenerate DeriveKey");
    let sha1 = r#"<CryptographicParameters><HashingAlgorithm type="Enumeration" value="SHA_1"/></CryptographicParameters>"#;
    let what = hex::encode(b"what do ya want for nothing?");
    let params = format!(r#"{sha1}<DerivationData type="ByteString" value="{what}"/>"#);
    assert_eq!(
        derive_material(
            &e,
            v,
            &derive(v, &[&jefe], "HMAC", &params, Some("AES"), 256)
        ),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn pbkdf2_from_a_password_secret_gives_the_rfc_6070_and_tc_derivekey_values() {
    let e = Engine::in_memory();
    for v in [(1, 0), (1, 4), (2, 0), (2, 1)] {
        let pw = register_secret(&e, v, "70617373776f7264", "DeriveKey");
        let salt = r#"<Salt type="ByteString" value="73616c74"/>"#;
        let p1 = format!(r#"{salt}<IterationCount type="Integer" value="1"/>"#);
        assert_eq!(
            derive_material(&e, v, &derive(v, &[&pw], "PBKDF2", &p1, Some("AES"), 128)),
            "0c60c80f961f0e71f3a9b524af601206"
        );
        let p4096 = format!(r#"{salt}<IterationCount type="Integer" value="4096"/>"#);
        assert_eq!(
            derive_material(
                &e,
                v,
                &derive(v, &[&pw], "PBKDF2", &p4096, Some("AES"), 128)
            ),
            "4b007901b765489abead49d926f721d0"
        );
        let sha256 = format!("{SHA256}{p4096}");
        assert_eq!(
            derive_material(
                &e,
                v,
                &derive(v, &[&pw], "PBKDF2", &sha256, Some("AES"), 256)
            ),
            "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"
        );
        // Secret Data output: 20 bytes, the full RFC 6070 value.
        assert_eq!(
            derive_material(&e, v, &derive(v, &[&pw], "PBKDF2", &p1, None, 160)),
            "0c60c80f961f0e71f3a9b524af6012062fe037a6"
        );
        // Salt and Iteration Count are required; a zero count is refused.
        let missing = if v.0 >= 2 {
            rr::MISSING_DATA
        } else {
            rr::INVALID_FIELD
        };
        assert_eq!(
            failure(&e, v, &derive(v, &[&pw], "PBKDF2", salt, Some("AES"), 128)),
            missing
        );
        let zero = format!(r#"{salt}<IterationCount type="Integer" value="0"/>"#);
        assert_eq!(
            failure(&e, v, &derive(v, &[&pw], "PBKDF2", &zero, Some("AES"), 128)),
            rr::INVALID_FIELD
        );
    }
}

#[test]
fn hkdf_is_rfc_5869_case_1_in_2x_and_undefined_in_1x() {
    let e = Engine::in_memory();
    let v = (2, 1);
    let ikm = register_secret(&e, v, &"0b".repeat(22), "DeriveKey");
    let params = r#"<Salt type="ByteString" value="000102030405060708090a0b0c"/>
<DerivationData type="ByteString" value="f0f1f2f3f4f5f6f7f8f9"/>"#;
    assert_eq!(
        derive_material(&e, v, &derive(v, &[&ikm], "HKDF", params, None, 42 * 8)),
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    );
    let v1 = (1, 4);
    let ikm1 = register_secret(&e, v1, &"0b".repeat(22), "DeriveKey");
    // HKDF is a 2.0 value of Derivation Method: refused before any value check in 1.4.
    let it = one(
        &e,
        v1,
        "DeriveKey",
        &derive(v1, &[&ikm1], "HKDF", params, None, 336)
            .replace(r#"value="HKDF""#, r#"value="0x0000000A""#),
    );
    assert_eq!(
        status(&it),
        (result_status::OPERATION_FAILED, Some(rr::INVALID_FIELD))
    );
}

#[test]
fn encrypt_derivation_is_aes_ecb_of_the_data() {
    let e = Engine::in_memory();
    let v = (1, 4);
    let k = register_key(
        &e,
        v,
        "AES",
        "2b7e151628aed2a6abf7158809cf4f3c",
        "Encrypt DeriveKey",
    );
    let params = r#"<CryptographicParameters><BlockCipherMode type="Enumeration" value="ECB"/></CryptographicParameters>
<DerivationData type="ByteString" value="6bc1bee22e409f96e93d7e117393172a"/>"#;
    assert_eq!(
        derive_material(
            &e,
            v,
            &derive(v, &[&k], "ENCRYPT", params, Some("AES"), 128)
        ),
        "3ad77bb40d7a3660a89ecaf32466ef97"
    );
    // A stream mode would XOR every derivation data with one keystream: refused.
    let ctr = params.replace(r#"value="ECB""#, r#"value="CTR""#);
    assert_eq!(
        failure(&e, v, &derive(v, &[&k], "ENCRYPT", &ctr, Some("AES"), 128)),
        rr::INVALID_FIELD
    );
}

fn key_pair(e: &Engine, v: (u8, u8), curve: &str) -> (String, String) {
    let payload = format!(
        r#"<CommonTemplateAttribute>
<Attribute><AttributeName type="TextString" value="Cryptographic Algorithm"/><AttributeValue type="Enumeration" value="EC"/></Attribute>
<Attribute><AttributeName type="TextString" value="Cryptographic Domain Parameters"/><AttributeValue><RecommendedCurve type="Enumeration" value="{curve}"/></AttributeValue></Attribute>
<Attribute><AttributeName type="TextString" value="Activation Date"/><AttributeValue type="DateTime" value="{PAST}"/></Attribute>
</CommonTemplateAttribute>
<PrivateKeyTemplateAttribute><Attribute><AttributeName type="TextString" value="Cryptographic Usage Mask"/><AttributeValue type="Integer" value="DeriveKey Sign"/></Attribute></PrivateKeyTemplateAttribute>
<PublicKeyTemplateAttribute><Attribute><AttributeName type="TextString" value="Cryptographic Usage Mask"/><AttributeValue type="Integer" value="DeriveKey Verify"/></Attribute></PublicKeyTemplateAttribute>"#
    );
    let it = one(e, v, "CreateKeyPair", &payload);
    assert_eq!(status(&it).0, result_status::SUCCESS, "{it:?}");
    let p = field(&it, &[tag::RESPONSE_PAYLOAD]).unwrap();
    let text = |t| as_text(field(p, &[t]).unwrap()).unwrap().to_owned();
    (
        text(tag::PRIVATE_KEY_UNIQUE_IDENTIFIER),
        text(tag::PUBLIC_KEY_UNIQUE_IDENTIFIER),
    )
}

#[test]
fn ecdh_derivation_agrees_both_ways_on_secp256k1_and_p256() {
    let e = Engine::in_memory();
    let v = (1, 4);
    let ecdh = r#"<CryptographicParameters><CryptographicAlgorithm type="Enumeration" value="ECDH"/></CryptographicParameters>"#;
    for curve in ["SECP256K1", "P_256"] {
        let (priv1, pub1) = key_pair(&e, v, curve);
        let (priv2, pub2) = key_pair(&e, v, curve);
        let a = derive_material(
            &e,
            v,
            &derive(v, &[&priv1, &pub2], "AsymmetricKey", ecdh, Some("AES"), 256),
        );
        let b = derive_material(
            &e,
            v,
            &derive(v, &[&priv2, &pub1], "AsymmetricKey", ecdh, Some("AES"), 256),
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        // Two public keys make no shared secret.
        assert_eq!(
            failure(
                &e,
                v,
                &derive(v, &[&pub1, &pub2], "AsymmetricKey", ecdh, Some("AES"), 256)
            ),
            rr::INVALID_FIELD
        );
    }
}

#[test]
fn refusals() {
    let e = Engine::in_memory();
    let v = (2, 1);
    let data = r#"<DerivationData type="ByteString" value="0102"/>"#;
    // No Derive Key bit in the mask.
    let enc_only = register_key(&e, v, "AES", KEY, "Encrypt Decrypt");
    assert_eq!(
        failure(
            &e,
            v,
            &derive(v, &[&enc_only], "HASH", SHA256, Some("AES"), 128)
        ),
        rr::INCOMPATIBLE_CRYPTOGRAPHIC_USAGE_MASK
    );
    let k = register_key(&e, v, "AES", KEY, "DeriveKey");
    // Longer than SHA-256 gives.
    assert_eq!(
        failure(&e, v, &derive(v, &[&k], "HASH", SHA256, None, 264)),
        rr::INVALID_FIELD
    );
    // HASH without a Hashing Algorithm.
    assert_eq!(
        failure(&e, v, &derive(v, &[&k], "HASH", "", Some("AES"), 128)),
        rr::BAD_CRYPTOGRAPHIC_PARAMETERS
    );
    // Derivation Data and a Secret Data object both given.
    let s = register_secret(&e, v, "70617373776f7264", "DeriveKey");
    assert_eq!(
        failure(
            &e,
            v,
            &derive(
                v,
                &[&k, &s],
                "HMAC",
                &format!("{SHA256}{data}"),
                Some("AES"),
                128
            )
        ),
        rr::INVALID_MESSAGE
    );
    // The key with a Secret Data object as the HMAC data works.
    assert_eq!(
        derive_material(
            &e,
            v,
            &derive(v, &[&k, &s], "HMAC", SHA256, Some("AES"), 128)
        )
        .len(),
        32
    );
    // Not implemented methods.
    assert_eq!(
        failure(
            &e,
            v,
            &derive(v, &[&k], "NIST800_108_C", data, Some("AES"), 128)
        ),
        rr::FEATURE_NOT_SUPPORTED
    );
    // An AES key needs a valid AES length.
    assert_eq!(
        failure(&e, v, &derive(v, &[&k], "HASH", SHA256, Some("AES"), 100)),
        rr::INVALID_FIELD
    );
    // Another client's key is not found; a Pre-Active key is in the wrong state.
    let other = send(
        &e,
        "b",
        v,
        &item(
            "DeriveKey",
            &derive(v, &[&k], "HASH", SHA256, Some("AES"), 128),
        ),
    );
    assert_eq!(
        status(&other[0]),
        (result_status::OPERATION_FAILED, Some(rr::OBJECT_NOT_FOUND))
    );
    let pre = uid(&one(
        &e,
        v,
        "Register",
        &format!(
            r#"<ObjectType type="Enumeration" value="SymmetricKey"/>
<Attributes><CryptographicUsageMask type="Integer" value="DeriveKey"/></Attributes>
<SymmetricKey><KeyBlock><KeyFormatType type="Enumeration" value="Raw"/>
<KeyValue><KeyMaterial type="ByteString" value="{KEY}"/></KeyValue>
<CryptographicAlgorithm type="Enumeration" value="AES"/>
<CryptographicLength type="Integer" value="128"/></KeyBlock></SymmetricKey>"#
        ),
    ));
    assert_eq!(
        failure(&e, v, &derive(v, &[&pre], "HASH", SHA256, Some("AES"), 128)),
        rr::WRONG_KEY_LIFECYCLE_STATE
    );
    // The ID Placeholder is not a base object: no Unique Identifier is Missing Data.
    assert_eq!(
        failure(&e, v, &derive(v, &[], "HASH", SHA256, Some("AES"), 128)),
        rr::MISSING_DATA
    );
}

#[test]
fn obtain_lease_gives_the_lease_time_and_last_change_date_and_none_for_compromised_keys() {
    let e = Engine::in_memory();
    for v in [(1, 0), (1, 2), (2, 1)] {
        let k = register_key(&e, v, "AES", KEY, "Encrypt Decrypt");
        let lease = one(
            &e,
            v,
            "ObtainLease",
            &format!(r#"<UniqueIdentifier type="TextString" value="{k}"/>"#),
        );
        assert_eq!(uid(&lease), k);
        let p = field(&lease, &[tag::RESPONSE_PAYLOAD]).unwrap();
        assert_eq!(
            field(p, &[tag::LEASE_TIME]).unwrap().value,
            Value::Interval(3600)
        );
        assert!(matches!(
            field(p, &[tag::LAST_CHANGE_DATE]).unwrap().value,
            Value::DateTime(d) if d > 1_600_000_000
        ));
        // Another client sees nothing.
        let other = send(
            &e,
            "b",
            v,
            &item(
                "ObtainLease",
                &format!(r#"<UniqueIdentifier type="TextString" value="{k}"/>"#),
            ),
        );
        let not_found = if v >= (2, 1) {
            rr::OBJECT_NOT_FOUND
        } else {
            rr::ITEM_NOT_FOUND
        };
        assert_eq!(
            status(&other[0]),
            (result_status::OPERATION_FAILED, Some(not_found))
        );
        // Compromised: no lease.
        let revoke = one(
            &e,
            v,
            "Revoke",
            &format!(
                r#"<UniqueIdentifier type="TextString" value="{k}"/>
<RevocationReason><RevocationReasonCode type="Enumeration" value="KeyCompromise"/></RevocationReason>
<CompromiseOccurrenceDate type="DateTime" value="{PAST}"/>"#
            ),
        );
        assert_eq!(status(&revoke).0, result_status::SUCCESS, "{revoke:?}");
        let denied = one(
            &e,
            v,
            "ObtainLease",
            &format!(r#"<UniqueIdentifier type="TextString" value="{k}"/>"#),
        );
        assert_eq!(
            status(&denied),
            (result_status::OPERATION_FAILED, Some(rr::PERMISSION_DENIED))
        );
    }
}
