//! Encrypt and Decrypt (KMIP 1.4 §4.29-4.30, 2.1 §6.1.18/§6.1.12), shared by both operation
//! files: they differ only in direction, the usage-mask bit and the fields of the answer.
//!
//! - Parameters: the request's Cryptographic Parameters, completed by the key's attribute.
//! - Symmetric keys (AES, ChaCha20, ChaCha20-Poly1305): see `crypto::sym`. Without an IV the
//!   server makes one for encryption and returns it; decryption without one is Invalid
//!   Message (CS-BC-M-11..13).
//! - RSA keys: OAEP or PKCS#1 v1.5 (`crypto::asym`), single-part only.
//! - One Time Pads (Secret Data): `operations::one_time_pad`.
//! - Streaming (Init Indicator / Correlation Value / Final Indicator): the symmetric cipher
//!   runs on between the requests (`operations::streaming`, `crate::streams`,
//!   `crypto::stream`). Each part answers the output its data completes (no Data item when
//!   there is none); the first part's IV, AAD and parameters hold for the whole stream.

use kmipd_proto::build;
use kmipd_proto::enums::{
    cryptographic_algorithm as alg, cryptographic_usage_mask as mask, operation as op,
};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;
use zeroize::Zeroizing;

use super::asym;
use super::params::Params;
use super::stream::{Engine, State};
use super::sym::{self, Dir, Job, Running};
use super::usage::{self, Key, Use};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::object::uid_item;
use crate::operations::streaming::{self, Step};
use crate::streams::{MAX_HELD_BYTES, Stream};

/// Handles Encrypt (`Dir::Encrypt`) or Decrypt (`Dir::Decrypt`).
pub(crate) fn handle(ctx: &mut Ctx<'_>, payload: &Ttlv, dir: Dir) -> Result<Option<Ttlv>> {
    let r = StructReader::any(payload)?;
    let (operation, bit, how) = match dir {
        Dir::Encrypt => (op::ENCRYPT, mask::ENCRYPT, Use::Protect),
        Dir::Decrypt => (op::DECRYPT, mask::DECRYPT, Use::Process),
    };
    let step = streaming::step(ctx, &r, operation)?;
    let prior = step.stream();
    let key = streaming::key(ctx, &r, prior, bit, how)?;
    let data = streaming::data(&r)?;
    if dir == Dir::Encrypt {
        usage::consume(ctx, &key, data.len())?;
    }
    if let Step::Continue {
        value,
        stream,
        last,
    } = step
    {
        return continue_stream(ctx, &r, &key, data, (value, stream, last));
    }
    let uid = key.obj.uid.clone();
    let params = Params::in_request(&r)?.or(&key.params);
    let mut out = vec![uid_item(&uid)];
    let algorithm = key.algorithm.or(params.cryptographic_algorithm).ok_or(
        Error::BadCryptographicParameters("no Cryptographic Algorithm"),
    )?;

    if algorithm == alg::ONE_TIME_PAD {
        if matches!(step, Step::Open) {
            return Err(Error::FeatureNotSupported("streamed One Time Pad"));
        }
        let result = crate::operations::one_time_pad::crypt(&key.material, data)?;
        out.push(build::bytes(tag::DATA, result.to_vec()));
        return Ok(Some(build::structure(tag::RESPONSE_PAYLOAD, out)));
    }
    if algorithm == alg::RSA {
        if matches!(step, Step::Open) {
            return Err(Error::FeatureNotSupported("streamed RSA encryption"));
        }
        let result = match dir {
            Dir::Encrypt => asym::rsa_encrypt(&key.material, &params, data)?,
            Dir::Decrypt => asym::rsa_decrypt(&key.material, &params, data)?.to_vec(),
        };
        out.push(build::bytes(tag::DATA, result));
        return Ok(Some(build::structure(tag::RESPONSE_PAYLOAD, out)));
    }

    let (kind, cipher) = sym::select(algorithm, key.material.len(), &params)?;
    let pad = sym::wants_padding(&params)?;
    let client_iv = r.bytes(tag::IV_COUNTER_NONCE)?;
    let (iv, generated) = match dir {
        Dir::Encrypt => sym::encryption_iv(kind, client_iv)?,
        Dir::Decrypt => (client_iv.map(<[u8]>::to_vec), false),
    };
    let aad = r
        .bytes(tag::AUTHENTICATED_ENCRYPTION_ADDITIONAL_DATA)?
        .unwrap_or_default();
    let tag_len = match params.tag_length {
        Some(t) => usize::try_from(t).map_err(|_| Error::GeneralFailure("invalid tag length"))?,
        None => 16,
    };
    let job = Job {
        dir,
        kind,
        cipher,
        pad,
        iv: iv.as_deref(),
        aad,
        tag_len,
        tag: r.bytes(tag::AUTHENTICATED_ENCRYPTION_TAG)?,
    };
    let generated_iv = if generated { iv.clone() } else { None };

    if matches!(step, Step::Open) {
        let mut running = Running::start(&job, &key.material)?;
        let output = running.update(data)?;
        let mut state = State::new(Engine::Cipher(running), params);
        // A tag sent before the last part is kept for it.
        state.expected = job.tag.map(<[u8]>::to_vec);
        let output = hold(&mut state, output)?;
        let value = streaming::open(ctx, operation, Some(&uid), state)?;
        if !output.is_empty() {
            out.push(build::bytes(tag::DATA, output.to_vec()));
        }
        if let Some(iv) = generated_iv {
            out.push(build::bytes(tag::IV_COUNTER_NONCE, iv));
        }
        out.push(streaming::correlation_item(value));
        return Ok(Some(build::structure(tag::RESPONSE_PAYLOAD, out)));
    }

    let o = sym::run(&job, &key.material, data, true)?;
    out.push(build::bytes(tag::DATA, o.data.to_vec()));
    if let Some(iv) = generated_iv {
        out.push(build::bytes(tag::IV_COUNTER_NONCE, iv));
    }
    if let Some(t) = o.tag {
        out.push(build::bytes(tag::AUTHENTICATED_ENCRYPTION_TAG, t));
    }
    Ok(Some(build::structure(tag::RESPONSE_PAYLOAD, out)))
}

/// What a part answers now: `output`, or nothing when the stream holds its output back until
/// the tag is checked (AEAD decryption), within [`MAX_HELD_BYTES`].
fn hold(state: &mut State, output: Zeroizing<Vec<u8>>) -> Result<Zeroizing<Vec<u8>>> {
    let holds = matches!(&state.engine, Engine::Cipher(c) if c.aead_decrypt());
    if !holds {
        return Ok(output);
    }
    if state.held.len().saturating_add(output.len()) > MAX_HELD_BYTES {
        return Err(Error::InvalidField(
            "an authenticated decryption stream longer than this server holds",
        ));
    }
    state.held.extend_from_slice(&output);
    Ok(Zeroizing::new(Vec::new()))
}

/// A later part of a stream (the last one with `last`).
fn continue_stream(
    ctx: &mut Ctx<'_>,
    r: &StructReader<'_>,
    key: &Key,
    data: &[u8],
    (value, mut stream, last): (Vec<u8>, Box<Stream>, bool),
) -> Result<Option<Ttlv>> {
    if let Some(t) = r.bytes(tag::AUTHENTICATED_ENCRYPTION_TAG)? {
        stream.state.expected = Some(t.to_vec());
    }
    let Engine::Cipher(running) = &mut stream.state.engine else {
        return Err(Error::Internal(
            "an Encrypt/Decrypt stream without a cipher",
        ));
    };
    let output = running.update(data)?;
    let mut tag_out = None;
    let output = if last {
        let done = running.finish(stream.state.expected.as_deref())?;
        tag_out = done.tag;
        let mut all = Zeroizing::new(std::mem::take(&mut *stream.state.held));
        all.extend_from_slice(&output);
        all.extend_from_slice(&done.data);
        all
    } else {
        hold(&mut stream.state, output)?
    };
    let mut out = vec![uid_item(&key.obj.uid)];
    if !output.is_empty() {
        out.push(build::bytes(tag::DATA, output.to_vec()));
    }
    if let Some(t) = tag_out {
        out.push(build::bytes(tag::AUTHENTICATED_ENCRYPTION_TAG, t));
    }
    if !last {
        out.push(streaming::correlation_item(value.clone()));
    }
    streaming::advance(ctx, value, stream, last);
    Ok(Some(build::structure(tag::RESPONSE_PAYLOAD, out)))
}
