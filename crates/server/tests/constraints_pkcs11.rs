//! Set Constraints, Get Constraints and PKCS_11 over the wire, against the `kmipd` binary on
//! an instance made by `kmipd init` (the harness is `tests/cluster/`'s `Node`; the PostgreSQL
//! multi-node case of the constraints is in `postgres.rs`): an administrator's constraints
//! bind every client's new objects and survive a SIGKILL and restart of a sled instance, a
//! client's Set Constraints is Permission Denied, each is in the audit trail (`kmipd audit
//! search`) and in the request metrics; a PKCS#11 context is usable by its identity only, on
//! any of its connections, and its calls are audited.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod cluster;

use std::path::{Path, PathBuf};
use std::process::Command;

use cluster::{KMIPD, Node, connect, connector_in, init, run_bounded, runtime, sample};
use kmipd_client::{Client, Error};
use kmipd_proto::attributes::Attribute;
use kmipd_proto::build;
use kmipd_proto::enums::{
    cryptographic_algorithm as alg, cryptographic_usage_mask as usage, object_type as ot,
    operation as op, pkcs_11_function as f, result_reason,
};
use kmipd_proto::message::ProtocolVersion;
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

/// A new instance directory (`kmipd init`, with or without its SoftHSM2 token) and its
/// configuration file.
fn instance(tmp: &tempfile::TempDir, hsm: bool) -> (PathBuf, PathBuf) {
    let dir = tmp.path().canonicalize().unwrap().join("kmipd");
    init(&dir, hsm);
    let config = dir.join("kmipd.toml");
    (dir, config)
}

/// `kmipd audit search --json ARGS... DIR/audit.log`: the matching records, the chain intact.
fn audit_search(dir: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let mut cmd = Command::new(KMIPD);
    cmd.args(["audit", "search", "--json"])
        .args(args)
        .arg(dir.join("audit.log"));
    let (ok, out, err) = run_bounded(cmd);
    assert!(
        ok && err.contains("chain intact"),
        "audit search {args:?}: {out}{err}"
    );
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (identity, status, reason) of audit records.
fn who_and_outcome(records: &[serde_json::Value]) -> Vec<(&str, &str, Option<&str>)> {
    records
        .iter()
        .map(|r| {
            (
                r["identity"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
                r["reason"].as_str(),
            )
        })
        .collect()
}

/// The Result Reason of a KMIP failure (anything else fails the test).
fn reason<T: std::fmt::Debug>(r: Result<T, Error>) -> Option<u32> {
    match r {
        Err(e @ Error::Kmip { .. }) => e.result_reason(),
        other => panic!("expected a KMIP failure: {other:?}"),
    }
}

/// Symmetric keys must be 256 bits long, or be in the group `legacy`.
fn constraints() -> Ttlv {
    let symmetric = || {
        build::structure(
            tag::OBJECT_TYPES,
            vec![build::enumeration(tag::OBJECT_TYPE, ot::SYMMETRIC_KEY)],
        )
    };
    build::structure(
        tag::CONSTRAINTS,
        vec![
            build::structure(
                tag::CONSTRAINT,
                vec![
                    symmetric(),
                    build::structure(
                        tag::ATTRIBUTES,
                        vec![build::int(tag::CRYPTOGRAPHIC_LENGTH, 256)],
                    ),
                ],
            ),
            build::structure(
                tag::CONSTRAINT,
                vec![
                    symmetric(),
                    build::structure(
                        tag::OBJECT_GROUPS,
                        vec![build::text(tag::OBJECT_GROUP, "legacy")],
                    ),
                ],
            ),
        ],
    )
}

/// Get Constraints: the one Constraints structure of the answer.
async fn get_constraints(c: &mut Client) -> Ttlv {
    let mut items = c.call(op::GET_CONSTRAINTS, vec![]).await.unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    items.remove(0)
}

/// Create: an AES key of `bits`, in `group` when given.
async fn aes(c: &mut Client, bits: i32, group: Option<&str>) -> Result<String, Error> {
    let mut attrs = vec![
        Attribute::std(tag::CRYPTOGRAPHIC_ALGORITHM, Value::Enumeration(alg::AES)),
        Attribute::std(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(bits)),
        build::usage_mask_attr(usage::ENCRYPT | usage::DECRYPT),
    ];
    if let Some(g) = group {
        attrs.push(Attribute::std(
            tag::OBJECT_GROUP,
            Value::TextString(g.to_owned()),
        ));
    }
    c.create(ot::SYMMETRIC_KEY, &attrs).await
}

/// Over the wire on sled: an administrator sets constraints, a client reads them and is bound
/// by them (and refused to set them); the audit trail and the metrics show each; a restart
/// after a SIGKILL keeps them; an empty Set Constraints clears them.
#[test]
fn constraints_set_by_an_administrator_bind_clients_are_audited_counted_and_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, config) = instance(&tmp, true);
    cluster::with_metrics(&config);
    let (admin, client) = (connector_in(&dir, "admin"), connector_in(&dir, "client"));
    let none = build::structure(tag::CONSTRAINTS, Vec::new());
    let denied = Some(result_reason::PERMISSION_DENIED);
    let violation = Some(result_reason::CONSTRAINT_VIOLATION);
    let rt = runtime();

    let node = Node::start(&config);
    rt.block_on(async {
        let mut admin = connect(&admin, node.addr()).await;
        let mut client = connect(&client, node.addr()).await;
        assert_eq!(get_constraints(&mut client).await, none);
        // Only an administrator sets them; the refusal changes nothing.
        let refused = client.call(op::SET_CONSTRAINTS, vec![constraints()]).await;
        assert_eq!(reason(refused), denied);
        assert_eq!(get_constraints(&mut client).await, none);
        admin
            .call(op::SET_CONSTRAINTS, vec![constraints()])
            .await
            .unwrap();
        assert_eq!(get_constraints(&mut client).await, constraints());
        // A new symmetric key satisfies one of them or is refused; other types are free.
        assert_eq!(reason(aes(&mut client, 128, None).await), violation);
        assert_eq!(
            reason(aes(&mut client, 128, Some("other")).await),
            violation
        );
        aes(&mut client, 256, None).await.unwrap();
        aes(&mut client, 128, Some("legacy")).await.unwrap();
        client
            .register_secret(b"unconstrained", None)
            .await
            .unwrap();
        // KMIP 1.x has no Constraint Violation: Permission Denied.
        client.set_version(ProtocolVersion::V1_4);
        assert_eq!(reason(aes(&mut client, 128, None).await), denied);
    });
    // Every item counted by operation and result, and the denials by identity.
    let m = node.scrape();
    let requests = |op: &str, result: &str| {
        format!("kmipd_requests_total{{operation=\"{op}\",result=\"{result}\"}}")
    };
    for (series, n) in [
        (requests("SetConstraints", "Success"), 1),
        (requests("SetConstraints", "OperationFailed"), 1),
        (requests("GetConstraints", "Success"), 3),
        (requests("Create", "Success"), 2),
        (requests("Create", "OperationFailed"), 3),
        (requests("Register", "Success"), 1),
        (
            "kmipd_permission_denied_total{identity=\"client\"}".to_owned(),
            2,
        ),
        (
            "kmipd_permission_denied_total{identity=\"admin\"}".to_owned(),
            0,
        ),
    ] {
        assert_eq!(sample(&m, &series), n, "{series} in:\n{m}");
    }
    // SIGKILL: the setting was durable when Set Constraints answered (`set_setting`), not
    // only after a clean shutdown.
    node.kill9();

    // A restart (the sled store reopened) keeps them; cleared by an empty Set Constraints.
    let node = Node::start(&config);
    rt.block_on(async {
        let mut admin = connect(&admin, node.addr()).await;
        let mut client = connect(&client, node.addr()).await;
        assert_eq!(get_constraints(&mut client).await, constraints());
        assert_eq!(reason(aes(&mut client, 128, None).await), violation);
        aes(&mut client, 256, None).await.unwrap();
        admin.call(op::SET_CONSTRAINTS, vec![]).await.unwrap();
        assert_eq!(get_constraints(&mut client).await, none);
        aes(&mut client, 128, None).await.unwrap();
    });
    node.stop();

    // The audit trail: who set (or tried to set) them and how it ended, and each refused
    // Create with its reason, across both runs.
    let set = audit_search(&dir, &["--operation", "SetConstraints"]);
    assert_eq!(
        who_and_outcome(&set),
        [
            ("client", "OperationFailed", Some("PermissionDenied")),
            ("admin", "Success", None),
            ("admin", "Success", None),
        ]
    );
    let refused = audit_search(
        &dir,
        &["--operation", "Create", "--result", "OperationFailed"],
    );
    assert_eq!(
        who_and_outcome(&refused),
        [
            ("client", "OperationFailed", Some("ConstraintViolation")),
            ("client", "OperationFailed", Some("ConstraintViolation")),
            ("client", "OperationFailed", Some("PermissionDenied")),
            ("client", "OperationFailed", Some("ConstraintViolation")),
        ]
    );
    assert!(refused.iter().all(|r| r["uids"] == serde_json::json!([])));
}

/// The CK_INFO kmipd answers, as the KMIP PKCS#11 profile encodes it: Cryptoki 2.40,
/// manufacturer `kmipd` blank-padded, no flags (a CK_ULONG, 8 bytes), the description, and
/// the version (the workspace's, which kmipd-ops shares).
fn expected_ck_info() -> Vec<u8> {
    let padded = |s: &str| format!("{s:<32}").into_bytes();
    let mut info = vec![2, 40];
    info.extend(padded("kmipd"));
    info.extend([0u8; 8]);
    info.extend(padded("kmipd KMIP key management server"));
    info.push(env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap());
    info.push(env!("CARGO_PKG_VERSION_MINOR").parse().unwrap());
    info
}

/// What a PKCS_11 call answered.
#[derive(Debug)]
struct Answer {
    rv: u32,
    correlation: Option<Vec<u8>>,
    output: Option<Vec<u8>>,
}

/// PKCS_11 with `function` and, when given, a Correlation Value.
async fn pkcs11(c: &mut Client, function: u32, correlation: Option<&[u8]>) -> Answer {
    let mut payload = vec![build::enumeration(tag::PKCS_11_FUNCTION, function)];
    if let Some(v) = correlation {
        payload.push(build::bytes(tag::CORRELATION_VALUE, v.to_vec()));
    }
    let items = c.call(op::PKCS_11, payload).await.unwrap();
    let find = |t| items.iter().find(|i| i.tag == t).map(|i| i.value.clone());
    let bytes = |t| match find(t) {
        Some(Value::ByteString(b)) => Some(b.to_vec()),
        None => None,
        other => panic!("{other:?}"),
    };
    let Some(Value::Enumeration(rv)) = find(tag::PKCS_11_RETURN_CODE) else {
        panic!("no return code: {items:?}")
    };
    Answer {
        rv,
        correlation: bytes(tag::CORRELATION_VALUE),
        output: bytes(tag::PKCS_11_OUTPUT_PARAMETERS),
    }
}

/// PKCS#11 over the wire: C_Initialize, then C_GetInfo answers kmipd's CK_INFO; the context's
/// Correlation Value works on another connection of the same identity and not for another
/// identity (which cannot finalize it either); C_Finalize ends it. Every call is audited.
#[test]
fn a_pkcs11_context_serves_its_identity_on_any_connection_and_no_other() {
    const OK: u32 = 0x000;
    const NOT_INITIALIZED: u32 = 0x190;
    let tmp = tempfile::tempdir().unwrap();
    let (dir, config) = instance(&tmp, false);
    let node = Node::start(&config);
    let (a, b) = (connector_in(&dir, "client"), connector_in(&dir, "client2"));
    runtime().block_on(async {
        let mut a1 = connect(&a, node.addr()).await;
        let mut a2 = connect(&a, node.addr()).await;
        let mut b = connect(&b, node.addr()).await;
        let started = pkcs11(&mut a1, f::C_INITIALIZE, None).await;
        assert_eq!(started.rv, OK);
        let value = started.correlation.expect("a Correlation Value");
        assert_eq!(value.len(), 16);
        let info = pkcs11(&mut a1, f::C_GET_INFO, Some(&value)).await;
        assert_eq!(info.rv, OK);
        assert_eq!(info.output, Some(expected_ck_info()));
        // Another identity presenting it: as if it had never called C_Initialize.
        let theirs = pkcs11(&mut b, f::C_GET_INFO, Some(&value)).await;
        assert_eq!((theirs.rv, theirs.output), (NOT_INITIALIZED, None));
        let theirs = pkcs11(&mut b, f::C_FINALIZE, Some(&value)).await;
        assert_eq!(theirs.rv, NOT_INITIALIZED);
        // Still live for its identity, on another connection too.
        let again = pkcs11(&mut a2, f::C_GET_INFO, Some(&value)).await;
        assert_eq!((again.rv, again.output), (OK, Some(expected_ck_info())));
        assert_eq!(pkcs11(&mut a2, f::C_FINALIZE, Some(&value)).await.rv, OK);
        // Finalized: gone for every connection.
        for c in [&mut a1, &mut a2] {
            assert_eq!(
                pkcs11(c, f::C_GET_INFO, Some(&value)).await.rv,
                NOT_INITIALIZED
            );
        }
    });
    node.stop();

    // Every call is in the audit trail under its caller; a PKCS#11 return code travels in a
    // successful KMIP answer, so each is a Success, and a CK_RV other than CKR_OK is the
    // record's message (client2's two calls on client's context: CKR_CRYPTOKI_NOT_INITIALIZED).
    let records = audit_search(&dir, &["--operation", "PKCS_11"]);
    let messages: Vec<Option<&str>> = records.iter().map(|r| r["message"].as_str()).collect();
    let refused = Some("PKCS#11 return code 0x00000190");
    assert_eq!(
        messages,
        [None, None, refused, refused, None, None, refused, refused]
    );
    let who: Vec<&str> = who_and_outcome(&records)
        .into_iter()
        .map(|(identity, status, reason)| {
            assert_eq!((status, reason), ("Success", None));
            identity
        })
        .collect();
    assert_eq!(
        who,
        [
            "client", "client", "client2", "client2", "client", "client", "client", "client"
        ]
    );
}
