//! `[hsm]` configuration: where the PKCS#11 module, the token and the master key are, and where
//! the PIN comes from.
//!
//! The PIN is never part of the configuration text: the configuration names an environment
//! variable or a file that holds it, so a config file can be shared, logged or checked in
//! without leaking the PIN.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::error::{HsmError, Result};

/// The `[hsm]` table of kmipd's TOML configuration.
///
/// Exactly one of `token_label` and `slot` selects the token; exactly one of `pin_env` and
/// `pin_file` gives the user PIN. Unknown keys are rejected.
///
/// ```toml
/// [hsm]
/// module = "/usr/lib/softhsm/libsofthsm2.so"
/// token_label = "kmipd"
/// key_label = "kmipd-master"
/// pin_file = "/var/lib/kmipd/pin"
/// softhsm2_conf = "/var/lib/kmipd/softhsm2.conf"
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HsmConfig {
    /// Path of the PKCS#11 shared library.
    pub module: PathBuf,
    /// Label of the token that holds the master key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_label: Option<String>,
    /// Slot id of the token, instead of `token_label`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u64>,
    /// Label of the master key. Rotated versions are labelled `<key_label>.v2`, `.v3`, ...
    pub key_label: String,
    /// Name of an environment variable that holds the user PIN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_env: Option<String>,
    /// File that holds the user PIN (one line; a trailing newline is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_file: Option<PathBuf>,
    /// SoftHSM2 only: the instance's `softhsm2.conf`. The process must run with
    /// `SOFTHSM2_CONF` set to it (see [`crate::ensure_softhsm_env`]); opening checks that it
    /// does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub softhsm2_conf: Option<PathBuf>,
}

/// Where the token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TokenSelector {
    Label(String),
    Slot(u64),
}

impl HsmConfig {
    /// Makes relative paths (`module`, `pin_file`, `softhsm2_conf`) relative to `base`, the
    /// directory of the configuration file.
    pub fn resolve_relative_to(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.module);
        if let Some(p) = self.pin_file.as_mut() {
            fix(p);
        }
        if let Some(p) = self.softhsm2_conf.as_mut() {
            fix(p);
        }
    }

    /// For SoftHSM2 configurations (`softhsm2_conf` set): makes sure the process runs with
    /// `SOFTHSM2_CONF` pointing at it, re-executing the process if not (see
    /// [`crate::ensure_softhsm_env`]); returns only when it does, or on failure. Does nothing
    /// for other modules. Call it first thing in `main`, before any thread or runtime starts.
    pub fn ensure_process_env(&self) -> Result<()> {
        match &self.softhsm2_conf {
            Some(conf) => crate::softhsm::ensure_softhsm_env(conf),
            None => Ok(()),
        }
    }

    /// Checks the combinations serde cannot: one token selector, one PIN source, a key label.
    pub fn validate(&self) -> Result<()> {
        self.token()?;
        self.pin_source_desc()?;
        if self.key_label.is_empty() {
            return Err(HsmError::Config(
                "key_label is empty: name the master key".into(),
            ));
        }
        if self.key_label.len() > 200 {
            return Err(HsmError::Config(
                "key_label is longer than 200 bytes".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn token(&self) -> Result<TokenSelector> {
        match (&self.token_label, self.slot) {
            (Some(label), None) => Ok(TokenSelector::Label(label.clone())),
            (None, Some(slot)) => Ok(TokenSelector::Slot(slot)),
            (Some(_), Some(_)) => Err(HsmError::Config(
                "both token_label and slot are set: keep one of them".into(),
            )),
            (None, None) => Err(HsmError::Config(
                "neither token_label nor slot is set: set one of them".into(),
            )),
        }
    }

    /// "file /x/pin" or "environment variable NAME", for error messages.
    pub(crate) fn pin_source_desc(&self) -> Result<String> {
        match (&self.pin_env, &self.pin_file) {
            (Some(var), None) => Ok(format!("environment variable {var}")),
            (None, Some(file)) => Ok(format!("file {}", file.display())),
            (Some(_), Some(_)) => Err(HsmError::Config(
                "both pin_env and pin_file are set: keep one of them".into(),
            )),
            (None, None) => Err(HsmError::Config(
                "neither pin_env nor pin_file is set: name where the user PIN is (the PIN itself \
                 never goes into the configuration)"
                    .into(),
            )),
        }
    }

    /// Reads the user PIN from its source. A trailing `\n` or `\r\n` is removed.
    pub fn read_pin(&self) -> Result<SecretString> {
        let source_desc = self.pin_source_desc()?;
        let unavailable = |reason: String| HsmError::PinUnavailable {
            source_desc: source_desc.clone(),
            reason,
        };
        let mut pin = match (&self.pin_env, &self.pin_file) {
            (Some(var), _) => std::env::var(var).map_err(|e| unavailable(e.to_string()))?,
            (_, Some(file)) => {
                std::fs::read_to_string(file).map_err(|e| unavailable(e.to_string()))?
            }
            (None, None) => return Err(unavailable("no source configured".into())),
        };
        if pin.ends_with('\n') {
            pin.pop();
            if pin.ends_with('\r') {
                pin.pop();
            }
        }
        if pin.is_empty() {
            return Err(unavailable("it is empty".into()));
        }
        Ok(SecretString::from(pin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn parse(s: &str) -> std::result::Result<HsmConfig, toml::de::Error> {
        toml::from_str(s)
    }

    #[test]
    fn parses_and_validates() {
        let c =
            parse("module = \"/m.so\"\ntoken_label = \"t\"\nkey_label = \"k\"\npin_env = \"P\"\n")
                .unwrap();
        c.validate().unwrap();
        assert_eq!(c.token().unwrap(), TokenSelector::Label("t".into()));
    }

    #[test]
    fn embeds_as_a_table_of_the_server_config() {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Server {
            listen: String,
            hsm: HsmConfig,
        }
        let s: Server = toml::from_str(
            "listen = \"127.0.0.1:5696\"\n[hsm]\nmodule = \"/m.so\"\nslot = 0\n\
             key_label = \"k\"\npin_file = \"pin\"\n",
        )
        .unwrap();
        assert_eq!(s.listen, "127.0.0.1:5696");
        assert_eq!(s.hsm.slot, Some(0));
        let e = toml::from_str::<Server>(
            "listen = \"x\"\n[hsm]\nmodule = \"/m.so\"\nkey_label = \"k\"\nmodul = 1\n",
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("unknown field `modul`"), "{e}");
    }

    #[test]
    fn rejects_unknown_keys_and_a_pin_in_the_text() {
        let e =
            parse("module = \"/m.so\"\ntoken_label = \"t\"\nkey_label = \"k\"\npin = \"1234\"\n")
                .unwrap_err();
        assert!(e.to_string().contains("unknown field `pin`"), "{e}");
    }

    #[test]
    fn one_token_selector_and_one_pin_source() {
        let mut c = parse("module = \"/m.so\"\nkey_label = \"k\"\npin_env = \"P\"\n").unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("neither token_label nor slot")
        );
        c.slot = Some(1);
        c.token_label = Some("t".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("both token_label and slot")
        );
        c.token_label = None;
        c.pin_file = Some("/p".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("both pin_env and pin_file")
        );
    }

    #[test]
    fn pin_file_trailing_newline_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pin");
        std::fs::write(&f, "123456\r\n").unwrap();
        let c = HsmConfig {
            module: "/m.so".into(),
            token_label: Some("t".into()),
            slot: None,
            key_label: "k".into(),
            pin_env: None,
            pin_file: Some(f),
            softhsm2_conf: None,
        };
        assert_eq!(c.read_pin().unwrap().expose_secret(), "123456");
    }

    #[test]
    fn relative_paths_resolve_against_the_config_dir() {
        let mut c = parse(
            "module = \"/m.so\"\nslot = 3\nkey_label = \"k\"\npin_file = \"pin\"\n\
             softhsm2_conf = \"softhsm2.conf\"\n",
        )
        .unwrap();
        c.resolve_relative_to(Path::new("/inst"));
        assert_eq!(c.pin_file.as_deref(), Some(Path::new("/inst/pin")));
        assert_eq!(
            c.softhsm2_conf.as_deref(),
            Some(Path::new("/inst/softhsm2.conf"))
        );
        assert_eq!(c.module, Path::new("/m.so"));
    }
}
