//! One Time Pads (KMIP 1.3+: Cryptographic Algorithm One Time Pad; the TC-OTP cases): a pad is
//! registered as Secret Data whose Cryptographic Algorithm attribute is One Time Pad (Secret
//! Data has no algorithm in its Key Block), and used by the server:
//!
//! - Encrypt and Decrypt with a pad are the Data XOR the pad's first bytes; Data longer than
//!   the pad is refused (Invalid Field): a pad is never repeated within a message. Single-part
//!   only (a streamed request is Feature Not Supported). The usual key checks apply (Active or,
//!   for Decrypt, a processing State; the usage mask's Encrypt or Decrypt bit; Usage Limits).
//! - Get and Export never return a pad's key material: a pad that leaves the server can
//!   decrypt every message it protected, so its material stays inside (Permission Denied, as
//!   TC-OTP-4 expects). A pad registered without its material (Key Value Present false) is
//!   returned as registered, without a Key Value (TC-OTP-3).

use kmipd_proto::enums::cryptographic_algorithm as alg;
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::Value;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Whether the object is a One Time Pad (its Cryptographic Algorithm attribute says so).
pub(crate) fn is_pad(obj: &ManagedObject) -> bool {
    obj.attributes.get(tag::CRYPTOGRAPHIC_ALGORITHM) == Some(&Value::Enumeration(alg::ONE_TIME_PAD))
}

/// Encrypts or decrypts `data` with `pad` (the same operation both ways).
pub(crate) fn crypt(pad: &[u8], data: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if data.len() > pad.len() {
        return Err(Error::InvalidField("Data longer than the One Time Pad"));
    }
    Ok(Zeroizing::new(
        data.iter().zip(pad).map(|(d, p)| d ^ p).collect(),
    ))
}

/// Refuses to hand out a pad's key material (Get, Export).
pub(crate) fn check_export(obj: &ManagedObject) -> Result<()> {
    let has_material = obj
        .object
        .as_ref()
        .is_some_and(|body| crate::keyblock::key_block(body).is_ok());
    if is_pad(obj) && has_material {
        return Err(Error::PermissionDenied(
            "a One Time Pad's key material does not leave the server",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pad_encrypts_and_decrypts_by_xor_and_never_repeats() {
        let pad = hex::decode("fc932e1428bd").unwrap();
        let data = hex::decode("010203040506").unwrap();
        let sealed = crypt(&pad, &data).unwrap();
        assert_eq!(hex::encode(&*sealed), "fd912d102dbb");
        assert_eq!(*crypt(&pad, &sealed).unwrap(), data);
        assert_eq!(hex::encode(&*crypt(&pad, &data[..2]).unwrap()), "fd91");
        assert!(matches!(
            crypt(&pad, &[0u8; 7]),
            Err(Error::InvalidField(_))
        ));
    }
}
