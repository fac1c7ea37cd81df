//! PKCS#11 (KMIP 2.0/2.1 §6.1.37): a PKCS#11 function performed by the server, its parameters
//! and output encoded as the KMIP PKCS#11 Profile says (a CK_BYTE is one byte, a CK_ULONG
//! eight bytes big-endian, a blank-padded string its bytes, a structure its fields in line).
//!
//! **What kmipd performs.** The session-less functions of the general-purpose group:
//! - `C_Initialize`: starts a Cryptoki context for the caller and answers its Correlation
//!   Value, which the client sends with its later PKCS#11 requests. Its Input Parameters (the
//!   encoded `pInitArgs`: callbacks and locking flags of a library in the client's process)
//!   mean nothing across the wire: they are accepted up to [`MAX_INPUT_LEN`] bytes and not
//!   interpreted. With the Correlation Value of a live context: `CKR_CRYPTOKI_ALREADY_INITIALIZED`.
//! - `C_GetInfo`: kmipd's own CK_INFO ([`ck_info`]): Cryptoki version 2.40, manufacturer
//!   `kmipd`, no flags, its description and version.
//! - `C_Finalize`: ends the context of the Correlation Value.
//!
//! `C_GetInfo` and `C_Finalize` without the Correlation Value of a live context of the same
//! identity (none, unknown, expired, finalized, another identity's) answer
//! `CKR_CRYPTOKI_NOT_INITIALIZED`, as a library does before `C_Initialize`. Every other function
//! of the interface (the 92 of CK_FUNCTION_LIST_3_0) answers `CKR_FUNCTION_NOT_SUPPORTED`: a
//! PKCS#11 return code with Result Status Success, since the KMIP operation itself succeeded
//! ("The PKCS#11 return code as specified in the CK_RV values", 2.1 Table 274). A function
//! number outside the interface, or a vendor-defined Integer, is the KMIP failure PKCS#11
//! Invalid Function; an Interface other than the default `PKCS 11` is PKCS#11 Invalid
//! Interface (2.1 §6.1.37.1).
//!
//! **Bounds.** Contexts live in the engine's memory, per certificate identity, as Login
//! tickets do: at most [`MAX_PER_IDENTITY`] live ones per identity (one more `C_Initialize` is
//! refused with Permission Denied until one is finalized or expires), each expiring
//! [`IDLE_SECONDS`] after its last use. A restart ends them all.

use std::collections::BTreeMap;
use std::sync::Mutex;

use kmipd_proto::build;
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

use crate::context::Ctx;
use crate::error::{Error, Result};

/// A context unused for this long (seconds) ends.
pub(crate) const IDLE_SECONDS: i64 = 3600;
/// The most live contexts one identity may hold.
pub(crate) const MAX_PER_IDENTITY: usize = 16;
/// The most bytes of Input Parameters accepted.
pub(crate) const MAX_INPUT_LEN: usize = 256;
/// Length of a Correlation Value, in bytes.
const CORRELATION_LEN: usize = 16;
/// The default interface of PKCS#11 v3.0 (`CK_INTERFACE.pInterfaceName`).
const DEFAULT_INTERFACE: &str = "PKCS 11";

/// The PKCS#11 Function values (the 1-based position in CK_FUNCTION_LIST_3_0, KMIP 2.1 §11.38).
mod function {
    pub(super) const C_INITIALIZE: u32 = 1;
    pub(super) const C_FINALIZE: u32 = 2;
    pub(super) const C_GET_INFO: u32 = 3;
    /// CK_FUNCTION_LIST_3_0 holds 92 functions (68 of 2.40, 24 added by 3.0).
    pub(super) const LAST: u32 = 92;
}

/// The CK_RV values kmipd answers (PKCS#11 v3.0 §5.1, pkcs11t.h).
mod ckr {
    pub(super) const OK: u32 = 0x0000_0000;
    pub(super) const FUNCTION_NOT_SUPPORTED: u32 = 0x0000_0054;
    pub(super) const CRYPTOKI_NOT_INITIALIZED: u32 = 0x0000_0190;
    pub(super) const CRYPTOKI_ALREADY_INITIALIZED: u32 = 0x0000_0191;
}

/// The live Cryptoki contexts of every identity: identity -> Correlation Value -> expiry.
#[derive(Default)]
pub(crate) struct Contexts(Mutex<BTreeMap<String, BTreeMap<Vec<u8>, i64>>>);

impl Contexts {
    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeMap<Vec<u8>, i64>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new context for `who`; Permission Denied when it holds [`MAX_PER_IDENTITY`].
    fn start(&self, who: &str, now: i64) -> Result<Vec<u8>> {
        let mut value = vec![0u8; CORRELATION_LEN];
        openssl::rand::rand_bytes(&mut value)
            .map_err(|_| Error::Internal("random bytes for a PKCS#11 correlation value"))?;
        let mut table = self.table();
        let mine = table.entry(who.to_owned()).or_default();
        mine.retain(|_, expires| *expires > now);
        if mine.len() >= MAX_PER_IDENTITY {
            return Err(Error::PermissionDenied(
                "too many live PKCS#11 contexts for this identity: finalize one first",
            ));
        }
        mine.insert(value.clone(), now.saturating_add(IDLE_SECONDS));
        Ok(value)
    }

    /// Whether `who` holds the live context `value`; a use extends its life.
    fn touch(&self, who: &str, value: &[u8], now: i64) -> bool {
        let mut table = self.table();
        match table.get_mut(who).and_then(|mine| mine.get_mut(value)) {
            Some(expires) if *expires > now => {
                *expires = now.saturating_add(IDLE_SECONDS);
                true
            }
            _ => false,
        }
    }

    /// Ends `who`'s context `value`; whether it was live.
    fn end(&self, who: &str, value: &[u8], now: i64) -> bool {
        let mut table = self.table();
        let Some(mine) = table.get_mut(who) else {
            return false;
        };
        let removed = mine.remove(value);
        mine.retain(|_, expires| *expires > now);
        if mine.is_empty() {
            table.remove(who);
        }
        removed.is_some_and(|expires| expires > now)
    }
}

/// Handles PKCS#11.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let interface = r.text(tag::PKCS_11_INTERFACE)?;
    if interface.is_some_and(|i| i != DEFAULT_INTERFACE) {
        return Err(Error::Pkcs11InvalidInterface);
    }
    let function_item = r.required(tag::PKCS_11_FUNCTION)?;
    let function = match function_item.value {
        Value::Enumeration(f) if (1..=function::LAST).contains(&f) => f,
        // Another Enumeration is no function of the interface; an Integer is a vendor-defined
        // function, and kmipd defines none.
        Value::Enumeration(_) | Value::Integer(_) => return Err(Error::Pkcs11InvalidFunction),
        _ => return Err(Error::InvalidField("PKCS#11 Function")),
    };
    let correlation = r.bytes(tag::CORRELATION_VALUE)?;
    let input = r.bytes(tag::PKCS_11_INPUT_PARAMETERS)?;
    if input.is_some_and(|i| i.len() > MAX_INPUT_LEN) {
        return Err(Error::Pkcs11Codec("input parameters too long"));
    }
    let who = ctx.principal.name();
    let now = ctx.now;
    let contexts = ctx.pkcs11;
    let live = |c: Option<&[u8]>| c.is_some_and(|c| contexts.touch(who, c, now));
    let (new_correlation, output, rv) = match function {
        function::C_INITIALIZE if live(correlation) => {
            (None, None, ckr::CRYPTOKI_ALREADY_INITIALIZED)
        }
        function::C_INITIALIZE => (Some(contexts.start(who, now)?), None, ckr::OK),
        function::C_GET_INFO if live(correlation) => (None, Some(ck_info()), ckr::OK),
        function::C_FINALIZE if correlation.is_some_and(|c| contexts.end(who, c, now)) => {
            (None, None, ckr::OK)
        }
        function::C_GET_INFO | function::C_FINALIZE => (None, None, ckr::CRYPTOKI_NOT_INITIALIZED),
        _ => (None, None, ckr::FUNCTION_NOT_SUPPORTED),
    };
    let mut items = Vec::with_capacity(5);
    if let Some(i) = interface {
        items.push(build::text(tag::PKCS_11_INTERFACE, i));
    }
    items.push(build::enumeration(tag::PKCS_11_FUNCTION, function));
    if let Some(c) = new_correlation {
        items.push(build::bytes(tag::CORRELATION_VALUE, c));
    }
    if let Some(o) = output {
        items.push(build::bytes(tag::PKCS_11_OUTPUT_PARAMETERS, o));
    }
    items.push(build::enumeration(tag::PKCS_11_RETURN_CODE, rv));
    Ok(Some(build::structure(tag::RESPONSE_PAYLOAD, items)))
}

/// Length of a CK_INFO in the profile's encoding: CK_VERSION (2), manufacturerID (32), flags
/// (a CK_ULONG: 8), libraryDescription (32), libraryVersion (2).
pub(crate) const CK_INFO_LEN: usize = 76;

/// kmipd's CK_INFO, encoded: Cryptoki 2.40, manufacturer `kmipd`, no flags, the description
/// and the crate's major.minor version.
pub(crate) fn ck_info() -> Vec<u8> {
    let mut out = Vec::with_capacity(CK_INFO_LEN);
    out.extend_from_slice(&[2, 40]);
    out.extend_from_slice(&blank_padded("kmipd"));
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend_from_slice(&blank_padded("kmipd KMIP key management server"));
    let part = |s: &str| s.parse::<u8>().unwrap_or(0);
    out.push(part(env!("CARGO_PKG_VERSION_MAJOR")));
    out.push(part(env!("CARGO_PKG_VERSION_MINOR")));
    out
}

/// A 32-byte PKCS#11 string: `s` (at most 32 bytes of it) padded with blanks.
fn blank_padded(s: &str) -> [u8; 32] {
    let mut out = [b' '; 32];
    for (o, b) in out.iter_mut().zip(s.bytes()) {
        *o = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use kmipd_proto::build;
    use kmipd_proto::enums::{operation as op, result_reason, result_status};
    use kmipd_proto::tag;
    use kmipd_ttlv::{Ttlv, Value};

    use super::{CK_INFO_LEN, ckr, function};
    use crate::engine::{Engine, Principal};
    use crate::operations::login::tests::{answer, request};

    fn call(
        engine: &Engine,
        who: &str,
        f: Value,
        correlation: Option<&[u8]>,
    ) -> (u32, Option<u32>, Option<Ttlv>) {
        let mut payload = vec![Ttlv::new(tag::PKCS_11_FUNCTION, f)];
        if let Some(c) = correlation {
            payload.push(build::bytes(tag::CORRELATION_VALUE, c.to_vec()));
        }
        answer(&engine.handle_message(&Principal::new(who), &request(None, op::PKCS_11, payload)))
    }

    fn field(payload: &Ttlv, t: kmipd_ttlv::Tag) -> Option<Value> {
        payload
            .children()?
            .iter()
            .find(|c| c.tag == t)
            .map(|c| c.value.clone())
    }

    fn rv(payload: &Ttlv) -> Option<Value> {
        field(payload, tag::PKCS_11_RETURN_CODE)
    }

    #[test]
    fn initialize_get_info_finalize_with_the_correlation_value_of_the_same_identity() {
        let engine = Engine::in_memory();
        let e = |f| Value::Enumeration(f);
        // Before C_Initialize: not initialized (a KMIP success with the PKCS#11 code).
        let (status, _, p) = call(&engine, "a", e(function::C_GET_INFO), None);
        assert_eq!(status, result_status::SUCCESS);
        assert_eq!(rv(&p.unwrap()), Some(e(ckr::CRYPTOKI_NOT_INITIALIZED)));

        let (status, _, p) = call(&engine, "a", e(function::C_INITIALIZE), None);
        assert_eq!(status, result_status::SUCCESS);
        let p = p.unwrap();
        assert_eq!(rv(&p), Some(e(ckr::OK)));
        let Some(Value::ByteString(c)) = field(&p, tag::CORRELATION_VALUE) else {
            panic!("no correlation value")
        };

        let (_, _, p) = call(&engine, "a", e(function::C_GET_INFO), Some(&c));
        let p = p.unwrap();
        assert_eq!(rv(&p), Some(e(ckr::OK)));
        let Some(Value::ByteString(info)) = field(&p, tag::PKCS_11_OUTPUT_PARAMETERS) else {
            panic!("no output")
        };
        assert_eq!(info.len(), CK_INFO_LEN);
        assert_eq!(&info[..2], &[2, 40]);
        assert_eq!(&info[2..34], b"kmipd                           ");
        assert_eq!(&info[34..42], &[0; 8]);

        // Another identity cannot use it; a second C_Initialize is "already initialized".
        let (_, _, p) = call(&engine, "b", e(function::C_GET_INFO), Some(&c));
        assert_eq!(rv(&p.unwrap()), Some(e(ckr::CRYPTOKI_NOT_INITIALIZED)));
        let (_, _, p) = call(&engine, "a", e(function::C_INITIALIZE), Some(&c));
        let p = p.unwrap();
        assert_eq!(rv(&p), Some(e(ckr::CRYPTOKI_ALREADY_INITIALIZED)));
        assert_eq!(field(&p, tag::CORRELATION_VALUE), None);

        let (_, _, p) = call(&engine, "b", e(function::C_FINALIZE), Some(&c));
        assert_eq!(rv(&p.unwrap()), Some(e(ckr::CRYPTOKI_NOT_INITIALIZED)));
        let (_, _, p) = call(&engine, "a", e(function::C_FINALIZE), Some(&c));
        assert_eq!(rv(&p.unwrap()), Some(e(ckr::OK)));
        let (_, _, p) = call(&engine, "a", e(function::C_GET_INFO), Some(&c));
        assert_eq!(rv(&p.unwrap()), Some(e(ckr::CRYPTOKI_NOT_INITIALIZED)));
    }

    #[test]
    fn other_functions_are_not_supported_and_non_functions_are_invalid() {
        let engine = Engine::in_memory();
        for f in [4, 23, function::LAST] {
            let (status, _, p) = call(&engine, "a", Value::Enumeration(f), None);
            assert_eq!(status, result_status::SUCCESS, "function {f}");
            assert_eq!(
                rv(&p.unwrap()),
                Some(Value::Enumeration(ckr::FUNCTION_NOT_SUPPORTED))
            );
        }
        for f in [
            Value::Enumeration(0),
            Value::Enumeration(93),
            Value::Integer(1),
        ] {
            let (status, reason, _) = call(&engine, "a", f, None);
            assert_eq!(status, result_status::OPERATION_FAILED);
            assert_eq!(reason, Some(result_reason::PKCS_11_INVALID_FUNCTION));
        }
        let bad_interface = request(
            None,
            op::PKCS_11,
            vec![
                build::text(tag::PKCS_11_INTERFACE, "Vendor X"),
                build::enumeration(tag::PKCS_11_FUNCTION, function::C_GET_INFO),
            ],
        );
        let (status, reason, _) =
            answer(&engine.handle_message(&Principal::new("a"), &bad_interface));
        assert_eq!(status, result_status::OPERATION_FAILED);
        assert_eq!(reason, Some(result_reason::PKCS_11_INVALID_INTERFACE));
        // 1.x has no PKCS#11 operation.
        let v1 = crate::engine::testing::request(1, 4, op::PKCS_11, vec![]);
        let (status, reason, _) = answer(&engine.handle_message(&Principal::new("a"), &v1));
        assert_eq!(status, result_status::OPERATION_FAILED);
        assert_eq!(reason, Some(result_reason::OPERATION_NOT_SUPPORTED));
    }

    #[test]
    fn contexts_are_bounded_per_identity_and_expire() {
        let contexts = super::Contexts::default();
        let first = contexts.start("a", 100).unwrap();
        for _ in 1..super::MAX_PER_IDENTITY {
            contexts.start("a", 100).unwrap();
        }
        assert!(contexts.start("a", 100).is_err());
        assert!(contexts.start("b", 100).is_ok());
        // A use extends a context's life; unused ones expire and free their places.
        assert!(contexts.touch("a", &first, 100 + super::IDLE_SECONDS - 1));
        let later = 100 + super::IDLE_SECONDS + 1;
        assert!(contexts.touch("a", &first, later));
        assert!(contexts.start("a", later).is_ok());
        assert!(!contexts.touch("a", &first, later + 2 * super::IDLE_SECONDS));
    }
}
