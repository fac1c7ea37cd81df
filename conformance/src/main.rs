//! `kmip-conformance`: replays OASIS KMIP XML test cases against kmipd and prints one line per
//! file (`PASS <path>` / `FAIL <path>`), then `N passed, N failed`. See `conformance/README.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kmipd_conformance::{
    FileOutcome, InProcess, Target, collect_files, report, run_file, vector_key,
};

/// Replays OASIS KMIP XML test cases against kmipd and compares the responses.
#[derive(Debug, Parser)]
#[command(name = "kmip-conformance", version)]
struct Args {
    /// Run against a fresh in-process engine per file (the default, and for now the only mode).
    #[arg(long)]
    in_process: bool,
    /// After each FAIL, print an indented line with the first difference.
    #[arg(long)]
    explain: bool,
    /// Write the Markdown conformance report (docs/conformance.md) to FILE.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Write the passing files (paths from the version folder on, one a line, sorted) to FILE:
    /// the ratchet that conformance/tests/mandatory.rs enforces.
    #[arg(long, value_name = "FILE")]
    write_passing: Option<PathBuf>,
    /// Test case files, or folders searched recursively for *.xml.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// How the runner reaches the server. One mode today; the wire mode (TLS to a running server)
/// will add a variant here and a `Target` implementation in the library.
#[derive(Debug, Clone, Copy)]
enum Mode {
    InProcess,
}

impl Mode {
    fn factory(self) -> Box<dyn FnMut() -> Box<dyn Target>> {
        match self {
            Mode::InProcess => Box::new(InProcess::factory()),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let _ = args.in_process; // The default; accepted for clarity.
    let mode = Mode::InProcess;
    let files = match collect_files(&args.paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("kmip-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    let mut factory = mode.factory();
    let mut outcomes: Vec<(PathBuf, FileOutcome)> = Vec::with_capacity(files.len());
    for path in files {
        let outcome = run_file(&path, factory.as_mut());
        if outcome.passed {
            println!("PASS {}", path.display());
        } else {
            println!("FAIL {}", path.display());
            if args.explain
                && let Some(reason) = &outcome.first_difference
            {
                println!("    {reason}");
            }
        }
        outcomes.push((path, outcome));
    }
    let passed = outcomes.iter().filter(|(_, o)| o.passed).count();
    let failed = outcomes.len() - passed;
    if let Some(file) = &args.report {
        let command = regenerate_command(&args);
        if let Err(e) = std::fs::write(file, report::render(&outcomes, &command)) {
            eprintln!("kmip-conformance: writing {}: {e}", file.display());
            return ExitCode::from(2);
        }
    }
    if let Some(file) = &args.write_passing {
        let mut keys: Vec<String> = outcomes
            .iter()
            .filter(|(_, o)| o.passed)
            .map(|(p, _)| vector_key(p))
            .collect();
        keys.sort();
        let mut text = keys.join("\n");
        text.push('\n');
        if let Err(e) = std::fs::write(file, text) {
            eprintln!("kmip-conformance: writing {}: {e}", file.display());
            return ExitCode::from(2);
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The command line that regenerates the report (as given, without --explain and
/// --write-passing, which do not change it).
fn regenerate_command(args: &Args) -> String {
    let mut parts = vec![String::from("cargo run -p kmipd-conformance --")];
    if let Some(r) = &args.report {
        parts.push(format!("--report {}", r.display()));
    }
    parts.extend(args.paths.iter().map(|p| p.display().to_string()));
    parts.join(" ")
}
