//! The KMIP profile TLS suites through OpenSSL (`[tls] profile_suites = true`, off by default).
//!
//! rustls serves only ECDHE with AEAD suites; the KMIP Profiles' authentication suites list RSA
//! key exchange and CBC suites, and some storage arrays, tape libraries and database keyrings
//! offer nothing else. With the option on, the accept loop reads each ClientHello (as it does for
//! the failure log line) and hands a connection to OpenSSL when the client offers **none** of the
//! suites rustls can negotiate under `[tls]` and **some** of [`PROFILE_SUITES`]
//! ([`wants_openssl`]); every other client (every modern one) still gets rustls.
//!
//! The OpenSSL configuration ([`ProfileTls`]): TLS 1.2 only, exactly [`PROFILE_SUITES`] (the
//! list and its source: `docs/deployment.md`), the same ECDSA and RSA certificates and keys, a
//! client certificate required and checked twice: by OpenSSL against `tls.client_ca` (chain and
//! dates, the clientAuth purpose when the certificate has an EKU), then, for the end-entity
//! certificate, by the very verifier of the rustls path ([`crate::tls::client_verifier`]: the
//! CA, the CRLs, the EKU policy), so no certificate passes here that rustls would refuse. No
//! session resumption (no cache, no tickets: every connection verifies its certificate against
//! the current CRLs), no renegotiation; DHE uses the RFC 7919 `ffdhe2048` group.
//!
//! After the handshake everything is the rustls path's code: the identity from the client
//! certificate, the caps, the requests, audit and metrics.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use openssl::dh::Dh;
use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslFiletype, SslMethod, SslOptions, SslSessionCacheMode,
    SslVerifyMode, SslVersion,
};
use openssl::x509::{X509, X509VerifyResult};
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_openssl::SslStream;

use crate::config::{TlsConfig, TlsVersion};
use crate::tls::{HelloSummary, TlsError, client_verifier, rustls_suite_ids};

/// A suite of the KMIP profiles' authentication suites: IANA number, IANA name, OpenSSL name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProfileSuite {
    /// The IANA number.
    pub(crate) id: u16,
    /// The IANA name.
    pub(crate) iana: &'static str,
    /// OpenSSL's name.
    pub(crate) openssl: &'static str,
}

const fn suite(id: u16, iana: &'static str, openssl: &'static str) -> ProfileSuite {
    ProfileSuite { id, iana, openssl }
}

/// The TLS 1.2 suites of the KMIP Profiles' Basic and TLS 1.2 Authentication Suites that
/// OpenSSL 3 implements (`docs/deployment.md` gives the source and what is left out: static DH
/// and ECDH, DSS). The two ECDHE-ECDSA-AES-GCM suites are served by rustls whenever offered.
pub(crate) const PROFILE_SUITES: [ProfileSuite; 10] = [
    suite(0x003c, "TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256"),
    suite(0x003d, "TLS_RSA_WITH_AES_256_CBC_SHA256", "AES256-SHA256"),
    suite(
        0x0067,
        "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
        "DHE-RSA-AES128-SHA256",
    ),
    suite(
        0x006b,
        "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
        "DHE-RSA-AES256-SHA256",
    ),
    suite(
        0xc023,
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        "ECDHE-ECDSA-AES128-SHA256",
    ),
    suite(
        0xc024,
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
        "ECDHE-ECDSA-AES256-SHA384",
    ),
    suite(
        0xc027,
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
        "ECDHE-RSA-AES128-SHA256",
    ),
    suite(
        0xc028,
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
        "ECDHE-RSA-AES256-SHA384",
    ),
    suite(
        0xc02b,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
    ),
    suite(
        0xc02c,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
    ),
];

/// RFC 7919 `ffdhe2048`, for the DHE suites.
const FFDHE2048: &str = "-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
";

/// Whether a ClientHello goes to OpenSSL: it offers none of `rustls_suites` and some profile
/// suite.
pub(crate) fn wants_openssl(hello: &HelloSummary, rustls_suites: &[u16]) -> bool {
    !hello.suite_ids.iter().any(|s| rustls_suites.contains(s))
        && hello
            .suite_ids
            .iter()
            .any(|s| PROFILE_SUITES.iter().any(|p| p.id == *s))
}

/// The OpenSSL side of `[tls]` for the profile suites (see the module docs).
pub(crate) struct ProfileTls {
    ctx: SslContext,
    verifier: Arc<dyn ClientCertVerifier>,
    /// The suites rustls negotiates under `[tls]` (IANA numbers).
    rustls_suites: Vec<u16>,
}

impl std::fmt::Debug for ProfileTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileTls").finish_non_exhaustive()
    }
}

fn ossl(
    what: &'static str,
    path: &std::path::Path,
) -> impl Fn(openssl::error::ErrorStack) -> TlsError {
    let path = path.display().to_string();
    move |e| TlsError::File {
        what,
        path: path.clone(),
        reason: format!("OpenSSL (tls.profile_suites): {e}"),
    }
}

fn other(e: impl std::fmt::Display) -> TlsError {
    TlsError::Rustls(format!("OpenSSL (tls.profile_suites): {e}"))
}

impl ProfileTls {
    /// The OpenSSL configuration for `[tls]`, or `None` when `tls.profile_suites` is off.
    pub(crate) fn build(tls: &TlsConfig) -> Result<Option<Arc<ProfileTls>>, TlsError> {
        if !tls.profile_suites {
            return Ok(None);
        }
        if !tls.versions.contains(&TlsVersion::Tls12) {
            return Err(other(
                "the profile suites are TLS 1.2 suites: list \"1.2\" in tls.versions",
            ));
        }
        let mut b = SslContextBuilder::new(SslMethod::tls_server()).map_err(other)?;
        b.set_min_proto_version(Some(SslVersion::TLS1_2))
            .map_err(other)?;
        b.set_max_proto_version(Some(SslVersion::TLS1_2))
            .map_err(other)?;
        let list: Vec<&str> = PROFILE_SUITES.iter().map(|s| s.openssl).collect();
        b.set_cipher_list(&list.join(":")).map_err(other)?;
        let dh = Dh::params_from_pem(FFDHE2048.as_bytes()).map_err(other)?;
        b.set_tmp_dh(&dh).map_err(other)?;
        b.set_options(SslOptions::NO_TICKET | SslOptions::NO_RENEGOTIATION);
        b.set_session_cache_mode(SslSessionCacheMode::OFF);
        for (cert, key, what) in [
            (&tls.ecdsa_cert, &tls.ecdsa_key, "tls.ecdsa_cert"),
            (&tls.rsa_cert, &tls.rsa_key, "tls.rsa_cert"),
        ] {
            if let (Some(c), Some(k)) = (cert, key) {
                b.set_certificate_chain_file(c).map_err(ossl(what, c))?;
                b.set_private_key_file(k, SslFiletype::PEM)
                    .map_err(ossl(what, k))?;
                b.check_private_key().map_err(ossl(what, k))?;
            }
        }
        let pem = std::fs::read(&tls.client_ca).map_err(|e| TlsError::File {
            what: "tls.client_ca",
            path: tls.client_ca.display().to_string(),
            reason: e.to_string(),
        })?;
        let cas = X509::stack_from_pem(&pem).map_err(ossl("tls.client_ca", &tls.client_ca))?;
        for ca in cas {
            b.cert_store_mut()
                .add_cert(ca)
                .map_err(ossl("tls.client_ca", &tls.client_ca))?;
        }
        b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        Ok(Some(Arc::new(ProfileTls {
            ctx: b.build(),
            verifier: client_verifier(tls)?,
            rustls_suites: rustls_suite_ids(tls),
        })))
    }

    /// Whether this ClientHello goes to OpenSSL ([`wants_openssl`]).
    pub(crate) fn wants(&self, hello: &HelloSummary) -> bool {
        wants_openssl(hello, &self.rustls_suites)
    }

    /// The OpenSSL handshake on `stream`; `Err` is the reason, for the log line.
    pub(crate) async fn accept<S>(&self, stream: S) -> Result<SslStream<S>, String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut ssl = Ssl::new(&self.ctx).map_err(|e| e.to_string())?;
        let verifier = self.verifier.clone();
        let refused: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let why = refused.clone();
        ssl.set_verify_callback(
            SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
            move |preverified, ctx| {
                if !preverified || ctx.error_depth() != 0 {
                    return preverified;
                }
                let Some(ee) = ctx.current_cert().and_then(|c| c.to_der().ok()) else {
                    return false;
                };
                let intermediates: Vec<CertificateDer<'static>> = ctx
                    .chain()
                    .map(|chain| {
                        chain
                            .iter()
                            .skip(1)
                            .filter_map(|c| c.to_der().ok())
                            .map(CertificateDer::from)
                            .collect()
                    })
                    .unwrap_or_default();
                let ee = CertificateDer::from(ee);
                match verifier.verify_client_cert(&ee, &intermediates, UnixTime::now()) {
                    Ok(_) => true,
                    Err(e) => {
                        if let Ok(mut w) = why.lock() {
                            *w = Some(e.to_string());
                        }
                        ctx.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
                        false
                    }
                }
            },
        );
        let mut tls = SslStream::new(ssl, stream).map_err(|e| e.to_string())?;
        match Pin::new(&mut tls).accept().await {
            Ok(()) => Ok(tls),
            Err(e) => {
                let policy = refused.lock().ok().and_then(|mut r| r.take());
                let verify = tls.ssl().verify_result();
                Err(match policy {
                    Some(p) => format!("client certificate refused: {p}"),
                    None if verify != X509VerifyResult::OK => {
                        format!("client certificate refused: {}", verify.error_string())
                    }
                    None => describe(&e),
                })
            }
        }
    }
}

/// A one-line reason for a failed OpenSSL handshake.
fn describe(e: &openssl::ssl::Error) -> String {
    match e.io_error() {
        Some(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            "connection closed during the handshake".to_owned()
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(ids: &[u16]) -> HelloSummary {
        HelloSummary {
            suite_ids: ids.to_vec(),
            ..HelloSummary::default()
        }
    }

    #[test]
    fn only_hellos_without_a_rustls_suite_go_to_openssl() {
        let tls12_and_13 = [0x1301, 0x1302, 0xc02b, 0xc02f];
        // An old array: RSA key exchange, CBC.
        assert!(wants_openssl(
            &hello(&[0x003c, 0x003d, 0x002f]),
            &tls12_and_13
        ));
        // A modern client that also offers CBC suites stays on rustls.
        assert!(!wants_openssl(&hello(&[0x003c, 0xc02f]), &tls12_and_13));
        // Nothing of the profiles (TLS_RSA_WITH_AES_128_CBC_SHA only): rustls refuses it as
        // before, with the offered suites in the log line.
        assert!(!wants_openssl(&hello(&[0x002f]), &tls12_and_13));
        assert!(!wants_openssl(&hello(&[]), &tls12_and_13));
    }

    #[test]
    fn the_profile_list_is_what_openssl_knows() {
        let mut b = SslContextBuilder::new(SslMethod::tls_server()).unwrap();
        for s in PROFILE_SUITES {
            // The IANA name and the OpenSSL name are one suite, and OpenSSL has it.
            assert_eq!(openssl::ssl::cipher_name(s.iana), s.openssl);
            b.set_cipher_list(s.openssl).unwrap();
        }
        assert!(Dh::params_from_pem(FFDHE2048.as_bytes()).is_ok());
    }
}
