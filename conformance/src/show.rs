//! Short, safe renderings of values for difference messages: names for enumerations, dates as
//! RFC 3339, and at most a 4-byte prefix of any Byte String or Big Integer (key material never
//! appears in full).

use kmipd_ttlv::{Tag, Ttlv, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How many bytes of a Byte String or Big Integer a message shows.
const BYTES_SHOWN: usize = 4;
/// How many characters of a Text String a message shows.
const CHARS_SHOWN: usize = 60;

/// A value for a message.
pub(crate) fn value(tag: Tag, v: &Value) -> String {
    match v {
        Value::Structure(items) => format!("a structure of {} items", items.len()),
        Value::Integer(i) => match kmipd_proto::spec::enum_of_tag(tag.value()) {
            Some(table) if table.is_mask => format!("{i} (0x{:08X})", i.cast_unsigned()),
            _ => i.to_string(),
        },
        Value::LongInteger(i) => i.to_string(),
        Value::Interval(i) => i.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Enumeration(e) => {
            enum_name(tag, *e).map_or_else(|| format!("0x{e:08X}"), str::to_owned)
        }
        Value::TextString(s) => {
            let mut shown: String = s.chars().take(CHARS_SHOWN).collect();
            if shown.len() < s.len() {
                shown.push('…');
            }
            format!("{shown:?}")
        }
        Value::ByteString(b) => bytes(b),
        Value::BigInteger(b) => format!("big integer {}", bytes(b.as_bytes())),
        Value::DateTime(s) => date(i128::from(*s) * 1_000_000_000),
        Value::DateTimeExtended(us) => date(i128::from(*us) * 1000),
    }
}

/// A value for a message that must not change from run to run (the generated report): byte
/// strings by length only, dates as "a date"; anything else as [`value`].
pub(crate) fn stable(tag: Tag, v: &Value) -> String {
    match v {
        Value::ByteString(b) => format!("<{} bytes>", b.len()),
        Value::BigInteger(b) => format!("big integer <{} bytes>", b.as_bytes().len()),
        Value::DateTime(_) | Value::DateTimeExtended(_) => String::from("a date"),
        _ => value(tag, v),
    }
}

/// The name of an enumeration value; for values that a later version reserved (Template is
/// "(Reserved)" since 2.0), the older name.
fn enum_name(tag: Tag, v: u32) -> Option<&'static str> {
    let table = kmipd_proto::spec::enum_of_tag(tag.value())?;
    let entry = table.entry(v)?;
    if entry.name.starts_with('(') {
        let older = table
            .by_xml_name
            .iter()
            .find(|(n, x)| *x == v && *n != entry.xml_name)
            .map(|(n, _)| *n);
        if older.is_some() {
            return older;
        }
    }
    Some(entry.xml_name)
}

/// An item: its tag name and value.
pub(crate) fn item(t: &Ttlv) -> String {
    format!("{} {}", crate::tags::name(t.tag), value(t.tag, &t.value))
}

/// An item for a stable message: its tag name and [`stable`] value.
pub(crate) fn stable_item(t: &Ttlv) -> String {
    format!("{} {}", crate::tags::name(t.tag), stable(t.tag, &t.value))
}

fn bytes(b: &[u8]) -> String {
    let prefix = b.get(..BYTES_SHOWN.min(b.len())).unwrap_or_default();
    let more = if b.len() > BYTES_SHOWN { "…" } else { "" };
    format!("<{} bytes {}{more}>", b.len(), hex::encode_upper(prefix))
}

fn date(nanos: i128) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{} s", nanos / 1_000_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_cut_and_names_shown() {
        let t = Tag::new(0x42_0043).unwrap();
        assert_eq!(
            value(t, &Value::bytes(vec![0xAB; 32])),
            "<32 bytes ABABABAB…>"
        );
        assert_eq!(value(t, &Value::bytes(vec![1, 2])), "<2 bytes 0102>");
        let status = Tag::new(0x42_007F).unwrap();
        assert_eq!(value(status, &Value::Enumeration(0)), "Success");
        assert_eq!(value(t, &Value::DateTime(0)), "1970-01-01T00:00:00Z");
        let object_type = Tag::new(0x42_0057).unwrap();
        assert_eq!(value(object_type, &Value::Enumeration(6)), "Template");
    }
}
