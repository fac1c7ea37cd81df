//! The key lifecycle (KMIP 1.4 §3.22 / 2.1 §4.57 State, and the state diagram): pure functions
//! from (state, event) to the next state. Operations call these and never set State by hand.
//!
//! | from \ event | Activate | Revoke (compromise) | Revoke (other) | Destroy |
//! |---|---|---|---|---|
//! | Pre-Active | Active | Compromised | Deactivated | Destroyed |
//! | Active | refused | Compromised | Deactivated | refused |
//! | Deactivated | refused | Compromised | Deactivated | Destroyed |
//! | Compromised | refused | Compromised | Compromised | Destroyed Compromised |
//! | Destroyed | refused | Destroyed Compromised | refused | refused |
//! | Destroyed Compromised | refused | Destroyed Compromised | refused | refused |
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

/// The state after `event`, or the refusal.
pub(crate) fn transition(state: u32, event: Event) -> Result<u32> {
    match (state, event) {
        (PRE_ACTIVE, Event::Activate) => Ok(ACTIVE),
        (_, Event::Activate) => Err(Error::WrongState(
            "only a Pre-Active object can be activated",
        )),
        (PRE_ACTIVE | ACTIVE | DEACTIVATED | COMPROMISED, Event::RevokeCompromise) => {
            Ok(COMPROMISED)
        }
        (DESTROYED | DESTROYED_COMPROMISED, Event::RevokeCompromise) => Ok(DESTROYED_COMPROMISED),
        (_, Event::RevokeCompromise) => Err(Error::WrongState("unknown state")),
        (PRE_ACTIVE | ACTIVE | DEACTIVATED, Event::RevokeOther) => Ok(DEACTIVATED),
        (COMPROMISED, Event::RevokeOther) => Ok(COMPROMISED),
        (_, Event::RevokeOther) => Err(Error::WrongState("the object cannot be revoked")),
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
        match event {
            Event::Activate => (state == PRE_ACTIVE).then_some(ACTIVE),
            Event::RevokeCompromise => {
                Some(if state == DESTROYED || state == DESTROYED_COMPROMISED {
                    DESTROYED_COMPROMISED
                } else {
                    COMPROMISED
                })
            }
            Event::RevokeOther => match state {
                PRE_ACTIVE | ACTIVE | DEACTIVATED => Some(DEACTIVATED),
                COMPROMISED => Some(COMPROMISED),
                _ => None,
            },
            Event::Destroy => match state {
                PRE_ACTIVE | DEACTIVATED => Some(DESTROYED),
                COMPROMISED => Some(DESTROYED_COMPROMISED),
                _ => None,
            },
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
