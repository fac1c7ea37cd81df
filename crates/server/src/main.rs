//! `kmipd`: the command line over the `kmipd` library.
//!
//! Exit status: 0 on success (also after a graceful shutdown), 1 when start-up or a command
//! fails, 2 for a command-line or configuration error. Every failure is one line on stderr,
//! `kmipd: error: ...`.

/// mimalloc instead of glibc's malloc: the request path allocates many small short-lived
/// buffers on several threads (TTLV trees, records, TLS), where glibc's arenas showed up at
/// about 15% of a profile (`docs/performance.md`). Built with `no_thp`: mimalloc does not ask
/// for transparent huge pages (`madvise(MADV_HUGEPAGE)`), so a heap that grows (the object
/// cache, sled's cache, the index filling up) faults in 4 KiB pages instead of zeroing 2 MiB
/// at a time, which was 6-7% of kmipd's CPU on the cycle workload (`docs/performance.md`,
/// issue 20, fourth round).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kmipd::config::Config;
use kmipd::init::{InitOptions, check_fresh, init_instance_with, softhsm_env};

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
    /// Administer a running server through its admin socket (`[admin] socket`).
    Admin {
        /// The configuration file of the running server.
        #[arg(long, short)]
        config: PathBuf,
        /// Stop waiting for the answer after this long (`30s`, `10m`); default: wait until the
        /// command finishes.
        #[arg(long)]
        timeout: Option<String>,
        /// Sign the command as the administrator of this client certificate (PEM; then any
        /// intermediates): what dual control of rotate-kek, rotate-master-key and approve
        /// needs (`policy.dual_control_commands`, docs/policy.md).
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// The private key of --cert (PEM); it stays in this command.
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Sign a backup file for a restore under dual control (`policy.dual_control_commands`
    /// lists `restore`): prints the approval (JSON) that `kmipd restore --approval` takes.
    ApproveRestore {
        /// The administrator's client certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// Its private key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// The backup file to be restored.
        backup: PathBuf,
    },
    /// Copy every object and the keyring of a sled instance (not serving) into an empty
    /// PostgreSQL database: the sled store is backed up first, then copied, then both are
    /// compared (count and digest). Both configurations must use the same HSM master key.
    Migrate {
        /// The configuration of the sled instance (store.backend = "sled").
        #[arg(long)]
        from_config: PathBuf,
        /// The configuration of the PostgreSQL instance (store.backend = "postgres").
        #[arg(long)]
        to_config: PathBuf,
    },
    /// Restore a backup into the store's data directory (absent or empty), offline: the server
    /// must not run on it. Then checks that the configured master key unlocks it.
    Restore {
        /// The configuration file (its [hsm] unlocks the restored store).
        #[arg(long, short)]
        config: PathBuf,
        /// Restore here instead of the configuration's `store.data_dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// An administrator's approval of this backup (`kmipd approve-restore`); two, by two
        /// different administrators, when `policy.dual_control_commands` lists `restore`.
        #[arg(long, value_name = "FILE")]
        approval: Vec<PathBuf>,
        /// The backup file (`kmipd admin backup`).
        backup: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// A new key encryption key; every object re-wrapped under it while serving (resumes an
    /// interrupted rotation).
    RotateKek,
    /// A new master key version in the HSM; the KEK blobs re-wrapped; old versions destroyed.
    RotateMasterKey,
    /// A consistent backup of the store, written by the server to PATH (must not exist).
    Backup {
        /// The backup file.
        path: PathBuf,
    },
    /// Grant operations on an object to an identity (OPS: comma-separated, e.g. Get,Locate).
    Grant {
        /// The object's Unique Identifier.
        uid: String,
        /// The grantee's identity (as taken from its certificate).
        identity: String,
        /// Comma-separated operation names (`Get,GetAttributes,Locate`).
        ops: String,
    },
    /// Take back operations (all when OPS is omitted) granted on an object to an identity.
    RevokeGrant {
        /// The object's Unique Identifier.
        uid: String,
        /// The grantee's identity.
        identity: String,
        /// Comma-separated operation names; omitted: every operation.
        ops: Option<String>,
    },
    /// List the grants on an object.
    Grants {
        /// The object's Unique Identifier.
        uid: String,
    },
    /// Move the audit log aside (to FILE.<last record number>) and continue its hash chain in
    /// a new file.
    RotateAudit,
    /// Approves a pending dual control request (the id its refusal named), as local-admin, or
    /// as the administrator of --cert (required for rotate-kek and rotate-master-key requests).
    Approve {
        /// The request id (`UID.XXXXXXXX`).
        id: String,
    },
    /// Marks an object as needing dual control (Destroy, Get of key material and the mark's
    /// removal then need a second administrator's approval).
    DualControl {
        /// The object's Unique Identifier.
        uid: String,
    },
    /// Read the configuration file again and apply [roles] and [policy] (nothing changes if
    /// the file does not load).
    Reload,
    /// Client enrollment: kmipd's client CA and the certificates it issues (docs/clients.md).
    #[command(subcommand)]
    Client(ClientCommand),
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Store a client CA (its key wrapped under the KEK, like every key); e.g. the development
    /// CA of `kmipd init` (certs/ca.pem, certs/ca.key), or your own.
    ImportCa {
        /// The CA certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// The CA private key (PKCS#8 PEM). Remove the file once imported.
        #[arg(long)]
        key: PathBuf,
    },
    /// A new key and certificate for a client, written to a new folder: NAME.key, NAME.pem,
    /// ca.pem, NAME.p12 and NAME.p12.password.
    Issue {
        /// The client's name (its certificate's CN, so its KMIP identity).
        name: String,
        /// Validity in days (default 365).
        #[arg(long)]
        days: Option<u32>,
        /// ec-p256 (default), rsa-2048 or rsa-3072.
        #[arg(long)]
        key: Option<String>,
        /// The output folder (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a certificate signing request (vCenter, iDRAC, Synology, ...): NAME.pem and
    /// ca.pem in a new folder.
    Sign {
        /// The request (PEM).
        csr: PathBuf,
        /// The client's name (default: the request's CN).
        #[arg(long)]
        name: Option<String>,
        /// Validity in days (default 365).
        #[arg(long)]
        days: Option<u32>,
        /// The output folder (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// The enrolled client certificates: name, serial, not-after, key, status.
    List,
    /// Revoke a client (every active certificate of NAME) or one certificate (SERIAL, hex):
    /// refused at its next handshake, without a restart.
    Revoke {
        /// A client name or a serial number.
        client: String,
        /// unspecified (default), key-compromise, ca-compromise, affiliation-changed,
        /// superseded, cessation-of-operation, privilege-withdrawn.
        #[arg(long)]
        reason: Option<String>,
    },
    /// A new key and certificate for an enrolled client; its previous ones are revoked.
    Renew {
        /// The client's name.
        name: String,
        /// Validity in days (default 365).
        #[arg(long)]
        days: Option<u32>,
        /// The output folder (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check an audit log's hash chain; report the first record edited, removed or reordered.
    /// Give rotated files oldest first, then the current one: each must continue the one
    /// before.
    Verify {
        /// The chain does not start at record 1 but continues a record with this hash (the
        /// last hash of earlier files, as `rotate-audit` printed it).
        #[arg(long, value_name = "HASH")]
        after: Option<String>,
        /// The audit log files, in chain order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the records that match every filter given, checking the hash chain while reading
    /// (exit 1 at the first broken link, naming the file and the record). Give rotated files
    /// oldest first, then the current one. Matches go to stdout, the summary to stderr.
    Search {
        /// The caller's identity (exact).
        #[arg(long, value_name = "I")]
        identity: Option<String>,
        /// A Unique Identifier the record names.
        #[arg(long, value_name = "UID")]
        object: Option<String>,
        /// The operation (`Get`, `Destroy`; any case).
        #[arg(long, value_name = "OP")]
        operation: Option<String>,
        /// The Result Status (`Success`, `OperationFailed`) or Result Reason
        /// (`PermissionDenied`); any case.
        #[arg(long, value_name = "R")]
        result: Option<String>,
        /// Records at this time or later (RFC 3339, or a date: midnight UTC).
        #[arg(long, value_name = "T", value_parser = kmipd::audit::parse_time)]
        since: Option<time::OffsetDateTime>,
        /// Records before this time (RFC 3339, or a date: midnight UTC).
        #[arg(long, value_name = "T", value_parser = kmipd::audit::parse_time)]
        until: Option<time::OffsetDateTime>,
        /// Print each match as its JSON line from the file (hash included), one per line.
        #[arg(long)]
        json: bool,
        /// The chain does not start at record 1 but continues a record with this hash (as for
        /// `verify`).
        #[arg(long, value_name = "HASH")]
        after: Option<String>,
        /// The audit log files, in chain order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
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
            command: AuditCommand::Verify { after, files },
        } => audit_verify(after.as_deref(), &files),
        Command::Audit {
            command:
                AuditCommand::Search {
                    identity,
                    object,
                    operation,
                    result,
                    since,
                    until,
                    json,
                    after,
                    files,
                },
        } => {
            let filter = kmipd::audit::Filter {
                identity,
                object,
                operation,
                result,
                since,
                until,
            };
            audit_search(&filter, json, after.as_deref(), &files)
        }
        Command::Admin {
            config,
            timeout,
            cert,
            key,
            command,
        } => admin(config, timeout, cert.zip(key), command),
        Command::ApproveRestore { cert, key, backup } => approve_restore(&cert, &key, &backup),
        Command::Restore {
            config,
            data_dir,
            approval,
            backup,
        } => restore(config, data_dir, &approval, backup),
        Command::Migrate {
            from_config,
            to_config,
        } => migrate(&from_config, &to_config),
    }
}

fn migrate(from: &std::path::Path, to: &std::path::Path) -> ExitCode {
    let (from, to) = match (Config::load(from), Config::load(to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return fail(2, e),
    };
    // Before any thread exists: SoftHSM2 must see the instance's SOFTHSM2_CONF (both
    // configurations must name the same one).
    let confs = [&from, &to].map(|c| c.hsm.as_ref().and_then(|h| h.softhsm2_conf.clone()));
    if let [Some(a), Some(b)] = &confs
        && a != b
    {
        return fail(
            2,
            format!(
                "the configurations name different SoftHSM2 files ({} and {}): migrate needs \
                 one master key",
                a.display(),
                b.display()
            ),
        );
    }
    if let Some(conf) = confs.iter().flatten().next()
        && let Err(e) = kmipd_hsm::ensure_softhsm_env(conf)
    {
        return fail(1, e);
    }
    match kmipd::storage::migrate_from_sled(&from, &to) {
        Ok(done) => {
            println!("kmipd: migrate: {done}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, format!("migrate: {e}")),
    }
}

fn split_ops(ops: &str) -> Vec<String> {
    ops.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Reads a signer's certificate and key and signs `act`/`subject`.
fn sign(
    cert: &std::path::Path,
    key: &std::path::Path,
    act: &str,
    subject: &str,
) -> Result<kmipd::approval::Signed, String> {
    let pem =
        std::fs::read_to_string(cert).map_err(|e| format!("--cert {}: {e}", cert.display()))?;
    let key = zeroize::Zeroizing::new(
        std::fs::read(key).map_err(|e| format!("--key {}: {e}", key.display()))?,
    );
    kmipd::approval::sign(&pem, &key, act, subject)
}

fn approve_restore(
    cert: &std::path::Path,
    key: &std::path::Path,
    backup: &std::path::Path,
) -> ExitCode {
    let digest = match kmipd::approval::file_digest(backup) {
        Ok(d) => d,
        Err(e) => return fail(1, e),
    };
    match sign(cert, key, "restore", &digest)
        .and_then(|s| serde_json::to_string(&s).map_err(|e| e.to_string()))
    {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, e),
    }
}

fn admin(
    path: PathBuf,
    timeout: Option<String>,
    signer: Option<(PathBuf, PathBuf)>,
    command: AdminCommand,
) -> ExitCode {
    use kmipd::admin::Request;
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => return fail(2, e),
    };
    if !config.admin.enabled {
        return fail(
            2,
            format!(
                "{}: admin.enabled is false: no admin socket",
                path.display()
            ),
        );
    }
    let timeout = match timeout
        .map(|t| kmipd::config::duration::parse(&t))
        .transpose()
    {
        Ok(t) => t,
        Err(e) => return fail(2, format!("--timeout: {e}")),
    };
    let signed = |act: &str, subject: &str| match &signer {
        Some((cert, key)) => sign(cert, key, act, subject).map(Some),
        None => Ok(None),
    };
    let request = match command {
        AdminCommand::RotateKek => match signed("rotate-kek", "") {
            Ok(signed) => Request::RotateKek { signed },
            Err(e) => return fail(2, e),
        },
        AdminCommand::RotateMasterKey => match signed("rotate-master-key", "") {
            Ok(signed) => Request::RotateMasterKey { signed },
            Err(e) => return fail(2, e),
        },
        AdminCommand::Backup { path } => match std::path::absolute(&path) {
            Ok(p) => Request::Backup { path: p },
            Err(e) => return fail(2, format!("{}: {e}", path.display())),
        },
        AdminCommand::Grant { uid, identity, ops } => Request::Grant {
            uid,
            identity,
            operations: split_ops(&ops),
        },
        AdminCommand::RevokeGrant { uid, identity, ops } => Request::RevokeGrant {
            uid,
            identity,
            operations: ops.as_deref().map(split_ops),
        },
        AdminCommand::Grants { uid } => Request::Grants { uid },
        AdminCommand::RotateAudit => Request::RotateAudit,
        AdminCommand::Approve { id } => match signed("approve", &id) {
            Ok(signed) => Request::Approve { id, signed },
            Err(e) => return fail(2, e),
        },
        AdminCommand::DualControl { uid } => Request::DualControl { uid },
        AdminCommand::Reload => Request::Reload,
        AdminCommand::Client(c) => match client_request(c) {
            Ok(r) => r,
            Err(e) => return fail(2, e),
        },
    };
    match kmipd::admin::call(&config.admin.socket, &request, timeout) {
        Ok(r) if r.ok => {
            println!("kmipd: {}: {}", request.name(), r.message);
            ExitCode::SUCCESS
        }
        Ok(r) => fail(1, format!("{}: {}", request.name(), r.message)),
        Err(e) => fail(1, format!("{}: {e}", request.name())),
    }
}

/// The admin request of a `client` command; the server reads and writes the files, so their
/// paths are made absolute here.
fn client_request(command: ClientCommand) -> Result<kmipd::admin::Request, String> {
    use kmipd::admin::Request;
    let abs = |p: PathBuf| std::path::absolute(&p).map_err(|e| format!("{}: {e}", p.display()));
    Ok(match command {
        ClientCommand::ImportCa { cert, key } => Request::ClientImportCa {
            cert: abs(cert)?,
            key: abs(key)?,
        },
        ClientCommand::Issue {
            name,
            days,
            key,
            out,
        } => Request::ClientIssue {
            name,
            days,
            key,
            out: abs(out)?,
        },
        ClientCommand::Sign {
            csr,
            name,
            days,
            out,
        } => Request::ClientSign {
            csr: abs(csr)?,
            name,
            days,
            out: abs(out)?,
        },
        ClientCommand::List => Request::ClientList,
        ClientCommand::Revoke { client, reason } => Request::ClientRevoke { client, reason },
        ClientCommand::Renew { name, days, out } => Request::ClientRenew {
            name,
            days,
            out: abs(out)?,
        },
    })
}

fn restore(
    path: PathBuf,
    data_dir: Option<PathBuf>,
    approvals: &[PathBuf],
    backup: PathBuf,
) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => return fail(2, e),
    };
    match config.store.backend {
        kmipd::config::StoreBackend::Sled => {}
        kmipd::config::StoreBackend::Postgres => {
            return fail(
                2,
                format!("{}: {}", path.display(), kmipd::storage::POSTGRES_BACKUP),
            );
        }
        kmipd::config::StoreBackend::Memory => {
            return fail(
                2,
                format!("{}: restore needs store.backend = \"sled\"", path.display()),
            );
        }
    }
    // Before any thread exists: SoftHSM2 must see the instance's SOFTHSM2_CONF.
    if let Some(conf) = config.hsm.as_ref().and_then(|h| h.softhsm2_conf.as_ref())
        && let Err(e) = kmipd_hsm::ensure_softhsm_env(conf)
    {
        return fail(1, e);
    }
    let dir = match data_dir.map(|d| std::path::absolute(&d)).transpose() {
        Ok(d) => d.unwrap_or_else(|| config.store.data_dir.clone()),
        Err(e) => return fail(2, format!("--data-dir: {e}")),
    };
    let approved = kmipd::approval::check_restore(&config, &backup, approvals);
    let result = match &approved {
        Ok(_) => kmipd::storage::restore(&config, &backup, &dir).map_err(|e| e.to_string()),
        Err(e) => Err(e.clone()),
    };
    let note = match &approved {
        Ok(Some(names)) => format!(" (dual control: approved by {})", names.join(" and ")),
        _ => String::new(),
    };
    let result = result.map(|m| format!("{m}{note}"));
    // Audited in the instance's log (the server does not run during a restore).
    let item = kmipd::audit::ItemSummary::outcome("restore", Vec::new(), &result);
    if let Err(e) = kmipd::audit::AuditLog::open(&config.audit.path)
        .and_then(|log| log.append(kmipd::admin::ADMIN_IDENTITY, "restore", &[item]))
    {
        eprintln!("kmipd: warning: restore not recorded in the audit log: {e}");
    }
    match result {
        Ok(msg) => {
            println!("kmipd: restore: {msg}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, format!("restore from {}: {e}", backup.display())),
    }
}

fn audit_verify(after: Option<&str>, files: &[PathBuf]) -> ExitCode {
    let mut chain = match after {
        Some(hash) => kmipd::audit::Verifier::after(hash),
        None => kmipd::audit::Verifier::new(),
    };
    for file in files {
        if let Err(e) = chain.file(file) {
            let hint = match e {
                kmipd::audit::AuditError::Removed { after: 0, .. } if chain.records() == 0 => {
                    "; if the records before it were rotated into other files, give those \
                     files first, or --after with the hash they end with"
                }
                _ => "",
            };
            return fail(1, format!("{}: {e}{hint}", file.display()));
        }
    }
    let last = chain
        .last_seq()
        .map_or_else(|| "none".to_owned(), |n| n.to_string());
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    println!(
        "{}: {} records, chain intact; last record {last}, hash {}",
        names.join(", "),
        chain.records(),
        chain.last_hash()
    );
    ExitCode::SUCCESS
}

fn audit_search(
    filter: &kmipd::audit::Filter,
    json: bool,
    after: Option<&str>,
    files: &[PathBuf],
) -> ExitCode {
    use std::io::Write as _;
    let chain = match after {
        Some(hash) => kmipd::audit::Verifier::after(hash),
        None => kmipd::audit::Verifier::new(),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let found = kmipd::audit::search(chain, files, filter, |r, line| {
        if json {
            writeln!(out, "{line}")
        } else {
            let result = match &r.reason {
                Some(reason) => format!("{}/{reason}", r.status),
                None => r.status.clone(),
            };
            writeln!(
                out,
                "{} {} {} {} {} {result} [{}]",
                r.seq,
                r.time,
                r.identity,
                r.peer,
                r.operation,
                r.uids.join(" ")
            )
        }
    });
    let flushed = out.flush();
    match (found, flushed) {
        (Err(kmipd::audit::SearchError::Output(e)), _) | (Ok(_), Err(e))
            if e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            // The reader went away (`| head`): nothing more to say.
            ExitCode::SUCCESS
        }
        (Err(e), _) => fail(
            1,
            format!("audit search stopped: {e}; matches printed before it come before the break"),
        ),
        (Ok(_), Err(e)) => fail(1, format!("audit search: writing the matches: {e}")),
        (Ok(s), Ok(())) => {
            let last = s
                .last_seq
                .map_or_else(|| "none".to_owned(), |n| n.to_string());
            eprintln!(
                "kmipd: audit search: {} of {} records matched; chain intact; last record {last}, hash {}",
                s.matched, s.records, s.last_hash
            );
            ExitCode::SUCCESS
        }
    }
}

fn init(dir: PathBuf, listen: SocketAddr, no_hsm: bool) -> ExitCode {
    if let Err(e) = check_fresh(&dir) {
        return fail(1, e);
    }
    if !no_hsm {
        // SoftHSM2 reads SOFTHSM2_CONF once per process: write the instance's file, then make
        // sure this process runs with it (re-executes itself if not; see kmipd_hsm::softhsm).
        if let Err(e) = softhsm_env(&dir) {
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
                 CA:      {}\n  clients: {} ({}), client2, admin (administrator)\n  \
                 enroll:  kmipd admin --config {} client import-ca --cert {} --key {} \
                 (then `client issue NAME --out DIR`, docs/clients.md)",
                inst.dir.display(),
                inst.config_path.display(),
                inst.cert("ca").display(),
                inst.cert("client").display(),
                inst.key("client").display(),
                inst.config_path.display(),
                inst.cert("ca").display(),
                inst.key("ca").display(),
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
        let hangup = kmipd::reload_signal()?;
        // A shutdown signal also ends the start-up (a PostgreSQL store waits for the database).
        let shutdown = kmipd::shutdown_signal();
        tokio::pin!(shutdown);
        let handle = tokio::select! {
            h = kmipd::Server::new(config).start() => h?,
            () = &mut shutdown => return Ok(()),
        };
        kmipd::serve_until(handle, shutdown, hangup).await
    });
    // A store opening abandoned by a signal may still be in one bounded connection attempt:
    // do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, e),
    }
}
