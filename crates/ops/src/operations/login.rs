//! Login (KMIP 2.0/2.1 §6.1.30): a Ticket for later requests of the same identity.
//!
//! The ticket is bound to the certificate identity that asks and carries whatever narrows
//! this request (a verified credential, the rights of the ticket it came with): a request
//! presenting it runs exactly as this one would (`tickets.rs`, which also says the bounds:
//! Lease Time 0 or absent gives the default lifetime, a longer one is capped; Request Count 0
//! or absent is unlimited within the lifetime). Usage Limits are refused (Feature Not
//! Supported): kmipd does not count operations per ticket.

use kmipd_proto::build;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::tickets::{Narrowing, ticket_item};

/// Handles Login.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let ticket = issue(ctx, &r, None)?;
    Ok(Some(build::structure(
        tag::RESPONSE_PAYLOAD,
        vec![ticket_item(ticket)],
    )))
}

/// Issues a ticket for the caller as Login and Delegated Login ask: the request's Lease Time
/// and Request Count, the caller's narrowing plus `rights`.
pub(crate) fn issue(
    ctx: &Ctx<'_>,
    r: &StructReader<'_>,
    rights: Option<Vec<crate::tickets::Right>>,
) -> Result<Vec<u8>> {
    if r.optional(tag::USAGE_LIMITS).is_some() {
        return Err(Error::FeatureNotSupported("usage limits on a ticket"));
    }
    let lease = match r.optional(tag::LEASE_TIME) {
        None => 0,
        Some(item) => match &item.value {
            kmipd_ttlv::Value::Interval(s) => i64::from(*s),
            // A Date-Time: the ticket lives until then.
            kmipd_ttlv::Value::DateTime(t) => {
                let left = t.saturating_sub(ctx.now);
                if left <= 0 {
                    return Err(Error::InvalidField("Lease Time is in the past"));
                }
                left
            }
            _ => return Err(Error::InvalidField("Lease Time")),
        },
    };
    let count = match r.int(tag::REQUEST_COUNT)? {
        None => 0,
        Some(n) => u32::try_from(n).map_err(|_| Error::InvalidField("Request Count"))?,
    };
    let mut narrowing: Narrowing = ctx.principal.narrowing().cloned().unwrap_or_default();
    if let Some(rights) = rights {
        narrowing.rights.push(rights);
    }
    ctx.tickets
        .issue(ctx.principal.name(), narrowing, lease, count, ctx.now)
}

#[cfg(test)]
pub(crate) mod tests {
    use kmipd_proto::build;
    use kmipd_proto::enums::{credential_type, operation as op, result_status};
    use kmipd_proto::tag;
    use kmipd_ttlv::Ttlv;

    use crate::engine::{Engine, Principal};

    /// A 2.0 request of one item, with the ticket (if any) in its header.
    pub(crate) fn request(ticket: Option<&[u8]>, operation: u32, payload: Vec<Ttlv>) -> Ttlv {
        let mut header = vec![build::structure(
            tag::PROTOCOL_VERSION,
            vec![
                build::int(tag::PROTOCOL_VERSION_MAJOR, 2),
                build::int(tag::PROTOCOL_VERSION_MINOR, 0),
            ],
        )];
        if let Some(t) = ticket {
            header.push(build::structure(
                tag::AUTHENTICATION,
                vec![build::structure(
                    tag::CREDENTIAL,
                    vec![
                        build::enumeration(tag::CREDENTIAL_TYPE, credential_type::TICKET),
                        build::structure(
                            tag::CREDENTIAL_VALUE,
                            vec![crate::tickets::ticket_item(t.to_vec())],
                        ),
                    ],
                )],
            ));
        }
        header.push(build::int(tag::BATCH_COUNT, 1));
        build::structure(
            tag::REQUEST_MESSAGE,
            vec![
                build::structure(tag::REQUEST_HEADER, header),
                build::structure(
                    tag::BATCH_ITEM,
                    vec![
                        build::enumeration(tag::OPERATION, operation),
                        build::structure(tag::REQUEST_PAYLOAD, payload),
                    ],
                ),
            ],
        )
    }

    /// Result Status, Result Reason and payload of the only item.
    pub(crate) fn answer(resp: &Ttlv) -> (u32, Option<u32>, Option<Ttlv>) {
        crate::engine::testing::first_item(resp)
    }

    pub(crate) fn ticket_of(payload: &Ttlv) -> Vec<u8> {
        let r = kmipd_proto::reader::StructReader::any(payload).unwrap();
        crate::tickets::read_ticket(r.required(tag::TICKET).unwrap()).unwrap()
    }

    #[test]
    fn a_ticket_serves_its_count_for_its_identity_only() {
        let engine = Engine::in_memory();
        let a = Principal::new("a");
        let login = request(None, op::LOGIN, vec![build::int(tag::REQUEST_COUNT, 2)]);
        let (status, _, payload) = answer(&engine.handle_message(&a, &login));
        assert_eq!(status, result_status::SUCCESS);
        let t = ticket_of(&payload.unwrap());
        let query = |who: &Principal| {
            answer(&engine.handle_message(who, &request(Some(&t), op::DISCOVER_VERSIONS, vec![])))
        };
        // Another certificate identity cannot use it.
        let (status, reason, _) = query(&Principal::new("b"));
        assert_eq!(status, result_status::OPERATION_FAILED);
        assert_eq!(
            reason,
            Some(kmipd_proto::enums::result_reason::INVALID_TICKET)
        );
        assert_eq!(query(&a).0, result_status::SUCCESS);
        assert_eq!(query(&a).0, result_status::SUCCESS);
        let (status, reason, _) = query(&a);
        assert_eq!(status, result_status::OPERATION_FAILED);
        assert_eq!(
            reason,
            Some(kmipd_proto::enums::result_reason::USAGE_LIMIT_EXCEEDED)
        );
        // 1.x has no Login.
        let v1 = crate::engine::testing::request(1, 4, op::LOGIN, vec![]);
        let (status, reason, _) = answer(&engine.handle_message(&a, &v1));
        assert_eq!(status, result_status::OPERATION_FAILED);
        assert_eq!(
            reason,
            Some(kmipd_proto::enums::result_reason::OPERATION_NOT_SUPPORTED)
        );
    }

    #[test]
    fn usage_limits_are_refused() {
        let engine = Engine::in_memory();
        let login = request(
            None,
            op::LOGIN,
            vec![build::structure(tag::USAGE_LIMITS, vec![])],
        );
        let (status, reason, _) = answer(&engine.handle_message(&Principal::new("a"), &login));
        assert_eq!(status, result_status::OPERATION_FAILED);
        assert_eq!(
            reason,
            Some(kmipd_proto::enums::result_reason::FEATURE_NOT_SUPPORTED)
        );
    }
}
