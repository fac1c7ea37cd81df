//! Automatic rotation through the public engine, with an injected clock: not due before the
//! Rotate Interval, rotated at it (Re-Key semantics: Names move, links, Rotate Generation,
//! Latest and Date, the owner kept), a key pair rotated as a pair, a failed rotation changing
//! nothing and succeeding at the next run, two schedulers on one store rotating each object
//! exactly once, and the policy's Rotate Interval per object type.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use kmipd_ops::rotation::Outcome;
use kmipd_ops::{Clock, Engine, EngineConfig, Policy, Principal};
use kmipd_proto::enums::{link_type, object_type as ot, operation as op, result_status};
use kmipd_proto::reader::{as_enum, as_text};
use kmipd_proto::tag;
use kmipd_store::{MemoryStore, ObjectStore};
use kmipd_ttlv::{Ttlv, Value};

use engine::{batch_items, field, xml_request};
use kmipd_test_support::engine;

const DAY: i64 = 86_400;
const T0: i64 = 1_800_000_000;

fn engine_on(store: Arc<MemoryStore>, now: &Arc<AtomicI64>, policy: Policy) -> Engine {
    let clock = now.clone();
    Engine::new(
        store,
        EngineConfig {
            clock: Clock::from_fn(move || clock.load(Ordering::SeqCst)),
            policy,
            ..EngineConfig::default()
        },
    )
}

fn setup(policy: Policy) -> (Engine, Arc<MemoryStore>, Arc<AtomicI64>) {
    let store = Arc::new(MemoryStore::new());
    let now = Arc::new(AtomicI64::new(T0));
    (engine_on(store.clone(), &now, policy), store, now)
}

fn one(e: &Engine, who: &str, op: &str, payload: &str) -> Ttlv {
    let item = format!(
        r#"<BatchItem><Operation type="Enumeration" value="{op}"/><RequestPayload>{payload}</RequestPayload></BatchItem>"#
    );
    batch_items(&e.handle_message(&Principal::new(who), &xml_request((2, 1), &item))).remove(0)
}

fn ok_text(it: &Ttlv, t: kmipd_ttlv::Tag) -> String {
    let status = as_enum(field(it, &[tag::RESULT_STATUS]).unwrap()).unwrap();
    assert_eq!(status, result_status::SUCCESS, "{it:?}");
    as_text(field(it, &[tag::RESPONSE_PAYLOAD, t]).unwrap())
        .unwrap()
        .to_owned()
}

const ROTATE_90D: &str = r#"<RotateAutomatic type="Boolean" value="true"/><RotateInterval type="Interval" value="7776000"/><RotateName><RotateNameValue type="TextString" value="volumes"/><RotateNameType type="Enumeration" value="UninterpretedTextString"/></RotateName>"#;

fn date(d: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(d).unwrap();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// An Active key of `algorithm` named `name` for `owner`, rotated every 90 days.
fn rotating_key(e: &Engine, owner: &str, algorithm: &str, bits: u32, name: &str) -> String {
    let payload = format!(
        r#"<ObjectType type="Enumeration" value="SymmetricKey"/><Attributes><CryptographicAlgorithm type="Enumeration" value="{algorithm}"/><CryptographicLength type="Integer" value="{bits}"/><CryptographicUsageMask type="Integer" value="Encrypt Decrypt"/><ActivationDate type="DateTime" value="{}"/><Name><NameValue type="TextString" value="{name}"/><NameType type="Enumeration" value="UninterpretedTextString"/></Name>{ROTATE_90D}</Attributes>"#,
        date(T0)
    );
    ok_text(&one(e, owner, "Create", &payload), tag::UNIQUE_IDENTIFIER)
}

fn get(store: &MemoryStore, uid: &str) -> kmipd_store::ManagedObject {
    store.get(uid).unwrap().unwrap()
}

fn attr(store: &MemoryStore, uid: &str, t: kmipd_ttlv::Tag) -> Option<Value> {
    get(store, uid).attributes.get(t).cloned()
}

fn rotated(outcomes: Vec<Outcome>) -> Vec<kmipd_ops::rotation::Rotation> {
    outcomes
        .into_iter()
        .map(|o| match o {
            Outcome::Rotated(r) => r,
            other => panic!("not rotated: {other:?}"),
        })
        .collect()
}

fn locate(e: &Engine, who: &str, attributes: &str) -> Vec<String> {
    let it = one(
        e,
        who,
        "Locate",
        &format!("<Attributes>{attributes}</Attributes>"),
    );
    let payload = field(&it, &[tag::RESPONSE_PAYLOAD]).unwrap();
    payload
        .children()
        .into_iter()
        .flatten()
        .filter(|c| c.tag == tag::UNIQUE_IDENTIFIER)
        .map(|c| as_text(c).unwrap().to_owned())
        .collect()
}

#[test]
fn a_key_is_rotated_when_its_interval_has_passed_and_not_before() {
    let (e, store, now) = setup(Policy::unrestricted());
    let old = rotating_key(&e, "array-1", "AES", 256, "vol-1");
    assert_eq!(
        attr(&store, &old, tag::ROTATE_GENERATION),
        Some(Value::Integer(0))
    );
    assert_eq!(
        attr(&store, &old, tag::ROTATE_LATEST),
        Some(Value::Boolean(true))
    );

    now.store(T0 + 90 * DAY - 1, Ordering::SeqCst);
    assert!(e.due_for_rotation().unwrap().is_empty());
    assert!(e.rotate_due().unwrap().is_empty());

    now.store(T0 + 90 * DAY, Ordering::SeqCst);
    assert_eq!(e.due_for_rotation().unwrap(), vec![old.clone()]);
    let r = rotated(e.rotate_due().unwrap());
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].operation, r[0].old.as_str()),
        (op::RE_KEY, old.as_str())
    );
    let new = r[0].new.clone();
    // The replacement: the owner's, generation 1, the latest, rotated now, Initial Date now.
    let n = get(&store, &new);
    assert_eq!(n.owner, "array-1");
    assert_eq!(
        attr(&store, &new, tag::ROTATE_GENERATION),
        Some(Value::Integer(1))
    );
    assert_eq!(
        attr(&store, &new, tag::ROTATE_LATEST),
        Some(Value::Boolean(true))
    );
    assert_eq!(
        attr(&store, &new, tag::ROTATE_DATE),
        Some(Value::DateTime(T0 + 90 * DAY))
    );
    assert_eq!(
        attr(&store, &new, tag::INITIAL_DATE),
        Some(Value::DateTime(T0 + 90 * DAY))
    );
    assert_eq!(
        attr(&store, &old, tag::ROTATE_LATEST),
        Some(Value::Boolean(false))
    );
    assert_ne!(
        get(&store, &new).object,
        get(&store, &old).object,
        "new key material"
    );
    // Re-Key semantics: links both ways, the Name moved.
    let links = |uid: &str| -> Vec<(u32, String)> {
        get(&store, uid)
            .attributes
            .all(&kmipd_proto::attributes::AttrName::Std(tag::LINK))
            .filter_map(|v| match v {
                Value::Structure(items) => Some((
                    as_enum(items.iter().find(|i| i.tag == tag::LINK_TYPE)?).ok()?,
                    as_text(
                        items
                            .iter()
                            .find(|i| i.tag == tag::LINKED_OBJECT_IDENTIFIER)?,
                    )
                    .ok()?
                    .to_owned(),
                )),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        links(&old),
        vec![(link_type::REPLACEMENT_OBJECT_LINK, new.clone())]
    );
    assert_eq!(
        links(&new),
        vec![(link_type::REPLACED_OBJECT_LINK, old.clone())]
    );
    let name = r#"<Name><NameValue type="TextString" value="vol-1"/><NameType type="Enumeration" value="UninterpretedTextString"/></Name>"#;
    assert_eq!(locate(&e, "array-1", name), vec![new.clone()]);
    // Locate by Rotate Name and Rotate Latest: the newest generation only.
    let latest = r#"<RotateName><RotateNameValue type="TextString" value="volumes"/><RotateNameType type="Enumeration" value="UninterpretedTextString"/></RotateName><RotateLatest type="Boolean" value="true"/>"#;
    assert_eq!(locate(&e, "array-1", latest), vec![new.clone()]);
    // Not due again until another interval has passed.
    assert!(e.rotate_due().unwrap().is_empty());
    now.store(T0 + 180 * DAY, Ordering::SeqCst);
    let r = rotated(e.rotate_due().unwrap());
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].old, new);
    assert_eq!(
        attr(&store, &r[0].new, tag::ROTATE_GENERATION),
        Some(Value::Integer(2))
    );
}

#[test]
fn a_key_pair_is_rotated_as_a_pair() {
    let (e, store, now) = setup(Policy::unrestricted());
    let payload = format!(
        r#"<CommonAttributes><CryptographicAlgorithm type="Enumeration" value="EC"/><RecommendedCurve type="Enumeration" value="P_256"/><ActivationDate type="DateTime" value="{}"/>{ROTATE_90D}</CommonAttributes><PrivateKeyAttributes><CryptographicUsageMask type="Integer" value="Sign"/></PrivateKeyAttributes><PublicKeyAttributes><CryptographicUsageMask type="Integer" value="Verify"/></PublicKeyAttributes>"#,
        date(T0)
    );
    let it = one(&e, "signer", "CreateKeyPair", &payload);
    let private = ok_text(&it, tag::PRIVATE_KEY_UNIQUE_IDENTIFIER);
    let public = ok_text(&it, tag::PUBLIC_KEY_UNIQUE_IDENTIFIER);
    now.store(T0 + 91 * DAY, Ordering::SeqCst);
    // The public key is rotated with its private key, not on its own.
    assert_eq!(e.due_for_rotation().unwrap(), vec![private.clone()]);
    let r = rotated(e.rotate_due().unwrap());
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].operation, op::RE_KEY_KEY_PAIR);
    let (old_public, new_public) = r[0].public.clone().unwrap();
    assert_eq!(old_public, public);
    for uid in [&r[0].new, &new_public] {
        assert_eq!(get(&store, uid).owner, "signer");
        assert_eq!(
            attr(&store, uid, tag::ROTATE_GENERATION),
            Some(Value::Integer(1))
        );
        assert_eq!(
            attr(&store, uid, tag::ROTATE_LATEST),
            Some(Value::Boolean(true))
        );
    }
    for uid in [&private, &public] {
        assert_eq!(
            attr(&store, uid, tag::ROTATE_LATEST),
            Some(Value::Boolean(false))
        );
    }
    assert_eq!(get(&store, &r[0].new).object_type, ot::PRIVATE_KEY);
}

#[test]
fn a_failed_rotation_changes_nothing_and_succeeds_at_the_next_run() {
    let (e, store, now) = setup(Policy::unrestricted());
    let old = rotating_key(&e, "legacy", "DES3", 168, "old-3des");
    let before = store.all().unwrap().len();
    // The policy now refuses 3DES: the rotation (a new 3DES key) fails, nothing changes.
    e.set_policy(Policy::recommended());
    now.store(T0 + 100 * DAY, Ordering::SeqCst);
    let outcomes = e.rotate_due().unwrap();
    match outcomes.as_slice() {
        [Outcome::Failed { uid, error }] => {
            assert_eq!(uid, &old);
            assert!(error.client_message().contains("DES3"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.all().unwrap().len(), before);
    assert_eq!(
        attr(&store, &old, tag::ROTATE_LATEST),
        Some(Value::Boolean(true))
    );
    assert_eq!(e.due_for_rotation().unwrap(), vec![old.clone()]);
    // The operator allows it again: the next run rotates.
    e.set_policy(Policy::unrestricted());
    let r = rotated(e.rotate_due().unwrap());
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].old, old);
}

#[test]
fn two_schedulers_on_one_store_rotate_each_object_exactly_once() {
    let store = Arc::new(MemoryStore::new());
    let now = Arc::new(AtomicI64::new(T0));
    let a = engine_on(store.clone(), &now, Policy::unrestricted());
    let b = engine_on(store.clone(), &now, Policy::unrestricted());
    const KEYS: usize = 16;
    let keys: Vec<String> = (0..KEYS)
        .map(|i| rotating_key(&a, "app", "AES", 128, &format!("k{i}")))
        .collect();
    now.store(T0 + 90 * DAY, Ordering::SeqCst);
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let run = |e: Engine| {
        let barrier = barrier.clone();
        std::thread::spawn(move || {
            barrier.wait();
            e.rotate_due().unwrap()
        })
    };
    let (ta, tb) = (run(a.clone()), run(b));
    let mut outcomes = ta.join().unwrap();
    outcomes.extend(tb.join().unwrap());
    let mut done: Vec<String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Rotated(r) => Some(r.old.clone()),
            Outcome::NotDue(_) => None,
            Outcome::Failed { uid, error } => panic!("{uid}: {error}"),
        })
        .collect();
    done.sort();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(done, expected, "each key rotated once, by one of the two");
    assert_eq!(store.all().unwrap().len(), 2 * KEYS);
    assert!(a.due_for_rotation().unwrap().is_empty());
}

#[test]
fn the_policy_gives_new_keys_a_rotate_interval() {
    let (e, store, now) = setup(Policy {
        rotate_intervals: vec![(ot::SYMMETRIC_KEY, 30 * 86_400)],
        ..Policy::default()
    });
    let payload = format!(
        r#"<ObjectType type="Enumeration" value="SymmetricKey"/><Attributes><CryptographicAlgorithm type="Enumeration" value="AES"/><CryptographicLength type="Integer" value="256"/><CryptographicUsageMask type="Integer" value="Encrypt Decrypt"/><ActivationDate type="DateTime" value="{}"/></Attributes>"#,
        date(T0)
    );
    let key = ok_text(&one(&e, "app", "Create", &payload), tag::UNIQUE_IDENTIFIER);
    assert_eq!(
        attr(&store, &key, tag::ROTATE_INTERVAL),
        Some(Value::Interval(30 * 86_400))
    );
    assert_eq!(
        attr(&store, &key, tag::ROTATE_AUTOMATIC),
        Some(Value::Boolean(true))
    );
    now.store(T0 + 30 * DAY, Ordering::SeqCst);
    assert_eq!(rotated(e.rotate_due().unwrap()).len(), 1);
}
