//! kmipd-interop: tests only (see `tests/`). Real clients against a running kmipd over mutual
//! TLS: NLnet Labs' `kmip-protocol` crate (`tests/kmip_protocol.rs`) and the request shapes of
//! the clients in `../shared/notes/clients.md` sent as raw TTLV (`tests/client_flows.rs`). Each
//! test records its rows in `target/interop/` for `docs/interoperability.md`.
