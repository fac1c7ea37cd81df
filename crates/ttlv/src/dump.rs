//! A readable rendering of a tree, for logs and debugging.

use std::fmt::Write;

use crate::{Tag, Ttlv, Value};

/// Where [`dump`] finds names. `kmipd-proto` implements it with the KMIP tables; this crate
/// knows no names itself.
pub trait Names {
    /// The name of a tag, if known.
    fn tag_name(&self, tag: Tag) -> Option<&str>;
    /// The name of an enumeration value carried by an item with this tag, if known.
    fn enum_name(&self, tag: Tag, value: u32) -> Option<&str> {
        let _ = (tag, value);
        None
    }
}

/// Names nothing: tags and values are shown in hex.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNames;

impl Names for NoNames {
    fn tag_name(&self, _: Tag) -> Option<&str> {
        None
    }
}

/// How [`dump_with`] renders values.
#[derive(Debug, Clone, Copy, Default)]
pub struct DumpOptions {
    /// Show Byte String and Big Integer contents in hex. Off by default: those carry key
    /// material, and a dump may end up in a log. Turn on only for local debugging.
    pub show_secrets: bool,
}

/// Renders `item` one line per item, indented by depth, with secret bytes hidden.
///
/// ```text
/// RequestMessage (0x420078) Structure
///   Operation (0x42005C) Enumeration = Create (0x00000001)
///   KeyMaterial (0x420043) ByteString = <32 bytes>
/// ```
pub fn dump(item: &Ttlv, names: &dyn Names) -> String {
    dump_with(item, names, DumpOptions::default())
}

/// [`dump`] with options.
pub fn dump_with(item: &Ttlv, names: &dyn Names, options: DumpOptions) -> String {
    let mut out = String::new();
    item.walk(&mut |it, depth| {
        line(&mut out, it, depth, names, options);
    });
    out
}

fn line(out: &mut String, item: &Ttlv, depth: usize, names: &dyn Names, options: DumpOptions) {
    // Writing to a String cannot fail.
    let _ = write!(out, "{:indent$}", "", indent = depth * 2);
    match names.tag_name(item.tag) {
        Some(name) => {
            let _ = write!(out, "{name} ({})", item.tag);
        }
        None => {
            let _ = write!(out, "{}", item.tag);
        }
    }
    let _ = write!(out, " {}", item.item_type());
    let _ = match &item.value {
        Value::Structure(_) => Ok(()),
        Value::Integer(v) => write!(out, " = {v}"),
        Value::LongInteger(v) => write!(out, " = {v}"),
        Value::Enumeration(v) => match names.enum_name(item.tag, *v) {
            Some(name) => write!(out, " = {name} (0x{v:08X})"),
            None => write!(out, " = 0x{v:08X}"),
        },
        Value::Boolean(v) => write!(out, " = {v}"),
        Value::TextString(s) => write!(out, " = {s:?}"),
        Value::ByteString(b) => secret(out, b, options),
        Value::BigInteger(b) => secret(out, b.as_bytes(), options),
        Value::DateTime(v) => write!(out, " = {} ({v})", civil(*v, 0)),
        Value::Interval(v) => write!(out, " = {v} s"),
        Value::DateTimeExtended(v) => {
            write!(
                out,
                " = {} ({v})",
                civil(v.div_euclid(1_000_000), v.rem_euclid(1_000_000))
            )
        }
    };
    out.push('\n');
}

fn secret(out: &mut String, bytes: &[u8], options: DumpOptions) -> std::fmt::Result {
    if options.show_secrets {
        out.push_str(" = ");
        for b in bytes {
            write!(out, "{b:02x}")?;
        }
        Ok(())
    } else {
        write!(out, " = <{} bytes>", bytes.len())
    }
}

/// `secs` since the epoch as an ISO 8601 UTC date and time (proleptic Gregorian calendar;
/// Howard Hinnant's days-to-civil algorithm).
fn civil(secs: i64, micros: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = i128::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i128::from(m <= 2);
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if micros == 0 {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{micros:06}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BigInteger;

    struct Two;
    impl Names for Two {
        fn tag_name(&self, tag: Tag) -> Option<&str> {
            (tag.value() == 0x42_0078).then_some("RequestMessage")
        }
        fn enum_name(&self, _: Tag, value: u32) -> Option<&str> {
            (value == 1).then_some("Create")
        }
    }

    fn t(v: u32) -> Tag {
        Tag::new(v).unwrap()
    }

    #[test]
    fn dump_names_indents_and_hides_secrets() {
        let item = Ttlv::new(
            t(0x42_0078),
            Value::Structure(vec![
                Ttlv::new(t(0x42_005C), Value::Enumeration(1)),
                Ttlv::new(t(0x54_0001), Value::bytes(vec![0xAB, 0xCD])),
                Ttlv::new(t(0x42_0092), Value::DateTime(1_234_567_890)),
                Ttlv::new(t(0x42_0093), Value::DateTimeExtended(-1)),
                Ttlv::new(
                    t(0x42_0094),
                    Value::BigInteger(BigInteger::from_twos_complement(&[1])),
                ),
            ]),
        );
        let text = dump(&item, &Two);
        assert_eq!(
            text,
            "RequestMessage (0x420078) Structure\n  \
             0x42005C Enumeration = Create (0x00000001)\n  \
             0x540001 ByteString = <2 bytes>\n  \
             0x420092 DateTime = 2009-02-13T23:31:30Z (1234567890)\n  \
             0x420093 DateTimeExtended = 1969-12-31T23:59:59.999999Z (-1)\n  \
             0x420094 BigInteger = <8 bytes>\n"
        );
        let shown = dump_with(&item, &NoNames, DumpOptions { show_secrets: true });
        assert!(shown.starts_with("0x420078 Structure\n"));
        assert!(shown.contains("0x540001 ByteString = abcd\n"));
        assert!(shown.contains("0x420094 BigInteger = 0000000000000001\n"));
    }
}
