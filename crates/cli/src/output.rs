//! How results are printed: text for people, JSON for scripts (`--json`), identifiers only
//! (`--quiet`).
//!
//! Attribute values in JSON take the forms of the KMIP JSON encoding (`kmipd_proto::json`):
//! enumerations by name (`"AES"`, `"Active"`), masks as names joined by `|`, dates in ISO 8601,
//! byte strings in hex; a structure becomes an object of its fields, and a Name is its Name
//! Value.

use std::io::Write;

use kmipd_proto::attributes::{AttrName, Attribute};
use kmipd_proto::spec;
use kmipd_proto::tag;
use kmipd_ttlv::{Tag, Ttlv, Value};
use serde_json::{Map, Value as Json, json};

/// How to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Text for people.
    Human,
    /// JSON for scripts.
    Json,
    /// Identifiers (or the bare result) only.
    Quiet,
}

/// The name of an attribute as printed: the XML name of a standard one
/// ("CryptographicAlgorithm"), the name of a custom one ("x-owner").
pub(crate) fn attribute_key(name: &AttrName) -> String {
    match name {
        AttrName::Std(t) => spec::tag_by_value(t.value())
            .map_or_else(|| format!("0x{:06X}", t.value()), |d| d.xml_name.to_owned()),
        AttrName::Custom { .. } => name.v1_name(),
    }
}

/// The JSON form of an attribute value.
pub(crate) fn value_json(t: Tag, value: &Value) -> Json {
    if t == tag::NAME
        && let Some(n) = kmipd_proto::attributes::name_value(value)
    {
        return Json::String(n.to_owned());
    }
    simplify(&kmipd_proto::json::to_json(&Ttlv::new(t, value.clone())))
}

/// The `value` of a KMIP JSON item, with structures as objects of their fields (a field that
/// occurs more than once becomes an array).
fn simplify(item: &Json) -> Json {
    let Some(value) = item.get("value") else {
        return Json::Null;
    };
    match value {
        Json::Array(children) => {
            let mut out = Map::new();
            for c in children {
                let key = c
                    .get("tag")
                    .and_then(Json::as_str)
                    .unwrap_or("?")
                    .to_owned();
                let v = simplify(c);
                match out.get_mut(&key) {
                    None => {
                        out.insert(key, v);
                    }
                    Some(Json::Array(list)) => {
                        list.push(v);
                    }
                    Some(existing) => {
                        let first = existing.take();
                        *existing = Json::Array(vec![first, v]);
                    }
                }
            }
            Json::Object(out)
        }
        other => other.clone(),
    }
}

/// The text form of a JSON value, for tables.
pub(crate) fn json_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        Json::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", json_text(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Json::Array(a) => a.iter().map(json_text).collect::<Vec<_>>().join("; "),
        other => other.to_string(),
    }
}

/// The attributes as a JSON object: each attribute's key maps to the array of its values (in
/// the order the server gave them).
pub(crate) fn attributes_json(attrs: &[Attribute]) -> Map<String, Json> {
    let mut out = Map::new();
    for a in attrs {
        let t = a.name.tag().unwrap_or(tag::ATTRIBUTE_VALUE);
        let v = value_json(t, &a.value);
        let entry = out
            .entry(attribute_key(&a.name))
            .or_insert_with(|| Json::Array(Vec::new()));
        if let Json::Array(list) = entry {
            list.push(v);
        }
    }
    out
}

/// `show --json`: the identifier, the fields scripts read most (each `null` when absent) and
/// every attribute.
pub(crate) fn object_json(uid: &str, attrs: &[Attribute]) -> Json {
    let all = attributes_json(attrs);
    let first = |key: &str| {
        all.get(key)
            .and_then(Json::as_array)
            .and_then(|a| a.first())
            .cloned()
            .unwrap_or(Json::Null)
    };
    let names = all.get("Name").cloned().unwrap_or(Json::Array(Vec::new()));
    json!({
        "unique_identifier": uid,
        "object_type": first("ObjectType"),
        "state": first("State"),
        "cryptographic_algorithm": first("CryptographicAlgorithm"),
        "cryptographic_length": first("CryptographicLength"),
        "names": names,
        "attributes": Json::Object(all),
    })
}

/// Two aligned columns.
pub(crate) fn table(rows: &[(String, String)]) -> String {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        let pad = width.saturating_sub(k.chars().count());
        out.push_str(k);
        out.push_str(&" ".repeat(pad + 2));
        out.push_str(v);
        out.push('\n');
    }
    out
}

/// Prints to standard output; a closed pipe (`kmip locate | head -1`) is not an error.
pub(crate) fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Prints a line to standard output.
pub(crate) fn println(text: &str) {
    print(&format!("{text}\n"));
}

/// Prints JSON, indented, with a final newline.
pub(crate) fn print_json(v: &Json) {
    println(&serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()));
}

/// A progress bar on standard error for commands that work through many objects, drawn only
/// when standard error is a terminal and there is more than one object.
pub(crate) struct Progress {
    total: usize,
    done: usize,
    shown: bool,
}

impl Progress {
    /// A bar for `total` objects.
    pub(crate) fn new(total: usize) -> Progress {
        use std::io::IsTerminal;
        Progress {
            total,
            done: 0,
            shown: total > 1 && std::io::stderr().is_terminal(),
        }
    }

    /// One more object started.
    pub(crate) fn step(&mut self) {
        self.done = self.done.saturating_add(1);
        if self.shown {
            const WIDTH: usize = 30;
            let filled = self.done.saturating_mul(WIDTH) / self.total.max(1);
            let bar = format!(
                "{}{}",
                "#".repeat(filled),
                " ".repeat(WIDTH.saturating_sub(filled))
            );
            eprint!("\r[{bar}] {}/{}", self.done, self.total);
        }
    }

    /// Clears the bar.
    pub(crate) fn finish(&self) {
        if self.shown {
            eprint!("\r{}\r", " ".repeat(48));
        }
    }
}
