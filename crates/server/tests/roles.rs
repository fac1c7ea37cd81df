//! Roles over the wire: kmipd started in-process on 127.0.0.1 port 0 from an instance made by
//! `init` whose configuration lists `client2` as an auditor, spoken to over mutual TLS with
//! `kmipd-client`. The auditor locates and reads the attributes of the `client` identity's key
//! but is refused its key material and its destruction; the configuration then makes `client2`
//! an operator and `kmipd admin reload` (the admin socket) applies it to the same connection's
//! next request; a configuration that does not load changes nothing. The default policy refuses
//! a new 3DES key (Permission Denied, the rule named) until a reload turns the rules off.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::{BOUND, bounded, connect};

use std::path::{Path, PathBuf};

use kmipd::Server;
use kmipd::admin::{Request, call};
use kmipd_client::Error;
use kmipd_proto::attributes::Attribute;
use kmipd_proto::enums::{
    cryptographic_algorithm, object_type, result_reason, revocation_reason_code,
};
use kmipd_proto::tag;
use kmipd_ttlv::Value;
use tokio::net::TcpListener;

/// The configuration `init` wrote, with `roles` appended.
fn write_config(path: &Path, original: &str, roles: &str) {
    std::fs::write(path, format!("{original}\n{roles}\n")).unwrap();
}

/// `kmipd admin reload` through the socket: (ok, message).
async fn reload(socket: PathBuf) -> (bool, String) {
    let r = tokio::task::spawn_blocking(move || call(&socket, &Request::Reload, Some(BOUND)))
        .await
        .unwrap()
        .unwrap();
    (r.ok, r.message)
}

fn reason(e: Error) -> Option<u32> {
    assert!(matches!(e, Error::Kmip { .. }), "{e:?}");
    e.result_reason()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_reads_but_never_gets_key_material_and_a_reload_makes_it_an_operator() {
    let tmp = tempfile::tempdir().unwrap();
    let inst = common::instance(&tmp);
    let original = std::fs::read_to_string(&inst.config_path).unwrap();
    write_config(
        &inst.config_path,
        &original,
        "[roles]\nauditor = [\"cn:client2\"]",
    );
    let config = inst.config().unwrap();
    let socket = config.admin.socket.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = bounded("start", Server::new(config).listener(listener).start())
        .await
        .unwrap();
    let addr = server.local_addr();
    let mut owner = connect(&inst, "client", addr).await;
    let mut auditor = connect(&inst, "client2", addr).await;

    let key = owner.create_aes(256, Some("payroll")).await.unwrap();
    // The default policy refuses a new 3DES key, naming the rule.
    let des3 = [
        Attribute::std(
            tag::CRYPTOGRAPHIC_ALGORITHM,
            Value::Enumeration(cryptographic_algorithm::DES3),
        ),
        Attribute::std(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(168)),
    ];
    let e = owner
        .create(object_type::SYMMETRIC_KEY, &des3)
        .await
        .unwrap_err();
    assert!(
        format!("{e:?}").contains("policy: DES3 is not an allowed algorithm"),
        "{e:?}"
    );
    assert_eq!(reason(e), Some(result_reason::PERMISSION_DENIED));
    assert_eq!(
        auditor.locate_by_name("payroll").await.unwrap(),
        vec![key.clone()]
    );
    assert!(!auditor.get_attributes(&key).await.unwrap().is_empty());
    let denied = Some(result_reason::PERMISSION_DENIED);
    assert_eq!(reason(auditor.get(&key).await.unwrap_err()), denied);
    assert_eq!(reason(auditor.destroy(&key).await.unwrap_err()), denied);
    assert_eq!(
        reason(auditor.create_aes(128, None).await.unwrap_err()),
        denied
    );

    // A configuration that does not load (an empty pattern) changes nothing.
    write_config(
        &inst.config_path,
        &original,
        "[roles]\noperator = [\"cn:\"]",
    );
    let (ok, message) = reload(socket.clone()).await;
    assert!(!ok && message.contains("empty pattern"), "{message}");
    assert_eq!(reason(auditor.destroy(&key).await.unwrap_err()), denied);

    // client2 becomes an operator: from its next request on the same connection it manages
    // the lifecycle of client's key, and still never reads its key material.
    write_config(
        &inst.config_path,
        &original,
        "[roles]\noperator = [\"client2\"]\n[policy]\nenforce_algorithms = false",
    );
    let (ok, message) = reload(socket.clone()).await;
    assert!(ok, "{message}");
    assert!(message.contains("1 operator"), "{message}");
    assert!(message.contains("no algorithm rule"), "{message}");
    // The reloaded policy has no algorithm rule: the same 3DES request succeeds.
    owner
        .create(object_type::SYMMETRIC_KEY, &des3)
        .await
        .unwrap();
    let operator = &mut auditor;
    assert_eq!(reason(operator.get(&key).await.unwrap_err()), denied);
    operator.activate(&key).await.unwrap();
    operator
        .revoke(&key, revocation_reason_code::CESSATION_OF_OPERATION)
        .await
        .unwrap();
    operator.destroy(&key).await.unwrap();
    let gone = owner.get(&key).await.unwrap_err();
    assert!(matches!(gone, Error::Kmip { .. }), "{gone:?}");
    bounded("stop", server.stop()).await;
}
