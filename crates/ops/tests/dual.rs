//! Dual control through the public engine (`kmipd_ops::dual`): an object of a dual control
//! Object Group, or marked by an administrator, is destroyed, exported or unmarked only after a
//! second, different administrator approved the requester's request (admin call or the same
//! KMIP request); self-approvals and expired requests/approvals are refused (injected clock);
//! the pending request is in the store, so a second engine on the same store approves it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use kmipd_ops::{Clock, Engine, EngineConfig, Policy, Principal};
use kmipd_proto::enums::{result_reason, result_status};
use kmipd_proto::reader::{as_enum, as_text};
use kmipd_proto::tag;
use kmipd_store::{MemoryStore, ObjectStore};
use kmipd_ttlv::Ttlv;

use engine::{batch_items, field, result_message as message, status, xml_request};
use kmipd_test_support::engine;

const T0: i64 = 1_800_000_000;
const WINDOW: i64 = 600;

fn policy() -> Policy {
    Policy {
        dual_control_groups: vec!["vault".into()],
        dual_control_window: Some(WINDOW),
        ..Policy::default()
    }
}

/// An engine over `store` with the dual control policy and a clock the test moves.
fn engine_on(store: Arc<dyn ObjectStore>, now: &Arc<AtomicI64>) -> Engine {
    let clock = now.clone();
    let config = EngineConfig {
        clock: Clock::from_fn(move || clock.load(Ordering::SeqCst)),
        policy: policy(),
        ..EngineConfig::default()
    };
    Engine::new(store, config)
}

fn setup() -> (Engine, Arc<dyn ObjectStore>, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(T0));
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    (engine_on(store.clone(), &now), store, now)
}

fn one(e: &Engine, who: &Principal, op: &str, payload: &str) -> Ttlv {
    let item = format!(
        r#"<BatchItem><Operation type="Enumeration" value="{op}"/><RequestPayload>{payload}</RequestPayload></BatchItem>"#
    );
    batch_items(&e.handle_message(who, &xml_request((2, 1), &item))).remove(0)
}

fn ok(it: &Ttlv) {
    assert_eq!(status(it), (result_status::SUCCESS, None), "{it:?}");
}

/// Asserts a dual control refusal whose message contains `text`; the request id it names.
fn refused(it: &Ttlv, text: &str) -> String {
    assert_eq!(
        status(it),
        (
            result_status::OPERATION_FAILED,
            Some(result_reason::PERMISSION_DENIED)
        ),
        "{it:?}"
    );
    let m = message(it);
    assert!(m.starts_with("dual control: ") && m.contains(text), "{m}");
    m.split_whitespace()
        .skip_while(|w| *w != "request")
        .nth(1)
        .unwrap()
        .to_owned()
}

fn u(uid: &str) -> String {
    format!(r#"<UniqueIdentifier type="TextString" value="{uid}"/>"#)
}

/// A new AES key, in Object Group `group` when given; its identifier.
fn create(e: &Engine, who: &Principal, group: Option<&str>) -> String {
    let group = group.map_or_else(String::new, |g| {
        format!(r#"<ObjectGroup type="TextString" value="{g}"/>"#)
    });
    let it = one(
        e,
        who,
        "Create",
        &format!(
            r#"<ObjectType type="Enumeration" value="SymmetricKey"/><Attributes><CryptographicAlgorithm type="Enumeration" value="AES"/><CryptographicLength type="Integer" value="256"/><CryptographicUsageMask type="Integer" value="Encrypt Decrypt"/>{group}</Attributes>"#
        ),
    );
    ok(&it);
    as_text(field(&it, &[tag::RESPONSE_PAYLOAD, tag::UNIQUE_IDENTIFIER]).unwrap())
        .unwrap()
        .to_owned()
}

fn get(e: &Engine, who: &Principal, uid: &str) -> Ttlv {
    one(e, who, "Get", &u(uid))
}

#[test]
fn get_and_destroy_need_a_second_administrator() {
    let (e, _, now) = setup();
    let alice = Principal::admin("alice");
    let bob = Principal::admin("bob");
    let uid = create(&e, &alice, Some("vault"));
    let plain = create(&e, &alice, None);
    ok(&get(&e, &alice, &plain));

    // Get: refused with a request id; the same request again names the same id.
    let id = refused(
        &get(&e, &alice, &uid),
        "needs the approval of a second administrator",
    );
    assert!(id.starts_with(&format!("{uid}.")), "{id}");
    assert_eq!(refused(&get(&e, &alice, &uid), "awaits approval"), id);
    // Self-approval refused; bob's approval through the admin call works once.
    let self_approval = e.approve_dual(&alice, &id).unwrap_err().to_string();
    assert!(self_approval.contains("self-approval"), "{self_approval}");
    let approved = e.approve_dual(&bob, &id).unwrap();
    assert!(
        approved.contains("approved") && approved.contains("alice"),
        "{approved}"
    );
    assert!(e.approve_dual(&bob, &id).is_err(), "approved twice");
    // Alice's retry completes, once: the approval is used up.
    ok(&get(&e, &alice, &uid));
    refused(&get(&e, &alice, &uid), "needs the approval");

    // Destroy (of the Pre-Active key): approved by bob's own identical KMIP request.
    let id = refused(&one(&e, &alice, "Destroy", &u(&uid)), "needs the approval");
    assert_eq!(
        refused(&one(&e, &bob, "Destroy", &u(&uid)), "approved request"),
        id
    );
    // Not destroyed by bob's approving request.
    now.fetch_add(WINDOW - 1, Ordering::SeqCst);
    ok(&one(&e, &alice, "Destroy", &u(&uid)));
    let it = get(&e, &alice, &uid);
    assert_eq!(
        status(&it).1,
        Some(result_reason::OBJECT_DESTROYED),
        "{it:?}"
    );
}

#[test]
fn expired_requests_and_approvals_are_refused() {
    let (e, _, now) = setup();
    let alice = Principal::new("alice");
    let bob = Principal::admin("bob");
    let uid = create(&e, &alice, Some("vault"));
    // A client's request, not approved in time: the approval is refused and the request gone.
    let id = refused(&get(&e, &alice, &uid), "needs the approval");
    now.fetch_add(WINDOW + 1, Ordering::SeqCst);
    let late = e.approve_dual(&bob, &id).unwrap_err().to_string();
    assert!(late.contains("expired"), "{late}");
    assert!(e.approve_dual(&bob, &id).is_err());
    // A new request, approved, but the retry comes too late: refused, a new request instead.
    let id2 = refused(&get(&e, &alice, &uid), "needs the approval");
    assert_ne!(id2, id);
    e.approve_dual(&bob, &id2).unwrap();
    now.fetch_add(WINDOW + 1, Ordering::SeqCst);
    let it = get(&e, &alice, &uid);
    let id3 = refused(&it, "needs the approval");
    assert!(
        message(&it).contains(&format!("expired and dropped: {id2}")),
        "{}",
        message(&it)
    );
    assert_ne!(id3, id2);
    // Only an administrator approves.
    assert!(e.approve_dual(&Principal::new("carol"), &id3).is_err());
}

#[test]
fn an_administrators_mark_and_its_removal_and_a_second_node() {
    let (e, store, now) = setup();
    let alice = Principal::admin("alice");
    let bob = Principal::admin("bob");
    let client = Principal::new("client");
    let uid = create(&e, &client, None);
    ok(&get(&e, &client, &uid));
    // Only an administrator marks; clients cannot add the server's attribute themselves.
    assert!(e.set_dual_control(&client, &uid).is_err());
    assert!(e.set_dual_control(&alice, &uid).unwrap());
    let id = refused(&get(&e, &client, &uid), "needs the approval");
    // A second engine on the same store (another node) sees the request and approves it.
    let node2 = engine_on(store, &now);
    node2.approve_dual(&bob, &id).unwrap();
    ok(&get(&e, &client, &uid));

    // Removing the mark: a client may not; an administrator needs a second one.
    let remove = format!(
        r#"{}<AttributeReference><VendorIdentification type="TextString" value=""/><AttributeName type="TextString" value="y-kmipd-dual-control"/></AttributeReference>"#,
        u(&uid)
    );
    let it = one(&e, &client, "DeleteAttribute", &remove);
    assert_eq!(
        status(&it).1,
        Some(result_reason::PERMISSION_DENIED),
        "{it:?}"
    );
    let id = refused(
        &one(&e, &alice, "DeleteAttribute", &remove),
        "needs the approval",
    );
    refused(
        &one(&e, &bob, "DeleteAttribute", &remove),
        "approved request",
    );
    assert!(e.approve_dual(&bob, &id).is_err(), "already approved");
    ok(&one(&e, &alice, "DeleteAttribute", &remove));
    // Unmarked: the client's Get needs nobody.
    ok(&get(&e, &client, &uid));
}

#[test]
fn a_replacement_keeps_the_mark_but_not_the_approvals() {
    let (e, _, _) = setup();
    let bob = Principal::admin("bob");
    let client = Principal::new("client");
    let uid = create(&e, &client, None);
    e.set_dual_control(&bob, &uid).unwrap();
    let id = refused(&get(&e, &client, &uid), "needs the approval");
    e.approve_dual(&bob, &id).unwrap();
    let it = one(&e, &client, "ReKey", &u(&uid));
    ok(&it);
    let new = as_text(field(&it, &[tag::RESPONSE_PAYLOAD, tag::UNIQUE_IDENTIFIER]).unwrap())
        .unwrap()
        .to_owned();
    assert_ne!(new, uid);
    // The approval was for the old key: the replacement needs its own.
    let id2 = refused(&get(&e, &client, &new), "needs the approval of a second");
    assert!(id2.starts_with(&format!("{new}.")), "{id2}");
    ok(&get(&e, &client, &uid));
}

#[test]
fn an_undone_batch_keeps_the_request_but_not_its_other_changes() {
    use kmipd_proto::enums::batch_error_continuation as bec;
    use kmipd_ttlv::Value;
    let (e, _, _) = setup();
    let alice = Principal::admin("alice");
    let bob = Principal::admin("bob");
    let uid = create(&e, &alice, Some("vault"));
    let items = format!(
        r#"<BatchItem><Operation type="Enumeration" value="AddAttribute"/><RequestPayload>{}<NewAttribute><Attribute><AttributeName type="TextString" value="x-note"/><AttributeValue type="TextString" value="undone"/></Attribute></NewAttribute></RequestPayload></BatchItem><BatchItem><Operation type="Enumeration" value="Get"/><RequestPayload>{}</RequestPayload></BatchItem>"#,
        u(&uid),
        u(&uid)
    );
    let mut request = xml_request((2, 1), &items);
    let Value::Structure(parts) = &mut request.value else {
        panic!("not a structure")
    };
    let Value::Structure(header) = &mut parts[0].value else {
        panic!("no header")
    };
    let count = header.pop().unwrap();
    header.push(Ttlv::new(
        tag::BATCH_ERROR_CONTINUATION_OPTION,
        Value::Enumeration(bec::UNDO),
    ));
    header.push(count);
    let answers = batch_items(&e.handle_message(&alice, &request));
    assert_eq!(
        as_enum(field(&answers[0], &[tag::RESULT_STATUS]).unwrap()).unwrap(),
        result_status::OPERATION_UNDONE
    );
    let id = refused(&answers[1], "needs the approval");
    // The request was stored (bob approves it), the undone attribute was not.
    e.approve_dual(&bob, &id).unwrap();
    let it = one(&e, &alice, "GetAttributes", &u(&uid));
    ok(&it);
    let text = format!("{it:?}");
    assert!(!text.contains("undone"), "{text}");
    ok(&get(&e, &alice, &uid));
}
