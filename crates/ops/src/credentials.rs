//! The Username and Password and Device credentials a request header may carry (KMIP 1.4
//! §2.1.2, 2.1 §2.2), checked against the server's configured list.
//!
//! The identity of a request comes from its verified client certificate; a credential never
//! replaces it. When the server has credentials configured ([`Credentials`], `[credentials]`
//! of the configuration), a request that carries a Username and Password or Device credential
//! must present one of them, with its password (an Argon2 hash, PHC string, is stored; never
//! the password); otherwise every item fails with Authentication Not Successful. A verified
//! credential **narrows** the certificate identity for that request (`tickets.rs`,
//! [`crate::tickets::Narrowing`]): objects it creates carry its label, and a request of the
//! same certificate identity under another credential may not touch them (Permission Denied:
//! the KMIP "default" Operation Policy, allowed to the owner only). The certificate identity
//! without a credential keeps every right over them. A credential never gives a right the
//! certificate identity does not have.
//!
//! When no credential is configured, header credentials are not checked and change nothing
//! (clients such as PyKMIP send their configured username and password to every server).

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use kmipd_proto::reader::StructReader;
use kmipd_proto::tag;
use kmipd_ttlv::Ttlv;

use crate::error::{Error, Result};

/// One accepted Username and Password credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The Username.
    pub username: String,
    /// The Argon2 hash of the password (PHC string, `$argon2id$v=19$...`).
    pub password_hash: String,
}

/// One accepted Device credential: each field given here must match the credential's; the
/// password is checked against its hash when one is given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    /// The name the device is known by (the label of the objects it creates).
    pub name: String,
    /// Device Serial Number.
    pub serial_number: Option<String>,
    /// Device Identifier.
    pub device_identifier: Option<String>,
    /// Network Identifier.
    pub network_identifier: Option<String>,
    /// Machine Identifier.
    pub machine_identifier: Option<String>,
    /// Media Identifier.
    pub media_identifier: Option<String>,
    /// The Argon2 hash of the device's Password (PHC string), if it must send one.
    pub password_hash: Option<String>,
}

/// The credentials the server accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// Username and Password credentials.
    pub users: Vec<User>,
    /// Device credentials.
    pub devices: Vec<Device>,
}

impl Credentials {
    /// True when nothing is configured (credentials are then not checked).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.devices.is_empty()
    }

    /// Refuses an entry that can never match: an unreadable password hash, an empty name, a
    /// device that names no field.
    pub fn validate(&self) -> Result<(), String> {
        for u in &self.users {
            if u.username.is_empty() {
                return Err("credentials: a user without username".to_owned());
            }
            PasswordHash::new(&u.password_hash)
                .map_err(|e| format!("credentials: user {:?}: password_hash: {e}", u.username))?;
        }
        for d in &self.devices {
            if d.name.is_empty() {
                return Err("credentials: a device without name".to_owned());
            }
            if d.fields().iter().all(|(_, v)| v.is_none()) && d.password_hash.is_none() {
                return Err(format!("credentials: device {:?} names no field", d.name));
            }
            if let Some(h) = &d.password_hash {
                PasswordHash::new(h)
                    .map_err(|e| format!("credentials: device {:?}: password_hash: {e}", d.name))?;
            }
        }
        Ok(())
    }

    /// Checks a Credential Value of type Username and Password or Device: `Ok(None)` when no
    /// credential is configured (not checked), `Ok(Some(label))` for an accepted one
    /// (`user:NAME`, `device:NAME`), Authentication Not Successful otherwise.
    pub(crate) fn verify(&self, value: &Ttlv) -> Result<Option<String>> {
        if self.is_empty() {
            return Ok(None);
        }
        let r = StructReader::new(value, tag::CREDENTIAL_VALUE)
            .map_err(|_| Error::AuthenticationNotSuccessful)?;
        let text = |t| r.text(t).map_err(|_| Error::AuthenticationNotSuccessful);
        let password = text(tag::PASSWORD)?;
        if let Some(username) = text(tag::USERNAME)? {
            let user = self
                .users
                .iter()
                .find(|u| u.username == username)
                .ok_or(Error::AuthenticationNotSuccessful)?;
            return match password {
                Some(p) if password_matches(&user.password_hash, p) => {
                    Ok(Some(format!("user:{username}")))
                }
                _ => Err(Error::AuthenticationNotSuccessful),
            };
        }
        let sent = [
            text(tag::DEVICE_SERIAL_NUMBER)?,
            text(tag::DEVICE_IDENTIFIER)?,
            text(tag::NETWORK_IDENTIFIER)?,
            text(tag::MACHINE_IDENTIFIER)?,
            text(tag::MEDIA_IDENTIFIER)?,
        ];
        let device = self
            .devices
            .iter()
            .find(|d| {
                d.fields()
                    .iter()
                    .zip(sent)
                    .all(|((_, want), got)| want.is_none_or(|w| Some(w) == got))
            })
            .ok_or(Error::AuthenticationNotSuccessful)?;
        match (&device.password_hash, password) {
            (None, _) => Ok(Some(format!("device:{}", device.name))),
            (Some(h), Some(p)) if password_matches(h, p) => {
                Ok(Some(format!("device:{}", device.name)))
            }
            (Some(_), _) => Err(Error::AuthenticationNotSuccessful),
        }
    }
}

impl Device {
    fn fields(&self) -> [(&'static str, Option<&str>); 5] {
        [
            ("serial_number", self.serial_number.as_deref()),
            ("device_identifier", self.device_identifier.as_deref()),
            ("network_identifier", self.network_identifier.as_deref()),
            ("machine_identifier", self.machine_identifier.as_deref()),
            ("media_identifier", self.media_identifier.as_deref()),
        ]
    }
}

/// Whether `password` matches the Argon2 PHC string `hash` (an unreadable hash matches
/// nothing).
fn password_matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// The Argon2id PHC string of `password` with a fresh salt, at the given cost (memory in KiB,
/// iterations): for `kmipd` tooling and tests. Deployments use the defaults of
/// [`argon2::Params`] or more.
pub fn hash_password(password: &str, memory_kib: u32, iterations: u32) -> Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let params = argon2::Params::new(memory_kib, iterations, 1, None)
        .map_err(|_| Error::InvalidField("Argon2 parameters"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::generate(&mut OsRng);
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| Error::Internal("password hash"))
}

#[cfg(test)]
mod tests {
    use kmipd_proto::build;
    use kmipd_proto::tag;

    use super::{Credentials, Device, User, hash_password};
    use crate::error::Error;

    fn value(fields: Vec<kmipd_ttlv::Ttlv>) -> kmipd_ttlv::Ttlv {
        build::structure(tag::CREDENTIAL_VALUE, fields)
    }

    fn configured() -> Credentials {
        Credentials {
            users: vec![User {
                username: "fred".into(),
                password_hash: hash_password("pw1", 64, 1).unwrap(),
            }],
            devices: vec![Device {
                name: "d1".into(),
                device_identifier: Some("dev1".into()),
                serial_number: Some("sn1".into()),
                password_hash: Some(hash_password("dpw", 64, 1).unwrap()),
                ..Device::default()
            }],
        }
    }

    #[test]
    fn users_and_devices_are_checked_against_their_hashes() {
        let c = configured();
        c.validate().unwrap();
        let user = |u: &str, p: &str| {
            value(vec![
                build::text(tag::USERNAME, u),
                build::text(tag::PASSWORD, p),
            ])
        };
        assert_eq!(
            c.verify(&user("fred", "pw1")).unwrap().as_deref(),
            Some("user:fred")
        );
        assert!(matches!(
            c.verify(&user("fred", "pw2")),
            Err(Error::AuthenticationNotSuccessful)
        ));
        assert!(matches!(
            c.verify(&user("barney", "pw1")),
            Err(Error::AuthenticationNotSuccessful)
        ));
        let device = |sn: &str, p: &str| {
            value(vec![
                build::text(tag::DEVICE_SERIAL_NUMBER, sn),
                build::text(tag::PASSWORD, p),
                build::text(tag::DEVICE_IDENTIFIER, "dev1"),
                build::text(tag::NETWORK_IDENTIFIER, "any"),
            ])
        };
        assert_eq!(
            c.verify(&device("sn1", "dpw")).unwrap().as_deref(),
            Some("device:d1")
        );
        assert!(c.verify(&device("sn2", "dpw")).is_err());
        assert!(c.verify(&device("sn1", "nope")).is_err());
        // Nothing configured: not checked.
        assert_eq!(
            Credentials::default().verify(&user("x", "y")).unwrap(),
            None
        );
    }

    /// A 1.4 request of one item with a Username and Password credential (when given).
    fn request(
        user: Option<(&str, &str)>,
        op: u32,
        payload: Vec<kmipd_ttlv::Ttlv>,
    ) -> kmipd_ttlv::Ttlv {
        let mut req = crate::engine::testing::request(1, 4, op, payload);
        if let (Some((u, p)), kmipd_ttlv::Value::Structure(items)) = (user, &mut req.value)
            && let kmipd_ttlv::Value::Structure(header) = &mut items[0].value
        {
            let credential = build::structure(
                tag::CREDENTIAL,
                vec![
                    build::enumeration(
                        tag::CREDENTIAL_TYPE,
                        kmipd_proto::enums::credential_type::USERNAME_AND_PASSWORD,
                    ),
                    value(vec![
                        build::text(tag::USERNAME, u),
                        build::text(tag::PASSWORD, p),
                    ]),
                ],
            );
            header.insert(1, build::structure(tag::AUTHENTICATION, vec![credential]));
        }
        req
    }

    #[test]
    fn a_credential_narrows_its_certificate_identity_and_never_widens_it() {
        use kmipd_proto::enums::{operation as op, result_reason as rr, result_status as rs};
        let mut c = configured();
        c.users.push(User {
            username: "barney".into(),
            password_hash: hash_password("pw2", 64, 1).unwrap(),
        });
        let engine = crate::Engine::new(
            std::sync::Arc::new(kmipd_store::MemoryStore::new()),
            crate::EngineConfig {
                credentials: c,
                ..crate::EngineConfig::default()
            },
        );
        let a = crate::Principal::new("a");
        let send = |who: &crate::Principal, user, op, payload| {
            crate::engine::testing::first_item(
                &engine.handle_message(who, &request(user, op, payload)),
            )
        };
        let (status, _, payload) = send(
            &a,
            Some(("fred", "pw1")),
            op::CREATE,
            vec![
                build::enumeration(tag::OBJECT_TYPE, 2),
                build::structure(
                    tag::TEMPLATE_ATTRIBUTE,
                    vec![
                        kmipd_proto::attributes::Attribute::std(
                            tag::CRYPTOGRAPHIC_ALGORITHM,
                            kmipd_ttlv::Value::Enumeration(3),
                        )
                        .to_v1(None),
                        kmipd_proto::attributes::Attribute::std(
                            tag::CRYPTOGRAPHIC_LENGTH,
                            kmipd_ttlv::Value::Integer(128),
                        )
                        .to_v1(None),
                    ],
                ),
            ],
        );
        assert_eq!(status, rs::SUCCESS);
        let uid = kmipd_proto::reader::StructReader::any(&payload.unwrap())
            .unwrap()
            .req_text(tag::UNIQUE_IDENTIFIER)
            .unwrap()
            .to_owned();
        let get = || vec![build::unique_identifier(uid.clone())];
        assert_eq!(
            send(&a, Some(("fred", "pw1")), op::GET, get()).0,
            rs::SUCCESS
        );
        // Another credential of the same certificate: refused.
        let (s, r, _) = send(&a, Some(("barney", "pw2")), op::GET, get());
        assert_eq!((s, r), (rs::OPERATION_FAILED, Some(rr::PERMISSION_DENIED)));
        // A wrong password: every item fails.
        let (s, r, _) = send(&a, Some(("fred", "nope")), op::GET, get());
        assert_eq!(
            (s, r),
            (
                rs::OPERATION_FAILED,
                Some(rr::AUTHENTICATION_NOT_SUCCESSFUL)
            )
        );
        // The certificate identity itself keeps its rights; another certificate with Fred's
        // password gets nothing.
        assert_eq!(send(&a, None, op::GET, get()).0, rs::SUCCESS);
        let (s, r, _) = send(
            &crate::Principal::new("b"),
            Some(("fred", "pw1")),
            op::GET,
            get(),
        );
        assert_eq!((s, r), (rs::OPERATION_FAILED, Some(rr::ITEM_NOT_FOUND)));
    }

    #[test]
    fn unusable_entries_are_refused() {
        let mut c = configured();
        c.users[0].password_hash = "plain".into();
        assert!(c.validate().is_err());
        let c = Credentials {
            devices: vec![Device {
                name: "d".into(),
                ..Device::default()
            }],
            ..Credentials::default()
        };
        assert!(c.validate().is_err());
    }
}
