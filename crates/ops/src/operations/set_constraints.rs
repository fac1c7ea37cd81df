//! Set Constraints (KMIP 2.0/2.1 §6.1.52): replaces the server's constraints on new objects
//! (`constraints.rs`: what they mean, where they live). A server-wide setting: only an
//! administrator may call it (`access.rs`). Without Constraints (the Test Cases note's
//! TC-MD-24-21 sends an empty payload to clear them), or with an empty one, the server has
//! none. The setting is stored when the item runs, durable before the answer, and is not part
//! of the batch's commit: a later item's failure under Batch Error Continuation Undo does not
//! restore the previous constraints.

use kmipd_proto::message::empty_payload;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::constraints::{MAX_ENCODED_LEN, SETTING, read};
use crate::context::Ctx;
use crate::error::{Error, Result};

/// Handles Set Constraints.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let value = match r.optional(tag::CONSTRAINTS) {
        Some(item) if !read(item)?.is_empty() => {
            let bytes =
                kmipd_ttlv::encode_to_vec(item).map_err(|_| Error::InvalidField("Constraints"))?;
            if bytes.len() > MAX_ENCODED_LEN {
                return Err(Error::InvalidField("Constraints too large"));
            }
            Some(bytes)
        }
        _ => None,
    };
    ctx.tx.set_setting(SETTING, value.as_deref())?;
    Ok(Some(empty_payload(tag::RESPONSE_PAYLOAD)))
}

#[cfg(test)]
mod tests {
    use kmipd_proto::build;
    use kmipd_proto::enums::{
        cryptographic_algorithm as alg, cryptographic_usage_mask as usage, object_type as ot,
        operation as op, result_reason, result_status,
    };
    use kmipd_proto::tag;
    use kmipd_ttlv::Ttlv;

    use crate::access::Role;
    use crate::engine::testing::{first_item, request};
    use crate::engine::{Engine, Principal};

    fn constraints(bits: i32) -> Ttlv {
        build::structure(
            tag::CONSTRAINTS,
            vec![build::structure(
                tag::CONSTRAINT,
                vec![
                    build::structure(
                        tag::OBJECT_TYPES,
                        vec![build::enumeration(tag::OBJECT_TYPE, ot::SYMMETRIC_KEY)],
                    ),
                    build::structure(
                        tag::ATTRIBUTES,
                        vec![
                            build::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, alg::AES),
                            build::int(tag::CRYPTOGRAPHIC_LENGTH, bits),
                        ],
                    ),
                ],
            )],
        )
    }

    fn send(
        e: &Engine,
        who: &Principal,
        operation: u32,
        payload: Vec<Ttlv>,
    ) -> (u32, Option<u32>, Option<Ttlv>) {
        first_item(&e.handle_message(who, &request(2, 1, operation, payload)))
    }

    fn create(e: &Engine, who: &Principal, bits: i32) -> (u32, Option<u32>) {
        let payload =
            build::create_symmetric_key_v2(alg::AES, bits, usage::ENCRYPT | usage::DECRYPT);
        let (status, reason, _) = send(e, who, op::CREATE, payload);
        (status, reason)
    }

    #[test]
    fn administrators_set_constraints_that_new_objects_must_satisfy() {
        let e = Engine::in_memory();
        let admin = Principal::with_role("admin", Role::Administrator);
        let client = Principal::new("client");
        let denied = (
            result_status::OPERATION_FAILED,
            Some(result_reason::PERMISSION_DENIED),
        );
        // Only an administrator sets them; everyone reads them.
        let (status, reason, _) = send(&e, &client, op::SET_CONSTRAINTS, vec![constraints(192)]);
        assert_eq!((status, reason), denied);
        let (status, _, _) = send(&e, &admin, op::SET_CONSTRAINTS, vec![constraints(192)]);
        assert_eq!(status, result_status::SUCCESS);
        let (status, _, payload) = send(&e, &client, op::GET_CONSTRAINTS, vec![]);
        assert_eq!(status, result_status::SUCCESS);
        assert_eq!(
            payload.unwrap().children().unwrap().first(),
            Some(&constraints(192))
        );
        // Enforced on new objects, for everyone.
        for who in [&client, &admin] {
            assert_eq!(create(&e, who, 192).0, result_status::SUCCESS);
            assert_eq!(
                create(&e, who, 256),
                (
                    result_status::OPERATION_FAILED,
                    Some(result_reason::CONSTRAINT_VIOLATION)
                )
            );
        }
        // An empty Set Constraints removes them.
        let (status, _, _) = send(&e, &admin, op::SET_CONSTRAINTS, vec![]);
        assert_eq!(status, result_status::SUCCESS);
        assert_eq!(create(&e, &client, 256).0, result_status::SUCCESS);
        let (_, _, payload) = send(&e, &client, op::GET_CONSTRAINTS, vec![]);
        assert_eq!(
            payload.unwrap().children().unwrap().first(),
            Some(&build::structure(tag::CONSTRAINTS, Vec::new()))
        );
        // 1.x has neither operation.
        let v1 = first_item(&e.handle_message(&admin, &request(1, 4, op::SET_CONSTRAINTS, vec![])));
        assert_eq!(v1.1, Some(result_reason::OPERATION_NOT_SUPPORTED));
    }

    #[test]
    fn malformed_constraints_are_refused_and_change_nothing() {
        let e = Engine::in_memory();
        let admin = Principal::with_role("admin", Role::Administrator);
        send(&e, &admin, op::SET_CONSTRAINTS, vec![constraints(192)]);
        let bad = build::structure(
            tag::CONSTRAINTS,
            vec![build::text(tag::OBJECT_GROUP, "not a constraint")],
        );
        let (status, reason, _) = send(&e, &admin, op::SET_CONSTRAINTS, vec![bad]);
        assert_eq!(status, result_status::OPERATION_FAILED);
        assert_eq!(reason, Some(result_reason::INVALID_FIELD));
        let (_, _, payload) = send(&e, &admin, op::GET_CONSTRAINTS, vec![]);
        assert_eq!(
            payload.unwrap().children().unwrap().first(),
            Some(&constraints(192))
        );
    }
}
