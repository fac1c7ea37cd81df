//! The KMIP tag and enumeration tables of KMIP 1.0 to 2.1 (plus 3.0-draft additions), each
//! entry with the version that introduced it and, if any, the first version that dropped it.
//!
//! The data lives in `generated.rs`, written by `scripts/gen-spec-tables.py` from the tables
//! extracted from the OASIS specifications (see `docs/encodings.md`). Lookups are binary
//! searches over sorted static slices.

use std::fmt;

use kmipd_ttlv::{Names, Tag};

#[allow(clippy::unreadable_literal)]
mod generated;

pub use generated::{enums, tag};

/// A KMIP protocol version that the tables know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// KMIP 1.0.
    V1_0,
    /// KMIP 1.1.
    V1_1,
    /// KMIP 1.2.
    V1_2,
    /// KMIP 1.3.
    V1_3,
    /// KMIP 1.4.
    V1_4,
    /// KMIP 2.0.
    V2_0,
    /// KMIP 2.1.
    V2_1,
    /// Only defined by the KMIP 3.0 draft (never part of a 1.x or 2.x version).
    V3_0Draft,
}

impl Version {
    /// Every version, oldest first.
    pub const ALL: [Version; 8] = [
        Version::V1_0,
        Version::V1_1,
        Version::V1_2,
        Version::V1_3,
        Version::V1_4,
        Version::V2_0,
        Version::V2_1,
        Version::V3_0Draft,
    ];

    /// The protocol version as (major, minor).
    pub const fn major_minor(self) -> (u32, u32) {
        match self {
            Version::V1_0 => (1, 0),
            Version::V1_1 => (1, 1),
            Version::V1_2 => (1, 2),
            Version::V1_3 => (1, 3),
            Version::V1_4 => (1, 4),
            Version::V2_0 => (2, 0),
            Version::V2_1 => (2, 1),
            Version::V3_0Draft => (3, 0),
        }
    }

    /// The version with this major and minor number, if the tables know it.
    pub fn from_major_minor(major: u32, minor: u32) -> Option<Version> {
        Version::ALL
            .into_iter()
            .find(|v| v.major_minor() == (major, minor))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (major, minor) = self.major_minor();
        write!(f, "{major}.{minor}")?;
        if *self == Version::V3_0Draft {
            f.write_str(" (draft)")?;
        }
        Ok(())
    }
}

/// Whether an item introduced in `since` and dropped in `removed` exists in `version`.
fn defined_in(since: Version, removed: Option<Version>, version: Version) -> bool {
    since <= version && removed.is_none_or(|r| version < r)
}

/// One KMIP tag.
#[derive(Debug)]
pub struct TagDef {
    /// The tag number (0x42xxxx).
    pub tag: u32,
    /// The name in the specification ("Activation Date").
    pub name: &'static str,
    /// The name in the XML and JSON encodings ("ActivationDate").
    pub xml_name: &'static str,
    /// The version that introduced the tag.
    pub since: Version,
    /// The first version in which the tag is no longer defined ("(Reserved)"), if any.
    pub removed: Option<Version>,
    /// The enumeration (or mask) that the tag's value uses, if any.
    pub enumeration: Option<&'static EnumDef>,
}

impl TagDef {
    /// Whether `version` defines this tag.
    pub fn defined_in(&self, version: Version) -> bool {
        defined_in(self.since, self.removed, version)
    }
}

/// One enumeration or mask table.
#[derive(Debug)]
pub struct EnumDef {
    /// The name in the specification ("Cryptographic Algorithm").
    pub name: &'static str,
    /// The CamelCase name ("CryptographicAlgorithm").
    pub xml_name: &'static str,
    /// Whether the values are bits OR-ed into an Integer (Cryptographic Usage Mask, ...).
    pub is_mask: bool,
    /// The version of the table's oldest entry.
    pub since: Version,
    /// The entries, sorted by value.
    pub values: &'static [EnumValueDef],
    /// Every accepted XML spelling (the entry's own and older or third-party ones), sorted.
    pub by_xml_name: &'static [(&'static str, u32)],
}

impl EnumDef {
    /// The value of the entry with this XML name (or an accepted older spelling of it).
    pub fn value_by_xml_name(&self, name: &str) -> Option<u32> {
        self.by_xml_name
            .binary_search_by(|(n, _)| (*n).cmp(name))
            .ok()
            .and_then(|i| self.by_xml_name.get(i))
            .map(|(_, v)| *v)
    }

    /// The entry with this value.
    pub fn entry(&self, value: u32) -> Option<&'static EnumValueDef> {
        let values = self.values;
        values
            .binary_search_by(|e| e.value.cmp(&value))
            .ok()
            .and_then(|i| values.get(i))
    }

    /// The XML name of `value`, if it has one that reads back to the same value (a spelling
    /// shared with another entry is not used).
    pub fn canonical_name(&self, value: u32) -> Option<&'static str> {
        let entry = self.entry(value)?;
        (self.value_by_xml_name(entry.xml_name) == Some(value)).then_some(entry.xml_name)
    }

    /// A mask value as the XML names of its bits (in table order), and the bits that no name
    /// covers. Used by both text encodings, which differ only in the separator.
    pub fn mask_names(&self, bits: u32) -> (Vec<&'static str>, u32) {
        let mut names = Vec::new();
        let mut left = bits;
        for entry in self.values {
            let v = entry.value;
            if v != 0
                && bits & v == v
                && left & v != 0
                && self.value_by_xml_name(entry.xml_name) == Some(v)
            {
                names.push(entry.xml_name);
                left &= !v;
            }
        }
        (names, left)
    }
}

/// The table that a KMIP 1.x Attribute Value takes, from its sibling Attribute Name
/// ("Cryptographic Algorithm", "Cryptographic Usage Mask"); `None` for attributes whose value
/// is not an enumeration or mask, and for custom (`x-`, `y-`) attributes.
pub fn attribute_value_enum(attribute_name: &str) -> Option<&'static EnumDef> {
    tag_by_name(attribute_name)
        .and_then(|t| t.enumeration)
        .or_else(|| enum_by_name(attribute_name))
}

/// One entry of an enumeration or mask table.
#[derive(Debug)]
pub struct EnumValueDef {
    /// The value (a single bit for masks).
    pub value: u32,
    /// The name in the specification ("SHA-256").
    pub name: &'static str,
    /// The CamelCase name ("SHA_256").
    pub xml_name: &'static str,
    /// The version that introduced the entry.
    pub since: Version,
    /// The first version that no longer defines the entry, if any.
    pub removed: Option<Version>,
}

impl EnumValueDef {
    /// Whether `version` defines this entry.
    pub fn defined_in(&self, version: Version) -> bool {
        defined_in(self.since, self.removed, version)
    }
}

/// Every known tag, sorted by number.
pub fn tags() -> &'static [TagDef] {
    generated::TAGS
}

/// The tag with this number.
pub fn tag_by_value(tag: u32) -> Option<&'static TagDef> {
    let tags = generated::TAGS;
    tags.binary_search_by(|t| t.tag.cmp(&tag))
        .ok()
        .and_then(|i| tags.get(i))
}

/// The tag with this XML name ("ActivationDate").
pub fn tag_by_xml_name(name: &str) -> Option<&'static TagDef> {
    let names = generated::TAGS_BY_XML_NAME;
    names
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .and_then(|i| names.get(i))
        .and_then(|(_, tag)| tag_by_value(*tag))
}

/// The tag with this spec name ("Cryptographic Usage Mask"), as 1.x Attribute Names give it
/// (a linear search).
pub fn tag_by_name(spec_name: &str) -> Option<&'static TagDef> {
    generated::TAGS.iter().find(|t| t.name == spec_name)
}

/// The table with this spec, XML or alias name ("Cryptographic Algorithm",
/// "CryptographicAlgorithm", "Batch Error Continuation Option").
pub fn enum_by_name(spec_or_xml_name: &str) -> Option<&'static EnumDef> {
    let names = generated::ENUMS_BY_NAME;
    names
        .binary_search_by(|(n, _)| (*n).cmp(spec_or_xml_name))
        .ok()
        .and_then(|i| names.get(i))
        .map(|(_, e)| *e)
}

/// Every table (each once), in name order.
pub fn enums() -> impl Iterator<Item = &'static EnumDef> {
    generated::ENUMS_BY_NAME
        .iter()
        .filter(|(n, e)| *n == e.name)
        .map(|(_, e)| *e)
}

/// The table that the value of this tag uses, if any.
pub fn enum_of_tag(tag: u32) -> Option<&'static EnumDef> {
    tag_by_value(tag).and_then(|t| t.enumeration)
}

/// [`Names`] from the tables (XML names), for TTLV dumps and logs.
#[derive(Debug, Clone, Copy, Default)]
pub struct KmipNames;

impl Names for KmipNames {
    fn tag_name(&self, tag: Tag) -> Option<&str> {
        tag_by_value(tag.value()).map(|t| t.xml_name)
    }

    fn enum_name(&self, tag: Tag, value: u32) -> Option<&str> {
        enum_of_tag(tag.value())
            .and_then(|e| e.entry(value))
            .map(|e| e.xml_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_split_into_names_and_leftover_bits() {
        let usage = enum_by_name("Cryptographic Usage Mask").unwrap();
        assert!(usage.is_mask);
        // Encrypt 0x4 | Decrypt 0x8 | an unnamed high bit.
        let (names, left) = usage.mask_names(0x0100_000C);
        assert_eq!(names, ["Encrypt", "Decrypt"]);
        assert_eq!(left, 0x0100_0000);
        assert_eq!(usage.mask_names(0), (vec![], 0));
        let algorithm = enum_by_name("Cryptographic Algorithm").unwrap();
        assert_eq!(algorithm.canonical_name(3), Some("AES"));
        assert_eq!(algorithm.canonical_name(0x7FFF_FFFF), None);
    }

    #[test]
    fn attribute_value_tables_come_from_the_attribute_name() {
        let by = |n: &str| attribute_value_enum(n).map(|e| e.name);
        assert_eq!(
            by("Cryptographic Algorithm"),
            Some("Cryptographic Algorithm")
        );
        assert_eq!(
            by("Cryptographic Usage Mask"),
            Some("Cryptographic Usage Mask")
        );
        assert_eq!(by("State"), Some("State"));
        assert_eq!(by("Name"), None, "a structure, not an enumeration");
        assert_eq!(by("Cryptographic Length"), None);
        assert_eq!(by("x-custom"), None);
    }

    #[test]
    fn known_tags_and_versions() {
        let t = tag_by_value(0x420009).unwrap();
        assert_eq!(t.name, "Attribute Index");
        assert_eq!(t.xml_name, "AttributeIndex");
        assert_eq!(t.since, Version::V1_0);
        assert_eq!(t.removed, Some(Version::V2_0));
        assert!(t.defined_in(Version::V1_4) && !t.defined_in(Version::V2_0));

        let t = tag_by_xml_name("Attributes").unwrap();
        assert_eq!((t.tag, t.since, t.removed), (0x420125, Version::V2_0, None));

        let t = tag_by_xml_name("PKCS_11Function").unwrap();
        assert_eq!(t.name, "PKCS#11 Function");
        assert_eq!(t.since, Version::V2_0);

        // Device Identifier took the number that 1.0 marked "(Reserved)".
        let t = tag_by_value(0x4200A2).unwrap();
        assert_eq!((t.xml_name, t.since), ("DeviceIdentifier", Version::V1_1));
        let t = tag_by_value(0x4200F8).unwrap();
        assert_eq!((t.xml_name, t.since), ("KeyWrapType", Version::V1_4));
        let t = tag_by_xml_name("X_509CertificateIdentifier").unwrap();
        assert_eq!(t.since, Version::V1_1);
        assert!(tag_by_xml_name("ActivationDate").is_some());
        assert!(tag_by_value(0x540001).is_none());
        assert!(tag_by_xml_name("NoSuchTag").is_none());
    }

    #[test]
    fn known_enumerations() {
        let e = enum_of_tag(0x42000E).unwrap();
        assert_eq!(e.name, "Batch Error Continuation");
        assert_eq!(e.value_by_xml_name("Undo"), Some(3));
        let h = enum_of_tag(
            tag_by_xml_name("MaskGeneratorHashingAlgorithm")
                .unwrap()
                .tag,
        )
        .unwrap();
        assert_eq!(h.name, "Hashing Algorithm");
        assert_eq!(h.value_by_xml_name("SHA_256"), Some(6));
        assert_eq!(h.entry(6).unwrap().name, "SHA-256");

        let skm = enum_by_name("Split Key Method").unwrap();
        assert_eq!(skm.value_by_xml_name("PolynomialSharingGF2_8"), Some(4));
        let mg = enum_by_name("MaskGenerator").unwrap();
        assert_eq!(mg.value_by_xml_name("MGF1"), Some(1));
        assert_eq!(
            enum_by_name("TicketType")
                .unwrap()
                .value_by_xml_name("Login"),
            Some(1)
        );

        let cum = enum_by_name("Cryptographic Usage Mask").unwrap();
        assert!(cum.is_mask);
        assert_eq!(cum.value_by_xml_name("Encrypt"), Some(4));
        assert_eq!(cum.value_by_xml_name("ContentCommitment"), Some(0x400));
        assert!(enum_by_name("StorageStatusMask").unwrap().is_mask);
        assert!(enum_by_name("Protection Storage Mask").unwrap().is_mask);
        assert!(!enum_by_name("State").unwrap().is_mask);

        let alg = enum_by_name("Cryptographic Algorithm").unwrap();
        let aes = alg.entry(alg.value_by_xml_name("AES").unwrap()).unwrap();
        assert_eq!(aes.since, Version::V1_0);
        assert_eq!(alg.value_by_xml_name("DES3"), Some(2));

        let op = enum_by_name("Operation").unwrap();
        let interop = op.entry(op.value_by_xml_name("Interop").unwrap()).unwrap();
        assert_eq!(interop.since, Version::V2_0);
        assert!(enum_by_name("no such table").is_none());
    }

    #[test]
    fn tables_sorted_unique_and_round_trip() {
        let tags = tags();
        assert!(tags.windows(2).all(|w| w[0].tag < w[1].tag));
        assert!(
            generated::TAGS_BY_XML_NAME
                .windows(2)
                .all(|w| w[0].0 < w[1].0)
        );
        assert!(generated::ENUMS_BY_NAME.windows(2).all(|w| w[0].0 < w[1].0));
        for t in tags {
            assert_eq!(tag_by_xml_name(t.xml_name).unwrap().tag, t.tag);
            assert!(t.removed.is_none_or(|r| t.since < r));
        }
        let mut count = 0;
        for e in enums() {
            count += 1;
            assert!(
                e.values.windows(2).all(|w| w[0].value < w[1].value),
                "{}",
                e.name
            );
            assert!(
                e.by_xml_name.windows(2).all(|w| w[0].0 < w[1].0),
                "{}",
                e.name
            );
            assert!(std::ptr::eq(enum_by_name(e.xml_name).unwrap(), e));
            for v in e.values {
                assert_eq!(e.value_by_xml_name(v.xml_name), Some(v.value), "{}", v.name);
                assert_eq!(e.entry(v.value).unwrap().name, v.name);
                if e.is_mask {
                    assert_eq!(v.value.count_ones(), 1, "{}", v.name);
                }
            }
        }
        assert!(count > 60);
    }

    #[test]
    fn names_trait_and_display() {
        let tag = Tag::new(0x42005C).unwrap();
        assert_eq!(KmipNames.tag_name(tag), Some("Operation"));
        assert_eq!(KmipNames.enum_name(tag, 1), Some("Create"));
        assert_eq!(Version::V1_4.to_string(), "1.4");
        assert_eq!(Version::from_major_minor(2, 1), Some(Version::V2_1));
        assert!(Version::V2_1 < Version::V3_0Draft);
    }
}
