//! `triforce reload` and `triforce drain`: the signed controls of a running node.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::sockets::{client, load};
use crate::NodeArgs;

#[derive(clap::Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(clap::Args)]
pub struct DrainArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The node to drain (this one if not given).
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
}

/// Asks the running node to read its files again; prints what changed, or why the node
/// refused (and exits non-zero) with its config unchanged.
pub async fn reload(args: ReloadArgs) -> Result<ExitCode> {
    // Signed with the key the files name now: in a PSK rotation the running node already
    // accepts it (each step accepts the key the next one signs with).
    let config = load(&args.node.config, &args.node.node)?;
    let client = client(&config, None, Duration::from_secs(30))?;
    let reply = client
        .post("/v1/federation/reload", &unique_body()?)
        .await?;
    if reply.status != 200 {
        bail!(
            "{} did not reload ({}): {}",
            config.me,
            reply.status,
            message(&reply.body)
        );
    }
    println!(
        "{} reloaded: {}",
        config.me,
        reply.body["changes"].as_str().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}

/// Puts a node in the draining state: it finishes what it runs and takes nothing new.
pub async fn drain(args: DrainArgs) -> Result<ExitCode> {
    let config = load(&args.node.config, &args.node.node)?;
    let target = args
        .target
        .as_deref()
        .unwrap_or(config.me.as_str())
        .to_string();
    let client = client(&config, Some(&target), Duration::from_secs(10))?;
    let reply = client.post("/v1/federation/drain", &unique_body()?).await?;
    if reply.status != 200 {
        bail!(
            "{target} did not drain ({}): {}",
            reply.status,
            message(&reply.body)
        );
    }
    println!(
        "{target} is draining: {} running, {} queued; it takes no new tasks",
        reply.body["running"], reply.body["queued"]
    );
    Ok(ExitCode::SUCCESS)
}

/// A body that makes each request's signature new: two reloads within a second must not
/// look like a replay of one.
fn unique_body() -> Result<Vec<u8>> {
    let mut nonce = [0u8; 16];
    getrandom::getrandom(&mut nonce).context("no OS randomness for a request nonce")?;
    let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    Ok(serde_json::json!({ "nonce": nonce })
        .to_string()
        .into_bytes())
}

fn message(body: &serde_json::Value) -> String {
    body["error"]["message"]
        .as_str()
        .map_or_else(|| body.to_string(), str::to_string)
}
