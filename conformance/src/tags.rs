//! The KMIP tags the runner looks at (the generated constants of `kmipd_proto::tag`), and
//! name lookups.

use kmipd_ttlv::Tag;

pub(crate) use kmipd_proto::tag::{
    APPLICATION_NAMESPACE, ASYNCHRONOUS_CORRELATION_VALUE, ATTESTATION_TYPE, ATTRIBUTE,
    ATTRIBUTE_INDEX, ATTRIBUTE_NAME, ATTRIBUTE_REFERENCE, ATTRIBUTE_VALUE, ATTRIBUTES,
    AUTHENTICATED_ENCRYPTION_TAG, BATCH_ITEM, CAPABILITY_INFORMATION, CLIENT_CORRELATION_VALUE,
    CLIENT_REGISTRATION_METHOD, CRYPTOGRAPHIC_ALGORITHM, DATA, DATA_LENGTH, DEFAULTS_INFORMATION,
    DIGEST, DIGEST_VALUE, DIGITAL_SIGNATURE_ALGORITHM, EXTENSION_INFORMATION, IV_COUNTER_NONCE,
    KEY_BLOCK, KEY_FORMAT_TYPE, KEY_VALUE, LEASE_TIME, LINKED_OBJECT_IDENTIFIER, MAC_DATA,
    OBJECT_TYPE, OPERATION, PADDING_METHOD, PKCS_11_FUNCTION, PKCS_11_OUTPUT_PARAMETERS,
    PRIVATE_KEY_UNIQUE_IDENTIFIER, PROFILE_INFORMATION, PROTECTION_STORAGE_MASKS, PROTOCOL_VERSION,
    PUBLIC_KEY, PUBLIC_KEY_UNIQUE_IDENTIFIER, RANDOM_NUMBER_GENERATOR, REPLACED_UNIQUE_IDENTIFIER,
    REQUEST_HEADER, REQUEST_MESSAGE, REQUEST_PAYLOAD, RESPONSE_HEADER, RESPONSE_MESSAGE,
    RESPONSE_PAYLOAD, RESULT_MESSAGE, RESULT_REASON, RESULT_STATUS, RNG_PARAMETERS,
    SERVER_CORRELATION_VALUE, SERVER_INFORMATION, SHORT_UNIQUE_IDENTIFIER, SIGNATURE_DATA,
    TIME_STAMP, UNIQUE_IDENTIFIER, VALIDATION_INFORMATION, VENDOR_IDENTIFICATION,
};

/// What an issuing CA chooses in a certificate it issues, and the attributes the server derives
/// from them: the certificate's bytes and length, the issuer's name, the serial number (KMIP
/// 1.4 §3.9-3.15, 2.1 §4.6-4.13; see `Ctx::issued_certificate` in `session.rs`).
pub(crate) const ISSUER_CHOSEN: [Tag; 7] = [
    kmipd_proto::tag::CERTIFICATE_VALUE,
    kmipd_proto::tag::CERTIFICATE_LENGTH,
    kmipd_proto::tag::ISSUER,
    kmipd_proto::tag::SERIAL_NUMBER,
    kmipd_proto::tag::CERTIFICATE_ISSUER_DISTINGUISHED_NAME,
    kmipd_proto::tag::ISSUER_DISTINGUISHED_NAME,
    kmipd_proto::tag::CERTIFICATE_SERIAL_NUMBER,
];

/// Tags whose Text String values are object identifiers chosen by the server: bound on first
/// sight in a response, substituted into later requests.
pub(crate) const IDENTIFIERS: [Tag; 5] = [
    UNIQUE_IDENTIFIER,
    PRIVATE_KEY_UNIQUE_IDENTIFIER,
    PUBLIC_KEY_UNIQUE_IDENTIFIER,
    LINKED_OBJECT_IDENTIFIER,
    REPLACED_UNIQUE_IDENTIFIER,
];

/// The XML name of a tag for paths and messages (`0x540001` when the tables do not know it).
pub(crate) fn name(tag: Tag) -> String {
    kmipd_proto::spec::tag_by_value(tag.value())
        .map_or_else(|| tag.to_string(), |t| t.xml_name.to_owned())
}

/// The value of an enumeration entry by table and XML name (e.g. "Operation", "Create").
pub(crate) fn enum_value(table: &str, xml_name: &str) -> Option<u32> {
    kmipd_proto::spec::enum_by_name(table).and_then(|t| t.value_by_xml_name(xml_name))
}
