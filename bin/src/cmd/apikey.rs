//! `triforce apikey`: the ingress's API keys. A key is shown once, when made; the file keeps
//! only its SHA-256, so a leaked config leaks no key.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use triforce_core::config::{key_hash, ApiKey, ApiKeys, Settings, SETTINGS_FILE};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Make a key; it is printed once, as the last line of stdout.
    Add {
        #[arg(long, value_name = "DIR")]
        config: PathBuf,
        /// What the key is for (shown in logs and `apikey list`).
        #[arg(long)]
        name: String,
        /// Models the key may use (repeatable); any model when none is given.
        #[arg(long = "model", value_name = "MODEL")]
        models: Vec<String>,
        /// Requests per minute the key may make; 0 = no limit.
        #[arg(long, default_value_t = 0)]
        requests_per_minute: u32,
    },
    /// List the keys' names and limits (never the keys).
    List {
        #[arg(long, value_name = "DIR")]
        config: PathBuf,
    },
    /// Remove a key by name; clients using it are refused once the node has (re)started.
    Remove {
        #[arg(long, value_name = "DIR")]
        config: PathBuf,
        #[arg(long)]
        name: String,
    },
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        Command::Add {
            config,
            name,
            models,
            requests_per_minute,
        } => {
            let path = keys_path(&config)?;
            let mut keys = read_keys(&path)?;
            if keys.keys.iter().any(|k| k.name == name) {
                bail!(
                    "{}: a key named {name:?} exists; remove it first or pick another name",
                    path.display()
                );
            }
            let key = new_key()?;
            keys.keys.push(ApiKey {
                name: name.clone(),
                sha256: key_hash(&key),
                models,
                requests_per_minute,
            });
            write_keys(&path, &keys)?;
            eprintln!(
                "added key {name:?} to {} (shown once; store it now)",
                path.display()
            );
            println!("{key}");
        }
        Command::List { config } => {
            let path = keys_path(&config)?;
            let keys = read_keys(&path)?;
            if keys.keys.is_empty() {
                println!("no keys in {}", path.display());
            }
            for key in &keys.keys {
                let models = if key.models.is_empty() {
                    "any model".to_string()
                } else {
                    key.models.join(", ")
                };
                let rate = match key.requests_per_minute {
                    0 => "no rate limit".to_string(),
                    n => format!("{n} requests/min"),
                };
                println!("{}\t{models}\t{rate}", key.name);
            }
        }
        Command::Remove { config, name } => {
            let path = keys_path(&config)?;
            let mut keys = read_keys(&path)?;
            let before = keys.keys.len();
            keys.keys.retain(|k| k.name != name);
            if keys.keys.len() == before {
                bail!("{}: no key named {name:?}", path.display());
            }
            write_keys(&path, &keys)?;
            eprintln!("removed key {name:?} from {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The keys file named by the directory's settings (default `api_keys`).
fn keys_path(dir: &Path) -> Result<PathBuf> {
    let settings_path = dir.join(SETTINGS_FILE);
    let settings = if settings_path.exists() {
        let text = std::fs::read_to_string(&settings_path)
            .with_context(|| format!("cannot read {}", settings_path.display()))?;
        Settings::parse(&text)?
    } else {
        Settings::default()
    };
    Ok(dir.join(settings.ingress.api_keys_file))
}

fn read_keys(path: &Path) -> Result<ApiKeys> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(ApiKeys::parse(&path.display().to_string(), &text)?),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(ApiKeys::default()),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes the file whole or not at all: a temporary file (mode 0600) renamed over it.
fn write_keys(path: &Path, keys: &ApiKeys) -> Result<()> {
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(keys.to_toml().as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// `tf-` and 256 random bits in hex.
fn new_key() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).context("no OS randomness for a key")?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("tf-{hex}"))
}
