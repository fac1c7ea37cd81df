//! KMIP protocol knowledge on top of the TTLV codec: the tag and enumeration tables of KMIP 1.0
//! to 2.1 (each entry with the version that introduced it), and the KMIP XML and JSON encodings
//! of a TTLV tree.

mod datetime;
pub mod json;
pub mod spec;
pub mod xml;
