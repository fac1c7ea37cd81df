//! KMIP protocol knowledge on top of the TTLV codec: the tag and enumeration tables of KMIP 1.0
//! to 2.1 (each entry with the version that introduced it), request and response messages,
//! attributes in both the 1.x and 2.x forms, typed reading ([`reader`]) and building
//! ([`build`]) of payloads, and the KMIP XML and
//! JSON encodings of a TTLV tree.

pub mod attributes;
pub mod build;
mod datetime;
mod forms;
pub mod fuzzing;
pub mod json;
pub mod message;
pub mod reader;
pub mod spec;
pub mod xml;

pub use spec::{enums, tag};
