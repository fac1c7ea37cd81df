//! [`Pkcs11MasterKey`]: the master key in a PKCS#11 token, and the KEK blob format.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use cryptoki::error::RvError;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use secrecy::SecretString;
use zeroize::{Zeroize, Zeroizing};

use crate::MasterKey;
use crate::config::HsmConfig;
use crate::error::{HsmError, Result, pkcs11, rv_of, rv_text};
use crate::module::{self, SOFTHSM2_CONF, describe_env};

/// Format byte of a KEK blob: version 1 is RFC 5649 (CKM_AES_KEY_WRAP_PAD) output.
const BLOB_V1: u8 = 1;
/// Master key length: AES-256.
const MASTER_KEY_LEN: usize = 32;
/// The same, as CK_ULONG for CKA_VALUE_LEN.
const MASTER_KEY_LEN_ULONG: u64 = 32;

/// The master key: a non-extractable AES-256 secret key in a PKCS#11 token, used to wrap the
/// store's KEK with CKM_AES_KEY_WRAP_PAD (RFC 5649).
///
/// Holds one logged-in read/write session, behind a mutex (a PKCS#11 session is not for
/// concurrent use). Every method blocks on the HSM: see the crate docs.
pub struct Pkcs11MasterKey {
    token: String,
    base_label: String,
    inner: Mutex<Inner>,
}

struct Inner {
    session: Session,
    /// The newest version: every wrap uses it.
    current: KeyVersion,
}

#[derive(Clone, Debug)]
struct KeyVersion {
    label: String,
    version: u32,
    handle: ObjectHandle,
}

impl std::fmt::Debug for Pkcs11MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11MasterKey")
            .field("token", &self.token)
            .field("key_label", &self.base_label)
            .finish_non_exhaustive()
    }
}

impl Pkcs11MasterKey {
    /// Opens the master key `config` describes: loads and initialises the module (once per
    /// process), finds the token, logs in with the PIN from the configured source, finds the
    /// master key (its newest rotated version) and checks that it is a non-extractable,
    /// sensitive AES-256 key allowed to wrap and unwrap.
    ///
    /// Blocking. Every failure is an [`HsmError`] whose `Display` is one line naming what to
    /// fix.
    pub fn open(config: &HsmConfig) -> Result<Self> {
        config.validate()?;
        let pin = config.read_pin()?;
        Self::open_with_pin(config, &pin)
    }

    /// As [`Pkcs11MasterKey::open`], with the PIN given instead of read from its source
    /// (`kmipd init` has it in hand after provisioning).
    pub fn open_with_pin(config: &HsmConfig, pin: &SecretString) -> Result<Self> {
        config.validate()?;
        if let Some(conf) = &config.softhsm2_conf {
            check_softhsm_env(conf)?;
        }
        let ctx = module::context(&config.module)?;
        let (slot, token) = module::find_token(&ctx, &config.module, &config.token()?)?;
        let offered = ctx
            .get_mechanism_info(slot, MechanismType::AES_KEY_WRAP_PAD)
            .map(|info| info.wrap() && info.unwrap())
            .unwrap_or(false);
        if !offered {
            return Err(HsmError::MechanismMissing { token });
        }
        let session = ctx.open_rw_session(slot).map_err(pkcs11("C_OpenSession"))?;
        login(&session, &token, pin, &config.pin_source_desc()?)?;
        let versions = find_versions(&session, &config.key_label, &token)?;
        let current = versions
            .into_iter()
            .max_by_key(|v| v.version)
            .ok_or_else(|| HsmError::MasterKeyNotFound {
                label: config.key_label.clone(),
                token: token.clone(),
            })?;
        Ok(Self {
            token,
            base_label: config.key_label.clone(),
            inner: Mutex::new(Inner { session, current }),
        })
    }

    /// Labels of every version of the master key on the token, oldest first.
    pub fn key_labels(&self) -> Result<Vec<String>> {
        let inner = self.lock();
        let mut versions = find_versions(&inner.session, &self.base_label, &self.token)?;
        versions.sort_by_key(|v| v.version);
        Ok(versions.into_iter().map(|v| v.label).collect())
    }

    /// The label of the version that wraps new KEKs.
    pub fn current_label(&self) -> String {
        self.lock().current.label.clone()
    }

    /// The label of the master key that wrapped `blob`, without unwrapping it.
    pub fn blob_key_label(blob: &[u8]) -> Result<String> {
        decode_blob(blob).map(|(label, _)| label.to_owned())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn key_for_label(&self, inner: &Inner, label: &str) -> Result<ObjectHandle> {
        if label == inner.current.label {
            return Ok(inner.current.handle);
        }
        if version_of(&self.base_label, label).is_none() {
            return Err(HsmError::UnknownBlobKey {
                label: label.to_owned(),
                token: self.token.clone(),
            });
        }
        find_versions(&inner.session, &self.base_label, &self.token)?
            .into_iter()
            .find(|v| v.label == label)
            .map(|v| v.handle)
            .ok_or_else(|| HsmError::UnknownBlobKey {
                label: label.to_owned(),
                token: self.token.clone(),
            })
    }

    fn unwrap_locked(&self, inner: &Inner, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let (label, wrapped) = decode_blob(blob)?;
        let key = self.key_for_label(inner, label)?;
        unwrap_value(&inner.session, key, wrapped).map_err(|e| match e {
            Unwrap::Refused(rv) => HsmError::UnwrapFailed {
                label: label.to_owned(),
                rv,
            },
            Unwrap::Other(e) => e,
        })
    }
}

impl MasterKey for Pkcs11MasterKey {
    fn wrap_kek(&self, kek: &[u8]) -> Result<Vec<u8>> {
        let inner = self.lock();
        let wrapped = wrap_value(&inner.session, inner.current.handle, kek)?;
        encode_blob(&inner.current.label, &wrapped)
    }

    fn unwrap_kek(&self, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let inner = self.lock();
        self.unwrap_locked(&inner, blob)
    }

    fn id(&self) -> String {
        format!(
            "pkcs11:token={};object={}",
            self.token,
            self.lock().current.label
        )
    }

    fn rotate(&self, blobs: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
        let mut inner = self.lock();
        // Unwrap everything first: a blob that cannot be read stops the rotation before the
        // token is changed.
        let keks = blobs
            .iter()
            .map(|b| self.unwrap_locked(&inner, b))
            .collect::<Result<Vec<_>>>()?;
        let newest = find_versions(&inner.session, &self.base_label, &self.token)?
            .iter()
            .map(|v| v.version)
            .max()
            .unwrap_or(0)
            .max(inner.current.version);
        let version = newest
            .checked_add(1)
            .ok_or_else(|| HsmError::Config("master key version counter exhausted".into()))?;
        let label = versioned_label(&self.base_label, version);
        let handle = generate_master_key(&inner.session, &label)?;
        let new_key = KeyVersion {
            label,
            version,
            handle,
        };
        let new_blobs = keks
            .iter()
            .map(|kek| {
                let wrapped = wrap_value(&inner.session, new_key.handle, kek)?;
                encode_blob(&new_key.label, &wrapped)
            })
            .collect::<Result<Vec<_>>>()?;
        // From here on new KEKs are wrapped by the new version too; the old versions stay on
        // the token until confirm_rotation, so the old blobs stay readable.
        inner.current = new_key;
        Ok(new_blobs)
    }

    fn confirm_rotation(&self, stored_blobs: &[Vec<u8>]) -> Result<Vec<String>> {
        let inner = self.lock();
        let referenced = stored_blobs
            .iter()
            .map(|b| decode_blob(b).map(|(label, _)| label.to_owned()))
            .collect::<Result<Vec<_>>>()?;
        let mut destroyed = Vec::new();
        for v in find_versions(&inner.session, &self.base_label, &self.token)? {
            if v.label == inner.current.label || referenced.contains(&v.label) {
                continue;
            }
            inner
                .session
                .destroy_object(v.handle)
                .map_err(pkcs11("C_DestroyObject"))?;
            destroyed.push(v.label);
        }
        Ok(destroyed)
    }
}

/// Fails unless the process's `SOFTHSM2_CONF` is `conf` (compared after resolving symlinks).
pub(crate) fn check_softhsm_env(conf: &std::path::Path) -> Result<()> {
    let expected = conf.canonicalize().map_err(|source| HsmError::Io {
        path: conf.to_owned(),
        source,
    })?;
    let env = std::env::var_os(SOFTHSM2_CONF);
    let actual = env
        .as_ref()
        .and_then(|v| PathBuf::from(v).canonicalize().ok());
    if actual.as_deref() == Some(expected.as_path()) {
        return Ok(());
    }
    Err(HsmError::SoftHsmConfMismatch {
        expected,
        actual: describe_env(env.as_ref()),
    })
}

fn login(session: &Session, token: &str, pin: &SecretString, source_desc: &str) -> Result<()> {
    match session.login(UserType::User, Some(pin)) {
        Ok(()) => Ok(()),
        Err(e) => match rv_of(&e) {
            // Another session of this process is logged in already: the login is per token.
            Some(RvError::UserAlreadyLoggedIn) => Ok(()),
            Some(RvError::PinIncorrect) => Err(HsmError::PinIncorrect {
                token: token.to_owned(),
                source_desc: source_desc.to_owned(),
            }),
            Some(RvError::PinLocked) => Err(HsmError::PinLocked {
                token: token.to_owned(),
                source_desc: source_desc.to_owned(),
            }),
            Some(RvError::PinLenRange) => Err(HsmError::PinIncorrect {
                token: token.to_owned(),
                source_desc: source_desc.to_owned(),
            }),
            _ => Err(pkcs11("C_Login")(e)),
        },
    }
}

/// `base` is version 1; later versions are `base.v2`, `base.v3`, ...
pub(crate) fn versioned_label(base: &str, version: u32) -> String {
    if version <= 1 {
        base.to_owned()
    } else {
        format!("{base}.v{version}")
    }
}

fn version_of(base: &str, label: &str) -> Option<u32> {
    if label == base {
        return Some(1);
    }
    let digits = label.strip_prefix(base)?.strip_prefix(".v")?;
    if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|v| *v >= 2)
}

/// Every object on the token whose label is a version of `base`, each checked to be a usable
/// master key.
fn find_versions(session: &Session, base: &str, token: &str) -> Result<Vec<KeyVersion>> {
    let handles = session
        .find_objects(&[Attribute::Token(true)])
        .map_err(pkcs11("C_FindObjects"))?;
    let mut versions: Vec<KeyVersion> = Vec::new();
    for handle in handles {
        let attrs = session
            .get_attributes(handle, &[AttributeType::Label])
            .map_err(pkcs11("C_GetAttributeValue"))?;
        let Some(label) = attrs.into_iter().find_map(|a| match a {
            Attribute::Label(l) => Some(String::from_utf8_lossy(&l).into_owned()),
            _ => None,
        }) else {
            continue;
        };
        let Some(version) = version_of(base, &label) else {
            continue;
        };
        if versions.iter().any(|v| v.label == label) {
            let count = versions.iter().filter(|v| v.label == label).count();
            return Err(HsmError::AmbiguousKey {
                label,
                token: token.to_owned(),
                count: count.saturating_add(1),
            });
        }
        check_kind(session, handle, &label, token)?;
        versions.push(KeyVersion {
            label,
            version,
            handle,
        });
    }
    Ok(versions)
}

/// Fails with [`HsmError::WrongKeyKind`] unless `handle` is a sensitive, non-extractable
/// AES-256 secret key with CKA_WRAP and CKA_UNWRAP.
fn check_kind(session: &Session, handle: ObjectHandle, label: &str, token: &str) -> Result<()> {
    let attrs = session
        .get_attributes(
            handle,
            &[
                AttributeType::Class,
                AttributeType::KeyType,
                AttributeType::ValueLen,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Wrap,
                AttributeType::Unwrap,
            ],
        )
        .map_err(pkcs11("C_GetAttributeValue"))?;
    let (mut class, mut key_type, mut len) = (None, None, None);
    let (mut sensitive, mut extractable, mut wrap, mut unwrap) = (None, None, None, None);
    for a in attrs {
        match a {
            Attribute::Class(c) => class = Some(c),
            Attribute::KeyType(k) => key_type = Some(k),
            Attribute::ValueLen(l) => len = Some(usize::from(l)),
            Attribute::Sensitive(b) => sensitive = Some(b),
            Attribute::Extractable(b) => extractable = Some(b),
            Attribute::Wrap(b) => wrap = Some(b),
            Attribute::Unwrap(b) => unwrap = Some(b),
            _ => {}
        }
    }
    let problem = if class != Some(ObjectClass::SECRET_KEY) {
        Some(match class {
            Some(c) => format!("it is a {c} object, not CKO_SECRET_KEY"),
            None => "it has no CKA_CLASS".to_owned(),
        })
    } else if key_type != Some(KeyType::AES) {
        Some(match key_type {
            Some(k) => format!("key type {k}, not CKK_AES"),
            None => "it has no CKA_KEY_TYPE".to_owned(),
        })
    } else if len != Some(MASTER_KEY_LEN) {
        Some(match len {
            Some(n) => format!("{n}-byte key, not 32 (AES-256)"),
            None => "its CKA_VALUE_LEN is unknown".to_owned(),
        })
    } else if sensitive != Some(true) {
        Some("CKA_SENSITIVE is false".to_owned())
    } else if extractable != Some(false) {
        Some("CKA_EXTRACTABLE is true".to_owned())
    } else if wrap != Some(true) {
        Some("CKA_WRAP is false".to_owned())
    } else if unwrap != Some(true) {
        Some("CKA_UNWRAP is false".to_owned())
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(HsmError::WrongKeyKind {
            label: label.to_owned(),
            token: token.to_owned(),
            problem,
        }),
    }
}

/// Generates a master key version in the token: AES-256, token object, private, sensitive,
/// never extractable, allowed to wrap and unwrap only, not modifiable.
pub(crate) fn generate_master_key(session: &Session, label: &str) -> Result<ObjectHandle> {
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(MASTER_KEY_LEN_ULONG.into()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Wrap(true),
        Attribute::Unwrap(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Derive(false),
        Attribute::Modifiable(false),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    session
        .generate_key(&Mechanism::AesKeyGen, &template)
        .map_err(pkcs11("C_GenerateKey (CKM_AES_KEY_GEN)"))
}

/// The attributes of the short-lived session object that carries a KEK through
/// C_WrapKey/C_UnwrapKey: extractable and not sensitive (its value must come back), never a
/// token object.
fn kek_object_template() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
    ]
}

/// RFC 5649 output of `kek` under `key`.
fn wrap_value(session: &Session, key: ObjectHandle, kek: &[u8]) -> Result<Vec<u8>> {
    if !(16..=64).contains(&kek.len()) {
        return Err(HsmError::BadKekLength(kek.len()));
    }
    let mut template = kek_object_template();
    template.push(Attribute::Value(kek.to_vec()));
    let created = session.create_object(&template);
    for a in template.iter_mut() {
        if let Attribute::Value(v) = a {
            v.zeroize();
        }
    }
    let object = created.map_err(pkcs11("C_CreateObject (session KEK object)"))?;
    let wrapped = session.wrap_key(&Mechanism::AesKeyWrapPad, key, object);
    let destroyed = session.destroy_object(object);
    let wrapped = wrapped.map_err(pkcs11("C_WrapKey (CKM_AES_KEY_WRAP_PAD)"))?;
    destroyed.map_err(pkcs11("C_DestroyObject (session KEK object)"))?;
    Ok(wrapped)
}

enum Unwrap {
    /// The token refused the ciphertext (integrity check failed, wrong length).
    Refused(String),
    Other(HsmError),
}

/// The KEK inside `wrapped`.
fn unwrap_value(
    session: &Session,
    key: ObjectHandle,
    wrapped: &[u8],
) -> std::result::Result<Zeroizing<Vec<u8>>, Unwrap> {
    let object = match session.unwrap_key(
        &Mechanism::AesKeyWrapPad,
        key,
        wrapped,
        &kek_object_template(),
    ) {
        Ok(o) => o,
        Err(e) => {
            return Err(match rv_of(&e) {
                Some(
                    RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange
                    | RvError::WrappedKeyInvalid
                    | RvError::WrappedKeyLenRange
                    | RvError::DataInvalid
                    | RvError::DataLenRange
                    | RvError::GeneralError,
                ) => Unwrap::Refused(rv_text(&e)),
                _ => Unwrap::Other(pkcs11("C_UnwrapKey (CKM_AES_KEY_WRAP_PAD)")(e)),
            });
        }
    };
    let attrs = session.get_attributes(object, &[AttributeType::Value]);
    let destroyed = session.destroy_object(object);
    let mut value = None;
    for a in attrs
        .map_err(pkcs11("C_GetAttributeValue (session KEK object)"))
        .map_err(Unwrap::Other)?
    {
        if let Attribute::Value(v) = a {
            value = Some(Zeroizing::new(v));
        }
    }
    destroyed
        .map_err(pkcs11("C_DestroyObject (session KEK object)"))
        .map_err(Unwrap::Other)?;
    value.ok_or_else(|| {
        Unwrap::Other(HsmError::Pkcs11 {
            op: "C_GetAttributeValue (session KEK object)",
            rv: "the token did not return CKA_VALUE".into(),
        })
    })
}

/// `[1][label length][label][RFC 5649 output]`.
fn encode_blob(label: &str, wrapped: &[u8]) -> Result<Vec<u8>> {
    let len = u8::try_from(label.len())
        .map_err(|_| HsmError::Config("master key label is longer than 255 bytes".into()))?;
    let mut blob = Vec::with_capacity(label.len().saturating_add(wrapped.len()).saturating_add(2));
    blob.push(BLOB_V1);
    blob.push(len);
    blob.extend_from_slice(label.as_bytes());
    blob.extend_from_slice(wrapped);
    Ok(blob)
}

fn decode_blob(blob: &[u8]) -> Result<(&str, &[u8])> {
    let (&format, rest) = blob.split_first().ok_or(HsmError::BadBlob("empty"))?;
    if format != BLOB_V1 {
        return Err(HsmError::BadBlob("unknown format version"));
    }
    let (&len, rest) = rest.split_first().ok_or(HsmError::BadBlob("truncated"))?;
    if rest.len() < usize::from(len) {
        return Err(HsmError::BadBlob("truncated label"));
    }
    let (label, wrapped) = rest.split_at(usize::from(len));
    let label = std::str::from_utf8(label).map_err(|_| HsmError::BadBlob("label not UTF-8"))?;
    // RFC 5649 output is at least 16 bytes and a multiple of 8.
    if wrapped.len() < 16 || wrapped.len() % 8 != 0 {
        return Err(HsmError::BadBlob("wrapped key has an impossible length"));
    }
    Ok((label, wrapped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_versions() {
        assert_eq!(versioned_label("mk", 1), "mk");
        assert_eq!(versioned_label("mk", 7), "mk.v7");
        assert_eq!(version_of("mk", "mk"), Some(1));
        assert_eq!(version_of("mk", "mk.v2"), Some(2));
        assert_eq!(version_of("mk", "mk.v1"), None);
        assert_eq!(version_of("mk", "mk.v02"), None);
        assert_eq!(version_of("mk", "mk.vx"), None);
        assert_eq!(version_of("mk", "mk2"), None);
        assert_eq!(version_of("mk", "other"), None);
    }

    #[test]
    fn blob_round_trip_and_damage() {
        let blob = encode_blob("mk.v3", &[7u8; 40]).unwrap();
        assert_eq!(decode_blob(&blob).unwrap(), ("mk.v3", &[7u8; 40][..]));
        assert!(matches!(decode_blob(&[]), Err(HsmError::BadBlob(_))));
        assert!(matches!(decode_blob(&[2, 0]), Err(HsmError::BadBlob(_))));
        assert!(matches!(
            decode_blob(&blob[..10]),
            Err(HsmError::BadBlob(_))
        ));
        assert!(matches!(
            decode_blob(&blob[..blob.len() - 1]),
            Err(HsmError::BadBlob(_))
        ));
    }
}
