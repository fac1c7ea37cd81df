//! Create Split Key and Join Split Key through the Engine: a registered key split into shares
//! (Split Key objects, linked), joined back from any threshold subset, refused below it; XOR
//! needs every part; another identity cannot use the shares.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use kmipd_ops::{Engine, Principal};
use kmipd_proto::enums::{result_reason as rr, result_status as rs};
use kmipd_proto::reader::{StructReader, as_text};
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use engine::{batch_items, field, status, xml_request};
use kmipd_test_support::engine;

const KEY: &str = "00112233445566778899aabbccddeeff";

fn register() -> String {
    format!(
        r#"<BatchItem><Operation type="Enumeration" value="Register"/><RequestPayload>
<ObjectType type="Enumeration" value="SymmetricKey"/><Attributes/>
<SymmetricKey><KeyBlock><KeyFormatType type="Enumeration" value="Raw"/>
<KeyValue><KeyMaterial type="ByteString" value="{KEY}"/></KeyValue>
<CryptographicAlgorithm type="Enumeration" value="AES"/>
<CryptographicLength type="Integer" value="128"/></KeyBlock></SymmetricKey>
</RequestPayload></BatchItem>"#
    )
}

fn split(key: &str, parts: i32, threshold: i32, method: &str) -> String {
    format!(
        r#"<BatchItem><Operation type="Enumeration" value="CreateSplitKey"/><RequestPayload>
<ObjectType type="Enumeration" value="SplitKey"/><UniqueIdentifier type="TextString" value="{key}"/>
<SplitKeyParts type="Integer" value="{parts}"/>
<SplitKeyThreshold type="Integer" value="{threshold}"/>
<SplitKeyMethod type="Enumeration" value="{method}"/><Attributes/>
</RequestPayload></BatchItem>"#
    )
}

fn join(uids: &[&str]) -> String {
    let ids: String = uids
        .iter()
        .map(|u| format!(r#"<UniqueIdentifier type="TextString" value="{u}"/>"#))
        .collect();
    format!(
        r#"<BatchItem><Operation type="Enumeration" value="JoinSplitKey"/><RequestPayload>
<ObjectType type="Enumeration" value="SymmetricKey"/>{ids}</RequestPayload></BatchItem>"#
    )
}

fn get() -> &'static str {
    r#"<BatchItem><Operation type="Enumeration" value="Get"/><RequestPayload/></BatchItem>"#
}

fn uids(item: &Ttlv) -> Vec<String> {
    let p = field(item, &[tag::RESPONSE_PAYLOAD]).unwrap();
    StructReader::any(p)
        .unwrap()
        .repeated(tag::UNIQUE_IDENTIFIER)
        .map(|u| as_text(u).unwrap().to_owned())
        .collect()
}

fn material(get: &Ttlv) -> String {
    let p = field(get, &[tag::RESPONSE_PAYLOAD]).unwrap();
    let mut found = None;
    p.walk(&mut |i, _| {
        if i.tag == tag::KEY_MATERIAL {
            found = Some(hex::encode(kmipd_proto::reader::as_bytes(i).unwrap()));
        }
    });
    found.unwrap()
}

/// Registers the key, returns its identifier.
fn registered(engine: &Engine, who: &Principal) -> String {
    let resp = engine.handle_message(who, &xml_request((2, 1), &register()));
    uids(&batch_items(&resp)[0]).remove(0)
}

#[test]
fn polynomial_shares_join_from_any_threshold_subset_and_not_below() {
    let engine = Engine::in_memory();
    let who = Principal::new("a");
    let key = registered(&engine, &who);
    let resp = engine.handle_message(
        &who,
        &xml_request(
            (2, 1),
            &format!("{}{}", split(&key, 5, 3, "PolynomialSharingGF2_8"), get()),
        ),
    );
    let it = batch_items(&resp);
    let shares = uids(&it[0]);
    assert_eq!(shares.len(), 5);
    // The ID Placeholder is part 1: a Split Key whose share is not the key.
    let part1 = field(&it[1], &[tag::RESPONSE_PAYLOAD, tag::SPLIT_KEY]).unwrap();
    let r = StructReader::any(part1).unwrap();
    assert_eq!(r.req_int(tag::KEY_PART_IDENTIFIER).unwrap(), 1);
    assert_eq!(r.req_int(tag::SPLIT_KEY_THRESHOLD).unwrap(), 3);
    assert_ne!(material(&it[1]), KEY);

    for pick in [[0, 1, 2], [4, 2, 0], [1, 3, 4]] {
        let chosen: Vec<&str> = pick.iter().map(|i| shares[*i].as_str()).collect();
        let resp = engine.handle_message(
            &who,
            &xml_request((2, 1), &format!("{}{}", join(&chosen), get())),
        );
        let it = batch_items(&resp);
        assert_eq!(material(&it[1]), KEY, "{pick:?}");
    }
    let resp = engine.handle_message(&who, &xml_request((1, 4), &join(&[&shares[0], &shares[4]])));
    assert_eq!(
        status(&batch_items(&resp)[0]),
        (rs::OPERATION_FAILED, Some(rr::CRYPTOGRAPHIC_FAILURE))
    );
    // Shares are the caller's: another identity does not see them.
    let resp = engine.handle_message(
        &Principal::new("b"),
        &xml_request((2, 1), &join(&[&shares[0], &shares[1], &shares[2]])),
    );
    assert_eq!(status(&batch_items(&resp)[0]).0, rs::OPERATION_FAILED);
}

#[test]
fn xor_needs_every_part_and_other_methods_are_refused() {
    let engine = Engine::in_memory();
    let who = Principal::new("a");
    let key = registered(&engine, &who);
    let resp = engine.handle_message(&who, &xml_request((2, 1), &split(&key, 3, 3, "XOR")));
    let shares = uids(&batch_items(&resp)[0]);
    let resp = engine.handle_message(
        &who,
        &xml_request(
            (2, 1),
            &format!("{}{}", join(&[&shares[2], &shares[0], &shares[1]]), get()),
        ),
    );
    assert_eq!(material(&batch_items(&resp)[1]), KEY);
    let resp = engine.handle_message(&who, &xml_request((2, 1), &join(&[&shares[0], &shares[1]])));
    assert_eq!(
        status(&batch_items(&resp)[0]).1,
        Some(rr::CRYPTOGRAPHIC_FAILURE)
    );

    for (request, reason) in [
        (split(&key, 3, 2, "XOR"), rr::INVALID_FIELD),
        (
            split(&key, 3, 2, "PolynomialSharingGF2_16"),
            rr::FEATURE_NOT_SUPPORTED,
        ),
    ] {
        let resp = engine.handle_message(&who, &xml_request((2, 1), &request));
        assert_eq!(status(&batch_items(&resp)[0]).1, Some(reason), "{request}");
    }
}
