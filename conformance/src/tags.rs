//! The KMIP tags the runner looks at, by number (KMIP 1.4 / 2.1 §9.1.3.1). Kept local until
//! `kmipd_proto` exports named constants.

use kmipd_ttlv::Tag;

/// A KMIP tag `0x42xxxx` from its low 16 bits.
const fn kmip(low: u16) -> Tag {
    let [hi, lo] = low.to_be_bytes();
    Tag::from_bytes([0x42, hi, lo])
}

pub(crate) const ATTRIBUTE: Tag = kmip(0x0008);
pub(crate) const ATTRIBUTE_INDEX: Tag = kmip(0x0009);
pub(crate) const ATTRIBUTE_NAME: Tag = kmip(0x000A);
pub(crate) const ATTRIBUTE_VALUE: Tag = kmip(0x000B);
pub(crate) const ATTRIBUTES: Tag = kmip(0x0125);
pub(crate) const ATTRIBUTE_REFERENCE: Tag = kmip(0x013B);
pub(crate) const AUTHENTICATED_ENCRYPTION_TAG: Tag = kmip(0x00FF);
pub(crate) const BATCH_ITEM: Tag = kmip(0x000F);
pub(crate) const CLIENT_CORRELATION_VALUE: Tag = kmip(0x0105);
pub(crate) const CRYPTOGRAPHIC_ALGORITHM: Tag = kmip(0x0028);
pub(crate) const DATA: Tag = kmip(0x00C2);
pub(crate) const DIGEST: Tag = kmip(0x0034);
pub(crate) const DIGEST_VALUE: Tag = kmip(0x0035);
pub(crate) const DIGITAL_SIGNATURE_ALGORITHM: Tag = kmip(0x00AE);
pub(crate) const IV_COUNTER_NONCE: Tag = kmip(0x003D);
pub(crate) const KEY_BLOCK: Tag = kmip(0x0040);
pub(crate) const KEY_FORMAT_TYPE: Tag = kmip(0x0042);
pub(crate) const KEY_VALUE: Tag = kmip(0x0045);
pub(crate) const LINKED_OBJECT_IDENTIFIER: Tag = kmip(0x004C);
pub(crate) const MAC_DATA: Tag = kmip(0x00C6);
pub(crate) const OPERATION: Tag = kmip(0x005C);
pub(crate) const PADDING_METHOD: Tag = kmip(0x005F);
pub(crate) const PRIVATE_KEY_UNIQUE_IDENTIFIER: Tag = kmip(0x0066);
pub(crate) const PROTOCOL_VERSION: Tag = kmip(0x0069);
pub(crate) const PUBLIC_KEY_UNIQUE_IDENTIFIER: Tag = kmip(0x006F);
pub(crate) const REPLACED_UNIQUE_IDENTIFIER: Tag = kmip(0x0076);
pub(crate) const REQUEST_MESSAGE: Tag = kmip(0x0078);
pub(crate) const REQUEST_PAYLOAD: Tag = kmip(0x0079);
pub(crate) const RESPONSE_HEADER: Tag = kmip(0x007A);
pub(crate) const RESPONSE_MESSAGE: Tag = kmip(0x007B);
pub(crate) const RESPONSE_PAYLOAD: Tag = kmip(0x007C);
pub(crate) const RESULT_MESSAGE: Tag = kmip(0x007D);
pub(crate) const RESULT_REASON: Tag = kmip(0x007E);
pub(crate) const RESULT_STATUS: Tag = kmip(0x007F);
pub(crate) const SERVER_CORRELATION_VALUE: Tag = kmip(0x0106);
pub(crate) const SERVER_INFORMATION: Tag = kmip(0x0088);
pub(crate) const SIGNATURE_DATA: Tag = kmip(0x00C3);
pub(crate) const TIME_STAMP: Tag = kmip(0x0092);
pub(crate) const UNIQUE_IDENTIFIER: Tag = kmip(0x0094);
pub(crate) const VENDOR_IDENTIFICATION: Tag = kmip(0x009D);

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
