//! `triforce reload` and `triforce drain [--undo]`: the signed controls of a running node. Each
//! body names its action, the target node and a fresh nonce (see
//! `triforce_core::auth::ControlRequest`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use triforce_core::auth::ControlRequest;

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
    /// Undo a drain: the node takes tasks again, without a restart.
    #[arg(long)]
    undo: bool,
}

/// Asks the running node to read its files again; prints what changed, or why the node
/// refused (and exits non-zero) with its config unchanged.
pub async fn reload(args: ReloadArgs) -> Result<ExitCode> {
    // Signed with the key the files name now: in a PSK rotation the running node already
    // accepts it (each step accepts the key the next one signs with).
    let config = load(&args.node.config, &args.node.node)?;
    let client = client(&config, None, Duration::from_secs(30))?;
    let body = control_body("reload", config.me.as_str())?;
    let reply = client.post("/v1/federation/reload", &body).await?;
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
    let (action, path) = if args.undo {
        ("undrain", "/v1/federation/undrain")
    } else {
        ("drain", "/v1/federation/drain")
    };
    let reply = client.post(path, &control_body(action, &target)?).await?;
    if reply.status != 200 {
        bail!(
            "{target} did not {action} ({}): {}",
            reply.status,
            message(&reply.body)
        );
    }
    if args.undo {
        println!("{target} takes tasks again");
    } else {
        println!(
            "{target} is draining: {} running, {} queued; it takes no new tasks",
            reply.body["running"], reply.body["queued"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A control call's body: its action, the node it is for, and a nonce that makes each call's
/// signature new (two reloads within a second must not look like a replay of one).
fn control_body(action: &str, node: &str) -> Result<Vec<u8>> {
    let mut nonce = [0u8; 16];
    getrandom::getrandom(&mut nonce).context("no OS randomness for a request nonce")?;
    Ok(ControlRequest::new(action, node, &hex::encode(nonce)).to_json())
}

fn message(body: &serde_json::Value) -> String {
    body["error"]["message"]
        .as_str()
        .map_or_else(|| body.to_string(), str::to_string)
}
