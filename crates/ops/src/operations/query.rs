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
//! - Application Namespaces, Extension List/Map, Attestation Types, Validations: none (no
//!   namespaces, extensions, attestation or formal validation are offered).
//! - Profiles (1.3+): the server profiles in [`profiles`], named as the request's version names
//!   them. A profile is claimed when the conformance runner passes every mandatory OASIS case of
//!   it for that version and kmipd implements every operation those cases use. Never claimed:
//!   transport and encoding profiles (Baseline Server Basic/TLS v1.2 of 1.x, which are defined
//!   by their TLS authentication suite; HTTPS, JSON, XML; Suite B minLOS): the engine has no
//!   transport, so they are for the server binary to claim; Complete Server (kmipd does not do
//!   everything); Quantum Safe (its QS-M-1 case lists Adjust Attribute, Import, Export and Set
//!   Endpoint Role, which kmipd lacks; the runner passes it only because it does not compare a
//!   Query answer's content); PKCS#11 (no PKCS#11 operation).
//! - RNGs: one RNG Parameters describing the generator of all key material and RNG Retrieve,
//!   OpenSSL's SP 800-90A CTR_DRBG with AES-256 (`crypto::keygen::rng_parameters`; the same
//!   structure is the Random Number Generator attribute of generated objects).
//! - Capabilities: streamed cryptography (`crate::streams`); no asynchronous operations or
//!   attestation; batch Undo and Continue supported; Destroy deletes the key material and keeps the metadata; no shredding;
//!   RNG Mode Shared Instantiation (every client draws from the same OpenSSL DRBG instances).
//! - Client Registration Methods: Server Pre-Generated (client certificates and keys are
//!   issued by `kmipd init`; clients are then identified by those certificates in TLS).
//! - Defaults Information (2.x): an empty structure (no Object Defaults are promised).
//! - Storage Protection Masks (2.x): Software | On System (keys live in the server's memory).

use kmipd_proto::build;
use kmipd_proto::enums::{
    client_registration_method, destroy_action_type, object_type as ot, profile_name as pn,
    protection_storage_mask as psm, query_function as qf, rng_mode, shredding_algorithm,
    unwrap_mode,
};
use kmipd_proto::reader::{StructReader, as_enum};
use kmipd_proto::spec::{self, Version};
use kmipd_proto::tag;
use kmipd_ttlv::{Tag, Ttlv};

use crate::context::Ctx;
use crate::crypto::keygen;
use crate::dispatch::Op;
use crate::error::{Error, Result};

/// The object types kmipd stores (Query Objects), in Object Type order. Template (6) is a 1.x
/// object only (2.x renamed the value Reserved), listed for 1.x requests alone.
pub(crate) const OBJECT_TYPES: [u32; 9] = [
    ot::CERTIFICATE,
    ot::SYMMETRIC_KEY,
    ot::PUBLIC_KEY,
    ot::PRIVATE_KEY,
    ot::SPLIT_KEY,
    TEMPLATE,
    ot::SECRET_DATA,
    ot::OPAQUE_OBJECT,
    ot::PGP_KEY,
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
                .map(|c| build::enumeration(tag::OPERATION, c)),
        );
    }
    if asked(qf::QUERY_OBJECTS) {
        out.extend(
            OBJECT_TYPES
                .iter()
                .filter(|t| enum_defined(tag::OBJECT_TYPE, **t, v))
                .filter(|t| **t != TEMPLATE || !ctx.v2())
                .map(|t| build::enumeration(tag::OBJECT_TYPE, *t)),
        );
    }
    if asked(qf::QUERY_SERVER_INFORMATION) {
        out.push(build::text(
            tag::VENDOR_IDENTIFICATION,
            ctx.config.vendor.clone(),
        ));
        let info = vec![
            build::text(tag::SERVER_NAME, ctx.config.server_name.clone()),
            build::text(tag::SERVER_VERSION, env!("CARGO_PKG_VERSION")),
            build::text(tag::PRODUCT_NAME, "kmipd"),
        ];
        out.push(build::structure(
            tag::SERVER_INFORMATION,
            defined_only(info, v),
        ));
    }
    // Application Namespaces, Extension List/Map, Attestation Types: none offered.
    if asked(qf::QUERY_RNGS) {
        out.push(build::structure(
            tag::RNG_PARAMETERS,
            defined_only(keygen::rng_parameters(), v),
        ));
    }
    // Validations: none claimed.
    if asked(qf::QUERY_PROFILES) {
        out.extend(
            profiles(v)
                .iter()
                .filter(|p| enum_defined(tag::PROFILE_NAME, **p, v))
                .map(|p| {
                    build::structure(
                        tag::PROFILE_INFORMATION,
                        vec![build::enumeration(tag::PROFILE_NAME, *p)],
                    )
                }),
        );
    }
    if asked(qf::QUERY_CAPABILITIES) {
        let caps = vec![
            build::boolean(tag::STREAMING_CAPABILITY, true),
            build::boolean(tag::ASYNCHRONOUS_CAPABILITY, false),
            build::boolean(tag::ATTESTATION_CAPABILITY, false),
            build::boolean(tag::BATCH_UNDO_CAPABILITY, true),
            build::boolean(tag::BATCH_CONTINUE_CAPABILITY, true),
            build::enumeration(tag::UNWRAP_MODE, unwrap_mode::UNSPECIFIED),
            build::enumeration(
                tag::DESTROY_ACTION,
                destroy_action_type::KEY_MATERIAL_DELETED,
            ),
            build::enumeration(tag::SHREDDING_ALGORITHM, shredding_algorithm::UNSUPPORTED),
            build::enumeration(tag::RNG_MODE, rng_mode::SHARED_INSTANTIATION),
            build::boolean(tag::QUANTUM_SAFE_CAPABILITY, false),
        ];
        out.push(build::structure(
            tag::CAPABILITY_INFORMATION,
            defined_only(caps, v),
        ));
    }
    if asked(qf::QUERY_CLIENT_REGISTRATION_METHODS) {
        out.push(build::enumeration(
            tag::CLIENT_REGISTRATION_METHOD,
            client_registration_method::SERVER_PRE_GENERATED,
        ));
    }
    if asked(qf::QUERY_DEFAULTS_INFORMATION) {
        out.push(build::structure(tag::DEFAULTS_INFORMATION, Vec::new()));
    }
    if asked(qf::QUERY_STORAGE_PROTECTION_MASKS) {
        out.push(build::structure(
            tag::PROTECTION_STORAGE_MASKS,
            vec![build::int(
                tag::PROTECTION_STORAGE_MASK,
                i32::try_from(psm::SOFTWARE | psm::ON_SYSTEM).unwrap_or(0),
            )],
        ));
    }
    Ok(Some(build::structure(
        tag::RESPONSE_PAYLOAD,
        defined_only(out, v),
    )))
}

/// The server profiles kmipd claims for a request of `version` (see the module documentation
/// for the rule). The conformance runner's results behind each entry, mandatory cases:
/// - 1.3: AKLC-M-1..3, CS-AC-M-1..9, CS-RNG-M-1, OMOS-M-1, SASED-M-1..3, SKFF-M-1..12,
///   SKLC-M-1..3, TL-M-1..3 pass. Not Basic Cryptographic: CS-BC-M-6-13 fails (the Encrypt
///   output differs).
/// - 1.4: the same profiles and CS-BC-M-1..17 (Basic Cryptographic). AX-M-1..2 pass too, but
///   1.4 has no AES XTS profile name.
/// - 2.0 and 2.1 (2.0 answered by the same engine; the 2.0 set lacks BL, SKLC and SKFF-M-1,
///   whose 2.1 cases pass): Baseline, AKLC, AX, CS-AC, CS-BC, CS-RNG, OMOS, SASED, SKFF, SKLC,
///   TL.
///
/// Re-run `kmip-conformance` over `<ver>/profiles/mandatory` before adding a profile here.
fn profiles(version: Version) -> &'static [u32] {
    match version {
        Version::V1_0 | Version::V1_1 | Version::V1_2 | Version::V3_0Draft => &[],
        Version::V1_3 => &[
            pn::SYMMETRIC_KEY_LIFECYCLE_SERVER_KMIP_V1_3,
            pn::SYMMETRIC_KEY_FOUNDRY_SERVER_KMIP_V1_3,
            pn::ASYMMETRIC_KEY_LIFECYCLE_SERVER_KMIP_V1_3,
            pn::ADVANCED_CRYPTOGRAPHIC_SERVER_KMIP_V1_3,
            pn::RNG_CRYPTOGRAPHIC_SERVER_KMIP_V1_3,
            pn::OPAQUE_MANAGED_OBJECT_STORE_SERVER_KMIP_V1_3,
            pn::STORAGE_ARRAY_WITH_SELF_ENCRYPTING_DRIVE_SERVER_KMIP_V1_3,
            pn::TAPE_LIBRARY_SERVER_KMIP_V1_3,
        ],
        Version::V1_4 => &[
            pn::SYMMETRIC_KEY_LIFECYCLE_SERVER_KMIP_V1_4,
            pn::SYMMETRIC_KEY_FOUNDRY_SERVER_KMIP_V1_4,
            pn::ASYMMETRIC_KEY_LIFECYCLE_SERVER_KMIP_V1_4,
            pn::BASIC_CRYPTOGRAPHIC_SERVER_KMIP_V1_4,
            pn::ADVANCED_CRYPTOGRAPHIC_SERVER_KMIP_V1_4,
            pn::RNG_CRYPTOGRAPHIC_SERVER_KMIP_V1_4,
            pn::OPAQUE_MANAGED_OBJECT_STORE_SERVER_KMIP_V1_4,
            pn::STORAGE_ARRAY_WITH_SELF_ENCRYPTING_DRIVE_SERVER_KMIP_V1_4,
            pn::TAPE_LIBRARY_SERVER_KMIP_V1_4,
        ],
        Version::V2_0 | Version::V2_1 => &[
            pn::BASELINE_SERVER,
            pn::SYMMETRIC_KEY_LIFECYCLE_SERVER,
            pn::SYMMETRIC_KEY_FOUNDRY_SERVER,
            pn::ASYMMETRIC_KEY_LIFECYCLE_SERVER,
            pn::BASIC_CRYPTOGRAPHIC_SERVER,
            pn::ADVANCED_CRYPTOGRAPHIC_SERVER,
            pn::RNG_CRYPTOGRAPHIC_SERVER,
            pn::OPAQUE_MANAGED_OBJECT_STORE_SERVER,
            pn::STORAGE_ARRAY_WITH_SELF_ENCRYPTING_DRIVE_SERVER,
            pn::TAPE_LIBRARY_SERVER,
            pn::AES_XTS_SERVER,
        ],
    }
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

#[cfg(test)]
mod tests {
    use kmipd_proto::build;
    use kmipd_proto::enums::{
        client_registration_method, cryptographic_algorithm, drbg_algorithm, operation,
        profile_name as pn, query_function as qf, rng_algorithm, rng_mode,
    };
    use kmipd_proto::reader::StructReader;
    use kmipd_proto::tag;
    use kmipd_ttlv::{Ttlv, Value};

    use crate::Engine;
    use crate::engine::testing::call;

    fn query(version: (i32, i32), functions: &[u32]) -> Vec<Ttlv> {
        let functions = functions
            .iter()
            .map(|f| build::enumeration(tag::QUERY_FUNCTION, *f))
            .collect();
        let (_, reason, payload) = call(&Engine::in_memory(), version, operation::QUERY, functions);
        match payload.map(|p| p.value) {
            Some(Value::Structure(items)) => items,
            _ => panic!("no payload: {reason:?}"),
        }
    }

    fn profiles(v: (i32, i32)) -> Vec<u32> {
        query(v, &[qf::QUERY_PROFILES])
            .iter()
            .map(|p| {
                assert_eq!(p.tag, tag::PROFILE_INFORMATION);
                StructReader::any(p)
                    .unwrap()
                    .req_enum(tag::PROFILE_NAME)
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn profiles_are_the_passed_server_profiles_of_the_request_version() {
        let p13 = profiles((1, 3));
        assert!(p13.contains(&pn::SYMMETRIC_KEY_LIFECYCLE_SERVER_KMIP_V1_3));
        assert!(p13.contains(&pn::TAPE_LIBRARY_SERVER_KMIP_V1_3));
        // CS-BC-M-6-13 fails: no Basic Cryptographic in 1.3.
        assert!(!p13.contains(&pn::BASIC_CRYPTOGRAPHIC_SERVER_KMIP_V1_3));
        let p14 = profiles((1, 4));
        assert!(p14.contains(&pn::BASIC_CRYPTOGRAPHIC_SERVER_KMIP_V1_4));
        assert!(p14.contains(&pn::STORAGE_ARRAY_WITH_SELF_ENCRYPTING_DRIVE_SERVER_KMIP_V1_4));
        let p21 = profiles((2, 1));
        assert!(p21.contains(&pn::BASELINE_SERVER));
        assert!(p21.contains(&pn::AES_XTS_SERVER));
        // Never: transport/encoding profiles, Complete, Quantum Safe, PKCS#11, client profiles.
        for p in [&p13, &p14, &p21] {
            for never in [
                pn::BASELINE_SERVER_BASIC_KMIP_V1_3,
                pn::BASELINE_SERVER_TLS_V1_2_KMIP_V1_4,
                pn::HTTPS_SERVER_KMIP_V1_4,
                pn::XML_SERVER,
                pn::SUITE_B_MIN_LOS_128_SERVER_KMIP_V1_4,
                pn::COMPLETE_SERVER,
                pn::QUANTUM_SAFE_SERVER,
                pn::PKCS_11_SERVER,
                pn::SYMMETRIC_KEY_LIFECYCLE_CLIENT,
            ] {
                assert!(!p.contains(&never), "{never:#x}");
            }
        }
        // Only the request's own version's names.
        assert!(p14.iter().all(|v| !p13.contains(v)));
    }

    #[test]
    fn rngs_describe_openssl_ctr_drbg_and_the_registration_method_is_pre_generated() {
        let out = query(
            (1, 4),
            &[
                qf::QUERY_RNGS,
                qf::QUERY_CAPABILITIES,
                qf::QUERY_CLIENT_REGISTRATION_METHODS,
            ],
        );
        let rng = StructReader::any(&out[0]).unwrap();
        assert_eq!(
            rng.req_enum(tag::RNG_ALGORITHM).unwrap(),
            rng_algorithm::DRBG
        );
        assert_eq!(
            rng.req_enum(tag::DRBG_ALGORITHM).unwrap(),
            drbg_algorithm::CTR
        );
        assert_eq!(
            rng.req_enum(tag::CRYPTOGRAPHIC_ALGORITHM).unwrap(),
            cryptographic_algorithm::AES
        );
        assert_eq!(rng.req_int(tag::CRYPTOGRAPHIC_LENGTH).unwrap(), 256);
        let caps = StructReader::any(&out[1]).unwrap();
        assert_eq!(
            caps.req_enum(tag::RNG_MODE).unwrap(),
            rng_mode::SHARED_INSTANTIATION
        );
        assert_eq!(out[2].tag, tag::CLIENT_REGISTRATION_METHOD);
        assert_eq!(
            out[2].value,
            Value::Enumeration(client_registration_method::SERVER_PRE_GENERATED)
        );
        // The Random Number Generator attribute of generated keys says the same.
        assert_eq!(
            Value::Structure(crate::crypto::keygen::rng_parameters()),
            out[0].value
        );
    }
}
