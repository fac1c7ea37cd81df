//! One file per operation. Each `handle` reads its request payload, acts through the
//! [`crate::context::Ctx`], and returns its response payload.

pub(crate) mod activate;
pub(crate) mod add_attribute;
pub(crate) mod check;
pub(crate) mod create;
pub(crate) mod create_key_pair;
pub(crate) mod create_split_key;
pub(crate) mod decrypt;
pub(crate) mod delete_attribute;
pub(crate) mod derive_key;
pub(crate) mod destroy;
pub(crate) mod discover_versions;
pub(crate) mod encrypt;
pub(crate) mod get;
pub(crate) mod get_attribute_list;
pub(crate) mod get_attributes;
pub(crate) mod get_usage_allocation;
pub(crate) mod hash;
pub(crate) mod interop;
pub(crate) mod join_split_key;
pub(crate) mod locate;
pub(crate) mod log;
pub(crate) mod mac;
pub(crate) mod mac_verify;
pub(crate) mod modify_attribute;
pub(crate) mod obtain_lease;
pub(crate) mod query;
pub(crate) mod re_key;
pub(crate) mod re_key_key_pair;
pub(crate) mod register;
pub(crate) mod revoke;
pub(crate) mod rng_retrieve;
pub(crate) mod rng_seed;
pub(crate) mod set_attribute;
pub(crate) mod sign;
pub(crate) mod signature_verify;
