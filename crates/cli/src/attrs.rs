//! Attributes given on the command line as `NAME=VALUE`.
//!
//! NAME is a custom attribute (`x-...`, `y-...`, a Text String) or a standard one by its spec
//! or XML name in any case (`Object Group`, `ObjectGroup`, `object-group`). The VALUE's type
//! follows the attribute: an enumeration by name (`State=active`), a mask as names joined by
//! commas (`Cryptographic Usage Mask=encrypt,decrypt`), a date in RFC 3339 for `... Date`
//! attributes, an integer for `Cryptographic Length`, a Name for `Name`, text otherwise.

use kmipd_proto::attributes::{AttrName, Attribute};
use kmipd_proto::build;
use kmipd_proto::tag;
use kmipd_ttlv::{Tag, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::CliError;
use crate::names;

/// Attributes whose value is an Integer.
const INTEGER_ATTRIBUTES: [Tag; 1] = [tag::CRYPTOGRAPHIC_LENGTH];

/// Seconds since the epoch of an RFC 3339 date.
pub(crate) fn parse_date(text: &str) -> Result<i64, CliError> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .map_err(|e| CliError::Usage(format!("{text:?} is not an RFC 3339 date: {e}")))
}

/// Seconds of a duration: a number and a unit, `s`, `m`, `h`, `d` or `w` (`30d`).
pub(crate) fn parse_duration(text: &str) -> Result<i64, CliError> {
    let bad = || {
        CliError::Usage(format!(
            "{text:?} is not a duration: a number and a unit s, m, h, d or w (e.g. 30d)"
        ))
    };
    let t = text.trim();
    let unit = t.chars().last().ok_or_else(bad)?;
    let scale: i64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return Err(bad()),
    };
    let number: i64 = t
        .strip_suffix(unit)
        .and_then(|n| n.parse().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(bad)?;
    number.checked_mul(scale).ok_or_else(bad)
}

/// The attribute named `name` (without a value, for Delete Attribute and references).
pub(crate) fn attribute_name(name: &str) -> Result<AttrName, CliError> {
    let name = name.trim();
    if name.starts_with("x-") || name.starts_with("y-") {
        return Ok(AttrName::from_v1_name(name));
    }
    let def = names::attribute_tag(name).ok_or_else(|| {
        CliError::Usage(format!(
            "{name:?} is not a KMIP attribute; custom attributes start with x-"
        ))
    })?;
    Ok(AttrName::from_v1_name(def.name))
}

/// One `NAME=VALUE`.
pub(crate) fn parse(text: &str) -> Result<Attribute, CliError> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| CliError::Usage(format!("{text:?} is not NAME=VALUE")))?;
    let name = attribute_name(name)?;
    let value = value.trim();
    let value = match name.tag() {
        None => Value::TextString(value.to_owned()),
        Some(t) => typed_value(t, value)?,
    };
    Ok(Attribute { name, value })
}

fn typed_value(t: Tag, text: &str) -> Result<Value, CliError> {
    if t == tag::NAME {
        return Ok(build::name(text));
    }
    let def = kmipd_proto::spec::tag_by_value(t.value());
    if let Some(def) = def {
        if let Some(table) = def.enumeration {
            return if table.is_mask {
                Ok(build::mask(names::mask_value(table.name, text)?))
            } else {
                Ok(Value::Enumeration(names::enum_value(table.name, text)?))
            };
        }
        if def.name.ends_with(" Date") {
            return Ok(Value::DateTime(parse_date(text)?));
        }
    }
    if INTEGER_ATTRIBUTES.contains(&t) {
        return text
            .parse()
            .map(Value::Integer)
            .map_err(|_| CliError::Usage(format!("{text:?} is not an integer")));
    }
    Ok(Value::TextString(text.to_owned()))
}
