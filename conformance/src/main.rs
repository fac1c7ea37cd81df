//! `kmip-conformance`: replays OASIS KMIP XML test cases against kmipd and prints one line per
//! file (`PASS <path>` / `FAIL <path>`), then `N passed, N failed`. See `conformance/README.md`.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use kmipd_conformance::https::{self, Encoding};
use kmipd_conformance::report::WireDifference;
use kmipd_conformance::wire::{self, Endpoint, SpawnOptions};
use kmipd_conformance::{
    FileOutcome, InProcess, Target, collect_files, report, run_files, vector_key,
};

/// Replays OASIS KMIP XML test cases against kmipd and compares the responses.
#[derive(Debug, Parser)]
#[command(name = "kmip-conformance", version)]
struct Args {
    /// Run against a fresh in-process engine per file (the default).
    #[arg(long, conflicts_with_all = ["spawn", "server"])]
    in_process: bool,
    /// Wire mode: start a fresh kmipd (this binary; `kmipd init` in a temporary folder, then
    /// `kmipd serve` on a loopback port) for each file and replay it over mutual TLS as the
    /// instance's `client` identity.
    #[arg(long, value_name = "KMIPD", conflicts_with = "server")]
    spawn: Option<PathBuf>,
    /// With --spawn: instances without the SoftHSM2 token (in-memory store).
    #[arg(long, requires = "spawn")]
    no_hsm: bool,
    /// Wire mode against a running server at HOST:PORT (a new connection per file; the files
    /// assume a clean server, so leftovers of earlier files can make later ones fail).
    #[arg(long, value_name = "HOST:PORT", requires = "certs")]
    server: Option<String>,
    /// With --server: a folder holding ca.pem, client.pem and client.key.
    #[arg(long, value_name = "DIR", requires = "server")]
    certs: Option<PathBuf>,
    /// With --server or --spawn: speak KMIP over HTTPS (`POST /kmip`) instead of TTLV over
    /// TLS; --server then names the HTTPS listener. Each file's requests go in the encoding it
    /// is about (XML for MSGENC-XML-*, JSON for MSGENC-JSON-*, TTLV otherwise).
    #[arg(long)]
    https: bool,
    /// With --server: the name the server certificate must carry (default: HOST).
    #[arg(long, value_name = "NAME", requires = "server")]
    server_name: Option<String>,
    /// Files run at the same time (default 1 in-process, 4 in the wire modes).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// After each FAIL, print an indented line with the first difference.
    #[arg(long)]
    explain: bool,
    /// Write the Markdown conformance report (docs/conformance.md) to FILE.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// With a wire mode: write the files whose wire outcome differs from in-process
    /// (conformance/wire-differences.txt) to FILE.
    #[arg(long, value_name = "FILE")]
    write_wire_differences: Option<PathBuf>,
    /// In-process with --report: the wire outcomes that differ from in-process (the file
    /// --write-wire-differences wrote), for the report's wire columns.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["spawn", "server"])]
    wire_differences: Option<PathBuf>,
    /// Write the passing files (paths from the version folder on, one a line, sorted) to FILE:
    /// the ratchet that conformance/tests/mandatory.rs enforces.
    #[arg(long, value_name = "FILE")]
    write_passing: Option<PathBuf>,
    /// Test case files, or folders searched recursively for *.xml.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// How the runner reaches the server.
#[derive(Debug)]
enum Mode {
    InProcess,
    Spawn(PathBuf, SpawnOptions),
    Server(Endpoint),
}

impl Mode {
    fn from_args(args: &Args) -> Result<Mode, String> {
        if let Some(kmipd) = &args.spawn {
            let options = SpawnOptions {
                hsm: !args.no_hsm,
                ..SpawnOptions::default()
            };
            return Ok(Mode::Spawn(kmipd.clone(), options));
        }
        let (Some(server), Some(certs)) = (&args.server, &args.certs) else {
            return Ok(Mode::InProcess);
        };
        let addr = server
            .to_socket_addrs()
            .map_err(|e| format!("--server {server}: {e}"))?
            .next()
            .ok_or_else(|| format!("--server {server}: no address"))?;
        let host = server
            .rsplit_once(':')
            .map_or(server.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = args.server_name.as_deref().unwrap_or(host);
        Ok(Mode::Server(Endpoint::from_cert_dir(addr, name, certs)?))
    }

    fn factory(self) -> Box<dyn Fn() -> Box<dyn Target> + Sync> {
        match self {
            Mode::InProcess => Box::new(|| -> Box<dyn Target> { Box::new(InProcess::new()) }),
            Mode::Spawn(kmipd, options) => Box::new(wire::spawn_factory(kmipd, options)),
            Mode::Server(endpoint) => Box::new(wire::server_factory(endpoint)),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mode = match Mode::from_args(&args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("kmip-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    let files = match collect_files(&args.paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("kmip-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    let jobs = args.jobs.unwrap_or(match mode {
        Mode::InProcess => 1,
        // A spawned server mostly waits (init, SoftHSM2, fsync): more files than cores in flight.
        Mode::Spawn(..) | Mode::Server(_) => 4,
    });
    let wire_mode = !matches!(mode, Mode::InProcess);
    if args.report.is_some() && !wire_mode && args.wire_differences.is_none() {
        eprintln!(
            "kmip-conformance: the report has a wire column: give --spawn KMIPD (runs both modes) \
             or --wire-differences FILE (the wire outcomes that differ from in-process)"
        );
        return ExitCode::from(2);
    }
    let explain = args.explain;
    let mut print = |path: &std::path::Path, outcome: &FileOutcome| {
        if outcome.passed {
            println!("PASS {}", path.display());
        } else {
            println!("FAIL {}", path.display());
            if explain && let Some(reason) = &outcome.first_difference {
                println!("    {reason}");
            }
        }
    };
    let outcomes = if args.https {
        if matches!(mode, Mode::InProcess) {
            eprintln!("kmip-conformance: --https needs --server or --spawn");
            return ExitCode::from(2);
        }
        run_https(mode, &files, jobs, &mut print)
    } else {
        let factory = mode.factory();
        run_files(&files, jobs, factory.as_ref(), &mut print)
    };
    let passed = outcomes.iter().filter(|(_, o)| o.passed).count();
    let failed = outcomes.len() - passed;
    if let Err(e) = write_wire_outputs(&args, wire_mode, &files, &outcomes) {
        eprintln!("kmip-conformance: {e}");
        return ExitCode::from(2);
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

/// The HTTPS mode: the files grouped by the encoding they travel in ([`Encoding::for_file`]),
/// each group run with its own factory; the outcomes in the order of `files`.
fn run_https(
    mode: Mode,
    files: &[PathBuf],
    jobs: usize,
    print: &mut dyn FnMut(&std::path::Path, &FileOutcome),
) -> Vec<(PathBuf, FileOutcome)> {
    let mut outcomes = Vec::new();
    for encoding in [Encoding::Ttlv, Encoding::Xml, Encoding::Json] {
        let group: Vec<PathBuf> = files
            .iter()
            .filter(|f| Encoding::for_file(f) == encoding)
            .cloned()
            .collect();
        if group.is_empty() {
            continue;
        }
        let factory: Box<dyn Fn() -> Box<dyn Target> + Sync> = match &mode {
            Mode::Server(endpoint) => Box::new(https::server_factory(endpoint.clone(), encoding)),
            Mode::Spawn(kmipd, options) => Box::new(https::spawn_factory(
                kmipd.clone(),
                options.clone(),
                encoding,
            )),
            Mode::InProcess => Box::new(|| -> Box<dyn Target> { Box::new(InProcess::new()) }),
        };
        outcomes.extend(run_files(&group, jobs, factory.as_ref(), print));
    }
    let position = |p: &PathBuf| files.iter().position(|f| f == p).unwrap_or(usize::MAX);
    outcomes.sort_by_key(|(p, _)| position(p));
    outcomes
}

/// The report and the wire differences file. In a wire mode the report needs the in-process
/// outcomes too: every file is run once more, in-process (quietly; seconds). In-process, the
/// wire column comes from `--wire-differences`.
fn write_wire_outputs(
    args: &Args,
    wire_mode: bool,
    files: &[PathBuf],
    outcomes: &[(PathBuf, FileOutcome)],
) -> Result<(), String> {
    if args.report.is_none() && args.write_wire_differences.is_none() {
        return Ok(());
    }
    let (local, wire) = if wire_mode {
        let in_process = |_: &std::path::Path, _: &FileOutcome| {};
        let make = || -> Box<dyn Target> { Box::new(InProcess::new()) };
        let local = run_files(files, 1, &make, &mut { in_process });
        (local, outcomes.to_vec())
    } else {
        let file = args.wire_differences.as_ref().ok_or_else(|| {
            String::from("--write-wire-differences needs a wire mode (--spawn or --server)")
        })?;
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let mut differences = Vec::new();
        for line in text.lines() {
            if let Some(d) =
                WireDifference::parse(line).map_err(|e| format!("{}: {e}", file.display()))?
            {
                differences.push(d);
            }
        }
        let wire = report::apply_differences(outcomes, &differences);
        (outcomes.to_vec(), wire)
    };
    if let Some(file) = &args.report {
        let text = report::render(&local, &wire, &regenerate_command(args));
        std::fs::write(file, text).map_err(|e| format!("writing {}: {e}", file.display()))?;
    }
    if let Some(file) = &args.write_wire_differences {
        let mut text = String::from(WIRE_DIFFERENCES_HEADER);
        for d in report::wire_differences(&local, &wire) {
            text.push_str(&d.line());
            text.push('\n');
        }
        std::fs::write(file, text).map_err(|e| format!("writing {}: {e}", file.display()))?;
    }
    Ok(())
}

/// The comment lines at the top of a written differences file.
const WIRE_DIFFERENCES_HEADER: &str = "\
# Generated by kmip-conformance --spawn ... --write-wire-differences (see conformance/README.md).
# The test case files whose outcome over the wire (a fresh kmipd per file, mutual TLS) differs
# from their outcome in-process: <path><TAB>PASS, or <path><TAB>FAIL<TAB><stable reason>.
# docs/conformance.md renders its wire columns from the in-process run and this list;
# conformance/tests/wire.rs checks the list over the wire.
";

/// The command line that regenerates the report: the wire form (both modes), whichever mode
/// wrote it, so that both ways of writing it give the same text.
fn regenerate_command(args: &Args) -> String {
    let mut parts = vec![String::from(
        "cargo build -p kmipd && cargo run -p kmipd-conformance --",
    )];
    let kmipd = args.spawn.as_ref().map_or_else(
        || String::from("target/debug/kmipd"),
        |p| p.display().to_string(),
    );
    parts.push(format!("--spawn {kmipd}"));
    if let Some(r) = &args.report {
        parts.push(format!("--report {}", r.display()));
    }
    if let Some(w) = args
        .write_wire_differences
        .as_ref()
        .or(args.wire_differences.as_ref())
    {
        parts.push(format!("--write-wire-differences {}", w.display()));
    }
    parts.extend(args.paths.iter().map(|p| p.display().to_string()));
    parts.join(" ")
}
