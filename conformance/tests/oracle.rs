//! The runner against an oracle: a target that answers every request with the test case's own
//! expected response, placeholders filled in with values of its own (other identifiers, other
//! random bytes, the time). A conformant server can do no better, so every 1.0-2.1 test case
//! (mandatory, optional and Test Cases notes) must pass: this guards the runner against false
//! failures, and shows that every file reads and pairs up.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use kmipd_conformance::{Target, collect_files, run_document_at, vector_key};
use kmipd_proto::xml::{self, XmlOptions};
use kmipd_test_support::vectors_dir;
use kmipd_ttlv::{ItemType, Tag, Ttlv, Value};

const NOW: i64 = 1_700_000_000;

/// Files that no server can pass, and why.
const KNOWN_DEFECTS: &[(&str, &str)] = &[(
    "1.3/testcases/TC-RNG-ATTR-2-13.xml",
    "the Create response names $UNIQUE_IDENTIFIER_1, the later requests $UNIQUE_IDENTIFIER_0",
)];

/// The oracle's own values for placeholders.
fn oracle_value(_tag: Tag, ty: ItemType, text: &str) -> Result<Value, String> {
    if let Some(rest) = text.strip_prefix("$NOW") {
        let offset: i64 = if rest.is_empty() {
            0
        } else {
            rest.trim_start_matches('+').parse().unwrap()
        };
        return Ok(match ty {
            ItemType::DateTimeExtended => Value::DateTimeExtended((NOW + offset) * 1_000_000),
            _ => Value::DateTime(NOW + offset),
        });
    }
    Ok(match ty {
        ItemType::TextString => Value::TextString(format!("oracle-{}", text.to_lowercase())),
        ItemType::ByteString => {
            let mut bytes = b"oracle:".to_vec();
            bytes.extend_from_slice(text.as_bytes());
            Value::bytes(bytes)
        }
        other => return Err(format!("no oracle value for a {other}")),
    })
}

struct Oracle {
    /// Each response, with the server-to-client messages (Put, Notify) the case shows after
    /// it.
    responses: std::vec::IntoIter<(Ttlv, Vec<Ttlv>)>,
    /// Server-to-client messages sent and not yet taken by the runner.
    pushed: std::collections::VecDeque<Ttlv>,
}

impl Target for Oracle {
    fn subscribe(&mut self, _put: bool, _notify: bool) -> Result<(), String> {
        Ok(())
    }

    fn administrator(&mut self) -> bool {
        true
    }

    fn pushed(&mut self, _wait: bool) -> Result<Option<Ttlv>, String> {
        Ok(self.pushed.pop_front())
    }

    fn send(&mut self, request: &Ttlv) -> Result<Ttlv, String> {
        let (mut response, pushes) = self
            .responses
            .next()
            .ok_or_else(|| String::from("no more responses"))?;
        self.pushed.extend(pushes);
        // A client-chosen identifier ($UNIQUE_IDENTIFIER_RANDOM_n) comes back as the client sent it.
        let mut sent = None;
        request.walk(&mut |item, _| {
            if item.tag == Tag::new(0x42_0094).unwrap() && sent.is_none() {
                sent = Some(item.value.clone());
            }
        });
        echo_random(&mut response, sent.as_ref());
        Ok(response)
    }
}

fn echo_random(item: &mut Ttlv, sent: Option<&Value>) {
    match &mut item.value {
        Value::Structure(children) => children.iter_mut().for_each(|c| echo_random(c, sent)),
        Value::TextString(s) if s.contains("_random_") => {
            if let Some(v) = sent {
                item.value = v.clone();
            }
        }
        _ => {}
    }
}

fn oracle_for(text: &str) -> Oracle {
    let doc = xml::read_document(text, &XmlOptions::default(), &mut oracle_value).unwrap();
    let response_message = Tag::new(0x42_007B).unwrap();
    let operation = Tag::new(0x42_005C).unwrap();
    let (notify, put) = (
        Value::Enumeration(kmipd_proto::enums::operation::NOTIFY),
        Value::Enumeration(kmipd_proto::enums::operation::PUT),
    );
    // A Request Message with Put or Notify is the server's (KMIP 1.4 §5); the Response Message
    // after it is the client's answer, which the oracle does not send.
    let mut responses: Vec<(Ttlv, Vec<Ttlv>)> = Vec::new();
    let mut clients_answer = false;
    for m in doc.items {
        let mut pushed = false;
        m.walk(&mut |i, _| pushed |= i.tag == operation && (i.value == put || i.value == notify));
        if m.tag == response_message {
            if !std::mem::take(&mut clients_answer) {
                responses.push((m, Vec::new()));
            }
        } else if pushed {
            responses.last_mut().unwrap().1.push(m);
            clients_answer = true;
        }
    }
    Oracle {
        responses: responses.into_iter(),
        pushed: std::collections::VecDeque::new(),
    }
}

#[test]
fn every_test_case_passes_against_its_own_expected_responses() {
    let dir = vectors_dir();
    let roots: Vec<PathBuf> = ["1.0", "1.1", "1.2", "1.3", "1.4", "2.0", "2.1"]
        .iter()
        .map(|v| dir.join(v))
        .collect();
    let files = collect_files(&roots).unwrap();
    assert!(files.len() > 750, "{} files", files.len());
    let mut failures = Vec::new();
    for path in &files {
        if KNOWN_DEFECTS.iter().any(|(k, _)| vector_key(path) == *k) {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let mut oracle = oracle_for(&text);
        let name = path.to_string_lossy();
        let outcome = run_document_at(&text, &name, &mut oracle, NOW);
        if !outcome.passed {
            failures.push(format!(
                "{}: {}",
                vector_key(path),
                outcome.first_difference.unwrap_or_default()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files fail against the oracle:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// The server-to-client steps are checked both ways: a message the case does not show fails
/// it, and so does a missing one.
#[test]
fn pushed_messages_must_be_exactly_the_ones_the_case_shows() {
    let path = vectors_dir().join("1.0/testcases/TC_NP_1_10_Put.xml");
    let text = std::fs::read_to_string(&path).unwrap();
    let name = path.to_string_lossy();
    let outcome = run_document_at(&text, &name, &mut oracle_for(&text), NOW);
    assert!(outcome.passed, "{:?}", outcome.first_difference);

    // One more message after the last answer (the Put again).
    let mut extra = oracle_for(&text);
    let mut responses: Vec<(Ttlv, Vec<Ttlv>)> = extra.responses.by_ref().collect();
    let put = responses[0].1[0].clone();
    responses.last_mut().unwrap().1.push(put);
    extra.responses = responses.into_iter();
    let outcome = run_document_at(&text, &name, &mut extra, NOW);
    let why = outcome.first_difference.unwrap();
    assert!(why.contains("unexpected Put"), "{why}");

    // No Put at all.
    let mut missing = oracle_for(&text);
    let mut responses: Vec<(Ttlv, Vec<Ttlv>)> = missing.responses.by_ref().collect();
    responses[0].1.clear();
    missing.responses = responses.into_iter();
    let outcome = run_document_at(&text, &name, &mut missing, NOW);
    let why = outcome.first_difference.unwrap();
    assert!(why.contains("sent no Put"), "{why}");
}
