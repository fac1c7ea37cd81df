//! The settings `kmipd admin reload` changes while kmipd serves: `[roles]` (who has which role,
//! [`kmipd_ops::access`]) and `[policy]` (the engine's server policy, and the dual control of
//! the key hierarchy's acts, [`crate::approval`]). Everything else in the
//! configuration needs a restart (or SIGHUP, for `[tls]`).
//!
//! A reload reads the configuration file again, validates all of it, and only then swaps the
//! new roles in (each request takes the roles of the moment it arrives, so a role change
//! applies from a client's next request, without reconnecting). A file that does not load
//! changes nothing.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use kmipd_ops::access::{CertNames, RoleAssignments};
use kmipd_ops::{Engine, Principal};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::Config;

/// The reloadable settings of one server.
#[derive(Debug)]
pub struct Settings {
    source: Option<PathBuf>,
    roles: RwLock<Arc<RoleAssignments>>,
    dual_commands: RwLock<Vec<String>>,
    engine: Engine,
}

impl Settings {
    /// The settings of `config` (read again from `config.source` on reload); its policy is
    /// applied to `engine` now.
    pub fn new(config: &Config, engine: Engine) -> Result<Settings, String> {
        engine.set_policy(config.policy()?);
        Ok(Settings {
            source: config.source.clone(),
            roles: RwLock::new(Arc::new(config.role_assignments())),
            dual_commands: RwLock::new(config.dual_control_commands()?),
            engine,
        })
    }

    /// The principal of a client with these certificate names, under the current roles.
    pub fn principal(&self, names: &CertNames) -> Principal {
        let roles = self
            .roles
            .read()
            .map_or_else(|p| Arc::clone(&p.into_inner()), |r| Arc::clone(&r));
        roles.principal(names)
    }

    /// Whether the admin command `act` needs dual control (`policy.dual_control_commands`).
    pub fn needs_dual_control(&self, act: &str) -> bool {
        self.dual_commands.read().map_or_else(
            |p| p.into_inner().iter().any(|c| c == act),
            |c| c.iter().any(|c| c == act),
        )
    }

    /// The dual control window (`policy.dual_control_window`), in seconds.
    pub fn dual_control_window(&self) -> i64 {
        self.engine
            .policy()
            .dual_control_window
            .unwrap_or(kmipd_ops::dual::DEFAULT_WINDOW)
    }

    /// Reads the configuration file again and applies its `[roles]` and `[policy]`; the line
    /// `kmipd admin reload` prints, or why nothing changed.
    pub fn reload(&self) -> Result<String, String> {
        let path = self
            .source
            .as_ref()
            .ok_or("this server was not started from a configuration file")?;
        let config = Config::load(path).map_err(|e| e.to_string())?;
        self.apply(&config)?;
        let r = config.role_assignments();
        let p = self.engine.policy();
        Ok(format!(
            "reloaded {}: roles ({} administrator, {} operator, {} auditor patterns, {} scopes), \
             policy ({}, {} default usage masks, {} crypto periods), dual control ({} object \
             groups{}, window {}s, key hierarchy acts: {})",
            path.display(),
            r.administrator.len(),
            r.operator.len(),
            r.auditor.len(),
            r.scopes.len(),
            p.allow.as_ref().map_or_else(
                || "no algorithm rule".to_owned(),
                |a| format!("{} allowed algorithm rules", a.len())
            ),
            p.usage_masks.len(),
            p.crypto_periods.len(),
            p.dual_control_groups.len(),
            if p.dual_control_groups.is_empty() {
                String::new()
            } else {
                format!(" {}", p.dual_control_groups.join(","))
            },
            p.dual_control_window
                .unwrap_or(kmipd_ops::dual::DEFAULT_WINDOW),
            if config.policy.dual_control_commands.is_empty() {
                "none".to_owned()
            } else {
                config.policy.dual_control_commands.join(",")
            },
        ))
    }

    /// Applies the reloadable settings of a loaded (validated) configuration.
    pub fn apply(&self, config: &Config) -> Result<(), String> {
        let roles = config.role_assignments();
        roles.validate()?;
        let policy = config.policy()?;
        let commands = config.dual_control_commands()?;
        let mut current = self
            .roles
            .write()
            .map_err(|_| "roles lock poisoned".to_owned())?;
        *current = Arc::new(roles);
        drop(current);
        self.engine.set_policy(policy);
        let mut dual = self
            .dual_commands
            .write()
            .map_err(|_| "dual control lock poisoned".to_owned())?;
        *dual = commands;
        Ok(())
    }
}

/// The names of a verified client certificate (DER) that role patterns match, with
/// `identity` (already derived per `[identity] source`).
pub fn cert_names(der: &[u8], identity: &str) -> CertNames {
    let mut names = CertNames {
        identity: identity.to_owned(),
        ..CertNames::default()
    };
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return names;
    };
    let subject = cert.subject();
    names.subject = subject.to_string();
    names.cn = subject
        .iter_common_name()
        .filter_map(|a| a.as_str().ok().map(str::to_owned))
        .collect();
    names.ou = subject
        .iter_organizational_unit()
        .filter_map(|a| a.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                    names.san.push((*s).to_owned());
                }
                _ => {}
            }
        }
    }
    names
}
