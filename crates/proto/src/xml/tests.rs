//! Unit tests of the XML encoding: each value form, each error, writing.

use super::*;

fn tag(v: u32) -> Tag {
    Tag::new(v).unwrap()
}

fn read(xml: &str) -> Result<Ttlv, XmlError> {
    read_item(xml, &XmlOptions::default(), &mut NoPlaceholders)
}

fn value_of(xml: &str) -> Value {
    read(xml).unwrap().value
}

fn kind(xml: &str) -> XmlErrorKind {
    read(xml).unwrap_err().kind
}

fn round_trip(item: &Ttlv) {
    let text = write_item(item, &XmlOptions::default());
    assert_eq!(&read(&text).unwrap(), item, "{text}");
}

#[test]
fn value_forms() {
    assert_eq!(
        value_of(r#"<BatchCount type="Integer" value="-3"/>"#),
        Value::Integer(-3)
    );
    assert_eq!(
        value_of(r#"<BatchCount type="Integer" value="0xFFFFFFFF"/>"#),
        Value::Integer(-1)
    );
    assert_eq!(
        value_of(r#"<CryptographicUsageMask type="Integer" value="Encrypt  Decrypt 0x00100000"/>"#),
        Value::Integer(0x0010_000C)
    );
    assert_eq!(
        value_of(r#"<StorageStatusMask type="Integer" value="OnLineStorage ArchivalStorage"/>"#),
        Value::Integer(3)
    );
    assert_eq!(
        value_of(r#"<ObjectType type="Enumeration" value="SymmetricKey"/>"#),
        Value::Enumeration(2)
    );
    assert_eq!(
        value_of(r#"<ObjectType type="Enumeration" value="0x80000001"/>"#),
        Value::Enumeration(0x8000_0001)
    );
    assert_eq!(
        value_of(r#"<MaskGeneratorHashingAlgorithm type="Enumeration" value="SHA_256"/>"#),
        Value::Enumeration(6)
    );
    assert_eq!(
        value_of(r#"<Sensitive type="Boolean" value="true"/>"#),
        Value::Boolean(true)
    );
    assert_eq!(
        value_of(r#"<Name type="TextString" value="a&amp;b &#913;"/>"#),
        Value::TextString("a&b \u{391}".into())
    );
    assert_eq!(
        value_of("<Name type=\"TextString\" value=\"Unique\n   Identifier\"/>"),
        Value::TextString("Unique Identifier".into())
    );
    assert_eq!(
        value_of("<KeyMaterial type=\"ByteString\" value=\"0102\n  ff\"/>"),
        Value::bytes(vec![1, 2, 0xFF])
    );
    assert_eq!(
        value_of(r#"<Modulus type="BigInteger" value="010001"/>"#),
        Value::BigInteger(BigInteger::from_twos_complement(&[1, 0, 1]))
    );
    assert_eq!(
        value_of(r#"<LeaseTime type="Interval" value="3600"/>"#),
        Value::Interval(3600)
    );
    assert_eq!(
        value_of(r#"<UsageLimitsTotal type="LongInteger" value="-500"/>"#),
        Value::LongInteger(-500)
    );
    assert_eq!(
        value_of(r#"<ActivationDate type="DateTime" value="2012-04-27T08:12:24+00:00"/>"#),
        Value::DateTime(1_335_514_344)
    );
    assert_eq!(
        value_of(
            r#"<ActivationDate type="DateTimeExtended" value="2012-04-27T08:12:24.000005Z"/>"#
        ),
        Value::DateTimeExtended(1_335_514_344_000_005)
    );
    assert_eq!(
        value_of(r#"<TTLV tag="0x540001" type="TextString" value="x"/>"#),
        Value::TextString("x".into())
    );
    assert_eq!(
        value_of(r#"<AttributeReference type="Enumeration" value="State"/>"#),
        Value::Enumeration(0x42008D)
    );
}

#[test]
fn attribute_value_through_attribute_name() {
    let xml = r#"<Attribute>
        <AttributeName type="TextString" value="Cryptographic
          Usage Mask"/>
        <AttributeValue type="Integer" value="Decrypt   Encrypt"/>
      </Attribute>"#;
    let item = read(xml).unwrap();
    assert_eq!(item.children().unwrap()[1].value, Value::Integer(12));
    let xml = r#"<Attribute><AttributeName type="TextString" value="Cryptographic Algorithm"/>
        <AttributeValue type="Enumeration" value="AES"/></Attribute>"#;
    let item = read(xml).unwrap();
    assert_eq!(item.children().unwrap()[1].value, Value::Enumeration(3));
    round_trip(&item);
}

#[test]
fn documents_wrappers_comments_and_defect() {
    let xml = "<?xml version=\"1.0\"?>\n<!-- c -->\n<KMIP>\n# TIME 0\n<RequestMessage/>\n<ResponseMessage>\n</ResponseMessage>\n</KMIP>\n</KMIP>\n";
    let doc = read_document(xml, &XmlOptions::default(), &mut NoPlaceholders).unwrap();
    assert_eq!(doc.wrapper.as_deref(), Some("KMIP"));
    assert_eq!(doc.items.len(), 2);
    assert_eq!(doc.items[1].tag, tag(0x42007B));
    let err = read_document(
        "<KMIP></KMIP><Foo/>",
        &XmlOptions::default(),
        &mut NoPlaceholders,
    )
    .unwrap_err();
    assert_eq!(err.kind, XmlErrorKind::TrailingContent);
}

#[test]
fn placeholders() {
    let mut calls = Vec::new();
    let mut resolver = |t: Tag, ty: ItemType, p: &str| -> Result<Value, String> {
        calls.push((t.value(), ty, p.to_owned()));
        Ok(Value::DateTime(1000))
    };
    let item = read_item(
        r#"<ActivationDate type="DateTime" value="$NOW-3600"/>"#,
        &XmlOptions::default(),
        &mut resolver,
    )
    .unwrap();
    assert_eq!(item.value, Value::DateTime(1000));
    assert_eq!(
        calls,
        vec![(0x420001, ItemType::DateTime, "$NOW-3600".to_owned())]
    );
    assert!(matches!(
        kind(r#"<UniqueIdentifier type="TextString" value="$UNIQUE_IDENTIFIER_0"/>"#),
        XmlErrorKind::Placeholder { .. }
    ));
    let mut wrong =
        |_: Tag, _: ItemType, _: &str| -> Result<Value, String> { Ok(Value::Integer(1)) };
    let err = read_item(
        r#"<UniqueIdentifier type="TextString" value="$X"/>"#,
        &XmlOptions::default(),
        &mut wrong,
    )
    .unwrap_err();
    assert!(matches!(
        err.kind,
        XmlErrorKind::PlaceholderType {
            got: ItemType::Integer,
            ..
        }
    ));
}

#[test]
fn nesting_is_capped_before_the_tree_is_built() {
    let hard = kmipd_ttlv::Limits::HARD_MAX_DEPTH;
    let nested = |n: usize| {
        format!(
            "{}{}",
            "<RequestPayload>".repeat(n),
            "</RequestPayload>".repeat(n)
        )
    };
    assert!(read(&nested(hard)).is_ok());
    assert_eq!(kind(&nested(hard + 1)), XmlErrorKind::TooDeep(hard));
    // Far deeper than any stack could take, refused without a crash.
    assert_eq!(kind(&nested(200_000)), XmlErrorKind::TooDeep(hard));
}

#[test]
fn errors() {
    assert!(matches!(kind("<RequestMessage>"), XmlErrorKind::Syntax(_)));
    assert!(matches!(
        kind("<RequestMessage></ResponseMessage>"),
        XmlErrorKind::Syntax(_)
    ));
    assert_eq!(kind("<!-- nothing -->"), XmlErrorKind::NoRoot);
    assert_eq!(
        kind("<RequestMessage><Nope/></RequestMessage>"),
        XmlErrorKind::UnknownName("Nope".into())
    );
    assert_eq!(
        kind(r#"<TTLV tag="zz" type="Integer" value="1"/>"#),
        XmlErrorKind::BadTag("zz".into())
    );
    assert_eq!(
        kind(r#"<BatchCount type="Int" value="1"/>"#),
        XmlErrorKind::UnknownType("Int".into())
    );
    assert_eq!(
        kind(r#"<BatchCount type="Integer"/>"#),
        XmlErrorKind::MissingValue
    );
    assert_eq!(
        kind(
            r#"<BatchCount type="Integer" value="1"><BatchCount type="Integer" value="1"/></BatchCount>"#
        ),
        XmlErrorKind::ChildOfPrimitive(ItemType::Integer)
    );
    for (ty, v) in [
        ("Integer", "x"),
        ("Boolean", "yes"),
        ("ByteString", "0g"),
        ("DateTime", "2012-04-27"),
        ("Interval", "-1"),
        ("LongInteger", "1.5"),
        ("BigInteger", "abc"),
    ] {
        let xml = format!(r#"<TTLV tag="0x540001" type="{ty}" value="{v}"/>"#);
        assert!(
            matches!(kind(&xml), XmlErrorKind::InvalidValue { .. }),
            "{ty} {v}"
        );
    }
    assert_eq!(
        kind(r#"<ObjectType type="Enumeration" value="Nope"/>"#),
        XmlErrorKind::UnknownEnumName("Nope".into())
    );
    assert_eq!(
        kind(r#"<CryptographicUsageMask type="Integer" value="Encrypt Nope"/>"#),
        XmlErrorKind::UnknownEnumName("Nope".into())
    );
    let err = read("<RequestMessage>\n  <BatchItem>\n    <Operation type=\"Enumeration\" value=\"Frobnicate\"/>\n  </BatchItem>\n</RequestMessage>").unwrap_err();
    assert_eq!(err.line, 3);
    assert_eq!(err.path, "/RequestMessage/BatchItem/Operation");
}

#[test]
fn writing_round_trips() {
    let item = Ttlv::new(
        tag(0x420078),
        Value::Structure(vec![
            Ttlv::new(tag(0x42002C), Value::Integer(0x4000_000C)),
            Ttlv::new(tag(0x42002C), Value::Integer(0)),
            Ttlv::new(tag(0x420057), Value::Enumeration(2)),
            Ttlv::new(tag(0x420057), Value::Enumeration(0x8000_0001)),
            Ttlv::new(tag(0x42013B), Value::Enumeration(0x420001)),
            Ttlv::new(
                tag(0x420053),
                Value::TextString("  two  spaces\n&<\"> ".into()),
            ),
            Ttlv::new(tag(0x420043), Value::bytes(vec![0, 1, 0xFE])),
            Ttlv::new(
                tag(0x420052),
                Value::BigInteger(BigInteger::from_twos_complement(&[0x80, 1])),
            ),
            Ttlv::new(tag(0x420001), Value::DateTime(1_335_514_344)),
            Ttlv::new(tag(0x420001), Value::DateTime(i64::MAX)),
            Ttlv::new(
                tag(0x420001),
                Value::DateTimeExtended(1_335_514_344_000_005),
            ),
            Ttlv::new(tag(0x42004D), Value::Interval(u32::MAX)),
            Ttlv::new(tag(0x420000 + 0x120), Value::Boolean(false)),
            Ttlv::new(tag(0x540001), Value::LongInteger(i64::MIN)),
            Ttlv::new(tag(0x540002), Value::Structure(vec![])),
        ]),
    );
    round_trip(&item);
    let text = write_item(&item, &XmlOptions::default());
    assert!(
        text.contains(
            r#"<CryptographicUsageMask type="Integer" value="Encrypt Decrypt 0x40000000"/>"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"<ObjectType type="Enumeration" value="SymmetricKey"/>"#));
    assert!(text.contains(r#"<AttributeReference type="Enumeration" value="ActivationDate"/>"#));
    assert!(text.contains(r#"value="2012-04-27T08:12:24+00:00""#));
    assert!(text.contains(r#"<TTLV tag="0x540002"/>"#));
    let doc = write_document("KMIP", std::slice::from_ref(&item), &XmlOptions::default());
    let back = read_document(&doc, &XmlOptions::default(), &mut NoPlaceholders).unwrap();
    assert_eq!(back.items, vec![item]);
}

#[test]
fn extra_names() {
    let options = XmlOptions {
        extra_tags: &[("NextLink", 0x54FF03)],
        type_aliases: &[("Reference", ItemType::TextString)],
        extra_enums: &[],
    };
    let item = read_item(
        r#"<NextLink type="Reference" value="id"/>"#,
        &options,
        &mut NoPlaceholders,
    )
    .unwrap();
    assert_eq!(
        item,
        Ttlv::new(tag(0x54FF03), Value::TextString("id".into()))
    );
    assert!(write_item(&item, &options).starts_with("<NextLink type=\"TextString\""));
}
