//! `triforce submit`: one task through a node.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use crate::sockets::{client, load};
use crate::NodeArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    node: NodeArgs,
    /// Send through this node instead of our own.
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    /// The task type, e.g. chat, gpu_inference, echo.
    #[arg(long = "type", value_name = "T")]
    task_type: String,
    /// The payload, as JSON.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    payload: String,
    #[arg(long, default_value_t = 1)]
    priority: i32,
    /// Defaults to a fresh UUID; reuse one to make a retry idempotent.
    #[arg(long, value_name = "ID")]
    task_id: Option<String>,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let config = load(&args.node.config, &args.node.node)?;
    let payload: serde_json::Value =
        serde_json::from_str(&args.payload).context("--payload is not JSON")?;
    let task_id = args
        .task_id
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let body = json!({"task_id": task_id, "type": args.task_type, "payload": payload, "priority": args.priority});
    let deadline = Duration::from_millis(config.settings.timing.task_deadline_ms + 5_000);
    let client = client(&config, args.target.as_deref(), deadline)?;
    let reply = client
        .post("/v1/federation/task", body.to_string().as_bytes())
        .await?;
    println!("{}", serde_json::to_string_pretty(&reply.body)?);
    Ok(if reply.status == 200 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
