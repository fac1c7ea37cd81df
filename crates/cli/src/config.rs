//! Profiles: named connection settings in a TOML file, and how the settings of one run are
//! chosen.
//!
//! The file is `$KMIP_CONFIG` if set, else `$XDG_CONFIG_HOME/kmip/config.toml`, else
//! `$HOME/.config/kmip/config.toml`:
//!
//! ```toml
//! default = "prod"            # the profile used when no --profile / KMIP_PROFILE is given
//!
//! [profiles.prod]
//! server = "kms.example.com:5696"
//! ca = "/etc/kmip/ca.pem"
//! cert = "/etc/kmip/client.pem"
//! key = "/etc/kmip/client.key"
//! kmip_version = "2.1"        # optional
//! server_name = "kms.example.com"   # optional: the name the server certificate must carry
//! ```
//!
//! Each setting is taken from the first of: the command-line flag, its environment variable
//! (`KMIP_SERVER`, `KMIP_CA`, `KMIP_CERT`, `KMIP_KEY`, `KMIP_VERSION`, `KMIP_SERVER_NAME`;
//! clap reads them), the profile. Relative paths in the file are relative to the file's folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// The profile file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    /// The profile used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) default: Option<String>,
    /// The profiles by name.
    #[serde(default)]
    pub(crate) profiles: BTreeMap<String, Profile>,
}

/// One profile.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Profile {
    /// `HOST:PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) server: Option<String>,
    /// CA certificates (PEM) that the server's certificate must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ca: Option<PathBuf>,
    /// The client certificate (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cert: Option<PathBuf>,
    /// The client key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<PathBuf>,
    /// The KMIP version of requests ("2.1", "1.4", ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) kmip_version: Option<String>,
    /// The name the server's certificate must carry (default: the host of `server`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) server_name: Option<String>,
}

impl Profile {
    /// Each unset field of `self` taken from `other`.
    pub(crate) fn or(self, other: Profile) -> Profile {
        Profile {
            server: self.server.or(other.server),
            ca: self.ca.or(other.ca),
            cert: self.cert.or(other.cert),
            key: self.key.or(other.key),
            kmip_version: self.kmip_version.or(other.kmip_version),
            server_name: self.server_name.or(other.server_name),
        }
    }
}

/// Where the profile file is.
pub(crate) fn config_path(explicit: Option<&Path>) -> Result<PathBuf, CliError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(dir).join("kmip").join("config.toml"));
    }
    if let Some(home) = non_empty("HOME") {
        return Ok(PathBuf::from(home)
            .join(".config")
            .join("kmip")
            .join("config.toml"));
    }
    Err(CliError::Usage(
        "no profile file: set KMIP_CONFIG, XDG_CONFIG_HOME or HOME".to_owned(),
    ))
}

impl ConfigFile {
    /// Reads the file; a missing file is an empty configuration.
    pub(crate) fn load(path: &Path) -> Result<ConfigFile, CliError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ConfigFile::default());
            }
            Err(e) => return Err(CliError::file(path)(e)),
        };
        let mut file: ConfigFile = toml::from_str(&text)
            .map_err(|e| CliError::Input(format!("{}: {}", path.display(), e.message())))?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        for p in file.profiles.values_mut() {
            for f in [&mut p.ca, &mut p.cert, &mut p.key].into_iter().flatten() {
                if f.is_relative() {
                    *f = base.join(&*f);
                }
            }
        }
        Ok(file)
    }

    /// Writes the file (creating its folder), readable by its owner only: it names the key
    /// file.
    pub(crate) fn save(&self, path: &Path) -> Result<(), CliError> {
        let text = toml::to_string_pretty(self)
            .map_err(|e| CliError::Input(format!("cannot write the profile file: {e}")))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(CliError::file(dir))?;
        }
        crate::files::write_private(path, text.as_bytes())
    }

    /// The profile named `name`, or the default one; `None` when none is named and there is no
    /// default. Naming a profile that does not exist is an error.
    pub(crate) fn select(&self, name: Option<&str>) -> Result<Option<Profile>, CliError> {
        match name.or(self.default.as_deref()) {
            None => Ok(None),
            Some(n) => match self.profiles.get(n) {
                Some(p) => Ok(Some(p.clone())),
                None => Err(CliError::Usage(format!("no profile named {n:?}"))),
            },
        }
    }
}
