//! Create (KMIP 1.4 §4.1, 2.1 §6.1.12): the server generates a Symmetric Key (or, 1.4/2.x,
//! Secret Data, a Password unless the request names another Secret Data Type) from the OS CSPRNG with the request's attributes, Pre-Active unless an
//! Activation Date in the past was given; its Unique Identifier becomes the ID Placeholder.
//!
//! Cryptographic Algorithm and Length are required (Invalid Field in 1.x, Missing Data in 2.x
//! when absent; Invalid Field when the pair makes no key). Other object types: Invalid Field.
//! 2.x: a Name already in use is Non-Unique Name Attribute; QuantumSafe that cannot be
//! honoured is General Failure (2.1 QS-M-2).

use kmipd_proto::build;
use kmipd_proto::enums::{object_type as ot, secret_data_type, unique_identifier as uid_kind};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::attrs;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::object::{attr_int, new_object, uid_item};
use crate::objects::{self, keys, template};

/// Handles Create.
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let object_type = r.req_enum(tag::OBJECT_TYPE)?;
    let mut attrs = objects::request_attributes(ctx, &r, tag::TEMPLATE_ATTRIBUTE, tag::ATTRIBUTES)?;
    let object = match object_type {
        ot::SYMMETRIC_KEY => {
            let (algorithm, bits) = keys::algorithm_and_length(&attrs)?;
            keys::check_quantum_safe(&attrs, algorithm, bits)?;
            keys::new_symmetric(algorithm, bits)?.0
        }
        ot::SECRET_DATA => {
            let bits = attr_int(&attrs, tag::CRYPTOGRAPHIC_LENGTH);
            // Without a Secret Data Type, a Password: the spec's example of Secret Data
            // ("a shared secret value that is not a key or certificate (e.g., a password)",
            // 2.1 §2.2.7), and what the Test Cases notes' TC-CREATE-SD-1 expects.
            let kind = keys::secret_data_type(&attrs, secret_data_type::PASSWORD);
            keys::new_secret_data(bits, kind)?
        }
        _ => return Err(Error::InvalidField("Object Type")),
    };
    attrs::check_names_free(ctx, attrs.name_values())?;
    template::server_defaults(&mut attrs, object_type, &object, true);
    let mut obj = new_object(ctx, object_type, Some(object), attrs)?;
    template::finish(ctx, &mut obj)?;
    let uid = obj.uid.clone();
    ctx.tx.put(obj);
    ctx.set_placeholder(&uid);
    ctx.produced(uid_kind::CREATE, &uid);
    Ok(Some(build::structure(
        tag::RESPONSE_PAYLOAD,
        vec![
            build::enumeration(tag::OBJECT_TYPE, object_type),
            uid_item(&uid),
        ],
    )))
}
