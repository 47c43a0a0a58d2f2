//! `triforce usage`: what each API key used at a door, per day and model, as a table or JSON.
//! Reads this node's usage database directly (so it works while the node is down); `--all`
//! asks every node of the federation over the signed API instead.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use triforce_net::usage::{UsageFilter, UsageRow, UsageStore};

use crate::sockets::{client, load};
use crate::NodeArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    node: NodeArgs,
    /// Only this key's use (its name, as `triforce apikey add --name` gave it).
    #[arg(long, value_name = "NAME")]
    key: Option<String>,
    /// From this day on (UTC), as YYYY-MM-DD.
    #[arg(long, value_name = "DATE")]
    since: Option<String>,
    /// Ask every node of the federation (over the signed API), not only this one's database.
    #[arg(long)]
    all: bool,
    /// Print JSON: one object per row.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    if let Some(since) = &args.since {
        if !triforce_net::http::is_day(since) {
            bail!("--since {since:?} is not a day as YYYY-MM-DD");
        }
    }
    let config = load(&args.node.config, &args.node.node)?;
    let filter = UsageFilter {
        key: args.key.clone(),
        since: args.since.clone(),
    };
    let (rows, complete) = if args.all {
        federation_rows(&config, &filter).await?
    } else {
        (local_rows(&config, &filter)?, true)
    };
    if args.json {
        let rows: Vec<Value> = rows
            .iter()
            .map(|(node, row)| {
                let mut value = json!(row);
                value["node"] = json!(node);
                value
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", usage_table(&rows));
    }
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// This node's rows, read from its database.
fn local_rows(
    config: &triforce_net::load::NodeConfig,
    filter: &UsageFilter,
) -> Result<Vec<(String, UsageRow)>> {
    let file = &config.settings.ingress.usage_db;
    if file.as_os_str().is_empty() {
        bail!("this node keeps no usage ([ingress] usage_db is empty)");
    }
    let path = config.dir.join(file);
    if !path.exists() {
        bail!(
            "no usage database at {} (a node keeps one once it runs the door: [ingress] listen)",
            path.display()
        );
    }
    let store = UsageStore::open_read_only(&path)
        .with_context(|| format!("cannot open the usage database {}", path.display()))?;
    let rows = store
        .rows(filter)
        .with_context(|| format!("cannot read the usage database {}", path.display()))?;
    let me = config.me.as_str().to_string();
    Ok(rows.into_iter().map(|row| (me.clone(), row)).collect())
}

/// Every door's rows, asked over the signed API; false when a node could not be asked (it is
/// named on stderr), so a script sees the total is partial.
async fn federation_rows(
    config: &triforce_net::load::NodeConfig,
    filter: &UsageFilter,
) -> Result<(Vec<(String, UsageRow)>, bool)> {
    let query = json!({"key": filter.key, "since": filter.since}).to_string();
    let mut rows = Vec::new();
    let mut complete = true;
    for node in config.federation.nodes.keys() {
        let asked = async {
            let client = client(config, Some(node.as_str()), Duration::from_secs(10))?;
            anyhow::Ok(
                client
                    .post("/v1/federation/usage", query.as_bytes())
                    .await?,
            )
        };
        let reply = match asked.await {
            Ok(reply) => reply,
            Err(error) => {
                eprintln!("{node}: not asked: {error:#}");
                complete = false;
                continue;
            }
        };
        match reply.status {
            200 => {
                let answered: Vec<UsageRow> = serde_json::from_value(reply.body["rows"].clone())
                    .with_context(|| format!("{node} answered rows that do not read"))?;
                rows.extend(answered.into_iter().map(|row| (node.to_string(), row)));
            }
            // A node without a door keeps no usage: nothing to add.
            404 if reply.body["error"]["code"] == "no_usage" => {}
            status => {
                eprintln!("{node}: answered {status}: {}", reply.body);
                complete = false;
            }
        }
    }
    Ok((rows, complete))
}

/// The rows as an aligned table, then each key's total.
fn usage_table(rows: &[(String, UsageRow)]) -> String {
    let mut out = format!(
        "{:<10} {:<12} {:<16} {:<20} {:>8} {:>6} {:>10} {:>10} {:>9}\n",
        "DAY", "NODE", "KEY", "MODEL", "REQUESTS", "ERRORS", "PROMPT", "COMPLETION", "UNMETERED"
    );
    let mut totals: std::collections::BTreeMap<&str, UsageRow> = Default::default();
    for (node, row) in rows {
        out += &format!(
            "{:<10} {:<12} {:<16} {:<20} {:>8} {:>6} {:>10} {:>10} {:>9}\n",
            row.day,
            node,
            row.key,
            row.model,
            row.requests,
            row.errors,
            row.prompt_tokens,
            row.completion_tokens,
            row.unmetered
        );
        totals.entry(&row.key).or_default().add_counts(row);
    }
    for (key, total) in totals {
        out += &format!(
            "total {key}: {} requests ({} errors), {} prompt + {} completion tokens, {} unmetered\n",
            total.requests,
            total.errors,
            total.prompt_tokens,
            total.completion_tokens,
            total.unmetered
        );
    }
    out
}
