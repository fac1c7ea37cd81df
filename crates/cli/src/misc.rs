//! Attribute edits, Re-Key, Query, Discover Versions, and the offline commands: `ttlv`,
//! `completions`, `man`.

use std::path::Path;

use clap::CommandFactory;
use kmipd_client::Client;
use kmipd_proto::attributes::{AttrName, Attribute};
use kmipd_proto::build;
use kmipd_proto::enums::operation;
use kmipd_proto::reader;
use kmipd_proto::tag;
use kmipd_ttlv::{Limits, Ttlv, Value};
use serde_json::json;

use crate::attrs;
use crate::cli::{AttributesCommand, Cli, RekeyArgs, TtlvCommand, TtlvForm};
use crate::error::CliError;
use crate::files;
use crate::names;
use crate::output::{self, Mode};

fn done(mode: Mode, uid: &str, what: &str) {
    match mode {
        Mode::Quiet => output::println(uid),
        Mode::Json => output::print_json(&json!({ "unique_identifier": uid })),
        Mode::Human => output::println(&format!("{uid} {what}")),
    }
}

/// The 2.x Attribute Reference for an attribute.
fn reference(name: &AttrName) -> Ttlv {
    match name {
        AttrName::Std(t) => build::enumeration(tag::ATTRIBUTE_REFERENCE, t.value()),
        AttrName::Custom { .. } => {
            // The same vendor/name split as the 2.x form of the attribute itself.
            let probe = Attribute {
                name: name.clone(),
                value: Value::TextString(String::new()),
            }
            .to_v2();
            let fields: Vec<Ttlv> = probe
                .children()
                .unwrap_or_default()
                .iter()
                .filter(|c| c.tag != tag::ATTRIBUTE_VALUE)
                .cloned()
                .collect();
            build::structure(tag::ATTRIBUTE_REFERENCE, fields)
        }
    }
}

/// `attributes set|add|modify|delete`.
pub(crate) async fn attributes(
    client: &mut Client,
    mode: Mode,
    command: &AttributesCommand,
) -> Result<(), CliError> {
    let v2 = client.version().is_v2();
    let wrap = |t, a: &Attribute| build::structure(t, vec![a.to_v2()]);
    let (uid, op, payload_rest, what) = match command {
        AttributesCommand::Set(e) => {
            if client.version() < kmipd_proto::message::ProtocolVersion::V2_1 {
                return Err(CliError::Usage(
                    "Set Attribute is a KMIP 2.1 operation: use `attributes add` or `modify`"
                        .to_owned(),
                ));
            }
            let a = attrs::parse(&e.attribute)?;
            (
                &e.uid,
                operation::SET_ATTRIBUTE,
                vec![wrap(tag::NEW_ATTRIBUTE, &a)],
                "set",
            )
        }
        AttributesCommand::Add(e) => {
            let a = attrs::parse(&e.attribute)?;
            let item = if v2 {
                wrap(tag::NEW_ATTRIBUTE, &a)
            } else {
                a.to_v1(None)
            };
            (&e.uid, operation::ADD_ATTRIBUTE, vec![item], "added")
        }
        AttributesCommand::Modify(m) => {
            let a = attrs::parse(&m.attribute)?;
            let mut rest = Vec::new();
            if v2 {
                if let Some(cur) = &m.current {
                    let name = m.attribute.split_once('=').map_or("", |(n, _)| n);
                    let current = attrs::parse(&format!("{name}={cur}"))?;
                    rest.push(wrap(tag::CURRENT_ATTRIBUTE, &current));
                }
                rest.push(wrap(tag::NEW_ATTRIBUTE, &a));
            } else {
                if m.current.is_some() {
                    return Err(CliError::Usage(
                        "--current needs KMIP 2.x; 1.x modifies the first instance".to_owned(),
                    ));
                }
                rest.push(a.to_v1(None));
            }
            (&m.uid, operation::MODIFY_ATTRIBUTE, rest, "modified")
        }
        AttributesCommand::Delete(d) => {
            let rest = if d.attribute.contains('=') {
                let a = attrs::parse(&d.attribute)?;
                if !v2 {
                    return Err(CliError::Usage(
                        "NAME=VALUE needs KMIP 2.x; 1.x deletes by NAME (the first instance)"
                            .to_owned(),
                    ));
                }
                vec![wrap(tag::CURRENT_ATTRIBUTE, &a)]
            } else {
                let name = attrs::attribute_name(&d.attribute)?;
                if v2 {
                    vec![reference(&name)]
                } else {
                    vec![build::text(tag::ATTRIBUTE_NAME, name.v1_name())]
                }
            };
            (&d.uid, operation::DELETE_ATTRIBUTE, rest, "deleted")
        }
    };
    let mut payload = vec![build::unique_identifier(uid)];
    payload.extend(payload_rest);
    client.call(op, payload).await?;
    done(mode, uid, &format!("attribute {what}"));
    Ok(())
}

/// `rekey`.
pub(crate) async fn rekey(client: &mut Client, mode: Mode, a: &RekeyArgs) -> Result<(), CliError> {
    let mut payload = vec![build::unique_identifier(&a.uid)];
    if let Some(o) = a.offset {
        payload.push(Ttlv::new(tag::OFFSET, Value::Interval(o)));
    }
    let items = client.call(operation::RE_KEY, payload).await?;
    let new = items
        .iter()
        .find(|i| i.tag == tag::UNIQUE_IDENTIFIER)
        .and_then(|i| reader::as_text(i).ok())
        .ok_or_else(|| CliError::Response("no Unique Identifier".to_owned()))?;
    match mode {
        Mode::Quiet => output::println(new),
        Mode::Json => output::print_json(&json!({
            "unique_identifier": new,
            "replaced_unique_identifier": a.uid,
        })),
        Mode::Human => output::println(&format!("{new} replaces {}", a.uid)),
    }
    Ok(())
}

/// `query`.
pub(crate) async fn query(client: &mut Client, mode: Mode) -> Result<(), CliError> {
    let items = client.query().await?;
    let names_of = |t, table: &str| -> Vec<String> {
        let def = names::table(table).ok();
        items
            .iter()
            .filter(|i| i.tag == t)
            .filter_map(|i| reader::as_enum(i).ok())
            .map(|v| match def {
                Some(d) => crate::error::enum_name(d, v),
                None => format!("0x{v:08X}"),
            })
            .collect()
    };
    let operations = names_of(tag::OPERATION, "Operation");
    let object_types = names_of(tag::OBJECT_TYPE, "Object Type");
    let vendor = items
        .iter()
        .find(|i| i.tag == tag::VENDOR_IDENTIFICATION)
        .and_then(|i| reader::as_text(i).ok())
        .map(str::to_owned);
    let info = items
        .iter()
        .find(|i| i.tag == tag::SERVER_INFORMATION)
        .map(|i| output::value_json(i.tag, &i.value));
    match mode {
        Mode::Json => output::print_json(&json!({
            "operations": operations,
            "object_types": object_types,
            "vendor_identification": vendor,
            "server_information": info,
        })),
        Mode::Quiet => output::print(
            &operations
                .iter()
                .map(|o| format!("{o}\n"))
                .collect::<String>(),
        ),
        Mode::Human => {
            let rows = vec![
                ("Vendor".to_owned(), vendor.unwrap_or_default()),
                (
                    "Server information".to_owned(),
                    info.as_ref().map(output::json_text).unwrap_or_default(),
                ),
                ("Operations".to_owned(), operations.join(", ")),
                ("Object types".to_owned(), object_types.join(", ")),
            ];
            output::print(&output::table(&rows));
        }
    }
    Ok(())
}

/// `discover-versions`.
pub(crate) async fn discover_versions(client: &mut Client, mode: Mode) -> Result<(), CliError> {
    let versions: Vec<String> = client
        .discover_versions()
        .await?
        .iter()
        .map(|v| format!("{}.{}", v.major, v.minor))
        .collect();
    match mode {
        Mode::Json => output::print_json(&json!({ "versions": versions })),
        Mode::Quiet | Mode::Human => {
            output::print(
                &versions
                    .iter()
                    .map(|v| format!("{v}\n"))
                    .collect::<String>(),
            );
        }
    }
    Ok(())
}

fn text(bytes: &[u8], input: &Path) -> Result<String, CliError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| CliError::Input(format!("{}: not UTF-8 text", input.display())))
}

fn read_ttlv(input: &Path, from: TtlvForm) -> Result<Ttlv, CliError> {
    let bytes = files::read_input(input)?;
    let bad = |e: &dyn std::fmt::Display| CliError::Input(format!("{}: {e}", input.display()));
    match from {
        TtlvForm::Hex => {
            let t = text(&bytes, input)?;
            let compact: String = t.chars().filter(|c| !c.is_whitespace()).collect();
            let raw = zeroize::Zeroizing::new(hex::decode(compact).map_err(|e| bad(&e))?);
            kmipd_ttlv::decode(&raw, &Limits::default()).map_err(|e| bad(&e))
        }
        TtlvForm::Binary => kmipd_ttlv::decode(&bytes, &Limits::default()).map_err(|e| bad(&e)),
        TtlvForm::Xml => kmipd_proto::xml::read_item(
            &text(&bytes, input)?,
            &kmipd_proto::xml::XmlOptions::default(),
            &mut kmipd_proto::xml::NoPlaceholders,
        )
        .map_err(|e| bad(&e)),
        TtlvForm::Json => kmipd_proto::json::from_str(&text(&bytes, input)?).map_err(|e| bad(&e)),
        TtlvForm::Dump => Err(CliError::Usage("a dump is an output form only".to_owned())),
    }
}

fn write_ttlv(item: &Ttlv, to: TtlvForm, show_secrets: bool) -> Result<(), CliError> {
    let encoded = || {
        kmipd_ttlv::encode_to_vec(item)
            .map(zeroize::Zeroizing::new)
            .map_err(|e| CliError::Input(format!("not encodable: {e}")))
    };
    match to {
        TtlvForm::Hex => output::println(&hex::encode(encoded()?.as_slice())),
        TtlvForm::Binary => files::write_output(Path::new("-"), &encoded()?)?,
        TtlvForm::Xml => output::println(&kmipd_proto::xml::write_item(
            item,
            &kmipd_proto::xml::XmlOptions::default(),
        )),
        TtlvForm::Json => output::println(&kmipd_proto::json::to_string_pretty(item)),
        TtlvForm::Dump => output::print(&kmipd_ttlv::dump_with(
            item,
            &kmipd_proto::spec::KmipNames,
            kmipd_ttlv::DumpOptions { show_secrets },
        )),
    }
    Ok(())
}

/// `ttlv decode|encode`.
pub(crate) fn ttlv(command: &TtlvCommand) -> Result<(), CliError> {
    match command {
        TtlvCommand::Decode {
            input,
            from,
            to,
            show_secrets,
        } => write_ttlv(&read_ttlv(input, *from)?, *to, *show_secrets),
        TtlvCommand::Encode { input, from, to } => {
            write_ttlv(&read_ttlv(input, *from)?, *to, false)
        }
    }
}

/// `completions SHELL`.
pub(crate) fn completions(shell: clap_complete::Shell) {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "kmip", &mut out);
    output::print(&String::from_utf8_lossy(&out));
}

/// `man`.
pub(crate) fn man() -> Result<(), CliError> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .map_err(CliError::file(Path::new("-")))?;
    output::print(&String::from_utf8_lossy(&out));
    Ok(())
}
