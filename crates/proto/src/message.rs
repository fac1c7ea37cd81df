//! Request and response messages (KMIP 1.4 §7, 2.1 §8): the header fields and the batch items.
//! Payloads stay TTLV structures here; each operation reads and writes its own payload.

use kmipd_ttlv::{Tag, Ttlv, Value};

use crate::build;
use crate::reader::{ProtoError, StructReader};
use crate::spec::{Version, tag};

/// A Protocol Version as sent on the wire (any numbers: unknown versions must be answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolVersion {
    /// Protocol Version Major.
    pub major: i32,
    /// Protocol Version Minor.
    pub minor: i32,
}

impl ProtocolVersion {
    /// KMIP 1.0.
    pub const V1_0: ProtocolVersion = ProtocolVersion::new(1, 0);
    /// KMIP 1.4.
    pub const V1_4: ProtocolVersion = ProtocolVersion::new(1, 4);
    /// KMIP 2.0.
    pub const V2_0: ProtocolVersion = ProtocolVersion::new(2, 0);
    /// KMIP 2.1.
    pub const V2_1: ProtocolVersion = ProtocolVersion::new(2, 1);

    /// A version from its numbers.
    pub const fn new(major: i32, minor: i32) -> Self {
        ProtocolVersion { major, minor }
    }

    /// The tables' version for this protocol version, when the tables know it.
    pub fn spec(self) -> Option<Version> {
        let major = u32::try_from(self.major).ok()?;
        let minor = u32::try_from(self.minor).ok()?;
        Version::from_major_minor(major, minor)
    }

    /// True for 2.0 and later (Attributes structures instead of Template-Attributes).
    pub fn is_v2(self) -> bool {
        self.major >= 2
    }

    /// Reads a Protocol Version structure.
    pub fn from_ttlv(item: &Ttlv) -> Result<Self, ProtoError> {
        let r = StructReader::new(item, tag::PROTOCOL_VERSION)?;
        Ok(ProtocolVersion {
            major: r.req_int(tag::PROTOCOL_VERSION_MAJOR)?,
            minor: r.int(tag::PROTOCOL_VERSION_MINOR)?.unwrap_or(0),
        })
    }

    /// The Protocol Version structure.
    pub fn to_ttlv(self) -> Ttlv {
        build::structure(
            tag::PROTOCOL_VERSION,
            vec![
                build::int(tag::PROTOCOL_VERSION_MAJOR, self.major),
                build::int(tag::PROTOCOL_VERSION_MINOR, self.minor),
            ],
        )
    }
}

impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A request header.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestHeader {
    /// Protocol Version.
    pub protocol_version: ProtocolVersion,
    /// Maximum Response Size, in bytes.
    pub maximum_response_size: Option<i32>,
    /// Client Correlation Value (1.4+), echoed.
    pub client_correlation_value: Option<String>,
    /// Server Correlation Value (1.4+), echoed.
    pub server_correlation_value: Option<String>,
    /// Asynchronous Indicator.
    pub asynchronous_indicator: Option<bool>,
    /// Attestation Capable Indicator.
    pub attestation_capable_indicator: Option<bool>,
    /// Authentication (kept as sent; identity comes from the TLS certificate, not from here).
    pub authentication: Option<Ttlv>,
    /// Batch Error Continuation Option (Continue 1, Stop 2, Undo 3).
    pub batch_error_continuation_option: Option<u32>,
    /// Batch Order Option.
    pub batch_order_option: Option<bool>,
    /// Time Stamp.
    pub time_stamp: Option<i64>,
    /// Batch Count.
    pub batch_count: i32,
}

/// One operation of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestBatchItem {
    /// Operation (an open number: unknown operations are answered, not refused at decoding).
    pub operation: u32,
    /// Ephemeral (2.x).
    pub ephemeral: Option<bool>,
    /// Unique Batch Item ID, echoed in the response.
    pub unique_batch_item_id: Option<Vec<u8>>,
    /// Request Payload.
    pub payload: Option<Ttlv>,
    /// Message Extension.
    pub message_extension: Option<Ttlv>,
}

/// A request Batch Item read in place ([`RequestMessage::read`]): the fields of a
/// [`RequestBatchItem`], its payload and extension borrowed from the message tree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchItemRef<'a> {
    /// Operation.
    pub operation: u32,
    /// Ephemeral (2.x).
    pub ephemeral: Option<bool>,
    /// Unique Batch Item ID.
    pub unique_batch_item_id: Option<&'a [u8]>,
    /// Request Payload.
    pub payload: Option<&'a Ttlv>,
    /// Message Extension.
    pub message_extension: Option<&'a Ttlv>,
}

impl<'a> BatchItemRef<'a> {
    /// Reads a request Batch Item (the checks of [`RequestBatchItem::from_ttlv`]).
    pub fn from_ttlv(item: &'a Ttlv) -> Result<Self, ProtoError> {
        let r = StructReader::new(item, tag::BATCH_ITEM)?;
        Ok(BatchItemRef {
            operation: r.req_enum(tag::OPERATION)?,
            ephemeral: r.boolean(tag::EPHEMERAL)?,
            unique_batch_item_id: r.bytes(tag::UNIQUE_BATCH_ITEM_ID)?,
            payload: r.optional(tag::REQUEST_PAYLOAD),
            message_extension: r.optional(tag::MESSAGE_EXTENSION),
        })
    }

    /// An owned copy.
    pub fn to_item(&self) -> RequestBatchItem {
        RequestBatchItem {
            operation: self.operation,
            ephemeral: self.ephemeral,
            unique_batch_item_id: self.unique_batch_item_id.map(<[u8]>::to_vec),
            payload: self.payload.cloned(),
            message_extension: self.message_extension.cloned(),
        }
    }
}

/// A request message.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestMessage {
    /// The header.
    pub header: RequestHeader,
    /// The batch items, in order.
    pub items: Vec<RequestBatchItem>,
}

impl RequestMessage {
    /// A request of `version` with these batch items (the Batch Count is theirs; every other
    /// header field absent).
    pub fn new(version: ProtocolVersion, items: Vec<RequestBatchItem>) -> Self {
        RequestMessage {
            header: RequestHeader::new(version, i32::try_from(items.len()).unwrap_or(i32::MAX)),
            items,
        }
    }

    /// Reads a Request Message.
    pub fn from_ttlv(item: &Ttlv) -> Result<Self, ProtoError> {
        let (header, items) = RequestMessage::read(item)?;
        Ok(RequestMessage {
            header,
            items: items.iter().map(BatchItemRef::to_item).collect(),
        })
    }

    /// Reads a Request Message as [`RequestMessage::from_ttlv`] does (the same checks), its
    /// batch items borrowed from `item` rather than copied.
    pub fn read(item: &Ttlv) -> Result<(RequestHeader, Vec<BatchItemRef<'_>>), ProtoError> {
        let r = StructReader::new(item, tag::REQUEST_MESSAGE)?;
        let header = RequestHeader::from_ttlv(r.required(tag::REQUEST_HEADER)?)?;
        let items = r
            .repeated(tag::BATCH_ITEM)
            .map(BatchItemRef::from_ttlv)
            .collect::<Result<Vec<_>, _>>()?;
        for child in r.items() {
            if child.tag != tag::REQUEST_HEADER && child.tag != tag::BATCH_ITEM {
                return Err(ProtoError::WrongTag {
                    expected: tag::BATCH_ITEM,
                    found: child.tag,
                });
            }
        }
        if items.is_empty() {
            return Err(ProtoError::Missing(tag::BATCH_ITEM));
        }
        Ok((header, items))
    }

    /// Reads as much of a request header as is readable from a request that fails to parse,
    /// so that the error response can be in the right version and echo the right values.
    pub fn salvage_header(item: &Ttlv) -> Option<RequestHeader> {
        let r = StructReader::any(item).ok()?;
        RequestHeader::from_ttlv(r.optional(tag::REQUEST_HEADER)?).ok()
    }

    /// The Request Message tree.
    pub fn to_ttlv(&self) -> Ttlv {
        let mut items = vec![self.header.to_ttlv()];
        items.extend(self.items.iter().map(RequestBatchItem::to_ttlv));
        build::structure(tag::REQUEST_MESSAGE, items)
    }
}

impl RequestHeader {
    /// A header with only the Protocol Version and the Batch Count.
    pub fn new(protocol_version: ProtocolVersion, batch_count: i32) -> Self {
        RequestHeader {
            protocol_version,
            maximum_response_size: None,
            client_correlation_value: None,
            server_correlation_value: None,
            asynchronous_indicator: None,
            attestation_capable_indicator: None,
            authentication: None,
            batch_error_continuation_option: None,
            batch_order_option: None,
            time_stamp: None,
            batch_count,
        }
    }

    /// Reads a Request Header.
    pub fn from_ttlv(item: &Ttlv) -> Result<Self, ProtoError> {
        let r = StructReader::new(item, tag::REQUEST_HEADER)?;
        Ok(RequestHeader {
            protocol_version: ProtocolVersion::from_ttlv(r.required(tag::PROTOCOL_VERSION)?)?,
            maximum_response_size: r.int(tag::MAXIMUM_RESPONSE_SIZE)?,
            client_correlation_value: r.text(tag::CLIENT_CORRELATION_VALUE)?.map(str::to_owned),
            server_correlation_value: r.text(tag::SERVER_CORRELATION_VALUE)?.map(str::to_owned),
            asynchronous_indicator: r.boolean(tag::ASYNCHRONOUS_INDICATOR)?,
            attestation_capable_indicator: r.boolean(tag::ATTESTATION_CAPABLE_INDICATOR)?,
            authentication: r.optional(tag::AUTHENTICATION).cloned(),
            batch_error_continuation_option: r.enumeration(tag::BATCH_ERROR_CONTINUATION_OPTION)?,
            batch_order_option: r.boolean(tag::BATCH_ORDER_OPTION)?,
            time_stamp: r.datetime(tag::TIME_STAMP)?,
            batch_count: r.req_int(tag::BATCH_COUNT)?,
        })
    }

    /// The Request Header tree.
    pub fn to_ttlv(&self) -> Ttlv {
        let mut items = vec![self.protocol_version.to_ttlv()];
        if let Some(v) = self.maximum_response_size {
            items.push(build::int(tag::MAXIMUM_RESPONSE_SIZE, v));
        }
        if let Some(v) = &self.client_correlation_value {
            items.push(build::text(tag::CLIENT_CORRELATION_VALUE, v.clone()));
        }
        if let Some(v) = &self.server_correlation_value {
            items.push(build::text(tag::SERVER_CORRELATION_VALUE, v.clone()));
        }
        if let Some(v) = self.asynchronous_indicator {
            items.push(build::boolean(tag::ASYNCHRONOUS_INDICATOR, v));
        }
        if let Some(v) = self.attestation_capable_indicator {
            items.push(build::boolean(tag::ATTESTATION_CAPABLE_INDICATOR, v));
        }
        if let Some(v) = &self.authentication {
            items.push(v.clone());
        }
        if let Some(v) = self.batch_error_continuation_option {
            items.push(build::enumeration(tag::BATCH_ERROR_CONTINUATION_OPTION, v));
        }
        if let Some(v) = self.batch_order_option {
            items.push(build::boolean(tag::BATCH_ORDER_OPTION, v));
        }
        if let Some(v) = self.time_stamp {
            items.push(build::datetime(tag::TIME_STAMP, v));
        }
        items.push(build::int(tag::BATCH_COUNT, self.batch_count));
        build::structure(tag::REQUEST_HEADER, items)
    }
}

impl RequestBatchItem {
    /// A batch item of `operation` whose Request Payload holds `payload`.
    pub fn new(operation: u32, payload: Vec<Ttlv>) -> Self {
        RequestBatchItem {
            operation,
            ephemeral: None,
            unique_batch_item_id: None,
            payload: Some(build::structure(tag::REQUEST_PAYLOAD, payload)),
            message_extension: None,
        }
    }

    /// Reads a request Batch Item.
    pub fn from_ttlv(item: &Ttlv) -> Result<Self, ProtoError> {
        BatchItemRef::from_ttlv(item).map(|i| i.to_item())
    }

    /// This item, borrowed.
    pub fn borrowed(&self) -> BatchItemRef<'_> {
        BatchItemRef {
            operation: self.operation,
            ephemeral: self.ephemeral,
            unique_batch_item_id: self.unique_batch_item_id.as_deref(),
            payload: self.payload.as_ref(),
            message_extension: self.message_extension.as_ref(),
        }
    }

    /// The request Batch Item tree.
    pub fn to_ttlv(&self) -> Ttlv {
        let mut items = vec![build::enumeration(tag::OPERATION, self.operation)];
        if let Some(v) = self.ephemeral {
            items.push(build::boolean(tag::EPHEMERAL, v));
        }
        if let Some(v) = &self.unique_batch_item_id {
            items.push(build::bytes(tag::UNIQUE_BATCH_ITEM_ID, v.clone()));
        }
        if let Some(v) = &self.payload {
            items.push(v.clone());
        }
        if let Some(v) = &self.message_extension {
            items.push(v.clone());
        }
        build::structure(tag::BATCH_ITEM, items)
    }
}

/// A response header.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseHeader {
    /// Protocol Version.
    pub protocol_version: ProtocolVersion,
    /// Time Stamp.
    pub time_stamp: i64,
    /// Client Correlation Value (1.4+).
    pub client_correlation_value: Option<String>,
    /// Server Correlation Value (1.4+).
    pub server_correlation_value: Option<String>,
    /// Batch Count.
    pub batch_count: i32,
}

/// The result of one batch item.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseBatchItem {
    /// Operation (required when the request named one).
    pub operation: Option<u32>,
    /// Unique Batch Item ID, echoed.
    pub unique_batch_item_id: Option<Vec<u8>>,
    /// Result Status.
    pub result_status: u32,
    /// Result Reason (required on failure).
    pub result_reason: Option<u32>,
    /// Result Message.
    pub result_message: Option<String>,
    /// Asynchronous Correlation Value (with Result Status Operation Pending).
    pub asynchronous_correlation_value: Option<Vec<u8>>,
    /// Response Payload.
    pub payload: Option<Ttlv>,
}

/// A response Batch Item read in place ([`ResponseMessage::read`]): the fields of a
/// [`ResponseBatchItem`], borrowed from the message tree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResponseItemRef<'a> {
    /// Operation.
    pub operation: Option<u32>,
    /// Unique Batch Item ID.
    pub unique_batch_item_id: Option<&'a [u8]>,
    /// Result Status.
    pub result_status: u32,
    /// Result Reason.
    pub result_reason: Option<u32>,
    /// Result Message.
    pub result_message: Option<&'a str>,
    /// Asynchronous Correlation Value.
    pub asynchronous_correlation_value: Option<&'a [u8]>,
    /// Response Payload.
    pub payload: Option<&'a Ttlv>,
}

impl ResponseItemRef<'_> {
    /// An owned copy.
    pub fn to_item(&self) -> ResponseBatchItem {
        ResponseBatchItem {
            operation: self.operation,
            unique_batch_item_id: self.unique_batch_item_id.map(<[u8]>::to_vec),
            result_status: self.result_status,
            result_reason: self.result_reason,
            result_message: self.result_message.map(str::to_owned),
            asynchronous_correlation_value: self.asynchronous_correlation_value.map(<[u8]>::to_vec),
            payload: self.payload.cloned(),
        }
    }
}

/// A response message.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseMessage {
    /// The header.
    pub header: ResponseHeader,
    /// The batch items, in order.
    pub items: Vec<ResponseBatchItem>,
}

impl ResponseMessage {
    /// The Response Message tree (a copy; [`ResponseMessage::into_ttlv`] moves the payloads).
    pub fn to_ttlv(&self) -> Ttlv {
        self.clone().into_ttlv()
    }

    /// The Response Message tree, the payloads moved into it rather than copied.
    pub fn into_ttlv(self) -> Ttlv {
        let mut items = Vec::with_capacity(1 + self.items.len());
        items.push(self.header.into_ttlv());
        items.extend(self.items.into_iter().map(ResponseBatchItem::into_ttlv));
        build::structure(tag::RESPONSE_MESSAGE, items)
    }

    /// Reads a Response Message (for clients and tests).
    pub fn from_ttlv(item: &Ttlv) -> Result<Self, ProtoError> {
        let (header, items) = ResponseMessage::read(item)?;
        Ok(ResponseMessage {
            header,
            items: items.iter().map(ResponseItemRef::to_item).collect(),
        })
    }

    /// Reads a Response Message as [`ResponseMessage::from_ttlv`] does (the same checks), its
    /// batch items borrowed from `item` rather than copied.
    pub fn read(item: &Ttlv) -> Result<(ResponseHeader, Vec<ResponseItemRef<'_>>), ProtoError> {
        let r = StructReader::new(item, tag::RESPONSE_MESSAGE)?;
        let h = StructReader::new(r.required(tag::RESPONSE_HEADER)?, tag::RESPONSE_HEADER)?;
        let header = ResponseHeader {
            protocol_version: ProtocolVersion::from_ttlv(h.required(tag::PROTOCOL_VERSION)?)?,
            time_stamp: h.datetime(tag::TIME_STAMP)?.unwrap_or(0),
            client_correlation_value: h.text(tag::CLIENT_CORRELATION_VALUE)?.map(str::to_owned),
            server_correlation_value: h.text(tag::SERVER_CORRELATION_VALUE)?.map(str::to_owned),
            batch_count: h.req_int(tag::BATCH_COUNT)?,
        };
        let items = r
            .repeated(tag::BATCH_ITEM)
            .map(|b| {
                let b = StructReader::any(b)?;
                Ok(ResponseItemRef {
                    operation: b.enumeration(tag::OPERATION)?,
                    unique_batch_item_id: b.bytes(tag::UNIQUE_BATCH_ITEM_ID)?,
                    result_status: b.req_enum(tag::RESULT_STATUS)?,
                    result_reason: b.enumeration(tag::RESULT_REASON)?,
                    result_message: b.text(tag::RESULT_MESSAGE)?,
                    asynchronous_correlation_value: b.bytes(tag::ASYNCHRONOUS_CORRELATION_VALUE)?,
                    payload: b.optional(tag::RESPONSE_PAYLOAD),
                })
            })
            .collect::<Result<Vec<_>, ProtoError>>()?;
        Ok((header, items))
    }
}

impl ResponseHeader {
    /// The Response Header tree.
    pub fn to_ttlv(&self) -> Ttlv {
        self.clone().into_ttlv()
    }

    /// The Response Header tree, its values moved into it.
    pub fn into_ttlv(self) -> Ttlv {
        let mut items = Vec::with_capacity(5);
        items.push(self.protocol_version.to_ttlv());
        items.push(build::datetime(tag::TIME_STAMP, self.time_stamp));
        if let Some(v) = self.client_correlation_value {
            items.push(build::text(tag::CLIENT_CORRELATION_VALUE, v));
        }
        if let Some(v) = self.server_correlation_value {
            items.push(build::text(tag::SERVER_CORRELATION_VALUE, v));
        }
        items.push(build::int(tag::BATCH_COUNT, self.batch_count));
        build::structure(tag::RESPONSE_HEADER, items)
    }
}

impl ResponseBatchItem {
    /// The response Batch Item tree (a copy; [`ResponseBatchItem::into_ttlv`] moves the
    /// payload).
    pub fn to_ttlv(&self) -> Ttlv {
        self.clone().into_ttlv()
    }

    /// The response Batch Item tree, the payload moved into it rather than copied.
    pub fn into_ttlv(self) -> Ttlv {
        let mut items = Vec::with_capacity(7);
        if let Some(op) = self.operation {
            items.push(build::enumeration(tag::OPERATION, op));
        }
        if let Some(v) = self.unique_batch_item_id {
            items.push(build::bytes(tag::UNIQUE_BATCH_ITEM_ID, v));
        }
        items.push(build::enumeration(tag::RESULT_STATUS, self.result_status));
        if let Some(v) = self.result_reason {
            items.push(build::enumeration(tag::RESULT_REASON, v));
        }
        if let Some(v) = self.result_message {
            items.push(build::text(tag::RESULT_MESSAGE, v));
        }
        if let Some(v) = self.asynchronous_correlation_value {
            items.push(build::bytes(tag::ASYNCHRONOUS_CORRELATION_VALUE, v));
        }
        if let Some(v) = self.payload {
            items.push(v);
        }
        build::structure(tag::BATCH_ITEM, items)
    }
}

/// An empty payload structure with this tag (Request Payload or Response Payload).
pub fn empty_payload(t: Tag) -> Ttlv {
    Ttlv::new(t, Value::Structure(Vec::new()))
}
