//! Development certificates: a CA, server certificates (ECDSA P-256 and RSA-2048) and client
//! certificates, made with `rcgen` and checked with `x509-parser`.
//!
//! `kmipd init` uses it to make a development instance; the end-to-end tests use it to make
//! the certificates a real deployment would get wrong (expired, no clientAuth, another CA,
//! revoked by a CRL). A production deployment uses its own PKI (`docs/deployment.md`).
//!
//! rcgen runs on `ring` here, which cannot generate RSA keys, so RSA keys come from OpenSSL
//! (already linked by the engine) and are handed to rcgen as PKCS#8.

use std::net::{IpAddr, Ipv4Addr};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

/// Why a certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// OpenSSL failed to generate an RSA key.
    #[error("RSA key generation failed: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
    /// Not a PEM certificate, or not DER inside.
    #[error("not a readable X.509 certificate: {0}")]
    Parse(String),
}

/// The key type of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA on P-256 with SHA-256.
    EcdsaP256,
    /// RSA-2048, PKCS#1 v1.5 signatures with SHA-256.
    Rsa2048,
    /// RSA-3072, PKCS#1 v1.5 signatures with SHA-256.
    Rsa3072,
}

/// The Extended Key Usage a client certificate carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEku {
    /// clientAuth (what `kmipd init` issues).
    ClientAuth,
    /// No Extended Key Usage extension at all.
    Absent,
    /// serverAuth only (a certificate the server must refuse).
    ServerAuthOnly,
}

/// How to issue a client certificate.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Extended Key Usage.
    pub eku: ClientEku,
    /// Key type.
    pub key: KeyKind,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Extra SAN DNS names, e-mail addresses (`x@y`) and URIs (`scheme:...`), for identity
    /// sources other than the CN.
    pub sans: Vec<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        let now = OffsetDateTime::now_utc();
        ClientOptions {
            eku: ClientEku::ClientAuth,
            key: KeyKind::EcdsaP256,
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(3650),
            sans: Vec::new(),
        }
    }
}

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: Zeroizing<String>,
    /// The serial number's bytes (for a CRL).
    pub serial: Vec<u8>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("serial", &self.serial)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A development certificate authority.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

fn key_pair(kind: KeyKind) -> Result<KeyPair, CertError> {
    match kind {
        KeyKind::EcdsaP256 => Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?),
        KeyKind::Rsa2048 | KeyKind::Rsa3072 => {
            let bits = if kind == KeyKind::Rsa2048 { 2048 } else { 3072 };
            let rsa = openssl::rsa::Rsa::generate(bits)?;
            let pkey = openssl::pkey::PKey::from_rsa(rsa)?;
            let pem = Zeroizing::new(pkey.private_key_to_pem_pkcs8()?);
            let pem = Zeroizing::new(String::from_utf8_lossy(&pem).into_owned());
            Ok(KeyPair::from_pem_and_sign_algo(
                &pem,
                &rcgen::PKCS_RSA_SHA256,
            )?)
        }
    }
}

fn random_serial() -> Result<SerialNumber, CertError> {
    let mut b = [0u8; 16];
    openssl::rand::rand_bytes(&mut b)?;
    // Positive, non-zero first byte: a 16-byte DER INTEGER without a leading zero.
    if let Some(first) = b.first_mut() {
        *first = (*first & 0x7f) | 0x01;
    }
    Ok(SerialNumber::from_slice(&b))
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "kmipd development");
    dn.push(DnType::CommonName, cn);
    dn
}

impl DevCa {
    /// A new self-signed CA (ECDSA P-256, ten years), named `cn`.
    pub fn generate(cn: &str) -> Result<DevCa, CertError> {
        let key = key_pair(KeyKind::EcdsaP256)?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        params.serial_number = Some(random_serial()?);
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params.self_signed(&key)?;
        let key_pem = Zeroizing::new(key.serialize_pem());
        Ok(DevCa {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// A CA from its certificate and key (as written by `kmipd init`: `ca.pem`, `ca.key`).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<DevCa, CertError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(DevCa {
            issuer,
            cert_pem: cert_pem.to_owned(),
            key_pem: Zeroizing::new(key_pem.to_owned()),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A server certificate for `localhost` and `127.0.0.1` (plus `extra_dns`), serverAuth.
    pub fn issue_server(&self, kind: KeyKind, extra_dns: &[&str]) -> Result<Issued, CertError> {
        let mut sans = vec![
            SanType::DnsName("localhost".try_into()?),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ];
        for d in extra_dns {
            sans.push(SanType::DnsName((*d).try_into()?));
        }
        let now = OffsetDateTime::now_utc();
        let cn = match kind {
            KeyKind::EcdsaP256 => "kmipd server (ECDSA)",
            KeyKind::Rsa2048 | KeyKind::Rsa3072 => "kmipd server (RSA)",
        };
        self.issue(
            cn,
            kind,
            sans,
            vec![ExtendedKeyUsagePurpose::ServerAuth],
            now - Duration::days(1),
            now + Duration::days(825),
        )
    }

    /// A client certificate whose subject CN is `cn`.
    pub fn issue_client(&self, cn: &str, opts: &ClientOptions) -> Result<Issued, CertError> {
        let mut sans = Vec::new();
        for s in &opts.sans {
            sans.push(if s.contains('@') {
                SanType::Rfc822Name(s.as_str().try_into()?)
            } else if s.contains(':') {
                SanType::URI(s.as_str().try_into()?)
            } else {
                SanType::DnsName(s.as_str().try_into()?)
            });
        }
        let eku = match opts.eku {
            ClientEku::ClientAuth => vec![ExtendedKeyUsagePurpose::ClientAuth],
            ClientEku::Absent => vec![],
            ClientEku::ServerAuthOnly => vec![ExtendedKeyUsagePurpose::ServerAuth],
        };
        self.issue(cn, opts.key, sans, eku, opts.not_before, opts.not_after)
    }

    fn issue(
        &self,
        cn: &str,
        kind: KeyKind,
        sans: Vec<SanType>,
        eku: Vec<ExtendedKeyUsagePurpose>,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Issued, CertError> {
        let key = key_pair(kind)?;
        let serial = random_serial()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(cn);
        params.subject_alt_names = sans;
        params.extended_key_usages = eku;
        params.key_usages = match kind {
            KeyKind::EcdsaP256 => vec![KeyUsagePurpose::DigitalSignature],
            KeyKind::Rsa2048 | KeyKind::Rsa3072 => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
        };
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(serial.clone());
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
            serial: serial.to_bytes(),
        })
    }

    /// A client certificate (clientAuth, subject CN `cn`) for the public key of a certificate
    /// signing request whose signature rcgen has checked. Nothing of the request but its key
    /// is used: its subject, SANs and extensions are replaced by kmipd's. Returns the
    /// certificate (PEM) and its serial number.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        cn: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<(String, Vec<u8>), CertError> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
        let serial = random_serial()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(serial.clone());
        params.use_authority_key_identifier_extension = true;
        csr.params = params;
        let cert = csr.signed_by(&self.issuer)?;
        Ok((cert.pem(), serial.to_bytes()))
    }

    /// A CRL (PEM, valid for 30 days) revoking the certificates with these serial numbers.
    pub fn crl(&self, revoked_serials: &[&[u8]]) -> Result<String, CertError> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + Duration::days(30),
            crl_number: random_serial()?,
            issuing_distribution_point: None,
            revoked_certs: revoked_serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: now - Duration::minutes(1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }
}

/// What `x509-parser` reads from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Subject Common Name.
    pub subject_cn: Option<String>,
    /// SAN DNS names.
    pub dns_names: Vec<String>,
    /// SAN IP addresses.
    pub ip_addresses: Vec<IpAddr>,
    /// The EKU extension is present.
    pub has_eku: bool,
    /// The EKU lists clientAuth.
    pub client_auth: bool,
    /// The EKU lists serverAuth.
    pub server_auth: bool,
    /// Basic Constraints CA.
    pub is_ca: bool,
    /// Public key algorithm: "EC" or "RSA" (or the OID).
    pub key_algorithm: String,
}

/// Reads the first certificate of a PEM text with `x509-parser`.
pub fn inspect_pem(pem: &str) -> Result<CertSummary, CertError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| CertError::Parse(e.to_string()))?;
    inspect_der(&pem.contents)
}

/// Reads a DER certificate with `x509-parser`.
pub fn inspect_der(der: &[u8]) -> Result<CertSummary, CertError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertError::Parse(e.to_string()))?;
    let subject_cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => dns_names.push((*d).to_owned()),
                GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        ip_addresses.push(IpAddr::from(a));
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        ip_addresses.push(IpAddr::from(a));
                    }
                }
                _ => {}
            }
        }
    }
    let eku = cert.extended_key_usage().ok().flatten();
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|b| b.value.ca);
    let oid = cert.public_key().algorithm.algorithm.to_id_string();
    let key_algorithm = match oid.as_str() {
        "1.2.840.10045.2.1" => "EC".to_owned(),
        "1.2.840.113549.1.1.1" => "RSA".to_owned(),
        _ => oid,
    };
    Ok(CertSummary {
        subject_cn,
        dns_names,
        ip_addresses,
        has_eku: eku.is_some(),
        client_auth: eku.as_ref().is_some_and(|e| e.value.client_auth),
        server_auth: eku.as_ref().is_some_and(|e| e.value.server_auth),
        is_ca,
        key_algorithm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_certificates_have_both_sans_serverauth_and_the_right_key() {
        let ca = DevCa::generate("test CA").unwrap();
        let s = inspect_pem(ca.cert_pem()).unwrap();
        assert!(s.is_ca);
        for (kind, alg) in [(KeyKind::EcdsaP256, "EC"), (KeyKind::Rsa2048, "RSA")] {
            let srv = ca.issue_server(kind, &[]).unwrap();
            let s = inspect_pem(&srv.cert_pem).unwrap();
            assert_eq!(s.dns_names, vec!["localhost".to_owned()]);
            assert_eq!(s.ip_addresses, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
            assert!(s.server_auth && !s.client_auth && !s.is_ca);
            assert_eq!(s.key_algorithm, alg);
        }
    }

    #[test]
    fn client_certificates_carry_the_requested_eku() {
        let ca = DevCa::generate("test CA").unwrap();
        let c = ca.issue_client("alice", &ClientOptions::default()).unwrap();
        let s = inspect_pem(&c.cert_pem).unwrap();
        assert_eq!(s.subject_cn.as_deref(), Some("alice"));
        assert!(s.has_eku && s.client_auth && !s.server_auth);
        let none = ClientOptions {
            eku: ClientEku::Absent,
            ..ClientOptions::default()
        };
        let s = inspect_pem(&ca.issue_client("bob", &none).unwrap().cert_pem).unwrap();
        assert!(!s.has_eku && !s.client_auth);
        let wrong = ClientOptions {
            eku: ClientEku::ServerAuthOnly,
            ..ClientOptions::default()
        };
        let s = inspect_pem(&ca.issue_client("eve", &wrong).unwrap().cert_pem).unwrap();
        assert!(s.has_eku && !s.client_auth && s.server_auth);
    }

    #[test]
    fn a_ca_read_back_from_pem_issues_certificates_and_crls() {
        let ca = DevCa::generate("test CA").unwrap();
        let again = DevCa::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        let c = again
            .issue_client("carol", &ClientOptions::default())
            .unwrap();
        let crl = again.crl(&[&c.serial]).unwrap();
        assert!(crl.starts_with("-----BEGIN X509 CRL-----"), "{crl}");
        let (_, pem) = x509_parser::pem::parse_x509_pem(crl.as_bytes()).unwrap();
        let (_, parsed) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(&pem.contents)
                .unwrap();
        let serials: Vec<Vec<u8>> = parsed
            .iter_revoked_certificates()
            .map(|r| r.raw_serial().to_vec())
            .collect();
        assert_eq!(serials, vec![c.serial.clone()]);
    }
}
