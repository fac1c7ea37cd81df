//! Attributes in one internal form, read from and written to both wire forms.
//!
//! - KMIP 1.x: `Attribute { Attribute Name (text), Attribute Index?, Attribute Value }`, the
//!   name being the spec name ("Cryptographic Algorithm") or a custom `x-`/`y-` name; lists in
//!   Template-Attribute structures.
//! - KMIP 2.x: an `Attributes` structure whose children are tagged by the attribute itself
//!   (`<CryptographicAlgorithm>`), vendor attributes as `Attribute { Vendor Identification,
//!   Attribute Name, Attribute Value }`; Attribute Reference names one by tag.
//!
//! Internally an attribute is a [`AttrName`] and a TTLV [`Value`] (a structure's children keep
//! their own tags, identical in both versions). Multi-instance attributes repeat the name; the
//! 1.x Attribute Index of an instance is its position among the instances of that name.
//!
//! The rules every crate reads attributes by live here once: a custom attribute has one
//! spelling whichever version wrote it ([`AttrName::canonical`], [`AttrName::same_attribute`]),
//! a Date-Time is compared in seconds ([`date_seconds`]), and a Name is found by its Name Value
//! ([`name_value`], [`Attributes::name_values`]). The store's queries and indexes and the
//! engine use these, so what Locate asks and what the index answers agree.

use kmipd_ttlv::{Tag, Ttlv, Value};

use crate::build;
use crate::reader::{self, ProtoError, StructReader};
use crate::spec::{self, Version, tag};

/// Which attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttrName {
    /// An attribute of the specification, by its tag.
    Std(Tag),
    /// A custom attribute: 1.x `x-name`/`y-name` (vendor `None`), 2.x vendor attribute.
    Custom {
        /// 2.x Vendor Identification.
        vendor: Option<String>,
        /// The attribute name.
        name: String,
    },
}

impl AttrName {
    /// The 1.x name: the spec name, or the custom name (a 2.x vendor attribute becomes
    /// `vendor-name` unless the name already has an `x-`/`y-` prefix).
    pub fn v1_name(&self) -> String {
        match self {
            AttrName::Std(t) => reader::name(*t),
            AttrName::Custom { vendor: None, name } => name.clone(),
            AttrName::Custom {
                vendor: Some(v),
                name,
            } => {
                if name.starts_with("x-") || name.starts_with("y-") {
                    name.clone()
                } else {
                    format!("{v}-{name}")
                }
            }
        }
    }

    /// The attribute for a 1.x Attribute Name.
    pub fn from_v1_name(name: &str) -> AttrName {
        if name.starts_with("x-") || name.starts_with("y-") {
            return AttrName::Custom {
                vendor: None,
                name: name.to_owned(),
            };
        }
        match spec::tag_by_name(name) {
            Some(t) => AttrName::Std(Tag::from_bytes(tag_bytes(t.tag))),
            None => AttrName::Custom {
                vendor: None,
                name: name.to_owned(),
            },
        }
    }

    /// True when this version defines the attribute (custom attributes always are): its tag
    /// exists in that version and, for the few tags that were fields before they became
    /// attributes, the version has the attribute.
    pub fn defined_in(&self, version: Version) -> bool {
        match self {
            AttrName::Std(t) => {
                let became_attribute = ATTRIBUTE_SINCE
                    .iter()
                    .find(|(tag, _)| tag == t)
                    .is_none_or(|(_, since)| version >= *since);
                became_attribute
                    && spec::tag_by_value(t.value()).is_some_and(|d| d.defined_in(version))
            }
            AttrName::Custom { .. } => true,
        }
    }

    /// The canonical form: a custom attribute in its 1.x spelling without a separate vendor
    /// (`x-foo` for the 2.x vendor attribute `x`/`foo`, see [`v1_name`](Self::v1_name)); a
    /// standard one unchanged.
    pub fn canonical(&self) -> AttrName {
        match self {
            AttrName::Std(t) => AttrName::Std(*t),
            AttrName::Custom { .. } => AttrName::Custom {
                vendor: None,
                name: self.v1_name(),
            },
        }
    }

    /// True when this is a custom attribute whose 1.x spelling ([`v1_name`](Self::v1_name)) is
    /// `v1`; nothing is allocated.
    pub fn is_custom_v1(&self, v1: &str) -> bool {
        match self {
            AttrName::Std(_) => false,
            AttrName::Custom { vendor: None, name } => name == v1,
            AttrName::Custom {
                vendor: Some(v),
                name,
            } => {
                if name.starts_with("x-") || name.starts_with("y-") {
                    name == v1
                } else {
                    v1.strip_prefix(v.as_str())
                        .and_then(|rest| rest.strip_prefix('-'))
                        == Some(name.as_str())
                }
            }
        }
    }

    /// True when both name the same attribute: standard ones by tag, custom ones by their 1.x
    /// spelling, so a 1.x `x-foo` and a 2.x vendor attribute `x`/`foo` are one attribute.
    pub fn same_attribute(&self, other: &AttrName) -> bool {
        match (self, other) {
            (AttrName::Std(x), AttrName::Std(y)) => x == y,
            (AttrName::Custom { .. }, AttrName::Custom { .. }) => self.v1_name() == other.v1_name(),
            _ => false,
        }
    }

    /// The spec tag, for standard attributes.
    pub fn tag(&self) -> Option<Tag> {
        match self {
            AttrName::Std(t) => Some(*t),
            AttrName::Custom { .. } => None,
        }
    }
}

/// Tags that were message fields before the version that made them attributes (KMIP 2.0
/// §4.26 Key Format Type is an attribute; in 1.x it is only a Key Block field). A 1.x client must
/// not see them among an object's attributes.
const ATTRIBUTE_SINCE: [(Tag, Version); 1] = [(tag::KEY_FORMAT_TYPE, Version::V2_0)];

fn tag_bytes(v: u32) -> [u8; 3] {
    let [_, a, b, c] = v.to_be_bytes();
    [a, b, c]
}

/// A Date-Time or Date-Time Extended value in seconds (microseconds rounded down); `None` for
/// any other type.
pub fn date_seconds(v: &Value) -> Option<i64> {
    match v {
        Value::DateTime(d) => Some(*d),
        Value::DateTimeExtended(d) => Some(d.div_euclid(1_000_000)),
        _ => None,
    }
}

/// The Name Value of a Name attribute's value: its first Name Value item, when that is a Text
/// String.
pub fn name_value(v: &Value) -> Option<&str> {
    match v {
        Value::Structure(items) => match &items.iter().find(|i| i.tag == tag::NAME_VALUE)?.value {
            Value::TextString(s) => Some(s.as_str()),
            _ => None,
        },
        _ => None,
    }
}

/// One attribute instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    /// Which attribute.
    pub name: AttrName,
    /// Its value.
    pub value: Value,
}

impl Attribute {
    /// A standard attribute.
    pub fn std(t: Tag, value: Value) -> Self {
        Attribute {
            name: AttrName::Std(t),
            value,
        }
    }

    /// Reads a 1.x `Attribute` structure; returns the attribute and the Attribute Index sent.
    pub fn from_v1(item: &Ttlv) -> Result<(Attribute, Option<i32>), ProtoError> {
        let r = StructReader::new(item, tag::ATTRIBUTE)?;
        let name = AttrName::from_v1_name(r.req_text(tag::ATTRIBUTE_NAME)?);
        let index = r.int(tag::ATTRIBUTE_INDEX)?;
        let value = match r.optional(tag::ATTRIBUTE_VALUE) {
            Some(v) => v.value.clone(),
            None => return Err(ProtoError::Missing(tag::ATTRIBUTE_VALUE)),
        };
        Ok((Attribute { name, value }, index))
    }

    /// Reads a 1.x `Attribute` that may lack its value (Get/Delete forms): name, index, value.
    pub fn ref_from_v1(item: &Ttlv) -> Result<(AttrName, Option<i32>, Option<Value>), ProtoError> {
        let r = StructReader::new(item, tag::ATTRIBUTE)?;
        let name = AttrName::from_v1_name(r.req_text(tag::ATTRIBUTE_NAME)?);
        let index = r.int(tag::ATTRIBUTE_INDEX)?;
        Ok((
            name,
            index,
            r.optional(tag::ATTRIBUTE_VALUE).map(|v| v.value.clone()),
        ))
    }

    /// The 1.x `Attribute` structure (the index is written when given).
    pub fn to_v1(&self, index: Option<i32>) -> Ttlv {
        let mut items = vec![build::text(tag::ATTRIBUTE_NAME, self.name.v1_name())];
        if let Some(i) = index {
            items.push(build::int(tag::ATTRIBUTE_INDEX, i));
        }
        items.push(Ttlv::new(tag::ATTRIBUTE_VALUE, self.value.clone()));
        build::structure(tag::ATTRIBUTE, items)
    }

    /// Reads one child of a 2.x `Attributes` structure (or a 2.x New/Current Attribute's child).
    pub fn from_v2(item: &Ttlv) -> Result<Attribute, ProtoError> {
        if item.tag == tag::ATTRIBUTE {
            let r = StructReader::any(item)?;
            let vendor = r.text(tag::VENDOR_IDENTIFICATION)?.map(str::to_owned);
            let name = r.req_text(tag::ATTRIBUTE_NAME)?;
            let value = r.required(tag::ATTRIBUTE_VALUE)?.value.clone();
            let name = match vendor {
                Some(v) => AttrName::Custom {
                    vendor: Some(v),
                    name: name.to_owned(),
                },
                None => AttrName::from_v1_name(name),
            };
            return Ok(Attribute { name, value });
        }
        Ok(Attribute {
            name: AttrName::Std(item.tag),
            value: item.value.clone(),
        })
    }

    /// The 2.x form: the tagged item, or a vendor `Attribute` structure.
    pub fn to_v2(&self) -> Ttlv {
        match &self.name {
            AttrName::Std(t) => Ttlv::new(*t, self.value.clone()),
            AttrName::Custom { vendor, name } => {
                let (vendor, name) = match vendor {
                    Some(v) => (v.clone(), name.clone()),
                    None => split_custom(name),
                };
                build::structure(
                    tag::ATTRIBUTE,
                    vec![
                        build::text(tag::VENDOR_IDENTIFICATION, vendor),
                        build::text(tag::ATTRIBUTE_NAME, name),
                        Ttlv::new(tag::ATTRIBUTE_VALUE, self.value.clone()),
                    ],
                )
            }
        }
    }
}

/// A 1.x custom name `x-foo` as a 2.x (vendor, name) pair.
fn split_custom(name: &str) -> (String, String) {
    match name.split_once('-') {
        Some((v, n)) if !v.is_empty() && !n.is_empty() => (v.to_owned(), n.to_owned()),
        _ => (String::new(), name.to_owned()),
    }
}

/// An ordered set of attribute instances (multi-instance attributes repeat their name).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Attributes(pub Vec<Attribute>);

impl Attributes {
    /// No attributes.
    pub fn new() -> Self {
        Attributes(Vec::new())
    }

    /// The first instance of a standard attribute.
    pub fn get(&self, t: Tag) -> Option<&Value> {
        self.0
            .iter()
            .find(|a| a.name == AttrName::Std(t))
            .map(|a| &a.value)
    }

    /// Every instance of an attribute, in order.
    pub fn all<'a>(&'a self, name: &'a AttrName) -> impl Iterator<Item = &'a Value> + 'a {
        self.0
            .iter()
            .filter(move |a| &a.name == name)
            .map(|a| &a.value)
    }

    /// The number of instances of an attribute.
    pub fn count(&self, name: &AttrName) -> usize {
        self.0.iter().filter(|a| &a.name == name).count()
    }

    /// True when at least one instance exists.
    pub fn has(&self, name: &AttrName) -> bool {
        self.0.iter().any(|a| &a.name == name)
    }

    /// Replaces every instance of a standard attribute with one value.
    pub fn set(&mut self, t: Tag, value: Value) {
        self.set_named(AttrName::Std(t), value);
    }

    /// Replaces every instance of an attribute with one value (kept at the first one's place).
    pub fn set_named(&mut self, name: AttrName, value: Value) {
        match self.0.iter().position(|a| a.name == name) {
            Some(pos) => {
                if let Some(slot) = self.0.get_mut(pos) {
                    slot.value = value;
                }
                let mut i = 0usize;
                self.0.retain(|a| {
                    let keep = a.name != name || i == pos;
                    i += 1;
                    keep
                });
            }
            None => self.0.push(Attribute { name, value }),
        }
    }

    /// Appends an instance; returns its index among the instances of that name.
    pub fn add(&mut self, attr: Attribute) -> usize {
        let index = self.count(&attr.name);
        self.0.push(attr);
        index
    }

    /// The `index`-th instance of an attribute, mutable.
    pub fn instance_mut(&mut self, name: &AttrName, index: usize) -> Option<&mut Value> {
        self.0
            .iter_mut()
            .filter(|a| &a.name == name)
            .nth(index)
            .map(|a| &mut a.value)
    }

    /// Removes the `index`-th instance; returns it.
    pub fn remove_instance(&mut self, name: &AttrName, index: usize) -> Option<Value> {
        let pos = self
            .0
            .iter()
            .enumerate()
            .filter(|(_, a)| &a.name == name)
            .nth(index)
            .map(|(p, _)| p)?;
        Some(self.0.remove(pos).value)
    }

    /// Removes every instance of an attribute; returns how many there were.
    pub fn remove_all(&mut self, name: &AttrName) -> usize {
        let before = self.0.len();
        self.0.retain(|a| &a.name != name);
        before - self.0.len()
    }

    /// The instances with their per-name index, in order.
    pub fn indexed(&self) -> Vec<(usize, &Attribute)> {
        let mut counts: Vec<(&AttrName, usize)> = Vec::new();
        self.0
            .iter()
            .map(|a| {
                let n = match counts.iter_mut().find(|(n, _)| *n == &a.name) {
                    Some((_, c)) => {
                        *c += 1;
                        *c
                    }
                    None => {
                        counts.push((&a.name, 0));
                        0
                    }
                };
                (n, a)
            })
            .collect()
    }

    /// Iterates over the instances.
    pub fn iter(&self) -> std::slice::Iter<'_, Attribute> {
        self.0.iter()
    }

    /// True when an instance of `name` ([`AttrName::same_attribute`]) is a date
    /// ([`date_seconds`]) in `[from, to]`, both ends included.
    pub fn has_date_in(&self, name: &AttrName, from: i64, to: i64) -> bool {
        self.0
            .iter()
            .filter(|a| a.name.same_attribute(name))
            .filter_map(|a| date_seconds(&a.value))
            .any(|d| from <= d && d <= to)
    }

    /// The Name Values of the Name attributes ([`name_value`]), in order.
    pub fn name_values(&self) -> impl Iterator<Item = &str> {
        self.all(&AttrName::Std(tag::NAME)).filter_map(name_value)
    }
}

/// Attributes read from a request: in 1.x a Template-Attribute (or Common/Private/Public Key
/// Template-Attribute) structure of `Attribute`s, in 2.x an `Attributes` structure (or Common/
/// Private/Public Key Attributes). Template `Name` references in 1.x templates are refused by
/// the caller (templates are not supported), so they are returned apart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestAttributes {
    /// The attributes, in order.
    pub attributes: Attributes,
    /// 1.x: the Attribute Index of each instance as sent (same order).
    pub indexes: Vec<Option<i32>>,
    /// 1.x: names of templates referenced (unsupported).
    pub template_names: Vec<Ttlv>,
}

impl RequestAttributes {
    /// Reads a 1.x Template-Attribute-like structure (children `Name` and `Attribute`).
    pub fn from_v1_template(item: &Ttlv) -> Result<Self, ProtoError> {
        let r = StructReader::any(item)?;
        let mut out = RequestAttributes::default();
        for child in r.items() {
            if child.tag == tag::ATTRIBUTE {
                let (a, index) = match Attribute::from_v1(child) {
                    Err(ProtoError::Missing(t)) if t == tag::ATTRIBUTE_NAME => {
                        nameless_cryptographic_parameters(child)
                            .ok_or(ProtoError::Missing(tag::ATTRIBUTE_NAME))?
                    }
                    other => other?,
                };
                out.attributes.0.push(a);
                out.indexes.push(index);
            } else if child.tag == tag::NAME {
                out.template_names.push(child.clone());
            } else {
                return Err(ProtoError::WrongTag {
                    expected: tag::ATTRIBUTE,
                    found: child.tag,
                });
            }
        }
        Ok(out)
    }

    /// Reads a 2.x Attributes-like structure.
    pub fn from_v2_attributes(item: &Ttlv) -> Result<Self, ProtoError> {
        let r = StructReader::any(item)?;
        let mut out = RequestAttributes::default();
        for child in r.items() {
            out.attributes.0.push(Attribute::from_v2(child)?);
            out.indexes.push(None);
        }
        Ok(out)
    }
}

/// The OASIS 1.2 cases CS-AC-M-3-12 and CS-AC-M-8-12 send a Cryptographic Parameters attribute
/// without its Attribute Name. An Attribute whose value is a structure made only of Cryptographic
/// Parameters fields can only be that attribute, so it is read as one; anything else without a
/// name stays an error.
fn nameless_cryptographic_parameters(item: &Ttlv) -> Option<(Attribute, Option<i32>)> {
    const FIELDS: [Tag; 6] = [
        tag::BLOCK_CIPHER_MODE,
        tag::PADDING_METHOD,
        tag::HASHING_ALGORITHM,
        tag::KEY_ROLE_TYPE,
        tag::DIGITAL_SIGNATURE_ALGORITHM,
        tag::CRYPTOGRAPHIC_ALGORITHM,
    ];
    let r = StructReader::new(item, tag::ATTRIBUTE).ok()?;
    let value = r.optional(tag::ATTRIBUTE_VALUE)?;
    let children = value.children()?;
    if children.is_empty() || !children.iter().all(|c| FIELDS.contains(&c.tag)) {
        return None;
    }
    let index = r.int(tag::ATTRIBUTE_INDEX).ok()?;
    Some((
        Attribute::std(tag::CRYPTOGRAPHIC_PARAMETERS, value.value.clone()),
        index,
    ))
}

/// Writes attributes in a version's form: 1.x a list of `Attribute` structures (with their
/// index when `with_index`), 2.x the tagged items. Attributes the version does not define are
/// left out.
pub fn write_attributes(
    attrs: &[(usize, &Attribute)],
    version: Version,
    with_index: bool,
) -> Vec<Ttlv> {
    let v2 = version >= Version::V2_0;
    attrs
        .iter()
        .filter(|(_, a)| a.name.defined_in(version))
        .map(|(i, a)| {
            if v2 {
                a.to_v2()
            } else {
                let index = if with_index {
                    i32::try_from(*i).ok()
                } else {
                    None
                };
                a.to_v1(index)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `is_custom_v1` answers as comparing the canonical forms does (which allocates).
    #[test]
    fn is_custom_v1_agrees_with_the_canonical_form() {
        let names = [
            AttrName::Std(tag::STATE),
            AttrName::from_v1_name("y-kmipd-dual-control"),
            AttrName::from_v1_name("x-other"),
            vendor("y", "kmipd-dual-control"),
            vendor("y", "y-kmipd-dual-control"),
            vendor("x", "kmipd-dual-control"),
            vendor("y-kmipd", "dual-control"),
            vendor("yy", "kmipd-dual-control"),
        ];
        for v1 in ["y-kmipd-dual-control", "x-other", "State", "y-"] {
            let wanted = AttrName::Custom {
                vendor: None,
                name: v1.to_owned(),
            };
            for n in &names {
                assert_eq!(
                    n.is_custom_v1(v1),
                    n.canonical() == wanted,
                    "{n:?} against {v1}"
                );
            }
        }
    }

    /// A 2.x vendor attribute.
    fn vendor(vendor: &str, name: &str) -> AttrName {
        AttrName::Custom {
            vendor: Some(vendor.to_owned()),
            name: name.to_owned(),
        }
    }

    #[test]
    fn a_custom_attribute_has_one_spelling_whichever_version_wrote_it() {
        let v1 = AttrName::from_v1_name;
        assert!(vendor("x", "attr").same_attribute(&v1("x-attr")));
        assert!(v1("x-attr").same_attribute(&vendor("x", "attr")));
        assert!(!vendor("x", "attr").same_attribute(&v1("x-other")));
        assert!(!v1("x-attr").same_attribute(&AttrName::Std(tag::NAME)));
        assert!(AttrName::Std(tag::NAME).same_attribute(&AttrName::Std(tag::NAME)));
        assert!(!AttrName::Std(tag::NAME).same_attribute(&AttrName::Std(tag::STATE)));
        assert_eq!(vendor("x", "attr").canonical(), v1("x-attr"));
        assert_eq!(vendor("v", "x-a").canonical(), v1("x-a"));
        let state = AttrName::Std(tag::STATE);
        assert_eq!(state.canonical(), state);
    }

    #[test]
    fn dates_in_seconds() {
        assert_eq!(
            date_seconds(&Value::DateTime(1_700_000_000)),
            Some(1_700_000_000)
        );
        assert_eq!(
            date_seconds(&Value::DateTimeExtended(1_700_000_000_999_999)),
            Some(1_700_000_000)
        );
        assert_eq!(date_seconds(&Value::DateTimeExtended(-1)), Some(-1));
        assert_eq!(date_seconds(&Value::LongInteger(5)), None);
    }

    #[test]
    fn name_values_are_read_from_name_structures() {
        let name = |v: Value| {
            Value::Structure(vec![
                Ttlv::new(tag::NAME_VALUE, v),
                Ttlv::new(tag::NAME_TYPE, Value::Enumeration(1)),
            ])
        };
        assert_eq!(
            name_value(&name(Value::TextString("k1".into()))),
            Some("k1")
        );
        assert_eq!(name_value(&name(Value::Integer(1))), None);
        assert_eq!(name_value(&Value::TextString("k1".into())), None);
        let mut attrs = Attributes::new();
        attrs.add(Attribute::std(
            tag::NAME,
            name(Value::TextString("a".into())),
        ));
        attrs.add(Attribute::std(
            tag::OBJECT_GROUP,
            Value::TextString("g".into()),
        ));
        attrs.add(Attribute::std(
            tag::NAME,
            name(Value::TextString("b".into())),
        ));
        assert_eq!(attrs.name_values().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn a_date_range_holds_an_instance_of_the_attribute() {
        let mut attrs = Attributes::new();
        let x = AttrName::from_v1_name("x-when");
        attrs.add(Attribute {
            name: x.clone(),
            value: Value::DateTimeExtended(100_000_000),
        });
        attrs.add(Attribute::std(tag::ACTIVATION_DATE, Value::DateTime(200)));
        let vendor = AttrName::Custom {
            vendor: Some("x".into()),
            name: "when".into(),
        };
        assert!(attrs.has_date_in(&vendor, 100, 100));
        assert!(attrs.has_date_in(&x, 50, 150));
        assert!(!attrs.has_date_in(&x, 101, 300));
        let activation = AttrName::Std(tag::ACTIVATION_DATE);
        assert!(attrs.has_date_in(&activation, 200, 200));
        assert!(!attrs.has_date_in(&activation, 0, 199));
    }
}
