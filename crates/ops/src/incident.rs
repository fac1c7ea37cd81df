//! Incidents: failures that the operator must hear about and the client must not.
//!
//! A store failure other than a [`StoreError::Conflict`] (a backend I/O error, a poisoned
//! store, a damaged record, a locked store, a missing KEK) and an internal error answer their
//! batch item (or, when the commit fails, every item of the request) General Failure with the
//! fixed text "internal server error" ([`Error::client_message`]): the detail is not the
//! client's business. It is the operator's: for each such failure the engine returns an
//! [`Incident`] (what kind, which operation, which object where known, the detail) with the
//! answer ([`Answer`], from [`crate::Engine::handle`], [`crate::Engine::complete`] and
//! [`crate::Engine::complete_then`]). The server logs each incident and counts it by
//! [`IncidentKind::label`]; the engine itself has no log.
//!
//! Which errors are incidents is decided in one place, [`Error::incident_kind`]. A Conflict
//! is not one: the engine runs the request again ([`crate::Retry`]), and giving up is an
//! ordinary, retryable answer.

use kmipd_proto::spec;
use kmipd_proto::tag;
use kmipd_store::StoreError;
use kmipd_ttlv::Ttlv;

use crate::error::Error;

/// A response and the incidents met while computing it.
#[derive(Debug)]
pub struct Answer {
    /// The Response Message.
    pub response: Ttlv,
    /// What the operator must hear about (empty almost always).
    pub incidents: Vec<Incident>,
    /// The server-to-client messages (Put, Notify) the committed changes call for, for the
    /// configured subscribers (`push.rs`); empty unless the commit succeeded.
    pub pushes: Vec<crate::push::Push>,
}

impl Answer {
    /// An answer without incidents.
    pub fn clean(response: Ttlv) -> Answer {
        Answer {
            response,
            incidents: Vec::new(),
            pushes: Vec::new(),
        }
    }
}

/// What went wrong, as a fixed label for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncidentKind {
    /// The store's backend failed (I/O, a poisoned store, a lock).
    StoreBackend,
    /// A stored record could not be read back (checksum, format, unwrap).
    StoreCorrupt,
    /// The store is locked (no KEK supplied yet).
    StoreLocked,
    /// A record names a KEK the store does not hold.
    StoreKek,
    /// Something that should not happen happened.
    Internal,
}

impl IncidentKind {
    /// Every kind (for a metric that shows each from zero).
    pub const ALL: [IncidentKind; 5] = [
        IncidentKind::StoreBackend,
        IncidentKind::StoreCorrupt,
        IncidentKind::StoreLocked,
        IncidentKind::StoreKek,
        IncidentKind::Internal,
    ];

    /// The label (`kmipd_internal_errors_total{kind=...}`).
    pub fn label(self) -> &'static str {
        match self {
            IncidentKind::StoreBackend => "store_backend",
            IncidentKind::StoreCorrupt => "store_corrupt",
            IncidentKind::StoreLocked => "store_locked",
            IncidentKind::StoreKek => "store_kek",
            IncidentKind::Internal => "internal",
        }
    }
}

/// One failure for the operator's log. Never holds key material: the detail is an error's
/// text (a store error or an internal error's fixed text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// What went wrong.
    pub kind: IncidentKind,
    /// The operation (an Operation enumeration value), when one batch item is concerned.
    pub operation: Option<u32>,
    /// The object's Unique Identifier, where known.
    pub object: Option<String>,
    /// The detail (for the operator only).
    pub detail: String,
}

impl Incident {
    /// The incident for `err` met by `operation`, if `err` is one (see
    /// [`Error::incident_kind`]). The object is the damaged record's, else `object`.
    pub(crate) fn of(err: &Error, operation: Option<u32>, object: Option<&str>) -> Option<Self> {
        let kind = err.incident_kind()?;
        let object = match err {
            Error::Store(StoreError::Corrupt { uid, .. }) => Some(uid.clone()),
            _ => object.map(str::to_owned),
        };
        Some(Incident {
            kind,
            operation,
            object,
            detail: err.to_string(),
        })
    }

    /// The operation's name (`Get`), or `-` when no single operation is concerned.
    pub fn operation_name(&self) -> String {
        self.operation.map_or_else(
            || "-".to_owned(),
            |o| {
                spec::enum_of_tag(tag::OPERATION.value())
                    .and_then(|e| e.canonical_name(o))
                    .map_or_else(|| format!("0x{o:08X}"), str::to_owned)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmipd_proto::enums::operation;

    #[test]
    fn only_store_failures_other_than_conflict_and_internal_errors_are_incidents() {
        let corrupt = Error::Store(StoreError::Corrupt {
            uid: "k1".into(),
            reason: "checksum".into(),
        });
        let i = Incident::of(&corrupt, Some(operation::GET), Some("other")).unwrap();
        assert_eq!(i.kind, IncidentKind::StoreCorrupt);
        assert_eq!(
            i.object.as_deref(),
            Some("k1"),
            "the damaged record names itself"
        );
        assert!(i.detail.contains("checksum"), "{}", i.detail);
        assert_eq!(i.operation_name(), "Get");
        let backend = Error::Store(StoreError::Backend("disk gone".into()));
        let i = Incident::of(&backend, None, Some("k2")).unwrap();
        assert_eq!(
            (i.kind.label(), i.object.as_deref()),
            ("store_backend", Some("k2"))
        );
        assert_eq!(i.operation_name(), "-");
        assert_eq!(
            Incident::of(&Error::Internal("x"), None, None).map(|i| i.kind),
            Some(IncidentKind::Internal)
        );
        let conflict = Error::Store(StoreError::Conflict { uid: "k".into() });
        assert!(Incident::of(&conflict, None, None).is_none());
        assert!(Incident::of(&Error::NotFound, None, None).is_none());
        assert!(Incident::of(&Error::GeneralFailure("tag length"), None, None).is_none());
    }
}
