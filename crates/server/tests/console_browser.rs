//! The admin console in a real browser: kmipd started in-process with its console listener,
//! Debian's `chromium` driven headless by playwright-core (`tests/console-browser/walk.mjs`)
//! with client certificates for mutual TLS: a plain client certificate refused, the operator
//! walking every page and activating then revoking a key with confirmation, the auditor offered
//! no action and refused a forged POST. Screenshots of each page go to
//! `target/console-screenshots/` (copies of them are in `docs/console/`).
//!
//! Needs `chromium`, `node` and `npm ci` in `tests/console-browser` (`scripts/setup.sh` does
//! all three); without them the test fails saying so, it never skips.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use kmipd::InitOptions;
use kmipd_client::{Connector, TlsOptions};
use kmipd_proto::attributes::Attribute;
use kmipd_proto::enums::state;
use kmipd_proto::tag;
use kmipd_ttlv::Value;
use tokio::net::TcpListener;

const BOUND: Duration = Duration::from_secs(240);

/// The chromium to drive: `$KMIPD_CHROMIUM`, else `chromium` on the PATH.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("KMIPD_CHROMIUM") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "KMIPD_CHROMIUM={} is not a file: the console browser test needs Debian's chromium; \
             run scripts/setup.sh (apt-get install chromium)",
            p.display()
        );
        return p;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("chromium"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "chromium not found (not on PATH, KMIPD_CHROMIUM unset): the console browser test \
                 needs Debian's chromium; run scripts/setup.sh (apt-get install chromium)"
            )
        })
}

fn state_of(attrs: &[Attribute]) -> u32 {
    match attrs
        .iter()
        .find(|a| a.name == kmipd_proto::attributes::AttrName::Std(tag::STATE))
        .map(|a| &a.value)
    {
        Some(Value::Enumeration(s)) => *s,
        other => panic!("no State: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser() {
    let chromium = chromium();
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console-browser");
    assert!(
        driver
            .join("node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is not installed in {}: run scripts/setup.sh (npm ci there)",
        driver.display()
    );
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    let shots = target.join("console-screenshots");
    let _ = std::fs::remove_dir_all(&shots);

    let tmp = tempfile::tempdir().unwrap();
    let inst = kmipd::init_instance_with(
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
        format!("{original}\n[roles]\noperator = [\"cn:operator\"]\nauditor = [\"cn:auditor\"]\n"),
    )
    .unwrap();
    let config = inst.config().unwrap();
    let audit_path = config.audit.path.clone();
    let server = tokio::time::timeout(
        BOUND,
        kmipd::Server::new(config)
            .listener(TcpListener::bind("127.0.0.1:0").await.unwrap())
            .console_listener(TcpListener::bind("127.0.0.1:0").await.unwrap())
            .start(),
    )
    .await
    .unwrap()
    .unwrap();
    let console = server.console_addr().unwrap();

    // A few keys of a KMIP client, one of them the key the operator revokes.
    let read = |p: PathBuf| std::fs::read(p).unwrap();
    let connector = Connector::new(
        &read(inst.cert("ca")),
        &read(inst.cert("client")),
        &read(inst.key("client")),
        TlsOptions {
            timeout: Duration::from_secs(15),
            ..TlsOptions::default()
        },
    )
    .unwrap();
    let mut client = connector.connect(server.local_addr()).await.unwrap();
    let uid = client.create_aes(256, Some("browser-demo")).await.unwrap();
    for name in ["payments-kek", "backup-2026", "tokenization"] {
        client.create_aes(256, Some(name)).await.unwrap();
    }

    let certs = inst.cert("ca").parent().unwrap().to_owned();
    let run = std::process::Command::new("node")
        .arg(driver.join("walk.mjs"))
        .current_dir(&driver)
        .env("KMIPD_CONSOLE_URL", format!("https://{console}"))
        .env("KMIPD_CHROMIUM", &chromium)
        .env("KMIPD_CERTS", &certs)
        .env("KMIPD_KEY_UID", &uid)
        .env("KMIPD_SHOTS", &shots)
        .output();
    let out = tokio::time::timeout(BOUND, tokio::task::spawn_blocking(move || run))
        .await
        .expect("the browser walk did not end in time")
        .unwrap()
        .unwrap_or_else(|e| panic!("node (Node.js) could not be run: {e}; run scripts/setup.sh"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser walk failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");

    // What the browser did is what the server holds: the key is Deactivated, the operator's
    // Activate and Revoke are in the audit log under its identity, and nothing of the auditor's.
    let attrs = client.get_attributes(&uid).await.unwrap();
    assert_eq!(state_of(&attrs), state::DEACTIVATED);
    let audit = std::fs::read_to_string(&audit_path).unwrap();
    let records: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by = |who: &str, op: &str| {
        records
            .iter()
            .filter(|r| {
                r["identity"] == who && r["operation"] == op && r["uids"][0] == uid.as_str()
            })
            .count()
    };
    assert_eq!(by("operator", "Activate"), 1, "{audit}");
    assert_eq!(by("operator", "Revoke"), 1, "{audit}");
    assert!(
        records.iter().all(|r| r["identity"] != "auditor"),
        "{audit}"
    );

    for page in [
        "forbidden",
        "health",
        "keys",
        "object",
        "confirm-revoke",
        "revoked",
        "clients",
        "audit",
        "auditor-object",
    ] {
        let png = std::fs::read(shots.join(format!("{page}.png")))
            .unwrap_or_else(|e| panic!("screenshot {page}.png: {e}"));
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
            "{page}.png"
        );
    }
    drop(client);
    server.stop().await;
}
