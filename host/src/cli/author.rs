//! `switchyard policy new` and `switchyard policy build`: the command-line face of
//! [`crate::author`].

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::author::{build_crate, new_crate};

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The folder to create the crate in; it must be missing or empty.
    pub dir: PathBuf,
    /// The policy's name: the cargo package and the name the hub reports (default: the
    /// folder's name). Lowercase letters, digits, `-` and `_`, starting with a letter.
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The policy crate's folder.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Where to write the component (default: <target dir>/policy/<package>.wasm).
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub(super) fn new(args: NewArgs) -> anyhow::Result<()> {
    let made = new_crate(&args.dir, args.name.as_deref())?;
    let dir = made.dir.display();
    println!(
        "created policy `{}` (type {}) in {dir}, for contract {}",
        made.name,
        made.type_name,
        crate::policy::contract::contract_package()
    );
    for file in &made.files {
        println!("  {file}");
    }
    println!("next: cd {dir} && cargo test && switchyard policy build");
    Ok(())
}

pub(super) async fn build(args: BuildArgs) -> anyhow::Result<()> {
    // Cargo runs for seconds to minutes: off the async runtime's threads.
    let built = tokio::task::spawn_blocking(move || build_crate(&args.dir, args.out.as_deref()))
        .await
        .context("the build task stopped")??;
    println!(
        "built policy `{}` {} for contract {}",
        built.info.name, built.info.version, built.contract
    );
    println!("component: {}", built.component.display());
    println!("digest:    {}", built.info.digest);
    println!("size:      {} bytes", built.info.size);
    println!(
        "load it:   switchyard policy load {}   (or serve --policy FILE)",
        built.component.display()
    );
    Ok(())
}
