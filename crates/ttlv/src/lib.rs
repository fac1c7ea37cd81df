//! A strict, sans-IO codec for TTLV, the binary wire format of KMIP.
//!
//! Every TTLV item is `tag (3 bytes) | type (1 byte) | length (4 bytes, big-endian) | value`,
//! with the value padded with zero bytes to a multiple of eight. A Structure's value is a
//! sequence of items. See KMIP 1.4 §9.1 and KMIP 2.1 §9.1.
//!
//! This crate knows the wire format and nothing else:
//!
//! - it keeps **any** tag (KMIP's `0x42xxxx`, extensions `0x54xxxx`, tags of protocol versions it
//!   has never heard of), so that the layers above decide what is acceptable;
//! - it decodes **strictly**: every violation of the format is its own [`ErrorKind`] carrying the
//!   byte offset where it was found (fixed lengths, zero padding, structures filled exactly, no
//!   trailing bytes, UTF-8, Boolean 0 or 1, known item types);
//! - its [`Limits`] are checked **before** anything is allocated, so a header that claims 4 GiB
//!   costs nothing;
//! - [`frame`] tells a reader how many bytes follow an 8-byte header, without any I/O of its own
//!   (the server drives it from tokio; this crate does not depend on tokio);
//! - [`encode`] is the exact inverse of [`decode`] and writes structure lengths in one pass;
//! - [`dump`] renders a tree for humans, with names supplied by the caller ([`Names`]).
//!
//! It does **not** know tag names, enumerations, operations or versions: those live in
//! `kmipd-proto`. It does no logging and no I/O.
//!
//! ```
//! use kmipd_ttlv::{decode, encode_to_vec, Limits, Tag, Ttlv, Value};
//!
//! let item = Ttlv::new(Tag::new(0x42_0069)?, Value::Structure(vec![
//!     Ttlv::new(Tag::new(0x42_006A)?, Value::Integer(1)),
//!     Ttlv::new(Tag::new(0x42_006B)?, Value::Integer(4)),
//! ]));
//! let bytes = encode_to_vec(&item)?;
//! assert_eq!(bytes.len(), 8 + 2 * 16);
//! assert_eq!(decode(&bytes, &Limits::default())?, item);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod decode;
mod dump;
mod encode;
mod error;
pub mod frame;
mod item_type;
mod limits;
mod tag;
mod value;

#[doc(hidden)]
pub mod fuzzing;

pub use decode::decode;
pub use dump::{DumpOptions, Names, NoNames, dump, dump_with};
pub use encode::{
    EncodeError, encode, encode_byte_string, encode_text, encode_to_vec, encode_value, encoded_len,
};
pub use error::{DecodeError, ErrorKind};
pub use frame::{Frame, FrameError, HEADER_LEN, frame_len};
pub use item_type::ItemType;
pub use limits::Limits;
pub use tag::{InvalidTag, Tag};
pub use value::{BigInteger, Ttlv, Value};
