//! Unit tests of the XML encoding.
