//! Import (KMIP 2.0/2.1 §6.1.25): stores an object under the Unique Identifier the request
//! gives, with exactly the attributes it gives ("all attributes MUST be set to the supplied
//! values rather than any server generated values"): what Export of this server or another one
//! produced. The Unique Identifier and Object Type attributes are those of the request.
//!
//! - The object is read and checked as Register reads it (a key that does not parse is
//!   refused); its key material is then stored like every object's, wrapped under the store's
//!   KEK. The server policy (`policy.rs`) refuses a key it does not allow, as for Register,
//!   but adds nothing to the supplied attributes.
//! - kmipd's own `y-` attributes (grants, credential labels, dual control requests) are server
//!   state: an Import that carries one is refused (Attribute Read Only), so a client can never
//!   give itself a grant this way. A request narrowed by a credential labels the object as
//!   every object it creates (`tickets.rs`).
//! - An identifier in use: Object Already Exists, unless Replace Existing is true and the
//!   caller may Import over that object (its owner, an administrator, a grantee of Import);
//!   the replacement keeps the replaced object's owner. An identifier held by an object the
//!   caller may not see answers Object Already Exists as well (the identifier is taken; nothing
//!   of the object is revealed).
//! - 2.x Names must be free (Non-Unique Name Attribute), the replaced object's own excepted.
//! - Wrapped objects (Key Wrap Type) are not accepted: Feature Not Supported.

use kmipd_proto::attributes::{AttrName, RequestAttributes};
use kmipd_proto::enums::unique_identifier as uid_kind;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::{Ttlv, Value};

use crate::attrs;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::object::uid_payload;
use crate::objects;
use crate::operations::export::is_server_owned;

/// Handles Import.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let uid = r.req_text(tag::UNIQUE_IDENTIFIER)?.to_owned();
    if uid.is_empty() {
        return Err(Error::InvalidField("Unique Identifier"));
    }
    let object_type = r.req_enum(tag::OBJECT_TYPE)?;
    let replace = r.boolean(tag::REPLACE_EXISTING)?.unwrap_or(false);
    if r.optional(tag::KEY_WRAP_TYPE).is_some() {
        return Err(Error::FeatureNotSupported("import of a wrapped object"));
    }
    let object_tag = objects::object_tag(object_type).ok_or(Error::InvalidField("Object Type"))?;
    let item = r
        .optional(object_tag)
        .ok_or(Error::MissingData("the object to import"))?;
    let mut supplied =
        RequestAttributes::from_v2_attributes(r.required(tag::ATTRIBUTES)?)?.attributes;
    if supplied.0.iter().any(|a| is_server_owned(&a.name)) {
        return Err(Error::AttributeReadOnly("kmipd's own attributes"));
    }
    let existing = ctx.tx.get(&uid)?;
    if let Some(old) = &existing {
        if !replace {
            return Err(Error::ObjectAlreadyExists);
        }
        if !ctx.may(old) {
            return Err(
                match crate::access::refusal(ctx.principal, old, ctx.operation) {
                    Error::NotFound => Error::ObjectAlreadyExists,
                    other => other,
                },
            );
        }
    }
    let parsed = objects::parse_object(ctx, object_type, item)?;
    objects::merge_missing(&mut supplied, parsed.attributes);
    supplied.set(tag::UNIQUE_IDENTIFIER, Value::TextString(uid.clone()));
    supplied.set(tag::OBJECT_TYPE, Value::Enumeration(object_type));
    let own_names: Vec<String> = existing
        .as_ref()
        .map(|o| o.attributes.name_values().map(str::to_owned).collect())
        .unwrap_or_default();
    attrs::check_names_free(
        ctx,
        supplied
            .name_values()
            .filter(|n| !own_names.iter().any(|o| o == n)),
    )?;
    if let Some(label) = ctx
        .principal
        .narrowing()
        .and_then(|n| n.credential.as_ref())
    {
        supplied.0.push(kmipd_proto::attributes::Attribute {
            name: AttrName::Custom {
                vendor: None,
                name: crate::tickets::CREDENTIAL_ATTRIBUTE.to_owned(),
            },
            value: Value::TextString(label.clone()),
        });
    }
    let (owner, sequence) = match &existing {
        Some(old) => (old.owner.clone(), old.sequence),
        None => (ctx.principal.name().to_owned(), ctx.tx.next_sequence()?),
    };
    let obj = ManagedObject {
        uid: uid.clone(),
        object_type,
        owner,
        object: Some(parsed.object),
        attributes: supplied,
        sequence,
    };
    // The policy's refusals apply; what it would add does not (the supplied values stand).
    ctx.policy.apply(&mut obj.clone(), ctx.now)?;
    crate::constraints::check_new(&ctx.tx, &obj)?;
    ctx.tx.put(obj);
    ctx.set_placeholder(&uid);
    ctx.produced(uid_kind::REGISTER, &uid);
    Ok(Some(uid_payload(&uid)))
}

#[cfg(test)]
mod tests {
    use kmipd_proto::build;
    use kmipd_proto::enums::{object_type, operation as op, result_reason, result_status};
    use kmipd_proto::reader::StructReader;
    use kmipd_proto::tag;
    use kmipd_ttlv::Ttlv;

    use crate::engine::testing::{call, first_item, request};
    use crate::engine::{Engine, Principal};

    fn text(payload: &Ttlv, t: kmipd_ttlv::Tag) -> String {
        StructReader::any(payload)
            .unwrap()
            .req_text(t)
            .unwrap()
            .to_owned()
    }

    /// Export as `a` of a created key: (uid, attributes, key).
    fn created_and_exported(engine: &Engine) -> (String, Ttlv, Ttlv) {
        let (status, _, payload) = call(
            engine,
            (2, 0),
            op::CREATE,
            build::create_symmetric_key_v2(3, 128, 4 | 8),
        );
        assert_eq!(status, result_status::SUCCESS);
        let uid = text(&payload.unwrap(), tag::UNIQUE_IDENTIFIER);
        let (status, _, payload) = call(
            engine,
            (2, 0),
            op::EXPORT,
            vec![build::unique_identifier(uid.clone())],
        );
        assert_eq!(status, result_status::SUCCESS);
        let payload = payload.unwrap();
        let r = StructReader::any(&payload).unwrap();
        assert_eq!(r.req_text(tag::UNIQUE_IDENTIFIER).unwrap(), uid);
        let attrs = r.required(tag::ATTRIBUTES).unwrap().clone();
        let key = r.required(tag::SYMMETRIC_KEY).unwrap().clone();
        (uid, attrs, key)
    }

    fn import(uid: &str, replace: Option<bool>, attrs: Ttlv, key: Ttlv) -> Vec<Ttlv> {
        let mut p = vec![
            build::unique_identifier(uid),
            build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
        ];
        if let Some(b) = replace {
            p.push(build::boolean(tag::REPLACE_EXISTING, b));
        }
        p.push(attrs);
        p.push(key);
        p
    }

    #[test]
    fn export_then_import_elsewhere_gives_the_same_key_and_attributes() {
        let engine = Engine::in_memory();
        let (uid, attrs, key) = created_and_exported(&engine);
        let state = StructReader::any(&attrs)
            .unwrap()
            .enumeration(tag::STATE)
            .unwrap();
        assert!(state.is_some(), "Export carries the State");
        // Export does not serve the object as Get does: it stays Fresh.
        let (_, _, payload) = call(
            &engine,
            (2, 0),
            op::GET_ATTRIBUTES,
            vec![build::unique_identifier(uid.clone())],
        );
        let payload = payload.unwrap();
        let fresh = StructReader::any(&payload)
            .unwrap()
            .structure(tag::ATTRIBUTES)
            .unwrap()
            .unwrap()
            .boolean(tag::FRESH)
            .unwrap();
        assert_eq!(fresh, Some(true));
        // Import on a fresh server under another identifier: the same key, the same State.
        let other = Engine::in_memory();
        let (status, _, payload) = call(
            &other,
            (2, 0),
            op::IMPORT,
            import("moved-1", None, attrs.clone(), key.clone()),
        );
        assert_eq!(status, result_status::SUCCESS);
        assert_eq!(text(&payload.unwrap(), tag::UNIQUE_IDENTIFIER), "moved-1");
        let (status, _, payload) = call(
            &other,
            (2, 0),
            op::GET,
            vec![build::unique_identifier("moved-1")],
        );
        assert_eq!(status, result_status::SUCCESS);
        let got = StructReader::any(&payload.unwrap())
            .unwrap()
            .required(tag::SYMMETRIC_KEY)
            .unwrap()
            .clone();
        assert_eq!(got, key);
        let (_, _, payload) = call(
            &other,
            (2, 0),
            op::GET_ATTRIBUTES,
            vec![build::unique_identifier("moved-1")],
        );
        let payload = payload.unwrap();
        let got = StructReader::any(&payload)
            .unwrap()
            .structure(tag::ATTRIBUTES)
            .unwrap()
            .unwrap();
        assert_eq!(got.enumeration(tag::STATE).unwrap(), state);
        assert_eq!(got.req_text(tag::UNIQUE_IDENTIFIER).unwrap(), "moved-1");
        // The identifier in use: refused unless replacing.
        let (status, reason, _) = call(
            &engine,
            (2, 0),
            op::IMPORT,
            import(&uid, Some(false), attrs.clone(), key.clone()),
        );
        assert_eq!(
            (status, reason),
            (
                result_status::OPERATION_FAILED,
                Some(result_reason::OBJECT_ALREADY_EXISTS)
            )
        );
        let (status, _, _) = call(
            &engine,
            (2, 0),
            op::IMPORT,
            import(&uid, Some(true), attrs, key),
        );
        assert_eq!(status, result_status::SUCCESS);
    }

    #[test]
    fn others_can_neither_export_nor_replace_and_grants_cannot_be_imported() {
        let engine = Engine::in_memory();
        let (uid, attrs, key) = created_and_exported(&engine);
        let b = Principal::new("b");
        let export = request(
            2,
            0,
            op::EXPORT,
            vec![build::unique_identifier(uid.clone())],
        );
        let (status, reason, _) = first_item(&engine.handle_message(&b, &export));
        assert_eq!(
            (status, reason),
            (
                result_status::OPERATION_FAILED,
                Some(result_reason::ITEM_NOT_FOUND)
            )
        );
        let replace = request(
            2,
            0,
            op::IMPORT,
            import(&uid, Some(true), attrs.clone(), key.clone()),
        );
        let (status, reason, _) = first_item(&engine.handle_message(&b, &replace));
        assert_eq!(
            (status, reason),
            (
                result_status::OPERATION_FAILED,
                Some(result_reason::OBJECT_ALREADY_EXISTS)
            )
        );
        // A forged grant in the attributes is refused.
        let mut forged = match attrs.value {
            kmipd_ttlv::Value::Structure(items) => items,
            _ => unreachable!(),
        };
        forged.push(
            kmipd_proto::attributes::Attribute {
                name: kmipd_proto::attributes::AttrName::Custom {
                    vendor: None,
                    name: crate::access::GRANT_ATTRIBUTE.to_owned(),
                },
                value: kmipd_ttlv::Value::TextString("Get b".into()),
            }
            .to_v2(),
        );
        let forged = build::structure(tag::ATTRIBUTES, forged);
        let (status, reason, _) = first_item(&engine.handle_message(
            &b,
            &request(2, 0, op::IMPORT, import("new-1", None, forged, key)),
        ));
        assert_eq!(
            (status, reason),
            (
                result_status::OPERATION_FAILED,
                Some(result_reason::ATTRIBUTE_READ_ONLY)
            )
        );
    }
}
