//! Cryptographic Parameters (KMIP 1.4 §2.1.? / 2.1 §2.1.?) as one typed value: the request's
//! structure, completed field by field by the key's Cryptographic Parameters attribute.

use kmipd_proto::attributes::Attributes;
use kmipd_proto::reader::{ProtoError, StructReader};
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};

/// The fields of a Cryptographic Parameters structure that the operations use.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Params {
    /// Block Cipher Mode.
    pub(crate) block_cipher_mode: Option<u32>,
    /// Padding Method.
    pub(crate) padding_method: Option<u32>,
    /// Hashing Algorithm.
    pub(crate) hashing_algorithm: Option<u32>,
    /// Digital Signature Algorithm.
    pub(crate) digital_signature_algorithm: Option<u32>,
    /// Cryptographic Algorithm.
    pub(crate) cryptographic_algorithm: Option<u32>,
    /// Random IV.
    pub(crate) random_iv: Option<bool>,
    /// IV Length (bits).
    pub(crate) iv_length: Option<i32>,
    /// Tag Length (bytes).
    pub(crate) tag_length: Option<i32>,
    /// Initial Counter Value.
    pub(crate) initial_counter_value: Option<i32>,
    /// Salt Length (bytes, PSS).
    pub(crate) salt_length: Option<i32>,
    /// Mask Generator (MGF1).
    pub(crate) mask_generator: Option<u32>,
    /// Mask Generator Hashing Algorithm.
    pub(crate) mask_generator_hashing_algorithm: Option<u32>,
    /// P Source (the OAEP label).
    pub(crate) p_source: Option<Vec<u8>>,
}

impl Params {
    /// Reads a Cryptographic Parameters structure.
    pub(crate) fn read(item: &Ttlv) -> Result<Params, ProtoError> {
        let r = StructReader::any(item)?;
        Ok(Params {
            block_cipher_mode: r.enumeration(tag::BLOCK_CIPHER_MODE)?,
            padding_method: r.enumeration(tag::PADDING_METHOD)?,
            hashing_algorithm: r.enumeration(tag::HASHING_ALGORITHM)?,
            digital_signature_algorithm: r.enumeration(tag::DIGITAL_SIGNATURE_ALGORITHM)?,
            cryptographic_algorithm: r.enumeration(tag::CRYPTOGRAPHIC_ALGORITHM)?,
            random_iv: r.boolean(tag::RANDOM_IV)?,
            iv_length: r.int(tag::IV_LENGTH)?,
            tag_length: r.int(tag::TAG_LENGTH)?,
            initial_counter_value: r.int(tag::INITIAL_COUNTER_VALUE)?,
            salt_length: r.int(tag::SALT_LENGTH)?,
            mask_generator: r.enumeration(tag::MASK_GENERATOR)?,
            mask_generator_hashing_algorithm: r
                .enumeration(tag::MASK_GENERATOR_HASHING_ALGORITHM)?,
            p_source: r.bytes(tag::P_SOURCE)?.map(<[u8]>::to_vec),
        })
    }

    /// Reads the value of a Cryptographic Parameters attribute (a structure value).
    pub(crate) fn from_value(v: &Value) -> Result<Params, ProtoError> {
        Params::read(&Ttlv::new(tag::CRYPTOGRAPHIC_PARAMETERS, v.clone()))
    }

    /// The Cryptographic Parameters field of a request (or of a structure such as Derivation
    /// Parameters); every field absent when the request has none.
    pub(crate) fn in_request(r: &StructReader<'_>) -> Result<Params, ProtoError> {
        match r.optional(tag::CRYPTOGRAPHIC_PARAMETERS) {
            Some(item) => Params::read(item),
            None => Ok(Params::default()),
        }
    }

    /// An object's Cryptographic Parameters attribute; every field absent when it has none.
    pub(crate) fn of_object(attributes: &Attributes) -> Result<Params, ProtoError> {
        match attributes.get(tag::CRYPTOGRAPHIC_PARAMETERS) {
            Some(v) => Params::from_value(v),
            None => Ok(Params::default()),
        }
    }

    /// These parameters, with every absent field taken from `fallback`.
    pub(crate) fn or(self, fallback: &Params) -> Params {
        let f = fallback.clone();
        Params {
            block_cipher_mode: self.block_cipher_mode.or(f.block_cipher_mode),
            padding_method: self.padding_method.or(f.padding_method),
            hashing_algorithm: self.hashing_algorithm.or(f.hashing_algorithm),
            digital_signature_algorithm: self
                .digital_signature_algorithm
                .or(f.digital_signature_algorithm),
            cryptographic_algorithm: self.cryptographic_algorithm.or(f.cryptographic_algorithm),
            random_iv: self.random_iv.or(f.random_iv),
            iv_length: self.iv_length.or(f.iv_length),
            tag_length: self.tag_length.or(f.tag_length),
            initial_counter_value: self.initial_counter_value.or(f.initial_counter_value),
            salt_length: self.salt_length.or(f.salt_length),
            mask_generator: self.mask_generator.or(f.mask_generator),
            mask_generator_hashing_algorithm: self
                .mask_generator_hashing_algorithm
                .or(f.mask_generator_hashing_algorithm),
            p_source: self.p_source.or(f.p_source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmipd_proto::build;
    use kmipd_proto::enums::{block_cipher_mode, padding_method};

    #[test]
    fn request_fields_win_and_absent_ones_come_from_the_key() {
        let req = Params::read(&build::structure(
            tag::CRYPTOGRAPHIC_PARAMETERS,
            vec![build::int(tag::TAG_LENGTH, 12)],
        ))
        .unwrap();
        let key = Params {
            block_cipher_mode: Some(block_cipher_mode::GCM),
            tag_length: Some(16),
            padding_method: Some(padding_method::NONE),
            ..Params::default()
        };
        let p = req.or(&key);
        assert_eq!(p.tag_length, Some(12));
        assert_eq!(p.block_cipher_mode, Some(block_cipher_mode::GCM));
        assert_eq!(p.padding_method, Some(padding_method::NONE));
    }
}
