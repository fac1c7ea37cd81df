//! PEM armour (RFC 7468) for what `get --pem` writes and `register` reads.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// `bytes` as a PEM block with this label, lines of 64 characters.
pub(crate) fn encode(label: &str, bytes: &[u8]) -> String {
    let b64 = Zeroizing::new(STANDARD.encode(bytes));
    let mut out = format!("-----BEGIN {label}-----\n");
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The label and bytes of the first PEM block in `text`, if it has one.
pub(crate) fn decode(text: &[u8]) -> Option<(String, Zeroizing<Vec<u8>>)> {
    let text = std::str::from_utf8(text).ok()?;
    let start = text.find("-----BEGIN ")?;
    let after = text.get(start + 11..)?;
    let (label, body) = after.split_once("-----")?;
    let end_marker = format!("-----END {label}-----");
    let (body, _) = body.split_once(&end_marker)?;
    let b64: Zeroizing<String> =
        Zeroizing::new(body.chars().filter(|c| !c.is_whitespace()).collect());
    let bytes = STANDARD.decode(b64.as_bytes()).ok()?;
    Some((label.to_owned(), Zeroizing::new(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes: Vec<u8> = (0u8..=200).collect();
        let pem = encode("PRIVATE KEY", &bytes);
        assert!(pem.lines().all(|l| l.len() <= 64));
        let (label, back) = decode(pem.as_bytes()).unwrap();
        assert_eq!(label, "PRIVATE KEY");
        assert_eq!(back.as_slice(), bytes.as_slice());
        assert!(decode(b"no pem here").is_none());
    }
}
