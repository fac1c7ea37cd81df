//! Decodes a TTLV message given as hex (argument, or standard input) and prints it as a tree
//! with KMIP tag and enumeration names. Byte strings are hidden unless `--show-secrets` is given.
//!
//! ```text
//! cargo run -q -p kmipd-proto --example ttlv-dump -- 42007801000000...
//! xxd -p message.bin | cargo run -q -p kmipd-proto --example ttlv-dump -- --show-secrets
//! ```

use std::io::Read;
use std::process::ExitCode;

use kmipd_proto::spec::KmipNames;
use kmipd_ttlv::{DumpOptions, Limits, decode, dump_with};

fn main() -> ExitCode {
    let mut show_secrets = false;
    let mut hex = String::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--show-secrets" => show_secrets = true,
            "-h" | "--help" => {
                eprintln!(
                    "usage: ttlv-dump [--show-secrets] [HEX]  (HEX read from stdin if absent)"
                );
                return ExitCode::SUCCESS;
            }
            _ => hex.push_str(&arg),
        }
    }
    if hex.is_empty()
        && let Err(e) = std::io::stdin().read_to_string(&mut hex)
    {
        eprintln!("ttlv-dump: cannot read standard input: {e}");
        return ExitCode::FAILURE;
    }
    let compact: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = match hex::decode(&compact) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("ttlv-dump: not hex: {e}");
            return ExitCode::FAILURE;
        }
    };
    match decode(&bytes, &Limits::default()) {
        Ok(tree) => {
            print!(
                "{}",
                dump_with(&tree, &KmipNames, DumpOptions { show_secrets })
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ttlv-dump: {e}");
            ExitCode::FAILURE
        }
    }
}
