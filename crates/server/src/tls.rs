//! TLS: the rustls server configuration, the certificate choice per ClientHello, the client
//! certificate policy, the identity read from a verified certificate, and the ClientHello
//! summary logged when a handshake fails.
//!
//! **Two server certificates.** Many KMIP clients limited to the KMIP profiles' suites can
//! only do ECDHE-ECDSA-AES-GCM in TLS 1.2 (rustls has no RSA key exchange and no CBC), so an
//! ECDSA certificate is served to whoever can use it, and an RSA one to clients that offer no
//! ECDSA signature scheme or (in TLS 1.2) no ECDHE-ECDSA suite ([`choose_key`]).
//!
//! **Client certificates** are mandatory and verified by rustls' `WebPkiClientVerifier`
//! against the configured CA bundle and CRLs; [`EkuPolicy::Require`] adds that the Extended
//! Key Usage extension be present (rustls alone accepts a certificate without it).
//!
//! **Legacy suites.** Clients that offer only the KMIP profiles' RSA-key-exchange and CBC
//! suites are served by OpenSSL when `tls.profile_suites` is on ([`crate::tls_profile`]), with
//! this module's [`client_verifier`]; everything here is the rustls path.
//!
//! **Resumption.** A session cache (session ids) and stateless tickets; rustls keeps the
//! client's certificate chain in the resumed session, so the identity of a resumed connection
//! is the one verified at the full handshake. A CRL loaded later does not end sessions
//! already established (restart kmipd after changing CRLs; tickets do not survive it).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CipherSuite, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::{EkuPolicy, IdentitySource, TlsConfig, TlsVersion};

/// Why the TLS configuration could not be built. `Display` is one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{what} {path}: {reason}")]
    File {
        /// What the file is for (`tls.client_ca`, ...).
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the assembled configuration.
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

fn file_err(what: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        what,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The crypto provider kmipd uses (ring).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(what, path, e))?;
    if certs.is_empty() {
        return Err(file_err(what, path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

fn load_key(
    what: &'static str,
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = load_certs(what, cert)?;
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(what, key, e))?;
    let ck = CertifiedKey::from_der(chain, der, provider).map_err(|e| {
        file_err(
            what,
            key,
            format!("{e} (does the key match {})", cert.display()),
        )
    })?;
    Ok(Arc::new(ck))
}

/// The client certificate verifier of `[tls]`: WebPKI against `client_ca` and `crls`, plus the
/// EKU policy. Used by the rustls configuration and, for the KMIP profile suites, by the
/// OpenSSL one ([`crate::tls_profile`]), so both apply exactly the same checks.
pub(crate) fn client_verifier(tls: &TlsConfig) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    for c in load_certs("tls.client_ca", &tls.client_ca)? {
        roots
            .add(c)
            .map_err(|e| file_err("tls.client_ca", &tls.client_ca, e))?;
    }
    let mut crls = Vec::new();
    for path in &tls.crls {
        let list = CertificateRevocationListDer::pem_file_iter(path)
            .map_err(|e| file_err("tls.crls", path, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_err("tls.crls", path, e))?;
        if list.is_empty() {
            return Err(file_err("tls.crls", path, "no X509 CRL in the file"));
        }
        crls.extend(list);
    }
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    if !crls.is_empty() {
        builder = builder
            .with_crls(crls)
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status();
    }
    let inner = builder
        .build()
        .map_err(|e| file_err("tls.client_ca", &tls.client_ca, e))?;
    Ok(Arc::new(PolicyVerifier {
        inner,
        eku: tls.client_eku,
    }))
}

/// The cipher suites (IANA numbers) the rustls configuration of `[tls]` can negotiate: those
/// of the provider for the configured protocol versions.
pub(crate) fn rustls_suite_ids(tls: &TlsConfig) -> Vec<u16> {
    provider()
        .cipher_suites
        .iter()
        .filter(|s| match s.version().version {
            rustls::ProtocolVersion::TLSv1_3 => tls.versions.contains(&TlsVersion::Tls13),
            _ => tls.versions.contains(&TlsVersion::Tls12),
        })
        .map(|s| u16::from(s.suite()))
        .collect()
}

/// The server's TLS configuration from `[tls]`.
pub(crate) fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = client_verifier(tls)?;

    let ecdsa = match (&tls.ecdsa_cert, &tls.ecdsa_key) {
        (Some(c), Some(k)) => Some(load_key("tls.ecdsa_cert", c, k, &provider)?),
        _ => None,
    };
    let rsa = match (&tls.rsa_cert, &tls.rsa_key) {
        (Some(c), Some(k)) => Some(load_key("tls.rsa_cert", c, k, &provider)?),
        _ => None,
    };
    let resolver = Arc::new(CertResolver { ecdsa, rsa });

    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if tls.versions.contains(&TlsVersion::Tls13) {
        versions.push(&rustls::version::TLS13);
    }
    if tls.versions.contains(&TlsVersion::Tls12) {
        versions.push(&rustls::version::TLS12);
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    config.session_storage = if tls.session_cache_size > 0 {
        rustls::server::ServerSessionMemoryCache::new(tls.session_cache_size)
    } else {
        Arc::new(rustls::server::NoServerSessionStorage {})
    };
    if tls.session_tickets {
        config.ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Rustls(e.to_string()))?;
        // TLS 1.3: several tickets, so a client can resume more than once in parallel.
        config.send_tls13_tickets = 4;
    } else {
        config.send_tls13_tickets = 0;
    }
    Ok(Arc::new(config))
}

/// Which server certificate a ClientHello gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyChoice {
    /// The ECDSA certificate.
    Ecdsa,
    /// The RSA certificate.
    Rsa,
}

fn is_tls13_suite(s: CipherSuite) -> bool {
    matches!(
        s,
        CipherSuite::TLS13_AES_128_GCM_SHA256
            | CipherSuite::TLS13_AES_256_GCM_SHA384
            | CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
    )
}

/// The certificate for a ClientHello's signature schemes and cipher suites: ECDSA when the
/// client can verify an ECDSA signature and has a suite that works with it (any TLS 1.3
/// suite, or a TLS 1.2 ECDHE-ECDSA one); otherwise RSA when it can use that; otherwise
/// ECDSA (the handshake then fails with a reason that is logged).
pub(crate) fn choose_key(schemes: &[SignatureScheme], suites: &[CipherSuite]) -> KeyChoice {
    let tls13 = suites.iter().any(|s| is_tls13_suite(*s));
    let ecdsa_scheme = schemes.iter().any(|s| {
        matches!(
            s,
            SignatureScheme::ECDSA_NISTP256_SHA256 | SignatureScheme::ECDSA_NISTP384_SHA384
        )
    });
    let ecdsa_suite = tls13 || suites.iter().any(|s| format!("{s:?}").contains("_ECDSA_"));
    let rsa_scheme = schemes.iter().any(|s| format!("{s:?}").starts_with("RSA_"));
    let rsa_suite = tls13
        || suites
            .iter()
            .any(|s| format!("{s:?}").contains("ECDHE_RSA_"));
    if ecdsa_scheme && ecdsa_suite {
        KeyChoice::Ecdsa
    } else if rsa_scheme && rsa_suite {
        KeyChoice::Rsa
    } else {
        KeyChoice::Ecdsa
    }
}

/// Picks the ECDSA or the RSA certificate per ClientHello ([`choose_key`]); with only one
/// configured, always that one. No SNI is needed.
#[derive(Debug)]
struct CertResolver {
    ecdsa: Option<Arc<CertifiedKey>>,
    rsa: Option<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let choice = choose_key(hello.signature_schemes(), hello.cipher_suites());
        let (first, second) = match choice {
            KeyChoice::Ecdsa => (&self.ecdsa, &self.rsa),
            KeyChoice::Rsa => (&self.rsa, &self.ecdsa),
        };
        first.clone().or_else(|| second.clone())
    }
}

/// A client certificate whose EKU policy check failed.
#[derive(Debug)]
struct MissingClientAuthEku;

impl std::fmt::Display for MissingClientAuthEku {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "client certificate has no Extended Key Usage extension and tls.client_eku is \
             \"require\"",
        )
    }
}

impl std::error::Error for MissingClientAuthEku {}

/// WebPKI verification plus the EKU policy.
#[derive(Debug)]
struct PolicyVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    eku: EkuPolicy,
}

impl ClientCertVerifier for PolicyVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.eku == EkuPolicy::Require {
            let (_, cert) = X509Certificate::from_der(end_entity).map_err(|_| {
                rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
            })?;
            let has = cert
                .extended_key_usage()
                .ok()
                .flatten()
                .is_some_and(|e| e.value.client_auth || e.value.any);
            if !has {
                return Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::Other(rustls::OtherError(Arc::new(
                        MissingClientAuthEku,
                    ))),
                ));
            }
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Why no identity could be read from a verified certificate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum IdentityError {
    /// The certificate could not be parsed (cannot happen after rustls verified it).
    #[error("client certificate unreadable")]
    Unreadable,
    /// The configured source is absent from the certificate.
    #[error("client certificate has no {0}")]
    Missing(&'static str),
}

/// The identity a verified client certificate (DER) stands for, per `source`.
pub(crate) fn identity_from_cert(
    der: &[u8],
    source: IdentitySource,
) -> Result<String, IdentityError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| IdentityError::Unreadable)?;
    let sans = || -> Vec<GeneralName<'_>> {
        cert.subject_alternative_name()
            .ok()
            .flatten()
            .map(|s| s.value.general_names.clone())
            .unwrap_or_default()
    };
    let nonempty = |s: String| if s.is_empty() { None } else { Some(s) };
    match source {
        IdentitySource::Cn => cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned)
            .and_then(nonempty)
            .ok_or(IdentityError::Missing("subject Common Name")),
        IdentitySource::Subject => {
            nonempty(cert.subject().to_string()).ok_or(IdentityError::Missing("subject"))
        }
        IdentitySource::SanDns => sans()
            .into_iter()
            .find_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_owned()),
                _ => None,
            })
            .ok_or(IdentityError::Missing("SAN DNS name")),
        IdentitySource::SanEmail => sans()
            .into_iter()
            .find_map(|n| match n {
                GeneralName::RFC822Name(d) => Some(d.to_owned()),
                _ => None,
            })
            .ok_or(IdentityError::Missing("SAN e-mail address")),
        IdentitySource::SanUri => sans()
            .into_iter()
            .find_map(|n| match n {
                GeneralName::URI(d) => Some(d.to_owned()),
                _ => None,
            })
            .ok_or(IdentityError::Missing("SAN URI")),
    }
}

/// What a ClientHello offered, for the log line of a failed handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HelloSummary {
    /// Protocol versions offered (supported_versions, else the legacy version).
    pub(crate) versions: Vec<String>,
    /// Cipher suites offered.
    pub(crate) suites: Vec<String>,
    /// The same, as IANA numbers (GREASE left out).
    pub(crate) suite_ids: Vec<u16>,
    /// SNI host name, if any.
    pub(crate) sni: Option<String>,
}

impl HelloSummary {
    /// Versions, comma-separated.
    pub(crate) fn versions_list(&self) -> String {
        self.versions.join(",")
    }

    /// Suites, comma-separated.
    pub(crate) fn suites_list(&self) -> String {
        self.suites.join(",")
    }
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Some(head)
}

fn u8_at(b: &mut &[u8]) -> Option<usize> {
    take(b, 1).and_then(|x| x.first()).map(|v| usize::from(*v))
}

fn u16_at(b: &mut &[u8]) -> Option<u16> {
    let x = take(b, 2)?;
    Some(u16::from_be_bytes(x.try_into().ok()?))
}

fn version_name(v: u16) -> String {
    match v {
        0x0300 => "SSLv3".to_owned(),
        0x0301 => "TLSv1.0".to_owned(),
        0x0302 => "TLSv1.1".to_owned(),
        0x0303 => "TLSv1.2".to_owned(),
        0x0304 => "TLSv1.3".to_owned(),
        v if v & 0x0f0f == 0x0a0a => "GREASE".to_owned(),
        v => format!("0x{v:04x}"),
    }
}

/// A cipher suite's IANA name; rustls names only the suites it knows, so the legacy suites old
/// arrays offer are named here (the point of the log line is to show them).
fn suite_name(s: u16) -> String {
    let legacy = match s {
        0x000a => "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        0x002f => "TLS_RSA_WITH_AES_128_CBC_SHA",
        0x0035 => "TLS_RSA_WITH_AES_256_CBC_SHA",
        0x003c => "TLS_RSA_WITH_AES_128_CBC_SHA256",
        0x003d => "TLS_RSA_WITH_AES_256_CBC_SHA256",
        0x009c => "TLS_RSA_WITH_AES_128_GCM_SHA256",
        0x009d => "TLS_RSA_WITH_AES_256_GCM_SHA384",
        0x0033 => "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
        0x0039 => "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
        0x0067 => "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
        0x006b => "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
        0x009e => "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
        0x009f => "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
        0xc009 => "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        0xc00a => "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        0xc013 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        0xc014 => "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        0xc023 => "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        0xc024 => "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
        0xc027 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
        0xc028 => "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
        0x00ff => "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
        _ => "",
    };
    if !legacy.is_empty() {
        return legacy.to_owned();
    }
    let known = format!("{:?}", CipherSuite::from(s));
    if known.starts_with("TLS") {
        known
    } else {
        format!("0x{s:04x}")
    }
}

/// Reads a ClientHello from the payload of the first TLS record (handshake header included).
/// `None` when the bytes are not a ClientHello (or are cut short).
pub(crate) fn parse_client_hello(record: &[u8]) -> Option<HelloSummary> {
    let mut b = record;
    if u8_at(&mut b)? != 1 {
        return None;
    }
    let _len = take(&mut b, 3)?;
    let legacy = u16_at(&mut b)?;
    take(&mut b, 32)?;
    let sid = u8_at(&mut b)?;
    take(&mut b, sid)?;
    let n = usize::from(u16_at(&mut b)?);
    let mut cs = take(&mut b, n)?;
    let mut suites = Vec::new();
    let mut suite_ids = Vec::new();
    while let Some(s) = u16_at(&mut cs) {
        if s & 0x0f0f == 0x0a0a {
            continue;
        }
        suites.push(suite_name(s));
        suite_ids.push(s);
    }
    let comp = u8_at(&mut b)?;
    take(&mut b, comp)?;
    let mut versions = Vec::new();
    let mut sni = None;
    if let Some(n) = u16_at(&mut b) {
        let mut ext = take(&mut b, usize::from(n)).unwrap_or_default();
        while let (Some(t), Some(l)) = (u16_at(&mut ext), u16_at(&mut ext)) {
            let Some(mut data) = take(&mut ext, usize::from(l)) else {
                break;
            };
            match t {
                // supported_versions
                43 => {
                    let n = u8_at(&mut data).unwrap_or(0);
                    let mut list = take(&mut data, n).unwrap_or_default();
                    while let Some(v) = u16_at(&mut list) {
                        if v & 0x0f0f != 0x0a0a {
                            versions.push(version_name(v));
                        }
                    }
                }
                // server_name
                0 => {
                    let _list_len = u16_at(&mut data);
                    if u8_at(&mut data) == Some(0)
                        && let Some(l) = u16_at(&mut data)
                        && let Some(name) = take(&mut data, usize::from(l))
                    {
                        sni = Some(String::from_utf8_lossy(name).into_owned());
                    }
                }
                _ => {}
            }
        }
    }
    if versions.is_empty() {
        versions.push(version_name(legacy));
    }
    Some(HelloSummary {
        versions,
        suites,
        suite_ids,
        sni,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{ClientOptions, DevCa};

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn identity_from_each_source() {
        let ca = DevCa::generate("CA").unwrap();
        let opts = ClientOptions {
            sans: vec![
                "host.example".into(),
                "ops@example.com".into(),
                "spiffe://kmip/array-1".into(),
            ],
            ..ClientOptions::default()
        };
        let c = der(&ca.issue_client("array-1", &opts).unwrap().cert_pem);
        assert_eq!(
            identity_from_cert(&c, IdentitySource::Cn).unwrap(),
            "array-1"
        );
        assert_eq!(
            identity_from_cert(&c, IdentitySource::Subject).unwrap(),
            "O=kmipd development, CN=array-1"
        );
        assert_eq!(
            identity_from_cert(&c, IdentitySource::SanDns).unwrap(),
            "host.example"
        );
        assert_eq!(
            identity_from_cert(&c, IdentitySource::SanEmail).unwrap(),
            "ops@example.com"
        );
        assert_eq!(
            identity_from_cert(&c, IdentitySource::SanUri).unwrap(),
            "spiffe://kmip/array-1"
        );
        let plain = der(&ca
            .issue_client("x", &ClientOptions::default())
            .unwrap()
            .cert_pem);
        assert_eq!(
            identity_from_cert(&plain, IdentitySource::SanDns),
            Err(IdentityError::Missing("SAN DNS name"))
        );
        assert_eq!(
            identity_from_cert(b"junk", IdentitySource::Cn),
            Err(IdentityError::Unreadable)
        );
    }

    #[test]
    fn resolver_choice_follows_the_client_hello() {
        use CipherSuite as C;
        use SignatureScheme as S;
        // PyKMIP-style TLS 1.2 client limited to ECDHE-ECDSA-AES-GCM.
        assert_eq!(
            choose_key(
                &[S::ECDSA_NISTP256_SHA256, S::RSA_PKCS1_SHA256],
                &[C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
            ),
            KeyChoice::Ecdsa
        );
        // A TLS 1.2 client with RSA suites only gets the RSA certificate.
        assert_eq!(
            choose_key(
                &[S::ECDSA_NISTP256_SHA256, S::RSA_PKCS1_SHA256],
                &[C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]
            ),
            KeyChoice::Rsa
        );
        // A client that cannot verify ECDSA signatures.
        assert_eq!(
            choose_key(
                &[S::RSA_PSS_SHA256, S::RSA_PKCS1_SHA256],
                &[C::TLS13_AES_128_GCM_SHA256]
            ),
            KeyChoice::Rsa
        );
        // TLS 1.3 with ECDSA: ECDSA.
        assert_eq!(
            choose_key(
                &[S::ECDSA_NISTP256_SHA256, S::RSA_PSS_SHA256],
                &[C::TLS13_AES_256_GCM_SHA384]
            ),
            KeyChoice::Ecdsa
        );
        // Nothing usable: ECDSA, and the handshake fails with a logged reason.
        assert_eq!(
            choose_key(&[S::RSA_PKCS1_SHA1], &[C::TLS_RSA_WITH_AES_128_CBC_SHA]),
            KeyChoice::Ecdsa
        );
    }

    #[test]
    fn client_hello_summary() {
        // A hand-built TLS 1.2 ClientHello: two suites (one GREASE), SNI, supported_versions.
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[0u8; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0x00, 0x06, 0x0a, 0x0a, 0xc0, 0x2b, 0x00, 0x2f]);
        body.extend_from_slice(&[0x01, 0x00]); // compression
        let mut ext = Vec::new();
        ext.extend_from_slice(&[0x00, 0x00, 0x00, 0x0c, 0x00, 0x0a, 0x00, 0x00, 0x07]);
        ext.extend_from_slice(b"example");
        ext.extend_from_slice(&[0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x04, 0x03, 0x03]);
        body.extend_from_slice(&u16::try_from(ext.len()).unwrap().to_be_bytes());
        body.extend_from_slice(&ext);
        let mut rec = vec![0x01, 0x00];
        rec.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        rec.extend_from_slice(&body);
        let s = parse_client_hello(&rec).unwrap();
        assert_eq!(s.versions, vec!["TLSv1.3", "TLSv1.2"]);
        assert_eq!(
            s.suites,
            vec![
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_RSA_WITH_AES_128_CBC_SHA"
            ]
        );
        assert_eq!(s.suite_ids, vec![0xc02b, 0x002f]);
        assert_eq!(s.sni.as_deref(), Some("example"));
        // Cut short anywhere: no panic.
        for n in 0..rec.len() {
            let _ = parse_client_hello(rec.get(..n).unwrap());
        }
        assert_eq!(parse_client_hello(&[2, 0, 0]), None);
    }
}
