//! The one dispatch: an Operation number to its handler, an exhaustive match over [`Op`].

use kmipd_proto::enums::operation as op;
use kmipd_ttlv::Ttlv;

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::operations;

/// The operations this server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    DiscoverVersions,
    Query,
    Create,
    CreateKeyPair,
    Register,
    Get,
    GetAttributes,
    GetAttributeList,
    AddAttribute,
    ModifyAttribute,
    DeleteAttribute,
    SetAttribute,
    Locate,
    Activate,
    Revoke,
    Destroy,
    ReKey,
    ReKeyKeyPair,
    Check,
    Interop,
    Log,
    RngRetrieve,
    Encrypt,
    Decrypt,
    Sign,
    SignatureVerify,
    Mac,
    MacVerify,
    Hash,
    DeriveKey,
    ObtainLease,
}

impl Op {
    /// Every implemented operation (Query Operations lists them in this order).
    pub(crate) const ALL: [Op; 31] = [
        Op::DiscoverVersions,
        Op::Query,
        Op::Create,
        Op::CreateKeyPair,
        Op::Register,
        Op::Get,
        Op::GetAttributes,
        Op::GetAttributeList,
        Op::AddAttribute,
        Op::ModifyAttribute,
        Op::DeleteAttribute,
        Op::SetAttribute,
        Op::Locate,
        Op::Activate,
        Op::Revoke,
        Op::Destroy,
        Op::ReKey,
        Op::ReKeyKeyPair,
        Op::Check,
        Op::Interop,
        Op::Log,
        Op::RngRetrieve,
        Op::Encrypt,
        Op::Decrypt,
        Op::Sign,
        Op::SignatureVerify,
        Op::Mac,
        Op::MacVerify,
        Op::Hash,
        Op::DeriveKey,
        Op::ObtainLease,
    ];

    /// Whether the operation's work is small and bounded whatever its object: in-memory reads
    /// and attribute edits, symmetric and public-key cryptography, symmetric key generation;
    /// no asymmetric key generation, no private-key RSA, no scan of the store. A server may run such requests on its async
    /// threads instead of handing them to a thread pool ([`crate::Engine::is_light`]); their
    /// store commit, when they make changes, does not wait on their thread
    /// ([`crate::Engine::complete_then`]).
    pub(crate) fn is_light(self) -> bool {
        match self {
            Op::DiscoverVersions
            | Op::Query
            | Op::Get
            | Op::GetAttributes
            | Op::GetAttributeList
            | Op::AddAttribute
            | Op::ModifyAttribute
            | Op::DeleteAttribute
            | Op::SetAttribute
            | Op::Activate
            | Op::Revoke
            | Op::Destroy
            | Op::Check
            | Op::Encrypt
            | Op::SignatureVerify
            | Op::Mac
            | Op::MacVerify
            | Op::Hash
            | Op::ObtainLease
            | Op::Interop
            | Op::Log
            // Symmetric keys and secret data: random bytes.
            | Op::Create => true,
            // Asymmetric key generation, store scans, PBKDF2 counts, RSA private-key
            // operations, parsing keys of any format (OpenSSL's decoders), large random
            // outputs.
            Op::CreateKeyPair
            | Op::Register
            | Op::Locate
            | Op::ReKey
            | Op::ReKeyKeyPair
            | Op::RngRetrieve
            | Op::Decrypt
            | Op::Sign
            | Op::DeriveKey => false,
        }
    }

    /// The operation for a wire number, when implemented.
    pub(crate) fn from_code(code: u32) -> Option<Op> {
        Some(match code {
            op::DISCOVER_VERSIONS => Op::DiscoverVersions,
            op::QUERY => Op::Query,
            op::CREATE => Op::Create,
            op::CREATE_KEY_PAIR => Op::CreateKeyPair,
            op::REGISTER => Op::Register,
            op::GET => Op::Get,
            op::GET_ATTRIBUTES => Op::GetAttributes,
            op::GET_ATTRIBUTE_LIST => Op::GetAttributeList,
            op::ADD_ATTRIBUTE => Op::AddAttribute,
            op::MODIFY_ATTRIBUTE => Op::ModifyAttribute,
            op::DELETE_ATTRIBUTE => Op::DeleteAttribute,
            op::SET_ATTRIBUTE => Op::SetAttribute,
            op::LOCATE => Op::Locate,
            op::ACTIVATE => Op::Activate,
            op::REVOKE => Op::Revoke,
            op::DESTROY => Op::Destroy,
            op::RE_KEY => Op::ReKey,
            op::RE_KEY_KEY_PAIR => Op::ReKeyKeyPair,
            op::CHECK => Op::Check,
            op::INTEROP => Op::Interop,
            op::LOG => Op::Log,
            op::RNG_RETRIEVE => Op::RngRetrieve,
            op::ENCRYPT => Op::Encrypt,
            op::DECRYPT => Op::Decrypt,
            op::SIGN => Op::Sign,
            op::SIGNATURE_VERIFY => Op::SignatureVerify,
            op::MAC => Op::Mac,
            op::MAC_VERIFY => Op::MacVerify,
            op::HASH => Op::Hash,
            op::DERIVE_KEY => Op::DeriveKey,
            op::OBTAIN_LEASE => Op::ObtainLease,
            _ => return None,
        })
    }

    /// The wire number.
    pub(crate) fn code(self) -> u32 {
        match self {
            Op::DiscoverVersions => op::DISCOVER_VERSIONS,
            Op::Query => op::QUERY,
            Op::Create => op::CREATE,
            Op::CreateKeyPair => op::CREATE_KEY_PAIR,
            Op::Register => op::REGISTER,
            Op::Get => op::GET,
            Op::GetAttributes => op::GET_ATTRIBUTES,
            Op::GetAttributeList => op::GET_ATTRIBUTE_LIST,
            Op::AddAttribute => op::ADD_ATTRIBUTE,
            Op::ModifyAttribute => op::MODIFY_ATTRIBUTE,
            Op::DeleteAttribute => op::DELETE_ATTRIBUTE,
            Op::SetAttribute => op::SET_ATTRIBUTE,
            Op::Locate => op::LOCATE,
            Op::Activate => op::ACTIVATE,
            Op::Revoke => op::REVOKE,
            Op::Destroy => op::DESTROY,
            Op::ReKey => op::RE_KEY,
            Op::ReKeyKeyPair => op::RE_KEY_KEY_PAIR,
            Op::Check => op::CHECK,
            Op::Interop => op::INTEROP,
            Op::Log => op::LOG,
            Op::RngRetrieve => op::RNG_RETRIEVE,
            Op::Encrypt => op::ENCRYPT,
            Op::Decrypt => op::DECRYPT,
            Op::Sign => op::SIGN,
            Op::SignatureVerify => op::SIGNATURE_VERIFY,
            Op::Mac => op::MAC,
            Op::MacVerify => op::MAC_VERIFY,
            Op::Hash => op::HASH,
            Op::DeriveKey => op::DERIVE_KEY,
            Op::ObtainLease => op::OBTAIN_LEASE,
        }
    }
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
    match operation {
        Op::DiscoverVersions => operations::discover_versions::handle(ctx, payload),
        Op::Query => operations::query::handle(ctx, payload),
        Op::Create => operations::create::handle(ctx, payload),
        Op::CreateKeyPair => operations::create_key_pair::handle(ctx, payload),
        Op::Register => operations::register::handle(ctx, payload),
        Op::Get => operations::get::handle(ctx, payload),
        Op::GetAttributes => operations::get_attributes::handle(ctx, payload),
        Op::GetAttributeList => operations::get_attribute_list::handle(ctx, payload),
        Op::AddAttribute => operations::add_attribute::handle(ctx, payload),
        Op::ModifyAttribute => operations::modify_attribute::handle(ctx, payload),
        Op::DeleteAttribute => operations::delete_attribute::handle(ctx, payload),
        Op::SetAttribute => operations::set_attribute::handle(ctx, payload),
        Op::Locate => operations::locate::handle(ctx, payload),
        Op::Activate => operations::activate::handle(ctx, payload),
        Op::Revoke => operations::revoke::handle(ctx, payload),
        Op::Destroy => operations::destroy::handle(ctx, payload),
        Op::ReKey => operations::re_key::handle(ctx, payload),
        Op::ReKeyKeyPair => operations::re_key_key_pair::handle(ctx, payload),
        Op::Check => operations::check::handle(ctx, payload),
        Op::Interop => operations::interop::handle(ctx, payload),
        Op::Log => operations::log::handle(ctx, payload),
        Op::RngRetrieve => operations::rng_retrieve::handle(ctx, payload),
        Op::Encrypt => operations::encrypt::handle(ctx, payload),
        Op::Decrypt => operations::decrypt::handle(ctx, payload),
        Op::Sign => operations::sign::handle(ctx, payload),
        Op::SignatureVerify => operations::signature_verify::handle(ctx, payload),
        Op::Mac => operations::mac::handle(ctx, payload),
        Op::MacVerify => operations::mac_verify::handle(ctx, payload),
        Op::Hash => operations::hash::handle(ctx, payload),
        Op::DeriveKey => operations::derive_key::handle(ctx, payload),
        Op::ObtainLease => operations::obtain_lease::handle(ctx, payload),
    }
}
