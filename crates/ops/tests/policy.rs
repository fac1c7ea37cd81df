//! The server policy through the public engine: the recommended algorithm rules refuse 3DES,
//! RSA-1024 and secp256k1 in every creating operation (Permission Denied, the rule named) and
//! allow AES, RSA-2048 and P-256; a key made before a rule keeps working; a default usage mask;
//! a crypto period sets the Deactivation Date at creation and the key leaves the Active state on
//! time (injected clock); `set_policy` replaces the rules for the next request.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use kmipd_ops::policy::AlgorithmRule;
use kmipd_ops::{Clock, Engine, EngineConfig, Policy, Principal};
use kmipd_proto::enums::{
    cryptographic_algorithm as alg, cryptographic_usage_mask as usage, object_type as ot,
    result_reason, result_status, state,
};
use kmipd_proto::reader::as_text;
use kmipd_proto::tag;
use kmipd_store::MemoryStore;
use kmipd_ttlv::{Ttlv, Value};

use engine::{batch_items, field, result_message as message, status, xml_request};
use kmipd_test_support::engine;

const DAY: i64 = 86_400;
const T0: i64 = 1_800_000_000;

/// An engine with `policy` and a clock the test moves.
fn engine(policy: Policy) -> (Engine, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(T0));
    let clock = now.clone();
    let config = EngineConfig {
        clock: Clock::from_fn(move || clock.load(Ordering::SeqCst)),
        policy,
        ..EngineConfig::default()
    };
    (Engine::new(Arc::new(MemoryStore::new()), config), now)
}

fn one(e: &Engine, op: &str, payload: &str) -> Ttlv {
    let item = format!(
        r#"<BatchItem><Operation type="Enumeration" value="{op}"/><RequestPayload>{payload}</RequestPayload></BatchItem>"#
    );
    batch_items(&e.handle_message(&Principal::new("a"), &xml_request((2, 1), &item))).remove(0)
}

fn ok_text(it: &Ttlv, t: kmipd_ttlv::Tag) -> String {
    assert_eq!(status(it), (result_status::SUCCESS, None), "{it:?}");
    as_text(field(it, &[tag::RESPONSE_PAYLOAD, t]).unwrap())
        .unwrap()
        .to_owned()
}

/// Asserts a refusal by the policy whose message contains `rule`.
fn refused(it: &Ttlv, rule: &str) {
    assert_eq!(
        status(it),
        (
            result_status::OPERATION_FAILED,
            Some(result_reason::PERMISSION_DENIED)
        ),
        "{it:?}"
    );
    let m = message(it);
    assert!(m.starts_with("policy: ") && m.contains(rule), "{m}");
}

fn create(algorithm: &str, bits: u32, extra: &str) -> String {
    format!(
        r#"<ObjectType type="Enumeration" value="SymmetricKey"/><Attributes><CryptographicAlgorithm type="Enumeration" value="{algorithm}"/><CryptographicLength type="Integer" value="{bits}"/><CryptographicUsageMask type="Integer" value="Encrypt Decrypt"/>{extra}</Attributes>"#
    )
}

fn rsa_pair(bits: u32) -> String {
    format!(
        r#"<CommonAttributes><CryptographicAlgorithm type="Enumeration" value="RSA"/><CryptographicLength type="Integer" value="{bits}"/></CommonAttributes><PrivateKeyAttributes><CryptographicUsageMask type="Integer" value="Sign"/></PrivateKeyAttributes><PublicKeyAttributes><CryptographicUsageMask type="Integer" value="Verify"/></PublicKeyAttributes>"#
    )
}

fn ec_pair(curve: &str) -> String {
    format!(
        r#"<CommonAttributes><CryptographicAlgorithm type="Enumeration" value="EC"/><RecommendedCurve type="Enumeration" value="{curve}"/></CommonAttributes><PrivateKeyAttributes><CryptographicUsageMask type="Integer" value="Sign"/></PrivateKeyAttributes><PublicKeyAttributes><CryptographicUsageMask type="Integer" value="Verify"/></PublicKeyAttributes>"#
    )
}

fn u(uid: &str) -> String {
    format!(r#"<UniqueIdentifier type="TextString" value="{uid}"/>"#)
}

fn attribute(e: &Engine, uid: &str, t: kmipd_ttlv::Tag) -> Option<Value> {
    let it = one(e, "GetAttributes", &u(uid));
    assert_eq!(status(&it), (result_status::SUCCESS, None), "{it:?}");
    field(&it, &[tag::RESPONSE_PAYLOAD, tag::ATTRIBUTES, t]).map(|a| a.value.clone())
}

#[test]
fn the_recommended_rules_refuse_legacy_keys_in_every_creating_operation() {
    let (e, _) = engine(Policy::recommended());
    refused(
        &one(&e, "Create", &create("DES3", 168, "")),
        "DES3 is not an allowed algorithm for a new SymmetricKey",
    );
    refused(
        &one(&e, "Create", &create("DES", 64, "")),
        "DES is not an allowed",
    );
    refused(
        &one(&e, "CreateKeyPair", &rsa_pair(1024)),
        "RSA keys need at least 2048 bits (policy.allow; this key: 1024 bits)",
    );
    refused(
        &one(&e, "CreateKeyPair", &ec_pair("SECP256K1")),
        "EC keys must be on P_256, P_384, P_521 (policy.allow; this key: SECP256K1)",
    );
    // Register of a 3DES key: the same rule.
    let des3 = r#"<ObjectType type="Enumeration" value="SymmetricKey"/><Attributes><CryptographicUsageMask type="Integer" value="Encrypt Decrypt"/></Attributes><SymmetricKey><KeyBlock><KeyFormatType type="Enumeration" value="Raw"/><KeyValue><KeyMaterial type="ByteString" value="0123456789abcdeffedcba987654321089abcdef01234567"/></KeyValue><CryptographicAlgorithm type="Enumeration" value="DES3"/><CryptographicLength type="Integer" value="192"/></KeyBlock></SymmetricKey>"#;
    refused(&one(&e, "Register", des3), "DES3 is not an allowed");
    // Nothing was stored by the refusals: Locate finds nothing.
    let located = one(&e, "Locate", "");
    assert_eq!(status(&located), (result_status::SUCCESS, None));
    assert!(field(&located, &[tag::RESPONSE_PAYLOAD, tag::UNIQUE_IDENTIFIER]).is_none());
    // What the rules allow.
    for bits in [128, 192, 256] {
        ok_text(
            &one(&e, "Create", &create("AES", bits, "")),
            tag::UNIQUE_IDENTIFIER,
        );
    }
    ok_text(
        &one(&e, "CreateKeyPair", &rsa_pair(2048)),
        tag::PRIVATE_KEY_UNIQUE_IDENTIFIER,
    );
    ok_text(
        &one(&e, "CreateKeyPair", &ec_pair("P_384")),
        tag::PRIVATE_KEY_UNIQUE_IDENTIFIER,
    );
    // Secret Data has no algorithm rule.
    let secret = r#"<ObjectType type="Enumeration" value="SecretData"/><Attributes><CryptographicLength type="Integer" value="256"/></Attributes>"#;
    ok_text(&one(&e, "Create", secret), tag::UNIQUE_IDENTIFIER);
}

#[test]
fn a_key_made_before_the_rule_keeps_working_but_is_not_renewed() {
    let (e, _) = engine(Policy::unrestricted());
    let key = ok_text(
        &one(
            &e,
            "Create",
            &create(
                "DES3",
                168,
                r#"<ActivationDate type="DateTime" value="2001-01-01T00:00:00+00:00"/>"#,
            ),
        ),
        tag::UNIQUE_IDENTIFIER,
    );
    let ecb = r#"<CryptographicParameters><BlockCipherMode type="Enumeration" value="ECB"/><PaddingMethod type="Enumeration" value="None"/></CryptographicParameters><Data type="ByteString" value="0001020304050607"/>"#;
    e.set_policy(Policy::recommended());
    // Decryption (and encryption, which the policy does not govern) with the existing key.
    let enc = one(&e, "Encrypt", &format!("{}{ecb}", u(&key)));
    assert_eq!(status(&enc), (result_status::SUCCESS, None), "{enc:?}");
    let dec = one(&e, "Decrypt", &format!("{}{ecb}", u(&key)));
    assert_eq!(status(&dec), (result_status::SUCCESS, None), "{dec:?}");
    // Re-Key would make a new 3DES key: refused, and the existing key is left as it was.
    refused(&one(&e, "ReKey", &u(&key)), "DES3 is not an allowed");
    assert_eq!(attribute(&e, &key, tag::LINK), None);
    // Back to no rule: the same request succeeds.
    e.set_policy(Policy::unrestricted());
    ok_text(&one(&e, "ReKey", &u(&key)), tag::UNIQUE_IDENTIFIER);
}

#[test]
fn a_configured_rule_list_replaces_the_recommended_one() {
    let (e, _) = engine(Policy {
        allow: Some(vec![AlgorithmRule {
            object_types: vec![ot::SYMMETRIC_KEY],
            algorithm: alg::AES,
            lengths: vec![256],
            min_length: None,
            curves: Vec::new(),
        }]),
        ..Policy::default()
    });
    refused(
        &one(&e, "Create", &create("AES", 128, "")),
        "AES keys must be 256 bits long (policy.allow; this key: 128 bits)",
    );
    ok_text(
        &one(&e, "Create", &create("AES", 256, "")),
        tag::UNIQUE_IDENTIFIER,
    );
    refused(
        &one(&e, "CreateKeyPair", &rsa_pair(2048)),
        "RSA is not an allowed algorithm for a new PrivateKey",
    );
}

#[test]
fn a_default_usage_mask_for_objects_created_without_one() {
    let (e, _) = engine(Policy {
        usage_masks: vec![(
            ot::SYMMETRIC_KEY,
            usage::ENCRYPT | usage::DECRYPT | usage::WRAP_KEY,
        )],
        ..Policy::default()
    });
    let bare = r#"<ObjectType type="Enumeration" value="SymmetricKey"/><Attributes><CryptographicAlgorithm type="Enumeration" value="AES"/><CryptographicLength type="Integer" value="256"/></Attributes>"#;
    let key = ok_text(&one(&e, "Create", bare), tag::UNIQUE_IDENTIFIER);
    let mask = usage::ENCRYPT | usage::DECRYPT | usage::WRAP_KEY;
    assert_eq!(
        attribute(&e, &key, tag::CRYPTOGRAPHIC_USAGE_MASK),
        Some(Value::Integer(i32::try_from(mask).unwrap()))
    );
    // A mask the client gives is kept.
    let given = ok_text(
        &one(&e, "Create", &create("AES", 256, "")),
        tag::UNIQUE_IDENTIFIER,
    );
    assert_eq!(
        attribute(&e, &given, tag::CRYPTOGRAPHIC_USAGE_MASK),
        Some(Value::Integer(
            i32::try_from(usage::ENCRYPT | usage::DECRYPT).unwrap()
        ))
    );
}

#[test]
fn a_crypto_period_sets_the_deactivation_date_and_the_key_leaves_active_on_time() {
    let (e, now) = engine(Policy {
        crypto_periods: vec![(ot::SYMMETRIC_KEY, 90 * DAY)],
        ..Policy::default()
    });
    let date = |d: i64| {
        let t = time::OffsetDateTime::from_unix_timestamp(d).unwrap();
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    // Activated at creation: deactivated 90 days later.
    let active = ok_text(
        &one(
            &e,
            "Create",
            &create(
                "AES",
                256,
                &format!(r#"<ActivationDate type="DateTime" value="{}"/>"#, date(T0)),
            ),
        ),
        tag::UNIQUE_IDENTIFIER,
    );
    assert_eq!(
        attribute(&e, &active, tag::DEACTIVATION_DATE),
        Some(Value::DateTime(T0 + 90 * DAY))
    );
    // A later date the client asked for is pulled in; an earlier one is kept; a Protect Stop
    // Date past the end is pulled in too.
    let later = ok_text(
        &one(
            &e,
            "Create",
            &create(
                "AES",
                256,
                &format!(
                    r#"<DeactivationDate type="DateTime" value="{}"/><ProtectStopDate type="DateTime" value="{}"/>"#,
                    date(T0 + 400 * DAY),
                    date(T0 + 300 * DAY)
                ),
            ),
        ),
        tag::UNIQUE_IDENTIFIER,
    );
    assert_eq!(
        attribute(&e, &later, tag::DEACTIVATION_DATE),
        Some(Value::DateTime(T0 + 90 * DAY))
    );
    assert_eq!(
        attribute(&e, &later, tag::PROTECT_STOP_DATE),
        Some(Value::DateTime(T0 + 90 * DAY))
    );
    let earlier = ok_text(
        &one(
            &e,
            "Create",
            &create(
                "AES",
                256,
                &format!(
                    r#"<DeactivationDate type="DateTime" value="{}"/>"#,
                    date(T0 + 10 * DAY)
                ),
            ),
        ),
        tag::UNIQUE_IDENTIFIER,
    );
    assert_eq!(
        attribute(&e, &earlier, tag::DEACTIVATION_DATE),
        Some(Value::DateTime(T0 + 10 * DAY))
    );
    // Other object types have no period here.
    let pair = one(&e, "CreateKeyPair", &ec_pair("P_256"));
    let private = ok_text(&pair, tag::PRIVATE_KEY_UNIQUE_IDENTIFIER);
    assert_eq!(attribute(&e, &private, tag::DEACTIVATION_DATE), None);
    // The clock moves: the key is Active until the date, Deactivated from it.
    let state_of = |uid: &str| attribute(&e, uid, tag::STATE);
    now.store(T0 + 90 * DAY - 1, Ordering::SeqCst);
    assert_eq!(state_of(&active), Some(Value::Enumeration(state::ACTIVE)));
    now.store(T0 + 90 * DAY, Ordering::SeqCst);
    assert_eq!(
        state_of(&active),
        Some(Value::Enumeration(state::DEACTIVATED))
    );
    // Deactivated: no more encryption with it.
    let ecb = r#"<CryptographicParameters><BlockCipherMode type="Enumeration" value="ECB"/><PaddingMethod type="Enumeration" value="None"/></CryptographicParameters><Data type="ByteString" value="000102030405060708090a0b0c0d0e0f"/>"#;
    let enc = one(&e, "Encrypt", &format!("{}{ecb}", u(&active)));
    assert_eq!(status(&enc).0, result_status::OPERATION_FAILED);
}
