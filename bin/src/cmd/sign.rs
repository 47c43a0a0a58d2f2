//! `triforce sign`: the three headers, for curl.

use std::process::ExitCode;

use anyhow::Result;
use triforce_core::auth::{sign, HmacSha256Key, HEADER_NODE, HEADER_SIGNATURE, HEADER_TIMESTAMP};

use crate::sockets::load;
use crate::NodeArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    node: NodeArgs,
    /// The exact request body to sign (empty for GET).
    #[arg(long, default_value = "")]
    body: String,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let config = load(&args.node.config, &args.node.node)?;
    let unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let headers = sign(
        &HmacSha256Key::new(&config.psk),
        &config.me,
        unix_s,
        args.body.as_bytes(),
    );
    println!("{HEADER_NODE}: {}", headers.node);
    println!("{HEADER_TIMESTAMP}: {}", headers.timestamp);
    println!("{HEADER_SIGNATURE}: {}", headers.signature);
    Ok(ExitCode::SUCCESS)
}
