//! The commands that manage objects: create, get, locate, show and the lifecycle.

use std::io::BufRead;

use kmipd_client::Client;
use kmipd_proto::attributes::Attribute;
use kmipd_proto::build;
use kmipd_proto::enums::{
    cryptographic_usage_mask as usage, object_type, operation, wrapping_method,
};
use kmipd_proto::reader;
use kmipd_proto::tag;
use kmipd_ttlv::{Ttlv, Value};
use serde_json::{Value as Json, json};

use crate::attrs;
use crate::cli::{
    CreateArgs, CreateKind, GetArgs, LocateArgs, RegisterArgs, RegisterKind, RevokeArgs,
};
use crate::error::{CliError, enum_name};
use crate::files;
use crate::names;
use crate::output::{self, Mode};

/// Unique Identifiers from the arguments; `-` stands for standard input, one a line.
pub(crate) fn expand_uids(args: &[String]) -> Result<Vec<String>, CliError> {
    let mut out = Vec::new();
    for a in args {
        if a == "-" {
            for line in std::io::stdin().lock().lines() {
                let line = line.map_err(CliError::file(std::path::Path::new("-")))?;
                let line = line.trim();
                if !line.is_empty() {
                    out.push(line.to_owned());
                }
            }
        } else {
            out.push(a.clone());
        }
    }
    Ok(out)
}

/// The first Text String item of `t` among `items`.
fn text_of(items: &[Ttlv], t: kmipd_ttlv::Tag) -> Result<String, CliError> {
    items
        .iter()
        .find(|i| i.tag == t)
        .and_then(|i| reader::as_text(i).ok())
        .map(str::to_owned)
        .ok_or_else(|| CliError::Response(format!("no {}", reader::name(t))))
}

/// The attributes that `--attr`, `--name` and `--usage` add.
fn common_attributes(
    names_given: &[String],
    extra: &[String],
    usage_text: Option<&str>,
    default_usage: u32,
) -> Result<Vec<Attribute>, CliError> {
    let mask = match usage_text {
        Some(u) => names::mask_value("Cryptographic Usage Mask", u)?,
        None => default_usage,
    };
    let mut out = vec![build::usage_mask_attr(mask)];
    out.extend(names_given.iter().map(|n| build::name_attr(n)));
    for a in extra {
        out.push(attrs::parse(a)?);
    }
    Ok(out)
}

/// `create`.
pub(crate) async fn create(
    client: &mut Client,
    mode: Mode,
    a: &CreateArgs,
) -> Result<(), CliError> {
    let algorithm_attr = |text: &str| -> Result<Attribute, CliError> {
        Ok(Attribute::std(
            tag::CRYPTOGRAPHIC_ALGORITHM,
            Value::Enumeration(names::enum_value("Cryptographic Algorithm", text)?),
        ))
    };
    let length_attr = |bits: i32| Attribute::std(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(bits));
    match a.kind {
        CreateKind::Symmetric | CreateKind::Secret => {
            let (ot, default_usage) = if a.kind == CreateKind::Symmetric {
                let is_mac = a
                    .algorithm
                    .as_deref()
                    .is_some_and(|x| names::normalize(x).starts_with("hmac"));
                let u = if is_mac {
                    usage::MAC_GENERATE | usage::MAC_VERIFY
                } else {
                    usage::ENCRYPT | usage::DECRYPT
                };
                (object_type::SYMMETRIC_KEY, u)
            } else {
                (object_type::SECRET_DATA, usage::DERIVE_KEY)
            };
            let mut list = Vec::new();
            if a.kind == CreateKind::Symmetric {
                list.push(algorithm_attr(a.algorithm.as_deref().unwrap_or("AES"))?);
                list.push(length_attr(a.length.unwrap_or(256)));
            } else {
                if let Some(alg) = a.algorithm.as_deref() {
                    list.push(algorithm_attr(alg)?);
                }
                list.push(length_attr(a.length.unwrap_or(256)));
            }
            list.extend(common_attributes(
                &a.name,
                &a.attrs,
                a.usage.as_deref(),
                default_usage,
            )?);
            let uid = client.create(ot, &list).await?;
            match mode {
                Mode::Quiet => output::println(&uid),
                Mode::Json => output::print_json(&json!({ "unique_identifier": uid })),
                Mode::Human => output::println(&format!("created {uid}")),
            }
        }
        CreateKind::KeyPair => {
            let alg = a.algorithm.as_deref().unwrap_or("RSA");
            let mut common = vec![algorithm_attr(alg)?];
            if let Some(curve) = a.curve.as_deref() {
                let c = names::enum_value("Recommended Curve", curve)?;
                common.push(Attribute::std(
                    tag::CRYPTOGRAPHIC_DOMAIN_PARAMETERS,
                    Value::Structure(vec![build::enumeration(tag::RECOMMENDED_CURVE, c)]),
                ));
            }
            let is_rsa = names::normalize(alg) == "rsa";
            match (a.length, is_rsa, a.curve.is_some()) {
                (Some(bits), _, _) => common.push(length_attr(bits)),
                (None, true, _) => common.push(length_attr(2048)),
                (None, false, false) => common.push(length_attr(256)),
                (None, false, true) => {}
            }
            for x in &a.attrs {
                common.push(attrs::parse(x)?);
            }
            let (priv_usage, pub_usage) = match a.usage.as_deref() {
                Some(u) => {
                    let m = names::mask_value("Cryptographic Usage Mask", u)?;
                    (m, m)
                }
                None => (usage::SIGN, usage::VERIFY),
            };
            let mut private = vec![build::usage_mask_attr(priv_usage)];
            let mut public = vec![build::usage_mask_attr(pub_usage)];
            for n in &a.name {
                private.push(build::name_attr(n));
                public.push(build::name_attr(&format!("{n}.pub")));
            }
            let v = client.version();
            let payload = vec![
                build::attributes(
                    v,
                    tag::COMMON_TEMPLATE_ATTRIBUTE,
                    tag::COMMON_ATTRIBUTES,
                    &common,
                ),
                build::attributes(
                    v,
                    tag::PRIVATE_KEY_TEMPLATE_ATTRIBUTE,
                    tag::PRIVATE_KEY_ATTRIBUTES,
                    &private,
                ),
                build::attributes(
                    v,
                    tag::PUBLIC_KEY_TEMPLATE_ATTRIBUTE,
                    tag::PUBLIC_KEY_ATTRIBUTES,
                    &public,
                ),
            ];
            let items = client.call(operation::CREATE_KEY_PAIR, payload).await?;
            let private = text_of(&items, tag::PRIVATE_KEY_UNIQUE_IDENTIFIER)?;
            let public = text_of(&items, tag::PUBLIC_KEY_UNIQUE_IDENTIFIER)?;
            match mode {
                Mode::Quiet => output::print(&format!("{private}\n{public}\n")),
                Mode::Json => output::print_json(&json!({
                    "private_key_unique_identifier": private,
                    "public_key_unique_identifier": public,
                })),
                Mode::Human => output::print(&format!(
                    "created private key {private}\ncreated public key {public}\n"
                )),
            }
        }
    }
    Ok(())
}

/// What a Get returned.
struct Got {
    uid: String,
    object_type: u32,
    format: Option<u32>,
    algorithm: Option<u32>,
    length: Option<i32>,
    wrapped: bool,
    /// The bytes of the key material, certificate or opaque data.
    bytes: Option<zeroize::Zeroizing<Vec<u8>>>,
    /// A transparent key's Key Material structure.
    structure: Option<Ttlv>,
}

fn find(items: &[Ttlv], t: kmipd_ttlv::Tag) -> Option<&Ttlv> {
    for i in items {
        if i.tag == t {
            return Some(i);
        }
        if let Value::Structure(children) = &i.value
            && let Some(found) = find(children, t)
        {
            return Some(found);
        }
    }
    None
}

fn read_got(items: &[Ttlv]) -> Result<Got, CliError> {
    let enum_at = |t| find(items, t).and_then(|i| reader::as_enum(i).ok());
    let bytes_at = |t| {
        find(items, t)
            .and_then(|i| reader::as_bytes(i).ok())
            .map(|b| zeroize::Zeroizing::new(b.to_vec()))
    };
    let wrapped = find(items, tag::KEY_WRAPPING_DATA).is_some();
    let structure = find(items, tag::KEY_MATERIAL)
        .filter(|m| matches!(m.value, Value::Structure(_)))
        .cloned();
    let bytes = bytes_at(tag::KEY_MATERIAL)
        .or_else(|| {
            if wrapped {
                bytes_at(tag::KEY_VALUE)
            } else {
                None
            }
        })
        .or_else(|| bytes_at(tag::CERTIFICATE_VALUE))
        .or_else(|| bytes_at(tag::OPAQUE_DATA_VALUE));
    Ok(Got {
        uid: text_of(items, tag::UNIQUE_IDENTIFIER)?,
        object_type: enum_at(tag::OBJECT_TYPE)
            .ok_or_else(|| CliError::Response("no Object Type".to_owned()))?,
        format: enum_at(tag::KEY_FORMAT_TYPE),
        algorithm: enum_at(tag::CRYPTOGRAPHIC_ALGORITHM),
        length: find(items, tag::CRYPTOGRAPHIC_LENGTH).and_then(|i| reader::as_int(i).ok()),
        wrapped,
        bytes,
        structure,
    })
}

/// The PEM label for these bytes, when there is one.
fn pem_label(g: &Got) -> Option<&'static str> {
    use kmipd_proto::enums::key_format_type as kft;
    match (g.object_type, g.format) {
        (object_type::CERTIFICATE, _) => Some("CERTIFICATE"),
        (object_type::PRIVATE_KEY, Some(kft::PKCS_1)) => Some("RSA PRIVATE KEY"),
        (object_type::PUBLIC_KEY, Some(kft::PKCS_1)) => Some("RSA PUBLIC KEY"),
        (object_type::PRIVATE_KEY, Some(kft::PKCS_8)) => Some("PRIVATE KEY"),
        (object_type::PUBLIC_KEY, Some(kft::X_509)) => Some("PUBLIC KEY"),
        (object_type::PRIVATE_KEY, Some(kft::ECPRIVATE_KEY)) => Some("EC PRIVATE KEY"),
        _ => None,
    }
}

/// `get`.
pub(crate) async fn get(client: &mut Client, mode: Mode, a: &GetArgs) -> Result<(), CliError> {
    let mut payload = vec![build::unique_identifier(&a.uid)];
    if let Some(f) = a.format.as_deref() {
        payload.push(build::enumeration(
            tag::KEY_FORMAT_TYPE,
            names::enum_value("Key Format Type", f)?,
        ));
    }
    if let Some(w) = a.wrap_with.as_deref() {
        let mut spec = vec![
            build::enumeration(tag::WRAPPING_METHOD, wrapping_method::ENCRYPT),
            build::structure(
                tag::ENCRYPTION_KEY_INFORMATION,
                vec![build::unique_identifier(w)],
            ),
        ];
        if a.wrap_raw {
            spec.push(build::enumeration(
                tag::ENCODING_OPTION,
                kmipd_proto::enums::encoding_option::NO_ENCODING,
            ));
        }
        payload.push(build::structure(tag::KEY_WRAPPING_SPECIFICATION, spec));
    }
    let items = client.call(operation::GET, payload).await?;
    let got = read_got(&items)?;
    if let Some(path) = a.out.as_deref() {
        let bytes = got.bytes.as_ref().ok_or_else(|| {
            CliError::Input(
                "this object's material is a structure (transparent format): use --json --reveal"
                    .to_owned(),
            )
        })?;
        if a.pem {
            let label = pem_label(&got).ok_or_else(|| {
                CliError::Usage(
                    "--pem needs a certificate or a pkcs1, pkcs8, x509 or ec-private-key format"
                        .to_owned(),
                )
            })?;
            let pem = zeroize::Zeroizing::new(crate::pem::encode(label, bytes));
            files::write_output(path, pem.as_bytes())?;
        } else {
            files::write_output(path, bytes)?;
        }
    }
    let table = |t: &str| names::table(t);
    let object_type_name = enum_name(table("Object Type")?, got.object_type);
    let material_json = || -> Json {
        if let Some(b) = &got.bytes {
            Json::String(hex::encode(b.as_slice()))
        } else if let Some(s) = &got.structure {
            output::value_json(s.tag, &s.value)
        } else {
            Json::Null
        }
    };
    match mode {
        Mode::Json => {
            let fmt = |v: Option<u32>, t: &str| -> Result<Json, CliError> {
                Ok(v.map_or(Json::Null, |x| {
                    Json::String(names::xml_name(table(t).ok(), x))
                }))
            };
            let mut out = json!({
                "unique_identifier": got.uid,
                "object_type": names::xml_name(table("Object Type").ok(), got.object_type),
                "key_format_type": fmt(got.format, "Key Format Type")?,
                "cryptographic_algorithm": fmt(got.algorithm, "Cryptographic Algorithm")?,
                "cryptographic_length": got.length,
                "wrapped": got.wrapped,
            });
            if a.reveal
                && let Json::Object(m) = &mut out
            {
                m.insert("key_material".to_owned(), material_json());
            }
            output::print_json(&out);
        }
        Mode::Quiet => {
            if a.reveal {
                output::println(&output::json_text(&material_json()));
            } else if a.out.is_none() {
                output::println(&got.uid);
            }
        }
        Mode::Human => {
            let mut rows = vec![
                ("Unique Identifier".to_owned(), got.uid.clone()),
                ("Object Type".to_owned(), object_type_name),
            ];
            if let Some(f) = got.format {
                rows.push((
                    "Key Format Type".to_owned(),
                    enum_name(table("Key Format Type")?, f),
                ));
            }
            if let Some(x) = got.algorithm {
                rows.push((
                    "Cryptographic Algorithm".to_owned(),
                    enum_name(table("Cryptographic Algorithm")?, x),
                ));
            }
            if let Some(l) = got.length {
                rows.push(("Cryptographic Length".to_owned(), l.to_string()));
            }
            if got.wrapped {
                rows.push(("Wrapped".to_owned(), "yes".to_owned()));
            }
            let material = if a.reveal {
                output::json_text(&material_json())
            } else if let Some(p) = &a.out {
                format!("written to {}", p.display())
            } else {
                "hidden (--reveal prints it, --out FILE writes it with mode 0600)".to_owned()
            };
            rows.push(("Key Material".to_owned(), material));
            output::print(&output::table(&rows));
        }
    }
    Ok(())
}

/// `show`.
pub(crate) async fn show(client: &mut Client, mode: Mode, uid: &str) -> Result<(), CliError> {
    let attrs = client.get_attributes(uid).await?;
    match mode {
        Mode::Json => output::print_json(&output::object_json(uid, &attrs)),
        Mode::Quiet => output::println(uid),
        Mode::Human => {
            let mut rows = Vec::new();
            // Servers that list the Unique Identifier among the attributes show it there.
            if !attrs
                .iter()
                .any(|a| a.name.tag() == Some(tag::UNIQUE_IDENTIFIER))
            {
                rows.push(("UniqueIdentifier".to_owned(), uid.to_owned()));
            }
            for a in &attrs {
                let t = a.name.tag().unwrap_or(tag::ATTRIBUTE_VALUE);
                rows.push((
                    output::attribute_key(&a.name),
                    output::json_text(&output::value_json(t, &a.value)),
                ));
            }
            output::print(&output::table(&rows));
        }
    }
    Ok(())
}

/// The Locate payload's attributes from the filters.
fn locate_filters(a: &LocateArgs) -> Result<Vec<Attribute>, CliError> {
    let mut out = Vec::new();
    let en = |t, table: &str, text: &str| -> Result<Attribute, CliError> {
        Ok(Attribute::std(
            t,
            Value::Enumeration(names::enum_value(table, text)?),
        ))
    };
    if let Some(n) = &a.name {
        out.push(build::name_attr(n));
    }
    if let Some(t) = &a.object_type {
        out.push(en(tag::OBJECT_TYPE, "Object Type", t)?);
    }
    if let Some(s) = &a.state {
        out.push(en(tag::STATE, "State", s)?);
    }
    if let Some(x) = &a.algorithm {
        out.push(en(
            tag::CRYPTOGRAPHIC_ALGORITHM,
            "Cryptographic Algorithm",
            x,
        )?);
    }
    if let Some(l) = a.length {
        out.push(Attribute::std(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(l)));
    }
    if let Some(g) = &a.group {
        out.push(Attribute::std(
            tag::OBJECT_GROUP,
            Value::TextString(g.clone()),
        ));
    }
    if a.created_after.is_some() || a.created_before.is_some() {
        let from = a
            .created_after
            .as_deref()
            .map(attrs::parse_date)
            .transpose()?;
        let to = a
            .created_before
            .as_deref()
            .map(attrs::parse_date)
            .transpose()?;
        // Two Initial Date values are a range (KMIP 1.4 §4.9, 2.1 §6.1.27).
        out.push(Attribute::std(
            tag::INITIAL_DATE,
            Value::DateTime(from.unwrap_or(0)),
        ));
        out.push(Attribute::std(
            tag::INITIAL_DATE,
            Value::DateTime(to.unwrap_or(253_402_300_799)),
        ));
    }
    if let Some(within) = &a.due_within {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let until = now.saturating_add(attrs::parse_duration(within)?);
        // A range of Deactivation Dates, both ends included.
        out.push(Attribute::std(tag::DEACTIVATION_DATE, Value::DateTime(now)));
        out.push(Attribute::std(
            tag::DEACTIVATION_DATE,
            Value::DateTime(until),
        ));
    }
    for x in &a.attrs {
        out.push(attrs::parse(x)?);
    }
    Ok(out)
}

/// `locate`.
pub(crate) async fn locate(
    client: &mut Client,
    mode: Mode,
    a: &LocateArgs,
) -> Result<(), CliError> {
    let filters = locate_filters(a)?;
    let v2 = client.version().is_v2();
    let page = |max: Option<i32>, offset: Option<i32>| {
        let mut payload = Vec::new();
        if let Some(m) = max {
            payload.push(build::int(tag::MAXIMUM_ITEMS, m));
        }
        if let Some(o) = offset {
            payload.push(build::int(tag::OFFSET_ITEMS, o));
        }
        if v2 {
            payload.push(build::structure(
                tag::ATTRIBUTES,
                filters.iter().map(Attribute::to_v2).collect(),
            ));
        } else {
            payload.extend(filters.iter().map(|f| f.to_v1(None)));
        }
        payload
    };
    let uids_of = |items: &[Ttlv]| -> Vec<String> {
        items
            .iter()
            .filter(|i| i.tag == tag::UNIQUE_IDENTIFIER)
            .filter_map(|i| reader::as_text(i).ok().map(str::to_owned))
            .collect()
    };
    let (uids, located) = if a.all {
        // Pages of --max (default 1000) from --offset until a short page: servers may cap
        // what one answer holds.
        let size = a.max.unwrap_or(1000).max(1);
        let mut offset = a.offset.unwrap_or(0);
        let mut all = Vec::new();
        loop {
            let items = client
                .call(operation::LOCATE, page(Some(size), Some(offset)))
                .await?;
            let got = uids_of(&items);
            let n = i32::try_from(got.len()).unwrap_or(i32::MAX);
            all.extend(got);
            if n < size {
                break;
            }
            offset = offset.saturating_add(n);
        }
        (all, None)
    } else {
        let items = client
            .call(operation::LOCATE, page(a.max, a.offset))
            .await?;
        let located = items
            .iter()
            .find(|i| i.tag == tag::LOCATED_ITEMS)
            .and_then(|i| reader::as_int(i).ok());
        (uids_of(&items), located)
    };
    match mode {
        Mode::Json => output::print_json(&json!({
            "unique_identifiers": uids,
            "located_items": located,
        })),
        Mode::Quiet | Mode::Human => {
            let mut text = String::new();
            for u in &uids {
                text.push_str(u);
                text.push('\n');
            }
            output::print(&text);
        }
    }
    Ok(())
}

/// The lifecycle commands that act on several objects.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lifecycle {
    /// Activate.
    Activate,
    /// Destroy.
    Destroy,
}

/// Runs `act` on each identifier: failures are reported one a line on standard error and the
/// others still run; the first failure is the result.
async fn each<F>(uids: &[String], mode: Mode, done: &str, mut act: F) -> Result<(), CliError>
where
    F: AsyncFnMut(&str) -> Result<(), CliError>,
{
    let mut first_error = None;
    let mut ok = Vec::new();
    let mut progress = output::Progress::new(uids.len());
    for uid in uids {
        progress.step();
        match act(uid).await {
            Ok(()) => {
                match mode {
                    Mode::Quiet => output::println(uid),
                    Mode::Human => output::println(&format!("{uid} {done}")),
                    Mode::Json => {}
                }
                ok.push(uid.clone());
            }
            Err(e) => {
                eprintln!("kmip: {uid}: {e}");
                if first_error.is_none() {
                    first_error = Some(e);
                }
            }
        }
    }
    progress.finish();
    if mode == Mode::Json {
        output::print_json(&json!({ "unique_identifiers": ok }));
    }
    first_error.map_or(Ok(()), Err)
}

/// `activate`, `destroy`.
pub(crate) async fn lifecycle(
    client: &mut Client,
    mode: Mode,
    what: Lifecycle,
    uids: &[String],
) -> Result<(), CliError> {
    let uids = expand_uids(uids)?;
    match what {
        Lifecycle::Activate => {
            each(&uids, mode, "activated", async |u| {
                Ok(client.activate(u).await?)
            })
            .await
        }
        Lifecycle::Destroy => {
            each(&uids, mode, "destroyed", async |u| {
                Ok(client.destroy(u).await?)
            })
            .await
        }
    }
}

/// `revoke`.
pub(crate) async fn revoke(
    client: &mut Client,
    mode: Mode,
    a: &RevokeArgs,
) -> Result<(), CliError> {
    let code = names::enum_value("Revocation Reason Code", &a.reason)?;
    let uids = expand_uids(&a.uids)?;
    let mut reason = vec![build::enumeration(tag::REVOCATION_REASON_CODE, code)];
    if let Some(m) = &a.message {
        reason.push(build::text(tag::REVOCATION_MESSAGE, m.clone()));
    }
    let reason = build::structure(tag::REVOCATION_REASON, reason);
    let occurred = a
        .compromise_date
        .as_deref()
        .map(attrs::parse_date)
        .transpose()?;
    each(&uids, mode, "revoked", async |u| {
        let mut payload = vec![build::unique_identifier(u), reason.clone()];
        if let Some(d) = occurred {
            payload.push(build::datetime(tag::COMPROMISE_OCCURRENCE_DATE, d));
        }
        client.call(operation::REVOKE, payload).await?;
        Ok(())
    })
    .await
}

/// The Key Format Type and bytes of a key or certificate file: PEM says its own format, DER
/// takes `--format` (default PKCS#8 for private keys, X.509 for public keys).
fn key_file(
    bytes: &[u8],
    kind: RegisterKind,
    format: Option<&str>,
) -> Result<(Option<u32>, zeroize::Zeroizing<Vec<u8>>), CliError> {
    use kmipd_proto::enums::key_format_type as kft;
    if let Some((label, der)) = crate::pem::decode(bytes) {
        let f = match (kind, label.as_str()) {
            (RegisterKind::Certificate, "CERTIFICATE") => None,
            (RegisterKind::PrivateKey, "PRIVATE KEY") => Some(kft::PKCS_8),
            (RegisterKind::PrivateKey, "RSA PRIVATE KEY") => Some(kft::PKCS_1),
            (RegisterKind::PrivateKey, "EC PRIVATE KEY") => Some(kft::ECPRIVATE_KEY),
            (RegisterKind::PublicKey, "PUBLIC KEY") => Some(kft::X_509),
            (RegisterKind::PublicKey, "RSA PUBLIC KEY") => Some(kft::PKCS_1),
            (_, other) => {
                return Err(CliError::Input(format!(
                    "a PEM block labelled {other:?} is not a {}",
                    kind_name(kind)
                )));
            }
        };
        return Ok((f, der));
    }
    let f = match (kind, format) {
        (RegisterKind::Certificate, _) => None,
        (_, Some(f)) => Some(names::enum_value("Key Format Type", f)?),
        (RegisterKind::PublicKey, None) => Some(kft::X_509),
        (_, None) => Some(kft::PKCS_8),
    };
    Ok((f, zeroize::Zeroizing::new(bytes.to_vec())))
}

fn kind_name(kind: RegisterKind) -> &'static str {
    match kind {
        RegisterKind::Symmetric => "symmetric key",
        RegisterKind::Secret => "secret",
        RegisterKind::PrivateKey => "private key",
        RegisterKind::PublicKey => "public key",
        RegisterKind::Certificate => "certificate",
    }
}

/// `register`.
pub(crate) async fn register(
    client: &mut Client,
    mode: Mode,
    a: &RegisterArgs,
) -> Result<(), CliError> {
    use kmipd_proto::enums::{certificate_type, key_format_type as kft};
    let bytes = files::read_input(&a.file)?;
    if bytes.is_empty() {
        return Err(CliError::Input(format!("{} is empty", a.file.display())));
    }
    let algorithm = a
        .algorithm
        .as_deref()
        .map(|x| names::enum_value("Cryptographic Algorithm", x))
        .transpose()?;
    let bits = |n: usize| i32::try_from(n.saturating_mul(8)).unwrap_or(i32::MAX);
    let (ot, object, default_usage) = match a.kind {
        RegisterKind::Symmetric => {
            let alg = algorithm.unwrap_or(kmipd_proto::enums::cryptographic_algorithm::AES);
            let block =
                build::byte_key_block(kft::RAW, bytes.to_vec(), Some((alg, bits(bytes.len()))));
            (
                object_type::SYMMETRIC_KEY,
                build::structure(tag::SYMMETRIC_KEY, vec![block]),
                usage::ENCRYPT | usage::DECRYPT,
            )
        }
        RegisterKind::Secret => {
            let st = names::enum_value("Secret Data Type", &a.secret_type)?;
            (
                object_type::SECRET_DATA,
                build::structure(
                    tag::SECRET_DATA,
                    vec![
                        build::enumeration(tag::SECRET_DATA_TYPE, st),
                        build::byte_key_block(kft::OPAQUE, bytes.to_vec(), None),
                    ],
                ),
                usage::DERIVE_KEY,
            )
        }
        RegisterKind::Certificate => {
            let (_, der) = key_file(&bytes, a.kind, None)?;
            (
                object_type::CERTIFICATE,
                build::structure(
                    tag::CERTIFICATE,
                    vec![
                        build::enumeration(tag::CERTIFICATE_TYPE, certificate_type::X_509),
                        build::bytes(tag::CERTIFICATE_VALUE, der.to_vec()),
                    ],
                ),
                usage::VERIFY,
            )
        }
        RegisterKind::PrivateKey | RegisterKind::PublicKey => {
            let (format, der) = key_file(&bytes, a.kind, a.format.as_deref())?;
            let format = format.unwrap_or(kft::PKCS_8);
            let private = a.kind == RegisterKind::PrivateKey;
            // Given flags win; else what the key itself says.
            let alg_len = algorithm
                .zip(a.length)
                .or_else(|| crate::der::key_algorithm(format, &der, private));
            let block = build::byte_key_block(format, der.to_vec(), alg_len);
            let (ot, t, u) = if a.kind == RegisterKind::PrivateKey {
                (object_type::PRIVATE_KEY, tag::PRIVATE_KEY, usage::SIGN)
            } else {
                (object_type::PUBLIC_KEY, tag::PUBLIC_KEY, usage::VERIFY)
            };
            (ot, build::structure(t, vec![block]), u)
        }
    };
    let list = common_attributes(&a.name, &a.attrs, a.usage.as_deref(), default_usage)?;
    let uid = client.register(ot, object, &list).await?;
    match mode {
        Mode::Quiet => output::println(&uid),
        Mode::Json => output::print_json(&json!({ "unique_identifier": uid })),
        Mode::Human => output::println(&format!("registered {uid}")),
    }
    Ok(())
}
