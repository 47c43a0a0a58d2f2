//! `triforce init`: a new federation's config directory, with a fresh PSK and WireGuard keys.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use triforce_core::config::{Federation, Settings, NODES_FILE, SETTINGS_FILE};
use triforce_core::node::NodeId;

use crate::wireguard::{KeyPair, Plan};

/// The seed's node list, written when no `--from` is given.
const SEED_NODES: &str = include_str!("../../../config/federation_nodes.json");
/// `federation.toml` with every default and its comment.
const SETTINGS_TEMPLATE: &str = include_str!("../../../config/federation.toml");

#[derive(clap::Args)]
pub struct Args {
    /// The directory to write (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// A federation_nodes.json to use instead of the seed's three nodes.
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
    /// The VPN subnet every node's ip must lie in.
    #[arg(long, default_value = "10.10.0.0/24")]
    subnet: IpNet,
    /// A node's public WireGuard endpoint, e.g. `hetzner=138.201.50.230:51820` (repeatable).
    #[arg(long = "endpoint", value_name = "NODE=HOST:PORT")]
    endpoints: Vec<String>,
    /// Overwrite an existing PSK and keys in DIR.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let nodes_text = match &args.from {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?,
        None => SEED_NODES.to_string(),
    };
    let federation = Federation::parse(&nodes_text)?;
    let endpoints = parse_endpoints(&args.endpoints, &federation)?;
    let settings_text = SETTINGS_TEMPLATE.replace(
        "# subnet = \"10.10.0.0/24\"      # when set",
        &format!("subnet = \"{}\"        # when set", args.subnet),
    );
    let settings =
        Settings::parse(&settings_text).context("the settings template does not parse")?;
    let keys: BTreeMap<NodeId, KeyPair> = federation
        .nodes
        .keys()
        .map(|id| Ok((id.clone(), KeyPair::generate()?)))
        .collect::<Result<_>>()?;
    let plan = Plan {
        federation: &federation,
        keys: &keys,
        subnet: args.subnet,
        listen_port: settings.network.wireguard_port,
        endpoints: &endpoints,
    };
    // Everything is rendered and checked before the first file is written: no half-made dir.
    let mut files: Vec<(PathBuf, String, u32)> = vec![
        (args.out.join("psk"), fresh_psk()?, 0o600),
        (args.out.join(NODES_FILE), nodes_text.clone(), 0o644),
        (args.out.join(SETTINGS_FILE), settings_text, 0o644),
        (
            args.out.join("wireguard/endpoints"),
            render_endpoints(&endpoints),
            0o644,
        ),
    ];
    for (id, key) in &keys {
        files.push((
            args.out.join(format!("wireguard/{id}.key")),
            key.private_base64() + "\n",
            0o600,
        ));
        files.push((
            args.out.join(format!("wireguard/{id}.conf")),
            plan.render(id)?,
            0o600,
        ));
    }
    if !args.force {
        if let Some((path, ..)) = files.iter().find(|(path, ..)| path.exists()) {
            bail!(
                "{} exists; refusing to overwrite a federation's secrets (use --force)",
                path.display()
            );
        }
    }
    std::fs::create_dir_all(args.out.join("wireguard"))
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    for (path, text, mode) in &files {
        write_file(path, text, *mode)?;
    }
    println!("wrote {}:", args.out.display());
    for (path, _, mode) in &files {
        println!(
            "  {:<48} mode {:o}",
            path.strip_prefix(&args.out).unwrap_or(path).display(),
            mode
        );
    }
    let missing: Vec<&str> = federation
        .nodes
        .iter()
        .filter(|(_, spec)| spec.role == triforce_core::node::Role::Master)
        .map(|(id, _)| id.as_str())
        .filter(|id| !endpoints.contains_key(*id))
        .collect();
    if !missing.is_empty() {
        println!("note: no --endpoint for the master ({}); hubs' configs carry a commented Endpoint line to fill in", missing.join(", "));
    }
    println!("next: copy the directory to every node, install wireguard/<node>.conf as /etc/wireguard/wg0.conf, then `triforce run --config DIR --node NAME`");
    Ok(ExitCode::SUCCESS)
}

/// 32 random bytes as hex: 256 bits, printable, safe in env vars and files.
fn fresh_psk() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).context("no OS randomness for the PSK")?;
    Ok(hex_encode(&bytes))
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn parse_endpoints(
    raw: &[String],
    federation: &Federation,
) -> Result<BTreeMap<String, String>> {
    raw.iter()
        .map(|entry| {
            let (node, endpoint) = entry
                .split_once('=')
                .with_context(|| format!("--endpoint {entry:?} must be NODE=HOST:PORT"))?;
            if federation.get(node).is_none() {
                bail!(
                    "--endpoint names node {node:?}, which is not in {NODES_FILE} ({})",
                    federation.ids()
                );
            }
            let port_ok = endpoint.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !port_ok {
                bail!("--endpoint {entry:?}: {endpoint:?} is not HOST:PORT");
            }
            Ok((node.to_string(), endpoint.to_string()))
        })
        .collect()
}

fn render_endpoints(endpoints: &BTreeMap<String, String>) -> String {
    let mut text = String::from(
        "# NODE=HOST:PORT, one per line: public WireGuard endpoints (triforce init --endpoint)\n",
    );
    for (node, endpoint) in endpoints {
        text += &format!("{node}={endpoint}\n");
    }
    text
}

pub fn write_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // `mode` applies only on creation; an existing file (with --force) is narrowed too.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}
