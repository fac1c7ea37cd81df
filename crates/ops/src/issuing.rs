//! The issuing CA of Certify and Re-certify (`operations/certify.rs`, `operations/re_certify.rs`):
//! the certificate and private key with which kmipd signs the X.509 v3 certificates it issues
//! for public keys it holds.
//!
//! It is configured for the server (`[certify]` in the server's configuration, docs/
//! configuration.md) and handed to the engine in [`crate::EngineConfig::issuing_ca`]; without
//! one, Certify and Re-certify answer Feature Not Supported. It is deliberately **not** the
//! client CA of `kmipd admin client` (crates/server/src/clients.rs): kmipd trusts that CA for
//! mutual TLS, and a certificate any KMIP client can obtain for any subject must never be a
//! TLS client certificate kmipd accepts.
//!
//! What an issued certificate holds: version 3; a random positive 159-bit serial number; the
//! issuer is the CA certificate's subject; the subject is the Certificate Request's (PKCS#10),
//! else `CN=<the public key's Unique Identifier>` (Certify) or the replaced certificate's
//! (Re-certify); validity from the request's time for [`IssuingCa::days`] days; extensions:
//! Basic Constraints `CA:FALSE` (critical), Key Usage (critical, from the certificate's
//! Cryptographic Usage Mask: Sign/Verify give digitalSignature, Encrypt/Decrypt and Wrap/
//! Unwrap Key give keyEncipherment (RSA) or keyAgreement (EC), default digitalSignature),
//! Subject and Authority Key Identifiers. Signed with SHA-256 (RSA, EC CA keys; Ed25519 signs
//! without a separate digest).

use std::sync::Arc;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509NameRef};

use crate::crypto::ossl;
use crate::error::{Error, Result};

/// Validity of an issued certificate when the configuration names none.
pub const DEFAULT_DAYS: u32 = 365;

/// Why an issuing CA could not be loaded (one line for the operator).
#[derive(Debug, thiserror::Error)]
pub enum IssuingCaError {
    /// The certificate is not a PEM X.509 certificate.
    #[error("the issuing CA certificate is not a PEM X.509 certificate")]
    Certificate,
    /// The key is not a PEM private key.
    #[error("the issuing CA key is not a PEM private key")]
    Key,
    /// The key is not the certificate's.
    #[error("the issuing CA key does not belong to the issuing CA certificate")]
    Mismatch,
    /// The certificate is not a CA certificate.
    #[error("the issuing CA certificate is not a CA certificate (Basic Constraints CA:TRUE)")]
    NotCa,
    /// Zero or more than 3650 days.
    #[error("the validity of issued certificates must be 1 to 3650 days")]
    Days,
}

/// A CA certificate and its private key (never printed: [`std::fmt::Debug`] shows the subject).
#[derive(Clone)]
pub struct IssuingCa {
    cert: X509,
    key: PKey<Private>,
    days: u32,
}

impl std::fmt::Debug for IssuingCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let subject: Vec<String> = self
            .cert
            .subject_name()
            .entries()
            .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
            .collect();
        write!(f, "IssuingCa({}, {} days)", subject.join(","), self.days)
    }
}

impl IssuingCa {
    /// The CA from its PEM certificate and PEM private key (PKCS#8 or traditional); issued
    /// certificates are valid for `days`.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        days: u32,
    ) -> std::result::Result<Arc<Self>, IssuingCaError> {
        let cert = X509::from_pem(cert_pem).map_err(|_| IssuingCaError::Certificate)?;
        let key = PKey::private_key_from_pem(key_pem).map_err(|_| IssuingCaError::Key)?;
        let public = cert.public_key().map_err(|_| IssuingCaError::Certificate)?;
        if !public.public_eq(&key) {
            return Err(IssuingCaError::Mismatch);
        }
        if !is_ca(&cert) {
            return Err(IssuingCaError::NotCa);
        }
        if days == 0 || days > 3650 {
            return Err(IssuingCaError::Days);
        }
        Ok(Arc::new(IssuingCa { cert, key, days }))
    }

    /// The CA certificate (DER).
    pub fn certificate_der(&self) -> Vec<u8> {
        self.cert.to_der().unwrap_or_default()
    }

    /// The CA certificate and its private key (PKCS#8), PEM, to write them out (`kmipd init`).
    pub fn to_pem(&self) -> Result<(String, zeroize::Zeroizing<String>)> {
        let cert = self.cert.to_pem().map_err(ossl)?;
        let key = zeroize::Zeroizing::new(self.key.private_key_to_pem_pkcs8().map_err(ossl)?);
        let text = |b: &[u8]| {
            std::str::from_utf8(b)
                .map(str::to_owned)
                .map_err(|_| Error::Internal("PEM is ASCII"))
        };
        Ok((text(&cert)?, zeroize::Zeroizing::new(text(&key)?)))
    }

    /// Validity of the certificates it issues, in days.
    pub fn days(&self) -> u32 {
        self.days
    }

    /// A certificate for `public` with subject `subject`, valid from `now` (POSIX seconds),
    /// with the Key Usage of `usage_mask` (a KMIP Cryptographic Usage Mask). DER.
    pub(crate) fn issue(
        &self,
        public: &PKey<Public>,
        subject: &X509NameRef,
        now: i64,
        usage_mask: Option<i32>,
    ) -> Result<Vec<u8>> {
        let mut b = X509Builder::new().map_err(ossl)?;
        b.set_version(2).map_err(ossl)?;
        let mut serial = BigNum::new().map_err(ossl)?;
        serial
            .rand(159, MsbOption::MAYBE_ZERO, false)
            .map_err(ossl)?;
        let serial = serial.to_asn1_integer().map_err(ossl)?;
        b.set_serial_number(&serial).map_err(ossl)?;
        b.set_issuer_name(self.cert.subject_name()).map_err(ossl)?;
        b.set_subject_name(subject).map_err(ossl)?;
        b.set_pubkey(public).map_err(ossl)?;
        let end = now.saturating_add(i64::from(self.days).saturating_mul(86_400));
        let not_before = Asn1Time::from_unix(now).map_err(ossl)?;
        let not_after = Asn1Time::from_unix(end).map_err(ossl)?;
        b.set_not_before(&not_before).map_err(ossl)?;
        b.set_not_after(&not_after).map_err(ossl)?;
        b.append_extension(BasicConstraints::new().critical().build().map_err(ossl)?)
            .map_err(ossl)?;
        b.append_extension(key_usage(public.id(), usage_mask)?)
            .map_err(ossl)?;
        let ski = SubjectKeyIdentifier::new()
            .build(&b.x509v3_context(Some(&self.cert), None))
            .map_err(ossl)?;
        b.append_extension(ski).map_err(ossl)?;
        let aki = AuthorityKeyIdentifier::new()
            .keyid(false)
            .build(&b.x509v3_context(Some(&self.cert), None))
            .map_err(ossl)?;
        b.append_extension(aki).map_err(ossl)?;
        let md = match self.key.id() {
            Id::ED25519 | Id::ED448 => MessageDigest::null(),
            _ => MessageDigest::sha256(),
        };
        b.sign(&self.key, md).map_err(ossl)?;
        b.build().to_der().map_err(ossl)
    }
}

/// Basic Constraints CA:TRUE (parsed with x509-parser: OpenSSL's crate does not expose it).
fn is_ca(cert: &X509) -> bool {
    let Ok(der) = cert.to_der() else {
        return false;
    };
    x509_parser::parse_x509_certificate(&der).is_ok_and(|(_, c)| {
        c.basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca)
    })
}

/// Key Usage from a Cryptographic Usage Mask (KMIP 1.4 §9.1.3.3.1 bits).
fn key_usage(key: Id, mask: Option<i32>) -> Result<openssl::x509::X509Extension> {
    const SIGN: i32 = 0x1;
    const VERIFY: i32 = 0x2;
    const ENCRYPT: i32 = 0x4;
    const DECRYPT: i32 = 0x8;
    const WRAP: i32 = 0x10;
    const UNWRAP: i32 = 0x20;
    let mask = mask.unwrap_or(0);
    let mut ku = KeyUsage::new();
    ku.critical();
    let signs = mask & (SIGN | VERIFY) != 0;
    let enciphers = mask & (ENCRYPT | DECRYPT | WRAP | UNWRAP) != 0;
    if signs || !enciphers {
        ku.digital_signature();
    }
    if enciphers {
        if key == Id::RSA {
            ku.key_encipherment();
        } else {
            ku.key_agreement();
        }
    }
    ku.build()
        .map_err(|_| Error::Internal("key usage extension"))
}

/// A CA for tests and the conformance runner: an RSA-2048 self-signed CA certificate with
/// subject `CN=<common_name>`, valid for ten years from now.
pub fn generate_rsa(common_name: &str) -> Result<Arc<IssuingCa>> {
    let rsa = openssl::rsa::Rsa::generate(2048).map_err(ossl)?;
    let key = PKey::from_rsa(rsa).map_err(ossl)?;
    let mut name = openssl::x509::X509NameBuilder::new().map_err(ossl)?;
    name.append_entry_by_text("CN", common_name).map_err(ossl)?;
    let name = name.build();
    let mut b = X509Builder::new().map_err(ossl)?;
    b.set_version(2).map_err(ossl)?;
    let mut serial = BigNum::new().map_err(ossl)?;
    serial
        .rand(127, MsbOption::MAYBE_ZERO, false)
        .map_err(ossl)?;
    let serial = serial.to_asn1_integer().map_err(ossl)?;
    b.set_serial_number(&serial).map_err(ossl)?;
    b.set_subject_name(&name).map_err(ossl)?;
    b.set_issuer_name(&name).map_err(ossl)?;
    b.set_pubkey(&key).map_err(ossl)?;
    let not_before = Asn1Time::days_from_now(0).map_err(ossl)?;
    let not_after = Asn1Time::days_from_now(3650).map_err(ossl)?;
    b.set_not_before(&not_before).map_err(ossl)?;
    b.set_not_after(&not_after).map_err(ossl)?;
    b.append_extension(
        BasicConstraints::new()
            .critical()
            .ca()
            .build()
            .map_err(ossl)?,
    )
    .map_err(ossl)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()
            .map_err(ossl)?,
    )
    .map_err(ossl)?;
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(None, None))
        .map_err(ossl)?;
    b.append_extension(ski).map_err(ossl)?;
    b.sign(&key, MessageDigest::sha256()).map_err(ossl)?;
    Ok(Arc::new(IssuingCa {
        cert: b.build(),
        key,
        days: DEFAULT_DAYS,
    }))
}
