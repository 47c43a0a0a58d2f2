//! `triforce wireguard`: one node's wg-quick config, from the keys `triforce init` wrote.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use triforce_core::config::{Federation, Settings, NODES_FILE, SETTINGS_FILE};
use triforce_core::node::NodeId;

use super::init::parse_endpoints;
use crate::wireguard::{KeyPair, Plan};
use crate::NodeArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    node: NodeArgs,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let dir = &args.node.config;
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .with_context(|| format!("cannot read {}", dir.join(name).display()))
    };
    let federation = Federation::parse(&read(NODES_FILE)?)?;
    let settings = match read(SETTINGS_FILE) {
        Ok(text) => Settings::parse(&text)?,
        Err(_) => Settings::default(),
    };
    let subnet = settings.network.subnet.with_context(|| {
        format!("set [network] subnet in {SETTINGS_FILE} (triforce init writes it)")
    })?;
    let keys: BTreeMap<NodeId, KeyPair> = federation
        .nodes
        .keys()
        .map(|id| Ok((id.clone(), key_of(dir, id)?)))
        .collect::<Result<_>>()?;
    let endpoint_lines: Vec<String> = read("wireguard/endpoints")
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(String::from)
        .collect();
    let endpoints = parse_endpoints(&endpoint_lines, &federation)?;
    let (id, _) = federation.get(&args.node.node).with_context(|| {
        format!(
            "node {:?} is not in {NODES_FILE}; it defines: {}",
            args.node.node,
            federation.ids()
        )
    })?;
    let plan = Plan {
        federation: &federation,
        keys: &keys,
        subnet,
        listen_port: settings.network.wireguard_port,
        endpoints: &endpoints,
    };
    print!("{}", plan.render(id)?);
    Ok(ExitCode::SUCCESS)
}

/// Node `id`'s WireGuard key from `wireguard/<id>.key`. A node added to the nodes file after
/// `triforce init` gets a fresh key here (mode 0600), so adding a hub needs no other tool.
fn key_of(dir: &std::path::Path, id: &NodeId) -> Result<KeyPair> {
    let path = dir.join(format!("wireguard/{id}.key"));
    match std::fs::read_to_string(&path) {
        Ok(text) => KeyPair::from_base64(&text).with_context(|| path.display().to_string()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = KeyPair::generate()?;
            super::init::write_file(&path, &format!("{}\n", key.private_base64()), 0o600)?;
            eprintln!(
                "made a WireGuard key for new node {id}: {} (copy it with the directory)",
                path.display()
            );
            Ok(key)
        }
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}
