//! The key lifecycle (KMIP 1.4 §3.22 / 2.1 §4.57 State, and the state diagram): pure functions
//! from (state, event) to the next state. Operations call these and never set State by hand.
//!
//! The specification numbers the permitted transitions and adds "Only the transitions described
//! above are permitted"; this table is exactly that list (2.1 §4.57 items 2-10):
//!
//! | from \ event | Activate | Revoke (compromise) | Revoke (other) | Destroy |
//! |---|---|---|---|---|
//! | Pre-Active | Active (4) | Compromised (3) | refused | Destroyed (2) |
//! | Active | refused | Compromised (5) | Deactivated (6) | refused |
//! | Deactivated | refused | Compromised (8) | refused | Destroyed (7) |
//! | Compromised | refused | refused | refused | Destroyed Compromised (9) |
//! | Destroyed | refused | Destroyed Compromised (10) | refused | refused |
//! | Destroyed Compromised | refused | refused | refused | refused |
//!
//! Time-driven transitions (Activation Date, Deactivation Date reached) are in
//! `object::apply_dates`.

use kmipd_proto::enums::state::{
    ACTIVE, COMPROMISED, DEACTIVATED, DESTROYED, DESTROYED_COMPROMISED, PRE_ACTIVE,
};

use crate::error::{Error, Result};

/// What happens to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// Activate.
    Activate,
    /// Revoke with Key Compromise or CA Compromise.
    RevokeCompromise,
    /// Revoke with any other reason.
    RevokeOther,
    /// Destroy.
    Destroy,
}

/// The state after `event`, or the refusal ([`Error::WrongState`]).
pub(crate) fn transition(state: u32, event: Event) -> Result<u32> {
    match (state, event) {
        (PRE_ACTIVE, Event::Activate) => Ok(ACTIVE),
        (_, Event::Activate) => Err(Error::WrongState(
            "only a Pre-Active object can be activated",
        )),
        (PRE_ACTIVE | ACTIVE | DEACTIVATED, Event::RevokeCompromise) => Ok(COMPROMISED),
        (DESTROYED, Event::RevokeCompromise) => Ok(DESTROYED_COMPROMISED),
        (_, Event::RevokeCompromise) => Err(Error::WrongState("the object is already compromised")),
        (ACTIVE, Event::RevokeOther) => Ok(DEACTIVATED),
        (_, Event::RevokeOther) => Err(Error::WrongState(
            "only an Active object can be revoked for a reason other than compromise",
        )),
        (PRE_ACTIVE | DEACTIVATED, Event::Destroy) => Ok(DESTROYED),
        (COMPROMISED, Event::Destroy) => Ok(DESTROYED_COMPROMISED),
        (ACTIVE, Event::Destroy) => Err(Error::WrongState("an Active object cannot be destroyed")),
        (_, Event::Destroy) => Err(Error::WrongState("the object is already destroyed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [u32; 6] = [
        PRE_ACTIVE,
        ACTIVE,
        DEACTIVATED,
        COMPROMISED,
        DESTROYED,
        DESTROYED_COMPROMISED,
    ];

    fn expected(state: u32, event: Event) -> Option<u32> {
        match (state, event) {
            (PRE_ACTIVE, Event::Activate) => Some(ACTIVE),
            (PRE_ACTIVE | ACTIVE | DEACTIVATED, Event::RevokeCompromise) => Some(COMPROMISED),
            (DESTROYED, Event::RevokeCompromise) => Some(DESTROYED_COMPROMISED),
            (ACTIVE, Event::RevokeOther) => Some(DEACTIVATED),
            (PRE_ACTIVE | DEACTIVATED, Event::Destroy) => Some(DESTROYED),
            (COMPROMISED, Event::Destroy) => Some(DESTROYED_COMPROMISED),
            _ => None,
        }
    }

    #[test]
    fn every_state_and_event_follows_the_table() {
        for s in STATES {
            for e in [
                Event::Activate,
                Event::RevokeCompromise,
                Event::RevokeOther,
                Event::Destroy,
            ] {
                match (transition(s, e), expected(s, e)) {
                    (Ok(got), Some(want)) => assert_eq!(got, want, "{s} {e:?}"),
                    (Err(Error::WrongState(_)), None) => {}
                    (got, want) => panic!("{s} {e:?}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn an_active_key_cannot_be_destroyed_and_pre_active_cannot_be_activated_twice() {
        assert!(matches!(
            transition(ACTIVE, Event::Destroy),
            Err(Error::WrongState(_))
        ));
        assert_eq!(transition(PRE_ACTIVE, Event::Activate).unwrap(), ACTIVE);
        assert!(transition(ACTIVE, Event::Activate).is_err());
    }
}
