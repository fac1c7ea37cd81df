//! The server policy: which new keys may exist, their default usage, and how long they may be
//! used. Applied to every new object in one place, `objects::template::finish`, which every
//! creating operation calls (Create, Create Key Pair, Register, Re-Key, Re-Key Key Pair,
//! Derive Key); operations on existing objects are not affected, so a key made before a rule
//! keeps working (decryption and verification included) until it is deactivated.
//!
//! - **Allowed algorithms** ([`Policy::allow`]): a new Symmetric Key, Private Key or Public Key
//!   must match one [`AlgorithmRule`] (its object type, Cryptographic Algorithm, and length or
//!   curve), or it is refused with Permission Denied and a message naming the rule. The
//!   algorithm and the length are well-formed and implemented (Query lists them): the server
//!   refuses to *perform* the request for this client, which KMIP's reasons express as
//!   Permission Denied, not as Invalid Field (a malformed or unknown value) nor Cryptographic
//!   Failure (a failed computation). `None`: no algorithm rule.
//! - **Default usage mask** ([`Policy::usage_masks`]): a new object of that type without a
//!   Cryptographic Usage Mask gets this one.
//! - **Crypto periods** ([`Policy::crypto_periods`]): a new object of that type gets a
//!   Deactivation Date no later than its start of use (Activation Date, or creation) plus the
//!   period; a Protect Stop Date and a Process Start Date, when set, are pulled in the same
//!   way. So the key leaves the Active state on time ("apply_dates").
//!
//! - **Rotation** ([`Policy::rotate_intervals`]): a new object of that type without a Rotate
//!   Interval gets this one and Rotate Automatic True, so the server re-keys it when due
//!   (`rotation.rs`); any new object with Rotate Automatic True starts at Rotate Generation 0,
//!   Rotate Latest True.
//!
//! - **Dual control** ([`Policy::dual_control_groups`], [`Policy::dual_control_window`]): the
//!   objects of these Object Groups need a second administrator's approval for Destroy and
//!   Get of key material (`dual.rs`).
//!
//! The engine's own default ([`Policy::unrestricted`]) has no rule; `kmipd serve` applies its
//! `[policy]` (`docs/policy.md`), whose default is [`Policy::recommended`].

use kmipd_proto::attributes::AttrName;
use kmipd_proto::enums::{cryptographic_algorithm as alg, object_type as ot, recommended_curve};
use kmipd_proto::spec;
use kmipd_proto::tag;
use kmipd_store::ManagedObject;
use kmipd_ttlv::{Tag, Value};

use crate::error::Error;

/// One allowed kind of key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlgorithmRule {
    /// The Object Types it covers (empty: Symmetric Key, Private Key and Public Key).
    pub object_types: Vec<u32>,
    /// The Cryptographic Algorithm.
    pub algorithm: u32,
    /// Allowed Cryptographic Lengths (empty: any).
    pub lengths: Vec<i32>,
    /// The smallest Cryptographic Length allowed.
    pub min_length: Option<i32>,
    /// Allowed curves (Recommended Curve values; empty: any).
    pub curves: Vec<u32>,
}

impl AlgorithmRule {
    fn new(algorithm: u32) -> AlgorithmRule {
        AlgorithmRule {
            object_types: Vec::new(),
            algorithm,
            lengths: Vec::new(),
            min_length: None,
            curves: Vec::new(),
        }
    }

    fn covers(&self, object_type: u32) -> bool {
        if self.object_types.is_empty() {
            KEY_TYPES.contains(&object_type)
        } else {
            self.object_types.contains(&object_type)
        }
    }
}

/// The object types the algorithm rules apply to.
pub const KEY_TYPES: [u32; 3] = [ot::SYMMETRIC_KEY, ot::PRIVATE_KEY, ot::PUBLIC_KEY];

/// The server policy. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// The allowed keys; `None`: every algorithm the engine implements.
    pub allow: Option<Vec<AlgorithmRule>>,
    /// (Object Type, Cryptographic Usage Mask) given to new objects that have none.
    pub usage_masks: Vec<(u32, u32)>,
    /// (Object Type, seconds): the longest a new object of the type may be used.
    pub crypto_periods: Vec<(u32, i64)>,
    /// (Object Type, seconds): new objects of the type without a Rotate Interval get this one
    /// and Rotate Automatic True (`rotation.rs`).
    pub rotate_intervals: Vec<(u32, u32)>,
    /// Object Groups whose objects need dual control (`dual.rs`).
    pub dual_control_groups: Vec<String>,
    /// How long (seconds) a dual control request waits for its approval, and an approval for
    /// its use; `None`: `dual::DEFAULT_WINDOW`.
    pub dual_control_window: Option<i64>,
}

impl Policy {
    /// No rule at all (the engine's default).
    pub fn unrestricted() -> Policy {
        Policy::default()
    }

    /// The rules `kmipd serve` applies when its configuration has no `[policy] allow`: AES of
    /// 128, 192 or 256 bits, the HMACs of SHA-2 and SHA-3 (at least 128-bit keys), ChaCha20
    /// (256); RSA of at least 2048 bits; EC, ECDSA and ECDH on P-256, P-384 and P-521; Ed25519
    /// and Ed448. No DES, 3DES, RC4, ... No default usage mask, no crypto period.
    pub fn recommended() -> Policy {
        Policy {
            allow: Some(recommended_rules()),
            ..Policy::default()
        }
    }

    /// Checks a new object and completes it: its algorithm against [`Policy::allow`], then the
    /// default usage mask and the crypto period (`now`: its creation time).
    pub(crate) fn apply(&self, object: &mut ManagedObject, now: i64) -> Result<(), Error> {
        self.check_algorithm(object)?;
        let attrs = &mut object.attributes;
        if let Some((_, mask)) = self
            .usage_masks
            .iter()
            .find(|(t, _)| *t == object.object_type)
            && !attrs.has(&AttrName::Std(tag::CRYPTOGRAPHIC_USAGE_MASK))
        {
            attrs.set(
                tag::CRYPTOGRAPHIC_USAGE_MASK,
                Value::Integer(i32::from_ne_bytes(mask.to_ne_bytes())),
            );
        }
        if let Some((_, interval)) = self
            .rotate_intervals
            .iter()
            .find(|(t, _)| *t == object.object_type)
            && !attrs.has(&AttrName::Std(tag::ROTATE_INTERVAL))
        {
            attrs.set(tag::ROTATE_INTERVAL, Value::Interval(*interval));
            if !attrs.has(&AttrName::Std(tag::ROTATE_AUTOMATIC)) {
                attrs.set(tag::ROTATE_AUTOMATIC, Value::Boolean(true));
            }
        }
        // The first of a set of rotated objects: generation 0, the latest.
        if attrs.get(tag::ROTATE_AUTOMATIC) == Some(&Value::Boolean(true)) {
            if !attrs.has(&AttrName::Std(tag::ROTATE_GENERATION)) {
                attrs.set(tag::ROTATE_GENERATION, Value::Integer(0));
            }
            if !attrs.has(&AttrName::Std(tag::ROTATE_LATEST)) {
                attrs.set(tag::ROTATE_LATEST, Value::Boolean(true));
            }
        }
        if let Some((_, period)) = self
            .crypto_periods
            .iter()
            .find(|(t, _)| *t == object.object_type)
        {
            let start = date(attrs, tag::ACTIVATION_DATE).unwrap_or(now);
            let end = start.saturating_add(*period);
            let deactivation = date(attrs, tag::DEACTIVATION_DATE).map_or(end, |d| d.min(end));
            attrs.set(tag::DEACTIVATION_DATE, Value::DateTime(deactivation));
            for t in [tag::PROTECT_STOP_DATE, tag::PROCESS_START_DATE] {
                if let Some(d) = date(attrs, t)
                    && d > deactivation
                {
                    attrs.set(t, Value::DateTime(deactivation));
                }
            }
        }
        Ok(())
    }

    /// Refuses a new key that no rule allows, naming what the policy wants.
    fn check_algorithm(&self, object: &ManagedObject) -> Result<(), Error> {
        let Some(rules) = &self.allow else {
            return Ok(());
        };
        if !KEY_TYPES.contains(&object.object_type) {
            return Ok(());
        }
        let attrs = &object.attributes;
        let Some(Value::Enumeration(algorithm)) = attrs.get(tag::CRYPTOGRAPHIC_ALGORITHM) else {
            return Err(Error::Policy(format!(
                "policy: a new {} needs a Cryptographic Algorithm the policy allows",
                name(tag::OBJECT_TYPE, object.object_type)
            )));
        };
        let length = match attrs.get(tag::CRYPTOGRAPHIC_LENGTH) {
            Some(Value::Integer(l)) => Some(*l),
            _ => None,
        };
        let curve = curve_of(object, length);
        let candidates: Vec<&AlgorithmRule> = rules
            .iter()
            .filter(|r| r.algorithm == *algorithm && r.covers(object.object_type))
            .collect();
        if candidates.is_empty() {
            return Err(Error::Policy(format!(
                "policy: {} is not an allowed algorithm for a new {} (policy.allow)",
                name(tag::CRYPTOGRAPHIC_ALGORITHM, *algorithm),
                name(tag::OBJECT_TYPE, object.object_type)
            )));
        }
        let fits = |r: &&AlgorithmRule| {
            (r.lengths.is_empty() || length.is_some_and(|l| r.lengths.contains(&l)))
                && r.min_length.is_none_or(|m| length.is_some_and(|l| l >= m))
                && (r.curves.is_empty() || curve.is_some_and(|c| r.curves.contains(&c)))
        };
        if candidates.iter().any(fits) {
            return Ok(());
        }
        // Name the first rule's requirement.
        let r = candidates
            .first()
            .copied()
            .ok_or(Error::Internal("no rule"))?;
        let algorithm = name(tag::CRYPTOGRAPHIC_ALGORITHM, r.algorithm);
        let what = if !r.curves.is_empty() {
            let curves: Vec<String> = r
                .curves
                .iter()
                .map(|c| name(tag::RECOMMENDED_CURVE, *c))
                .collect();
            format!("{algorithm} keys must be on {}", curves.join(", "))
        } else if let Some(m) = r.min_length {
            format!("{algorithm} keys need at least {m} bits")
        } else {
            let lengths: Vec<String> = r.lengths.iter().map(i32::to_string).collect();
            format!("{algorithm} keys must be {} bits long", lengths.join(", "))
        };
        Err(Error::Policy(format!(
            "policy: {what} (policy.allow; this key: {})",
            match (curve, length) {
                (Some(c), _) if !r.curves.is_empty() => name(tag::RECOMMENDED_CURVE, c),
                (_, Some(l)) => format!("{l} bits"),
                _ => "no length".to_owned(),
            }
        )))
    }
}

fn date(attrs: &kmipd_proto::attributes::Attributes, t: Tag) -> Option<i64> {
    match attrs.get(t) {
        Some(Value::DateTime(d)) => Some(*d),
        _ => None,
    }
}

/// The curve of an EC key: its Recommended Curve attribute or Domain Parameters, else the NIST
/// curve of its length.
fn curve_of(object: &ManagedObject, length: Option<i32>) -> Option<u32> {
    let attrs = &object.attributes;
    if let Some(Value::Enumeration(c)) = attrs.get(tag::RECOMMENDED_CURVE) {
        return Some(*c);
    }
    if let Some(Value::Structure(items)) = attrs.get(tag::CRYPTOGRAPHIC_DOMAIN_PARAMETERS)
        && let Some(c) = items.iter().find(|i| i.tag == tag::RECOMMENDED_CURVE)
        && let Value::Enumeration(c) = c.value
    {
        return Some(c);
    }
    match length {
        Some(256) => Some(recommended_curve::P_256),
        Some(384) => Some(recommended_curve::P_384),
        Some(521) => Some(recommended_curve::P_521),
        _ => None,
    }
}

fn recommended_rules() -> Vec<AlgorithmRule> {
    let symmetric = vec![ot::SYMMETRIC_KEY];
    let mut rules = vec![AlgorithmRule {
        object_types: symmetric.clone(),
        lengths: vec![128, 192, 256],
        ..AlgorithmRule::new(alg::AES)
    }];
    for hmac in [
        alg::HMAC_SHA224,
        alg::HMAC_SHA256,
        alg::HMAC_SHA384,
        alg::HMAC_SHA512,
        alg::HMAC_SHA3_224,
        alg::HMAC_SHA3_256,
        alg::HMAC_SHA3_384,
        alg::HMAC_SHA3_512,
    ] {
        rules.push(AlgorithmRule {
            object_types: symmetric.clone(),
            min_length: Some(128),
            ..AlgorithmRule::new(hmac)
        });
    }
    for chacha in [alg::CHA_CHA20, alg::CHA_CHA20_POLY1305] {
        rules.push(AlgorithmRule {
            object_types: symmetric.clone(),
            lengths: vec![256],
            ..AlgorithmRule::new(chacha)
        });
    }
    let asymmetric = vec![ot::PRIVATE_KEY, ot::PUBLIC_KEY];
    rules.push(AlgorithmRule {
        object_types: asymmetric.clone(),
        min_length: Some(2048),
        ..AlgorithmRule::new(alg::RSA)
    });
    for ec in [alg::EC, alg::ECDSA, alg::ECDH] {
        rules.push(AlgorithmRule {
            object_types: asymmetric.clone(),
            curves: vec![
                recommended_curve::P_256,
                recommended_curve::P_384,
                recommended_curve::P_521,
            ],
            ..AlgorithmRule::new(ec)
        });
    }
    for ed in [alg::ED25519, alg::ED448] {
        rules.push(AlgorithmRule {
            object_types: asymmetric.clone(),
            ..AlgorithmRule::new(ed)
        });
    }
    rules
}

/// The XML name of an enumeration value of `t` (`AES`, `SymmetricKey`, `P_256`).
pub fn name(t: Tag, value: u32) -> String {
    spec::enum_of_tag(t.value())
        .and_then(|e| e.canonical_name(value))
        .map_or_else(|| format!("0x{value:08X}"), str::to_owned)
}

/// The value of an enumeration of `t` by its XML name (`AES`, `SymmetricKey`, `P_256`,
/// `Encrypt`), for configurations.
pub fn value(t: Tag, name: &str) -> Option<u32> {
    spec::enum_of_tag(t.value())?.value_by_xml_name(name.trim())
}

impl crate::Engine {
    /// How many Active objects are past the crypto period the current policy gives their type:
    /// in use longer than [`Policy::crypto_periods`] since their Activation Date (their Initial
    /// Date when they have none). Objects made under the policy leave the Active state on time
    /// (their Deactivation Date); these are the ones made before it, or given a later date by an
    /// administrator's edit. For the `kmipd_keys_past_crypto_period` metric; narrowed by the
    /// store's indexes (state, and Initial Date before now minus the period).
    pub fn past_crypto_period(&self) -> Result<usize, Error> {
        use kmipd_proto::enums::state;
        use kmipd_store::{Filter, Query};
        let now = self.config().clock.now();
        let policy = self.policy();
        let mut count = 0;
        for (object_type, period) in &policy.crypto_periods {
            let limit = now.saturating_sub(*period);
            let query = Query::new(vec![
                Filter::Attr(AttrName::Std(tag::STATE), Value::Enumeration(state::ACTIVE)),
                Filter::Date(AttrName::Std(tag::INITIAL_DATE), i64::MIN, limit),
            ]);
            for mut o in self.store_ref().find(&query)? {
                crate::object::apply_dates(&mut o, now);
                let start = [tag::ACTIVATION_DATE, tag::INITIAL_DATE]
                    .iter()
                    .find_map(|t| match o.attributes.get(*t) {
                        Some(Value::DateTime(d)) => Some(*d),
                        _ => None,
                    });
                if o.object_type == *object_type
                    && crate::object::current_state(&o) == Some(state::ACTIVE)
                    && start.is_some_and(|s| s < limit)
                {
                    count += 1;
                }
            }
        }
        Ok(count)
    }
}
