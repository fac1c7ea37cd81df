//! The on-disk record of one managed object (format version 1; `docs/storage.md`).
//!
//! ```text
//! byte 0        format version (1)
//! bytes 1..n-4  TTLV Structure 0x54FF01 "Store Record":
//!                 0x54FF02 Unique Identifier   Text String
//!                 0x54FF03 Object Type         Enumeration
//!                 0x54FF04 Owner               Text String
//!                 0x54FF05 Sequence            Long Integer (the u64's bits)
//!                 0x54FF06 Attributes          Structure of 0x54FF07 Attribute:
//!                            0x54FF08 Tag (Integer, standard) | 0x54FF09 Vendor + 0x54FF0A Name
//!                            0x54FF0B Value (the attribute's TTLV value)
//!                 0x54FF0C KEK Id              Integer            } only when the object
//!                 0x54FF0D Wrapped Object      Byte String        } (key material) exists
//! bytes n-4..n  CRC-32 (big-endian) of bytes 0..n-4
//! ```
//!
//! The Wrapped Object is RFC 5649 (AES key wrap with padding) under the KEK, of the TTLV
//! encoding of Structure 0x54FF0E { Unique Identifier, the object structure }: the uid inside
//! binds the material to its record, so a blob copied into another record does not unwrap
//! as that object. The CRC catches a damaged record whose damage the unwrap would not see
//! (attributes). Attributes stay in the clear: the indexes are built from them, and a restore
//! rebuilds the indexes without the KEK.

use kmipd_proto::attributes::{AttrName, Attribute, Attributes};
use kmipd_ttlv::{Limits, Tag, Ttlv, Value};
use zeroize::Zeroizing;

use crate::kek::{Kek, KekId};
use crate::{ManagedObject, StoreError};

/// The record format this build writes.
pub const FORMAT_VERSION: u8 = 1;

const fn t(b: u8) -> Tag {
    Tag::from_bytes([0x54, 0xff, b])
}
const RECORD: Tag = t(0x01);
const UID: Tag = t(0x02);
const OBJECT_TYPE: Tag = t(0x03);
const OWNER: Tag = t(0x04);
const SEQUENCE: Tag = t(0x05);
const ATTRIBUTES: Tag = t(0x06);
const ATTRIBUTE: Tag = t(0x07);
const ATTR_TAG: Tag = t(0x08);
const ATTR_VENDOR: Tag = t(0x09);
const ATTR_NAME: Tag = t(0x0a);
const ATTR_VALUE: Tag = t(0x0b);
const KEK_ID: Tag = t(0x0c);
const WRAPPED: Tag = t(0x0d);
const SEALED: Tag = t(0x0e);

/// Records are written by kmipd itself, but the limits still bound a damaged one.
const LIMITS: Limits = Limits {
    max_message_len: 64 << 20,
    max_depth: 64,
    max_items: 1 << 20,
};

/// A record read from disk, key material still wrapped.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) uid: String,
    pub(crate) object_type: u32,
    pub(crate) owner: String,
    pub(crate) sequence: u64,
    pub(crate) attributes: Attributes,
    /// (KEK, wrapped object) when the object has key material.
    pub(crate) wrapped: Option<(KekId, Vec<u8>)>,
}

impl Parsed {
    /// The object without its material (for indexing and listing).
    pub(crate) fn shell(&self) -> ManagedObject {
        ManagedObject {
            uid: self.uid.clone(),
            object_type: self.object_type,
            owner: self.owner.clone(),
            object: None,
            attributes: self.attributes.clone(),
            sequence: self.sequence,
        }
    }

    /// [`shell`](Self::shell) without the copies.
    pub(crate) fn into_shell(self) -> ManagedObject {
        ManagedObject {
            uid: self.uid,
            object_type: self.object_type,
            owner: self.owner,
            object: None,
            attributes: self.attributes,
            sequence: self.sequence,
        }
    }
}

fn corrupt(uid: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        uid: uid.to_owned(),
        reason: reason.into(),
    }
}

#[cfg(test)]
fn enc(item: &Ttlv) -> Result<Vec<u8>, StoreError> {
    kmipd_ttlv::encode_to_vec(item).map_err(|e| StoreError::Backend(format!("encode: {e}")))
}

/// The record of `o`, its object wrapped under `kek`. Written in one pass into the output
/// (the record's and each attribute's Structure with a length patched once its contents are
/// written), without first building the record as a tree: the same bytes as encoding the
/// record's tree (a test compares them with the tree-built encoding), with no second buffer and
/// no per-attribute structure built first.
pub(crate) fn encode(o: &ManagedObject, kek: &Kek) -> Result<Vec<u8>, StoreError> {
    encode_sealed(o, kek, None).map(|(record, _)| record)
}

/// [`encode`], with the object's wrapped form given when the caller has it already: `sealed`
/// must be what [`seal`] makes of this uid and object under this KEK (RFC 5649 is
/// deterministic, so the record is byte for byte what [`encode`] writes). Returns the record
/// and the wrapped object it holds (none without key material).
pub(crate) fn encode_sealed(
    o: &ManagedObject,
    kek: &Kek,
    sealed: Option<Vec<u8>>,
) -> Result<(Vec<u8>, Option<Vec<u8>>), StoreError> {
    let mut out = Vec::with_capacity(1024);
    out.push(FORMAT_VERSION);
    let record = open_structure(&mut out, RECORD);
    put_text(&mut out, UID, &o.uid)?;
    put(&mut out, OBJECT_TYPE, &Value::Enumeration(o.object_type))?;
    put_text(&mut out, OWNER, &o.owner)?;
    put(
        &mut out,
        SEQUENCE,
        &Value::LongInteger(i64::from_be_bytes(o.sequence.to_be_bytes())),
    )?;
    let attributes = open_structure(&mut out, ATTRIBUTES);
    for a in o.attributes.iter() {
        let attribute = open_structure(&mut out, ATTRIBUTE);
        match &a.name {
            AttrName::Std(tag) => {
                put(&mut out, ATTR_TAG, &Value::Enumeration(tag.value()))?;
            }
            AttrName::Custom { vendor, name } => {
                if let Some(v) = vendor {
                    put_text(&mut out, ATTR_VENDOR, v)?;
                }
                put_text(&mut out, ATTR_NAME, name)?;
            }
        }
        put(&mut out, ATTR_VALUE, &a.value)?;
        close_structure(&mut out, attribute)?;
    }
    close_structure(&mut out, attributes)?;
    let mut kept = None;
    if let Some(object) = &o.object {
        let wrapped = match sealed {
            Some(w) => w,
            None => seal(&o.uid, object, kek)?,
        };
        put(&mut out, KEK_ID, &Value::Enumeration(kek.id().0))?;
        put_bytes(&mut out, WRAPPED, &wrapped)?;
        kept = Some(wrapped);
    }
    close_structure(&mut out, record)?;
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    Ok((out, kept))
}

/// Appends one item (its value borrowed, not copied into an item first).
fn put(out: &mut Vec<u8>, tag: Tag, value: &Value) -> Result<(), StoreError> {
    kmipd_ttlv::encode_value(tag, value, out)
        .map_err(|e| StoreError::Backend(format!("encode: {e}")))
}

/// Appends a Text String item (the same bytes as [`put`] of `Value::TextString`).
fn put_text(out: &mut Vec<u8>, tag: Tag, text: &str) -> Result<(), StoreError> {
    kmipd_ttlv::encode_text(tag, text, out).map_err(|e| StoreError::Backend(format!("encode: {e}")))
}

/// Appends a Byte String item (the same bytes as [`put`] of `Value::ByteString`).
fn put_bytes(out: &mut Vec<u8>, tag: Tag, bytes: &[u8]) -> Result<(), StoreError> {
    kmipd_ttlv::encode_byte_string(tag, bytes, out)
        .map_err(|e| StoreError::Backend(format!("encode: {e}")))
}

/// Appends a Structure's header, its length a placeholder; returns where the length is.
fn open_structure(out: &mut Vec<u8>, tag: Tag) -> usize {
    out.extend_from_slice(&tag.to_bytes());
    out.push(kmipd_ttlv::ItemType::Structure.code());
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    at
}

/// Writes the length of the Structure opened at `at`: everything appended since (whole
/// items, so a multiple of 8 bytes and no padding of its own).
fn close_structure(out: &mut [u8], at: usize) -> Result<(), StoreError> {
    let len = u32::try_from(out.len().saturating_sub(at).saturating_sub(4))
        .map_err(|_| StoreError::Backend("record longer than 4 GiB".into()))?;
    match out.get_mut(at..at.saturating_add(4)) {
        Some(slot) => {
            slot.copy_from_slice(&len.to_be_bytes());
            Ok(())
        }
        None => Err(StoreError::Backend("record structure out of place".into())),
    }
}

/// The wrapped form of an object.
/// The plaintext, Structure 0x54FF0E { uid, object }, is written straight into one buffer
/// (zeroized when dropped), without first building that structure around a copy of the object.
pub(crate) fn seal(uid: &str, object: &Ttlv, kek: &Kek) -> Result<Vec<u8>, StoreError> {
    let mut plain = Zeroizing::new(Vec::with_capacity(
        kmipd_ttlv::encoded_len(object)
            .saturating_add(uid.len())
            .saturating_add(24),
    ));
    let sealed = open_structure(&mut plain, SEALED);
    put_text(&mut plain, UID, uid)?;
    kmipd_ttlv::encode(object, &mut plain)
        .map_err(|e| StoreError::Backend(format!("encode: {e}")))?;
    close_structure(&mut plain, sealed)?;
    kek.wrap(&plain)
        .map_err(|e| StoreError::Backend(format!("key wrap: {e}")))
}

/// Unwraps a record's object.
pub(crate) fn open_sealed(uid: &str, wrapped: &[u8], kek: &Kek) -> Result<Ttlv, StoreError> {
    let plain = kek.unwrap(wrapped).map_err(|_| {
        corrupt(
            uid,
            format!("key material does not unwrap under KEK {}", kek.id()),
        )
    })?;
    let sealed = kmipd_ttlv::decode(&plain, &LIMITS)
        .map_err(|e| corrupt(uid, format!("wrapped object: {e}")))?;
    let mut children = match sealed.value {
        Value::Structure(c) if sealed.tag == SEALED => c.into_iter(),
        _ => return Err(corrupt(uid, "wrapped object has the wrong shape")),
    };
    match (children.next(), children.next(), children.next()) {
        (
            Some(Ttlv {
                tag: UID,
                value: Value::TextString(u),
            }),
            Some(object),
            None,
        ) if u == uid => Ok(object),
        _ => Err(corrupt(uid, "wrapped object belongs to another record")),
    }
}

/// Parses a record (checksum, version, structure); the object stays wrapped.
pub(crate) fn parse(uid: &str, bytes: &[u8]) -> Result<Parsed, StoreError> {
    let (body, crc) = bytes
        .split_last_chunk::<4>()
        .ok_or_else(|| corrupt(uid, "record shorter than its checksum"))?;
    if crc32fast::hash(body) != u32::from_be_bytes(*crc) {
        return Err(corrupt(uid, "checksum mismatch"));
    }
    let (version, ttlv) = body
        .split_first()
        .ok_or_else(|| corrupt(uid, "empty record"))?;
    match *version {
        1 => parse_v1(uid, ttlv),
        v => Err(corrupt(
            uid,
            format!("record format {v} is newer than this kmipd ({FORMAT_VERSION})"),
        )),
    }
}

fn parse_v1(uid: &str, bytes: &[u8]) -> Result<Parsed, StoreError> {
    let root = kmipd_ttlv::decode(bytes, &LIMITS).map_err(|e| corrupt(uid, e.to_string()))?;
    let bad = |what: &str| corrupt(uid, format!("field {what} missing or of the wrong type"));
    let children = match root.value {
        Value::Structure(c) if root.tag == RECORD => c,
        _ => return Err(bad("Store Record")),
    };
    // The fields are moved out of the decoded tree, not cloned: the first item of each tag
    // counts (later ones and unknown tags are ignored), as a search for each tag would find.
    let mut fields = RecordFields::default();
    for c in children {
        let slot = match c.tag {
            UID => &mut fields.uid,
            OBJECT_TYPE => &mut fields.object_type,
            OWNER => &mut fields.owner,
            SEQUENCE => &mut fields.sequence,
            ATTRIBUTES => &mut fields.attributes,
            KEK_ID => &mut fields.kek_id,
            WRAPPED => &mut fields.wrapped,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(c.value);
        }
    }
    let record_uid = match fields.uid {
        Some(Value::TextString(s)) => s,
        _ => return Err(bad("Unique Identifier")),
    };
    if record_uid != uid {
        return Err(corrupt(uid, "record is stored under another identifier"));
    }
    let object_type = match fields.object_type {
        Some(Value::Enumeration(v)) => v,
        _ => return Err(bad("Object Type")),
    };
    let owner = match fields.owner {
        Some(Value::TextString(s)) => s,
        _ => return Err(bad("Owner")),
    };
    let sequence = match fields.sequence {
        Some(Value::LongInteger(v)) => u64::from_be_bytes(v.to_be_bytes()),
        _ => return Err(bad("Sequence")),
    };
    let mut attributes = Attributes::new();
    match fields.attributes {
        Some(Value::Structure(list)) => {
            attributes.0.reserve_exact(list.len());
            for a in list {
                attributes
                    .0
                    .push(parse_attr(a).ok_or_else(|| bad("Attribute"))?);
            }
        }
        _ => return Err(bad("Attributes")),
    }
    let wrapped = match (fields.kek_id, fields.wrapped) {
        (Some(Value::Enumeration(k)), Some(Value::ByteString(mut b))) => {
            // Taken out of its `Zeroizing` (which is left empty): the wrapped form is not
            // secret, it is what sled stores.
            Some((KekId(k), std::mem::take(&mut *b)))
        }
        (None, None) => None,
        _ => return Err(bad("Wrapped Object")),
    };
    Ok(Parsed {
        uid: record_uid,
        object_type,
        owner,
        sequence,
        attributes,
        wrapped,
    })
}

/// The fields of a record's Structure, each the first item with its tag.
#[derive(Default)]
struct RecordFields {
    uid: Option<Value>,
    object_type: Option<Value>,
    owner: Option<Value>,
    sequence: Option<Value>,
    attributes: Option<Value>,
    kek_id: Option<Value>,
    wrapped: Option<Value>,
}

fn parse_attr(a: Ttlv) -> Option<Attribute> {
    let f = match a.value {
        Value::Structure(f) if a.tag == ATTRIBUTE => f,
        _ => return None,
    };
    // Moved out, the first item of each tag counting (as in `parse_v1`).
    let (mut tag, mut vendor, mut name, mut value) = (None, None, None, None);
    for c in f {
        let slot = match c.tag {
            ATTR_TAG => &mut tag,
            ATTR_VENDOR => &mut vendor,
            ATTR_NAME => &mut name,
            ATTR_VALUE => &mut value,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(c.value);
        }
    }
    let name = match (tag, vendor, name) {
        (Some(Value::Enumeration(v)), None, None) => AttrName::Std(Tag::new(v).ok()?),
        (None, vendor, Some(Value::TextString(n))) => AttrName::Custom {
            vendor: match vendor {
                Some(Value::TextString(v)) => Some(v),
                None => None,
                Some(_) => return None,
            },
            name: n,
        },
        _ => return None,
    };
    Some(Attribute {
        name,
        value: value?,
    })
}

/// Re-wraps a record's object under `kek` (rotation); other bytes are re-encoded unchanged.
pub(crate) fn rewrap(parsed: &Parsed, object: &Ttlv, kek: &Kek) -> Result<Vec<u8>, StoreError> {
    let mut o = parsed.shell();
    o.object = Some(object.clone());
    encode(&o, kek)
}

#[cfg(test)]
mod one_pass {
    use super::*;
    use kmipd_proto::tag;

    fn encode_attr(a: &Attribute) -> Ttlv {
        let mut f = Vec::with_capacity(3);
        match &a.name {
            AttrName::Std(tag) => f.push(Ttlv::new(ATTR_TAG, Value::Enumeration(tag.value()))),
            AttrName::Custom { vendor, name } => {
                if let Some(v) = vendor {
                    f.push(Ttlv::new(ATTR_VENDOR, Value::TextString(v.clone())));
                }
                f.push(Ttlv::new(ATTR_NAME, Value::TextString(name.clone())));
            }
        }
        f.push(Ttlv::new(ATTR_VALUE, a.value.clone()));
        Ttlv::new(ATTRIBUTE, Value::Structure(f))
    }

    /// The wrapped object as the tree-building sealer made it (before the one-pass writer):
    /// Structure { uid, a copy of the object } encoded, then wrapped.
    fn tree_sealed(uid: &str, object: &Ttlv, kek: &Kek) -> Vec<u8> {
        let sealed = Ttlv::new(
            SEALED,
            Value::Structure(vec![
                Ttlv::new(UID, Value::TextString(uid.to_owned())),
                object.clone(),
            ]),
        );
        kek.wrap(&enc(&sealed).unwrap()).unwrap()
    }

    /// The record as the tree-building encoder made it (before the one-pass writer).
    fn tree_encoded(o: &ManagedObject, kek: &Kek) -> Vec<u8> {
        let mut items = vec![
            Ttlv::new(UID, Value::TextString(o.uid.clone())),
            Ttlv::new(OBJECT_TYPE, Value::Enumeration(o.object_type)),
            Ttlv::new(OWNER, Value::TextString(o.owner.clone())),
            Ttlv::new(
                SEQUENCE,
                Value::LongInteger(i64::from_be_bytes(o.sequence.to_be_bytes())),
            ),
            Ttlv::new(
                ATTRIBUTES,
                Value::Structure(o.attributes.iter().map(encode_attr).collect()),
            ),
        ];
        if let Some(object) = &o.object {
            items.push(Ttlv::new(KEK_ID, Value::Enumeration(kek.id().0)));
            items.push(Ttlv::new(
                WRAPPED,
                Value::ByteString(Zeroizing::new(tree_sealed(&o.uid, object, kek))),
            ));
        }
        let body = enc(&Ttlv::new(RECORD, Value::Structure(items))).unwrap();
        let mut out = vec![FORMAT_VERSION];
        out.extend_from_slice(&body);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    #[test]
    fn the_one_pass_record_is_the_tree_encoded_record() {
        let kek = Kek::new(KekId(3), &Zeroizing::new([5; 32]));
        let mut attributes = Attributes::default();
        attributes.set(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(256));
        attributes.set(tag::STATE, Value::Enumeration(1));
        attributes.set(
            tag::NAME,
            Ttlv::new(
                tag::NAME,
                Value::Structure(vec![
                    Ttlv::new(tag::NAME_VALUE, Value::TextString("a key".into())),
                    Ttlv::new(tag::NAME_TYPE, Value::Enumeration(1)),
                ]),
            )
            .value,
        );
        attributes.set_named(
            AttrName::Custom {
                vendor: Some("acme".into()),
                name: "colour".into(),
            },
            Value::TextString("blue".into()),
        );
        attributes.set_named(
            AttrName::Custom {
                vendor: None,
                name: "x-id".into(),
            },
            Value::ByteString(Zeroizing::new(vec![1, 2, 3])),
        );
        let mut o = ManagedObject {
            uid: "u-1".into(),
            object_type: 2,
            owner: "client".into(),
            object: Some(Ttlv::new(
                tag::SYMMETRIC_KEY,
                Value::Structure(vec![Ttlv::new(
                    tag::KEY_BLOCK,
                    Value::Structure(vec![Ttlv::new(
                        tag::KEY_MATERIAL,
                        Value::ByteString(Zeroizing::new(vec![9; 32])),
                    )]),
                )]),
            )),
            attributes,
            sequence: u64::MAX - 1,
        };
        assert_eq!(encode(&o, &kek).unwrap(), tree_encoded(&o, &kek));
        // Given its wrapped form, the record is the same, and it gives that form back.
        let wrapped = seal(&o.uid, o.object.as_ref().unwrap(), &kek).unwrap();
        let (again, kept) = encode_sealed(&o, &kek, Some(wrapped.clone())).unwrap();
        assert_eq!(again, tree_encoded(&o, &kek));
        assert_eq!(kept, Some(wrapped));
        o.object = None;
        o.attributes = Attributes::default();
        assert_eq!(encode(&o, &kek).unwrap(), tree_encoded(&o, &kek));
        let parsed = parse("u-1", &encode(&o, &kek).unwrap()).unwrap();
        assert!(parsed.wrapped.is_none());
    }
}

#[cfg(test)]
mod moved_parse {
    use super::*;
    use kmipd_proto::tag;

    /// The parser as it was before it moved the fields out (each found by a search and
    /// cloned), for comparison.
    fn cloning_parse(uid: &str, bytes: &[u8]) -> Result<Parsed, StoreError> {
        let (body, _) = bytes.split_last_chunk::<4>().unwrap();
        let root =
            kmipd_ttlv::decode(&body[1..], &LIMITS).map_err(|e| corrupt(uid, e.to_string()))?;
        let bad = |what: &str| corrupt(uid, format!("field {what} missing or of the wrong type"));
        let children = match &root.value {
            Value::Structure(c) if root.tag == RECORD => c,
            _ => return Err(bad("Store Record")),
        };
        let find = |t: Tag| children.iter().find(|c| c.tag == t).map(|c| &c.value);
        let text = |t: Tag, what: &str| match find(t) {
            Some(Value::TextString(s)) => Ok(s.clone()),
            _ => Err(bad(what)),
        };
        let record_uid = text(UID, "Unique Identifier")?;
        if record_uid != uid {
            return Err(corrupt(uid, "record is stored under another identifier"));
        }
        let object_type = match find(OBJECT_TYPE) {
            Some(Value::Enumeration(v)) => *v,
            _ => return Err(bad("Object Type")),
        };
        let owner = text(OWNER, "Owner")?;
        let sequence = match find(SEQUENCE) {
            Some(Value::LongInteger(v)) => u64::from_be_bytes(v.to_be_bytes()),
            _ => return Err(bad("Sequence")),
        };
        let mut attributes = Attributes::new();
        match find(ATTRIBUTES) {
            Some(Value::Structure(list)) => {
                for a in list {
                    attributes
                        .0
                        .push(cloning_attr(a).ok_or_else(|| bad("Attribute"))?);
                }
            }
            _ => return Err(bad("Attributes")),
        }
        let wrapped = match (find(KEK_ID), find(WRAPPED)) {
            (Some(Value::Enumeration(k)), Some(Value::ByteString(b))) => {
                Some((KekId(*k), b.to_vec()))
            }
            (None, None) => None,
            _ => return Err(bad("Wrapped Object")),
        };
        Ok(Parsed {
            uid: record_uid,
            object_type,
            owner,
            sequence,
            attributes,
            wrapped,
        })
    }

    fn cloning_attr(a: &Ttlv) -> Option<Attribute> {
        let f = match &a.value {
            Value::Structure(f) if a.tag == ATTRIBUTE => f,
            _ => return None,
        };
        let get = |t: Tag| f.iter().find(|c| c.tag == t).map(|c| &c.value);
        let name = match (get(ATTR_TAG), get(ATTR_VENDOR), get(ATTR_NAME)) {
            (Some(Value::Enumeration(v)), None, None) => AttrName::Std(Tag::new(*v).ok()?),
            (None, vendor, Some(Value::TextString(n))) => AttrName::Custom {
                vendor: match vendor {
                    Some(Value::TextString(v)) => Some(v.clone()),
                    None => None,
                    Some(_) => return None,
                },
                name: n.clone(),
            },
            _ => return None,
        };
        Some(Attribute {
            name,
            value: get(ATTR_VALUE)?.clone(),
        })
    }

    /// A record of these items, with its format byte and checksum.
    fn framed(items: Vec<Ttlv>) -> Vec<u8> {
        let mut out = vec![FORMAT_VERSION];
        out.extend(enc(&Ttlv::new(RECORD, Value::Structure(items))).unwrap());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    fn same(a: Result<Parsed, StoreError>, b: Result<Parsed, StoreError>) {
        match (a, b) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.wrapped, b.wrapped);
                assert_eq!(a.into_shell(), b.into_shell());
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (a, b) => panic!("different outcomes: {a:?} / {b:?}"),
        }
    }

    fn attr(fields: Vec<Ttlv>) -> Ttlv {
        Ttlv::new(ATTRIBUTE, Value::Structure(fields))
    }

    /// Moving the fields out gives what cloning them gave: for a stored object, and for
    /// records with duplicated, missing, mistyped and unknown items (the first of a tag counts).
    #[test]
    fn moving_parse_is_the_cloning_parse() {
        let kek = Kek::new(KekId(7), &Zeroizing::new([1; 32]));
        let mut attributes = Attributes::default();
        attributes.set(tag::CRYPTOGRAPHIC_LENGTH, Value::Integer(128));
        attributes.set(tag::STATE, Value::Enumeration(2));
        attributes.set_named(
            AttrName::Custom {
                vendor: Some("acme".into()),
                name: "colour".into(),
            },
            Value::TextString("red".into()),
        );
        let o = ManagedObject {
            uid: "u-9".into(),
            object_type: 2,
            owner: "alice".into(),
            object: Some(Ttlv::new(
                tag::SYMMETRIC_KEY,
                Value::Structure(vec![Ttlv::new(
                    tag::KEY_MATERIAL,
                    Value::ByteString(Zeroizing::new(vec![4; 16])),
                )]),
            )),
            attributes,
            sequence: 42,
        };
        let good = encode(&o, &kek).unwrap();
        same(parse("u-9", &good), cloning_parse("u-9", &good));
        let parsed = parse("u-9", &good).unwrap();
        assert_eq!(parsed.wrapped.as_ref().unwrap().0, KekId(7));
        let mut shell = o.clone();
        shell.object = None;
        assert_eq!(parsed.into_shell(), shell);

        let uid = || Ttlv::new(UID, Value::TextString("u".into()));
        let ty = || Ttlv::new(OBJECT_TYPE, Value::Enumeration(2));
        let owner = || Ttlv::new(OWNER, Value::TextString("o".into()));
        let seq = || Ttlv::new(SEQUENCE, Value::LongInteger(-1));
        let std_attr = |v: i32| {
            attr(vec![
                Ttlv::new(
                    ATTR_TAG,
                    Value::Enumeration(tag::CRYPTOGRAPHIC_LENGTH.value()),
                ),
                Ttlv::new(ATTR_VALUE, Value::Integer(v)),
            ])
        };
        let attrs = |list: Vec<Ttlv>| Ttlv::new(ATTRIBUTES, Value::Structure(list));
        let unknown = || Ttlv::new(t(0x7f), Value::Integer(0));
        let cases: Vec<Vec<Ttlv>> = vec![
            vec![uid(), ty(), owner(), seq(), attrs(vec![])],
            // Duplicates: the first counts.
            vec![
                uid(),
                Ttlv::new(UID, Value::TextString("other".into())),
                ty(),
                Ttlv::new(OBJECT_TYPE, Value::Integer(1)),
                owner(),
                Ttlv::new(OWNER, Value::TextString("second".into())),
                seq(),
                attrs(vec![std_attr(1)]),
                attrs(vec![std_attr(2)]),
                unknown(),
            ],
            // A duplicate of the wrong type first fails, as before.
            vec![
                Ttlv::new(OWNER, Value::Integer(3)),
                uid(),
                ty(),
                owner(),
                seq(),
                attrs(vec![]),
            ],
            vec![uid(), ty(), owner(), seq()],
            vec![uid(), owner(), seq(), attrs(vec![])],
            vec![
                Ttlv::new(UID, Value::TextString("v".into())),
                ty(),
                owner(),
                seq(),
                attrs(vec![]),
            ],
            vec![
                uid(),
                ty(),
                owner(),
                Ttlv::new(SEQUENCE, Value::Integer(1)),
                attrs(vec![]),
            ],
            // Attributes: custom with and without vendor, duplicated fields, bad shapes.
            vec![
                uid(),
                ty(),
                owner(),
                seq(),
                attrs(vec![
                    attr(vec![
                        Ttlv::new(ATTR_NAME, Value::TextString("x-a".into())),
                        Ttlv::new(ATTR_VALUE, Value::TextString("1".into())),
                        Ttlv::new(ATTR_VALUE, Value::TextString("2".into())),
                    ]),
                    attr(vec![
                        Ttlv::new(ATTR_VENDOR, Value::TextString("v".into())),
                        Ttlv::new(ATTR_NAME, Value::TextString("n".into())),
                        unknown(),
                        Ttlv::new(ATTR_VALUE, Value::Boolean(true)),
                    ]),
                    std_attr(5),
                ]),
            ],
            vec![
                uid(),
                ty(),
                owner(),
                seq(),
                attrs(vec![attr(vec![Ttlv::new(ATTR_VALUE, Value::Integer(1))])]),
            ],
            vec![
                uid(),
                ty(),
                owner(),
                seq(),
                attrs(vec![attr(vec![
                    Ttlv::new(ATTR_VENDOR, Value::Integer(1)),
                    Ttlv::new(ATTR_NAME, Value::TextString("n".into())),
                    Ttlv::new(ATTR_VALUE, Value::Integer(1)),
                ])]),
            ],
            vec![
                uid(),
                ty(),
                owner(),
                seq(),
                attrs(vec![attr(vec![
                    Ttlv::new(ATTR_TAG, Value::Enumeration(tag::STATE.value())),
                    Ttlv::new(ATTR_NAME, Value::TextString("n".into())),
                    Ttlv::new(ATTR_VALUE, Value::Integer(1)),
                ])]),
            ],
            vec![
                uid(),
                ty(),
                owner(),
                seq(),
                attrs(vec![Ttlv::new(ATTR_VALUE, Value::Integer(1))]),
            ],
            vec![
                uid(),
                ty(),
                owner(),
                seq(),
                attrs(vec![std_attr(1)]),
                Ttlv::new(KEK_ID, Value::Enumeration(1)),
            ],
            vec![
                uid(),
                ty(),
                owner(),
                seq(),
                attrs(vec![]),
                Ttlv::new(KEK_ID, Value::Enumeration(3)),
                Ttlv::new(WRAPPED, Value::ByteString(Zeroizing::new(vec![1, 2, 3]))),
                Ttlv::new(WRAPPED, Value::ByteString(Zeroizing::new(vec![9]))),
            ],
        ];
        for items in cases {
            let raw = framed(items);
            let ours = parse("u", &raw);
            same(ours, cloning_parse("u", &raw));
        }
        let not_a_record = {
            let mut out = vec![FORMAT_VERSION];
            out.extend(enc(&Ttlv::new(UID, Value::Structure(vec![uid()]))).unwrap());
            let crc = crc32fast::hash(&out);
            out.extend_from_slice(&crc.to_be_bytes());
            out
        };
        same(parse("u", &not_a_record), cloning_parse("u", &not_a_record));
    }
}
