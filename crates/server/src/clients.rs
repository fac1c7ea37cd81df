//! Client enrollment: kmipd holds a client CA and issues, signs, lists, revokes and renews its
//! clients' certificates (`kmipd admin client ...`, see `docs/clients.md`).
//!
//! # Where things are kept
//!
//! Everything is a KMIP object in kmipd's own store, owned by the admin identity
//! ([`crate::admin::ADMIN_IDENTITY`]) and so invisible to ordinary clients:
//!
//! - the CA's private key, a Private Key named `kmipd-client-ca-key` (PKCS#8); like every key
//!   in the store its material is wrapped under the KEK, never in the clear at rest;
//! - the CA certificate, a Certificate named `kmipd-client-ca`;
//! - one Certificate per enrolled client certificate, in Object Group `kmipd-clients`, named
//!   `kmipd-client/NAME/SERIAL`, with the custom attributes `x-kmipd-client` (the name),
//!   `x-kmipd-serial` (hex), `x-kmipd-not-after` (RFC 3339), `x-kmipd-key` (`ec-p256`,
//!   `rsa-2048`, `rsa-3072`, or `csr` for a signed request) and `x-kmipd-status` (`active` or
//!   `revoked: REASON`). The client's private key is never stored: it is written once to the
//!   operator's output folder.
//!
//! The objects are read and written through the engine (KMIP 2.1 requests as the admin
//! principal), so the store's rules, its KEK wrapping and its durability apply unchanged.
//!
//! # Revocation
//!
//! A revocation marks the record and writes kmipd's CRL (every revoked serial, signed by the
//! CA) to `[admin] client_crl`, atomically (a temporary file renamed over it); the server then
//! reloads its TLS configuration ([`crate::ServerHandle::reload_tls`]), so the revoked
//! certificate is refused at its next handshake without a restart, and TLS sessions issued
//! before cannot be resumed. For kmipd to use its CRL, the same path must be in `[tls] crls`
//! (`kmipd init` writes both). A connection the revoked certificate already has open is closed
//! at once, idle or not ([`Seen::revoked`]). The CRL is also served for download on the
//! plain-HTTP listener (`GET /crl`, [`crate::plain_http`]).
//!
//! # Last seen
//!
//! The server notes the serial of each client certificate at each new connection ([`Seen`],
//! in memory: since the server started); `client list` shows it.
//!
//! # What is refused
//!
//! A name outside `[A-Za-z0-9._-]` (1 to 64 characters, not starting with `.` or `-`), a name
//! already enrolled (an active certificate), a CSR whose signature does not verify, a CSR with
//! an RSA key under 2048 bits or a key that is neither RSA, EC on P-256/P-384/P-521 nor Ed25519,
//! an output folder that exists: each with one line, and nothing stored.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kmipd_ops::{Engine, Principal};
use kmipd_proto::attributes::{AttrName, Attribute};
use kmipd_proto::build;
use kmipd_proto::enums::{certificate_type, key_format_type, object_type, operation};
use kmipd_proto::message::{ProtocolVersion, RequestBatchItem, RequestMessage, ResponseMessage};
use kmipd_proto::reader::{self, StructReader};
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

use crate::certs::{ClientOptions, DevCa, KeyKind};

/// Name of the CA's private key object.
const CA_KEY_NAME: &str = "kmipd-client-ca-key";
/// Name of the CA certificate object.
const CA_CERT_NAME: &str = "kmipd-client-ca";
/// Object Group of the enrolled clients' certificates.
const GROUP: &str = "kmipd-clients";
/// Validity of a new client certificate when none is asked for.
pub const DEFAULT_DAYS: u32 = 365;
/// The longest validity accepted.
const MAX_DAYS: u32 = 3650;

/// Client certificates as the server meets them: when each serial last connected, and the
/// serials revoked while serving (whose open connections are closed at once).
/// Shared by the connections and the admin socket; in memory only.
#[derive(Debug, Default)]
pub struct Seen {
    inner: Mutex<SeenInner>,
    /// Bumped at each revocation, so that idle connections notice theirs at once
    /// ([`Seen::revoked`]).
    revocations: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct SeenInner {
    last: HashMap<String, OffsetDateTime>,
    revoked: HashSet<String>,
}

impl Seen {
    /// The serial number (hex) of a DER certificate, as the records keep it.
    pub fn serial_of(cert_der: &[u8]) -> Option<String> {
        x509_parser::parse_x509_certificate(cert_der)
            .ok()
            .map(|(_, c)| hex::encode(c.raw_serial()))
    }

    /// A connection of this certificate began now.
    pub fn saw(&self, serial: &str) {
        if let Ok(mut s) = self.inner.lock() {
            s.last.insert(serial.to_owned(), OffsetDateTime::now_utc());
        }
    }

    /// When this certificate last began a connection (since the server started).
    pub fn last_seen(&self, serial: &str) -> Option<OffsetDateTime> {
        self.inner
            .lock()
            .ok()
            .and_then(|s| s.last.get(serial).copied())
    }

    /// These serials were revoked: their open connections close ([`Seen::revoked`]).
    pub fn revoke<'s>(&self, serials: impl IntoIterator<Item = &'s str>) {
        if let Ok(mut s) = self.inner.lock() {
            s.revoked.extend(serials.into_iter().map(str::to_owned));
        }
        self.revocations.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Resolves once `serial` is revoked (never, for a connection without a serial): a
    /// connection waits for it beside its next request, so an idle connection of a revoked
    /// client is closed at once, not at its next request or idle timeout.
    pub async fn revoked(&self, serial: Option<&str>) {
        let Some(serial) = serial else {
            return std::future::pending().await;
        };
        let mut changes = self.revocations.subscribe();
        loop {
            if self.is_revoked(serial) {
                return;
            }
            if changes.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// True when this serial was revoked while serving.
    pub fn is_revoked(&self, serial: &str) -> bool {
        self.inner
            .lock()
            .map(|s| s.revoked.contains(serial))
            .unwrap_or(false)
    }
}

/// Why an enrollment command was refused: one line for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EnrollError(pub String);

fn refuse<T>(msg: impl Into<String>) -> Result<T, EnrollError> {
    Err(EnrollError(msg.into()))
}

/// The key of a certificate `issue` makes.
pub fn key_kind(name: &str) -> Result<KeyKind, EnrollError> {
    match name {
        "ec-p256" => Ok(KeyKind::EcdsaP256),
        "rsa-2048" => Ok(KeyKind::Rsa2048),
        "rsa-3072" => Ok(KeyKind::Rsa3072),
        other => refuse(format!(
            "unknown key type {other:?}: ec-p256, rsa-2048 or rsa-3072"
        )),
    }
}

fn key_label(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::EcdsaP256 => "ec-p256",
        KeyKind::Rsa2048 => "rsa-2048",
        KeyKind::Rsa3072 => "rsa-3072",
    }
}

/// Checks a client name: `[A-Za-z0-9._-]`, 1 to 64 characters, starting with a letter or
/// digit.
pub fn check_name(name: &str) -> Result<(), EnrollError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    let ok_start = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok_chars && ok_start && name.len() <= 64 {
        Ok(())
    } else {
        refuse(format!(
            "client name {name:?} refused: 1 to 64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit"
        ))
    }
}

fn custom(name: &str, value: &str) -> Attribute {
    Attribute {
        name: AttrName::from_v1_name(name),
        value: Value::TextString(value.to_owned()),
    }
}

/// One enrolled certificate, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// The object holding the certificate.
    pub uid: String,
    /// The client's name (its certificate's CN).
    pub name: String,
    /// Serial number, hex.
    pub serial: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// `active` or `revoked: REASON`.
    pub status: String,
    /// How the key was made.
    pub key: String,
}

impl ClientRecord {
    fn is_active(&self) -> bool {
        self.status == "active"
    }
}

/// What was written for a new certificate.
#[derive(Debug)]
pub struct Written {
    /// The record.
    pub record: ClientRecord,
    /// The files written.
    pub files: Vec<PathBuf>,
}

/// Enrollment over the engine, as the admin principal.
pub struct Enrollment<'a> {
    engine: &'a Engine,
    principal: &'a Principal,
}

impl<'a> Enrollment<'a> {
    /// Enrollment commands acting as `principal` (an administrator).
    pub fn new(engine: &'a Engine, principal: &'a Principal) -> Self {
        Enrollment { engine, principal }
    }

    /// One KMIP 2.1 operation through the engine; a failure becomes one line.
    fn call(&self, op: u32, payload: Vec<Ttlv>) -> Result<Vec<Ttlv>, EnrollError> {
        let request = RequestMessage::new(
            ProtocolVersion::V2_1,
            vec![RequestBatchItem::new(op, payload)],
        );
        let tree = self
            .engine
            .handle_message(self.principal, &request.to_ttlv());
        let response = ResponseMessage::from_ttlv(&tree)
            .map_err(|e| EnrollError(format!("unreadable engine answer: {e}")))?;
        let item = response
            .items
            .into_iter()
            .next()
            .ok_or_else(|| EnrollError("empty engine answer".to_owned()))?;
        if item.result_status != kmipd_proto::enums::result_status::SUCCESS {
            return refuse(format!(
                "the store refused: {}",
                item.result_message
                    .unwrap_or_else(|| "no message".to_owned())
            ));
        }
        match item.payload {
            Some(p) => Ok(StructReader::any(&p)
                .map_err(|e| EnrollError(e.to_string()))?
                .items()
                .to_vec()),
            None => Ok(Vec::new()),
        }
    }

    fn locate(&self, attrs: &[Attribute]) -> Result<Vec<String>, EnrollError> {
        let items = self.call(
            operation::LOCATE,
            vec![build::structure(
                tag::ATTRIBUTES,
                attrs.iter().map(Attribute::to_v2).collect(),
            )],
        )?;
        Ok(items
            .iter()
            .filter(|i| i.tag == tag::UNIQUE_IDENTIFIER)
            .filter_map(|i| reader::as_text(i).ok().map(str::to_owned))
            .collect())
    }

    fn register(&self, ot: u32, object: Ttlv, attrs: &[Attribute]) -> Result<String, EnrollError> {
        let items = self.call(
            operation::REGISTER,
            vec![
                build::enumeration(tag::OBJECT_TYPE, ot),
                build::structure(
                    tag::ATTRIBUTES,
                    attrs.iter().map(Attribute::to_v2).collect(),
                ),
                object,
            ],
        )?;
        items
            .iter()
            .find(|i| i.tag == tag::UNIQUE_IDENTIFIER)
            .and_then(|i| reader::as_text(i).ok())
            .map(str::to_owned)
            .ok_or_else(|| EnrollError("Register answered no identifier".to_owned()))
    }

    /// The bytes of the first byte string with tag `t` in a Get answer.
    fn get_bytes(
        &self,
        uid: &str,
        format: Option<u32>,
        t: kmipd_ttlv::Tag,
    ) -> Result<Zeroizing<Vec<u8>>, EnrollError> {
        let mut payload = vec![build::unique_identifier(uid)];
        if let Some(f) = format {
            payload.push(build::enumeration(tag::KEY_FORMAT_TYPE, f));
        }
        let items = self.call(operation::GET, payload)?;
        find_bytes(&items, t)
            .map(|b| Zeroizing::new(b.to_vec()))
            .ok_or_else(|| EnrollError(format!("object {uid} holds no {}", reader::name(t))))
    }

    fn one(&self, name: &str) -> Result<Option<String>, EnrollError> {
        let mut found = self.locate(&[build::name_attr(name)])?;
        if found.len() > 1 {
            return refuse(format!("several objects are named {name}"));
        }
        Ok(found.pop())
    }

    /// The CA, read back from the store.
    fn ca(&self) -> Result<DevCa, EnrollError> {
        let none = || {
            EnrollError(
                "kmipd holds no client CA: import one first (kmipd admin client import-ca)"
                    .to_owned(),
            )
        };
        let key_uid = self.one(CA_KEY_NAME)?.ok_or_else(none)?;
        let cert_uid = self.one(CA_CERT_NAME)?.ok_or_else(none)?;
        let key_der = self.get_bytes(&key_uid, Some(key_format_type::PKCS_8), tag::KEY_MATERIAL)?;
        let cert_der = self.get_bytes(&cert_uid, None, tag::CERTIFICATE_VALUE)?;
        let key_pem = Zeroizing::new(pem("PRIVATE KEY", &key_der));
        let cert_pem = pem("CERTIFICATE", &cert_der);
        DevCa::from_pem(&cert_pem, &key_pem)
            .map_err(|e| EnrollError(format!("the stored client CA is unusable: {e}")))
    }

    /// Stores a CA certificate and its private key (PEM; the key PKCS#8).
    pub fn import_ca(&self, cert_pem: &str, key_pem: &str) -> Result<String, EnrollError> {
        if self.one(CA_KEY_NAME)?.is_some() || self.one(CA_CERT_NAME)?.is_some() {
            return refuse("kmipd already holds a client CA");
        }
        // Both must make a working CA before anything is stored.
        DevCa::from_pem(cert_pem, key_pem)
            .map_err(|e| EnrollError(format!("not a usable CA certificate and key: {e}")))?;
        let summary = crate::certs::inspect_pem(cert_pem)
            .map_err(|e| EnrollError(format!("CA certificate: {e}")))?;
        if !summary.is_ca {
            return refuse("the certificate is not a CA certificate (basicConstraints CA:FALSE)");
        }
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| EnrollError(format!("CA certificate: {e}")))?;
        let key_der = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| EnrollError(format!("CA key (PKCS#8 PEM expected): {e}")))?;
        // Algorithm and length in the Key Block: the store's policy checks them.
        let pkey = openssl::pkey::PKey::private_key_from_pem(key_pem.as_bytes())
            .map_err(|e| EnrollError(format!("CA key: {e}")))?;
        let algorithm = match pkey.id() {
            openssl::pkey::Id::RSA => kmipd_proto::enums::cryptographic_algorithm::RSA,
            openssl::pkey::Id::EC => kmipd_proto::enums::cryptographic_algorithm::EC,
            openssl::pkey::Id::ED25519 => kmipd_proto::enums::cryptographic_algorithm::ED25519,
            _ => return refuse("the CA key is neither RSA, EC nor Ed25519"),
        };
        let bits = i32::try_from(pkey.bits()).unwrap_or(i32::MAX);
        let key_uid = self.register(
            object_type::PRIVATE_KEY,
            build::structure(
                tag::PRIVATE_KEY,
                vec![build::byte_key_block(
                    key_format_type::PKCS_8,
                    key_der.secret_pkcs8_der().to_vec(),
                    Some((algorithm, bits)),
                )],
            ),
            &[build::name_attr(CA_KEY_NAME)],
        )?;
        let cert_uid = self.register(
            object_type::CERTIFICATE,
            certificate_object(&cert_der),
            &[build::name_attr(CA_CERT_NAME)],
        )?;
        Ok(format!(
            "client CA {} imported: key {key_uid} (wrapped under the KEK), certificate {cert_uid}",
            summary.subject_cn.unwrap_or_default()
        ))
    }

    /// Every enrolled certificate, in creation order.
    pub fn list(&self) -> Result<Vec<ClientRecord>, EnrollError> {
        let uids = self.locate(&[Attribute::std(
            tag::OBJECT_GROUP,
            Value::TextString(GROUP.to_owned()),
        )])?;
        uids.iter().map(|u| self.record(u)).collect()
    }

    fn record(&self, uid: &str) -> Result<ClientRecord, EnrollError> {
        let items = self.call(
            operation::GET_ATTRIBUTES,
            vec![build::unique_identifier(uid)],
        )?;
        let mut attrs = Vec::new();
        for i in items.iter().filter(|i| i.tag == tag::ATTRIBUTES) {
            for child in StructReader::any(i)
                .map_err(|e| EnrollError(e.to_string()))?
                .items()
            {
                attrs.push(Attribute::from_v2(child).map_err(|e| EnrollError(e.to_string()))?);
            }
        }
        let get = |n: &str| {
            let want = AttrName::from_v1_name(n);
            attrs
                .iter()
                .find(|a| a.name.same_attribute(&want))
                .and_then(|a| match &a.value {
                    Value::TextString(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default()
        };
        Ok(ClientRecord {
            uid: uid.to_owned(),
            name: get("x-kmipd-client"),
            serial: get("x-kmipd-serial"),
            not_after: get("x-kmipd-not-after"),
            status: get("x-kmipd-status"),
            key: get("x-kmipd-key"),
        })
    }

    fn active_named(&self, name: &str) -> Result<Vec<ClientRecord>, EnrollError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|r| r.name == name && r.is_active())
            .collect())
    }

    /// Stores the record of a new certificate.
    fn enroll(
        &self,
        name: &str,
        cert_pem: &str,
        serial: &[u8],
        not_after: OffsetDateTime,
        key: &str,
    ) -> Result<ClientRecord, EnrollError> {
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| EnrollError(format!("issued certificate: {e}")))?;
        let serial = hex::encode(serial);
        let not_after = not_after
            .replace_nanosecond(0)
            .unwrap_or(not_after)
            .format(&Rfc3339)
            .map_err(|e| EnrollError(e.to_string()))?;
        let uid = self.register(
            object_type::CERTIFICATE,
            certificate_object(&der),
            &[
                build::name_attr(&format!("kmipd-client/{name}/{serial}")),
                Attribute::std(tag::OBJECT_GROUP, Value::TextString(GROUP.to_owned())),
                custom("x-kmipd-client", name),
                custom("x-kmipd-serial", &serial),
                custom("x-kmipd-not-after", &not_after),
                custom("x-kmipd-key", key),
                custom("x-kmipd-status", "active"),
            ],
        )?;
        Ok(ClientRecord {
            uid,
            name: name.to_owned(),
            serial,
            not_after,
            status: "active".to_owned(),
            key: key.to_owned(),
        })
    }

    fn validity(days: Option<u32>) -> Result<(OffsetDateTime, OffsetDateTime), EnrollError> {
        let days = days.unwrap_or(DEFAULT_DAYS);
        if days == 0 || days > MAX_DAYS {
            return refuse(format!("--days must be 1 to {MAX_DAYS}"));
        }
        let now = OffsetDateTime::now_utc();
        Ok((
            now - time::Duration::minutes(5),
            now + time::Duration::days(i64::from(days)),
        ))
    }

    /// A new key and certificate for client `name`, written to the new folder `out`: the key,
    /// the certificate, the CA certificate (PEM) and a PKCS#12 bundle with its password.
    pub fn issue(
        &self,
        name: &str,
        days: Option<u32>,
        kind: KeyKind,
        out: &Path,
    ) -> Result<Written, EnrollError> {
        check_name(name)?;
        if !self.active_named(name)?.is_empty() {
            return refuse(format!(
                "a client named {name} is already enrolled (kmipd admin client renew {name}, or revoke it first)"
            ));
        }
        self.issue_unchecked(name, days, kind, out)
    }

    fn issue_unchecked(
        &self,
        name: &str,
        days: Option<u32>,
        kind: KeyKind,
        out: &Path,
    ) -> Result<Written, EnrollError> {
        let ca = self.ca()?;
        let (not_before, not_after) = Self::validity(days)?;
        check_out(out)?;
        let issued = ca
            .issue_client(
                name,
                &ClientOptions {
                    key: kind,
                    not_before,
                    not_after,
                    ..ClientOptions::default()
                },
            )
            .map_err(|e| EnrollError(e.to_string()))?;
        let p12 = pkcs12(name, &issued.key_pem, &issued.cert_pem, ca.cert_pem())?;
        let files = write_out(
            out,
            &[
                (format!("{name}.key"), issued.key_pem.as_bytes(), true),
                (format!("{name}.pem"), issued.cert_pem.as_bytes(), false),
                ("ca.pem".to_owned(), ca.cert_pem().as_bytes(), false),
                (format!("{name}.p12"), &p12.bundle, true),
                (
                    format!("{name}.p12.password"),
                    p12.password.as_bytes(),
                    true,
                ),
            ],
        )?;
        let record = self.enroll(
            name,
            &issued.cert_pem,
            &issued.serial,
            not_after,
            key_label(kind),
        )?;
        Ok(Written { record, files })
    }

    /// A certificate for the key of a certificate signing request, written with the CA
    /// certificate to the new folder `out`. The name is `name`, else the request's CN.
    pub fn sign(
        &self,
        csr_pem: &str,
        name: Option<&str>,
        days: Option<u32>,
        out: &Path,
    ) -> Result<Written, EnrollError> {
        let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
            .map_err(|e| EnrollError(format!("not a PEM certificate signing request: {e}")))?;
        let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
            .map_err(|e| EnrollError(format!("unreadable certificate signing request: {e}")))?;
        check_csr_key(&csr)?;
        let cn = csr
            .certification_request_info
            .subject
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .map(str::to_owned);
        let name = match (name, cn) {
            (Some(n), _) => n.to_owned(),
            (None, Some(cn)) => cn,
            (None, None) => return refuse("the request has no CN: give --name"),
        };
        check_name(&name)?;
        if !self.active_named(&name)?.is_empty() {
            return refuse(format!("a client named {name} is already enrolled"));
        }
        let ca = self.ca()?;
        let (not_before, not_after) = Self::validity(days)?;
        check_out(out)?;
        let (cert_pem, serial) =
            ca.sign_csr(csr_pem, &name, not_before, not_after)
                .map_err(|e| match e {
                    crate::certs::CertError::Rcgen(
                        rcgen::Error::InvalidCertificationRequestSignature,
                    ) => EnrollError("the request's signature does not verify".to_owned()),
                    e => EnrollError(format!("certificate signing request refused: {e}")),
                })?;
        let files = write_out(
            out,
            &[
                (format!("{name}.pem"), cert_pem.as_bytes(), false),
                ("ca.pem".to_owned(), ca.cert_pem().as_bytes(), false),
            ],
        )?;
        let record = self.enroll(&name, &cert_pem, &serial, not_after, "csr")?;
        Ok(Written { record, files })
    }

    /// Marks the certificates of `who` (a name: its active ones; or a serial) revoked and
    /// returns kmipd's new CRL (PEM) with what was revoked. The caller writes the CRL and
    /// reloads TLS.
    pub fn revoke(
        &self,
        who: &str,
        reason: &str,
    ) -> Result<(String, Vec<ClientRecord>), EnrollError> {
        let all = self.list()?;
        let wanted = who.to_ascii_lowercase().replace(':', "");
        let targets: Vec<ClientRecord> = all
            .iter()
            .filter(|r| r.is_active() && (r.name == who || r.serial == wanted))
            .cloned()
            .collect();
        if targets.is_empty() {
            return refuse(format!(
                "no active client certificate named or numbered {who}"
            ));
        }
        let ca = self.ca()?;
        let mut serials: Vec<Vec<u8>> = Vec::new();
        for r in all.iter().filter(|r| !r.is_active()).chain(targets.iter()) {
            serials.push(
                hex::decode(&r.serial)
                    .map_err(|e| EnrollError(format!("stored serial {}: {e}", r.serial)))?,
            );
        }
        let refs: Vec<&[u8]> = serials.iter().map(Vec::as_slice).collect();
        let crl = ca.crl(&refs).map_err(|e| EnrollError(e.to_string()))?;
        let status = format!("revoked: {reason}");
        for r in &targets {
            self.call(
                operation::MODIFY_ATTRIBUTE,
                vec![
                    build::unique_identifier(&r.uid),
                    build::structure(
                        tag::NEW_ATTRIBUTE,
                        vec![custom("x-kmipd-status", &status).to_v2()],
                    ),
                ],
            )?;
        }
        Ok((crl, targets))
    }

    /// The CRL of every revoked certificate (for a server that starts with none written).
    pub fn crl(&self) -> Result<String, EnrollError> {
        let ca = self.ca()?;
        let serials: Vec<Vec<u8>> = self
            .list()?
            .iter()
            .filter(|r| !r.is_active())
            .filter_map(|r| hex::decode(&r.serial).ok())
            .collect();
        let refs: Vec<&[u8]> = serials.iter().map(Vec::as_slice).collect();
        ca.crl(&refs).map_err(|e| EnrollError(e.to_string()))
    }

    /// A new key and certificate for an enrolled client (same key type), then the old ones
    /// revoked as superseded. Returns what was written, the new CRL and the revoked records.
    pub fn renew(
        &self,
        name: &str,
        days: Option<u32>,
        out: &Path,
    ) -> Result<(Written, String, Vec<ClientRecord>), EnrollError> {
        let current = self.active_named(name)?;
        let Some(last) = current.last() else {
            return refuse(format!("no active client named {name}"));
        };
        if last.key == "csr" {
            return refuse(format!(
                "{name} made its own key: sign its new request (kmipd admin client sign), then revoke the old serial"
            ));
        }
        let kind = key_kind(&last.key)?;
        let written = self.issue_unchecked(name, days, kind, out)?;
        let mut crl = String::new();
        for old in &current {
            crl = self.revoke(&old.serial, "superseded")?.0;
        }
        Ok((written, crl, current))
    }
}

fn certificate_object(der: &[u8]) -> Ttlv {
    build::structure(
        tag::CERTIFICATE,
        vec![
            build::enumeration(tag::CERTIFICATE_TYPE, certificate_type::X_509),
            build::bytes(tag::CERTIFICATE_VALUE, der.to_vec()),
        ],
    )
}

fn find_bytes(items: &[Ttlv], t: kmipd_ttlv::Tag) -> Option<&[u8]> {
    for i in items {
        if i.tag == t
            && let Value::ByteString(b) = &i.value
        {
            return Some(b);
        }
        if let Value::Structure(children) = &i.value
            && let Some(b) = find_bytes(children, t)
        {
            return Some(b);
        }
    }
    None
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let mut out = format!("-----BEGIN {label}-----\n");
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The request's key: RSA of 2048 bits or more, EC on P-256/384/521, or Ed25519.
fn check_csr_key(
    csr: &x509_parser::certification_request::X509CertificationRequest<'_>,
) -> Result<(), EnrollError> {
    use x509_parser::public_key::PublicKey;
    let spki = &csr.certification_request_info.subject_pki;
    let alg = spki.algorithm.algorithm.to_id_string();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            let bits = rsa.key_size();
            if bits < 2048 {
                return refuse(format!(
                    "the request's RSA key has {bits} bits: at least 2048 are required"
                ));
            }
            Ok(())
        }
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                "1.2.840.10045.3.1.7" | "1.3.132.0.34" | "1.3.132.0.35" => Ok(()),
                other => refuse(format!(
                    "the request's EC key is on curve {other:?}: P-256, P-384 or P-521 are accepted"
                )),
            }
        }
        _ if alg == "1.3.101.112" => Ok(()),
        _ => refuse(format!(
            "the request's key ({alg}) is not accepted: RSA (2048 bits or more), EC P-256/384/521 or Ed25519"
        )),
    }
}

/// The output folder must not exist (nothing is overwritten).
fn check_out(out: &Path) -> Result<(), EnrollError> {
    if !out.is_absolute() {
        return refuse(format!(
            "{}: the output folder must be an absolute path",
            out.display()
        ));
    }
    if out.exists() {
        return refuse(format!("{} exists: name a new folder", out.display()));
    }
    Ok(())
}

/// Creates `out` (mode 0700) and writes the files; `private` ones are mode 0600, the others
/// 0644.
fn write_out(out: &Path, files: &[(String, &[u8], bool)]) -> Result<Vec<PathBuf>, EnrollError> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(out)
        .map_err(|e| EnrollError(format!("{}: {e}", out.display())))?;
    let mut written = Vec::new();
    for (name, bytes, private) in files {
        let path = out.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if *private { 0o600 } else { 0o644 })
            .open(&path)
            .map_err(|e| EnrollError(format!("{}: {e}", path.display())))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| EnrollError(format!("{}: {e}", path.display())))?;
        written.push(path);
    }
    Ok(written)
}

struct Bundle {
    bundle: Vec<u8>,
    password: Zeroizing<String>,
}

/// A PKCS#12 bundle (key, certificate, CA) with a new random password.
fn pkcs12(name: &str, key_pem: &str, cert_pem: &str, ca_pem: &str) -> Result<Bundle, EnrollError> {
    let e = |e: openssl::error::ErrorStack| EnrollError(format!("PKCS#12 bundle: {e}"));
    let mut raw = Zeroizing::new([0u8; 18]);
    openssl::rand::rand_bytes(raw.as_mut()).map_err(e)?;
    let password = Zeroizing::new(hex::encode(raw.as_ref()));
    let key = openssl::pkey::PKey::private_key_from_pem(key_pem.as_bytes()).map_err(e)?;
    let cert = openssl::x509::X509::from_pem(cert_pem.as_bytes()).map_err(e)?;
    let mut chain = openssl::stack::Stack::new().map_err(e)?;
    chain
        .push(openssl::x509::X509::from_pem(ca_pem.as_bytes()).map_err(e)?)
        .map_err(e)?;
    let bundle = openssl::pkcs12::Pkcs12::builder()
        .name(name)
        .pkey(&key)
        .cert(&cert)
        .ca(chain)
        .build2(&password)
        .map_err(e)?
        .to_der()
        .map_err(e)?;
    Ok(Bundle { bundle, password })
}
