//! `triforce status`: a table for people, JSON for scripts.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::Value;

use crate::sockets::{client, load};
use crate::NodeArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    node: NodeArgs,
    /// Ask this node instead of our own.
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    /// Print the raw JSON answer.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let config = load(&args.node.config, &args.node.node)?;
    let client = client(&config, args.target.as_deref(), Duration::from_secs(10))?;
    let reply = client.get("/v1/federation/status").await?;
    if reply.status != 200 {
        bail!("status answered {}: {}", reply.status, reply.body);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply.body)?);
    } else {
        print!("{}", status_table(&reply.body));
    }
    Ok(ExitCode::SUCCESS)
}

/// The status answer as an aligned table.
pub fn status_table(status: &Value) -> String {
    let mut out = format!(
        "{:<12} {:<8} {:>8} {:>9} {:<12} {}\n",
        "NODE", "STATE", "RTT_MS", "IN_FLIGHT", "GPU", "NAME"
    );
    if let Some(nodes) = status["nodes"].as_object() {
        for (id, node) in nodes {
            let state = node["state"].as_str().unwrap_or("?");
            let rtt = node["latency_ms"]
                .as_u64()
                .map_or("-".to_string(), |ms| ms.to_string());
            let in_flight = node["in_flight"]
                .as_u64()
                .map_or("-".to_string(), |n| n.to_string());
            let gpu = node["gpu"].as_str().unwrap_or("-");
            let name = node["name"].as_str().unwrap_or("");
            out += &format!("{id:<12} {state:<8} {rtt:>8} {in_flight:>9} {gpu:<12} {name}\n");
        }
    }
    out += &format!(
        "online total: {} cores, {} GB RAM\n",
        status["total_cores"], status["total_ram_gb"]
    );
    out += &backends_table(status);
    out
}

/// Each node's task types and, per relaying executor, its backend's health and models; empty
/// when no node relays to a backend.
fn backends_table(status: &Value) -> String {
    let mut out = String::new();
    let Some(nodes) = status["nodes"].as_object() else {
        return out;
    };
    for (id, node) in nodes {
        let Some(backends) = node["backends"].as_object().filter(|b| !b.is_empty()) else {
            continue;
        };
        for (task_type, backend) in backends {
            let health = if backend["healthy"] == true {
                "up"
            } else {
                "DOWN"
            };
            let list = |field: &str| {
                backend[field].as_array().map_or(String::new(), |models| {
                    let names: Vec<&str> = models.iter().filter_map(Value::as_str).collect();
                    names.join(",")
                })
            };
            let (models, loaded) = (list("models"), list("loaded"));
            let models = if models.is_empty() {
                "any".to_string()
            } else {
                models
            };
            let loaded = if loaded.is_empty() {
                String::new()
            } else {
                format!(" (loaded: {loaded})")
            };
            out += &format!("backend {id}/{task_type}: {health}, models {models}{loaded}\n");
        }
    }
    out
}
