//! `switchyard tenant`: the admin's commands for tenants (`/admin/tenants`).

use super::client::{encode, print, ClientArgs};
use super::table::{Style, Table};
use super::view::{show, OutputArgs};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

#[derive(Debug, Args)]
pub struct TenantArgs {
    #[command(subcommand)]
    pub command: TenantCommand,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant (admin). Without quotas it may queue and submit without limit.
    Create {
        /// Lowercase letters, digits, '.', '_' and '-'; at most 64 bytes.
        name: String,
        /// Its share of agents against other backlogged tenants (greater than 0, at most 1000).
        #[arg(long, default_value_t = 1.0)]
        weight: f64,
        /// Tasks it may have queued at once (0 or more).
        #[arg(long)]
        max_queued: Option<u64>,
        /// Tasks per second it may submit, in bursts of one second's worth.
        #[arg(long)]
        submit_rate: Option<f64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List tenants with their queued and assigned tasks and their share of the assigned ones.
    List {
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change a tenant's weight or quotas; `none` lifts a quota.
    Update {
        name: String,
        #[arg(long)]
        weight: Option<f64>,
        /// A number, or `none` for no limit.
        #[arg(long, value_parser = quota::<u64>)]
        max_queued: Option<Quota<u64>>,
        /// Tasks per second, or `none` for no limit.
        #[arg(long, value_parser = quota::<f64>)]
        submit_rate: Option<Quota<f64>>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a tenant: refused while tokens or queued or assigned tasks belong to it, and
    /// always for `default`.
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// A quota on the command line: a value, or `none` to lift it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quota<T> {
    Limit(T),
    None,
}

fn quota<T: std::str::FromStr>(text: &str) -> Result<Quota<T>, String> {
    if text == "none" {
        return Ok(Quota::None);
    }
    text.parse()
        .map(Quota::Limit)
        .map_err(|_| format!("{text:?} is neither a number nor `none`"))
}

impl<T: Into<Value>> Quota<T> {
    fn into_json(self) -> Value {
        match self {
            Quota::Limit(value) => value.into(),
            Quota::None => Value::Null,
        }
    }
}

pub async fn run(args: TenantArgs) -> anyhow::Result<()> {
    match args.command {
        TenantCommand::Create {
            name,
            weight,
            max_queued,
            submit_rate,
            client,
        } => {
            let mut body = json!({"name": name, "weight": weight});
            if let Some(max) = max_queued {
                body["max_queued"] = max.into();
            }
            if let Some(rate) = submit_rate {
                body["submit_rate"] = rate.into();
            }
            print(client.call("POST", "/admin/tenants", Some(body)).await?)
        }
        TenantCommand::List { output, client } => show(
            output,
            &client.call("GET", "/admin/tenants", None).await?,
            tenants,
        ),
        TenantCommand::Update {
            name,
            weight,
            max_queued,
            submit_rate,
            client,
        } => {
            let mut body = Map::new();
            if let Some(weight) = weight {
                body.insert("weight".into(), weight.into());
            }
            if let Some(max) = max_queued {
                body.insert("max_queued".into(), max.into_json());
            }
            if let Some(rate) = submit_rate {
                body.insert("submit_rate".into(), rate.into_json());
            }
            if body.is_empty() {
                return Err(super::client::UsageError(
                    "nothing to change: give --weight, --max-queued or --submit-rate".into(),
                )
                .into());
            }
            let path = format!("/admin/tenants/{}", encode(&name));
            print(
                client
                    .call("PATCH", &path, Some(Value::Object(body)))
                    .await?,
            )
        }
        TenantCommand::Delete { name, client } => {
            let path = format!("/admin/tenants/{}", encode(&name));
            print(client.call("DELETE", &path, None).await?)
        }
    }
}

/// `tenant list`: one tenant a line, by name.
fn tenants(value: &Value, style: Style) -> String {
    let mut table = Table::new([
        "TENANT",
        "WEIGHT",
        "MAX QUEUED",
        "SUBMIT RATE",
        "QUEUED",
        "ASSIGNED",
        "SHARE",
    ]);
    let field = |tenant: &Value, key: &str| match tenant.get(key) {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let empty = Vec::new();
    let list = value
        .get("tenants")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for tenant in list {
        let share = tenant
            .get("share")
            .and_then(Value::as_f64)
            .map_or_else(|| "-".to_owned(), |s| format!("{:.1}%", s * 100.0));
        table.row([
            field(tenant, "name"),
            field(tenant, "weight"),
            field(tenant, "max_queued"),
            field(tenant, "submit_rate"),
            field(tenant, "queued"),
            field(tenant, "assigned"),
            share,
        ]);
    }
    table.render(style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse_as_numbers_or_none() {
        assert_eq!(quota::<u64>("5"), Ok(Quota::Limit(5)));
        assert_eq!(quota::<f64>("none"), Ok(Quota::None));
        assert!(quota::<u64>("-1").is_err());
        assert!(quota::<u64>("lots").is_err());
    }

    #[test]
    fn the_table_shows_each_tenant_with_its_share() {
        let value = json!({"tenants": [
            {"name": "default", "weight": 1.0, "max_queued": null, "submit_rate": null,
             "queued": 2, "assigned": 1, "share": 0.25},
            {"name": "team-a", "weight": 3.0, "max_queued": 10, "submit_rate": 5.0,
             "queued": 0, "assigned": 3, "share": 0.75},
        ]});
        let text = tenants(&value, Style::PLAIN);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[1].starts_with("default") && lines[1].contains("25.0%"),
            "{text}"
        );
        assert!(
            lines[2].contains("team-a") && lines[2].contains("75.0%"),
            "{text}"
        );
    }
}
