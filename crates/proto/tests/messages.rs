//! The typed message and attribute model against every OASIS test case of 1.0 to 2.1: each
//! request message reads into `RequestMessage` and writes back to the identical tree; each
//! response message reads into `ResponseMessage`; every 1.x `Attribute` and every child of a 2.x
//! `Attributes` structure converts to the internal form and back unchanged.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use kmipd_proto::attributes::{AttrName, Attribute};
use kmipd_proto::message::{RequestMessage, ResponseMessage};
use kmipd_proto::tag;
use kmipd_proto::xml::{self, XmlOptions};
use kmipd_test_support::{files_with_suffix, fixed_placeholder, vectors_dir};
use kmipd_ttlv::{Ttlv, Value};

const VERSIONS: [&str; 7] = ["1.0", "1.1", "1.2", "1.3", "1.4", "2.0", "2.1"];

fn messages(path: &std::path::Path) -> Vec<Ttlv> {
    let text = std::fs::read_to_string(path).unwrap();
    xml::read_document(&text, &XmlOptions::default(), &mut fixed_placeholder)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .items
}

/// Every 1.x Attribute and 2.x Attributes child in a tree.
fn attributes(item: &Ttlv, v2_attrs: &mut Vec<Ttlv>, v1_attrs: &mut Vec<Ttlv>) {
    if item.tag == tag::ATTRIBUTE
        && item.children().is_some_and(|c| {
            c.iter().any(|i| i.tag == tag::ATTRIBUTE_NAME)
                && !c.iter().any(|i| i.tag == tag::VENDOR_IDENTIFICATION)
        })
    {
        v1_attrs.push(item.clone());
    }
    if let Some(children) = item.children() {
        if item.tag == tag::ATTRIBUTES {
            v2_attrs.extend(children.iter().cloned());
        }
        for c in children {
            attributes(c, v2_attrs, v1_attrs);
        }
    }
}

#[test]
fn every_request_and_response_of_1_0_to_2_1_fits_the_model() {
    let dir = vectors_dir();
    let mut requests = 0;
    let mut responses = 0;
    let mut v1_count = 0;
    let mut v2_count = 0;
    let mut failures = Vec::new();
    for version in VERSIONS {
        for path in files_with_suffix(&dir.join(version), ".xml") {
            let name = path.strip_prefix(&dir).unwrap().display().to_string();
            for (i, m) in messages(&path).iter().enumerate() {
                if m.tag == tag::REQUEST_MESSAGE {
                    requests += 1;
                    match RequestMessage::from_ttlv(m) {
                        Ok(r) if &r.to_ttlv() == m => {}
                        Ok(_) => {
                            failures.push(format!("{name} #{i}: request differs when written"))
                        }
                        Err(e) => failures.push(format!("{name} #{i}: request: {e}")),
                    }
                } else {
                    responses += 1;
                    if let Err(e) = ResponseMessage::from_ttlv(m) {
                        failures.push(format!("{name} #{i}: response: {e}"));
                    }
                }
                let (mut v2, mut v1) = (Vec::new(), Vec::new());
                attributes(m, &mut v2, &mut v1);
                for a in v1 {
                    v1_count += 1;
                    match Attribute::from_v1(&a) {
                        Ok((attr, index)) if attr.to_v1(index) == a => {}
                        Ok(_) => failures.push(format!("{name} #{i}: 1.x attribute {a:?} differs")),
                        Err(e) => failures.push(format!("{name} #{i}: 1.x attribute: {e}")),
                    }
                }
                for a in v2 {
                    v2_count += 1;
                    match Attribute::from_v2(&a) {
                        Ok(attr) if attr.to_v2() == a => {}
                        Ok(_) => failures.push(format!("{name} #{i}: 2.x attribute {a:?} differs")),
                        Err(e) => failures.push(format!("{name} #{i}: 2.x attribute: {e}")),
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Attributes without a name (an OASIS defect) are covered by the test below.
    assert!(
        requests > 1000 && responses > 1000,
        "{requests} {responses}"
    );
    assert!(v1_count > 500 && v2_count > 500, "{v1_count} {v2_count}");
}

#[test]
fn v1_names_map_to_tags_and_custom_names_stay_custom() {
    assert_eq!(
        AttrName::from_v1_name("Cryptographic Algorithm"),
        AttrName::Std(tag::CRYPTOGRAPHIC_ALGORITHM)
    );
    assert_eq!(AttrName::Std(tag::OBJECT_GROUP).v1_name(), "Object Group");
    let custom = AttrName::from_v1_name("x-ID");
    assert!(matches!(&custom, AttrName::Custom { vendor: None, name } if name == "x-ID"));
    // A 1.x custom attribute written in 2.x form is a vendor attribute, and reads back the same.
    let a = Attribute {
        name: custom,
        value: Value::TextString("v".into()),
    };
    let v2 = a.to_v2();
    assert_eq!(v2.tag, tag::ATTRIBUTE);
    let back = Attribute::from_v2(&v2).unwrap();
    assert_eq!(back.name.v1_name(), "x-ID");
}

#[test]
fn nameless_cryptographic_parameters_of_the_1_2_cases_are_read_as_that_attribute() {
    use kmipd_proto::attributes::RequestAttributes;
    let path = vectors_dir().join("1.2/profiles/mandatory/CS-AC-M-3-12.xml");
    let msgs = messages(&path);
    let mut templates = Vec::new();
    msgs[2].walk(&mut |i, _| {
        if i.tag == tag::TEMPLATE_ATTRIBUTE {
            templates.push(i.clone());
        }
    });
    assert_eq!(templates.len(), 1);
    let read = RequestAttributes::from_v1_template(&templates[0]).unwrap();
    let params = read.attributes.get(tag::CRYPTOGRAPHIC_PARAMETERS).unwrap();
    let Value::Structure(fields) = params else {
        panic!("not a structure")
    };
    assert!(fields.iter().any(|f| f.tag == tag::PADDING_METHOD));
    // Any other nameless attribute stays an error.
    let bad = kmipd_proto::build::structure(
        tag::TEMPLATE_ATTRIBUTE,
        vec![kmipd_proto::build::structure(
            tag::ATTRIBUTE,
            vec![kmipd_proto::build::text(tag::ATTRIBUTE_VALUE, "x")],
        )],
    );
    assert!(RequestAttributes::from_v1_template(&bad).is_err());
}

#[test]
fn key_format_type_is_an_attribute_only_from_2_0() {
    use kmipd_proto::spec::Version;
    let kft = AttrName::Std(tag::KEY_FORMAT_TYPE);
    assert!(!kft.defined_in(Version::V1_4));
    assert!(kft.defined_in(Version::V2_0));
    assert!(AttrName::Std(tag::CRYPTOGRAPHIC_ALGORITHM).defined_in(Version::V1_0));
    assert!(!AttrName::Std(tag::SENSITIVE).defined_in(Version::V1_3));
}
