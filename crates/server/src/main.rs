//! `kmipd`: the command line over the `kmipd` library.
//!
//! Exit status: 0 on success (also after a graceful shutdown), 1 when start-up or a command
//! fails, 2 for a command-line or configuration error. Every failure is one line on stderr,
//! `kmipd: error: ...`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kmipd::config::Config;
use kmipd::init::{InitOptions, check_fresh, init_instance_with};

/// kmipd, a KMIP key management server.
#[derive(Debug, Parser)]
#[command(name = "kmipd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a development instance (config, CA and certificates, SoftHSM2 token, data dir).
    Init {
        /// The instance directory; must be absent or empty.
        #[arg(long)]
        dir: PathBuf,
        /// The listen address written into the configuration.
        #[arg(long, default_value = kmipd::config::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// No SoftHSM2 token; the in-memory store (tests only: nothing persists).
        #[arg(long)]
        no_hsm: bool,
    },
    /// Serve KMIP over mutual TLS until SIGTERM or SIGINT.
    Serve {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Listen on this address instead of the configuration's `listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Load and validate a configuration file, then print it with every default filled in.
    CheckConfig {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Audit log commands.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check an audit log's hash chain; report the first record edited, removed or reordered.
    Verify {
        /// The audit log file.
        file: PathBuf,
    },
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("kmipd: error: {msg}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Init {
            dir,
            listen,
            no_hsm,
        } => init(dir, listen, no_hsm),
        Command::Serve { config, listen } => serve(config, listen),
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(c) => match toml::to_string(&c) {
                Ok(t) => {
                    print!("{t}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, e),
            },
            Err(e) => fail(2, e),
        },
        Command::Audit {
            command: AuditCommand::Verify { file },
        } => audit_verify(file),
    }
}

fn audit_verify(file: PathBuf) -> ExitCode {
    match kmipd::audit::verify(&file) {
        Ok(n) => {
            println!("{}: {n} records, chain intact", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, format!("{}: {e}", file.display())),
    }
}

fn init(dir: PathBuf, listen: SocketAddr, no_hsm: bool) -> ExitCode {
    if let Err(e) = check_fresh(&dir) {
        return fail(1, e);
    }
    if !no_hsm {
        // SoftHSM2 reads SOFTHSM2_CONF once per process: write the instance's file, then make
        // sure this process runs with it (re-executes itself if not; see kmipd_hsm::softhsm).
        let conf = match kmipd_hsm::write_softhsm_conf(&dir) {
            Ok(c) => c,
            Err(e) => return fail(1, e),
        };
        if let Err(e) = kmipd_hsm::ensure_softhsm_env(&conf) {
            return fail(1, e);
        }
    }
    let opts = InitOptions {
        hsm: !no_hsm,
        listen,
        softhsm_module: None,
    };
    match init_instance_with(&dir, &opts) {
        Ok(inst) => {
            println!(
                "kmipd: development instance ready in {}\n  serve:   kmipd serve --config {}\n  \
                 CA:      {}\n  clients: {} ({}), client2, admin (administrator)",
                inst.dir.display(),
                inst.config_path.display(),
                inst.cert("ca").display(),
                inst.cert("client").display(),
                inst.key("client").display(),
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, e),
    }
}

fn serve(path: PathBuf, listen: Option<SocketAddr>) -> ExitCode {
    let mut config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => return fail(2, e),
    };
    if let Some(l) = listen {
        config.listen = l;
    }
    // Before any thread exists: SoftHSM2 must see the instance's SOFTHSM2_CONF.
    if let Some(conf) = config.hsm.as_ref().and_then(|h| h.softhsm2_conf.as_ref())
        && let Err(e) = kmipd_hsm::ensure_softhsm_env(conf)
    {
        return fail(1, e);
    }
    if let Err(e) = kmipd::logging::init(&config.log) {
        return fail(2, e);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kmipd")
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(1, format!("cannot start the runtime: {e}")),
    };
    let result = runtime.block_on(async move {
        let handle = kmipd::Server::new(config).start().await?;
        kmipd::shutdown_signal().await;
        handle.stop().await;
        Ok::<_, kmipd::StartError>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, e),
    }
}
