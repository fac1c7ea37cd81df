//! The admin web console (`[console]`): HTML pages for people, on a listener of its own, served
//! by axum on the connections the `accept` module hands over, so the TLS configuration, the
//! client certificate check and the identity (`[identity] source`) are exactly those of the
//! KMIP listener.
//!
//! **Who.** Each request's identity is the verified client certificate's; its role is looked up
//! at each request (`[roles]`, reloadable). Administrators, operators and auditors are served;
//! any other certificate gets 403 on every page (counted in `kmipd_permission_denied_total`
//! for its identity, as a KMIP Permission Denied), and so does a certificate revoked by `kmipd
//! admin client revoke` while its connection is open. Auditors read everything a KMIP auditor may
//! read and are shown no action (a POST from one is refused with 403).
//!
//! **Pages** (`pages.rs`, maud templates, one stylesheet compiled into the binary, no
//! JavaScript): `/` health (version, uptime, store, HSM, audit and forwarding, certificate
//! expiry, from the same gauges as `/metrics`); `/keys` the inventory (search, type and state
//! filters, pages of 25) read through [`kmipd_ops::Engine::inventory`], which hands over the
//! objects the identity may read **without their key material**; `/keys/show?uid=` one
//! object's attributes, links and its history from the audit log; `/clients` identities seen
//! in the audit log, open connections, enrolled certificates; `/audit` the audit trail with
//! `kmipd audit search`'s filters over the log and its rotated files, and the chain's status
//! (`crate::audit::search`).
//!
//! **Actions** (activate, revoke, destroy): a button leads to a confirmation page whose form
//! carries a CSRF token, the HMAC-SHA256 under a key drawn at each start of (identity, action,
//! object) ([`CsrfKey`]); the POST must carry that token, `confirm=yes` and an `Origin` equal
//! to the request's own `https://<Host>`, or it is refused (403) before anything runs. The
//! action is then sent as a KMIP 2.1 request through the same path as a KMIP client's
//! (`execute`: the engine's access control, policy and dual control, metrics, and the audit
//! record under the console user's identity, durable before the answer), and the page shows
//! the engine's result.
//!
//! Every response carries `Content-Security-Policy: default-src 'self'; frame-ancestors
//! 'none'; form-action 'self'`, `X-Frame-Options: DENY`, `Referrer-Policy: same-origin` (with `no-referrer` a browser sends `Origin: null` on a form POST) and
//! `Cache-Control: no-store`.

mod pages;
#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::get;
use hyper::body::Incoming;
use kmipd_ops::Principal;
use kmipd_ops::access::{CertNames, Role};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use tower::ServiceExt;

use super::Shared;
use super::accept::Tls;

/// Who is asking: the verified client certificate's names and the peer's address (put on each
/// request by [`serve`]).
#[derive(Debug, Clone)]
pub(super) struct Caller {
    pub(super) names: CertNames,
    pub(super) peer: SocketAddr,
    /// The certificate's serial (hex): a certificate revoked by `kmipd admin client revoke`
    /// while its connection is open is refused from its next request on.
    pub(super) serial: Option<String>,
}

/// The key of the console's CSRF tokens, drawn at each start (a restart invalidates open
/// forms, which is harmless).
pub(crate) struct CsrfKey(PKey<Private>);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(..)")
    }
}

impl CsrfKey {
    /// A fresh random key.
    pub(crate) fn random() -> Result<CsrfKey, openssl::error::ErrorStack> {
        let mut secret = zeroize::Zeroizing::new([0u8; 32]);
        openssl::rand::rand_bytes(secret.as_mut())?;
        Ok(CsrfKey(PKey::hmac(secret.as_ref())?))
    }

    /// The token of a form: HMAC-SHA256 of (identity, action, object), hex.
    pub(super) fn token(&self, identity: &str, action: &str, uid: &str) -> String {
        let mac = Signer::new(MessageDigest::sha256(), &self.0).and_then(|mut s| {
            for part in [identity, action, uid] {
                s.update(&u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes())?;
                s.update(part.as_bytes())?;
            }
            s.sign_to_vec()
        });
        mac.map(hex::encode).unwrap_or_default()
    }

    /// True when `given` is the token of (identity, action, object) (constant time).
    pub(super) fn check(&self, given: &str, identity: &str, action: &str, uid: &str) -> bool {
        let want = self.token(identity, action, uid);
        !want.is_empty()
            && given.len() == want.len()
            && openssl::memcmp::eq(given.as_bytes(), want.as_bytes())
    }
}

/// The roles the console serves; `None` for any other (403).
pub(super) fn console_role(principal: &Principal) -> Option<Role> {
    match principal.role() {
        r @ (Role::Administrator | Role::Operator | Role::Auditor) => Some(r),
        Role::Client => None,
    }
}

/// The console's routes over one server's shared state.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(pages::health))
        .route("/keys", get(pages::inventory))
        .route("/keys/show", get(pages::object))
        .route("/keys/confirm", get(pages::confirm))
        .route("/keys/action", axum::routing::post(pages::action))
        .route("/clients", get(pages::clients))
        .route("/audit", get(pages::audit))
        .route("/console.css", get(pages::stylesheet))
        .fallback(pages::not_found)
        .layer(axum::middleware::map_response(secure))
        .with_state(shared)
}

/// Adds the security headers every console response carries.
async fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Serves the console on one established TLS connection of the client certificate's `names`
/// until it closes (`https::serve_http1`: the deadlines and shutdown of KMIP over HTTPS).
pub(super) async fn serve(
    shared: &Arc<Shared>,
    stream: Box<Tls>,
    names: CertNames,
    serial: Option<String>,
    peer: SocketAddr,
) {
    let app = router(shared.clone());
    let caller = Caller {
        names,
        peer,
        serial,
    };
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(caller.clone());
        let app = app.clone();
        async move {
            let r = app.oneshot(req.map(axum::body::Body::new)).await;
            Ok::<_, Infallible>(r.unwrap_or_else(|never| match never {}))
        }
    });
    super::https::serve_http1(shared, stream, service, super::https::Listener::Console).await;
}
