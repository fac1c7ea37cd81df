//! Logout (KMIP 2.0/2.1 §6.1.31): ends a Login ticket of the caller's identity (`tickets.rs`).
//! A ticket the caller's certificate identity does not hold (another identity's, expired,
//! already logged out, never given) is an Invalid Ticket.

use kmipd_proto::message::empty_payload;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::error::Result;
use crate::tickets::read_ticket;

/// Handles Logout.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let ticket = read_ticket(r.required(tag::TICKET)?)?;
    ctx.tickets.logout(ctx.principal.name(), &ticket, ctx.now)?;
    Ok(Some(empty_payload(tag::RESPONSE_PAYLOAD)))
}

#[cfg(test)]
mod tests {
    use kmipd_proto::build;
    use kmipd_proto::enums::{operation as op, result_reason, result_status};
    use kmipd_proto::tag;

    use crate::engine::{Engine, Principal};
    use crate::operations::login::tests::{answer, request, ticket_of};

    #[test]
    fn a_logged_out_ticket_is_invalid_and_only_its_identity_logs_it_out() {
        let engine = Engine::in_memory();
        let a = Principal::new("a");
        let (_, _, payload) = answer(&engine.handle_message(&a, &request(None, op::LOGIN, vec![])));
        let t = ticket_of(&payload.unwrap());
        let logout = request(
            None,
            op::LOGOUT,
            vec![crate::tickets::ticket_item(t.clone())],
        );
        let (status, reason, _) = answer(&engine.handle_message(&Principal::new("b"), &logout));
        assert_eq!(
            (status, reason),
            (
                result_status::OPERATION_FAILED,
                Some(result_reason::INVALID_TICKET)
            )
        );
        assert_eq!(
            answer(&engine.handle_message(&a, &logout)).0,
            result_status::SUCCESS
        );
        let (status, reason, _) = answer(&engine.handle_message(
            &a,
            &request(
                Some(&t),
                op::QUERY,
                vec![build::enumeration(tag::QUERY_FUNCTION, 1)],
            ),
        ));
        assert_eq!(
            (status, reason),
            (
                result_status::OPERATION_FAILED,
                Some(result_reason::INVALID_TICKET)
            )
        );
    }
}
