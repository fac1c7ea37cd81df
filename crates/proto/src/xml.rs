//! The KMIP XML encoding of a TTLV tree (KMIP Additional Message Encodings v1.0 section 6,
//! KMIP Profiles 1.3 and later), both ways.
//!
//! One element per item: the element name is the tag's XML name (from [`crate::spec`]), the
//! `type` attribute the item type (Structure when absent) and the `value` attribute the value.
//! Unknown tags are written as `<TTLV tag="0x540001" type="TextString" value="x"/>`.
//! The value forms (hex, enumeration and mask names, dates) are those of [`crate::forms`],
//! shared with the JSON encoding; `docs/encodings.md` lists them.
//!
//! Placeholders of the OASIS test cases (`$NOW`, `$UNIQUE_IDENTIFIER_0`, ...) are never guessed:
//! the reader hands them to a caller-supplied [`PlaceholderResolver`].

use std::fmt::Write as _;

use kmipd_ttlv::{BigInteger, ItemType, Tag, Ttlv, Value};
use quick_xml::events::{BytesStart, Event};

use crate::forms;
use crate::spec::{self, EnumDef};

/// The element name for items whose tag has no name.
const TTLV_ELEMENT: &str = "TTLV";

/// Binds placeholders such as `$NOW` or `$UNIQUE_IDENTIFIER_0` to values.
///
/// Implemented for closures `FnMut(Tag, ItemType, &str) -> Result<Value, String>`.
pub trait PlaceholderResolver {
    /// The value for `placeholder` (the whole `value` attribute, e.g. `$NOW-3600`) of an item
    /// with this tag and declared type; the value must have that type.
    fn resolve(
        &mut self,
        tag: Tag,
        item_type: ItemType,
        placeholder: &str,
    ) -> Result<Value, String>;
}

impl<F> PlaceholderResolver for F
where
    F: FnMut(Tag, ItemType, &str) -> Result<Value, String>,
{
    fn resolve(
        &mut self,
        tag: Tag,
        item_type: ItemType,
        placeholder: &str,
    ) -> Result<Value, String> {
        self(tag, item_type, placeholder)
    }
}

/// A resolver that refuses every placeholder.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPlaceholders;

impl PlaceholderResolver for NoPlaceholders {
    fn resolve(&mut self, _: Tag, _: ItemType, placeholder: &str) -> Result<Value, String> {
        Err(format!("no resolver for placeholder {placeholder}"))
    }
}

/// Names beyond the generated tables, for both reading and writing.
#[derive(Debug, Clone, Copy, Default)]
pub struct XmlOptions<'a> {
    /// Extra element names and their tag numbers (checked after the spec tables).
    pub extra_tags: &'a [(&'a str, u32)],
    /// Extra `type` names read as one of the TTLV item types (written with the TTLV name).
    pub type_aliases: &'a [(&'a str, ItemType)],
    /// Tables for the Enumeration values of extra tags (tag number, table).
    pub extra_enums: &'a [(u32, &'static EnumDef)],
}

impl XmlOptions<'_> {
    fn tag_by_name(&self, name: &str) -> Option<u32> {
        spec::tag_by_xml_name(name).map(|t| t.tag).or_else(|| {
            self.extra_tags
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| *t)
        })
    }

    fn tag_name(&self, tag: u32) -> Option<&str> {
        forms::tag_name(tag).or_else(|| {
            self.extra_tags
                .iter()
                .find(|(_, t)| *t == tag)
                .map(|(n, _)| *n)
        })
    }

    fn enum_of_tag(&self, tag: u32) -> Option<&'static EnumDef> {
        spec::enum_of_tag(tag).or_else(|| {
            self.extra_enums
                .iter()
                .find(|(t, _)| *t == tag)
                .map(|(_, e)| *e)
        })
    }

    fn item_type(&self, name: &str) -> Option<ItemType> {
        ItemType::from_name(name).or_else(|| {
            self.type_aliases
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| *t)
        })
    }
}

/// What went wrong, without the position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlErrorKind {
    /// The text is not well-formed XML.
    #[error("malformed XML: {0}")]
    Syntax(String),
    /// No element at all.
    #[error("no root element")]
    NoRoot,
    /// Content after the root element (other than comments and the known stray end tag).
    #[error("content after the root element")]
    TrailingContent,
    /// An element name that is neither a tag name nor `TTLV`.
    #[error("unknown element name {0:?}")]
    UnknownName(String),
    /// A `TTLV` element without a usable `tag` attribute.
    #[error("bad or missing tag attribute {0:?}")]
    BadTag(String),
    /// An unknown `type` attribute.
    #[error("unknown type {0:?}")]
    UnknownType(String),
    /// A primitive item without a `value` attribute.
    #[error("missing value attribute")]
    MissingValue,
    /// A primitive item with child elements.
    #[error("a {0} item has child elements")]
    ChildOfPrimitive(ItemType),
    /// A value that does not parse as its type.
    #[error("invalid {item_type} value {value:?}")]
    InvalidValue {
        /// The declared type.
        item_type: ItemType,
        /// The text.
        value: String,
    },
    /// An enumeration or mask name that the item's table does not have (or no table).
    #[error("unknown enumeration name {0:?}")]
    UnknownEnumName(String),
    /// Elements nested deeper than [`kmipd_ttlv::Limits::HARD_MAX_DEPTH`] (a tree that deep
    /// could not be encoded or dropped without exhausting the stack).
    #[error("elements nested deeper than {0}")]
    TooDeep(usize),
    /// The resolver refused a placeholder.
    #[error("placeholder {placeholder:?}: {reason}")]
    Placeholder {
        /// The placeholder text.
        placeholder: String,
        /// The resolver's reason.
        reason: String,
    },
    /// The resolver returned a value of another type.
    #[error("placeholder {placeholder:?} resolved to a {got}, expected a {expected}")]
    PlaceholderType {
        /// The placeholder text.
        placeholder: String,
        /// The declared type.
        expected: ItemType,
        /// The type of the resolver's value.
        got: ItemType,
    },
}

/// A reading error with where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, {path}: {kind}")]
pub struct XmlError {
    /// What went wrong.
    pub kind: XmlErrorKind,
    /// The 1-based line of the offending element (or of the syntax error).
    pub line: usize,
    /// The element path, e.g. `/KMIP/RequestMessage/BatchItem/Operation`.
    pub path: String,
}

/// A read XML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlDocument {
    /// The name of the root element when it is a wrapper such as `KMIP` or `KmipTestCase`
    /// (whose children are the items); `None` when the root element is itself the one item.
    pub wrapper: Option<String>,
    /// The items (messages), in document order.
    pub items: Vec<Ttlv>,
}

/// Reads a document: a root element that is an item, or a wrapper (any name that is not a tag
/// name, such as `KMIP`) whose children are the items.
pub fn read_document(
    xml: &str,
    options: &XmlOptions<'_>,
    resolver: &mut dyn PlaceholderResolver,
) -> Result<XmlDocument, XmlError> {
    Parser {
        xml,
        options,
        resolver,
        path: Vec::new(),
        line_cache: (0, 1),
    }
    .run()
}

/// Reads a single item (the root element must be an item, not a wrapper).
pub fn read_item(
    xml: &str,
    options: &XmlOptions<'_>,
    resolver: &mut dyn PlaceholderResolver,
) -> Result<Ttlv, XmlError> {
    let doc = read_document(xml, options, resolver)?;
    match (doc.wrapper, <[Ttlv; 1]>::try_from(doc.items)) {
        (None, Ok([item])) => Ok(item),
        (wrapper, _) => Err(XmlError {
            kind: XmlErrorKind::UnknownName(wrapper.unwrap_or_default()),
            line: 1,
            path: String::from("/"),
        }),
    }
}

struct Frame {
    tag: Option<Tag>,
    /// `Some` for a primitive element written with an end tag.
    primitive: Option<Value>,
    children: Vec<Ttlv>,
}

struct Parser<'x, 'o, 'r> {
    xml: &'x str,
    options: &'o XmlOptions<'o>,
    resolver: &'r mut dyn PlaceholderResolver,
    path: Vec<String>,
    /// (byte position, its line), so that counting lines stays linear.
    line_cache: (usize, usize),
}

impl Parser<'_, '_, '_> {
    fn line_at(&mut self, pos: u64) -> usize {
        let pos = usize::try_from(pos)
            .unwrap_or(usize::MAX)
            .min(self.xml.len());
        let (from, line) = if pos >= self.line_cache.0 {
            self.line_cache
        } else {
            (0, 1)
        };
        let newlines = self
            .xml
            .get(from..pos)
            .map_or(0, |s| s.bytes().filter(|b| *b == b'\n').count());
        self.line_cache = (pos, line + newlines);
        line + newlines
    }

    fn err(&self, kind: XmlErrorKind, line: usize) -> XmlError {
        XmlError {
            kind,
            line,
            path: format!("/{}", self.path.join("/")),
        }
    }

    fn run(mut self) -> Result<XmlDocument, XmlError> {
        let mut reader = quick_xml::Reader::from_str(self.xml);
        // The end tags are checked here, so that the known stray `</KMIP>` can be tolerated.
        reader.config_mut().check_end_names = false;
        let mut stack: Vec<Frame> = Vec::new();
        let mut wrapper: Option<String> = None;
        let mut items = Vec::new();
        let mut root_seen = false;
        let mut root_closed = false;
        let mut root_name = String::new();
        loop {
            let start = reader.buffer_position();
            let event = match reader.read_event() {
                Ok(e) => e,
                Err(_) if root_closed && self.stray_root_end_tag(start, &root_name) => break,
                Err(e) => {
                    let line = self.line_at(reader.error_position());
                    return Err(self.err(XmlErrorKind::Syntax(e.to_string()), line));
                }
            };
            let line = self.line_at(start);
            match event {
                Event::Eof => break,
                Event::Start(e) | Event::Empty(e) if root_closed => {
                    self.path.push(e.name().as_ref().to_owned());
                    return Err(self.err(XmlErrorKind::TrailingContent, line));
                }
                // Known OASIS defect (1.4/testcases/TC-ECDSA-SIGN-1-14.xml): a duplicated end
                // tag of the root element. Anything else after the root is an error.
                Event::End(e) if root_closed && e.name().as_ref() == root_name => {}
                Event::End(_) if root_closed => {
                    return Err(self.err(XmlErrorKind::TrailingContent, line));
                }
                Event::Start(_) | Event::Empty(_) => {
                    let (e, empty) = match &event {
                        Event::Empty(e) => (e, true),
                        Event::Start(e) => (e, false),
                        _ => continue,
                    };
                    let name = e.name().as_ref().to_owned();
                    self.path.push(name.clone());
                    if !root_seen {
                        root_seen = true;
                        root_name.clone_from(&name);
                        if name != TTLV_ELEMENT && self.options.tag_by_name(&name).is_none() {
                            // The wrapper is written back by its name: it must be an XML name.
                            if !is_xml_name(&name) {
                                let kind =
                                    XmlErrorKind::Syntax(format!("invalid element name {name:?}"));
                                return Err(self.err(kind, line));
                            }
                            wrapper = Some(name);
                            if empty {
                                self.path.pop();
                                root_closed = true;
                            }
                            continue;
                        }
                    }
                    let siblings: &[Ttlv] = stack.last().map_or(&[], |f| f.children.as_slice());
                    let (tag, value) = self.element(e, siblings, line)?;
                    if let Some(parent) = stack.last()
                        && let Some(v) = &parent.primitive
                    {
                        let ty = v.item_type();
                        return Err(self.err(XmlErrorKind::ChildOfPrimitive(ty), line));
                    }
                    match (value, empty) {
                        (value, true) => {
                            self.path.pop();
                            let item =
                                Ttlv::new(tag, value.unwrap_or(Value::Structure(Vec::new())));
                            match stack.last_mut() {
                                Some(parent) => parent.children.push(item),
                                None => {
                                    items.push(item);
                                    root_closed = wrapper.is_none();
                                }
                            }
                        }
                        (_, false) if stack.len() >= kmipd_ttlv::Limits::HARD_MAX_DEPTH => {
                            let kind = XmlErrorKind::TooDeep(kmipd_ttlv::Limits::HARD_MAX_DEPTH);
                            return Err(self.err(kind, line));
                        }
                        (primitive, false) => stack.push(Frame {
                            tag: Some(tag),
                            primitive,
                            children: Vec::new(),
                        }),
                    }
                }
                Event::End(e) => {
                    if self.path.last().map(String::as_str) != Some(e.name().as_ref()) {
                        let kind = XmlErrorKind::Syntax(format!(
                            "end tag </{}> does not close the open element",
                            e.name().as_ref()
                        ));
                        return Err(self.err(kind, line));
                    }
                    self.path.pop();
                    let Some(frame) = stack.pop() else {
                        // The wrapper closes.
                        root_closed = true;
                        continue;
                    };
                    let Some(tag) = frame.tag else { continue };
                    let value = frame.primitive.unwrap_or(Value::Structure(frame.children));
                    let item = Ttlv::new(tag, value);
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(item),
                        None => {
                            items.push(item);
                            root_closed = wrapper.is_none();
                        }
                    }
                }
                // Comments, declarations, processing instructions, text such as `# TIME 0`.
                _ => {}
            }
        }
        if !root_seen {
            return Err(self.err(XmlErrorKind::NoRoot, 1));
        }
        if !root_closed || !stack.is_empty() {
            let line = self.line_at(u64::try_from(self.xml.len()).unwrap_or(u64::MAX));
            return Err(self.err(XmlErrorKind::Syntax(String::from("unclosed element")), line));
        }
        Ok(XmlDocument { wrapper, items })
    }

    /// Whether all that is left from `pos` is a duplicated end tag of the root element (the
    /// known OASIS defect of 1.4/testcases/TC-ECDSA-SIGN-1-14.xml), white space and comments.
    fn stray_root_end_tag(&self, pos: u64, root_name: &str) -> bool {
        let pos = usize::try_from(pos).unwrap_or(usize::MAX);
        let Some(rest) = self.xml.get(pos..) else {
            return false;
        };
        let Some(rest) = rest.trim_start().strip_prefix("</") else {
            return false;
        };
        let Some(rest) = rest.strip_prefix(root_name) else {
            return false;
        };
        let Some(mut rest) = rest.trim_start().strip_prefix('>') else {
            return false;
        };
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                return true;
            }
            match rest.strip_prefix("<!--").and_then(|r| r.split_once("-->")) {
                Some((_, after)) => rest = after,
                None => return false,
            }
        }
    }

    /// The tag and, for a primitive, the value of an element.
    fn element(
        &mut self,
        e: &BytesStart<'_>,
        siblings: &[Ttlv],
        line: usize,
    ) -> Result<(Tag, Option<Value>), XmlError> {
        let mut type_attr: Option<String> = None;
        let mut value_attr: Option<String> = None;
        let mut tag_attr: Option<String> = None;
        for attr in e.attributes() {
            let attr = attr.map_err(|err| self.err(XmlErrorKind::Syntax(err.to_string()), line))?;
            let raw = attr.value.as_ref();
            match attr.key.as_ref() {
                "type" => type_attr = Some(raw.trim().to_owned()),
                "value" => value_attr = Some(raw.to_owned()),
                "tag" => tag_attr = Some(raw.trim().to_owned()),
                _ => {}
            }
        }
        let name = e.name().as_ref().to_owned();
        let tag_number = if name == TTLV_ELEMENT {
            let text = tag_attr.unwrap_or_default();
            forms::parse_hex32(&text).map_err(|_| self.err(XmlErrorKind::BadTag(text), line))?
        } else {
            self.options
                .tag_by_name(&name)
                .ok_or_else(|| self.err(XmlErrorKind::UnknownName(name.clone()), line))?
        };
        let tag = Tag::new(tag_number)
            .map_err(|_| self.err(XmlErrorKind::BadTag(format!("0x{tag_number:X}")), line))?;
        let item_type = match type_attr {
            None => ItemType::Structure,
            Some(t) => self
                .options
                .item_type(&t)
                .ok_or_else(|| self.err(XmlErrorKind::UnknownType(t), line))?,
        };
        if item_type == ItemType::Structure {
            return Ok((tag, None));
        }
        let raw = value_attr.ok_or_else(|| self.err(XmlErrorKind::MissingValue, line))?;
        let text = attribute_text(&raw, item_type)
            .map_err(|err| self.err(XmlErrorKind::Syntax(err), line))?;
        if text.starts_with('$') {
            let value = self
                .resolver
                .resolve(tag, item_type, &text)
                .map_err(|reason| {
                    let placeholder = text.clone();
                    self.err(
                        XmlErrorKind::Placeholder {
                            placeholder,
                            reason,
                        },
                        line,
                    )
                })?;
            if value.item_type() != item_type {
                let kind = XmlErrorKind::PlaceholderType {
                    placeholder: text,
                    expected: item_type,
                    got: value.item_type(),
                };
                return Err(self.err(kind, line));
            }
            return Ok((tag, Some(value)));
        }
        let value = parse_value(tag, item_type, &text, siblings, self.options)
            .map_err(|kind| self.err(kind, line))?;
        Ok((tag, Some(value)))
    }
}

/// The attribute text: white space runs (values may wrap over lines) collapsed to one space
/// (trimmed for every type but Text String), then entities resolved.
fn attribute_text(raw: &str, item_type: ItemType) -> Result<String, String> {
    let mut collapsed = String::with_capacity(raw.len());
    let mut in_space = false;
    for c in raw.chars() {
        if c.is_ascii_whitespace() {
            if !in_space {
                collapsed.push(' ');
            }
            in_space = true;
        } else {
            collapsed.push(c);
            in_space = false;
        }
    }
    let text = quick_xml::escape::unescape(&collapsed).map_err(|e| e.to_string())?;
    // XML 1.0 has no form for the other control characters, not even as character references
    // (so the writer could not give them back).
    if let Some(c) = text.chars().find(|c| !is_xml_char(*c)) {
        return Err(format!(
            "character U+{:04X} is not allowed in XML",
            u32::from(c)
        ));
    }
    Ok(match item_type {
        ItemType::TextString => text.into_owned(),
        _ => text.trim().to_owned(),
    })
}

/// Whether `name` is an XML name (letters, digits, `_`, `-`, `.` and `:`, not starting with a
/// digit, `-` or `.`).
fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'))
}

/// Whether XML 1.0 allows the character (its `Char` production).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
        || c >= '\u{10000}'
}

/// The table of an item's Enumeration or mask value ([`forms::value_table`]).
fn table_for(tag: Tag, siblings: &[Ttlv], options: &XmlOptions<'_>) -> Option<&'static EnumDef> {
    forms::value_table(tag, siblings, |t| options.enum_of_tag(t))
}

fn parse_value(
    tag: Tag,
    item_type: ItemType,
    text: &str,
    siblings: &[Ttlv],
    options: &XmlOptions<'_>,
) -> Result<Value, XmlErrorKind> {
    let invalid = || XmlErrorKind::InvalidValue {
        item_type,
        value: text.to_owned(),
    };
    let is_hex = forms::hex_digits(text).is_some();
    let value = match item_type {
        ItemType::Structure => Value::Structure(Vec::new()),
        ItemType::Integer => {
            if let Ok(v) = text.parse::<i32>() {
                Value::Integer(v)
            } else {
                // A hex number, or a mask: names and/or hex, OR-ed.
                let table = table_for(tag, siblings, options).filter(|t| t.is_mask);
                let bits = forms::parse_mask(text, table).map_err(|e| match (e, table) {
                    (forms::MaskError::UnknownName(word), Some(_)) => {
                        XmlErrorKind::UnknownEnumName(word.to_owned())
                    }
                    _ => invalid(),
                })?;
                Value::Integer(forms::i32_of_bits(bits))
            }
        }
        ItemType::LongInteger if is_hex => Value::LongInteger(forms::i64_of_bits(
            forms::parse_hex64(text).map_err(|_| invalid())?,
        )),
        ItemType::LongInteger => Value::LongInteger(text.parse().map_err(|_| invalid())?),
        ItemType::BigInteger => {
            let bytes = zeroize::Zeroizing::new(
                forms::parse_hex_bytes(&without_space(text)).ok_or_else(invalid)?,
            );
            Value::BigInteger(BigInteger::from_twos_complement(&bytes))
        }
        ItemType::Enumeration if is_hex => {
            Value::Enumeration(forms::parse_hex32(text).map_err(|_| invalid())?)
        }
        ItemType::Enumeration => {
            let value = if forms::values_are_tags(tag) {
                options.tag_by_name(text)
            } else {
                table_for(tag, siblings, options).and_then(|t| t.value_by_xml_name(text))
            };
            Value::Enumeration(value.ok_or_else(|| XmlErrorKind::UnknownEnumName(text.to_owned()))?)
        }
        ItemType::Boolean => match text {
            "true" => Value::Boolean(true),
            "false" => Value::Boolean(false),
            _ => return Err(invalid()),
        },
        ItemType::TextString => Value::TextString(text.to_owned()),
        ItemType::ByteString => {
            Value::bytes(forms::parse_hex_bytes(&without_space(text)).ok_or_else(invalid)?)
        }
        ItemType::DateTime if is_hex => Value::DateTime(forms::i64_of_bits(
            forms::parse_hex64(text).map_err(|_| invalid())?,
        )),
        ItemType::DateTime => Value::DateTime(forms::parse_datetime(text).ok_or_else(invalid)?),
        ItemType::DateTimeExtended if is_hex => Value::DateTimeExtended(forms::i64_of_bits(
            forms::parse_hex64(text).map_err(|_| invalid())?,
        )),
        ItemType::DateTimeExtended => {
            Value::DateTimeExtended(forms::parse_datetime_extended(text).ok_or_else(invalid)?)
        }
        ItemType::Interval if is_hex => {
            Value::Interval(forms::parse_hex32(text).map_err(|_| invalid())?)
        }
        ItemType::Interval => Value::Interval(text.parse().map_err(|_| invalid())?),
    };
    Ok(value)
}

/// Hex bytes may wrap over lines in a test case (read as single spaces).
fn without_space(text: &str) -> String {
    text.chars().filter(|c| !c.is_ascii_whitespace()).collect()
}

/// Writes one item (and everything below it) as KMIP XML, two spaces per level.
pub fn write_item(item: &Ttlv, options: &XmlOptions<'_>) -> String {
    let mut out = String::new();
    write_rec(item, &[], 0, options, &mut out);
    out
}

/// Writes items inside a wrapper element (e.g. `KMIP`), as the OASIS test cases are.
pub fn write_document(wrapper: &str, items: &[Ttlv], options: &XmlOptions<'_>) -> String {
    let mut out = format!("<{wrapper}>\n");
    for item in items {
        write_rec(item, &[], 1, options, &mut out);
    }
    let _ = writeln!(out, "</{wrapper}>");
    out
}

fn write_rec(
    item: &Ttlv,
    siblings: &[Ttlv],
    depth: usize,
    options: &XmlOptions<'_>,
    out: &mut String,
) {
    for _ in 0..depth {
        out.push_str("  ");
    }
    let tag = item.tag;
    let name = options.tag_name(tag.value());
    match name {
        Some(n) => {
            out.push('<');
            out.push_str(n);
        }
        None => {
            let _ = write!(out, "<{TTLV_ELEMENT} tag=\"0x{:06X}\"", tag.value());
        }
    }
    let element = name.unwrap_or(TTLV_ELEMENT);
    match &item.value {
        Value::Structure(children) => {
            if children.is_empty() {
                out.push_str("/>\n");
            } else {
                out.push_str(">\n");
                for (i, child) in children.iter().enumerate() {
                    let before = children.get(..i).unwrap_or(&[]);
                    write_rec(child, before, depth + 1, options, out);
                }
                for _ in 0..depth {
                    out.push_str("  ");
                }
                let _ = writeln!(out, "</{element}>");
            }
        }
        value => {
            let text = value_text(tag, value, siblings, options);
            let _ = writeln!(out, " type=\"{}\" value=\"{}\"/>", value.item_type(), text);
        }
    }
}

/// The `value` attribute of a primitive (escaped).
fn value_text(tag: Tag, value: &Value, siblings: &[Ttlv], options: &XmlOptions<'_>) -> String {
    match value {
        Value::Structure(_) => String::new(),
        Value::Integer(v) => match table_for(tag, siblings, options).filter(|t| t.is_mask) {
            Some(table) if *v != 0 => forms::mask_text(table, forms::i32_bits(*v), " "),
            _ => v.to_string(),
        },
        Value::LongInteger(v) => v.to_string(),
        Value::BigInteger(v) => hex::encode_upper(v.as_bytes()),
        Value::Enumeration(v) => {
            let name = if forms::values_are_tags(tag) {
                options.tag_name(*v)
            } else {
                table_for(tag, siblings, options).and_then(|t| t.canonical_name(*v))
            };
            name.map_or_else(|| forms::hex32(*v), str::to_owned)
        }
        Value::Boolean(v) => v.to_string(),
        Value::TextString(s) => escape_text(s),
        Value::ByteString(b) => hex::encode_upper(b.as_slice()),
        Value::DateTime(secs) => forms::datetime_text(*secs),
        Value::DateTimeExtended(micros) => forms::datetime_extended_text(*micros),
        Value::Interval(v) => v.to_string(),
    }
}

/// Escapes a Text String so that reading (which collapses white space runs) gives it back.
fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_space = false;
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            ' ' if !prev_space => out.push(' '),
            c if c.is_ascii_whitespace() || c.is_control() => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            c => out.push(c),
        }
        prev_space = c == ' ' && !out.ends_with(';');
    }
    out
}

#[cfg(test)]
mod tests;
