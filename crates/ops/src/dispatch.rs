//! The one dispatch: an Operation number to its handler, an exhaustive match over [`Op`].

use kmipd_proto::enums::operation as op;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::operations;

/// The operation table: one row per implemented operation, in the order Query Operations lists
/// them: `Variant = OPERATION_CODE => module, class;` where `module` is its file under
/// `operations/` and `class` is `light` or `heavy` (see [`Op::is_light`]). Everything else in
/// this file is generated from it.
macro_rules! operations {
    ($($variant:ident = $code:ident => $module:ident, $class:ident;)*) => {
        /// The operations this server implements.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Op {
            $($variant,)*
        }

        impl Op {
            /// Every implemented operation (Query Operations lists them in this order).
            pub(crate) const ALL: &[Op] = &[$(Op::$variant,)*];

            /// Whether the operation's work is small and bounded whatever its object:
            /// in-memory reads and attribute edits, symmetric and public-key cryptography,
            /// symmetric key generation; no asymmetric key generation, no private-key RSA, no
            /// scan of the store. A server may run such requests on its async threads instead
            /// of handing them to a thread pool ([`crate::Engine::is_light`]); their store
            /// commit, when they make changes, does not wait on their thread
            /// ([`crate::Engine::complete_then`]).
            pub(crate) fn is_light(self) -> bool {
                match self {
                    $(Op::$variant => operations!(@light $class),)*
                }
            }

            /// The operation for a wire number, when implemented.
            pub(crate) fn from_code(code: u32) -> Option<Op> {
                match code {
                    $(op::$code => Some(Op::$variant),)*
                    _ => None,
                }
            }

            /// The wire number.
            pub(crate) fn code(self) -> u32 {
                match self {
                    $(Op::$variant => op::$code,)*
                }
            }

            /// Runs the operation's handler on its request payload.
            fn handle(self, ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
                match self {
                    $(Op::$variant => operations::$module::handle(ctx, payload),)*
                }
            }
        }
    };
    (@light light) => { true };
    (@light heavy) => { false };
}

operations! {
    DiscoverVersions = DISCOVER_VERSIONS  => discover_versions,  light;
    Query            = QUERY              => query,              light;
    // Create: symmetric keys and secret data: random bytes.
    Create           = CREATE             => create,             light;
    // CreateKeyPair: asymmetric key generation.
    CreateKeyPair    = CREATE_KEY_PAIR    => create_key_pair,    heavy;
    // Register: parses keys of any format (OpenSSL's decoders).
    Register         = REGISTER           => register,           heavy;
    Get              = GET                => get,                light;
    GetAttributes    = GET_ATTRIBUTES     => get_attributes,     light;
    GetAttributeList = GET_ATTRIBUTE_LIST => get_attribute_list, light;
    AddAttribute     = ADD_ATTRIBUTE      => add_attribute,      light;
    ModifyAttribute  = MODIFY_ATTRIBUTE   => modify_attribute,   light;
    DeleteAttribute  = DELETE_ATTRIBUTE   => delete_attribute,   light;
    SetAttribute     = SET_ATTRIBUTE      => set_attribute,      light;
    // Locate: scans the store.
    Locate           = LOCATE             => locate,             heavy;
    Activate         = ACTIVATE           => activate,           light;
    Revoke           = REVOKE             => revoke,             light;
    Destroy          = DESTROY            => destroy,            light;
    Archive          = ARCHIVE            => archive,            light;
    Recover          = RECOVER            => recover,            light;
    // ReKey: may generate or parse keys.
    ReKey            = RE_KEY             => re_key,             heavy;
    // ReKeyKeyPair: asymmetric key generation.
    ReKeyKeyPair     = RE_KEY_KEY_PAIR    => re_key_key_pair,    heavy;
    Check            = CHECK              => check,              light;
    // Certify, ReCertify: RSA/EC signatures with the issuing CA's private key.
    Certify          = CERTIFY            => certify,            heavy;
    ReCertify        = RE_CERTIFY         => re_certify,         heavy;
    GetUsageAllocation = GET_USAGE_ALLOCATION => get_usage_allocation, light;
    Interop          = INTEROP            => interop,            light;
    Log              = LOG                => log,                light;
    // RngRetrieve: large random outputs.
    RngRetrieve      = RNG_RETRIEVE       => rng_retrieve,       heavy;
    RngSeed          = RNG_SEED           => rng_seed,           light;
    Encrypt          = ENCRYPT            => encrypt,            light;
    // Decrypt: RSA private-key operations.
    Decrypt          = DECRYPT            => decrypt,            heavy;
    // Sign: RSA private-key operations.
    Sign             = SIGN               => sign,               heavy;
    SignatureVerify  = SIGNATURE_VERIFY   => signature_verify,   light;
    Mac              = MAC                => mac,                light;
    MacVerify        = MAC_VERIFY         => mac_verify,         light;
    Hash             = HASH               => hash,               light;
    // DeriveKey: PBKDF2 iteration counts.
    DeriveKey        = DERIVE_KEY         => derive_key,         heavy;
    ObtainLease      = OBTAIN_LEASE       => obtain_lease,       light;
    // CreateSplitKey, JoinSplitKey: symmetric secrets, bytewise field arithmetic.
    CreateSplitKey   = CREATE_SPLIT_KEY   => create_split_key,   light;
    JoinSplitKey     = JOIN_SPLIT_KEY     => join_split_key,     light;
    // Login, Logout, DelegatedLogin: tickets in the engine's memory (`tickets.rs`).
    Login            = LOGIN              => login,              light;
    Logout           = LOGOUT             => logout,             light;
    DelegatedLogin   = DELEGATED_LOGIN    => delegated_login,    light;
    // Export: converts and wraps keys as Get does.
    Export           = EXPORT             => export,             heavy;
    // Import: parses keys of any format, as Register.
    Import           = IMPORT             => import,             heavy;
    // PKCS11: session-less Cryptoki functions, contexts in the engine's memory.
    Pkcs11           = PKCS_11            => pkcs11,             light;
    // SetConstraints: a store setting written at once (PostgreSQL: a round trip).
    SetConstraints   = SET_CONSTRAINTS    => set_constraints,    heavy;
    GetConstraints   = GET_CONSTRAINTS    => get_constraints,    light;
}

/// Runs one batch item's operation; `Ok(None)` is a success without payload.
pub(crate) fn dispatch(
    ctx: &mut Ctx<'_>,
    code: u32,
    payload: Option<&Ttlv>,
) -> Result<Option<Ttlv>> {
    let Some(operation) = Op::from_code(code) else {
        return Err(Error::OperationNotSupported);
    };
    let empty = Ttlv::new(
        kmipd_proto::tag::REQUEST_PAYLOAD,
        kmipd_ttlv::Value::Structure(Vec::new()),
    );
    let payload = payload.unwrap_or(&empty);
    operation.handle(ctx, payload)
}

#[cfg(test)]
mod tests {
    use super::Op;

    #[test]
    fn every_operation_has_its_own_code_and_reads_back() {
        for (i, o) in Op::ALL.iter().enumerate() {
            assert_eq!(Op::from_code(o.code()), Some(*o));
            assert!(Op::ALL.iter().skip(i + 1).all(|p| p.code() != o.code()));
        }
        assert_eq!(Op::ALL.len(), 47);
        assert_eq!(Op::from_code(0), None);
    }
}
