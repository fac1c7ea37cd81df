//! The cryptographic commands: encrypt, decrypt, sign, verify, mac, hash, rng. The server does
//! the work; `kmip` moves the bytes.
//!
//! `encrypt --scheme aes-gcm` (the default) writes IV (12 bytes) || ciphertext || tag
//! (16 bytes), and `decrypt` reads the same; `--scheme rsa-oaep` (SHA-256) writes and reads the
//! bare ciphertext.

use kmipd_client::Client;
use kmipd_proto::build;
use kmipd_proto::enums::{
    cryptographic_algorithm, hashing_algorithm, operation, padding_method, validity_indicator,
};
use kmipd_proto::reader;
use kmipd_proto::tag;
use kmipd_ttlv::{Tag, Ttlv};
use serde_json::json;
use zeroize::Zeroizing;

use crate::cli::{CipherArgs, HashArgs, MacArgs, RngArgs, Scheme, SignArgs, VerifyArgs};
use crate::error::CliError;
use crate::files;
use crate::names;
use crate::output::{self, Mode};

/// The GCM IV length `encrypt` expects from the server and `decrypt` reads back.
const GCM_IV_LEN: usize = 12;
/// The GCM tag length asked for.
const GCM_TAG_LEN: usize = 16;

fn bytes_in(items: &[Ttlv], t: Tag) -> Result<Zeroizing<Vec<u8>>, CliError> {
    items
        .iter()
        .find(|i| i.tag == t)
        .and_then(|i| reader::as_bytes(i).ok())
        .map(|b| Zeroizing::new(b.to_vec()))
        .ok_or_else(|| CliError::Response(format!("no {}", reader::name(t))))
}

fn oaep_parameters() -> Ttlv {
    build::structure(
        tag::CRYPTOGRAPHIC_PARAMETERS,
        vec![
            build::enumeration(tag::PADDING_METHOD, padding_method::OAEP),
            build::enumeration(tag::HASHING_ALGORITHM, hashing_algorithm::SHA_256),
            build::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, cryptographic_algorithm::RSA),
        ],
    )
}

/// Writes `bytes` to `--out` (a file with mode 0600, or `-`: standard output as they are, or
/// in hex in a JSON object with `--json`).
fn emit(out: &std::path::Path, mode: Mode, bytes: &[u8]) -> Result<(), CliError> {
    if mode == Mode::Json && out == std::path::Path::new("-") {
        output::print_json(&json!({ "data": hex::encode(bytes) }));
        return Ok(());
    }
    files::write_output(out, bytes)
}

/// `encrypt`.
pub(crate) async fn encrypt(
    client: &mut Client,
    mode: Mode,
    a: &CipherArgs,
) -> Result<(), CliError> {
    let data = files::read_input(&a.input)?;
    match a.scheme {
        Scheme::AesGcm => {
            let sealed = client.encrypt(&a.uid, &data).await?;
            if sealed.iv.len() != GCM_IV_LEN || sealed.tag.len() != GCM_TAG_LEN {
                return Err(CliError::Response(format!(
                    "an IV of {} bytes and a tag of {} (expected {GCM_IV_LEN} and {GCM_TAG_LEN})",
                    sealed.iv.len(),
                    sealed.tag.len()
                )));
            }
            let mut out = sealed.iv;
            out.extend_from_slice(&sealed.data);
            out.extend_from_slice(&sealed.tag);
            emit(&a.out, mode, &out)
        }
        Scheme::RsaOaep => {
            let items = client
                .call(
                    operation::ENCRYPT,
                    vec![
                        build::unique_identifier(&a.uid),
                        oaep_parameters(),
                        build::bytes(tag::DATA, data.to_vec()),
                    ],
                )
                .await?;
            emit(&a.out, mode, &bytes_in(&items, tag::DATA)?)
        }
    }
}

/// `decrypt`.
pub(crate) async fn decrypt(
    client: &mut Client,
    mode: Mode,
    a: &CipherArgs,
) -> Result<(), CliError> {
    let data = files::read_input(&a.input)?;
    let plain = match a.scheme {
        Scheme::AesGcm => {
            let too_short = || {
                CliError::Input(format!(
                    "{}: shorter than an IV and a tag: not written by kmip encrypt",
                    a.input.display()
                ))
            };
            let (iv, rest) = data.split_at_checked(GCM_IV_LEN).ok_or_else(too_short)?;
            let body_len = rest.len().checked_sub(GCM_TAG_LEN).ok_or_else(too_short)?;
            let (body, tag_bytes) = rest.split_at(body_len);
            client
                .decrypt(
                    &a.uid,
                    &kmipd_client::Sealed {
                        data: body.to_vec(),
                        iv: iv.to_vec(),
                        tag: tag_bytes.to_vec(),
                    },
                )
                .await?
        }
        Scheme::RsaOaep => {
            let items = client
                .call(
                    operation::DECRYPT,
                    vec![
                        build::unique_identifier(&a.uid),
                        oaep_parameters(),
                        build::bytes(tag::DATA, data.to_vec()),
                    ],
                )
                .await?;
            bytes_in(&items, tag::DATA)?
        }
    };
    emit(&a.out, mode, &plain)
}

fn signature_parameters(algorithm: Option<&str>) -> Result<Vec<Ttlv>, CliError> {
    algorithm
        .map(|x| {
            Ok(build::structure(
                tag::CRYPTOGRAPHIC_PARAMETERS,
                vec![build::enumeration(
                    tag::DIGITAL_SIGNATURE_ALGORITHM,
                    names::enum_value("Digital Signature Algorithm", x)?,
                )],
            ))
        })
        .into_iter()
        .collect()
}

/// Prints bytes in hex (or writes them raw to `out`).
fn print_bytes(
    out: Option<&std::path::Path>,
    mode: Mode,
    field: &str,
    bytes: &[u8],
) -> Result<(), CliError> {
    match out {
        Some(p) => files::write_output(p, bytes),
        None => {
            if mode == Mode::Json {
                output::print_json(&json!({ field: hex::encode(bytes) }));
            } else {
                output::println(&hex::encode(bytes));
            }
            Ok(())
        }
    }
}

/// `sign`.
pub(crate) async fn sign(client: &mut Client, mode: Mode, a: &SignArgs) -> Result<(), CliError> {
    let data = files::read_input(&a.input)?;
    let mut payload = vec![build::unique_identifier(&a.uid)];
    payload.extend(signature_parameters(a.algorithm.as_deref())?);
    payload.push(build::bytes(tag::DATA, data.to_vec()));
    let items = client.call(operation::SIGN, payload).await?;
    let signature = bytes_in(&items, tag::SIGNATURE_DATA)?;
    print_bytes(a.out.as_deref(), mode, "signature", &signature)
}

/// Exit 0 for Valid, [`CliError::Invalid`] otherwise.
fn validity(items: &[Ttlv], mode: Mode, what: &str) -> Result<(), CliError> {
    let v = items
        .iter()
        .find(|i| i.tag == tag::VALIDITY_INDICATOR)
        .and_then(|i| reader::as_enum(i).ok())
        .ok_or_else(|| CliError::Response("no Validity Indicator".to_owned()))?;
    let valid = v == validity_indicator::VALID;
    match mode {
        Mode::Json => output::print_json(&json!({ "valid": valid })),
        Mode::Human => output::println(if valid { "valid" } else { "invalid" }),
        Mode::Quiet => {}
    }
    if valid {
        Ok(())
    } else {
        Err(CliError::Invalid(format!("the {what} does not match")))
    }
}

/// `verify`.
pub(crate) async fn verify(
    client: &mut Client,
    mode: Mode,
    a: &VerifyArgs,
) -> Result<(), CliError> {
    let data = files::read_input(&a.input)?;
    let signature = files::read_input(&a.signature)?;
    let mut payload = vec![build::unique_identifier(&a.uid)];
    payload.extend(signature_parameters(a.algorithm.as_deref())?);
    payload.push(build::bytes(tag::DATA, data.to_vec()));
    payload.push(build::bytes(tag::SIGNATURE_DATA, signature.to_vec()));
    let items = client.call(operation::SIGNATURE_VERIFY, payload).await?;
    validity(&items, mode, "signature")
}

/// `mac`.
pub(crate) async fn mac(client: &mut Client, mode: Mode, a: &MacArgs) -> Result<(), CliError> {
    let data = files::read_input(&a.input)?;
    let mut payload = vec![
        build::unique_identifier(&a.uid),
        build::bytes(tag::DATA, data.to_vec()),
    ];
    match &a.check {
        Some(check) => {
            let expected = files::read_input(check)?;
            payload.push(build::bytes(tag::MAC_DATA, expected.to_vec()));
            let items = client.call(operation::MAC_VERIFY, payload).await?;
            validity(&items, mode, "MAC")
        }
        None => {
            let items = client.call(operation::MAC, payload).await?;
            let m = bytes_in(&items, tag::MAC_DATA)?;
            print_bytes(a.out.as_deref(), mode, "mac", &m)
        }
    }
}

/// `hash`.
pub(crate) async fn hash(client: &mut Client, mode: Mode, a: &HashArgs) -> Result<(), CliError> {
    let data = files::read_input(&a.input)?;
    let alg = names::enum_value("Hashing Algorithm", &a.algorithm)?;
    let items = client
        .call(
            operation::HASH,
            vec![
                build::structure(
                    tag::CRYPTOGRAPHIC_PARAMETERS,
                    vec![build::enumeration(tag::HASHING_ALGORITHM, alg)],
                ),
                build::bytes(tag::DATA, data.to_vec()),
            ],
        )
        .await?;
    let digest = bytes_in(&items, tag::DATA)?;
    print_bytes(None, mode, "digest", &digest)
}

/// `rng`.
pub(crate) async fn rng(client: &mut Client, mode: Mode, a: &RngArgs) -> Result<(), CliError> {
    let items = client
        .call(
            operation::RNG_RETRIEVE,
            vec![build::int(tag::DATA_LENGTH, a.length)],
        )
        .await?;
    let data = bytes_in(&items, tag::DATA)?;
    print_bytes(a.out.as_deref(), mode, "data", &data)
}
