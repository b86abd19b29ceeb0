//! Writing policies outside this repository: `switchyard policy new` and `switchyard policy
//! build`.
//!
//! A policy author has the `switchyard` binary and a Rust toolchain, nothing else. So the binary
//! carries what a policy crate needs: the SDK's sources and the WIT contract (both embedded at
//! build time, [`files`]), which [`new_crate`] writes into a fresh crate beside a small working
//! policy; and the wrap step (`policy::contract`, shared with `host/build.rs`), which
//! [`build_crate`] applies to the module cargo builds, before checking the component as a hub
//! would load it.

mod build;
mod files;
mod new;

pub use build::{build_crate, Built};
pub use new::{new_crate, validate_name, NewCrate};

use std::path::PathBuf;

use crate::policy::contract::WrapError;
use crate::policy::PolicyError;

/// Why `policy new` or `policy build` failed. Each names the path or the step at fault and,
/// where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum AuthorError {
    #[error(
        "invalid policy name `{name}`: {why} (a name is 1 to 64 characters: lowercase ASCII \
         letters, digits, `-` and `_`, starting with a letter)"
    )]
    InvalidName { name: String, why: &'static str },
    #[error("cannot take a policy name from the folder {0}; name the policy with --name NAME")]
    NoNameFromFolder(PathBuf),
    #[error("{0} is not empty; `policy new` only writes into a new or empty folder")]
    NotEmpty(PathBuf),
    #[error("{0} exists and is not a folder")]
    NotAFolder(PathBuf),
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no Cargo.toml in {0}: `policy build` builds a policy crate (make one with \
         `switchyard policy new DIR`)"
    )]
    NoManifest(PathBuf),
    #[error("cannot read the package name from {path}: {why}")]
    BadManifest { path: PathBuf, why: String },
    #[error("{0}")]
    MissingTarget(String),
    #[error("cannot ask rustc about the wasm target: {0}")]
    Rustc(String),
    #[error("cannot run cargo ({cargo}): {source}")]
    CargoMissing {
        cargo: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}); cargo's messages are above")]
    CargoFailed { command: String, status: String },
    #[error(
        "cargo built no WebAssembly module for {manifest}; a policy crate's [lib] needs \
         crate-type = [\"rlib\", \"cdylib\"]"
    )]
    NoModule { manifest: PathBuf },
    #[error("the module {module} cannot be a policy component: {source}")]
    Wrap {
        module: PathBuf,
        #[source]
        source: WrapError,
    },
    #[error("the component a hub would refuse: {0}")]
    Refused(#[source] PolicyError),
}
