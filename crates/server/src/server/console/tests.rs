//! The console's handlers: a real server (in-process, memory store, its own audit log) with
//! its console listener; most requests go to the router directly with the caller's names
//! derived from real certificates exactly as the listener derives them, and one pass goes over
//! the wire with mutual TLS.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use kmipd_ops::Principal;
use kmipd_proto::build;
use kmipd_proto::enums::{
    cryptographic_usage_mask as cum, object_type, operation as op, result_status, state,
};
use kmipd_proto::message::{ProtocolVersion, RequestBatchItem, RequestMessage, ResponseMessage};
use kmipd_proto::tag;
use kmipd_ttlv::Value;
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::super::Shared;
use super::{Caller, router};
use crate::{InitOptions, Instance, Server, ServerHandle};

const BOUND: Duration = Duration::from_secs(60);
const PEER: &str = "127.0.0.1:40000";
const HOST: &str = "console.test:5698";

struct Fixture {
    _tmp: tempfile::TempDir,
    inst: Instance,
    server: ServerHandle,
}

/// An instance with `operator` and `auditor` certificates and roles, served in-process with
/// `[console]` in its configuration file (bound to port 0).
async fn start() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let inst = crate::init_instance_with(
        &tmp.path().join("kmipd"),
        &InitOptions {
            hsm: false,
            ..InitOptions::default()
        },
    )
    .unwrap();
    inst.issue_clients(&inst.ca().unwrap(), &["operator", "auditor"])
        .unwrap();
    let original = std::fs::read_to_string(&inst.config_path).unwrap();
    std::fs::write(
        &inst.config_path,
        format!(
            "{original}\n[console]\nlisten = \"127.0.0.1:0\"\n\n\
             [roles]\noperator = [\"cn:operator\"]\nauditor = [\"cn:auditor\"]\n"
        ),
    )
    .unwrap();
    let config = inst.config().unwrap();
    let server = tokio::time::timeout(
        BOUND,
        Server::new(config)
            .listener(TcpListener::bind("127.0.0.1:0").await.unwrap())
            .start(),
    )
    .await
    .unwrap()
    .unwrap();
    Fixture {
        _tmp: tmp,
        inst,
        server,
    }
}

impl Fixture {
    fn shared(&self) -> Arc<Shared> {
        self.server.shared().clone()
    }

    /// The caller of `who`'s certificate: identity and names as the listener derives them.
    fn caller(&self, who: &str) -> Caller {
        let pem = std::fs::read(self.inst.cert(who)).unwrap();
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(&pem)
            .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
            .unwrap();
        let source = self.shared().config.identity.source;
        let identity = crate::tls::identity_from_cert(&der, source).unwrap();
        Caller {
            names: crate::settings::cert_names(&der, &identity),
            peer: PEER.parse::<SocketAddr>().unwrap(),
            serial: crate::clients::Seen::serial_of(&der),
        }
    }

    async fn get(&self, who: &str, path: &str) -> (StatusCode, String) {
        let req = Request::get(path)
            .header("host", HOST)
            .extension(self.caller(who))
            .body(Body::empty())
            .unwrap();
        self.send(req).await
    }

    async fn post(&self, who: &str, origin: Option<&str>, form: &str) -> (StatusCode, String) {
        let mut req = Request::post("/keys/action")
            .header("host", HOST)
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let req = req
            .extension(self.caller(who))
            .body(Body::from(form.to_owned()))
            .unwrap();
        self.send(req).await
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, String) {
        let r = tokio::time::timeout(BOUND, router(self.shared()).oneshot(req))
            .await
            .unwrap()
            .unwrap();
        let status = r.status();
        assert_eq!(
            r.headers()["content-security-policy"],
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'"
        );
        let body = axum::body::to_bytes(r.into_body(), 1 << 24).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// Registers an AES key of these bytes owned by `client`; its Unique Identifier.
    async fn register(&self, key: &[u8], name: &str) -> String {
        let payload = vec![
            build::enumeration(tag::OBJECT_TYPE, object_type::SYMMETRIC_KEY),
            build::structure(
                tag::ATTRIBUTES,
                vec![
                    build::usage_mask(cum::ENCRYPT | cum::DECRYPT),
                    build::name_attr(name).to_v2(),
                ],
            ),
            kmipd_test_support::kmip::aes_key(key),
        ];
        let item = self.kmip("client", op::REGISTER, payload).await;
        kmipd_test_support::kmip::uid(&kmipd_test_support::kmip::ok(&item))
    }

    /// Runs one KMIP request of `who` as a client's (audited, as over the wire).
    async fn kmip(
        &self,
        who: &str,
        operation: u32,
        payload: Vec<kmipd_ttlv::Ttlv>,
    ) -> kmipd_proto::message::ResponseBatchItem {
        let request = RequestMessage::new(
            ProtocolVersion::V2_1,
            vec![RequestBatchItem::new(operation, payload)],
        );
        let bytes = kmipd_ttlv::encode_to_vec(&request.to_ttlv()).unwrap();
        let shared = self.shared();
        let peer = PEER.parse::<SocketAddr>().unwrap().into();
        let answer = super::super::execute::execute(&shared, &Principal::new(who), &peer, bytes)
            .await
            .unwrap();
        let tree = kmipd_ttlv::decode(&answer, &kmipd_ttlv::Limits::unbounded()).unwrap();
        ResponseMessage::from_ttlv(&tree).unwrap().items.remove(0)
    }

    fn state(&self, uid: &str) -> u32 {
        let o = self
            .shared()
            .engine
            .describe(&Principal::admin("admin"), uid)
            .unwrap();
        match o.attributes.get(tag::STATE) {
            Some(Value::Enumeration(s)) => *s,
            other => panic!("no state: {other:?}"),
        }
    }

    fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.shared().audit.path())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The CSRF token in a confirmation page's form.
fn token_in(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..at + 64].to_owned()
}

fn form(uid: &str, action: &str, token: &str) -> String {
    format!(
        "uid={}&action={action}&csrf={token}&confirm=yes&reason=cessation",
        super::pages::enc(uid)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_roles_pages_actions_and_no_key_material() {
    let f = start().await;
    let secret: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    let uid = f.register(&secret, "console-payroll").await;
    let other = f.register(&[7u8; 16], "console-other").await;
    let object = format!("/keys/show?uid={uid}");
    let pages = [
        "/",
        "/keys",
        "/keys?q=payroll&type=SymmetricKey&state=PreActive",
        object.as_str(),
        "/clients",
        "/audit",
        "/audit?operation=Register&result=Success",
    ];

    // A plain client certificate: 403 on every page, and on the action.
    for p in pages {
        let (status, body) = f.get("client", p).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{p}");
        assert!(body.contains("no console role"), "{p}: {body}");
        assert!(!body.contains(&uid), "{p}");
    }
    let (status, _) = f
        .post(
            "client",
            Some(&format!("https://{HOST}")),
            &form(&uid, "revoke", "00"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Administrator, operator, auditor: every page, and never the key's bytes in any form.
    let forms = [
        hex::encode(&secret),
        hex::encode_upper(&secret),
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &secret),
    ];
    for who in ["admin", "operator", "auditor"] {
        for p in pages {
            let (status, body) = f.get(who, p).await;
            assert_eq!(status, StatusCode::OK, "{who} {p}: {body}");
            for secret_form in &forms {
                assert!(
                    !body.contains(secret_form.as_str()),
                    "{who} {p} shows key material"
                );
            }
        }
        let (_, health) = f.get(who, "/").await;
        assert!(health.contains(concat!("kmipd ", env!("CARGO_PKG_VERSION"))));
        assert!(
            health.contains("client_ca")
                && health.contains("server_ecdsa")
                && health.contains(" days)"),
            "{health}"
        );
        let (_, keys) = f.get(who, "/keys?q=payroll").await;
        assert!(keys.contains(&uid) && !keys.contains(&other), "{keys}");
        let (_, shown) = f.get(who, &object).await;
        assert!(
            shown.contains("console-payroll") && shown.contains("PreActive"),
            "{shown}"
        );
        assert!(shown.contains("(32 bytes, not shown)") || !shown.contains("Key Material"));
        // Its history comes from the audit log: the Register by `client`.
        assert!(shown.contains("Register"), "{shown}");
        let offers_activate = shown.contains("action=activate");
        assert_eq!(offers_activate, who != "auditor", "{who}");
    }

    // The auditor: no confirmation page, and a forged POST (even with a token computed for
    // its own identity and the right Origin) is refused before anything runs.
    let (status, _) = f
        .get("auditor", &format!("/keys/confirm?uid={uid}&action=revoke"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let forged = f.shared().console_key.token("auditor", "revoke", &uid);
    let (status, body) = f
        .post(
            "auditor",
            Some(&format!("https://{HOST}")),
            &form(&uid, "revoke", &forged),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(f.state(&uid), state::PRE_ACTIVE);

    // CSRF: the operator's confirmation page gives a token; without it, with another
    // identity's, without Origin or from another origin, the POST is refused.
    let (status, confirm) = f
        .get(
            "operator",
            &format!("/keys/confirm?uid={uid}&action=revoke"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let token = token_in(&confirm);
    let admins = f.shared().console_key.token("admin", "revoke", &uid);
    let for_destroy = f.shared().console_key.token("operator", "destroy", &uid);
    let origin = format!("https://{HOST}");
    for (why, origin, body) in [
        ("no token", Some(origin.as_str()), form(&uid, "revoke", "")),
        (
            "another identity's token",
            Some(origin.as_str()),
            form(&uid, "revoke", &admins),
        ),
        (
            "another action's token",
            Some(origin.as_str()),
            form(&uid, "revoke", &for_destroy),
        ),
        (
            "another object",
            Some(origin.as_str()),
            form(&other, "revoke", &token),
        ),
        ("no Origin", None, form(&uid, "revoke", &token)),
        (
            "another Origin",
            Some("https://evil.example"),
            form(&uid, "revoke", &token),
        ),
    ] {
        let (status, page) = f.post("operator", origin, &body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{why}: {page}");
    }
    assert_eq!(f.state(&uid), state::PRE_ACTIVE);
    assert_eq!(f.state(&other), state::PRE_ACTIVE);

    // The operator activates it (confirmation page, token, POST) ...
    let (status, confirm) = f
        .get(
            "operator",
            &format!("/keys/confirm?uid={uid}&action=activate"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, done) = f
        .post(
            "operator",
            Some(&origin),
            &form(&uid, "activate", &token_in(&confirm)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(f.state(&uid), state::ACTIVE);
    let before = f.audit_lines().len();

    // ... and its confirmed revoke goes through the engine and is audited under its name.
    let (status, done) = f
        .post("operator", Some(&origin), &form(&uid, "revoke", &token))
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert!(done.contains("Revoke: done."), "{done}");
    assert_eq!(f.state(&uid), state::DEACTIVATED);
    let lines = f.audit_lines();
    assert_eq!(lines.len(), before + 1);
    let last = lines.last().unwrap();
    assert_eq!(last["identity"], "operator");
    assert_eq!(last["operation"], "Revoke");
    assert_eq!(last["status"], "Success");
    assert_eq!(last["peer"], PEER);
    assert_eq!(last["uids"][0], uid.as_str());
    // The engine's own rules still apply: revoking again is refused by the engine (and the
    // refusal is audited too).
    let (status, again) = f
        .post("operator", Some(&origin), &form(&uid, "revoke", &token))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert!(again.contains("refused"), "{again}");
    let (_, history) = f
        .get("auditor", &format!("/audit?identity=operator&object={uid}"))
        .await;
    assert!(
        history.contains("chain intact") && history.contains("Revoke"),
        "{history}"
    );

    // Destroy goes through the engine's dual control like a KMIP Destroy: `other`, marked by
    // an administrator, is refused with a request id for a second administrator's approval;
    // unmarked, the administrator's confirmed Destroy destroys it, audited under `admin`.
    let marked = f.register(&[3u8; 16], "console-marked").await;
    assert!(
        f.shared()
            .engine
            .set_dual_control(&Principal::admin("admin"), &marked)
            .unwrap()
    );
    for (who, target) in [("admin", marked.as_str()), ("admin", other.as_str())] {
        let (status, confirm) = f
            .get(who, &format!("/keys/confirm?uid={target}&action=destroy"))
            .await;
        assert_eq!(status, StatusCode::OK, "{confirm}");
        let (status, done) = f
            .post(
                who,
                Some(&origin),
                &form(target, "destroy", &token_in(&confirm)),
            )
            .await;
        if target == marked {
            assert_eq!(status, StatusCode::CONFLICT, "{done}");
            assert!(
                done.contains("dual control") && done.contains("PermissionDenied"),
                "{done}"
            );
            assert_eq!(f.state(target), state::PRE_ACTIVE);
        } else {
            assert_eq!(status, StatusCode::OK, "{done}");
            assert_eq!(f.state(target), state::DESTROYED);
            let lines = f.audit_lines();
            let last = lines.last().unwrap();
            assert_eq!(
                (&last["identity"], &last["operation"], &last["uids"][0]),
                (&"admin".into(), &"Destroy".into(), &other.as_str().into())
            );
        }
    }

    // Names are escaped (no markup from an object's attributes reaches the page).
    let xss = f.register(&[9u8; 16], "<script>alert('x')</script>").await;
    let (_, keys) = f.get("auditor", "/keys?q=script").await;
    assert!(keys.contains(&xss), "{keys}");
    assert!(!keys.contains("<script>"), "{keys}");
    assert!(keys.contains("&lt;script&gt;"), "{keys}");

    // Paging: 27 matching objects make a full first page of 25 and a second one of 2.
    for i in 0..27 {
        f.register(&[i; 16], &format!("bulk-{i:02}")).await;
    }
    let rows = |page: &str| page.matches("<a href=\"/keys/show?uid=").count();
    let (_, first) = f.get("operator", "/keys?q=bulk-").await;
    assert!(first.contains("27 of 31 objects · page 1 of 2"), "{first}");
    assert_eq!(rows(&first), 25);
    assert!(first.contains("page=2") && first.contains("bulk-00") && !first.contains("bulk-26"));
    let (_, second) = f.get("operator", "/keys?q=bulk-&page=2").await;
    assert_eq!(rows(&second), 2, "{second}");
    assert!(second.contains("bulk-25") && second.contains("bulk-26") && second.contains("page=1"));

    // The plain client's refusals were counted as its Permission Denied.
    let metrics = f.shared().metrics.render();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("kmipd_permission_denied_total{identity=\"client\"}")),
        "{metrics}"
    );

    // A certificate revoked while its connection is open is refused from its next request.
    let serial = f.caller("operator").serial.unwrap();
    f.shared().seen.revoke([serial.as_str()]);
    let (status, body) = f.get("operator", "/").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("revoked"), "{body}");

    // After a rotation of the audit log, the trail still covers the rotated file (chain
    // checked across both).
    let shared = f.shared();
    tokio::task::spawn_blocking(move || shared.audit.rotate().unwrap())
        .await
        .unwrap();
    f.register(&[1u8; 16], "after-rotation").await;
    let (_, trail) = f.get("auditor", "/audit?operation=Register").await;
    assert!(trail.contains("chain intact"), "{trail}");
    assert!(trail.contains(&uid) && trail.contains(&other), "{trail}");
    assert!(trail.contains("32 matched"), "{trail}");

    // The KMIP answer for the same key shows the console changed what a client sees.
    let item = f
        .kmip(
            "client",
            op::GET_ATTRIBUTES,
            vec![build::unique_identifier(&uid)],
        )
        .await;
    assert_eq!(item.result_status, result_status::SUCCESS);
    f.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_wire_mutual_tls_decides_the_role() {
    let f = start().await;
    let addr = f.server.console_addr().unwrap();
    let read = |p: std::path::PathBuf| std::fs::read(p).unwrap();
    for (who, want) in [
        ("client", 403),
        ("client2", 403),
        ("admin", 200),
        ("operator", 200),
        ("auditor", 200),
    ] {
        let connector = kmipd_client::Connector::new(
            &read(f.inst.cert("ca")),
            &read(f.inst.cert(who)),
            &read(f.inst.key(who)),
            kmipd_client::TlsOptions {
                timeout: Duration::from_secs(15),
                ..kmipd_client::TlsOptions::default()
            },
        )
        .unwrap();
        let mut h = connector.connect_https(addr).await.unwrap();
        let r = h.request("GET", "/", None, Vec::new()).await.unwrap();
        assert_eq!(r.status, want, "{who}: {}", r.text());
        assert_eq!(r.content_type.as_deref(), Some("text/html; charset=utf-8"));
        if want == 200 {
            assert!(r.text().contains("Health"), "{who}");
        }
        let css = h
            .request("GET", "/console.css", None, Vec::new())
            .await
            .unwrap();
        assert_eq!(css.status, 200);
        assert!(css.text().contains("--accent"));
    }
    f.server.stop().await;
}
