//! Encrypt and Decrypt (KMIP 1.4 §4.29-4.30, 2.1 §6.1.18/§6.1.12), shared by both operation
//! files: they differ only in direction, the usage-mask bit and the fields of the answer.
//!
//! - Parameters: the request's Cryptographic Parameters, completed by the key's attribute.
//! - Symmetric keys (AES, ChaCha20, ChaCha20-Poly1305): see `crypto::sym`. Without an IV the
//!   server makes one for encryption and returns it; decryption without one is Invalid
//!   Message (CS-BC-M-11..13).
//! - RSA keys: OAEP or PKCS#1 v1.5 (`crypto::asym`).
//! - Streaming (Init Indicator / Correlation Value / Final Indicator): `crypto::stream`.

use kmipd_proto::build;
use kmipd_proto::enums::{cryptographic_algorithm as alg, cryptographic_usage_mask as mask};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use super::asym;
use super::params::Params;
use super::stream::{self, Stream};
use super::sym::{self, Dir, Job};
use super::usage::{self, Use};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::object::uid_item;

/// Handles Encrypt (`Dir::Encrypt`) or Decrypt (`Dir::Decrypt`).
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv, dir: Dir) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let correlation = r.bytes(tag::CORRELATION_VALUE)?;
    let init = r.boolean(tag::INIT_INDICATOR)?.unwrap_or(false);
    let fin = r.boolean(tag::FINAL_INDICATOR)?.unwrap_or(false);
    let (bit, how) = match dir {
        Dir::Encrypt => (mask::ENCRYPT, Use::Protect),
        Dir::Decrypt => (mask::DECRYPT, Use::Process),
    };
    // A continuation names its stream, whose key is the stream's.
    let prior = match correlation {
        Some(c) if !init => Some(stream::get(c)?),
        _ => None,
    };
    let key = match &prior {
        Some(s) => {
            let named = build::structure(tag::REQUEST_PAYLOAD, vec![uid_item(&s.uid)]);
            usage::load(ctx, &StructReader::any(&named)?, bit, how)?
        }
        None => usage::load(ctx, &r, bit, how)?,
    };
    let req_params = Params::in_request(&r)?;
    let params = match &prior {
        Some(s) => req_params.or(&s.params),
        None => req_params.or(&key.params),
    };
    let data = r.bytes(tag::DATA)?.unwrap_or_default();
    let uid = key.obj.uid.clone();
    let mut out = vec![uid_item(&uid)];
    let algorithm = key.algorithm.or(params.cryptographic_algorithm).ok_or(
        Error::BadCryptographicParameters("no Cryptographic Algorithm"),
    )?;

    if algorithm == alg::RSA {
        if init || correlation.is_some() {
            return Err(Error::FeatureNotSupported("streamed RSA encryption"));
        }
        let result = match dir {
            Dir::Encrypt => {
                usage::consume(ctx, &key, data.len())?;
                asym::rsa_encrypt(&key.material, &params, data)?
            }
            Dir::Decrypt => asym::rsa_decrypt(&key.material, &params, data)?.to_vec(),
        };
        out.push(build::bytes(tag::DATA, result));
        return Ok(Some(build::structure(tag::RESPONSE_PAYLOAD, out)));
    }

    let (kind, cipher) = sym::select(algorithm, key.material.len(), &params)?;
    let pad = sym::wants_padding(&params)?;
    if dir == Dir::Encrypt {
        usage::consume(ctx, &key, data.len())?;
    }
    // The IV, AAD and tag length of a stream are those of its first request.
    let (iv, generated, aad) = match &prior {
        Some(s) => (s.iv.clone(), false, s.aad.clone()),
        None => {
            let client_iv = r.bytes(tag::IV_COUNTER_NONCE)?;
            let (iv, generated) = match dir {
                Dir::Encrypt => sym::encryption_iv(kind, client_iv)?,
                Dir::Decrypt => (client_iv.map(<[u8]>::to_vec), false),
            };
            let aad = r
                .bytes(tag::AUTHENTICATED_ENCRYPTION_ADDITIONAL_DATA)?
                .unwrap_or_default()
                .to_vec();
            (iv, generated, aad)
        }
    };
    let tag_len = match params.tag_length {
        Some(t) => usize::try_from(t).map_err(|_| Error::GeneralFailure("invalid tag length"))?,
        None => 16,
    };
    let tag_in = r.bytes(tag::AUTHENTICATED_ENCRYPTION_TAG)?;
    let job = Job {
        dir,
        kind,
        cipher,
        pad,
        iv: iv.as_deref(),
        aad: &aad,
        tag_len,
        tag: tag_in,
    };

    let streaming = init || prior.is_some();
    let (data_out, tag_out) = if streaming {
        let mut s = match prior {
            Some(s) => s,
            None => Stream::new(uid.clone(), dir, params.clone(), iv.clone(), aad.clone()),
        };
        if s.dir != dir {
            return Err(Error::InvalidField(
                "Correlation Value of another operation",
            ));
        }
        s.input.extend_from_slice(data);
        let o = sym::run(&job, &key.material, &s.input, fin)?;
        let fresh = o.data.get(s.sent..).unwrap_or_default().to_vec();
        s.sent = o.data.len();
        if fin {
            if let Some(c) = correlation {
                stream::close(c)?;
            }
        } else {
            let id = match correlation {
                Some(c) if !init => {
                    stream::put(c, s)?;
                    c.to_vec()
                }
                _ => stream::open(s)?,
            };
            out.push(build::bytes(tag::DATA, fresh));
            if generated && let Some(iv) = &iv {
                out.push(build::bytes(tag::IV_COUNTER_NONCE, iv.clone()));
            }
            out.push(build::bytes(tag::CORRELATION_VALUE, id));
            return Ok(Some(build::structure(tag::RESPONSE_PAYLOAD, out)));
        }
        (fresh, o.tag)
    } else {
        let o = sym::run(&job, &key.material, data, true)?;
        (o.data.to_vec(), o.tag)
    };
    out.push(build::bytes(tag::DATA, data_out));
    if generated && let Some(iv) = iv {
        out.push(build::bytes(tag::IV_COUNTER_NONCE, iv));
    }
    if let Some(t) = tag_out {
        out.push(build::bytes(tag::AUTHENTICATED_ENCRYPTION_TAG, t));
    }
    Ok(Some(build::structure(tag::RESPONSE_PAYLOAD, out)))
}
