//! The engine's error type and THE mapping from errors to KMIP Result Reasons.
//!
//! Every failure of an operation is an [`Error`]; [`Error::result_reason`] is the only place that
//! turns one into a Result Reason, an exhaustive match without a catch-all, aware of the
//! protocol version (KMIP 2.0 added reasons and dropped Illegal Operation and Index Out of
//! Bounds). [`Error::client_message`] is the Result Message: short, fixed text, never internal
//! detail; [`Error::incident_kind`] says which errors are the operator's business instead
//! (`incident.rs`).

use kmipd_proto::enums::result_reason as rr;
use kmipd_proto::message::ProtocolVersion;
use kmipd_proto::reader::ProtoError;
use kmipd_store::StoreError;

use crate::incident::IncidentKind;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The payload is not the structure the operation needs.
    #[error("{0}")]
    Proto(#[from] ProtoError),
    /// A field has a value this server refuses (named by the static text).
    #[error("invalid field: {0}")]
    InvalidField(&'static str),
    /// The message itself is malformed (not a request, wrong batch count, ...).
    #[error("invalid message: {0}")]
    InvalidMessage(&'static str),
    /// A required piece of data is missing.
    #[error("missing data: {0}")]
    MissingData(&'static str),
    /// The protocol version of the request is not one this server speaks.
    #[error("unsupported protocol version")]
    UnsupportedProtocolVersion,
    /// No such object (or one the caller may not see: both look the same).
    #[error("object not found")]
    NotFound,
    /// The object was destroyed (its metadata remains).
    #[error("object destroyed")]
    Destroyed,
    /// The caller may not do this.
    #[error("permission denied: {0}")]
    PermissionDenied(&'static str),
    /// The server policy refuses the request (`policy.rs`); the text names the rule and is
    /// sent (it holds only configuration and the request's own values).
    #[error("{0}")]
    Policy(String),
    /// The object's state forbids the operation.
    #[error("wrong key lifecycle state: {0}")]
    WrongState(&'static str),
    /// The operation is not implemented by this server.
    #[error("operation not supported")]
    OperationNotSupported,
    /// A feature of the request is not implemented by this server.
    #[error("feature not supported: {0}")]
    FeatureNotSupported(&'static str),
    /// A cryptographic operation failed (bad tag, bad padding, bad key for the algorithm).
    #[error("cryptographic failure: {0}")]
    CryptographicFailure(&'static str),
    /// The request is legal KMIP but not in this combination (1.x Illegal Operation).
    #[error("illegal operation: {0}")]
    IllegalOperation(&'static str),
    /// An Attribute Index names no instance.
    #[error("attribute index out of bounds")]
    IndexOutOfBounds,
    /// The attribute is absent.
    #[error("attribute not found")]
    AttributeNotFound,
    /// The attribute cannot be set, changed or deleted by a client.
    #[error("attribute is read-only: {0}")]
    AttributeReadOnly(&'static str),
    /// The attribute may have only one instance.
    #[error("attribute is single-valued")]
    AttributeSingleValued,
    /// The attribute value is not acceptable.
    #[error("invalid attribute value: {0}")]
    InvalidAttributeValue(&'static str),
    /// Another object already has this Name.
    #[error("name already in use")]
    NonUniqueName,
    /// The attribute has several instances and the request does not say which one.
    #[error("attribute has several instances")]
    MultiValuedAttribute,
    /// The attribute is unknown, or not defined in the request's protocol version.
    #[error("invalid attribute: {0}")]
    InvalidAttribute(&'static str),
    /// The key format requested is not offered.
    #[error("key format type not supported")]
    KeyFormatTypeNotSupported,
    /// The key compression requested is not offered.
    #[error("key compression type not supported")]
    KeyCompressionTypeNotSupported,
    /// Wrapping/encoding options are contradictory.
    #[error("encoding option error")]
    EncodingOptionError,
    /// The object has no key value to use.
    #[error("key value not present")]
    KeyValueNotPresent,
    /// The object is marked Sensitive and cannot be exported in the clear.
    #[error("object is sensitive")]
    Sensitive,
    /// The object is not extractable.
    #[error("object is not extractable")]
    NotExtractable,
    /// The object already exists.
    #[error("object already exists")]
    ObjectAlreadyExists,
    /// Poll or Cancel of an Asynchronous Correlation Value this identity has not pending.
    #[error("invalid asynchronous correlation value")]
    InvalidAsyncCorrelationValue,
    /// A Correlation Value (streamed cryptography, `streams.rs`) that names no open stream of
    /// this identity and operation (unknown, expired, closed, or someone else's).
    #[error("invalid correlation value")]
    InvalidCorrelationValue,
    /// The identity, or the server, has as many streams open as allowed (`streams.rs`).
    #[error("too many open streams")]
    TooManyStreams,
    /// PKCS#11: a PKCS#11 Interface other than the default one (`operations/pkcs11.rs`).
    #[error("PKCS#11 interface not supported")]
    Pkcs11InvalidInterface,
    /// PKCS#11: a PKCS#11 Function that is not a function of the interface (an Enumeration
    /// beyond CK_FUNCTION_LIST_3_0, or a vendor-defined Integer kmipd does not define).
    #[error("not a PKCS#11 function of the interface")]
    Pkcs11InvalidFunction,
    /// PKCS#11: Input Parameters that do not decode as the function's parameters.
    #[error("PKCS#11 input parameters: {0}")]
    Pkcs11Codec(&'static str),
    /// A new object that the server's constraints do not allow (`constraints.rs`).
    #[error("constraint violation: {0}")]
    ConstraintViolation(&'static str),
    /// The object is archived.
    #[error("object archived")]
    ObjectArchived,
    /// Cryptographic parameters are inconsistent or missing.
    #[error("bad cryptographic parameters: {0}")]
    BadCryptographicParameters(&'static str),
    /// The key's Cryptographic Usage Mask forbids this use.
    #[error("incompatible cryptographic usage mask")]
    IncompatibleUsageMask,
    /// The object's usage limits are exhausted (or a ticket has served its Request Count).
    #[error("usage limit exceeded")]
    UsageLimitExceeded,
    /// An object the operation needs in the Active state is not Active (a PKCS#12 password).
    #[error("object not active: {0}")]
    NotActive(&'static str),
    /// The request's Ticket is unknown to its identity, expired or logged out (`tickets.rs`).
    #[error("invalid ticket")]
    InvalidTicket,
    /// A Username and Password or Device credential that the server does not accept
    /// (`credentials.rs`).
    #[error("authentication not successful")]
    AuthenticationNotSuccessful,
    /// The rights of the request's Delegated Login ticket do not allow this (`tickets.rs`).
    #[error("not authorised: {0}")]
    NotAuthorised(&'static str),
    /// The answer would exceed the request's Maximum Response Size.
    #[error("response too large")]
    ResponseTooLarge,
    /// The persistence layer failed; detail for the log only.
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
    /// A request the server refuses with General Failure, as the OASIS cases expect (e.g. an
    /// AEAD Tag Length out of range); the text is sent.
    #[error("general failure: {0}")]
    GeneralFailure(&'static str),
    /// Something that should not happen happened; detail for the log only.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// The operation-level result of a KMIP request: a reason and a message.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// THE mapping to a KMIP Result Reason for a response in `version`.
    pub fn result_reason(&self, version: ProtocolVersion) -> u32 {
        let v2 = version.is_v2();
        match self {
            Error::Proto(e) => match e {
                ProtoError::Missing(_) if v2 => rr::MISSING_DATA,
                ProtoError::Missing(_)
                | ProtoError::WrongType { .. }
                | ProtoError::InvalidValue(_)
                | ProtoError::WrongTag { .. }
                | ProtoError::Repeated(_) => rr::INVALID_FIELD,
            },
            Error::InvalidField(_) => rr::INVALID_FIELD,
            Error::InvalidMessage(_) => rr::INVALID_MESSAGE,
            Error::MissingData(_) => rr::MISSING_DATA,
            Error::UnsupportedProtocolVersion if v2 => rr::UNSUPPORTED_PROTOCOL_VERSION,
            Error::UnsupportedProtocolVersion => rr::INVALID_MESSAGE,
            Error::NotFound if version >= ProtocolVersion::V2_1 => rr::OBJECT_NOT_FOUND,
            Error::NotFound => rr::ITEM_NOT_FOUND,
            Error::Destroyed if v2 => rr::OBJECT_DESTROYED,
            Error::Destroyed => rr::ITEM_NOT_FOUND,
            Error::PermissionDenied(_) => rr::PERMISSION_DENIED,
            // Well-formed, implemented, and refused by the operator's rule: see `policy.rs`.
            Error::Policy(_) => rr::PERMISSION_DENIED,
            // 2.0 defines Wrong Key Lifecycle State, but its OASIS cases (AKLC-M-2-20, Destroy
            // of an Active key) expect Permission Denied, as 1.x; 2.1 and 3.0 use the new code.
            Error::WrongState(_) if version >= ProtocolVersion::V2_1 => {
                rr::WRONG_KEY_LIFECYCLE_STATE
            }
            Error::WrongState(_) => rr::PERMISSION_DENIED,
            Error::OperationNotSupported => rr::OPERATION_NOT_SUPPORTED,
            Error::FeatureNotSupported(_) => rr::FEATURE_NOT_SUPPORTED,
            Error::CryptographicFailure(_) => rr::CRYPTOGRAPHIC_FAILURE,
            Error::IllegalOperation(_) if v2 => rr::INVALID_FIELD,
            Error::IllegalOperation(_) => rr::ILLEGAL_OPERATION,
            Error::IndexOutOfBounds if v2 => rr::ATTRIBUTE_INSTANCE_NOT_FOUND,
            Error::IndexOutOfBounds => rr::INDEX_OUT_OF_BOUNDS,
            Error::AttributeNotFound if v2 => rr::ATTRIBUTE_NOT_FOUND,
            Error::AttributeNotFound => rr::INVALID_FIELD,
            Error::AttributeReadOnly(_) if v2 => rr::ATTRIBUTE_READ_ONLY,
            Error::AttributeReadOnly(_) => rr::PERMISSION_DENIED,
            Error::AttributeSingleValued if v2 => rr::ATTRIBUTE_SINGLE_VALUED,
            Error::AttributeSingleValued => rr::INVALID_FIELD,
            Error::InvalidAttributeValue(_) if v2 => rr::INVALID_ATTRIBUTE_VALUE,
            Error::InvalidAttributeValue(_) => rr::INVALID_FIELD,
            Error::NonUniqueName if v2 => rr::NON_UNIQUE_NAME_ATTRIBUTE,
            Error::NonUniqueName => rr::INVALID_FIELD,
            Error::MultiValuedAttribute if v2 => rr::MULTI_VALUED_ATTRIBUTE,
            Error::MultiValuedAttribute => rr::INVALID_FIELD,
            Error::InvalidAttribute(_) if v2 => rr::INVALID_ATTRIBUTE,
            Error::InvalidAttribute(_) => rr::INVALID_FIELD,
            Error::KeyFormatTypeNotSupported => rr::KEY_FORMAT_TYPE_NOT_SUPPORTED,
            Error::KeyCompressionTypeNotSupported => rr::KEY_COMPRESSION_TYPE_NOT_SUPPORTED,
            Error::EncodingOptionError => rr::ENCODING_OPTION_ERROR,
            Error::KeyValueNotPresent => rr::KEY_VALUE_NOT_PRESENT,
            Error::Sensitive => rr::SENSITIVE,
            Error::NotExtractable => rr::NOT_EXTRACTABLE,
            Error::ObjectAlreadyExists => rr::OBJECT_ALREADY_EXISTS,
            Error::ObjectArchived => rr::OBJECT_ARCHIVED,
            Error::InvalidAsyncCorrelationValue if v2 => rr::INVALID_ASYNCHRONOUS_CORRELATION_VALUE,
            Error::InvalidAsyncCorrelationValue => rr::ITEM_NOT_FOUND,
            Error::InvalidCorrelationValue if v2 => rr::INVALID_CORRELATION_VALUE,
            Error::InvalidCorrelationValue => rr::ITEM_NOT_FOUND,
            // PKCS#11 is a 2.x operation: 1.x requests never reach it, the mapping stays total.
            Error::Pkcs11InvalidInterface if v2 => rr::PKCS_11_INVALID_INTERFACE,
            Error::Pkcs11InvalidFunction if v2 => rr::PKCS_11_INVALID_FUNCTION,
            Error::Pkcs11Codec(_) if v2 => rr::PKCS_11_CODEC_ERROR,
            Error::Pkcs11InvalidInterface
            | Error::Pkcs11InvalidFunction
            | Error::Pkcs11Codec(_) => rr::OPERATION_NOT_SUPPORTED,
            Error::ConstraintViolation(_) if v2 => rr::CONSTRAINT_VIOLATION,
            Error::ConstraintViolation(_) => rr::PERMISSION_DENIED,
            // No Result Reason names a server's resource limit.
            Error::TooManyStreams => rr::GENERAL_FAILURE,
            Error::BadCryptographicParameters(_) if v2 => rr::BAD_CRYPTOGRAPHIC_PARAMETERS,
            Error::BadCryptographicParameters(_) => rr::INVALID_FIELD,
            Error::IncompatibleUsageMask if v2 => rr::INCOMPATIBLE_CRYPTOGRAPHIC_USAGE_MASK,
            Error::IncompatibleUsageMask => rr::PERMISSION_DENIED,
            Error::UsageLimitExceeded if v2 => rr::USAGE_LIMIT_EXCEEDED,
            Error::UsageLimitExceeded => rr::PERMISSION_DENIED,
            Error::NotActive(_) if v2 => rr::WRONG_KEY_LIFECYCLE_STATE,
            Error::NotActive(_) => rr::PERMISSION_DENIED,
            // Tickets are 2.x; a 1.x request cannot carry one, but the mapping stays total.
            Error::InvalidTicket if v2 => rr::INVALID_TICKET,
            Error::InvalidTicket => rr::AUTHENTICATION_NOT_SUCCESSFUL,
            Error::AuthenticationNotSuccessful => rr::AUTHENTICATION_NOT_SUCCESSFUL,
            Error::NotAuthorised(_) if v2 => rr::NOT_AUTHORISED,
            Error::NotAuthorised(_) => rr::PERMISSION_DENIED,
            Error::ResponseTooLarge => rr::RESPONSE_TOO_LARGE,
            Error::GeneralFailure(_) => rr::GENERAL_FAILURE,
            Error::Store(_) | Error::Internal(_) => rr::GENERAL_FAILURE,
        }
    }

    /// Whether this error is an incident for the operator (`incident.rs`), and of what kind:
    /// every store failure but a Conflict, and internal errors.
    pub fn incident_kind(&self) -> Option<IncidentKind> {
        match self {
            Error::Store(e) => match e {
                StoreError::Conflict { .. } => None,
                StoreError::Backend(_) | StoreError::Incompatible(_) => {
                    Some(IncidentKind::StoreBackend)
                }
                StoreError::Corrupt { .. } => Some(IncidentKind::StoreCorrupt),
                StoreError::Locked => Some(IncidentKind::StoreLocked),
                StoreError::Kek(_) => Some(IncidentKind::StoreKek),
            },
            Error::Internal(_) => Some(IncidentKind::Internal),
            _ => None,
        }
    }

    /// The Result Message: short, and free of internal detail.
    pub fn client_message(&self) -> String {
        match self {
            Error::Store(StoreError::Conflict { .. }) => {
                "the object was changed concurrently; retry the request".to_owned()
            }
            Error::Store(_) | Error::Internal(_) => "internal server error".to_owned(),
            other => other.to_string(),
        }
    }
}
