//! The commands that look after the hub's credentials and data: `token rotate-admin`,
//! `audit` (clients of a running hub) and `backup` (reads a data folder directly).

use super::client::{print, ClientArgs};
use anyhow::Context;
use clap::Args;
use serde_json::Value;
use std::path::PathBuf;

/// `switchyard backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The file to write the copy to (it must not exist yet).
    #[arg(long)]
    pub to: PathBuf,
    /// The data folder of the hub to copy (it may be running).
    #[arg(long, default_value = "switchyard-data")]
    pub data_dir: PathBuf,
}

/// `switchyard audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Records to show, newest first (1 to 1000).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Show records older than this one (the `next_cursor` of the previous page).
    #[arg(long)]
    pub cursor: Option<u64>,
    #[command(flatten)]
    pub output: super::view::OutputArgs,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Copies the store of a (running) hub's data folder to a new file, compacted.
pub(super) fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let bytes = crate::store::backup(&args.data_dir, &args.to).with_context(|| {
        format!(
            "cannot back up {} to {}",
            args.data_dir.display(),
            args.to.display()
        )
    })?;
    println!(
        "backed up {} to {} ({bytes} bytes); to restore: mkdir -m 700 DIR && cp {} DIR/data.mdb \
         && switchyard serve --data-dir DIR",
        args.data_dir.display(),
        args.to.display(),
        args.to.display()
    );
    Ok(())
}

/// Asks the hub for a new admin token; the hub revokes the old ones and writes the new one to
/// its `admin.token`. Prints the answer (the token is shown once).
pub(super) async fn rotate_admin(client: ClientArgs) -> anyhow::Result<()> {
    let answer = client
        .call("POST", "/admin/tokens/rotate-admin", None)
        .await?;
    if let Some(why) = answer.get("write_error").and_then(Value::as_str) {
        eprintln!("warning: the new admin token is in force but the hub could not write it: {why}");
    }
    print(answer)
}

/// One page of the audit log.
pub(super) async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let mut path = format!("/admin/audit?limit={}", args.limit);
    if let Some(cursor) = args.cursor {
        path.push_str(&format!("&cursor={cursor}"));
    }
    let page = args.client.call("GET", &path, None).await?;
    super::view::show(args.output, &page, super::view::audit)
}
