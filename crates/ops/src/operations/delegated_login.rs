//! Delegated Login (KMIP 2.0/2.1 §6.1.12): a Ticket whose holder may perform only what its
//! Rights allow (`tickets.rs`: the rights narrow; they never add to what the certificate
//! identity may do, and the ticket serves only that identity). An operation outside the
//! rights is Not Authorised; an object outside them, Not Authorised when the identity could
//! otherwise use it (and Not Found, as always, when it could not).

use kmipd_proto::build;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::error::Result;
use crate::tickets::{read_rights, ticket_item};

/// Handles Delegated Login.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let rights = read_rights(r.required(tag::RIGHTS)?)?;
    let ticket = crate::operations::login::issue(ctx, &r, Some(rights))?;
    Ok(Some(build::structure(
        tag::RESPONSE_PAYLOAD,
        vec![ticket_item(ticket)],
    )))
}

#[cfg(test)]
mod tests {
    use kmipd_proto::build;
    use kmipd_proto::enums::{operation as op, result_reason, result_status};
    use kmipd_proto::tag;

    use crate::engine::testing::call;
    use crate::engine::{Engine, Principal};
    use crate::operations::login::tests::{answer, request, ticket_of};

    #[test]
    fn the_rights_narrow_operations_and_objects() {
        let engine = Engine::in_memory();
        let a = Principal::new("a");
        let create = || {
            let (status, _, payload) = call(
                &engine,
                (2, 0),
                op::CREATE,
                build::create_symmetric_key_v2(3, 128, 4 | 8),
            );
            assert_eq!(status, result_status::SUCCESS);
            kmipd_proto::reader::StructReader::any(&payload.unwrap())
                .unwrap()
                .req_text(tag::UNIQUE_IDENTIFIER)
                .unwrap()
                .to_owned()
        };
        let (k0, k1) = (create(), create());
        let rights = build::structure(
            tag::RIGHTS,
            vec![build::structure(
                tag::RIGHT,
                vec![
                    build::structure(
                        tag::OPERATIONS,
                        vec![build::enumeration(tag::OPERATION, op::GET_ATTRIBUTES)],
                    ),
                    build::structure(
                        tag::OBJECTS,
                        vec![build::text(tag::UNIQUE_IDENTIFIER, k0.clone())],
                    ),
                ],
            )],
        );
        let (status, _, payload) =
            answer(&engine.handle_message(&a, &request(None, op::DELEGATED_LOGIN, vec![rights])));
        assert_eq!(status, result_status::SUCCESS);
        let t = ticket_of(&payload.unwrap());
        let on = |operation, uid: &str| {
            answer(&engine.handle_message(
                &a,
                &request(
                    Some(&t),
                    operation,
                    vec![build::text(tag::UNIQUE_IDENTIFIER, uid)],
                ),
            ))
        };
        assert_eq!(on(op::GET_ATTRIBUTES, &k0).0, result_status::SUCCESS);
        let denied = (
            result_status::OPERATION_FAILED,
            Some(result_reason::NOT_AUTHORISED),
        );
        let (s, r, _) = on(op::GET, &k0);
        assert_eq!((s, r), denied);
        let (s, r, _) = on(op::GET_ATTRIBUTES, &k1);
        assert_eq!((s, r), denied);
        // Without the ticket, the identity keeps its rights.
        let (status, _, _) = answer(&engine.handle_message(
            &a,
            &request(
                None,
                op::GET,
                vec![build::text(tag::UNIQUE_IDENTIFIER, k0.clone())],
            ),
        ));
        assert_eq!(status, result_status::SUCCESS);
        // The rights never widen: another identity's ticket with the same rights sees nothing.
        let b = Principal::new("b");
        let rights_b = build::structure(tag::RIGHTS, vec![build::structure(tag::RIGHT, vec![])]);
        let (_, _, payload) =
            answer(&engine.handle_message(&b, &request(None, op::DELEGATED_LOGIN, vec![rights_b])));
        let tb = ticket_of(&payload.unwrap());
        let (s, r, _) = answer(&engine.handle_message(
            &b,
            &request(
                Some(&tb),
                op::GET,
                vec![build::text(tag::UNIQUE_IDENTIFIER, k0)],
            ),
        ));
        assert_eq!(
            (s, r),
            (
                result_status::OPERATION_FAILED,
                Some(result_reason::ITEM_NOT_FOUND)
            )
        );
    }
}
