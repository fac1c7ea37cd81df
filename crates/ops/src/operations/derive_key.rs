//! Derive Key (KMIP 1.4 §4.6, 2.1 §6.1.14): a new Symmetric Key or Secret Data whose material is
//! computed from existing objects (the *base objects*, each named by a Unique Identifier; the ID
//! Placeholder is never used for them), a Derivation Method and Derivation Parameters. The new
//! object gets the request's attributes, a Derivation Base Object link to each base object, and
//! each base object a Derived Key link to it; its identifier becomes the ID Placeholder.
//!
//! Base objects must be Active, have Derive Key in their Cryptographic Usage Mask (an object
//! without a mask has no Derive Key bit: refused), and hold unwrapped material. Roles, as the
//! specification assigns them: a Symmetric Key is the *derivation key*; a Secret Data object is
//! the *derivation data* (giving Derivation Data as well is Invalid Message); Private and Public
//! Keys serve the Asymmetric Key method.
//!
//! | method | input | PRF / cipher |
//! |---|---|---|
//! | PBKDF2 | password: the Secret Data, the Derivation Data or the key (exactly one); Salt and Iteration Count required | HMAC with the Hashing Algorithm (default SHA-1, PKCS#5's PRF) |
//! | HASH | the key or the derivation data (exactly one) | the Hashing Algorithm |
//! | HMAC | key and derivation data | the key's HMAC algorithm, else the parameters' |
//! | ENCRYPT | key and derivation data; Initialization Vector (absent: zeros) | the key's algorithm, ECB or CBC (see `crypto::kdf::encrypt`) |
//! | HKDF (2.x) | input keying material: the one base object; Salt; info: the Derivation Data | HMAC with the Hashing Algorithm (default SHA-256) |
//! | Asymmetric Key (1.4+) | one EC Private Key and one EC Public Key | ECDH, the raw shared secret |
//!
//! Cryptographic Parameters are those of the Derivation Parameters, each absent field taken
//! from the derivation key's Cryptographic Parameters attribute. The output is the first
//! Cryptographic Length bits of the method's output; a longer length than the method gives is
//! Invalid Field (the specification's "SHALL return an error"). NIST SP 800-108 and AWS
//! Signature Version 4 are Feature Not Supported.

use kmipd_proto::attributes::Attribute;
use kmipd_proto::build;
use kmipd_proto::enums::{
    cryptographic_algorithm as alg, cryptographic_usage_mask as mask, derivation_method as dm,
    hashing_algorithm as ha, key_format_type as kft, link_type, object_type as ot,
    secret_data_type, state, unique_identifier as uid_kind,
};
use kmipd_proto::reader::{self, ProtoError, StructReader};
use kmipd_proto::spec;
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::{Ttlv, Value};
use zeroize::Zeroizing;

use crate::attrs;
use crate::context::Ctx;
use crate::crypto::kdf;
use crate::crypto::params::Params;
use crate::error::{Error, Result};
use crate::keyblock::{key_block, object_body};
use crate::object::{
    apply_dates, attr_int, current_state, new_object, touch, uid_payload, uid_value,
};
use crate::objects::{self, keys, template};

/// The largest derived object, in bytes (8192 bits).
const MAX_OUTPUT: usize = 1024;

/// A base object, checked and with its material.
struct Base {
    uid: String,
    object_type: u32,
    algorithm: Option<u32>,
    material: Zeroizing<Vec<u8>>,
    params: Params,
}

/// Handles Derive Key.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let object_type = r.req_enum(tag::OBJECT_TYPE)?;
    if !matches!(object_type, ot::SYMMETRIC_KEY | ot::SECRET_DATA) {
        return Err(Error::InvalidField("Object Type"));
    }
    let method = r.req_enum(tag::DERIVATION_METHOD)?;
    let defined = spec::enum_of_tag(tag::DERIVATION_METHOD.value())
        .and_then(|e| e.entry(method))
        .is_some_and(|e| e.defined_in(ctx.spec));
    if !defined {
        return Err(Error::InvalidField("Derivation Method"));
    }
    let dp = StructReader::new(
        r.required(tag::DERIVATION_PARAMETERS)?,
        tag::DERIVATION_PARAMETERS,
    )?;
    let mut attrs = objects::request_attributes(ctx, &r, tag::TEMPLATE_ATTRIBUTE, tag::ATTRIBUTES)?;
    let (algorithm, bits, out_len) = output_size(object_type, &attrs)?;

    let mut bases = Vec::new();
    for item in r.repeated(tag::UNIQUE_IDENTIFIER) {
        if ctx.v2() && item.value == Value::Enumeration(uid_kind::ID_PLACEHOLDER) {
            return Err(Error::InvalidField(
                "Derive Key does not take the ID Placeholder",
            ));
        }
        let uid = uid_value(ctx, item)?;
        if bases.iter().any(|b: &Base| b.uid == uid) {
            return Err(Error::InvalidField("a base object is named twice"));
        }
        bases.push(base(ctx, &uid)?);
    }
    if bases.is_empty() {
        return Err(ProtoError::Missing(tag::UNIQUE_IDENTIFIER).into());
    }
    let material = derive(method, &dp, &bases, out_len)?;

    let object = match object_type {
        ot::SYMMETRIC_KEY => build::structure(
            tag::SYMMETRIC_KEY,
            vec![build::byte_key_block(
                kft::RAW,
                material.to_vec(),
                Some((
                    algorithm.ok_or(Error::Internal("symmetric key without algorithm"))?,
                    bits,
                )),
            )],
        ),
        _ => keys::secret_data(
            keys::secret_data_type(&attrs, secret_data_type::SEED),
            &material,
        ),
    };
    attrs::check_names_free(ctx, attrs.name_values())?;
    // Not generated: the material comes from the base objects, not from the RNG.
    template::server_defaults(&mut attrs, object_type, &object, false);
    for b in &bases {
        attrs.add(Attribute::std(
            tag::LINK,
            link(link_type::DERIVATION_BASE_OBJECT_LINK, &b.uid),
        ));
    }
    let mut obj = new_object(ctx, object_type, Some(object), attrs)?;
    template::finish(ctx, &mut obj)?;
    let uid = obj.uid.clone();
    ctx.tx.put(obj);
    for b in &bases {
        let mut o = ctx.load(&b.uid)?;
        apply_dates(&mut o, ctx.now);
        o.attributes.add(Attribute::std(
            tag::LINK,
            link(link_type::DERIVED_KEY_LINK, &uid),
        ));
        touch(ctx, &mut o);
        ctx.tx.put(o);
    }
    ctx.set_placeholder(&uid);
    ctx.produced(uid_kind::DERIVE_KEY, &uid);
    Ok(Some(uid_payload(&uid)))
}

/// The new object's Cryptographic Algorithm (keys), Cryptographic Length in bits, and length
/// in bytes. A Symmetric Key needs both attributes and a valid pair; Secret Data a length.
fn output_size(
    object_type: u32,
    attrs: &kmipd_proto::attributes::Attributes,
) -> Result<(Option<u32>, i32, usize)> {
    if object_type == ot::SYMMETRIC_KEY {
        let (algorithm, bits) = keys::algorithm_and_length(attrs)?;
        let len = keys::symmetric_len(algorithm, bits)?;
        let bits = bits.ok_or(ProtoError::Missing(tag::CRYPTOGRAPHIC_LENGTH))?;
        if len > MAX_OUTPUT {
            return Err(Error::InvalidField("Cryptographic Length"));
        }
        return Ok((Some(algorithm), bits, len));
    }
    let bits = attr_int(attrs, tag::CRYPTOGRAPHIC_LENGTH)
        .ok_or(ProtoError::Missing(tag::CRYPTOGRAPHIC_LENGTH))?;
    let len = usize::try_from(bits)
        .ok()
        .filter(|b| *b > 0 && b % 8 == 0)
        .map(|b| b / 8)
        .filter(|l| *l <= MAX_OUTPUT)
        .ok_or(Error::InvalidField("Cryptographic Length"))?;
    Ok((None, bits, len))
}

/// Loads and checks one base object.
fn base(ctx: &Ctx<'_>, uid: &str) -> Result<Base> {
    let mut obj = ctx.load(uid)?;
    apply_dates(&mut obj, ctx.now);
    match current_state(&obj) {
        Some(state::ACTIVE) => {}
        Some(state::DESTROYED | state::DESTROYED_COMPROMISED) => return Err(Error::Destroyed),
        _ => {
            return Err(Error::WrongState(
                "a base object of Derive Key must be Active",
            ));
        }
    }
    if !matches!(
        obj.object_type,
        ot::SYMMETRIC_KEY | ot::SECRET_DATA | ot::PRIVATE_KEY | ot::PUBLIC_KEY
    ) {
        return Err(Error::InvalidField(
            "a base object of Derive Key must be a key or Secret Data",
        ));
    }
    let usage = match obj.attributes.get(tag::CRYPTOGRAPHIC_USAGE_MASK) {
        Some(Value::Integer(m)) => u32::from_ne_bytes(m.to_ne_bytes()),
        _ => 0,
    };
    if usage & mask::DERIVE_KEY == 0 {
        return Err(Error::IncompatibleUsageMask);
    }
    let (algorithm, material) = material(&obj)?;
    let params = Params::of_object(&obj.attributes)?;
    Ok(Base {
        uid: uid.to_owned(),
        object_type: obj.object_type,
        algorithm,
        material,
        params,
    })
}

/// The key block's algorithm and material (unwrapped only).
fn material(obj: &ManagedObject) -> Result<(Option<u32>, Zeroizing<Vec<u8>>)> {
    let kb = key_block(object_body(obj)?)?;
    if kb.wrapped {
        return Err(Error::KeyValueNotPresent);
    }
    Ok((kb.algorithm, kb.bytes()?))
}

/// At most one base object of `object_type`.
fn at_most_one(bases: &[Base], object_type: u32) -> Result<Option<&Base>> {
    let mut it = bases.iter().filter(|b| b.object_type == object_type);
    let first = it.next();
    if it.next().is_some() {
        return Err(Error::InvalidField(
            "this Derivation Method takes one base object of each type",
        ));
    }
    Ok(first)
}

/// Computes the derived material.
fn derive(
    method: u32,
    dp: &StructReader<'_>,
    bases: &[Base],
    out_len: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    let request_params = Params::in_request(dp)?;
    let mut data_items = dp.repeated(tag::DERIVATION_DATA);
    let explicit = data_items.next().map(reader::as_bytes).transpose()?;
    if data_items.next().is_some() {
        return Err(Error::InvalidField("Derivation Data is repeated"));
    }

    if method == dm::ASYMMETRIC_KEY {
        return asymmetric(&request_params, bases, out_len);
    }
    if bases
        .iter()
        .any(|b| !matches!(b.object_type, ot::SYMMETRIC_KEY | ot::SECRET_DATA))
    {
        return Err(Error::InvalidField(
            "this Derivation Method takes Symmetric Keys and Secret Data",
        ));
    }
    let key = at_most_one(bases, ot::SYMMETRIC_KEY)?;
    let secret = at_most_one(bases, ot::SECRET_DATA)?;
    let params = match key {
        Some(k) => request_params.or(&k.params),
        None => request_params,
    };

    if method == dm::HKDF {
        // The base object is the input keying material; Derivation Data is the info.
        let ikm = match bases {
            [only] => &only.material,
            _ => {
                return Err(Error::InvalidField("HKDF takes exactly one base object"));
            }
        };
        let hashing = params.hashing_algorithm.unwrap_or(ha::SHA_256);
        let salt = dp.bytes(tag::SALT)?;
        return kdf::hkdf(hashing, ikm, salt, explicit.unwrap_or_default(), out_len);
    }

    // Derivation data: given explicitly or as a Secret Data object, not both.
    let data: Option<&[u8]> = match (explicit, secret) {
        (Some(_), Some(_)) => {
            return Err(Error::InvalidMessage(
                "Derivation Data and a Secret Data object are both given",
            ));
        }
        (Some(d), None) => Some(d),
        (None, Some(s)) => Some(&s.material),
        (None, None) => None,
    };
    let key_material = key.map(|k| &k.material[..]);

    match method {
        dm::PBKDF2 => {
            let password = match (data, key_material) {
                (Some(p), None) | (None, Some(p)) => p,
                (None, None) => return Err(Error::MissingData("the PBKDF2 password")),
                (Some(_), Some(_)) => {
                    return Err(Error::InvalidField(
                        "PBKDF2 takes one password: a key, Secret Data or Derivation Data",
                    ));
                }
            };
            let salt = dp.bytes(tag::SALT)?.ok_or(ProtoError::Missing(tag::SALT))?;
            let iterations = dp
                .int(tag::ITERATION_COUNT)?
                .ok_or(ProtoError::Missing(tag::ITERATION_COUNT))?;
            let iterations =
                u32::try_from(iterations).map_err(|_| Error::InvalidField("Iteration Count"))?;
            let prf = match params.cryptographic_algorithm.and_then(kdf::hmac_hash) {
                Some(h) => h,
                None => params.hashing_algorithm.unwrap_or(ha::SHA_1),
            };
            kdf::pbkdf2(prf, password, salt, iterations, out_len)
        }
        dm::HASH => {
            let input = match (data, key_material) {
                (Some(d), None) | (None, Some(d)) => d,
                (None, None) => return Err(Error::MissingData("Derivation Data")),
                (Some(_), Some(_)) => {
                    return Err(Error::InvalidField(
                        "HASH takes a derivation key or derivation data, not both",
                    ));
                }
            };
            let hashing = params
                .hashing_algorithm
                .ok_or(Error::BadCryptographicParameters("no Hashing Algorithm"))?;
            kdf::hash(hashing, input, out_len)
        }
        dm::HMAC => {
            let k = key.ok_or(Error::InvalidField("HMAC derivation needs a Symmetric Key"))?;
            let data = data.ok_or(Error::MissingData("Derivation Data"))?;
            // The key's own HMAC algorithm wins (the specification ignores the parameters then).
            let hashing = k
                .algorithm
                .and_then(kdf::hmac_hash)
                .or_else(|| params.cryptographic_algorithm.and_then(kdf::hmac_hash))
                .or(params.hashing_algorithm)
                .ok_or(Error::BadCryptographicParameters("no HMAC hash"))?;
            kdf::hmac(hashing, &k.material, data, out_len)
        }
        dm::ENCRYPT => {
            let k = key.ok_or(Error::InvalidField(
                "ENCRYPT derivation needs a Symmetric Key",
            ))?;
            let data = data.ok_or(Error::MissingData("Derivation Data"))?;
            let algorithm = k.algorithm.or(params.cryptographic_algorithm).ok_or(
                Error::BadCryptographicParameters("no Cryptographic Algorithm"),
            )?;
            let iv = dp.bytes(tag::INITIALIZATION_VECTOR)?;
            kdf::encrypt(algorithm, &k.material, &params, iv, data, out_len)
        }
        dm::NIST800_108_C
        | dm::NIST800_108_F
        | dm::NIST800_108_DPI
        | dm::AWS_SIGNATURE_VERSION_4 => Err(Error::FeatureNotSupported("this Derivation Method")),
        _ => Err(Error::InvalidField("Derivation Method")),
    }
}

/// The Asymmetric Key method: ECDH of one Private Key with one Public Key.
fn asymmetric(params: &Params, bases: &[Base], out_len: usize) -> Result<Zeroizing<Vec<u8>>> {
    let (private, public) = match bases {
        [a, b] if a.object_type == ot::PRIVATE_KEY && b.object_type == ot::PUBLIC_KEY => (a, b),
        [a, b] if a.object_type == ot::PUBLIC_KEY && b.object_type == ot::PRIVATE_KEY => (b, a),
        _ => {
            return Err(Error::InvalidField(
                "Asymmetric Key derivation takes one Private Key and one Public Key",
            ));
        }
    };
    match params.cryptographic_algorithm {
        None | Some(alg::ECDH) => kdf::ecdh(&private.material, &public.material, out_len),
        Some(_) => Err(Error::FeatureNotSupported(
            "Asymmetric Key derivation other than ECDH",
        )),
    }
}

/// A Link attribute value.
fn link(kind: u32, uid: &str) -> Value {
    Value::Structure(vec![
        build::enumeration(tag::LINK_TYPE, kind),
        build::text(tag::LINKED_OBJECT_IDENTIFIER, uid),
    ])
}
