//! Reading the Key Block of a stored object (KMIP 1.4 §2.1.3 / 2.1 §2.1.3).
//!
//! Objects are stored as their KMIP structure (`SymmetricKey { KeyBlock { ... } }`,
//! `Certificate { ... }`, ...). This module gives typed access to what the cryptographic
//! operations need: the format, the algorithm, the length and the key material.

use kmipd_proto::reader::{ProtoError, StructReader};
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::Ttlv;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The parts of a Key Block.
#[derive(Debug)]
pub(crate) struct KeyBlock<'a> {
    /// Key Format Type.
    pub(crate) format: u32,
    /// Cryptographic Algorithm, when given.
    pub(crate) algorithm: Option<u32>,
    /// The Key Material item (a Byte String for Raw/Opaque/PKCS#1/PKCS#8/X.509 formats, a
    /// structure for the Transparent formats).
    pub(crate) material: &'a Ttlv,
    /// True when the key is wrapped (Key Wrapping Data present).
    pub(crate) wrapped: bool,
}

impl KeyBlock<'_> {
    /// The key bytes for byte-string formats (Raw, Opaque, PKCS#1, PKCS#8, X.509, ...), or the
    /// Key of a Transparent Symmetric Key.
    pub(crate) fn bytes(&self) -> Result<Zeroizing<Vec<u8>>> {
        if let Ok(b) = kmipd_proto::reader::as_bytes(self.material) {
            return Ok(Zeroizing::new(b.to_vec()));
        }
        let r = StructReader::any(self.material)?;
        match r.bytes(tag::KEY)? {
            Some(k) => Ok(Zeroizing::new(k.to_vec())),
            None => Err(Error::KeyValueNotPresent),
        }
    }
}

/// The object's structure (its key block's parent), when it still has one.
pub(crate) fn object_body(obj: &ManagedObject) -> Result<&Ttlv> {
    obj.object.as_ref().ok_or(Error::KeyValueNotPresent)
}

/// The Key Block of an object structure (Symmetric Key, Private Key, Public Key, Secret Data,
/// Split Key, ...).
pub(crate) fn key_block(object: &Ttlv) -> Result<KeyBlock<'_>> {
    let r = StructReader::any(object)?;
    let kb = r.required(tag::KEY_BLOCK)?;
    let kb = StructReader::new(kb, tag::KEY_BLOCK)?;
    let format = kb.req_enum(tag::KEY_FORMAT_TYPE)?;
    // No Key Value: a key registered without it (Key Value Present false).
    let value = kb
        .optional(tag::KEY_VALUE)
        .ok_or(Error::KeyValueNotPresent)?;
    let material = match &value.value {
        // A wrapped key's Key Value is a Byte String.
        kmipd_ttlv::Value::ByteString(_) => value,
        _ => StructReader::new(value, tag::KEY_VALUE)?
            .optional(tag::KEY_MATERIAL)
            .ok_or(ProtoError::Missing(tag::KEY_MATERIAL))?,
    };
    Ok(KeyBlock {
        format,
        algorithm: kb.enumeration(tag::CRYPTOGRAPHIC_ALGORITHM)?,
        material,
        wrapped: kb.optional(tag::KEY_WRAPPING_DATA).is_some(),
    })
}
