//! Placeholders (`$UNIQUE_IDENTIFIER_0`, `$NOW-3600`, `$DATA_0`, ...) kept as recognizable
//! markers while a test case is read, because their values depend on earlier responses.
//!
//! The XML reader hands every `$...` value to a resolver together with the declared item type;
//! the resolver here returns a marker of that type and remembers the text:
//!
//! - a Text String keeps the literal text (`$UNIQUE_IDENTIFIER_0`);
//! - a Byte String becomes `\0kmipd-ph:N` and a Date-Time (Extended) becomes `i64::MIN + N`,
//!   where `N` indexes a side table of placeholder texts.
//!
//! Other item types carry no placeholder in the 1.0-2.1 test cases and are refused.

use kmipd_ttlv::{ItemType, Tag, Value};

/// The prefix of a Byte String marker.
const BYTES_MARKER: &[u8] = b"\0kmipd-ph:";
/// The first Date-Time marker value; markers occupy `DATE_MARKER..DATE_MARKER + 2^20`.
const DATE_MARKER: i64 = i64::MIN;
/// How many Date-Time markers one document may have.
const DATE_MARKER_SPAN: usize = 1 << 20;

/// What a placeholder stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Placeholder {
    /// `$UNIQUE_IDENTIFIER[_n]`: a server-chosen identifier, bound on first sight.
    Uid(String),
    /// `$NOW`, `$NOW-3600`: the current time plus the offset in seconds.
    Now(i64),
    /// `$..._RANDOM_n`: a value the client invents.
    ClientRandom(String),
    /// Any other (`$DATA_0`, `$SIGNATURE_DATA`, ...): server-chosen, captured, replayed.
    Server(String),
}

impl Placeholder {
    /// The kind of placeholder a text is.
    pub(crate) fn classify(text: &str) -> Placeholder {
        if let Some(rest) = text.strip_prefix("$NOW") {
            let offset = match rest {
                "" => Some(0),
                _ => rest
                    .strip_prefix('+')
                    .unwrap_or(rest)
                    .trim()
                    .parse::<i64>()
                    .ok(),
            };
            if let Some(offset) = offset {
                return Placeholder::Now(offset);
            }
        }
        if text.contains("_RANDOM") {
            Placeholder::ClientRandom(text.to_owned())
        } else if text == "$UNIQUE_IDENTIFIER" || text.starts_with("$UNIQUE_IDENTIFIER_") {
            Placeholder::Uid(text.to_owned())
        } else {
            Placeholder::Server(text.to_owned())
        }
    }
}

/// The side table of one document's placeholders, and the resolver that fills it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Markers {
    names: Vec<String>,
}

impl Markers {
    /// The marker value for a placeholder of this type (the XML reader's resolver).
    pub(crate) fn resolve(&mut self, _tag: Tag, ty: ItemType, text: &str) -> Result<Value, String> {
        let index = self.names.len();
        let marker = match ty {
            ItemType::TextString => return Ok(Value::TextString(text.to_owned())),
            ItemType::ByteString => {
                let mut bytes = BYTES_MARKER.to_vec();
                bytes.extend_from_slice(index.to_string().as_bytes());
                Value::bytes(bytes)
            }
            ItemType::DateTime | ItemType::DateTimeExtended => {
                let n = i64::try_from(index)
                    .ok()
                    .filter(|_| index < DATE_MARKER_SPAN)
                    .ok_or("too many placeholders")?;
                let v = DATE_MARKER + n;
                if ty == ItemType::DateTime {
                    Value::DateTime(v)
                } else {
                    Value::DateTimeExtended(v)
                }
            }
            other => return Err(format!("placeholders of type {other} are not supported")),
        };
        self.names.push(text.to_owned());
        Ok(marker)
    }

    /// The placeholder text a value stands for, if it is a marker.
    pub(crate) fn lookup<'a>(&'a self, value: &'a Value) -> Option<&'a str> {
        match value {
            Value::TextString(s) if s.starts_with('$') => Some(s),
            Value::ByteString(b) => {
                let digits = b.strip_prefix(BYTES_MARKER)?;
                let index: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
                self.names.get(index).map(String::as_str)
            }
            Value::DateTime(v) | Value::DateTimeExtended(v) => {
                let index = usize::try_from(v.checked_sub(DATE_MARKER)?).ok()?;
                if index >= DATE_MARKER_SPAN {
                    return None;
                }
                self.names.get(index).map(String::as_str)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip() {
        let mut m = Markers::default();
        let t = Tag::new(0x42_0094).unwrap();
        let a = m.resolve(t, ItemType::ByteString, "$DATA_0").unwrap();
        let b = m.resolve(t, ItemType::DateTime, "$NOW-3600").unwrap();
        let c = m
            .resolve(t, ItemType::TextString, "$UNIQUE_IDENTIFIER_1")
            .unwrap();
        let d = m.resolve(t, ItemType::DateTimeExtended, "$NOW+20").unwrap();
        assert_eq!(m.lookup(&a), Some("$DATA_0"));
        assert_eq!(m.lookup(&b), Some("$NOW-3600"));
        assert_eq!(m.lookup(&c), Some("$UNIQUE_IDENTIFIER_1"));
        assert_eq!(
            m.lookup(&d).map(Placeholder::classify),
            Some(Placeholder::Now(20))
        );
        assert_eq!(m.lookup(&Value::DateTime(0)), None);
        assert_eq!(m.lookup(&Value::bytes(vec![1, 2])), None);
        assert!(m.resolve(t, ItemType::Integer, "$X").is_err());
    }

    #[test]
    fn classification() {
        use Placeholder::*;
        assert_eq!(Placeholder::classify("$NOW"), Now(0));
        assert_eq!(Placeholder::classify("$NOW-3600"), Now(-3600));
        assert_eq!(Placeholder::classify("$NOW+31536000"), Now(31_536_000));
        assert!(matches!(
            Placeholder::classify("$UNIQUE_IDENTIFIER_3"),
            Uid(_)
        ));
        assert!(matches!(
            Placeholder::classify("$UNIQUE_IDENTIFIER"),
            Uid(_)
        ));
        assert!(matches!(
            Placeholder::classify("$UNIQUE_IDENTIFIER_RANDOM_0"),
            ClientRandom(_)
        ));
        assert!(matches!(Placeholder::classify("$DATA_0"), Server(_)));
        assert!(matches!(
            Placeholder::classify("$SHORT_UNIQUE_IDENTIFIER_0"),
            Server(_)
        ));
    }
}
