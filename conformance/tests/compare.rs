//! The comparison rules against a scripted target (a fake server that answers given responses
//! and records what it was sent): identifier binding, dates, capture and replay, attribute and
//! Query lists, and that real differences fail with a useful first difference.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use kmipd_conformance::{FileOutcome, Target, run_document_at};
use kmipd_proto::xml::{self, NoPlaceholders, XmlOptions};
use kmipd_ttlv::{Tag, Ttlv, Value};

const NOW: i64 = 1_700_000_000;

/// Answers the scripted responses in order and records the requests.
struct Scripted {
    responses: Vec<Ttlv>,
    sent: Vec<Ttlv>,
}

impl Scripted {
    fn new(responses: &[String]) -> Self {
        Self {
            responses: responses
                .iter()
                .map(|r| xml::read_item(r, &XmlOptions::default(), &mut NoPlaceholders).unwrap())
                .collect(),
            sent: Vec::new(),
        }
    }

    /// The first value with this tag in the n-th request sent.
    fn sent_value(&self, n: usize, tag: u32) -> Value {
        let mut found = None;
        self.sent[n].walk(&mut |item, _| {
            if item.tag == Tag::new(tag).unwrap() && found.is_none() {
                found = Some(item.value.clone());
            }
        });
        found.unwrap_or_else(|| panic!("request {n} has no tag 0x{tag:06X}"))
    }
}

impl Target for Scripted {
    fn send(&mut self, request: &Ttlv) -> Result<Ttlv, String> {
        self.sent.push(request.clone());
        if self.responses.is_empty() {
            return Err(String::from("script exhausted"));
        }
        Ok(self.responses.remove(0))
    }
}

const UID: u32 = 0x42_0094;
const DATA: u32 = 0x42_00C2;
const ACTIVATION_DATE: u32 = 0x42_0001;

fn header(major: i32, minor: i32, response: bool) -> String {
    let ts = if response {
        r#"<TimeStamp type="DateTime" value="2012-04-27T08:14:39+00:00"/>"#
    } else {
        ""
    };
    format!(
        r#"<ProtocolVersion><ProtocolVersionMajor type="Integer" value="{major}"/><ProtocolVersionMinor type="Integer" value="{minor}"/></ProtocolVersion>{ts}"#
    )
}

/// A request message of protocol 1.4 with one batch item per operation/payload pair.
fn req(items: &[(&str, &str)]) -> String {
    req_v(1, 4, items)
}

fn req_v(major: i32, minor: i32, items: &[(&str, &str)]) -> String {
    let mut s = format!(
        r#"<RequestMessage><RequestHeader>{}<BatchCount type="Integer" value="{}"/></RequestHeader>"#,
        header(major, minor, false),
        items.len()
    );
    for (op, payload) in items {
        s.push_str(&format!(
            r#"<BatchItem><Operation type="Enumeration" value="{op}"/><RequestPayload>{payload}</RequestPayload></BatchItem>"#
        ));
    }
    s.push_str("</RequestMessage>");
    s
}

/// A successful response message of protocol 1.4.
fn ok(items: &[(&str, &str)]) -> String {
    ok_v(1, 4, items)
}

fn ok_v(major: i32, minor: i32, items: &[(&str, &str)]) -> String {
    let mut s = format!(
        r#"<ResponseMessage><ResponseHeader>{}<BatchCount type="Integer" value="{}"/></ResponseHeader>"#,
        header(major, minor, true),
        items.len()
    );
    for (op, payload) in items {
        s.push_str(&format!(
            r#"<BatchItem><Operation type="Enumeration" value="{op}"/><ResultStatus type="Enumeration" value="Success"/><ResponsePayload>{payload}</ResponsePayload></BatchItem>"#
        ));
    }
    s.push_str("</ResponseMessage>");
    s
}

/// A failed response of protocol 1.4.
fn failed(op: &str, reason: &str) -> String {
    format!(
        r#"<ResponseMessage><ResponseHeader>{}<BatchCount type="Integer" value="1"/></ResponseHeader><BatchItem><Operation type="Enumeration" value="{op}"/><ResultStatus type="Enumeration" value="OperationFailed"/><ResultReason type="Enumeration" value="{reason}"/><ResultMessage type="TextString" value="some text"/></BatchItem></ResponseMessage>"#,
        header(1, 4, true)
    )
}

fn uid(v: &str) -> String {
    format!(r#"<UniqueIdentifier type="TextString" value="{v}"/>"#)
}

fn attr(name: &str, ty: &str, value: &str) -> String {
    format!(
        r#"<Attribute><AttributeName type="TextString" value="{name}"/><AttributeValue type="{ty}" value="{value}"/></Attribute>"#
    )
}

fn doc(messages: &[String]) -> String {
    format!("<KMIP>{}</KMIP>", messages.concat())
}

fn run(messages: &[String], script: &mut Scripted) -> FileOutcome {
    run_document_at(&doc(messages), "test.xml", script, NOW)
}

fn assert_fails_at(outcome: &FileOutcome, needle: &str) {
    assert!(!outcome.passed, "expected a failure");
    let reason = outcome.first_difference.as_deref().unwrap();
    assert!(
        reason.contains(needle),
        "{reason:?} does not contain {needle:?}"
    );
}

fn create() -> String {
    req(&[(
        "Create",
        r#"<ObjectType type="Enumeration" value="SymmetricKey"/>"#,
    )])
}

#[test]
fn identifiers_are_bound_and_substituted_and_checked() {
    let messages = [
        create(),
        ok(&[("Create", &uid("$UNIQUE_IDENTIFIER_0"))]),
        req(&[("Get", &uid("$UNIQUE_IDENTIFIER_0"))]),
        ok(&[("Get", &uid("$UNIQUE_IDENTIFIER_0"))]),
    ];
    let mut good = Scripted::new(&[
        ok(&[("Create", &uid("srv-1"))]),
        ok(&[("Get", &uid("srv-1"))]),
    ]);
    let outcome = run(&messages, &mut good);
    assert!(outcome.passed, "{outcome:?}");
    assert_eq!(good.sent_value(1, UID), Value::TextString("srv-1".into()));

    // The server answers the Get with another identifier.
    let mut bad = Scripted::new(&[
        ok(&[("Create", &uid("srv-1"))]),
        ok(&[("Get", &uid("srv-2"))]),
    ]);
    let outcome = run(&messages, &mut bad);
    assert_fails_at(
        &outcome,
        "request 1 (Get): BatchItem[0]/ResponsePayload/UniqueIdentifier: expected \
         $UNIQUE_IDENTIFIER_0 = \"srv-1\", got \"srv-2\"",
    );
    assert_eq!(
        outcome.stable_difference.as_deref(),
        Some(
            "request 1 (Get): BatchItem[0]/ResponsePayload/UniqueIdentifier: expected \
             $UNIQUE_IDENTIFIER_0 (bound earlier), got another value"
        )
    );
}

#[test]
fn two_placeholders_may_not_get_the_same_identifier() {
    let messages = [
        create(),
        ok(&[("Create", &uid("$UNIQUE_IDENTIFIER_0"))]),
        create(),
        ok(&[("Create", &uid("$UNIQUE_IDENTIFIER_1"))]),
    ];
    let mut s = Scripted::new(&[
        ok(&[("Create", &uid("same"))]),
        ok(&[("Create", &uid("same"))]),
    ]);
    assert_fails_at(
        &run(&messages, &mut s),
        "both $UNIQUE_IDENTIFIER_0 and $UNIQUE_IDENTIFIER_1",
    );
}

#[test]
fn literal_identifiers_of_old_files_bind_too() {
    // 1.0-1.2 files carry the identifiers the recording server chose.
    let messages = [
        create(),
        ok(&[("Create", &uid("1234"))]),
        req(&[("Destroy", &uid("1234"))]),
        ok(&[("Destroy", &uid("1234"))]),
        req(&[("Get", &uid("never-seen"))]),
        failed("Get", "ItemNotFound"),
    ];
    let mut s = Scripted::new(&[
        ok(&[("Create", &uid("uuid-a"))]),
        ok(&[("Destroy", &uid("uuid-a"))]),
        failed("Get", "ItemNotFound"),
    ]);
    let outcome = run(&messages, &mut s);
    assert!(outcome.passed, "{outcome:?}");
    assert_eq!(s.sent_value(1, UID), Value::TextString("uuid-a".into()));
    // An identifier no response gave is sent as written.
    assert_eq!(s.sent_value(2, UID), Value::TextString("never-seen".into()));
}

#[test]
fn result_status_and_reason_are_exact() {
    let messages = [req(&[("Get", &uid("x"))]), failed("Get", "ItemNotFound")];
    let mut s = Scripted::new(&[failed("Get", "PermissionDenied")]);
    let outcome = run(&messages, &mut s);
    assert_fails_at(
        &outcome,
        "request 0 (Get): BatchItem[0]/ResultReason: expected ItemNotFound, got PermissionDenied",
    );
    // The result message text may vary, and the stable form leaves it out.
    assert!(!outcome.stable_difference.unwrap().contains("some text"));

    let mut s = Scripted::new(&[ok(&[("Get", &uid("x"))])]);
    assert_fails_at(
        &run(&messages, &mut s),
        "BatchItem[0]/ResultStatus: expected OperationFailed, got Success",
    );
    let mut s = Scripted::new(&[failed("Get", "ItemNotFound")]);
    assert!(run(&messages, &mut s).passed);
}

#[test]
fn a_value_difference_fails_with_its_path() {
    let expected = format!(
        "{}{}",
        uid("$UNIQUE_IDENTIFIER_0"),
        attr("Cryptographic Length", "Integer", "128")
    );
    let messages = [
        create(),
        ok(&[("Create", &uid("$UNIQUE_IDENTIFIER_0"))]),
        req(&[("GetAttributes", &uid("$UNIQUE_IDENTIFIER_0"))]),
        ok(&[("GetAttributes", &expected)]),
    ];
    let actual = format!(
        "{}{}",
        uid("k"),
        attr("Cryptographic Length", "Integer", "256")
    );
    let mut s = Scripted::new(&[
        ok(&[("Create", &uid("k"))]),
        ok(&[("GetAttributes", &actual)]),
    ]);
    assert_fails_at(
        &run(&messages, &mut s),
        "request 1 (GetAttributes): BatchItem[0]/ResponsePayload/Attribute(Cryptographic \
         Length)/AttributeValue: expected 128, got 256",
    );
    // Missing altogether.
    let mut s = Scripted::new(&[
        ok(&[("Create", &uid("k"))]),
        ok(&[("GetAttributes", &uid("k"))]),
    ]);
    assert_fails_at(
        &run(&messages, &mut s),
        "Attribute(Cryptographic Length): missing",
    );
}

#[test]
fn attribute_lists_are_subsets_in_any_order() {
    let expected = [
        uid("$UNIQUE_IDENTIFIER_0"),
        attr("Cryptographic Algorithm", "Enumeration", "AES"),
        attr("Cryptographic Length", "Integer", "128"),
        attr("Cryptographic Usage Mask", "Integer", "Encrypt Decrypt"),
    ]
    .concat();
    let actual = [
        uid("k"),
        attr("Object Group", "TextString", "default"),
        attr("Cryptographic Usage Mask", "Integer", "12"),
        attr("y-server", "TextString", "extra"),
        // AttributeIndex 0 may appear.
        r#"<Attribute><AttributeName type="TextString" value="Cryptographic Length"/><AttributeIndex type="Integer" value="0"/><AttributeValue type="Integer" value="128"/></Attribute>"#.to_owned(),
        attr("Cryptographic Algorithm", "Enumeration", "AES"),
    ]
    .concat();
    let messages = [
        create(),
        ok(&[("Create", &uid("$UNIQUE_IDENTIFIER_0"))]),
        req(&[("GetAttributes", &uid("$UNIQUE_IDENTIFIER_0"))]),
        ok(&[("GetAttributes", &expected)]),
    ];
    let mut s = Scripted::new(&[
        ok(&[("Create", &uid("k"))]),
        ok(&[("GetAttributes", &actual)]),
    ]);
    let outcome = run(&messages, &mut s);
    assert!(outcome.passed, "{outcome:?}");

    // 2.x: the children of Attributes, likewise.
    let e2 = format!(
        r#"{}<Attributes><CryptographicLength type="Integer" value="128"/><State type="Enumeration" value="PreActive"/></Attributes>"#,
        uid("$UNIQUE_IDENTIFIER_0")
    );
    let a2 = format!(
        r#"{}<Attributes><State type="Enumeration" value="PreActive"/><ObjectGroup type="TextString" value="g"/><CryptographicLength type="Integer" value="128"/></Attributes>"#,
        uid("k")
    );
    let messages = [
        req_v(2, 1, &[("Create", "")]),
        ok_v(2, 1, &[("Create", &uid("$UNIQUE_IDENTIFIER_0"))]),
        req_v(2, 1, &[("GetAttributes", &uid("$UNIQUE_IDENTIFIER_0"))]),
        ok_v(2, 1, &[("GetAttributes", &e2)]),
    ];
    let mut s = Scripted::new(&[
        ok_v(2, 1, &[("Create", &uid("k"))]),
        ok_v(2, 1, &[("GetAttributes", &a2)]),
    ]);
    let outcome = run(&messages, &mut s);
    assert!(outcome.passed, "{outcome:?}");
    let a2_wrong = a2.replace("PreActive", "Active");
    let mut s = Scripted::new(&[
        ok_v(2, 1, &[("Create", &uid("k"))]),
        ok_v(2, 1, &[("GetAttributes", &a2_wrong)]),
    ]);
    assert_fails_at(
        &run(&messages, &mut s),
        "BatchItem[0]/ResponsePayload/Attributes/State: expected PreActive, got Active",
    );
}

#[test]
fn dates_sent_must_come_back_others_may_vary() {
    let register = req(&[(
        "Register",
        &attr("Activation Date", "DateTime", "$NOW-3600"),
    )]);
    let get = req(&[("GetAttributes", &uid("$UNIQUE_IDENTIFIER_0"))]);
    let expected = [
        uid("$UNIQUE_IDENTIFIER_0"),
        attr("Activation Date", "DateTime", "$NOW-3600"),
        attr("Initial Date", "DateTime", "$NOW"),
        // A literal date no request sent: any value.
        attr("Last Change Date", "DateTime", "2012-04-27T08:14:39+00:00"),
    ]
    .concat();
    let messages = [
        register,
        ok(&[("Register", &uid("$UNIQUE_IDENTIFIER_0"))]),
        get,
        ok(&[("GetAttributes", &expected)]),
    ];
    let actual = |activation: &str| {
        [
            uid("k"),
            attr("Activation Date", "DateTime", activation),
            attr("Initial Date", "DateTime", "2023-11-14T22:13:21+00:00"),
            attr("Last Change Date", "DateTime", "2023-11-14T22:13:22+00:00"),
        ]
        .concat()
    };
    // NOW is 2023-11-14T22:13:20Z; NOW-3600 is 21:13:20.
    let mut s = Scripted::new(&[
        ok(&[("Register", &uid("k"))]),
        ok(&[("GetAttributes", &actual("2023-11-14T21:13:20+00:00"))]),
    ]);
    let outcome = run(&messages, &mut s);
    assert!(outcome.passed, "{outcome:?}");
    assert_eq!(s.sent_value(0, 0x42_000B), Value::DateTime(NOW - 3600));

    let mut s = Scripted::new(&[
        ok(&[("Register", &uid("k"))]),
        ok(&[("GetAttributes", &actual("2023-11-14T21:13:21+00:00"))]),
    ]);
    assert_fails_at(&run(&messages, &mut s), "expected $NOW-3600 as sent");

    // A literal date sent in a request and echoed must be exact.
    let fixed = "2020-01-01T00:00:00+00:00";
    let messages = [
        req(&[(
            "Register",
            &format!(r#"<ActivationDate type="DateTime" value="{fixed}"/>"#),
        )]),
        ok(&[(
            "Register",
            &format!(r#"<ActivationDate type="DateTime" value="{fixed}"/>"#),
        )]),
    ];
    let mut s = Scripted::new(&[ok(&[(
        "Register",
        r#"<ActivationDate type="DateTime" value="2020-01-01T00:00:01+00:00"/>"#,
    )])]);
    assert_fails_at(&run(&messages, &mut s), "ResponsePayload/ActivationDate");
    let _ = ACTIVATION_DATE;
}

#[test]
fn server_output_is_captured_and_replayed() {
    // A server-generated key: the ciphertext and IV vary; the Decrypt of the test case's
    // ciphertext must carry the server's instead, and give the plaintext back exactly.
    let data = |hex: &str| format!(r#"<Data type="ByteString" value="{hex}"/>"#);
    let iv = |hex: &str| format!(r#"<IVCounterNonce type="ByteString" value="{hex}"/>"#);
    let messages = [
        create(),
        ok(&[("Create", &uid("$UNIQUE_IDENTIFIER_0"))]),
        req(&[(
            "Encrypt",
            &format!("{}{}", uid("$UNIQUE_IDENTIFIER_0"), data("01020304")),
        )]),
        ok(&[(
            "Encrypt",
            &format!(
                "{}{}{}",
                uid("$UNIQUE_IDENTIFIER_0"),
                data("AAAA"),
                iv("1111")
            ),
        )]),
        req(&[(
            "Decrypt",
            &format!(
                "{}{}{}",
                uid("$UNIQUE_IDENTIFIER_0"),
                data("AAAA"),
                iv("1111")
            ),
        )]),
        ok(&[(
            "Decrypt",
            &format!("{}{}", uid("$UNIQUE_IDENTIFIER_0"), data("01020304")),
        )]),
    ];
    let mut s = Scripted::new(&[
        ok(&[("Create", &uid("k"))]),
        ok(&[(
            "Encrypt",
            &format!("{}{}{}", uid("k"), data("BBBB"), iv("2222")),
        )]),
        ok(&[("Decrypt", &format!("{}{}", uid("k"), data("01020304")))]),
    ]);
    let outcome = run(&messages, &mut s);
    assert!(outcome.passed, "{outcome:?}");
    assert_eq!(s.sent_value(2, DATA), Value::bytes(vec![0xBB, 0xBB]));
    assert_eq!(s.sent_value(2, 0x42_003D), Value::bytes(vec![0x22, 0x22]));

    // The plaintext is fixed by the request: a wrong one fails.
    let mut s = Scripted::new(&[
        ok(&[("Create", &uid("k"))]),
        ok(&[(
            "Encrypt",
            &format!("{}{}{}", uid("k"), data("BBBB"), iv("2222")),
        )]),
        ok(&[("Decrypt", &format!("{}{}", uid("k"), data("01020305")))]),
    ]);
    assert_fails_at(
        &run(&messages, &mut s),
        "request 2 (Decrypt): BatchItem[0]/ResponsePayload/Data: expected <4 bytes 01020304>, \
         got <4 bytes 01020305>",
    );
}

#[test]
fn placeholders_of_server_output_are_replayed_by_name_or_by_tag() {
    let sig = |v: &str| format!(r#"<SignatureData type="ByteString" value="{v}"/>"#);
    let data = |v: &str| format!(r#"<Data type="ByteString" value="{v}"/>"#);
    // 1.3+: $SIGNATURE_DATA in a response, replayed by name.
    let messages = [
        req(&[("Sign", &format!("{}{}", uid("k"), data("01")))]),
        ok(&[("Sign", &format!("{}{}", uid("k"), sig("$SIGNATURE_DATA")))]),
        req(&[(
            "SignatureVerify",
            &format!("{}{}", uid("k"), sig("$SIGNATURE_DATA")),
        )]),
        ok(&[("SignatureVerify", &uid("k"))]),
    ];
    let mut s = Scripted::new(&[
        ok(&[("Sign", &format!("{}{}", uid("k"), sig("C0FFEE")))]),
        ok(&[("SignatureVerify", &uid("k"))]),
    ]);
    let outcome = run(&messages, &mut s);
    assert!(outcome.passed, "{outcome:?}");
    assert_eq!(
        s.sent_value(1, 0x42_00C3),
        Value::bytes(vec![0xC0, 0xFF, 0xEE])
    );

    // 1.2: $DATA_0 only in the request: the Data of the most recent response that had one.
    let messages = [
        req(&[("Encrypt", &format!("{}{}", uid("k"), data("01")))]),
        ok(&[("Encrypt", &format!("{}{}", uid("k"), data("AA")))]),
        req(&[("Decrypt", &format!("{}{}", uid("k"), data("$DATA_0")))]),
        ok(&[("Decrypt", &format!("{}{}", uid("k"), data("01")))]),
    ];
    let mut s = Scripted::new(&[
        ok(&[("Encrypt", &format!("{}{}", uid("k"), data("AA")))]),
        ok(&[("Decrypt", &format!("{}{}", uid("k"), data("01")))]),
    ]);
    let outcome = run(&messages, &mut s);
    assert!(outcome.passed, "{outcome:?}");
    assert_eq!(s.sent_value(1, DATA), Value::bytes(vec![0xAA]));
}

#[test]
fn registered_keys_give_exact_crypto_output_generated_keys_not() {
    let data = |v: &str| format!(r#"<Data type="ByteString" value="{v}"/>"#);
    let iv = |hex: &str| format!(r#"<IVCounterNonce type="ByteString" value="{hex}"/>"#);
    let encrypt = req(&[(
        "Encrypt",
        &format!("{}{}{}", uid("$UNIQUE_IDENTIFIER_0"), data("01"), iv("00")),
    )]);
    let expected = ok(&[(
        "Encrypt",
        &format!("{}{}", uid("$UNIQUE_IDENTIFIER_0"), data("AA")),
    )]);
    let answer = ok(&[("Encrypt", &format!("{}{}", uid("k"), data("BB")))]);
    // Registered key, IV given: the ciphertext is deterministic.
    let messages = [
        req(&[("Register", "")]),
        ok(&[("Register", &uid("$UNIQUE_IDENTIFIER_0"))]),
        encrypt.clone(),
        expected.clone(),
    ];
    let mut s = Scripted::new(&[ok(&[("Register", &uid("k"))]), answer.clone()]);
    assert_fails_at(
        &run(&messages, &mut s),
        "ResponsePayload/Data: expected <1 bytes AA>",
    );
    // Generated key: it varies.
    let messages = [
        create(),
        ok(&[("Create", &uid("$UNIQUE_IDENTIFIER_0"))]),
        encrypt,
        expected,
    ];
    let mut s = Scripted::new(&[ok(&[("Create", &uid("k"))]), answer]);
    assert!(run(&messages, &mut s).passed);
}

#[test]
fn generated_key_material_varies_registered_does_not() {
    let key = |material: &str| {
        format!(
            r#"{}<ObjectType type="Enumeration" value="SymmetricKey"/><SymmetricKey><KeyBlock><KeyFormatType type="Enumeration" value="Raw"/><KeyValue><KeyMaterial type="ByteString" value="{material}"/></KeyValue></KeyBlock></SymmetricKey>"#,
            uid("$UNIQUE_IDENTIFIER_0")
        )
    };
    let answer = |material: &str| key(material).replace("$UNIQUE_IDENTIFIER_0", "k");
    let secret = "00112233445566778899AABBCCDDEEFF";
    let other = "FFEEDDCCBBAA99887766554433221100";
    let get = req(&[("Get", &uid("$UNIQUE_IDENTIFIER_0"))]);
    let messages = [
        create(),
        ok(&[("Create", &uid("$UNIQUE_IDENTIFIER_0"))]),
        get.clone(),
        ok(&[("Get", &key(secret))]),
    ];
    let mut s = Scripted::new(&[ok(&[("Create", &uid("k"))]), ok(&[("Get", &answer(other))])]);
    assert!(run(&messages, &mut s).passed);

    let messages = [
        req(&[("Register", "")]),
        ok(&[("Register", &uid("$UNIQUE_IDENTIFIER_0"))]),
        get,
        ok(&[("Get", &key(secret))]),
    ];
    let mut s = Scripted::new(&[
        ok(&[("Register", &uid("k"))]),
        ok(&[("Get", &answer(other))]),
    ]);
    let outcome = run(&messages, &mut s);
    assert_fails_at(
        &outcome,
        "KeyValue/KeyMaterial: expected <16 bytes 00112233…>",
    );
    // Key bytes beyond a short prefix never appear.
    let reason = outcome.first_difference.unwrap();
    assert!(
        !reason.contains("445566") && !reason.contains("BBAA99"),
        "{reason}"
    );
}

#[test]
fn query_operation_and_object_lists_are_the_servers_own() {
    let op = |name: &str| format!(r#"<Operation type="Enumeration" value="{name}"/>"#);
    let messages = [
        req(&[(
            "Query",
            r#"<QueryFunction type="Enumeration" value="QueryOperations"/>"#,
        )]),
        ok(&[(
            "Query",
            &format!(
                r#"{}{}<VendorIdentification type="TextString" value="server-vendor.com"/><ServerInformation/>"#,
                op("Create"),
                op("Get")
            ),
        )]),
    ];
    let answer = format!(
        r#"{}{}{}<VendorIdentification type="TextString" value="kmipd"/><ServerInformation><TTLV tag="0x540001" type="TextString" value="x"/></ServerInformation>"#,
        op("Get"),
        op("Locate"),
        op("Create")
    );
    let mut s = Scripted::new(&[ok(&[("Query", &answer)])]);
    let outcome = run(&messages, &mut s);
    assert!(outcome.passed, "{outcome:?}");
    // The lists are the server's own: fewer operations than the recording server is fine...
    let mut s = Scripted::new(&[ok(&[(
        "Query",
        &format!(
            r#"{}{}<VendorIdentification type="TextString" value="kmipd"/><ServerInformation/>"#,
            op("Get"),
            op("Locate")
        ),
    )])]);
    assert!(run(&messages, &mut s).passed);
    // ...but an answer that lists no operation at all, or lacks another expected item, fails.
    let mut s = Scripted::new(&[ok(&[(
        "Query",
        r#"<VendorIdentification type="TextString" value="kmipd"/><ServerInformation/>"#,
    )])]);
    assert_fails_at(&run(&messages, &mut s), "lists no Operation");
    let mut s = Scripted::new(&[ok(&[("Query", &format!("{}{}", op("Get"), op("Locate")))])]);
    assert_fails_at(&run(&messages, &mut s), "VendorIdentification: missing");
}

#[test]
fn query_descriptions_are_the_servers_but_the_answer_must_be_a_query_answer() {
    let rng = |alg: &str| {
        format!(
            r#"<RNGParameters><RNGAlgorithm type="Enumeration" value="{alg}"/></RNGParameters>"#
        )
    };
    let messages = [
        req(&[(
            "Query",
            r#"<QueryFunction type="Enumeration" value="QueryRNGs"/>"#,
        )]),
        ok(&[("Query", &rng("ANSIX9_31"))]),
    ];
    // Another generator than the recording server's: its own description.
    let mut s = Scripted::new(&[ok(&[("Query", &rng("DRBG"))])]);
    assert!(run(&messages, &mut s).passed);
    // Something no Query answer holds fails.
    let mut s = Scripted::new(&[ok(&[("Query", &format!("{}{}", rng("DRBG"), uid("x")))])]);
    assert_fails_at(&run(&messages, &mut s), "a Query answer cannot hold");
}

#[test]
fn batch_item_count_and_order_matter() {
    let messages = [
        req(&[("Create", ""), ("Get", "")]),
        ok(&[
            ("Create", &uid("$UNIQUE_IDENTIFIER_0")),
            ("Get", &uid("$UNIQUE_IDENTIFIER_0")),
        ]),
    ];
    let mut s = Scripted::new(&[failed("Create", "GeneralFailure")]);
    assert_fails_at(
        &run(&messages, &mut s),
        "request 0 (Create,Get): BatchItem: expected 2 batch items, got 1 (ResultReason \
         GeneralFailure",
    );
    let mut s = Scripted::new(&[ok(&[("Create", &uid("a")), ("Get", &uid("a"))])]);
    assert!(run(&messages, &mut s).passed);
}

#[test]
fn unreadable_or_unpaired_documents_fail() {
    let mut s = Scripted::new(&[]);
    let outcome = run_document_at("<KMIP><Nonsense/></KMIP>", "x.xml", &mut s, NOW);
    assert_fails_at(&outcome, "cannot read the test case");
    let outcome = run_document_at(&doc(&[create()]), "x.xml", &mut s, NOW);
    assert_fails_at(&outcome, "malformed test case");
}

#[test]
fn a_key_format_the_server_chose_is_accepted_but_the_rest_of_the_key_block_compared() {
    let key = |format: &str, material: &str, algorithm: &str| {
        format!(
            r#"{}<ObjectType type="Enumeration" value="SymmetricKey"/><SymmetricKey><KeyBlock><KeyFormatType type="Enumeration" value="{format}"/><KeyValue>{material}</KeyValue><CryptographicAlgorithm type="Enumeration" value="{algorithm}"/></KeyBlock></SymmetricKey>"#,
            uid("k")
        )
    };
    let raw = r#"<KeyMaterial type="ByteString" value="00112233"/>"#;
    let transparent = r#"<KeyMaterial><Key type="ByteString" value="00112233"/></KeyMaterial>"#;
    let messages = [
        req(&[("Get", &uid("k"))]),
        ok(&[("Get", &key("Raw", raw, "AES"))]),
    ];
    let mut s = Scripted::new(&[ok(&[(
        "Get",
        &key("TransparentSymmetricKey", transparent, "AES"),
    )])]);
    let outcome = run(&messages, &mut s);
    assert!(outcome.passed, "{outcome:?}");
    let mut s = Scripted::new(&[ok(&[(
        "Get",
        &key("TransparentSymmetricKey", transparent, "DES3"),
    )])]);
    assert_fails_at(
        &run(&messages, &mut s),
        "KeyBlock/CryptographicAlgorithm: expected AES, got DES3",
    );
    // Asked for Raw: the format is fixed by the request.
    let messages = [
        req(&[(
            "Get",
            &format!(
                r#"{}<KeyFormatType type="Enumeration" value="Raw"/>"#,
                uid("k")
            ),
        )]),
        ok(&[("Get", &key("Raw", raw, "AES"))]),
    ];
    let mut s = Scripted::new(&[ok(&[(
        "Get",
        &key("TransparentSymmetricKey", transparent, "AES"),
    )])]);
    assert_fails_at(
        &run(&messages, &mut s),
        "KeyBlock/KeyFormatType: expected Raw",
    );
}

#[test]
fn rng_seed_data_length_may_be_any_amount_up_to_what_was_sent() {
    let seed = req(&[("RNGSeed", r#"<Data type="ByteString" value="00112233"/>"#)]);
    let expected = ok(&[("RNGSeed", r#"<DataLength type="Integer" value="4"/>"#)]);
    for used in [0, 2, 4] {
        let answer = ok(&[(
            "RNGSeed",
            &format!(r#"<DataLength type="Integer" value="{used}"/>"#),
        )]);
        let outcome = run(
            &[seed.clone(), expected.clone()],
            &mut Scripted::new(&[answer]),
        );
        assert!(outcome.passed, "{used}: {outcome:?}");
    }
    // More than was sent, or a negative amount, cannot be.
    for used in [5, -1] {
        let answer = ok(&[(
            "RNGSeed",
            &format!(r#"<DataLength type="Integer" value="{used}"/>"#),
        )]);
        let outcome = run(
            &[seed.clone(), expected.clone()],
            &mut Scripted::new(&[answer]),
        );
        assert_fails_at(
            &outcome,
            &format!("BatchItem[0]/ResponsePayload/DataLength: expected 4, got {used}"),
        );
    }
    // The rule is RNG Seed's only: another operation's Data Length is compared exactly.
    let retrieve = req(&[("RNGRetrieve", r#"<DataLength type="Integer" value="4"/>"#)]);
    let answer = ok(&[("RNGRetrieve", r#"<DataLength type="Integer" value="0"/>"#)]);
    let outcome = run(
        &[retrieve, expected.replace("RNGSeed", "RNGRetrieve")],
        &mut Scripted::new(&[answer]),
    );
    assert_fails_at(&outcome, "DataLength: expected 4, got 0");
}

#[test]
fn an_object_a_locate_names_first_is_server_generated_one_seen_before_is_not() {
    let key = |material: &str| {
        format!(
            r#"{}<ObjectType type="Enumeration" value="SymmetricKey"/><SymmetricKey><KeyBlock><KeyFormatType type="Enumeration" value="Raw"/><KeyValue><KeyMaterial type="ByteString" value="{material}"/></KeyValue></KeyBlock></SymmetricKey>"#,
            uid("$UNIQUE_IDENTIFIER_0")
        )
    };
    let answer = |material: &str| key(material).replace("$UNIQUE_IDENTIFIER_0", "k");
    let secret = "00112233445566778899AABBCCDDEEFF";
    let other = "FFEEDDCCBBAA99887766554433221100";
    let locate = req(&[("Locate", "")]);
    let get = req(&[("Get", &uid("$UNIQUE_IDENTIFIER_0"))]);
    // Made on the fly by the Locate (Group Member Fresh): its key material is the server's.
    let messages = [
        locate.clone(),
        ok(&[("Locate", &uid("$UNIQUE_IDENTIFIER_0"))]),
        get.clone(),
        ok(&[("Get", &key(secret))]),
    ];
    let mut s = Scripted::new(&[ok(&[("Locate", &uid("k"))]), ok(&[("Get", &answer(other))])]);
    assert!(run(&messages, &mut s).passed);
    // Registered first, then located: its key material is the client's, compared exactly.
    let messages = [
        req(&[("Register", "")]),
        ok(&[("Register", &uid("$UNIQUE_IDENTIFIER_0"))]),
        locate,
        ok(&[("Locate", &uid("$UNIQUE_IDENTIFIER_0"))]),
        get,
        ok(&[("Get", &key(secret))]),
    ];
    let mut s = Scripted::new(&[
        ok(&[("Register", &uid("k"))]),
        ok(&[("Locate", &uid("k"))]),
        ok(&[("Get", &answer(other))]),
    ]);
    assert_fails_at(
        &run(&messages, &mut s),
        "KeyValue/KeyMaterial: expected <16 bytes 00112233…>",
    );
}

#[test]
fn a_refused_rng_seed_is_met_by_a_seed_not_used_and_by_nothing_else() {
    let seed = req(&[("RNGSeed", r#"<Data type="ByteString" value="00112233"/>"#)]);
    let refused = failed("RNGSeed", "PermissionDenied");
    let used = |n: i32| {
        ok(&[(
            "RNGSeed",
            &format!(r#"<DataLength type="Integer" value="{n}"/>"#),
        )])
    };
    // The seed not used (Data Length 0): the same outcome for the client.
    let outcome = run(
        &[seed.clone(), refused.clone()],
        &mut Scripted::new(&[used(0)]),
    );
    assert!(outcome.passed, "{outcome:?}");
    // The seed used (even in part): not what the case expects.
    let outcome = run(
        &[seed.clone(), refused.clone()],
        &mut Scripted::new(&[used(2)]),
    );
    assert_fails_at(
        &outcome,
        "ResultStatus: expected OperationFailed, got Success",
    );
    // Another refusal than Permission Denied, and another operation, are compared as ever.
    let outcome = run(
        &[seed.clone(), failed("RNGSeed", "InvalidField")],
        &mut Scripted::new(&[used(0)]),
    );
    assert_fails_at(
        &outcome,
        "ResultStatus: expected OperationFailed, got Success",
    );
    let retrieve = req(&[("RNGRetrieve", r#"<DataLength type="Integer" value="4"/>"#)]);
    let outcome = run(
        &[retrieve, failed("RNGRetrieve", "PermissionDenied")],
        &mut Scripted::new(&[ok(&[(
            "RNGRetrieve",
            r#"<DataLength type="Integer" value="0"/>"#,
        )])]),
    );
    assert_fails_at(
        &outcome,
        "ResultStatus: expected OperationFailed, got Success",
    );
}

#[test]
fn a_digest_may_name_a_key_format_the_case_leaves_out_but_not_omit_one_it_shows() {
    let digest = |kft: Option<&str>| {
        let kft = kft.map_or(String::new(), |k| {
            format!(r#"<KeyFormatType type="Enumeration" value="{k}"/>"#)
        });
        format!(
            r#"<Attribute><AttributeName type="TextString" value="Digest"/><AttributeValue><HashingAlgorithm type="Enumeration" value="SHA_256"/><DigestValue type="ByteString" value="0011"/>{kft}</AttributeValue></Attribute>"#
        )
    };
    let get = req(&[("GetAttributes", &uid("k"))]);
    let expected = |kft| ok(&[("GetAttributes", &format!("{}{}", uid("k"), digest(kft)))]);
    let answer = |kft| ok(&[("GetAttributes", &format!("{}{}", uid("k"), digest(kft)))]);
    // Given where the case shows none (a certificate's Digest).
    let outcome = run(
        &[get.clone(), expected(None)],
        &mut Scripted::new(&[answer(Some("X_509"))]),
    );
    assert!(outcome.passed, "{outcome:?}");
    // Another value than the case shows (1.x form too).
    let outcome = run(
        &[get.clone(), expected(Some("Raw"))],
        &mut Scripted::new(&[answer(Some("X_509"))]),
    );
    assert!(outcome.passed, "{outcome:?}");
    // Left out where the case shows one: a difference.
    let outcome = run(
        &[get, expected(Some("Raw"))],
        &mut Scripted::new(&[answer(None)]),
    );
    assert_fails_at(&outcome, "missing (expected KeyFormatType Raw)");
}

#[test]
fn an_asynchronous_correlation_value_sent_must_come_back_whatever_literal_the_case_shows() {
    let pending_req = req(&[("Locate", "")]);
    let acv = |v: &str| format!(r#"<AsynchronousCorrelationValue type="ByteString" value="{v}"/>"#);
    let pending = |v: &str| {
        format!(
            r#"<ResponseMessage><ResponseHeader>{}<BatchCount type="Integer" value="1"/></ResponseHeader><BatchItem><Operation type="Enumeration" value="Locate"/><ResultStatus type="Enumeration" value="OperationPending"/>{}</BatchItem></ResponseMessage>"#,
            header(1, 4, true),
            acv(v)
        )
    };
    let cancel = req(&[("Cancel", &acv("$ASYNCHRONOUS_CORRELATION_VALUE"))]);
    let cancelled = |v: &str| {
        ok(&[(
            "Cancel",
            &format!(
                r#"{}<CancellationResult type="Enumeration" value="Canceled"/>"#,
                acv(v)
            ),
        )])
    };
    let messages = [
        pending_req,
        pending("$ASYNCHRONOUS_CORRELATION_VALUE"),
        cancel,
        cancelled("4d6bbfc35fe57fba"),
    ];
    // The server's own value, echoed: passes although the case shows another literal.
    let mut s = Scripted::new(&[pending("00112233"), cancelled("00112233")]);
    assert!(run(&messages, &mut s).passed);
    assert_eq!(
        s.sent_value(1, 0x42_0006),
        Value::ByteString(vec![0x00, 0x11, 0x22, 0x33].into())
    );
    // Another value than the one sent: a difference.
    let mut s = Scripted::new(&[pending("00112233"), cancelled("44556677")]);
    assert_fails_at(
        &run(&messages, &mut s),
        "AsynchronousCorrelationValue: expected <8 bytes 4D6BBFC3…>",
    );
}

#[test]
fn a_certificates_key_format_type_attribute_is_the_servers_a_keys_is_not() {
    let attributes = |object_type: &str, kft: Option<&str>| {
        let kft = kft.map_or(String::new(), |k| {
            format!(r#"<KeyFormatType type="Enumeration" value="{k}"/>"#)
        });
        format!(
            r#"{}<Attributes><ObjectType type="Enumeration" value="{object_type}"/>{kft}</Attributes>"#,
            uid("k")
        )
    };
    let get = req_v(2, 0, &[("GetAttributes", &uid("k"))]);
    let run_one = |object_type: &str, expected: Option<&str>, actual: Option<&str>| {
        run(
            &[
                get.clone(),
                ok_v(
                    2,
                    0,
                    &[("GetAttributes", &attributes(object_type, expected))],
                ),
            ],
            &mut Scripted::new(&[ok_v(
                2,
                0,
                &[("GetAttributes", &attributes(object_type, actual))],
            )]),
        )
    };
    assert!(run_one("Certificate", Some("Raw"), Some("X_509")).passed);
    assert_fails_at(
        &run_one("Certificate", Some("Raw"), None),
        "missing (expected KeyFormatType Raw)",
    );
    assert_fails_at(
        &run_one("SymmetricKey", Some("Raw"), Some("X_509")),
        "KeyFormatType: expected Raw, got X_509",
    );
}

#[test]
fn an_issued_certificates_bytes_serial_and_issuer_are_the_servers_its_subject_is_not() {
    let cert = |value: &str| {
        format!(
            r#"{}<Certificate><CertificateType type="Enumeration" value="X_509"/><CertificateValue type="ByteString" value="{value}"/></Certificate>"#,
            uid("$UNIQUE_IDENTIFIER_0")
        )
    };
    let fields = |issuer: &str, serial: &str, length: &str, subject: &str| {
        format!(
            r#"{}<Attribute><AttributeName type="TextString" value="Certificate Identifier"/><AttributeValue><Issuer type="TextString" value="{issuer}"/><SerialNumber type="TextString" value="{serial}"/></AttributeValue></Attribute>{}<Attribute><AttributeName type="TextString" value="X.509 Certificate Issuer"/><AttributeValue><IssuerDistinguishedName type="ByteString" value="{serial}"/></AttributeValue></Attribute><Attribute><AttributeName type="TextString" value="Certificate Subject"/><AttributeValue><CertificateSubjectDistinguishedName type="TextString" value="{subject}"/></AttributeValue></Attribute>"#,
            uid("$UNIQUE_IDENTIFIER_0"),
            attr("Certificate Length", "Integer", length)
        )
    };
    // `making` answers uid c1; the case then reads the certificate and its fields.
    let run_one = |making: &str, actual_value: &str, actual_subject: &str| {
        let make = req(&[(making, &uid("k"))]);
        let get = req(&[("Get", &uid("$UNIQUE_IDENTIFIER_0"))]);
        let attrs = req(&[("GetAttributes", &uid("$UNIQUE_IDENTIFIER_0"))]);
        run(
            &[
                make,
                ok(&[(making, &uid("$UNIQUE_IDENTIFIER_0"))]),
                get,
                ok(&[("Get", &cert("0102"))]),
                attrs,
                ok(&[(
                    "GetAttributes",
                    &fields("CN=KMIP", "9BBA", "635", "CN=Client"),
                )]),
            ],
            &mut Scripted::new(&[
                ok(&[(making, &uid("c1"))]),
                ok(&[(
                    "Get",
                    &cert(actual_value).replace("$UNIQUE_IDENTIFIER_0", "c1"),
                )]),
                ok(&[(
                    "GetAttributes",
                    &fields("CN=kmipd CA", "01F3", "852", actual_subject)
                        .replace("$UNIQUE_IDENTIFIER_0", "c1"),
                )]),
            ]),
        )
    };
    for op in ["Certify", "ReCertify"] {
        assert!(run_one(op, "0304", "CN=Client").passed, "{op}");
        // The subject comes from the request: compared.
        assert_fails_at(
            &run_one(op, "0304", "CN=Other"),
            "CertificateSubjectDistinguishedName",
        );
    }
    // A certificate the client registered comes back byte for byte.
    assert_fails_at(
        &run_one("Register", "0304", "CN=Client"),
        "CertificateValue",
    );
}

#[test]
fn an_issued_certificates_attribute_indices_are_the_servers_a_registered_ones_are_not() {
    let name = |value: &str, index: Option<i32>| {
        let index = index.map_or(String::new(), |i| {
            format!(r#"<AttributeIndex type="Integer" value="{i}"/>"#)
        });
        format!(
            r#"<Attribute><AttributeName type="TextString" value="Name"/>{index}<AttributeValue><NameValue type="TextString" value="{value}"/><NameType type="Enumeration" value="UninterpretedTextString"/></AttributeValue></Attribute>"#
        )
    };
    let run_one = |making: &str, actual: [(&str, Option<i32>); 2]| {
        let expected = format!(
            "{}{}{}",
            uid("$UNIQUE_IDENTIFIER_0"),
            name("new", None),
            name("old", Some(1))
        );
        let actual = format!(
            "{}{}{}",
            uid("c1"),
            name(actual[0].0, actual[0].1),
            name(actual[1].0, actual[1].1)
        );
        run(
            &[
                req(&[(making, &uid("k"))]),
                ok(&[(making, &uid("$UNIQUE_IDENTIFIER_0"))]),
                req(&[("GetAttributes", &uid("$UNIQUE_IDENTIFIER_0"))]),
                ok(&[("GetAttributes", &expected)]),
            ],
            &mut Scripted::new(&[
                ok(&[(making, &uid("c1"))]),
                ok(&[("GetAttributes", &actual)]),
            ]),
        )
    };
    let swapped = [("old", None), ("new", Some(1))];
    assert!(run_one("ReCertify", swapped).passed);
    assert!(run_one("Register", [("new", None), ("old", Some(1))]).passed);
    assert_fails_at(&run_one("Register", swapped), "Attribute(Name)");
    // The instances themselves still count.
    assert_fails_at(
        &run_one("ReCertify", [("old", None), ("other", Some(1))]),
        "Attribute(Name)",
    );
}

#[test]
fn a_literal_short_unique_identifier_must_be_one_the_server_gave() {
    let short = |v: &str| format!(r#"<ShortUniqueIdentifier type="ByteString" value="{v}"/>"#);
    let attrs = |id: &str, v: &str| {
        ok_v(
            2,
            0,
            &[(
                "GetAttributes",
                &format!("{}<Attributes>{}</Attributes>", uid(id), short(v)),
            )],
        )
    };
    let create = req_v(
        2,
        0,
        &[(
            "Create",
            r#"<ObjectType type="Enumeration" value="SymmetricKey"/>"#,
        )],
    );
    let created = ok_v(2, 0, &[("Create", &uid("$UNIQUE_IDENTIFIER_0"))]);
    let get = req_v(2, 0, &[("GetAttributes", &uid("$UNIQUE_IDENTIFIER_0"))]);
    let messages = [
        create,
        created,
        get.clone(),
        attrs("$UNIQUE_IDENTIFIER_0", "$SHORT_UNIQUE_IDENTIFIER_0"),
        get,
        attrs("$UNIQUE_IDENTIFIER_0", "f890a516"),
    ];
    let server = |first: &str, second: &str| {
        Scripted::new(&[
            ok_v(2, 0, &[("Create", &uid("k1"))]),
            attrs("k1", first),
            attrs("k1", second),
        ])
    };
    // The recording server's literal, met by the value this server gave before: passes.
    assert!(run(&messages, &mut server("00112233", "00112233")).passed);
    // Another value than any this server gave: a difference.
    assert_fails_at(
        &run(&messages, &mut server("00112233", "44556677")),
        "ShortUniqueIdentifier: expected <4 bytes F890A516>",
    );
}

#[test]
fn a_date_sent_in_a_refused_request_fixes_nothing_one_sent_in_a_performed_request_does() {
    let date = "2018-12-19T09:24:26+00:00";
    let set = |op: &str| {
        req(&[(
            op,
            &format!(
                "{}{}",
                uid("$UNIQUE_IDENTIFIER_0"),
                attr("Activation Date", "DateTime", date)
            ),
        )])
    };
    let shown = |d: &str| {
        ok(&[(
            "GetAttributes",
            &format!(
                "{}{}",
                uid("$UNIQUE_IDENTIFIER_0"),
                attr("Activation Date", "DateTime", d)
            ),
        )])
    };
    let get = req(&[("GetAttributes", &uid("$UNIQUE_IDENTIFIER_0"))]);
    let other = "2026-01-01T00:00:00+00:00";
    let server = |second: String| {
        Scripted::new(&[
            ok(&[("Create", &uid("k1"))]),
            second,
            shown(other).replace("$UNIQUE_IDENTIFIER_0", "k1"),
        ])
    };
    // Refused: the object keeps its own date, which may differ from the one sent.
    let messages = [
        create(),
        ok(&[("Create", &uid("$UNIQUE_IDENTIFIER_0"))]),
        set("AddAttribute"),
        failed("AddAttribute", "PermissionDenied"),
        get.clone(),
        shown(date),
    ];
    assert!(
        run(
            &messages,
            &mut server(failed("AddAttribute", "PermissionDenied"))
        )
        .passed
    );
    // Performed: the date sent must come back.
    let performed = ok(&[("AddAttribute", &uid("$UNIQUE_IDENTIFIER_0"))]);
    let messages = [
        create(),
        ok(&[("Create", &uid("$UNIQUE_IDENTIFIER_0"))]),
        set("AddAttribute"),
        performed,
        get,
        shown(date),
    ];
    assert_fails_at(
        &run(&messages, &mut server(ok(&[("AddAttribute", &uid("k1"))]))),
        "expected 2018-12-19T09:24:26Z, got 2026-01-01T00:00:00Z",
    );
}

/// The OASIS case's CK_INFO (PKCS11-M-1-21): Cryptoki 2.40, "TEST      Pty Ltd", no flags,
/// "TEST", library 1.0.
const CASE_CK_INFO: &str = "022854455354202020202020507479204c7464202020202020202020202020202020000000000000000054455354202020202020202020202020202020202020202020202020202020200100";

fn ck_info(version: &str, manufacturer: &str, flags: &str, description: &str, lib: &str) -> String {
    let pad = |s: &str| {
        let mut b = s.as_bytes().to_vec();
        b.resize(32, b' ');
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    };
    format!(
        "{version}{}{flags}{}{lib}",
        pad(manufacturer),
        pad(description)
    )
}

fn pkcs11_answer(function: &str, output: &str) -> String {
    ok_v(
        2,
        1,
        &[(
            "PKCS_11",
            &format!(
                r#"<PKCS_11Function type="Enumeration" value="{function}"/><PKCS_11OutputParameters type="ByteString" value="{output}"/><PKCS_11ReturnCode type="Enumeration" value="OK"/>"#
            ),
        )],
    )
}

#[test]
fn get_info_vendor_fields_are_the_servers_its_version_flags_and_layout_are_not() {
    let request = |function: &str| {
        req_v(
            2,
            1,
            &[(
                "PKCS_11",
                &format!(r#"<PKCS_11Function type="Enumeration" value="{function}"/>"#),
            )],
        )
    };
    let expected = pkcs11_answer("C_GetInfo", CASE_CK_INFO);
    let flags0 = "0000000000000000";
    let check = |output: &str| {
        run(
            &[request("C_GetInfo"), expected.clone()],
            &mut Scripted::new(&[pkcs11_answer("C_GetInfo", output)]),
        )
    };
    // Another manufacturer, description and library version: the server's own.
    let own = ck_info(
        "0228",
        "kmipd",
        flags0,
        "kmipd KMIP key management server",
        "0003",
    );
    assert!(check(&own).passed, "{:?}", check(&own));
    // Another Cryptoki version, other flags, another length, a NUL-terminated string: not.
    let path = "BatchItem[0]/ResponsePayload/PKCS_11OutputParameters";
    for wrong in [
        ck_info("0300", "kmipd", flags0, "kmipd", "0003"),
        ck_info("0228", "kmipd", "0000000000000001", "kmipd", "0003"),
        format!("{}00", ck_info("0228", "kmipd", flags0, "kmipd", "0003")),
        ck_info("0228", "kmipd\0", flags0, "kmipd", "0003"),
    ] {
        assert_fails_at(&check(&wrong), path);
    }
    // The rule is C_GetInfo's only: another function's output is compared exactly.
    let other = pkcs11_answer("C_GetFunctionList", CASE_CK_INFO);
    let outcome = run(
        &[request("C_GetFunctionList"), other],
        &mut Scripted::new(&[pkcs11_answer("C_GetFunctionList", &own)]),
    );
    assert_fails_at(&outcome, path);
}
