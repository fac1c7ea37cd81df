//! Credentials above TLS, and moving keys, over the wire: one kmipd started in-process on
//! 127.0.0.1 port 0 from an instance made by `init`, with `[credentials]` listing two users,
//! spoken to over mutual TLS with `kmipd-client` (KMIP 2.0).
//!
//! - Login gives a ticket that serves its Request Count, for the certificate that asked only
//!   (another certificate presenting it gets Invalid Ticket); Logout ends it.
//! - Delegated Login's rights narrow: Get Attributes on one key allowed, Get of it and anything
//!   on another key Not Authorised.
//! - A Username and Password credential narrows: the key Fred creates is refused to Barney on
//!   the same certificate (Permission Denied), a wrong password fails (Authentication Not
//!   Successful), the certificate without credential keeps it.
//! - Export gives the key with its attributes; Import stores it under a new identifier and Get
//!   gives the same bytes; another certificate cannot replace it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::bounded;

use std::net::SocketAddr;

use kmipd::Server;
use kmipd_client::{Client, Error, item, payload_of};
use kmipd_proto::build;
use kmipd_proto::enums::{credential_type, object_type, operation as op, result_reason};
use kmipd_proto::message::ProtocolVersion;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;
use tokio::net::TcpListener;

async fn connect(inst: &kmipd::Instance, who: &str, addr: SocketAddr) -> Client {
    let mut client = common::connect(inst, who, addr).await;
    client.set_version(ProtocolVersion::new(2, 0));
    client
}

/// One operation with `credential` (Credential Type, Credential Value items) in the header.
async fn call_as(
    client: &mut Client,
    credential: Option<(u32, Vec<Ttlv>)>,
    operation: u32,
    payload: Vec<Ttlv>,
) -> Result<Vec<Ttlv>, Error> {
    let mut request = client.request(vec![item(operation, payload)]);
    request.header.authentication = credential.map(|(kind, value)| {
        build::structure(
            tag::AUTHENTICATION,
            vec![build::structure(
                tag::CREDENTIAL,
                vec![
                    build::enumeration(tag::CREDENTIAL_TYPE, kind),
                    build::structure(tag::CREDENTIAL_VALUE, value),
                ],
            )],
        )
    });
    let response = bounded("call", client.send(&request)).await?;
    payload_of(response.items.into_iter().next().unwrap())
}

fn ticket(value: &[u8]) -> Option<(u32, Vec<Ttlv>)> {
    Some((credential_type::TICKET, vec![ticket_item(value)]))
}

fn ticket_item(value: &[u8]) -> Ttlv {
    build::structure(
        tag::TICKET,
        vec![
            build::enumeration(tag::TICKET_TYPE, 1),
            build::bytes(tag::TICKET_VALUE, value.to_vec()),
        ],
    )
}

fn user(name: &str, password: &str) -> Option<(u32, Vec<Ttlv>)> {
    Some((
        credential_type::USERNAME_AND_PASSWORD,
        vec![
            build::text(tag::USERNAME, name),
            build::text(tag::PASSWORD, password),
        ],
    ))
}

fn ticket_of(items: &[Ttlv]) -> Vec<u8> {
    let t = items.iter().find(|i| i.tag == tag::TICKET).unwrap();
    StructReader::any(t)
        .unwrap()
        .req_bytes(tag::TICKET_VALUE)
        .unwrap()
        .to_vec()
}

fn reason(r: Result<Vec<Ttlv>, Error>) -> Option<u32> {
    let e = r.unwrap_err();
    assert!(matches!(e, Error::Kmip { .. }), "{e:?}");
    e.result_reason()
}

fn query() -> Vec<Ttlv> {
    vec![build::enumeration(tag::QUERY_FUNCTION, 1)]
}

fn uid(id: &str) -> Vec<Ttlv> {
    vec![build::unique_identifier(id)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_credentials_export_and_import_over_mutual_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let inst = common::instance(&tmp);
    let original = std::fs::read_to_string(&inst.config_path).unwrap();
    let hash = |p| kmipd_ops::credentials::hash_password(p, 256, 1).unwrap();
    std::fs::write(
        &inst.config_path,
        format!(
            "{original}\n[[credentials.users]]\nusername = \"fred\"\npassword_hash = \"{}\"\n\
             [[credentials.users]]\nusername = \"barney\"\npassword_hash = \"{}\"\n",
            hash("pw-fred"),
            hash("pw-barney")
        ),
    )
    .unwrap();
    let config = inst.config().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = bounded("start", Server::new(config).listener(listener).start())
        .await
        .unwrap();
    let addr = server.local_addr();
    let mut client = connect(&inst, "client", addr).await;
    let mut client2 = connect(&inst, "client2", addr).await;

    // Login: two requests, this certificate only; Logout ends it.
    let t = ticket_of(
        &call_as(
            &mut client,
            None,
            op::LOGIN,
            vec![build::int(tag::REQUEST_COUNT, 2)],
        )
        .await
        .unwrap(),
    );
    assert_eq!(
        reason(call_as(&mut client2, ticket(&t), op::QUERY, query()).await),
        Some(result_reason::INVALID_TICKET)
    );
    call_as(&mut client, ticket(&t), op::QUERY, query())
        .await
        .unwrap();
    call_as(&mut client, ticket(&t), op::QUERY, query())
        .await
        .unwrap();
    assert_eq!(
        reason(call_as(&mut client, ticket(&t), op::QUERY, query()).await),
        Some(result_reason::USAGE_LIMIT_EXCEEDED)
    );
    call_as(&mut client, None, op::LOGOUT, vec![ticket_item(&t)])
        .await
        .unwrap();
    assert_eq!(
        reason(call_as(&mut client, ticket(&t), op::QUERY, query()).await),
        Some(result_reason::INVALID_TICKET)
    );

    // Delegated Login: Get Attributes of one key, nothing else.
    let k0 = client.create_aes(128, None).await.unwrap();
    let k1 = client.create_aes(128, Some("k1")).await.unwrap();
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
    let d = ticket_of(
        &call_as(&mut client, None, op::DELEGATED_LOGIN, vec![rights])
            .await
            .unwrap(),
    );
    call_as(&mut client, ticket(&d), op::GET_ATTRIBUTES, uid(&k0))
        .await
        .unwrap();
    let not_authorised = Some(result_reason::NOT_AUTHORISED);
    assert_eq!(
        reason(call_as(&mut client, ticket(&d), op::GET, uid(&k0)).await),
        not_authorised
    );
    assert_eq!(
        reason(call_as(&mut client, ticket(&d), op::GET_ATTRIBUTES, uid(&k1)).await),
        not_authorised
    );

    // A credential narrows its certificate.
    let created = call_as(
        &mut client,
        user("fred", "pw-fred"),
        op::CREATE,
        build::create_symmetric_key_v2(3, 128, 4 | 8),
    )
    .await
    .unwrap();
    let fred_key = StructReader::new(
        &build::structure(tag::RESPONSE_PAYLOAD, created),
        tag::RESPONSE_PAYLOAD,
    )
    .unwrap()
    .req_text(tag::UNIQUE_IDENTIFIER)
    .unwrap()
    .to_owned();
    call_as(
        &mut client,
        user("fred", "pw-fred"),
        op::GET,
        uid(&fred_key),
    )
    .await
    .unwrap();
    assert_eq!(
        reason(
            call_as(
                &mut client,
                user("barney", "pw-barney"),
                op::GET,
                uid(&fred_key)
            )
            .await
        ),
        Some(result_reason::PERMISSION_DENIED)
    );
    assert_eq!(
        reason(call_as(&mut client, user("fred", "wrong"), op::GET, uid(&fred_key)).await),
        Some(result_reason::AUTHENTICATION_NOT_SUCCESSFUL)
    );
    client.get(&fred_key).await.unwrap();

    // Export, then Import under another identifier: the same key.
    let exported = call_as(&mut client, None, op::EXPORT, uid(&k0))
        .await
        .unwrap();
    let attributes = exported
        .iter()
        .find(|i| i.tag == tag::ATTRIBUTES)
        .unwrap()
        .clone();
    let key = exported
        .iter()
        .find(|i| i.tag == tag::SYMMETRIC_KEY)
        .unwrap()
        .clone();
    let import = |id: &str, replace: bool| {
        vec![
            build::unique_identifier(id),
            build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
            build::boolean(tag::REPLACE_EXISTING, replace),
            attributes.clone(),
            key.clone(),
        ]
    };
    call_as(&mut client, None, op::IMPORT, import("moved-k0", false))
        .await
        .unwrap();
    assert_eq!(
        client.get_key_bytes("moved-k0").await.unwrap(),
        client.get_key_bytes(&k0).await.unwrap()
    );
    assert_eq!(
        reason(call_as(&mut client2, None, op::IMPORT, import("moved-k0", true)).await),
        Some(result_reason::OBJECT_ALREADY_EXISTS)
    );
    assert_eq!(
        reason(call_as(&mut client2, None, op::EXPORT, uid(&k0)).await),
        Some(result_reason::ITEM_NOT_FOUND)
    );
    bounded("stop", server.stop()).await;
}
