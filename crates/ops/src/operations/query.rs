//! Query (KMIP 1.4 §4.25, 2.1 §6.1.40): what this server supports, per Query Function, in the
//! request's version (a function, operation, object type or field the version does not define
//! is never answered).
//!
//! The answers are what kmipd really does, not what the OASIS example servers of the Test
//! Cases notes claim (those disagree with each other, e.g. TC-Q-CAP-1 and -2):
//! - Operations: every implemented operation ([`Op::ALL`]) the version defines.
//! - Objects: the object types [`OBJECT_TYPES`] that the version defines (Template in 1.x).
//! - Server Information: Vendor Identification (configuration) and a Server Information
//!   structure (2.x: Server Name, Server Version, Product Name; 1.x defines no fields in it).
//! - Application Namespaces, Extension List/Map, Attestation Types, Validations, Profiles,
//!   Client Registration Methods: none (no namespaces, extensions, attestation or formal
//!   validation are offered; profiles are not claimed until the conformance runner shows them
//!   passed; clients are identified by their TLS certificates, outside KMIP).
//! - RNGs: one RNG Parameters with RNG Algorithm Unspecified (the operating system's generator,
//!   whose construction kmipd does not know; the specification prescribes Unspecified then).
//! - Capabilities: no streaming, asynchronous operations or attestation; batch Undo and
//!   Continue supported; Destroy deletes the key material and keeps the metadata; no shredding.
//! - Defaults Information (2.x): an empty structure (no Object Defaults are promised).
//! - Storage Protection Masks (2.x): Software | On System (keys live in the server's memory).

use kmipd_proto::enums::{
    destroy_action_type, object_type as ot, protection_storage_mask as psm, query_function as qf,
    rng_algorithm, rng_mode, shredding_algorithm, unwrap_mode,
};
use kmipd_proto::reader::{self, StructReader, as_enum};
use kmipd_proto::spec::{self, Version};
use kmipd_proto::tag;
use kmipd_ttlv::{Tag, Ttlv};

use crate::context::Ctx;
use crate::dispatch::Op;
use crate::error::{Error, Result};

/// The object types kmipd stores (Query Objects), in Object Type order. Template (6) is a 1.x
/// object only (2.x renamed the value Reserved), listed for 1.x requests alone.
pub(crate) const OBJECT_TYPES: [u32; 7] = [
    ot::CERTIFICATE,
    ot::SYMMETRIC_KEY,
    ot::PUBLIC_KEY,
    ot::PRIVATE_KEY,
    TEMPLATE,
    ot::SECRET_DATA,
    ot::OPAQUE_OBJECT,
];

/// The 1.x Template object type.
const TEMPLATE: u32 = 6;

/// Handles Query.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let mut functions = Vec::new();
    for item in r.repeated(tag::QUERY_FUNCTION) {
        let f = as_enum(item)?;
        if !enum_defined(tag::QUERY_FUNCTION, f, ctx.spec) {
            return Err(Error::InvalidField("Query Function"));
        }
        functions.push(f);
    }
    let asked = |f: u32| functions.contains(&f);
    let v = ctx.spec;
    let mut out: Vec<Ttlv> = Vec::new();

    if asked(qf::QUERY_OPERATIONS) {
        out.extend(
            Op::ALL
                .iter()
                .map(|op| op.code())
                .filter(|c| enum_defined(tag::OPERATION, *c, v))
                .map(|c| reader::enumeration(tag::OPERATION, c)),
        );
    }
    if asked(qf::QUERY_OBJECTS) {
        out.extend(
            OBJECT_TYPES
                .iter()
                .filter(|t| enum_defined(tag::OBJECT_TYPE, **t, v))
                .filter(|t| **t != TEMPLATE || !ctx.v2())
                .map(|t| reader::enumeration(tag::OBJECT_TYPE, *t)),
        );
    }
    if asked(qf::QUERY_SERVER_INFORMATION) {
        out.push(reader::text(
            tag::VENDOR_IDENTIFICATION,
            ctx.config.vendor.clone(),
        ));
        let info = vec![
            reader::text(tag::SERVER_NAME, ctx.config.server_name.clone()),
            reader::text(tag::SERVER_VERSION, env!("CARGO_PKG_VERSION")),
            reader::text(tag::PRODUCT_NAME, "kmipd"),
        ];
        out.push(reader::structure(
            tag::SERVER_INFORMATION,
            defined_only(info, v),
        ));
    }
    // Application Namespaces, Extension List/Map, Attestation Types: none offered.
    if asked(qf::QUERY_RNGS) {
        out.push(reader::structure(
            tag::RNG_PARAMETERS,
            vec![reader::enumeration(
                tag::RNG_ALGORITHM,
                rng_algorithm::UNSPECIFIED,
            )],
        ));
    }
    // Profiles, Validations: none claimed.
    if asked(qf::QUERY_CAPABILITIES) {
        let caps = vec![
            reader::boolean(tag::STREAMING_CAPABILITY, false),
            reader::boolean(tag::ASYNCHRONOUS_CAPABILITY, false),
            reader::boolean(tag::ATTESTATION_CAPABILITY, false),
            reader::boolean(tag::BATCH_UNDO_CAPABILITY, true),
            reader::boolean(tag::BATCH_CONTINUE_CAPABILITY, true),
            reader::enumeration(tag::UNWRAP_MODE, unwrap_mode::UNSPECIFIED),
            reader::enumeration(
                tag::DESTROY_ACTION,
                destroy_action_type::KEY_MATERIAL_DELETED,
            ),
            reader::enumeration(tag::SHREDDING_ALGORITHM, shredding_algorithm::UNSUPPORTED),
            reader::enumeration(tag::RNG_MODE, rng_mode::UNSPECIFIED),
            reader::boolean(tag::QUANTUM_SAFE_CAPABILITY, false),
        ];
        out.push(reader::structure(
            tag::CAPABILITY_INFORMATION,
            defined_only(caps, v),
        ));
    }
    // Client Registration Methods: none.
    if asked(qf::QUERY_DEFAULTS_INFORMATION) {
        out.push(reader::structure(tag::DEFAULTS_INFORMATION, Vec::new()));
    }
    if asked(qf::QUERY_STORAGE_PROTECTION_MASKS) {
        out.push(reader::structure(
            tag::PROTECTION_STORAGE_MASKS,
            vec![reader::int(
                tag::PROTECTION_STORAGE_MASK,
                i32::try_from(psm::SOFTWARE | psm::ON_SYSTEM).unwrap_or(0),
            )],
        ));
    }
    Ok(Some(reader::structure(
        tag::RESPONSE_PAYLOAD,
        defined_only(out, v),
    )))
}

/// True when `version` defines `value` of the enumeration that `t` takes.
fn enum_defined(t: Tag, value: u32, version: Version) -> bool {
    spec::enum_of_tag(t.value())
        .and_then(|e| e.entry(value))
        .is_some_and(|e| e.defined_in(version))
}

/// The items whose tags `version` defines.
fn defined_only(items: Vec<Ttlv>, version: Version) -> Vec<Ttlv> {
    items
        .into_iter()
        .filter(|i| spec::tag_by_value(i.tag.value()).is_some_and(|d| d.defined_in(version)))
        .collect()
}
