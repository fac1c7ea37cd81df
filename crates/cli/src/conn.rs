//! The connection settings of one run (flags, environment, profile; see [`crate::config`]) and
//! opening the mutual-TLS connection.

use std::path::PathBuf;
use std::time::Duration;

use kmipd_client::{Client, Connector, TlsOptions};
use kmipd_proto::message::ProtocolVersion;

use crate::cli::Global;
use crate::config::{ConfigFile, Profile, config_path};
use crate::error::CliError;
use crate::files;

/// Everything needed to connect.
#[derive(Debug)]
pub(crate) struct Settings {
    server: String,
    server_name: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    version: ProtocolVersion,
    timeout: Duration,
}

/// The profile made of the connection flags (and their environment variables).
pub(crate) fn flags_profile(g: &Global) -> Profile {
    Profile {
        server: g.server.clone(),
        ca: g.ca.clone(),
        cert: g.cert.clone(),
        key: g.key.clone(),
        kmip_version: g.kmip_version.clone(),
        server_name: g.server_name.clone(),
    }
}

/// A version from `major.minor`, one the tables know.
pub(crate) fn parse_version(text: &str) -> Result<ProtocolVersion, CliError> {
    let bad = || {
        CliError::Usage(format!(
            "{text:?} is not a KMIP version (1.0 .. 1.4, 2.0, 2.1)"
        ))
    };
    let (major, minor) = text.split_once('.').ok_or_else(bad)?;
    let v = ProtocolVersion::new(
        major.parse().map_err(|_| bad())?,
        minor.parse().map_err(|_| bad())?,
    );
    v.spec().map(|_| v).ok_or_else(bad)
}

/// The host part of `HOST:PORT` (`[::1]:5696` gives `::1`).
fn host_of(server: &str) -> &str {
    if let Some(rest) = server.strip_prefix('[')
        && let Some((host, _)) = rest.split_once(']')
    {
        return host;
    }
    server.rsplit_once(':').map_or(server, |(h, _)| h)
}

impl Settings {
    /// Flags over environment over profile.
    pub(crate) fn resolve(g: &Global) -> Result<Settings, CliError> {
        let file = ConfigFile::load(&config_path(g.config.as_deref())?)?;
        let chosen = file.select(g.profile.as_deref())?.unwrap_or_default();
        let p = flags_profile(g).or(chosen);
        let missing = |what: &str, flag: &str| {
            CliError::Usage(format!(
                "no {what}: give {flag} or choose a profile (kmip profile add)"
            ))
        };
        let server = p.server.ok_or_else(|| missing("server", "--server"))?;
        let server_name = p.server_name.unwrap_or_else(|| host_of(&server).to_owned());
        let version = match p.kmip_version.as_deref() {
            Some(v) => parse_version(v)?,
            None => ProtocolVersion::V2_1,
        };
        Ok(Settings {
            ca: p.ca.ok_or_else(|| missing("CA certificate", "--ca"))?,
            cert: p
                .cert
                .ok_or_else(|| missing("client certificate", "--cert"))?,
            key: p.key.ok_or_else(|| missing("client key", "--key"))?,
            server,
            server_name,
            version,
            timeout: Duration::from_secs(g.timeout.max(1)),
        })
    }

    /// Connects, completes the handshake.
    pub(crate) async fn connect(&self) -> Result<Client, CliError> {
        let ca = files::read_input(&self.ca)?;
        let cert = files::read_input(&self.cert)?;
        let key = files::read_input(&self.key)?;
        let connector = Connector::new(
            &ca,
            &cert,
            &key,
            TlsOptions {
                server_name: self.server_name.clone(),
                version: self.version,
                timeout: self.timeout,
                ..TlsOptions::default()
            },
        )?;
        let addr = tokio::time::timeout(self.timeout, tokio::net::lookup_host(&self.server))
            .await
            .map_err(|_| kmipd_client::Error::Timeout("resolving the server's name"))?
            .map_err(kmipd_client::Error::Io)?
            .next()
            .ok_or_else(|| {
                kmipd_client::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{} has no address", self.server),
                ))
            })?;
        Ok(connector.connect(addr).await?)
    }
}
