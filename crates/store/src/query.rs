//! What [`ObjectStore::find`](crate::ObjectStore::find) is asked, and which of its filters an
//! index can answer.
//!
//! A [`Query`] is a conjunction of [`Filter`]s with exact semantics ([`Query::matches`]);
//! Locate turns the criteria it can express this way into filters and applies its full
//! matching rules to what comes back. A backend with indexes scans the index of each indexed
//! filter, intersects, and checks the rest on the loaded objects, so its answer equals the
//! answer of a full scan.

use kmipd_proto::attributes::{AttrName, date_seconds};
use kmipd_proto::tag;
use kmipd_ttlv::{Tag, Ttlv, Value};

use crate::{ManagedObject, StoreError};

/// One condition on an object.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// The object's owner is this identity.
    Owner(String),
    /// One of its Name attributes has this Name Value.
    Name(String),
    /// One instance of the attribute (custom names compared in their 1.x spelling) equals
    /// this value. Indexed for Object Type, State, Object Group, Cryptographic Algorithm,
    /// Cryptographic Length and every custom attribute with a scalar value.
    Attr(AttrName, Value),
    /// One Date-Time (or Date-Time Extended, in seconds) instance of the attribute lies in
    /// `[from, to]`, both ends included.
    Date(AttrName, i64, i64),
    /// The object has Rotate Automatic True and its Initial Date plus its Rotate Interval (when
    /// it is due for automatic rotation, [`rotation_due_at`]) is at or before this time.
    /// Indexed by that date, so the rotation scheduler reads only the objects due.
    RotationDue(i64),
}

/// When an object with Rotate Automatic True falls due for automatic rotation: its Initial
/// Date plus its Rotate Interval (`None` without both, or with Rotate Automatic not True).
/// Whether it is rotated then is the engine's decision (state, Rotate Latest, links).
pub fn rotation_due_at(o: &ManagedObject) -> Option<i64> {
    if o.attributes.get(tag::ROTATE_AUTOMATIC) != Some(&Value::Boolean(true)) {
        return None;
    }
    let interval = match o.attributes.get(tag::ROTATE_INTERVAL) {
        Some(Value::Interval(i)) if *i > 0 => i64::from(*i),
        _ => return None,
    };
    match o.attributes.get(tag::INITIAL_DATE) {
        Some(Value::DateTime(d)) => Some(d.saturating_add(interval)),
        _ => None,
    }
}

/// Filters that must all hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// The conditions.
    pub filters: Vec<Filter>,
}

impl Query {
    /// A query with these filters.
    pub fn new(filters: Vec<Filter>) -> Self {
        Query { filters }
    }

    /// True when the object satisfies every filter.
    pub fn matches(&self, o: &ManagedObject) -> bool {
        self.filters.iter().all(|f| f.matches(o))
    }
}

impl Filter {
    /// True when the object satisfies this filter.
    pub fn matches(&self, o: &ManagedObject) -> bool {
        match self {
            Filter::Owner(owner) => o.owner == *owner,
            Filter::Name(name) => o.attributes.name_values().any(|n| n == name),
            Filter::Attr(name, value) => o
                .attributes
                .iter()
                .any(|a| a.name.same_attribute(name) && a.value == *value),
            Filter::Date(name, from, to) => o.attributes.has_date_in(name, *from, *to),
            Filter::RotationDue(to) => rotation_due_at(o).is_some_and(|d| d <= *to),
        }
    }

    /// True when an index answers this filter.
    pub(crate) fn indexed(&self) -> bool {
        match self {
            Filter::Owner(_) | Filter::Name(_) | Filter::Date(..) | Filter::RotationDue(_) => true,
            Filter::Attr(name, value) => indexed_attr(name, value),
        }
    }
}

const INDEXED_STD: [Tag; 5] = [
    tag::OBJECT_TYPE,
    tag::STATE,
    tag::OBJECT_GROUP,
    tag::CRYPTOGRAPHIC_ALGORITHM,
    tag::CRYPTOGRAPHIC_LENGTH,
];

fn indexed_attr(name: &AttrName, value: &Value) -> bool {
    let scalar = matches!(
        value,
        Value::Integer(_)
            | Value::LongInteger(_)
            | Value::Enumeration(_)
            | Value::Boolean(_)
            | Value::TextString(_)
            | Value::Interval(_)
    );
    scalar
        && match name {
            AttrName::Std(t) => INDEXED_STD.contains(t),
            AttrName::Custom { .. } => true,
        }
}

// ---- index terms ---------------------------------------------------------------------------
//
// An index term is the prefix of a filter the object satisfies:
//   'o' lp(owner) | 'n' lp(name value) | 'a' lp(attr name) lp(value TTLV) | 'd' lp(attr name)
//   | 'r' (the rotation due date)
// with the date in seconds beside a 'd' or 'r' prefix. lp = 4-byte big-endian length + bytes, so
// two different filters never share a prefix. The sled backend keeps them in memory
// (`sled_store/index.rs`).

const KIND_OWNER: u8 = b'o';
const KIND_NAME: u8 = b'n';
const KIND_ATTR: u8 = b'a';
const KIND_DATE: u8 = b'd';
const KIND_ROTATION: u8 = b'r';

/// Tag of the item an attribute value is encoded in for its index key.
const VALUE_TAG: Tag = Tag::from_bytes([0x54, 0xff, 0x7f]);

fn push_len(out: &mut Vec<u8>, len: usize) -> Result<(), StoreError> {
    let len = u32::try_from(len)
        .map_err(|_| StoreError::Backend("index field longer than 4 GiB".into()))?;
    out.extend_from_slice(&len.to_be_bytes());
    Ok(())
}

fn push_lp(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), StoreError> {
    push_len(out, bytes.len())?;
    out.extend_from_slice(bytes);
    Ok(())
}

/// Appends lp(the attribute name's bytes): 1 ‖ the tag's 3 bytes for a standard attribute, 2 ‖
/// its 1.x name for a custom one.
fn push_name_lp(out: &mut Vec<u8>, name: &AttrName) -> Result<(), StoreError> {
    match name {
        AttrName::Std(t) => {
            let tag = t.to_bytes();
            push_len(out, tag.len().saturating_add(1))?;
            out.push(1);
            out.extend_from_slice(&tag);
        }
        AttrName::Custom { .. } => {
            let n = name.v1_name();
            push_len(out, n.len().saturating_add(1))?;
            out.push(2);
            out.extend_from_slice(n.as_bytes());
        }
    }
    Ok(())
}

/// Appends lp(the value's TTLV encoding under [`VALUE_TAG`]), encoded in place.
fn push_value_lp(out: &mut Vec<u8>, v: &Value) -> Result<(), StoreError> {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    kmipd_ttlv::encode(&Ttlv::new(VALUE_TAG, v.clone()), out)
        .map_err(|e| StoreError::Backend(format!("index value: {e}")))?;
    let len = u32::try_from(out.len().saturating_sub(at).saturating_sub(4))
        .map_err(|_| StoreError::Backend("index field longer than 4 GiB".into()))?;
    if let Some(slot) = out.get_mut(at..at.saturating_add(4)) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
    Ok(())
}

// One builder per kind of term, used both for an object's terms (`index_terms`) and for a
// query's prefixes (`filter_prefix`), so the two agree by construction; they write straight
// into the term's buffer (no copy of the owner, name or value into a `Filter` first).

fn owner_term(owner: &str) -> Result<Vec<u8>, StoreError> {
    let mut k = Vec::with_capacity(owner.len().saturating_add(5));
    k.push(KIND_OWNER);
    push_lp(&mut k, owner.as_bytes())?;
    Ok(k)
}

fn name_term(name: &str) -> Result<Vec<u8>, StoreError> {
    let mut k = Vec::with_capacity(name.len().saturating_add(5));
    k.push(KIND_NAME);
    push_lp(&mut k, name.as_bytes())?;
    Ok(k)
}

fn attr_term(name: &AttrName, value: &Value) -> Result<Vec<u8>, StoreError> {
    let mut k = Vec::with_capacity(48);
    k.push(KIND_ATTR);
    push_name_lp(&mut k, name)?;
    push_value_lp(&mut k, value)?;
    Ok(k)
}

fn date_term(name: &AttrName) -> Result<Vec<u8>, StoreError> {
    let mut k = Vec::with_capacity(16);
    k.push(KIND_DATE);
    push_name_lp(&mut k, name)?;
    Ok(k)
}

/// The prefix under which the index entries of `f` are (for dates: without the date).
pub(crate) fn filter_prefix(f: &Filter) -> Result<Vec<u8>, StoreError> {
    match f {
        Filter::Owner(o) => owner_term(o),
        Filter::Name(n) => name_term(n),
        Filter::Attr(name, value) => attr_term(name, value),
        Filter::Date(name, _, _) => date_term(name),
        Filter::RotationDue(_) => Ok(vec![KIND_ROTATION]),
    }
}

/// True for the index term (or [`filter_prefix`]) of a [`Filter::Name`].
pub(crate) fn is_name_term(term: &[u8]) -> bool {
    term.first() == Some(&KIND_NAME)
}

/// The date range an index scan of the indexed filter `f` covers (dates and rotation).
pub(crate) fn term_range(f: &Filter) -> Option<(i64, i64)> {
    match f {
        Filter::Date(_, from, to) => Some((*from, *to)),
        Filter::RotationDue(to) => Some((i64::MIN, *to)),
        _ => None,
    }
}

/// The index term of the rotation due date of `o`, if it has one.
pub(crate) fn rotation_term(o: &ManagedObject) -> Option<Term> {
    rotation_due_at(o).map(|d| (vec![KIND_ROTATION], Some(d)))
}

/// One index term of an object: the [`filter_prefix`] of a filter it satisfies and, for a
/// date attribute, the date in seconds.
pub(crate) type Term = (Vec<u8>, Option<i64>);

/// Every index term of the object (deduplicated, sorted): its owner, each Name, each indexed
/// attribute value, each date and its rotation due date.
pub(crate) fn index_terms(o: &ManagedObject) -> Result<Vec<Term>, StoreError> {
    let mut terms = vec![(owner_term(&o.owner)?, None)];
    for n in o.attributes.name_values() {
        terms.push((name_term(n)?, None));
    }
    for a in o.attributes.iter() {
        if indexed_attr(&a.name, &a.value) {
            terms.push((attr_term(&a.name, &a.value)?, None));
        }
        if let Some(d) = date_seconds(&a.value) {
            terms.push((date_term(&a.name)?, Some(d)));
        }
    }
    terms.extend(rotation_term(o));
    terms.sort();
    terms.dedup();
    Ok(terms)
}

#[cfg(test)]
mod term_bytes {
    use super::*;

    /// The terms' bytes are stored by the PostgreSQL backend (`kmipd_terms`): they must not
    /// change. One example of each kind, written out by hand.
    #[test]
    fn each_kind_of_term_keeps_its_bytes() {
        let p = |f: Filter| filter_prefix(&f).unwrap();
        assert_eq!(p(Filter::Owner("ab".into())), b"o\0\0\0\x02ab");
        assert_eq!(p(Filter::Name("k1".into())), b"n\0\0\0\x02k1");
        let state = AttrName::Std(tag::STATE);
        assert_eq!(
            p(Filter::Date(state.clone(), 5, 9)),
            [b'd', 0, 0, 0, 4, 1, 0x42, 0x00, 0x8d]
        );
        let mut attr = vec![b'a', 0, 0, 0, 4, 1, 0x42, 0x00, 0x8d, 0, 0, 0, 16];
        attr.extend_from_slice(&[0x54, 0xff, 0x7f, 0x05, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0, 0]);
        assert_eq!(p(Filter::Attr(state, Value::Enumeration(2))), attr);
        let custom = AttrName::Custom {
            vendor: None,
            name: "x-c".into(),
        };
        let mut attr = vec![b'a', 0, 0, 0, 4, 2, b'x', b'-', b'c', 0, 0, 0, 16];
        attr.extend_from_slice(&[
            0x54, 0xff, 0x7f, 0x07, 0, 0, 0, 1, b'v', 0, 0, 0, 0, 0, 0, 0,
        ]);
        assert_eq!(p(Filter::Attr(custom, Value::TextString("v".into()))), attr);
        assert_eq!(p(Filter::RotationDue(3)), b"r");
    }
}
