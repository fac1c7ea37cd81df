//! KMIP over HTTPS (`[https]`), over the wire: kmipd started in-process with its HTTPS listener
//! on 127.0.0.1 port 0, spoken to with `kmipd-client`'s HTTP/1.1 client over mutual TLS (and
//! raw bytes where a client library would not misbehave on purpose).
//!
//! One server for the whole file (a lean test): each encoding answered in kind, the identity
//! from the client certificate as on port 5696, each refusal with its status and one-line body,
//! the size limit applied from Content-Length before the body is sent, and the requests
//! counted and audited.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::bounded;

use std::time::Duration;

use kmipd::Server;
use kmipd_client::{Connector, Error, HttpResponse, TlsOptions, item};
use kmipd_ops::Engine;
use kmipd_proto::build;
use kmipd_proto::enums::{operation as op, result_reason, result_status};
use kmipd_proto::message::{ProtocolVersion, RequestMessage, ResponseMessage};
use kmipd_ttlv::{Limits, Ttlv};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A Query request in KMIP XML (as the MSGENC-XML test cases send it).
const XML_QUERY: &str = r#"<RequestMessage>
  <RequestHeader>
    <ProtocolVersion>
      <ProtocolVersionMajor type="Integer" value="1"/>
      <ProtocolVersionMinor type="Integer" value="4"/>
    </ProtocolVersion>
    <BatchCount type="Integer" value="1"/>
  </RequestHeader>
  <BatchItem>
    <Operation type="Enumeration" value="Query"/>
    <RequestPayload>
      <QueryFunction type="Enumeration" value="QueryOperations"/>
    </RequestPayload>
  </BatchItem>
</RequestMessage>"#;

/// The same request in KMIP JSON.
const JSON_QUERY: &str = r#"{"tag":"RequestMessage","value":[
  {"tag":"RequestHeader","value":[
    {"tag":"ProtocolVersion","value":[
      {"tag":"ProtocolVersionMajor","type":"Integer","value":2},
      {"tag":"ProtocolVersionMinor","type":"Integer","value":1}]},
    {"tag":"BatchCount","type":"Integer","value":1}]},
  {"tag":"BatchItem","value":[
    {"tag":"Operation","type":"Enumeration","value":"Query"},
    {"tag":"RequestPayload","value":[
      {"tag":"QueryFunction","type":"Enumeration","value":"QueryOperations"}]}]}]}"#;

fn one_line(r: &HttpResponse) -> String {
    let text = r.text();
    assert!(
        text.ends_with('\n') && text.trim_end().lines().count() == 1,
        "not a one-line body: {text:?}"
    );
    text.trim_end().to_owned()
}

fn response_of(tree: &Ttlv) -> ResponseMessage {
    ResponseMessage::from_ttlv(tree).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kmip_over_https() {
    let tmp = tempfile::tempdir().unwrap();
    let inst = common::instance(&tmp);
    let mut config = inst.config().unwrap();
    config.limits.max_message_size = 64 * 1024;
    let read = |p: std::path::PathBuf| std::fs::read(p).unwrap();
    let connector = |who: &str| {
        Connector::new(
            &read(inst.cert("ca")),
            &read(inst.cert(who)),
            &read(inst.key(who)),
            TlsOptions {
                timeout: Duration::from_secs(15),
                ..TlsOptions::default()
            },
        )
        .unwrap()
    };
    let server = bounded(
        "start",
        Server::new(config)
            .listener(TcpListener::bind("127.0.0.1:0").await.unwrap())
            .https_listener(TcpListener::bind("127.0.0.1:0").await.unwrap())
            .engine(Engine::in_memory())
            .start(),
    )
    .await
    .unwrap();
    let https = server.https_addr().unwrap();
    assert_ne!(https, server.local_addr());

    let client = connector("client");
    let mut h = bounded("connect", client.connect_https(https))
        .await
        .unwrap();

    // TTLV in, TTLV out.
    let query = RequestMessage::new(
        ProtocolVersion::V2_1,
        vec![item(
            op::QUERY,
            vec![build::enumeration(
                kmipd_proto::tag::QUERY_FUNCTION,
                kmipd_proto::enums::query_function::QUERY_OPERATIONS,
            )],
        )],
    );
    let bytes = kmipd_ttlv::encode_to_vec(&query.to_ttlv()).unwrap();
    let r = bounded("ttlv", h.post_kmip("application/octet-stream", bytes))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type.as_deref(), Some("application/octet-stream"));
    let tree = kmipd_ttlv::decode(&r.body, &Limits::default()).unwrap();
    let resp = response_of(&tree);
    assert_eq!(resp.items[0].result_status, result_status::SUCCESS);
    assert_eq!(resp.header.protocol_version, ProtocolVersion::V2_1);

    // XML in, XML out (same connection: keep-alive).
    let r = bounded("xml", h.post_kmip("text/xml", XML_QUERY.into()))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type.as_deref(), Some("text/xml"));
    let tree = kmipd_proto::xml::read_item(
        &r.text(),
        &kmipd_proto::xml::XmlOptions::default(),
        &mut kmipd_proto::xml::NoPlaceholders,
    )
    .unwrap();
    let resp = response_of(&tree);
    assert_eq!(resp.header.protocol_version, ProtocolVersion::new(1, 4));
    assert_eq!(resp.items[0].result_status, result_status::SUCCESS);
    assert_eq!(resp.items[0].operation, Some(op::QUERY));

    // JSON in, JSON out.
    let r = bounded(
        "json",
        h.post_kmip("application/json; charset=utf-8", JSON_QUERY.into()),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    let resp = response_of(&kmipd_proto::json::from_str(&r.text()).unwrap());
    assert_eq!(resp.header.protocol_version, ProtocolVersion::V2_1);
    assert_eq!(resp.items[0].result_status, result_status::SUCCESS);

    // Undecodable TTLV: the Invalid Message answer of port 5696, not an HTTP error.
    let r = bounded(
        "garbage",
        h.post_kmip("application/octet-stream", vec![0x42, 0, 0x78, 1]),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let resp = response_of(&kmipd_ttlv::decode(&r.body, &Limits::default()).unwrap());
    assert_eq!(
        resp.items[0].result_reason,
        Some(result_reason::INVALID_MESSAGE)
    );

    // Refusals: status and a one-line body each.
    let r = bounded(
        "path",
        h.request("POST", "/other", Some("text/xml"), vec![]),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404);
    assert!(one_line(&r).contains("/kmip"));
    let r = bounded("method", h.request("GET", "/kmip", None, vec![]))
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.allow.as_deref(), Some("POST"));
    one_line(&r);
    let r = bounded("type", h.post_kmip("text/plain", XML_QUERY.into()))
        .await
        .unwrap();
    assert_eq!(r.status, 415);
    assert!(one_line(&r).contains("application/json"));
    let r = bounded(
        "bad json",
        h.post_kmip("application/json", b"{\"tag\":".to_vec()),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(one_line(&r).contains("JSON"));
    let r = bounded(
        "bad xml",
        h.post_kmip(
            "text/xml",
            b"<RequestMessage><Nope/></RequestMessage>".to_vec(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(one_line(&r).contains("Nope"));
    // Content-Length over the limit: 413 from the header alone, while the body is never sent.
    let mut raw = bounded("raw", client.connect_tls(https)).await.unwrap();
    raw.write_all(
        b"POST /kmip HTTP/1.1\r\nHost: kmip\r\nContent-Type: application/octet-stream\r\n\
          Content-Length: 1000000\r\n\r\n",
    )
    .await
    .unwrap();
    raw.flush().await.unwrap();
    let mut head = vec![0u8; 4096];
    let n = bounded("413", raw.read(&mut head)).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("exceeds the limit of 65536 bytes"), "{head}");

    // A chunked body (no Content-Length) over the limit: cut at the limit.
    let mut raw = bounded("raw", client.connect_tls(https)).await.unwrap();
    let mut request =
        b"POST /kmip HTTP/1.1\r\nHost: kmip\r\nContent-Type: application/octet-stream\r\n\
          Transfer-Encoding: chunked\r\n\r\n10001\r\n"
            .to_vec();
    request.extend(std::iter::repeat_n(0u8, 0x10001));
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    raw.write_all(&request).await.unwrap();
    raw.flush().await.unwrap();
    let mut head = vec![0u8; 4096];
    let n = bounded("413 chunked", raw.read(&mut head)).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");

    // The identity is the client certificate's, as on port 5696: client's key is invisible to
    // client2 over HTTPS and visible to client.
    let mut kmip = bounded("connect 5696", client.connect(server.local_addr()))
        .await
        .unwrap();
    let uid = bounded("create", kmip.create_aes(256, None)).await.unwrap();
    let get = |v| {
        RequestMessage::new(v, vec![item(op::GET, vec![build::unique_identifier(&uid)])]).to_ttlv()
    };
    let mine = bounded("get", h.send_ttlv(&get(ProtocolVersion::V2_1)))
        .await
        .unwrap();
    assert_eq!(
        response_of(&mine).items[0].result_status,
        result_status::SUCCESS
    );
    let mut other = bounded("connect client2", connector("client2").connect_https(https))
        .await
        .unwrap();
    let theirs = bounded("get", other.send_ttlv(&get(ProtocolVersion::V2_1)))
        .await
        .unwrap();
    let failed = &response_of(&theirs).items[0];
    assert_eq!(failed.result_status, result_status::OPERATION_FAILED);
    // Exactly what an identifier nobody used gets.
    let absent = RequestMessage::new(
        ProtocolVersion::V2_1,
        vec![item(
            op::GET,
            vec![build::unique_identifier("no-such-object")],
        )],
    )
    .to_ttlv();
    let nobody = bounded("get absent", other.send_ttlv(&absent))
        .await
        .unwrap();
    assert_eq!(
        failed.result_reason,
        response_of(&nobody).items[0].result_reason
    );

    // No client certificate: refused as on port 5696.
    let anonymous =
        Connector::without_client_cert(&read(inst.cert("ca")), TlsOptions::default()).unwrap();
    let refused = match bounded("anonymous", anonymous.connect_https(https)).await {
        Err(_) => true,
        Ok(mut c) => matches!(
            bounded("anonymous query", c.post_kmip("text/xml", XML_QUERY.into())).await,
            Err(Error::Io(_))
        ),
    };
    assert!(refused, "a client without a certificate was served");

    // Counted like any request, refusals by reason.
    let metrics = server.metrics().render();
    for line in [
        "kmipd_requests_total{operation=\"Query\",result=\"Success\"} 3",
        "kmipd_refusals_total{reason=\"https_not_found\"} 1",
        "kmipd_refusals_total{reason=\"https_method\"} 1",
        "kmipd_refusals_total{reason=\"https_content_type\"} 1",
        "kmipd_refusals_total{reason=\"https_bad_body\"} 2",
        "kmipd_refusals_total{reason=\"max_message_size\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    drop((h, other, raw));
    bounded("stop", server.stop()).await;
    // Audited: the audit log holds the HTTPS requests as client's and client2's.
    let path = inst.config().unwrap().audit.path;
    let audit = std::fs::read_to_string(inst.dir.join(path)).unwrap();
    assert!(audit.contains("\"identity\":\"client2\""), "{audit}");
    assert_eq!(
        audit.matches("\"operation\":\"Query\"").count(),
        3,
        "{audit}"
    );
}
