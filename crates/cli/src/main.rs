//! `kmip`: a command-line KMIP client. It speaks binary KMIP over mutual TLS through
//! `kmipd-client`, so it manages kmipd and any other KMIP server. `docs/cli.md` is the user's
//! guide; the exit codes are in [`error`], profiles in [`config`].

mod attrs;
mod cli;
mod commands;
mod config;
mod conn;
mod crypto;
mod der;
mod error;
mod files;
mod misc;
mod names;
mod output;
mod pem;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, ProfileCommand};
use crate::commands::Lifecycle;
use crate::config::{ConfigFile, config_path};
use crate::conn::Settings;
use crate::error::CliError;
use crate::output::Mode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(error::EXIT_USAGE));
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kmip: cannot start: {e}");
            return ExitCode::from(error::EXIT_LOCAL);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::from(error::EXIT_OK),
        Err(e) => {
            eprintln!("kmip: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let g = &cli.global;
    let mode = if g.json {
        Mode::Json
    } else if g.quiet {
        Mode::Quiet
    } else {
        Mode::Human
    };
    // The commands that need no server.
    match &cli.command {
        Command::Profile(p) => return profile(g, mode, p),
        Command::Ttlv(t) => return misc::ttlv(t),
        Command::Completions { shell } => {
            misc::completions(*shell);
            return Ok(());
        }
        Command::Man => return misc::man(),
        _ => {}
    }
    let settings = Settings::resolve(g)?;
    let mut client = settings.connect().await?;
    let c = &mut client;
    let result = match &cli.command {
        Command::Profile(_) | Command::Ttlv(_) | Command::Completions { .. } | Command::Man => {
            Ok(())
        }
        Command::Create(a) => commands::create(c, mode, a).await,
        Command::Get(a) => commands::get(c, mode, a).await,
        Command::Locate(a) => commands::locate(c, mode, a).await,
        Command::Show(a) => commands::show(c, mode, &a.uid).await,
        Command::Activate(a) => commands::lifecycle(c, mode, Lifecycle::Activate, &a.uids).await,
        Command::Revoke(a) => commands::revoke(c, mode, a).await,
        Command::Destroy(a) => commands::lifecycle(c, mode, Lifecycle::Destroy, &a.uids).await,
        Command::Register(a) => commands::register(c, mode, a).await,
        Command::Attributes(a) => misc::attributes(c, mode, a).await,
        Command::Rekey(a) => misc::rekey(c, mode, a).await,
        Command::Encrypt(a) => crypto::encrypt(c, mode, a).await,
        Command::Decrypt(a) => crypto::decrypt(c, mode, a).await,
        Command::Sign(a) => crypto::sign(c, mode, a).await,
        Command::Verify(a) => crypto::verify(c, mode, a).await,
        Command::Mac(a) => crypto::mac(c, mode, a).await,
        Command::Hash(a) => crypto::hash(c, mode, a).await,
        Command::Rng(a) => crypto::rng(c, mode, a).await,
        Command::Query => misc::query(c, mode).await,
        Command::DiscoverVersions => misc::discover_versions(c, mode).await,
    };
    // A polite close; the result of the command is what counts.
    let _ = client.shutdown().await;
    result
}

/// `profile add|list|remove`.
fn profile(g: &cli::Global, mode: Mode, command: &ProfileCommand) -> Result<(), CliError> {
    let path = config_path(g.config.as_deref())?;
    let mut file = ConfigFile::load(&path)?;
    match command {
        ProfileCommand::Add { name, default } => {
            let mut p = conn::flags_profile(g);
            if p.server.is_none() {
                return Err(CliError::Usage(
                    "kmip profile add NAME needs at least --server".to_owned(),
                ));
            }
            if let Some(v) = p.kmip_version.as_deref() {
                conn::parse_version(v)?;
            }
            for f in [&mut p.ca, &mut p.cert, &mut p.key].into_iter().flatten() {
                *f = std::path::absolute(&*f).map_err(CliError::file(f))?;
            }
            file.profiles.insert(name.clone(), p);
            if *default || file.default.is_none() {
                file.default = Some(name.clone());
            }
            file.save(&path)?;
            match mode {
                Mode::Human => {
                    output::println(&format!("profile {name:?} written to {}", path.display()));
                }
                Mode::Json => output::print_json(&serde_json::json!({
                    "name": name,
                    "file": path,
                    "default": file.default.as_deref() == Some(name.as_str()),
                })),
                Mode::Quiet => {}
            }
        }
        ProfileCommand::List => match mode {
            Mode::Json => {
                let list: Vec<_> = file
                    .profiles
                    .iter()
                    .map(|(n, p)| {
                        serde_json::json!({
                            "name": n,
                            "default": file.default.as_deref() == Some(n.as_str()),
                            "server": p.server,
                            "ca": p.ca,
                            "cert": p.cert,
                            "key": p.key,
                            "kmip_version": p.kmip_version,
                            "server_name": p.server_name,
                        })
                    })
                    .collect();
                output::print_json(&serde_json::Value::Array(list));
            }
            Mode::Quiet => {
                for n in file.profiles.keys() {
                    output::println(n);
                }
            }
            Mode::Human => {
                let rows: Vec<(String, String)> = file
                    .profiles
                    .iter()
                    .map(|(n, p)| {
                        let mark = if file.default.as_deref() == Some(n.as_str()) {
                            " (default)"
                        } else {
                            ""
                        };
                        (format!("{n}{mark}"), p.server.clone().unwrap_or_default())
                    })
                    .collect();
                output::print(&output::table(&rows));
            }
        },
        ProfileCommand::Remove { name } => {
            if file.profiles.remove(name).is_none() {
                return Err(CliError::Usage(format!("no profile named {name:?}")));
            }
            if file.default.as_deref() == Some(name.as_str()) {
                file.default = None;
            }
            file.save(&path)?;
            match mode {
                Mode::Human => output::println(&format!("profile {name:?} removed")),
                Mode::Json => {
                    output::print_json(&serde_json::json!({ "name": name, "file": path }))
                }
                Mode::Quiet => {}
            }
        }
    }
    Ok(())
}
