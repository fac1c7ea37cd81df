//! Crash points of the rotations that a child process cannot reach without a hook: a KEK
//! blob stored but never registered, and master key blobs re-wrapped but never stored. The
//! master key here is a software stand-in with versions, like the HSM's. (The rotations over
//! the real binary and SoftHSM2, killed in the middle, are in `tests/admin.rs`.)

use std::collections::{BTreeMap, BTreeSet};

use std::path::Path;
use std::sync::{Arc, Mutex};

use kmipd_hsm::MasterKey;
use kmipd_ops::{Engine, EngineConfig, Principal};
use kmipd_proto::build;
use kmipd_proto::enums::{cryptographic_algorithm as alg, operation as op};
use kmipd_proto::message::{ProtocolVersion, RequestBatchItem, RequestMessage, ResponseMessage};
use kmipd_proto::tag;
use kmipd_store::{Kek, KekId, SledStore};
use kmipd_ttlv::{Ttlv, Value};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use super::{rotate_kek, rotate_master_key, unlock};

/// Versioned software "master key": a blob is `[version] ++ (kek XOR version)`.
struct SoftMaster {
    current: Mutex<u8>,
    live: Mutex<BTreeSet<u8>>,
    /// Every call fails as an HSM would (a PKCS#11 error).
    failing: std::sync::atomic::AtomicBool,
}

impl SoftMaster {
    fn new() -> SoftMaster {
        SoftMaster {
            current: Mutex::new(1),
            live: Mutex::new(BTreeSet::from([1])),
            failing: std::sync::atomic::AtomicBool::new(false),
        }
    }
    fn fail_if_failing(&self) -> kmipd_hsm::Result<()> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(kmipd_hsm::HsmError::Pkcs11 {
                op: "test",
                rv: "CKR_DEVICE_REMOVED".into(),
            });
        }
        Ok(())
    }
    fn wrap_with(v: u8, kek: &[u8]) -> Vec<u8> {
        std::iter::once(v)
            .chain(kek.iter().map(|b| b ^ v))
            .collect()
    }
}

impl MasterKey for SoftMaster {
    fn wrap_kek(&self, kek: &[u8]) -> kmipd_hsm::Result<Vec<u8>> {
        self.fail_if_failing()?;
        Ok(Self::wrap_with(*self.current.lock().unwrap(), kek))
    }
    fn unwrap_kek(&self, blob: &[u8]) -> kmipd_hsm::Result<Zeroizing<Vec<u8>>> {
        self.fail_if_failing()?;
        let v = blob[0];
        assert!(
            self.live.lock().unwrap().contains(&v),
            "version {v} destroyed"
        );
        Ok(Zeroizing::new(blob[1..].iter().map(|b| b ^ v).collect()))
    }
    fn id(&self) -> String {
        format!("soft.v{}", self.current.lock().unwrap())
    }
    fn rotate(&self, blobs: &[Vec<u8>]) -> kmipd_hsm::Result<Vec<Vec<u8>>> {
        self.fail_if_failing()?;
        let plain: Vec<_> = blobs.iter().map(|b| self.unwrap_kek(b).unwrap()).collect();
        let mut cur = self.current.lock().unwrap();
        *cur += 1;
        self.live.lock().unwrap().insert(*cur);
        Ok(plain.iter().map(|k| Self::wrap_with(*cur, k)).collect())
    }
    fn confirm_rotation(&self, stored: &[Vec<u8>]) -> kmipd_hsm::Result<Vec<String>> {
        let cur = *self.current.lock().unwrap();
        let named: BTreeSet<u8> = stored.iter().map(|b| b[0]).collect();
        let mut live = self.live.lock().unwrap();
        let gone: Vec<u8> = live
            .iter()
            .copied()
            .filter(|v| *v != cur && !named.contains(v))
            .collect();
        gone.iter().for_each(|v| {
            live.remove(v);
        });
        Ok(gone.iter().map(|v| format!("soft.v{v}")).collect())
    }
}

fn call(engine: &Engine, operation: u32, payload: Vec<Ttlv>) -> Ttlv {
    let msg = RequestMessage::new(
        ProtocolVersion::V2_1,
        vec![RequestBatchItem::new(operation, payload)],
    );
    let resp = engine.handle_message(&Principal::new("t"), &msg.to_ttlv());
    let item = ResponseMessage::from_ttlv(&resp)
        .unwrap()
        .items
        .into_iter()
        .next()
        .unwrap();
    item.payload.expect("success")
}

fn find(t: &Ttlv, wanted: kmipd_ttlv::Tag) -> Option<Value> {
    let mut out = None;
    t.walk(&mut |i, _| {
        if i.tag == wanted && out.is_none() {
            out = Some(i.value.clone());
        }
    });
    out
}

fn create(engine: &Engine) -> String {
    let payload = call(
        engine,
        op::CREATE,
        build::create_symmetric_key_v2(alg::AES, 256, 12),
    );
    match find(&payload, tag::UNIQUE_IDENTIFIER) {
        Some(Value::TextString(s)) => s,
        other => panic!("{other:?}"),
    }
}

fn key_bytes(engine: &Engine, uid: &str) -> Vec<u8> {
    let payload = call(
        engine,
        op::GET,
        vec![build::text(tag::UNIQUE_IDENTIFIER, uid)],
    );
    match find(&payload, tag::KEY_MATERIAL) {
        Some(Value::ByteString(b)) => b.to_vec(),
        other => panic!("{other:?}"),
    }
}

/// The store at `dir`, unlocked by `master`, and an engine over it.
fn open(dir: &Path, master: &Arc<SoftMaster>) -> (Engine, Arc<SledStore>) {
    let store = Arc::new(SledStore::open(dir).unwrap());
    unlock(store.as_ref(), master.as_ref()).unwrap();
    let engine = Engine::new(store.clone(), EngineConfig::default());
    (engine, store)
}

#[test]
fn a_crash_between_storing_a_new_kek_blob_and_registering_it() {
    let tmp = tempfile::tempdir().unwrap();
    let master = Arc::new(SoftMaster::new());
    let (engine, store) = open(tmp.path(), &master);
    let keys: BTreeMap<String, Vec<u8>> = (0..10)
        .map(|_| {
            let uid = create(&engine);
            let b = key_bytes(&engine, &uid);
            (uid, b)
        })
        .collect();
    // What rotate-kek does first, then the "crash".
    let blob = master.wrap_kek(&[7u8; 32]).unwrap();
    store.store_wrapped_kek(KekId(2), &blob).unwrap();
    drop((engine, store));

    // Giving the store every blob fails on the unregistered one; unlock ignores it.
    {
        let store = SledStore::open(tmp.path()).unwrap();
        let every: Vec<Kek> = store
            .wrapped_keks()
            .unwrap()
            .into_iter()
            .map(|(id, b)| Kek::from_slice(id, &master.unwrap_kek(&b).unwrap()).unwrap())
            .collect();
        assert_eq!(every.len(), 2);
        let e = store.unlock(every).unwrap_err();
        assert!(e.to_string().contains("not registered"), "{e}");
    }
    let (engine, store) = open(tmp.path(), &master);
    for (uid, b) in &keys {
        assert_eq!(&key_bytes(&engine, uid), b);
    }
    let msg = rotate_kek(store.as_ref(), master.as_ref(), &CancellationToken::new())
        .unwrap()
        .to_string();
    assert!(
        msg.starts_with("KEK rotated: KEK 2 is current, 10 records re-wrapped"),
        "{msg}"
    );
    assert_eq!(store.required_keks().unwrap(), vec![KekId(2)]);
    assert_eq!(store.wrapped_keks().unwrap().len(), 1);
    drop((engine, store));
    let (engine, _store) = open(tmp.path(), &master);
    for (uid, b) in &keys {
        assert_eq!(&key_bytes(&engine, uid), b);
    }
}

#[test]
fn a_crash_between_master_key_rotate_and_storing_the_new_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let master = Arc::new(SoftMaster::new());
    let (engine, store) = open(tmp.path(), &master);
    let uid = create(&engine);
    let bytes = key_bytes(&engine, &uid);
    let blobs: Vec<Vec<u8>> = store
        .wrapped_keks()
        .unwrap()
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    let _unstored = master.rotate(&blobs).unwrap();
    drop((engine, store));

    let (engine, store) = open(tmp.path(), &master);
    assert_eq!(key_bytes(&engine, &uid), bytes);
    let msg = rotate_master_key(store.as_ref(), master.as_ref())
        .unwrap()
        .to_string();
    assert!(msg.contains("soft.v3 is current"), "{msg}");
    assert!(
        msg.contains("old versions destroyed: soft.v1, soft.v2"),
        "{msg}"
    );
    drop((engine, store));
    let (engine, _store) = open(tmp.path(), &master);
    assert_eq!(key_bytes(&engine, &uid), bytes);
}

/// An HSM failing during `kmipd admin rotate-master-key` and `rotate-kek`: each command fails
/// and `kmipd_hsm_failures_total` counts it under its operation; a failure that is not the
/// HSM's (no durable store) is not counted.
#[test]
fn hsm_failures_during_rotations_are_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let master = Arc::new(SoftMaster::new());
    let (engine, store) = open(tmp.path(), &master);
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let counted = |op: &str| {
        let text = metrics.render();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("kmipd_hsm_failures_total{{operation=\"{op}\"}} "))
            })
            .map(|v| v.parse::<u64>().unwrap())
    };
    let no_store = crate::admin::Admin::new(engine.clone(), None, None, CancellationToken::new())
        .with_metrics(metrics.clone());
    assert!(no_store.rotate_master_key().is_err());
    assert_eq!(counted("rotate_master_key"), Some(0));
    let admin = crate::admin::Admin::new(
        engine,
        Some(super::Durable {
            store: super::DurableStore::Sled(store),
            master: master.clone(),
            kek_unwrap_failures: Arc::default(),
        }),
        None,
        CancellationToken::new(),
    )
    .with_metrics(metrics.clone());
    master
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(admin.rotate_master_key().is_err());
    assert_eq!(counted("rotate_master_key"), Some(1));
    assert_eq!(counted("rotate_kek"), Some(0));
    assert!(admin.rotate_kek().is_err());
    assert_eq!(counted("rotate_kek"), Some(1));
    master
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let done = admin.rotate_master_key().unwrap();
    assert!(done.contains("soft.v2 is current"), "{done}");
    assert_eq!(counted("rotate_master_key"), Some(1));

    // A KEK met at run time (PostgreSQL: rotated through another node), unwrapped by the
    // HSM: counted under unwrap_kek once the server watches the durable store.
    let durable = super::Durable {
        store: super::DurableStore::Sled(Arc::new(SledStore::open(tmp.path().join("b")).unwrap())),
        master: master.clone(),
        kek_unwrap_failures: Arc::default(),
    };
    metrics.watch_hsm(&durable);
    let source = super::postgres::kek_source(master.clone(), durable.kek_unwrap_failures.clone());
    let blob = master.wrap_kek(&[7u8; 32]).unwrap();
    let id = KekId(2);
    assert!(source(id, &blob).is_ok());
    assert_eq!(counted("unwrap_kek"), Some(0));
    master
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(source(id, &blob).is_err());
    assert_eq!(counted("unwrap_kek"), Some(1));
}
