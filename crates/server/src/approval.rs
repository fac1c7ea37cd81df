//! Dual control of the key hierarchy: master-key and KEK rotation (`kmipd admin rotate-kek`,
//! `rotate-master-key`) and restore (`kmipd restore`), when `[policy] dual_control_commands`
//! lists them, need two different administrators.
//!
//! The admin socket cannot tell people apart (whoever can connect to it is `local-admin`), so
//! for these acts each administrator proves who they are with their own KMIP client
//! certificate: the command is **signed** (`kmipd admin --cert FILE --key FILE ...`, the
//! private key never leaves the administrator's command), the server checks the certificate
//! exactly as a TLS handshake would ([`crate::tls::client_verifier`]: `tls.client_ca`,
//! `tls.crls`, the EKU policy), takes the identity from it by `[identity] source`, and requires
//! the role `administrator` under the current `[roles]` ([`kmipd_ops::access`]). What is signed
//! is [`message`]: the act, the request id it names (if any) and the time, which must be within
//! [`MAX_SKEW`] of the server's clock (a signature is not reusable for another act, and not
//! for long).
//!
//! **Online (rotations).** The rules of object dual control ([`kmipd_ops::dual`]) with the same
//! window (`policy.dual_control_window`): the first signed command is refused with a request id
//! (`rotate-kek.XXXXXXXX`) and kept pending **in the server's memory** (a restart drops it);
//! another administrator approves it with `kmipd admin --cert ... --key ... approve ID`; the
//! requester's signed retry within the window performs the act and uses the approval up.
//! Self-approvals, approvals by a non-administrator, unsigned commands and expired requests or
//! approvals are refused. [`Pending`] holds these rules.
//!
//! **Offline (restore).** No server runs, so each administrator signs the backup itself:
//! `kmipd approve-restore --cert ... --key ... BACKUP > NAME.approval` signs the SHA-256 of the
//! backup file; `kmipd restore --approval A --approval B ...` needs two approvals of that very
//! file by two different administrators, each made within the window before the restore.
//!
//! Every step (request, approval, refusal, expiry, the act) is an admin command or a restore,
//! so it is in the audit log with its message and the identities.

use std::time::Duration;

use kmipd_ops::Principal;
use kmipd_ops::access::{CertNames, Role};
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey};
use openssl::sign::{Signer, Verifier};
use openssl::x509::X509;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::{Deserialize, Serialize};

use crate::config::{IdentitySource, TlsConfig};

/// How far a signature's time may be from the server's clock (seconds).
pub const MAX_SKEW: i64 = 300;

/// The commands `policy.dual_control_commands` may name.
pub const COMMANDS: [&str; 3] = ["rotate-kek", "rotate-master-key", "restore"];

/// A signed act: the signer's certificate chain, the time and the signature of [`message`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed {
    /// The signer's certificate, then any intermediates (PEM).
    pub cert: String,
    /// When it was signed (POSIX seconds).
    pub time: i64,
    /// The signature of [`message`] (hex).
    pub signature: String,
}

/// What is signed for `act` (`rotate-kek`, `approve`, `restore`) naming `subject` (the request
/// id for `approve`, the backup's SHA-256 for `restore`, empty otherwise) at `time`.
pub fn message(act: &str, subject: &str, time: i64) -> Vec<u8> {
    format!("kmipd dual control\n{act}\n{subject}\n{time}").into_bytes()
}

/// Now, in POSIX seconds.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Signs `act`/`subject` now with the PEM `cert` (chain) and private `key` (PEM).
pub fn sign(cert: &str, key: &[u8], act: &str, subject: &str) -> Result<Signed, String> {
    let key = PKey::private_key_from_pem(key).map_err(|e| format!("private key: {e}"))?;
    let time = now();
    let msg = message(act, subject, time);
    let signature = match key.id() {
        Id::ED25519 | Id::ED448 => {
            Signer::new_without_digest(&key).and_then(|mut s| s.sign_oneshot_to_vec(&msg))
        }
        _ => Signer::new(MessageDigest::sha256(), &key).and_then(|mut s| {
            s.update(&msg)?;
            s.sign_to_vec()
        }),
    }
    .map_err(|e| format!("signing: {e}"))?;
    Ok(Signed {
        cert: cert.to_owned(),
        time,
        signature: hex::encode(signature),
    })
}

/// Who signed: checks the certificate as a TLS client certificate of `tls`, the signature of
/// `act`/`subject`, and the time (within [`MAX_SKEW`] of `now`, or, with `max_age`, at most
/// that old); the identity (by `source`) and the certificate's names.
pub fn verify(
    signed: &Signed,
    act: &str,
    subject: &str,
    now: i64,
    max_age: Option<i64>,
    tls: &TlsConfig,
    source: IdentitySource,
) -> Result<CertNames, String> {
    let too_old = max_age.map_or(MAX_SKEW, |a| a.max(MAX_SKEW));
    if signed.time > now.saturating_add(MAX_SKEW) || signed.time < now.saturating_sub(too_old) {
        return Err(format!(
            "the signature's time {} is too far from now ({now}): sign again",
            signed.time
        ));
    }
    let chain = CertificateDer::pem_slice_iter(signed.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("signer certificate: {e}"))?;
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or("signer certificate: no certificate in the PEM")?;
    let verifier = crate::tls::client_verifier(tls).map_err(|e| e.to_string())?;
    let at = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or(0)));
    verifier
        .verify_client_cert(leaf, intermediates, at)
        .map_err(|e| format!("signer certificate refused: {e}"))?;
    let x509 = X509::from_der(leaf).map_err(|e| format!("signer certificate: {e}"))?;
    let key = x509
        .public_key()
        .map_err(|e| format!("signer certificate: {e}"))?;
    let signature =
        hex::decode(&signed.signature).map_err(|_| "the signature is not hex".to_owned())?;
    let msg = message(act, subject, signed.time);
    let good = match key.id() {
        Id::ED25519 | Id::ED448 => {
            Verifier::new_without_digest(&key).and_then(|mut v| v.verify_oneshot(&signature, &msg))
        }
        _ => Verifier::new(MessageDigest::sha256(), &key).and_then(|mut v| {
            v.update(&msg)?;
            v.verify(&signature)
        }),
    }
    .unwrap_or(false);
    if !good {
        return Err(
            "the signature does not verify with the certificate's key (signed for another act?)"
                .to_owned(),
        );
    }
    let identity = crate::tls::identity_from_cert(leaf, source).map_err(|e| e.to_string())?;
    Ok(crate::settings::cert_names(leaf, &identity))
}

/// The principal `verify` found must be an administrator.
pub fn administrator(p: &Principal) -> Result<(), String> {
    if p.role() == Role::Administrator {
        Ok(())
    } else {
        Err(format!(
            "{} is not an administrator ([roles] administrator, identity.administrators)",
            p.name()
        ))
    }
}

/// The SHA-256 of a file (hex), what a restore approval signs.
pub fn file_digest(path: &std::path::Path) -> Result<String, String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(hex::encode(h.finalize()))
}

/// Checks the approvals (`kmipd approve-restore` outputs) of a restore of `backup` under
/// `config`: when `policy.dual_control_commands` lists `restore`, two of them by two different
/// administrators, each of this file, signed within the window before now. `Ok(None)`: dual
/// control does not apply; `Ok(Some(names))`: the approving administrators.
pub fn check_restore(
    config: &crate::config::Config,
    backup: &std::path::Path,
    approvals: &[std::path::PathBuf],
) -> Result<Option<Vec<String>>, String> {
    if !config
        .dual_control_commands()?
        .iter()
        .any(|c| c == "restore")
    {
        return Ok(None);
    }
    let window = config
        .policy()?
        .dual_control_window
        .unwrap_or(kmipd_ops::dual::DEFAULT_WINDOW);
    let digest = file_digest(backup)?;
    let roles = config.role_assignments();
    let mut names: Vec<String> = Vec::new();
    for path in approvals {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let signed: Signed = serde_json::from_str(text.trim())
            .map_err(|e| format!("{}: not an approval: {e}", path.display()))?;
        let cert_names = verify(
            &signed,
            "restore",
            &digest,
            now(),
            Some(window),
            &config.tls,
            config.identity.source,
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
        let who = roles.principal(&cert_names);
        administrator(&who).map_err(|e| format!("{}: {e}", path.display()))?;
        if !names.iter().any(|n| n == who.name()) {
            names.push(who.name().to_owned());
        }
    }
    if names.len() < 2 {
        return Err(format!(
            "dual control: a restore needs the approvals of two different administrators \
             (kmipd approve-restore --cert FILE --key FILE BACKUP > FILE, then --approval FILE \
             twice); got {}",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ));
    }
    Ok(Some(names))
}

/// One pending act (its name), with object dual control's rules of expiry and approval.
type Request = kmipd_ops::dual::Request<String>;

/// The pending acts of one server (see the module docs).
#[derive(Debug, Default)]
pub struct Pending {
    requests: std::sync::Mutex<Vec<Request>>,
}

/// What [`Pending::request`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Approved: perform the act (the approval is used up). The approver.
    Go(String),
    /// Refused, with the message (a new request id, or the one still awaiting approval).
    Wait(String),
}

fn short_id() -> String {
    let mut b = [0u8; 4];
    let _ = openssl::rand::rand_bytes(&mut b);
    hex::encode(b)
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Request>> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `requester` asks for `act` at `now`.
    pub fn request(&self, act: &str, requester: &str, now: i64, window: i64) -> Decision {
        let mut all = self.lock();
        let note = kmipd_ops::dual::drop_expired(&mut all, now, window);
        if let Some(i) = all
            .iter()
            .position(|r| r.act == act && r.requester == requester && r.approval.is_some())
        {
            let r = all.remove(i);
            return Decision::Go(r.approval.map(|(by, _)| by).unwrap_or_default());
        }
        if let Some(r) = all
            .iter()
            .find(|r| r.act == act && r.requester == requester)
        {
            return Decision::Wait(format!(
                "dual control: {act} by {requester} awaits approval of request {} by a second \
                 administrator (kmipd admin --cert FILE --key FILE approve {}) until {}{note}",
                r.id,
                r.id,
                r.expires(window)
            ));
        }
        let id = format!("{act}.{}", short_id());
        all.push(Request {
            id: id.clone(),
            act: act.to_owned(),
            requester: requester.to_owned(),
            requested_at: now,
            approval: None,
        });
        Decision::Wait(format!(
            "dual control: {act} needs the approval of a second administrator: request {id} by \
             {requester} (kmipd admin --cert FILE --key FILE approve {id}, within {window}s); \
             then retry{note}"
        ))
    }

    /// True when `id` names a pending act (not an object's request).
    pub fn is_act(id: &str) -> bool {
        COMMANDS.iter().any(|c| {
            id.strip_prefix(c)
                .and_then(|r| r.strip_prefix('.'))
                .is_some_and(|r| !r.contains('.'))
        })
    }

    /// `approver` (an administrator) approves `id` at `now`.
    pub fn approve(
        &self,
        id: &str,
        approver: &str,
        now: i64,
        window: i64,
    ) -> Result<String, String> {
        let mut all = self.lock();
        let Some(i) = all.iter().position(|r| r.id == id) else {
            return Err(format!("no pending dual control request {id}"));
        };
        if all.get(i).is_some_and(|r| now > r.expires(window)) {
            all.remove(i);
            return Err(format!(
                "dual control request {id} expired; refused and dropped"
            ));
        }
        let Some(r) = all.get_mut(i) else {
            return Err(format!("no pending dual control request {id}"));
        };
        r.approve(approver, now)?;
        Ok(format!(
            "approved dual control request {id} ({} by {}); its retry within {window}s \
             performs it",
            r.act, r.requester
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request id a refusal names.
    fn request_id(message: &str) -> String {
        message
            .split_whitespace()
            .skip_while(|w| *w != "request")
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn request_approve_retry_uses_the_approval_up() {
        let p = Pending::default();
        let Decision::Wait(m) = p.request("rotate-kek", "alice", 100, 60) else {
            panic!("goes without approval");
        };
        let id = request_id(&m);
        assert!(Pending::is_act(&id), "{id}");
        assert!(!Pending::is_act("6f1c.abcd0123"));
        assert!(
            matches!(p.request("rotate-kek", "alice", 110, 60), Decision::Wait(m) if m.contains("awaits approval"))
        );
        let e = p.approve(&id, "alice", 120, 60).unwrap_err();
        assert!(e.contains("self-approval"), "{e}");
        p.approve(&id, "bob", 120, 60).unwrap();
        let e = p.approve(&id, "carol", 121, 60).unwrap_err();
        assert!(e.contains("already approved by bob"), "{e}");
        // Another requester's retry does not use alice's approval.
        assert!(matches!(
            p.request("rotate-kek", "carol", 130, 60),
            Decision::Wait(_)
        ));
        // Another act neither.
        assert!(matches!(
            p.request("rotate-master-key", "alice", 130, 60),
            Decision::Wait(_)
        ));
        assert_eq!(
            p.request("rotate-kek", "alice", 130, 60),
            Decision::Go("bob".to_owned())
        );
        assert!(
            matches!(p.request("rotate-kek", "alice", 131, 60), Decision::Wait(m) if m.contains("needs the approval"))
        );
    }

    #[test]
    fn expired_requests_and_approvals_are_refused_and_dropped() {
        let p = Pending::default();
        let Decision::Wait(m) = p.request("rotate-kek", "alice", 100, 60) else {
            panic!("goes without approval");
        };
        let id = request_id(&m);
        let e = p.approve(&id, "bob", 161, 60).unwrap_err();
        assert!(e.contains("expired"), "{e}");
        assert!(
            p.approve(&id, "bob", 162, 60)
                .unwrap_err()
                .contains("no pending")
        );
        // An approval not used within the window expires too.
        let Decision::Wait(m) = p.request("rotate-kek", "alice", 200, 60) else {
            panic!("goes without approval");
        };
        let id = request_id(&m);
        p.approve(&id, "bob", 250, 60).unwrap();
        let Decision::Wait(m) = p.request("rotate-kek", "alice", 311, 60) else {
            panic!("an expired approval was used");
        };
        assert!(m.contains(&format!("expired and dropped: {id}")), "{m}");
    }
}
