//! Fuzz targets for the hub's decoders, run on stable Rust.
//!
//! A target ([`targets::Target`]) is a plain function from bytes to an outcome that panics when
//! a property fails: the agent frame decoder (`wire::agent`), the HTTP body and query parsers
//! (`wire::http`), and the store's record codec (`store::decode_task`). The driver
//! ([`driver::fuzz`]) feeds each one inputs made by a structure-aware mutator ([`mutate`]) from
//! a corpus of valid inputs, keeps the inputs whose outcome it has not seen before (a
//! coverage-free stand-in for coverage feedback), and reports any panic, and any input whose
//! handling allocated more than its bound ([`alloc`]), as a finding.
//!
//! `cargo test -p switchyard-fuzz` runs every target for a bounded number of executions (CI);
//! `switchyard-fuzz TARGET --seconds N` runs one for a while (see README.md, "Attacking the hub").

pub mod alloc;
pub mod driver;
pub mod mutate;
pub mod targets;
