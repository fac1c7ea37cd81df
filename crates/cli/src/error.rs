//! Errors of `kmip` and the exit code of each kind (documented in `docs/cli.md`).
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the server answered a KMIP failure (its Result Reason and Message are printed) |
//! | 2 | bad usage: unknown command or flag, missing argument, no server configured |
//! | 3 | TLS or connection failure: a certificate or key TLS cannot use, a refused handshake, a timeout |
//! | 4 | local failure: a file that cannot be read or written, bad input, a bad profile file |
//! | 5 | the server's response is not what the request calls for |
//! | 6 | `verify` or `mac --check`: the signature or MAC does not match |

use kmipd_proto::spec;

/// Success.
pub(crate) const EXIT_OK: u8 = 0;
/// The server answered a KMIP failure.
pub(crate) const EXIT_KMIP: u8 = 1;
/// Bad usage (clap's own code for usage errors is 2 as well).
pub(crate) const EXIT_USAGE: u8 = 2;
/// TLS or connection failure.
pub(crate) const EXIT_CONNECTION: u8 = 3;
/// Local failure (files, input, configuration file).
pub(crate) const EXIT_LOCAL: u8 = 4;
/// A response that does not fit the request.
pub(crate) const EXIT_RESPONSE: u8 = 5;
/// A signature or MAC that does not match.
pub(crate) const EXIT_INVALID: u8 = 6;

/// What can go wrong in `kmip`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Bad usage that clap cannot see (a missing server, a bad `NAME=VALUE`).
    #[error("{0}")]
    Usage(String),
    /// A client failure: a KMIP failure, TLS, the connection, the response.
    #[error("{}", describe_client_error(.0))]
    Client(#[from] kmipd_client::Error),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Bad local input (a file's contents, a profile file, a value).
    #[error("{0}")]
    Input(String),
    /// The response lacks what the request calls for.
    #[error("unexpected response: {0}")]
    Response(String),
    /// A signature or MAC that does not match.
    #[error("{0}")]
    Invalid(String),
}

impl CliError {
    /// The process exit code for this error.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::File { .. } | CliError::Input(_) => EXIT_LOCAL,
            CliError::Response(_) => EXIT_RESPONSE,
            CliError::Invalid(_) => EXIT_INVALID,
            CliError::Client(e) => match e {
                kmipd_client::Error::Kmip { .. } => EXIT_KMIP,
                kmipd_client::Error::Pem { .. }
                | kmipd_client::Error::Tls(_)
                | kmipd_client::Error::ServerName(_)
                | kmipd_client::Error::Io(_)
                | kmipd_client::Error::Timeout(_) => EXIT_CONNECTION,
                kmipd_client::Error::Frame(_)
                | kmipd_client::Error::Proto(_)
                | kmipd_client::Error::Unexpected(_) => EXIT_RESPONSE,
                kmipd_client::Error::Encode(_) => EXIT_LOCAL,
            },
        }
    }

    /// A file error for `path`.
    pub(crate) fn file(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
        move |source| CliError::File {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The name of an enumeration value from the spec tables ("Item Not Found"), or its hex value.
pub(crate) fn enum_name(table: &'static spec::EnumDef, value: u32) -> String {
    table
        .entry(value)
        .map_or_else(|| format!("0x{value:08X}"), |e| e.name.to_owned())
}

/// One line for a client error; a KMIP failure reads
/// `KMIP failure: Operation Failed: Item Not Found: <Result Message>`.
fn describe_client_error(e: &kmipd_client::Error) -> String {
    match e {
        kmipd_client::Error::Kmip {
            status,
            reason,
            message,
        } => {
            let mut line = String::from("KMIP failure: ");
            line.push_str(&table_name("Result Status", *status));
            if let Some(r) = reason {
                line.push_str(": ");
                line.push_str(&table_name("Result Reason", *r));
            }
            if let Some(m) = message.as_deref().filter(|m| !m.is_empty()) {
                line.push_str(": ");
                line.push_str(m);
            }
            line
        }
        kmipd_client::Error::Io(io) => format!("connection failed: {io}"),
        other => other.to_string(),
    }
}

fn table_name(table: &str, value: u32) -> String {
    match spec::enum_by_name(table) {
        Some(t) => enum_name(t, value),
        None => format!("0x{value:08X}"),
    }
}
