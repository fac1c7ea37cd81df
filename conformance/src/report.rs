//! The generated conformance report (`docs/conformance.md`): per protocol version and profile,
//! how many mandatory, optional and Test Cases notes files pass, and why each failure failed.
//!
//! The text depends only on the outcomes (sorted, stable reasons, no dates), so regenerating it
//! when nothing changed gives no diff.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::{FileOutcome, Kind, classify, vector_key};

/// Passed and total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Count {
    passed: usize,
    total: usize,
}

impl Count {
    fn add(&mut self, passed: bool) {
        self.total += 1;
        if passed {
            self.passed += 1;
        }
    }

    fn cell(self) -> String {
        if self.total == 0 {
            String::from("–")
        } else {
            format!("{}/{}", self.passed, self.total)
        }
    }
}

/// Counts per folder kind.
#[derive(Debug, Clone, Copy, Default)]
struct Row {
    mandatory: Count,
    optional: Count,
    test_cases: Count,
    other: Count,
}

impl Row {
    fn add(&mut self, kind: Kind, passed: bool) {
        match kind {
            Kind::Mandatory => self.mandatory.add(passed),
            Kind::Optional => self.optional.add(passed),
            Kind::TestCases => self.test_cases.add(passed),
            Kind::Other => self.other.add(passed),
        }
    }
}

/// The outcome of one file over the wire when it differs from the in-process one: one line of
/// `conformance/wire-differences.txt` (`path<TAB>PASS` or `path<TAB>FAIL<TAB>stable reason`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WireDifference {
    /// The path from the version folder on ([`vector_key`]).
    pub key: String,
    /// Whether the file passes over the wire.
    pub passed: bool,
    /// When it fails over the wire: the stable first difference.
    pub reason: Option<String>,
}

impl WireDifference {
    /// The wire outcome of the file `key` as a line of the differences file would say it.
    pub fn of(key: String, wire: &FileOutcome) -> WireDifference {
        WireDifference {
            key,
            passed: wire.passed,
            reason: (!wire.passed).then(|| escape(&stable_reason(wire))),
        }
    }

    /// The line of the differences file.
    pub fn line(&self) -> String {
        match (&self.reason, self.passed) {
            (_, true) => format!("{}\tPASS", self.key),
            (Some(r), false) => format!("{}\tFAIL\t{}", self.key, escape(r)),
            (None, false) => format!("{}\tFAIL\tfailed", self.key),
        }
    }

    /// A line of the differences file (comments and blank lines: `None`).
    pub fn parse(line: &str) -> Result<Option<WireDifference>, String> {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() || line.starts_with('#') {
            return Ok(None);
        }
        let mut parts = line.splitn(3, '\t');
        let key = parts.next().unwrap_or_default().to_owned();
        match (parts.next(), parts.next()) {
            (Some("PASS"), None) => Ok(Some(WireDifference {
                key,
                passed: true,
                reason: None,
            })),
            (Some("FAIL"), Some(reason)) if !reason.trim().is_empty() => Ok(Some(WireDifference {
                key,
                passed: false,
                reason: Some(reason.to_owned()),
            })),
            _ => Err(format!(
                "not `path<TAB>PASS` or `path<TAB>FAIL<TAB>reason`: {line}"
            )),
        }
    }
}

/// The files whose wire outcome differs from their in-process outcome (passed or not, or the
/// stable reason of the failure), sorted by key.
pub fn wire_differences(
    in_process: &[(PathBuf, FileOutcome)],
    wire: &[(PathBuf, FileOutcome)],
) -> Vec<WireDifference> {
    let local: BTreeMap<String, &FileOutcome> =
        in_process.iter().map(|(p, o)| (vector_key(p), o)).collect();
    let mut out: Vec<WireDifference> = wire
        .iter()
        .filter_map(|(p, w)| {
            let key = vector_key(p);
            let same = local.get(&key).is_some_and(|l| {
                l.passed == w.passed
                    && (w.passed || escape(&stable_reason(l)) == escape(&stable_reason(w)))
            });
            (!same).then(|| WireDifference::of(key, w))
        })
        .collect();
    out.sort();
    out
}

/// The wire outcomes that `differences` describe: the in-process outcomes, with the listed files
/// replaced by their wire outcome. What `conformance/tests/mandatory.rs` renders the report
/// from (the wire run itself takes minutes; `conformance/tests/wire.rs` checks the list).
pub fn apply_differences(
    in_process: &[(PathBuf, FileOutcome)],
    differences: &[WireDifference],
) -> Vec<(PathBuf, FileOutcome)> {
    let by_key: BTreeMap<&str, &WireDifference> =
        differences.iter().map(|d| (d.key.as_str(), d)).collect();
    in_process
        .iter()
        .map(|(p, o)| match by_key.get(vector_key(p).as_str()) {
            None => (p.clone(), o.clone()),
            Some(d) => (
                p.clone(),
                FileOutcome {
                    passed: d.passed,
                    first_difference: d.reason.clone(),
                    stable_difference: d.reason.clone(),
                },
            ),
        })
        .collect()
}

fn stable_reason(o: &FileOutcome) -> String {
    o.stable_difference
        .clone()
        .unwrap_or_else(|| String::from("failed"))
}

/// In-process and wire counts of one kind.
#[derive(Debug, Clone, Copy, Default)]
struct Pair {
    local: Row,
    wire: Row,
}

fn cells(local: Count, wire: Count) -> String {
    format!("{} | {}", local.cell(), wire.cell())
}

/// The report for the in-process `outcomes` and the `wire` outcomes of the same files;
/// `command` is the command line that regenerates it.
pub fn render(
    outcomes: &[(PathBuf, FileOutcome)],
    wire: &[(PathBuf, FileOutcome)],
    command: &str,
) -> String {
    let wire_by_key: BTreeMap<String, bool> = wire
        .iter()
        .map(|(p, o)| (vector_key(p), o.passed))
        .collect();
    // version -> profile -> counts; version -> failures (key, reason).
    let mut versions: BTreeMap<String, BTreeMap<String, Pair>> = BTreeMap::new();
    let mut totals: BTreeMap<String, Pair> = BTreeMap::new();
    let mut failures: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut all = Pair::default();
    for (path, outcome) in outcomes {
        let c = classify(path);
        let key = vector_key(path);
        let over_wire = wire_by_key.get(&key).copied().unwrap_or(false);
        for pair in [
            versions
                .entry(c.version.clone())
                .or_default()
                .entry(c.profile)
                .or_default(),
            totals.entry(c.version.clone()).or_default(),
            &mut all,
        ] {
            pair.local.add(c.kind, outcome.passed);
            pair.wire.add(c.kind, over_wire);
        }
        if !outcome.passed {
            failures
                .entry(c.version)
                .or_default()
                .push((key, stable_reason(outcome)));
        }
    }
    let mut wire_only: BTreeMap<String, Vec<WireDifference>> = BTreeMap::new();
    for d in wire_differences(outcomes, wire) {
        let version = d.key.split('/').next().unwrap_or_default().to_owned();
        wire_only.entry(version).or_default().push(d);
    }
    let mut out = String::new();
    let _ = writeln!(out, "# KMIP conformance (OASIS test cases)");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "<!-- Generated by kmip-conformance: do not edit by hand. Regenerate with: {command} -->"
    );
    let _ = writeln!(
        out,
        "_Generated by `kmip-conformance` (see `conformance/README.md`); do not edit by hand. \
         Regenerate with:_"
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "```sh\n{command}\n```");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Each OASIS XML test case is replayed twice and its responses compared under the \
         Permitted Test Case Variations: **in-process** against a fresh engine called directly, \
         and over the **wire** against a fresh kmipd per file (`kmipd init` with its SoftHSM2 \
         token and sled store, `kmipd serve` on a loopback port, mutual TLS as the instance's \
         `client` identity). `passed/total` per protocol version; mandatory and optional are the \
         Profiles documents' test cases, Test Cases the non-normative KMIP Test Cases notes. How \
         responses are compared: `conformance/README.md`. Cases that no correct server can pass \
         (OASIS defects, each verified, with the command that shows it): \
         `conformance/known-defects.txt`; every other file passes in-process. Server-to-client \
         cases (Put, Notify) run with the runner as the client's endpoint; a case that sets \
         constraints runs as an administrator. A failure listed for a version fails in both \
         modes unless it is listed again under \"Over the wire\"."
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "## Summary");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| version | mandatory | mandatory (wire) | optional | optional (wire) | Test Cases \
         | Test Cases (wire) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for (version, p) in &totals {
        let _ = writeln!(
            out,
            "| {version} | {} | {} | {} |",
            cells(p.local.mandatory, p.wire.mandatory),
            cells(p.local.optional, p.wire.optional),
            cells(p.local.test_cases, p.wire.test_cases),
        );
    }
    let bold = |c: Count| format!("**{}**", c.cell());
    let _ = writeln!(
        out,
        "| **all** | {} | {} | {} | {} | {} | {} |",
        bold(all.local.mandatory),
        bold(all.wire.mandatory),
        bold(all.local.optional),
        bold(all.wire.optional),
        bold(all.local.test_cases),
        bold(all.wire.test_cases),
    );
    if all.local.other.total > 0 {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Outside the OASIS layout: {} files ({} over the wire).",
            all.local.other.cell(),
            all.wire.other.cell()
        );
    }
    for (version, profiles) in &versions {
        let _ = writeln!(out);
        let _ = writeln!(out, "## {version}");
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| profile | mandatory | mandatory (wire) | optional | optional (wire) |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        for (profile, p) in profiles {
            if profile == "TC" {
                continue;
            }
            let _ = writeln!(
                out,
                "| {profile} | {} | {} |",
                cells(p.local.mandatory, p.wire.mandatory),
                cells(p.local.optional, p.wire.optional),
            );
        }
        if let Some(tc) = profiles.get("TC") {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "Test Cases notes: {}, over the wire {}.",
                tc.local.test_cases.cell(),
                tc.wire.test_cases.cell()
            );
        }
        if let Some(list) = failures.get_mut(version) {
            list.sort();
            let _ = writeln!(out);
            let _ = writeln!(out, "Failures:");
            let _ = writeln!(out);
            for (key, reason) in list {
                let _ = writeln!(out, "- `{key}`: {}", escape(reason));
            }
        }
        if let Some(list) = wire_only.get(version) {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "Over the wire (where the outcome differs from in-process; reasons: \
                 `conformance/README.md`):"
            );
            let _ = writeln!(out);
            for d in list {
                match &d.reason {
                    None => {
                        let _ = writeln!(out, "- `{}`: passes", d.key);
                    }
                    Some(r) => {
                        let _ = writeln!(out, "- `{}`: {}", d.key, escape(r));
                    }
                }
            }
        }
    }
    out
}

/// A reason as Markdown list text: one line, no HTML.
fn escape(reason: &str) -> String {
    reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace('<', "&lt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_sorted_and_counts() {
        let pass = FileOutcome {
            passed: true,
            first_difference: None,
            stable_difference: None,
        };
        let fail = FileOutcome {
            passed: false,
            first_difference: Some(String::from("full 123")),
            stable_difference: Some(String::from("request 0 (Get): x")),
        };
        let outcomes = vec![
            (
                PathBuf::from("v/1.4/profiles/mandatory/TL-M-2-14.xml"),
                fail.clone(),
            ),
            (
                PathBuf::from("v/1.4/profiles/mandatory/TL-M-1-14.xml"),
                pass.clone(),
            ),
            (
                PathBuf::from("v/1.0/testcases/TC_311_10_Create_Destroy.xml"),
                pass,
            ),
            (
                PathBuf::from("v/1.4/profiles/optional/OMOS-O-1-14.xml"),
                fail,
            ),
        ];
        // Over the wire, TL-M-1 fails too.
        let mut wire = outcomes.clone();
        wire[1].1 = FileOutcome {
            passed: false,
            first_difference: Some(String::from("no response: 127.0.0.1:4242")),
            stable_difference: Some(String::from("request 0 (Query): no response")),
        };
        let text = render(&outcomes, &wire, "kmip-conformance --report r.md v");
        assert!(
            text.contains("| 1.4 | 1/2 | 0/2 | 0/1 | 0/1 | – | – |"),
            "{text}"
        );
        assert!(text.contains("| TL | 1/2 | 0/2 | – | – |"), "{text}");
        assert!(
            text.contains("Test Cases notes: 1/1, over the wire 1/1."),
            "{text}"
        );
        assert!(text.contains("- `1.4/profiles/mandatory/TL-M-2-14.xml`: request 0 (Get): x"));
        assert!(
            text.contains(
                "- `1.4/profiles/mandatory/TL-M-1-14.xml`: request 0 (Query): no response"
            )
        );
        assert!(!text.contains("full 123"));
        assert!(!text.contains("4242"));
        assert!(text.find("## 1.0").unwrap() < text.find("## 1.4").unwrap());
        let mut reversed = outcomes.clone();
        reversed.reverse();
        let again = render(&reversed, &wire, "kmip-conformance --report r.md v");
        assert_eq!(text, again);
        // The differences file reproduces the wire column.
        let differences = wire_differences(&outcomes, &wire);
        assert_eq!(differences.len(), 1);
        let lines: Vec<String> = differences.iter().map(WireDifference::line).collect();
        let parsed: Vec<WireDifference> = lines
            .iter()
            .map(|l| WireDifference::parse(l).unwrap().unwrap())
            .collect();
        assert_eq!(parsed, differences);
        let derived = apply_differences(&outcomes, &parsed);
        assert_eq!(
            render(&outcomes, &derived, "kmip-conformance --report r.md v"),
            text
        );
    }
}
