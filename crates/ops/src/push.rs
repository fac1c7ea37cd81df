//! Server-to-client messages (KMIP 1.4 §5, 2.1 §7): Put and Notify, which a server sends to a
//! client "via means outside of the normal client request/response protocol, using
//! information known to the server via unspecified configuration or administrative
//! mechanisms".
//!
//! The configuration is a list of [`Subscription`]s: an identity, the destination its messages
//! go to (the server crate knows where that is), and which events it wants. The engine knows
//! no sockets: a request that changes objects gives, with its answer, the messages its commit
//! calls for ([`crate::Answer::pushes`]), and only once the commit is durable (a refused,
//! undone or conflicting request gives none). Delivering them is the server's job.
//!
//! What a committed change produces, per subscription:
//! - an object that did not exist before the request (Create, Register, Re-key, ...): a
//!   **Put** (Put Function New, or Replace with the Replaced Unique Identifier when the new
//!   object carries a Replaced Object link) with the object as stored, in the clear, and all
//!   its attributes (as Get Attributes without names would give them);
//! - an existing object whose attributes changed (Add/Modify/Delete Attribute, Activate,
//!   Revoke, Destroy, ...): a **Notify** with the attributes whose value changed or that
//!   appeared (Last Change Date among them), and a deleted 1.x attribute as an Attribute
//!   without Attribute Value (KMIP 1.4 Table 255).
//!
//! Who gets what: a Put goes only to a subscriber that may Get the object ([`may_access`] with
//! Get: owner, an administrator or operator within its scope, a grantee of Get) and only when
//! Get would hand the key out unwrapped (not archived, not a One Time Pad, not under dual
//! control for Get, not Sensitive / non-Extractable): a Put carries what Get would show it.
//! A Notify goes only to a subscriber that may Get Attributes of the object. Attributes the
//! message's protocol version does not define are left out.
//!
//! Not covered: changes the engine makes outside a client request (automatic rotation, the
//! library calls of the admin commands) and asynchronous items completed by Poll.

use kmipd_proto::attributes::{AttrName, Attribute};
use kmipd_proto::build;
use kmipd_proto::enums::{link_type, operation as op, put_function};
use kmipd_proto::message::{ProtocolVersion, RequestBatchItem, RequestMessage};
use kmipd_proto::spec::Version;
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::{Ttlv, Value};

use crate::Principal;
use crate::access::may_access;
use crate::attrs;

/// One identity's subscription to server-to-client messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Where its messages go: a name the server maps to an endpoint (and the label of its
    /// metrics).
    pub destination: String,
    /// The identity it is for, with its role and scope: what it may Get decides what it gets.
    pub principal: Principal,
    /// Put for each new object.
    pub put: bool,
    /// Notify for each change of an object's attributes.
    pub notify: bool,
    /// The protocol version of its messages; `None`: the version of the request that made the
    /// change.
    pub version: Option<ProtocolVersion>,
}

/// One server-to-client message to deliver.
#[derive(Clone, PartialEq)]
pub struct Push {
    /// The [`Subscription::destination`].
    pub destination: String,
    /// The identity subscribed.
    pub identity: String,
    /// Put or Notify (Operation enumeration value).
    pub operation: u32,
    /// The object concerned.
    pub uid: String,
    /// The Request Message to send. A Put holds key material in the clear.
    pub message: Ttlv,
}

impl std::fmt::Debug for Push {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the message: a Put carries key material.
        f.debug_struct("Push")
            .field("destination", &self.destination)
            .field("identity", &self.identity)
            .field("operation", &self.operation)
            .field("uid", &self.uid)
            .finish_non_exhaustive()
    }
}

impl Push {
    /// "Put" or "Notify", for logs, audit records and metrics.
    pub fn operation_name(&self) -> &'static str {
        if self.operation == op::PUT {
            "Put"
        } else {
            "Notify"
        }
    }
}

/// The messages a committed change calls for: `before` the object as stored before the
/// request (`None`: it is new), `after` as the commit stores it (`None`: deleted, which says
/// nothing). `version` is the request's protocol version.
pub(crate) fn messages_for(
    subscriptions: &[Subscription],
    policy: &crate::Policy,
    version: ProtocolVersion,
    before: Option<&ManagedObject>,
    after: Option<&ManagedObject>,
) -> Vec<Push> {
    let Some(after) = after else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for sub in subscriptions {
        let version = sub.version.unwrap_or(version);
        let spec = version.spec().unwrap_or(Version::V1_0);
        let (operation, payload) = match before {
            None if sub.put && may_put(policy, &sub.principal, after) => {
                match put_payload(spec, after) {
                    Some(p) => (op::PUT, p),
                    None => continue,
                }
            }
            Some(before) if sub.notify && may_access(&sub.principal, after, op::GET_ATTRIBUTES) => {
                match notify_payload(spec, before, after) {
                    Some(p) => (op::NOTIFY, p),
                    None => continue,
                }
            }
            _ => continue,
        };
        let message =
            RequestMessage::new(version, vec![RequestBatchItem::new(operation, payload)]).to_ttlv();
        out.push(Push {
            destination: sub.destination.clone(),
            identity: sub.principal.name().to_owned(),
            operation,
            uid: after.uid.clone(),
            message,
        });
    }
    out
}

/// Whether `who` may receive the object's key material: it may Get it, and Get would hand it
/// out as it is stored (unwrapped).
fn may_put(policy: &crate::Policy, who: &Principal, object: &ManagedObject) -> bool {
    may_access(who, object, op::GET)
        && object.object.is_some()
        && !crate::operations::archive::is_archived(object)
        && crate::operations::one_time_pad::check_export(object).is_ok()
        && !(crate::dual::required(policy, object) && crate::dual::guarded(op::GET, object))
        && crate::objects::wrap::check_exportable(object).is_ok()
}

/// The attributes of `object` that `spec` defines, each with its per-name index.
fn visible(spec: Version, object: &ManagedObject) -> Vec<(usize, &Attribute)> {
    object
        .attributes
        .indexed()
        .into_iter()
        .filter(|(_, a)| attrs::visible_in(spec, &a.name))
        .collect()
}

/// The payload of a Put of a new object.
fn put_payload(spec: Version, object: &ManagedObject) -> Option<Vec<Ttlv>> {
    let body = object.object.clone()?;
    let replaced = object
        .attributes
        .all(&AttrName::Std(tag::LINK))
        .find_map(|link| {
            let Value::Structure(items) = link else {
                return None;
            };
            let kind = items.iter().find(|i| i.tag == tag::LINK_TYPE)?;
            if kind.value != Value::Enumeration(link_type::REPLACED_OBJECT_LINK) {
                return None;
            }
            match &items
                .iter()
                .find(|i| i.tag == tag::LINKED_OBJECT_IDENTIFIER)?
                .value
            {
                Value::TextString(uid) => Some(uid.clone()),
                _ => None,
            }
        });
    let mut items = vec![build::unique_identifier(&object.uid)];
    match replaced {
        Some(old) => {
            items.push(build::enumeration(tag::PUT_FUNCTION, put_function::REPLACE));
            items.push(build::text(tag::REPLACED_UNIQUE_IDENTIFIER, old));
        }
        None => items.push(build::enumeration(tag::PUT_FUNCTION, put_function::NEW)),
    }
    items.push(body);
    items.extend(attrs::listed(spec, visible(spec, object)));
    Some(items)
}

/// The payload of a Notify: the attributes that appeared or changed value (and, in 1.x, the
/// ones that went, without value). `None` when no attribute changed.
fn notify_payload(
    spec: Version,
    before: &ManagedObject,
    after: &ManagedObject,
) -> Option<Vec<Ttlv>> {
    let old = visible(spec, before);
    let new = visible(spec, after);
    let same = |(i, a): &(usize, &Attribute), (j, b): &(usize, &Attribute)| {
        i == j && a.name.same_attribute(&b.name)
    };
    let changed: Vec<&(usize, &Attribute)> = new
        .iter()
        .filter(|n| !old.iter().any(|o| same(o, n) && o.1.value == n.1.value))
        .collect();
    let gone: Vec<&(usize, &Attribute)> = old
        .iter()
        .filter(|o| !new.iter().any(|n| same(o, n)))
        .collect();
    if changed.is_empty() && gone.is_empty() {
        return None;
    }
    // "This includes at least the Last Change Date attribute" (KMIP 1.4 Table 255), also when
    // the change fell in the same second as the previous one.
    let last_change = AttrName::Std(tag::LAST_CHANGE_DATE);
    let mut changed = changed;
    if !changed.iter().any(|(_, a)| a.name == last_change)
        && let Some(lcd) = new.iter().find(|(_, a)| a.name == last_change)
    {
        changed.push(lcd);
    }
    let mut items = vec![build::unique_identifier(&after.uid)];
    items.extend(attrs::listed(spec, changed.iter().map(|&&(i, a)| (i, a))));
    // 2.x Attributes cannot express a deleted attribute: the changed ones only.
    if spec < Version::V2_0 {
        for (i, a) in gone {
            let mut fields = vec![build::text(tag::ATTRIBUTE_NAME, a.name.v1_name())];
            if *i != 0 {
                fields.push(build::int(
                    tag::ATTRIBUTE_INDEX,
                    i32::try_from(*i).unwrap_or(i32::MAX),
                ));
            }
            items.push(build::structure(tag::ATTRIBUTE, fields));
        }
    }
    Some(items)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kmipd_proto::build;
    use kmipd_proto::enums::{cryptographic_algorithm as alg, object_type, operation as op};
    use kmipd_proto::message::{ProtocolVersion, RequestBatchItem, RequestMessage};
    use kmipd_proto::tag;
    use kmipd_store::MemoryStore;
    use kmipd_ttlv::{Ttlv, Value};

    use super::Subscription;
    use crate::{Answer, Engine, EngineConfig, Principal};

    fn engine(subscriptions: Vec<Subscription>) -> Engine {
        let config = EngineConfig {
            push: subscriptions,
            ..EngineConfig::default()
        };
        Engine::new(Arc::new(MemoryStore::new()), config)
    }

    fn subscription(who: Principal, put: bool, notify: bool) -> Subscription {
        Subscription {
            destination: format!("to-{}", who.name()),
            principal: who,
            put,
            notify,
            version: None,
        }
    }

    fn attr(name: &str, value: Value) -> Ttlv {
        build::structure(
            tag::ATTRIBUTE,
            vec![
                build::text(tag::ATTRIBUTE_NAME, name),
                Ttlv::new(tag::ATTRIBUTE_VALUE, value),
            ],
        )
    }

    fn call(e: &Engine, who: &Principal, operation: u32, payload: Vec<Ttlv>) -> Answer {
        let request = RequestMessage::new(
            ProtocolVersion::V1_4,
            vec![RequestBatchItem::new(operation, payload)],
        );
        e.handle(who, &request.to_ttlv())
    }

    fn create(e: &Engine, who: &Principal) -> (String, Answer) {
        create_with(e, who, Vec::new())
    }

    /// Creates an AES-128 key with these attributes besides algorithm, length and mask.
    fn create_with(e: &Engine, who: &Principal, extra: Vec<Ttlv>) -> (String, Answer) {
        let mut template = vec![
            attr("Cryptographic Algorithm", Value::Enumeration(alg::AES)),
            attr("Cryptographic Length", Value::Integer(128)),
            attr("Cryptographic Usage Mask", Value::Integer(12)),
        ];
        template.extend(extra);
        let answer = call(
            e,
            who,
            op::CREATE,
            vec![
                build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
                build::structure(tag::TEMPLATE_ATTRIBUTE, template),
            ],
        );
        let mut uid = String::new();
        answer.response.walk(&mut |i, _| {
            if i.tag == tag::UNIQUE_IDENTIFIER
                && let Value::TextString(s) = &i.value
            {
                uid = s.clone();
            }
        });
        assert!(!uid.is_empty(), "Create failed: {:?}", answer.response);
        (uid, answer)
    }

    fn payload(message: &Ttlv) -> &Ttlv {
        let item = message.child(tag::BATCH_ITEM).unwrap();
        item.child(tag::REQUEST_PAYLOAD).unwrap()
    }

    fn names(payload: &Ttlv) -> Vec<String> {
        payload
            .children()
            .unwrap()
            .iter()
            .filter(|c| c.tag == tag::ATTRIBUTE)
            .map(|a| match &a.child(tag::ATTRIBUTE_NAME).unwrap().value {
                Value::TextString(s) => s.clone(),
                _ => panic!(),
            })
            .collect()
    }

    #[test]
    fn create_puts_the_key_and_attribute_edits_and_destroy_notify() {
        let alice = Principal::new("alice");
        let e = engine(vec![subscription(alice.clone(), true, true)]);
        let (uid, answer) = create(&e, &alice);
        let [put] = answer.pushes.as_slice() else {
            panic!("{:?}", answer.pushes)
        };
        assert_eq!((put.operation, put.uid.as_str()), (op::PUT, uid.as_str()));
        assert_eq!(put.destination, "to-alice");
        let p = payload(&put.message);
        assert_eq!(
            p.child(tag::PUT_FUNCTION).unwrap().value,
            Value::Enumeration(super::put_function::NEW)
        );
        // The key, as Get gives it.
        let get = call(&e, &alice, op::GET, vec![build::unique_identifier(&uid)]);
        // The first Get changes Fresh (served once, 1.4 §3.34): a Notify of that (and the
        // Last Change Date every Notify carries).
        let [fresh] = get.pushes.as_slice() else {
            panic!("{:?}", get.pushes)
        };
        assert_eq!(
            names(payload(&fresh.message)),
            ["Fresh", "Last Change Date"]
        );
        let again = call(&e, &alice, op::GET, vec![build::unique_identifier(&uid)]);
        assert!(
            again.pushes.is_empty(),
            "a read that changes nothing pushes nothing"
        );
        let mut material = None;
        get.response.walk(&mut |i, _| {
            if i.tag == tag::KEY_MATERIAL {
                material = Some(i.value.clone());
            }
        });
        let mut pushed = None;
        p.walk(&mut |i, _| {
            if i.tag == tag::KEY_MATERIAL {
                pushed = Some(i.value.clone());
            }
        });
        assert!(material.is_some());
        assert_eq!(pushed, material);
        let all = names(p);
        for n in [
            "Unique Identifier",
            "State",
            "Cryptographic Length",
            "Last Change Date",
        ] {
            assert!(all.iter().any(|a| a == n), "{n} missing from {all:?}");
        }

        // Add Attribute: a Notify with the new attribute and Last Change Date only.
        let added = call(
            &e,
            &alice,
            op::ADD_ATTRIBUTE,
            vec![
                build::unique_identifier(&uid),
                attr("x-provider", Value::TextString("unknown".into())),
            ],
        );
        let [notify] = added.pushes.as_slice() else {
            panic!("{:?}", added.pushes)
        };
        assert_eq!(notify.operation, op::NOTIFY);
        let mut changed = names(payload(&notify.message));
        changed.sort();
        assert_eq!(changed, ["Last Change Date", "x-provider"]);

        // Delete Attribute: the attribute without value.
        let deleted = call(
            &e,
            &alice,
            op::DELETE_ATTRIBUTE,
            vec![
                build::unique_identifier(&uid),
                build::text(tag::ATTRIBUTE_NAME, "x-provider"),
            ],
        );
        let [notify] = deleted.pushes.as_slice() else {
            panic!("{:?}", deleted.pushes)
        };
        let gone = payload(&notify.message)
            .children()
            .unwrap()
            .iter()
            .find(|a| {
                a.tag == tag::ATTRIBUTE
                    && a.child(tag::ATTRIBUTE_NAME).unwrap().value
                        == Value::TextString("x-provider".into())
            })
            .unwrap();
        assert!(gone.child(tag::ATTRIBUTE_VALUE).is_none());

        // Destroy: the State among the changes, no key material.
        let destroyed = call(
            &e,
            &alice,
            op::DESTROY,
            vec![build::unique_identifier(&uid)],
        );
        let [notify] = destroyed.pushes.as_slice() else {
            panic!("{:?}", destroyed.pushes)
        };
        let p = payload(&notify.message);
        assert!(names(p).iter().any(|n| n == "State"));
        let mut material = false;
        p.walk(&mut |i, _| material |= i.tag == tag::KEY_MATERIAL);
        assert!(!material);
    }

    #[test]
    fn only_subscribed_events_and_only_to_who_may_get() {
        let alice = Principal::new("alice");
        let bob = Principal::new("bob");
        let admin = Principal::admin("root");
        let e = engine(vec![
            subscription(alice.clone(), true, false),
            subscription(bob.clone(), true, true),
            subscription(admin.clone(), false, true),
        ]);
        let (uid, answer) = create(&e, &alice);
        // Bob may not Get Alice's key: nothing for him; the administrator wants no Put.
        let to: Vec<&str> = answer
            .pushes
            .iter()
            .map(|p| p.destination.as_str())
            .collect();
        assert_eq!(to, ["to-alice"]);
        let modified = call(
            &e,
            &alice,
            op::ADD_ATTRIBUTE,
            vec![
                build::unique_identifier(&uid),
                attr("x-a", Value::TextString("1".into())),
            ],
        );
        // Alice wants no Notify, Bob may not read it: the administrator only.
        let to: Vec<(&str, u32)> = modified
            .pushes
            .iter()
            .map(|p| (p.destination.as_str(), p.operation))
            .collect();
        assert_eq!(to, [("to-root", op::NOTIFY)]);

        // A refused request pushes nothing.
        let refused = call(&e, &bob, op::DESTROY, vec![build::unique_identifier(&uid)]);
        assert!(refused.pushes.is_empty());
    }

    #[test]
    fn a_key_that_get_would_not_hand_out_is_not_put() {
        let alice = Principal::new("alice");
        let e = engine(vec![subscription(alice.clone(), true, true)]);
        // (create_with asserts the key was created)
        let (_, answer) = create_with(&e, &alice, vec![attr("Extractable", Value::Boolean(false))]);
        assert!(
            answer.pushes.is_empty(),
            "a non-extractable key is not pushed"
        );
    }
}
