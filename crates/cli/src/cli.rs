//! The command line (clap derive). The same definitions make the help, the shell completions
//! (`kmip completions SHELL`) and the man page (`kmip man`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// kmip: a command-line KMIP client. It speaks binary KMIP over mutual TLS (port 5696), so it
/// manages kmipd and any other KMIP server.
///
/// Exit codes: 0 success, 1 KMIP failure (the server's Result Reason and Message are printed
/// on standard error), 2 bad usage, 3 TLS or connection failure, 4 local failure (files,
/// input, profile file), 5 unexpected response, 6 a signature or MAC that does not match.
#[derive(Debug, Parser)]
#[command(
    name = "kmip",
    version,
    max_term_width = 100,
    args_override_self = true
)]
pub(crate) struct Cli {
    /// Connection and output settings.
    #[command(flatten)]
    pub(crate) global: Global,
    /// The command.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags accepted before or after any command.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The profile to use (default: the profile file's `default`).
    #[arg(long, global = true, env = "KMIP_PROFILE")]
    pub(crate) profile: Option<String>,
    /// The profile file (default: $XDG_CONFIG_HOME/kmip/config.toml or
    /// ~/.config/kmip/config.toml).
    #[arg(long, global = true, env = "KMIP_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// The server, HOST:PORT (KMIP's port is 5696).
    #[arg(long, global = true, env = "KMIP_SERVER", value_name = "HOST:PORT")]
    pub(crate) server: Option<String>,
    /// CA certificates (PEM) that the server's certificate must chain to.
    #[arg(long, global = true, env = "KMIP_CA", value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// The client certificate (PEM).
    #[arg(long, global = true, env = "KMIP_CERT", value_name = "FILE")]
    pub(crate) cert: Option<PathBuf>,
    /// The client's private key (PEM).
    #[arg(long, global = true, env = "KMIP_KEY", value_name = "FILE")]
    pub(crate) key: Option<PathBuf>,
    /// The KMIP version of requests: 1.0 to 1.4, 2.0, 2.1 (default 2.1).
    #[arg(long, global = true, env = "KMIP_VERSION", value_name = "V")]
    pub(crate) kmip_version: Option<String>,
    /// The name the server's certificate must carry (default: the host of --server).
    #[arg(long, global = true, env = "KMIP_SERVER_NAME", value_name = "NAME")]
    pub(crate) server_name: Option<String>,
    /// Seconds to wait for the connection and for each response.
    #[arg(long, global = true, default_value_t = 30, value_name = "SECONDS")]
    pub(crate) timeout: u64,
    /// Print JSON (stable field names) instead of text.
    #[arg(long, global = true, conflicts_with = "quiet")]
    pub(crate) json: bool,
    /// Print only identifiers (or the bare result).
    #[arg(long, short, global = true)]
    pub(crate) quiet: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Manage connection profiles.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Create a symmetric key, a key pair or a secret.
    Create(CreateArgs),
    /// Get an object: a summary, its key material with --reveal, or into a file (mode 0600).
    Get(GetArgs),
    /// Find objects by attributes; prints their identifiers.
    Locate(LocateArgs),
    /// Show all attributes of an object.
    Show(UidArg),
    /// Activate objects.
    Activate(UidsArg),
    /// Revoke objects.
    Revoke(RevokeArgs),
    /// Destroy objects (their key material; the identifiers stay, in the Destroyed state).
    Destroy(UidsArg),
    /// Register an object from a file: a key (raw, PEM, DER), a certificate, a secret.
    Register(RegisterArgs),
    /// Change attributes: set, add, modify, delete.
    #[command(subcommand)]
    Attributes(AttributesCommand),
    /// Re-Key: a new symmetric key replaces this one (names and attributes move to it).
    Rekey(RekeyArgs),
    /// Encrypt a file or standard input (AES-GCM; RSA-OAEP with --scheme rsa-oaep).
    Encrypt(CipherArgs),
    /// Decrypt what `kmip encrypt` wrote.
    Decrypt(CipherArgs),
    /// Sign a file or standard input with a private key.
    Sign(SignArgs),
    /// Verify a signature with a public key: exit 0 when valid, 6 when not.
    Verify(VerifyArgs),
    /// MAC a file or standard input with an HMAC key; with --check, verify a MAC (exit 6 when
    /// it does not match).
    Mac(MacArgs),
    /// Hash a file or standard input on the server.
    Hash(HashArgs),
    /// Random bytes from the server's generator (RNG Retrieve).
    Rng(RngArgs),
    /// What the server offers: operations, object types, server information (Query).
    Query,
    /// The KMIP versions the server speaks, newest first (Discover Versions).
    DiscoverVersions,
    /// Decode and encode TTLV (hex, binary) and its XML and JSON forms, offline.
    #[command(subcommand)]
    Ttlv(TtlvCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

/// Profile commands.
#[derive(Debug, Subcommand)]
pub(crate) enum ProfileCommand {
    /// Write a profile from the connection flags given (--server, --ca, --cert, --key,
    /// --kmip-version, --server-name); file paths are stored absolute.
    Add {
        /// The profile's name.
        name: String,
        /// Make it the default profile.
        #[arg(long)]
        default: bool,
    },
    /// List the profiles.
    List,
    /// Remove a profile.
    Remove {
        /// The profile's name.
        name: String,
    },
}

/// One object.
#[derive(Debug, Args)]
pub(crate) struct UidArg {
    /// The object's Unique Identifier.
    pub(crate) uid: String,
}

/// Objects.
#[derive(Debug, Args)]
pub(crate) struct UidsArg {
    /// Unique Identifiers; `-` reads them from standard input, one a line (e.g. from
    /// `kmip locate --quiet`).
    #[arg(required = true)]
    pub(crate) uids: Vec<String>,
}

/// What to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CreateKind {
    /// A symmetric key (Create).
    Symmetric,
    /// A public and private key pair (Create Key Pair).
    KeyPair,
    /// Secret data (Create with Object Type Secret Data, where the server offers it).
    Secret,
}

/// `create`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// What to create.
    #[arg(long = "type", value_enum, default_value_t = CreateKind::Symmetric)]
    pub(crate) kind: CreateKind,
    /// Cryptographic Algorithm (AES, HMAC-SHA256, RSA, EC, ...).
    #[arg(long, short)]
    pub(crate) algorithm: Option<String>,
    /// Cryptographic Length in bits.
    #[arg(long, short)]
    pub(crate) length: Option<i32>,
    /// The curve of an EC key pair (P-256, P-384, P-521).
    #[arg(long)]
    pub(crate) curve: Option<String>,
    /// A Name for the object (several allowed; for a key pair the private key gets NAME and
    /// the public key NAME.pub).
    #[arg(long, short)]
    pub(crate) name: Vec<String>,
    /// Cryptographic Usage Mask, names joined by commas (default: encrypt,decrypt for keys,
    /// sign / verify for key pairs).
    #[arg(long)]
    pub(crate) usage: Option<String>,
    /// More attributes, NAME=VALUE (e.g. `x-owner=alice`, `Object Group=db`).
    #[arg(long = "attr", value_name = "NAME=VALUE")]
    pub(crate) attrs: Vec<String>,
}

/// `get`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The object's Unique Identifier.
    pub(crate) uid: String,
    /// Print the key material (hex) on standard output.
    #[arg(long)]
    pub(crate) reveal: bool,
    /// Write the key material (raw bytes, DER, or PEM with --pem) to this file, mode 0600.
    #[arg(long, short, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// The Key Format Type to ask for (raw, pkcs1, pkcs8, x509, transparent-symmetric-key, ...).
    #[arg(long)]
    pub(crate) format: Option<String>,
    /// Write PEM instead of DER (for --format pkcs1, pkcs8, x509 and certificates).
    #[arg(long, requires = "out")]
    pub(crate) pem: bool,
    /// Wrap the key with this key (Key Wrapping Specification, AES key wrap); the wrapped
    /// bytes are what is printed or written.
    #[arg(long, value_name = "UID")]
    pub(crate) wrap_with: Option<String>,
    /// With --wrap-with: wrap the bare key material (Encoding Option No Encoding) instead of
    /// the TTLV-encoded Key Value (the KMIP default).
    #[arg(long, requires = "wrap_with")]
    pub(crate) wrap_raw: bool,
}

/// `locate`.
#[derive(Debug, Args)]
pub(crate) struct LocateArgs {
    /// Name.
    #[arg(long, short)]
    pub(crate) name: Option<String>,
    /// Object Type (symmetric-key, private-key, public-key, secret-data, certificate, ...).
    #[arg(long = "type", value_name = "TYPE")]
    pub(crate) object_type: Option<String>,
    /// State (pre-active, active, deactivated, compromised, destroyed, ...).
    #[arg(long)]
    pub(crate) state: Option<String>,
    /// Cryptographic Algorithm.
    #[arg(long, short)]
    pub(crate) algorithm: Option<String>,
    /// Cryptographic Length.
    #[arg(long, short)]
    pub(crate) length: Option<i32>,
    /// Object Group.
    #[arg(long)]
    pub(crate) group: Option<String>,
    /// Objects whose Initial Date is at or after this date (RFC 3339, e.g.
    /// 2026-01-31T00:00:00Z); with --created-before, a range.
    #[arg(long, value_name = "DATE")]
    pub(crate) created_after: Option<String>,
    /// Objects whose Initial Date is at or before this date.
    #[arg(long, value_name = "DATE")]
    pub(crate) created_before: Option<String>,
    /// Keys due: objects whose Deactivation Date falls between now and now plus this
    /// duration (`30d`, `12h`, `2w`; units s, m, h, d, w), the server's crypto period or the
    /// client's date (combine with --state active for keys still in use).
    #[arg(long, value_name = "DURATION")]
    pub(crate) due_within: Option<String>,
    /// More attributes, NAME=VALUE (custom attributes too: `x-owner=alice`).
    #[arg(long = "attr", value_name = "NAME=VALUE")]
    pub(crate) attrs: Vec<String>,
    /// At most this many identifiers (Maximum Items).
    #[arg(long, value_name = "N")]
    pub(crate) max: Option<i32>,
    /// Skip this many (Offset Items).
    #[arg(long, value_name = "N")]
    pub(crate) offset: Option<i32>,
    /// Every match, asked for in pages of --max (default 1000) until the server has no more.
    #[arg(long)]
    pub(crate) all: bool,
}

/// `revoke`.
#[derive(Debug, Args)]
pub(crate) struct RevokeArgs {
    /// Unique Identifiers; `-` reads them from standard input.
    #[arg(required = true)]
    pub(crate) uids: Vec<String>,
    /// Revocation Reason Code: unspecified, key-compromise, ca-compromise,
    /// affiliation-changed, superseded, cessation-of-operation, privilege-withdrawn.
    #[arg(long, default_value = "unspecified")]
    pub(crate) reason: String,
    /// Revocation Message.
    #[arg(long)]
    pub(crate) message: Option<String>,
    /// When the compromise happened (RFC 3339; key-compromise and ca-compromise only).
    #[arg(long, value_name = "DATE")]
    pub(crate) compromise_date: Option<String>,
}

/// What a file to register holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RegisterKind {
    /// A symmetric key: the raw key bytes.
    Symmetric,
    /// Secret data (a password, a seed): the raw bytes.
    Secret,
    /// A private key: PEM (PKCS#8, PKCS#1 RSA, SEC1 EC) or DER (see --format).
    PrivateKey,
    /// A public key: PEM (SubjectPublicKeyInfo, PKCS#1 RSA) or DER (see --format).
    PublicKey,
    /// An X.509 certificate: PEM or DER.
    Certificate,
}

/// `register`.
#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    /// The file (`-` for standard input).
    pub(crate) file: PathBuf,
    /// What the file holds.
    #[arg(long = "type", value_enum, default_value_t = RegisterKind::Symmetric)]
    pub(crate) kind: RegisterKind,
    /// The Key Format Type of DER input (pkcs8, pkcs1, x509, ec-private-key); PEM input says
    /// its own.
    #[arg(long)]
    pub(crate) format: Option<String>,
    /// Cryptographic Algorithm (default AES for symmetric keys). A private or public key's
    /// algorithm and length go into the Key Block, read from the key itself (RSA, EC on
    /// P-256/384/521, Ed25519) unless given here with --length.
    #[arg(long, short)]
    pub(crate) algorithm: Option<String>,
    /// Cryptographic Length of a private or public key in bits (with --algorithm).
    #[arg(long, short, requires = "algorithm")]
    pub(crate) length: Option<i32>,
    /// The Secret Data Type of a secret (password, seed).
    #[arg(long, default_value = "password")]
    pub(crate) secret_type: String,
    /// A Name (several allowed).
    #[arg(long, short)]
    pub(crate) name: Vec<String>,
    /// Cryptographic Usage Mask, names joined by commas.
    #[arg(long)]
    pub(crate) usage: Option<String>,
    /// More attributes, NAME=VALUE.
    #[arg(long = "attr", value_name = "NAME=VALUE")]
    pub(crate) attrs: Vec<String>,
}

/// `attributes` commands.
#[derive(Debug, Subcommand)]
pub(crate) enum AttributesCommand {
    /// Set Attribute (KMIP 2.1): add the attribute, or replace its single value.
    Set(AttributeEdit),
    /// Add Attribute: one more instance.
    Add(AttributeEdit),
    /// Modify Attribute: a new value for an existing instance (--current picks which).
    Modify(ModifyArgs),
    /// Delete Attribute: NAME deletes every instance (2.x; 1.x the first), NAME=VALUE that one.
    Delete(DeleteArgs),
}

/// One object and one `NAME=VALUE`.
#[derive(Debug, Args)]
pub(crate) struct AttributeEdit {
    /// The object's Unique Identifier.
    pub(crate) uid: String,
    /// The attribute, NAME=VALUE.
    #[arg(value_name = "NAME=VALUE")]
    pub(crate) attribute: String,
}

/// `attributes modify`.
#[derive(Debug, Args)]
pub(crate) struct ModifyArgs {
    /// The object's Unique Identifier.
    pub(crate) uid: String,
    /// The new value, NAME=VALUE.
    #[arg(value_name = "NAME=VALUE")]
    pub(crate) attribute: String,
    /// The value to replace (2.x), when the attribute has several.
    #[arg(long, value_name = "VALUE")]
    pub(crate) current: Option<String>,
}

/// `attributes delete`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The object's Unique Identifier.
    pub(crate) uid: String,
    /// NAME, or NAME=VALUE for one instance.
    #[arg(value_name = "NAME[=VALUE]")]
    pub(crate) attribute: String,
}

/// `rekey`.
#[derive(Debug, Args)]
pub(crate) struct RekeyArgs {
    /// The key to replace.
    pub(crate) uid: String,
    /// Seconds by which the new key's dates are moved (Offset).
    #[arg(long, value_name = "SECONDS")]
    pub(crate) offset: Option<u32>,
}

/// The encryption scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scheme {
    /// AES-GCM with a 16-byte tag; the output is IV (12 bytes) || ciphertext || tag.
    AesGcm,
    /// RSA-OAEP with SHA-256; the output is the ciphertext.
    RsaOaep,
}

/// `encrypt`, `decrypt`.
#[derive(Debug, Args)]
pub(crate) struct CipherArgs {
    /// The key's Unique Identifier.
    pub(crate) uid: String,
    /// The input file (`-`, the default, is standard input).
    #[arg(long = "in", short, default_value = "-", value_name = "FILE")]
    pub(crate) input: PathBuf,
    /// The output file, mode 0600 (`-`, the default, is standard output).
    #[arg(long, short, default_value = "-", value_name = "FILE")]
    pub(crate) out: PathBuf,
    /// The scheme.
    #[arg(long, value_enum, default_value_t = Scheme::AesGcm)]
    pub(crate) scheme: Scheme,
}

/// `sign`.
#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// The private key's Unique Identifier.
    pub(crate) uid: String,
    /// The data (`-` is standard input).
    #[arg(long = "in", short, default_value = "-", value_name = "FILE")]
    pub(crate) input: PathBuf,
    /// Write the signature (raw bytes) here; without it, it is printed in hex.
    #[arg(long, short, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// Digital Signature Algorithm (sha256-with-rsa-encryption, ecdsa-with-sha256,
    /// rsassa-pss, ...); default: what the key's attributes say.
    #[arg(long, short)]
    pub(crate) algorithm: Option<String>,
}

/// `verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The public key's Unique Identifier.
    pub(crate) uid: String,
    /// The data (`-` is standard input).
    #[arg(long = "in", short, default_value = "-", value_name = "FILE")]
    pub(crate) input: PathBuf,
    /// The signature (raw bytes, as `kmip sign --out` writes it).
    #[arg(long, short, value_name = "FILE")]
    pub(crate) signature: PathBuf,
    /// Digital Signature Algorithm, as for `sign`.
    #[arg(long, short)]
    pub(crate) algorithm: Option<String>,
}

/// `mac`.
#[derive(Debug, Args)]
pub(crate) struct MacArgs {
    /// The HMAC key's Unique Identifier.
    pub(crate) uid: String,
    /// The data (`-` is standard input).
    #[arg(long = "in", short, default_value = "-", value_name = "FILE")]
    pub(crate) input: PathBuf,
    /// Write the MAC (raw bytes) here; without it, it is printed in hex.
    #[arg(long, short, value_name = "FILE", conflicts_with = "check")]
    pub(crate) out: Option<PathBuf>,
    /// Verify this MAC (raw bytes) instead (MAC Verify).
    #[arg(long, value_name = "FILE")]
    pub(crate) check: Option<PathBuf>,
}

/// `hash`.
#[derive(Debug, Args)]
pub(crate) struct HashArgs {
    /// Hashing Algorithm (sha-256, sha-384, sha-512, ...).
    #[arg(long, short, default_value = "sha-256")]
    pub(crate) algorithm: String,
    /// The data (`-` is standard input).
    #[arg(long = "in", short, default_value = "-", value_name = "FILE")]
    pub(crate) input: PathBuf,
}

/// `rng`.
#[derive(Debug, Args)]
pub(crate) struct RngArgs {
    /// How many bytes.
    pub(crate) length: i32,
    /// Write the bytes here (mode 0600); without it, they are printed in hex.
    #[arg(long, short, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
}

/// The forms `ttlv` reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TtlvForm {
    /// TTLV bytes in hex (whitespace ignored on input).
    Hex,
    /// TTLV bytes as they are.
    Binary,
    /// The KMIP XML encoding.
    Xml,
    /// The KMIP JSON encoding.
    Json,
    /// A readable tree (output only; byte strings hidden unless --show-secrets).
    Dump,
}

/// `ttlv` commands (no server needed).
#[derive(Debug, Subcommand)]
pub(crate) enum TtlvCommand {
    /// TTLV (hex or binary) to a readable tree, XML or JSON.
    Decode {
        /// The input file (`-`, the default, is standard input).
        #[arg(default_value = "-")]
        input: PathBuf,
        /// The input form.
        #[arg(long, value_enum, default_value_t = TtlvForm::Hex)]
        from: TtlvForm,
        /// The output form.
        #[arg(long, value_enum, default_value_t = TtlvForm::Dump)]
        to: TtlvForm,
        /// Show byte strings in the dump (they may hold key material).
        #[arg(long)]
        show_secrets: bool,
    },
    /// XML or JSON to TTLV (hex or binary).
    Encode {
        /// The input file (`-`, the default, is standard input).
        #[arg(default_value = "-")]
        input: PathBuf,
        /// The input form.
        #[arg(long, value_enum, default_value_t = TtlvForm::Json)]
        from: TtlvForm,
        /// The output form.
        #[arg(long, value_enum, default_value_t = TtlvForm::Hex)]
        to: TtlvForm,
    },
}
