//! The master key against a real PKCS#11 module: SoftHSM2, installed by `scripts/setup.sh`.
//! Missing SoftHSM2 fails these tests (with the command to run); they never skip.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` once per process (see `kmipd_hsm::softhsm`), so every test
//! that touches a token runs its body in a child process: the test binary re-runs itself for
//! that one test with `SOFTHSM2_CONF` pointing into a fresh temporary directory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::{Session, UserType};
use kmipd_hsm::{HsmConfig, HsmError, MasterKey, Pkcs11MasterKey, Provisioned, provision_softhsm};
use secrecy::SecretString;

const CHILD_ENV: &str = "KMIPD_HSM_TEST_CHILD";
const DIR_ENV: &str = "KMIPD_HSM_TEST_DIR";
const PHASE_ENV: &str = "KMIPD_HSM_TEST_PHASE";
const TOKEN: &str = "kmipd-test";
const KEY: &str = "kmipd-master";

/// Runs `body` in a child process of this test binary with its own SoftHSM2 token directory.
/// In the parent: makes the directory, starts the child, and fails with the child's output if
/// the child failed or did not run the test. With `set_conf` false the child starts without
/// `SOFTHSM2_CONF` (to test `ensure_softhsm_env`).
fn in_own_process(name: &str, set_conf: bool, body: impl FnOnce(&Path)) {
    if std::env::var(CHILD_ENV).as_deref() == Ok(name) {
        let dir = PathBuf::from(std::env::var_os(DIR_ENV).unwrap());
        body(&dir);
        return;
    }
    require_softhsm();
    let tmp = tempfile::tempdir().unwrap();
    let conf = kmipd_hsm::write_softhsm_conf(tmp.path()).unwrap();
    let out = child(name, tmp.path(), set_conf.then_some(conf.as_path()), "");
    assert_child_passed(name, &out);
}

/// Starts this test binary as a child that runs only test `name`, in `dir`, with
/// `SOFTHSM2_CONF` = `conf` (removed if `None`) and `KMIPD_HSM_TEST_PHASE` = `phase`.
fn child(name: &str, dir: &Path, conf: Option<&Path>, phase: &str) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .env(DIR_ENV, dir)
        .env(PHASE_ENV, phase)
        .env_remove("KMIPD_HSM_REEXECUTED");
    match conf {
        Some(conf) => cmd.env("SOFTHSM2_CONF", conf),
        None => cmd.env_remove("SOFTHSM2_CONF"),
    };
    cmd.output().unwrap()
}

fn assert_child_passed(name: &str, out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child process for {name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}

fn require_softhsm() {
    match kmipd_hsm::find_softhsm_module(None) {
        Ok(p) if p.exists() => {}
        Ok(p) => panic!(
            "SoftHSM2 library {} (from KMIPD_SOFTHSM2_MODULE) does not exist: fix it, or run \
             scripts/setup.sh",
            p.display()
        ),
        Err(e) => panic!("{e}"),
    }
}

fn provision(dir: &Path) -> Provisioned {
    provision_softhsm(dir, TOKEN, KEY, None).unwrap()
}

fn kek(seed: u8) -> Vec<u8> {
    (0u8..32)
        .map(|i| i.wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Asserts the error's message is one line containing every `needle`, and returns it.
fn one_line(e: &HsmError, needles: &[&str]) -> String {
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "message is not one line: {msg}");
    for n in needles {
        assert!(msg.contains(n), "message lacks {n:?}: {msg}");
    }
    msg
}

/// A raw, logged-in cryptoki session on the provisioned token, independent of the crate under
/// test (the module is already initialised in this process, which C_Initialize reports).
fn raw_session(p: &Provisioned) -> Session {
    let ctx = Pkcs11::new(&p.config.module).unwrap();
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("{e}"),
    }
    let slot = ctx
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == TOKEN)
        .unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    match session.login(UserType::User, Some(&p.pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("{e}"),
    }
    session
}

#[test]
fn provisioning_creates_an_instance_token_and_round_trips() {
    in_own_process(
        "provisioning_creates_an_instance_token_and_round_trips",
        true,
        |dir| {
            let p = provision(dir);
            let dir = dir.canonicalize().unwrap();
            // Files of the instance, secrets readable by the owner only.
            assert!(dir.join("softhsm2.conf").is_file());
            assert!(dir.join("tokens").is_dir());
            for secret in ["pin", "so-pin"] {
                let mode = std::fs::metadata(dir.join(secret))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{secret}");
            }
            // The token lives in this directory, not in the system's.
            assert!(std::fs::read_dir(dir.join("tokens")).unwrap().count() >= 1);
            // The configuration names the PIN file, never the PIN; it survives TOML.
            assert_eq!(
                p.config.pin_file.as_deref(),
                Some(dir.join("pin").as_path())
            );
            let text = toml::to_string(&p.config).unwrap();
            assert!(!text.contains(secrecy::ExposeSecret::expose_secret(&p.pin)));
            let config: HsmConfig = toml::from_str(&text).unwrap();
            assert_eq!(config, p.config);

            let mk = Pkcs11MasterKey::open(&config).unwrap();
            assert_eq!(mk.id(), format!("pkcs11:token={TOKEN};object={KEY}"));
            let k1 = kek(1);
            let blob = mk.wrap_kek(&k1).unwrap();
            assert_eq!(*mk.unwrap_kek(&blob).unwrap(), k1);
            // RFC 5649: 32 bytes wrap to 40, after the 2-byte header and the label.
            assert_eq!(blob.len(), 2 + KEY.len() + 40);
            // The blob does not carry the KEK, nor any 8 bytes of it.
            assert!(!contains(&blob, &k1));
            for chunk in k1.chunks(8) {
                assert!(!contains(&blob, chunk));
            }
            // Another KEK gives another blob; the same KEK the same blob (deterministic wrap).
            assert_ne!(mk.wrap_kek(&kek(2)).unwrap(), blob);
            assert_eq!(mk.wrap_kek(&k1).unwrap(), blob);
            // A second instance (a restart) reads the blob.
            drop(mk);
            let again = Pkcs11MasterKey::open(&config).unwrap();
            assert_eq!(*again.unwrap_kek(&blob).unwrap(), k1);
        },
    );
}

#[test]
fn damaged_blobs_fail_with_one_line() {
    in_own_process("damaged_blobs_fail_with_one_line", true, |dir| {
        let p = provision(dir);
        let mk = Pkcs11MasterKey::open(&p.config).unwrap();
        let blob = mk.wrap_kek(&kek(3)).unwrap();
        let mut flipped = blob.clone();
        *flipped.last_mut().unwrap() ^= 1;
        let e = mk.unwrap_kek(&flipped).unwrap_err();
        assert!(matches!(e, HsmError::UnwrapFailed { .. }), "{e:?}");
        one_line(&e, &[KEY, "restore the KEK record"]);
        let e = mk.unwrap_kek(&blob[..blob.len() - 3]).unwrap_err();
        one_line(&e, &["malformed"]);
        // A blob naming a key that is not there.
        let mut other = vec![1u8, 5];
        other.extend_from_slice(b"other");
        other.extend_from_slice(&blob[2 + KEY.len()..]);
        let e = mk.unwrap_kek(&other).unwrap_err();
        one_line(&e, &["\"other\"", "not on token"]);
        let e = mk.wrap_kek(&[0u8; 8]).unwrap_err();
        one_line(&e, &["8 bytes"]);
    });
}

#[test]
fn the_master_key_is_not_extractable() {
    in_own_process("the_master_key_is_not_extractable", true, |dir| {
        let p = provision(dir);
        let session = raw_session(&p);
        let keys = session
            .find_objects(&[Attribute::Label(KEY.as_bytes().to_vec())])
            .unwrap();
        assert_eq!(keys.len(), 1);
        let key = keys[0];
        // C_GetAttributeValue of CKA_VALUE is refused (cryptoki leaves the value out when the
        // token answers CKR_ATTRIBUTE_SENSITIVE).
        let value = session
            .get_attributes(key, &[AttributeType::Value])
            .unwrap();
        assert!(value.is_empty(), "CKA_VALUE was returned");
        let attrs = session
            .get_attributes(
                key,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::Token,
                    AttributeType::Encrypt,
                    AttributeType::Decrypt,
                    AttributeType::ValueLen,
                ],
            )
            .unwrap();
        for a in &attrs {
            match a {
                Attribute::Sensitive(b) => assert!(*b),
                Attribute::Extractable(b) => assert!(!*b),
                Attribute::NeverExtractable(b) => assert!(*b),
                Attribute::AlwaysSensitive(b) => assert!(*b),
                Attribute::Token(b) => assert!(*b),
                Attribute::Encrypt(b) | Attribute::Decrypt(b) => assert!(!*b),
                Attribute::ValueLen(l) => assert_eq!(usize::from(*l), 32),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(attrs.len(), 8);
        // Nor can it be wrapped out under another key.
        let wrapper = session
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen(32u64.into()),
                    Attribute::Token(false),
                    Attribute::Wrap(true),
                ],
            )
            .unwrap();
        let e = session
            .wrap_key(&Mechanism::AesKeyWrapPad, wrapper, key)
            .unwrap_err();
        assert!(
            matches!(e, CkError::Pkcs11(RvError::KeyUnextractable, _)),
            "wrapping the master key out: {e}"
        );
    });
}

#[test]
fn wrong_module_path_names_the_file() {
    // No token involved: runs in the test process itself.
    let config = HsmConfig {
        module: "/nonexistent/libpkcs11.so".into(),
        token_label: Some(TOKEN.into()),
        slot: None,
        key_label: KEY.into(),
        pin_env: Some("KMIPD_TEST_UNUSED_PIN".into()),
        pin_file: None,
        softhsm2_conf: None,
    };
    let e = Pkcs11MasterKey::open_with_pin(&config, &SecretString::from("1234")).unwrap_err();
    assert!(matches!(e, HsmError::ModuleNotFound { .. }), "{e:?}");
    one_line(
        &e,
        &["/nonexistent/libpkcs11.so", "does not exist", "hsm.module"],
    );

    // A file that is not a shared library at all.
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.so");
    std::fs::write(&junk, b"this is not an ELF file\n").unwrap();
    let config = HsmConfig {
        module: junk.clone(),
        ..config
    };
    let e = Pkcs11MasterKey::open_with_pin(&config, &SecretString::from("1234")).unwrap_err();
    assert!(matches!(e, HsmError::ModuleNotPkcs11 { .. }), "{e:?}");
    one_line(
        &e,
        &[&junk.display().to_string(), "is not a PKCS#11 library"],
    );
}

#[test]
fn a_library_without_pkcs11_symbols_is_refused() {
    // A real shared library that is not a PKCS#11 module (the C library is always there).
    let libc = [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/aarch64-linux-gnu/libc.so.6",
        "/lib64/libc.so.6",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("no libc.so.6 found in the usual places");
    let config = HsmConfig {
        module: libc.clone(),
        token_label: Some(TOKEN.into()),
        slot: None,
        key_label: KEY.into(),
        pin_env: Some("KMIPD_TEST_UNUSED_PIN".into()),
        pin_file: None,
        softhsm2_conf: None,
    };
    let e = Pkcs11MasterKey::open_with_pin(&config, &SecretString::from("1234")).unwrap_err();
    one_line(&e, &["is not a PKCS#11 library", "C_GetFunctionList"]);
}

#[test]
fn wrong_token_label_lists_the_tokens() {
    in_own_process("wrong_token_label_lists_the_tokens", true, |dir| {
        let p = provision(dir);
        let config = HsmConfig {
            token_label: Some("nope".into()),
            ..p.config.clone()
        };
        let e = Pkcs11MasterKey::open(&config).unwrap_err();
        assert!(matches!(e, HsmError::TokenNotFound { .. }), "{e:?}");
        one_line(
            &e,
            &[
                "no token labelled \"nope\"",
                &format!("\"{TOKEN}\""),
                "hsm.token_label",
            ],
        );
        let config = HsmConfig {
            token_label: None,
            slot: Some(987_654_321),
            ..p.config
        };
        let e = Pkcs11MasterKey::open(&config).unwrap_err();
        one_line(&e, &["no token in slot 987654321", "hsm.slot"]);
    });
}

#[test]
fn wrong_pin_says_so() {
    in_own_process("wrong_pin_says_so", true, |dir| {
        let p = provision(dir);
        let bad = dir.join("bad-pin");
        std::fs::write(&bad, "0000\n").unwrap();
        let config = HsmConfig {
            pin_file: Some(bad.clone()),
            ..p.config.clone()
        };
        let e = Pkcs11MasterKey::open(&config).unwrap_err();
        assert!(matches!(e, HsmError::PinIncorrect { .. }), "{e:?}");
        one_line(
            &e,
            &["wrong PIN", "CKR_PIN_INCORRECT", &bad.display().to_string()],
        );
        // A PIN variable that is not set.
        let config = HsmConfig {
            pin_file: None,
            pin_env: Some("KMIPD_TEST_PIN_NOT_SET".into()),
            ..p.config.clone()
        };
        let e = Pkcs11MasterKey::open(&config).unwrap_err();
        one_line(&e, &["environment variable KMIPD_TEST_PIN_NOT_SET"]);
        // The right PIN still works (no lockout from the attempts above).
        Pkcs11MasterKey::open(&p.config).unwrap();
    });
}

#[test]
fn missing_or_unsuitable_master_key_is_named() {
    in_own_process("missing_or_unsuitable_master_key_is_named", true, |dir| {
        let p = provision(dir);
        let config = HsmConfig {
            key_label: "absent".into(),
            ..p.config.clone()
        };
        let e = Pkcs11MasterKey::open(&config).unwrap_err();
        assert!(matches!(e, HsmError::MasterKeyNotFound { .. }), "{e:?}");
        one_line(
            &e,
            &["master key \"absent\" not found", TOKEN, "hsm.key_label"],
        );

        // Keys of the wrong kind under other labels.
        let session = raw_session(&p);
        let aes = |label: &str, len: u64, extractable: bool| {
            session
                .generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        Attribute::Class(ObjectClass::SECRET_KEY),
                        Attribute::KeyType(KeyType::AES),
                        Attribute::ValueLen(len.into()),
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(extractable),
                        Attribute::Wrap(true),
                        Attribute::Unwrap(true),
                        Attribute::Label(label.as_bytes().to_vec()),
                    ],
                )
                .unwrap()
        };
        aes("extractable", 32, true);
        aes("aes128", 16, false);
        session
            .create_object(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Label(b"data".to_vec()),
                Attribute::Value(b"hello".to_vec()),
            ])
            .unwrap();
        for (label, problem) in [
            ("extractable", "CKA_EXTRACTABLE is true"),
            ("aes128", "16-byte key, not 32"),
            ("data", "CKO_DATA"),
        ] {
            let config = HsmConfig {
                key_label: label.into(),
                ..p.config.clone()
            };
            let e = Pkcs11MasterKey::open(&config).unwrap_err();
            assert!(matches!(e, HsmError::WrongKeyKind { .. }), "{e:?}");
            one_line(&e, &[&format!("\"{label}\""), problem, "non-extractable"]);
        }
    });
}

#[test]
fn another_instances_softhsm_config_is_refused() {
    in_own_process("another_instances_softhsm_config_is_refused", true, |dir| {
        let p = provision(dir);
        let other = tempfile::tempdir().unwrap();
        let other_conf = kmipd_hsm::write_softhsm_conf(other.path()).unwrap();
        let config = HsmConfig {
            softhsm2_conf: Some(other_conf.clone()),
            ..p.config
        };
        let e = Pkcs11MasterKey::open(&config).unwrap_err();
        assert!(matches!(e, HsmError::SoftHsmConfMismatch { .. }), "{e:?}");
        one_line(&e, &["SOFTHSM2_CONF", &other_conf.display().to_string()]);
        // Provisioning another directory in this process is refused the same way, and the
        // same token label twice in one directory too.
        let e = provision_softhsm(other.path(), "x", KEY, None).unwrap_err();
        assert!(matches!(e, HsmError::SoftHsmConfMismatch { .. }), "{e:?}");
        let e = provision_softhsm(dir, TOKEN, KEY, None).unwrap_err();
        one_line(&e, &["already exists"]);
    });
}

#[test]
fn ensure_softhsm_env_reexecutes_with_the_instance_config() {
    // The child starts without SOFTHSM2_CONF; ensure_softhsm_env re-executes it with the
    // variable set, and the re-executed child provisions and uses the instance's token.
    in_own_process(
        "ensure_softhsm_env_reexecutes_with_the_instance_config",
        false,
        |dir| {
            let conf = kmipd_hsm::softhsm_conf_path(dir);
            kmipd_hsm::ensure_softhsm_env(&conf).unwrap();
            let env = PathBuf::from(std::env::var_os("SOFTHSM2_CONF").unwrap());
            assert_eq!(env.canonicalize().unwrap(), conf.canonicalize().unwrap());
            let p = provision(dir);
            let mk = Pkcs11MasterKey::open(&p.config).unwrap();
            assert_eq!(
                *mk.unwrap_kek(&mk.wrap_kek(&kek(4)).unwrap()).unwrap(),
                kek(4)
            );
        },
    );
}

#[test]
fn rotation_keeps_old_blobs_readable_until_confirmed() {
    in_own_process(
        "rotation_keeps_old_blobs_readable_until_confirmed",
        true,
        |dir| {
            let p = provision(dir);
            let mk = Pkcs11MasterKey::open(&p.config).unwrap();
            let keks: Vec<Vec<u8>> = (10u8..13).map(kek).collect();
            let old: Vec<Vec<u8>> = keks.iter().map(|k| mk.wrap_kek(k).unwrap()).collect();

            // A blob that cannot be read stops the rotation before the token changes.
            let mut bad = old.clone();
            *bad[1].last_mut().unwrap() ^= 1;
            mk.rotate(&bad).unwrap_err();
            assert_eq!(mk.key_labels().unwrap(), [KEY]);

            let new = mk.rotate(&old).unwrap();
            let v2 = format!("{KEY}.v2");
            assert_eq!(mk.key_labels().unwrap(), [KEY.to_owned(), v2.clone()]);
            assert_eq!(mk.id(), format!("pkcs11:token={TOKEN};object={v2}"));
            for ((k, o), n) in keks.iter().zip(&old).zip(&new) {
                assert_ne!(o, n);
                assert_eq!(Pkcs11MasterKey::blob_key_label(n).unwrap(), v2);
                assert_eq!(*mk.unwrap_kek(o).unwrap(), *k);
                assert_eq!(*mk.unwrap_kek(n).unwrap(), *k);
            }
            assert_eq!(
                Pkcs11MasterKey::blob_key_label(&mk.wrap_kek(&kek(20)).unwrap()).unwrap(),
                v2
            );

            // A crash before the new blobs are stored: a restart finds both versions, wraps with
            // the new one and still reads the old blobs.
            drop(mk);
            let mk = Pkcs11MasterKey::open(&p.config).unwrap();
            assert_eq!(mk.current_label(), v2);
            for (k, o) in keks.iter().zip(&old) {
                assert_eq!(*mk.unwrap_kek(o).unwrap(), *k);
            }

            // Confirming with the blobs still stored keeps the versions they name...
            assert!(
                mk.confirm_rotation(&[new[0].clone(), old[0].clone()])
                    .unwrap()
                    .is_empty()
            );
            assert_eq!(mk.key_labels().unwrap().len(), 2);
            // ...and retires the old version once only new blobs are stored.
            assert_eq!(mk.confirm_rotation(&new).unwrap(), [KEY]);
            assert_eq!(mk.key_labels().unwrap(), std::slice::from_ref(&v2));
            for (k, n) in keks.iter().zip(&new) {
                assert_eq!(*mk.unwrap_kek(n).unwrap(), *k);
            }
            let e = mk.unwrap_kek(&old[0]).unwrap_err();
            assert!(matches!(e, HsmError::UnknownBlobKey { .. }), "{e:?}");

            // A restart after the base label is gone finds the rotated version.
            drop(mk);
            let mk = Pkcs11MasterKey::open(&p.config).unwrap();
            assert_eq!(mk.current_label(), v2);
            // The next rotation makes v3.
            let newer = mk.rotate(&new).unwrap();
            assert_eq!(
                Pkcs11MasterKey::blob_key_label(&newer[0]).unwrap(),
                format!("{KEY}.v3")
            );
            assert_eq!(mk.confirm_rotation(&newer).unwrap(), [v2]);
            assert_eq!(*mk.unwrap_kek(&newer[2]).unwrap(), keks[2]);
        },
    );
}

#[test]
fn the_master_key_is_shared_across_threads() {
    in_own_process("the_master_key_is_shared_across_threads", true, |dir| {
        let p = provision(dir);
        let mk: Arc<dyn MasterKey> = Arc::new(Pkcs11MasterKey::open(&p.config).unwrap());
        let threads: Vec<_> = (0u8..4)
            .map(|t| {
                let mk = Arc::clone(&mk);
                std::thread::spawn(move || {
                    for i in 0u8..10 {
                        let k = kek(t.wrapping_mul(16).wrapping_add(i));
                        assert_eq!(*mk.unwrap_kek(&mk.wrap_kek(&k).unwrap()).unwrap(), k);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    });
}

#[test]
fn a_crash_in_the_middle_of_rotation_loses_nothing() {
    // Phase "rotate": provision, wrap KEKs, store the blobs, rotate, store the new blobs next
    // to them, and abort (SIGABRT: no destructor, no logout, no C_Finalize) before confirming.
    // Phase "restart": a new process reads every old and every new blob, then confirms.
    const NAME: &str = "a_crash_in_the_middle_of_rotation_loses_nothing";
    if std::env::var(CHILD_ENV).as_deref() == Ok(NAME) {
        let dir = PathBuf::from(std::env::var_os(DIR_ENV).unwrap());
        let keks: Vec<Vec<u8>> = (30u8..34).map(kek).collect();
        // Blobs are stored one per line, in hex.
        let store = |file: &str, blobs: &[Vec<u8>]| {
            let text: String = blobs
                .iter()
                .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>() + "\n")
                .collect();
            std::fs::write(dir.join(file), text).unwrap();
        };
        let load = |file: &str| -> Vec<Vec<u8>> {
            std::fs::read_to_string(dir.join(file))
                .unwrap()
                .lines()
                .map(|l| {
                    (0..l.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&l[i..i + 2], 16).unwrap())
                        .collect()
                })
                .collect()
        };
        match std::env::var(PHASE_ENV).unwrap().as_str() {
            "rotate" => {
                let p = provision(&dir);
                let mk = Pkcs11MasterKey::open(&p.config).unwrap();
                let old: Vec<Vec<u8>> = keks.iter().map(|k| mk.wrap_kek(k).unwrap()).collect();
                store("old-blobs", &old);
                let new = mk.rotate(&old).unwrap();
                store("new-blobs", &new);
                std::process::abort();
            }
            "restart" => {
                let config: HsmConfig =
                    toml::from_str(&std::fs::read_to_string(dir.join("hsm.toml")).unwrap())
                        .unwrap();
                let mk = Pkcs11MasterKey::open(&config).unwrap();
                assert_eq!(mk.current_label(), format!("{KEY}.v2"));
                let (old, new) = (load("old-blobs"), load("new-blobs"));
                assert_eq!((old.len(), new.len()), (keks.len(), keks.len()));
                for ((k, o), n) in keks.iter().zip(&old).zip(&new) {
                    assert_eq!(*mk.unwrap_kek(o).unwrap(), *k);
                    assert_eq!(*mk.unwrap_kek(n).unwrap(), *k);
                }
                assert_eq!(mk.confirm_rotation(&new).unwrap(), [KEY]);
            }
            other => panic!("unknown phase {other}"),
        }
        return;
    }
    require_softhsm();
    let tmp = tempfile::tempdir().unwrap();
    let conf = kmipd_hsm::write_softhsm_conf(tmp.path()).unwrap();
    let out = child(NAME, tmp.path(), Some(&conf), "rotate");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(6),
        "the rotate phase should abort: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        tmp.path().join("new-blobs").exists(),
        "the rotate phase did not get to rotate"
    );
    // The configuration the instance would have in its kmipd.toml.
    let dir = tmp.path().canonicalize().unwrap();
    let config = HsmConfig {
        module: kmipd_hsm::find_softhsm_module(None).unwrap(),
        token_label: Some(TOKEN.into()),
        slot: None,
        key_label: KEY.into(),
        pin_env: None,
        pin_file: Some(dir.join("pin")),
        softhsm2_conf: Some(conf.clone()),
    };
    std::fs::write(
        tmp.path().join("hsm.toml"),
        toml::to_string(&config).unwrap(),
    )
    .unwrap();
    let out = child(NAME, tmp.path(), Some(&conf), "restart");
    assert_child_passed(NAME, &out);
}
