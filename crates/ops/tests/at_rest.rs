//! No key material at rest: objects of every type registered (and created) through the engine
//! over a `SledStore`, then every byte of the data directory is searched for their key
//! material and for the KEK; none may be found. The objects must still read back intact.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kmipd_ops::{Engine, EngineConfig, Principal};
use kmipd_proto::build;
use kmipd_proto::enums::{
    certificate_type, cryptographic_algorithm as alg, key_format_type as kft, object_type,
    operation as op, secret_data_type,
};
use kmipd_proto::message::{ProtocolVersion, ResponseBatchItem};
use kmipd_proto::tag;
use kmipd_store::{Kek, KekId, ObjectStore, SledStore};
use kmipd_ttlv::{Ttlv, Value};
use zeroize::Zeroizing;

use engine::{TempDir, create_aes256_v2, key_material, ok_uid, opaque_secret};
use kmipd_test_support::engine;

fn send(engine: &Engine, items: Vec<(u32, Vec<Ttlv>)>) -> Vec<ResponseBatchItem> {
    engine::send(engine, &Principal::new("a"), ProtocolVersion::V2_1, items)
}

fn register(engine: &Engine, ot: u32, mask: i32, object: Ttlv) -> String {
    let attrs = build::structure(
        tag::ATTRIBUTES,
        vec![build::int(tag::CRYPTOGRAPHIC_USAGE_MASK, mask)],
    );
    let out = send(
        engine,
        vec![(
            op::REGISTER,
            vec![build::enumeration(tag::OBJECT_TYPE, ot), attrs, object],
        )],
    );
    ok_uid(&out[0])
}

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    openssl::rand::rand_bytes(&mut v).unwrap();
    v
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

const WINDOW: usize = 12;

#[test]
fn no_key_material_of_any_object_type_rests_in_the_data_directory() {
    let tmp = TempDir::new("at-rest");
    let kek_bytes = Zeroizing::new(<[u8; 32]>::try_from(random(32)).unwrap());
    let kek = || Kek::new(KekId(1), &kek_bytes);

    // Known key material of every object type.
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let pkey = openssl::pkey::PKey::from_rsa(rsa.clone()).unwrap();
    let private_der = pkey.private_key_to_pkcs8().unwrap();
    let public_der = pkey.public_key_to_der().unwrap();
    let name_der;
    let cert_der = {
        let mut name = openssl::x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "at-rest").unwrap();
        let name = name.build();
        name_der = name.to_der().unwrap();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&pkey).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(30).unwrap())
            .unwrap();
        b.sign(&pkey, openssl::hash::MessageDigest::sha256())
            .unwrap();
        b.build().to_der().unwrap()
    };
    let symmetric = random(32);
    let secret = random(24);
    let opaque = random(40);

    let mut secrets: Vec<(&str, Vec<u8>)> = vec![
        ("symmetric key", symmetric.clone()),
        ("secret data", secret.clone()),
        ("opaque object", opaque.clone()),
        ("private key (PKCS#8)", private_der.clone()),
        ("private exponent", rsa.d().to_vec()),
        ("prime p", rsa.p().unwrap().to_vec()),
        ("public key", public_der.clone()),
        ("certificate", cert_der.clone()),
        ("KEK", kek_bytes.to_vec()),
    ];
    let mut uids = Vec::new();
    {
        let store = SledStore::open_with_kek(&tmp.0, kek()).unwrap();
        let engine = Engine::new(Arc::new(store), EngineConfig::default());
        uids.push(register(
            &engine,
            object_type::SYMMETRIC_KEY,
            12,
            build::structure(
                tag::SYMMETRIC_KEY,
                vec![build::byte_key_block(
                    kft::RAW,
                    symmetric.to_vec(),
                    Some((alg::AES, 256)),
                )],
            ),
        ));
        uids.push(register(
            &engine,
            object_type::SECRET_DATA,
            0,
            opaque_secret(secret_data_type::PASSWORD, &secret),
        ));
        uids.push(register(
            &engine,
            object_type::OPAQUE_OBJECT,
            0,
            build::structure(
                tag::OPAQUE_OBJECT,
                vec![
                    build::enumeration(tag::OPAQUE_DATA_TYPE, 0x8000_0001),
                    build::bytes(tag::OPAQUE_DATA_VALUE, opaque.clone()),
                ],
            ),
        ));
        uids.push(register(
            &engine,
            object_type::PRIVATE_KEY,
            1,
            build::structure(
                tag::PRIVATE_KEY,
                vec![build::byte_key_block(
                    kft::PKCS_8,
                    private_der.to_vec(),
                    Some((alg::RSA, 2048)),
                )],
            ),
        ));
        uids.push(register(
            &engine,
            object_type::PUBLIC_KEY,
            2,
            build::structure(
                tag::PUBLIC_KEY,
                vec![build::byte_key_block(
                    kft::X_509,
                    public_der.to_vec(),
                    Some((alg::RSA, 2048)),
                )],
            ),
        ));
        uids.push(register(
            &engine,
            object_type::CERTIFICATE,
            2,
            build::structure(
                tag::CERTIFICATE,
                vec![
                    build::enumeration(tag::CERTIFICATE_TYPE, certificate_type::X_509),
                    build::bytes(tag::CERTIFICATE_VALUE, cert_der.clone()),
                ],
            ),
        ));
        // A key the server generates: its bytes come back from Get.
        let out = send(&engine, vec![(op::CREATE, create_aes256_v2())]);
        let created = ok_uid(&out[0]);
        let got = send(
            &engine,
            vec![(op::GET, vec![build::unique_identifier(&created)])],
        );
        let material = key_material(got[0].payload.as_ref().unwrap());
        secrets.push(("created symmetric key", material.unwrap()));
        uids.push(created);
    }

    // Every WINDOW-byte window of every secret, searched in every byte of every file.
    // The certificate's subject and issuer names are attributes (Certificate Subject /
    // Issuer Distinguished Name), stored in the clear like every attribute: not key material.
    let public: HashSet<&[u8]> = name_der.windows(WINDOW).collect();
    let mut needles: HashSet<&[u8]> = HashSet::new();
    for (_, s) in &secrets {
        assert!(s.len() >= WINDOW);
        needles.extend(s.windows(WINDOW).filter(|w| !public.contains(w)));
    }
    let all_files = files(&tmp.0);
    assert!(!all_files.is_empty());
    let mut scanned = 0usize;
    for f in &all_files {
        let bytes = std::fs::read(f).unwrap();
        scanned += bytes.len();
        for w in bytes.windows(WINDOW) {
            if needles.contains(w) {
                let which = secrets
                    .iter()
                    .find(|(_, s)| s.windows(WINDOW).any(|x| x == w))
                    .map(|(n, _)| *n);
                panic!("key material ({which:?}) found in {}", f.display());
            }
        }
    }
    assert!(scanned > 0);

    // And everything reads back, through a reopened store.
    let store = SledStore::open_with_kek(&tmp.0, kek()).unwrap();
    for uid in &uids {
        assert!(store.get(uid).unwrap().unwrap().object.is_some(), "{uid}");
    }
    let sym = store.get(&uids[0]).unwrap().unwrap();
    let mut found = false;
    sym.object.unwrap().walk(&mut |i, _| {
        if i.tag == tag::KEY_MATERIAL
            && i.value == Value::ByteString(Zeroizing::new(symmetric.clone()))
        {
            found = true;
        }
    });
    assert!(found);
}
