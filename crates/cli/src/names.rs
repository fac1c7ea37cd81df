//! Names on the command line for KMIP enumerations and attributes, read through the spec
//! tables of `kmipd-proto`: case, spaces, `-` and `_` do not matter, so `key-compromise`,
//! `KeyCompromise` and `"Key Compromise"` are one value, and `AES`, `aes` another. A value may
//! also be given in hex (`0x00000002`).

use kmipd_proto::spec::{self, EnumDef, TagDef};

use crate::error::CliError;

/// Lower-case letters and digits only.
pub(crate) fn normalize(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The table of this name ("Cryptographic Algorithm").
pub(crate) fn table(name: &str) -> Result<&'static EnumDef, CliError> {
    spec::enum_by_name(name).ok_or_else(|| CliError::Input(format!("no table named {name:?}")))
}

/// The value of `input` in the table `table_name`.
pub(crate) fn enum_value(table_name: &str, input: &str) -> Result<u32, CliError> {
    let t = table(table_name)?;
    parse_in(t, input).ok_or_else(|| {
        let names: Vec<String> = t
            .values
            .iter()
            .map(|e| e.name.to_lowercase().replace(' ', "-"))
            .collect();
        CliError::Usage(format!(
            "{input:?} is not a {}; one of: {}",
            t.name,
            names.join(", ")
        ))
    })
}

fn parse_in(t: &EnumDef, input: &str) -> Option<u32> {
    if let Some(hex) = input
        .strip_prefix("0x")
        .or_else(|| input.strip_prefix("0X"))
    {
        return u32::from_str_radix(hex, 16).ok();
    }
    let want = normalize(input);
    t.values
        .iter()
        .find(|e| normalize(e.name) == want || normalize(e.xml_name) == want)
        .map(|e| e.value)
}

/// A mask from names joined by `,` or `|` ("encrypt,decrypt").
pub(crate) fn mask_value(table_name: &str, input: &str) -> Result<u32, CliError> {
    input
        .split([',', '|'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .try_fold(0u32, |acc, part| Ok(acc | enum_value(table_name, part)?))
}

/// The tag of a standard attribute named on the command line ("Cryptographic Length",
/// "CryptographicLength", "cryptographic-length").
pub(crate) fn attribute_tag(input: &str) -> Option<&'static TagDef> {
    let want = normalize(input);
    spec::tags()
        .iter()
        .find(|t| normalize(t.name) == want || normalize(t.xml_name) == want)
}

/// The XML name of `value` in `table` ("SymmetricKey"), or its hex value.
pub(crate) fn xml_name(table: Option<&EnumDef>, value: u32) -> String {
    table
        .and_then(|t| t.entry(value))
        .map_or_else(|| format!("0x{value:08X}"), |e| e.xml_name.to_owned())
}
